//! Issue 16, batch files: a run's pending calls exported as an OpenAI batch input file, answered
//! by a fixed-rule script in the OpenAI batch output format (as `vllm run-batch` writes it),
//! imported, give the summary of the same audit run synchronously against a loopback server
//! that answers by the same rule.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use support::{MockServer, Reply, chat_completion};

/// The rule, in Rust for the loopback server: the sum of the user message's UTF-8 bytes picks
/// the slot (mod 3: 0 → b, else a), and a prompt containing GARBLE gets an unparseable answer.
fn rule(user: &str) -> &'static str {
    if user.contains("GARBLE") {
        return "I would rather not say.";
    }
    let sum: u64 = user.bytes().map(u64::from).sum();
    if sum % 3 == 0 {
        "Output (b)"
    } else {
        "Output (a)"
    }
}

/// The same rule in Python, answering a batch input file in the output format (lines written
/// in reverse order: executors do not keep request order).
const SCRIPT: &str = r#"
import json, sys
out = []
for n, line in enumerate(open(sys.argv[1], encoding="utf-8")):
    req = json.loads(line)
    user = [m for m in req["body"]["messages"] if m["role"] == "user"][-1]["content"]
    if "GARBLE" in user:
        text = "I would rather not say."
    else:
        text = "Output (b)" if sum(user.encode("utf-8")) % 3 == 0 else "Output (a)"
    body = {"id": "chatcmpl-%d" % n, "object": "chat.completion", "created": 0,
            "model": req["body"]["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}}
    out.append({"id": "batch_req_%d" % n, "custom_id": req["custom_id"],
                "response": {"status_code": 200, "request_id": "req_%d" % n, "body": body},
                "error": None})
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for line in reversed(out):
        f.write(json.dumps(line) + "\n")
"#;

fn write_inputs(dir: &Path) {
    let mut pairs = String::new();
    for i in 0..5 {
        let prompt = if i == 4 {
            "GARBLE this question, please.".to_string()
        } else {
            format!("Question number {i}: is it safe to do thing {i}?")
        };
        pairs.push_str(
            &serde_json::json!({
                "id": format!("p{i}"),
                "prompt": prompt,
                "response_a": format!("Answer A{i}. It explains the risks of thing {i}."),
                "response_b": format!("Answer B{i}. It says thing {i} is fine."),
                "preferred": if i % 2 == 0 { "a" } else { "b" },
            })
            .to_string(),
        );
        pairs.push('\n');
    }
    std::fs::write(dir.join("pairs.jsonl"), pairs).unwrap();
    std::fs::write(
        dir.join("audit.toml"),
        r#"
seed = 11

[dataset]
path = "pairs.jsonl"

[design]
repeats = 2
artifacts = ["apology", "verbosity", "position"]

[[judge]]
name = "batch-judge"
backend = "openai"
model = "test-model"
template = "chen-safety"
max_retries = 0
"#,
    )
    .unwrap();
}

fn cli(dir: &Path, base_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_judge-audit"))
        .current_dir(dir)
        .args(args)
        .env("OPENAI_BASE_URL", base_url)
        .env("JUDGE_AUDIT_CACHE", dir.join("cache"))
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap()
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn python(script: &Path, input: &Path, output: &Path) {
    let status = Command::new("python3")
        .arg(script)
        .arg(input)
        .arg(output)
        .status()
        .expect("python3 runs");
    assert!(status.success());
}

async fn server() -> MockServer {
    MockServer::start(|request| {
        let user = request.body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_string();
        Reply::json(chat_completion(rule(&user)))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_answer_import_gives_the_synchronous_summary() {
    let server = server().await;
    let base = server.base_url();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    write_inputs(&dir);
    std::fs::write(dir.join("answer.py"), SCRIPT).unwrap();
    let sync = tokio::task::spawn_blocking({
        let (dir, base) = (dir.clone(), base.clone());
        move || {
            cli(
                &dir,
                &base,
                &[
                    "run",
                    "--config",
                    "audit.toml",
                    "--out",
                    "sync",
                    "--quiet",
                    "--no-cache",
                ],
            )
        }
    })
    .await
    .unwrap();
    ok(&sync);
    let sent = server.count();
    assert!(sent > 0);

    let stdout = tokio::task::spawn_blocking({
        let (dir, base) = (dir.clone(), base.clone());
        move || {
            let stdout = ok(&cli(
                &dir,
                &base,
                &["batch", "export", "offline", "--config", "audit.toml"],
            ));
            let input = dir.join("offline/batch/batch-judge-000.jsonl");
            python(&dir.join("answer.py"), &input, &dir.join("results.jsonl"));
            stdout
                + &ok(&cli(
                    &dir,
                    &base,
                    &["batch", "import", "offline", "results.jsonl"],
                ))
        }
    })
    .await
    .unwrap();
    assert_eq!(server.count(), sent, "the batch route sent nothing");
    assert!(
        stdout.contains(&format!("{sent} calls of batch-judge")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{sent} calls committed, 0 already committed, 0 failed"
        )),
        "{stdout}"
    );
    let input = std::fs::read_to_string(dir.join("offline/batch/batch-judge-000.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(input.lines().next().unwrap()).unwrap();
    assert_eq!(first["method"], "POST");
    assert_eq!(first["url"], "/v1/chat/completions");
    assert_eq!(first["body"]["model"], "test-model");
    // The request body is the one the synchronous run sent for the same call.
    assert!(
        server.requests().iter().any(|r| r.body == first["body"]),
        "an exported body equals a synchronously sent one"
    );
    let custom = first["custom_id"].as_str().unwrap();
    assert_eq!(custom.len(), 26);
    assert!(
        custom
            .chars()
            .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c))
    );

    let sync_summary = std::fs::read(dir.join("sync/summary.json")).unwrap();
    let batch_summary = std::fs::read(dir.join("offline/summary.json")).unwrap();
    assert!(
        sync_summary == batch_summary,
        "the imported run's summary.json differs from the synchronous run's"
    );
    // Imported records say how they arrived; the log holds every one once.
    let log = std::fs::read_to_string(dir.join("offline/calls.jsonl")).unwrap();
    assert_eq!(log.lines().count(), sent);
    assert!(
        log.lines()
            .all(|l| l.contains(r#""via":"file:results.jsonl""#))
    );

    // Importing the same file again changes nothing.
    let again = tokio::task::spawn_blocking({
        let (dir, base) = (dir.clone(), base.clone());
        move || {
            ok(&cli(
                &dir,
                &base,
                &["batch", "import", "offline", "results.jsonl"],
            ))
        }
    })
    .await
    .unwrap();
    assert!(
        again.contains(&format!("0 calls committed, {sent} already committed")),
        "{again}"
    );
    assert!(std::fs::read(dir.join("offline/summary.json")).unwrap() == sync_summary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_lines_are_refused_and_failed_lines_stay_pending() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    write_inputs(&dir);
    std::fs::write(dir.join("answer.py"), SCRIPT).unwrap();
    let base = "http://127.0.0.1:9/v1".to_string();
    tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || {
            ok(&cli(&dir, &base, &["batch", "export", "r", "--config", "audit.toml"]));
            let input = dir.join("r/batch/batch-judge-000.jsonl");
            python(&dir.join("answer.py"), &input, &dir.join("out.jsonl"));
            let text = std::fs::read_to_string(dir.join("out.jsonl")).unwrap();
            let mut lines: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let total = lines.len();

            // A line of another plan refuses the whole file, naming line and field.
            let mut foreign = lines.clone();
            foreign[1]["custom_id"] = "ZZZZZZZZZZZZZZZZZZZZZZZZZZ".into();
            let body: String = foreign.iter().map(|l| format!("{l}\n")).collect();
            std::fs::write(dir.join("foreign.jsonl"), body).unwrap();
            let output = cli(&dir, &base, &["batch", "import", "r", "foreign.jsonl"]);
            assert_eq!(output.status.code(), Some(2));
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                stderr.contains("foreign.jsonl: line 2: field `custom_id`: `ZZZZZZZZZZZZZZZZZZZZZZZZZZ` is not a call of this run's plan"),
                "{stderr}"
            );
            let conn = rusqlite::Connection::open(dir.join("r/run.sqlite")).unwrap();
            let count = |conn: &rusqlite::Connection, sql: &str| {
                conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap() as usize
            };
            assert_eq!(count(&conn, "SELECT COUNT(*) FROM calls"), 0, "nothing imported");

            // An errored line and a 500 line are faults; their calls stay pending and are
            // exported again, alone.
            lines[0]["response"] = serde_json::Value::Null;
            lines[0]["error"] = serde_json::json!({"code": "server_error", "message": "boom"});
            lines[1]["response"]["status_code"] = 500.into();
            let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
            std::fs::write(dir.join("partial.jsonl"), body).unwrap();
            let stdout = ok(&cli(&dir, &base, &["batch", "import", "r", "partial.jsonl"]));
            assert!(
                stdout.contains(&format!(
                    "{} calls committed, 0 already committed, 2 failed (stay pending); 2 calls pending",
                    total - 2
                )),
                "{stdout}"
            );
            assert_eq!(count(&conn, "SELECT COUNT(*) FROM calls"), total - 2);
            assert_eq!(count(&conn, "SELECT COUNT(*) FROM faults"), 2);
            let stdout = ok(&cli(&dir, &base, &["batch", "export", "r"]));
            assert!(stdout.contains("2 calls of batch-judge"), "{stdout}");
            let again = std::fs::read_to_string(dir.join("r/batch/batch-judge-000.jsonl")).unwrap();
            let ids: Vec<String> = again
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["custom_id"]
                    .as_str()
                    .unwrap()
                    .to_string())
                .collect();
            let mut expected = vec![
                lines[0]["custom_id"].as_str().unwrap().to_string(),
                lines[1]["custom_id"].as_str().unwrap().to_string(),
            ];
            let mut got = ids.clone();
            expected.sort();
            got.sort();
            assert_eq!(got, expected);
        }
    })
    .await
    .unwrap();
}

#[test]
fn a_judge_with_judge_layer_mitigations_is_refused_for_batch_export() {
    // Batch lines are rendered by the backend, not the judge layer: a normalising judge would be
    // sent raw answers and stored as if normalised, so the export refuses it before writing.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_inputs(dir);
    let config = std::fs::read_to_string(dir.join("audit.toml")).unwrap();
    std::fs::write(
        dir.join("audit.toml"),
        format!("{config}normalise = true\n"),
    )
    .unwrap();
    let output = cli(
        dir,
        "http://127.0.0.1:9/v1",
        &["batch", "export", "offline", "--config", "audit.toml"],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("judge `batch-judge` declares judge-layer mitigations")
            && stderr.contains("without --batch"),
        "{stderr}"
    );
    assert!(
        !dir.join("offline").join("batch").exists()
            || std::fs::read_dir(dir.join("offline").join("batch"))
                .unwrap()
                .next()
                .is_none(),
        "no batch file is written"
    );
}
