//! Flow control per judge: an adaptive concurrency limit (AIMD) and token buckets for
//! requests-per-minute and tokens-per-minute budgets.

use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// A concurrency limit that halves on overload and grows by about one slot per window of
/// successes, always within `[1, max]` (additive increase, multiplicative decrease).
#[derive(Debug)]
pub struct AdaptiveLimiter {
    max: usize,
    state: Mutex<LimiterState>,
    notify: Notify,
}

#[derive(Debug)]
struct LimiterState {
    limit: f64,
    in_flight: usize,
    last_decrease: Option<Instant>,
}

/// A held slot; released on drop.
#[derive(Debug)]
pub struct Slot<'a> {
    limiter: &'a AdaptiveLimiter,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        {
            let mut state = self.limiter.state.lock().expect("limiter state");
            state.in_flight -= 1;
        }
        self.limiter.notify.notify_one();
    }
}

impl AdaptiveLimiter {
    /// A limiter starting at `max` concurrent calls.
    pub fn new(max: usize) -> AdaptiveLimiter {
        let max = max.max(1);
        AdaptiveLimiter {
            max,
            state: Mutex::new(LimiterState {
                limit: max as f64,
                in_flight: 0,
                last_decrease: None,
            }),
            notify: Notify::new(),
        }
    }

    /// Wait for a slot.
    pub async fn acquire(&self) -> Slot<'_> {
        loop {
            // Register interest before checking, so a release between the check and the wait
            // is not missed.
            let notified = self.notify.notified();
            {
                let mut state = self.state.lock().expect("limiter state");
                if state.in_flight < (state.limit.floor() as usize).max(1) {
                    state.in_flight += 1;
                    return Slot { limiter: self };
                }
            }
            notified.await;
        }
    }

    /// A call succeeded: grow by 1/limit (about one slot per full window).
    pub fn on_success(&self) {
        let grew = {
            let mut state = self.state.lock().expect("limiter state");
            let before = state.limit.floor();
            state.limit = (state.limit + 1.0 / state.limit).min(self.max as f64);
            state.limit.floor() > before
        };
        if grew {
            self.notify.notify_one();
        }
    }

    /// The provider signalled overload (429/529): halve, at most once per `cooldown`, so a burst
    /// of rejections from one window counts once.
    pub fn on_overload(&self, cooldown: Duration) {
        let mut state = self.state.lock().expect("limiter state");
        let now = Instant::now();
        if state
            .last_decrease
            .is_none_or(|t| now.duration_since(t) >= cooldown)
        {
            state.limit = (state.limit / 2.0).max(1.0);
            state.last_decrease = Some(now);
        }
    }

    /// The current limit (rounded down).
    pub fn limit(&self) -> usize {
        (self.state.lock().expect("limiter state").limit.floor() as usize).max(1)
    }

    /// Calls in flight.
    pub fn in_flight(&self) -> usize {
        self.state.lock().expect("limiter state").in_flight
    }
}

/// A token bucket refilled continuously at `per_minute / 60` units per second, holding at most
/// `capacity` units. A request larger than the capacity waits for a full bucket and then
/// overdraws, so an oversized request is slowed, never refused.
#[derive(Debug)]
pub struct TokenBucket {
    per_second: f64,
    capacity: f64,
    // tokio's clock, so paused-time tests and the runtime agree.
    state: tokio::sync::Mutex<(f64, tokio::time::Instant)>,
}

impl TokenBucket {
    /// A bucket for a per-minute budget, starting full. The capacity is one second's worth or
    /// one unit, whichever is larger, so bursts stay close to the budget's pace.
    pub fn per_minute(per_minute: f64) -> TokenBucket {
        let per_second = per_minute / 60.0;
        let capacity = per_second.max(1.0);
        TokenBucket {
            per_second,
            capacity,
            state: tokio::sync::Mutex::new((capacity, tokio::time::Instant::now())),
        }
    }

    /// Take `amount` units, waiting as long as needed.
    pub async fn take(&self, amount: f64) {
        // Holding the async mutex while sleeping serialises waiters in arrival order.
        let mut state = self.state.lock().await;
        loop {
            let now = tokio::time::Instant::now();
            let (level, last) = *state;
            let level = (level + now.duration_since(last).as_secs_f64() * self.per_second)
                .min(self.capacity);
            let needed = amount.min(self.capacity);
            if level >= needed {
                *state = (level - amount, now);
                return;
            }
            *state = (level, now);
            let wait = (needed - level) / self.per_second;
            tokio::time::sleep(Duration::from_secs_f64(wait.max(0.001))).await;
        }
    }

    /// Return or charge a correction once the true size of a request is known (e.g. actual
    /// tokens used versus the estimate).
    pub async fn adjust(&self, delta: f64) {
        let mut state = self.state.lock().await;
        state.0 = (state.0 - delta).min(self.capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limiter_halves_on_overload_and_regrows() {
        let limiter = AdaptiveLimiter::new(16);
        assert_eq!(limiter.limit(), 16);
        limiter.on_overload(Duration::ZERO);
        assert_eq!(limiter.limit(), 8);
        limiter.on_overload(Duration::from_secs(3600));
        assert_eq!(
            limiter.limit(),
            8,
            "a second overload inside the cooldown is ignored"
        );
        for _ in 0..4 {
            limiter.on_overload(Duration::ZERO);
        }
        assert_eq!(limiter.limit(), 1, "never below one");
        // From 1, the limit after k successes follows l <- l + 1/l: 1, 2, 2.5, 2.9, 3.24, ...
        for _ in 0..4 {
            limiter.on_success();
        }
        assert_eq!(limiter.limit(), 3);
        for _ in 0..10_000 {
            limiter.on_success();
        }
        assert_eq!(limiter.limit(), 16, "never above the maximum");
    }

    #[tokio::test]
    async fn limiter_bounds_in_flight_calls() {
        let limiter = AdaptiveLimiter::new(2);
        let a = limiter.acquire().await;
        let _b = limiter.acquire().await;
        assert_eq!(limiter.in_flight(), 2);
        let third = tokio::time::timeout(Duration::from_millis(50), limiter.acquire()).await;
        assert!(third.is_err(), "a third slot must wait");
        drop(a);
        let third = tokio::time::timeout(Duration::from_millis(500), limiter.acquire()).await;
        assert!(third.is_ok(), "a released slot is handed on");
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_paces_requests() {
        // 600 per minute = 10 per second, capacity 10: the first 10 are immediate, the next 10
        // take one second of (paused, virtual) time.
        let bucket = TokenBucket::per_minute(600.0);
        let start = tokio::time::Instant::now();
        for _ in 0..20 {
            bucket.take(1.0).await;
        }
        let elapsed = start.elapsed().as_secs_f64();
        assert!((0.9..1.2).contains(&elapsed), "elapsed {elapsed}");
    }
}
