//! Binary logistic regression by Newton–Raphson (equivalently IRLS for the canonical logit link)
//! with optional frequency weights and soft labels y ∈ [0, 1], and the AlpacaEval-style length
//! control built on it (method.md §C10).

use serde::{Deserialize, Serialize};

use super::StatsError;
use super::linalg::{cholesky, cholesky_inverse, cholesky_solve};
use super::special::normal_cdf;

/// Iteration controls of [`logistic_regression`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogisticOptions {
    /// Maximum Newton iterations; separated data never converge and stop here.
    pub max_iter: usize,
    /// Converged when every coefficient moves by less than `tol · (1 + |β_j|)` in one step.
    pub tol: f64,
}

impl Default for LogisticOptions {
    /// 100 iterations, tolerance 1e-10.
    fn default() -> Self {
        Self {
            max_iter: 100,
            tol: 1e-10,
        }
    }
}

/// A fitted logistic regression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticFit {
    /// Coefficients, one per design-matrix column (the last iterate if not converged).
    pub coefficients: Vec<f64>,
    /// Standard errors `√diag((Xᵀ W X)⁻¹)` at the final coefficients; `NaN` if that matrix is
    /// singular to working precision.
    pub std_errors: Vec<f64>,
    /// Newton iterations performed.
    pub iterations: usize,
    /// Whether the coefficient-change criterion was met.
    pub converged: bool,
    /// Some fitted probability is within 1e-10 of 0 or 1 (R's "fitted probabilities numerically
    /// 0 or 1 occurred"): (quasi-)complete separation, coefficients drift to ±∞ and standard
    /// errors are meaningless.
    pub separation: bool,
    /// Weighted log-likelihood `Σ w [y ln μ + (1 − y) ln(1 − μ)]`.
    pub log_likelihood: f64,
    /// Residual deviance `2 Σ w [y ln(y/μ) + (1 − y) ln((1 − y)/(1 − μ))]`.
    pub deviance: f64,
}

/// ln(1 + eˣ) without overflow.
fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// y ln y with 0 ln 0 = 0.
fn xlogx(y: f64) -> f64 {
    if y > 0.0 { y * y.ln() } else { 0.0 }
}

/// Weighted log-likelihood at linear predictors `eta`.
fn log_likelihood(eta: &[f64], y: &[f64], w: &[f64]) -> f64 {
    // ln μ = −softplus(−η), ln(1 − μ) = −softplus(η).
    eta.iter()
        .zip(y)
        .zip(w)
        .map(|((&e, &yi), &wi)| -wi * (yi * softplus(-e) + (1.0 - yi) * softplus(e)))
        .sum()
}

/// Maximum-likelihood logistic regression `logit P(y = 1) = x·β`.
///
/// - `x`: design matrix rows (add a column of ones yourself for an intercept);
/// - `y`: outcomes in [0, 1]; fractional values are soft labels (quasi-binomial likelihood, as
///   statsmodels `GLM(y, x, family=Binomial())` accepts);
/// - `weights`: optional non-negative frequency weights (statsmodels `freq_weights`).
///
/// Newton steps `β ← β + (XᵀWX)⁻¹ Xᵀ w(y − μ)` from β = 0, with step halving whenever the
/// log-likelihood would decrease. Same estimates and standard errors as statsmodels
/// `GLM(..., freq_weights=w).fit()` and `Logit(y, x).fit()` for 0/1 data. Under separation the
/// iteration stops at `max_iter` (or when the information matrix becomes numerically singular)
/// with `converged = false` and `separation = true`. Empty data or a singular design (e.g.
/// collinear columns) give `converged = false` and `NaN` standard errors; no panic.
///
/// Errors: ragged rows, length mismatches, y outside [0, 1], non-finite x, or negative /
/// non-finite weights (each naming the row).
pub fn logistic_regression<R: AsRef<[f64]>>(
    x: &[R],
    y: &[f64],
    weights: Option<&[f64]>,
    options: &LogisticOptions,
) -> Result<LogisticFit, StatsError> {
    let n = x.len();
    if y.len() != n {
        return Err(StatsError::LengthMismatch {
            what: "design rows vs outcomes",
            left: n,
            right: y.len(),
        });
    }
    let p = x.first().map_or(0, |r| r.as_ref().len());
    for (i, row) in x.iter().enumerate() {
        let row = row.as_ref();
        if row.len() != p {
            return Err(StatsError::RaggedRow {
                row: i,
                detail: format!("has {} columns, row 0 has {p}", row.len()),
            });
        }
        if let Some(j) = row.iter().position(|v| !v.is_finite()) {
            return Err(StatsError::InvalidValue {
                index: i,
                detail: format!("design column {j} is {}", row[j]),
            });
        }
    }
    if let Some(i) = y.iter().position(|v| !(0.0..=1.0).contains(v)) {
        return Err(StatsError::InvalidValue {
            index: i,
            detail: format!("outcome {} is outside [0, 1]", y[i]),
        });
    }
    let w: Vec<f64> = match weights {
        Some(w) => {
            if w.len() != n {
                return Err(StatsError::LengthMismatch {
                    what: "outcomes vs weights",
                    left: n,
                    right: w.len(),
                });
            }
            if let Some(i) = w.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
                return Err(StatsError::InvalidValue {
                    index: i,
                    detail: format!("weight {} is not finite and non-negative", w[i]),
                });
            }
            w.to_vec()
        }
        None => vec![1.0; n],
    };

    let row = |i: usize| x[i].as_ref();
    let linear = |beta: &[f64]| -> Vec<f64> {
        (0..n)
            .map(|i| row(i).iter().zip(beta).map(|(a, b)| a * b).sum())
            .collect()
    };
    // Weighted information matrix Xᵀ diag(w μ(1−μ)) X.
    let information = |eta: &[f64]| -> Vec<f64> {
        let mut h = vec![0.0; p * p];
        for i in 0..n {
            let mu = sigmoid(eta[i]);
            let v = w[i] * mu * (1.0 - mu);
            if v == 0.0 {
                continue;
            }
            let r = row(i);
            for a in 0..p {
                let va = v * r[a];
                for b in 0..=a {
                    h[a * p + b] += va * r[b];
                }
            }
        }
        for a in 0..p {
            for b in 0..a {
                h[b * p + a] = h[a * p + b];
            }
        }
        h
    };

    let mut beta = vec![0.0; p];
    let mut eta = vec![0.0; n];
    let mut ll = log_likelihood(&eta, y, &w);
    let mut converged = false;
    let mut iterations = 0;
    let degenerate = n == 0 || p == 0 || w.iter().all(|&v| v == 0.0);
    while !degenerate && iterations < options.max_iter {
        iterations += 1;
        let mut grad = vec![0.0; p];
        for i in 0..n {
            let resid = w[i] * (y[i] - sigmoid(eta[i]));
            for (g, xv) in grad.iter_mut().zip(row(i)) {
                *g += resid * xv;
            }
        }
        let Some(l) = cholesky(&information(&eta), p) else {
            break; // singular information: collinear design or fitted probabilities at 0/1
        };
        let step = cholesky_solve(&l, p, &grad);
        let mut scale = 1.0;
        let mut accepted = false;
        for _ in 0..40 {
            let trial: Vec<f64> = beta.iter().zip(&step).map(|(b, s)| b + scale * s).collect();
            let trial_eta = linear(&trial);
            let trial_ll = log_likelihood(&trial_eta, y, &w);
            // Accept any non-decrease (allowing rounding noise relative to the magnitude).
            if trial_ll >= ll - 1e-12 * ll.abs().max(1.0) {
                beta = trial;
                eta = trial_eta;
                ll = trial_ll;
                accepted = true;
                break;
            }
            scale *= 0.5;
        }
        let small = step
            .iter()
            .zip(&beta)
            .all(|(s, b)| (scale * s).abs() <= options.tol * (1.0 + b.abs()));
        if small {
            converged = accepted || step.iter().all(|s| s.abs() <= options.tol);
            break;
        }
        if !accepted {
            break;
        }
    }

    let std_errors = match cholesky(&information(&eta), p) {
        Some(l) if !degenerate => {
            let inv = cholesky_inverse(&l, p);
            (0..p).map(|j| inv[j * p + j].sqrt()).collect()
        }
        _ => vec![f64::NAN; p],
    };
    let separation = (0..n).any(|i| {
        let mu = sigmoid(eta[i]);
        w[i] > 0.0 && !(1e-10..=1.0 - 1e-10).contains(&mu)
    });
    let saturated: f64 = y
        .iter()
        .zip(&w)
        .map(|(&yi, &wi)| wi * (xlogx(yi) + xlogx(1.0 - yi)))
        .sum();
    Ok(LogisticFit {
        coefficients: if degenerate { vec![f64::NAN; p] } else { beta },
        std_errors,
        iterations,
        converged: converged && !degenerate,
        separation,
        log_likelihood: ll,
        deviance: 2.0 * (saturated - ll),
    })
}

/// Length-controlled preference (method.md §C10, AlpacaEval 2 `length_controlled_v1` reduced to
/// one comparison): the rate at which one side is preferred, corrected for the part explained by
/// its length advantage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LengthControl {
    /// Raw mean preference `mean(pref)`.
    pub raw: f64,
    /// Predicted preference at zero length difference, `σ(β₀)`.
    pub controlled: f64,
    /// Coefficient β₁ of `tanh(len_diff / sd)`: how strongly length moves the log-odds.
    pub slope: f64,
    /// Standard error of β₁.
    pub slope_se: f64,
    /// Two-sided Wald p-value of β₁ = 0.
    pub p_value: f64,
    /// Whether the logistic fit converged (false under separation; then `controlled` is the last
    /// iterate and should not be trusted).
    pub converged: bool,
}

/// Fits `logit P(pref) = β₀ + β₁ · tanh(len_diff / sd(len_diff))` (sd with n − 1 denominator and
/// no centring, as AlpacaEval's `std_delta_len`) on soft preferences `pref ∈ [0, 1]` (1 = the
/// side of interest wins, 0.5 = tie) and returns the raw and length-controlled rates. Because the
/// regressor is 0 at zero length difference for every item, the mean predicted preference there
/// is `σ(β₀)`.
///
/// Degenerate input: empty data gives all `NaN` with `converged = false`. When `len_diff` has no
/// spread (fewer than 2 items or all equal) there is nothing to control for: `controlled = raw`
/// (the intercept-only MLE) and slope, SE and p-value are `NaN`.
///
/// Errors: length mismatch, `pref` outside [0, 1], non-finite `len_diff`.
pub fn length_controlled_preference(
    pref: &[f64],
    len_diff: &[f64],
) -> Result<LengthControl, StatsError> {
    if pref.len() != len_diff.len() {
        return Err(StatsError::LengthMismatch {
            what: "preferences vs length differences",
            left: pref.len(),
            right: len_diff.len(),
        });
    }
    if let Some(i) = pref.iter().position(|v| !(0.0..=1.0).contains(v)) {
        return Err(StatsError::InvalidValue {
            index: i,
            detail: format!("preference {} is outside [0, 1]", pref[i]),
        });
    }
    if let Some(i) = len_diff.iter().position(|v| !v.is_finite()) {
        return Err(StatsError::InvalidValue {
            index: i,
            detail: format!("length difference {} is not finite", len_diff[i]),
        });
    }
    let n = pref.len();
    let nan = f64::NAN;
    if n == 0 {
        return Ok(LengthControl {
            raw: nan,
            controlled: nan,
            slope: nan,
            slope_se: nan,
            p_value: nan,
            converged: false,
        });
    }
    let raw = pref.iter().sum::<f64>() / n as f64;
    let sd = if n < 2 {
        0.0
    } else {
        let m = len_diff.iter().sum::<f64>() / n as f64;
        (len_diff.iter().map(|d| (d - m) * (d - m)).sum::<f64>() / (n - 1) as f64).sqrt()
    };
    if sd.is_nan() || sd <= 0.0 {
        return Ok(LengthControl {
            raw,
            controlled: raw,
            slope: nan,
            slope_se: nan,
            p_value: nan,
            converged: true,
        });
    }
    let x: Vec<[f64; 2]> = len_diff.iter().map(|d| [1.0, (d / sd).tanh()]).collect();
    let fit = logistic_regression(&x, pref, None, &LogisticOptions::default())?;
    let (slope, slope_se) = (fit.coefficients[1], fit.std_errors[1]);
    let z = slope / slope_se;
    Ok(LengthControl {
        raw,
        controlled: sigmoid(fit.coefficients[0]),
        slope,
        slope_se,
        p_value: 2.0 * normal_cdf(-z.abs()),
        converged: fit.converged,
    })
}
