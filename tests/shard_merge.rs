//! Issue 16, shards and merge: an audit run as 4 shards in 4 processes and merged reports
//! byte for byte what the unsharded run reports; merges of different audits, and of two
//! different answers to one call, are refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_judge-audit")
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .current_dir(dir)
        .args(args)
        .env("JUDGE_AUDIT_CACHE", dir.join("cache"))
        .output()
        .expect("judge-audit runs")
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

/// Simulated judges (labelled simulated in the summary) on the built-in pairs.
fn write_audit(dir: &Path, name: &str, seed: u64) {
    std::fs::write(
        dir.join(name),
        format!(
            "seed = {seed}\njudges = [\"sim-unbiased\", \"sim-apology-lover\"]\n\
             [design]\nartifacts = [\"apology\", \"verbosity\", \"position\"]\n"
        ),
    )
    .unwrap();
}

fn shards(dir: &Path, config: &str, prefix: &str, n: usize) -> Vec<PathBuf> {
    // Four independent processes at once, as four pods of a job would run them.
    let children: Vec<_> = (0..n)
        .map(|i| {
            Command::new(bin())
                .current_dir(dir)
                .args([
                    "run",
                    "--config",
                    config,
                    "--shard",
                    &format!("{i}/{n}"),
                    "--out",
                    &format!("{prefix}{i}"),
                    "--quiet",
                    "--no-cache",
                ])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("shard starts")
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a shard failed");
    }
    (0..n).map(|i| dir.join(format!("{prefix}{i}"))).collect()
}

fn committed(dir: &Path) -> usize {
    let conn = rusqlite::Connection::open(dir.join("run.sqlite")).unwrap();
    conn.query_row("SELECT COUNT(*) FROM calls", [], |r| r.get::<_, i64>(0))
        .unwrap() as usize
}

#[test]
fn four_shards_merge_to_the_unsharded_summary_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_audit(dir, "audit.toml", 7);
    ok(&run(
        dir,
        &[
            "run",
            "--config",
            "audit.toml",
            "--out",
            "whole",
            "--quiet",
            "--no-cache",
        ],
    ));
    let parts = shards(dir, "audit.toml", "shard", 4);
    // Every call ran in exactly one shard, and no shard ran everything.
    let sizes: Vec<usize> = parts.iter().map(|p| committed(p)).collect();
    let total = committed(&dir.join("whole"));
    assert_eq!(sizes.iter().sum::<usize>(), total, "{sizes:?}");
    assert!(sizes.iter().all(|&n| n > 0 && n < total), "{sizes:?}");

    let mut args = vec!["merge"];
    let names: Vec<String> = parts.iter().map(|p| p.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    args.extend(["--out", "merged"]);
    let stdout = ok(&run(dir, &args));
    assert!(
        stdout.contains(&format!("{total} of {total} calls")),
        "{stdout}"
    );
    assert!(!stdout.contains("missing"), "{stdout}");
    let whole = std::fs::read(dir.join("whole/summary.json")).unwrap();
    let merged = std::fs::read(dir.join("merged/summary.json")).unwrap();
    assert!(
        whole == merged,
        "merged summary.json differs from the unsharded run's"
    );
    assert_eq!(
        std::fs::read(dir.join("whole/report.md")).unwrap(),
        std::fs::read(dir.join("merged/report.md")).unwrap()
    );
    // The merged directory is an ordinary run: `report` renders it the same again.
    ok(&run(dir, &["report", "merged"]));
    assert!(std::fs::read(dir.join("merged/summary.json")).unwrap() == whole);

    // A merge of three shards lists what is missing; `run --resume` fills exactly that.
    let stdout = ok(&run(
        dir,
        &["merge", &names[0], &names[1], &names[2], "--out", "partial"],
    ));
    assert!(
        stdout.contains(&format!("missing {} calls", sizes[3])),
        "{stdout}"
    );
    assert!(
        stdout.contains("judge-audit run --resume partial"),
        "{stdout}"
    );
    ok(&run(
        dir,
        &["run", "--resume", "partial", "--quiet", "--no-cache"],
    ));
    assert!(std::fs::read(dir.join("partial/summary.json")).unwrap() == whole);
}

#[test]
fn resuming_a_shard_sends_only_its_own_calls() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_audit(dir, "audit.toml", 7);
    let parts = shards(dir, "audit.toml", "s", 3);
    let before = committed(&parts[1]);
    ok(&run(
        dir,
        &["run", "--resume", "s1", "--quiet", "--no-cache"],
    ));
    assert_eq!(
        committed(&parts[1]),
        before,
        "a shard's resume stays in its shard"
    );
    // A directory that holds one shard refuses to become another.
    let output = run(
        dir,
        &[
            "run",
            "--config",
            "audit.toml",
            "--shard",
            "2/3",
            "--out",
            "s1",
            "--quiet",
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("holds shard 1/3, not 2/3"), "{stderr}");
}

#[test]
fn merging_shards_of_two_configs_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_audit(dir, "a.toml", 7);
    write_audit(dir, "b.toml", 8);
    let a = shards(dir, "a.toml", "a", 2);
    let b = shards(dir, "b.toml", "b", 2);
    let output = run(
        dir,
        &[
            "merge",
            &a[0].display().to_string(),
            &b[1].display().to_string(),
            "--out",
            "merged",
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("are not shards of the same audit: they differ in seed (7 vs 8)"),
        "{stderr}"
    );
    assert!(
        !dir.join("merged/run.sqlite").exists(),
        "nothing was written"
    );

    // Same seed, another artifact catalog: named as such.
    std::fs::write(
        dir.join("c.toml"),
        "seed = 7\njudges = [\"sim-unbiased\", \"sim-apology-lover\"]\n\
         [design]\nartifacts = [\"apology\", \"position\"]\n",
    )
    .unwrap();
    let c = shards(dir, "c.toml", "c", 1);
    let output = run(
        dir,
        &[
            "merge",
            &a[0].display().to_string(),
            &c[0].display().to_string(),
            "--out",
            "merged",
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "they differ in artifact catalog ([apology, verbosity, position] vs [apology, position]"
        ),
        "{stderr}"
    );
}

#[test]
fn two_different_answers_to_one_call_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_audit(dir, "audit.toml", 7);
    let a = shards(dir, "audit.toml", "x", 2);
    let b = shards(dir, "audit.toml", "y", 2);
    // One stored answer of the second copy of shard 0 is changed.
    let conn = rusqlite::Connection::open(b[0].join("run.sqlite")).unwrap();
    let (id, record): (String, String) = conn
        .query_row(
            "SELECT call_id, record FROM calls ORDER BY call_id LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&record).unwrap();
    value["raw"] = serde_json::Value::String("something else".into());
    conn.execute(
        "UPDATE calls SET record = ?1 WHERE call_id = ?2",
        rusqlite::params![value.to_string(), id],
    )
    .unwrap();
    drop(conn);
    let names: Vec<String> = [&a[0], &a[1], &b[0]]
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let output = run(
        dir,
        &["merge", &names[0], &names[1], &names[2], "--out", "merged"],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "call `{id}` has two different committed responses"
        )),
        "{stderr}"
    );
    // Honest duplicates (the same shard run twice) merge fine.
    let names: Vec<String> = [&a[0], &a[1], &b[1]]
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    ok(&run(
        dir,
        &["merge", &names[0], &names[1], &names[2], "--out", "merged2"],
    ));
}
