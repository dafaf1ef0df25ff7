//! Number formatting, in one place for every exporter: each kind of number has one function, so
//! a count is never printed as a percentage and a rate never as a bare fraction.
//!
//! Rates and shares are fractions in the summary and percentages on the page; counts are
//! integers with thousands separators; sizes of test families are "126 tests"; coefficients (κ,
//! α, ρ) keep two decimals; p-values keep three (or an exponent when tiny).

use crate::analyze::Estimate;

/// A rate or share: `0.4167` → `41.7%`.
pub fn rate(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// A signed effect in percentage points of its scale: `0.25` → `+25.0%`; values that round to
/// zero print as `0.0%` (never `-0.0%`).
pub fn signed(x: f64) -> String {
    let v = 100.0 * x;
    if v.abs() < 0.05 {
        "0.0%".into()
    } else {
        format!("{v:+.1}%")
    }
}

/// An axis tick: `0.25` → `25%`.
pub fn tick(x: f64) -> String {
    format!("{:.0}%", 100.0 * x)
}

/// A signed axis tick: `0.5` → `+50%`, zero as `0`.
pub fn signed_tick(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else {
        format!("{:+.0}%", 100.0 * x)
    }
}

/// A rate or signed effect in percentage points without the `%` sign, for compact chart cells
/// whose header carries the unit: `0.417` → `41.7` (or `+41.7`).
pub fn points(x: f64, is_signed: bool) -> String {
    value(x, is_signed).trim_end_matches('%').to_string()
}

/// A rate or a signed effect, as chosen by `signed`.
pub fn value(x: f64, is_signed: bool) -> String {
    if is_signed { signed(x) } else { rate(x) }
}

/// A count: `12345` → `12,345`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A count with its unit, singular or plural: `(126, "test")` → `126 tests`.
pub fn counted(n: u64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{} {unit}s", count(n))
    }
}

/// A coefficient (κ, α, correlation, weight): two decimals.
pub fn coef(x: f64) -> String {
    format!("{x:.2}")
}

/// A p- or q-value in a compact, exact-enough form.
pub fn p(p: f64) -> String {
    if p < 0.001 {
        format!("{p:.1e}")
    } else {
        format!("{p:.3}")
    }
}

/// An optional number through `f`, or `–`.
pub fn opt(x: Option<f64>, f: fn(f64) -> String) -> String {
    x.map_or("–".to_string(), f)
}

/// `[41.7%, 70.8%] n=96`, or `n=0` alone when there is no interval.
pub fn interval(e: &Estimate, is_signed: bool) -> String {
    interval_with(e, |x| value(x, is_signed))
}

/// `[+41.7, +70.8] n=96`: [`interval`] in percentage points without `%`, for compact chart
/// cells whose header carries the unit.
pub fn interval_points(e: &Estimate, is_signed: bool) -> String {
    interval_with(e, |x| points(x, is_signed))
}

fn interval_with(e: &Estimate, f: impl Fn(f64) -> String) -> String {
    match (e.ci_low, e.ci_high) {
        (Some(l), Some(h)) => format!("[{}, {}] n={}", f(l), f(h), e.n),
        _ => format!("n={}", e.n),
    }
}

/// The p-values an estimate carries, each labelled: `["p 0.012", "Holm 0.036", "BH q 0.030"]`
/// (the raw p, Holm-adjusted within its family, BH q), skipping those it lacks.
pub fn p_values(e: &Estimate) -> Vec<String> {
    [
        ("p", e.p_value),
        ("Holm", e.p_adjusted),
        ("BH q", e.q_value),
    ]
    .into_iter()
    .filter_map(|(label, v)| v.map(|v| format!("{label} {}", p(v))))
    .collect()
}

/// An estimate with its interval and n: `58.3% [41.7%, 70.8%] n=96`, or `n/a (n=0)`.
pub fn estimate(e: &Estimate, is_signed: bool) -> String {
    match e.estimate {
        Some(v) => format!("{} {}", value(v, is_signed), interval(e, is_signed)),
        None => format!("n/a (n={})", e.n),
    }
}

/// A coefficient estimate with its interval and n: `0.41 [0.22, 0.60] n=96`.
pub fn coef_estimate(e: &Estimate) -> String {
    match (e.estimate, e.ci_low, e.ci_high) {
        (Some(v), Some(l), Some(h)) => format!("{v:.2} [{l:.2}, {h:.2}] n={}", e.n),
        (Some(v), _, _) => format!("{v:.2} n={}", e.n),
        _ => format!("n/a (n={})", e.n),
    }
}

/// A change between two rates in percentage points: `0.012` → `+1.2 pp`, or `–`.
pub fn delta_points(d: Option<f64>) -> String {
    d.map(|d| format!("{:+.1} pp", 100.0 * d))
        .unwrap_or_else(|| "–".into())
}

/// A US-dollar amount: `0.385` → `$0.39`.
pub fn usd(x: f64) -> String {
    format!("${x:.2}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_in_its_unit() {
        assert_eq!(rate(0.41666), "41.7%");
        assert_eq!(signed(-0.0004), "0.0%");
        assert_eq!(signed(0.25), "+25.0%");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(counted(126, "test"), "126 tests");
        assert_eq!(counted(1, "pair"), "1 pair");
        assert_eq!(p(0.0004), "4.0e-4");
        assert_eq!(p(0.0123), "0.012");
        assert_eq!(delta_points(Some(0.012)), "+1.2 pp");
        assert_eq!(delta_points(None), "–");
        let e = Estimate {
            estimate: Some(0.5),
            ci_low: Some(0.25),
            ci_high: Some(0.75),
            n: 8,
            p_value: Some(0.0123),
            q_value: Some(0.5),
            ..Estimate::default()
        };
        assert_eq!(interval(&e, true), "[+25.0%, +75.0%] n=8");
        assert_eq!(interval_points(&e, true), "[+25.0, +75.0] n=8");
        assert_eq!(p_values(&e), ["p 0.012", "BH q 0.500"]);
    }
}
