//! One clustered bootstrap pass for many statistics at once.
//!
//! Every statistic the analysis bootstraps (T, WR, excess flip rate, κ, α, …) is a smooth function
//! of a few per-cluster column totals: a ratio of sums, a difference of two ratios, κ from
//! agreement and marginal counts. So instead of one resampling loop per statistic, a [`Boot`]
//! holds per-pair (cluster) columns, each resample draws the cluster multiplicities once, turns
//! them into column totals, and evaluates every registered statistic on those totals. A resample
//! costs O(clusters) for the draw plus O(non-zero cells) per column, whatever the number of
//! verdicts behind each cell; constant columns cost nothing (Σ wᵢ·c = c·k).
//!
//! Draws are those of [`crate::stats`]: resample r uses `ChaCha8Rng::seed_from_u64(seed)` on
//! stream r and Lemire's unbiased multiply-and-reject sampler on 32-bit words, so a ratio
//! statistic here has exactly the replicates of [`crate::stats::cluster_bootstrap_ratio`] for
//! the same seed (tested below). Intervals are formed by [`crate::stats::percentile_interval`]
//! or [`crate::stats::bca_interval`] (leave-one-cluster-out jackknife), with the same
//! conventions: no interval without clusters, resamples or a finite estimate; a single cluster
//! gives `[estimate, estimate]`; non-finite replicates are dropped.

use crate::stats::{BootstrapConfig, BootstrapMethod, Interval, bca_interval, percentile_interval};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Handle of a registered column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Col(usize);

/// Handle of a registered statistic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat(usize);

/// Per-cluster values of one column, stored by shape so resamples skip what they can.
enum Column {
    /// The same value in every cluster.
    Const(f64),
    /// A base value plus the cells that deviate from it (ascending cluster index, deviations
    /// stored as value − base): for nearly constant columns (a count of 2 valid calls per pair,
    /// a net preference of 0).
    Sparse {
        base: f64,
        idx: Vec<u32>,
        val: Vec<f64>,
    },
    /// Every cell, small integers in [−127, 127] (most per-pair sums and counts): resampled
    /// with 16-bit integer multiply-adds, several times faster than f64 and exact.
    Small(Vec<i16>),
    /// Every cell.
    Dense(Vec<f64>),
}

/// Largest multiplicity for which 16-bit products summed over a block of [`BLOCK`] cells stay
/// below 2³¹ (127 · 4096 · 4096 < 2³¹); a resample drawing any cluster more often (never seen in
/// practice: multiplicities are about Poisson(1)) falls back to 64-bit sums.
const MAX_SMALL_WEIGHT: u32 = 4096;
/// Cells per 32-bit accumulation block of [`dot_small`].
const BLOCK: usize = 4096;

/// Σ wᵢ·vᵢ over 16-bit weights and values, exact: 32-bit lanes per block (written so the
/// compiler emits packed multiply-adds), 64-bit across blocks.
fn dot_small(w: &[i16], v: &[i16]) -> f64 {
    let mut total = 0i64;
    for (wc, vc) in w.chunks(BLOCK).zip(v.chunks(BLOCK)) {
        let mut acc = [0i32; 16];
        let (a, b) = (wc.chunks_exact(16), vc.chunks_exact(16));
        let rest: i32 = a
            .remainder()
            .iter()
            .zip(b.remainder())
            .map(|(&x, &y)| i32::from(x) * i32::from(y))
            .sum();
        for (x, y) in a.zip(b) {
            for lane in 0..16 {
                acc[lane] += i32::from(x[lane]) * i32::from(y[lane]);
            }
        }
        total += i64::from(acc.iter().sum::<i32>()) + i64::from(rest);
    }
    total as f64
}

impl Column {
    fn at(&self, i: usize) -> f64 {
        match self {
            Column::Const(c) => *c,
            Column::Dense(v) => v[i],
            Column::Small(v) => f64::from(v[i]),
            Column::Sparse { base, idx, val } => match idx.binary_search(&(i as u32)) {
                Ok(j) => base + val[j],
                Err(_) => *base,
            },
        }
    }
}

/// A statistic of the column totals (indexed by [`Col`]).
type StatFn = Box<dyn Fn(&Totals<'_>) -> f64 + Send + Sync>;

/// Column totals of one (re)sample, read by statistics.
pub(crate) struct Totals<'a>(&'a [f64]);

impl Totals<'_> {
    /// Total of column `c`.
    pub(crate) fn get(&self, c: Col) -> f64 {
        self.0[c.0]
    }
}

/// Columns over `k` clusters and the statistics defined on their totals.
pub(crate) struct Boot {
    k: usize,
    columns: Vec<Column>,
    stats: Vec<StatFn>,
}

/// `s / c`, or `NaN` for a zero count.
pub(crate) fn ratio(s: f64, c: f64) -> f64 {
    if c > 0.0 { s / c } else { f64::NAN }
}

/// Result of one statistic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Outcome {
    /// Value on the full sample.
    pub estimate: f64,
    /// Interval, when one could be formed.
    pub interval: Option<Interval>,
    /// Σᵢ (θ₍ᵢ₎ − θ̂)² over the leave-one-cluster-out values θ₍ᵢ₎ that are finite (0 for a single
    /// cluster), when an interval was requested: times (m − 1)/m for the m clusters that carry
    /// data, the jackknife variance of the estimate (with the full-sample estimate as centre),
    /// which the small-sample intervals of `analyze::judge` use.
    pub jack_ss: Option<f64>,
}

/// Results of a [`Boot::run`], indexed by [`Stat`].
pub(crate) struct Results {
    outcomes: Vec<Outcome>,
}

impl Results {
    /// Estimate and interval of `s`.
    pub(crate) fn get(&self, s: Stat) -> Outcome {
        self.outcomes[s.0]
    }
}

/// Exactly uniform cluster indices in [0, k) (Lemire 2019), identical to the sampler of
/// `stats::bootstrap` so both paths see the same resamples.
struct Sampler {
    k: u64,
    threshold: u64,
}

impl Sampler {
    fn new(k: usize) -> Sampler {
        let k = k as u64;
        let threshold = if k <= u64::from(u32::MAX) {
            u64::from((k as u32).wrapping_neg() % k as u32)
        } else {
            k.wrapping_neg() % k
        };
        Sampler { k, threshold }
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

/// Σ wᵢ·vᵢ with eight independent accumulators in a fixed order (deterministic, and not
/// serialized on floating-point add latency).
fn dot(w: &[f64], v: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (wc, vc) = (w.chunks_exact(8), v.chunks_exact(8));
    let rest: f64 = wc
        .remainder()
        .iter()
        .zip(vc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (ws, vs) in wc.zip(vc) {
        for lane in 0..8 {
            acc[lane] += ws[lane] * vs[lane];
        }
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + rest
}

impl Boot {
    /// An empty set of columns over `k` clusters.
    pub(crate) fn new(k: usize) -> Boot {
        Boot {
            k,
            columns: Vec::new(),
            stats: Vec::new(),
        }
    }

    /// Register per-cluster values (length k, finite). The storage shape is chosen here from
    /// the values: constant, sparse around the most frequent value, small integers, or dense.
    pub(crate) fn column(&mut self, values: Vec<f64>) -> Col {
        debug_assert_eq!(values.len(), self.k);
        debug_assert!(values.iter().all(|v| v.is_finite()));
        let column = match values.first() {
            None => Column::Const(0.0),
            Some(&first) if values.iter().all(|&v| v == first) => Column::Const(first),
            Some(_) => {
                // The most frequent value is the base of a sparse column.
                let mut sorted = values.clone();
                sorted.sort_by(f64::total_cmp);
                let (mut base, mut best, mut run) = (sorted[0], 0usize, 0usize);
                for (j, v) in sorted.iter().enumerate() {
                    run = if j > 0 && *v == sorted[j - 1] {
                        run + 1
                    } else {
                        1
                    };
                    if run > best {
                        best = run;
                        base = *v;
                    }
                }
                let nnz = self.k - best;
                let small = values.iter().all(|v| v.fract() == 0.0 && v.abs() <= 127.0);
                // A gather costs about two f64 multiply-adds and sixteen 16-bit ones.
                if nnz * 16 <= self.k || (!small && nnz * 2 <= self.k) {
                    let mut idx = Vec::with_capacity(nnz);
                    let mut val = Vec::with_capacity(nnz);
                    for (i, &v) in values.iter().enumerate() {
                        if v != base {
                            idx.push(i as u32);
                            val.push(v - base);
                        }
                    }
                    Column::Sparse { base, idx, val }
                } else if small {
                    Column::Small(values.iter().map(|&v| v as i16).collect())
                } else {
                    Column::Dense(values)
                }
            }
        };
        self.columns.push(column);
        Col(self.columns.len() - 1)
    }

    /// Register a statistic of the column totals.
    pub(crate) fn stat(&mut self, f: impl Fn(&Totals<'_>) -> f64 + Send + Sync + 'static) -> Stat {
        self.stats.push(Box::new(f));
        Stat(self.stats.len() - 1)
    }

    /// `Σ s / Σ c`.
    pub(crate) fn ratio(&mut self, s: Col, c: Col) -> Stat {
        self.stat(move |t| ratio(t.get(s), t.get(c)))
    }

    /// `Σ s₁ / Σ c₁ − Σ s₂ / Σ c₂` (paired: both on the same resampled clusters).
    pub(crate) fn ratio_diff(&mut self, s1: Col, c1: Col, s2: Col, c2: Col) -> Stat {
        self.stat(move |t| ratio(t.get(s1), t.get(c1)) - ratio(t.get(s2), t.get(c2)))
    }

    /// Totals of every column on the full sample.
    fn full_totals(&self) -> Vec<f64> {
        self.columns
            .iter()
            .map(|c| match c {
                Column::Const(v) => v * self.k as f64,
                Column::Sparse { base, val, .. } => base * self.k as f64 + val.iter().sum::<f64>(),
                Column::Small(v) => v.iter().map(|&x| f64::from(x)).sum(),
                Column::Dense(v) => v.iter().sum(),
            })
            .collect()
    }

    /// Column totals of one resample with multiplicities `w` (Σw = k); `wf` holds them as f64
    /// when there are dense columns, `wi` as i16 when there are small-integer columns (`None`
    /// when a multiplicity is too large for the 16-bit path).
    fn resample_totals(&self, w: &[u32], wf: &[f64], wi: Option<&[i16]>, out: &mut [f64]) {
        for (o, c) in out.iter_mut().zip(&self.columns) {
            *o = match c {
                Column::Const(v) => v * self.k as f64,
                Column::Sparse { base, idx, val } => {
                    let mut acc = [0.0f64; 4];
                    let (ic, vc) = (idx.chunks_exact(4), val.chunks_exact(4));
                    let rest: f64 = ic
                        .remainder()
                        .iter()
                        .zip(vc.remainder())
                        .map(|(&i, &v)| f64::from(w[i as usize]) * v)
                        .sum();
                    for (is, vs) in ic.zip(vc) {
                        for lane in 0..4 {
                            acc[lane] += f64::from(w[is[lane] as usize]) * vs[lane];
                        }
                    }
                    base * self.k as f64 + ((acc[0] + acc[1]) + (acc[2] + acc[3]) + rest)
                }
                Column::Small(v) => match wi {
                    Some(wi) => dot_small(wi, v),
                    None => w
                        .iter()
                        .zip(v)
                        .map(|(&a, &b)| i64::from(a) * i64::from(b))
                        .sum::<i64>() as f64,
                },
                Column::Dense(v) => dot(wf, v),
            };
        }
    }

    /// Estimate every statistic and, with `config.resamples > 0`, its clustered interval.
    pub(crate) fn run(&self, config: &BootstrapConfig) -> Results {
        let full = self.full_totals();
        let estimates: Vec<f64> = self.stats.iter().map(|f| f(&Totals(&full))).collect();
        let usable = self.k > 0
            && config.resamples > 0
            && config.confidence > 0.0
            && config.confidence < 1.0;
        if !usable || self.k == 1 || self.stats.is_empty() {
            let single = usable && self.k == 1;
            return Results {
                outcomes: estimates
                    .iter()
                    .map(|&e| Outcome {
                        estimate: e,
                        interval: (single && e.is_finite()).then(|| Interval::new(e, e)),
                        jack_ss: (single && e.is_finite()).then_some(0.0),
                    })
                    .collect(),
            };
        }
        let k = self.k;
        let sampler = Sampler::new(k);
        let n_cols = self.columns.len();
        let needs_dense = self.columns.iter().any(|c| matches!(c, Column::Dense(_)));
        let needs_small = self.columns.iter().any(|c| matches!(c, Column::Small(_)));
        let replicates: Vec<Vec<f64>> = (0..config.resamples)
            .into_par_iter()
            .map_init(
                || {
                    (
                        vec![0u32; k],
                        vec![0.0f64; k],
                        vec![0i16; k],
                        vec![0.0f64; n_cols],
                    )
                },
                |(w, wf, wi, totals), r| {
                    w.fill(0);
                    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
                    rng.set_stream(r as u64);
                    for _ in 0..k {
                        w[sampler.draw(&mut rng)] += 1;
                    }
                    if needs_dense {
                        for (f, &x) in wf.iter_mut().zip(w.iter()) {
                            *f = f64::from(x);
                        }
                    }
                    let small_ok = needs_small && w.iter().all(|&x| x <= MAX_SMALL_WEIGHT);
                    if small_ok {
                        for (f, &x) in wi.iter_mut().zip(w.iter()) {
                            *f = x as i16;
                        }
                    }
                    self.resample_totals(w, wf, small_ok.then_some(&wi[..]), totals);
                    let t = Totals(totals);
                    self.stats.iter().map(|f| f(&t)).collect()
                },
            )
            .collect();
        // The jackknife costs O(clusters × statistics), small next to the resamples; it feeds BCa
        // and the variance of every statistic for the small-sample intervals.
        let jack = self.jackknife(&full);
        let outcomes = (0..self.stats.len())
            .into_par_iter()
            .map(|s| {
                let estimate = estimates[s];
                if !estimate.is_finite() {
                    return Outcome {
                        estimate,
                        interval: None,
                        jack_ss: None,
                    };
                }
                let values: Vec<f64> = jack.iter().map(|row| row[s]).collect();
                let jack_ss = values
                    .iter()
                    .filter(|v| v.is_finite())
                    .map(|v| (v - estimate).powi(2))
                    .sum::<f64>();
                let reps: Vec<f64> = replicates.iter().map(|row| row[s]).collect();
                if !reps.iter().any(|x| x.is_finite()) {
                    return Outcome {
                        estimate,
                        interval: None,
                        jack_ss: Some(jack_ss),
                    };
                }
                let interval = match config.method {
                    BootstrapMethod::Bca => {
                        bca_interval(estimate, &reps, &values, config.confidence)
                    }
                    BootstrapMethod::Percentile => percentile_interval(&reps, config.confidence),
                };
                Outcome {
                    estimate,
                    interval: Some(interval),
                    jack_ss: Some(jack_ss),
                }
            })
            .collect();
        Results { outcomes }
    }

    /// Leave-one-cluster-out values of every statistic: row i holds the statistics without
    /// cluster i.
    fn jackknife(&self, full: &[f64]) -> Vec<Vec<f64>> {
        (0..self.k)
            .into_par_iter()
            .map_init(
                || vec![0.0f64; self.columns.len()],
                |loo, i| {
                    for ((o, c), f) in loo.iter_mut().zip(&self.columns).zip(full) {
                        *o = f - c.at(i);
                    }
                    let t = Totals(loo);
                    self.stats.iter().map(|f| f(&t)).collect()
                },
            )
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{ClusterSums, cluster_bootstrap_ratio, cluster_bootstrap_ratio_diff};

    fn config(method: BootstrapMethod) -> BootstrapConfig {
        BootstrapConfig {
            resamples: 500,
            seed: 11,
            confidence: 0.95,
            method,
        }
    }

    /// Integer-valued sums (exact in any summation order), a mix of dense and sparse columns.
    fn data() -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let k = 60;
        let s: Vec<f64> = (0..k).map(|i| ((i * 7) % 5) as f64 - 2.0).collect();
        let c: Vec<f64> = (0..k).map(|i| if i % 9 == 0 { 1.0 } else { 2.0 }).collect();
        let s2: Vec<f64> = (0..k).map(|i| f64::from(u8::from(i % 6 == 0))).collect();
        let c2 = vec![2.0; k];
        (s, c, s2, c2)
    }

    #[test]
    fn ratio_matches_the_stats_reference_path_exactly() {
        let (s, c, s2, c2) = data();
        for method in [BootstrapMethod::Percentile, BootstrapMethod::Bca] {
            let cfg = config(method);
            let mut boot = Boot::new(s.len());
            let (cs, cc) = (boot.column(s.clone()), boot.column(c.clone()));
            let (cs2, cc2) = (boot.column(s2.clone()), boot.column(c2.clone()));
            let r = boot.ratio(cs, cc);
            let r2 = boot.ratio(cs2, cc2);
            let d = boot.ratio_diff(cs, cc, cs2, cc2);
            let out = boot.run(&cfg);
            let want = cluster_bootstrap_ratio(&s, &c, &cfg).unwrap();
            assert_eq!(out.get(r).estimate, want.estimate);
            assert_eq!(out.get(r).interval, Some(want.interval), "{method:?}");
            let want2 = cluster_bootstrap_ratio(&s2, &c2, &cfg).unwrap();
            assert_eq!(
                out.get(r2).interval,
                Some(want2.interval),
                "sparse {method:?}"
            );
            let a = ClusterSums::new(s.clone(), c.clone()).unwrap();
            let b = ClusterSums::new(s2.clone(), c2.clone()).unwrap();
            let wd = cluster_bootstrap_ratio_diff(&a, &b, &cfg).unwrap();
            assert_eq!(out.get(d).interval, Some(wd.interval), "diff {method:?}");
        }
    }

    #[test]
    fn degenerate_inputs() {
        // No clusters: estimate NaN, no interval.
        let mut boot = Boot::new(0);
        let (a, b) = (boot.column(vec![]), boot.column(vec![]));
        let r = boot.ratio(a, b);
        let out = boot.run(&config(BootstrapMethod::Percentile));
        assert!(out.get(r).estimate.is_nan());
        assert_eq!(out.get(r).interval, None);
        // One cluster: the degenerate interval [estimate, estimate].
        let mut boot = Boot::new(1);
        let (a, b) = (boot.column(vec![3.0]), boot.column(vec![4.0]));
        let r = boot.ratio(a, b);
        let out = boot.run(&config(BootstrapMethod::Bca));
        assert_eq!(out.get(r).estimate, 0.75);
        assert_eq!(out.get(r).interval, Some(Interval::new(0.75, 0.75)));
        // All counts zero: NaN estimate, no interval.
        let mut boot = Boot::new(5);
        let (a, b) = (boot.column(vec![0.0; 5]), boot.column(vec![0.0; 5]));
        let r = boot.ratio(a, b);
        let out = boot.run(&config(BootstrapMethod::Percentile));
        assert!(out.get(r).estimate.is_nan());
        assert_eq!(out.get(r).interval, None);
        // No resamples: estimate only.
        let mut boot = Boot::new(3);
        let (a, b) = (boot.column(vec![1.0, 0.0, 1.0]), boot.column(vec![1.0; 3]));
        let r = boot.ratio(a, b);
        let mut cfg = config(BootstrapMethod::Percentile);
        cfg.resamples = 0;
        let out = boot.run(&cfg);
        assert!((out.get(r).estimate - 2.0 / 3.0).abs() < 1e-15);
        assert_eq!(out.get(r).interval, None);
    }

    #[test]
    fn column_shapes_give_the_same_totals() {
        let k = 32;
        let mut boot = Boot::new(k);
        let mut one_off = vec![0.0; k];
        one_off[3] = 5.0;
        let ramp: Vec<f64> = (0..k).map(|i| (i % 7) as f64 - 3.0).collect();
        let mut fractional = ramp.clone();
        fractional[0] = 0.5;
        let mut around_two = vec![2.0; k];
        around_two[2] = 7.5;
        let columns = [vec![2.0; k], one_off, ramp, fractional, around_two];
        for c in &columns {
            boot.column(c.clone());
        }
        assert!(matches!(boot.columns[0], Column::Const(_)));
        assert!(matches!(boot.columns[1], Column::Sparse { base: 0.0, .. }));
        assert!(matches!(boot.columns[2], Column::Small(_)));
        assert!(matches!(boot.columns[3], Column::Dense(_)));
        assert!(matches!(boot.columns[4], Column::Sparse { base: 2.0, .. }));
        let sums: Vec<f64> = columns.iter().map(|c| c.iter().sum()).collect();
        assert_eq!(boot.full_totals(), sums);
        let w: Vec<u32> = (0..k as u32).map(|i| (i * 5) % 3).collect();
        let wf: Vec<f64> = w.iter().map(|&x| f64::from(x)).collect();
        let wi: Vec<i16> = w.iter().map(|&x| x as i16).collect();
        // Σw = k is what every real resample has; these weights are only a shape check, so the
        // constant column is compared with its own formula c·k.
        let want: Vec<f64> = columns
            .iter()
            .enumerate()
            .map(|(j, c)| match j {
                0 => 2.0 * k as f64,
                4 => 2.0 * k as f64 + wf.iter().zip(c).map(|(w, v)| w * (v - 2.0)).sum::<f64>(),
                _ => wf.iter().zip(c).map(|(w, v)| w * v).sum(),
            })
            .collect();
        let mut out = vec![0.0; columns.len()];
        boot.resample_totals(&w, &wf, Some(&wi), &mut out);
        assert_eq!(out, want);
        // The 64-bit fallback for huge multiplicities gives the same totals.
        boot.resample_totals(&w, &wf, None, &mut out);
        assert_eq!(out, want);
        for (j, c) in columns.iter().enumerate() {
            for (i, v) in c.iter().enumerate() {
                assert_eq!(boot.columns[j].at(i), *v, "column {j} cell {i}");
            }
        }
    }
}
