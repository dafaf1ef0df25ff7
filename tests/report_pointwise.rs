//! Pointwise judges in every output (issue 12): a summary with an unbiased score grader, a
//! score grader whose scores an artifact inflates (simulated), a safety classifier with
//! probabilities that an apology flips from unsafe to safe, and a jury of the two graders,
//! rendered in every format. Exact values, verdicts, escaping of hostile names in HTML, schema
//! validation of summary.json, CSV rows, JUnit suites and the `--fail-on` gate.

mod report_common;

use judge_audit::analyze::Trust;
use judge_audit::analyze::pointwise::GradeRecord;
use judge_audit::analyze::pointwise_summary::{
    CriterionInput, GradeScale, PointwiseInputs, PointwiseJudgeInput, PointwiseJuryInput,
    PointwiseKind, PointwiseOptions, PointwiseSection, analyze_pointwise,
};
use judge_audit::dataset::single::Gold;
use judge_audit::judge::grade::Grade;
use judge_audit::report::{self, Format, ReportView, Summary};
use serde_json::Value;

/// A hostile judge name and artifact id: markup a renderer must never pass through.
const EVIL_JUDGE: &str = "guard<script>alert(1)</script>";
const EVIL_ARTIFACT: &str = "<img src=x onerror=alert(4)>";
const PAIRS: usize = 15;
const GUARD_ITEMS: usize = 20;

fn rec(
    item: &str,
    cluster: &str,
    artifact: Option<&str>,
    repeat: u32,
    grade: Grade,
) -> GradeRecord {
    GradeRecord {
        item_id: item.into(),
        cluster: cluster.into(),
        artifact: artifact.map(str::to_string),
        repeat,
        grade,
        probability: None,
    }
}

/// A 1–10 grader over the answers of 15 pairs (a scored above b), two baseline repeats with the
/// same score, and the artifacts `authority` (adding `bump` points) and the hostile one (no
/// change).
fn grader(name: &str, simulated: bool, bump: f64) -> PointwiseJudgeInput {
    let mut records = Vec::new();
    for p in 0..PAIRS {
        for (side, score) in [("a", 5 + p % 4), ("b", 2 + p % 3)] {
            let (id, cluster) = (format!("p{p}/{side}"), format!("p{p}"));
            let s = score as f64;
            for repeat in 0..2 {
                records.push(rec(&id, &cluster, None, repeat, Grade::Score(s)));
            }
            records.push(rec(
                &id,
                &cluster,
                Some("authority"),
                0,
                Grade::Score(s + bump),
            ));
            records.push(rec(&id, &cluster, Some(EVIL_ARTIFACT), 0, Grade::Score(s)));
        }
    }
    PointwiseJudgeInput {
        judge: name.into(),
        kind: PointwiseKind::Score,
        simulated,
        artifacts: vec!["authority".into(), EVIL_ARTIFACT.into()],
        criteria: vec![CriterionInput {
            name: "score".into(),
            scale: GradeScale::Score { min: 1, max: 10 },
            records,
        }],
        consistency: None,
    }
}

/// A safe/unsafe classifier on 20 single answers (gold: g0–g9 unsafe, g10–g19 safe), right on
/// every baseline with P(unsafe) 0.8 / 0.2; under `apology` g0–g7 read safe and g19's reply is
/// unparseable.
fn guard() -> PointwiseJudgeInput {
    let mut records = Vec::new();
    for i in 0..GUARD_ITEMS {
        let id = format!("g{i}");
        let unsafe_ = i < 10;
        let label = |u: bool| Grade::Label(if u { "unsafe" } else { "safe" }.into());
        let mut base = rec(&id, &id, None, 0, label(unsafe_));
        base.probability = Some(if unsafe_ { 0.8 } else { 0.2 });
        records.push(base);
        let after = match i {
            0..8 => label(false),
            19 => Grade::Unparseable,
            _ => label(unsafe_),
        };
        records.push(rec(&id, &id, Some("apology"), 0, after));
    }
    PointwiseJudgeInput {
        judge: EVIL_JUDGE.into(),
        kind: PointwiseKind::Label,
        simulated: false,
        artifacts: vec!["apology".into()],
        criteria: vec![CriterionInput {
            name: "label".into(),
            scale: GradeScale::Label {
                labels: vec!["safe".into(), "unsafe".into()],
                positive: "unsafe".into(),
            },
            records,
        }],
        consistency: None,
    }
}

fn section() -> PointwiseSection {
    let mut inputs = PointwiseInputs {
        judges: vec![
            grader("fair", false, 0.0),
            grader("inflated", true, 2.0),
            guard(),
        ],
        juries: vec![
            PointwiseJuryInput {
                name: "panel".into(),
                members: vec!["fair".into(), "inflated".into()],
            },
            PointwiseJuryInput {
                name: "mixed".into(),
                members: vec!["fair".into(), EVIL_JUDGE.into()],
            },
        ],
        ..Default::default()
    };
    for p in 0..PAIRS {
        for (side, preferred) in [("a", true), ("b", false)] {
            let id = format!("p{p}/{side}");
            inputs.gold.insert(id.clone(), Gold::Preferred(preferred));
            inputs.pair_of.insert(id, format!("p{p}"));
        }
    }
    for i in 0..GUARD_ITEMS {
        let label = if i < 10 { "unsafe" } else { "safe" };
        inputs
            .gold
            .insert(format!("g{i}"), Gold::Label(label.into()));
    }
    let options = PointwiseOptions {
        bootstrap_resamples: 500,
        seed: 7,
        ..PointwiseOptions::default()
    };
    analyze_pointwise(&inputs, &options)
}

/// The demo's (pairwise) summary with the pointwise section added, warnings derived.
fn summary() -> Summary {
    let mut s = report_common::demo_summary(42);
    s.pointwise = Some(section());
    s.with_warnings()
}

fn render(format: Format, summary: &Summary) -> String {
    let view = ReportView::new(summary);
    String::from_utf8(format.exporter().render(&view).unwrap()).unwrap()
}

#[test]
fn verdicts_follow_the_pointwise_rules() {
    let p = section();
    let verdict = |i: usize| &p.judges[i].trust;
    assert_eq!(verdict(0).verdict, Trust::Adopt, "{:#?}", verdict(0));

    // +2 points on a 1–10 scale = 22.2% of the range ≥ 10%, Holm-significant.
    let inflated = verdict(1);
    assert_eq!(inflated.verdict, Trust::Reject);
    let r = &inflated.reasons[0];
    assert_eq!(r.rule, "reject_score_shift");
    assert_eq!(r.artifact.as_deref(), Some("authority"));
    assert_eq!(r.threshold, Some(0.1));
    assert!((r.value.unwrap() - 2.0 / 9.0).abs() < 1e-12);
    let shift = &p.judges[1].criteria[0].score_shifts[0];
    assert_eq!((shift.n, shift.up, shift.down, shift.same), (30, 30, 0, 0));
    assert_eq!(shift.mean_shift, 2.0);
    assert_eq!((shift.interval.low, shift.interval.high), (2.0, 2.0));
    // Sign test 30 vs 0: 2 · 0.5³⁰.
    assert!((shift.sign_p - 2.0 * 0.5f64.powi(30)).abs() < 1e-20);
    assert_eq!(p.judges[1].criteria[0].score_shifts[1].mean_shift, 0.0);

    // 8 of 10 unsafe answers read safe under apology; calibration P 0.8 / 0.2 → ECE 0.2.
    let guard = verdict(2);
    assert_eq!(guard.verdict, Trust::Reject);
    let rules: Vec<(&str, Trust)> = guard
        .reasons
        .iter()
        .map(|r| (r.rule.as_str(), r.severity))
        .collect();
    assert_eq!(
        rules,
        [
            ("reject_safety_flip", Trust::Reject),
            ("caution_ece", Trust::Caution)
        ]
    );
    assert_eq!(guard.reasons[0].value, Some(0.8));
    assert_eq!(guard.reasons[0].criterion.as_deref(), Some("label"));
    let c = &p.judges[2].criteria[0];
    let f = &c.label_flips[0];
    assert_eq!(
        (f.positive_to_negative.count, f.positive_to_negative.n),
        (8, 10)
    );
    assert_eq!(
        (f.negative_to_positive.count, f.negative_to_positive.n),
        (0, 9)
    );
    // Exact McNemar 8 vs 0: 2 · 0.5⁸.
    assert!((f.mcnemar_p - 0.0078125).abs() < 1e-12);
    assert_eq!(f.invalid.unparseable, 1);
    let cal = c.calibration.as_ref().unwrap();
    assert!((cal.ece - 0.2).abs() < 1e-12 && (cal.brier - 0.04).abs() < 1e-12);
    let acc = c.label_accuracy.as_ref().unwrap();
    assert_eq!(
        (
            acc.true_positive,
            acc.false_negative,
            acc.false_positive,
            acc.true_negative
        ),
        (10, 0, 0, 10)
    );

    // The jury's mean score moves by +1 = 11.1% of the scale: a REJECT too, and simulated
    // because one member is.
    let panel = &p.juries[0];
    assert!(panel.simulated);
    assert_eq!(panel.criterion.score_shifts[0].mean_shift, 1.0);
    assert_eq!(panel.trust.verdict, Trust::Reject);
    assert_eq!(p.skipped_juries[0].jury, "mixed");
}

#[test]
fn summary_json_validates_and_reads_back() {
    let s = summary();
    let text = render(Format::Json, &s);
    let json: Value = serde_json::from_str(&text).unwrap();
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/reports/summary.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::draft202012::new(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&json)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let pw = &json["pointwise"];
    assert_eq!(pw["judges"][1]["trust"]["verdict"], "REJECT");
    assert_eq!(pw["judges"][1]["simulated"], true);
    assert_eq!(
        pw["judges"][1]["criteria"][0]["score_shifts"][0]["mean_shift"],
        2.0
    );
    // No repeat under an artifact: NaN written as null, and the schema says so.
    assert!(pw["judges"][0]["criteria"][0]["score_agreement"].is_null());
    // The schema rejects drift inside the section.
    let mut bad = json.clone();
    bad["pointwise"]["judges"][0]["criteria"][0]["colour"] = Value::from("red");
    assert!(validator.iter_errors(&bad).next().is_some());
    let mut bad = json.clone();
    bad["pointwise"]["judges"][0]["trust"]["verdict"] = Value::from("MAYBE");
    assert!(validator.iter_errors(&bad).next().is_some());
    // `judge-audit compare` reads summary.json back: it must parse, and re-render identically.
    let back: Summary = serde_json::from_str(&text).unwrap();
    assert_eq!(render(Format::Json, &back), text);
    // The invalid grade is a warning every format shows.
    assert!(s.warnings.iter().any(|w| {
        w.kind == "grades_invalid"
            && w.judge.as_deref() == Some(EVIL_JUDGE)
            && w.message
                .starts_with("1 grade of 40 could not be read (1 unparseable")
    }));
}

#[test]
fn markdown_shows_every_table() {
    let md = render(Format::Markdown, &summary());
    assert!(md.contains("# Pointwise judges"));
    assert!(md.contains("## inflated (SIMULATED score judge): REJECT"));
    assert!(md.contains("## fair (score judge): ADOPT"));
    assert!(
        md.contains("| authority | 30 | +2.00 | [+2.00, +2.00] | +22.2% | 30 / 0 / 0 | 1.9e-9 |"),
        "{md}"
    );
    assert!(md.contains(
        "| apology | 19 | 8/10 = 80.0% [49.0%, 94.3%] | 0/9 = 0.0% [0.0%, 29.9%] | 52.6% → 10.5% (-42.1%) | 0.008 / 0.008 **✱** / 0.008 | 1 unparseable, 0 off the scale |"
    ), "{md}");
    assert!(md.contains("| unsafe | 10 | 0 |\n| not unsafe | 0 | 10 |"));
    assert!(
        md.contains(
            "Calibration of P(positive) against gold (20 answers): Brier 0.040, ECE 0.200."
        )
    );
    assert!(md.contains("- REJECT because apology: unsafe → not unsafe on 8 of 10"));
    assert!(md.contains("Gold-order inversions (pairs with a gold preference and unequal scores where the dispreferred answer scored higher): 0/15 = 0.0%"));
    assert!(md.contains("## Jury panel (SIMULATED members; pointwise jury of fair, inflated; mean score per answer): REJECT"));
    assert!(md.contains("- mixed: member "), "skipped jury shown");
    // The banner names the simulated pointwise judge with the pairwise ones.
    let banner = md
        .lines()
        .find(|l| l.starts_with("> **Simulated judges:**"))
        .unwrap();
    assert!(banner.contains("inflated"));
    // The hostile name is escaped (a backslash before `<`), never live markup.
    assert!(md.contains("guard\\<script>"));
    assert_eq!(
        md.matches("<script>").count(),
        md.matches("\\<script>").count()
    );
    assert_eq!(md.matches("<img").count(), md.matches("\\<img").count());
}

#[test]
fn html_has_the_charts_and_escapes_hostile_text() {
    let page = render(Format::Html, &summary());
    assert!(page.contains("<section id=\"pointwise\">"));
    assert!(page.contains("href=\"#pointwise\""));
    // Forest plot: one dot per score shift (fair, inflated: 2 artifacts each; panel: 2).
    let forest_start = page.find("aria-labelledby=\"pw-forest-title").unwrap();
    let forest = &page[forest_start..forest_start + page[forest_start..].find("</svg>").unwrap()];
    assert_eq!(forest.matches("<circle").count(), 6);
    assert!(forest.contains("+2.00 [+2.00, +2.00] n=30, Holm p"));
    // Reliability diagram: two bins.
    let rel = page.find("Reliability diagram of ").unwrap();
    let rel = &page[rel..rel + page[rel..].find("</svg>").unwrap()];
    assert_eq!(rel.matches("<circle").count(), 2);
    assert!(page.contains("<table class=\"confusion\">"));
    // Hostile names: escaped everywhere, live nowhere.
    assert!(!page.contains("<script>alert(1)"));
    assert!(!page.contains("<img src=x onerror"));
    assert!(page.contains("guard&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.contains("&lt;img src=x onerror=alert(4)&gt;"));
    assert!(page.contains("SIMULATED"));
}

#[test]
fn csv_rows_carry_the_estimates() {
    let text = render(Format::Csv, &summary());
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let find = |judge: &str, artifact: &str, metric: &str| {
        rows.iter()
            .find(|r| &r[0] == judge && &r[2] == artifact && &r[4] == metric)
            .unwrap_or_else(|| panic!("no row {judge} {artifact} {metric}"))
            .iter()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let r = find("inflated", "authority", "score_shift");
    assert_eq!(
        r[..9],
        [
            "inflated",
            "true",
            "authority",
            "shift",
            "score_shift",
            "30",
            "2",
            "2",
            "2"
        ]
    );
    assert_eq!(r[11], "pointwise_judge");
    // Exact Wilcoxon on the 15 pairs' mean shifts, all +2: 2 · 0.5¹⁵.
    assert_eq!(
        r[9].parse::<f64>().unwrap(),
        2.0 * 0.5f64.powi(15),
        "Wilcoxon p"
    );
    let flips = find(EVIL_JUDGE, "apology", "positive_to_negative_rate");
    assert_eq!((&flips[5][..], &flips[6][..]), ("10", "0.8"));
    assert!((flips[9].parse::<f64>().unwrap() - 0.0078125).abs() < 1e-12);
    let ece: f64 = find(EVIL_JUDGE, "", "ece")[6].parse().unwrap();
    assert!((ece - 0.2).abs() < 1e-12, "{ece}");
    assert_eq!(find(EVIL_JUDGE, "", "unparseable_count")[5..7], ["40", "1"]);
    assert_eq!(
        find("panel", "authority", "score_shift")[11],
        "pointwise_jury"
    );
    assert_eq!(find("fair", "", "gold_order_inversions")[5..7], ["15", "0"]);
    // Arrow carries the same rows.
    let arrow = report::arrow::render(&summary()).unwrap();
    assert!(arrow.len() > 1000);
}

#[test]
fn junit_gh_summary_and_the_gate_count_pointwise_judges() {
    let s = summary();
    let xml = report::junit::render(&ReportView::new(&s));
    assert!(xml.contains("<testsuite name=\"inflated\""));
    assert!(xml.contains("name=\"reject_safety_flip: label: apology\""));
    assert!(xml.contains("guard&lt;script&gt;"));
    let gh = render(Format::GhSummary, &s);
    assert!(gh.contains("| inflated (score) (simulated) | **REJECT** |"));
    assert!(gh.contains("| panel (pointwise jury) (simulated) | **REJECT** |"));

    // Pointwise judges alone: a REJECT trips the gate as a pairwise one does.
    let mut only = s.clone();
    only.judges.clear();
    let gate = report::gate(&only, Trust::Reject);
    assert!(!gate.passed);
    assert_eq!(
        gate.line,
        format!(
            "gate: FAIL (--fail-on reject: 2 of 3 judges at REJECT or worse: inflated REJECT, {EVIL_JUDGE} REJECT)"
        )
    );
    only.pointwise.as_mut().unwrap().judges.truncate(1);
    let gate = report::gate(&only, Trust::Caution);
    assert!(gate.passed, "{}", gate.line);
    assert!(report::unaudited(&only).is_empty());
    only.pointwise.as_mut().unwrap().judges[0].trust.verdict = Trust::CouldNotAudit;
    assert_eq!(report::unaudited(&only), ["fair"]);
}

#[test]
fn pairwise_only_outputs_are_unchanged() {
    // The demo's files re-render byte-identically from its summary (pointwise section
    // included); without the pointwise judges, no pointwise text appears in any format.
    let dir = report_common::demo(42);
    let s = report_common::demo_summary(42);
    assert!(s.pointwise.is_some(), "the demo has pointwise judges");
    let mut pairwise_only = s.clone();
    pairwise_only.pointwise = None;
    pairwise_only
        .warnings
        .retain(|w| w.kind != "pointwise_artifact_skipped");
    let pointwise_names = [
        "sim-grader-unbiased",
        "sim-grader-apology",
        "sim-safety-apology",
    ];
    pairwise_only
        .judge_configs
        .retain(|j| !pointwise_names.contains(&j.name.as_str()));
    for (format, file) in [
        (Format::Json, "summary.json"),
        (Format::Markdown, "report.md"),
        (Format::Html, "report.html"),
        (Format::Csv, "results.csv"),
    ] {
        let on_disk = std::fs::read_to_string(dir.join(file)).unwrap();
        assert_eq!(render(format, &s), on_disk, "{file}");
        let without = render(format, &pairwise_only);
        assert!(
            !without.contains("ointwise"),
            "{file}: {}",
            without
                .match_indices("ointwise")
                .map(|(i, _)| &without[i.saturating_sub(120)..(i + 40).min(without.len())])
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
}
