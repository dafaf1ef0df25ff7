//! The memory design of a run, asserted with an allocator counter (issue 21): the judges' raw
//! texts live in the run store and `calls.jsonl`, not in memory. A resumed run and a re-analysis
//! of a finished run read every committed call, but neither holds the raw texts: a regression to
//! "hold every record as stored" fails here.
//!
//! A simulated audit (2 sim judges, 6 artifacts, 33 pairs: 2,508 calls) is run through the binary,
//! then every stored call's raw text is replaced by 16 KiB of text, 40 MB in all, far more than
//! the rest of what the analysis holds. Measured (debug build) at the commit that added this
//! test: 2.7 MB (re-analysis) and 2.4 MB (resume) of peak heap above the starting point; with the
//! loader keeping the texts, as before, 43.9 MB and 84.5 MB (the resume then held them twice: the
//! earlier calls and the records read back for the analysis). Runs in about 10 s in debug.

use judge_audit::audit::{self, ExecOptions};
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts live heap bytes and their peak (for this test binary only).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size >= layout.size() {
                let grown = new_size - layout.size();
                let live = LIVE.fetch_add(grown, Ordering::Relaxed) + grown;
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The counters are the process's: the tests take turns so one's allocations are not counted
/// in the other's peak.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Peak heap bytes above the live bytes at the start, while `f` runs.
fn peak_above_start<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = LIVE.load(Ordering::SeqCst);
    PEAK.store(start, Ordering::SeqCst);
    let value = f();
    (value, PEAK.load(Ordering::SeqCst).saturating_sub(start))
}

const PAIRS: usize = 33;
const CALLS: usize = PAIRS * 76;
const RAW_BYTES: usize = 16 * 1024;

fn write_inputs(dir: &Path) {
    write_pairs(dir, PAIRS);
}

fn write_pairs(dir: &Path, pairs_wanted: usize) {
    let filler = "This answer explains the safety considerations in plain words. ".repeat(8);
    let mut pairs = String::new();
    for i in 0..pairs_wanted {
        pairs.push_str(
            &serde_json::json!({
                "id": format!("p{i:04}"),
                "prompt": format!("Question {i}: is this safe?"),
                "response_a": format!("A{i}. {filler}"),
                "response_b": format!("B{i}. {filler}"),
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
seed = 1
judges = ["sim-unbiased", "sim-apology-lover"]

[dataset]
path = "pairs.jsonl"

[design]
repeats = 1
artifacts = ["apology", "authority", "bandwagon", "emoji", "flattery", "markdown-bold"]
bootstrap_resamples = 200
"#,
    )
    .unwrap();
}

#[test]
fn resume_and_reanalysis_do_not_hold_the_raw_texts() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    write_inputs(dir.path());
    let out = dir.path().join("out");
    run_audit(dir.path(), &out);
    // Long answers (a judge that reasons before its verdict), stored the way the runner stores
    // them: the record's JSON text with its `raw` field.
    let conn = rusqlite::Connection::open(out.join("run.sqlite")).unwrap();
    let long = "Because the first answer explains the risk. ".repeat(RAW_BYTES / 44 + 1);
    let changed = conn
        .execute(
            "UPDATE calls SET record = json_set(record, '$.raw', ?1)",
            [&long],
        )
        .unwrap();
    assert_eq!(changed, CALLS, "every planned call was committed");
    drop(conn);
    let stored_texts = CALLS * long.len();
    assert!(stored_texts > 40_000_000, "{stored_texts}");

    // Re-analysis of the finished run (what `report` does).
    let (summary, report_peak) = peak_above_start(|| audit::summarize_stored(&out).unwrap());
    assert_eq!(summary.judges.len(), 2);
    drop(summary);

    // A resume of the finished run: reads what is committed, sends nothing, analyses.
    let prepared = audit::prepare_stored(&out).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (outcome, resume_peak) = peak_above_start(|| {
        runtime
            .block_on(audit::execute(
                &prepared,
                &out,
                &ExecOptions {
                    quiet: true,
                    max_cost: None,
                    cache_dir: None,
                    max_calls: None,
                },
            ))
            .unwrap()
    });
    assert_eq!(outcome.sent, 0);
    assert_eq!(outcome.columns.recorded(), CALLS);
    // A pairwise audit is analysed from the columns: no record per call is read back.
    let texts_dropped = outcome.records.is_empty();
    drop(outcome);

    eprintln!(
        "peak heap above start: report {:.1} MB, resume {:.1} MB (stored raw texts {:.1} MB)",
        report_peak as f64 / 1e6,
        resume_peak as f64 / 1e6,
        stored_texts as f64 / 1e6
    );
    // Holding the texts once would add all of `stored_texts`; a quarter of it is far above what
    // the rest of either step holds.
    for (step, peak) in [("report", report_peak), ("resume", resume_peak)] {
        assert!(
            peak < stored_texts / 4,
            "{step}: peak heap {peak} bytes, the raw texts are {stored_texts} bytes"
        );
    }
    assert!(texts_dropped, "the run holds no records, so no raw text");
}

/// Run the audit of `dir`'s inputs into `out` through the binary.
fn run_audit(dir: &Path, out: &Path) {
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_judge-audit"))
        .args([
            "run",
            "--quiet",
            "--no-cache",
            "--config",
            "audit.toml",
            "--out",
        ])
        .arg(out)
        .current_dir(dir)
        .env("JUDGE_AUDIT_CACHE", dir.join("cache"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// Peak heap above the start of a re-analysis (`report`) and of a resume of the finished run in
/// `out`.
fn peaks(out: &Path) -> (usize, usize) {
    let (summary, report_peak) = peak_above_start(|| audit::summarize_stored(out).unwrap());
    drop(summary);
    let prepared = audit::prepare_stored(out).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (outcome, resume_peak) = peak_above_start(|| {
        runtime
            .block_on(audit::execute(
                &prepared,
                out,
                &ExecOptions {
                    quiet: true,
                    max_cost: None,
                    cache_dir: None,
                    max_calls: None,
                },
            ))
            .unwrap()
    });
    assert_eq!(outcome.sent, 0);
    (report_peak, resume_peak)
}

/// What a re-analysis and a resume hold per planned call, from the growth of their peak heap
/// between two audit sizes (the fixed costs cancel). Measured (debug) at the commit that added
/// this test: 329 bytes a call for the re-analysis (the plan, ≈ 230 bytes a call: a `CallSpec`
/// and its strings; the perturbed answers, ≈ 85 in this shape; the index, a few) and 93 for the
/// resume (its plan and perturbed answers are built before the count starts). The records read
/// back as before (≈ 360 bytes a call more, raw texts dropped) break either cap.
/// Runs in about 20 s in debug.
#[test]
fn analysis_memory_per_call_excludes_records() {
    const REPORT_CAP: usize = 480;
    const RESUME_CAP: usize = 250;
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let sizes = [33, 132];
    let mut measured = Vec::new();
    for pairs in sizes {
        let dir = tempfile::tempdir().unwrap();
        write_pairs(dir.path(), pairs);
        let out = dir.path().join("out");
        run_audit(dir.path(), &out);
        measured.push(peaks(&out));
    }
    let calls = (sizes[1] - sizes[0]) * 76;
    let per_call = |a: usize, b: usize| b.saturating_sub(a) / calls;
    let report = per_call(measured[0].0, measured[1].0);
    let resume = per_call(measured[0].1, measured[1].1);
    eprintln!("peak heap growth per planned call: report {report} B, resume {resume} B");
    for (step, bytes, cap) in [
        ("report", report, REPORT_CAP),
        ("resume", resume, RESUME_CAP),
    ] {
        assert!(
            bytes < cap,
            "{step}: {bytes} bytes of peak heap per planned call (cap {cap})"
        );
    }
}
