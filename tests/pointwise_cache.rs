//! Pointwise judges cache through the one templated judge like pairwise ones: a second run of
//! the same audit sends nothing (an Anthropic score judge against a loopback server, a `command`
//! score judge that is a real script logging each invocation), and a changed template or model
//! misses the cache. Through the binary, as a user runs it.
//!
//! The in-process `local` backend is not covered here: it needs the `local` cargo feature and
//! a downloaded model. Its replies go through the same `TemplatedJudge::cache_key` as these.

mod support;

use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Output};
use support::{MockServer, Reply, anthropic_message};

const BIN: &str = env!("CARGO_BIN_EXE_judge-audit");
const PAIRS: usize = 3;
/// Per pair: 2 answers × (2 baseline grades + 1 apology grade).
const CALLS_PER_PAIR: usize = 6;

fn write_inputs(dir: &Path, judge: &str) {
    let mut text = String::new();
    for i in 0..PAIRS {
        text.push_str(
            &json!({
                "id": format!("p{i}"),
                "prompt": format!("Is activity {i} safe?"),
                "response_a": format!("Activity {i} needs care."),
                "response_b": format!("Activity {i} is fine."),
                "preferred": "a",
            })
            .to_string(),
        );
        text.push('\n');
    }
    std::fs::write(dir.join("pairs.jsonl"), text).unwrap();
    // A user template: MT-Bench single grading, reworded.
    std::fs::write(
        dir.join("terse.toml"),
        "kind = \"pointwise\"\nrating_after = \"[[\"\nuser = '''Rate this answer 1-10 as \"Rating: [[n]]\".\n\nQuestion: {{prompt}}\nAnswer: {{answer}}'''\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("audit.toml"),
        format!(
            "seed = 5\n[dataset]\npath = \"pairs.jsonl\"\n[design]\nrepeats = 2\nartifacts = [\"apology\", \"position\"]\n\n[[judge]]\nname = \"grader\"\nkind = \"score\"\nscale = {{ min = 1, max = 10 }}\ntemplate = \"mtbench-single\"\nmax_tokens = 512\n{judge}"
        ),
    )
    .unwrap();
}

fn edit_audit(dir: &Path, from: &str, to: &str) {
    let path = dir.join("audit.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from} not in audit.toml");
    std::fs::write(&path, text.replace(from, to)).unwrap();
}

fn run(dir: &Path, out: &str) -> Output {
    let output = Command::new(BIN)
        .current_dir(dir)
        .args(["run", "--quiet", "--config", "audit.toml", "--out", out])
        .arg("--cache")
        .arg(dir.join("cache"))
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("ANTHROPIC_BASE_URL")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// (records, answered from the cache, graded 7) in a run's calls.jsonl.
fn counts(dir: &Path, out: &str) -> (usize, usize, usize) {
    let text = std::fs::read_to_string(dir.join(out).join("calls.jsonl")).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let cached = records.iter().filter(|r| r["cached"] == true).count();
    let sevens = records
        .iter()
        .filter(|r| r["grades"][0]["grade"] == json!({"kind": "score", "value": 7.0}))
        .count();
    (records.len(), cached, sevens)
}

fn pointwise(dir: &Path, out: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(out).join("summary.json")).unwrap();
    serde_json::from_str::<Value>(&text).unwrap()["pointwise"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_anthropic_grader_run_sends_nothing_and_a_changed_template_or_model_misses() {
    let server =
        MockServer::start(|_| Reply::json(anthropic_message("Fine.\nRating: [[7]]"))).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_inputs(
        d,
        &format!(
            "backend = \"anthropic\"\nmodel = \"claude-test\"\nbase_url = \"{}\"\n",
            server.root_url()
        ),
    );
    let total = PAIRS * CALLS_PER_PAIR;
    run(d, "first");
    assert_eq!(server.count(), total);
    assert_eq!(counts(d, "first"), (total, 0, total));
    run(d, "second");
    assert_eq!(server.count(), total, "the second run sent requests");
    // The cached replies carry their grades: the same analysis.
    assert_eq!(counts(d, "second"), (total, total, total));
    assert_eq!(pointwise(d, "first"), pointwise(d, "second"));
    assert!(pointwise(d, "first")["judges"][0]["criteria"][0]["calls"] == total);

    edit_audit(d, "model = \"claude-test\"", "model = \"claude-other\"");
    run(d, "third");
    assert_eq!(server.count(), 2 * total);
    assert_eq!(counts(d, "third").1, 0);

    edit_audit(
        d,
        "template = \"mtbench-single\"",
        "template = \"terse.toml\"",
    );
    run(d, "fourth");
    assert_eq!(server.count(), 3 * total);
    assert_eq!(counts(d, "fourth").1, 0);
}

#[test]
fn a_second_command_grader_run_runs_nothing_and_a_changed_template_or_model_misses() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let log = d.join("invocations.log");
    let script = d.join("grade.sh");
    // A real program: logs each invocation and answers in plain text, read by the grader.
    std::fs::write(
        &script,
        format!(
            "cat > /dev/null\necho run >> '{}'\necho 'Rating: [[7]]'\n",
            log.display()
        ),
    )
    .unwrap();
    let invocations = || {
        std::fs::read_to_string(&log)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    write_inputs(
        d,
        &format!(
            "backend = \"command\"\nmodel = \"m1\"\ncommand = [\"sh\", \"{}\"]\n",
            script.display()
        ),
    );
    let total = PAIRS * CALLS_PER_PAIR;
    run(d, "first");
    assert_eq!(invocations(), total);
    assert_eq!(counts(d, "first"), (total, 0, total));
    run(d, "second");
    assert_eq!(invocations(), total, "the second run ran the program");
    assert_eq!(counts(d, "second"), (total, total, total));
    assert_eq!(pointwise(d, "first"), pointwise(d, "second"));

    edit_audit(d, "model = \"m1\"", "model = \"m2\"");
    run(d, "third");
    assert_eq!(invocations(), 2 * total);
    assert_eq!(counts(d, "third").1, 0);

    edit_audit(
        d,
        "template = \"mtbench-single\"",
        "template = \"terse.toml\"",
    );
    run(d, "fourth");
    assert_eq!(invocations(), 3 * total);
    assert_eq!(counts(d, "fourth").1, 0);
}
