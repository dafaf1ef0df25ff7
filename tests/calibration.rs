//! Monte Carlo self-validation of the statistics layer: many in-process simulated audits of
//! judges with known effects (a simulated judge's planted `artifact_preference` is exactly the
//! expected tie-detection score T, its `position_bias` the expected T(position); see
//! `src/judge/sim.rs`). Checks that
//! - 95% intervals for T cover the planted value in at least 93% of audits (percentile and BCa),
//! - an unbiased judge is flagged (any artifact significant after Holm correction within its own
//!   family, the default: its artifacts × {T, WR, flip} tests, not the whole run's grid) in at
//!   most 5% of audits — the false-flag rate per judge, which is what the per-judge adoption
//!   decision needs,
//! - planted effects are detected.
//!
//! Ignored by default (under a minute in release on 2 cores). Run with
//! `cargo test --release --test calibration -- --ignored --nocapture calibration`.
//! Uses 1,000 bootstrap resamples per audit (the default is 2,000) to keep the run short;
//! coverage does not depend on the number of resamples beyond Monte Carlo noise in the bounds.

use judge_audit::analyze::simulate::{SimulatedDesign, synthetic_pairs};
use judge_audit::analyze::{self, AnalysisInput, AnalysisOptions, JuryOptions};
use judge_audit::dataset::Dataset;
use judge_audit::design::DesignOptions;
use judge_audit::judge::JudgeConfig;
use judge_audit::judge::config::{Backend, SimParams};
use judge_audit::judge::sim::SimJudge;
use judge_audit::perturb::{Artifact, Catalog};
use judge_audit::stats::BootstrapMethod;
use std::collections::BTreeMap;

const AUDITS: u64 = 1000;
const PAIRS: usize = 200;
const ARTIFACTS: [&str; 4] = ["apology", "authority", "halo", "position"];

fn params(position_bias: f64, preferences: &[(&str, f64)]) -> SimParams {
    SimParams {
        accuracy: 0.8,
        position_bias,
        noise: 0.1,
        tie_rate: 0.1,
        invalid_rate: 0.02,
        artifact_preference: preferences
            .iter()
            .map(|(a, v)| (a.to_string(), *v))
            .collect(),
    }
}

fn judge(name: &str, seed: u64, params: &SimParams) -> SimJudge {
    let mut config = JudgeConfig::new(name, Backend::Sim);
    config.seed = seed;
    config.sim = Some(params.clone());
    SimJudge::new(&config).expect("valid simulated judge")
}

/// Per (judge, artifact, method): audits whose interval covered the planted value, and audits
/// where the artifact was significant (Holm) and screening-significant (BH).
#[derive(Default)]
struct Tally {
    covered: u64,
    significant: u64,
    screened: u64,
    n: u64,
}

#[test]
#[ignore = "Monte Carlo calibration, about a minute in release: cargo test --release -- --ignored calibration"]
fn calibration_of_intervals_and_false_positive_rate() {
    let catalog = Catalog::builtin();
    let artifacts: Vec<&Artifact> = ARTIFACTS
        .iter()
        .map(|id| catalog.get(id).expect("built-in artifact"))
        .collect();
    let pairs = synthetic_pairs(PAIRS, 11);
    let names = vec!["sim-biased".to_string(), "sim-null".to_string()];
    let design = SimulatedDesign::new(&pairs, &artifacts, &names, &DesignOptions::default(), 11);
    let biased = params(0.15, &[("apology", 0.3), ("authority", -0.2)]);
    let null = params(0.0, &[]);
    let planted: BTreeMap<String, BTreeMap<String, f64>> =
        [(&names[0], &biased), (&names[1], &null)]
            .into_iter()
            .map(|(name, p)| {
                let mut effects = p.artifact_preference.clone();
                effects.insert("position".into(), p.position_bias);
                (name.clone(), effects)
            })
            .collect();
    let dataset = Dataset {
        name: "synthetic".into(),
        pairs,
        skipped: Vec::new(),
        hash: String::new(),
    };
    let simulated: BTreeMap<String, bool> = names.iter().map(|n| (n.clone(), true)).collect();
    let (faults, stopped) = (BTreeMap::new(), BTreeMap::new());

    let methods = [BootstrapMethod::Percentile, BootstrapMethod::Bca];
    let mut tallies: BTreeMap<(String, String, String), Tally> = BTreeMap::new();
    let mut null_flagged = [0u64; 2];
    let mut null_screened = [0u64; 2];
    for audit in 0..AUDITS {
        let sims = [
            judge(&names[0], 10_000 + audit, &biased),
            judge(&names[1], 20_000 + audit, &null),
        ];
        let records = design.records(&sims, false);
        let input = AnalysisInput {
            dataset: &dataset,
            plan: &design.plan,
            records: &records,
            planted: &planted,
            simulated: &simulated,
            faults: &faults,
            stopped: &stopped,
            perturbed: &design.perturbed,
        };
        for (m, method) in methods.iter().enumerate() {
            let options = AnalysisOptions {
                bootstrap_resamples: 1000,
                seed: audit,
                bootstrap_method: *method,
                jury: JuryOptions {
                    enabled: false,
                    ..JuryOptions::default()
                },
                // The Monte Carlo measures the unmitigated statistics; each post-hoc
                // mitigation would cost one more analysis per judge.
                mitigations: false,
                ..AnalysisOptions::default()
            };
            let results = analyze::analyze(&input, &options);
            for judge in &results {
                for a in &judge.artifacts {
                    let planted = a
                        .planted
                        .as_ref()
                        .expect("simulated judges carry planted values");
                    let t = tallies
                        .entry((
                            judge.name.clone(),
                            a.artifact.clone(),
                            format!("{method:?}"),
                        ))
                        .or_default();
                    t.n += 1;
                    t.covered += u64::from(planted.recovered);
                    t.significant += u64::from(a.significant);
                    t.screened += u64::from(a.screening_significant);
                }
                if judge.name == "sim-null" {
                    // The family really is the judge's own (issue 20 §8).
                    let family = judge.artifacts[0].tie_detection.score.p_family.as_deref();
                    assert!(
                        family.is_some_and(|f| f.contains("(grid[sim-null])")),
                        "{family:?}"
                    );
                    null_flagged[m] += u64::from(judge.artifacts.iter().any(|a| a.significant));
                    null_screened[m] +=
                        u64::from(judge.artifacts.iter().any(|a| a.screening_significant));
                }
            }
        }
    }

    println!(
        "{AUDITS} audits × {PAIRS} pairs, 1,000 resamples; planted T: sim-biased apology +0.3, authority −0.2, halo 0, position +0.15; sim-null 0"
    );
    println!(
        "| judge | artifact | planted T | method | coverage of 95% CI | Holm-significant | BH-significant |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut pooled = [(0u64, 0u64); 2];
    for ((judge, artifact, method), t) in &tallies {
        let value = planted[judge].get(artifact).copied().unwrap_or(0.0);
        let coverage = t.covered as f64 / t.n as f64;
        println!(
            "| {judge} | {artifact} | {value:+.2} | {method} | {:.1}% | {:.1}% | {:.1}% |",
            100.0 * coverage,
            100.0 * t.significant as f64 / t.n as f64,
            100.0 * t.screened as f64 / t.n as f64
        );
        let m = usize::from(method == "Bca");
        pooled[m].0 += t.covered;
        pooled[m].1 += t.n;
        assert!(
            coverage >= 0.91,
            "{judge} / {artifact} / {method}: coverage {coverage:.3} (Monte Carlo SE about 0.01)"
        );
        if value.abs() >= 0.15 {
            let detected = t.significant as f64 / t.n as f64;
            assert!(
                detected >= 0.9,
                "{judge} / {artifact}: detected in {detected:.3}"
            );
        }
    }
    for (m, method) in methods.iter().enumerate() {
        let coverage = pooled[m].0 as f64 / pooled[m].1 as f64;
        let fwer = null_flagged[m] as f64 / AUDITS as f64;
        let screened = null_screened[m] as f64 / AUDITS as f64;
        println!(
            "{method:?}: pooled coverage {:.2}% over {} intervals; unbiased judge flagged (Holm within its own family) in {:.1}% of audits, screened (BH) in {:.1}%",
            100.0 * coverage,
            pooled[m].1,
            100.0 * fwer,
            100.0 * screened
        );
        assert!(
            coverage >= 0.93,
            "{method:?}: pooled coverage {coverage:.4}"
        );
        assert!(
            fwer <= 0.05,
            "{method:?}: unbiased judge flagged in {fwer:.3} of audits"
        );
    }
}
