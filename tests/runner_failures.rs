//! The runner's failure paths, through the binary against loopback servers: a failed write stops
//! new calls, the run directory is locked, signals commit what arrived and exit 130/143, a dead
//! endpoint trips a circuit breaker, hostile numbers and ids are refused before any call, a
//! corrupt cache can be cleared, `calls.jsonl` never holds a torn line or a duplicate, and a
//! closed or full stdout never panics.

mod support;

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::chat_completion;
use support::faults::{Action, FaultServer};

const BIN: &str = env!("CARGO_BIN_EXE_judge-audit");

/// 18 calls per pair with the audit below (baseline 4, apology 6, halo 6, position 2).
const CALLS_PER_PAIR: usize = 18;

fn write_pairs(dir: &Path, n: usize) {
    let mut text = String::new();
    for i in 0..n {
        text.push_str(
            &json!({
                "id": format!("p{i:03}"),
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

fn write_audit(dir: &Path, base_url: &str, judge_extra: &str, extra: &str) {
    std::fs::write(
        dir.join("audit.toml"),
        format!(
            r#"
seed = 5
{extra}
[dataset]
path = "pairs.jsonl"

[design]
artifacts = ["apology", "halo", "position"]

[[judge]]
name = "http-judge"
backend = "openai"
model = "m"
base_url = "{base_url}"
{judge_extra}
"#
        ),
    )
    .unwrap();
}

fn command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .current_dir(dir)
        .args(args)
        .env("JUDGE_AUDIT_CACHE", dir.join("default-cache"))
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL");
    command
}

async fn output(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    )
}

fn committed(out: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(out.join("run.sqlite")).unwrap();
    let mut q = conn.prepare("SELECT call_id FROM calls").unwrap();
    q.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn ok_server(delay: Duration) -> impl Fn(&support::faults::Seen) -> Action {
    move |_| Action::Respond {
        status: 200,
        headers: Vec::new(),
        body: chat_completion("Output (a)").to_string(),
        delay,
    }
}

/// Wait until `out` has at least `n` committed calls.
async fn wait_committed(out: &Path, n: usize, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let count = if out.join("run.sqlite").exists() {
            rusqlite::Connection::open(out.join("run.sqlite"))
                .and_then(|c| c.query_row("SELECT COUNT(*) FROM calls", [], |r| r.get(0)))
                .unwrap_or(0usize)
        } else {
            0
        };
        if count >= n {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended early: {status}");
        }
        assert!(Instant::now() < deadline, "the run made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_child(mut child: Child) -> Output {
    tokio::task::spawn_blocking(move || {
        child.wait().unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

/// Every record line of `calls.jsonl` parses, and no committed call appears twice.
fn check_log(out: &Path) -> Vec<String> {
    let log = std::fs::read_to_string(out.join("calls.jsonl")).unwrap();
    assert!(log.is_empty() || log.ends_with('\n'), "torn last line");
    let mut succeeded = Vec::new();
    for (i, line) in log.lines().enumerate() {
        let record: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("calls.jsonl:{}: {e}: {line}", i + 1));
        if !record["verdict"].is_null() {
            succeeded.push(record["call_id"].as_str().unwrap().to_string());
        }
    }
    let unique: HashSet<&String> = succeeded.iter().collect();
    assert_eq!(
        unique.len(),
        succeeded.len(),
        "a committed call is logged twice"
    );
    succeeded
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_store_write_stops_new_calls_and_says_how_to_resume() {
    let server = FaultServer::start(ok_server(Duration::from_millis(2))).await;
    let dir = tempfile::tempdir().unwrap();
    let pairs = 60;
    write_pairs(dir.path(), pairs);
    write_audit(dir.path(), &server.base_url(), "concurrency = 4", "");
    let out = dir.path().join("out");
    let planned = pairs * CALLS_PER_PAIR;

    // A real write error from the kernel: RLIMIT_FSIZE makes every write past 300 KiB fail with
    // EFBIG (SIGXFSZ ignored), as a full disk fails with ENOSPC. The run's files (the store's
    // WAL, calls.jsonl) outgrow it a few hundred calls in.
    let mut limited = Command::new("sh");
    limited
        .current_dir(dir.path())
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f 600; exec '{BIN}' run --quiet --no-cache --config audit.toml --out out"
        ))
        .env_remove("OPENAI_API_KEY");
    let failed = output(limited).await;
    assert_eq!(failed.status.code(), Some(2), "{}", describe(&failed));
    let stderr = text(&failed.stderr);
    assert!(
        stderr.contains("no new call was sent after this error"),
        "{stderr}"
    );
    assert!(
        stderr.contains("judge-audit run --resume out\n") || stderr.ends_with("--resume out"),
        "{stderr}"
    );
    let sent_first = server.seen().len();
    let kept = committed(&out);
    assert!(!kept.is_empty(), "calls before the failure are kept");
    // The old runner kept sending the whole plan after the writer died.
    assert!(
        sent_first < planned / 2,
        "{sent_first} of {planned} calls were sent after the write failed"
    );
    // What was sent but not kept is bounded by one batch in flight, not the plan.
    assert!(sent_first >= kept.len());

    // Resume without the limit: the committed calls are not paid again.
    let resumed = output(command(
        dir.path(),
        &["run", "--quiet", "--no-cache", "--resume", "out"],
    ))
    .await;
    assert!(resumed.status.success(), "{}", describe(&resumed));
    let kept: HashSet<String> = kept.into_iter().collect();
    let second: Vec<String> = server.seen()[sent_first..]
        .iter()
        .map(|s| s.call_id())
        .collect();
    for id in &second {
        assert!(!kept.contains(id), "committed call {id} was sent again");
    }
    assert_eq!(committed(&out).len(), planned);
    assert_eq!(check_log(&out).len(), planned);
}

/// A tmpfs of 1 MiB as the response cache: a real full disk (ENOSPC). Needs the right to mount
/// (root in a container); elsewhere the rlimit test above covers the same path.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .stderr(Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| Tmpfs(path.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cache_disk_stops_new_calls() {
    let dir = tempfile::tempdir().unwrap();
    let Some(tmpfs) = Tmpfs::mount(&dir.path().join("cache"), "128k") else {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    };
    // Large answers fill the cache quickly.
    let big = "Output (a) ".to_string() + &"because ".repeat(1000);
    let server = FaultServer::start(move |_| Action::ok(&chat_completion(&big))).await;
    let pairs = 60;
    write_pairs(dir.path(), pairs);
    write_audit(dir.path(), &server.base_url(), "concurrency = 4", "");
    let planned = pairs * CALLS_PER_PAIR;
    let mut run = command(
        dir.path(),
        &["run", "--quiet", "--config", "audit.toml", "--out", "out"],
    );
    run.arg("--cache").arg(&tmpfs.0);
    let failed = output(run).await;
    assert_eq!(failed.status.code(), Some(2), "{}", describe(&failed));
    let stderr = text(&failed.stderr);
    assert!(stderr.contains("response cache"), "{stderr}");
    assert!(stderr.contains("--no-cache"), "{stderr}");
    let sent = server.seen().len();
    assert!(sent < planned / 2, "{sent} of {planned} sent: {stderr}");
    let resumed = output(command(
        dir.path(),
        &["run", "--quiet", "--no-cache", "--resume", "out"],
    ))
    .await;
    assert!(resumed.status.success(), "{}", describe(&resumed));
    assert_eq!(committed(&dir.path().join("out")).len(), planned);
    drop(tmpfs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_a_running_directory_exits_2_naming_the_holder() {
    let server = FaultServer::start(ok_server(Duration::from_millis(100))).await;
    let dir = tempfile::tempdir().unwrap();
    write_pairs(dir.path(), 10);
    write_audit(dir.path(), &server.base_url(), "concurrency = 1", "");
    let out = dir.path().join("out");
    let mut first = command(
        dir.path(),
        &[
            "run",
            "--quiet",
            "--no-cache",
            "--config",
            "audit.toml",
            "--out",
            "out",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    wait_committed(&out, 1, &mut first).await;
    for args in [
        vec!["run", "--quiet", "--no-cache", "--resume", "out"],
        vec![
            "run",
            "--quiet",
            "--no-cache",
            "--config",
            "audit.toml",
            "--out",
            "out",
        ],
    ] {
        let second = output(command(dir.path(), &args)).await;
        assert_eq!(second.status.code(), Some(2), "{}", describe(&second));
        let stderr = text(&second.stderr);
        assert!(
            stderr.contains("another judge-audit process is running on this directory"),
            "{stderr}"
        );
        assert!(stderr.contains(&format!("pid {}", first.id())), "{stderr}");
    }
    first.kill().unwrap();
    first.wait().unwrap();
    // A killed holder leaves the lock file but not the lock.
    let resumed = output(command(
        dir.path(),
        &["run", "--quiet", "--no-cache", "--resume", "out"],
    ))
    .await;
    assert!(resumed.status.success(), "{}", describe(&resumed));
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for seen in server.seen() {
        *per_id.entry(seen.call_id()).or_default() += 1;
    }
    assert_eq!(per_id.len(), 10 * CALLS_PER_PAIR);
    // Only calls the first process had not committed when it was killed are sent twice (the one
    // in flight and those answered within the writer's last 100 ms batch, at 100 ms a call); the
    // refused processes sent nothing (before the lock, each sent every pending call again).
    let twice = per_id.values().filter(|&&n| n > 1).count();
    assert!(twice <= 3, "{twice} calls were sent more than once");
}

async fn interrupt_with(signal: &str, code: i32) {
    let server = FaultServer::start(ok_server(Duration::from_millis(300))).await;
    let dir = tempfile::tempdir().unwrap();
    write_pairs(dir.path(), 6);
    write_audit(dir.path(), &server.base_url(), "concurrency = 4", "");
    let out = dir.path().join("out");
    let planned = 6 * CALLS_PER_PAIR;
    let mut child = command(
        dir.path(),
        &[
            "run",
            "--quiet",
            "--no-cache",
            "--config",
            "audit.toml",
            "--out",
            "out",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    wait_committed(&out, 8, &mut child).await;
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let interrupted = wait_child(child).await;
    assert_eq!(
        interrupted.status.code(),
        Some(code),
        "{}",
        describe(&interrupted)
    );
    let stderr = text(&interrupted.stderr);
    assert!(
        stderr.contains(&format!("interrupted by SIG{signal}")),
        "{stderr}"
    );
    assert!(
        stderr.contains("judge-audit run --resume out\n") || stderr.ends_with("--resume out"),
        "{stderr}"
    );
    // Every call the server received was answered within the grace and committed: nothing paid
    // for was thrown away, and the rest of the plan was not sent.
    let sent: Vec<String> = server.seen().iter().map(|s| s.call_id()).collect();
    let kept = committed(&out);
    assert!(sent.len() < planned, "the run stopped early");
    let sent_set: HashSet<&String> = sent.iter().collect();
    let kept_set: HashSet<&String> = kept.iter().collect();
    assert_eq!(sent_set, kept_set, "answers that arrived were committed");
    check_log(&out);

    let resumed = output(command(
        dir.path(),
        &["run", "--quiet", "--no-cache", "--resume", "out"],
    ))
    .await;
    assert!(resumed.status.success(), "{}", describe(&resumed));
    let all: Vec<String> = server.seen().iter().map(|s| s.call_id()).collect();
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), planned, "no call was sent twice");
    assert_eq!(unique.len(), planned);
    assert_eq!(check_log(&out).len(), planned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_commits_what_arrived_prints_the_resume_command_and_exits_130() {
    interrupt_with("INT", 130).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_commits_what_arrived_and_exits_143() {
    interrupt_with("TERM", 143).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_opens_the_circuit_breaker_after_a_few_connects() {
    let url = support::refused_base_url().await;
    let dir = tempfile::tempdir().unwrap();
    write_pairs(dir.path(), 12);
    write_audit(
        dir.path(),
        &url,
        "concurrency = 2\nmax_retries = 5",
        "judges = [\"sim-unbiased\"]",
    );
    let run = output(command(
        dir.path(),
        &[
            "run",
            "--quiet",
            "--no-cache",
            "--config",
            "audit.toml",
            "--out",
            "out",
        ],
    ))
    .await;
    let stderr = text(&run.stderr);
    assert!(run.status.success(), "{}", describe(&run));
    assert_eq!(
        stderr.matches("circuit breaker open").count(),
        1,
        "one clear message: {stderr}"
    );
    assert!(stderr.contains(&url), "{stderr}");
    // Faults are every failed attempt; the old runner made 6 per call (216 calls).
    let conn = rusqlite::Connection::open(dir.path().join("out/run.sqlite")).unwrap();
    let faults: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM faults WHERE judge = 'http-judge'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        (10..=12).contains(&faults),
        "{faults} connection attempts before the breaker opened"
    );
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("out/summary.json")).unwrap(),
    )
    .unwrap();
    let judges = summary["judges"].as_array().unwrap();
    let http = judges.iter().find(|j| j["name"] == "http-judge").unwrap();
    assert!(
        http["stopped"]
            .as_str()
            .unwrap()
            .contains("circuit breaker"),
        "{http}"
    );
    let sim = judges.iter().find(|j| j["name"] == "sim-unbiased").unwrap();
    assert_eq!(sim["calls"]["completed"], sim["calls"]["planned"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_budgets_concurrency_and_sizes_are_refused_before_any_call() {
    let server = FaultServer::start(ok_server(Duration::ZERO)).await;
    let dir = tempfile::tempdir().unwrap();
    write_pairs(dir.path(), 3);
    let base = ["run", "--quiet", "--no-cache", "--config", "audit.toml"];
    let cases: Vec<(Vec<&str>, &str, &str, &str)> = vec![
        (vec!["--max-cost", "NaN"], "", "", "--max-cost"),
        (vec!["--max-cost", "inf"], "", "", "--max-cost"),
        (vec!["--max-cost=-1"], "", "", "--max-cost"),
        (
            vec!["--concurrency", "0"],
            "",
            "",
            "concurrency must be at least 1",
        ),
        (vec![], "", "[run]\nconcurrency = 0", "run.concurrency"),
        (vec![], "concurrency = 0", "", "field `concurrency`"),
        (
            vec![],
            "",
            "[design]\nrepeats = 4294967295\nartifacts = [\"halo\"]",
            "design.repeats = 4294967295",
        ),
        (
            vec![],
            "",
            "[design]\nbootstrap_resamples = 1000000000000000\nartifacts = [\"halo\"]",
            "design.bootstrap_resamples = 1000000000000000",
        ),
        (
            vec![],
            "",
            "[design]\nartifacts = [\"halo\", \"halo\"]",
            "design.artifacts: `halo` is listed twice",
        ),
    ];
    for (flags, judge_extra, extra, expected) in cases {
        // `extra` replaces the [design] table when it has one.
        let config = if extra.contains("[design]") {
            format!(
                "seed = 5\n[dataset]\npath = \"pairs.jsonl\"\n{extra}\n[[judge]]\nname = \"http-judge\"\nbackend = \"openai\"\nmodel = \"m\"\nbase_url = \"{}\"\n{judge_extra}\n",
                server.base_url()
            )
        } else {
            write_audit(dir.path(), &server.base_url(), judge_extra, extra);
            std::fs::read_to_string(dir.path().join("audit.toml")).unwrap()
        };
        std::fs::write(dir.path().join("audit.toml"), &config).unwrap();
        let mut args: Vec<&str> = base.to_vec();
        args.extend(&flags);
        args.extend(["--out", "out"]);
        let run = output(command(dir.path(), &args)).await;
        assert_eq!(run.status.code(), Some(2), "{expected}: {}", describe(&run));
        assert!(
            text(&run.stderr).contains(expected),
            "{expected}: {}",
            describe(&run)
        );
        assert!(
            !text(&run.stderr).contains("panicked"),
            "{}",
            describe(&run)
        );
        assert_eq!(server.seen().len(), 0, "{expected}: a call was sent");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_with_slashes_and_newlines_give_distinct_sendable_calls() {
    let server = FaultServer::start(ok_server(Duration::ZERO)).await;
    let dir = tempfile::tempdir().unwrap();
    // Judge `j` on pair `x/y` and judge `j/x` on pair `y` made the same call ids before.
    let pairs = [("x/y", "A"), ("y", "B"), ("line\nbreak", "C")];
    let mut text_pairs = String::new();
    for (id, tag) in pairs {
        text_pairs.push_str(
            &json!({"id": id, "prompt": format!("Q {tag}?"), "response_a": format!("yes {tag}"), "response_b": format!("no {tag}")})
                .to_string(),
        );
        text_pairs.push('\n');
    }
    std::fs::write(dir.path().join("pairs.jsonl"), text_pairs).unwrap();
    let judge = |name: &str| {
        format!(
            "[[judge]]\nname = \"{name}\"\nbackend = \"openai\"\nmodel = \"m\"\nbase_url = \"{}\"\n",
            server.base_url()
        )
    };
    std::fs::write(
        dir.path().join("audit.toml"),
        format!(
            "seed = 1\n[dataset]\npath = \"pairs.jsonl\"\n[design]\nartifacts = [\"halo\"]\n{}{}",
            judge("j"),
            judge("j/x")
        ),
    )
    .unwrap();
    let run = output(command(
        dir.path(),
        &[
            "run",
            "--quiet",
            "--no-cache",
            "--config",
            "audit.toml",
            "--out",
            "out",
        ],
    ))
    .await;
    assert!(run.status.success(), "{}", describe(&run));
    // Per judge and pair: baseline 4, halo tie 2 + shift 4.
    let planned = 2 * 3 * 10;
    let ids: HashSet<String> = committed(&dir.path().join("out")).into_iter().collect();
    assert_eq!(ids.len(), planned, "every call has its own id and was sent");
    assert!(ids.contains("j%2Fx/y/baseline/ab/r0"), "{ids:?}");
    assert!(ids.contains("j/x%2Fy/baseline/ab/r0"), "{ids:?}");
    assert!(ids.contains("j/line%0Abreak/baseline/ab/r0"), "{ids:?}");
    assert_eq!(server.seen().len(), planned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_cache_offers_no_cache_and_cache_clear_repairs_it() {
    let server = FaultServer::start(ok_server(Duration::ZERO)).await;
    let dir = tempfile::tempdir().unwrap();
    write_pairs(dir.path(), 2);
    write_audit(dir.path(), &server.base_url(), "", "");
    let cache = dir.path().join("default-cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(
        cache.join("responses.sqlite"),
        "this is not a database, it is garbage ".repeat(200),
    )
    .unwrap();
    let args = ["run", "--quiet", "--config", "audit.toml", "--out", "out"];
    let blocked = output(command(dir.path(), &args)).await;
    assert_eq!(blocked.status.code(), Some(2), "{}", describe(&blocked));
    let stderr = text(&blocked.stderr);
    assert!(stderr.contains("--no-cache"), "{stderr}");
    assert!(stderr.contains("judge-audit cache clear"), "{stderr}");
    assert_eq!(server.seen().len(), 0);

    let cleared = output(command(dir.path(), &["cache", "clear"])).await;
    assert!(cleared.status.success(), "{}", describe(&cleared));
    assert!(
        text(&cleared.stdout).contains("deleted it"),
        "{}",
        describe(&cleared)
    );
    let run = output(command(dir.path(), &args)).await;
    assert!(run.status.success(), "{}", describe(&run));
    let again = output(command(dir.path(), &["cache", "clear"])).await;
    assert!(
        text(&again.stdout).contains(&format!("removed {} cached replies", 2 * CALLS_PER_PAIR)),
        "{}",
        describe(&again)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_repairs_a_torn_and_short_call_log_and_compare_reads_the_store() {
    let server = FaultServer::start(ok_server(Duration::ZERO)).await;
    let dir = tempfile::tempdir().unwrap();
    write_pairs(dir.path(), 4);
    write_audit(dir.path(), &server.base_url(), "", "");
    let out = dir.path().join("out");
    let args = [
        "run",
        "--quiet",
        "--no-cache",
        "--config",
        "audit.toml",
        "--out",
        "out",
    ];
    let run = output(command(dir.path(), &args)).await;
    assert!(run.status.success(), "{}", describe(&run));
    let planned = 4 * CALLS_PER_PAIR;
    let full = std::fs::read_to_string(out.join("calls.jsonl")).unwrap();
    let lines: Vec<&str> = full.lines().collect();
    assert_eq!(lines.len(), planned);

    // What a kill leaves: the last committed lines not yet appended, and half a line.
    let mut damaged = lines[..planned - 5].join("\n");
    damaged.push('\n');
    damaged.push_str(&lines[planned - 5][..20]);
    std::fs::write(out.join("calls.jsonl"), &damaged).unwrap();
    let resumed = output(command(
        dir.path(),
        &["run", "--quiet", "--no-cache", "--resume", "out"],
    ))
    .await;
    assert!(resumed.status.success(), "{}", describe(&resumed));
    assert_eq!(server.seen().len(), planned, "nothing was sent again");
    let logged: HashSet<String> = check_log(&out).into_iter().collect();
    let kept: HashSet<String> = committed(&out).into_iter().collect();
    assert_eq!(logged, kept, "the log holds each committed call once");

    // A duplicated line in the log does not double-count in compare: it reads the store.
    let copy = dir.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    for file in ["summary.json", "run.sqlite"] {
        std::fs::copy(out.join(file), copy.join(file)).unwrap();
    }
    let mut doubled = std::fs::read_to_string(out.join("calls.jsonl")).unwrap();
    doubled.push_str(lines[0]);
    doubled.push('\n');
    std::fs::write(copy.join("calls.jsonl"), doubled).unwrap();
    let a = judge_audit::report::compare::load_run(&out).unwrap();
    let b = judge_audit::report::compare::load_run(&copy).unwrap();
    assert_eq!(a.calls.len(), planned);
    assert_eq!(b.calls.len(), planned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_kills_never_leave_duplicates_or_torn_lines() {
    // Large answers make the kill land mid-write more often.
    let big = "Output (b) ".to_string() + &"reasoning ".repeat(3000);
    let server = FaultServer::start(move |_| Action::Respond {
        status: 200,
        headers: Vec::new(),
        body: chat_completion(&big).to_string(),
        delay: Duration::from_millis(5),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_pairs(dir.path(), 12);
    write_audit(dir.path(), &server.base_url(), "concurrency = 4", "");
    let out = dir.path().join("out");
    let planned = 12 * CALLS_PER_PAIR;
    let mut args = vec![
        "run",
        "--quiet",
        "--no-cache",
        "--config",
        "audit.toml",
        "--out",
        "out",
    ];
    for cycle in 1..=8 {
        let mut child = command(dir.path(), &args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let done = committed_count(&out);
        if done >= planned {
            child.kill().ok();
            child.wait().unwrap();
            break;
        }
        wait_committed(&out, (done + 10).min(planned), &mut child).await;
        // Kill at different points of the writer's 100 ms batch cycle.
        tokio::time::sleep(Duration::from_millis((cycle as u64 * 37) % 100)).await;
        child.kill().ok(); // SIGKILL
        child.wait().unwrap();
        check_no_duplicate_lines(&out, cycle);
        args = vec!["run", "--quiet", "--no-cache", "--resume", "out"];
    }
    let last = output(command(
        dir.path(),
        &["run", "--quiet", "--no-cache", "--resume", "out"],
    ))
    .await;
    assert!(last.status.success(), "{}", describe(&last));
    let logged: HashSet<String> = check_log(&out).into_iter().collect();
    let kept: HashSet<String> = committed(&out).into_iter().collect();
    assert_eq!(kept.len(), planned);
    assert_eq!(logged, kept);
}

fn committed_count(out: &Path) -> usize {
    if out.join("run.sqlite").exists() {
        committed(out).len()
    } else {
        0
    }
}

/// After a kill the log may miss lines or end torn (both repaired by the resume), but no
/// complete line repeats a committed call.
fn check_no_duplicate_lines(out: &Path, cycle: usize) {
    let log = std::fs::read_to_string(out.join("calls.jsonl")).unwrap_or_default();
    let mut seen = HashSet::new();
    for line in log.lines() {
        if let Ok(record) = serde_json::from_str::<Value>(line)
            && !record["verdict"].is_null()
        {
            assert!(
                seen.insert(record["call_id"].as_str().unwrap().to_string()),
                "cycle {cycle}: duplicate line"
            );
        }
    }
}

/// A pipe whose read end is already closed, as stdout of `judge-audit … | head -1` is once head
/// has exited.
fn closed_pipe() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: fds[0] is the read end just created and owned by nobody else.
    unsafe { libc::close(fds[0]) };
    // SAFETY: fds[1] is an open descriptor we own; Stdio takes ownership.
    unsafe { <Stdio as std::os::fd::FromRawFd>::from_raw_fd(fds[1]) }
}

#[test]
fn a_closed_or_full_stdout_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let full = Command::new(BIN)
        .args(["judges", "list"])
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    assert_eq!(full.status.code(), Some(2), "{}", describe(&full));
    let stderr = text(&full.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("stdout"), "{stderr}");

    let closed = Command::new(BIN)
        .args(["judges", "list"])
        .stdout(closed_pipe())
        .output()
        .unwrap();
    assert_eq!(closed.status.code(), Some(0), "{}", describe(&closed));
    assert!(!text(&closed.stderr).contains("panicked"));

    // `run … | head -1`: the reports are written before stdout is used, and the run still ends
    // well.
    let out = dir.path().join("demo");
    let demo = Command::new(BIN)
        .args(["demo", "--quiet", "--out"])
        .arg(&out)
        .stdout(closed_pipe())
        .output()
        .unwrap();
    assert_eq!(demo.status.code(), Some(0), "{}", describe(&demo));
    assert!(!text(&demo.stderr).contains("panicked"));
    assert!(out.join("report.md").exists());
}
