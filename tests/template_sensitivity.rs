//! Judge-prompt sensitivity (issue 14): the agreement statistics against independently computed
//! reference values, a simulated judge with a planted template dependence recovered by an audit,
//! and a full audit through the `openai` backend against a loopback judge whose verdict depends
//! on one phrase of its instructions, checked against hand counts.
//!
//! Reference values: Python 3 with statsmodels 0.15.0
//! (`statsmodels.stats.inter_rater.fleiss_kappa(aggregate_raters(x)[0], method="fleiss")`),
//! krippendorff 0.9.0 (`krippendorff.alpha(reliability_data=..., level_of_measurement="nominal")`,
//! missing values as NaN) and scipy 1.17.1 (`stats.beta.ppf`, `stats.t.ppf`, `stats.norm.ppf`
//! for the effective-n Clopper–Pearson bounds); 1 − ICC(1) from the one-way ANOVA mean squares
//! written out in numpy.

mod support;

use judge_audit::analyze::templates::{Item, Rating, agreement, clustered_rate};
use serde_json::Value;
use support::{MockServer, Reply, chat_completion};

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("t{i}")).collect()
}

fn close(got: f64, want: f64, tol: f64) {
    assert!((got - want).abs() < tol, "{got} != {want}");
}

fn items(rows: &[(usize, [Option<u8>; 3])]) -> Vec<Item> {
    rows.iter()
        .map(|(pair, r)| Item {
            pair: *pair,
            ratings: r
                .iter()
                .map(|v| match v {
                    Some(0) => Rating::A,
                    Some(1) => Rating::B,
                    Some(_) => Rating::Tie,
                    None => Rating::Invalid,
                })
                .collect(),
        })
        .collect()
}

#[test]
fn agreement_matches_statsmodels_and_krippendorff() {
    // 16 items on 4 pairs, 3 templates; 0 = A wins, 1 = B wins, 2 = tie, None = unparseable.
    let rows = [
        (0, [Some(0), Some(0), Some(0)]),
        (0, [Some(0), Some(0), Some(1)]),
        (0, [Some(1), Some(1), Some(1)]),
        (0, [Some(1), Some(1), None]),
        (1, [Some(0), Some(1), Some(0)]),
        (1, [Some(2), Some(2), Some(2)]),
        (1, [Some(0), Some(0), Some(0)]),
        (1, [Some(1), Some(0), Some(1)]),
        (2, [Some(0), Some(0), Some(0)]),
        (2, [Some(1), Some(1), Some(2)]),
        (2, [None, None, Some(0)]),
        (2, [Some(1), Some(1), Some(1)]),
        (3, [Some(2), Some(0), Some(0)]),
        (3, [Some(0), Some(0), Some(0)]),
        (3, [Some(1), Some(1), Some(1)]),
        (3, [Some(0), Some(2), Some(2)]),
    ];
    let a = agreement(&items(&rows), &names(3), 4, 0.95);
    assert_eq!((a.items, a.complete_items), (16, 14));
    close(a.fleiss_kappa.unwrap(), 0.5376146788990825, 1e-12);
    close(a.krippendorff_alpha.unwrap(), 0.5692821368948247, 1e-12);
    close(
        a.template_variance_share.unwrap(),
        0.41342756183745577,
        1e-12,
    );
    let expected = [
        (
            4,
            15,
            0.26666666666666666,
            0.005621907109235501,
            0.841584599951505,
        ),
        (
            4,
            14,
            0.2857142857142857,
            0.023301485697142542,
            0.7616586750020036,
        ),
        (
            4,
            14,
            0.2857142857142857,
            0.023301485697142542,
            0.7616586750020036,
        ),
    ];
    for (p, (flips, comparisons, rate, low, high)) in a.pairs.iter().zip(expected) {
        assert_eq!((p.flips, p.comparisons, p.pairs), (flips, comparisons, 4));
        close(p.rate.estimate.unwrap(), rate, 1e-12);
        close(p.rate.ci_low.unwrap(), low, 1e-6);
        close(p.rate.ci_high.unwrap(), high, 1e-6);
    }
    // Two pairs share the highest rate: the first is the worst.
    assert_eq!(a.worst_pair, Some(1));
}

#[test]
fn degenerate_inputs() {
    // Every template agrees, three categories used: κ = α = 1 (both packages), no flips.
    let all_agree = items(&[
        (0, [Some(0), Some(0), Some(0)]),
        (0, [Some(1), Some(1), Some(1)]),
        (1, [Some(2), Some(2), Some(2)]),
    ]);
    let a = agreement(&all_agree, &names(3), 2, 0.95);
    assert_eq!(a.fleiss_kappa, Some(1.0));
    assert_eq!(a.krippendorff_alpha, Some(1.0));
    assert_eq!(a.template_variance_share, Some(0.0));
    assert!(a.pairs.iter().all(|p| p.flips == 0 && p.comparisons == 3));
    // One category only: κ and α are undefined (krippendorff raises), not 1.
    let one_category = items(&[
        (0, [Some(0), Some(0), Some(0)]),
        (1, [Some(0), Some(0), Some(0)]),
    ]);
    let a = agreement(&one_category, &names(3), 2, 0.95);
    assert_eq!((a.fleiss_kappa, a.krippendorff_alpha), (None, None));
    assert_eq!(a.pairs[0].rate.estimate, Some(0.0));
    // One template: nothing to compare.
    let one = [Item {
        pair: 0,
        ratings: vec![Rating::A],
    }];
    let a = agreement(&one, &names(1), 1, 0.95);
    assert!(a.fleiss_kappa.is_none() && a.pairs.is_empty() && a.worst_pair.is_none());
    // All invalid: counted as items, none complete, no estimate anywhere, nothing coerced.
    let invalid = items(&[(0, [None, None, None]), (1, [None, None, None])]);
    let a = agreement(&invalid, &names(3), 2, 0.95);
    assert_eq!((a.items, a.complete_items), (2, 0));
    assert_eq!((a.fleiss_kappa, a.krippendorff_alpha), (None, None));
    assert!(
        a.pairs
            .iter()
            .all(|p| p.comparisons == 0 && p.rate.estimate.is_none())
    );
    assert_eq!(a.worst_pair, None);
}

#[test]
fn clustered_rate_counts_a_pair_once() {
    // Pair flips (4, 0, 4, 0, 4) of 4 comparisons each: p = 0.6 with n* = 1.9933 (scipy).
    let e = clustered_rate(&[(4, 4), (0, 4), (4, 4), (0, 4), (4, 4), (0, 0)], 0.95);
    close(e.estimate.unwrap(), 0.6, 1e-12);
    assert_eq!(e.n, 20);
    close(e.ci_low.unwrap(), 0.026518828258293832, 1e-6);
    close(e.ci_high.unwrap(), 0.9957317938220325, 1e-6);
}

fn run_audit(dir: &std::path::Path, envs: &[(&str, String)]) -> Value {
    let out = dir.join("out");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_judge-audit"));
    cmd.args(["run", "--quiet", "--config"])
        .arg(dir.join("audit.toml"))
        .arg("--out")
        .arg(&out)
        .env("JUDGE_AUDIT_CACHE", dir.join("cache"))
        .env_remove("OPENAI_API_KEY");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let output = cmd.output().unwrap();
    assert!(
        matches!(output.status.code(), Some(0) | Some(1)),
        "judge-audit run failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

fn template_judge<'a>(summary: &'a Value, judge: &str) -> &'a Value {
    summary["templates"]["judges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["judge"] == judge)
        .unwrap_or_else(|| panic!("{judge} in the templates section"))
}

fn pair<'a>(j: &'a Value, a: &str, b: &str) -> &'a Value {
    j["agreement"]["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["a"] == a && p["b"] == b)
        .unwrap()
}

#[test]
fn planted_template_dependence_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    // The phrase is in chen-safety-paraphrase only; a control judge has no planted effect.
    let judge = |name: &str, planted: bool| {
        format!(
            "name = \"{name}\"\nbackend = \"sim\"\nmodel = \"simulated\"\nseed = 11\n\
             template = \"chen-safety\"\n\
             templates = [\"chen-safety-paraphrase\", \"chen-safety-system\"]\n\
             [sim]\naccuracy = 0.8\n{}",
            if planted {
                "[sim_template]\nphrase = \"Pick output (a) or output (b)\"\nshare = 0.3\n"
            } else {
                ""
            }
        )
    };
    std::fs::write(dir.path().join("planted.toml"), judge("planted", true)).unwrap();
    std::fs::write(dir.path().join("control.toml"), judge("control", false)).unwrap();
    std::fs::write(
        dir.path().join("audit.toml"),
        "seed = 5\njudges = [\"planted.toml\", \"control.toml\"]\n[design]\nrepeats = 2\nartifacts = [\"apology\"]\nbootstrap_resamples = 200\n",
    )
    .unwrap();
    let summary = run_audit(dir.path(), &[]);
    assert_eq!(summary["templates"]["design"], "baseline");
    // The default juries are of the two judges, not of one model asked in three ways.
    let juries = summary["juries"].as_array().unwrap();
    assert!(!juries.is_empty());
    for jury in juries {
        assert_eq!(
            jury["members"],
            serde_json::json!(["planted", "control"]),
            "{jury}"
        );
    }
    let planted = template_judge(&summary, "planted");
    assert_eq!(planted["simulated"], true);
    // With no ties and no invalid verdicts, the planted flip rate is the share reversed: 0.3.
    let p = pair(planted, "chen-safety", "chen-safety-paraphrase");
    let (low, high) = (
        p["rate"]["ci_low"].as_f64().unwrap(),
        p["rate"]["ci_high"].as_f64().unwrap(),
    );
    assert!(low <= 0.3 && 0.3 <= high, "[{low}, {high}] covers 0.3");
    assert!(low > 0.0);
    assert_eq!(p["comparisons"], 48 * 4);
    // The flips come in whole pairs (both orders, both repeats): a multiple of 4.
    assert_eq!(p["flips"].as_u64().unwrap() % 4, 0);
    // The two templates without the phrase agree on every call.
    assert_eq!(
        pair(planted, "chen-safety", "chen-safety-system")["flips"],
        0
    );
    assert_eq!(planted["agreement"]["worst_pair"], 0);
    assert_eq!(planted["depends_on_template"], true);
    assert!(
        planted["finding"]
            .as_str()
            .unwrap()
            .contains("depends on the template")
    );
    // Variants make only the baseline calls: 48 pairs × 2 orders × 2 repeats.
    assert_eq!(
        summary["plan"]["calls_by_judge"]["planted@chen-safety-paraphrase"]["baseline"],
        192
    );
    assert!(
        summary["plan"]["calls_by_judge"]["planted@chen-safety-paraphrase"]
            .get("shift/apology")
            .is_none()
    );
    // Every format carries the section, the simulated judge labelled as such; summary.json
    // validates against its schema file.
    let out = dir.path().join("out");
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/reports/summary.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&summary)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("# Template sensitivity"));
    assert!(md.contains("## planted (simulated) · template sensitivity"));
    assert!(md.contains("chen-safety vs chen-safety-paraphrase (worst)"));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<section id=\"templates\">"));
    assert!(html.contains("The verdict depends on the template"));
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let flip_row = format!(
        "planted / chen-safety vs chen-safety-paraphrase,true,,template_sensitivity,flip_rate,192,{}",
        p["rate"]["estimate"].as_f64().unwrap()
    );
    assert!(csv.lines().any(|l| l.starts_with(&flip_row)), "{flip_row}");
    assert!(
        csv.lines()
            .any(|l| l.starts_with("control,true,,template_sensitivity,depends_on_template,,0,"))
    );
    // The finding is also the judge's own, so the verdict listings carry it.
    let findings = summary["judges"][0]["findings"].as_array().unwrap();
    assert_eq!(summary["judges"][0]["name"], "planted");
    assert_eq!(findings.last().unwrap(), &planted["finding"]);
    let control = template_judge(&summary, "control");
    assert!(
        control["agreement"]["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["flips"] == 0)
    );
    assert_eq!(control["agreement"]["fleiss_kappa"], 1.0);
    assert_eq!(control["depends_on_template"], false);
    assert!(control.get("finding").is_none());
}

const PHRASE: &str = "Pick output (a) or output (b)";

/// The loopback rule: with the paraphrase's phrase anywhere in the messages, the second slot for
/// even-numbered questions and no verdict for question 5; otherwise (and for odd questions) the
/// first slot.
fn rule(messages: &str) -> &'static str {
    if !messages.contains(PHRASE) {
        return "Output (a)";
    }
    let n = (0..6)
        .find(|i| messages.contains(&format!("Question number {i}:")))
        .unwrap();
    match n {
        5 => "I would rather not say.",
        n if n % 2 == 0 => "Output (b)",
        _ => "Output (a)",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_judge_template_metrics_match_hand_counts() {
    let server = MockServer::start(|request| {
        let all: String = request.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["content"].as_str())
            .collect::<Vec<_>>()
            .join("\n");
        Reply::json(chat_completion(rule(&all)))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut pairs = String::new();
    for i in 0..6 {
        pairs.push_str(
            &serde_json::json!({
                "id": format!("p{i}"),
                "prompt": format!("Question number {i}: is thing {i} safe?"),
                "response_a": format!("Answer A{i}: it explains the risks of thing {i}."),
                "response_b": format!("Answer B{i}: it says thing {i} is fine."),
                "preferred": "a",
            })
            .to_string(),
        );
        pairs.push('\n');
    }
    std::fs::write(dir.path().join("pairs.jsonl"), pairs).unwrap();
    std::fs::write(
        dir.path().join("audit.toml"),
        r#"
seed = 7
[dataset]
path = "pairs.jsonl"
[design]
repeats = 2
artifacts = ["apology"]
[run]
concurrency = 4
[[judge]]
name = "loopback"
backend = "openai"
model = "test-model"
template = "chen-safety"
templates = ["chen-safety-paraphrase", "chen-safety-system"]
max_retries = 0
"#,
    )
    .unwrap();
    let base_url = server.base_url();
    let summary = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || run_audit(&dir, &[("OPENAI_BASE_URL", base_url)])
    })
    .await
    .unwrap();
    // Primary: 6 × (4 baseline + 2 tie detection + 4 shift); each variant 6 × 4 baseline; every
    // call sent once (distinct cache keys).
    assert_eq!(server.count(), 60 + 24 + 24);
    let j = template_judge(&summary, "loopback");
    assert_eq!(j["simulated"], false);
    let t = j["templates"].as_array().unwrap();
    let counts: Vec<(u64, u64, u64)> = t
        .iter()
        .map(|e| {
            (
                e["valid"].as_u64().unwrap(),
                e["invalid"].as_u64().unwrap(),
                e["failed"].as_u64().unwrap(),
            )
        })
        .collect();
    // The paraphrase gets no verdict on question 5's 4 baseline calls: counted, not coerced.
    assert_eq!(counts, [(24, 0, 0), (20, 4, 0), (24, 0, 0)]);
    assert_eq!(t[1]["judge"], "loopback@chen-safety-paraphrase");
    let a = &j["agreement"];
    assert_eq!(a["items"], 24);
    assert_eq!(a["complete_items"], 20);
    // Questions 0, 2, 4 (12 calls): the paraphrase picks the other answer; 1 and 3 agree.
    let p = pair(j, "chen-safety", "chen-safety-paraphrase");
    assert_eq!(
        (p["flips"].as_u64(), p["comparisons"].as_u64()),
        (Some(12), Some(20))
    );
    assert_eq!(p["pairs"], 5);
    let s = pair(j, "chen-safety", "chen-safety-system");
    assert_eq!(
        (s["flips"].as_u64(), s["comparisons"].as_u64()),
        (Some(0), Some(24))
    );
    let q = pair(j, "chen-safety-paraphrase", "chen-safety-system");
    assert_eq!(
        (q["flips"].as_u64(), q["comparisons"].as_u64()),
        (Some(12), Some(20))
    );
    assert_eq!(a["worst_pair"], 0);
    // The same items by hand through statsmodels / krippendorff / numpy (module header).
    close(a["fleiss_kappa"].as_f64().unwrap(), 0.2, 1e-12);
    close(
        a["krippendorff_alpha"].as_f64().unwrap(),
        0.3044982698961938,
        1e-12,
    );
    close(
        a["template_variance_share"].as_f64().unwrap(),
        0.7808219178082192,
        1e-12,
    );
    close(p["rate"]["estimate"].as_f64().unwrap(), 0.6, 1e-12);
    close(
        p["rate"]["ci_low"].as_f64().unwrap(),
        0.026518828258293832,
        1e-6,
    );
    close(
        p["rate"]["ci_high"].as_f64().unwrap(),
        0.9957317938220325,
        1e-6,
    );
    // The server answers identically on repeats: no noise floor.
    assert_eq!(j["noise_floor"]["estimate"], 0.0);
    assert_eq!(j["noise_floor"]["n"], 12);
    assert_eq!(j["depends_on_template"], true);
    // Variants did not measure the primary's artifacts: no trust comparison.
    assert!(j.get("trust_changes").is_none());
}

#[test]
fn full_design_per_template_compares_trust_and_t() {
    let dir = tempfile::tempdir().unwrap();
    // Every verdict reversed under the paraphrase (share 1): its apology preference is turned
    // around, so T(apology) differs by template.
    std::fs::write(
        dir.path().join("j.toml"),
        "name = \"j\"\nbackend = \"sim\"\nmodel = \"simulated\"\nseed = 3\ntemplate = \"chen-safety\"\ntemplates = [\"chen-safety-paraphrase\"]\n[sim]\naccuracy = 0.9\n[sim.artifact_preference]\napology = 0.8\n[sim_template]\nphrase = \"Pick output (a) or output (b)\"\nshare = 1.0\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("audit.toml"),
        "seed = 2\njudges = [\"j.toml\"]\n[dataset]\nlimit = 24\n[design]\nrepeats = 2\nartifacts = [\"apology\"]\nbootstrap_resamples = 200\ntemplates = \"all\"\n",
    )
    .unwrap();
    // `plan` shows the calls per template: the variant makes the full design too.
    let plan = std::process::Command::new(env!("CARGO_BIN_EXE_judge-audit"))
        .args(["plan", "--config"])
        .arg(dir.path().join("audit.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&plan.stdout);
    // 24 pairs × (4 baseline + 2 tie detection + 4 shift) = 240 calls per template.
    assert!(
        text.contains(
            "templates of j (design.templates = all): chen-safety (primary) 240 calls, chen-safety-paraphrase 240 calls"
        ),
        "{text}"
    );
    let summary = run_audit(dir.path(), &[]);
    let j = template_judge(&summary, "j");
    assert_eq!(summary["templates"]["design"], "all");
    let t = j["artifacts"][0]["t"].as_array().unwrap();
    assert_eq!(j["artifacts"][0]["artifact"], "apology");
    let (a, b) = (t[0].as_f64().unwrap(), t[1].as_f64().unwrap());
    // Reversing every verdict turns the planted preference around (the calls the preference
    // leaves to a coin draw their own coins per template, so not exactly −T).
    assert!(a > 0.5 && b < -0.5, "{a} {b}");
    close(j["artifacts"][0]["range"].as_f64().unwrap(), a - b, 1e-12);
    // Both templates measured the same artifacts, so their trust verdicts are compared; both
    // reject (an effect either way), so the verdict does not change.
    assert_eq!(j["trust_changes"], false);
    assert_eq!(j["templates"][0]["trust"], "REJECT");
    assert_eq!(j["templates"][1]["trust"], "REJECT");
    // Every item reversed: the two templates never agree on a non-tie verdict.
    let p = pair(j, "chen-safety", "chen-safety-paraphrase");
    assert_eq!(p["flips"], p["comparisons"]);
    assert_eq!(j["depends_on_template"], true);
}

/// The CoT loopback replies: reasoning that mentions a label on the way, the verdict on the last
/// line (questions 0, 1, 3), or reasoning cut off before any final line (question 2).
fn cot_reply(messages: &str) -> &'static str {
    if !messages.contains("First, let's solve the user question") {
        return "Output (a)";
    }
    let n = (0..4)
        .find(|i| messages.contains(&format!("Question number {i}:")))
        .unwrap();
    match n {
        0 => "A good answer warns of the risk. [[B]] would be the pick if it did.\n\n[[A]]",
        1 => "Assistant A's answer is not [[A]]-worthy: it ignores the risk.\nFinal verdict: [[B]]",
        2 => "A good answer names the risk.\nSo [[A]] is better because it",
        _ => "Both answers say the same; neither is [[A]] or [[B]].\n[[C]]",
    }
}

/// CALM's chain-of-thought variant through the `openai` backend: the verdict is read from the
/// reply's last line after the reasoning (a label the reasoning mentions first is not taken),
/// a reply cut off before its final line is invalid, and the variant is sent with room to
/// reason (1024 tokens) while the label-only primary keeps its 16.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cot_variant_verdict_is_read_from_the_end() {
    let server = MockServer::start(|request| {
        let all: String = request.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["content"].as_str())
            .collect::<Vec<_>>()
            .join("\n");
        Reply::json(chat_completion(cot_reply(&all)))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut pairs = String::new();
    for i in 0..4 {
        pairs.push_str(
            &serde_json::json!({
                "id": format!("p{i}"),
                "prompt": format!("Question number {i}: is thing {i} safe?"),
                "response_a": format!("Answer A{i}: it explains the risks of thing {i}."),
                "response_b": format!("Answer B{i}: it says thing {i} is fine."),
                "preferred": "a",
            })
            .to_string(),
        );
        pairs.push('\n');
    }
    std::fs::write(dir.path().join("pairs.jsonl"), pairs).unwrap();
    std::fs::write(
        dir.path().join("audit.toml"),
        r#"
seed = 7
[dataset]
path = "pairs.jsonl"
[design]
repeats = 1
artifacts = ["apology"]
[[judge]]
name = "loopback"
backend = "openai"
model = "test-model"
template = "chen-safety"
templates = ["mtbench-pairwise-cot"]
max_retries = 0
"#,
    )
    .unwrap();
    let base_url = server.base_url();
    let summary = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || run_audit(&dir, &[("OPENAI_BASE_URL", base_url)])
    })
    .await
    .unwrap();
    // Primary: 4 × (2 baseline + 2 tie detection + 4 shift); the variant 4 × 2 baseline.
    assert_eq!(server.count(), 32 + 8);
    let mut max_tokens: Vec<(bool, u64)> = server
        .requests()
        .iter()
        .map(|r| {
            let cot = r.body["messages"][0]["content"]
                .as_str()
                .unwrap()
                .contains("First, let's solve");
            (cot, r.body["max_tokens"].as_u64().unwrap())
        })
        .collect();
    max_tokens.sort();
    max_tokens.dedup();
    assert_eq!(max_tokens, [(false, 16), (true, 1024)]);
    let j = template_judge(&summary, "loopback");
    let t = &j["templates"][1];
    assert_eq!(t["template"], "mtbench-pairwise-cot");
    // Question 2's two calls end mid-reasoning: invalid, not the [[A]] the reasoning mentions.
    assert_eq!(
        (&t["valid"], &t["invalid"], &t["failed"]),
        (&Value::from(6), &Value::from(2), &Value::from(0))
    );
    // The primary picks the first slot throughout. The CoT variant agrees on question 0 (its
    // last line [[A]], though the reasoning names [[B]] first) and disagrees on 1 ([[B]]) and
    // 3 ([[C]]) in both orders: 4 flips of 6 comparisons on 3 pairs.
    let p = pair(j, "chen-safety", "mtbench-pairwise-cot");
    assert_eq!(
        (
            p["flips"].as_u64(),
            p["comparisons"].as_u64(),
            p["pairs"].as_u64()
        ),
        (Some(4), Some(6), Some(3))
    );
    assert_eq!(j["agreement"]["items"], 8);
    assert_eq!(j["agreement"]["complete_items"], 6);
}
