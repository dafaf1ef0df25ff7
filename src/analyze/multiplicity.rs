//! Multiplicity families (method.md §D6). Each family of tests gets Holm–Bonferroni adjusted
//! p-values (confirmatory: family-wise error control; REJECT reasons need these) and
//! Benjamini–Hochberg q-values (screening: false-discovery-rate control; CAUTION may use these).
//! Every adjusted value names its family and its size, so no p-value in an output is ambiguous.
//!
//! Families (judges and juries are kept apart: juries are post hoc combinations of the same
//! verdicts and must not dilute, or be diluted by, the judges' confirmatory tests):
//! - `grid`: every judge × artifact × {T sign test, WR sign test, flip-direction McNemar};
//! - `stuart-maxwell`: every judge × artifact Stuart–Maxwell test;
//! - `soft`: every judge × artifact soft-T and soft-shift sign test (label probabilities);
//! - `length`: every judge's length slope;
//! - `category`: every judge × category flip-direction McNemar;
//! - the same five over juries, prefixed `jury-`.

use super::{Estimate, JudgeResult, StuartMaxwellResult};
use crate::stats;
use serde::{Deserialize, Serialize};

/// One family of tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FamilyInfo {
    /// Family name (as in the `p_family` / `q_family` strings).
    pub name: String,
    /// Which tests it holds.
    pub description: String,
    /// Number of tests m.
    pub tests: usize,
}

/// Something with a raw p-value that receives adjusted values.
trait Tested {
    fn raw(&self) -> Option<f64>;
    fn set(&mut self, holm: f64, p_family: &str, bh: f64, q_family: &str);
}

impl Tested for Estimate {
    fn raw(&self) -> Option<f64> {
        self.p_value
    }

    fn set(&mut self, holm: f64, p_family: &str, bh: f64, q_family: &str) {
        self.p_adjusted = Some(holm);
        self.p_family = Some(p_family.into());
        self.q_value = Some(bh);
        self.q_family = Some(q_family.into());
    }
}

impl Tested for StuartMaxwellResult {
    fn raw(&self) -> Option<f64> {
        Some(self.p_value)
    }

    fn set(&mut self, holm: f64, p_family: &str, bh: f64, q_family: &str) {
        self.p_adjusted = Some(holm);
        self.p_family = Some(p_family.into());
        self.q_value = Some(bh);
        self.q_family = Some(q_family.into());
    }
}

/// Adjust one family; `None` when it holds no test.
fn apply(name: &str, description: &str, mut items: Vec<&mut dyn Tested>) -> Option<FamilyInfo> {
    items.retain(|t| t.raw().is_some_and(|p| (0.0..=1.0).contains(&p)));
    if items.is_empty() {
        return None;
    }
    let raw: Vec<f64> = items.iter().map(|t| t.raw().unwrap_or(f64::NAN)).collect();
    let holm = stats::holm(&raw);
    let bh = stats::benjamini_hochberg(&raw);
    let m = raw.len();
    let p_family = format!("holm over {m} tests ({name}): {description}");
    let q_family = format!("benjamini-hochberg over {m} tests ({name}): {description}");
    for ((t, h), q) in items.iter_mut().zip(holm).zip(bh) {
        t.set(h, &p_family, q, &q_family);
    }
    Some(FamilyInfo {
        name: name.into(),
        description: description.into(),
        tests: m,
    })
}

fn families(results: &mut [JudgeResult], prefix: &str, who: &str) -> Vec<FamilyInfo> {
    let mut out = Vec::new();
    let mut grid: Vec<&mut dyn Tested> = Vec::new();
    let mut sm: Vec<&mut dyn Tested> = Vec::new();
    let mut soft: Vec<&mut dyn Tested> = Vec::new();
    let mut length: Vec<&mut dyn Tested> = Vec::new();
    let mut category: Vec<&mut dyn Tested> = Vec::new();
    for r in results.iter_mut() {
        for a in &mut r.artifacts {
            grid.push(&mut a.tie_detection.score);
            grid.push(&mut a.winrate_shift.shift);
            grid.push(&mut a.flip_rate.rate);
            if let Some(s) = a.stuart_maxwell.as_mut() {
                sm.push(s);
            }
            if let Some(s) = a.tie_detection.soft.as_mut() {
                soft.push(s);
            }
            if let Some(s) = a.soft_shift.as_mut() {
                soft.push(s);
            }
        }
        if let Some(l) = r.length.as_mut() {
            length.push(&mut l.slope);
        }
        for c in &mut r.categories {
            category.push(&mut c.flip_rate);
        }
    }
    let specs: [(&str, String, Vec<&mut dyn Tested>); 5] = [
        (
            "grid",
            format!("every {who} × artifact × {{T, WR, flip direction}} test of this run"),
            grid,
        ),
        (
            "stuart-maxwell",
            format!("every {who} × artifact Stuart–Maxwell test of this run"),
            sm,
        ),
        (
            "soft",
            format!("every {who} × artifact soft-T and soft-shift sign test of this run"),
            soft,
        ),
        (
            "length",
            format!("every {who}'s length-slope test of this run"),
            length,
        ),
        (
            "category",
            format!("every {who} × category flip-direction test of this run"),
            category,
        ),
    ];
    for (name, description, items) in specs {
        if let Some(info) = apply(&format!("{prefix}{name}"), &description, items) {
            out.push(info);
        }
    }
    out
}

/// Adjust every family of the judges and of the juries; returns the families used.
pub(crate) fn adjust(judges: &mut [JudgeResult], juries: &mut [JudgeResult]) -> Vec<FamilyInfo> {
    let mut out = families(judges, "", "judge");
    out.extend(families(juries, "jury-", "jury"));
    out
}
