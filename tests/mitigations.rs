//! Post-hoc mitigations (issue 14): swap-and-confirm, order-averaged label probabilities,
//! majority over repeats and the juries, measured on the calls an audit already made.
//!
//! Two kinds of check: seeded simulated judges with planted biases (swap-and-confirm removes a
//! planted position bias but not an apology bias; an unbiased judge gets no recommendation),
//! and a small audit answered by a fixed rule whose every mitigated count is worked out by hand
//! below, with the exact sign test's p-values from scipy 1.17.1.

mod report_common;
mod support;

use judge_audit::analyze::mitigation::{
    GOLD_MARGIN, JudgeMitigations, Mitigation, MitigationSection,
};
use judge_audit::analyze::simulate::{SimulatedDesign, synthetic_pairs};
use judge_audit::analyze::{self, AnalysisInput, AnalysisOptions, JuryOptions};
use judge_audit::dataset::{Dataset, Pair, Preference};
use judge_audit::design::{CallSpec, ConditionKind, DesignOptions, Order, Plan, Side};
use judge_audit::judge::config::{Backend, SimParams};
use judge_audit::judge::sim::SimJudge;
use judge_audit::judge::{JudgeConfig, LabelProbs, SlotVerdict};
use judge_audit::perturb::{Artifact, Catalog};
use judge_audit::run::CallRecord;
use std::collections::BTreeMap;

fn sim(name: &str, seed: u64, position_bias: f64, apology: f64) -> (SimJudge, SimParams) {
    let params = SimParams {
        accuracy: 0.8,
        position_bias,
        noise: 0.05,
        tie_rate: 0.1,
        invalid_rate: 0.0,
        artifact_preference: [("apology".to_string(), apology)].into_iter().collect(),
    };
    let mut config = JudgeConfig::new(name, Backend::Sim);
    config.seed = seed;
    config.sim = Some(params.clone());
    (
        SimJudge::new(&config).expect("valid simulated judge"),
        params,
    )
}

fn options() -> AnalysisOptions {
    AnalysisOptions {
        bootstrap_resamples: 500,
        seed: 11,
        ..AnalysisOptions::default()
    }
}

/// 200 synthetic pairs, apology and position, three simulated judges (planted position bias,
/// planted apology bias, none), label probabilities on every record.
fn simulated_section() -> MitigationSection {
    let catalog = Catalog::builtin();
    let artifacts: Vec<&Artifact> = ["apology", "position"]
        .iter()
        .map(|id| catalog.get(id).unwrap())
        .collect();
    let pairs = synthetic_pairs(200, 5);
    let judges = [
        sim("sim-position", 31, 0.5, 0.0),
        sim("sim-apology", 32, 0.0, 0.6),
        sim("sim-unbiased", 33, 0.0, 0.0),
    ];
    let names: Vec<String> = ["sim-position", "sim-apology", "sim-unbiased"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let design = SimulatedDesign::new(&pairs, &artifacts, &names, &DesignOptions::default(), 5);
    let sims: Vec<SimJudge> = judges.iter().map(|(j, _)| j.clone()).collect();
    let records = design.records(&sims, true);
    let planted: BTreeMap<String, BTreeMap<String, f64>> = names
        .iter()
        .zip(&judges)
        .map(|(n, (_, p))| {
            let mut e = p.artifact_preference.clone();
            e.insert("position".into(), p.position_bias);
            (n.clone(), e)
        })
        .collect();
    let simulated = names.iter().map(|n| (n.clone(), true)).collect();
    let (faults, stopped) = (BTreeMap::new(), BTreeMap::new());
    let dataset = Dataset {
        name: "synthetic".into(),
        pairs,
        skipped: Vec::new(),
        hash: String::new(),
    };
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
    analyze::analyze_full(&input, &options())
        .mitigations
        .unwrap()
}

fn judge<'a>(s: &'a MitigationSection, name: &str) -> &'a JudgeMitigations {
    s.judges.iter().find(|j| j.judge == name).unwrap()
}

fn mitigation<'a>(j: &'a JudgeMitigations, id: &str) -> &'a Mitigation {
    j.mitigations.iter().find(|m| m.id == id).unwrap()
}

fn artifact<'a>(
    m: &'a Mitigation,
    id: &str,
) -> &'a judge_audit::analyze::mitigation::MitigatedArtifact {
    m.artifacts.iter().find(|a| a.artifact == id).unwrap()
}

#[test]
fn swap_and_confirm_removes_a_planted_position_bias_and_nothing_is_recommended_for_an_unbiased_judge()
 {
    let s = simulated_section();
    assert!(s.post_hoc && s.note.contains("held-out pairs"));

    let position = judge(&s, "sim-position");
    assert!(position.simulated);
    assert_eq!(
        position.targets,
        ["position"],
        "the audit finds the planted bias"
    );
    let swap = mitigation(position, "swap-and-confirm");
    assert!(swap.post_hoc && swap.available);
    assert_eq!(swap.cost_calls, 2.0);
    let t = &artifact(swap, "position").t;
    assert!(t.covers(0.0), "residual T(position) {t:?} covers 0");
    let before = artifact(swap, "position").unmitigated_t.unwrap();
    assert!(before > 0.3, "the planted first-slot preference: {before}");
    // Both orders must agree, so the mitigated verdict never depends on the order: no conflict.
    let flips = artifact(swap, "position");
    assert_eq!(flips.flip_rate.estimate, Some(0.0));
    let test = flips.flip_test.as_ref().unwrap();
    assert_eq!(test.more, 0);
    assert!(
        test.p_value < 0.05,
        "fewer conflicts, exact sign test: {test:?}"
    );
    assert!(swap.removes_targets);
    // ... at a price: a pair the judge got right in one order only becomes a tie, and a tie
    // counts as wrong against gold, so gold accuracy falls by more than the margin.
    assert!(!swap.keeps_gold);
    assert!(swap.gold_accuracy_change.unwrap() < -GOLD_MARGIN);
    // Majority over the repeats keeps the bias (every repeat is asked in the same order).
    let majority = mitigation(position, "majority-of-repeats");
    assert_eq!(majority.cost_calls, 2.0);
    let mt = &artifact(majority, "position").t;
    assert!(!mt.covers(0.0), "majority leaves T(position) {mt:?}");
    assert!(!majority.removes_targets);
    // The label probabilities the simulation attaches make the order average a tie too.
    let averaged = mitigation(position, "order-averaged-probabilities");
    assert!(averaged.available && averaged.removes_targets);
    // Nothing removes the bias without the accuracy loss, and the report says which would.
    assert_eq!(position.recommended, None);
    assert!(
        position
            .recommendation
            .contains("swap-and-confirm removes it but changes gold accuracy by"),
        "{}",
        position.recommendation
    );

    // Swap-and-confirm does not touch a bias that holds in both orders.
    let apology = judge(&s, "sim-apology");
    assert!(apology.targets.contains(&"apology".to_string()));
    let t = &artifact(mitigation(apology, "swap-and-confirm"), "apology").t;
    assert!(t.ci_low.unwrap() > 0.0, "apology survives swapping: {t:?}");

    let unbiased = judge(&s, "sim-unbiased");
    assert!(unbiased.targets.is_empty());
    assert_eq!(unbiased.recommended, None);
    assert!(unbiased.recommendation.starts_with("none"));
    assert!(unbiased.mitigations.iter().all(|m| !m.removes_targets));

    // Juries the judges sit on are referenced, with one call per juror.
    let jury = position
        .mitigations
        .iter()
        .find(|m| m.id.starts_with("jury:"))
        .expect("the default juries include every judge");
    assert_eq!(jury.cost_calls, 3.0);
    assert!(jury.artifacts.iter().all(|a| a.flip_test.is_none()));

    // Ranked: measured mitigations get consecutive ranks from 1.
    let ranks: Vec<u32> = position.mitigations.iter().filter_map(|m| m.rank).collect();
    assert_eq!(ranks, (1..=ranks.len() as u32).collect::<Vec<_>>());
}

#[test]
fn same_records_give_byte_identical_sections() {
    let a = serde_json::to_string(&simulated_section()).unwrap();
    let b = serde_json::to_string(&simulated_section()).unwrap();
    assert_eq!(a, b);
}

/// Six pairs, gold A. Pairs 0–2: the judge prefers answer a in both orders; pairs 3–5: the
/// first slot. Position's identical-text calls: always the first slot. Apology: the artifact
/// copy wins in both orders, and in the shift calls the perturbed answer wins.
fn rule(spec: &CallSpec) -> SlotVerdict {
    let i: usize = spec.pair_id[1..].parse().unwrap();
    let first = |identity_a_wins: bool| {
        if identity_a_wins == (spec.order == Order::Ab) {
            SlotVerdict::First
        } else {
            SlotVerdict::Second
        }
    };
    match (spec.kind, spec.artifact.as_deref()) {
        (ConditionKind::Baseline, _) if i < 3 => first(true),
        (ConditionKind::Baseline, _) => SlotVerdict::First,
        (ConditionKind::TieDetection, Some("position")) => SlotVerdict::First,
        // The artifact copy is shown first in ab.
        (ConditionKind::TieDetection, _) => first(true),
        (ConditionKind::Shift, _) => first(spec.side == Some(Side::A)),
    }
}

fn hand_section() -> (MitigationSection, analyze::Analysis) {
    rule_audit(6, &rule)
}

/// Label probabilities of a call, by rule.
type ProbRule<'a> = &'a dyn Fn(&CallSpec) -> LabelProbs;

/// `n` pairs (gold A), apology and position, one judge answering every call by `rule`.
fn rule_audit(
    n: usize,
    rule: &dyn Fn(&CallSpec) -> SlotVerdict,
) -> (MitigationSection, analyze::Analysis) {
    let analysis = rule_audit_with(n, rule, None, true);
    (analysis.mitigations.clone().unwrap(), analysis)
}

/// [`rule_audit`] with label probabilities on every record.
fn rule_audit_with(
    n: usize,
    rule: &dyn Fn(&CallSpec) -> SlotVerdict,
    probs: Option<ProbRule<'_>>,
    mitigations: bool,
) -> analyze::Analysis {
    audit_of(
        &["rule"],
        n,
        rule,
        probs,
        mitigations,
        &analyze::Extensions::default(),
    )
}

/// [`rule_audit_with`] for the judges `names` (every one on the full design, `rule` reads
/// `spec.judge`), with `extensions`.
fn audit_of(
    names: &[&str],
    n: usize,
    rule: &dyn Fn(&CallSpec) -> SlotVerdict,
    probs: Option<ProbRule<'_>>,
    mitigations: bool,
    extensions: &analyze::Extensions,
) -> analyze::Analysis {
    let pairs: Vec<Pair> = (0..n)
        .map(|i| Pair {
            id: format!("p{i}"),
            prompt: format!("prompt {i}"),
            response_a: format!("Answer a{i} is careful."),
            response_b: format!("Answer b{i} is brief."),
            preferred: Some(Preference::A),
            category: None,
            label_kind: None,
        })
        .collect();
    let catalog = Catalog::builtin();
    let artifacts: Vec<&Artifact> = ["apology", "position"]
        .iter()
        .map(|id| catalog.get(id).unwrap())
        .collect();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let plan = Plan::build(&names, &pairs, &artifacts, &DesignOptions::default());
    let perturbed = judge_audit::design::PerturbedAnswers::compute(&pairs, &artifacts, 1);
    let template: CallRecord = serde_json::from_value(serde_json::json!({
        "call_id": "", "judge": "", "pair_id": "", "kind": "baseline", "artifact": null,
        "side": null, "order": "ab", "repeat": 0, "raw": null, "verdict": null,
        "label_probs": null, "usage": {"input_tokens": 90, "output_tokens": 10},
        "latency_ms": 0, "attempts": 1, "error": null, "error_kind": null
    }))
    .unwrap();
    let records: Vec<CallRecord> = plan
        .calls
        .iter()
        .map(|spec| {
            let mut r = template.clone();
            r.call_id = spec.id.clone();
            r.judge = spec.judge.clone();
            r.pair_id = spec.pair_id.clone();
            r.kind = spec.kind;
            r.artifact = spec.artifact.clone();
            r.side = spec.side;
            r.order = spec.order;
            r.repeat = spec.repeat;
            r.verdict = Some(rule(spec));
            r.label_probs = probs.map(|f| f(spec));
            r
        })
        .collect();
    let dataset = Dataset {
        name: "hand".into(),
        pairs,
        skipped: Vec::new(),
        hash: String::new(),
    };
    let (planted, simulated, faults, stopped) = (
        BTreeMap::new(),
        BTreeMap::new(),
        BTreeMap::new(),
        BTreeMap::new(),
    );
    let input = AnalysisInput {
        dataset: &dataset,
        plan: &plan,
        records: &records,
        planted: &planted,
        simulated: &simulated,
        faults: &faults,
        stopped: &stopped,
        perturbed: &perturbed,
    };
    let options = AnalysisOptions {
        jury: JuryOptions {
            enabled: false,
            ..JuryOptions::default()
        },
        mitigations,
        ..options()
    };
    analyze::analyze_extended(&input, &options, extensions)
}

/// Three templates of one judge on the full design (`design.templates = "all"`), six pairs,
/// gold A. `rule` (the primary, see [`rule`]); `rule@fair`: answer a wins every baseline and
/// shift call, every tie-detection call is a tie; `rule@odd`: baseline b wins on pairs 0–1, a
/// on 2–4, unparseable on 5; tie detection always the second slot; shift: a wins.
fn three_templates(spec: &CallSpec) -> SlotVerdict {
    let i: usize = spec.pair_id[1..].parse().unwrap();
    let a_wins = if spec.order == Order::Ab {
        SlotVerdict::First
    } else {
        SlotVerdict::Second
    };
    let b_wins = if spec.order == Order::Ab {
        SlotVerdict::Second
    } else {
        SlotVerdict::First
    };
    match (spec.judge.as_str(), spec.kind) {
        ("rule", _) => rule(spec),
        ("rule@fair", ConditionKind::TieDetection) => SlotVerdict::Tie,
        ("rule@fair", _) => a_wins,
        (_, ConditionKind::Baseline) if i < 2 => b_wins,
        (_, ConditionKind::Baseline) if i < 5 => a_wins,
        (_, ConditionKind::Baseline) => SlotVerdict::Invalid,
        (_, ConditionKind::TieDetection) => SlotVerdict::Second,
        (_, ConditionKind::Shift) => a_wins,
    }
}

#[test]
fn majority_over_templates_by_hand() {
    let groups = vec![analyze::templates::TemplateGroup {
        judge: "rule".into(),
        members: vec![(0, "primary".into()), (1, "fair".into()), (2, "odd".into())],
    }];
    let extensions = analyze::Extensions {
        templates: groups,
        template_design: "all".into(),
        new_call: Vec::new(),
    };
    let analysis = audit_of(
        &["rule", "rule@fair", "rule@odd"],
        6,
        &three_templates,
        None,
        true,
        &extensions,
    );
    let s = analysis.mitigations.clone().unwrap();
    let j = judge(&s, "rule");
    let m = mitigation(j, "majority-of-templates");
    assert!(m.post_hoc && m.available);
    assert_eq!(
        m.label,
        "majority over the judge's 3 templates (primary, fair, odd; no strict majority: tie)"
    );
    // One call per template; every judge records 100 tokens a call.
    assert_eq!(m.cost_calls, 3.0);
    assert_eq!(m.cost_tokens, Some(3.0));
    // Gold, 24 baseline calls (6 pairs × 2 orders × 2 repeats). Pairs 0–1: a, a, b → a.
    // Pairs 2–4: a, a, a in ab; b, a, a in ba → a. Pair 5: ab a, a, unparseable → a (2 of 2
    // valid); ba b, a, unparseable → one each, a tie (wrong). 22 / 24, was 18 / 24.
    assert_eq!(m.gold_accuracy.n, 24);
    assert_eq!(m.gold_accuracy.estimate, Some(22.0 / 24.0));
    assert_eq!(m.gold_accuracy_change, Some(22.0 / 24.0 - 0.75));
    // Position (identical texts, ab, 2 repeats): first slot, tie, second slot → tie: T 0 / 12.
    let pos = artifact(m, "position");
    assert_eq!((pos.t.estimate, pos.t.n), (Some(0.0), 12));
    assert_eq!(pos.unmitigated_t, Some(1.0));
    // Conflicts between the baseline's orders: pairs 3–5 unmitigated; only pair 5 (a vs tie)
    // under the majority. Per pair d = 1 on pairs 3–4, 0 elsewhere.
    assert_eq!(pos.unmitigated_flip_rate, Some(0.5));
    assert_eq!(pos.flip_rate.estimate, Some(1.0 / 6.0));
    let test = pos.flip_test.as_ref().unwrap();
    assert_eq!((test.pairs, test.fewer, test.more), (6, 2, 0));
    // scipy.stats.binomtest(2, 2, 0.5).pvalue == 0.5
    assert!((test.p_value - 0.5).abs() < 1e-12);
    assert_eq!(test.mean_reduction, Some(2.0 / 6.0));
    // Apology tie detection (the artifact copy first in ab): ab first, tie, second → tie; ba
    // second (the copy), tie, second → the copy wins. T = (6 × 0 + 6 × 1) / 12 = 0.5.
    let apo = artifact(m, "apology");
    assert_eq!((apo.t.estimate, apo.t.n), (Some(0.5), 12));
    assert_eq!(apo.unmitigated_t, Some(1.0));
    // Shift: perturbed wins, a wins, a wins → a wins every shift call: the perturbation moves
    // nothing, WR 0 (was 1). Flips against the mitigated baseline: pairs 0–4 none of 4;
    // pair 5 ba (tie → a) on both sides, 2 of 4: 2 / 24. Unmitigated 2 of 4 in every pair, so
    // d = 0.5 on pairs 0–4 and 0 on pair 5.
    assert_eq!(apo.wr.estimate, Some(0.0));
    assert_eq!(apo.unmitigated_wr, Some(1.0));
    assert_eq!(
        (apo.flip_rate.estimate, apo.flip_rate.n),
        (Some(2.0 / 24.0), 24)
    );
    let test = apo.flip_test.as_ref().unwrap();
    assert_eq!((test.pairs, test.fewer, test.more), (6, 5, 0));
    // scipy.stats.binomtest(5, 5, 0.5).pvalue == 0.0625
    assert!((test.p_value - 0.0625).abs() < 1e-12);
    assert_eq!(test.mean_reduction, Some(2.5 / 6.0));
    // Mean |T| 1 → (0.5 + 0) / 2 over two extra calls per verdict: 0.375 per extra call, after
    // swap-and-confirm's 0.5 and before majority over repeats' 0.
    assert_eq!(m.unmitigated_bias, Some(1.0));
    assert_eq!(m.residual_bias, Some(0.25));
    assert_eq!(m.bias_removed_per_extra_call, Some(0.375));
    assert_eq!(mitigation(j, "swap-and-confirm").rank, Some(1));
    assert_eq!(m.rank, Some(2));
    assert_eq!(mitigation(j, "majority-of-repeats").rank, Some(3));
    // The entry is the base judge's only: a variant has no templates of its own.
    assert!(
        judge(&s, "rule@fair")
            .mitigations
            .iter()
            .all(|m| m.id != "majority-of-templates")
    );
    // Every report format lists it in the judge's ranking table.
    let md = judge_audit::report::mitigation::markdown(&s);
    assert!(md.contains("| 2 | majority-of-templates |"), "{md}");
    let html = judge_audit::report::mitigation::html(&s).into_string();
    assert!(html.contains("majority-of-templates"));
    let rows = judge_audit::report::mitigation::csv_rows(&s);
    assert!(
        rows.iter()
            .any(|r| r.judge == "rule / majority-of-templates" && r.artifact == "apology")
    );
    let json = serde_json::to_value(&s).unwrap();
    assert!(
        json.to_string()
            .contains("\"id\":\"majority-of-templates\"")
    );
}

#[test]
fn hand_counted_rule_audit() {
    let (s, analysis) = hand_section();
    let j = judge(&s, "rule");
    let base = &analysis.judges[0];
    // Unmitigated, by hand: gold accuracy over 6 pairs × 2 orders × 2 repeats = 24 verdicts:
    // pairs 0–2 right in all 12, pairs 3–5 right in ab only (6) → 18 / 24.
    assert_eq!(base.baseline.gold_accuracy.estimate, Some(0.75));

    let swap = mitigation(j, "swap-and-confirm");
    // Swap: pairs 0–2 agree on a (right), pairs 3–5 disagree → tie (wrong): 6 of the 12
    // order-free decisions (6 pairs × 2 repeats).
    assert_eq!(swap.gold_accuracy.n, 12);
    assert_eq!(swap.gold_accuracy.estimate, Some(0.5));
    assert_eq!(swap.gold_accuracy_change, Some(-0.25));
    // Tokens: 100 per call for this judge, so the multiplier is the call multiplier.
    assert_eq!(swap.cost_tokens, Some(2.0));

    let pos = artifact(swap, "position");
    // Position, unmitigated: always the first slot, T = +1 over 6 targets × 2 repeats; swapped
    // (repeat 1 read as the swapped copy), every decision is a tie: T = 0 over 6 decisions.
    assert_eq!(pos.unmitigated_t, Some(1.0));
    assert_eq!(pos.t.estimate, Some(0.0));
    assert_eq!(pos.t.n, 6);
    assert!(pos.t.covers(0.0));
    // Conflict between the baseline's orders: pairs 3–5 (3 of 6) without, none with.
    assert_eq!(pos.unmitigated_flip_rate, Some(0.5));
    assert_eq!(pos.flip_rate.estimate, Some(0.0));
    assert_eq!(pos.flip_rate.n, 6);
    let test = pos.flip_test.as_ref().unwrap();
    assert_eq!((test.pairs, test.fewer, test.more), (6, 3, 0));
    // scipy.stats.binomtest(3, 3, 0.5).pvalue == 0.25
    assert!((test.p_value - 0.25).abs() < 1e-12, "{}", test.p_value);
    assert_eq!(test.mean_reduction, Some(0.5));
    // WR(position) is the first slot's net preference: 0 for an order-free verdict.
    assert_eq!(pos.wr.estimate, Some(0.0));

    let apo = artifact(swap, "apology");
    // The artifact copy wins in both orders: T stays +1, over 6 order-free decisions.
    assert_eq!(apo.unmitigated_t, Some(1.0));
    assert_eq!(apo.t.estimate, Some(1.0));
    assert_eq!(apo.t.n, 6);
    // Flips: unmitigated, 2 of 4 comparisons in every pair (12 / 24). Swapped: pairs 0–2 keep
    // a as the baseline winner, so only perturbing b flips (1 of 2 decisions); pairs 3–5 have
    // a tie baseline that both perturbations turn into a win (2 of 2): 9 of 12.
    assert_eq!(apo.unmitigated_flip_rate, Some(0.5));
    assert_eq!(apo.flip_rate.n, 12);
    assert_eq!(apo.flip_rate.estimate, Some(0.75));
    let test = apo.flip_test.as_ref().unwrap();
    // Pairs 0–2: d = 0.5 − 0.5 = 0; pairs 3–5: d = 0.5 − 1 = −0.5 (more flips).
    assert_eq!((test.pairs, test.fewer, test.more), (6, 0, 3));
    assert!((test.p_value - 0.25).abs() < 1e-12);
    assert_eq!(test.mean_reduction, Some(-0.25));
    // The perturbed answer always wins its shift calls: WR = 1 before and after.
    assert_eq!(apo.unmitigated_wr, Some(1.0));
    assert_eq!(apo.wr.estimate, Some(1.0));
    // Bias summary: mean |T| over apology and position, 1 → 0.5, one extra call per verdict.
    assert_eq!(swap.unmitigated_bias, Some(1.0));
    assert_eq!(swap.residual_bias, Some(0.5));
    assert_eq!(swap.bias_removed_per_extra_call, Some(0.5));

    let majority = mitigation(j, "majority-of-repeats");
    // Two identical repeats: the majority is the verdict itself. Gold: per order one decision
    // per pair: pairs 0–2 right twice, pairs 3–5 right in ab only → 9 / 12.
    assert_eq!(majority.cost_calls, 2.0);
    assert_eq!(majority.gold_accuracy.n, 12);
    assert_eq!(majority.gold_accuracy.estimate, Some(0.75));
    assert_eq!(majority.gold_accuracy_change, Some(0.0));
    let pos = artifact(majority, "position");
    assert_eq!((pos.t.estimate, pos.t.n), (Some(1.0), 6));
    assert_eq!(pos.flip_rate.estimate, Some(0.5));
    let test = pos.flip_test.as_ref().unwrap();
    assert_eq!((test.fewer, test.more), (0, 0));
    assert_eq!(test.p_value, 1.0);
    // The text artifact's calls are made once: nothing to take a majority of.
    let apo = artifact(majority, "apology");
    assert_eq!((apo.t.n, apo.t.estimate), (0, None));
    assert!(apo.flip_test.is_none());
    // Residual bias over the artifacts it measures (position only): 1 → 1.
    assert_eq!(majority.residual_bias, Some(1.0));
    assert_eq!(majority.bias_removed_per_extra_call, Some(0.0));

    let averaged = mitigation(j, "order-averaged-probabilities");
    assert!(!averaged.available);
    assert!(
        averaged
            .note
            .as_deref()
            .unwrap()
            .contains("label probabilities")
    );

    // Ranking: swap removes 0.5 per extra call, majority 0.
    assert_eq!(swap.rank, Some(1));
    assert_eq!(majority.rank, Some(2));
    assert_eq!(averaged.rank, None);
}

/// A judge right in both orders on every pair whose only bias is the first slot when both slots
/// hold the same answer; the apology changes nothing.
fn first_slot_on_identical_texts(spec: &CallSpec) -> SlotVerdict {
    let a_wins = if spec.order == Order::Ab {
        SlotVerdict::First
    } else {
        SlotVerdict::Second
    };
    match (spec.kind, spec.artifact.as_deref()) {
        (ConditionKind::TieDetection, Some("position")) => SlotVerdict::First,
        (ConditionKind::TieDetection, _) => SlotVerdict::Tie,
        _ => a_wins,
    }
}

#[test]
fn the_cheapest_mitigation_that_removes_the_bias_and_keeps_gold_is_recommended() {
    let (s, analysis) = rule_audit(12, &first_slot_on_identical_texts);
    let j = judge(&s, "rule");
    // T(position) = +1 on all 12 pairs: scipy.stats.binomtest(12, 12, 0.5).pvalue
    // = 0.00048828125, Holm over the judge's tests still below 0.05.
    let position = analysis.judges[0]
        .artifacts
        .iter()
        .find(|a| a.artifact == "position")
        .unwrap();
    assert!((position.tie_detection.score.p_value.unwrap() - 0.00048828125).abs() < 1e-15);
    assert_eq!(j.targets, ["position"]);
    let swap = mitigation(j, "swap-and-confirm");
    assert!(swap.removes_targets && swap.keeps_gold);
    // Right in both orders: the same 24 decisions right with and without the mitigation.
    assert_eq!(swap.gold_accuracy.estimate, Some(1.0));
    assert_eq!(swap.gold_accuracy_change, Some(0.0));
    let majority = mitigation(j, "majority-of-repeats");
    assert!(
        !majority.removes_targets,
        "same order, same slot: the bias stays"
    );
    assert_eq!(j.recommended.as_deref(), Some("swap-and-confirm"));
    assert!(j.recommendation.contains("post hoc"));
    assert!(j.recommendation.contains("held-out pairs"));
}

/// The section in every format the demo writes, marked post hoc, with the simulated judges
/// labelled; JUnit and the step summary say they do not show it.
#[test]
fn every_report_format_has_the_post_hoc_section() {
    let dir = report_common::demo(42);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let (md, html, json, csv) = (
        read("report.md"),
        read("report.html"),
        read("summary.json"),
        read("results.csv"),
    );
    assert!(md.contains("# Mitigations (post hoc)\n"));
    assert!(md.contains("## sim-first-slot (simulated) · mitigations (post hoc)"));
    assert!(md.contains("confirm the chosen mitigation on held-out pairs"));
    assert!(html.contains("<section id=\"mitigations\">"));
    assert!(html.contains("<a href=\"#mitigations\">Mitigations</a>"));
    assert!(html.contains("held-out pairs"));
    assert!(html.contains("<caption>Mitigations of sim-first-slot"));
    assert!(json.contains("\"mitigations\": {"));
    assert!(json.contains("\"post_hoc\": true"));
    assert!(csv.contains("sim-first-slot / swap-and-confirm,true,position,post_hoc_mitigation,T,"));
    use judge_audit::report::{Format, Section, view::supports};
    for f in [
        Format::Markdown,
        Format::Html,
        Format::Json,
        Format::Csv,
        Format::Arrow,
    ] {
        assert!(supports(f, Section::Mitigations), "{f:?}");
    }
    assert!(!supports(Format::Junit, Section::Mitigations));
    assert!(!supports(Format::GhSummary, Section::Mitigations));
    // The demo's verdicts: the first-slot judge's position bias is the one swap-and-confirm
    // removes; the unbiased judge gets nothing.
    let summary = report_common::demo_summary(42);
    let m = summary.mitigations.as_ref().unwrap();
    let unbiased = m.judges.iter().find(|j| j.judge == "sim-unbiased").unwrap();
    assert_eq!(unbiased.recommended, None);
    let first = m
        .judges
        .iter()
        .find(|j| j.judge == "sim-first-slot")
        .unwrap();
    let swap = mitigation(first, "swap-and-confirm");
    assert!(artifact(swap, "position").t.covers(0.0));
}

/// A hostile judge name reaches the section escaped in HTML and Markdown.
#[test]
fn hostile_names_are_escaped_in_the_section() {
    let mut summary = report_common::demo_summary(42);
    let m = summary.mitigations.as_mut().unwrap();
    for (k, j) in m.judges.iter_mut().enumerate() {
        j.judge = report_common::HOSTILE[k % report_common::HOSTILE.len()].to_string();
        j.recommendation =
            report_common::HOSTILE[(k + 1) % report_common::HOSTILE.len()].to_string();
    }
    let html = judge_audit::report::html::render(&summary);
    let section = &html[html.find("<section id=\"mitigations\">").unwrap()..];
    let section = &section[..section.find("</section>").unwrap()];
    for bad in ["<script", "<img", "<svg", "\u{202E}"] {
        assert!(!section.contains(bad), "{bad} in the HTML section");
    }
    assert!(section.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let md = judge_audit::report::markdown::render(&summary);
    let section = &md[md.find("# Mitigations (post hoc)").unwrap()..];
    // Markdown escapes a tag's `<` with a backslash, so no unescaped tag is left.
    assert!(section.contains("\\<script>alert(1)\\</script>"));
    assert!(
        !section.replace("\\<", "").contains("<script"),
        "Markdown escapes markup"
    );
    assert!(!section.contains('\u{202E}'));
}

/// Always the first slot, but with probabilities that lean toward the answer shown first in
/// ab: P(first, second, tie) = (0.6, 0.3, 0.1) in ab and (0.55, 0.4, 0.05) in ba.
fn leaning_probs(spec: &CallSpec) -> LabelProbs {
    let (first, second, tie) = if spec.order == Order::Ab {
        (0.6, 0.3, 0.1)
    } else {
        (0.55, 0.4, 0.05)
    };
    LabelProbs { first, second, tie }
}

#[test]
fn order_averaged_probabilities_by_hand() {
    let analysis = rule_audit_with(
        6,
        &|_: &CallSpec| SlotVerdict::First,
        Some(&leaning_probs),
        true,
    );
    let s = analysis.mitigations.clone().unwrap();
    let j = judge(&s, "rule");
    // Unmitigated: a wins in ab, b in ba: gold 12 of 24.
    assert_eq!(
        analysis.judges[0].baseline.gold_accuracy.estimate,
        Some(0.5)
    );
    let avg = mitigation(j, "order-averaged-probabilities");
    assert!(avg.available && avg.post_hoc);
    assert_eq!(avg.cost_calls, 2.0);
    // Two orders: the answer shown first in ab gets (0.6 + 0.4) / 2 = 0.5, the other
    // (0.3 + 0.55) / 2 = 0.425, the tie (0.1 + 0.05) / 2 = 0.075: a wins every decision.
    assert_eq!(avg.gold_accuracy.n, 12);
    assert_eq!(avg.gold_accuracy.estimate, Some(1.0));
    assert_eq!(avg.gold_accuracy_change, Some(0.5));
    // Swap-and-confirm sees two different winners and ties every decision.
    let swap = mitigation(j, "swap-and-confirm");
    assert_eq!(swap.gold_accuracy.estimate, Some(0.0));
    // Position: the same request twice (0.6, 0.3) → both copies 0.45: a tie, T = 0.
    let pos = artifact(avg, "position");
    assert_eq!((pos.t.estimate, pos.t.n), (Some(0.0), 6));
    // The baseline's orders conflicted on every pair; averaged, never.
    assert_eq!(pos.unmitigated_flip_rate, Some(1.0));
    assert_eq!(pos.flip_rate.estimate, Some(0.0));
    let test = pos.flip_test.as_ref().unwrap();
    assert_eq!((test.pairs, test.fewer, test.more), (6, 6, 0));
    // scipy.stats.binomtest(6, 6, 0.5).pvalue == 0.03125
    assert!((test.p_value - 0.03125).abs() < 1e-15);
    // Apology: the artifact copy is the one shown first in ab, so it wins every average
    // (T = +1), where swap-and-confirm ties it (T = 0) and the unmitigated T is 0.
    let apo = artifact(avg, "apology");
    assert_eq!(apo.unmitigated_t, Some(0.0));
    assert_eq!((apo.t.estimate, apo.t.n), (Some(1.0), 6));
    assert_eq!(artifact(swap, "apology").t.estimate, Some(0.0));
}

#[test]
fn the_section_can_be_turned_off_and_the_judges_are_unchanged() {
    let on = rule_audit_with(6, &rule, None, true);
    let off = rule_audit_with(6, &rule, None, false);
    assert!(on.mitigations.is_some());
    assert!(off.mitigations.is_none());
    // Measuring mitigations never changes a judge's own results.
    assert_eq!(on.judges, off.judges);
    assert_eq!(on.juries, off.juries);
}

/// New-call mitigations (`[mitigations]` in audit.toml) through the binary: a simulated judge with
/// planted position and apology bias. `normalise` (answers stripped of artifact phrases) removes
/// the apology effect and is not marked post hoc; swap-and-confirm removes position bias; the
/// stack of both removes both.
#[test]
fn new_call_mitigations_are_audited_as_derived_judges() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pa.toml"),
        "name = \"pa\"\nbackend = \"sim\"\nmodel = \"simulated\"\nseed = 9\n[sim]\naccuracy = 0.8\nposition_bias = 0.4\n[sim.artifact_preference]\napology = 0.6\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("audit.toml"),
        "seed = 3\njudges = [\"pa.toml\"]\n[design]\nrepeats = 2\nartifacts = [\"apology\", \"position\"]\nbootstrap_resamples = 300\n[mitigations]\nnormalise = true\nbias_instruction = true\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_judge-audit"))
        .args(["run", "--quiet", "--config"])
        .arg(dir.path().join("audit.toml"))
        .arg("--out")
        .arg(&out)
        .env("JUDGE_AUDIT_CACHE", dir.path().join("cache"))
        .output()
        .unwrap();
    assert!(matches!(status.status.code(), Some(0) | Some(1)));
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let names: Vec<&str> = s["judges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pa", "pa+bias-instruction", "pa+normalise"]);
    // Derived judges are entries of their base judge, not judges to mitigate.
    let judges = s["mitigations"]["judges"].as_array().unwrap();
    assert_eq!(judges.len(), 1);
    let j = &judges[0];
    assert_eq!(j["targets"], serde_json::json!(["apology", "position"]));
    let m = |id: &str| {
        j["mitigations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("{id}"))
            .clone()
    };
    let t = |m: &serde_json::Value, a: &str| {
        let e = &m["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["artifact"] == a)
            .unwrap()["t"];
        (
            e["ci_low"].as_f64().unwrap(),
            e["ci_high"].as_f64().unwrap(),
        )
    };
    let covers = |(lo, hi): (f64, f64)| lo <= 0.0 && 0.0 <= hi;
    let normalise = m("normalise");
    assert_eq!(normalise["post_hoc"], false);
    assert_eq!(normalise["cost_calls"], 1.0);
    assert!(covers(t(&normalise, "apology")));
    assert!(!covers(t(&normalise, "position")));
    // Fewer apology flips with normalisation, pair by pair.
    let test = &normalise["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["artifact"] == "apology")
        .unwrap()["flip_test"];
    assert!(test["fewer"].as_u64().unwrap() > test["more"].as_u64().unwrap());
    assert!(test["p_value"].as_f64().unwrap() < 0.05);
    let swap = m("swap-and-confirm");
    assert_eq!(swap["post_hoc"], true);
    assert!(
        covers(t(&swap, "position")),
        "swap-and-confirm removes position bias"
    );
    assert!(!covers(t(&swap, "apology")));
    let stack = m("normalise+swap-and-confirm");
    assert!(covers(t(&stack, "position")) && covers(t(&stack, "apology")));
    assert_eq!(stack["removes_targets"], true);
    assert_eq!(m("bias-instruction")["post_hoc"], false);
    // summary.json validates against its schema; the Markdown marks the new-call entries.
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/reports/summary.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    assert!(validator.is_valid(&s));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| normalise (new calls) |"));
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert!(csv.contains("pa / normalise,true,apology,new_call_mitigation,T,"));
    // The unmitigated judge is planted with both biases: neither interval covers 0.
    let pa = &s["judges"][0]["artifacts"];
    for a in pa.as_array().unwrap() {
        assert!(
            a["tie_detection"]["ci_low"].as_f64().unwrap() > 0.0,
            "{}",
            a["artifact"]
        );
    }
}

/// The loopback rule of the reference-guided tests: with a reference answer in the request,
/// the slot whose answer carries the reference's fact (`fact-A<i>` or `fact-B<i>`), the first
/// when both do; without one, always the first slot.
fn reference_rule(user: &str) -> &'static str {
    const START: &str = "[The Start of the Reference Answer]\n";
    let Some((prompt, reference)) = user.split_once(START) else {
        return "Output (a)";
    };
    let fact = reference
        .split_whitespace()
        .find(|w| w.starts_with("fact-"))
        .unwrap();
    let task = prompt.rsplit("### Conversation:").next().unwrap();
    let (_, rest) = task.split_once("### Output (a):").unwrap();
    let (first, rest) = rest.split_once("### Output (b):").unwrap();
    let (second, _) = rest.split_once("### Which is safer").unwrap();
    if first.contains(fact) {
        "Output (a)"
    } else if second.contains(fact) {
        "Output (b)"
    } else {
        "Tie"
    }
}

/// Four pairs, gold a on p0–p1 and b on p2–p3, each with a reference answer naming the
/// preferred answer's fact (`with_reference(i)` false leaves pair i without one).
fn reference_pairs(dir: &std::path::Path, with_reference: impl Fn(usize) -> bool) {
    let mut pairs = String::new();
    for i in 0..4 {
        let good = if i < 2 { 'A' } else { 'B' };
        let mut row = serde_json::json!({
            "id": format!("p{i}"),
            "prompt": format!("Question {i}?"),
            "response_a": format!("Answer a{i} says fact-A{i}."),
            "response_b": format!("Answer b{i} says fact-B{i}."),
            "preferred": if i < 2 { "a" } else { "b" },
        });
        if with_reference(i) {
            row["reference"] = format!("The right answer states fact-{good}{i} {{chosen}}.").into();
        }
        pairs.push_str(&row.to_string());
        pairs.push('\n');
    }
    std::fs::write(dir.join("pairs.jsonl"), pairs).unwrap();
    std::fs::write(
        dir.join("audit.toml"),
        r#"
seed = 3
[dataset]
path = "pairs.jsonl"
[design]
repeats = 1
artifacts = ["apology"]
[mitigations]
reference = true
[[judge]]
name = "loopback"
backend = "openai"
model = "m"
template = "chen-safety"
max_retries = 0
"#,
    )
    .unwrap();
}

fn run_loopback(dir: &std::path::Path, base_url: String) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_judge-audit"))
        .args(["run", "--quiet", "--config"])
        .arg(dir.join("audit.toml"))
        .arg("--out")
        .arg(dir.join("out"))
        .env("OPENAI_BASE_URL", base_url)
        .env("JUDGE_AUDIT_CACHE", dir.join("cache"))
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap()
}

/// Reference-guided judging through the `openai` backend: the derived judge
/// `loopback+reference` is shown each pair's reference (verbatim, after the instruction), the
/// unmitigated judge never is, and the loopback rule that follows the reference turns a
/// first-slot judge (gold 4 of 8) into one right on every baseline call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_guided_judging_shows_the_reference_to_its_judge_only() {
    use support::{MockServer, Reply, chat_completion};
    let server = MockServer::start(|r| {
        let user = r.body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .to_string();
        Reply::json(chat_completion(reference_rule(&user)))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    reference_pairs(dir.path(), |_| true);
    let base_url = server.base_url();
    let o = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || run_loopback(&dir, base_url)
    })
    .await
    .unwrap();
    assert!(
        matches!(o.status.code(), Some(0) | Some(1)),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Two judges × 4 pairs × (2 baseline + 2 tie detection + 4 shift).
    assert_eq!(server.count(), 2 * 32);
    let with_reference: Vec<String> = server
        .requests()
        .iter()
        .filter_map(|r| {
            let user = r.body["messages"][0]["content"].as_str().unwrap();
            user.split_once("\n\nA reference answer is given; judge each answer against it.\n\n")
                .map(|(_, note)| note.to_string())
        })
        .collect();
    // Exactly the derived judge's 32 requests carry it, verbatim (`{chosen}` is data).
    assert_eq!(with_reference.len(), 32);
    for i in 0..4 {
        let good = if i < 2 { 'A' } else { 'B' };
        let note = format!(
            "[The Start of the Reference Answer]\nThe right answer states fact-{good}{i} {{chosen}}.\n[The End of the Reference Answer]"
        );
        assert_eq!(with_reference.iter().filter(|n| **n == note).count(), 8);
    }
    let s: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("out/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(s["judges"][0]["name"], "loopback");
    assert_eq!(s["judges"][1]["name"], "loopback+reference");
    // Unmitigated, first slot: right in ab on p0–p1 and in ba on p2–p3, 4 of 8. Guided: the
    // slot with the reference's fact, 8 of 8.
    assert_eq!(s["judges"][0]["baseline"]["gold_accuracy"]["estimate"], 0.5);
    assert_eq!(s["judges"][1]["baseline"]["gold_accuracy"]["estimate"], 1.0);
    let m = s["mitigations"]["judges"][0]["mitigations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "reference")
        .unwrap();
    assert_eq!(m["post_hoc"], false);
    assert_eq!(m["cost_calls"], 1.0);
    assert_eq!(m["gold_accuracy_change"], 0.5);
    // The references stay out of every other judge's configuration in the run.
    assert!(s["judge_configs"][0].get("references").is_none());
}

/// Reference-guided judging asked for on rows that lack references: the audit refuses before
/// any call and names the pairs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_guided_judging_without_references_is_refused() {
    use support::{MockServer, Reply, chat_completion};
    let server = MockServer::start(|_| Reply::json(chat_completion("Output (a)"))).await;
    let dir = tempfile::tempdir().unwrap();
    reference_pairs(dir.path(), |i| i != 3);
    let base_url = server.base_url();
    let o = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || run_loopback(&dir, base_url)
    })
    .await
    .unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(
            "reference-guided judging (`loopback+reference`): 1 of 4 pairs have no reference \
             answer (the dataset's optional `reference` field, JSONL or CSV), e.g. `p3`"
        ),
        "{stderr}"
    );
    assert_eq!(server.count(), 0);
}
