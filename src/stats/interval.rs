//! Confidence intervals for a binomial proportion x/n (method.md §D3): Wilson score,
//! Clopper–Pearson exact and Jeffreys. All return `[0, 1]` for n = 0 (no information) and
//! `[NaN, NaN]` for impossible input (x > n, or a confidence level outside (0, 1)).

use super::special::{beta_quantile, z_two_sided};
use serde::{Deserialize, Serialize};

/// A two-sided confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

impl Interval {
    /// The interval `[low, high]`.
    pub const fn new(low: f64, high: f64) -> Self {
        Self { low, high }
    }

    /// `[NaN, NaN]`, the result for invalid input.
    pub const NAN: Self = Self::new(f64::NAN, f64::NAN);

    /// `high − low`.
    pub fn width(&self) -> f64 {
        self.high - self.low
    }

    /// Whether `value` lies in the closed interval.
    pub fn contains(&self, value: f64) -> bool {
        self.low <= value && value <= self.high
    }
}

/// Checks shared by the three intervals; `Some(result)` short-circuits.
fn degenerate(successes: u64, n: u64, confidence: f64) -> Option<Interval> {
    if successes > n || !(confidence > 0.0 && confidence < 1.0) {
        return Some(Interval::NAN);
    }
    if n == 0 {
        return Some(Interval::new(0.0, 1.0));
    }
    None
}

/// Wilson score interval for `successes` out of `n` at `confidence` (e.g. 0.95).
/// For `n == 0` the interval is `[0, 1]`.
///
/// `(p̂ + z²/2n ± z·√(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n)` with z = Φ⁻¹(1 − α/2)
/// (Wilson 1927; statsmodels `proportion_confint(method="wilson")`). The bounds are exactly 0
/// at x = 0 and exactly 1 at x = n (they are analytically, this removes rounding residue).
pub fn wilson(successes: u64, n: u64, confidence: f64) -> Interval {
    if let Some(i) = degenerate(successes, n, confidence) {
        return i;
    }
    let z = z_two_sided(confidence);
    let nf = n as f64;
    let p = successes as f64 / nf;
    let z2 = z * z;
    let denom = 1.0 + z2 / nf;
    let center = (p + z2 / (2.0 * nf)) / denom;
    let half = z * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt() / denom;
    let low = if successes == 0 {
        0.0
    } else {
        (center - half).max(0.0)
    };
    let high = if successes == n {
        1.0
    } else {
        (center + half).min(1.0)
    };
    Interval::new(low, high)
}

/// Clopper–Pearson ("exact") interval:
/// `[Beta⁻¹(α/2; x, n−x+1), Beta⁻¹(1−α/2; x+1, n−x)]`, with low = 0 at x = 0 and high = 1 at
/// x = n (Clopper & Pearson 1934; statsmodels `proportion_confint(method="beta")`).
/// For `n == 0` the interval is `[0, 1]`.
pub fn clopper_pearson(successes: u64, n: u64, confidence: f64) -> Interval {
    if let Some(i) = degenerate(successes, n, confidence) {
        return i;
    }
    let alpha = 1.0 - confidence;
    let (x, nf) = (successes as f64, n as f64);
    let low = if successes == 0 {
        0.0
    } else {
        beta_quantile(x, nf - x + 1.0, alpha / 2.0)
    };
    let high = if successes == n {
        1.0
    } else {
        beta_quantile(x + 1.0, nf - x, 1.0 - alpha / 2.0)
    };
    Interval::new(low, high)
}

/// Jeffreys interval: the equal-tailed `α/2`, `1−α/2` quantiles of Beta(x + ½, n − x + ½), with
/// the boundary convention of Brown, Cai & DasGupta (2001, §4.1.2): low = 0 at x = 0 and
/// high = 1 at x = n. (statsmodels `proportion_confint(method="jeffreys")` gives the same interior
/// bounds but does not apply the boundary convention.) For `n == 0` the interval is `[0, 1]`.
pub fn jeffreys(successes: u64, n: u64, confidence: f64) -> Interval {
    if let Some(i) = degenerate(successes, n, confidence) {
        return i;
    }
    let alpha = 1.0 - confidence;
    let a = successes as f64 + 0.5;
    let b = (n - successes) as f64 + 0.5;
    let low = if successes == 0 {
        0.0
    } else {
        beta_quantile(a, b, alpha / 2.0)
    };
    let high = if successes == n {
        1.0
    } else {
        beta_quantile(a, b, 1.0 - alpha / 2.0)
    };
    Interval::new(low, high)
}
