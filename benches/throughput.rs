//! Throughput of the real runner against a stub OpenAI-compatible server on loopback.
//!
//! `cargo bench --bench throughput` (optionally `-- --quick` for N = 2,000 only, or `-- --large`
//! for the N = 200,000 and 1,000,000 rows only). The stub (axum, one thread, fixed latency L, a
//! constant reply) and each client configuration run in separate processes of this binary, so
//! client CPU time and peak RSS are the client's alone. The client is the real pipeline: a
//! snapshot with N calls through `audit::execute` (run store, calls.jsonl, adaptive limiter,
//! retries), response cache off. Reported per configuration, the median of three client runs
//! (one run for the large rows): wall time, the ideal N·L/C, their ratio, client CPU per call,
//! peak RSS and start-up (from building the plan to the stub receiving the first request).

use judge_audit::audit::{self, DesignSection, ExecOptions, RunSection, Snapshot, SnapshotJudge};
use judge_audit::dataset::{Dataset, Pair, Preference};
use judge_audit::judge::JudgeConfig;
use judge_audit::judge::config::Backend;
use std::process::Command;
use std::time::{Duration, Instant};

const LATENCY_MS: u64 = 50;
/// Client runs per configuration; the table shows their medians.
const RUNS: usize = 3;
/// The large rows: (N, C, L in ms), 76 calls per pair (see `client`). The 1M row uses a 1 ms
/// stub so it ends in minutes.
const LARGE: [(usize, usize, u64); 2] = [(200_032, 256, 50), (1_000_032, 256, 1)];

fn main() {
    if let Ok(port) = std::env::var("JUDGE_AUDIT_BENCH_STUB") {
        return stub(port.parse().expect("port"));
    }
    if let Ok(spec) = std::env::var("JUDGE_AUDIT_BENCH_CLIENT") {
        return client(&spec);
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let large_only = std::env::args().any(|a| a == "--large");
    let exe = std::env::current_exe().expect("own path");
    let port = free_port();
    let mut stub = Command::new(&exe)
        .env("JUDGE_AUDIT_BENCH_STUB", port.to_string())
        .spawn()
        .expect("start stub");
    wait_for_port(port);
    let sizes: &[usize] = match (quick, large_only) {
        (_, true) => &[],
        (true, false) => &[2_000],
        (false, false) => &[2_000, 20_000],
    };
    let mut rows: Vec<(usize, usize, u64, usize)> = sizes
        .iter()
        .flat_map(|&n| [64usize, 256].map(|c| (n, c, LATENCY_MS, RUNS)))
        .collect();
    if !quick {
        rows.extend(LARGE.iter().map(|&(n, c, l)| (n, c, l, 1)));
        // (The large rows run in "wide" mode: see `client`.)
    }
    println!(
        "| N | C | L | wall (s) | ideal (s) | wall / ideal | client CPU / call (ms) | peak RSS (MB) | start-up (ms) (of which prepare) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (n, c, latency, runs_wanted) in rows {
        // Each figure is the median of the client processes (the machine may be shared).
        let mut runs: Vec<Vec<f64>> = (0..runs_wanted)
            .map(|_| {
                let output = Command::new(&exe)
                    .env(
                        "JUDGE_AUDIT_BENCH_CLIENT",
                        format!(
                            "{n},{c},{latency},http://127.0.0.1:{port}/v1{}",
                            if runs_wanted == 1 { ",wide" } else { "" }
                        ),
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
            runs[runs_wanted / 2][field]
        };
        let (wall, cpu, rss, startup) = (median(0), median(1), median(2), median(3));
        let prepare = median(4);
        let ideal = n as f64 * latency as f64 / 1000.0 / c as f64;
        println!(
            "| {n} | {c} | {latency} ms | {wall:.3} | {ideal:.3} | {:.3}× | {:.4} | {:.1} | {:.0} ({:.0}) |",
            wall / ideal,
            cpu * 1000.0 / n as f64,
            rss / 1024.0,
            startup * 1000.0,
            prepare * 1000.0
        );
    }
    if large_only {
        let _ = stub.kill();
        let _ = stub.wait();
        return;
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

/// The stub: answers every chat completion after a fixed delay (`x-stub-latency-ms`, default L)
/// with a constant body. `POST /reset` forgets the first request; `GET /first` returns when it
/// arrived (microseconds since the Unix epoch, 0 for none), for the clients' start-up figure.
fn stub(port: u16) {
    use axum::Router;
    use axum::http::HeaderMap;
    use axum::routing::{get, post};
    use std::sync::atomic::{AtomicU64, Ordering};
    static FIRST: AtomicU64 = AtomicU64::new(0);
    let body: &'static str = r#"{"id":"x","object":"chat.completion","created":0,"model":"stub","choices":[{"index":0,"message":{"role":"assistant","content":"Output (a)"},"finish_reason":"stop"}],"usage":{"prompt_tokens":300,"completion_tokens":1,"total_tokens":301}}"#;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let app = Router::new()
            .route(
                "/v1/chat/completions",
                post(move |headers: HeaderMap| async move {
                    let _ = FIRST.compare_exchange(
                        0,
                        epoch_micros(),
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    );
                    let latency = headers
                        .get("x-stub-latency-ms")
                        .and_then(|v| v.to_str().ok()?.parse().ok())
                        .unwrap_or(LATENCY_MS);
                    tokio::time::sleep(Duration::from_millis(latency)).await;
                    ([("content-type", "application/json")], body)
                }),
            )
            .route(
                "/reset",
                post(|| async {
                    FIRST.store(0, Ordering::SeqCst);
                    "ok"
                }),
            )
            .route(
                "/first",
                get(|| async { FIRST.load(Ordering::SeqCst).to_string() }),
            );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind stub");
        axum::serve(listener, app).await.expect("serve");
    });
}

fn epoch_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as u64
}

/// A bare HTTP/1.1 request to the stub's control routes (`POST /reset`, `GET /first`): the body.
fn control(url: &str, method: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let host = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("host");
    let mut stream = std::net::TcpStream::connect(host).expect("connect to stub");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// One client configuration: prints "wall_seconds cpu_seconds peak_rss_kib startup_seconds
/// prepare_seconds" (start-up is from building the pairs to the stub's first request; prepare is
/// its first phase, building the pairs, plan and perturbed answers; the rest is the run store,
/// its plan rows and the session up to the first request).
fn client(spec: &str) {
    let parts: Vec<&str> = spec.split(',').collect();
    let n: usize = parts[0].parse().expect("N");
    let c: usize = parts[1].parse().expect("C");
    let latency: u64 = parts[2].parse().expect("L");
    let url = parts[3].to_string();
    control(&url, "POST", "/reset");
    // Start-up counts from here: building the pairs and plan, the run store, the first request.
    let begun = epoch_micros();
    // Mode "plain" / "seq": baseline plus one artifact (8 calls per pair), without or with
    // sequential waves; the rejection size is tiny so no cell decides and both send every call.
    // Mode "wide" (the large rows): the shape of a real audit, 6 artifacts and 2 judges (each
    // with half the concurrency), 76 calls per pair.
    let mode = parts.get(4).copied();
    let wide = mode == Some("wide");
    let mode = mode.filter(|_| !wide);
    const WIDE: [&str; 6] = [
        "apology",
        "authority",
        "bandwagon",
        "emoji",
        "flattery",
        "markdown-bold",
    ];
    // Baseline only, one repeat: two calls (both orders) per pair. About 1.1 KB of answers per
    // request, like the peers' workload.
    let filler = "This answer explains the safety considerations in plain words. ".repeat(8);
    let per_pair = match (wide, mode) {
        (true, _) => 76,
        (false, Some(_)) => 8,
        (false, None) => 2,
    };
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
    judge.base_url = Some(url.clone());
    judge.template = "mtbench-pairwise".into();
    judge.max_tokens = 1;
    judge.max_retries = 0;
    judge.timeout_secs = 60.0;
    judge.concurrency = Some(if wide { c / 2 } else { c });
    judge
        .headers
        .insert("x-stub-latency-ms".into(), latency.to_string());
    let mut judges = vec![judge.clone()];
    if wide {
        judge.name = "stub-2".into();
        judges.push(judge);
    }
    let catalog = judge_audit::perturb::Catalog::builtin();
    let artifact_ids: Vec<String> = match (wide, mode) {
        (true, _) => WIDE.iter().map(|a| a.to_string()).collect(),
        (false, Some(_)) => vec!["apology".into()],
        (false, None) => Vec::new(),
    };
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
        artifacts: artifact_ids
            .iter()
            .map(|a| catalog.get(a).expect("built-in artifact").clone())
            .collect(),
        judges: judges
            .into_iter()
            .map(|config| SnapshotJudge {
                config,
                source_path: None,
            })
            .collect(),
        design: DesignSection {
            repeats: 1,
            artifacts: artifact_ids.clone(),
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
    let prepare = epoch_micros().saturating_sub(begun) as f64 / 1e6;
    assert_eq!(prepared.plan.calls.len(), n / per_pair * per_pair);
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
    assert_eq!(
        outcome.columns.recorded(),
        prepared.plan.calls.len(),
        "every call completed"
    );
    let first: u64 = control(&url, "GET", "/first")
        .trim()
        .parse()
        .expect("first request time");
    let startup = first.saturating_sub(begun) as f64 / 1e6;
    println!("{wall} {cpu} {} {startup} {prepare}", peak_rss_kib());
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
