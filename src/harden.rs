//! `judge-audit harden RUN_DIR [--holdout FRACTION]` (issue 14): from an audit's mitigations
//! section, pick for every pairwise judge the cheapest mitigation (or stack) that a judge file
//! can declare and whose residual effects pass the trust thresholds without losing gold accuracy
//! beyond the margin, and write it as `hardened/<judge>.toml` with the evidence.
//!
//! Declarable mitigations (settings the judge layer applies, [`crate::judge::mitigate`]):
//! `swap-and-confirm` → `swap_and_confirm = true`, `normalise` → `normalise = true`,
//! `bias-instruction` → `bias_instruction = "..."`, `reference` → `reference_guided = true`,
//! their stacks, and `majority-of-templates`
//! → `majority_of_templates = true` (the judge keeps its `templates`; every request is asked
//! with each). Majority over repeats, order-averaged probabilities and juries are measured in
//! the report but cannot be declared in one judge file, so they are never chosen here.
//!
//! # The pass rule: equivalence, not "covers 0"
//!
//! A residual effect passes when its whole T interval lies inside ± the equivalence margin
//! (`--margin`; default the trust thresholds' `reject_abs_t`, 0.2: the upper end of the band in
//! which a significant T is only CAUTION, never REJECT). An interval that merely covers 0 would
//! reward small samples: on 19 pairs an interval reaching +49% covers 0 and says nothing about
//! the effect being small. An interval that straddles the margin (partly inside, partly
//! beyond) is "not enough pairs to show the effect is small"; one wholly beyond it, a residual
//! effect. The margin is written into the hardened file's evidence.
//!
//! A choice made on the data it is measured on is optimistic. With `--holdout FRACTION` the
//! choice is made on the pairs *not* held out (a seeded split by pair id: the run's seed, so the
//! same run gives the same split) and the held-out pairs are written beside the hardened files
//! with an audit file that confirms the choice on them (`judge-audit run --config
//! hardened/confirm.toml`).

use crate::analyze::mitigation::{JudgeMitigations, Mitigation};
use crate::audit::{self, AuditError};
use crate::judge::JudgeConfig;
use crate::report::Summary;
use sha2::{Digest, Sha256};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// What `harden` decided for one judge.
#[derive(Debug, Clone, PartialEq)]
pub struct Hardened {
    /// The judge.
    pub judge: String,
    /// The chosen mitigation id, `None` when the judge needs none or none passes.
    pub chosen: Option<String>,
    /// The hardened judge file, when one was written.
    pub file: Option<PathBuf>,
    /// Why, with the numbers.
    pub evidence: String,
}

/// The outcome of `harden`.
#[derive(Debug, Clone, PartialEq)]
pub struct HardenReport {
    /// The equivalence margin every target's residual T interval had to lie within.
    pub margin: f64,
    /// One entry per pairwise judge of the run (derived judges, template variants and
    /// `[mitigations]` judges, excluded).
    pub judges: Vec<Hardened>,
    /// Held-out pairs written for confirmation (with `--holdout`).
    pub holdout_pairs: Option<usize>,
    /// The confirmation audit file (with `--holdout`).
    pub confirm_config: Option<PathBuf>,
}

/// True when pair `id` is held out: a hash of the run's seed and the id below `fraction`.
pub fn held_out(seed: u64, id: &str, fraction: f64) -> bool {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(b"harden-holdout\0");
    h.update(id.as_bytes());
    let x = u64::from_le_bytes(h.finalize()[..8].try_into().expect("8 bytes"));
    (x as f64 / u64::MAX as f64) < fraction
}

/// The judge-file settings of a declarable mitigation id, `None` for the others.
fn settings(id: &str) -> Option<Vec<&'static str>> {
    let mut out = Vec::new();
    for part in id.split('+') {
        out.push(match part {
            "swap-and-confirm" => "swap_and_confirm",
            "normalise" => "normalise",
            "bias-instruction" => "bias_instruction",
            "reference" => "reference_guided",
            crate::analyze::mitigation::TEMPLATE_MAJORITY => "majority_of_templates",
            _ => return None,
        });
    }
    Some(out)
}

/// How one candidate fares under the pass rule.
#[derive(Debug, Clone, PartialEq)]
enum Assessment {
    /// Every target's residual T interval lies within ± the margin, and the rest holds.
    Pass,
    /// Otherwise passing, but these targets' intervals straddle the margin (partly inside,
    /// partly beyond): not enough pairs to show the effect is small.
    Straddles(Vec<String>),
    /// Fails for another reason (unavailable, gold lost, an effect beyond the margin, a large
    /// effect left on another artifact).
    Fail,
}

/// The pass rule (module docs): available, gold accuracy kept, the residual T interval of every
/// artifact significant for the unmitigated judge within ± `margin`, and no other artifact left
/// with an effect whose interval excludes 0 at or above the REJECT size (|T| ≥ `reject_abs_t`
/// or |WR| ≥ `reject_abs_wr`), as the trust verdict only rejects effects it can tell from 0.
fn assess(
    m: &Mitigation,
    targets: &[String],
    t: &crate::analyze::TrustThresholds,
    margin: f64,
) -> Assessment {
    let large = |e: &crate::analyze::Estimate, limit: f64| {
        e.estimate.is_some_and(|x| x.abs() >= limit) && !e.covers(0.0)
    };
    let guard = m
        .artifacts
        .iter()
        .all(|a| !large(&a.t, t.reject_abs_t) && !large(&a.wr, t.reject_abs_wr));
    if !(m.available && m.keeps_gold && guard) {
        return Assessment::Fail;
    }
    // A small tolerance: an interval ending exactly at the margin is inside it.
    let inside = |x: f64| x.abs() <= margin + 1e-12;
    let mut straddling = Vec::new();
    for target in targets {
        let Some(a) = m.artifacts.iter().find(|a| &a.artifact == target) else {
            return Assessment::Fail;
        };
        let (Some(x), Some(lo), Some(hi)) = (a.t.estimate, a.t.ci_low, a.t.ci_high) else {
            return Assessment::Fail;
        };
        if inside(lo) && inside(hi) {
            continue;
        }
        // Wholly beyond the margin: the residual effect is shown not small.
        if lo > margin || hi < -margin {
            return Assessment::Fail;
        }
        straddling.push(format!(
            "{} {} T {x:+.3} [{lo:+.3}, {hi:+.3}]",
            m.id, a.artifact
        ));
    }
    if straddling.is_empty() {
        Assessment::Pass
    } else {
        Assessment::Straddles(straddling)
    }
}

/// The margin rule in words, for the evidence.
fn margin_text(margin: f64, default: bool) -> String {
    format!(
        "equivalence margin ±{margin:.3} for every significant artifact's residual T interval{}",
        if default {
            " (the trust thresholds' reject_abs_t: the upper end of the CAUTION band for T)"
        } else {
            " (--margin)"
        }
    )
}

fn evidence_of(m: &Mitigation) -> String {
    let mut out = format!(
        "{} ({}× calls{}), gold accuracy {}{}; residual effects:",
        m.id,
        m.cost_calls,
        if m.post_hoc {
            ", post hoc"
        } else {
            ", new calls"
        },
        m.gold_accuracy
            .estimate
            .map_or("n/a".into(), |g| format!("{:.1}%", 100.0 * g)),
        m.gold_accuracy_change
            .map_or(String::new(), |d| format!(" ({:+.1} points)", 100.0 * d)),
    );
    for a in &m.artifacts {
        let _ = write!(
            out,
            " {} T {} [{}, {}] (was {})",
            a.artifact,
            a.t.estimate.map_or("n/a".into(), |x| format!("{x:+.3}")),
            a.t.ci_low.map_or("–".into(), |x| format!("{x:+.3}")),
            a.t.ci_high.map_or("–".into(), |x| format!("{x:+.3}")),
            a.unmitigated_t.map_or("n/a".into(), |x| format!("{x:+.3}")),
        );
    }
    out
}

/// The cheapest declarable mitigation of `j` that passes the pass rule with `margin` (then the
/// lower residual bias, then the id), with why; `None` with why not. `margin`: `None` for the
/// default, the trust thresholds' `reject_abs_t`.
pub fn choose(
    j: &JudgeMitigations,
    trust: &crate::analyze::TrustThresholds,
    margin: Option<f64>,
) -> (Option<Mitigation>, String) {
    if j.targets.is_empty() {
        return (
            None,
            "no artifact effect is significant (Holm): the judge is left as it is, no \
             mitigation is recommended"
                .into(),
        );
    }
    let rule = margin_text(margin.unwrap_or(trust.reject_abs_t), margin.is_none());
    let margin = margin.unwrap_or(trust.reject_abs_t);
    let declarable: Vec<(&Mitigation, Assessment)> = j
        .mitigations
        .iter()
        .filter(|m| settings(&m.id).is_some())
        .map(|m| (m, assess(m, &j.targets, trust, margin)))
        .collect();
    let best = declarable
        .iter()
        .filter(|(_, a)| *a == Assessment::Pass)
        .map(|(m, _)| *m)
        .min_by(|a, b| {
            a.cost_calls
                .total_cmp(&b.cost_calls)
                .then(
                    a.residual_bias
                        .unwrap_or(f64::INFINITY)
                        .total_cmp(&b.residual_bias.unwrap_or(f64::INFINITY)),
                )
                .then(a.id.cmp(&b.id))
        });
    match best {
        Some(m) => (
            Some(m.clone()),
            format!(
                "significant artifacts {}; {rule}; chosen {}",
                j.targets.join(", "),
                evidence_of(m)
            ),
        ),
        None => {
            let straddling: Vec<String> = declarable
                .iter()
                .filter_map(|(_, a)| match a {
                    Assessment::Straddles(s) => Some(s.join(", ")),
                    _ => None,
                })
                .collect();
            let why = if straddling.is_empty() {
                String::new()
            } else {
                format!(
                    "; not enough pairs to show the effect is small: {} (the interval straddles \
                     ±{margin:.3})",
                    straddling.join("; ")
                )
            };
            (
                None,
                format!(
                    "significant artifacts {}; {rule}; no declarable mitigation (swap-and-confirm, \
                     majority-of-templates, normalise, bias-instruction or a stack of them, the \
                     last two audited with `[mitigations]` in audit.toml) brings every significant artifact's residual \
                     T interval within the margin, leaves no rejection-size effect and keeps gold \
                     accuracy within {:.0} points{why}",
                    j.targets.join(", "),
                    100.0 * crate::analyze::mitigation::GOLD_MARGIN
                ),
            )
        }
    }
}

/// The hardened judge file: `base` with the settings of `m`, relative template paths made
/// absolute (the file is written elsewhere), a header stating the evidence.
fn hardened_toml(base: &JudgeConfig, m: &Mitigation, evidence: &str, holdout: bool) -> String {
    let mut c = base.clone();
    let dir = base.base_dir();
    let absolute = |spec: &str| -> String {
        if crate::judge::template::BUILTIN_TEMPLATES
            .iter()
            .any(|(n, _)| *n == spec)
        {
            spec.to_string()
        } else {
            dir.as_ref()
                .map_or(PathBuf::from(spec), |d| d.join(spec))
                .display()
                .to_string()
        }
    };
    // The audit fills the references from the dataset; a judge file never carries them.
    c.references.clear();
    c.template = absolute(&c.template);
    c.templates = c.templates.iter().map(|t| absolute(t)).collect();
    for s in settings(&m.id).unwrap_or_default() {
        match s {
            "swap_and_confirm" => c.swap_and_confirm = true,
            "normalise" => c.normalise = true,
            "majority_of_templates" => c.majority_of_templates = true,
            "reference_guided" => c.reference_guided = true,
            _ => {
                c.bias_instruction = Some(
                    c.bias_instruction
                        .clone()
                        .unwrap_or_else(|| crate::judge::mitigate::DEFAULT_BIAS_INSTRUCTION.into()),
                )
            }
        }
    }
    let body = toml::to_string(&c).unwrap_or_default();
    let mut out = format!(
        "# Hardened by `judge-audit harden` from judge `{}`: {}.\n",
        base.name, m.id
    );
    for line in textwrap(evidence, 96) {
        let _ = writeln!(out, "# {line}");
    }
    let _ = writeln!(
        out,
        "# {}\n",
        if holdout {
            "Chosen on the pairs not held out; confirm it on the held-out pairs: judge-audit run --config confirm.toml"
        } else {
            "Chosen on the same data it was measured on (optimistic): confirm it on held-out pairs (harden --holdout FRACTION)"
        }
    );
    out.push_str(&body);
    out
}

fn textwrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let last = lines.last_mut().expect("one line");
        if !last.is_empty() && last.len() + 1 + word.len() > width {
            lines.push(word.to_string());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines
}

/// Harden every pairwise judge of the run in `run_dir`; files go to `out` (default
/// `RUN_DIR/hardened`). `holdout`: the share of pairs held out for confirmation, in (0, 1).
/// The equivalence margin is the default (the trust thresholds' `reject_abs_t`).
pub fn harden(
    run_dir: &Path,
    holdout: Option<f64>,
    out: Option<&Path>,
) -> Result<HardenReport, AuditError> {
    harden_with_margin(run_dir, holdout, out, None)
}

/// [`harden`] with an equivalence margin (`--margin`, in (0, 1]; `None`: the default).
pub fn harden_with_margin(
    run_dir: &Path,
    holdout: Option<f64>,
    out: Option<&Path>,
    margin: Option<f64>,
) -> Result<HardenReport, AuditError> {
    if let Some(f) = holdout
        && !(f > 0.0 && f < 1.0)
    {
        return Err(AuditError::Config(format!(
            "--holdout: {f} is outside (0, 1)"
        )));
    }
    if let Some(m) = margin
        && !(m > 0.0 && m <= 1.0)
    {
        return Err(AuditError::Config(format!(
            "--margin: {m} is outside (0, 1]"
        )));
    }
    let out = out.map_or_else(|| run_dir.join("hardened"), Path::to_path_buf);
    let io = |e: std::io::Error| AuditError::Config(format!("{}: {e}", out.display()));
    let (summary, prepared): (Summary, audit::Prepared) = match holdout {
        Some(f) => {
            let seed = audit::prepare_stored(run_dir)?.seed;
            audit::summarize_stored_pairs(run_dir, &|p| !held_out(seed, &p.id, f))?
        }
        None => (
            audit::summarize_stored(run_dir)?,
            audit::prepare_stored(run_dir)?,
        ),
    };
    let section = summary.mitigations.as_ref().ok_or_else(|| {
        AuditError::Config(format!(
            "{}: the run has no mitigations section (a pairwise judge is needed)",
            run_dir.display()
        ))
    })?;
    std::fs::create_dir_all(&out).map_err(io)?;
    let mut judges = Vec::new();
    let mut files = Vec::new();
    for j in &section.judges {
        let Some(base) = prepared
            .judges
            .iter()
            .find(|h| h.config.name == j.judge)
            .map(|h| h.config.clone())
        else {
            continue;
        };
        // A derived judge (a template variant) is hardened through its base judge's file.
        if base.variant_of.is_some() {
            continue;
        }
        let (m, evidence) = choose(j, &prepared.trust, margin);
        let base = Some(base);
        let file = match (&m, base) {
            (Some(m), Some(base)) => {
                let path = out.join(format!("{}.toml", j.judge));
                std::fs::write(&path, hardened_toml(&base, m, &evidence, holdout.is_some()))
                    .map_err(io)?;
                files.push(path.clone());
                Some(path)
            }
            _ => None,
        };
        judges.push(Hardened {
            judge: j.judge.clone(),
            chosen: m.map(|m| m.id),
            file,
            evidence,
        });
    }
    let (mut holdout_pairs, mut confirm_config) = (None, None);
    if let Some(f) = holdout.filter(|_| !files.is_empty()) {
        let full = audit::prepare_stored(run_dir)?;
        let mut jsonl = String::new();
        let mut n = 0;
        for p in full
            .dataset
            .pairs
            .iter()
            .filter(|p| held_out(full.seed, &p.id, f))
        {
            jsonl.push_str(
                &serde_json::to_string(p).map_err(|e| AuditError::Config(e.to_string()))?,
            );
            jsonl.push('\n');
            n += 1;
        }
        std::fs::write(out.join("holdout-pairs.jsonl"), jsonl).map_err(io)?;
        let design = &full.snapshot.design;
        let artifacts: Vec<String> = full
            .artifacts
            .iter()
            .map(|a| format!("{:?}", a.id))
            .collect();
        let names: Vec<String> = files
            .iter()
            .filter_map(|p| p.file_name())
            .map(|f| format!("{:?}", f.to_string_lossy()))
            .collect();
        let config = format!(
            "# Confirms the hardened judges on the {n} pairs `harden --holdout {f}` held out \
             (not used to choose).\nseed = {}\njudges = [{}]\n\n[dataset]\npath = \
             \"holdout-pairs.jsonl\"\n\n[design]\nrepeats = {}\nartifacts = [{}]\n",
            full.seed,
            names.join(", "),
            design.repeats,
            artifacts.join(", ")
        );
        let path = out.join("confirm.toml");
        std::fs::write(&path, config).map_err(io)?;
        holdout_pairs = Some(n);
        confirm_config = Some(path);
    }
    Ok(HardenReport {
        margin: margin.unwrap_or(prepared.trust.reject_abs_t),
        judges,
        holdout_pairs,
        confirm_config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::Estimate;
    use crate::analyze::mitigation::MitigatedArtifact;

    fn t(x: f64, lo: f64, hi: f64) -> Estimate {
        Estimate {
            estimate: Some(x),
            ci_low: Some(lo),
            ci_high: Some(hi),
            n: 40,
            ..Estimate::empty("cluster bootstrap")
        }
    }

    fn entry(id: &str, cost: f64, apology: Estimate) -> Mitigation {
        Mitigation {
            id: id.into(),
            label: id.into(),
            post_hoc: true,
            available: true,
            note: None,
            cost_calls: cost,
            cost_tokens: None,
            gold_accuracy: Estimate::empty("wilson"),
            gold_accuracy_change: Some(0.0),
            artifacts: vec![MitigatedArtifact {
                artifact: "apology".into(),
                t: apology,
                wr: t(0.0, -0.05, 0.05),
                flip_rate: Estimate::empty("wilson"),
                unmitigated_t: Some(0.6),
                unmitigated_wr: None,
                unmitigated_flip_rate: None,
                flip_test: None,
            }],
            residual_bias: Some(0.0),
            unmitigated_bias: Some(0.6),
            bias_removed_per_extra_call: None,
            rank: None,
            removes_targets: true,
            keeps_gold: true,
        }
    }

    fn judge(mitigations: Vec<Mitigation>) -> JudgeMitigations {
        JudgeMitigations {
            judge: "j".into(),
            simulated: false,
            targets: vec!["apology".into()],
            mitigations,
            recommended: None,
            recommendation: String::new(),
        }
    }

    #[test]
    fn equivalence_margin_decides_and_majority_of_templates_is_a_candidate() {
        let trust = crate::analyze::TrustThresholds::default();
        // Swap-and-confirm (2×) covers 0 but straddles ±0.2; the majority over three templates
        // (3×) lies within it; majority over repeats passes too but is not declarable.
        let j = judge(vec![
            entry("swap-and-confirm", 2.0, t(0.05, -0.1, 0.3)),
            entry("majority-of-templates", 3.0, t(0.02, -0.08, 0.12)),
            entry("majority-of-repeats", 2.0, t(0.0, -0.01, 0.01)),
        ]);
        let (m, evidence) = choose(&j, &trust, None);
        assert_eq!(m.unwrap().id, "majority-of-templates");
        assert!(evidence.contains("equivalence margin ±0.200"), "{evidence}");
        // A margin of 0.3 lets the cheaper swap-and-confirm through.
        let (m, evidence) = choose(&j, &trust, Some(0.3));
        assert_eq!(m.unwrap().id, "swap-and-confirm");
        assert!(
            evidence
                .contains("±0.300 for every significant artifact's residual T interval (--margin)")
        );
        // Only the straddling one: nothing, and why.
        let j = judge(vec![entry("swap-and-confirm", 2.0, t(0.05, -0.1, 0.3))]);
        let (m, evidence) = choose(&j, &trust, None);
        assert!(m.is_none());
        assert!(
            evidence.contains(
                "not enough pairs to show the effect is small: swap-and-confirm apology T +0.050 \
                 [-0.100, +0.300] (the interval straddles ±0.200)"
            ),
            "{evidence}"
        );
        // Wholly beyond the margin: a residual effect, not a lack of pairs.
        let j = judge(vec![entry("swap-and-confirm", 2.0, t(0.4, 0.25, 0.55))]);
        let (m, evidence) = choose(&j, &trust, None);
        assert!(m.is_none());
        assert!(!evidence.contains("not enough pairs"), "{evidence}");
        // An interval within the margin that excludes 0 passes: small is shown, not zero.
        let j = judge(vec![entry("swap-and-confirm", 2.0, t(0.1, 0.02, 0.18))]);
        assert!(choose(&j, &trust, None).0.is_some());
    }

    #[test]
    fn a_hardened_majority_keeps_the_templates() {
        let mut base = JudgeConfig::new("j", crate::judge::config::Backend::Sim);
        base.templates = vec!["chen-safety-paraphrase".into()];
        let m = entry("majority-of-templates", 2.0, t(0.0, -0.1, 0.1));
        let text = hardened_toml(&base, &m, "evidence", true);
        let c = JudgeConfig::from_toml_str(text.split_once("\n\n").unwrap().1, "h.toml").unwrap();
        assert!(c.majority_of_templates);
        assert_eq!(c.templates, ["chen-safety-paraphrase"]);
        assert!(!c.swap_and_confirm);
        // Reference-guided: the setting is written, the audit-filled references are not.
        base.references.insert("p0".into(), "R".into());
        let m = entry("reference+swap-and-confirm", 2.0, t(0.0, -0.1, 0.1));
        let text = hardened_toml(&base, &m, "evidence", true);
        let c = JudgeConfig::from_toml_str(text.split_once("\n\n").unwrap().1, "h.toml").unwrap();
        assert!(c.reference_guided && c.swap_and_confirm);
        assert!(c.references.is_empty());
    }
}
