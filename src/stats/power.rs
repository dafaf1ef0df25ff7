//! Power and sample size for the exact sign test and the exact McNemar test (method.md §D1–D2),
//! computed by exact binomial enumeration, plus Connor's (1987) normal-approximation sample size
//! for a difference of two paired proportions.
//!
//! Exact tests have saw-toothed power in n: adding a pair can lower power because the discrete
//! rejection region shifts. "Pairs needed" is therefore the smallest n whose power reaches the
//! target, and a slightly larger n may fall just below it again.

use super::special::{binomial_cdf, binomial_pmf, binomial_sf_ge, normal_cdf, normal_quantile};
use super::tests::mcnemar_exact;

/// Largest k ≤ n/2 such that observing k (or n − k) successes out of n rejects the two-sided
/// exact sign test at level `alpha` (`mcnemar_exact(k, n − k) ≤ alpha`); `None` when no outcome
/// can reject (e.g. n < 6 at α = 0.05, since 2·0.5⁵ = 0.0625).
pub fn sign_test_rejection_bound(n: u64, alpha: f64) -> Option<u64> {
    if n == 0 || alpha.is_nan() || mcnemar_exact(0, n) > alpha {
        return None;
    }
    // The p-value is non-decreasing in k on [0, n/2]: binary search for the last rejecting k.
    let (mut lo, mut hi) = (0u64, n / 2);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if mcnemar_exact(mid, n - mid) <= alpha {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(lo)
}

/// Exact power of the two-sided exact sign test with `n` non-tied pairs when P(+) = `p_alt`:
/// `P(X ≤ k) + P(X ≥ n − k)` for X ~ Bin(n, p_alt) and the rejection bound k of
/// [`sign_test_rejection_bound`]. 0 when no outcome can reject; `NaN` for p_alt outside [0, 1].
pub fn sign_test_power(n: u64, p_alt: f64, alpha: f64) -> f64 {
    if !(0.0..=1.0).contains(&p_alt) || alpha.is_nan() {
        return f64::NAN;
    }
    match sign_test_rejection_bound(n, alpha) {
        None => 0.0,
        Some(k) => (binomial_cdf(k, n, p_alt) + binomial_sf_ge(n - k, n, p_alt)).min(1.0),
    }
}

/// Caches the sign-test power for every discordant count D, which is all the McNemar power needs.
struct ConditionalPower {
    toward_share: f64,
    alpha: f64,
    by_d: Vec<f64>,
}

impl ConditionalPower {
    fn get(&mut self, d: u64) -> f64 {
        while self.by_d.len() as u64 <= d {
            let next = self.by_d.len() as u64;
            self.by_d
                .push(sign_test_power(next, self.toward_share, self.alpha));
        }
        self.by_d[d as usize]
    }

    /// Unconditional power for `n` pairs: Σ_D Bin(D; n, d)·power(D), over D within 12 standard
    /// deviations of the mean (the neglected mass is below 1e-30).
    fn total(&mut self, n: u64, discordant_rate: f64) -> f64 {
        let mean = n as f64 * discordant_rate;
        let sd = (mean * (1.0 - discordant_rate)).sqrt();
        let lo = (mean - 12.0 * sd - 2.0).max(0.0).floor() as u64;
        let hi = ((mean + 12.0 * sd + 2.0).ceil() as u64).min(n);
        (lo..=hi)
            .map(|d| binomial_pmf(d, n, discordant_rate) * self.get(d))
            .sum::<f64>()
            .min(1.0)
    }
}

fn valid_rates(discordant_rate: f64, toward_share: f64, alpha: f64) -> bool {
    (0.0..=1.0).contains(&discordant_rate)
        && (0.0..=1.0).contains(&toward_share)
        && alpha > 0.0
        && alpha < 1.0
}

/// Exact power of the exact McNemar (sign) test on `n_pairs` paired items when each item is
/// discordant (its verdict moves) with probability `discordant_rate`, and a discordant item moves
/// toward the perturbed answer with probability `toward_share`. The number of discordant items
/// D ~ Bin(n, discordant_rate) is random; given D the test is the sign test:
/// `power = Σ_D Bin(D; n, d) · sign_test_power(D, toward_share, α)`. `NaN` for invalid rates or α.
pub fn shift_test_power(n_pairs: u64, discordant_rate: f64, toward_share: f64, alpha: f64) -> f64 {
    if !valid_rates(discordant_rate, toward_share, alpha) {
        return f64::NAN;
    }
    ConditionalPower {
        toward_share,
        alpha,
        by_d: Vec::new(),
    }
    .total(n_pairs, discordant_rate)
}

/// Smallest number of pairs n ≤ `max_pairs` for which [`shift_test_power`] reaches `power`;
/// `None` if none does (including a directionless shift `toward_share == 0.5`, a zero discordant
/// rate, or invalid arguments). Cost is about `max_pairs · 24·sd(D)` point probabilities.
pub fn pairs_needed_for_shift(
    discordant_rate: f64,
    toward_share: f64,
    alpha: f64,
    power: f64,
    max_pairs: u64,
) -> Option<u64> {
    if !(valid_rates(discordant_rate, toward_share, alpha) && power > 0.0 && power <= 1.0) {
        return None;
    }
    let mut cache = ConditionalPower {
        toward_share,
        alpha,
        by_d: Vec::new(),
    };
    (1..=max_pairs).find(|&n| cache.total(n, discordant_rate) >= power)
}

/// Smallest shift δ ≥ 0 such that the two-sided exact sign test with `n` non-tied pairs at level
/// `alpha` has power ≥ `power` against P(+) = ½ + δ (found by bisection to 1e-12; power is
/// increasing in δ for a fixed symmetric rejection region). `Some(0.0)` if the test's own size
/// already reaches `power`; `None` when no outcome can reject (n too small) or the arguments are
/// invalid. The shift is symmetric: ½ − δ has the same power.
pub fn minimum_detectable_effect(n: u64, alpha: f64, power: f64) -> Option<f64> {
    if !(alpha > 0.0 && alpha < 1.0 && power > 0.0 && power <= 1.0) {
        return None;
    }
    sign_test_rejection_bound(n, alpha)?;
    if sign_test_power(n, 0.5, alpha) >= power {
        return Some(0.0);
    }
    let (mut lo, mut hi) = (0.0f64, 0.5f64);
    if sign_test_power(n, 1.0, alpha) < power {
        return None;
    }
    while hi - lo > 1e-12 {
        let mid = 0.5 * (lo + hi);
        if sign_test_power(n, 0.5 + mid, alpha) >= power {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// Normal-approximation number of pairs for McNemar's test of a difference between two paired
/// proportions (Connor 1987, Biometrics 43:207–211):
/// `n = [z_{1−α/2} √ψ + z_{power} √(ψ − δ²)]² / δ²` with ψ = p10 + p01 (discordant probability) and
/// δ = p10 − p01 (the excess rate, e.g. items that flip under the artifact but not on a re-run
/// minus the reverse). Returned unrounded; take `ceil`. `None` when δ = 0, ψ > 1 or the
/// arguments are outside their ranges.
pub fn paired_flip_pairs_needed_normal(p10: f64, p01: f64, alpha: f64, power: f64) -> Option<f64> {
    let psi = p10 + p01;
    let delta = p10 - p01;
    let valid = p10 >= 0.0 && p01 >= 0.0 && psi <= 1.0 && delta != 0.0;
    if !(valid && alpha > 0.0 && alpha < 1.0 && power > 0.0 && power < 1.0) {
        return None;
    }
    let za = normal_quantile(1.0 - alpha / 2.0);
    let zb = normal_quantile(power);
    let root = za * psi.sqrt() + zb * (psi - delta * delta).sqrt();
    Some(root * root / (delta * delta))
}

/// Power of the normal-approximation McNemar test for `n` pairs (inverse of
/// [`paired_flip_pairs_needed_normal`]): `Φ((|δ|√n − z_{1−α/2} √ψ) / √(ψ − δ²))`.
/// `NaN` for arguments outside their ranges.
pub fn paired_flip_power_normal(n: f64, p10: f64, p01: f64, alpha: f64) -> f64 {
    let psi = p10 + p01;
    let delta = p10 - p01;
    if !(p10 >= 0.0 && p01 >= 0.0 && psi <= 1.0 && n >= 0.0 && alpha > 0.0 && alpha < 1.0) {
        return f64::NAN;
    }
    let za = normal_quantile(1.0 - alpha / 2.0);
    normal_cdf((delta.abs() * n.sqrt() - za * psi.sqrt()) / (psi - delta * delta).sqrt())
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn normal_power_inverts_sample_size() {
        let n = paired_flip_pairs_needed_normal(0.15, 0.05, 0.05, 0.8).unwrap();
        assert!((paired_flip_power_normal(n, 0.15, 0.05, 0.05) - 0.8).abs() < 1e-9);
    }
}
