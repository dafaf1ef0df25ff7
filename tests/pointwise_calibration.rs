//! Monte Carlo self-validation of the pointwise statistics (`analyze::pointwise`): many simulated
//! audits of score and label judges with planted effects. Checks that
//! - the 95% pair-clustered bootstrap interval of the mean score shift covers the planted shift
//!   in at least 93% of audits,
//! - an unbiased score judge is flagged (Wilcoxon, and separately the sign test, p < 0.05) in at
//!   most 5% of audits,
//!   and an unbiased label judge by exact McNemar in at most 5%,
//! - planted shifts and flips are detected.
//!
//! Grades are drawn directly (latent quality per pair shared by its two answers, so clusters
//! matter; judge noise of ±1 on each call; the artifact adds +1 with probability `q`, so the
//! planted mean shift is exactly `q`: scores stay inside 2..=9 on a 1..=10 scale and never clip).
//! Ignored by default: `cargo test --test pointwise_calibration -- --ignored --nocapture`.
//! `tests/pointwise_pipeline_calibration.rs` runs the same checks through the audit pipeline
//! with the simulated pointwise judges; this one keeps the statistics layer alone, BCa included.

use judge_audit::analyze::pointwise::{GradeRecord, label_flips, score_shift};
use judge_audit::judge::grade::Grade;
use judge_audit::stats::{BootstrapConfig, BootstrapMethod};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const AUDITS: u64 = 1000;
const PAIRS: usize = 40;

/// One simulated score audit: 2 answers per pair, baseline at repeats 0 and 1, artifact once.
fn score_audit(seed: u64, q: f64) -> Vec<GradeRecord> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for p in 0..PAIRS {
        let latent: i64 = rng.random_range(3..=7);
        for side in ["a", "b"] {
            let own = latent + rng.random_range(-1..=1);
            let noisy = |rng: &mut ChaCha8Rng| {
                let u: f64 = rng.random();
                own + if u < 0.15 {
                    -1
                } else if u < 0.30 {
                    1
                } else {
                    0
                }
            };
            let id = format!("p{p}/{side}");
            for repeat in 0..2 {
                out.push(GradeRecord {
                    item_id: id.clone(),
                    cluster: format!("p{p}"),
                    artifact: None,
                    repeat,
                    grade: Grade::Score(noisy(&mut rng).clamp(1, 10) as f64),
                    probability: None,
                });
            }
            let bump = i64::from(rng.random::<f64>() < q);
            out.push(GradeRecord {
                item_id: id.clone(),
                cluster: format!("p{p}"),
                artifact: Some("authority".into()),
                repeat: 0,
                grade: Grade::Score((noisy(&mut rng) + bump).clamp(1, 10) as f64),
                probability: None,
            });
        }
    }
    out
}

/// One simulated label audit: each answer unsafe with probability 0.4; the judge reads it
/// correctly with probability 0.9 each call; the artifact turns an unsafe verdict into safe with
/// probability `flip`.
fn label_audit(seed: u64, flip: f64) -> Vec<GradeRecord> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for i in 0..PAIRS * 2 {
        let unsafe_gold = rng.random::<f64>() < 0.4;
        let read = |rng: &mut ChaCha8Rng| unsafe_gold == (rng.random::<f64>() < 0.9);
        let label = |u: bool| Grade::Label(if u { "unsafe" } else { "safe" }.into());
        let id = format!("x{i}");
        out.push(GradeRecord {
            item_id: id.clone(),
            cluster: id.clone(),
            artifact: None,
            repeat: 0,
            grade: label(read(&mut rng)),
            probability: None,
        });
        let mut after = read(&mut rng);
        if after && rng.random::<f64>() < flip {
            after = false;
        }
        out.push(GradeRecord {
            item_id: id.clone(),
            cluster: id,
            artifact: Some("apology".into()),
            repeat: 0,
            grade: label(after),
            probability: None,
        });
    }
    out
}

#[test]
#[ignore = "Monte Carlo calibration: cargo test --test pointwise_calibration -- --ignored --nocapture"]
fn pointwise_calibration() {
    let mut lines = Vec::new();
    for (method, name) in [
        (BootstrapMethod::Percentile, "percentile"),
        (BootstrapMethod::Bca, "bca"),
    ] {
        for q in [0.0, 0.3] {
            let (mut covered, mut flagged, mut sign_flagged) = (0u64, 0u64, 0u64);
            for audit in 0..AUDITS {
                let records = score_audit(audit * 7919 + (q * 10.0) as u64, q);
                let config = BootstrapConfig {
                    resamples: 1000,
                    seed: audit,
                    confidence: 0.95,
                    method,
                };
                let s = score_shift(&records, "authority", &config).unwrap();
                covered += u64::from(s.interval.contains(q));
                flagged += u64::from(s.wilcoxon.p_value < 0.05);
                sign_flagged += u64::from(s.sign_p < 0.05);
            }
            let coverage = covered as f64 / AUDITS as f64;
            let flag_rate = flagged as f64 / AUDITS as f64;
            let sign_rate = sign_flagged as f64 / AUDITS as f64;
            lines.push(format!(
                "score shift q={q} {name}: coverage {coverage:.3}, Wilcoxon flagged {flag_rate:.3}, sign test flagged {sign_rate:.3}"
            ));
            assert!(coverage >= 0.93, "{name} q={q}: coverage {coverage}");
            if q == 0.0 {
                assert!(sign_rate <= 0.05, "{name}: sign test flagged {sign_rate}");
                assert!(flag_rate <= 0.05, "{name}: unbiased flagged {flag_rate}");
            } else {
                assert!(
                    flag_rate >= 0.8,
                    "{name}: planted shift detected {flag_rate}"
                );
            }
        }
    }
    for flip in [0.0, 0.4] {
        let (mut flagged, mut covered) = (0u64, 0u64);
        for audit in 0..AUDITS {
            let records = label_audit(audit * 104_729 + (flip * 10.0) as u64, flip);
            let f = label_flips(&records, "apology", "unsafe", 0.95).unwrap();
            flagged += u64::from(f.mcnemar_p < 0.05);
            // Expected unsafe -> safe rate among baseline-unsafe verdicts, by Bayes over the
            // simulation's parameters: P(read unsafe after | read unsafe before) then the flip.
            let (pu, acc) = (0.4, 0.9);
            let before_u = pu * acc + (1.0 - pu) * (1.0 - acc);
            let both_u = pu * acc * acc + (1.0 - pu) * (1.0 - acc) * (1.0 - acc);
            let expected = 1.0 - both_u / before_u * (1.0 - flip);
            covered += u64::from(f.positive_to_negative.interval.contains(expected));
        }
        let flag_rate = flagged as f64 / AUDITS as f64;
        let coverage = covered as f64 / AUDITS as f64;
        lines.push(format!(
            "label flips flip={flip}: McNemar flagged {flag_rate:.3}, Wilson coverage of the unsafe->safe rate {coverage:.3}"
        ));
        assert!(coverage >= 0.93, "flip={flip}: coverage {coverage}");
        if flip == 0.0 {
            assert!(
                flag_rate <= 0.05,
                "unbiased label judge flagged {flag_rate}"
            );
        } else {
            assert!(flag_rate >= 0.8, "planted flips detected {flag_rate}");
        }
    }
    for line in lines {
        println!("{line}");
    }
}
