//! `results.csv`: header, row counts and values for the demo summary, checked against the
//! summary's JSON read independently.

mod report_common;

use judge_audit::report::csv::{ARTIFACT_METRICS, BASELINE_METRICS, COLUMNS};
use judge_audit::report::mitigation::{MITIGATED_ARTIFACT_METRICS, MITIGATION_METRICS};
use serde_json::Value;

fn records(bytes: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_reader(bytes);
    let header = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect();
    (header, rows)
}

fn find<'a>(rows: &'a [Vec<String>], judge: &str, artifact: &str, metric: &str) -> &'a [String] {
    let hits: Vec<&Vec<String>> = rows
        .iter()
        .filter(|r| r[0] == judge && r[2] == artifact && r[4] == metric)
        .collect();
    assert_eq!(hits.len(), 1, "{judge}/{artifact}/{metric}");
    hits[0]
}

/// A cell as the f64 written for it, or `None` for an empty cell.
fn num(cell: &str) -> Option<f64> {
    (!cell.is_empty()).then(|| cell.parse().unwrap())
}

#[test]
fn demo_csv_has_the_documented_columns_and_rows() {
    let dir = report_common::demo(42);
    let bytes = std::fs::read(dir.join("results.csv")).unwrap();
    let (header, rows) = records(&bytes);
    assert_eq!(
        header,
        [
            "judge",
            "simulated",
            "artifact",
            "condition",
            "metric",
            "n",
            "estimate",
            "ci_low",
            "ci_high",
            "p_value",
            "p_adjusted",
            "kind"
        ]
    );
    assert_eq!(header, COLUMNS);
    // Hand count (issue 11: juries, agreement, the composer, CALM's CR and the MDEs were
    // missing): 7 simulated judges × (7 artifacts × (10 metrics + planted_T) + 12 baseline rows)
    // = 7 × 89 = 623, plus `effective_items_count` (issue 13) for the 6 artifacts that change
    // text (all but position) = 7 × 6 = 42; 4 juries (majority, unanimity, weighted and the
    // composer's suggestion) × (7 × 10 + 12 + 6) = 352 (juries have no planted value); 21 judge
    // pairs × 3 agreement metrics = 63, and Fleiss' κ + Krippendorff's α = 2; the composer's T
    // and WR on 7 artifacts = 14. The composer suggests only ADOPT/CAUTION jurors (issue 20 §7):
    // the demo's two mild, opposite-sign jurors and the unbiased one.
    // 623 + 42 + 352 + 63 + 2 + 14 = 1096 pairwise rows. The demo's pointwise judges grade one
    // answer at a time, so position does not apply: 6 artifacts each. The two 1–10 graders
    // have 6 shift metrics per artifact (score_shift, _scaled, excess_abs_shift, up, down,
    // invalid) and 7 baseline rows (mean, run-to-run SD, ICC, share of the scale used,
    // gold-order inversions, unparseable, out of range): 2 × (36 + 7) = 86; the safe/unsafe
    // classifier 4 flip metrics per artifact (each way, positive-rate change, invalid) and 2
    // baseline rows (unparseable, out of range; the demo pairs have no safety gold): 24 + 2 = 26.
    // 1096 + 86 + 26 = 1208. Then the post-hoc mitigations (issue 14), rows of kind
    // `mitigation`: per pairwise judge, its own measurable mitigations (swap-and-confirm and
    // majority over the 2 repeats; the demo's records carry no label probabilities, so order
    // averaging is not available and has no rows) × (8 mitigation metrics + 7 artifacts × 4) =
    // 2 × 36 = 72, and the juries it sits on, referenced with the 8 mitigation metrics only:
    // majority, unanimity and weighted hold all 7 judges (3 × 8 = 24), the composer's
    // suggestion 3 of them (8 each): 7 × (72 + 24) + 3 × 8 = 696. 1208 + 696 = 1904.
    assert_eq!(ARTIFACT_METRICS.len(), 10);
    assert_eq!(BASELINE_METRICS.len(), 12);
    assert_eq!(MITIGATION_METRICS.len(), 8);
    assert_eq!(MITIGATED_ARTIFACT_METRICS.len(), 4);
    assert_eq!(rows.len(), 1904);
    assert_eq!(
        rows.iter().filter(|r| r[11] == "mitigation").count(),
        7 * (72 + 24) + 3 * 8
    );
    assert_eq!(
        rows.iter().filter(|r| r[11] == "pointwise_judge").count(),
        86 + 26
    );
    assert!(rows.iter().all(|r| r.len() == 12));
    assert!(
        rows.iter().all(|r| r[1] == "true"),
        "every demo judge is simulated, and so is every row about them"
    );
    let count = |kind: &str| rows.iter().filter(|r| r[11] == kind).count();
    assert_eq!(
        [
            count("judge"),
            count("jury"),
            count("pair"),
            count("panel"),
            count("composer")
        ],
        [623 + 42, 4 * 82 + 24, 63, 2, 14]
    );
    let baseline_rows = rows
        .iter()
        .filter(|r| r[2].is_empty() && r[3] == "baseline")
        .count();
    // 11 pairwise judges and juries × 12, and the pointwise judges' baseline rows (7 per
    // grader, 2 for the classifier).
    assert_eq!(baseline_rows, 11 * 12 + 2 * 7 + 2);
    assert!(
        rows.iter()
            .filter(|r| r[2].is_empty())
            .all(|r| r[3] == "baseline" || r[3] == "agreement" || r[3] == "post_hoc_mitigation")
    );
    // Bytes are LF-terminated and end with a newline.
    assert!(!bytes.contains(&b'\r'));
    assert_eq!(bytes.last(), Some(&b'\n'));
}

#[test]
fn demo_csv_values_match_the_summary() {
    let dir = report_common::demo(42);
    let (_, rows) = records(&std::fs::read(dir.join("results.csv")).unwrap());
    let summary: Value = report_common::demo_json(42);
    let judge = summary["judges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "sim-apology-lover")
        .unwrap();
    let apology = judge["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["artifact"] == "apology")
        .unwrap();

    let t = find(&rows, "sim-apology-lover", "apology", "T");
    let td = &apology["tie_detection"];
    assert_eq!(t[3], "tie_detection");
    assert_eq!(t[5], td["n"].to_string());
    assert_eq!(num(&t[6]), td["estimate"].as_f64());
    assert_eq!(num(&t[7]), td["ci_low"].as_f64());
    assert_eq!(num(&t[8]), td["ci_high"].as_f64());
    assert_eq!(num(&t[9]), td["p_value"].as_f64());
    assert_eq!(num(&t[10]), td["p_adjusted"].as_f64());

    let wr = find(&rows, "sim-apology-lover", "apology", "WR");
    assert_eq!(wr[3], "shift");
    assert_eq!(num(&wr[6]), apology["winrate_shift"]["estimate"].as_f64());

    let toward = find(&rows, "sim-apology-lover", "apology", "flips_toward_count");
    assert_eq!(num(&toward[6]), apology["flip_rate"]["toward"].as_f64());
    assert_eq!(toward[5], apology["flip_rate"]["n"].to_string());
    assert!(
        toward[7].is_empty() && toward[9].is_empty(),
        "counts have no CI or p"
    );

    // The excess flip rate has an interval but no test: p cells are empty.
    let excess = find(&rows, "sim-apology-lover", "apology", "excess_flip_rate");
    assert_eq!(
        num(&excess[7]),
        apology["excess_flip_rate"]["ci_low"].as_f64()
    );
    assert!(excess[9].is_empty() && excess[10].is_empty());

    // Position is measured from the two baseline orders.
    let pos = find(&rows, "sim-apology-lover", "position", "flip_rate");
    assert_eq!(pos[3], "baseline");

    let planted = find(&rows, "sim-apology-lover", "apology", "planted_T");
    assert_eq!(num(&planted[6]), apology["planted"]["value"].as_f64());

    let gold = find(&rows, "sim-apology-lover", "", "gold_accuracy");
    let g = &judge["baseline"]["gold_accuracy"];
    assert_eq!(gold[5], g["n"].to_string());
    assert_eq!(num(&gold[6]), g["estimate"].as_f64());
    assert!(gold[9].is_empty());

    let first = find(
        &rows,
        "sim-apology-lover",
        "",
        "position_prefers_first_count",
    );
    let pc = &judge["baseline"]["position_consistency"];
    assert_eq!(num(&first[6]), pc["prefers_first"].as_f64());
    assert_eq!(
        first[5],
        (pc["n"].as_u64().unwrap() + pc["error"].as_u64().unwrap()).to_string()
    );

    // CALM's consistency rate, the MDE, a jury, an agreement pair and the composer.
    let cr = find(&rows, "sim-apology-lover", "", "consistency_rate");
    assert_eq!(
        num(&cr[6]),
        judge["baseline"]["self_consistency"]["consistency_rate"].as_f64()
    );
    let mde = find(&rows, "sim-apology-lover", "apology", "mde_T");
    assert_eq!(num(&mde[6]), apology["mde"]["t"].as_f64());
    assert_eq!(mde[5], apology["mde"]["pairs"].to_string());
    let jury = &summary["juries"][0];
    let jury_name = jury["name"].as_str().unwrap();
    let jt = find(&rows, jury_name, "apology", "T");
    assert_eq!(jt[11], "jury");
    let jury_apology = jury["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["artifact"] == "apology")
        .unwrap();
    assert_eq!(
        num(&jt[6]),
        jury_apology["tie_detection"]["estimate"].as_f64()
    );
    let pair = &summary["agreement"]["pairwise"][0];
    let who = format!(
        "{} + {}",
        pair["judge_a"].as_str().unwrap(),
        pair["judge_b"].as_str().unwrap()
    );
    let kappa = find(&rows, &who, "", "cohen_kappa");
    assert_eq!(kappa[11], "pair");
    assert_eq!(num(&kappa[6]), pair["cohen_kappa"]["estimate"].as_f64());
    assert_eq!(kappa[5], pair["cohen_kappa"]["n"].to_string());
    // The composer's suggestion: one T and one WR row per artifact, equal to the summary's.
    let composer = &summary["jury"]["composer"];
    let suggestion = &composer["suggestion"];
    let who = suggestion["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect::<Vec<_>>()
        .join(" + ");
    assert_eq!(
        who,
        "sim-unbiased + sim-mild-apology + sim-mild-apology-averse"
    );
    for (k, artifact) in composer["artifacts"].as_array().unwrap().iter().enumerate() {
        let artifact = artifact.as_str().unwrap();
        for (metric, key) in [("T", "t"), ("WR", "wr")] {
            let row = find(&rows, &who, artifact, metric);
            assert_eq!(row[11], "composer");
            assert_eq!(
                num(&row[6]),
                suggestion[key][k].as_f64(),
                "{artifact} {metric}"
            );
        }
    }
}

#[test]
fn empty_estimates_give_empty_cells_and_quoting_is_correct() {
    let mut summary = report_common::demo_summary(42);
    let judge = &mut summary.judges[0];
    judge.name = "judge, \"quoted\"\nname".into();
    let e = &mut judge.artifacts[0].tie_detection.score;
    e.estimate = None;
    e.ci_low = None;
    e.ci_high = None;
    e.p_value = None;
    e.p_adjusted = None;
    e.n = 0;
    let bytes = judge_audit::report::csv::render(&summary).unwrap();
    let (_, rows) = records(&bytes);
    assert_eq!(rows.len(), 1904, "a hostile name does not break rows");
    let t = find(
        &rows,
        "judge, \"quoted\"\nname",
        &summary.judges[0].artifacts[0].artifact,
        "T",
    );
    assert_eq!(t[5], "0");
    assert!(t[6..11].iter().all(String::is_empty), "{t:?}");
    assert_eq!(t[11], "judge");
}

#[test]
fn mitigation_rows_match_the_summary() {
    let dir = report_common::demo(42);
    let (_, rows) = records(&std::fs::read(dir.join("results.csv")).unwrap());
    let summary = report_common::demo_summary(42);
    let section = summary.mitigations.as_ref().unwrap();
    let j = section
        .judges
        .iter()
        .find(|j| j.judge == "sim-first-slot")
        .unwrap();
    let swap = j
        .mitigations
        .iter()
        .find(|m| m.id == "swap-and-confirm")
        .unwrap();
    let who = "sim-first-slot / swap-and-confirm";
    let pos = swap
        .artifacts
        .iter()
        .find(|a| a.artifact == "position")
        .unwrap();
    let t = find(&rows, who, "position", "T");
    assert_eq!(t[3], "post_hoc_mitigation");
    assert_eq!(t[11], "mitigation");
    assert_eq!(t[5], pos.t.n.to_string());
    assert_eq!(t[6].parse::<f64>().unwrap(), pos.t.estimate.unwrap());
    assert_eq!(t[7].parse::<f64>().unwrap(), pos.t.ci_low.unwrap());
    let test = find(&rows, who, "position", "flip_test");
    let ft = pos.flip_test.as_ref().unwrap();
    assert_eq!(test[5], ft.pairs.to_string());
    assert_eq!(test[9].parse::<f64>().unwrap(), ft.p_value);
    let cost = find(&rows, who, "", "cost_calls");
    assert_eq!(cost[6], "2");
    // `recommended` is 1 on exactly the recommended mitigation of each judge, 0 on the others.
    for j in &section.judges {
        let ones: Vec<&Vec<String>> = rows
            .iter()
            .filter(|r| {
                r[0].starts_with(&format!("{} / ", j.judge)) && r[4] == "recommended" && r[6] == "1"
            })
            .collect();
        match &j.recommended {
            Some(id) => {
                assert_eq!(ones.len(), 1, "{}", j.judge);
                assert_eq!(ones[0][0], format!("{} / {id}", j.judge));
            }
            None => assert!(ones.is_empty(), "{}", j.judge),
        }
    }
}
