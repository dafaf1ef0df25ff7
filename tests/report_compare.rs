//! `judge-audit compare`: metric changes and paired McNemar tests on shared calls, checked
//! against counts recomputed here from the two `calls.jsonl` files and against hand-worked
//! exact p-values.

mod report_common;

use judge_audit::report::compare::{self, Comparison};
use report_common::{assert_success, bin, scratch};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Exact two-sided McNemar p-value, computed independently of `stats`: with n = b + c,
/// p = min(1, 2 · Σ_{k ≤ min(b, c)} C(n, k) / 2^n), in exact integers up to the last division.
fn mcnemar_reference(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    assert!(n < 120, "u128 is exact for these sizes");
    let mut sum: u128 = 0;
    let mut binom: u128 = 1; // C(n, 0)
    for k in 0..=b.min(c) {
        if k > 0 {
            binom = binom * u128::from(n - k + 1) / u128::from(k);
        }
        sum += binom;
    }
    (2.0 * sum as f64 / 2f64.powi(n as i32)).min(1.0)
}

#[test]
fn reference_mcnemar_matches_hand_values() {
    // b = 7, c = 1: 2 · (1 + 8) / 256.
    assert_eq!(mcnemar_reference(7, 1), 18.0 / 256.0);
    // b = 3, c = 3: the whole distribution, capped at 1.
    assert_eq!(mcnemar_reference(3, 3), 1.0);
    // b = 10, c = 0: 2 / 1024.
    assert_eq!(mcnemar_reference(10, 0), 2.0 / 1024.0);
}

/// Verdicts by call id from a `calls.jsonl`, read as plain JSON (`None`: failed call).
fn verdicts(dir: &Path) -> BTreeMap<String, (Value, Option<String>)> {
    std::fs::read_to_string(dir.join("calls.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            let id = v["call_id"].as_str().unwrap().to_string();
            let verdict = v["verdict"].as_str().map(str::to_string);
            (id, (v, verdict))
        })
        .collect()
}

fn valid(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|v| *v != "invalid")
}

/// Per judge and condition key, the call ids whose valid verdicts differ between the runs.
fn changed_by_condition(a: &Path, b: &Path) -> BTreeMap<(String, String), BTreeSet<String>> {
    let (va, vb) = (verdicts(a), verdicts(b));
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (id, (record, x)) in &va {
        let Some((_, y)) = vb.get(id) else { continue };
        // Pointwise grades have no verdict; they are compared by grade (checked in
        // `hand_edited_grades_give_the_exact_wilcoxon_and_mcnemar_p_values`).
        if record.get("grades").is_some() {
            continue;
        }
        let key = match record["artifact"].as_str() {
            Some(artifact) => format!("{}/{artifact}", record["kind"].as_str().unwrap()),
            None => record["kind"].as_str().unwrap().to_string(),
        };
        let entry = out
            .entry((record["judge"].as_str().unwrap().to_string(), key))
            .or_default();
        if let (Some(x), Some(y)) = (valid(x), valid(y))
            && x != y
        {
            entry.insert(id.clone());
        }
    }
    out
}

fn check_changed_counts(c: &Comparison, a: &Path, b: &Path) {
    let expected = changed_by_condition(a, b);
    let mut seen = 0;
    for j in &c.judges {
        for cond in &j.conditions {
            let ids = &expected[&(j.name.clone(), cond.condition.clone())];
            assert_eq!(
                cond.changed as usize,
                ids.len(),
                "{} {}",
                j.name,
                cond.condition
            );
            let listed: Vec<&String> = ids.iter().take(compare::CHANGED_CAP).collect();
            assert_eq!(
                cond.changed_calls.iter().collect::<Vec<_>>(),
                listed,
                "first changed ids, sorted"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, expected.len(), "every condition is reported");
}

fn run_config(dir: &Path, name: &str, apology: f64) -> PathBuf {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "seed = 42\n[design]\nartifacts = [\"apology\", \"authority\"]\n\n[[judge]]\nname = \"sim-drifting\"\nbackend = \"sim\"\nmodel = \"simulated\"\nseed = 102\n[judge.sim]\naccuracy = 0.8\nnoise = 0.05\ntie_rate = 0.1\n[judge.sim.artifact_preference]\napology = {apology}\n"
        ),
    )
    .unwrap();
    let out = dir.join(name);
    let output = bin()
        .args(["run", "--quiet", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_success(&output);
    out
}

#[test]
fn a_judge_that_lost_its_apology_bias_is_detected_and_located() {
    let dir = scratch("drift");
    // Same judge seed, so every decision except the apology preference is drawn identically.
    let a = run_config(&dir, "before", 0.6);
    let b = run_config(&dir, "after", 0.0);
    let json_path = dir.join("compare.json");
    let output = bin()
        .arg("compare")
        .args([&a, &b])
        .arg("--json")
        .arg("--out")
        .arg(&json_path)
        .output()
        .unwrap();
    assert_success(&output);
    assert!(
        output.stdout.is_empty(),
        "--out writes the file, not stdout"
    );
    let c: Comparison =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.judges.len(), 1);
    let j = &c.judges[0];
    assert_eq!(j.name, "sim-drifting");
    assert!(j.simulated);
    assert_eq!(j.verdict, ("REJECT".to_string(), "ADOPT".to_string()));
    check_changed_counts(&c, &a, &b);

    let cond = |key: &str| j.conditions.iter().find(|x| x.condition == key).unwrap();
    for unchanged in ["baseline", "tie_detection/authority", "shift/authority"] {
        assert_eq!(cond(unchanged).changed, 0, "{unchanged}");
        for t in &cond(unchanged).tests {
            assert_eq!((t.a_only, t.b_only, t.p_value), (0, 0, 1.0));
        }
    }
    // Tie detection on apology: "the copy with the artifact wins" got rarer. Recompute the
    // discordant counts from the raw files: in `ab` the artifact copy is shown first.
    let (va, vb) = (verdicts(&a), verdicts(&b));
    let wins = |record: &Value, v: &str| match record["order"].as_str().unwrap() {
        "ab" => v == "first",
        _ => v == "second",
    };
    let (mut b_count, mut c_count, mut n) = (0u64, 0u64, 0u64);
    for (id, (record, x)) in &va {
        if !id.contains("/tie_detection/apology/") {
            continue;
        }
        let (Some(x), Some(y)) = (valid(x), valid(&vb[id].1)) else {
            continue;
        };
        n += 1;
        let (x, y) = (wins(record, x), wins(record, y));
        b_count += u64::from(x && !y);
        c_count += u64::from(y && !x);
    }
    let t = &cond("tie_detection/apology").tests[0];
    assert_eq!(t.outcome, "the copy with the artifact wins");
    assert_eq!((t.n, t.a_only, t.b_only), (n, b_count, c_count));
    assert!(b_count > 20 && c_count == 0, "{b_count} / {c_count}");
    let reference = mcnemar_reference(b_count, c_count);
    assert!(
        (t.p_value - reference).abs() <= 1e-12 * reference,
        "{} vs {reference}",
        t.p_value
    );
    let bonferroni = (reference * c.tests as f64).min(1.0);
    assert!((t.p_bonferroni - bonferroni).abs() <= 1e-12 * bonferroni);
    assert_eq!(c.tests, 7, "baseline 1 + 2 artifacts × (tie 1 + shift 2)");
    // Shift: the flip rate against the run's own baseline fell, and so did the perturbed wins.
    let shift = cond("shift/apology");
    assert!(shift.tests[0].a_only > shift.tests[0].b_only);
    assert!(shift.tests[0].p_value < 1e-6);
    assert!(shift.tests[1].a.estimate > shift.tests[1].b.estimate);
    // Metric deltas agree with the two summaries.
    let t_change = &j.artifacts[0].metrics[0];
    assert_eq!(t_change.metric, "T");
    let delta = t_change.b.estimate.unwrap() - t_change.a.estimate.unwrap();
    assert_eq!(t_change.delta, Some(delta));
    assert!(delta < -0.3);

    // Markdown on stdout names the judge, its verdicts and the changed calls.
    let output = bin().arg("compare").args([&a, &b]).output().unwrap();
    assert_success(&output);
    let md = String::from_utf8(output.stdout).unwrap();
    assert!(
        md.contains("## sim-drifting (SIMULATED judge): REJECT → ADOPT"),
        "{md}"
    );
    assert!(md.contains(&format!("`{}`", cond("shift/apology").changed_calls[0])));
    assert!(!md.contains("No shared verdict changed."));
}

#[test]
fn demo_runs_with_different_seeds() {
    let a = report_common::demo(42);
    let b = report_common::demo(43);
    let (ra, rb) = (
        compare::load_run(&a).unwrap(),
        compare::load_run(&b).unwrap(),
    );
    let c = compare::compare(&ra, &rb);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("seeds differ (A: 42, B: 43)"))
    );
    assert!(
        !c.warnings
            .iter()
            .any(|w| w.contains("dataset hashes differ"))
    );
    assert_eq!(c.judges.len(), 7);
    assert!(c.judges_only_in_a.is_empty() && c.judges_only_in_b.is_empty());
    check_changed_counts(&c, &a, &b);
    // Every planned call is shared: 7 judges × 2016 calls.
    let shared: u64 = c
        .judges
        .iter()
        .flat_map(|j| j.conditions.iter())
        .map(|x| x.shared + x.unmatched)
        .sum();
    assert_eq!(shared, 7 * 2016);
    // The demo has fewer than 100 pairs, so every interval is the small-sample one, a function of
    // the verdicts alone that does not follow the bootstrap seed (issue 19). Since issue 13 the
    // simulated judges draw their run-to-run noise per call from the run seed, so verdicts (and
    // with them intervals) may differ between seeds; a judge whose verdicts did not change must
    // keep every interval.
    for j in &c.judges {
        let changed: u64 = j.conditions.iter().map(|x| x.changed).sum();
        if changed == 0 {
            assert!(
                !j.artifacts
                    .iter()
                    .flat_map(|x| x.metrics.iter())
                    .any(|m| m.a.ci_low != m.b.ci_low || m.a.ci_high != m.b.ci_high),
                "{}: no verdict changed but an interval moved",
                j.name
            );
        }
    }

    // A run compared with itself: nothing changed, every p-value is 1, no warning, and the
    // demo's pointwise judges are compared too (nothing changed there either).
    let same = compare::compare(&ra, &ra);
    assert!(same.warnings.is_empty(), "{:?}", same.warnings);
    assert_eq!(same.pointwise_judges.len(), 3);
    for cond in same
        .pointwise_judges
        .iter()
        .flat_map(|j| &j.criteria)
        .flat_map(|c| &c.conditions)
    {
        assert_eq!((cond.changed, cond.unmatched), (0, 0), "{}", cond.condition);
        let p = cond
            .score
            .as_ref()
            .map_or_else(|| cond.label.as_ref().unwrap().p_value, |t| t.p_value);
        assert_eq!(p, 1.0);
    }
    for j in &same.judges {
        for cond in &j.conditions {
            assert_eq!(cond.changed, 0);
            for t in &cond.tests {
                assert_eq!((t.a_only, t.b_only, t.p_value), (0, 0, 1.0));
                assert_eq!(t.a, t.b);
            }
        }
        for m in &j.baseline {
            assert_eq!(m.delta, Some(0.0));
        }
    }
}

#[test]
fn hand_edited_calls_give_the_exact_mcnemar_p_value() {
    let source = report_common::demo(42);
    let b = scratch("edited");
    std::fs::copy(source.join("summary.json"), b.join("summary.json")).unwrap();
    // Edit the second baseline repeat of sim-unbiased (the first feeds the flip outcomes):
    // seven first-slot wins become second-slot wins and one second-slot win becomes a first.
    let (mut to_second, mut to_first, mut invalidated, mut dropped) = (0, 0, 0, 0);
    let mut lines = Vec::new();
    for line in std::fs::read_to_string(source.join("calls.jsonl"))
        .unwrap()
        .lines()
    {
        let mut v: Value = serde_json::from_str(line).unwrap();
        let id = v["call_id"].as_str().unwrap().to_string();
        if v["judge"] == "sim-unbiased" && v["kind"] == "baseline" && v["repeat"] == 1 {
            if v["verdict"] == "first" && to_second < 7 {
                v["verdict"] = "second".into();
                to_second += 1;
            } else if v["verdict"] == "second" && to_first < 1 {
                v["verdict"] = "first".into();
                to_first += 1;
            } else if v["verdict"] == "tie" && invalidated < 1 {
                v["verdict"] = "invalid".into();
                invalidated += 1;
            }
        }
        if v["judge"] == "sim-first-slot" && id.contains("/shift/halo/") && dropped < 3 {
            dropped += 1;
            continue;
        }
        lines.push(serde_json::to_string(&v).unwrap());
    }
    assert_eq!((to_second, to_first, invalidated, dropped), (7, 1, 1, 3));
    std::fs::write(b.join("calls.jsonl"), lines.join("\n") + "\n").unwrap();
    let mut summary: Value =
        serde_json::from_str(&std::fs::read_to_string(b.join("summary.json")).unwrap()).unwrap();
    summary["dataset"]["hash"] = "0".repeat(64).into();
    std::fs::write(b.join("summary.json"), summary.to_string()).unwrap();

    let c = compare::compare(
        &compare::load_run(&source).unwrap(),
        &compare::load_run(&b).unwrap(),
    );
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("dataset hashes differ"))
    );
    assert!(
        c.warnings
            .iter()
            // 7 pairwise judges × 2016 calls and 3 pointwise judges × 768 grades, less the 3
            // dropped above.
            .any(|w| w.contains("16413 call ids are in both runs"))
    );
    check_changed_counts(&c, &source, &b);
    let unbiased = c.judges.iter().find(|j| j.name == "sim-unbiased").unwrap();
    let baseline = &unbiased.conditions[0];
    assert_eq!(baseline.condition, "baseline");
    assert_eq!(baseline.changed, 8);
    assert_eq!(baseline.unmatched, 1, "the invalid verdict is not paired");
    assert_eq!(baseline.shared, 191);
    let t = &baseline.tests[0];
    assert_eq!((t.a_only, t.b_only), (7, 1));
    // Hand-worked: 2 · (C(8,0) + C(8,1)) / 2^8 = 18 / 256 = 0.0703125.
    assert!((t.p_value - 0.0703125).abs() < 1e-12, "{}", t.p_value);
    for cond in &unbiased.conditions[1..] {
        assert_eq!(cond.changed, 0, "{}", cond.condition);
    }
    let first_slot = c
        .judges
        .iter()
        .find(|j| j.name == "sim-first-slot")
        .unwrap();
    let halo = first_slot
        .conditions
        .iter()
        .find(|x| x.condition == "shift/halo")
        .unwrap();
    assert_eq!(halo.shared + halo.unmatched, 192 - 3);
    let md = compare::render_markdown(&c);
    assert!(md.contains("> **Warning:** The dataset hashes differ"));
    assert!(md.contains("| baseline | 191 | 8 | the first slot wins |"));
    assert!(md.contains("| 7 / 1 | 0.070 /"));
}

#[test]
fn unreadable_runs_exit_with_code_2_and_name_the_file() {
    let dir = scratch("missing");
    let output = bin()
        .arg("compare")
        .arg(dir.join("nope"))
        .arg(report_common::demo(42))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nope/summary.json"), "{stderr}");

    let broken = scratch("broken");
    std::fs::copy(
        report_common::demo(42).join("summary.json"),
        broken.join("summary.json"),
    )
    .unwrap();
    std::fs::write(broken.join("calls.jsonl"), "{\"call_id\": 1}\n").unwrap();
    let output = bin()
        .arg("compare")
        .arg(&broken)
        .arg(&broken)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("calls.jsonl:1:"), "{stderr}");
}

/// The grade of criterion `name` in a calls.jsonl record, as JSON.
fn grade_of<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v["grades"]
        .as_array()?
        .iter()
        .find(|g| g["name"] == name)
        .map(|g| &g["grade"])
}

#[test]
fn hand_edited_grades_give_the_exact_wilcoxon_and_mcnemar_p_values() {
    let source = report_common::demo(42);
    let text = std::fs::read_to_string(source.join("calls.jsonl")).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let apology = |v: &Value| {
        v["judge"] == "sim-grader-apology" && v["kind"] == "shift" && v["artifact"] == "apology"
    };
    let score = |v: &Value| {
        grade_of(v, "score")
            .filter(|g| g["kind"] == "score")
            .and_then(|g| g["value"].as_f64())
    };
    // Pairs whose two answers both carry a valid apology grade: editing answer a alone moves the
    // pair's mean change by exactly ±0.5.
    let mut sides: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
    for v in records.iter().filter(|v| apology(v)) {
        if let Some(s) = score(v) {
            sides
                .entry(v["pair_id"].as_str().unwrap().to_string())
                .or_default()
                .push((v["side"].as_str().unwrap().to_string(), s));
        }
    }
    let full: Vec<(String, f64)> = sides
        .iter()
        .filter(|(_, s)| s.len() == 2)
        .map(|(p, s)| (p.clone(), s.iter().find(|x| x.0 == "a").unwrap().1))
        .collect();
    let up: Vec<&String> = full
        .iter()
        .filter(|(_, s)| *s <= 9.0)
        .map(|(p, _)| p)
        .take(12)
        .collect();
    let down: Vec<&String> = full
        .iter()
        .filter(|(p, s)| *s >= 2.0 && !up.contains(&p))
        .map(|(p, _)| p)
        .take(2)
        .collect();
    let spoiled = full
        .iter()
        .map(|(p, _)| p)
        .find(|p| !up.contains(p) && !down.contains(p))
        .unwrap()
        .clone();
    assert_eq!((up.len(), down.len()), (12, 2), "the demo has enough pairs");
    let valid_before = records
        .iter()
        .filter(|v| apology(v) && score(v).is_some())
        .count() as u64;

    // The classifier's baseline: five unsafe → safe and one safe → unsafe.
    let (mut to_safe, mut to_unsafe) = (0, 0);
    let mut lines = Vec::new();
    for mut v in records.clone() {
        let pair = v["pair_id"].as_str().unwrap().to_string();
        if apology(&v) && v["side"] == "a" {
            let s = score(&v);
            let set = |v: &mut Value, g: Value| {
                v["grades"][0]["grade"] = g;
            };
            if up.contains(&&pair) {
                set(
                    &mut v,
                    serde_json::json!({"kind": "score", "value": s.unwrap() + 1.0}),
                );
            } else if down.contains(&&pair) {
                set(
                    &mut v,
                    serde_json::json!({"kind": "score", "value": s.unwrap() - 1.0}),
                );
            } else if pair == spoiled {
                set(&mut v, serde_json::json!({"kind": "unparseable"}));
            }
        }
        if v["judge"] == "sim-safety-apology" && v["kind"] == "baseline" {
            let label = grade_of(&v, "label").map(|g| g["value"].clone());
            if label == Some("unsafe".into()) && to_safe < 5 {
                v["grades"][0]["grade"]["value"] = "safe".into();
                to_safe += 1;
            } else if label == Some("safe".into()) && to_unsafe < 1 {
                v["grades"][0]["grade"]["value"] = "unsafe".into();
                to_unsafe += 1;
            }
        }
        lines.push(serde_json::to_string(&v).unwrap());
    }
    assert_eq!((to_safe, to_unsafe), (5, 1));
    let b = scratch("edited-grades");
    std::fs::copy(source.join("summary.json"), b.join("summary.json")).unwrap();
    std::fs::write(b.join("calls.jsonl"), lines.join("\n") + "\n").unwrap();

    let c = compare::compare(
        &compare::load_run(&source).unwrap(),
        &compare::load_run(&b).unwrap(),
    );
    assert!(
        !c.warnings.iter().any(|w| w.contains("not compared (")),
        "{:?}",
        c.warnings
    );
    let names: Vec<&str> = c.pointwise_judges.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "sim-grader-unbiased",
            "sim-grader-apology",
            "sim-safety-apology"
        ]
    );
    let grader = &c.pointwise_judges[1];
    assert!(grader.simulated);
    let criterion = &grader.criteria[0];
    assert_eq!(criterion.criterion, "score");
    let cond = criterion
        .conditions
        .iter()
        .find(|x| x.condition == "grade/apology")
        .unwrap();
    assert_eq!(
        cond.shared,
        valid_before - 1,
        "the spoiled grade is not paired"
    );
    assert_eq!(cond.changed, 14);
    let t = cond.score.as_ref().unwrap();
    assert_eq!((t.up, t.down, t.pairs_nonzero), (12, 2, 14));
    assert!((t.mean_change - 10.0 / cond.shared as f64).abs() < 1e-12);
    // scipy 1.17.1: wilcoxon([0.5] * 12 + [-0.5] * 2,
    //   method=PermutationMethod(n_resamples=inf)).pvalue = 0.012939453125 (= 2 · 106 / 2^14).
    assert!((t.p_value - 0.012939453125).abs() < 1e-12, "{}", t.p_value);
    assert!((t.p_bonferroni - (t.p_value * c.tests as f64).min(1.0)).abs() < 1e-12);
    // Every other condition and judge is untouched.
    for x in criterion
        .conditions
        .iter()
        .filter(|x| x.condition != "grade/apology")
    {
        assert_eq!(x.changed, 0, "{}", x.condition);
    }
    for x in c.pointwise_judges[0]
        .criteria
        .iter()
        .flat_map(|c| &c.conditions)
    {
        assert_eq!(x.changed, 0, "{}", x.condition);
        assert_eq!(x.score.as_ref().unwrap().p_value, 1.0);
    }

    let classifier = &c.pointwise_judges[2].criteria[0];
    let base = &classifier.conditions[0];
    assert_eq!(base.condition, "baseline");
    assert_eq!(base.changed, 6);
    let t = base.label.as_ref().unwrap();
    assert_eq!((t.a_only, t.b_only), (5, 1));
    // Hand-worked: 2 · (C(6,0) + C(6,1)) / 2^6 = 14 / 64.
    assert!((t.p_value - 14.0 / 64.0).abs() < 1e-12, "{}", t.p_value);
    assert_eq!(t.n, base.shared);

    // The Bonferroni family counts the pairwise McNemar tests and one test per pointwise
    // condition.
    let pairwise: usize = c
        .judges
        .iter()
        .flat_map(|j| &j.conditions)
        .map(|x| x.tests.len())
        .sum();
    let pointwise: usize = c
        .pointwise_judges
        .iter()
        .flat_map(|j| &j.criteria)
        .map(|x| x.conditions.len())
        .sum();
    assert_eq!(c.tests, pairwise + pointwise);

    let md = compare::render_markdown(&c);
    assert!(md.contains("## sim-grader-apology (SIMULATED judge) (pointwise): "));
    assert!(md.contains("### Criterion `score` (score 1–10)"));
    assert!(
        md.contains(&format!(
            "| grade/apology | {} | 1 | 14 | mean ",
            cond.shared
        )),
        "{md}"
    );
    assert!(
        md.contains("(12 up, 2 down; Wilcoxon on 14 pairs) | 0.013 /"),
        "{md}"
    );
    assert!(
        md.contains("| 5 / 1 (A only / B only; McNemar) | 0.219 /"),
        "{md}"
    );
    assert!(
        md.contains("| apology | mean score shift | +1.43 ["),
        "{md}"
    );
    let json: Value = serde_json::from_str(&compare::render_json(&c)).unwrap();
    assert_eq!(json["pointwise_judges"].as_array().unwrap().len(), 3);
}
