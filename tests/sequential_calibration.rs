//! Monte Carlo validation of sequential audits (issue 17): in-process simulated audits of nine
//! judges with a planted apology effect of 0, ±0.1, ±0.2, ±0.3 or ±0.5 (and none on authority
//! and position), each audited twice from the same simulated replies: with the full plan and the
//! fixed-n rule, and sequentially in waves with the anytime-valid intervals. Checks that
//! - the sequential level (ADOPT/CAUTION/REJECT from the cells: T, and with T established the
//!   WR and excess-flip rejection rules) equals the full-plan level (the fixed-n T rule, and with
//!   T significant the fixed-n WR rule at the second family's α) in ≥ 95% of judge audits,
//! - the sequential audit uses ≥ 40% fewer calls over the planted mix (per-effect savings printed),
//! - the anytime-valid intervals cover the planted T at the stopping time in ≥ 93% of cells,
//! - the unbiased judge is flagged (CAUTION or REJECT) in ≤ 5% of audits,
//! - the WR and flip-rate intervals cover their pooled full-plan means (no closed form for the
//!   simulated judge) at the stopping time in ≥ 93% of cells.
//!
//! Ignored by default (about 5.5 minutes in release on the shared 2-core machine: 300 audits of
//! 129,600 simulated calls each). Run with
//! `cargo test --release --test sequential_calibration -- --ignored --nocapture`
//! (`SEQ_AUDITS=N` changes the number of audits; at 100 the unbiased judge's flag rate, a count
//! out of 100, is too noisy for the 5% bound: the first 100 seeds give 6).

use judge_audit::analyze::sequential::{
    CellDecision, Sequential, SequentialOptions, fixed_n_decision,
};
use judge_audit::analyze::simulate::{SimulatedDesign, synthetic_pairs};
use judge_audit::analyze::trust::Trust;
use judge_audit::design::{ConditionKind, DesignOptions, slot_contents};
use judge_audit::judge::config::{Backend, SimParams};
use judge_audit::judge::sim::SimJudge;
use judge_audit::judge::{JudgeConfig, Slot, SlotVerdict};
use judge_audit::perturb::{Artifact, Catalog};
use judge_audit::run::CallRecord;
use judge_audit::stats::Interval;
use std::collections::{BTreeMap, HashMap};

const EFFECTS: [f64; 9] = [0.0, 0.1, -0.1, 0.2, -0.2, 0.3, -0.3, 0.5, -0.5];
const ARTIFACTS: [&str; 3] = ["apology", "authority", "position"];
const PAIRS: usize = 800;

fn audits() -> u64 {
    std::env::var("SEQ_AUDITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

fn judge(name: &str, seed: u64, effect: f64) -> SimJudge {
    let mut config = JudgeConfig::new(name, Backend::Sim);
    config.seed = seed;
    config.sim = Some(SimParams {
        accuracy: 0.8,
        position_bias: 0.0,
        noise: 0.1,
        tie_rate: 0.1,
        invalid_rate: 0.02,
        artifact_preference: [("apology".to_string(), effect)].into_iter().collect(),
    });
    SimJudge::new(&config).expect("valid simulated judge")
}

/// Per-pair T values of every (judge, artifact) cell over the whole plan: the full-plan audit.
fn full_plan_values(
    design: &SimulatedDesign,
    records: &[CallRecord],
) -> BTreeMap<(usize, String), Vec<f64>> {
    let mut sums: BTreeMap<(usize, String, usize), (f64, u32)> = BTreeMap::new();
    for (spec, record) in design.plan.calls.iter().zip(records) {
        if spec.kind != ConditionKind::TieDetection {
            continue;
        }
        let slot = slot_contents(spec).artifact_slot.unwrap_or(Slot::First);
        let score =
            match (record.verdict, slot) {
                (Some(SlotVerdict::First), Slot::First)
                | (Some(SlotVerdict::Second), Slot::Second) => 1.0,
                (Some(SlotVerdict::First), Slot::Second)
                | (Some(SlotVerdict::Second), Slot::First) => -1.0,
                (Some(SlotVerdict::Tie), _) => 0.0,
                _ => continue,
            };
        let artifact = spec
            .artifact
            .clone()
            .expect("tie detection has an artifact");
        let e = sums
            .entry((spec.judge_index, artifact, spec.pair_index))
            .or_default();
        e.0 += score;
        e.1 += 1;
    }
    let mut values: BTreeMap<(usize, String), Vec<f64>> = BTreeMap::new();
    for ((j, a, _), (s, n)) in sums {
        values.entry((j, a)).or_default().push(s / n as f64);
    }
    values
}

#[derive(Default)]
struct Tally {
    audits: u64,
    agree: u64,
    flagged: u64,
    full_flagged: u64,
    calls_seq: u64,
    calls_full: u64,
}

#[test]
#[ignore = "Monte Carlo, 10 to 40 min in release on 2 cores: cargo test --release --test sequential_calibration -- --ignored --nocapture"]
fn sequential_audits_match_full_plan_with_fewer_calls() {
    let catalog = Catalog::builtin();
    let artifacts: Vec<&Artifact> = ARTIFACTS
        .iter()
        .map(|id| catalog.get(id).expect("built-in artifact"))
        .collect();
    let pairs = synthetic_pairs(PAIRS, 23);
    let names: Vec<String> = EFFECTS.iter().map(|e| format!("sim-{e:+.1}")).collect();
    let design = SimulatedDesign::new(&pairs, &artifacts, &names, &DesignOptions::default(), 23);
    let alpha = 0.05;
    let cell_alpha = alpha / ARTIFACTS.len() as f64;
    let size = 0.2;
    let wr_size = 0.1;
    let mut tallies: Vec<Tally> = EFFECTS.iter().map(|_| Tally::default()).collect();
    let (mut covered, mut cells) = (0u64, 0u64);
    // WR and flip have no closed-form truth for the simulated judge: their coverage is checked
    // against the pooled full-plan mean over every audit (300 × 800 pairs per cell).
    let mut secondary_at_stop: BTreeMap<(usize, String), Vec<(Interval, Interval)>> =
        BTreeMap::new();
    let mut pooled: BTreeMap<(usize, String), (f64, f64, f64, f64)> = BTreeMap::new();
    for audit in 0..audits() {
        let sims: Vec<SimJudge> = names
            .iter()
            .zip(EFFECTS)
            .enumerate()
            .map(|(j, (name, e))| judge(name, 1_000_000 * j as u64 + audit, e))
            .collect();
        let records = design.records(&sims, false);
        let by_id: HashMap<&str, &CallRecord> =
            records.iter().map(|r| (r.call_id.as_str(), r)).collect();

        // Full plan: the fixed-n rule on every cell.
        let values = full_plan_values(&design, &records);
        // The full plan's per-pair WR, flip and noise values: the engine run as one wave.
        let mut one_wave = Sequential::new(
            &design.plan,
            &SequentialOptions {
                wave_pairs: PAIRS,
                ..SequentialOptions::default()
            },
        );
        assert!(one_wave.replay(&design.plan, &by_id).is_none());
        let full = one_wave.summary();
        let mut full_level = vec![Trust::Adopt; names.len()];
        for ((j, artifact), v) in &values {
            let mut level = fixed_n_decision(v, cell_alpha, size).level();
            // The trust rules' second test at fixed n: with T significant, |WR| significant
            // at or beyond its rejection size rejects (the second family's α per interval).
            let cell = full
                .cells
                .iter()
                .find(|c| c.judge == names[*j] && c.artifact == *artifact)
                .expect("every cell");
            if level != Trust::Adopt
                && fixed_n_decision(cell.wr_values(), cell.secondary_alpha, wr_size)
                    == CellDecision::Reject
            {
                level = Trust::Reject;
            }
            full_level[*j] = full_level[*j].max(level);
        }

        // Sequential, from the same replies.
        let options = SequentialOptions {
            wave_pairs: 16,
            alpha,
            reject_size: size,
            reject_wr: wr_size,
            reject_excess_flip: 0.1,
            seed: audit,
            max_calls: None,
        };
        let mut engine = Sequential::new(&design.plan, &options);
        assert!(engine.replay(&design.plan, &by_id).is_none());
        let summary = engine.summary();
        for cell in &summary.cells {
            let j = names.iter().position(|n| *n == cell.judge).unwrap();
            let planted = if cell.artifact == "apology" {
                EFFECTS[j]
            } else {
                0.0
            };
            cells += 1;
            covered += cell.interval.contains(planted) as u64;
            let key = (j, cell.artifact.clone());
            secondary_at_stop
                .entry(key.clone())
                .or_default()
                .push((cell.wr_interval, cell.flip_interval));
        }
        for cell in &full.cells {
            let j = names.iter().position(|n| *n == cell.judge).unwrap();
            let e = pooled.entry((j, cell.artifact.clone())).or_default();
            e.0 += cell.wr_values().iter().sum::<f64>();
            e.1 += cell.wr_values().len() as f64;
            e.2 += cell.flip_values().iter().sum::<f64>();
            e.3 += cell.flip_values().len() as f64;
        }
        for (j, name) in names.iter().enumerate() {
            let t = &mut tallies[j];
            let seq = summary.judges[name];
            t.audits += 1;
            t.agree += (seq == full_level[j]) as u64;
            t.flagged += (seq != Trust::Adopt) as u64;
            t.full_flagged += (full_level[j] != Trust::Adopt) as u64;
            t.calls_seq += summary.calls_by_judge[name];
            t.calls_full += design
                .plan
                .calls
                .iter()
                .filter(|c| c.judge_index == j)
                .count() as u64;
        }
    }
    let (mut agree, mut total, mut saving_sum) = (0u64, 0u64, 0.0);
    println!("effect  agree   flagged (sequential / full plan)  calls saved");
    for (t, e) in tallies.iter().zip(EFFECTS) {
        let saving = 1.0 - t.calls_seq as f64 / t.calls_full as f64;
        println!(
            "{e:+.1}    {:.3}   {:.3} / {:.3}    {:.1}%",
            t.agree as f64 / t.audits as f64,
            t.flagged as f64 / t.audits as f64,
            t.full_flagged as f64 / t.audits as f64,
            100.0 * saving
        );
        agree += t.agree;
        total += t.audits;
        saving_sum += saving;
    }
    let agreement = agree as f64 / total as f64;
    let saving = saving_sum / EFFECTS.len() as f64;
    let coverage = covered as f64 / cells as f64;
    let null_flag = tallies[0].flagged as f64 / tallies[0].audits as f64;
    let (mut wr_cov, mut flip_cov, mut n_cov) = (0u64, 0u64, 0u64);
    for (key, intervals) in &secondary_at_stop {
        let (ws, wn, fs, fnn) = pooled[key];
        let (wr_truth, flip_truth) = (ws / wn, fs / fnn);
        for (wr, flip) in intervals {
            n_cov += 1;
            wr_cov += wr.contains(wr_truth) as u64;
            flip_cov += flip.contains(flip_truth) as u64;
        }
    }
    let wr_coverage = wr_cov as f64 / n_cov as f64;
    let flip_coverage = flip_cov as f64 / n_cov as f64;
    println!(
        "coverage at stop of the second family (against the pooled full-plan mean): WR {wr_coverage:.4}, flip rate {flip_coverage:.4}"
    );
    println!(
        "audits {}: agreement {agreement:.3}, mean saving {:.1}%, coverage at stop {coverage:.4}, unbiased flagged {null_flag:.3}",
        audits(),
        100.0 * saving
    );
    assert!(agreement >= 0.95, "agreement {agreement}");
    assert!(saving >= 0.40, "saving {saving}");
    assert!(coverage >= 0.93, "coverage {coverage}");
    assert!(null_flag <= 0.05, "unbiased flagged {null_flag}");
    assert!(wr_coverage >= 0.93, "WR coverage {wr_coverage}");
    assert!(flip_coverage >= 0.93, "flip coverage {flip_coverage}");
}
