//! Clustered (block) bootstrap with percentile and BCa intervals (method.md §D2, §D4; Miller 2024
//! "Adding Error Bars to Evals": resample whole prompt clusters, not items).
//!
//! Reproducibility: resample r draws its cluster indices from `ChaCha8Rng::seed_from_u64(seed)`
//! switched to stream r, so every replicate depends only on `(seed, r)`. Replicates are computed
//! in parallel with rayon and collected in index order, which makes the result bit-identical for
//! a given seed whatever the number of threads.
//!
//! Two paths:
//! - [`cluster_bootstrap`] / [`cluster_bootstrap_result`]: any statistic of the drawn cluster
//!   indices, O(n_clusters · cost of the statistic) per resample; BCa adds n_clusters
//!   leave-one-cluster-out evaluations.
//! - [`cluster_bootstrap_ratio`] / [`cluster_bootstrap_ratio_diff`] on [`ClusterSums`]: ratio-of-sums
//!   means (rates, mean preferences) precomputed per cluster, so a resample costs O(n_clusters)
//!   whatever the number of underlying observations, and the jackknife is O(n_clusters) in total.
//!
//! Every entry point draws resample r's clusters the same way, so for one seed and one number of
//! clusters the generic and the ratio paths see identical resamples, and statistics bootstrapped
//! separately stay jointly consistent.
//!
//! Replicates that are not finite (e.g. a ratio whose resampled denominator is 0) are dropped;
//! [`BootstrapResult::resamples`] reports how many were used.

use std::collections::HashMap;
use std::hash::Hash;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::StatsError;
use super::interval::Interval;
use super::special::{normal_cdf, normal_quantile};

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

impl Default for BootstrapConfig {
    /// 2,000 BCa resamples at 95 % with seed 0.
    fn default() -> Self {
        Self {
            resamples: 2000,
            seed: 0,
            confidence: 0.95,
            method: BootstrapMethod::Bca,
        }
    }
}

/// Outcome of a bootstrap: point estimate on the original sample plus the interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BootstrapResult {
    /// Statistic on the original (unresampled) data.
    pub estimate: f64,
    /// Confidence interval.
    pub interval: Interval,
    /// Standard deviation of the finite replicates (n − 1 denominator); 0 for one cluster.
    pub std_error: f64,
    /// Number of finite replicates the interval is based on.
    pub resamples: usize,
    /// Method that formed the interval.
    pub method: BootstrapMethod,
}

/// RNG of resample `index`: independent ChaCha streams under one seed.
fn resample_rng(seed: u64, index: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index as u64);
    rng
}

/// Exactly uniform sampler of cluster indices in [0, k): Lemire's multiply-and-reject
/// ("Fast random integer generation in an interval", 2019) on 32-bit words when k fits, which is
/// the hot loop of every resample.
#[derive(Debug, Clone, Copy)]
struct IndexSampler {
    k: u64,
    /// Low products below this value are rejected: (2^w − k) mod k.
    threshold: u64,
}

impl IndexSampler {
    fn new(k: usize) -> Option<Self> {
        let k = k as u64;
        if k == 0 {
            return None;
        }
        let threshold = if k <= u64::from(u32::MAX) {
            u64::from((k as u32).wrapping_neg() % k as u32)
        } else {
            k.wrapping_neg() % k
        };
        Some(Self { k, threshold })
    }

    #[inline]
    fn draw(&self, rng: &mut ChaCha8Rng) -> usize {
        if self.k <= u64::from(u32::MAX) {
            loop {
                let m = u64::from(rng.next_u32()) * self.k;
                if (m & 0xffff_ffff) >= self.threshold {
                    return (m >> 32) as usize;
                }
            }
        } else {
            loop {
                let m = u128::from(rng.next_u64()) * u128::from(self.k);
                if (m as u64) >= self.threshold {
                    return (m >> 64) as usize;
                }
            }
        }
    }
}

/// Linear-interpolation quantile (numpy / `scipy.stats.quantile` default, Hyndman–Fan type 7)
/// of an ascending `sorted` slice at level `q` in [0, 1]; `NaN` for an empty slice.
pub fn quantile_linear(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    let q = q.clamp(0.0, 1.0);
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let frac = h - lo as f64;
    sorted[lo] + frac * (sorted[hi] - sorted[lo])
}

fn sorted_finite(values: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Percentile interval: the α/2 and 1 − α/2 linear quantiles of the finite `replicates`
/// (Efron & Tibshirani 1993, §13.3; `scipy.stats.bootstrap(method="percentile")`).
/// `[NaN, NaN]` if there is no finite replicate or the confidence is outside (0, 1).
pub fn percentile_interval(replicates: &[f64], confidence: f64) -> Interval {
    if !(confidence > 0.0 && confidence < 1.0) {
        return Interval::NAN;
    }
    let sorted = sorted_finite(replicates);
    let alpha = (1.0 - confidence) / 2.0;
    Interval::new(
        quantile_linear(&sorted, alpha),
        quantile_linear(&sorted, 1.0 - alpha),
    )
}

/// BCa interval (Efron & Tibshirani 1993, §14.3 and eq. 14.15; the formulas of
/// `scipy.stats.bootstrap(method="BCa")`):
/// - bias correction `z0 = Φ⁻¹(( #{θ*<θ̂} + #{θ*≤θ̂} ) / 2B)` (mid-rank for ties, as scipy);
/// - acceleration `a = Σ(θ̄ − θ₍ᵢ₎)³ / (6 [Σ(θ̄ − θ₍ᵢ₎)²]^{3/2})` from the jackknife values θ₍ᵢ₎;
/// - levels `α₁,₂ = Φ(z0 + (z0 + z_{α/2, 1−α/2}) / (1 − a(z0 + z)))`, read off the replicates
///   with [`quantile_linear`].
///
/// Degenerate cases, where scipy returns NaN, are defined instead: a zero jackknife spread gives
/// a = 0; a proportion of 0 or 1 (estimate outside all replicates) is clamped to 1/(2B) or
/// 1 − 1/(2B); a level whose denominator `1 − a·(z0 + z)` is not positive is pushed to 0 or 1.
/// Non-finite replicates and jackknife values are ignored.
pub fn bca_interval(
    estimate: f64,
    replicates: &[f64],
    jackknife: &[f64],
    confidence: f64,
) -> Interval {
    if !(confidence > 0.0 && confidence < 1.0 && estimate.is_finite()) {
        return Interval::NAN;
    }
    let sorted = sorted_finite(replicates);
    if sorted.is_empty() {
        return Interval::NAN;
    }
    let b = sorted.len() as f64;
    let below = sorted.partition_point(|&x| x < estimate) as f64;
    let at_or_below = sorted.partition_point(|&x| x <= estimate) as f64;
    let prop = ((below + at_or_below) / (2.0 * b)).clamp(0.5 / b, 1.0 - 0.5 / b);
    let z0 = normal_quantile(prop);

    let jack: Vec<f64> = jackknife
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    let a = if jack.is_empty() {
        0.0
    } else {
        let mean = jack.iter().sum::<f64>() / jack.len() as f64;
        let (mut s2, mut s3) = (0.0, 0.0);
        for &t in &jack {
            let d = mean - t;
            s2 += d * d;
            s3 += d * d * d;
        }
        if s2 > 0.0 {
            s3 / (6.0 * s2.powf(1.5))
        } else {
            0.0
        }
    };

    let alpha = (1.0 - confidence) / 2.0;
    let level = |z: f64| {
        let num = z0 + z;
        let den = 1.0 - a * num;
        if den <= 0.0 {
            if num > 0.0 { 1.0 } else { 0.0 }
        } else {
            normal_cdf(z0 + num / den)
        }
    };
    let z_lo = normal_quantile(alpha);
    Interval::new(
        quantile_linear(&sorted, level(z_lo)),
        quantile_linear(&sorted, level(-z_lo)),
    )
}

/// Bootstrap replicates of `statistic` over `resamples` cluster resamples (each slice lists
/// `n_clusters` drawn cluster indices, with repetition). Deterministic for a given `seed`
/// regardless of the rayon thread count. Empty when `n_clusters == 0`.
pub fn bootstrap_replicates<F>(
    n_clusters: usize,
    statistic: F,
    resamples: usize,
    seed: u64,
) -> Vec<f64>
where
    F: Fn(&[usize]) -> f64 + Sync,
{
    let Some(sampler) = IndexSampler::new(n_clusters) else {
        return Vec::new();
    };
    (0..resamples)
        .into_par_iter()
        .map_init(
            || Vec::with_capacity(n_clusters),
            |buf: &mut Vec<usize>, r| {
                buf.clear();
                let mut rng = resample_rng(seed, r);
                buf.extend((0..n_clusters).map(|_| sampler.draw(&mut rng)));
                statistic(buf)
            },
        )
        .collect()
}

/// Sample standard deviation (n − 1) of the finite values; 0 for fewer than two.
fn std_dev(values: &[f64]) -> (f64, usize) {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.len() < 2 {
        return (0.0, v.len());
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let ss = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>();
    ((ss / (v.len() - 1) as f64).sqrt(), v.len())
}

/// Assembles a result from replicates; `jackknife` is only evaluated for BCa.
fn finish(
    estimate: f64,
    replicates: &[f64],
    jackknife: impl FnOnce() -> Vec<f64>,
    config: &BootstrapConfig,
) -> Option<BootstrapResult> {
    let (std_error, used) = std_dev(replicates);
    if used == 0 {
        return None;
    }
    let interval = match config.method {
        BootstrapMethod::Percentile => percentile_interval(replicates, config.confidence),
        BootstrapMethod::Bca => bca_interval(estimate, replicates, &jackknife(), config.confidence),
    };
    Some(BootstrapResult {
        estimate,
        interval,
        std_error,
        resamples: used,
        method: config.method,
    })
}

/// Validity checks shared by every entry point; `Err(None)` = no result, `Err(Some)` = the
/// degenerate single-cluster result.
fn precheck(
    n_clusters: usize,
    estimate: impl FnOnce() -> f64,
    config: &BootstrapConfig,
) -> Result<f64, Option<BootstrapResult>> {
    if n_clusters == 0
        || config.resamples == 0
        || !(config.confidence > 0.0 && config.confidence < 1.0)
    {
        return Err(None);
    }
    let estimate = estimate();
    if !estimate.is_finite() {
        return Err(None);
    }
    if n_clusters == 1 {
        // Every resample redraws the only cluster: no sampling variability is observable.
        return Err(Some(BootstrapResult {
            estimate,
            interval: Interval::new(estimate, estimate),
            std_error: 0.0,
            resamples: config.resamples,
            method: config.method,
        }));
    }
    Ok(estimate)
}

/// Clustered bootstrap: resample `n_clusters` cluster indices with replacement and evaluate
/// `statistic` on each resample (the slice lists the drawn cluster indices, with repetition).
/// Returns the interval; `n_clusters == 0` gives `None`.
///
/// See [`cluster_bootstrap_result`] for the full result and the degenerate cases.
pub fn cluster_bootstrap<F>(
    n_clusters: usize,
    statistic: F,
    config: &BootstrapConfig,
) -> Option<Interval>
where
    F: Fn(&[usize]) -> f64 + Sync,
{
    cluster_bootstrap_result(n_clusters, statistic, config).map(|r| r.interval)
}

/// Clustered bootstrap returning estimate, interval, standard error and the number of finite
/// replicates. The estimate is `statistic(&[0, 1, …, n_clusters − 1])`. BCa uses the
/// leave-one-cluster-out jackknife (n_clusters extra evaluations, run in parallel).
///
/// `None` when `n_clusters == 0`, `resamples == 0`, the confidence is outside (0, 1), the
/// estimate is not finite or no replicate is finite. A single cluster gives the degenerate
/// interval `[estimate, estimate]` with standard error 0.
pub fn cluster_bootstrap_result<F>(
    n_clusters: usize,
    statistic: F,
    config: &BootstrapConfig,
) -> Option<BootstrapResult>
where
    F: Fn(&[usize]) -> f64 + Sync,
{
    let estimate = match precheck(
        n_clusters,
        || statistic(&(0..n_clusters).collect::<Vec<_>>()),
        config,
    ) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let replicates = bootstrap_replicates(n_clusters, &statistic, config.resamples, config.seed);
    let jackknife = || {
        (0..n_clusters)
            .into_par_iter()
            .map_init(
                || Vec::with_capacity(n_clusters),
                |buf: &mut Vec<usize>, left_out| {
                    buf.clear();
                    buf.extend((0..n_clusters).filter(|&i| i != left_out));
                    statistic(buf)
                },
            )
            .collect()
    };
    finish(estimate, &replicates, jackknife, config)
}

/// Per-cluster sums and counts (weights) of an observation-level quantity, the sufficient
/// statistics of any ratio-of-sums mean such as a flip rate or a mean signed preference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ClusterSums {
    /// Σ value per cluster.
    pub sums: Vec<f64>,
    /// Number (or total weight) of observations per cluster.
    pub counts: Vec<f64>,
}

impl ClusterSums {
    /// Wraps precomputed per-cluster sums and counts. Errors on a length mismatch or a count
    /// that is negative or not finite, or a sum that is not finite.
    pub fn new(sums: Vec<f64>, counts: Vec<f64>) -> Result<Self, StatsError> {
        if sums.len() != counts.len() {
            return Err(StatsError::LengthMismatch {
                what: "sums vs counts",
                left: sums.len(),
                right: counts.len(),
            });
        }
        if let Some(i) = counts.iter().position(|c| !(c.is_finite() && *c >= 0.0)) {
            return Err(StatsError::InvalidValue {
                index: i,
                detail: format!("count {} is not a finite non-negative number", counts[i]),
            });
        }
        if let Some(i) = sums.iter().position(|s| !s.is_finite()) {
            return Err(StatsError::InvalidValue {
                index: i,
                detail: format!("sum {} is not finite", sums[i]),
            });
        }
        Ok(Self { sums, counts })
    }

    /// Groups observation `values[i]` by `cluster_ids[i]`. Non-finite values (use `NaN` for an
    /// invalid or missing observation) are skipped. Clusters are numbered in order of first
    /// appearance; clusters left with no valid observation are dropped, since they are not part
    /// of the sample.
    pub fn from_values<K: Hash + Eq + Copy>(
        cluster_ids: &[K],
        values: &[f64],
    ) -> Result<Self, StatsError> {
        let (a, _) = Self::paired(cluster_ids, values, values)?;
        Ok(a)
    }

    /// Two aligned sets of sums for a paired comparison on the same clusters (e.g. the flip rate
    /// under an artifact and under a plain re-run of the same items). Non-finite values are
    /// skipped per side; a cluster is kept when either side has a valid observation, so the two
    /// results index the same clusters.
    pub fn paired<K: Hash + Eq + Copy>(
        cluster_ids: &[K],
        values_a: &[f64],
        values_b: &[f64],
    ) -> Result<(Self, Self), StatsError> {
        if cluster_ids.len() != values_a.len() {
            return Err(StatsError::LengthMismatch {
                what: "cluster ids vs values",
                left: cluster_ids.len(),
                right: values_a.len(),
            });
        }
        if cluster_ids.len() != values_b.len() {
            return Err(StatsError::LengthMismatch {
                what: "cluster ids vs second values",
                left: cluster_ids.len(),
                right: values_b.len(),
            });
        }
        let mut index: HashMap<K, usize> = HashMap::new();
        let (mut a, mut b) = (Self::default(), Self::default());
        for ((id, &va), &vb) in cluster_ids.iter().zip(values_a).zip(values_b) {
            let next = index.len();
            let i = *index.entry(*id).or_insert(next);
            if i == a.sums.len() {
                a.sums.push(0.0);
                a.counts.push(0.0);
                b.sums.push(0.0);
                b.counts.push(0.0);
            }
            if va.is_finite() {
                a.sums[i] += va;
                a.counts[i] += 1.0;
            }
            if vb.is_finite() {
                b.sums[i] += vb;
                b.counts[i] += 1.0;
            }
        }
        let keep: Vec<bool> = a
            .counts
            .iter()
            .zip(&b.counts)
            .map(|(x, y)| *x > 0.0 || *y > 0.0)
            .collect();
        let filter = |v: Vec<f64>| {
            v.into_iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(x, _)| x)
                .collect()
        };
        Ok((
            Self {
                sums: filter(a.sums),
                counts: filter(a.counts),
            },
            Self {
                sums: filter(b.sums),
                counts: filter(b.counts),
            },
        ))
    }

    /// Number of clusters.
    pub fn n_clusters(&self) -> usize {
        self.sums.len()
    }

    /// Σ sums / Σ counts over all clusters (`NaN` when the total count is 0).
    pub fn ratio(&self) -> f64 {
        let c: f64 = self.counts.iter().sum();
        if c > 0.0 {
            self.sums.iter().sum::<f64>() / c
        } else {
            f64::NAN
        }
    }

    /// [`cluster_bootstrap_ratio`] on these sums.
    pub fn bootstrap(&self, config: &BootstrapConfig) -> Option<BootstrapResult> {
        cluster_bootstrap_ratio(&self.sums, &self.counts, config)
    }

    /// Effective degrees of freedom of the cluster variance of [`Self::ratio`]: how many
    /// independent clusters its spread is really estimated from.
    ///
    /// With residuals `eᵢ = sumsᵢ − r̂·countsᵢ` over k clusters, the variance is estimated from
    /// Σ eᵢ²; matching it to a scaled χ²_ν by its first two moments (Satterthwaite) gives
    /// `ν = 2 / Var(s²)/σ⁴ ≈ 2k / (κ − 1)` with κ the kurtosis of the residuals, estimated as
    /// `κ̂ = k·Σeᵢ⁴ / (Σeᵢ²)²`. Normal residuals give κ ≈ 3 and ν ≈ k; a mean carried by a few
    /// clusters (most residuals near 0, a few large: integer grades that rarely move) has a large
    /// κ̂ and a small ν, which is when a bootstrap interval is too narrow. Clamped to [1, k − 1];
    /// `NaN` with fewer than 2 clusters or no spread (nothing to estimate).
    pub fn variance_df(&self) -> f64 {
        let k = self.sums.len();
        let r = self.ratio();
        if k < 2 || !r.is_finite() {
            return f64::NAN;
        }
        let (mut s2, mut s4) = (0.0, 0.0);
        for (s, c) in self.sums.iter().zip(&self.counts) {
            let e2 = (s - r * c).powi(2);
            s2 += e2;
            s4 += e2 * e2;
        }
        if s2 <= 0.0 || !s2.is_finite() {
            return f64::NAN;
        }
        let k = k as f64;
        let kurtosis = k * s4 / (s2 * s2);
        let df = if kurtosis > 1.0 {
            2.0 * k / (kurtosis - 1.0)
        } else {
            f64::INFINITY
        };
        df.clamp(1.0, k - 1.0)
    }
}

/// The level at which to read a percentile bootstrap so that its interval is as wide as a
/// Student-t interval on `df` degrees of freedom: Hesterberg's expanded percentile interval
/// (Hesterberg 2015, "What teachers should know about the bootstrap", §4.5), read at
/// `1 − 2Φ(−√(k/(k−1))·t_{df})` instead of `confidence`. The √(k/(k−1)) undoes the bootstrap's
/// plug-in variance (divisor k); with `df = k − 1` this is Hesterberg's interval exactly, and a
/// smaller `df` (from [`ClusterSums::variance_df`]) widens it further. `confidence` unchanged for
/// a non-finite `df` or fewer than 2 clusters.
pub fn expanded_confidence(confidence: f64, df: f64, clusters: usize) -> f64 {
    if !df.is_finite() || clusters < 2 || !(confidence > 0.0 && confidence < 1.0) {
        return confidence;
    }
    let k = clusters as f64;
    let t = super::interval::t_two_sided(df, confidence) * (k / (k - 1.0)).sqrt();
    1.0 - 2.0 * normal_cdf(-t)
}

/// Σ wᵢ·vᵢ with four independent accumulators (a fixed order, so still deterministic): a
/// single running sum would serialize on floating-point add latency.
fn weighted_total(w: &[u32], v: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (wc, vc) = (w.chunks_exact(4), v.chunks_exact(4));
    let rest: f64 = wc
        .remainder()
        .iter()
        .zip(vc.remainder())
        .map(|(&a, &b)| f64::from(a) * b)
        .sum();
    for (ws, vs) in wc.zip(vc) {
        for lane in 0..4 {
            acc[lane] += f64::from(ws[lane]) * vs[lane];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + rest
}

/// Resampled totals of several (sums, counts) columns over the same `k ≥ 1` clusters. Resample r
/// draws k cluster indices from its own stream, turns them into multiplicities wᵢ, and reports
/// `[Σ wᵢ sums₀ᵢ, Σ wᵢ counts₀ᵢ, Σ wᵢ sums₁ᵢ, …]`. The draws are O(k) random increments into a
/// small array and the totals are sequential dot products, so extra columns are cheap.
fn resampled_totals(
    columns: &[(&[f64], &[f64])],
    k: usize,
    config: &BootstrapConfig,
) -> Vec<Vec<f64>> {
    let Some(sampler) = IndexSampler::new(k) else {
        return Vec::new();
    };
    (0..config.resamples)
        .into_par_iter()
        .map_init(
            || vec![0u32; k],
            |w: &mut Vec<u32>, r| {
                w.fill(0);
                let mut rng = resample_rng(config.seed, r);
                for _ in 0..k {
                    w[sampler.draw(&mut rng)] += 1;
                }
                columns
                    .iter()
                    .flat_map(|(s, c)| [weighted_total(w, s), weighted_total(w, c)])
                    .collect()
            },
        )
        .collect()
}

/// `s / c`, or `NaN` when the count is 0 (no replicate).
fn ratio(s: f64, c: f64) -> f64 {
    if c > 0.0 { s / c } else { f64::NAN }
}

/// Clustered bootstrap of the ratio-of-sums mean `Σ sums / Σ counts` (a rate or a mean over
/// observations, with clusters as the resampling unit). Each resample costs O(n_clusters)
/// whatever the number of observations, and the BCa jackknife `(S − s_i)/(C − c_i)` is
/// O(n_clusters) in total.
///
/// `None` when there are no clusters, the slices differ in length, the total count is 0, or as
/// in [`cluster_bootstrap_result`]. A resample whose drawn counts sum to 0 yields no replicate.
/// A single cluster gives `[estimate, estimate]`.
pub fn cluster_bootstrap_ratio(
    sums: &[f64],
    counts: &[f64],
    config: &BootstrapConfig,
) -> Option<BootstrapResult> {
    if sums.len() != counts.len() {
        return None;
    }
    let k = sums.len();
    let (s_tot, c_tot): (f64, f64) = (sums.iter().sum(), counts.iter().sum());
    let estimate = match precheck(k, || ratio(s_tot, c_tot), config) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let replicates: Vec<f64> = resampled_totals(&[(sums, counts)], k, config)
        .iter()
        .map(|t| ratio(t[0], t[1]))
        .collect();
    let jackknife = || {
        (0..k)
            .map(|i| ratio(s_tot - sums[i], c_tot - counts[i]))
            .collect()
    };
    finish(estimate, &replicates, jackknife, config)
}

/// Paired clustered bootstrap of the difference of two ratio-of-sums means on the same clusters,
/// `Σa_s/Σa_c − Σb_s/Σb_c`, drawing the same cluster indices for both (e.g. the excess flip rate
/// of an artifact over the re-run noise floor). Build aligned inputs with
/// [`ClusterSums::paired`]. `None` in the cases of [`cluster_bootstrap_ratio`] (for either side),
/// or when the four slices differ in length.
pub fn cluster_bootstrap_ratio_diff(
    a: &ClusterSums,
    b: &ClusterSums,
    config: &BootstrapConfig,
) -> Option<BootstrapResult> {
    let k = a.sums.len();
    if a.counts.len() != k || b.sums.len() != k || b.counts.len() != k {
        return None;
    }
    let tot = |v: &[f64]| v.iter().sum::<f64>();
    let (as_t, ac_t, bs_t, bc_t) = (tot(&a.sums), tot(&a.counts), tot(&b.sums), tot(&b.counts));
    let diff = |as_: f64, ac: f64, bs: f64, bc: f64| ratio(as_, ac) - ratio(bs, bc);
    let estimate = match precheck(k, || diff(as_t, ac_t, bs_t, bc_t), config) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let columns = [(&a.sums[..], &a.counts[..]), (&b.sums[..], &b.counts[..])];
    let replicates: Vec<f64> = resampled_totals(&columns, k, config)
        .iter()
        .map(|t| diff(t[0], t[1], t[2], t[3]))
        .collect();
    let jackknife = || {
        (0..k)
            .map(|i| {
                diff(
                    as_t - a.sums[i],
                    ac_t - a.counts[i],
                    bs_t - b.sums[i],
                    bc_t - b.counts[i],
                )
            })
            .collect()
    };
    finish(estimate, &replicates, jackknife, config)
}

/// [`cluster_bootstrap_ratio`] for several ratio-of-sums statistics over the same clusters
/// (e.g. the flip rate of every artifact, clustered by prompt) in one pass: each resample draws
/// its cluster indices once and reuses them for every column. Because draws depend only on
/// `(seed, resample)` and the arithmetic is the same, result j is bit-identical to
/// `columns[j].bootstrap(config)`.
///
/// Errors (naming the column as `row`) when the columns do not all have the same number of
/// clusters. Each entry is `None` in the cases of [`cluster_bootstrap_ratio`].
pub fn cluster_bootstrap_ratios(
    columns: &[ClusterSums],
    config: &BootstrapConfig,
) -> Result<Vec<Option<BootstrapResult>>, StatsError> {
    let Some(first) = columns.first() else {
        return Ok(Vec::new());
    };
    let k = first.n_clusters();
    for (j, col) in columns.iter().enumerate() {
        if col.sums.len() != k || col.counts.len() != k {
            return Err(StatsError::RaggedRow {
                row: j,
                detail: format!(
                    "column has {} sums and {} counts, column 0 has {k} clusters",
                    col.sums.len(),
                    col.counts.len()
                ),
            });
        }
    }
    let totals: Vec<(f64, f64)> = columns
        .iter()
        .map(|c| (c.sums.iter().sum(), c.counts.iter().sum()))
        .collect();
    let estimates: Vec<Result<f64, Option<BootstrapResult>>> = totals
        .iter()
        .map(|&(s, c)| precheck(k, || ratio(s, c), config))
        .collect();
    // Only columns with a usable estimate are resampled.
    let live: Vec<usize> = (0..columns.len())
        .filter(|&j| estimates[j].is_ok())
        .collect();
    let slices: Vec<(&[f64], &[f64])> = live
        .iter()
        .map(|&j| (&columns[j].sums[..], &columns[j].counts[..]))
        .collect();
    let rows = if live.is_empty() {
        Vec::new()
    } else {
        resampled_totals(&slices, k, config)
    };
    let mut out = Vec::with_capacity(columns.len());
    let mut pos = 0; // index of the next live column in `rows`
    for (j, est) in estimates.into_iter().enumerate() {
        out.push(match est {
            Err(r) => r,
            Ok(estimate) => {
                let reps: Vec<f64> = rows
                    .iter()
                    .map(|t| ratio(t[2 * pos], t[2 * pos + 1]))
                    .collect();
                pos += 1;
                let (s_tot, c_tot) = totals[j];
                let col = &columns[j];
                let jackknife = || {
                    (0..k)
                        .map(|i| ratio(s_tot - col.sums[i], c_tot - col.counts[i]))
                        .collect()
                };
                finish(estimate, &reps, jackknife, config)
            }
        });
    }
    Ok(out)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn quantile_linear_matches_numpy() {
        // numpy.quantile([1, 2, 4, 8], [0, 0.25, 0.5, 0.9, 1]) = [1, 1.75, 3, 6.8, 8]
        let s = [1.0, 2.0, 4.0, 8.0];
        for (q, want) in [(0.0, 1.0), (0.25, 1.75), (0.5, 3.0), (0.9, 6.8), (1.0, 8.0)] {
            assert!((quantile_linear(&s, q) - want).abs() < 1e-12, "q={q}");
        }
        assert!(quantile_linear(&[], 0.5).is_nan());
    }

    #[test]
    fn streams_differ_between_resamples() {
        use rand::RngCore;
        let (mut a, mut b) = (resample_rng(7, 0), resample_rng(7, 1));
        assert_ne!(a.next_u64(), b.next_u64());
        let (mut c, mut d) = (resample_rng(7, 3), resample_rng(7, 3));
        assert_eq!(c.next_u64(), d.next_u64());
    }
}
