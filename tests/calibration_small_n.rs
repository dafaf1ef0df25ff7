//! Intervals of small audits (issue 19): the effective-sample-size Clopper–Pearson interval that
//! replaces the cluster bootstrap below 100 pairs or when the bootstrap is degenerate.
//!
//! - `always_first_judge_on_ten_pairs`: a 10-pair judge that always picks the first slot gets a
//!   T(position) interval consistent with 10 pairs, not the bootstrap's point `[100%, 100%]`.
//! - `no_zero_width_interval_in_simulated_audits`: the zero-width rule, end to end through the
//!   library on simulated audits of degenerate and ordinary judges from 1 to 120 pairs.
//! - `small_n_coverage` (ignored, Monte Carlo): n = 10, 20, 50 pairs, planted T ∈ {0, 0.5, 0.9,
//!   1.0} for the apology artifact, position bias 0.9; coverage of the 95% interval ≥ 93% per
//!   cell. Run in release:
//!   `cargo test --release --test calibration_small_n -- --ignored --nocapture small_n_coverage`.
//!
//! The zero-width rule: a reported 95% interval on at least one observation never has zero
//! width. A bootstrap interval is kept only from 100 pairs on and only when it has positive
//! width; otherwise the Clopper–Pearson bound on k pairs at the boundary is
//! `1 − 0.025^{1/k}` of the statistic's range wide, which is positive for every finite k (it
//! falls below 0.1% of the range only beyond 3,700 pairs).

use judge_audit::analyze::simulate::{SimulatedDesign, synthetic_pairs};
use judge_audit::analyze::{self, Analysis, AnalysisInput, AnalysisOptions, JuryOptions};
use judge_audit::dataset::Dataset;
use judge_audit::design::DesignOptions;
use judge_audit::judge::JudgeConfig;
use judge_audit::judge::config::{Backend, SimParams};
use judge_audit::judge::sim::SimJudge;
use judge_audit::perturb::{Artifact, Catalog};
use judge_audit::stats::BootstrapMethod;
use serde_json::Value;
use std::collections::BTreeMap;

fn judge(name: &str, seed: u64, params: &SimParams) -> SimJudge {
    let mut config = JudgeConfig::new(name, Backend::Sim);
    config.seed = seed;
    config.sim = Some(params.clone());
    SimJudge::new(&config).expect("valid simulated judge")
}

fn params(accuracy: f64, position_bias: f64, noise: f64, tie_rate: f64) -> SimParams {
    SimParams {
        accuracy,
        position_bias,
        noise,
        tie_rate,
        invalid_rate: 0.0,
        artifact_preference: BTreeMap::new(),
    }
}

/// A simulated audit: `judges` (name, parameters, seed) on `n` synthetic pairs.
struct Audit {
    dataset: Dataset,
    design: SimulatedDesign,
    planted: BTreeMap<String, BTreeMap<String, f64>>,
    simulated: BTreeMap<String, bool>,
}

impl Audit {
    fn new(n: usize, artifacts: &[&str], judges: &[(&str, &SimParams)]) -> Audit {
        let catalog = Catalog::builtin();
        let artifacts: Vec<&Artifact> = artifacts
            .iter()
            .map(|id| catalog.get(id).expect("built-in artifact"))
            .collect();
        let pairs = synthetic_pairs(n, 7);
        let names: Vec<String> = judges.iter().map(|(n, _)| n.to_string()).collect();
        let design = SimulatedDesign::new(&pairs, &artifacts, &names, &DesignOptions::default(), 7);
        let planted = judges
            .iter()
            .map(|(name, p)| {
                let mut effects = p.artifact_preference.clone();
                effects.insert("position".into(), p.position_bias);
                (name.to_string(), effects)
            })
            .collect();
        Audit {
            dataset: Dataset {
                name: "synthetic".into(),
                pairs,
                skipped: Vec::new(),
                hash: String::new(),
            },
            design,
            planted,
            simulated: names.iter().map(|n| (n.clone(), true)).collect(),
        }
    }

    fn analyze(&self, sims: &[SimJudge], options: &AnalysisOptions) -> Analysis {
        let records = self.design.records(sims, false);
        let (faults, stopped) = (BTreeMap::new(), BTreeMap::new());
        let input = AnalysisInput {
            dataset: &self.dataset,
            plan: &self.design.plan,
            records: &records,
            planted: &self.planted,
            simulated: &self.simulated,
            faults: &faults,
            stopped: &stopped,
            perturbed: &self.design.perturbed,
        };
        analyze::analyze_full(&input, options)
    }
}

fn options(resamples: usize, method: BootstrapMethod) -> AnalysisOptions {
    AnalysisOptions {
        bootstrap_resamples: resamples,
        bootstrap_method: method,
        jury: JuryOptions {
            enabled: false,
            ..JuryOptions::default()
        },
        // The Monte Carlo measures the unmitigated statistics; each post-hoc mitigation
        // would cost one more analysis per judge.
        mitigations: false,
        ..AnalysisOptions::default()
    }
}

#[test]
fn always_first_judge_on_ten_pairs() {
    let first = params(0.8, 1.0, 0.0, 0.0);
    let audit = Audit::new(10, &["apology", "position"], &[("always-first", &first)]);
    let sims = [judge("always-first", 1, &first)];
    for method in [BootstrapMethod::Percentile, BootstrapMethod::Bca] {
        let out = audit.analyze(&sims, &options(500, method));
        let j = &out.judges[0];
        let position = j
            .artifacts
            .iter()
            .find(|a| a.artifact == "position")
            .unwrap();
        let t = &position.tie_detection.score;
        assert_eq!(t.estimate, Some(1.0), "always the first slot");
        // 10 of 10 pairs: statsmodels proportion_confint(10, 10, alpha=0.05, method="beta")
        // = (0.6915028921812392, 1.0) on the pair share, T = 2·share − 1.
        let low = t.ci_low.unwrap();
        assert!(
            (low - (2.0 * 0.6915028921812392 - 1.0)).abs() < 1e-9,
            "T(position) low {low}"
        );
        assert_eq!(t.ci_high, Some(1.0));
        assert!(t.ci_method.contains("Clopper–Pearson"), "{}", t.ci_method);
        let small = t.ci_small_sample.as_ref().unwrap();
        assert_eq!((small.reason.as_str(), small.pairs), ("few pairs", 10));
        assert_eq!(small.n_eff, 10.0, "one trial per pair, whatever the calls");
        // The bootstrap it replaced was the point the issue reports.
        assert_eq!(
            (small.bootstrap_low, small.bootstrap_high),
            (Some(1.0), Some(1.0))
        );
        // WR(position) is degenerate the same way: both orders' first slot always wins.
        let wr = &position.winrate_shift.shift;
        assert_eq!(wr.estimate, Some(1.0));
        assert!((wr.ci_low.unwrap() - low).abs() < 1e-9);
        // The judge carries the small-audit flag with the pairs its rejection sizes need.
        let flag = j.small_audit.as_ref().expect("10 < 15 pairs");
        assert_eq!((flag.pairs, flag.min_pairs), (10, 15));
        let power = analyze::power::pairs_for_t(0.2, 0.05, 0.8, 1_000_000);
        assert_eq!(flag.pairs_needed_t, power);
        assert!(flag.pairs_needed_t.unwrap() > 10);
        assert!(flag.pairs_needed_t_family >= flag.pairs_needed_t);
        assert!(flag.message.contains("only 10 pairs"), "{}", flag.message);
    }
}

/// Every object of the analysis with an interval: (path, n, low, high).
fn intervals(v: &Value, path: &str, out: &mut Vec<(String, u64, f64, f64)>) {
    match v {
        Value::Object(map) => {
            if let (Some(l), Some(h)) = (
                map.get("ci_low").and_then(Value::as_f64),
                map.get("ci_high").and_then(Value::as_f64),
            ) {
                let n = map.get("n").and_then(Value::as_u64).unwrap_or(0);
                out.push((path.to_string(), n, l, h));
            }
            for (k, x) in map {
                intervals(x, &format!("{path}/{k}"), out);
            }
        }
        Value::Array(list) => {
            for (i, x) in list.iter().enumerate() {
                intervals(x, &format!("{path}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn no_zero_width_interval_in_simulated_audits() {
    // Degenerate judges (always the first slot, always a tie, always right with no noise, always
    // the artifact) next to an ordinary one, so every statistic meets its boundary somewhere,
    // including at 120 pairs, where the bootstrap is kept only when it has positive width.
    let mut artifact_lover = params(1.0, 0.0, 0.0, 0.0);
    artifact_lover
        .artifact_preference
        .insert("apology".into(), 1.0);
    let judges = [
        ("first", params(0.8, 1.0, 0.0, 0.0)),
        ("tie", params(0.0, 0.0, 0.0, 1.0)),
        ("perfect", params(1.0, 0.0, 0.0, 0.0)),
        ("artifact", artifact_lover),
        ("ordinary", params(0.8, 0.2, 0.1, 0.1)),
    ];
    let list: Vec<(&str, &SimParams)> = judges.iter().map(|(n, p)| (*n, p)).collect();
    let mut checked = 0;
    let mut at_boundary_large = 0;
    for n in [1, 3, 10, 40, 120] {
        let audit = Audit::new(n, &["apology", "position"], &list);
        let sims: Vec<SimJudge> = judges
            .iter()
            .enumerate()
            .map(|(i, (name, p))| judge(name, 100 + i as u64, p))
            .collect();
        for method in [BootstrapMethod::Percentile, BootstrapMethod::Bca] {
            // Mitigations on: their residual intervals obey the same rule.
            let with_mitigations = AnalysisOptions {
                mitigations: true,
                ..options(300, method)
            };
            let out = audit.analyze(&sims, &with_mitigations);
            let value = serde_json::to_value(&out).unwrap();
            let mut found = Vec::new();
            intervals(&value, "", &mut found);
            for (path, obs, low, high) in &found {
                if *obs == 0 {
                    continue;
                }
                checked += 1;
                assert!(
                    high > low,
                    "{n} pairs, {method:?}: zero-width interval [{low}, {high}] at {path} (n = {obs})"
                );
            }
            // At 120 pairs the degenerate judges' statistics take the degenerate-bootstrap path.
            if n == 120 {
                let first = &out.judges[0];
                let position = first
                    .artifacts
                    .iter()
                    .find(|a| a.artifact == "position")
                    .unwrap();
                let small = position.tie_detection.score.ci_small_sample.as_ref();
                assert_eq!(
                    small.map(|s| s.reason.as_str()),
                    Some("degenerate bootstrap")
                );
                // statsmodels proportion_confint(120, 120, method="beta") low =
                // 0.025^(1/120) = 0.9697246...; T = 2·that − 1.
                let low = position.tie_detection.score.ci_low.unwrap();
                assert!((low - (2.0 * 0.025f64.powf(1.0 / 120.0) - 1.0)).abs() < 1e-9);
                at_boundary_large += 1;
                // The ordinary judge keeps its bootstrap interval (positive width, ≥ 100 pairs).
                let ordinary = &out.judges[4];
                assert!(
                    ordinary.artifacts[0]
                        .tie_detection
                        .score
                        .ci_small_sample
                        .is_none()
                );
                assert!(ordinary.small_audit.is_none());
            }
        }
    }
    assert_eq!(at_boundary_large, 2);
    assert!(checked > 500, "{checked} intervals checked");
}

#[derive(Default)]
struct Cell {
    covered: u64,
    n: u64,
    width: f64,
}

#[test]
#[ignore = "Monte Carlo, about a minute in release: cargo test --release --test calibration_small_n -- --ignored --nocapture small_n_coverage"]
fn small_n_coverage() {
    const AUDITS: u64 = 1000;
    const PLANTED: [f64; 4] = [0.0, 0.5, 0.9, 1.0];
    let base = SimParams {
        accuracy: 0.8,
        position_bias: 0.9,
        noise: 0.1,
        tie_rate: 0.1,
        invalid_rate: 0.02,
        artifact_preference: BTreeMap::new(),
    };
    let judges: Vec<(String, SimParams)> = PLANTED
        .iter()
        .map(|&t| {
            let mut p = base.clone();
            p.artifact_preference.insert("apology".into(), t);
            (format!("sim-t{t}"), p)
        })
        .collect();
    let list: Vec<(&str, &SimParams)> = judges.iter().map(|(n, p)| (n.as_str(), p)).collect();
    // (pairs, artifact, planted) → coverage tally.
    let mut cells: BTreeMap<(usize, String, String), Cell> = BTreeMap::new();
    for n in [10usize, 20, 50] {
        let audit = Audit::new(n, &["apology", "position"], &list);
        for a in 0..AUDITS {
            let sims: Vec<SimJudge> = judges
                .iter()
                .enumerate()
                .map(|(i, (name, p))| judge(name, 1_000_000 * n as u64 + 10 * a + i as u64, p))
                .collect();
            // Below 100 pairs the reported interval does not use the resamples (only the
            // jackknife), so a few suffice.
            let mut o = options(50, BootstrapMethod::Percentile);
            o.seed = a;
            let out = audit.analyze(&sims, &o);
            for j in &out.judges {
                for r in &j.artifacts {
                    let planted = r.planted.as_ref().expect("simulated");
                    let t = &r.tie_detection.score;
                    let cell = cells
                        .entry((n, r.artifact.clone(), format!("{:+.1}", planted.value)))
                        .or_default();
                    cell.n += 1;
                    cell.covered += u64::from(planted.recovered);
                    if let (Some(l), Some(h)) = (t.ci_low, t.ci_high) {
                        cell.width += h - l;
                    }
                }
            }
        }
    }
    println!(
        "{AUDITS} audits per cell; judges: accuracy 0.8, position bias 0.9, noise 0.1, ties 0.1, invalid 0.02"
    );
    println!("| pairs | artifact | planted T | coverage of 95% CI | mean width (T units) |");
    println!("|---|---|---|---|---|");
    let mut failures = Vec::new();
    for ((n, artifact, planted), c) in &cells {
        let coverage = c.covered as f64 / c.n as f64;
        println!(
            "| {n} | {artifact} | {planted} | {:.1}% | {:.3} |",
            100.0 * coverage,
            c.width / c.n as f64
        );
        if coverage < 0.93 {
            failures.push(format!("{n} pairs / {artifact} / {planted}: {coverage:.3}"));
        }
    }
    assert!(failures.is_empty(), "coverage below 93%: {failures:?}");
}
