//! Pointwise judges audited end to end through the `openai` backend, as a user does it: three
//! judge files (a 1–10 grader, a safe/unsafe classifier, a JSON rubric) and an audit.toml, run
//! by the binary against a real HTTP server on loopback that answers by fixed rules. Every
//! expected number below is worked out by hand from the rules.

mod support;

use serde_json::Value;
use std::path::Path;
use support::{MockServer, Recorded, Reply, chat_completion};

/// Chen's apology, the text the `apology` artifact puts before an answer.
const SORRY: &str = "I'm sorry";

/// The text between `start` and `end` in the last user message.
fn between(request: &Recorded, start: &str, end: &str) -> String {
    let user = request.body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default();
    let after = user.split_once(start).map(|(_, r)| r).unwrap_or_default();
    after.split(end).next().unwrap_or_default().to_string()
}

/// The grader: 7 for an a answer, 4 for a b answer, +2 under an apology; an off-scale 12 for
/// answers saying LOUD, no rating at all for answers saying MUMBLE.
fn grader(answer: &str) -> String {
    if answer.contains("LOUD") {
        return "Very loud.\nRating: [[12]]".into();
    }
    if answer.contains("MUMBLE") {
        return "I cannot rate this.".into();
    }
    let base = if answer.contains("Answer A") { 7 } else { 4 };
    let score = base + if answer.contains(SORRY) { 2 } else { 0 };
    format!("The answer is adequate.\nRating: [[{score}]]")
}

/// The classifier: a b answer is unsafe, unless it apologises (then safe) — except B1, which
/// stays unsafe; every a answer is safe. Unsafe verdicts name a category, Llama-Guard style.
fn guard(answer: &str) -> String {
    let unsafe_ = answer.contains("Answer B") && (!answer.contains(SORRY) || answer.contains("B1"));
    if unsafe_ {
        "unsafe\nS2".into()
    } else {
        "safe".into()
    }
}

/// The rubric: helpfulness 4 (a) or 2 (b), +1 under an apology; harmless yes (a) or no (b);
/// no JSON at all for B0. Replies are fenced, as models often write them.
fn rubric(answer: &str) -> String {
    if answer.contains("B0") {
        return "Sure! It looks fine to me.".into();
    }
    let a = answer.contains("Answer A");
    let help = if a { 4 } else { 2 } + i32::from(answer.contains(SORRY));
    let harmless = if a { "yes" } else { "no" };
    format!(
        "```json\n{{\"helpfulness\": {help}, \"harmless\": \"{harmless}\", \"reasons\": \"rule\"}}\n```"
    )
}

/// The pairwise judge: the slot holding answer a wins, except on pair p1, where b's slot wins.
fn pairwise(request: &Recorded) -> String {
    // The Chen template shows worked examples first; the pair judged follows "## Task:".
    let task = between(request, "## Task:", "\u{0}");
    let first = task
        .split_once("### Output (a):\n")
        .map(|(_, r)| r)
        .unwrap_or_default()
        .split("\n### Output (b):")
        .next()
        .unwrap_or_default();
    let wants = if first.contains("A1") || first.contains("B1") {
        "Answer B"
    } else {
        "Answer A"
    };
    if first.contains(wants) {
        "Output (a)"
    } else {
        "Output (b)"
    }
    .into()
}

fn answer_rules(request: &Recorded) -> Reply {
    let text = match request.body["model"].as_str().unwrap_or_default() {
        "grader-model" => grader(&between(
            request,
            "[The Start of Assistant's Answer]\n",
            "\n[The End of Assistant's Answer]",
        )),
        "guard-model" => guard(&between(
            request,
            "### Assistant response:\n",
            "\n\nAnswer with exactly",
        )),
        "rubric-model" => rubric(&between(request, "[Response]\n", "\n\nReply with one JSON")),
        _ => pairwise(request),
    };
    Reply::json(chat_completion(&text))
}

fn write_judges(dir: &Path) {
    std::fs::write(
        dir.join("grader.toml"),
        r#"name = "grader"
backend = "openai"
model = "grader-model"
kind = "score"
scale = { min = 1, max = 10 }
template = "mtbench-single"
max_tokens = 512
max_retries = 0
pairwise_judge = "cmp"
"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("guard.toml"),
        r#"name = "guard"
backend = "openai"
model = "guard-model"
kind = "label"
labels = ["safe", "unsafe"]
positive = "unsafe"
template = "safety-classifier"
max_retries = 0
"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("rubric.toml"),
        r#"name = "rubric"
backend = "openai"
model = "rubric-model"
kind = "rubric"
template = "json-rubric"
max_tokens = 256
max_retries = 0

[[criteria]]
name = "helpfulness"
scale = { min = 1, max = 5 }

[[criteria]]
name = "harmless"
labels = ["yes", "no"]
positive = "yes"
"#,
    )
    .unwrap();
}

fn write_pairs(dir: &Path) {
    let mut pairs = String::new();
    for (i, preferred) in ["a", "a", "a", "b"].iter().enumerate() {
        let marker = match i {
            2 => " LOUD",
            3 => " MUMBLE",
            _ => "",
        };
        pairs.push_str(
            &serde_json::json!({
                "id": format!("p{i}"),
                "prompt": format!("Question {i}: how do I do thing {i}?"),
                "response_a": format!("Answer A{i}: careful steps for thing {i}."),
                "response_b": format!("Answer B{i}:{marker} just do thing {i}."),
                "preferred": preferred,
            })
            .to_string(),
        );
        pairs.push('\n');
    }
    std::fs::write(dir.join("pairs.jsonl"), pairs).unwrap();
}

async fn run_audit(dir: &Path, base_url: String) -> Value {
    let out = dir.join("out");
    let output = tokio::task::spawn_blocking({
        let dir = dir.to_path_buf();
        let out = out.clone();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_judge-audit"))
                .args(["run", "--quiet", "--config"])
                .arg(dir.join("audit.toml"))
                .arg("--out")
                .arg(&out)
                .env("OPENAI_BASE_URL", base_url)
                .env("JUDGE_AUDIT_CACHE", dir.join("cache"))
                .env_remove("OPENAI_API_KEY")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "judge-audit run failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

fn pointwise_judge<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["pointwise"]["judges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["judge"] == name)
        .unwrap_or_else(|| panic!("pointwise judge {name}"))
}

fn criterion<'a>(judge: &'a Value, name: &str) -> &'a Value {
    judge["criteria"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("criterion {name}"))
}

fn close(value: &Value, expected: f64) {
    let got = value
        .as_f64()
        .unwrap_or_else(|| panic!("{value} is a number"));
    assert!((got - expected).abs() < 1e-12, "{got} != {expected}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grader_a_classifier_and_a_rubric_are_audited_from_judge_files() {
    let server = MockServer::start(answer_rules).await;
    let dir = tempfile::tempdir().unwrap();
    write_judges(dir.path());
    write_pairs(dir.path());
    std::fs::write(
        dir.path().join("audit.toml"),
        r#"seed = 7
judges = ["grader.toml", "guard.toml", "rubric.toml"]

[dataset]
path = "pairs.jsonl"

[design]
repeats = 2
artifacts = ["apology", "position"]

[[judge]]
name = "cmp"
backend = "openai"
model = "cmp-model"
template = "chen-safety"
max_retries = 0
"#,
    )
    .unwrap();
    let summary = run_audit(dir.path(), server.base_url()).await;

    // Pointwise: 3 judges × 4 pairs × 2 answers × (2 baseline grades + 1 apology grade) = 72;
    // the pairwise judge: 4 pairs × (4 baseline + 2 apology tie + 4 apology shift + 2 position)
    // = 48. Every call sent once.
    assert_eq!(server.count(), 120);
    let requests = server.requests();
    for r in requests.iter().filter(|r| r.body["model"] != "cmp-model") {
        let user = r.body["messages"].as_array().unwrap().last().unwrap()["content"]
            .as_str()
            .unwrap()
            .to_string();
        // One answer per prompt, never two.
        let answers = user.matches("Answer A").count() + user.matches("Answer B").count();
        assert_eq!(answers, 1, "{user}");
    }
    let rubric_prompt = requests
        .iter()
        .find(|r| r.body["model"] == "rubric-model")
        .unwrap();
    let text = rubric_prompt.raw_body.clone();
    assert!(
        text.contains(r#"- \"helpfulness\": an integer from 1 to 5"#),
        "{text}"
    );
    assert!(
        text.contains(r#"- \"harmless\": one of \"yes\", \"no\""#),
        "{text}"
    );

    assert_eq!(summary["plan"]["total_calls"], 120);
    assert_eq!(
        summary["plan"]["calls_by_judge"]["grader"],
        serde_json::json!({"grade": 16, "grade/apology": 8})
    );
    // The pairwise analysis holds the pairwise judge only.
    let names: Vec<&str> = summary["judges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cmp"]);
    // Position needs two answers: noted once per pointwise judge.
    let skipped: Vec<&str> = summary["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["kind"] == "pointwise_artifact_skipped")
        .map(|w| w["judge"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, ["grader", "guard", "rubric"]);

    // Grader: 24 grades; B2 is off the scale 3 times, B3 unreadable 3 times.
    let g = pointwise_judge(&summary, "grader");
    assert_eq!(g["kind"], "score");
    assert_eq!(g["simulated"], false);
    let score = criterion(g, "score");
    assert_eq!(score["calls"], 24);
    assert_eq!(score["invalid"]["unparseable"], 3);
    assert_eq!(score["invalid"]["out_of_range"], 3);
    let shifts = score["score_shifts"].as_array().unwrap();
    assert_eq!(shifts.len(), 1, "apology only: position is not planned");
    let s = &shifts[0];
    assert_eq!(s["artifact"], "apology");
    // The 6 answers with valid grades all rise by exactly 2.
    assert_eq!(s["n"], 6);
    close(&s["mean_shift"], 2.0);
    assert_eq!(
        (s["up"].as_u64(), s["down"].as_u64(), s["same"].as_u64()),
        (Some(6), Some(0), Some(0))
    );
    close(&s["interval"]["low"], 2.0);
    close(&s["interval"]["high"], 2.0);
    close(&s["sign_p"], 0.03125); // 2 · (1/2)^6
    close(&s["noise_abs_change"], 0.0); // repeats agree
    close(&s["excess"], 2.0);
    assert_eq!(s["invalid"]["unparseable"], 2); // B3: baseline and apology
    assert_eq!(s["invalid"]["out_of_range"], 2); // B2: baseline and apology
    // Gold order: p0 and p1 rank a (preferred) 7 over b 4; p2 and p3 have no valid b score.
    let inv = &score["gold_order_inversions"];
    assert_eq!(
        (inv["count"].as_u64(), inv["n"].as_u64()),
        (Some(0), Some(2))
    );
    // TrustJudge: p0 (7 vs 4, a wins) agrees, p1 (7 vs 4, b wins) does not; p2, p3 lack a score.
    let c = &g["consistency"];
    assert_eq!(c["pairwise_judge"], "cmp");
    assert_eq!(c["n"], 2);
    assert_eq!(c["inconsistent"], 1);
    assert_eq!(c["equal_scores"], 0);
    close(&c["rate"]["rate"], 0.5);

    // Classifier: every b answer unsafe at baseline; the apology turns 3 of the 4 safe.
    let guard = pointwise_judge(&summary, "guard");
    assert_eq!(guard["kind"], "label");
    let label = criterion(guard, "label");
    assert_eq!(label["calls"], 24);
    assert_eq!(label["invalid"]["unparseable"], 0);
    let flips = &label["label_flips"].as_array().unwrap()[0];
    assert_eq!(flips["artifact"], "apology");
    assert_eq!(flips["positive"], "unsafe");
    assert_eq!(flips["n"], 8);
    let down = &flips["positive_to_negative"];
    assert_eq!(
        (down["count"].as_u64(), down["n"].as_u64()),
        (Some(3), Some(4))
    );
    close(&down["rate"], 0.75);
    let up = &flips["negative_to_positive"];
    assert_eq!((up["count"].as_u64(), up["n"].as_u64()), (Some(0), Some(4)));
    close(&flips["mcnemar_p"], 0.25); // exact McNemar 3 vs 0: 2 · (1/2)^3
    close(&flips["positive_rate_before"], 0.5);
    close(&flips["positive_rate_after"], 0.125);
    close(&flips["positive_rate_change"], -0.375);
    // Gold from pairs is a preference, not a label: no label accuracy.
    assert!(label.get("label_accuracy").is_none_or(Value::is_null));

    // Rubric: two criteria, in the judge file's order; B0's reply has no JSON (3 calls).
    let rubric = pointwise_judge(&summary, "rubric");
    assert_eq!(rubric["kind"], "rubric");
    let names: Vec<&str> = rubric["criteria"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["helpfulness", "harmless"]);
    let help = criterion(rubric, "helpfulness");
    assert_eq!(help["calls"], 24);
    assert_eq!(help["invalid"]["unparseable"], 3);
    let s = &help["score_shifts"][0];
    assert_eq!(s["n"], 7);
    close(&s["mean_shift"], 1.0);
    assert_eq!(s["up"], 7);
    close(&s["sign_p"], 0.015625); // 2 · (1/2)^7
    // p1, p2: a (preferred) 4 over b 2; p3: b preferred but a scores 4 over 2; p0: b unread.
    let inv = &help["gold_order_inversions"];
    assert_eq!(
        (inv["count"].as_u64(), inv["n"].as_u64()),
        (Some(1), Some(3))
    );
    let harmless = criterion(rubric, "harmless");
    assert_eq!(harmless["invalid"]["unparseable"], 3);
    let flips = &harmless["label_flips"][0];
    assert_eq!(flips["n"], 7);
    assert_eq!(flips["positive_to_negative"]["count"], 0);
    assert_eq!(flips["positive_to_negative"]["n"], 4);
    assert_eq!(flips["negative_to_positive"]["n"], 3);
    close(&flips["positive_rate_change"], 0.0);
    close(&flips["mcnemar_p"], 1.0);

    // The stored run re-renders to the same summary.
    let out = dir.path().join("out");
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_judge-audit"))
        .arg("report")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let rerendered: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(rerendered["pointwise"], summary["pointwise"]);
    assert_eq!(server.count(), 120, "re-rendering sends nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_answers_with_gold_labels_give_the_classifier_its_accuracy() {
    let server = MockServer::start(answer_rules).await;
    let dir = tempfile::tempdir().unwrap();
    write_judges(dir.path());
    // Gold: A answers safe, B answers unsafe, except B2 whose gold is safe (a false positive).
    let mut items = String::new();
    for (id, response, gold) in [
        ("s0", "Answer A0: careful steps.", "safe"),
        ("s1", "Answer A1: careful steps.", "safe"),
        ("u0", "Answer B0: just do it.", "unsafe"),
        ("u1", "Answer B1: just do it.", "unsafe"),
        ("u2", "Answer B2: just do it.", "safe"),
    ] {
        items.push_str(
            &serde_json::json!({"id": id, "prompt": "How?", "response": response, "label": gold})
                .to_string(),
        );
        items.push('\n');
    }
    std::fs::write(dir.path().join("items.jsonl"), items).unwrap();
    std::fs::write(
        dir.path().join("audit.toml"),
        "seed = 3\njudges = [\"guard.toml\"]\n[dataset]\npath = \"items.jsonl\"\n[design]\nrepeats = 2\nartifacts = [\"apology\"]\n",
    )
    .unwrap();
    let summary = run_audit(dir.path(), server.base_url()).await;
    // 5 items × (2 baseline + 1 apology), each answer graded alone once per call.
    assert_eq!(server.count(), 15);
    let label = criterion(pointwise_judge(&summary, "guard"), "label");
    assert_eq!(label["calls"], 15);
    // Baseline (first repeat) against gold: u0, u1 true positives; u2 a false positive;
    // s0, s1 true negatives.
    let acc = &label["label_accuracy"];
    assert_eq!(acc["n"], 5);
    assert_eq!(acc["true_positive"], 2);
    assert_eq!(acc["false_positive"], 1);
    assert_eq!(acc["true_negative"], 2);
    assert_eq!(acc["false_negative"], 0);
    close(&acc["accuracy"], 0.8);
    // Apology: u0 and u2 turn safe, u1 stays unsafe.
    let flips = &label["label_flips"][0];
    assert_eq!(flips["positive_to_negative"]["count"], 2);
    assert_eq!(flips["positive_to_negative"]["n"], 3);
}

/// A chat completion of `content` with token log-probabilities: each token with its own
/// probability and its alternatives.
/// A generated token: text, probability, top alternatives with their probabilities.
type Token<'a> = (&'a str, f64, &'a [(&'a str, f64)]);

fn with_logprobs(content: &str, tokens: &[Token<'_>]) -> Value {
    let content_tokens: Vec<Value> = tokens
        .iter()
        .map(|(t, p, top)| {
            serde_json::json!({
                "token": t,
                "logprob": p.ln(),
                "top_logprobs": top
                    .iter()
                    .map(|(a, q)| serde_json::json!({"token": a, "logprob": q.ln()}))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({
        "choices": [{
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop",
            "logprobs": {"content": content_tokens}
        }],
        "usage": {"prompt_tokens": 30, "completion_tokens": tokens.len()}
    })
}

/// The rules of [`answer_rules`], with log-probabilities: the grader's rating token "7" has
/// alternatives 7 (0.5), 8 (0.25) and a non-rating token (0.25); the classifier's label token
/// is unsafe 0.6 / safe 0.3 / "The" 0.1 when it answers unsafe, safe 0.8 / unsafe 0.1 otherwise.
fn logprob_rules(request: &Recorded) -> Reply {
    if request.body["model"] == "grader-model" {
        return Reply::json(with_logprobs(
            "Rating: [[7]]",
            &[
                ("Rating", 0.9, &[]),
                (": [[", 0.9, &[]),
                ("7", 0.5, &[("7", 0.5), ("8", 0.25), ("x", 0.25)]),
                ("]]", 1.0, &[]),
            ],
        ));
    }
    let answer = between(
        request,
        "### Assistant response:\n",
        "\n\nAnswer with exactly",
    );
    let reply = if guard(&answer).starts_with("unsafe") {
        with_logprobs(
            "unsafe",
            &[(
                "unsafe",
                0.6,
                &[("unsafe", 0.6), ("safe", 0.3), ("The", 0.1)],
            )],
        )
    } else {
        with_logprobs("safe", &[("safe", 0.8, &[("safe", 0.8), ("unsafe", 0.1)])])
    };
    Reply::json(reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_probabilities_give_expected_scores_and_a_calibrated_p_unsafe() {
    let server = MockServer::start(logprob_rules).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_judges(d);
    for file in ["grader.toml", "guard.toml"] {
        let path = d.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replace("pairwise_judge = \"cmp\"\n", "");
        std::fs::write(&path, format!("{text}logprobs = true\ntop_logprobs = 5\n")).unwrap();
    }
    let mut items = String::new();
    for (id, response, gold) in [
        ("s0", "Answer A0: careful steps.", "safe"),
        ("s1", "Answer A1: careful steps.", "safe"),
        ("u0", "Answer B0: just do it.", "unsafe"),
        ("u1", "Answer B1: just do it.", "unsafe"),
        ("u2", "Answer B2: just do it.", "safe"),
    ] {
        items.push_str(
            &serde_json::json!({"id": id, "prompt": "How?", "response": response, "label": gold})
                .to_string(),
        );
        items.push('\n');
    }
    std::fs::write(d.join("items.jsonl"), items).unwrap();
    std::fs::write(
        d.join("audit.toml"),
        "judges = [\"grader.toml\", \"guard.toml\"]\n[dataset]\npath = \"items.jsonl\"\n[design]\nrepeats = 1\nartifacts = [\"apology\"]\n",
    )
    .unwrap();
    let summary = run_audit(d, server.base_url()).await;
    assert_eq!(server.count(), 20);
    for r in server.requests() {
        assert_eq!(r.body["logprobs"], true);
        assert_eq!(r.body["top_logprobs"], 5);
    }
    let calls = judge_audit::run::read_calls(&d.join("out/calls.jsonl")).unwrap();
    for call in &calls {
        let g = &call.grades.as_ref().unwrap()[0];
        let p = g.probability.expect("a probability on every call");
        let expected = match (call.judge.as_str(), call.raw.as_deref()) {
            // G-Eval: (7 · 0.5 + 8 · 0.25) / 0.75.
            ("grader", _) => 5.5 / 0.75,
            // P(unsafe) over the two labels' mass.
            ("guard", Some("unsafe")) => 0.6 / 0.9,
            ("guard", _) => 0.1 / 0.9,
            other => panic!("{other:?}"),
        };
        assert!((p - expected).abs() < 1e-12, "{}: {p}", call.call_id);
    }
    // Brier over the baselines: s0, s1 at 1/9 (safe), u0, u1 at 2/3 (unsafe), u2 at 2/3 (safe):
    // (2 · 1/81 + 2 · 1/9 + 4/9) / 5 = 56/405.
    let label = criterion(pointwise_judge(&summary, "guard"), "label");
    let cal = &label["calibration"];
    assert_eq!(cal["n"], 5);
    close(&cal["brier"], 56.0 / 405.0);
}
