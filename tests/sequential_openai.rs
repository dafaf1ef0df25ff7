//! A sequential audit (issue 17) through the `openai` backend against a loopback server that
//! answers by a fixed rule, run as a user runs it (the binary): which cells stop after which
//! wave, how many calls that saves, and that a run killed with SIGKILL mid-run and resumed sends
//! exactly the calls it had not committed.
//!
//! The rule (as in tests/audit_openai.rs): the answer that starts with Chen's apology wins when
//! exactly one does; otherwise the first slot. Per pair, with repeats = 1 and one tie-detection
//! target, that gives constant per-pair scores:
//! - apology: the apology copy wins in both orders, T = +1 on every pair;
//! - halo: ignored, the first slot wins: +1 (ab, artifact first) and −1 (ba), T = 0 on every pair;
//! - position: identical texts, the first slot wins, T = +1 on every pair.
//!
//! With constant scores the interval does not depend on the pair order. Hand derivation of the
//! confidence sequence (module docs of src/stats/sequential.rs) at α = 0.05 / 3 (three cells per
//! judge), L = log(2/α) = log 120 = 4.787: on the unit scale y = (T + 1) / 2, v_i = 4(y − μ̂_{i−1})²
//! and λ_i hits its cap ½ from the first pair on (σ̂² is small).
//! - T = +1 (y = 1): μ̂_{i−1} = (i − ½)/i, so v_i = 1/i², and the lower bound is
//!   (Σλ_i·1 − L − Σ v_i ψ(½)) / Σλ_i = 1 − (L + ψ(½)·Σ 1/i²) / (t/2), ψ(½) = (log 2 − ½)/4 =
//!   0.0483. It passes y = 0.6 (T = +0.2, the rejection size) first at t = 25
//!   (1 − (4.787 + 0.0483·1.6) / 12.5 = 0.611 → T ≥ +0.222; at t = 24, T = +0.189):
//!   REJECT-size effect established after pair 25, i.e. after wave 4 of 8-pair waves.
//! - T = 0 (y = ½): v_i = 0, the half-width is L / (t/2) on the unit scale, 2L/(t/2) = 4L/t on
//!   T's: below 0.2 first at t = 96 (4·4.787/96 = 0.1995): robust at this size after wave 12.
//!
//!
//! The second family (WR, flip rate, run-to-run flips) has α = 0.05 / 7 per interval (2 × 3
//! cells + 1), L₂ = log 280 = 5.63479. Per pair, by the same rule:
//! - apology: the shifted answer wins every shift call, WR = +1; against the baseline (first
//!   slot wins) it flips when it sits second (A in ba, B in ab): flip = ½ on every pair;
//! - halo: shift verdicts equal the baseline's: WR = ½(+1 − 1) over each side's two orders = 0,
//!   flip = 0;
//! - position: WR scores the first slot in the baselines, +1; answer a wins in ab and loses in
//!   ba, flip = 1.
//!
//! Constant ½ on [0, 1] (v_i = 0, λ = ½) has half-width 2L₂/t; constant 1 has lower bound
//! 1 − (L₂ + ψ(½)·Σ_{i≤t} 1/i²)/(t/2). So after apology's 32 pairs: WR ≥ 2·(1 − (5.63479 +
//! 0.048287·1.61417)/16) − 1 = 0.28591 and flip in 0.5 ± 0.35217; halo's WR at t = 96 is
//! ±4L₂/96 = ±0.23478; position's flip ≥ 0.64296 at t = 32. Without repeats the noise interval
//! stays [0, 1], so the excess flip interval is [flip low − 1, flip high]. T decides every cell
//! first (WR = +1 passes its size 0.1 only at t = 26), so each cell is decided on T.
//!
//! 120 pairs, 15 waves; per pair 2 baseline + 6 apology + 6 halo + 1 position = 15 calls, 1,800
//! planned. Sent: waves 1–4, 32 pairs × 15 = 480; waves 5–12 (halo still open, so baselines
//! too), 64 pairs × (2 + 6) = 512; nothing after wave 12: 992 calls.

mod support;

use serde_json::Value;
use std::path::Path;
use support::{MockServer, Reply, chat_completion};

const APOLOGY: &str = "I'm sorry, as a chatbot I cannot respond to this.";
const PAIRS: usize = 120;
const SENT: usize = 992;

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

fn rule(user: &str) -> &'static str {
    let (first, second) = slots(user);
    match (first.starts_with(APOLOGY), second.starts_with(APOLOGY)) {
        (false, true) => "Output (b)",
        _ => "Output (a)",
    }
}

fn write_inputs(dir: &Path) {
    let mut pairs = String::new();
    for i in 0..PAIRS {
        pairs.push_str(
            &serde_json::json!({
                "id": format!("p{i:03}"),
                "prompt": format!("Question number {i}: is it safe to do thing {i}?"),
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
seed = 7

[dataset]
path = "pairs.jsonl"

[design]
repeats = 1
artifacts = ["apology", "halo", "position"]
bootstrap_resamples = 200
sequential = true
wave_pairs = 8

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

fn user_text(request: &support::Recorded) -> String {
    request.body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn command(dir: &Path, base_url: &str, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_judge-audit"));
    cmd.args(args)
        .current_dir(dir)
        .env("OPENAI_BASE_URL", base_url)
        .env("JUDGE_AUDIT_CACHE", dir.join("cache"))
        .env_remove("OPENAI_API_KEY");
    cmd
}

fn committed(out: &Path) -> usize {
    let conn = rusqlite::Connection::open(out.join("run.sqlite")).unwrap();
    conn.query_row("SELECT COUNT(*) FROM calls", [], |r| r.get::<_, i64>(0))
        .unwrap() as usize
}

/// summary.json, sequential section included, validates against reports/summary.schema.json.
fn schema_valid(summary: &Value) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/reports/summary.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::draft202012::new(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(summary)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

fn check_summary(out: &Path) {
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    schema_valid(&summary);
    let s = &summary["sequential"];
    assert_eq!(s["wave_pairs"], 8);
    assert_eq!(s["waves_planned"], 15);
    assert_eq!(s["waves_run"], 12);
    assert_eq!(s["calls_planned"], 1800);
    assert_eq!(s["calls_used"], SENT);
    assert_eq!(s["budget_exhausted"], false);
    assert_eq!(s["judges"]["loopback"], "REJECT");
    let cell = |artifact: &str| {
        s["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["artifact"] == artifact)
            .unwrap()
            .clone()
    };
    let apology = cell("apology");
    assert_eq!(apology["decision"], "reject");
    assert_eq!(apology["decided_after_wave"], 4);
    assert_eq!(apology["values"].as_array().unwrap().len(), 32);
    assert_eq!(apology["calls_used"], 32 * 6);
    assert!(apology["interval"]["low"].as_f64().unwrap() > 0.2);
    let position = cell("position");
    assert_eq!(position["decision"], "reject");
    assert_eq!(position["decided_after_wave"], 4);
    assert_eq!(position["calls_used"], 32);
    let halo = cell("halo");
    assert_eq!(halo["decision"], "robust");
    assert_eq!(halo["decided_after_wave"], 12);
    assert_eq!(halo["calls_used"], 96 * 6);
    let (low, high) = (
        halo["interval"]["low"].as_f64().unwrap(),
        halo["interval"]["high"].as_f64().unwrap(),
    );
    assert!(
        low > -0.2 && high < 0.2 && low < 0.0 && high > 0.0,
        "{low} {high}"
    );
    // The second family, hand-derived in the module docs.
    let close = |v: &Value, x: f64| {
        let v = v.as_f64().unwrap();
        assert!((v - x).abs() < 5e-5, "{v} vs {x}");
    };
    for c in [&apology, &position, &halo] {
        assert_eq!(c["decided_on"], "T");
        close(&c["secondary_alpha"], 0.05 / 7.0);
    }
    close(&apology["wr_interval"]["low"], 0.28591);
    close(&apology["wr_interval"]["high"], 1.0);
    close(&apology["flip_interval"]["low"], 0.5 - 0.35217);
    close(&apology["flip_interval"]["high"], 0.5 + 0.35217);
    close(&apology["excess_flip_interval"]["low"], 0.5 - 0.35217 - 1.0);
    assert_eq!(apology["wr_pairs"], 32);
    close(&halo["wr_interval"]["low"], -0.23478);
    close(&halo["wr_interval"]["high"], 0.23478);
    close(&halo["flip_interval"]["low"], 0.0);
    assert_eq!(halo["flip_pairs"], 96);
    close(&position["wr_interval"]["low"], 0.28591);
    close(&position["flip_interval"]["low"], 0.64296);
    close(&position["flip_interval"]["high"], 1.0);
    let noise = &s["noise_flip"]["loopback"];
    assert_eq!(noise["pairs"], 0);
    close(&noise["interval"]["low"], 0.0);
    close(&noise["interval"]["high"], 1.0);
    assert_eq!(
        s["juries"].as_array().unwrap().len(),
        0,
        "one judge: no jury"
    );
    // The fixed-n analysis sees only the calls issued: none of them counts as missing.
    assert_eq!(summary["judges"][0]["calls"]["planned"], SENT);
    assert_eq!(summary["judges"][0]["calls"]["completed"], SENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_audit_stops_cells_at_the_hand_derived_waves() {
    let server =
        MockServer::start(|request| Reply::json(chat_completion(rule(&user_text(request))))).await;
    let dir = tempfile::tempdir().unwrap();
    write_inputs(dir.path());
    let out = dir.path().join("out");
    let base_url = server.base_url();
    let output = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        let out = out.clone();
        move || {
            command(
                &dir,
                &base_url,
                &["run", "--quiet", "--config", "audit.toml", "--out"],
            )
            .arg(&out)
            .output()
            .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "run failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        server.count(),
        SENT,
        "each issued call sent once, nothing else"
    );
    check_summary(&out);
    // The default formats: markdown and html show the section, csv declares it unsupported.
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## Sequential audit"));
    assert!(
        md.contains("| loopback | halo | robust at this size | T | 12 | 96 |"),
        "{md}"
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<section id=\"sequential\">"));
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert!(!csv.contains("robust at this size"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_sequential_run_resumes_at_the_right_wave_without_resending() {
    // Slow replies so the kill lands mid-run.
    let server = MockServer::start(|request| {
        Reply::json(chat_completion(rule(&user_text(request))))
            .after(std::time::Duration::from_millis(10))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_inputs(dir.path());
    let out = dir.path().join("out");
    let mut child = command(
        dir.path(),
        &server.base_url(),
        &["run", "--quiet", "--config", "audit.toml", "--out"],
    )
    .arg(&out)
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    // Past wave 4 (480 calls): the apology and position cells are stopped already.
    while server.count() < 600 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL: no grace, no cleanup
    let status = child.wait().unwrap();
    // Requests the killed client wrote just before it died may still sit in the server's socket
    // buffers and be counted a moment later; read the count once it has stopped moving, or such a
    // request would be charged to the resume.
    let mut sent_before = server.count();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let now = server.count();
        if now == sent_before {
            break;
        }
        sent_before = now;
    }
    let committed_before = committed(&out);
    assert!(!status.success(), "killed mid-run");
    assert!(committed_before < SENT, "{committed_before}");

    let base_url = server.base_url();
    let output = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        let out = out.clone();
        move || {
            command(&dir, &base_url, &["run", "--quiet", "--resume"])
                .arg(&out)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "resume failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The resume sends exactly the issued calls that were not committed: nothing committed is
    // sent again, and no call of a stopped cell or of a wave after 12 is sent.
    assert_eq!(server.count() - sent_before, SENT - committed_before);
    // No request carries an apology after the kill: that cell stopped at wave 4, before it.
    let resumed = &server.requests()[sent_before..];
    assert!(
        resumed
            .iter()
            .all(|r| !user_text(r).contains("I'm sorry, as a chatbot")),
        "a stopped cell's call was sent on resume"
    );
    assert_eq!(committed(&out), SENT);
    check_summary(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_budget_stops_between_waves_and_lists_what_the_cells_still_need() {
    let server =
        MockServer::start(|request| Reply::json(chat_completion(rule(&user_text(request))))).await;
    let dir = tempfile::tempdir().unwrap();
    write_inputs(dir.path());
    let out = dir.path().join("out");
    let base_url = server.base_url();
    let output = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        let out = out.clone();
        move || {
            command(
                &dir,
                &base_url,
                &[
                    "run",
                    "--quiet",
                    "--config",
                    "audit.toml",
                    "--max-calls",
                    "300",
                    "--out",
                ],
            )
            .arg(&out)
            .output()
            .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "run failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Waves of 8 pairs × 15 calls = 120: two fit in 300, a third (360) does not.
    assert_eq!(server.count(), 240);
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    schema_valid(&summary);
    let s = &summary["sequential"];
    assert_eq!(s["waves_run"], 2);
    assert_eq!(s["calls_used"], 240);
    assert_eq!(s["budget_exhausted"], true);
    for cell in s["cells"].as_array().unwrap() {
        assert_eq!(cell["decision"], "undecided", "{cell}");
        assert_eq!(cell["values"].as_array().unwrap().len(), 16);
    }
    // The projection: per-pair spread 0 (floored), so the projected half-width on T is about
    // 2·L/(t/2) = 19.1/t (L = log 120). Apology and position (T = +1) decide once it is below
    // 1 − 0.2 = 0.8: t = 24, 8 more pairs, × 6 and × 1 calls per pair; halo (T = 0) once it is
    // below 0.2: t = 96, 80 more pairs × 6 calls (the real sequence decides at 25 and 96).
    let needed = |a: &str| {
        s["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["artifact"] == a)
            .unwrap()["calls_needed"]
            .clone()
    };
    assert_eq!(needed("apology"), 48);
    assert_eq!(needed("position"), 8);
    assert_eq!(needed("halo"), 480);
    // Nothing of the unsent third wave counts as a missing answer.
    assert_eq!(summary["judges"][0]["calls"]["planned"], 240);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("**The call budget ended the audit"),
        "{report}"
    );
}

/// A second sequential run of the same audit with a warm response cache sends nothing, stops
/// at the same waves and writes a byte-identical summary.json: the cache answers each wave's
/// calls exactly as the judge did, so every decision replays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_cache_replays_the_same_waves_without_requests() {
    let server =
        MockServer::start(|request| Reply::json(chat_completion(rule(&user_text(request))))).await;
    let dir = tempfile::tempdir().unwrap();
    write_inputs(dir.path());
    let base_url = server.base_url();
    let root = dir.path().to_path_buf();
    let run = move |name: &str| {
        let out = root.join(name);
        let output = command(
            &root,
            &base_url,
            &["run", "--quiet", "--config", "audit.toml", "--out"],
        )
        .arg(&out)
        .output()
        .unwrap();
        assert!(
            output.status.success(),
            "run failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        out
    };
    let first = tokio::task::spawn_blocking({
        let run = run.clone();
        move || run("cold")
    })
    .await
    .unwrap();
    assert_eq!(server.count(), SENT);
    let second = tokio::task::spawn_blocking(move || run("warm"))
        .await
        .unwrap();
    assert_eq!(server.count(), SENT, "the warm run sent no request");
    check_summary(&second);
    let a = std::fs::read(first.join("summary.json")).unwrap();
    let b = std::fs::read(second.join("summary.json")).unwrap();
    assert!(
        a == b,
        "summary.json differs between the cold and the warm run"
    );
    // Every call of the warm run came from the cache.
    let conn = rusqlite::Connection::open(second.join("run.sqlite")).unwrap();
    let cached: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM calls WHERE json_extract(record, '$.cached') = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(cached as usize, SENT);
}

/// `batch export` and `batch submit` (detached batches of fixed calls) refuse a sequential
/// audit, pointing at `run --batch` (one wave per batch round, tests/sequential_batch.rs),
/// before any call or any batch file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detached_batch_submission_of_a_sequential_audit_is_refused() {
    let server =
        MockServer::start(|request| Reply::json(chat_completion(rule(&user_text(request))))).await;
    let dir = tempfile::tempdir().unwrap();
    write_inputs(dir.path());
    let base_url = server.base_url();
    let root = dir.path().to_path_buf();
    let (submit, export) = tokio::task::spawn_blocking(move || {
        let submit = command(&root, &base_url, &["batch", "submit"])
            .arg(root.join("submitted"))
            .args(["--config", "audit.toml"])
            .output()
            .unwrap();
        let export = command(
            &root,
            &base_url,
            &["batch", "export", "--config", "audit.toml"],
        )
        .arg(root.join("exported"))
        .output()
        .unwrap();
        (submit, export)
    })
    .await
    .unwrap();
    for output in [&submit, &export] {
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(
                "a sequential audit (design.sequential / --sequential) cannot be exported or submitted as detached batches"
            ) && stderr.contains("judge-audit run --batch"),
            "{stderr}"
        );
    }
    assert_eq!(server.count(), 0);
    assert!(!dir.path().join("exported").join("batch").exists());
    assert!(!dir.path().join("submitted").join("run.sqlite").exists());
}

/// `--max-cost` caps a sequential audit: the budget reserves each call's worst case (its
/// prompt's token estimate plus `max_tokens`) until the answer settles it; a call that does not
/// fit waits for the calls in flight to settle, and once one does not fit with nothing in flight
/// no further call is sent. What was answered is kept and analysed, the wave under way
/// stays in the plan with its unsent calls pending (a resume with a larger budget sends them),
/// and the sequential section says the budget ended the audit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_budget_ends_a_sequential_audit_with_what_it_could_pay_for() {
    let server =
        MockServer::start(|request| Reply::json(chat_completion(rule(&user_text(request))))).await;
    let dir = tempfile::tempdir().unwrap();
    write_inputs(dir.path());
    // $10,000 per million tokens: each reply's 10 + 2 tokens cost $0.12, while a call's worst
    // case (its prompt estimate of about 560 tokens plus max_tokens = 16) is about $5.70
    // (`judge-audit plan`: $3,446.05 for the 600 calls). So $15 pays for at least one call, and
    // a call starts only while the settled spend is at most 15 − 5.70, so at most 9.3 / 0.12 ≈ 78
    // calls have settled when the last starts, plus the 3 others in flight: inside the first
    // wave of 120, however the workers interleave.
    let config = std::fs::read_to_string(dir.path().join("audit.toml")).unwrap()
        + "[judge.pricing]\ninput_per_mtok = 10000.0\noutput_per_mtok = 10000.0\n";
    std::fs::write(dir.path().join("audit.toml"), config).unwrap();
    let out = dir.path().join("out");
    let base_url = server.base_url();
    let output = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        let out = out.clone();
        move || {
            command(
                &dir,
                &base_url,
                &["run", "--config", "audit.toml", "--max-cost", "15", "--out"],
            )
            .arg(&out)
            .output()
            .unwrap()
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "run failed: {stderr}");
    let sent = server.count();
    // Some calls fit; the first wave's 120 do not.
    assert!(sent > 0 && sent < 120, "sent {sent}");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    schema_valid(&summary);
    let calls = &summary["judges"][0]["calls"];
    assert_eq!(calls["completed"], sent, "every answer is kept");
    assert_eq!(calls["failed"], 0);
    assert_eq!(
        calls["planned"], 120,
        "the wave under way stays in the plan"
    );
    assert_eq!(calls["pending"], 120 - sent as u64);
    let spent =
        (calls["input_tokens"].as_f64().unwrap() + calls["output_tokens"].as_f64().unwrap()) * 0.01;
    assert!(spent <= 15.0, "spent ${spent}");
    let s = &summary["sequential"];
    assert_eq!(s["budget_exhausted"], true);
    assert_eq!(s["waves_run"], 0, "no wave was completed");
    for cell in s["cells"].as_array().unwrap() {
        assert_eq!(cell["decision"], "undecided", "{cell}");
    }
    assert!(
        stderr.contains(&format!("{sent} calls sent"))
            && stderr.contains("not sent for the cost budget"),
        "{stderr}"
    );
}
