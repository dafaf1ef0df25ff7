//! Executing a plan for real money and real rate limits.
//!
//! Per judge a pool of workers (as many as the judge's concurrency bound) pulls calls from the
//! plan; an adaptive limiter shrinks the pool on 429/overload and grows it on success, optional
//! token buckets keep requests- and tokens-per-minute budgets, retryable faults back off
//! exponentially with full jitter (or as long as the server asks), and a permanent fault stops
//! that judge only. One writer thread commits completed calls to the run's SQLite store in
//! batches (a call counts once committed), appends them to `calls.jsonl`, and fills the shared
//! response cache. Calls already committed are never sent again, so an interrupted run resumes
//! where it stopped, and cached replies cost nothing.

pub mod cache;
pub mod limiter;
pub mod progress;
pub mod store;

use crate::dataset::Dataset;
use crate::design::{self, CallSpec, ConditionKind, Order, PerturbedAnswers, Plan, Side};
use crate::judge::config::Pricing;
use crate::judge::{
    FaultKind, Judge, JudgeConfig, JudgeError, JudgeReply, LabelProbs, SlotVerdict, TokenUsage,
};
use cache::ResponseCache;
use limiter::{AdaptiveLimiter, TokenBucket};
use progress::{JudgeCounters, Progress};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use store::{FaultRow, RunStore, StoreError};

/// A judge ready to be called, with the configuration it came from.
#[derive(Clone)]
pub struct JudgeHandle {
    /// The configuration (contains no secret).
    pub config: JudgeConfig,
    /// The backend.
    pub judge: Arc<dyn Judge>,
}

/// One finished call, as stored in `calls.jsonl` and the run store.
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
    /// Wall time of the successful attempt, in milliseconds (0 for cached replies).
    pub latency_ms: u64,
    /// Attempts made (1 = no retry; 0 = not sent).
    pub attempts: u32,
    /// True when the reply came from the response cache.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
    /// True when a configured key was found in the judge's reply and replaced by `<redacted>`
    /// before the reply was stored (see [`JudgeReply::redacted`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
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

    fn new(spec: &CallSpec) -> CallRecord {
        CallRecord {
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
            cached: false,
            redacted: false,
            error: None,
            error_kind: None,
        }
    }

    fn fill(&mut self, reply: JudgeReply) {
        self.raw = Some(reply.raw);
        self.verdict = Some(reply.verdict);
        self.usage = reply.usage;
        self.label_probs = reply.label_probs;
        self.redacted = reply.redacted;
        self.error = None;
        self.error_kind = None;
    }
}

/// The cost of `usage` at `pricing`, in USD.
pub fn cost_usd(usage: &TokenUsage, pricing: &Pricing) -> f64 {
    (usage.input_tokens as f64 * pricing.input_per_mtok
        + usage.output_tokens as f64 * pricing.output_per_mtok)
        / 1e6
}

/// How progress is shown on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Bars when stderr is a terminal, periodic lines otherwise.
    Auto,
    /// Nothing.
    Quiet,
}

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Default per-judge concurrency bound (a judge file's `concurrency` overrides it).
    pub concurrency: usize,
    /// Seed for retry jitter.
    pub seed: u64,
    /// Progress display.
    pub progress: ProgressMode,
    /// Stop issuing calls once this much would be spent (USD, over the whole run).
    pub max_cost: Option<f64>,
    /// The shared response cache directory; `None` disables it.
    pub cache_dir: Option<PathBuf>,
}

/// Faults seen per judge and kind (every failed attempt counts, retried or not).
pub type FaultCounts = BTreeMap<String, BTreeMap<FaultKind, u64>>;

/// The result of executing a plan.
#[derive(Debug, Clone, Default)]
pub struct RunOutcome {
    /// Every committed call of the run (this session and earlier ones), in plan order.
    pub records: Vec<CallRecord>,
    /// Faults per judge and kind, over every session of the run.
    pub faults: FaultCounts,
    /// Judges stopped by a permanent error, with the reason.
    pub stopped: BTreeMap<String, String>,
    /// Calls sent to a backend in this session (cache hits and skipped calls excluded).
    pub sent: usize,
    /// Calls answered from the cache in this session.
    pub cache_hits: usize,
    /// Calls not sent because the cost budget was reached.
    pub over_budget: usize,
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
    /// The run store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The response cache failed.
    #[error("response cache: {0}")]
    Cache(String),
    /// The plan refers to a judge that was not provided.
    #[error("the plan names judge `{0}`, which is not configured")]
    UnknownJudge(String),
    /// The plan and the perturbations do not match.
    #[error("call `{0}` cannot be built from the dataset and perturbations")]
    Unbuildable(String),
}

/// Messages to the writer thread.
enum Written {
    Record(Box<CallRecord>, Option<String>),
    Fault(FaultRow),
}

/// Per-judge runtime state.
struct JudgeRuntime {
    handle: JudgeHandle,
    limiter: AdaptiveLimiter,
    rpm: Option<TokenBucket>,
    tpm: Option<TokenBucket>,
    stop: StopFlag,
    counters: Arc<JudgeCounters>,
    queue: Vec<usize>,
    next: AtomicUsize,
}

/// The whole run's cost budget: actual spend plus reservations for calls in flight.
struct Budget {
    max: Option<f64>,
    committed: Mutex<f64>,
    exhausted: AtomicBool,
}

impl Budget {
    fn reserve(&self, estimate: f64) -> bool {
        let Some(max) = self.max else {
            return true;
        };
        if self.exhausted.load(AtomicOrdering::SeqCst) {
            return false;
        }
        let mut committed = self.committed.lock().expect("budget");
        if *committed + estimate > max {
            self.exhausted.store(true, AtomicOrdering::SeqCst);
            return false;
        }
        *committed += estimate;
        true
    }

    fn settle(&self, estimate: f64, actual: f64) {
        if self.max.is_some() {
            *self.committed.lock().expect("budget") += actual - estimate;
        }
    }
}

#[derive(Default)]
struct StopFlag {
    stopped: AtomicBool,
    reason: Mutex<Option<String>>,
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

/// Execute every call of `plan` that `out_dir`'s run store does not hold yet. The store must
/// exist and hold this very plan (the caller records the run's snapshot and plan first, as
/// `audit::execute` does): the returned records are read back in the stored plan's order.
pub async fn execute(
    plan: Arc<Plan>,
    dataset: Arc<Dataset>,
    perturbed: Arc<PerturbedAnswers>,
    judges: &[JudgeHandle],
    out_dir: &Path,
    options: &RunOptions,
) -> Result<RunOutcome, RunError> {
    let by_name: HashMap<&str, &JudgeHandle> =
        judges.iter().map(|h| (h.config.name.as_str(), h)).collect();
    for name in &plan.judges {
        if !by_name.contains_key(name.as_str()) {
            return Err(RunError::UnknownJudge(name.clone()));
        }
    }
    // Every request must be buildable before the first call, so an inconsistent plan costs nothing.
    if let Some(spec) = plan
        .calls
        .iter()
        .find(|spec| !design::buildable(spec, &dataset.pairs, &perturbed))
    {
        return Err(RunError::Unbuildable(spec.id.clone()));
    }

    let store = RunStore::open(out_dir)?;
    let completed = store.completed_ids()?;
    let earlier = store.records()?;
    let pending: Vec<usize> = (0..plan.calls.len())
        .filter(|&i| !completed.contains(&plan.calls[i].id))
        .collect();

    // The cache is read once, up front, so no worker ever touches SQLite.
    let mut cache = match &options.cache_dir {
        Some(dir) => Some(ResponseCache::open(dir).map_err(RunError::Cache)?),
        None => None,
    };
    let mut keys: HashMap<usize, String> = HashMap::new();
    let mut hits: HashMap<usize, JudgeReply> = HashMap::new();
    if let Some(cache) = &cache {
        for &index in &pending {
            let spec = &plan.calls[index];
            let handle = by_name[spec.judge.as_str()];
            let request = design::request(spec, &dataset.pairs, &perturbed).expect("checked above");
            if let Some(key) = handle.judge.cache_key(&request) {
                keys.insert(index, key);
            }
        }
        let key_list: Vec<&str> = keys.values().map(String::as_str).collect();
        let found = cache.lookup(&key_list).map_err(RunError::Cache)?;
        for (index, key) in &keys {
            if let Some(reply) = found.get(key) {
                hits.insert(*index, reply.clone());
            }
        }
    }

    let calls_path = out_dir.join("calls.jsonl");
    let jsonl = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&calls_path)
        .map_err(|source| RunError::Io {
            path: calls_path.clone(),
            source,
        })?;
    let (sender, receiver) = mpsc::channel::<Written>();
    let writer_cache = cache.take();
    let writer =
        std::thread::spawn(move || write_loop(receiver, store, writer_cache, jsonl, calls_path));

    // Spend already committed in earlier sessions counts against the budget.
    let pricing: HashMap<&str, Pricing> = judges
        .iter()
        .filter_map(|h| h.config.pricing.map(|p| (h.config.name.as_str(), p)))
        .collect();
    let spent_before: f64 = earlier
        .iter()
        .filter_map(|r| Some(cost_usd(r.usage.as_ref()?, pricing.get(r.judge.as_str())?)))
        .sum();
    let budget = Arc::new(Budget {
        max: options.max_cost,
        committed: Mutex::new(spent_before),
        exhausted: AtomicBool::new(false),
    });

    let mut runtimes: Vec<Arc<JudgeRuntime>> = Vec::new();
    let mut queues: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut cache_hits = 0usize;
    for &index in &pending {
        let spec = &plan.calls[index];
        if let Some(reply) = hits.remove(&index) {
            let mut record = CallRecord::new(spec);
            record.fill(reply);
            record.cached = true;
            cache_hits += 1;
            // The writer only goes away on an I/O error, which joining it reports.
            let _ = sender.send(Written::Record(Box::new(record), None));
        } else {
            queues.entry(spec.judge.as_str()).or_default().push(index);
        }
    }
    for name in &plan.judges {
        let handle = by_name[name.as_str()].clone();
        let max = handle
            .config
            .concurrency
            .unwrap_or(options.concurrency)
            .max(1);
        let queue = queues.remove(name.as_str()).unwrap_or_default();
        let counters = Arc::new(JudgeCounters::new(
            name.clone(),
            plan.calls.iter().filter(|c| &c.judge == name).count() as u64,
            (plan.calls.iter().filter(|c| &c.judge == name).count() - queue.len()) as u64,
        ));
        runtimes.push(Arc::new(JudgeRuntime {
            limiter: AdaptiveLimiter::new(max),
            rpm: handle.config.rpm.map(TokenBucket::per_minute),
            tpm: handle.config.tpm.map(TokenBucket::per_minute),
            stop: StopFlag::default(),
            counters,
            queue,
            next: AtomicUsize::new(0),
            handle,
        }));
    }

    let progress = Progress::start(
        options.progress,
        runtimes.iter().map(|r| r.counters.clone()).collect(),
    );
    let keys = Arc::new(keys);
    let mut workers = tokio::task::JoinSet::new();
    for runtime in &runtimes {
        let max = runtime
            .handle
            .config
            .concurrency
            .unwrap_or(options.concurrency)
            .max(1);
        for _ in 0..max.min(runtime.queue.len()) {
            let (runtime, plan, dataset, perturbed) = (
                runtime.clone(),
                plan.clone(),
                dataset.clone(),
                perturbed.clone(),
            );
            let (sender, budget, keys, seed) =
                (sender.clone(), budget.clone(), keys.clone(), options.seed);
            workers.spawn(async move {
                worker(
                    runtime, plan, dataset, perturbed, sender, budget, keys, seed,
                )
                .await
            });
        }
    }
    drop(sender);
    let mut sent = 0usize;
    let mut over_budget = 0usize;
    while let Some(result) = workers.join_next().await {
        let (worker_sent, worker_over) = result.expect("worker task");
        sent += worker_sent;
        over_budget += worker_over;
    }
    progress.finish();
    let store = writer.join().expect("writer thread")?;

    // The caller checked that the stored plan is `plan`, so the store's order is the plan's.
    let records = store.records_in_plan_order()?;
    let stopped = runtimes
        .iter()
        .filter_map(|r| {
            r.stop
                .reason()
                .map(|reason| (r.handle.config.name.clone(), reason))
        })
        .collect();
    Ok(RunOutcome {
        records,
        faults: store.fault_counts()?,
        stopped,
        sent,
        cache_hits,
        over_budget,
    })
}

/// One worker of one judge: pulls pending calls until the queue is empty or the judge stops.
/// Returns (calls sent, calls skipped for the budget).
#[allow(clippy::too_many_arguments)]
async fn worker(
    runtime: Arc<JudgeRuntime>,
    plan: Arc<Plan>,
    dataset: Arc<Dataset>,
    perturbed: Arc<PerturbedAnswers>,
    sender: mpsc::Sender<Written>,
    budget: Arc<Budget>,
    keys: Arc<HashMap<usize, String>>,
    seed: u64,
) -> (usize, usize) {
    let (mut sent, mut over_budget) = (0, 0);
    loop {
        let slot = runtime.limiter.acquire().await;
        let position = runtime.next.fetch_add(1, AtomicOrdering::SeqCst);
        let Some(&index) = runtime.queue.get(position) else {
            return (sent, over_budget);
        };
        let spec = &plan.calls[index];
        let request =
            design::request(spec, &dataset.pairs, &perturbed).expect("checked before the run");
        let mut record = CallRecord::new(spec);
        if runtime.stop.is_stopped() {
            record.error = Some(format!(
                "not sent: judge stopped ({})",
                runtime.stop.reason().unwrap_or_default()
            ));
            runtime.counters.failed();
            let _ = sender.send(Written::Record(Box::new(record), None));
            continue;
        }
        let config = &runtime.handle.config;
        // Rendering a prompt just to estimate it costs CPU; only budgets and prices need it.
        let needs_estimate = config.pricing.is_some() || runtime.tpm.is_some();
        let input_estimate = if needs_estimate {
            runtime.handle.judge.estimate_input_tokens(&request)
        } else {
            0
        };
        let output_estimate = u64::from(config.max_tokens);
        let cost_estimate = config.pricing.map_or(0.0, |p| {
            cost_usd(
                &TokenUsage {
                    input_tokens: input_estimate,
                    output_tokens: output_estimate,
                },
                &p,
            )
        });
        if !budget.reserve(cost_estimate) {
            record.error = Some("not sent: the --max-cost budget would be exceeded".into());
            over_budget += 1;
            runtime.counters.failed();
            let _ = sender.send(Written::Record(Box::new(record), None));
            continue;
        }
        if let Some(bucket) = &runtime.rpm {
            bucket.take(1.0).await;
        }
        let token_estimate = (input_estimate + output_estimate) as f64;
        if let Some(bucket) = &runtime.tpm {
            bucket.take(token_estimate).await;
        }
        sent += 1;
        runtime.counters.started();
        call_with_retries(&runtime, &request, &mut record, &sender, seed).await;
        runtime.counters.finished();
        drop(slot);
        let actual_cost = match (&record.usage, config.pricing) {
            (Some(usage), Some(pricing)) => cost_usd(usage, &pricing),
            _ => cost_estimate,
        };
        budget.settle(cost_estimate, actual_cost);
        if let (Some(bucket), Some(usage)) = (&runtime.tpm, &record.usage) {
            bucket
                .adjust((usage.input_tokens + usage.output_tokens) as f64 - token_estimate)
                .await;
        }
        if record.succeeded() {
            runtime.counters.done(record.usage.as_ref(), actual_cost);
        } else {
            runtime.counters.failed();
        }
        let key = if record.succeeded() {
            keys.get(&index).cloned()
        } else {
            None
        };
        let _ = sender.send(Written::Record(Box::new(record), key));
    }
}

async fn call_with_retries(
    runtime: &JudgeRuntime,
    request: &crate::judge::JudgeRequest,
    record: &mut CallRecord,
    sender: &mpsc::Sender<Written>,
    seed: u64,
) {
    let config = &runtime.handle.config;
    let max_attempts = config.max_retries + 1;
    // Jitter is random but seeded, so a rerun waits the same way.
    let mut jitter = ChaCha8Rng::seed_from_u64(seed ^ fnv(&record.call_id));
    loop {
        if runtime.stop.is_stopped() {
            record.error = Some(format!(
                "not sent again: judge stopped ({})",
                runtime.stop.reason().unwrap_or_default()
            ));
            return;
        }
        record.attempts += 1;
        let started = Instant::now();
        match runtime.handle.judge.judge(request).await {
            Ok(reply) => {
                record.latency_ms = started.elapsed().as_millis() as u64;
                record.fill(reply);
                runtime.limiter.on_success();
                return;
            }
            Err(error) => {
                let kind = error.kind();
                runtime.counters.fault(kind);
                let _ = sender.send(Written::Fault(FaultRow {
                    judge: config.name.clone(),
                    call_id: record.call_id.clone(),
                    kind,
                    message: error.to_string(),
                }));
                record.error = Some(error.to_string());
                record.error_kind = Some(kind);
                match error {
                    JudgeError::Permanent { .. } => {
                        runtime
                            .stop
                            .stop(format!("judge `{}` stopped: {error}", config.name));
                        return;
                    }
                    JudgeError::Retryable { retry_after, .. } => {
                        if kind == FaultKind::RateLimited {
                            runtime.limiter.on_overload(Duration::from_secs(1));
                        }
                        if record.attempts >= max_attempts {
                            return;
                        }
                        runtime.counters.retry();
                        // Full jitter: uniform in [0, min(cap, base * 2^attempt)].
                        let ceiling = (0.25 * 2f64.powi(record.attempts as i32 - 1)).min(30.0);
                        let backoff = Duration::from_secs_f64(jitter.random::<f64>() * ceiling);
                        tokio::time::sleep(retry_after.unwrap_or_default().max(backoff)).await;
                    }
                }
            }
        }
    }
}

/// The writer thread's pending batch.
struct Batch {
    /// Completed calls with their JSON text, serialised once for both the store and the log.
    records: Vec<(CallRecord, String)>,
    faults: Vec<FaultRow>,
    cached: Vec<(String, JudgeReply)>,
    since: Option<Instant>,
}

impl Batch {
    fn len(&self) -> usize {
        self.records.len() + self.faults.len()
    }

    fn take(&mut self, message: Written) {
        match message {
            Written::Record(record, key) => {
                if let (Some(key), Some(verdict)) = (key, record.verdict) {
                    self.cached.push((
                        key,
                        JudgeReply {
                            raw: record.raw.clone().unwrap_or_default(),
                            verdict,
                            usage: record.usage,
                            label_probs: record.label_probs,
                            redacted: record.redacted,
                        },
                    ));
                }
                let json = serde_json::to_string(&*record).expect("call records serialize");
                self.records.push((*record, json));
            }
            Written::Fault(row) => self.faults.push(row),
        }
        self.since.get_or_insert_with(Instant::now);
    }
}

/// The writer thread: batches completed calls and faults into store transactions, appends
/// `calls.jsonl`, fills the cache. Commits at least every 100 ms while calls arrive.
fn write_loop(
    receiver: mpsc::Receiver<Written>,
    mut store: RunStore,
    mut cache: Option<ResponseCache>,
    jsonl: std::fs::File,
    calls_path: PathBuf,
) -> Result<RunStore, RunError> {
    const MAX_BATCH: usize = 1024;
    const MAX_DELAY: Duration = Duration::from_millis(100);
    // After draining the channel the writer naps this long before looking again. Senders wake a
    // thread only when it is blocked in `recv`, so this turns one wake-up (a futex call on a
    // worker's path) per call into one per nap, at the price of a few milliseconds of latency.
    const GATHER: Duration = Duration::from_millis(5);
    let mut out = std::io::BufWriter::with_capacity(1 << 16, jsonl);
    let mut batch = Batch {
        records: Vec::new(),
        faults: Vec::new(),
        cached: Vec::new(),
        since: None,
    };
    let mut flush = |batch: &mut Batch| -> Result<(), RunError> {
        let io = |source| RunError::Io {
            path: calls_path.clone(),
            source,
        };
        for (_, json) in &batch.records {
            out.write_all(json.as_bytes()).map_err(io)?;
            out.write_all(b"\n").map_err(io)?;
        }
        out.flush().map_err(io)?;
        store.commit(&batch.records, &batch.faults)?;
        if let Some(cache) = cache.as_mut()
            && !batch.cached.is_empty()
        {
            cache.store(&batch.cached).map_err(RunError::Cache)?;
        }
        batch.records.clear();
        batch.faults.clear();
        batch.cached.clear();
        batch.since = None;
        Ok(())
    };
    loop {
        let timeout = batch.since.map_or(Duration::from_secs(3600), |t| {
            MAX_DELAY.saturating_sub(t.elapsed())
        });
        let mut disconnected = false;
        match receiver.recv_timeout(timeout) {
            Ok(message) => {
                batch.take(message);
                loop {
                    match receiver.try_recv() {
                        Ok(message) => {
                            batch.take(message);
                            if batch.len() >= MAX_BATCH {
                                flush(&mut batch)?;
                            }
                        }
                        Err(mpsc::TryRecvError::Empty) => break,
                        Err(mpsc::TryRecvError::Disconnected) => {
                            disconnected = true;
                            break;
                        }
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => disconnected = true,
        }
        let due = batch
            .since
            .is_some_and(|t| t.elapsed() >= MAX_DELAY || batch.len() >= MAX_BATCH);
        if disconnected || due {
            flush(&mut batch)?;
        }
        if disconnected {
            break;
        }
        if batch.since.is_some() {
            std::thread::sleep(GATHER);
        }
    }
    // The flush closure borrows the store mutably; it is dead past the loop.
    Ok(store)
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf29ce484222325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x100000001b3)
    })
}

/// Read `calls.jsonl` back. Unparseable lines are an error naming the line, so a damaged file is
/// noticed rather than silently shortened.
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
