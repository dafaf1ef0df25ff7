//! Exact and asymptotic hypothesis tests on counts (method.md §D1–D2): the two-sided exact
//! binomial test, exact and mid-p McNemar, the sign test and the Stuart–Maxwell test of marginal
//! homogeneity for a k × k table of paired categorical verdicts.

use serde::{Deserialize, Serialize};

use super::StatsError;
use super::linalg::{cholesky, cholesky_solve};
use super::special::{binomial_cdf, binomial_pmf, binomial_sf_ge, chi_square_sf};

/// Two-sided exact binomial test of H0: P(success) = `p` for `successes` out of `n`, with the
/// semantics of `scipy.stats.binomtest(k, n, p).pvalue`: the p-value sums the probabilities of
/// all outcomes whose point probability is at most that of the observed one (relative tolerance
/// 1e-7, as in scipy, so that mirror outcomes tie exactly). Result in [0, 1].
///
/// Degenerate input: `n == 0` gives 1 (no evidence); `successes > n` or `p` outside [0, 1]
/// gives `NaN`.
pub fn binomial_test(successes: u64, n: u64, p: f64) -> f64 {
    if successes > n || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if n == 0 {
        return 1.0;
    }
    let k = successes;
    let expected = p * n as f64;
    if k as f64 == expected {
        return 1.0;
    }
    let d = binomial_pmf(k, n, p);
    let threshold = d * (1.0 + 1e-7);
    let pval = if (k as f64) < expected {
        // The upper side [ceil(np), n] is non-increasing in pmf (the mode is ≤ ceil(np)), so the
        // first index whose pmf drops to the threshold starts the opposite tail.
        let mut lo = expected.ceil() as u64;
        let mut hi = n + 1; // sentinel: no outcome qualifies
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if binomial_pmf(mid, n, p) <= threshold {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        let upper = if lo > n {
            0.0
        } else {
            binomial_sf_ge(lo, n, p)
        };
        binomial_cdf(k, n, p) + upper
    } else {
        // Mirror case: [0, floor(np)] is non-decreasing in pmf; find the last index whose pmf is
        // at most the threshold.
        let top = expected.floor() as u64;
        // Search in "count of qualifying outcomes" space to avoid signed indices.
        let (mut lo, mut hi) = (0u64, top + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if binomial_pmf(mid, n, p) <= threshold {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        // `lo` outcomes 0..lo qualify.
        let lower = if lo == 0 {
            0.0
        } else {
            binomial_cdf(lo - 1, n, p)
        };
        lower + binomial_sf_ge(k, n, p)
    };
    pval.clamp(0.0, 1.0)
}

/// Exact two-sided McNemar p-value on the discordant counts `b` and `c`:
/// `min(1, 2 * BinomCDF(min(b, c); b + c, 1/2))`; 1 when `b + c == 0`.
///
/// Equals statsmodels `mcnemar([[a, b], [c, d]], exact=True).pvalue` and
/// `scipy.stats.binomtest(b, b + c, 0.5).pvalue`.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    (2.0 * binomial_cdf(b.min(c), n, 0.5)).min(1.0)
}

/// Mid-p McNemar test (Fagerland, Lydersen & Laake 2013, BMC Med Res Methodol 13:91):
/// `2·[P(X ≤ m) − ½·P(X = m)] = exact − P(X = m)` with m = min(b, c), X ~ Bin(b + c, ½).
/// It is 1 when b = c and when `b + c == 0`. Less conservative than the exact test, with type I
/// error close to nominal in their simulations.
pub fn mcnemar_mid_p(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 || b == c {
        return 1.0;
    }
    let m = b.min(c);
    (2.0 * binomial_cdf(m, n, 0.5) - binomial_pmf(m, n, 0.5)).clamp(0.0, 1.0)
}

/// Exact two-sided sign test of H0: P(+) = 1/2 on `positive` and `negative` counts (zeros dropped).
pub fn sign_test(positive: u64, negative: u64) -> f64 {
    mcnemar_exact(positive, negative)
}

/// Result of [`stuart_maxwell`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StuartMaxwell {
    /// Chi-square statistic.
    pub statistic: f64,
    /// Degrees of freedom actually used (k − 1 for a table whose off-diagonal cells connect all
    /// categories; fewer when some categories never change, see [`stuart_maxwell`]).
    pub df: usize,
    /// Upper-tail chi-square p-value; 1 when `df == 0`.
    pub p_value: f64,
}

/// Stuart–Maxwell test of marginal homogeneity for a square table `table[i][j]` = number of items
/// with category i before and j after (e.g. k = 3 for A / B / tie).
///
/// Statistic `dᵀ V⁻¹ d` with `d_i = n_{·i} − n_{i·}` and `V_ii = n_{i·} + n_{·i} − 2n_ii`,
/// `V_ij = −(n_ij + n_ji)`, one category dropped (Stuart 1955, Maxwell 1970; identical to
/// statsmodels `SquareTable(table).homogeneity("stuart_maxwell")` whenever its covariance is
/// invertible). For k = 2 it is the uncorrected McNemar chi-square `(b − c)²/(b + c)`.
///
/// Singular covariance: V is the weighted Laplacian of the graph whose edges are the discordant
/// cell pairs (weight n_ij + n_ji). It is invertible after dropping one category exactly when
/// that graph is connected. Categories without any discordant cell (including categories with
/// zero margins) carry no information and are removed; if the rest splits into several
/// connected groups, each group contributes its own reduced statistic (the groups' d-vectors
/// are independent blocks) and `df = Σ (group size − 1)`. With nothing left the result is
/// statistic 0, df 0, p = 1 (where statsmodels would return NaN).
///
/// Errors: a non-square table.
pub fn stuart_maxwell<R: AsRef<[u64]>>(table: &[R]) -> Result<StuartMaxwell, StatsError> {
    let k = table.len();
    for (i, row) in table.iter().enumerate() {
        if row.as_ref().len() != k {
            return Err(StatsError::RaggedRow {
                row: i,
                detail: format!(
                    "has {} cells but the table has {k} rows",
                    row.as_ref().len()
                ),
            });
        }
    }
    let cell = |i: usize, j: usize| table[i].as_ref()[j] as f64;

    // Union–find over categories linked by discordant counts.
    let mut parent: Vec<usize> = (0..k).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for i in 0..k {
        for j in i + 1..k {
            if cell(i, j) + cell(j, i) > 0.0 {
                let (ri, rj) = (find(&mut parent, i), find(&mut parent, j));
                if ri != rj {
                    parent[ri] = rj;
                }
            }
        }
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group_of_root = vec![usize::MAX; k];
    for i in 0..k {
        let r = find(&mut parent, i);
        if group_of_root[r] == usize::MAX {
            group_of_root[r] = groups.len();
            groups.push(Vec::new());
        }
        groups[group_of_root[r]].push(i);
    }

    let mut statistic = 0.0;
    let mut df = 0usize;
    for g in groups.iter().filter(|g| g.len() >= 2) {
        // Drop the group's last category; the d-vector sums to zero within a group.
        let kept = &g[..g.len() - 1];
        let m = kept.len();
        let mut v = vec![0.0; m * m];
        let mut d = vec![0.0; m];
        for (a, &i) in kept.iter().enumerate() {
            let mut off = 0.0;
            let mut flow = 0.0;
            for j in 0..k {
                if j != i {
                    off += cell(i, j) + cell(j, i);
                    flow += cell(j, i) - cell(i, j);
                }
            }
            v[a * m + a] = off;
            d[a] = flow;
            for (b, &j) in kept.iter().enumerate() {
                if a != b {
                    v[a * m + b] = -(cell(i, j) + cell(j, i));
                }
            }
        }
        // A connected group's reduced Laplacian is positive definite; failure can only come
        // from rounding with astronomically large counts, in which case the group is skipped.
        if let Some(l) = cholesky(&v, m) {
            let x = cholesky_solve(&l, m, &d);
            statistic += d.iter().zip(&x).map(|(a, b)| a * b).sum::<f64>();
            df += m;
        }
    }
    let p_value = if df == 0 {
        1.0
    } else {
        chi_square_sf(statistic, df as f64)
    };
    Ok(StuartMaxwell {
        statistic,
        df,
        p_value,
    })
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn mcnemar_hand_values() {
        // b = 1, c = 7: 2 * (1 + 8) / 256 = 0.0703125; mid-p = 0.0703125 - 8/256 = 0.0390625
        // (Fagerland et al. 2013, Table 2 example: 0.070 and 0.039).
        assert!((mcnemar_exact(1, 7) - 0.0703125).abs() < 1e-14);
        assert!((mcnemar_mid_p(1, 7) - 0.0390625).abs() < 1e-14);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        assert_eq!(mcnemar_exact(5, 5), 1.0);
    }
}
