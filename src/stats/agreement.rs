//! Chance-corrected agreement between raters on nominal labels (method.md §C11, §D5): Cohen's κ,
//! Scott's π, Fleiss' κ and Krippendorff's α (nominal, tolerant of missing values).
//!
//! Labels are `usize` category indices. Agreement coefficients are undefined when the expected
//! (chance) agreement is 1, i.e. every rating falls in one single category: there is no variation
//! to agree on, and `(p_o − p_e)/(1 − p_e)` is 0/0. All functions return `NaN` in that case and for
//! empty input, never panic, and report malformed input (length mismatch, label out of range,
//! ragged count matrix) as [`StatsError`].

use std::collections::BTreeMap;

use super::StatsError;

/// Validates two rating vectors and returns per-category marginals and the agreement count.
fn marginals(
    a: &[usize],
    b: &[usize],
    categories: usize,
) -> Result<(Vec<u64>, Vec<u64>, u64), StatsError> {
    if a.len() != b.len() {
        return Err(StatsError::LengthMismatch {
            what: "rater 1 vs rater 2 labels",
            left: a.len(),
            right: b.len(),
        });
    }
    let (mut ra, mut rb, mut agree) = (vec![0u64; categories], vec![0u64; categories], 0u64);
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        for label in [x, y] {
            if label >= categories {
                return Err(StatsError::LabelOutOfRange {
                    index: i,
                    label,
                    categories,
                });
            }
        }
        ra[x] += 1;
        rb[y] += 1;
        agree += u64::from(x == y);
    }
    Ok((ra, rb, agree))
}

/// `num / den`, or `NaN` when the denominator is 0 (undefined coefficient).
fn ratio_or_nan(num: f64, den: f64) -> f64 {
    if den == 0.0 { f64::NAN } else { num / den }
}

/// Share of items on which the two raters give the same label; `NaN` when empty.
/// Errors on a length mismatch.
pub fn percent_agreement(a: &[usize], b: &[usize]) -> Result<f64, StatsError> {
    if a.len() != b.len() {
        return Err(StatsError::LengthMismatch {
            what: "rater 1 vs rater 2 labels",
            left: a.len(),
            right: b.len(),
        });
    }
    if a.is_empty() {
        return Ok(f64::NAN);
    }
    Ok(a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64)
}

/// Cohen's κ for two raters over `categories` nominal labels:
/// `κ = (p_o − p_e)/(1 − p_e)`, `p_e = Σ_k p_{1k} p_{2k}` (Cohen 1960; equals
/// `sklearn.metrics.cohen_kappa_score` and statsmodels `cohens_kappa(table).kappa`).
/// Computed from integer counts as `(n·A − Σ r_k c_k)/(n² − Σ r_k c_k)`, so the degenerate case is
/// detected exactly: `NaN` when n = 0 or both raters use one single, identical category.
pub fn cohen_kappa(a: &[usize], b: &[usize], categories: usize) -> Result<f64, StatsError> {
    let (ra, rb, agree) = marginals(a, b, categories)?;
    let n = a.len() as u128;
    let chance: u128 = ra
        .iter()
        .zip(&rb)
        .map(|(&x, &y)| x as u128 * y as u128)
        .sum();
    let num = (n * agree as u128) as f64 - chance as f64;
    Ok(ratio_or_nan(num, (n * n - chance) as f64))
}

/// Scott's π for two raters: like κ but with pooled marginals,
/// `p_e = Σ_k ((p_{1k} + p_{2k})/2)²` (Scott 1955). Computed as
/// `(4n·A − Σ (r_k + c_k)²)/(4n² − Σ (r_k + c_k)²)`; `NaN` when n = 0 or all labels are one category.
pub fn scott_pi(a: &[usize], b: &[usize], categories: usize) -> Result<f64, StatsError> {
    let (ra, rb, agree) = marginals(a, b, categories)?;
    let n = a.len() as u128;
    let pooled: u128 = ra
        .iter()
        .zip(&rb)
        .map(|(&x, &y)| (x as u128 + y as u128).pow(2))
        .sum();
    let num = (4 * n * agree as u128) as f64 - pooled as f64;
    Ok(ratio_or_nan(num, (4 * n * n - pooled) as f64))
}

/// Fleiss' κ from an item × category count matrix (`counts[i][k]` = raters who put item i in
/// category k; every item must have the same number m ≥ 2 of ratings):
/// `P_i = (Σ_k n_ik² − m)/(m(m−1))`, `P̄ = mean P_i`, `p_k = Σ_i n_ik/(n m)`, `P̄_e = Σ p_k²`,
/// `κ = (P̄ − P̄_e)/(1 − P̄_e)` (Fleiss 1971; statsmodels `fleiss_kappa(table, method="fleiss")`).
///
/// `NaN` for no items, m < 2, or all ratings in one category. Errors when rows differ in width or
/// in their number of ratings.
pub fn fleiss_kappa<R: AsRef<[u64]>>(counts: &[R]) -> Result<f64, StatsError> {
    let Some(first) = counts.first() else {
        return Ok(f64::NAN);
    };
    let k = first.as_ref().len();
    let m: u64 = first.as_ref().iter().sum();
    let mut cat_tot = vec![0u128; k];
    let mut agree_sum = 0u128; // Σ_i Σ_k n_ik²
    for (i, row) in counts.iter().enumerate() {
        let row = row.as_ref();
        if row.len() != k {
            return Err(StatsError::RaggedRow {
                row: i,
                detail: format!("has {} categories, row 0 has {k}", row.len()),
            });
        }
        let total: u64 = row.iter().sum();
        if total != m {
            return Err(StatsError::RaggedRow {
                row: i,
                detail: format!("has {total} ratings, row 0 has {m}"),
            });
        }
        for (c, &x) in row.iter().enumerate() {
            cat_tot[c] += x as u128;
            agree_sum += (x as u128) * (x as u128);
        }
    }
    if m < 2 {
        return Ok(f64::NAN);
    }
    let (n, m) = (counts.len() as f64, m as f64);
    let p_bar = (agree_sum as f64 - n * m) / (n * m * (m - 1.0));
    let nm = n * m;
    let p_e: f64 = cat_tot.iter().map(|&t| (t as f64 / nm).powi(2)).sum();
    // Exactly one category used ⇔ Σ t² = (nm)²; test on integers to avoid rounding.
    let sum_sq: u128 = cat_tot.iter().map(|&t| t * t).sum();
    let total = cat_tot.iter().sum::<u128>();
    if sum_sq == total * total {
        return Ok(f64::NAN);
    }
    Ok((p_bar - p_e) / (1.0 - p_e))
}

/// Krippendorff's α for nominal data with missing values, from a units × raters matrix
/// (`units[u][r]` = label given by rater r to unit u, `None` if missing).
///
/// Builds the coincidence matrix `o_ck = Σ_u n_uc (n_uk − [c = k]) / (m_u − 1)` over units with
/// m_u ≥ 2 values (units with fewer are not pairable and are dropped), `n_c = Σ_k o_ck`,
/// `n = Σ n_c`, and returns `α = 1 − (n − 1)(n − Σ_c o_cc) / (n² − Σ_c n_c²)`
/// (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability", §C; equals the `krippendorff`
/// PyPI package with `level_of_measurement="nominal"`).
///
/// `NaN` when no unit is pairable or every pairable value is the same category (the package
/// raises an error there). Rows may have different lengths.
pub fn krippendorff_alpha_nominal<R: AsRef<[Option<usize>]>>(units: &[R]) -> f64 {
    // Labels are arbitrary usize values; index them densely in sorted order.
    let mut per_unit: Vec<BTreeMap<usize, f64>> = Vec::new();
    for unit in units {
        let mut counts = BTreeMap::new();
        let mut m = 0usize;
        for v in unit.as_ref().iter().flatten() {
            *counts.entry(*v).or_insert(0.0) += 1.0;
            m += 1;
        }
        if m >= 2 {
            per_unit.push(counts);
        }
    }
    let mut n_c: BTreeMap<usize, f64> = BTreeMap::new();
    let mut diag = 0.0; // Σ_c o_cc
    for counts in &per_unit {
        let m: f64 = counts.values().sum();
        for (&c, &x) in counts {
            // Row c of the unit's coincidences sums to n_uc (m_u − 1)/(m_u − 1) = n_uc.
            *n_c.entry(c).or_insert(0.0) += x;
            diag += x * (x - 1.0) / (m - 1.0);
        }
    }
    let n: f64 = n_c.values().sum();
    let sum_sq: f64 = n_c.values().map(|x| x * x).sum();
    let de = n * n - sum_sq;
    if n_c.len() < 2 || de <= 0.0 {
        return f64::NAN;
    }
    1.0 - (n - 1.0) * (n - diag) / de
}
