//! Multiplicity families (method.md §D6). Each family of tests gets Holm–Bonferroni adjusted
//! p-values (confirmatory: family-wise error control; REJECT reasons need these) and
//! Benjamini–Hochberg q-values (screening: false-discovery-rate control; CAUTION may use these).
//! Every adjusted value names its family and its size, so no p-value in an output is ambiguous.
//!
//! The family matches the decision. The adoption decision is made per judge, so by default
//! (`[design] multiplicity = "judge"`) each judge (and each jury) is its own family: its ADOPT /
//! CAUTION / REJECT does not depend on how many other judges happen to share the run, and its
//! false-flag rate is controlled at α per judge (tests/calibration.rs). `multiplicity = "run"`
//! pools every judge of the run instead (family-wise control over the whole run, the stricter
//! choice when one question is asked of all judges at once).
//!
//! Families (judges and juries are kept apart: juries are post hoc combinations of the same
//! verdicts and must not dilute, or be diluted by, the judges' confirmatory tests):
//! - `grid`: artifact × {T sign test, WR sign test, flip-direction McNemar};
//! - `stuart-maxwell`: artifact Stuart–Maxwell tests;
//! - `soft`: artifact soft-T and soft-shift sign tests (label probabilities);
//! - `length`: the length slope;
//! - `category`: category flip-direction McNemar tests;
//!
//! each of one judge, named `grid[JUDGE]` etc. (per judge), or of every judge of the run (`grid`
//! etc.); the same five over juries, prefixed `jury-`.

use super::{Estimate, JudgeResult, StuartMaxwellResult};
use crate::stats;
use serde::{Deserialize, Serialize};

/// Which tests share a multiplicity family (`[design] multiplicity` in `audit.toml`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Multiplicity {
    /// One family per judge (and per jury): the default, matching the per-judge decision.
    #[default]
    Judge,
    /// One family over every judge of the run (and one over every jury).
    Run,
}

impl Multiplicity {
    /// Confirmatory family size of one judge's artifact grid: its artifacts × 3 tests, times the
    /// number of judges (or juries) when the family is the whole run. Used for the minimum
    /// detectable effects, which must be computed at the α the tests will really face.
    pub fn grid_family_size(self, subjects: usize, artifacts: usize) -> u64 {
        let per_subject = (artifacts * 3) as u64;
        match self {
            Multiplicity::Judge => per_subject,
            Multiplicity::Run => per_subject * subjects as u64,
        }
    }
}

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
    debug_assert_eq!(short_family(Some(&p_family)), format!("{m} tests ({name})"));
    for ((t, h), q) in items.iter_mut().zip(holm).zip(bh) {
        t.set(h, &p_family, q, &q_family);
    }
    Some(FamilyInfo {
        name: name.into(),
        description: description.into(),
        tests: m,
    })
}

/// The family of an adjusted p-value in a few words, for labels: "33 tests (grid[judge-a])".
/// `p_family` is the string `apply` writes (`holm over M tests (NAME): DESCRIPTION`).
pub(crate) fn short_family(p_family: Option<&str>) -> String {
    let Some(text) = p_family else {
        return "no family".into();
    };
    let text = text
        .strip_prefix("holm over ")
        .or_else(|| text.strip_prefix("benjamini-hochberg over "))
        .unwrap_or(text);
    match text.find("): ") {
        Some(end) => text[..=end].to_string(),
        None => text.to_string(),
    }
}

/// `who` names the subjects ("judge" / "jury"); `subject` is `Some(name)` for a per-judge family.
fn families(
    results: &mut [JudgeResult],
    prefix: &str,
    who: &str,
    subject: Option<&str>,
) -> Vec<FamilyInfo> {
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
    // "every judge × artifact … of this run" or "every artifact … of judge X".
    let (each, of, suffix) = match subject {
        Some(name) => (
            String::new(),
            format!("of {who} {name}"),
            format!("[{name}]"),
        ),
        None => (
            format!("{who} × "),
            "of this run".to_string(),
            String::new(),
        ),
    };
    let specs: [(&str, String, Vec<&mut dyn Tested>); 5] = [
        (
            "grid",
            format!("every {each}artifact × {{T, WR, flip direction}} test {of}"),
            grid,
        ),
        (
            "stuart-maxwell",
            format!("every {each}artifact Stuart–Maxwell test {of}"),
            sm,
        ),
        (
            "soft",
            format!("every {each}artifact soft-T and soft-shift sign test {of}"),
            soft,
        ),
        (
            "length",
            match subject {
                Some(_) => format!("the length-slope test {of}"),
                None => format!("every {who}'s length-slope test {of}"),
            },
            length,
        ),
        (
            "category",
            format!("every {each}category flip-direction test {of}"),
            category,
        ),
    ];
    for (name, description, items) in specs {
        if let Some(info) = apply(&format!("{prefix}{name}{suffix}"), &description, items) {
            out.push(info);
        }
    }
    out
}

/// Adjust every family of the judges and of the juries; returns the families used.
pub(crate) fn adjust(
    judges: &mut [JudgeResult],
    juries: &mut [JudgeResult],
    scope: Multiplicity,
) -> Vec<FamilyInfo> {
    match scope {
        Multiplicity::Run => {
            let mut out = families(judges, "", "judge", None);
            out.extend(families(juries, "jury-", "jury", None));
            out
        }
        Multiplicity::Judge => {
            let mut out = Vec::new();
            for (results, prefix, who) in [(judges, "", "judge"), (juries, "jury-", "jury")] {
                for r in results.iter_mut() {
                    let name = r.name.clone();
                    out.extend(families(std::slice::from_mut(r), prefix, who, Some(&name)));
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::short_family;

    #[test]
    fn short_family_names_the_size_and_the_family() {
        assert_eq!(
            short_family(Some(
                "holm over 33 tests (grid[sim-a]): every artifact × {T, WR, flip direction} test of judge sim-a"
            )),
            "33 tests (grid[sim-a])"
        );
        assert_eq!(
            short_family(Some(
                "holm over 111 tests (grid): every judge × artifact … of this run"
            )),
            "111 tests (grid)"
        );
        assert_eq!(short_family(None), "no family");
    }
}
