//! Monte Carlo calibration of pointwise audits **through the audit pipeline** (issue 12): many
//! seeded in-process audits, each run exactly as `judge-audit run` runs one — the pairs written
//! to a JSONL file and read back by the dataset loader, the built-in artifact catalog, the plan,
//! the runner with its run store (in a temporary directory, cache off), and the summary's
//! pointwise analysis ([`audit::prepare`] → [`audit::execute`] → [`audit::summarize`]). The
//! judges are the simulated pointwise presets of `judges/sim-pointwise/` (score grader and
//! safe/unsafe classifier, their `[sim]` settings unchanged), given a fresh seed per audit and a
//! planted `[sim_grades]` effect on `apology` (none on `authority`). Each grader decides from the
//! one answer it is shown, as every judge does; the planted values stay with the test.
//!
//! What is true in these audits, exactly:
//! - score shift: the grader keys an answer's baseline score on its substance, which the artifact
//!   copy shares, and adds ⌊Δ⌋ plus one with probability frac(Δ) when the answer shows the
//!   artifact, never clipped (`src/judge/sim_pointwise.rs`). Run-to-run noise redraws a call's
//!   baseline from the same distribution, so it adds spread but no bias: the expected shift of
//!   every item is exactly Δ, and the estimand of the reported mean shift is Δ (0 for
//!   `authority`).
//! - label flips: the reported rate is unsafe → safe among answers unsafe at baseline. With noise
//!   ν (each call redraws its label with probability ν) and positive rate π, the two calls of an
//!   item agree on "unsafe" with P(after unsafe | before unsafe) = c = (1 − ν)² + (1 − (1 − ν)²)π
//!   before the flip, so the true rate is 1 − c(1 − p): not p itself, and not 0 for an unbiased
//!   classifier (the noise's own flips). [`flip_truth`] computes it.
//!
//! Checks, per judge and artifact: the 95% interval (pair-clustered expanded-percentile bootstrap
//! of the mean shift; Wilson for the flip rate) covers the true value in ≥ 93% of audits; the
//! planted effects are detected; the mean estimate over all audits is within 4 Monte Carlo
//! standard errors of the truth; and the unbiased judges are not flagged in more than 5% of audits
//! beyond Monte Carlo error. "Flagged" is checked per test (exact Wilcoxon on pair means, sign
//! test, McNemar at p < 0.05), per judge (any artifact Holm-significant: the bar of the issue and of
//! the pairwise calibration) and as the trust verdict REJECT; each of these rates is compared with
//! 5% by a one-sided exact binomial test, and the test fails when any of them is above 5% at a
//! family-wise 1% over those checks (Bonferroni). A rate that is truly 5% therefore fails in at
//! most 1% of runs; with 2,000 audits (`PW_AUDITS=2000`) a check fails above 6.6% (a true 7%
//! fails in 77% of runs, 8% in 99%), with the default 500 above 8.4% (a true 10% in 90%).
//! Measured 2026-12-03 (VALIDATION.md §2c), after the expanded interval and the exact, pair-level
//! Wilcoxon: coverage 94.0–96.3% in every cell (2,000 audits); the unbiased grader Holm-flagged in
//! 5.6%, 4.8% and 4.2% of three independent sets of 2,000 audits (`PW_OFFSET` = 0, 100000,
//! 200000), 4.87% ± 0.28% pooled, and its per-test Wilcoxon rates 5.0–6.2% (pooled 5.5% and 5.3%;
//! see §2c).
//!
//! Ignored by default (about 4 minutes in release on the shared 2-core machine: 500 audits of
//! 200 pairs, 8,000 calls each). Run with
//! `cargo test --release --test pointwise_pipeline_calibration -- --ignored --nocapture`
//! (`PW_AUDITS=N` and `PW_PAIRS=N` change the number of audits and pairs per audit; `PW_OFFSET=K`
//! runs audits K, K + 1, ... instead of 0, 1, ..., i.e. fresh seeds for the judges, the run and the
//! data, for an independent set; `PW_NOISE=x` replaces this test's run-to-run noise, 0.04 for the
//! graders and 0.02 for the classifiers, in every judge). Uses 1,000 bootstrap resamples per interval (the default is 2,000).

use judge_audit::analyze::Trust;
use judge_audit::analyze::pointwise_summary::PointwiseSection;
use judge_audit::analyze::simulate::synthetic_pairs;
use judge_audit::audit::{self, AuditConfig, ExecOptions};
use judge_audit::judge::JudgeConfig;
use judge_audit::judge::config::{JudgeKind, SimGrades};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

const ARTIFACTS: [&str; 2] = ["apology", "authority"];
/// Score graders (1–10, preset `sim-grader-unbiased`) with a planted mean shift on `apology`.
const SCORE_JUDGES: [(&str, f64); 3] = [
    ("score-shift-0", 0.0),
    ("score-shift-0.3", 0.3),
    ("score-shift-1.0", 1.0),
];
/// Safe/unsafe classifiers (preset `sim-safety-apology`) with a planted unsafe → safe flip
/// probability on `apology`.
const LABEL_JUDGES: [(&str, f64); 2] = [("label-flip-0", 0.0), ("label-flip-0.4", 0.4)];
const RESAMPLES: usize = 1000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A preset of `judges/sim-pointwise/` with this test's run-to-run noise: `PW_NOISE` when set,
/// else 0.04 for graders and 0.02 for classifiers, fixed here so that tuning a preset for the
/// demo does not silently change the measured setup.
fn preset(file: &str) -> JudgeConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("judges/sim-pointwise")
        .join(file);
    let mut config = JudgeConfig::from_file(&path).expect("the preset parses");
    let default = if config.kind == JudgeKind::Label {
        0.02
    } else {
        0.04
    };
    let noise = std::env::var("PW_NOISE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(default);
    config.sim.as_mut().expect("a [sim] table").noise = noise;
    config
}

/// The true unsafe → safe rate of a classifier with run-to-run noise `noise`, baseline positive
/// rate `positive` and planted flip probability `flip` (see the module doc).
fn flip_truth(noise: f64, positive: f64, flip: f64) -> f64 {
    let agree = (1.0 - noise).powi(2);
    let c = agree + (1.0 - agree) * positive;
    1.0 - c * (1.0 - flip)
}

/// The audit's judges: each preset renamed, reseeded for this audit, with its planted effect.
fn judges(audit: u64) -> Vec<JudgeConfig> {
    let mut out = Vec::new();
    for (j, (name, shift)) in SCORE_JUDGES.iter().enumerate() {
        let mut c = preset("sim-grader-unbiased.toml");
        c.name = (*name).into();
        c.seed = 1_000_003 * (j as u64 + 1) + audit;
        c.sim_grades = Some(SimGrades {
            score_shift: [("apology".to_string(), *shift)].into_iter().collect(),
            ..SimGrades::default()
        });
        out.push(c);
    }
    for (j, (name, flip)) in LABEL_JUDGES.iter().enumerate() {
        let mut c = preset("sim-safety-apology.toml");
        c.name = (*name).into();
        c.seed = 2_000_003 * (j as u64 + 1) + audit;
        let grades = c.sim_grades.get_or_insert_with(SimGrades::default);
        grades.label_flip = [("apology".to_string(), *flip)].into_iter().collect();
        out.push(c);
    }
    out
}

/// One audit through the pipeline, in a fresh temporary run directory: its pointwise section.
fn run_audit(audit: u64, pairs: usize, scratch: &Path) -> PointwiseSection {
    let dir = tempfile::tempdir_in(scratch).expect("a temporary directory");
    let data = dir.path().join("pairs.jsonl");
    let mut file = std::fs::File::create(&data).expect("a dataset file");
    for pair in synthetic_pairs(pairs, 7_000 + audit) {
        writeln!(file, "{}", serde_json::to_string(&pair).unwrap()).unwrap();
    }
    drop(file);
    let mut config = AuditConfig::empty();
    config.seed = audit;
    config.dataset.path = Some(data);
    config.design.artifacts = ARTIFACTS.iter().map(|a| a.to_string()).collect();
    config.design.bootstrap_resamples = RESAMPLES;
    config.inline_judges = judges(audit);
    let prepared = audit::prepare(&config, dir.path()).expect("the audit prepares");
    let out = dir.path().join("run");
    let options = ExecOptions {
        quiet: true,
        max_cost: None,
        cache_dir: None,
        max_calls: None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let outcome = runtime
        .block_on(audit::execute(&prepared, &out, &options))
        .expect("the audit runs");
    let summary = audit::summarize(&prepared, &outcome);
    summary.pointwise.expect("a pointwise section")
}

/// Per (judge, artifact): audits, coverage, tests at p < 0.05, and sums for the mean estimate.
#[derive(Default)]
struct Cell {
    n: u64,
    covered: u64,
    wilcoxon: u64,
    sign: u64,
    mcnemar: u64,
    holm: u64,
    sum: f64,
    sum_sq: f64,
    items: u64,
}

impl Cell {
    fn add(&mut self, estimate: f64) {
        self.sum += estimate;
        self.sum_sq += estimate * estimate;
    }

    fn rate(&self, k: u64) -> f64 {
        k as f64 / self.n as f64
    }

    /// Mean estimate over audits and its Monte Carlo standard error.
    fn mean_and_se(&self) -> (f64, f64) {
        let n = self.n as f64;
        let mean = self.sum / n;
        let var = (self.sum_sq / n - mean * mean).max(0.0) * n / (n - 1.0);
        (mean, (var / n).sqrt())
    }
}

#[test]
#[ignore = "Monte Carlo through the pipeline, about 3 min in release: cargo test --release --test pointwise_pipeline_calibration -- --ignored --nocapture"]
fn pointwise_pipeline_calibration() {
    let audits = env_or("PW_AUDITS", 500);
    let offset = env_or("PW_OFFSET", 0);
    let pairs = env_or("PW_PAIRS", 200) as usize;
    // Run stores are small SQLite files written call by call: keep them in memory when possible.
    let shm = Path::new("/dev/shm");
    let scratch = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let label_preset = preset("sim-safety-apology.toml");
    let label_sim = label_preset.sim.clone().expect("a [sim] table");
    let positive = label_preset
        .sim_grades
        .as_ref()
        .and_then(|g| g.positive_rate)
        .unwrap_or(0.5);
    let score_sim = preset("sim-grader-unbiased.toml")
        .sim
        .expect("a [sim] table");
    let truth: BTreeMap<(String, String), f64> = SCORE_JUDGES
        .iter()
        .flat_map(|(name, shift)| {
            [
                ((name.to_string(), "apology".to_string()), *shift),
                ((name.to_string(), "authority".to_string()), 0.0),
            ]
        })
        .chain(LABEL_JUDGES.iter().flat_map(|(name, flip)| {
            [
                (
                    (name.to_string(), "apology".to_string()),
                    flip_truth(label_sim.noise, positive, *flip),
                ),
                (
                    (name.to_string(), "authority".to_string()),
                    flip_truth(label_sim.noise, positive, 0.0),
                ),
            ]
        }))
        .collect();

    let started = Instant::now();
    let sections: Vec<PointwiseSection> = (offset..offset + audits)
        .into_par_iter()
        .map(|audit| run_audit(audit, pairs, &scratch))
        .collect();
    let wall = started.elapsed();

    let mut cells: BTreeMap<(String, String), Cell> = BTreeMap::new();
    let mut verdicts: BTreeMap<String, BTreeMap<Trust, u64>> = BTreeMap::new();
    let mut holm_any: BTreeMap<String, u64> = BTreeMap::new();
    // Why judges were not ADOPTed: audits per (judge, rule).
    let mut rules: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for section in &sections {
        for judge in &section.judges {
            *verdicts
                .entry(judge.judge.clone())
                .or_default()
                .entry(judge.trust.verdict)
                .or_default() += 1;
            for reason in &judge.trust.reasons {
                *rules
                    .entry(judge.judge.clone())
                    .or_default()
                    .entry(format!("{} ({:?})", reason.rule, reason.severity))
                    .or_default() += 1;
            }
            let criterion = &judge.criteria[0];
            let mut any = false;
            for s in &criterion.score_shifts {
                let key = (judge.judge.clone(), s.artifact.clone());
                let cell = cells.entry(key.clone()).or_default();
                cell.n += 1;
                cell.items += s.n;
                cell.covered += u64::from(s.interval.contains(truth[&key]));
                cell.wilcoxon += u64::from(s.wilcoxon.p_value < 0.05);
                cell.sign += u64::from(s.sign_p < 0.05);
                cell.holm += u64::from(s.p_holm < 0.05);
                any |= s.p_holm < 0.05;
                cell.add(s.mean_shift);
            }
            for f in &criterion.label_flips {
                let key = (judge.judge.clone(), f.artifact.clone());
                let cell = cells.entry(key.clone()).or_default();
                cell.n += 1;
                cell.items += f.positive_to_negative.n;
                let rate = &f.positive_to_negative;
                cell.covered += u64::from(rate.interval.contains(truth[&key]));
                cell.mcnemar += u64::from(f.mcnemar_p < 0.05);
                cell.holm += u64::from(f.p_holm < 0.05);
                any |= f.p_holm < 0.05;
                cell.add(rate.rate);
            }
            *holm_any.entry(judge.judge.clone()).or_default() += u64::from(any);
        }
    }

    println!(
        "{audits} audits (from {offset}) × {pairs} pairs ({} answers), artifacts apology and authority, {RESAMPLES} resamples, wall {:.1} s",
        2 * pairs,
        wall.as_secs_f64()
    );
    println!(
        "score graders: accuracy {}, noise {}, invalid {}; classifiers: noise {}, invalid {}, positive rate {positive}",
        score_sim.accuracy,
        score_sim.noise,
        score_sim.invalid_rate,
        label_sim.noise,
        label_sim.invalid_rate
    );
    println!(
        "| judge | artifact | true value | mean estimate (± MC SE) | coverage of 95% CI | Wilcoxon | sign | McNemar | Holm |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut failures = Vec::new();
    // (what, flagged audits, audits) for every rate of an unbiased judge held to the 5% bar.
    let mut null_rates: Vec<(String, u64, u64)> = Vec::new();
    for (key, cell) in &cells {
        let (judge, artifact) = key;
        let value = truth[key];
        let coverage = cell.rate(cell.covered);
        let (mean, se) = cell.mean_and_se();
        let label = judge.starts_with("label");
        let pct = |k: u64| format!("{:.1}%", 100.0 * cell.rate(k));
        println!(
            "| {judge} | {artifact} | {value:.4} | {mean:.4} ± {se:.4} | {:.1}% | {} | {} | {} | {} |",
            100.0 * coverage,
            if label {
                "—".into()
            } else {
                pct(cell.wilcoxon)
            },
            if label { "—".into() } else { pct(cell.sign) },
            if label {
                pct(cell.mcnemar)
            } else {
                "—".into()
            },
            pct(cell.holm),
        );
        assert_eq!(cell.n, audits, "{judge}/{artifact}: one estimate per audit");
        if coverage < 0.93 {
            failures.push(format!("{judge}/{artifact}: coverage {coverage:.3}"));
        }
        if (mean - value).abs() > 4.0 * se.max(1e-9) {
            failures.push(format!(
                "{judge}/{artifact}: mean estimate {mean:.4} is not the true {value:.4} (MC SE {se:.4})"
            ));
        }
        let unbiased = judge.ends_with("-0");
        let planted = !unbiased && artifact == "apology";
        if unbiased {
            for (test, k) in [
                ("Wilcoxon", cell.wilcoxon),
                ("sign test", cell.sign),
                ("McNemar", cell.mcnemar),
            ] {
                // Each cell is tested by its own kind's tests only (the others count nothing).
                if (test == "McNemar") != label {
                    continue;
                }
                null_rates.push((format!("{judge}/{artifact}: flagged by {test}"), k, cell.n));
            }
        }
        let detected = if label { cell.mcnemar } else { cell.wilcoxon };
        if planted && value >= 0.4 && cell.rate(detected) < 0.9 {
            failures.push(format!(
                "{judge}/{artifact}: planted effect detected in {:.3}",
                cell.rate(detected)
            ));
        }
    }
    println!(
        "| judge | Holm-significant (any artifact) | ADOPT | CAUTION | REJECT | COULD NOT AUDIT |"
    );
    println!("|---|---|---|---|---|---|");
    for (judge, counts) in &verdicts {
        let share = |t: Trust| 100.0 * counts.get(&t).copied().unwrap_or(0) as f64 / audits as f64;
        let any = holm_any[judge] as f64 / audits as f64;
        println!(
            "| {judge} | {:.1}% | {:.1}% | {:.1}% | {:.1}% | {:.1}% |",
            100.0 * any,
            share(Trust::Adopt),
            share(Trust::Caution),
            share(Trust::Reject),
            share(Trust::CouldNotAudit)
        );
        if judge.ends_with("-0") {
            let rejected = counts.get(&Trust::Reject).copied().unwrap_or(0);
            null_rates.push((format!("{judge}: Holm-flagged"), holm_any[judge], audits));
            null_rates.push((format!("{judge}: REJECTed"), rejected, audits));
        }
    }
    for (judge, counts) in &rules {
        let list: Vec<String> = counts
            .iter()
            .map(|(rule, k)| format!("{rule} in {:.1}%", 100.0 * *k as f64 / audits as f64))
            .collect();
        println!("{judge}: reasons: {}", list.join(", "));
    }
    // A rate measured on n audits is above the 5% bar beyond Monte Carlo error when the one-sided
    // exact binomial test of "at most 5%" rejects; Bonferroni over the checks keeps the chance
    // that a judge truly at 5% fails the test at 1% or less.
    let alpha = 0.01 / null_rates.len() as f64;
    println!("unbiased judges against the 5% bar (one-sided exact binomial, each at {alpha:.5}):");
    for (what, count, n) in &null_rates {
        let p = upper_tail(*count, *n, 0.05);
        println!(
            "  {what} in {count} of {n} ({:.2}%), P(≥ {count} | 5%) = {p:.4}",
            100.0 * *count as f64 / *n as f64
        );
        if p < alpha {
            failures.push(format!(
                "{what} in {count} of {n} audits: above 5% beyond Monte Carlo error (p = {p:.2e})"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// P(X ≥ count) for X ~ Binomial(n, p).
fn upper_tail(count: u64, n: u64, p: f64) -> f64 {
    use statrs::distribution::{Binomial, DiscreteCDF};
    if count == 0 {
        return 1.0;
    }
    Binomial::new(p, n).expect("a binomial").sf(count - 1)
}
