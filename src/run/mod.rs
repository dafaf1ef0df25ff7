//! Executing a plan for real money and real rate limits.
//!
//! Per judge a pool of workers (as many as the judge's concurrency bound) pulls calls from the
//! plan; an adaptive limiter shrinks the pool on 429/overload and grows it on success, optional
//! token buckets keep requests- and tokens-per-minute budgets, retryable faults back off
//! exponentially with full jitter (or as long as the server asks), and a permanent fault stops
//! that judge only. One writer thread commits completed calls to the run's SQLite store in
//! batches (a call counts once committed), then appends them to `calls.jsonl` and fills the
//! shared response cache. Calls already committed are never sent again, so an interrupted run
//! resumes where it stopped, and cached replies cost nothing.
//!
//! The failure paths are built so money is never spent on answers that cannot be kept: the run
//! directory is locked (one process sends its calls), a failed store, log or cache write stops
//! new calls at once, SIGINT/SIGTERM commit what has arrived within a bounded wait before the run
//! stops, and a circuit breaker stops the judges of an endpoint that refuses connection after
//! connection.

pub mod cache;
pub mod columns;
pub mod limiter;
pub mod lock;
pub mod progress;
pub mod rewrites;
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
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering as AtomicOrdering,
};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use store::{FaultRow, RunStore, StoreError};

/// How long a stopping run waits for calls already in flight to answer (so they are committed,
/// not paid for and lost) before it gives up on them.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Consecutive connection failures to one endpoint that open its circuit breaker (at least; a
/// judge with more workers allows two failures per worker, so one reset storm across a wide pool
/// does not stop a live server).
pub const BREAKER_MIN_FAILURES: u32 = 10;

/// The signal that interrupted a run in this process (0: none).
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

/// The signal number (SIGINT 2, SIGTERM 15) that interrupted a run in this process, if any; the
/// command line exits with 128 + that number.
pub fn interrupted_by() -> Option<i32> {
    match INTERRUPTED.load(AtomicOrdering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// Parse and check a `--max-cost` budget: a finite, non-negative number of USD. NaN would turn
/// every comparison false (the budget off) and infinity means no budget, so both are refused.
pub fn parse_max_cost(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of USD"))?;
    check_max_cost(value)?;
    Ok(value)
}

/// Check a cost budget: finite and non-negative.
pub fn check_max_cost(value: f64) -> Result<(), String> {
    if !value.is_finite() || value < 0.0 {
        return Err(format!(
            "--max-cost must be a finite, non-negative number of USD, not {value}"
        ));
    }
    Ok(())
}

/// Parse a concurrency bound (`--concurrency`): a whole number of at least 1.
pub fn parse_concurrency(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("concurrency must be at least 1 (0 would send nothing)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

/// Check the run's concurrency bound (`[run] concurrency`) and every judge's `concurrency`: 0
/// would plan calls no worker ever sends, so it is refused rather than silently raised to 1.
pub fn check_concurrency(run: usize, judges: &[JudgeConfig]) -> Result<(), String> {
    if run == 0 {
        return Err("run.concurrency: must be at least 1".into());
    }
    if let Some(judge) = judges.iter().find(|j| j.concurrency == Some(0)) {
        let origin = judge.source_path.as_ref().map_or_else(
            || format!("judge `{}`", judge.name),
            |p| p.display().to_string(),
        );
        return Err(format!("{origin}: field `concurrency`: must be at least 1"));
    }
    Ok(())
}

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
    /// How the answer arrived when not through the judge's own client: `file:<name>` for an
    /// imported batch output file (absent for ordinary calls, so their records are unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// A pointwise judge's grades, one per criterion (absent for pairwise calls, so their
    /// records are unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grades: Option<Vec<crate::judge::grade::CriterionGrade>>,
}

impl CallRecord {
    /// True when the call produced a verdict (possibly `Invalid`).
    pub fn succeeded(&self) -> bool {
        self.verdict.is_some()
    }

    /// The empty record of `spec`: no answer yet, no attempt made.
    pub(crate) fn new(spec: &CallSpec) -> CallRecord {
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
            via: None,
            grades: None,
        }
    }

    /// The record of `spec` answered by `reply`, arrived `via` a route other than the judge's
    /// client (a batch output file): an ordinary record otherwise (one attempt, not cached).
    pub fn from_reply(spec: &CallSpec, reply: JudgeReply, via: Option<String>) -> CallRecord {
        let mut record = CallRecord::new(spec);
        record.fill(reply);
        record.attempts = 1;
        record.via = via;
        record
    }

    fn fill(&mut self, reply: JudgeReply) {
        self.raw = Some(reply.raw);
        self.verdict = Some(reply.verdict);
        self.usage = reply.usage;
        self.label_probs = reply.label_probs;
        self.redacted = reply.redacted;
        self.grades = reply.grades;
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
    /// Every committed call of the run (this session and earlier ones) in column form, one entry
    /// per plan position: what the analysis reads of them (see [`columns::CallColumns`]).
    pub columns: columns::CallColumns,
    /// Committed calls as records, in plan order, without the judges' raw texts (`raw` is
    /// `None`): empty as a session returns it (the columns say what the analysis needs); filled
    /// by callers whose analysis reads records (`audit` for pointwise judges and sequential
    /// designs), from the store.
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
    /// The perturbed answers with this run's stored rewrites filled in, when the audit has
    /// rewrite artifacts (the analysis uses them instead of the prepared ones).
    pub perturbed: Option<Arc<PerturbedAnswers>>,
    /// What the rewrite prepare step did in this session.
    pub rewrites: rewrites::PrepareStats,
    /// Usage of every stored rewrite of the run (all sessions).
    pub rewrite_usage: Option<rewrites::RewriteUsage>,
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
    /// The response cache could not be opened or read.
    #[error(
        "response cache: {0}\n  run with --no-cache to audit without it, or reset it with `judge-audit cache clear`"
    )]
    Cache(String),
    /// The response cache could not be written.
    #[error("response cache: {0}")]
    CacheWrite(String),
    /// An option is out of range.
    #[error("{0}")]
    Invalid(String),
    /// Another process holds the run directory.
    #[error(transparent)]
    Locked(#[from] lock::LockError),
    /// A store, log or cache write failed; no new call was sent after it.
    #[error(
        "{cause}\n  no new call was sent after this error; {committed} of {planned} calls are committed in {dir}.\n  Fix the cause (a full disk?) and continue with: judge-audit run --resume {dir}{hint}",
        dir = dir.display()
    )]
    WriteFailed {
        /// The failed write.
        cause: Box<RunError>,
        /// Calls committed (this session and earlier ones).
        committed: usize,
        /// Calls in the plan.
        planned: usize,
        /// The run directory.
        dir: PathBuf,
        /// Extra advice (the cache can be left out on resume).
        hint: String,
    },
    /// SIGINT or SIGTERM stopped the run after committing what had arrived.
    #[error(
        "interrupted by {name}: {committed} of {planned} calls are committed in {dir}.\n  Continue with: judge-audit run --resume {dir}",
        name = signal_name(*signal),
        dir = dir.display()
    )]
    Interrupted {
        /// The signal number.
        signal: i32,
        /// Calls committed (this session and earlier ones).
        committed: usize,
        /// Calls in the plan.
        planned: usize,
        /// The run directory.
        dir: PathBuf,
    },
    /// SIGINT or SIGTERM stopped a run whose store was in memory ([`RunTarget::Memory`]):
    /// there is no directory to resume, so its answers are gone with the process.
    #[error(
        "interrupted by {name}: {committed} of {planned} calls were answered, in a run store in memory that is not kept; run again with a run directory (Store::dir) to be able to resume",
        name = signal_name(*signal)
    )]
    InterruptedInMemory {
        /// The signal number.
        signal: i32,
        /// Calls committed.
        committed: usize,
        /// Calls in the plan.
        planned: usize,
    },
    /// The plan refers to a judge that was not provided.
    #[error("the plan names judge `{0}`, which is not configured")]
    UnknownJudge(String),
    /// The plan and the perturbations do not match.
    #[error("call `{0}` cannot be built from the dataset and perturbations")]
    Unbuildable(String),
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// Why a run stops issuing calls before its plan is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HaltCause {
    /// SIGINT or SIGTERM.
    Signal(i32),
    /// The writer could not keep an answer.
    WriteFailed,
}

/// The run-wide stop: once set, no worker starts another call or retry.
#[derive(Default)]
struct Halt {
    flag: AtomicBool,
    cause: Mutex<Option<HaltCause>>,
    notify: tokio::sync::Notify,
}

impl Halt {
    fn set(&self, cause: HaltCause) {
        {
            let mut slot = self.cause.lock().expect("halt cause");
            if slot.is_none() {
                *slot = Some(cause);
            }
        }
        self.flag.store(true, AtomicOrdering::SeqCst);
        // One waiter (the scheduler); a stored permit covers a halt before it waits.
        self.notify.notify_one();
    }

    fn is_set(&self) -> bool {
        self.flag.load(AtomicOrdering::SeqCst)
    }

    fn cause(&self) -> Option<HaltCause> {
        *self.cause.lock().expect("halt cause")
    }
}

/// A circuit breaker for one endpoint: opens after `threshold` connection failures in a row (any
/// answer from the server closes the count), and once open stops every judge on the endpoint.
struct Breaker {
    endpoint: String,
    threshold: u32,
    consecutive: AtomicU32,
    open: AtomicBool,
}

impl Breaker {
    fn new(endpoint: String, threshold: u32) -> Breaker {
        Breaker {
            endpoint,
            threshold,
            consecutive: AtomicU32::new(0),
            open: AtomicBool::new(false),
        }
    }

    /// Count one attempt's outcome; true when the breaker is (now) open.
    fn record(&self, connection_failed: bool) -> bool {
        if connection_failed {
            let n = self.consecutive.fetch_add(1, AtomicOrdering::SeqCst) + 1;
            if n >= self.threshold {
                self.open.store(true, AtomicOrdering::SeqCst);
            }
        } else {
            self.consecutive.store(0, AtomicOrdering::SeqCst);
        }
        self.is_open()
    }

    fn is_open(&self) -> bool {
        self.open.load(AtomicOrdering::SeqCst)
    }

    fn reason(&self) -> String {
        format!(
            "circuit breaker open: {} failed to connect {} times in a row; check that the server is up, then continue with `judge-audit run --resume <run dir>`",
            self.endpoint, self.threshold
        )
    }
}

/// What identifies an endpoint for the breaker: HTTP backends by URL (judges sharing a server
/// share its breaker), every other backend by judge name.
fn endpoint_key(config: &JudgeConfig) -> String {
    use crate::judge::config::Backend;
    match config.backend {
        Backend::Openai | Backend::Anthropic => config
            .resolve_base_url()
            .unwrap_or_else(|_| format!("judge `{}`", config.name)),
        _ => format!("judge `{}`", config.name),
    }
}

/// Per-judge runtime state.
struct JudgeRuntime {
    handle: JudgeHandle,
    breaker: Arc<Breaker>,
    halt: Arc<Halt>,
    limiter: AdaptiveLimiter,
    rpm: Option<TokenBucket>,
    tpm: Option<TokenBucket>,
    stop: StopFlag,
    counters: Arc<JudgeCounters>,
}

/// The whole run's cost budget: actual spend plus reservations for calls in flight.
///
/// A call reserves its worst case (prompt estimate plus `max_tokens`) before it is sent and
/// settles to its actual cost when it ends, so the reserved total never exceeds the budget. A
/// call whose worst case does not fit waits while other reservations are outstanding: they
/// usually settle far below their worst case and free room. The budget is exhausted only when a
/// call does not fit with nothing in flight (then nothing can free room any more).
struct Budget {
    max: Option<f64>,
    state: Mutex<BudgetState>,
    exhausted: AtomicBool,
    /// Woken on every settlement and when the budget becomes exhausted.
    settled: tokio::sync::Notify,
}

/// What the budget holds: spend so far plus outstanding reservations, and how many there are.
struct BudgetState {
    committed: f64,
    in_flight: usize,
}

/// One call's outstanding reservation. Settle it with [`Reservation::settle`]; dropped unsettled
/// (a worker cancelled after the stop grace) it settles at its worst case, which never
/// under-counts spend and never leaves a waiter waiting on a call that is gone.
struct Reservation<'a> {
    budget: &'a Budget,
    estimate: f64,
    open: bool,
}

impl Reservation<'_> {
    /// Replace the worst case by the call's actual cost.
    fn settle(mut self, actual: f64) {
        self.open = false;
        self.budget.release(self.estimate, actual);
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.open {
            self.budget.release(self.estimate, self.estimate);
        }
    }
}

impl Budget {
    fn new(max: Option<f64>, spent_before: f64) -> Budget {
        Budget {
            max,
            state: Mutex::new(BudgetState {
                committed: spent_before,
                in_flight: 0,
            }),
            exhausted: AtomicBool::new(false),
            settled: tokio::sync::Notify::new(),
        }
    }

    /// Reserve `estimate` USD for one call, waiting (without polling) while it does not fit but
    /// calls in flight may still settle below their reservations. `None`: the budget is
    /// exhausted and the call must not be sent.
    async fn reserve(&self, estimate: f64) -> Option<Reservation<'_>> {
        let reservation = |open| Reservation {
            budget: self,
            estimate,
            open,
        };
        let Some(max) = self.max else {
            // No budget: nothing to count (the guard releases nothing either).
            return Some(reservation(false));
        };
        loop {
            // Registered before the check, so a settlement between the check and the wait
            // still wakes this call.
            let notified = self.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                if self.exhausted.load(AtomicOrdering::SeqCst) {
                    return None;
                }
                let mut state = self.state.lock().expect("budget");
                if state.committed + estimate <= max {
                    state.committed += estimate;
                    state.in_flight += 1;
                    return Some(reservation(true));
                }
                if state.in_flight == 0 {
                    self.exhausted.store(true, AtomicOrdering::SeqCst);
                    drop(state);
                    self.settled.notify_waiters();
                    return None;
                }
            }
            notified.await;
        }
    }

    fn release(&self, estimate: f64, actual: f64) {
        if self.max.is_none() {
            return;
        }
        {
            let mut state = self.state.lock().expect("budget");
            state.committed += actual - estimate;
            state.in_flight -= 1;
        }
        self.settled.notify_waiters();
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
///
/// The run directory is locked for the whole execution ([`lock::RunLock`]). A failed store, log
/// or cache write stops new calls at once ([`RunError::WriteFailed`]); SIGINT or SIGTERM commits
/// the answers that arrive within [`STOP_GRACE`] and returns [`RunError::Interrupted`] (a
/// second signal quits at once). Both errors say how to resume.
pub async fn execute(
    plan: Arc<Plan>,
    dataset: Arc<Dataset>,
    perturbed: Arc<PerturbedAnswers>,
    judges: &[JudgeHandle],
    out_dir: &Path,
    options: &RunOptions,
) -> Result<RunOutcome, RunError> {
    execute_subset(plan, dataset, perturbed, judges, out_dir, options, &|_| {
        true
    })
    .await
}

/// [`execute`], sending only the pending calls `keep` accepts (a shard's calls); the others stay
/// pending for another process. The returned records are every committed call, as in [`execute`].
pub async fn execute_subset(
    plan: Arc<Plan>,
    dataset: Arc<Dataset>,
    perturbed: Arc<PerturbedAnswers>,
    judges: &[JudgeHandle],
    out_dir: &Path,
    options: &RunOptions,
    keep: &(dyn Fn(&CallSpec) -> bool + Sync),
) -> Result<RunOutcome, RunError> {
    let mut session = RunSession::open(plan, dataset, perturbed, judges, out_dir, options, keep)?;
    let pending = session.pending().to_vec();
    session.send(&pending).await;
    session.finish()
}

/// Messages to the writer thread.
enum Written {
    Record(Box<CallRecord>, Option<String>),
    Fault(FaultRow),
    /// Commit what is pending now and hand back every answer committed since the last flush.
    Flush(tokio::sync::oneshot::Sender<Vec<CallRecord>>),
}

/// One open run: the lock, the store (owned by the writer thread), the cache lookups, the
/// judges' limiters, breakers and buckets, the budget and the progress display, kept across any
/// number of [`RunSession::send`] rounds. A sequential audit sends one wave per round, so a wave
/// costs only its own calls: nothing is reopened or re-read between waves, and a judge's
/// adaptive limiter and breaker carry their state from wave to wave.
pub struct RunSession {
    plan: Arc<Plan>,
    dataset: Arc<Dataset>,
    perturbed: Arc<PerturbedAnswers>,
    out_dir: PathBuf,
    concurrency: usize,
    seed: u64,
    /// `None` for a store in memory: no other process can see it, so there is nothing to lock.
    _lock: Option<lock::RunLock>,
    /// For a store in memory, the calls committed before the session opened (read then, since
    /// the writer thread owns the only connection); `None` for a directory, read on demand.
    memory_before: Option<Vec<CallRecord>>,
    completed_before: usize,
    pending: Vec<usize>,
    hits: HashMap<usize, JudgeReply>,
    /// True when replies are stored in the response cache (workers compute their keys).
    cache_on: bool,
    halt: Arc<Halt>,
    committed_now: Arc<AtomicUsize>,
    collect: Arc<AtomicBool>,
    sender: Option<mpsc::Sender<Written>>,
    writer: Option<std::thread::JoinHandle<Result<RunStore, RunError>>>,
    signals: Option<tokio::task::JoinHandle<()>>,
    budget: Arc<Budget>,
    runtimes: Vec<Arc<JudgeRuntime>>,
    runtime_of: HashMap<String, usize>,
    progress: Option<Progress>,
    sent: usize,
    cache_hits: usize,
    over_budget: usize,
}

/// Where a [`RunSession`] keeps its calls.
pub enum RunTarget {
    /// A run directory: the store file, `calls.jsonl` and the lock.
    Dir(PathBuf),
    /// A store in memory ([`RunStore::memory`], already holding the run's plan): nothing is
    /// written to disk, and the store is handed back by [`RunSession::finish_with_store`].
    Memory(RunStore),
}

/// What [`RunTarget::Memory`] shows where a run directory would be named (error messages).
pub(crate) const MEMORY_DIR: &str = "(run store in memory)";

/// The calls one round gives one judge's workers.
struct Queue {
    calls: Vec<usize>,
    next: AtomicUsize,
}

impl RunSession {
    /// Open a run on `out_dir` (whose store must hold this plan, as for [`execute`]): checks the
    /// plan, takes the lock, reads the committed calls and the cache once, starts the writer
    /// thread, the signal watcher and the progress display. The calls `keep` accepts that are not
    /// committed yet are [`RunSession::pending`]; nothing is sent until [`RunSession::send`].
    pub fn open(
        plan: Arc<Plan>,
        dataset: Arc<Dataset>,
        perturbed: Arc<PerturbedAnswers>,
        judges: &[JudgeHandle],
        out_dir: &Path,
        options: &RunOptions,
        keep: &(dyn Fn(&CallSpec) -> bool + Sync),
    ) -> Result<RunSession, RunError> {
        let target = RunTarget::Dir(out_dir.to_path_buf());
        RunSession::open_target(plan, dataset, perturbed, judges, target, options, keep)
    }

    /// [`RunSession::open`] on either kind of [`RunTarget`]; a store in memory gets no lock
    /// and no `calls.jsonl`, and everything else (cache, limiters, budget) works as for a
    /// directory.
    pub fn open_target(
        plan: Arc<Plan>,
        dataset: Arc<Dataset>,
        perturbed: Arc<PerturbedAnswers>,
        judges: &[JudgeHandle],
        target: RunTarget,
        options: &RunOptions,
        keep: &(dyn Fn(&CallSpec) -> bool + Sync),
    ) -> Result<RunSession, RunError> {
        if let Some(max) = options.max_cost {
            check_max_cost(max).map_err(RunError::Invalid)?;
        }
        let configs: Vec<JudgeConfig> = judges.iter().map(|h| h.config.clone()).collect();
        check_concurrency(options.concurrency, &configs).map_err(RunError::Invalid)?;
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

        let (lock, store, out_dir) = match target {
            // Taken before the store is read: a second process must not even compute what is
            // pending.
            RunTarget::Dir(dir) => (
                Some(lock::RunLock::acquire(&dir)?),
                RunStore::open(&dir)?,
                Some(dir),
            ),
            RunTarget::Memory(store) => (None, store, None),
        };
        // The store holds this plan (see above), so its uncommitted positions are the pending
        // calls: no set of committed ids is built.
        let pending: Vec<usize> = store
            .pending_positions()?
            .into_iter()
            .filter(|&i| plan.calls.get(i).is_some_and(keep))
            .collect();

        // The cache is read once, up front, so no worker ever touches SQLite.
        let mut cache = match &options.cache_dir {
            Some(dir) => Some(ResponseCache::open(dir).map_err(RunError::Cache)?),
            None => None,
        };
        let mut hits: HashMap<usize, JudgeReply> = HashMap::new();
        if let Some(cache) = &cache {
            // Looked up a chunk at a time and not kept: a worker computes its call's key again
            // (cheap next to the call), so no key per pending call is held for the whole run.
            const CHUNK: usize = 4096;
            for chunk in pending.chunks(CHUNK) {
                let keys: Vec<(usize, String)> = chunk
                    .iter()
                    .filter_map(|&index| {
                        let spec = &plan.calls[index];
                        let request = design::request(spec, &dataset.pairs, &perturbed)
                            .expect("checked above");
                        let key = by_name[spec.judge.as_str()].judge.cache_key(&request)?;
                        Some((index, key))
                    })
                    .collect();
                let key_list: Vec<&str> = keys.iter().map(|(_, k)| k.as_str()).collect();
                let found = cache.lookup(&key_list).map_err(RunError::Cache)?;
                for (index, key) in &keys {
                    if let Some(reply) = found.get(key) {
                        hits.insert(*index, reply.clone());
                    }
                }
            }
        }

        let store_count = store.committed_count()?;
        // Spend already committed in earlier sessions counts against the budget.
        let pricing: HashMap<&str, Pricing> = judges
            .iter()
            .filter_map(|h| h.config.pricing.map(|p| (h.config.name.as_str(), p)))
            .collect();
        // Summed a record at a time: the earlier calls are not held for the session.
        let mut spent_before = 0.0;
        if options.max_cost.is_some() && store_count > 0 {
            store.each_record(|r| {
                if let (Some(usage), Some(p)) = (r.usage.as_ref(), pricing.get(r.judge.as_str())) {
                    spent_before += cost_usd(usage, p);
                }
            })?;
        }
        let memory_before = match out_dir {
            Some(_) => None,
            None => Some(store.records_without_texts()?),
        };
        let calls_path = out_dir.as_ref().map(|d| d.join("calls.jsonl"));
        let jsonl = match &calls_path {
            Some(path) => Some(repair_log(path, &store, store_count > 0)?),
            None => None,
        };
        let halt = Arc::new(Halt::default());
        let committed_now = Arc::new(AtomicUsize::new(0));
        let (sender, receiver) = mpsc::channel::<Written>();
        let writer_cache = cache.take();
        let collect = Arc::new(AtomicBool::new(false));
        let writer = {
            let (halt, committed_now, collect) =
                (halt.clone(), committed_now.clone(), collect.clone());
            std::thread::spawn(move || {
                let result = write_loop(
                    receiver,
                    store,
                    writer_cache,
                    jsonl,
                    calls_path,
                    &committed_now,
                    &collect,
                );
                if result.is_err() {
                    halt.set(HaltCause::WriteFailed);
                }
                result
            })
        };
        let signals = watch_signals(halt.clone());

        let budget = Arc::new(Budget::new(options.max_cost, spent_before));

        // Calls each judge would still send (pending, not answered by the cache): the progress
        // display counts the rest of its share as done.
        let mut to_send: HashMap<&str, usize> = HashMap::new();
        for &index in pending.iter().filter(|i| !hits.contains_key(i)) {
            *to_send.entry(plan.calls[index].judge.as_str()).or_default() += 1;
        }
        let mut runtimes: Vec<Arc<JudgeRuntime>> = Vec::new();
        let mut runtime_of = HashMap::new();
        let mut breakers: HashMap<String, Arc<Breaker>> = HashMap::new();
        for name in &plan.judges {
            let handle = by_name[name.as_str()].clone();
            let max = handle.config.concurrency.unwrap_or(options.concurrency);
            let queued = to_send.get(name.as_str()).copied().unwrap_or(0);
            // Progress counts this process's share of the plan (all of it unless a shard).
            let share = plan
                .calls
                .iter()
                .filter(|c| &c.judge == name && keep(c))
                .count();
            let counters = Arc::new(
                JudgeCounters::new(
                    name.clone(),
                    share as u64,
                    share.saturating_sub(queued) as u64,
                )
                // The in-process model serves one call at a time; the rest only wait for it.
                .serial(handle.config.backend == crate::judge::config::Backend::Local),
            );
            let threshold = BREAKER_MIN_FAILURES.max(u32::try_from(2 * max).unwrap_or(u32::MAX));
            let breaker = breakers
                .entry(endpoint_key(&handle.config))
                .or_insert_with_key(|endpoint| Arc::new(Breaker::new(endpoint.clone(), threshold)))
                .clone();
            runtime_of.insert(name.clone(), runtimes.len());
            runtimes.push(Arc::new(JudgeRuntime {
                limiter: AdaptiveLimiter::new(max),
                rpm: handle.config.rpm.map(TokenBucket::per_minute),
                tpm: handle.config.tpm.map(TokenBucket::per_minute),
                stop: StopFlag::default(),
                counters,
                breaker,
                halt: halt.clone(),
                handle,
            }));
        }
        let progress = Progress::start(
            options.progress,
            runtimes.iter().map(|r| r.counters.clone()).collect(),
        );
        Ok(RunSession {
            plan,
            dataset,
            perturbed,
            out_dir: out_dir.unwrap_or_else(|| PathBuf::from(MEMORY_DIR)),
            concurrency: options.concurrency,
            seed: options.seed,
            _lock: lock,
            memory_before,
            completed_before: store_count,
            pending,
            hits,
            cache_on: options.cache_dir.is_some(),
            halt,
            committed_now,
            collect,
            sender: Some(sender),
            writer: Some(writer),
            signals,
            budget,
            runtimes,
            runtime_of,
            progress: Some(progress),
            sent: 0,
            cache_hits: 0,
            over_budget: 0,
        })
    }

    /// Plan indices of the calls this session may send: not committed when it opened, and
    /// accepted by its `keep` filter, in plan order.
    pub fn pending(&self) -> &[usize] {
        &self.pending
    }

    /// Every call committed so far (before this session's first [`RunSession::send`]: every
    /// call committed before it opened), without raw texts (`raw` is `None`), read from the
    /// store on demand so a session holds no copy of them.
    pub fn committed_before(&self) -> Result<Vec<CallRecord>, RunError> {
        if let Some(before) = &self.memory_before {
            return Ok(before.clone());
        }
        Ok(RunStore::open(&self.out_dir)?.records_without_texts()?)
    }

    /// Send the calls `indices` (plan indices; the caller passes pending calls, each at most
    /// once per session) and wait for every one to end: answered from the cache, answered by its
    /// judge, failed, or left pending by a stopped judge, the budget or a halt. Returns false
    /// when the run is halting (a signal or a failed write): send nothing more, call
    /// [`RunSession::finish`].
    pub async fn send(&mut self, indices: &[usize]) -> bool {
        if self.halt.is_set() {
            return false;
        }
        let Some(sender) = self.sender.clone() else {
            return false;
        };
        let mut queues: Vec<Vec<usize>> = vec![Vec::new(); self.runtimes.len()];
        for &index in indices {
            let spec = &self.plan.calls[index];
            if let Some(reply) = self.hits.remove(&index) {
                let mut record = CallRecord::new(spec);
                record.fill(reply);
                record.cached = true;
                self.cache_hits += 1;
                // The writer only goes away on an I/O error, which joining it reports.
                let _ = sender.send(Written::Record(Box::new(record), None));
            } else {
                queues[self.runtime_of[&spec.judge]].push(index);
            }
        }
        let mut workers = tokio::task::JoinSet::new();
        for (runtime, calls) in self.runtimes.iter().zip(queues) {
            let max = runtime
                .handle
                .config
                .concurrency
                .unwrap_or(self.concurrency);
            let workers_wanted = max.min(calls.len());
            let queue = Arc::new(Queue {
                calls,
                next: AtomicUsize::new(0),
            });
            for _ in 0..workers_wanted {
                let (runtime, queue, plan, dataset, perturbed) = (
                    runtime.clone(),
                    queue.clone(),
                    self.plan.clone(),
                    self.dataset.clone(),
                    self.perturbed.clone(),
                );
                let (sender, budget, cache_on, seed) = (
                    sender.clone(),
                    self.budget.clone(),
                    self.cache_on,
                    self.seed,
                );
                workers.spawn(async move {
                    worker(
                        runtime, queue, plan, dataset, perturbed, sender, budget, cache_on, seed,
                    )
                    .await
                });
            }
        }
        drop(sender);
        let (mut sent, mut over_budget) = (0usize, 0usize);
        let mut tally = |result: Result<(usize, usize), tokio::task::JoinError>| {
            // A worker cancelled after the stop grace sent calls whose answers are lost; they
            // were never committed, so a resume sends them again.
            if let Ok((worker_sent, worker_over)) = result {
                sent += worker_sent;
                over_budget += worker_over;
            } else if let Err(error) = result
                && error.is_panic()
            {
                std::panic::resume_unwind(error.into_panic());
            }
        };
        let halted = loop {
            tokio::select! {
                next = workers.join_next() => match next {
                    Some(result) => tally(result),
                    None => break false,
                },
                () = self.halt.notify.notified() => break true,
            }
        };
        if halted {
            // No new call starts; calls in flight get a bounded wait to answer and be committed.
            let drained = tokio::time::timeout(STOP_GRACE, async {
                let mut results = Vec::new();
                while let Some(result) = workers.join_next().await {
                    results.push(result);
                }
                results
            })
            .await;
            match drained {
                Ok(results) => results.into_iter().for_each(&mut tally),
                Err(_) => {
                    workers.abort_all();
                    while let Some(result) = workers.join_next().await {
                        tally(result);
                    }
                }
            }
        }
        self.sent += sent;
        self.over_budget += over_budget;
        !halted && !self.halt.is_set()
    }

    /// Have the writer keep a copy of every answer it commits from now on, for
    /// [`RunSession::flush`] to hand back. Call before the first [`RunSession::send`].
    pub fn collect_answers(&mut self) {
        self.collect.store(true, AtomicOrdering::SeqCst);
    }

    /// Commit every answer handed to the writer so far and return the answers committed since
    /// the previous flush (since [`RunSession::collect_answers`] at first), exactly as the store
    /// now holds them. `None` when the writer has stopped (a failed write:
    /// [`RunSession::finish`] reports it).
    pub async fn flush(&mut self) -> Option<Vec<CallRecord>> {
        let sender = self.sender.as_ref()?;
        let (ack, answer) = tokio::sync::oneshot::channel();
        sender.send(Written::Flush(ack)).ok()?;
        answer.await.ok()
    }

    /// Calls sent to a backend so far in this session.
    pub fn sent(&self) -> usize {
        self.sent
    }

    /// Calls not sent so far because the cost budget was reached.
    pub fn over_budget(&self) -> usize {
        self.over_budget
    }

    /// True once any judge was stopped by a permanent error or its endpoint's breaker.
    pub fn any_stopped(&self) -> bool {
        self.runtimes.iter().any(|r| r.stop.is_stopped())
    }

    /// End the session: wait for the writer to commit everything, then read back every committed
    /// call in plan order. A halt by a signal is [`RunError::Interrupted`], a failed write
    /// [`RunError::WriteFailed`].
    pub fn finish(self) -> Result<RunOutcome, RunError> {
        self.finish_with_store().map(|(outcome, _)| outcome)
    }

    /// [`RunSession::finish`], also handing back the store the writer committed to (the only
    /// way to read a store in memory after the session).
    pub fn finish_with_store(mut self) -> Result<(RunOutcome, RunStore), RunError> {
        drop(self.sender.take());
        if let Some(signals) = self.signals.take() {
            signals.abort();
        }
        if let Some(progress) = self.progress.take() {
            progress.finish();
        }
        let written = self
            .writer
            .take()
            .expect("the writer runs until finish")
            .join()
            .expect("writer thread");
        let planned = self.plan.calls.len();
        let store = match written {
            Ok(store) => store,
            Err(cause) => {
                let hint = if matches!(cause, RunError::CacheWrite(_)) {
                    " (add --no-cache to resume without the response cache)".to_string()
                } else {
                    String::new()
                };
                return Err(RunError::WriteFailed {
                    cause: Box::new(cause),
                    committed: self.completed_before
                        + self.committed_now.load(AtomicOrdering::SeqCst),
                    planned,
                    dir: self.out_dir.clone(),
                    hint,
                });
            }
        };
        if let Some(HaltCause::Signal(signal)) = self.halt.cause() {
            if self.memory_before.is_some() {
                return Err(RunError::InterruptedInMemory {
                    signal,
                    committed: store.committed_count()?,
                    planned,
                });
            }
            return Err(RunError::Interrupted {
                signal,
                committed: store.committed_count()?,
                planned,
                dir: self.out_dir.clone(),
            });
        }

        // The caller checked that the stored plan is `plan`, so the store's positions are the
        // plan's.
        let columns = store.call_columns(planned)?;
        let stopped = self
            .runtimes
            .iter()
            .filter_map(|r| {
                r.stop
                    .reason()
                    .map(|reason| (r.handle.config.name.clone(), reason))
            })
            .collect();
        let outcome = RunOutcome {
            columns,
            faults: store.fault_counts()?,
            stopped,
            sent: self.sent,
            cache_hits: self.cache_hits,
            over_budget: self.over_budget,
            ..RunOutcome::default()
        };
        Ok((outcome, store))
    }
}

/// Listen for SIGINT and SIGTERM between sessions (while `run --batch` waits for a sequential
/// wave's batches): once a session has installed tokio's handler the default action (exit) is
/// gone, so without this a Ctrl-C while waiting would be ignored. The first signal is recorded
/// (see [`interrupted_by`]) and returned by the flag; a second quits at once. Spawn it on the
/// runtime that runs the sessions.
pub fn watch_interrupts(runtime: &tokio::runtime::Runtime) -> Arc<AtomicI32> {
    use tokio::signal::unix::{SignalKind, signal};
    let flag = Arc::new(AtomicI32::new(0));
    let seen = flag.clone();
    runtime.spawn(async move {
        let (Ok(mut interrupt), Ok(mut terminate)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        loop {
            let number = tokio::select! {
                Some(()) = interrupt.recv() => libc::SIGINT,
                Some(()) = terminate.recv() => libc::SIGTERM,
                else => return,
            };
            if seen.swap(number, AtomicOrdering::SeqCst) != 0 {
                std::process::exit(128 + number);
            }
            INTERRUPTED.store(number, AtomicOrdering::SeqCst);
        }
    });
    flag
}

/// Listen for SIGINT and SIGTERM while calls are sent: the first halts the run (it then commits
/// what arrives and stops), a second quits at once with 128 + the signal number.
fn watch_signals(halt: Arc<Halt>) -> Option<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).ok()?;
    let mut terminate = signal(SignalKind::terminate()).ok()?;
    Some(tokio::spawn(async move {
        let mut received = 0;
        loop {
            let number = tokio::select! {
                Some(()) = interrupt.recv() => libc::SIGINT,
                Some(()) = terminate.recv() => libc::SIGTERM,
                else => return,
            };
            received += 1;
            if received > 1 {
                eprintln!(
                    "judge-audit: {} again: quitting without waiting for calls in flight",
                    signal_name(number)
                );
                std::process::exit(128 + number);
            }
            INTERRUPTED.store(number, AtomicOrdering::SeqCst);
            eprintln!(
                "judge-audit: {} received: no new calls; committing answers in flight (at most {} s; again to quit at once)",
                signal_name(number),
                STOP_GRACE.as_secs()
            );
            halt.set(HaltCause::Signal(number));
        }
    }))
}

/// Open `calls.jsonl` for appending after making it a faithful log of the store: a torn last
/// line (a kill mid-write) is cut off, and committed calls missing from the log (a kill between
/// the commit and the append) are appended, read from the store with their raw texts. Lines are
/// only ever written after their commit, so no committed call can appear twice.
fn repair_log(
    path: &Path,
    store: &RunStore,
    any_committed: bool,
) -> Result<std::fs::File, RunError> {
    let io = |source| RunError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    let length = file.metadata().map_err(io)?.len();
    if !any_committed && length == 0 {
        return Ok(file);
    }
    // Only the id and whether there is a verdict matter; the raw answers are skipped unparsed.
    #[derive(Deserialize)]
    struct Logged {
        call_id: String,
        #[serde(default)]
        verdict: Option<serde::de::IgnoredAny>,
    }
    // Read a line at a time (the log of a long audit is large); `whole` ends the last full line.
    let mut logged: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut whole = 0u64;
    {
        let mut reader = std::io::BufReader::with_capacity(1 << 16, &file);
        let mut line = Vec::new();
        loop {
            line.clear();
            let read = std::io::BufRead::read_until(&mut reader, b'\n', &mut line).map_err(io)?;
            if read == 0 || line.last() != Some(&b'\n') {
                break;
            }
            whole += read as u64;
            if let Ok(entry) = serde_json::from_slice::<Logged>(&line)
                && entry.verdict.is_some()
            {
                logged.insert(entry.call_id);
            }
        }
    }
    if whole < length {
        file.set_len(whole).map_err(io)?;
    }
    let mut out = std::io::BufWriter::new(&file);
    let mut failed = None;
    store.each_record(|record| {
        if failed.is_some() || logged.contains(&record.call_id) {
            return;
        }
        let written = serde_json::to_writer(&mut out, &record)
            .map_err(std::io::Error::other)
            .and_then(|()| out.write_all(b"\n"));
        if let Err(error) = written {
            failed = Some(error);
        }
    })?;
    if let Some(error) = failed {
        return Err(io(error));
    }
    out.flush().map_err(io)?;
    drop(out);
    Ok(file)
}

/// One worker of one judge: pulls pending calls until the queue is empty or the judge stops.
/// Returns (calls sent, calls skipped for the budget).
#[allow(clippy::too_many_arguments)]
async fn worker(
    runtime: Arc<JudgeRuntime>,
    queue: Arc<Queue>,
    plan: Arc<Plan>,
    dataset: Arc<Dataset>,
    perturbed: Arc<PerturbedAnswers>,
    sender: mpsc::Sender<Written>,
    budget: Arc<Budget>,
    cache_on: bool,
    seed: u64,
) -> (usize, usize) {
    let (mut sent, mut over_budget) = (0, 0);
    loop {
        let slot = runtime.limiter.acquire().await;
        // A halted run leaves the rest of the queue pending (not failed), for the resume.
        if runtime.halt.is_set() {
            return (sent, over_budget);
        }
        if runtime.breaker.is_open() {
            runtime.stop.stop(format!(
                "judge `{}` stopped: {}",
                runtime.handle.config.name,
                runtime.breaker.reason()
            ));
        }
        let position = queue.next.fetch_add(1, AtomicOrdering::SeqCst);
        let Some(&index) = queue.calls.get(position) else {
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
        let requests = runtime.handle.judge.requests_per_call().max(1);
        let output_estimate = u64::from(config.max_tokens) * u64::from(requests);
        let cost_estimate = config.pricing.map_or(0.0, |p| {
            cost_usd(
                &TokenUsage {
                    input_tokens: input_estimate,
                    output_tokens: output_estimate,
                },
                &p,
            )
        });
        let Some(reservation) = budget.reserve(cost_estimate).await else {
            record.error = Some("not sent: the --max-cost budget would be exceeded".into());
            over_budget += 1;
            runtime.counters.failed();
            let _ = sender.send(Written::Record(Box::new(record), None));
            continue;
        };
        if let Some(bucket) = &runtime.rpm {
            bucket.take(f64::from(requests)).await;
        }
        let token_estimate = (input_estimate + output_estimate) as f64;
        if let Some(bucket) = &runtime.tpm {
            bucket.take(token_estimate).await;
        }
        if runtime.halt.is_set() {
            reservation.settle(0.0);
            return (sent, over_budget);
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
        reservation.settle(actual_cost);
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
        let key = if record.succeeded() && cache_on {
            runtime.handle.judge.cache_key(&request)
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
        if record.attempts > 0 && runtime.halt.is_set() {
            record.error = Some("not sent again: the run is stopping".into());
            return;
        }
        record.attempts += 1;
        let started = Instant::now();
        match runtime.handle.judge.judge(request).await {
            Ok(reply) => {
                record.latency_ms = started.elapsed().as_millis() as u64;
                record.fill(reply);
                runtime.limiter.on_success();
                runtime.breaker.record(false);
                return;
            }
            Err(error) => {
                let kind = error.kind();
                runtime.counters.fault(kind);
                let breaker_open = runtime.breaker.record(kind == FaultKind::Connection);
                let _ = sender.send(Written::Fault(FaultRow {
                    judge: config.name.clone(),
                    call_id: record.call_id.clone(),
                    kind,
                    message: error.to_string(),
                }));
                record.error = Some(error.to_string());
                record.error_kind = Some(kind);
                if breaker_open {
                    runtime.stop.stop(format!(
                        "judge `{}` stopped: {}",
                        config.name,
                        runtime.breaker.reason()
                    ));
                    return;
                }
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
    /// Flush requests waiting for the next commit.
    flushes: Vec<tokio::sync::oneshot::Sender<Vec<CallRecord>>>,
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
                            grades: record.grades.clone(),
                        },
                    ));
                }
                let json = serde_json::to_string(&*record).expect("call records serialize");
                self.records.push((*record, json));
            }
            Written::Fault(row) => self.faults.push(row),
            Written::Flush(ack) => self.flushes.push(ack),
        }
        self.since.get_or_insert_with(Instant::now);
    }
}

/// The writer thread: batches completed calls and faults into store transactions, then appends
/// them to `calls.jsonl` and fills the cache. Commits at least every 100 ms while calls arrive.
/// The first failed write ends it with that error (the caller halts the run).
fn write_loop(
    receiver: mpsc::Receiver<Written>,
    mut store: RunStore,
    mut cache: Option<ResponseCache>,
    jsonl: Option<std::fs::File>,
    calls_path: Option<PathBuf>,
    committed: &AtomicUsize,
    collect: &AtomicBool,
) -> Result<RunStore, RunError> {
    const MAX_BATCH: usize = 1024;
    const MAX_DELAY: Duration = Duration::from_millis(100);
    // After draining the channel the writer naps this long before looking again. Senders wake a
    // thread only when it is blocked in `recv`, so this turns one wake-up (a futex call on a
    // worker's path) per call into one per nap, at the price of a few milliseconds of latency.
    const GATHER: Duration = Duration::from_millis(5);
    // No log for a store in memory: the store is the only record there.
    let mut out = jsonl.map(|f| std::io::BufWriter::with_capacity(1 << 16, f));
    let mut batch = Batch {
        records: Vec::new(),
        faults: Vec::new(),
        cached: Vec::new(),
        since: None,
        flushes: Vec::new(),
    };
    // Answers committed since the last flush request, handed back to it (kept only for a
    // session that asked for them: a plain run does not, so it holds no copy).
    let mut since_flush: Vec<CallRecord> = Vec::new();
    let mut flush = |batch: &mut Batch| -> Result<(), RunError> {
        let io = |source| RunError::Io {
            path: calls_path.clone().unwrap_or_default(),
            source,
        };
        // The store is the log of record: commit first, then log what was committed, so a
        // kill between the two leaves a line missing (restored on resume), never a duplicate.
        store.commit(&batch.records, &batch.faults)?;
        committed.fetch_add(
            batch.records.iter().filter(|(r, _)| r.succeeded()).count(),
            AtomicOrdering::SeqCst,
        );
        let wants_records = collect.load(AtomicOrdering::SeqCst);
        if let Some(out) = out.as_mut() {
            for (_, json) in &batch.records {
                out.write_all(json.as_bytes()).map_err(io)?;
                out.write_all(b"\n").map_err(io)?;
            }
            out.flush().map_err(io)?;
        }
        if let Some(cache) = cache.as_mut()
            && !batch.cached.is_empty()
        {
            cache.store(&batch.cached).map_err(RunError::CacheWrite)?;
        }
        if wants_records {
            since_flush.extend(
                batch
                    .records
                    .drain(..)
                    .map(|(r, _)| r)
                    .filter(CallRecord::succeeded),
            );
        }
        for ack in batch.flushes.drain(..) {
            // A session that stopped waiting needs nothing back.
            let _ = ack.send(std::mem::take(&mut since_flush));
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
        // A flush request is answered at once, not after the batching delay.
        let due = !batch.flushes.is_empty()
            || batch
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
