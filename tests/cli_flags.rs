//! Runs without writing a config file (issue 20 §5): `run` from flags, config and flags combined
//! (flags win), `init` writing a commented audit.toml that parses and runs, shell completions.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_judge-audit");

fn judge_audit(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .env("JUDGE_AUDIT_CACHE", dir.join("cache"))
        .output()
        .unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = judge_audit(dir, args);
    assert!(
        out.status.success(),
        "{args:?}: exit {:?}\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write_pairs(path: &Path, n: usize) {
    let mut text = String::new();
    for i in 0..n {
        text.push_str(
            &serde_json::json!({
                "id": format!("q{i}"),
                "prompt": format!("How do I store solvent {i}?"),
                "response_a": format!("Keep solvent {i} sealed, cool and away from flames. Label the container."),
                "response_b": format!("Any cupboard works for solvent {i}."),
                "preferred": "a",
            })
            .to_string(),
        );
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

fn summary(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

fn judge_names(s: &Value) -> Vec<String> {
    s["judges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap().to_string())
        .collect()
}

const QUICK: [&str; 4] = ["--quiet", "--no-cache", "--format", "json"];

#[test]
fn run_builds_the_audit_from_flags_alone() {
    let dir = tempfile::tempdir().unwrap();
    write_pairs(&dir.path().join("pairs.jsonl"), 5);
    let mut args = vec![
        "run",
        "--dataset",
        "pairs.jsonl",
        "--judge",
        "sim-unbiased",
        "--judge",
        "sim-apology-lover",
        "--artifacts",
        "apology,position",
        "--limit",
        "3",
        "--out",
        "out",
    ];
    args.extend(QUICK);
    ok(dir.path(), &args);
    let s = summary(&dir.path().join("out"));
    assert_eq!(s["dataset"]["pairs"], 3);
    assert_eq!(s["dataset"]["name"], "pairs.jsonl");
    assert_eq!(
        s["plan"]["artifacts"],
        serde_json::json!(["apology", "position"])
    );
    assert_eq!(judge_names(&s), ["sim-unbiased", "sim-apology-lover"]);
}

#[test]
fn flags_win_over_the_config_file_and_the_rest_of_the_file_still_applies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    write_pairs(&data.join("pairs.jsonl"), 6);
    write_pairs(&dir.path().join("other.jsonl"), 4);
    std::fs::write(
        data.join("audit.toml"),
        r#"
seed = 3
judges = ["sim-unbiased"]

[dataset]
path = "pairs.jsonl"
limit = 5

[design]
artifacts = ["halo"]
repeats = 1

[[judge]]
name = "inline-fan"
backend = "sim"
model = "simulated"
[judge.sim]
artifact_preference = { apology = 0.5 }
"#,
    )
    .unwrap();
    // The config alone: its dataset, limit, artifacts and both judges.
    let mut args = vec!["run", "--config", "data/audit.toml", "--out", "a"];
    args.extend(QUICK);
    ok(dir.path(), &args);
    let a = summary(&dir.path().join("a"));
    assert_eq!(a["dataset"]["pairs"], 5);
    assert_eq!(a["plan"]["artifacts"], serde_json::json!(["halo"]));
    assert_eq!(judge_names(&a), ["sim-unbiased", "inline-fan"]);
    assert_eq!(a["seed"], 3);

    // Flags replace what they name (the dataset path is relative to the working directory);
    // --judge may pick the config's own [[judge]] by name; the rest of the file still applies.
    let mut args = vec![
        "run",
        "--config",
        "data/audit.toml",
        "--dataset",
        "other.jsonl",
        "--artifacts",
        "apology",
        "--limit",
        "2",
        "--judge",
        "inline-fan",
        "--out",
        "b",
    ];
    args.extend(QUICK);
    ok(dir.path(), &args);
    let b = summary(&dir.path().join("b"));
    assert_eq!(b["dataset"]["name"], "other.jsonl");
    assert_eq!(b["dataset"]["pairs"], 2);
    assert_eq!(b["plan"]["artifacts"], serde_json::json!(["apology"]));
    assert_eq!(judge_names(&b), ["inline-fan"]);
    assert_eq!(b["seed"], 3, "the file's seed still applies");
    assert_eq!(b["plan"]["repeats"], 1, "the file's design still applies");
}

#[test]
fn run_without_config_or_judge_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = judge_audit(dir.path(), &["run", "--dataset", "x.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--config"), "{stderr}");
}

#[test]
fn init_writes_a_commented_audit_toml_for_the_users_data_that_parses_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    write_pairs(&dir.path().join("mine.jsonl"), 4);
    let printed = ok(dir.path(), &["init", "--dataset", "mine.jsonl"]);
    assert!(printed.contains("wrote audit.toml"), "{printed}");
    let text = std::fs::read_to_string(dir.path().join("audit.toml")).unwrap();
    assert!(text.contains("path = \"mine.jsonl\""), "{text}");
    assert!(text.contains("(4 pairs)"), "{text}");
    assert!(text.contains("# Artifacts to test"), "commented:\n{text}");
    assert!(
        text.contains("SIMULATED"),
        "the default judge is labelled simulated"
    );
    // It parses as the audit config (unknown keys are errors there) and runs.
    let mut args = vec![
        "run",
        "--config",
        "audit.toml",
        "--out",
        "out",
        "--limit",
        "2",
    ];
    args.extend(QUICK);
    ok(dir.path(), &args);
    let s = summary(&dir.path().join("out"));
    assert_eq!(s["dataset"]["name"], "mine.jsonl");
    assert_eq!(judge_names(&s), ["sim-unbiased"]);
    assert_eq!(s["plan"]["artifacts"].as_array().unwrap().len(), 7);

    // An existing file is kept unless --force.
    let again = judge_audit(dir.path(), &["init"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    ok(
        dir.path(),
        &["init", "--force", "--judge", "sim-first-slot"],
    );
    let text = std::fs::read_to_string(dir.path().join("audit.toml")).unwrap();
    assert!(text.contains("judges = [\"sim-first-slot\"]"), "{text}");
    assert!(text.contains("# path = "), "no dataset: the built-in pairs");
    ok(dir.path(), &["plan", "--config", "audit.toml"]);
    // A dataset that does not load is refused before anything is written.
    std::fs::write(dir.path().join("bad.jsonl"), "{not json\n").unwrap();
    let bad = judge_audit(
        dir.path(),
        &["init", "--dataset", "bad.jsonl", "--out", "bad.toml"],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(!dir.path().join("bad.toml").exists());
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let dir = tempfile::tempdir().unwrap();
    let bash = ok(dir.path(), &["completions", "bash"]);
    assert!(
        bash.contains("complete -F _judge__audit") && bash.contains(" judge-audit\n"),
        "{bash}"
    );
    for sub in [
        "run",
        "report",
        "init",
        "completions",
        "--dataset",
        "--judge",
    ] {
        assert!(bash.contains(sub), "bash completion lacks {sub}");
    }
    // The script is valid bash.
    let script = dir.path().join("judge-audit.bash");
    std::fs::write(&script, &bash).unwrap();
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(syntax.success(), "bash -n rejects the completion script");
    let zsh = ok(dir.path(), &["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef judge-audit"), "{zsh}");
    let fish = ok(dir.path(), &["completions", "fish"]);
    assert!(fish.contains("complete -c judge-audit"), "{fish}");
    let unknown = judge_audit(dir.path(), &["completions", "tcsh"]);
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn plan_estimates_wall_time_from_latency_measured_in_an_earlier_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("audit.toml"),
        "judges = [\"sim-unbiased\", \"sim-first-slot\"]\n[dataset]\nlimit = 4\n[design]\nartifacts = [\"apology\"]\n[run]\nconcurrency = 4\n",
    )
    .unwrap();
    let mut args = vec!["run", "--config", "audit.toml", "--out", "measured"];
    args.extend(QUICK);
    ok(dir.path(), &args);
    // Give the stored calls known latencies: sim-unbiased 400 ms (600 ms on one call, so the
    // median is the middle value, not the mean), sim-first-slot none (its calls were cached).
    let conn = rusqlite::Connection::open(dir.path().join("measured/run.sqlite")).unwrap();
    conn.execute(
        "UPDATE calls SET record = json_set(record, '$.latency_ms', 400) WHERE judge = 'sim-unbiased'",
        [],
    )
    .unwrap();
    conn.execute(
        "UPDATE calls SET record = json_set(record, '$.latency_ms', 600) WHERE call_id = (SELECT MIN(call_id) FROM calls WHERE judge = 'sim-unbiased')",
        [],
    )
    .unwrap();
    conn.execute(
        "UPDATE calls SET record = json_set(record, '$.cached', json('true')) WHERE judge = 'sim-first-slot'",
        [],
    )
    .unwrap();
    drop(conn);
    let plan = ok(
        dir.path(),
        &[
            "plan",
            "--config",
            "audit.toml",
            "--latency-from",
            "measured",
        ],
    );
    // 4 pairs: 16 baseline + 8 tie detection + 16 shift = 40 calls per judge; 40 × 0.4 s / 4.
    assert!(plan.contains("sim-unbiased: 40 calls"), "{plan}");
    assert!(
        plan.contains(
            "sim-unbiased: wall time about 4s (400 ms median over 40 measured calls, 4 at once)"
        ),
        "{plan}"
    );
    assert!(
        plan.contains(
            "estimated wall time: about 4s (the slowest judge, not counting sim-first-slot)"
        ),
        "{plan}"
    );
    assert!(
        plan.contains("wall time unknown for sim-first-slot"),
        "{plan}"
    );
    // Without a measurement, plan says so instead of guessing.
    let bare = ok(dir.path(), &["plan", "--config", "audit.toml"]);
    assert!(!bare.contains("estimated wall time"), "{bare}");
    assert!(
        bare.contains("wall time unknown for sim-unbiased, sim-first-slot"),
        "{bare}"
    );
}
