//! Executing a plan: concurrent judge calls with bounded retries, every finished call appended to
//! `calls.jsonl` as it completes.

use crate::dataset::Pair;
use crate::design::{self, CallSpec, ConditionKind, Order, PerturbedAnswers, Plan, Side};
use crate::judge::{
    FaultKind, Judge, JudgeConfig, JudgeError, LabelProbs, SlotVerdict, TokenUsage,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};

/// A judge ready to be called, with the configuration it came from.
#[derive(Clone)]
pub struct JudgeHandle {
    /// The configuration (contains no secret).
    pub config: JudgeConfig,
    /// The backend.
    pub judge: Arc<dyn Judge>,
}

/// One finished call, as stored in `calls.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// Call id from the plan.
    pub call_id: String,
    /// Judge name.
    pub judge: String,
    /// Pair id.
    pub pair_id: String,
    /// Condition.
    pub kind: ConditionKind,
    /// Artifact id.
    pub artifact: Option<String>,
    /// Duplicated (tie detection) or perturbed (shift) answer.
    pub side: Option<Side>,
    /// Presentation order.
    pub order: Order,
    /// Repeat index.
    pub repeat: u32,
    /// Raw judge text (absent when the call failed).
    pub raw: Option<String>,
    /// Parsed verdict in slot terms (absent when the call failed).
    pub verdict: Option<SlotVerdict>,
    /// Label probabilities, when the backend provides them.
    pub label_probs: Option<LabelProbs>,
    /// Token usage.
    pub usage: Option<TokenUsage>,
    /// Wall time of the successful attempt, in milliseconds.
    pub latency_ms: u64,
    /// Attempts made (1 = no retry).
    pub attempts: u32,
    /// Final error when the call failed.
    pub error: Option<String>,
    /// Final error kind when the call failed.
    pub error_kind: Option<FaultKind>,
}

impl CallRecord {
    /// True when the call produced a verdict (possibly `Invalid`).
    pub fn succeeded(&self) -> bool {
        self.verdict.is_some()
    }
}

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Default per-judge concurrency bound (a judge file's `concurrency` overrides it).
    pub concurrency: usize,
    /// Seed for retry jitter.
    pub seed: u64,
    /// Where `calls.jsonl` goes.
    pub calls_path: PathBuf,
    /// Suppress progress lines.
    pub quiet: bool,
}

/// Faults seen per judge and kind (every failed attempt counts, retried or not).
pub type FaultCounts = BTreeMap<String, BTreeMap<FaultKind, u64>>;

/// The result of executing a plan.
#[derive(Debug, Clone, Default)]
pub struct RunOutcome {
    /// Every finished call (successful or failed), in plan order.
    pub records: Vec<CallRecord>,
    /// Faults per judge and kind.
    pub faults: FaultCounts,
    /// Judges stopped by a permanent error, with the reason.
    pub stopped: BTreeMap<String, String>,
}

/// Why a run could not proceed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// `calls.jsonl` could not be written.
    #[error("{path}: {source}")]
    Io {
        /// File path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The plan refers to a judge that was not provided.
    #[error("the plan names judge `{0}`, which is not configured")]
    UnknownJudge(String),
    /// The plan and the perturbations do not match.
    #[error("call `{0}` cannot be built from the dataset and perturbations")]
    Unbuildable(String),
}

struct Shared {
    done: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
}

/// Execute every call of `plan`. Calls of a stopped judge (permanent error) are recorded as failed
/// with the stop reason; other judges go on.
pub async fn execute(
    plan: &Plan,
    pairs: &[Pair],
    perturbed: &PerturbedAnswers,
    judges: &[JudgeHandle],
    options: &RunOptions,
) -> Result<RunOutcome, RunError> {
    let mut by_name: BTreeMap<&str, &JudgeHandle> = BTreeMap::new();
    for handle in judges {
        by_name.insert(handle.config.name.as_str(), handle);
    }
    for name in &plan.judges {
        if !by_name.contains_key(name.as_str()) {
            return Err(RunError::UnknownJudge(name.clone()));
        }
    }
    // Build every request before the first call so an inconsistent plan costs nothing.
    let mut requests = Vec::with_capacity(plan.calls.len());
    for spec in &plan.calls {
        let request = design::request(spec, pairs, perturbed)
            .ok_or_else(|| RunError::Unbuildable(spec.id.clone()))?;
        requests.push(request);
    }

    let file = open_append(&options.calls_path)?;
    let (sender, mut receiver) = mpsc::unbounded_channel::<(usize, CallRecord)>();
    let calls_path = options.calls_path.clone();
    // One writer task: lines are appended whole, in completion order, flushed as they arrive.
    let writer =
        tokio::task::spawn_blocking(move || -> Result<Vec<(usize, CallRecord)>, RunError> {
            let mut out = std::io::BufWriter::new(file);
            let mut records = Vec::new();
            while let Some((index, record)) = receiver.blocking_recv() {
                let line = serde_json::to_string(&record).expect("call records serialize");
                let io = |source| RunError::Io {
                    path: calls_path.clone(),
                    source,
                };
                out.write_all(line.as_bytes()).map_err(io)?;
                out.write_all(b"\n").map_err(io)?;
                out.flush().map_err(io)?;
                records.push((index, record));
            }
            Ok(records)
        });

    let shared = Arc::new(Shared {
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        retries: AtomicU64::new(0),
    });
    let total = plan.calls.len() as u64;
    let progress = (!options.quiet).then(|| {
        let shared = shared.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let done = shared.done.load(AtomicOrdering::Relaxed);
                eprintln!(
                    "[{:>5.1}s] {done}/{total} calls, {} failed, {} retries",
                    started.elapsed().as_secs_f64(),
                    shared.failed.load(AtomicOrdering::Relaxed),
                    shared.retries.load(AtomicOrdering::Relaxed)
                );
            }
        })
    });

    let mut semaphores: BTreeMap<&str, Arc<Semaphore>> = BTreeMap::new();
    let mut stop_flags: BTreeMap<&str, Arc<StopFlag>> = BTreeMap::new();
    for handle in judges {
        let bound = handle
            .config
            .concurrency
            .unwrap_or(options.concurrency)
            .max(1);
        semaphores.insert(&handle.config.name, Arc::new(Semaphore::new(bound)));
        stop_flags.insert(&handle.config.name, Arc::new(StopFlag::default()));
    }
    let fault_log: Arc<std::sync::Mutex<FaultCounts>> = Default::default();

    let mut tasks = tokio::task::JoinSet::new();
    for (index, (spec, request)) in plan.calls.iter().zip(requests).enumerate() {
        let handle = by_name[spec.judge.as_str()].clone();
        let semaphore = semaphores[spec.judge.as_str()].clone();
        let stop = stop_flags[spec.judge.as_str()].clone();
        let sender = sender.clone();
        let shared = shared.clone();
        let faults = fault_log.clone();
        let spec = spec.clone();
        let seed = options.seed;
        tasks.spawn(async move {
            let _permit = semaphore.acquire_owned().await.expect("semaphore open");
            let record =
                call_with_retries(&handle, &spec, &request, &stop, seed, &shared, &faults).await;
            if !record.succeeded() {
                shared.failed.fetch_add(1, AtomicOrdering::Relaxed);
            }
            shared.done.fetch_add(1, AtomicOrdering::Relaxed);
            // The writer only goes away on an I/O error, which the join below reports.
            let _ = sender.send((index, record));
        });
    }
    drop(sender);
    while tasks.join_next().await.is_some() {}
    if let Some(progress) = progress {
        progress.abort();
    }
    let mut indexed = writer.await.expect("writer task")?;
    indexed.sort_by_key(|(index, _)| *index);
    let records: Vec<CallRecord> = indexed.into_iter().map(|(_, record)| record).collect();
    let stopped = stop_flags
        .iter()
        .filter_map(|(name, flag)| flag.reason().map(|reason| (name.to_string(), reason)))
        .collect();
    let faults = fault_log.lock().expect("fault log").clone();
    if !options.quiet {
        eprintln!(
            "{} calls finished, {} failed",
            records.len(),
            records.iter().filter(|r| !r.succeeded()).count()
        );
    }
    Ok(RunOutcome {
        records,
        faults,
        stopped,
    })
}

#[derive(Default)]
struct StopFlag {
    stopped: AtomicBool,
    reason: std::sync::Mutex<Option<String>>,
}

impl StopFlag {
    fn stop(&self, reason: String) {
        let mut slot = self.reason.lock().expect("stop reason");
        if slot.is_none() {
            *slot = Some(reason);
        }
        self.stopped.store(true, AtomicOrdering::SeqCst);
    }

    fn reason(&self) -> Option<String> {
        self.reason.lock().expect("stop reason").clone()
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(AtomicOrdering::SeqCst)
    }
}

async fn call_with_retries(
    handle: &JudgeHandle,
    spec: &CallSpec,
    request: &crate::judge::JudgeRequest,
    stop: &StopFlag,
    seed: u64,
    shared: &Shared,
    faults: &std::sync::Mutex<FaultCounts>,
) -> CallRecord {
    let mut record = CallRecord {
        call_id: spec.id.clone(),
        judge: spec.judge.clone(),
        pair_id: spec.pair_id.clone(),
        kind: spec.kind,
        artifact: spec.artifact.clone(),
        side: spec.side,
        order: spec.order,
        repeat: spec.repeat,
        raw: None,
        verdict: None,
        label_probs: None,
        usage: None,
        latency_ms: 0,
        attempts: 0,
        error: None,
        error_kind: None,
    };
    let max_attempts = handle.config.max_retries + 1;
    // Jitter is random but seeded, so a rerun waits the same way.
    let mut jitter = ChaCha8Rng::seed_from_u64(seed ^ fnv(&spec.id));
    loop {
        if stop.is_stopped() {
            record.error = Some(format!(
                "not sent: judge stopped ({})",
                stop.reason().unwrap_or_default()
            ));
            return record;
        }
        record.attempts += 1;
        let started = Instant::now();
        match handle.judge.judge(request).await {
            Ok(reply) => {
                record.latency_ms = started.elapsed().as_millis() as u64;
                record.raw = Some(reply.raw);
                record.verdict = Some(reply.verdict);
                record.usage = reply.usage;
                record.label_probs = reply.label_probs;
                record.error = None;
                record.error_kind = None;
                return record;
            }
            Err(error) => {
                *faults
                    .lock()
                    .expect("fault log")
                    .entry(spec.judge.clone())
                    .or_default()
                    .entry(error.kind())
                    .or_default() += 1;
                record.error = Some(error.to_string());
                record.error_kind = Some(error.kind());
                match error {
                    JudgeError::Permanent { .. } => {
                        stop.stop(format!("{error}"));
                        return record;
                    }
                    JudgeError::Retryable { retry_after, .. } => {
                        if record.attempts >= max_attempts {
                            return record;
                        }
                        shared.retries.fetch_add(1, AtomicOrdering::Relaxed);
                        let ceiling = 0.25 * 2f64.powi(record.attempts as i32 - 1);
                        let backoff =
                            Duration::from_secs_f64(jitter.random::<f64>() * ceiling.min(30.0));
                        tokio::time::sleep(retry_after.unwrap_or_default().max(backoff)).await;
                    }
                }
            }
        }
    }
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf29ce484222325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x100000001b3)
    })
}

fn open_append(path: &Path) -> Result<std::fs::File, RunError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| RunError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// Read `calls.jsonl` back (for re-rendering reports). Unparseable lines are an error naming the
/// line, so a damaged file is noticed rather than silently shortened.
pub fn read_calls(path: &Path) -> Result<Vec<CallRecord>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}
