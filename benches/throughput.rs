//! Throughput of the real runner against a stub OpenAI-compatible server on loopback.
//!
//! `cargo bench --bench throughput` (optionally `-- --quick` for N = 2,000 only). The stub (axum,
//! one thread, fixed latency L, a constant reply) and each client configuration run in separate
//! processes of this binary, so client CPU time and peak RSS are the client's alone. The client
//! is the real pipeline: a snapshot with N calls through `audit::execute` (run store, calls.jsonl,
//! adaptive limiter, retries), response cache off. Reported per configuration, each the median
//! of three client runs: wall time, the ideal N·L/C, their ratio, client CPU per call and peak
//! RSS.

use judge_audit::audit::{self, DesignSection, ExecOptions, RunSection, Snapshot, SnapshotJudge};
use judge_audit::dataset::{Dataset, Pair, Preference};
use judge_audit::judge::JudgeConfig;
use judge_audit::judge::config::Backend;
use std::process::Command;
use std::time::{Duration, Instant};

const LATENCY_MS: u64 = 50;
/// Client runs per configuration; the table shows their medians.
const RUNS: usize = 3;

fn main() {
    if let Ok(port) = std::env::var("JUDGE_AUDIT_BENCH_STUB") {
        return stub(port.parse().expect("port"));
    }
    if let Ok(spec) = std::env::var("JUDGE_AUDIT_BENCH_CLIENT") {
        return client(&spec);
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let exe = std::env::current_exe().expect("own path");
    let port = free_port();
    let mut stub = Command::new(&exe)
        .env("JUDGE_AUDIT_BENCH_STUB", port.to_string())
        .spawn()
        .expect("start stub");
    wait_for_port(port);
    let sizes: &[usize] = if quick { &[2_000] } else { &[2_000, 20_000] };
    println!(
        "| N | C | L | wall (s) | ideal (s) | wall / ideal | client CPU / call (ms) | peak RSS (MB) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for &n in sizes {
        for c in [64usize, 256] {
            // Each figure is the median of RUNS client processes (the machine may be shared).
            let mut runs: Vec<Vec<f64>> = (0..RUNS)
                .map(|_| {
                    let output = Command::new(&exe)
                        .env(
                            "JUDGE_AUDIT_BENCH_CLIENT",
                            format!("{n},{c},{LATENCY_MS},http://127.0.0.1:{port}/v1"),
                        )
                        .output()
                        .expect("run client");
                    assert!(
                        output.status.success(),
                        "client failed: {}",
                        String::from_utf8_lossy(&output.stderr)
                    );
                    String::from_utf8_lossy(&output.stdout)
                        .split_whitespace()
                        .map(|f| f.parse().expect("client figure"))
                        .collect()
                })
                .collect();
            let mut median = |field: usize| {
                runs.sort_by(|a, b| a[field].total_cmp(&b[field]));
                runs[RUNS / 2][field]
            };
            let (wall, cpu, rss) = (median(0), median(1), median(2));
            let ideal = n as f64 * LATENCY_MS as f64 / 1000.0 / c as f64;
            println!(
                "| {n} | {c} | {LATENCY_MS} ms | {wall:.3} | {ideal:.3} | {:.3}× | {:.4} | {:.1} |",
                wall / ideal,
                cpu * 1000.0 / n as f64,
                rss / 1024.0
            );
        }
    }
    // Sequential waves against the same calls: the per-wave analysis must not slow the runner.
    println!();
    println!("| N | C | L | mode | waves | wall (s) | wall / non-sequential |");
    println!("|---|---|---|---|---|---|---|");
    let c = 64usize;
    let n = 2_000usize;
    let mut plain_wall = f64::NAN;
    for mode in ["plain", "seq", "seq32"] {
        let mut walls: Vec<f64> = (0..RUNS)
            .map(|_| {
                let output = Command::new(&exe)
                    .env(
                        "JUDGE_AUDIT_BENCH_CLIENT",
                        format!("{n},{c},{LATENCY_MS},http://127.0.0.1:{port}/v1,{mode}"),
                    )
                    .output()
                    .expect("run client");
                assert!(
                    output.status.success(),
                    "client failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                String::from_utf8_lossy(&output.stdout)
                    .split_whitespace()
                    .next()
                    .expect("wall")
                    .parse()
                    .expect("client figure")
            })
            .collect();
        walls.sort_by(f64::total_cmp);
        let wall = walls[RUNS / 2];
        if mode == "plain" {
            plain_wall = wall;
        }
        let waves = match mode {
            "seq" => (n / 8).div_ceil(16).to_string(),
            "seq32" => (n / 8).div_ceil(32).to_string(),
            _ => "-".into(),
        };
        println!(
            "| {n} | {c} | {LATENCY_MS} ms | {mode} | {waves} | {wall:.3} | {:.3}× |",
            wall / plain_wall
        );
    }
    let _ = stub.kill();
    let _ = stub.wait();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "stub did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The stub: answers every chat completion after a fixed delay with a constant body.
fn stub(port: u16) {
    use axum::Router;
    use axum::routing::post;
    let body: &'static str = r#"{"id":"x","object":"chat.completion","created":0,"model":"stub","choices":[{"index":0,"message":{"role":"assistant","content":"Output (a)"},"finish_reason":"stop"}],"usage":{"prompt_tokens":300,"completion_tokens":1,"total_tokens":301}}"#;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let app = Router::new().route(
            "/v1/chat/completions",
            post(move || async move {
                tokio::time::sleep(Duration::from_millis(LATENCY_MS)).await;
                ([("content-type", "application/json")], body)
            }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind stub");
        axum::serve(listener, app).await.expect("serve");
    });
}

/// One client configuration: prints "wall_seconds cpu_seconds peak_rss_kib".
fn client(spec: &str) {
    let parts: Vec<&str> = spec.split(',').collect();
    let n: usize = parts[0].parse().expect("N");
    let c: usize = parts[1].parse().expect("C");
    let url = parts[3].to_string();
    // Mode "plain" / "seq": baseline plus one artifact (8 calls per pair), without or with
    // sequential waves; the rejection size is tiny so no cell decides and both send every call.
    let mode = parts.get(4).copied();
    // Baseline only, one repeat: two calls (both orders) per pair. About 1.1 KB of answers per
    // request, like the peers' workload.
    let filler = "This answer explains the safety considerations in plain words. ".repeat(8);
    let per_pair = if mode.is_some() { 8 } else { 2 };
    let pairs: Vec<Pair> = (0..n / per_pair)
        .map(|i| Pair {
            id: format!("bench-{i:06}"),
            prompt: format!("Question {i}: is this safe?"),
            response_a: format!("A{i}. {filler}"),
            response_b: format!("B{i}. {filler}"),
            preferred: Some(Preference::A),
            category: None,
            label_kind: None,
        })
        .collect();
    let mut judge = JudgeConfig::new("stub", Backend::Openai);
    judge.model = "stub".into();
    judge.base_url = Some(url);
    judge.template = "mtbench-pairwise".into();
    judge.max_tokens = 1;
    judge.max_retries = 0;
    judge.timeout_secs = 60.0;
    judge.concurrency = Some(c);
    let snapshot = Snapshot {
        rewriters: Default::default(),
        items: Vec::new(),
        seed: 1,
        dataset: std::sync::Arc::new(Dataset {
            name: "bench".into(),
            hash: judge_audit::dataset::hash_pairs(&pairs),
            pairs,
            skipped: Vec::new(),
        }),
        artifacts: match mode {
            Some(_) => vec![
                judge_audit::perturb::Catalog::builtin()
                    .get("apology")
                    .expect("built-in artifact")
                    .clone(),
            ],
            None => Vec::new(),
        },
        judges: vec![SnapshotJudge {
            config: judge,
            source_path: None,
        }],
        design: DesignSection {
            repeats: 1,
            artifacts: if mode.is_some() {
                vec!["apology".into()]
            } else {
                Vec::new()
            },
            sequential: matches!(mode, Some("seq" | "seq32")),
            wave_pairs: (mode == Some("seq32")).then_some(32),
            ..DesignSection::default()
        },
        run: RunSection {
            concurrency: c,
            ..RunSection::default()
        },
        trust: judge_audit::analyze::trust::TrustThresholds {
            reject_abs_t: if mode.is_some() { 1e-3 } else { 0.2 },
            ..Default::default()
        },
        jury: Default::default(),
    };
    let prepared = audit::prepare_snapshot(snapshot).expect("prepare");
    assert_eq!(prepared.plan.calls.len(), n);
    let out = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let outcome = runtime
        .block_on(audit::execute(
            &prepared,
            out.path(),
            &ExecOptions {
                quiet: true,
                max_cost: None,
                cache_dir: None,
                max_calls: None,
            },
        ))
        .expect("run");
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    assert_eq!(outcome.records.len(), n, "every call completed");
    println!("{wall} {cpu} {}", peak_rss_kib());
}

/// User + system CPU time of this process, from /proc/self/stat (clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / 100.0
}

fn peak_rss_kib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}
