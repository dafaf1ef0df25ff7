//! An LLM-rewritten artifact end to end: a loopback OpenAI-compatible rewriter that answers by a
//! fixed rule (one answer in five gets a new number, which the meaning guards must catch) and a
//! loopback judge. Checks the stored rewrites, the excluded count and its share in every format,
//! that the judge only ever sees passing rewrites, that a resumed run and a repeated run send no
//! rewrite request twice (server-side counts), and the report's rewrite examples.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use support::{MockServer, Recorded, Reply, chat_completion, chat_completion_with_usage};

const PAIRS: usize = 10;
/// What the rule adds to the item number of one answer in five.
const SHIFT: usize = 40;

/// The answer inside a shipped rewrite instruction (`...Answer:\n{answer}`).
fn original_of(request: &Recorded) -> String {
    let user = request.body["messages"][0]["content"]
        .as_str()
        .unwrap_or_default();
    user.rsplit("Answer:\n")
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The rule: "Well, " before the answer; for pairs 0 and 5 (both answers: 4 of 20) the item
/// number is also changed (0 → 40, 5 → 45), a new number the guards must catch.
fn rewrite(original: &str) -> String {
    let pair: usize = original
        .split("item ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|d| d.parse().ok())
        .unwrap_or(1);
    if pair % 5 == 0 {
        let changed = original.replacen(
            &format!("item {pair}:"),
            &format!("item {}:", pair + SHIFT),
            1,
        );
        format!("Well, {changed}")
    } else {
        format!("Well, {original}")
    }
}

fn judge_audit(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_judge-audit"))
        .current_dir(dir)
        .args(args)
        .env("JUDGE_AUDIT_CACHE", dir.join("cache"))
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .output()
        .unwrap()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// How often the rewriter was asked about each original.
fn asked(requests: &[Recorded]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in requests {
        *out.entry(original_of(r)).or_insert(0) += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrites_are_stored_guarded_cached_and_shown() {
    // Pair 9's answers fail at first (HTTP 400, no retry): the run stops short of them, and the
    // resume asks for exactly those.
    let broken = Arc::new(AtomicBool::new(true));
    let is_broken = |o: &str| o.contains("item 9:");
    let rewriter = MockServer::start({
        let broken = broken.clone();
        move |request| {
            let original = original_of(request);
            if broken.load(Ordering::SeqCst) && is_broken(&original) {
                return Reply::error(400, "bad request", "invalid_request_error", None);
            }
            Reply::json(chat_completion_with_usage(&rewrite(&original), 100, 50))
        }
    })
    .await;
    let judge = MockServer::start(|_| Reply::json(chat_completion("Output (a)"))).await;

    let dir = tempfile::tempdir().unwrap();
    let mut pairs = String::new();
    for i in 0..PAIRS {
        pairs.push_str(
            &serde_json::json!({
                "id": format!("p{i}"),
                "prompt": format!("Question {i}: is item {i} safe?"),
                "response_a": format!("About item {i}: it is safe <b>if</b> stored dry."),
                "response_b": format!("About item {i}: nobody knows."),
                "preferred": "a",
            })
            .to_string(),
        );
        pairs.push('\n');
    }
    std::fs::write(dir.path().join("pairs.jsonl"), pairs).unwrap();
    std::fs::write(
        dir.path().join("rewriter.toml"),
        format!(
            "name = \"loop-rewriter\"\nbackend = \"openai\"\nmodel = \"rw-model\"\n\
             base_url = \"{}\"\nmax_retries = 0\n\n[pricing]\ninput_per_mtok = 1.0\n\
             output_per_mtok = 2.0\n",
            rewriter.base_url()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("audit.toml"),
        format!(
            r#"
seed = 5

[dataset]
path = "pairs.jsonl"

[design]
repeats = 1
artifacts = ["rewrite-sentiment-cheerful"]

[perturbations]
rewriter = "rewriter.toml"

[[judge]]
name = "loop-judge"
backend = "openai"
model = "judge-model"
template = "chen-safety"
base_url = "{}"
max_retries = 0
"#,
            judge.base_url()
        ),
    )
    .unwrap();

    // First run: 20 answers to rewrite (both answers of 10 pairs), 2 of them fail.
    let first = tokio::task::spawn_blocking({
        let d = dir.path().to_path_buf();
        move || {
            judge_audit(
                &d,
                &["run", "--quiet", "--config", "audit.toml", "--out", "out"],
            )
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&first.stderr).to_string();
    assert_eq!(rewriter.count(), 20, "{stderr}");
    let out = dir.path().join("out");
    let store = judge_audit::run::store::RunStore::open(&out).unwrap();
    let stored = store.rewrites().unwrap();
    assert_eq!(stored.len(), 18, "{stderr}");
    for r in stored.values() {
        assert_eq!(r.role, "rewrite");
        assert_eq!(r.rewriter, "loop-rewriter");
        assert_eq!(r.model, "rw-model");
        assert_eq!(r.params.get("tone").map(String::as_str), Some("cheerful"));
        assert_eq!(r.instruction_hash.len(), 64);
        assert_eq!(r.answer, rewrite(&r.original));
        // 100 input tokens at $1/M + 50 output tokens at $2/M.
        assert!((r.cost_usd - 0.0002).abs() < 1e-12, "{}", r.cost_usd);
    }
    drop(store);
    // The calls of the two unrewritten answers were not sent: the run is incomplete.
    let partial = read_json(&out.join("summary.json"));
    let counts = &partial["judges"][0]["artifacts"][0]["perturbation"];
    assert_eq!(
        counts["rejected_reasons"]["no stored rewrite"], 2,
        "{counts}"
    );

    // Resume with the rewriter fixed: exactly the two missing rewrites are asked for.
    broken.store(false, Ordering::SeqCst);
    let judge_calls_before = judge.count();
    let resumed = tokio::task::spawn_blocking({
        let d = dir.path().to_path_buf();
        move || judge_audit(&d, &["run", "--quiet", "--resume", "out"])
    })
    .await
    .unwrap();
    assert!(
        resumed.status.success(),
        "resume failed: {}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(rewriter.count(), 22);
    assert!(judge.count() > judge_calls_before);
    let once = asked(&rewriter.requests());
    // Every original was answered once, except pair 9's two (a failure, then the answer).
    assert_eq!(once.len(), 20);
    for (o, n) in &once {
        assert_eq!(*n, if is_broken(o) { 2 } else { 1 }, "{o}");
    }

    // The meaning guards caught every new number: 4 of 20 rewrites excluded.
    let summary = read_json(&out.join("summary.json"));
    let counts = &summary["judges"][0]["artifacts"][0]["perturbation"];
    assert_eq!(counts["targets"], 20, "{counts}");
    assert_eq!(counts["rejected"], 4, "{counts}");
    assert_eq!(counts["rejected_share"], 0.2, "{counts}");
    assert_eq!(counts["rejected_reasons"]["new number 40"], 2, "{counts}");
    assert_eq!(counts["rejected_reasons"]["new number 45"], 2, "{counts}");
    assert_eq!(counts["effective"], 16, "{counts}");
    let section = &summary["rewrites"];
    assert_eq!(section["usage"]["rewrites"], 20);
    assert_eq!(section["usage"]["input_tokens"], 2000);
    let art = &section["artifacts"][0];
    assert_eq!(art["id"], "rewrite-sentiment-cheerful");
    assert_eq!(art["rewriter"], "loop-rewriter");
    assert_eq!(art["rejected"], 4);
    let rejected_pairs: Vec<&str> = art["rejected_items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["pair_id"].as_str().unwrap())
        .collect();
    assert_eq!(rejected_pairs, ["p0", "p0", "p5", "p5"]);
    let examples = art["examples"].as_array().unwrap();
    assert_eq!(examples.len(), 3);
    assert_eq!(examples[0]["pair_id"], "p1");
    assert_eq!(
        examples[0]["rewritten"],
        "Well, About item 1: it is safe <b>if</b> stored dry."
    );

    // The judge saw the passing rewrites and never a rejected one.
    let shown: Vec<String> = judge
        .requests()
        .iter()
        .map(|r| r.raw_body.clone())
        .collect();
    assert!(shown.iter().any(|b| b.contains("Well, About item 1:")));
    assert!(
        !shown
            .iter()
            .any(|b| b.contains("item 40:") || b.contains("item 45:"))
    );

    // Every format shows the share that failed.
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## LLM-rewritten artifacts"), "{md}");
    assert!(
        md.contains("**Failed the meaning check: 4 of 20 (20.0%)**"),
        "{md}"
    );
    assert!(md.contains("4 failed the meaning check (20.0%)"), "{md}");
    assert!(
        md.contains("rewrite (changes in bold): **Well,** About item 1:"),
        "{md}"
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<mark>Well,</mark> About item 1: it is safe &lt;b&gt;if&lt;/b&gt;"));
    assert!(!html.contains("<b>if</b>"));
    assert!(html.contains("Rejected: <span class=\"mono\">p0/a</span> (new number 40)"));
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert!(
        csv.lines()
            .any(|l| l.contains("rewrite_rejected_count,20,4")),
        "{csv}"
    );

    // `report` re-renders from the stored rewrites, byte for byte, without any call.
    let (rw, jc) = (rewriter.count(), judge.count());
    let before = std::fs::read(out.join("summary.json")).unwrap();
    let before_md = std::fs::read(out.join("report.md")).unwrap();
    let report = judge_audit(dir.path(), &["report", "out"]);
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    assert_eq!(std::fs::read(out.join("summary.json")).unwrap(), before);
    assert_eq!(std::fs::read(out.join("report.md")).unwrap(), before_md);

    // A second resume and a repeated run in a new directory send no rewrite again (the run
    // store, then the shared cache).
    let again = tokio::task::spawn_blocking({
        let d = dir.path().to_path_buf();
        move || {
            let a = judge_audit(&d, &["run", "--quiet", "--resume", "out"]);
            let b = judge_audit(
                &d,
                &["run", "--quiet", "--config", "audit.toml", "--out", "out2"],
            );
            (a, b)
        }
    })
    .await
    .unwrap();
    assert!(
        again.0.status.success(),
        "{}",
        String::from_utf8_lossy(&again.0.stderr)
    );
    assert!(
        again.1.status.success(),
        "{}",
        String::from_utf8_lossy(&again.1.stderr)
    );
    assert_eq!(rewriter.count(), rw);
    // The repeated run's judge calls come from the cache too.
    assert_eq!(judge.count(), jc);
    let repeated = read_json(&dir.path().join("out2/summary.json"));
    assert_eq!(
        repeated["judges"][0]["artifacts"][0]["perturbation"],
        summary["judges"][0]["artifacts"][0]["perturbation"]
    );
    assert_eq!(
        repeated["rewrites"]["artifacts"],
        summary["rewrites"]["artifacts"]
    );
}

/// The checker model: asked once per rewrite that passed the guards, never for one they
/// rejected; a "no" excludes the rewrite with its reason, and a repeated run asks nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_model_vetoes_rewrites_it_finds_different() {
    let rewriter =
        MockServer::start(|request| Reply::json(chat_completion(&rewrite(&original_of(request)))))
            .await;
    // "no" for pair 3's rewrites, "yes" otherwise.
    let checker = MockServer::start(|request| {
        let user = request.body["messages"][0]["content"]
            .as_str()
            .unwrap_or_default();
        Reply::json(chat_completion(if user.contains("item 3:") {
            "No."
        } else {
            "Yes"
        }))
    })
    .await;
    let judge = MockServer::start(|_| Reply::json(chat_completion("Output (b)"))).await;
    let dir = tempfile::tempdir().unwrap();
    let mut pairs = String::new();
    for i in 0..5 {
        pairs.push_str(
            &serde_json::json!({
                "id": format!("p{i}"),
                "prompt": format!("Is item {i} safe?"),
                "response_a": format!("About item {i}: keep it dry."),
                "response_b": format!("About item {i}: unknown."),
            })
            .to_string(),
        );
        pairs.push('\n');
    }
    std::fs::write(dir.path().join("pairs.jsonl"), pairs).unwrap();
    for (file, name, url) in [
        ("rewriter.toml", "rw", rewriter.base_url()),
        ("checker.toml", "ck", checker.base_url()),
    ] {
        std::fs::write(
            dir.path().join(file),
            format!(
                "name = \"{name}\"\nbackend = \"openai\"\nmodel = \"m\"\nbase_url = \"{url}\"\n\
                 max_retries = 0\n"
            ),
        )
        .unwrap();
    }
    std::fs::write(
        dir.path().join("audit.toml"),
        format!(
            r#"
[dataset]
path = "pairs.jsonl"

[design]
repeats = 1
artifacts = ["rewrite-sentiment-cheerful"]

[perturbations]
rewriter = "rewriter.toml"
checker = "checker.toml"

[[judge]]
name = "j"
backend = "openai"
model = "judge-model"
template = "chen-safety"
base_url = "{}"
max_retries = 0
"#,
            judge.base_url()
        ),
    )
    .unwrap();
    let runs = tokio::task::spawn_blocking({
        let d = dir.path().to_path_buf();
        move || {
            let a = judge_audit(
                &d,
                &["run", "--quiet", "--config", "audit.toml", "--out", "out"],
            );
            let b = judge_audit(
                &d,
                &["run", "--quiet", "--config", "audit.toml", "--out", "out"],
            );
            (a, b)
        }
    })
    .await
    .unwrap();
    assert!(
        runs.0.status.success(),
        "{}",
        String::from_utf8_lossy(&runs.0.stderr)
    );
    assert!(
        runs.1.status.success(),
        "{}",
        String::from_utf8_lossy(&runs.1.stderr)
    );
    // 10 answers rewritten; pair 0's two fail the number guard, so 8 checks.
    assert_eq!(rewriter.count(), 10);
    assert_eq!(checker.count(), 8);
    let summary = read_json(&dir.path().join("out/summary.json"));
    let counts = &summary["judges"][0]["artifacts"][0]["perturbation"];
    assert_eq!(counts["rejected"], 4, "{counts}");
    assert_eq!(
        counts["rejected_reasons"]["checker: different claims"], 2,
        "{counts}"
    );
    assert_eq!(counts["rejected_reasons"]["new number 40"], 2, "{counts}");
    assert_eq!(summary["rewrites"]["usage"]["checks"], 8);
    assert_eq!(summary["rewrites"]["artifacts"][0]["checker"], "ck");
}

/// `--max-cost` bounds the rewrites too: calls stop before the budget would be exceeded, what
/// was spent is stored, and the items left unrewritten keep their judge calls pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cost_budget_stops_rewrites_before_it_is_exceeded() {
    let rewriter = MockServer::start(|request| {
        Reply::json(chat_completion_with_usage(
            &rewrite(&original_of(request)),
            100,
            50,
        ))
    })
    .await;
    let judge = MockServer::start(|_| Reply::json(chat_completion("Output (a)"))).await;
    let dir = tempfile::tempdir().unwrap();
    let mut pairs = String::new();
    for i in 1..5 {
        pairs.push_str(
            &serde_json::json!({
                "id": format!("p{i}"),
                "prompt": format!("Is item {i} safe?"),
                "response_a": format!("About item {i}: keep it dry."),
                "response_b": format!("About item {i}: unknown."),
            })
            .to_string(),
        );
        pairs.push('\n');
    }
    std::fs::write(dir.path().join("pairs.jsonl"), pairs).unwrap();
    // $1 per thousand tokens: a rewrite costs $0.20 (100 in, 50 out at $2/k).
    std::fs::write(
        dir.path().join("rewriter.toml"),
        format!(
            "name = \"rw\"\nbackend = \"openai\"\nmodel = \"m\"\nbase_url = \"{}\"\n\
             max_retries = 0\nmax_tokens = 60\n\n[pricing]\ninput_per_mtok = 1000.0\n\
             output_per_mtok = 2000.0\n",
            rewriter.base_url()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("audit.toml"),
        format!(
            r#"
[dataset]
path = "pairs.jsonl"

[design]
repeats = 1
artifacts = ["rewrite-sentiment-cheerful"]

[perturbations]
rewriter = "rewriter.toml"

[[judge]]
name = "j"
backend = "openai"
model = "judge-model"
template = "chen-safety"
base_url = "{}"
max_retries = 0
"#,
            judge.base_url()
        ),
    )
    .unwrap();
    let run = tokio::task::spawn_blocking({
        let d = dir.path().to_path_buf();
        move || {
            judge_audit(
                &d,
                &[
                    "run",
                    "--quiet",
                    "--config",
                    "audit.toml",
                    "--out",
                    "out",
                    "--max-cost",
                    "0.7",
                ],
            )
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr).to_string();
    let sent = rewriter.count();
    assert!((1..8).contains(&sent), "{sent} rewrites sent: {stderr}");
    let store = judge_audit::run::store::RunStore::open(&dir.path().join("out")).unwrap();
    let stored = store.rewrites().unwrap();
    assert_eq!(stored.len(), sent);
    let spent: f64 = stored.values().map(|r| r.cost_usd).sum();
    assert!(spent <= 0.7 + 1e-9, "spent {spent}");
    let summary = read_json(&dir.path().join("out/summary.json"));
    let counts = &summary["judges"][0]["artifacts"][0]["perturbation"];
    assert_eq!(
        counts["rejected_reasons"]["no stored rewrite"].as_u64(),
        Some(8 - sent as u64),
        "{counts}"
    );
}

/// The batch routes make no rewrites, so they refuse rewrite artifacts instead of sending the
/// original text in the rewrite's place (a rewriter and judge on a closed port: nothing may be
/// sent, and nothing is).
#[test]
fn batch_export_refuses_rewrite_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pairs.jsonl"),
        "{\"id\":\"p0\",\"prompt\":\"q\",\"response_a\":\"An answer.\",\"response_b\":\"Another answer.\"}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("rewriter.toml"),
        "name = \"rw\"\nbackend = \"openai\"\nmodel = \"rw-model\"\n\
         base_url = \"http://127.0.0.1:9/v1\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("audit.toml"),
        "seed = 5\n[dataset]\npath = \"pairs.jsonl\"\n[design]\n\
         artifacts = [\"apology\", \"rewrite-sentiment-cheerful\"]\n\
         [perturbations]\nrewriter = \"rewriter.toml\"\n[[judge]]\nname = \"j\"\n\
         backend = \"openai\"\nmodel = \"m\"\nbase_url = \"http://127.0.0.1:9/v1\"\n",
    )
    .unwrap();
    let o = judge_audit(
        dir.path(),
        &["batch", "export", "out", "--config", "audit.toml"],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    assert!(
        stderr.contains("rewrite artifacts (rewrite-sentiment-cheerful) need them"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("out/batch").exists(),
        "no batch file written"
    );
}
