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
    if n == 0 {
        return Interval {
            low: 0.0,
            high: 1.0,
        };
    }
    use statrs::distribution::{ContinuousCDF, Normal};
    let z = Normal::new(0.0, 1.0)
        .unwrap()
        .inverse_cdf(1.0 - (1.0 - confidence) / 2.0);
    let n = n as f64;
    let p = successes as f64 / n;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    Interval {
        low: (centre - half).max(0.0),
        high: (centre + half).min(1.0),
    }
}

/// Exact two-sided McNemar p-value on the discordant counts `b` and `c`:
/// `min(1, 2 * BinomCDF(min(b, c); b + c, 1/2))`; 1 when `b + c == 0`.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    if b + c == 0 {
        return 1.0;
    }
    use statrs::distribution::{Binomial, DiscreteCDF};
    let k = b.min(c);
    let cdf = Binomial::new(0.5, b + c).unwrap().cdf(k);
    (2.0 * cdf).min(1.0)
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
    use rand::{Rng, SeedableRng};
    if n_clusters == 0 {
        return None;
    }
    let mut values: Vec<f64> = (0..config.resamples)
        .map(|r| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
                config.seed ^ (r as u64).wrapping_mul(0x9E3779B97F4A7C15),
            );
            let idx: Vec<usize> = (0..n_clusters)
                .map(|_| rng.random_range(0..n_clusters))
                .collect();
            statistic(&idx)
        })
        .filter(|v| v.is_finite())
        .collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let alpha = (1.0 - config.confidence) / 2.0;
    let at =
        |q: f64| values[((q * (values.len() - 1) as f64).round() as usize).min(values.len() - 1)];
    Some(Interval {
        low: at(alpha),
        high: at(1.0 - alpha),
    })
}

/// Holm step-down adjusted p-values, in input order.
pub fn holm(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p_values[a].partial_cmp(&p_values[b]).unwrap());
    let mut out = vec![0.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p_values[i]).min(1.0));
        out[i] = running;
    }
    out
}

/// Benjamini–Hochberg adjusted p-values (q-values), in input order.
pub fn benjamini_hochberg(p_values: &[f64]) -> Vec<f64> {
    let _ = p_values;
    todo!("stats helper")
}
