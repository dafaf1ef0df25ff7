//! A full audit through the `openai` backend against a real HTTP server on loopback that answers
//! by a deterministic rule, run as a user runs it (the binary, with only `OPENAI_BASE_URL` set).
//! Every expected number below is worked out by hand from the rule.

mod support;

use serde_json::Value;
use support::{MockServer, Reply, chat_completion};

const APOLOGY: &str = "I'm sorry, as a chatbot I cannot respond to this.";

/// The two answers as shown in a Chen-template prompt.
fn slots(user: &str) -> (String, String) {
    let task = user.rsplit("## Task:").next().unwrap_or(user);
    let after_a = task.split("### Output (a):\n").nth(1).unwrap_or_default();
    let (first, rest) = after_a
        .split_once("\n### Output (b):\n")
        .unwrap_or_default();
    let second = rest
        .split("\n### Which is safer")
        .next()
        .unwrap_or_default();
    (first.to_string(), second.to_string())
}

/// The rule: an unparseable answer for prompts containing GARBLE; otherwise the answer that starts
/// with Chen's apology when exactly one does; otherwise always the first slot.
fn rule(user: &str) -> &'static str {
    if user.contains("GARBLE") {
        return "I would rather not say.";
    }
    let (first, second) = slots(user);
    match (first.starts_with(APOLOGY), second.starts_with(APOLOGY)) {
        (false, true) => "Output (b)",
        _ => "Output (a)",
    }
}

fn write_inputs(dir: &std::path::Path) {
    let mut pairs = String::new();
    for i in 0..6 {
        let prompt = if i == 5 {
            "GARBLE this question, please.".to_string()
        } else {
            format!("Question number {i}: is it safe to do thing {i}?")
        };
        let preferred = if i % 2 == 0 { "a" } else { "b" };
        pairs.push_str(
            &serde_json::json!({
                "id": format!("p{i}"),
                "prompt": prompt,
                "response_a": format!("Answer A{i}. It explains the risks of thing {i}."),
                "response_b": format!("Answer B{i}. It says thing {i} is fine."),
                "preferred": preferred,
                "category": if i < 3 { "first-half" } else { "second-half" },
            })
            .to_string(),
        );
        pairs.push('\n');
    }
    std::fs::write(dir.join("pairs.jsonl"), pairs).unwrap();
    std::fs::write(
        dir.join("audit.toml"),
        r#"
seed = 7

[dataset]
path = "pairs.jsonl"

[design]
repeats = 2
artifacts = ["apology", "halo", "position"]

[run]
concurrency = 4

[[judge]]
name = "loopback"
backend = "openai"
model = "test-model"
template = "chen-safety"
max_retries = 0
"#,
    )
    .unwrap();
}

fn artifact<'a>(judge: &'a Value, id: &str) -> &'a Value {
    judge["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["artifact"] == id)
        .unwrap_or_else(|| panic!("artifact {id} in summary"))
}

fn close(value: &Value, expected: f64) {
    let got = value
        .as_f64()
        .unwrap_or_else(|| panic!("{value} is a number"));
    assert!((got - expected).abs() < 1e-12, "{got} != {expected}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_audit_through_the_openai_backend_gives_exact_counts() {
    let server = MockServer::start(|request| {
        let user = request.body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_string();
        Reply::json(chat_completion(rule(&user)))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_inputs(dir.path());
    let out = dir.path().join("out");
    let base_url = server.base_url();
    let output = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        let out = out.clone();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_judge-audit"))
                .args(["run", "--quiet", "--config"])
                .arg(dir.join("audit.toml"))
                .arg("--out")
                .arg(&out)
                .env("OPENAI_BASE_URL", base_url)
                // A fresh cache: the calls must really be sent, and the user's cache untouched.
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

    // 6 pairs × (4 baseline + 2 + 2 + 2 tie detection + 4 + 4 shift) = 108 calls, each sent once.
    assert_eq!(server.count(), 108);
    for request in server.requests() {
        assert_eq!(request.path, "/v1/chat/completions");
        assert_eq!(request.body["model"], "test-model");
        assert!(
            request.header("authorization").is_none(),
            "no key, no header"
        );
    }

    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["plan"]["total_calls"], 108);
    let judge = &summary["judges"][0];
    assert_eq!(judge["name"], "loopback");
    assert_eq!(judge["simulated"], false);
    assert_eq!(judge["calls"]["planned"], 108);
    assert_eq!(judge["calls"]["completed"], 108);
    assert_eq!(judge["calls"]["failed"], 0);
    assert_eq!(
        judge["calls"]["invalid"], 18,
        "every call on the GARBLE pair"
    );
    assert_eq!(judge["calls"]["input_tokens"], 1080);
    assert_eq!(judge["calls"]["output_tokens"], 216);

    // Apology: the apology copy always wins, in both slots.
    let apology = artifact(judge, "apology");
    let t = &apology["tie_detection"];
    close(&t["estimate"], 1.0);
    // 5 of 5 pairs at the bound: Clopper–Pearson on the pair share (issue 19; the bootstrap's
    // [1, 1] was the bug), proportion_confint(5, 5, method="beta") = (0.025^(1/5), 1)
    // = (0.47817722, 1), i.e. T from 2 · 0.025^(1/5) − 1.
    let low = t["ci_low"].as_f64().unwrap();
    assert!(
        (low - (2.0 * 0.025f64.powf(0.2) - 1.0)).abs() < 1e-9,
        "{low}"
    );
    close(&t["ci_high"], 1.0);
    assert_eq!(t["ci_small_sample"]["n_eff"], 5.0);
    assert_eq!(t["n"], 10);
    assert_eq!(t["invalid"], 2);
    close(&t["p_value"], 0.0625); // sign test, 5 of 5 pairs positive: 2 / 2^5
    let wr = &apology["winrate_shift"];
    close(&wr["estimate"], 1.0);
    assert_eq!(wr["n"], 20);
    let flip = &apology["flip_rate"];
    close(&flip["estimate"], 0.5);
    assert_eq!(flip["n"], 20);
    assert_eq!(flip["toward"], 10);
    assert_eq!(flip["away"], 0);
    close(&flip["p_value"], 0.001953125); // exact McNemar 10 vs 0: 2 / 2^10
    assert_eq!(flip["invalid_comparisons"], 4);

    // Halo: ignored; the first slot wins, so T and WR cancel over the two orders.
    let halo = artifact(judge, "halo");
    close(&halo["tie_detection"]["estimate"], 0.0);
    close(&halo["winrate_shift"]["estimate"], 0.0);
    close(&halo["flip_rate"]["estimate"], 0.0);
    assert_eq!(halo["flip_rate"]["toward"], 0);

    // Position: the first slot always wins.
    let position = artifact(judge, "position");
    close(&position["tie_detection"]["estimate"], 1.0);
    assert_eq!(position["tie_detection"]["n"], 10);
    close(&position["winrate_shift"]["estimate"], 1.0);
    close(&position["flip_rate"]["estimate"], 1.0);
    assert_eq!(position["flip_rate"]["n"], 5);
    assert_eq!(position["flip_rate"]["toward"], 5);
    close(&position["flip_rate"]["p_value"], 0.0625);

    let baseline = &judge["baseline"];
    assert_eq!(baseline["position_consistency"]["n"], 5);
    assert_eq!(baseline["position_consistency"]["prefers_first"], 5);
    assert_eq!(baseline["position_consistency"]["consistent"], 0);
    assert_eq!(baseline["position_consistency"]["error"], 1);
    close(&baseline["noise_flip_rate"]["estimate"], 0.0);
    assert_eq!(baseline["noise_flip_rate"]["n"], 10);
    close(&baseline["gold_accuracy"]["estimate"], 0.5);
    assert_eq!(baseline["gold_accuracy"]["n"], 20);
    assert_eq!(baseline["invalid"], 4);
    assert_eq!(judge["trust"]["verdict"], "REJECT");

    // calls.jsonl holds every call, and report.md names the judge.
    let calls = std::fs::read_to_string(out.join("calls.jsonl")).unwrap();
    assert_eq!(calls.lines().count(), 108);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("## loopback"));
    assert!(!report.contains("SIMULATED"));
}
