//! Pure statistical functions: intervals, exact tests, bootstrap, multiplicity control, agreement.
//! Nothing here knows about judges or artifacts; `analyze` composes these into audit metrics.

use serde::{Deserialize, Serialize};

/// A two-sided confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

/// Wilson score interval for `successes` out of `n` at `confidence` (e.g. 0.95).
/// For `n == 0` the interval is `[0, 1]`.
pub fn wilson(successes: u64, n: u64, confidence: f64) -> Interval {
    let _ = (successes, n, confidence);
    todo!("stats helper")
}

/// Exact two-sided McNemar p-value on the discordant counts `b` and `c`:
/// `min(1, 2 * BinomCDF(min(b, c); b + c, 1/2))`; 1 when `b + c == 0`.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let _ = (b, c);
    todo!("stats helper")
}

/// Exact two-sided sign test of H0: P(+) = 1/2 on `positive` and `negative` counts (zeros dropped).
pub fn sign_test(positive: u64, negative: u64) -> f64 {
    mcnemar_exact(positive, negative)
}

/// How a bootstrap interval is formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootstrapMethod {
    /// Percentile interval.
    Percentile,
    /// Bias-corrected and accelerated interval.
    Bca,
}

/// Settings of a clustered bootstrap.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BootstrapConfig {
    /// Number of resamples.
    pub resamples: usize,
    /// RNG seed; the same seed gives the same interval.
    pub seed: u64,
    /// Confidence level, e.g. 0.95.
    pub confidence: f64,
    /// Interval method.
    pub method: BootstrapMethod,
}

/// Clustered bootstrap: resample `n_clusters` cluster indices with replacement and evaluate
/// `statistic` on each resample (the slice lists the drawn cluster indices, with repetition).
/// Returns the interval; `n_clusters == 0` gives `None`.
pub fn cluster_bootstrap<F>(
    n_clusters: usize,
    statistic: F,
    config: &BootstrapConfig,
) -> Option<Interval>
where
    F: Fn(&[usize]) -> f64 + Sync,
{
    let _ = (n_clusters, statistic, config);
    todo!("stats helper")
}

/// Holm step-down adjusted p-values, in input order.
pub fn holm(p_values: &[f64]) -> Vec<f64> {
    let _ = p_values;
    todo!("stats helper")
}

/// Benjamini–Hochberg adjusted p-values (q-values), in input order.
pub fn benjamini_hochberg(p_values: &[f64]) -> Vec<f64> {
    let _ = p_values;
    todo!("stats helper")
}
