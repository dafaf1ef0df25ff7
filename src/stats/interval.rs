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

/// Two-sided Student t critical value: the t with P(|T| ≤ t) = `confidence` for `df` degrees of
/// freedom (`NaN` for df ≤ 0 or a level outside (0, 1)). From the identity
/// `P(|T| > t) = I_{df/(df+t²)}(df/2, ½)`, so `t² = df·(1 − x)/x` with `x = Beta⁻¹(α; df/2, ½)`
/// (scipy `stats.t.ppf(1 − α/2, df)`).
pub fn t_two_sided(df: f64, confidence: f64) -> f64 {
    if !(df > 0.0 && confidence > 0.0 && confidence < 1.0) {
        return f64::NAN;
    }
    let x = beta_quantile(df / 2.0, 0.5, 1.0 - confidence);
    (df * (1.0 - x) / x).sqrt()
}

/// Clopper–Pearson bounds for a fractional count: `x` "successes" out of `n` effective trials
/// (both real, 0 ≤ x ≤ n, n > 0), `[Beta⁻¹(α/2; x, n−x+1), Beta⁻¹(1−α/2; x+1, n−x)]` with
/// low = 0 at x = 0 and high = 1 at x = n (scipy `stats.beta.ppf` on the same shapes).
/// `[NaN, NaN]` for invalid input.
pub fn clopper_pearson_fractional(x: f64, n: f64, confidence: f64) -> Interval {
    if !(n > 0.0 && (0.0..=n).contains(&x) && confidence > 0.0 && confidence < 1.0) {
        return Interval::NAN;
    }
    let alpha = 1.0 - confidence;
    let low = if x <= 0.0 {
        0.0
    } else {
        beta_quantile(x, n - x + 1.0, alpha / 2.0)
    };
    let high = if x >= n {
        1.0
    } else {
        beta_quantile(x + 1.0, n - x, 1.0 - alpha / 2.0)
    };
    Interval::new(low, high)
}

/// An effective-sample-size Clopper–Pearson interval and the effective size behind it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EffectiveInterval {
    /// The interval on the `[0, 1]` scale.
    pub interval: Interval,
    /// The effective number of independent trials n* it treats the data as.
    pub n_eff: f64,
}

/// Korn & Graubard (1998) interval for a proportion-like mean `p` ∈ [0, 1] estimated from
/// `clusters` independent clusters (pairs) with (cluster-robust) variance estimate `variance`:
/// Clopper–Pearson on `p·n*` of `n*` trials with the effective sample size
/// `n* = p(1−p)/variance · (z/t_{clusters−1})²`, capped at `max_n` (the observations behind
/// `p`). When the data carry no information on the variance — `p` at 0 or 1, a zero variance
/// (every cluster has the same value) or a single cluster — n* is the number of clusters: each
/// cluster counts as one trial, which is what makes 10 of 10 pairs at the bound give
/// `[0.025^{1/10}, 1] ≈ [0.6915, 1]` instead of a point. `None` without clusters or for a
/// non-finite `p`.
pub fn effective_clopper_pearson(
    p: f64,
    variance: f64,
    clusters: u64,
    max_n: f64,
    confidence: f64,
) -> Option<EffectiveInterval> {
    if clusters == 0 || !p.is_finite() || !(confidence > 0.0 && confidence < 1.0) {
        return None;
    }
    let p = p.clamp(0.0, 1.0);
    let k = clusters as f64;
    let informative = clusters >= 2 && variance.is_finite() && variance > 0.0 && p > 0.0 && p < 1.0;
    let n_eff = if informative {
        let df_ratio = z_two_sided(confidence) / t_two_sided(k - 1.0, confidence);
        let n = p * (1.0 - p) / variance * df_ratio * df_ratio;
        n.min(max_n.max(k)).max(1.0)
    } else {
        k
    };
    Some(EffectiveInterval {
        interval: clopper_pearson_fractional(p * n_eff, n_eff, confidence),
        n_eff,
    })
}

/// Newcombe's hybrid score (MOVER, Zou & Donner 2008) interval for a difference `d = p₁ − p₂`
/// from intervals `(l₁, u₁)` around `p₁` and `(l₂, u₂)` around `p₂`, ignoring their correlation
/// (conservative when the two estimates are positively correlated, as rates measured on the
/// same pairs are): `[d − √((p₁−l₁)² + (u₂−p₂)²), d + √((u₁−p₁)² + (p₂−l₂)²)]`.
pub fn mover_difference(p1: f64, i1: Interval, p2: f64, i2: Interval) -> Interval {
    let d = p1 - p2;
    Interval::new(
        d - ((p1 - i1.low).powi(2) + (i2.high - p2).powi(2)).sqrt(),
        d + ((i1.high - p1).powi(2) + (p2 - i2.low).powi(2)).sqrt(),
    )
}
