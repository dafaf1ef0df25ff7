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
        format!(
            "{} in flight, {} failed, {} retries, {} rate-limited, {} tokens, ${:.4}",
            self.in_flight.load(Ordering::Relaxed),
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
    loop {
        let last = stop.load(Ordering::SeqCst);
        if last || last_print.elapsed() >= Duration::from_secs(5) {
            for judge in judges {
                eprintln!(
                    "[{:>6.1}s] {}: {}/{} calls, {}",
                    started.elapsed().as_secs_f64(),
                    judge.name,
                    judge.position(),
                    judge.total,
                    judge.line()
                );
            }
            last_print = Instant::now();
        }
        if last {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
