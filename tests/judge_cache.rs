//! Every backend caches through the one templated judge: a second run of the same audit sends
//! nothing (Anthropic against a loopback server, `command` with a real script that logs each
//! invocation), a changed template or model misses the cache, and the `openai` key is still the
//! hash of the request body it sends (so caches written by earlier versions keep hitting).
//! Through the binary, as a user runs it.

mod support;

use judge_audit::judge::check::check_request;
use judge_audit::judge::openai::OpenAiJudge;
use judge_audit::judge::{Judge, JudgeConfig, JudgeRequest};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::{Command, Output};
use support::{MockServer, Reply, anthropic_message, chat_completion};

const BIN: &str = env!("CARGO_BIN_EXE_judge-audit");

const PAIRS: usize = 3;
/// Calls per pair for the design below (3 artifacts, default repeats): 90 calls for 5 pairs in
/// tests/runner.rs.
const CALLS_PER_PAIR: usize = 18;

fn write_pairs(dir: &Path) {
    let mut text = String::new();
    for i in 0..PAIRS {
        text.push_str(
            &json!({
                "id": format!("p{i:02}"),
                "prompt": format!("Is activity {i} safe?"),
                "response_a": format!("Activity {i} needs care. Wear protection and ask an expert."),
                "response_b": format!("Activity {i} is totally fine, do whatever you want."),
                "preferred": if i % 2 == 0 { "a" } else { "b" },
            })
            .to_string(),
        );
        text.push('\n');
    }
    std::fs::write(dir.join("pairs.jsonl"), text).unwrap();
}

fn write_audit(dir: &Path, judge: &str) {
    std::fs::write(
        dir.join("audit.toml"),
        format!(
            r#"
seed = 11

[dataset]
path = "pairs.jsonl"

[design]
artifacts = ["apology", "halo", "position"]

[[judge]]
name = "cached-judge"
{judge}
"#
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
    let cache = dir.join("cache");
    let output = Command::new(BIN)
        .current_dir(dir)
        .args(["run", "--quiet", "--config", "audit.toml", "--out", out])
        .arg("--cache")
        .arg(&cache)
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("ANTHROPIC_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// (records, of which answered from the cache) in a run's calls.jsonl.
fn cached_counts(dir: &Path, out: &str) -> (usize, usize) {
    let text = std::fs::read_to_string(dir.join(out).join("calls.jsonl")).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        records.iter().all(|r| r["verdict"].is_string()),
        "a call failed"
    );
    let cached = records.iter().filter(|r| r["cached"] == true).count();
    (records.len(), cached)
}

fn summary(dir: &Path, out: &str) -> Vec<u8> {
    std::fs::read(dir.join(out).join("summary.json")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_anthropic_run_sends_nothing_and_a_changed_template_or_model_misses() {
    let server = MockServer::start(|r| {
        // Answers depend on the prompt only, so any run gives the same verdicts.
        let user = r.body["messages"][0]["content"]
            .as_str()
            .unwrap_or_default();
        let text = if user.len() % 2 == 0 {
            "Output (a)"
        } else {
            "Output (b)"
        };
        Reply::json(anthropic_message(text))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_pairs(d);
    write_audit(
        d,
        &format!(
            "backend = \"anthropic\"\nmodel = \"claude-test\"\nbase_url = \"{}\"\n",
            server.root_url()
        ),
    );
    let total = PAIRS * CALLS_PER_PAIR;
    run(d, "first");
    assert_eq!(server.count(), total);
    assert_eq!(cached_counts(d, "first"), (total, 0));

    run(d, "second");
    assert_eq!(server.count(), total, "the second run sent requests");
    assert_eq!(cached_counts(d, "second"), (total, total));
    assert_eq!(summary(d, "first"), summary(d, "second"));

    // Another model: nothing may come from the first judge's answers.
    edit_audit(d, "model = \"claude-test\"", "model = \"claude-other\"");
    run(d, "third");
    assert_eq!(server.count(), 2 * total);
    assert_eq!(cached_counts(d, "third"), (total, 0));

    // Another template (same model as the third run): every prompt differs, every call is sent.
    edit_audit(
        d,
        "model = \"claude-other\"",
        "model = \"claude-other\"\ntemplate = \"mtbench-pairwise\"\nmax_tokens = 512",
    );
    run(d, "fourth");
    assert_eq!(server.count(), 3 * total);
    assert_eq!(cached_counts(d, "fourth"), (total, 0));
}

#[test]
fn a_second_command_run_runs_nothing_and_a_changed_template_or_model_misses() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_pairs(d);
    let log = d.join("invocations.log");
    let script = d.join("judge.sh");
    // A real program: logs each invocation, answers from its input.
    std::fs::write(
        &script,
        format!(
            "input=$(cat)\necho run >> '{}'\ncase \"$input\" in *\"activity 1 \"*) echo '{{\"verdict\": \"first\"}}';; *) echo '{{\"verdict\": \"second\"}}';; esac\n",
            log.display()
        ),
    )
    .unwrap();
    let invocations = || {
        std::fs::read_to_string(&log)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    write_audit(
        d,
        &format!(
            "backend = \"command\"\nmodel = \"m1\"\ncommand = [\"sh\", \"{}\"]\n",
            script.display()
        ),
    );
    let total = PAIRS * CALLS_PER_PAIR;
    run(d, "first");
    assert_eq!(invocations(), total);
    assert_eq!(cached_counts(d, "first"), (total, 0));

    run(d, "second");
    assert_eq!(invocations(), total, "the second run ran the program");
    assert_eq!(cached_counts(d, "second"), (total, total));
    assert_eq!(summary(d, "first"), summary(d, "second"));

    edit_audit(d, "model = \"m1\"", "model = \"m2\"");
    run(d, "third");
    assert_eq!(invocations(), 2 * total);
    assert_eq!(cached_counts(d, "third"), (total, 0));

    edit_audit(
        d,
        "model = \"m2\"",
        "model = \"m2\"\ntemplate = \"mtbench-pairwise\"",
    );
    run(d, "fourth");
    assert_eq!(invocations(), 3 * total);
    assert_eq!(cached_counts(d, "fourth"), (total, 0));
}

/// The `openai` cache key is the SHA-256 of `openai`, the endpoint, the exact request body sent
/// and the repeat index, each followed by a NUL: the definition earlier versions stored keys
/// under. Computed here from the body the server received.
#[tokio::test]
async fn the_openai_cache_key_is_the_hash_of_the_body_it_sends() {
    let server = MockServer::always(Reply::json(chat_completion("Output (a)"))).await;
    let mut config = JudgeConfig::new("key-judge", judge_audit::judge::config::Backend::Openai);
    config.model = "m".into();
    config.base_url = Some(server.base_url());
    config.temperature = 0.7;
    config.seed = 41;
    let judge = OpenAiJudge::with_env(&config, |_| None).unwrap();
    for repeat in [0, 2] {
        let request = JudgeRequest {
            pair_id: String::new(),
            repeat,
            ..check_request()
        };
        judge.judge(&request).await.unwrap();
        let sent = server.requests().last().unwrap().raw_body.clone();
        let mut hasher = Sha256::new();
        for part in [
            "openai",
            judge.endpoint(),
            sent.as_str(),
            &repeat.to_string(),
        ] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        let expected = hex::encode(hasher.finalize());
        assert_eq!(judge.cache_key(&request), Some(expected));
    }
}
