//! Progress on stderr: one indicatif bar per judge when stderr is a terminal, a plain line every
//! few seconds otherwise, nothing with `--quiet`.

use super::ProgressMode;
use crate::judge::{FaultKind, TokenUsage};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Live counters of one judge, updated by its workers.
#[derive(Debug)]
pub struct JudgeCounters {
    name: String,
    total: u64,
    done: AtomicU64,
    failed: AtomicU64,
    in_flight: AtomicU64,
    retries: AtomicU64,
    rate_limited: AtomicU64,
    tokens: AtomicU64,
    micro_usd: AtomicU64,
    /// The backend computes one call at a time (the in-process local model): of the calls
    /// handed to it, one is in flight and the rest are waiting.
    serial: bool,
}

impl JudgeCounters {
    /// Counters for a judge with `total` planned calls, `already` of them finished before.
    pub fn new(name: String, total: u64, already: u64) -> JudgeCounters {
        JudgeCounters {
            name,
            total,
            done: AtomicU64::new(already),
            failed: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            micro_usd: AtomicU64::new(0),
            serial: false,
        }
    }

    /// Mark a judge whose backend computes one call at a time, so the display shows its real
    /// in-flight count (at most 1) and how many calls wait for it.
    pub fn serial(mut self, serial: bool) -> JudgeCounters {
        self.serial = serial;
        self
    }

    /// Calls being computed, and calls handed to the backend that wait for it.
    fn in_flight(&self) -> (u64, u64) {
        let handed = self.in_flight.load(Ordering::Relaxed);
        if self.serial {
            (handed.min(1), handed.saturating_sub(1))
        } else {
            (handed, 0)
        }
    }

    /// A call was sent.
    pub fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A sent call finished (either way).
    pub fn finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// A call completed with a verdict.
    pub fn done(&self, usage: Option<&TokenUsage>, cost_usd: f64) {
        self.done.fetch_add(1, Ordering::Relaxed);
        if let Some(usage) = usage {
            self.tokens
                .fetch_add(usage.input_tokens + usage.output_tokens, Ordering::Relaxed);
        }
        self.micro_usd
            .fetch_add((cost_usd * 1e6).round() as u64, Ordering::Relaxed);
    }

    /// A call failed for good or was not sent.
    pub fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// An attempt will be retried.
    pub fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// An attempt failed with `kind`.
    pub fn fault(&self, kind: FaultKind) {
        if kind == FaultKind::RateLimited {
            self.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn line(&self) -> String {
        let (running, waiting) = self.in_flight();
        let waiting = if self.serial {
            format!(" ({waiting} waiting for the model)")
        } else {
            String::new()
        };
        format!(
            "{running} in flight{waiting}, {} failed, {} retries, {} rate-limited, {} tokens, ${:.4}",
            self.failed.load(Ordering::Relaxed),
            self.retries.load(Ordering::Relaxed),
            self.rate_limited.load(Ordering::Relaxed),
            self.tokens.load(Ordering::Relaxed),
            self.micro_usd.load(Ordering::Relaxed) as f64 / 1e6
        )
    }

    fn position(&self) -> u64 {
        self.done.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }
}

/// A running progress display.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// Start showing progress for `judges`.
    pub fn start(mode: ProgressMode, judges: Vec<Arc<JudgeCounters>>) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        if mode == ProgressMode::Quiet || judges.is_empty() {
            return Progress { stop, thread: None };
        }
        let flag = stop.clone();
        // A plain thread: drawing must not compete with the runtime's workers.
        let thread = std::thread::spawn(move || {
            if std::io::stderr().is_terminal() {
                bars(&judges, &flag);
            } else {
                lines(&judges, &flag);
            }
        });
        Progress {
            stop,
            thread: Some(thread),
        }
    }

    /// Stop and draw the final state.
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn bars(judges: &[Arc<JudgeCounters>], stop: &AtomicBool) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(5));
    let style =
        ProgressStyle::with_template("{prefix:>20} [{bar:30}] {pos}/{len} {msg} (ETA {eta})")
            .expect("valid template")
            .progress_chars("=> ");
    let bars: Vec<ProgressBar> = judges
        .iter()
        .map(|j| {
            let bar = multi.add(ProgressBar::new(j.total));
            bar.set_style(style.clone());
            bar.set_prefix(j.name.clone());
            bar
        })
        .collect();
    loop {
        let last = stop.load(Ordering::SeqCst);
        for (bar, judge) in bars.iter().zip(judges) {
            bar.set_position(judge.position());
            bar.set_message(judge.line());
        }
        if last {
            for bar in &bars {
                bar.finish();
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn lines(judges: &[Arc<JudgeCounters>], stop: &AtomicBool) {
    let started = Instant::now();
    let mut last_print = Instant::now();
    let mut tracker = LineTracker::new(judges.len());
    // The starting point of each rate: calls finished before this process (a resume) or
    // before the first line do not make the run look faster.
    tracker.begin(&judges.iter().map(|j| j.snapshot()).collect::<Vec<_>>());
    loop {
        let last = stop.load(Ordering::SeqCst);
        if last || last_print.elapsed() >= Duration::from_secs(5) {
            let elapsed = started.elapsed().as_secs_f64();
            let snapshots: Vec<Snapshot> = judges.iter().map(|j| j.snapshot()).collect();
            for line in tracker.lines(&snapshots, elapsed) {
                eprintln!("{line}");
            }
            last_print = Instant::now();
        }
        if last {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One judge's counters at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Judge name.
    pub name: String,
    /// Planned calls.
    pub total: u64,
    /// Finished calls (answered or failed).
    pub position: u64,
    /// The counters in words (in flight, failed, retries, tokens, cost).
    pub detail: String,
}

impl JudgeCounters {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            name: self.name.clone(),
            total: self.total,
            position: self.position(),
            detail: self.line(),
        }
    }
}

/// The plain progress lines of a non-terminal: only judges whose counters changed since the
/// last lines are named (a log of a long run is not the same five lines every five seconds),
/// each with its rate and ETA.
#[derive(Debug)]
pub struct LineTracker {
    /// Per judge: the position at its first snapshot (calls done before, e.g. by a resumed
    /// run, do not count towards the rate) and the snapshot last printed.
    first: Vec<Option<u64>>,
    printed: Vec<Option<Snapshot>>,
}

impl LineTracker {
    /// A tracker for `judges` judges.
    pub fn new(judges: usize) -> LineTracker {
        LineTracker {
            first: vec![None; judges],
            printed: vec![None; judges],
        }
    }

    /// Record where each judge starts (without printing).
    pub fn begin(&mut self, snapshots: &[Snapshot]) {
        for (first, s) in self.first.iter_mut().zip(snapshots) {
            *first = Some(s.position);
        }
    }

    /// The lines to print for `snapshots` taken `elapsed` seconds into the run: one per judge
    /// that changed since it was last printed.
    pub fn lines(&mut self, snapshots: &[Snapshot], elapsed: f64) -> Vec<String> {
        let mut out = Vec::new();
        for (i, s) in snapshots.iter().enumerate() {
            let first = *self.first[i].get_or_insert(s.position);
            if self.printed[i].as_ref() == Some(s) {
                continue;
            }
            let done_now = s.position.saturating_sub(first);
            let rate = if elapsed > 0.0 {
                done_now as f64 / elapsed
            } else {
                0.0
            };
            let left = s.total.saturating_sub(s.position);
            let eta = if left == 0 {
                "done".to_string()
            } else if rate > 0.0 {
                format!("ETA {}", duration_words(left as f64 / rate))
            } else {
                "ETA unknown".to_string()
            };
            out.push(format!(
                "[{elapsed:>6.1}s] {}: {}/{} calls, {rate:.1} calls/s, {eta}, {}",
                s.name, s.position, s.total, s.detail
            ));
            self.printed[i] = Some(s.clone());
        }
        out
    }
}

/// Seconds as `42s`, `3m05s` or `2h07m`.
pub fn duration_words(secs: f64) -> String {
    let s = secs.round().max(0.0) as u64;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(name: &str, position: u64, detail: &str) -> Snapshot {
        Snapshot {
            name: name.into(),
            total: 100,
            position,
            detail: detail.into(),
        }
    }

    #[test]
    fn only_judges_that_changed_are_named_with_rate_and_eta() {
        let mut t = LineTracker::new(2);
        // First lines: every judge, nothing done yet, so no rate.
        let first = t.lines(&[snap("a", 0, "x"), snap("b", 0, "x")], 0.0);
        assert_eq!(first.len(), 2);
        assert!(
            first[0].contains("a: 0/100 calls, 0.0 calls/s, ETA unknown"),
            "{first:?}"
        );
        // Five seconds later only `a` moved: 20 calls in 5 s = 4/s, 80 left = 20 s.
        let second = t.lines(&[snap("a", 20, "x"), snap("b", 0, "x")], 5.0);
        assert_eq!(second.len(), 1, "{second:?}");
        assert!(
            second[0].contains("a: 20/100 calls, 4.0 calls/s, ETA 20s"),
            "{second:?}"
        );
        // Nothing changed: no line at all.
        assert!(
            t.lines(&[snap("a", 20, "x"), snap("b", 0, "x")], 10.0)
                .is_empty()
        );
        // A change in the other counters (a retry) is a change too.
        let retry = t.lines(&[snap("a", 20, "x"), snap("b", 0, "y")], 15.0);
        assert_eq!(retry.len(), 1);
        assert!(retry[0].contains("] b: "), "{retry:?}");
        let end = t.lines(&[snap("a", 100, "x"), snap("b", 0, "y")], 25.0);
        assert_eq!(end.len(), 1);
        assert!(
            end[0].contains("a: 100/100 calls, 4.0 calls/s, done"),
            "{end:?}"
        );
    }

    #[test]
    fn the_rate_counts_only_calls_finished_in_this_process() {
        let mut t = LineTracker::new(1);
        // A resumed run starts at 60 of 100: those 60 are not this run's speed.
        t.begin(&[snap("a", 60, "x")]);
        let l = t.lines(&[snap("a", 70, "x")], 10.0);
        assert!(l[0].contains("1.0 calls/s, ETA 30s"), "{l:?}");
    }

    #[test]
    fn a_serial_local_judge_shows_one_call_in_flight_and_the_rest_waiting() {
        let local = JudgeCounters::new("local".into(), 10, 0).serial(true);
        let http = JudgeCounters::new("http".into(), 10, 0);
        for _ in 0..4 {
            local.started();
            http.started();
        }
        assert!(
            local
                .line()
                .starts_with("1 in flight (3 waiting for the model), "),
            "{}",
            local.line()
        );
        assert!(http.line().starts_with("4 in flight, "), "{}", http.line());
        for _ in 0..4 {
            local.finished();
        }
        assert!(
            local.line().starts_with("0 in flight (0 waiting"),
            "{}",
            local.line()
        );
    }

    #[test]
    fn durations_in_words() {
        assert_eq!(duration_words(42.4), "42s");
        assert_eq!(duration_words(185.0), "3m05s");
        assert_eq!(duration_words(7620.0), "2h07m");
    }
}
