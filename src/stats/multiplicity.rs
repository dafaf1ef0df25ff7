//! Multiplicity control over a grid of tests (method.md §D6): Holm–Bonferroni for confirmatory
//! family-wise error control, Benjamini–Hochberg for false-discovery-rate screening, and plain
//! Bonferroni. Same results as statsmodels `multipletests(p, method="holm" | "fdr_bh" |
//! "bonferroni")[1]`.
//!
//! Invalid entries (`NaN`, or a value outside [0, 1]) are treated as missing tests: their output
//! is `NaN` and they do not count towards the number of tests m. (statsmodels has no such rule and
//! propagates NaN unpredictably.) Output order is the input order.

/// Indices of valid p-values sorted ascending (ties by original position, for determinism).
fn sorted_valid(p_values: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..p_values.len())
        .filter(|&i| (0.0..=1.0).contains(&p_values[i]))
        .collect();
    idx.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]).then(a.cmp(&b)));
    idx
}

/// Holm step-down adjusted p-values, in input order.
///
/// With the m valid p-values sorted ascending, `p̃₍ᵢ₎ = max_{j ≤ i} min(1, (m − j + 1)·p₍ⱼ₎)`
/// (Holm 1979). Monotone in the sorted order and clipped to 1.
pub fn holm(p_values: &[f64]) -> Vec<f64> {
    let order = sorted_valid(p_values);
    let m = order.len() as f64;
    let mut out = vec![f64::NAN; p_values.len()];
    let mut running = 0.0f64;
    for (j, &i) in order.iter().enumerate() {
        running = running.max(((m - j as f64) * p_values[i]).min(1.0));
        out[i] = running;
    }
    out
}

/// Benjamini–Hochberg adjusted p-values (q-values), in input order.
///
/// With the m valid p-values sorted ascending, `q₍ᵢ₎ = min_{j ≥ i} min(1, m·p₍ⱼ₎ / j)`
/// (Benjamini & Hochberg 1995). Monotone in the sorted order and clipped to 1.
pub fn benjamini_hochberg(p_values: &[f64]) -> Vec<f64> {
    let order = sorted_valid(p_values);
    let m = order.len() as f64;
    let mut out = vec![f64::NAN; p_values.len()];
    let mut running = 1.0f64;
    for (j, &i) in order.iter().enumerate().rev() {
        running = running.min((m * p_values[i] / (j + 1) as f64).min(1.0));
        out[i] = running;
    }
    out
}

/// Bonferroni adjusted p-values `min(1, m·p)`, in input order.
pub fn bonferroni(p_values: &[f64]) -> Vec<f64> {
    let m = sorted_valid(p_values).len() as f64;
    p_values
        .iter()
        .map(|&p| {
            if (0.0..=1.0).contains(&p) {
                (m * p).min(1.0)
            } else {
                f64::NAN
            }
        })
        .collect()
}
