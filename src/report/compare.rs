//! `compare.md` and `compare.json`: the rendering of a typed [`Comparison`] (computed by
//! [`crate::analyze::compare`]; nothing here is a statistic).

use super::markdown::{cell_text as md_cell, escape as md, p_text};
pub use crate::analyze::compare::*;
use crate::analyze::pointwise_summary::GradeScale;
use std::fmt::Write;

/// A Markdown code span for an untrusted identifier (backticks and line breaks removed).
fn code(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| match c {
            '`' => '\'',
            '\n' | '\r' | '|' => ' ',
            c => c,
        })
        .collect();
    format!("`{clean}`")
}

fn signed(metric: &str) -> bool {
    matches!(metric, "T" | "WR" | "excess_flip_rate")
}

fn value_text(v: &Value, signed: bool) -> String {
    let e = crate::analyze::Estimate {
        estimate: v.estimate,
        ci_low: v.ci_low,
        ci_high: v.ci_high,
        n: v.n,
        ..Default::default()
    };
    super::format::estimate(&e, signed)
}

fn metric_label(metric: &str) -> &str {
    match metric {
        "noise_flip_rate" => "run-to-run flip rate",
        "position_consistency" => "position consistency",
        "gold_accuracy" => "gold accuracy",
        "flip_rate" => "flip rate",
        "excess_flip_rate" => "excess flip rate",
        m => m,
    }
}

/// `## name (SIMULATED judge)<kind>: A → B` and a blank line.
fn judge_heading(
    out: &mut String,
    name: &str,
    simulated: bool,
    kind: &str,
    verdict: &(String, String),
) {
    let _ = writeln!(
        out,
        "## {}{}{kind}: {} → {}\n",
        md(name),
        if simulated { " (SIMULATED judge)" } else { "" },
        verdict.0,
        verdict.1
    );
}

/// Render `compare.md`.
pub fn render_markdown(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# judge-audit compare\n");
    for (label, m) in [("A", &c.run_a), ("B", &c.run_b)] {
        let _ = writeln!(
            out,
            "- **{label}**: {} (dataset {} sha256 {}, {} pairs, seed {}, {} calls, judge-audit {})",
            code(&m.dir),
            md(&m.dataset),
            code(&short(&m.dataset_hash)),
            m.pairs,
            m.seed,
            m.calls,
            md(&m.tool_version)
        );
    }
    out.push('\n');
    for w in &c.warnings {
        let _ = writeln!(out, "> **Warning:** {}\n", md(w));
    }
    if !c.judges_only_in_a.is_empty() || !c.judges_only_in_b.is_empty() {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.iter().map(|s| md(s)).collect::<Vec<_>>().join(", ")
            }
        };
        let _ = writeln!(
            out,
            "Judges only in A: {}. Judges only in B: {}.\n",
            list(&c.judges_only_in_a),
            list(&c.judges_only_in_b)
        );
    }
    let _ = writeln!(
        out,
        "How to read: Δ = B − A in percentage points. Paired tests use only call ids present in both runs with a valid verdict in both; each row tests one binary outcome with an exact McNemar test on the discordant calls (*A only*: outcome in A but not in B). p-values are raw / Bonferroni over the {} paired tests of this comparison. Shares carry Wilson 95% intervals.\n",
        c.tests
    );
    if !c.pointwise_judges.is_empty() {
        let _ = writeln!(
            out,
            "Pointwise judges are paired call by call on each criterion's grade: a score criterion on the change B − A (an exact Wilcoxon signed-rank test on the pairs' mean changes, the pair being the unit as in the audit's own score-shift test), a label criterion on whether the grade is the positive label (exact McNemar). Unparseable or off-scale grades are counted as unmatched, never paired. Score shifts and run-to-run SD are in points of the judge's scale.\n"
        );
    }
    for j in &c.judges {
        judge_heading(&mut out, &j.name, j.simulated, "", &j.verdict);
        let _ = writeln!(out, "| metric | A | B | Δ |\n|---|---|---|---|");
        for m in &j.baseline {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                metric_label(&m.metric),
                value_text(&m.a, false),
                value_text(&m.b, false),
                super::format::delta_points(m.delta)
            );
        }
        if !j.artifacts.is_empty() {
            let _ = writeln!(
                out,
                "\n| artifact | metric | A | B | Δ |\n|---|---|---|---|---|"
            );
            for a in &j.artifacts {
                for m in &a.metrics {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {} | {} |",
                        md_cell(&a.artifact),
                        metric_label(&m.metric),
                        value_text(&m.a, signed(&m.metric)),
                        value_text(&m.b, signed(&m.metric)),
                        super::format::delta_points(m.delta)
                    );
                }
            }
        }
        if !j.conditions.is_empty() {
            let _ = writeln!(
                out,
                "\n| condition | shared calls | verdicts changed | outcome | A | B | A only / B only | p raw / Bonferroni |\n|---|---|---|---|---|---|---|---|"
            );
            for cond in &j.conditions {
                for t in &cond.tests {
                    let mark = if t.p_bonferroni < crate::analyze::ALPHA {
                        " **✱**"
                    } else {
                        ""
                    };
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {} | {} | {} | {} / {} | {} / {}{mark} |",
                        md_cell(&cond.condition),
                        cond.shared,
                        cond.changed,
                        md_cell(&t.outcome),
                        value_text(&t.a, false),
                        value_text(&t.b, false),
                        t.a_only,
                        t.b_only,
                        p_text(t.p_value),
                        p_text(t.p_bonferroni)
                    );
                }
            }
            let changed: Vec<ChangedCalls<'_>> = j
                .conditions
                .iter()
                .map(|c| ChangedCalls {
                    condition: &c.condition,
                    changed: c.changed,
                    pairs: Some(c.changed_pairs.len()),
                    calls: &c.changed_calls,
                })
                .collect();
            changed_list(&mut out, "verdict", &changed);
        }
        out.push('\n');
    }
    render_pointwise(&mut out, c);
    out
}

/// What changed in one condition, for the list under a judge's tables.
struct ChangedCalls<'a> {
    condition: &'a str,
    changed: u64,
    /// Pairs with a change, when counted.
    pairs: Option<usize>,
    /// The first [`CHANGED_CAP`] changed call ids.
    calls: &'a [String],
}

/// "No shared verdict changed." or the changed call ids per condition (`what`: verdict, grade).
fn changed_list(out: &mut String, what: &str, conditions: &[ChangedCalls<'_>]) {
    let changed: Vec<&ChangedCalls<'_>> = conditions.iter().filter(|c| c.changed > 0).collect();
    if changed.is_empty() {
        let _ = writeln!(out, "\nNo shared {what} changed.");
        return;
    }
    let _ = writeln!(
        out,
        "\nChanged {what}s (first {CHANGED_CAP} call ids per condition):\n"
    );
    for cond in changed {
        let more = cond.changed as usize - cond.calls.len();
        let _ = writeln!(
            out,
            "- {}: {} changed{}: {}{}",
            md(cond.condition),
            cond.changed,
            cond.pairs
                .map_or(String::new(), |p| format!(" on {p} pairs")),
            cond.calls
                .iter()
                .map(|id| code(id))
                .collect::<Vec<_>>()
                .join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
    }
}

/// A pointwise value in its unit: points with two decimals (signed for a shift), shares as
/// percentages, coefficients with two decimals; the interval when there is one.
fn pointwise_value_text(v: &Value, unit: MetricUnit, signed: bool) -> String {
    let number = |x: f64| match unit {
        MetricUnit::Points if signed => format!("{x:+.2}"),
        MetricUnit::Points => format!("{x:.2}"),
        MetricUnit::Share => super::format::rate(x),
        MetricUnit::Coefficient => format!("{x:.2}"),
    };
    match (v.estimate, v.ci_low, v.ci_high) {
        (Some(e), Some(l), Some(h)) => {
            format!("{} [{}, {}] n={}", number(e), number(l), number(h), v.n)
        }
        (Some(e), _, _) => format!("{} n={}", number(e), v.n),
        _ => format!("n/a (n={})", v.n),
    }
}

fn pointwise_delta_text(d: Option<f64>, unit: MetricUnit) -> String {
    match (d, unit) {
        (None, _) => "–".into(),
        (Some(d), MetricUnit::Share) => super::format::delta_points(Some(d)),
        (Some(d), MetricUnit::Points) => format!("{d:+.2} points"),
        (Some(d), MetricUnit::Coefficient) => format!("{d:+.2}"),
    }
}

fn pointwise_metric_label(metric: &str) -> &str {
    match metric {
        "mean_score_shift" => "mean score shift",
        "positive_to_negative" => "positive → negative flips",
        "negative_to_positive" => "negative → positive flips",
        "gold_accuracy" => "gold accuracy",
        "gold_kappa" => "Cohen's κ vs gold",
        "yes_bias" => "yes-bias (positive on gold negatives)",
        "spearman" => "Spearman ρ vs gold",
        "quadratic_kappa" => "quadratic-weighted κ vs gold",
        "run_to_run_sd" => "run-to-run SD",
        "invalid_share" => "invalid share",
        m => m,
    }
}

/// The pointwise judges' part of `compare.md`.
fn render_pointwise(out: &mut String, c: &Comparison) {
    for j in &c.pointwise_judges {
        judge_heading(out, &j.name, j.simulated, " (pointwise)", &j.verdict);
        for skipped in &j.skipped_criteria {
            let _ = writeln!(out, "Not compared: {}.\n", md(skipped));
        }
        for cr in &j.criteria {
            let (kind, positive) = match &cr.scale {
                GradeScale::Score { min, max } => (format!("score {min}–{max}"), None),
                GradeScale::Label { positive, .. } => (
                    format!("label, positive `{}`", md(positive)),
                    Some(positive),
                ),
            };
            let _ = writeln!(out, "### Criterion {} ({kind})\n", code(&cr.criterion));
            let _ = writeln!(out, "| metric | A | B | Δ |\n|---|---|---|---|");
            for m in &cr.metrics {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    pointwise_metric_label(&m.change.metric),
                    pointwise_value_text(&m.change.a, m.unit, false),
                    pointwise_value_text(&m.change.b, m.unit, false),
                    pointwise_delta_text(m.change.delta, m.unit)
                );
            }
            if !cr.artifacts.is_empty() {
                let _ = writeln!(
                    out,
                    "\n| artifact | metric | A | B | Δ |\n|---|---|---|---|---|"
                );
                for a in &cr.artifacts {
                    for m in &a.metrics {
                        let (c, shift) = (&m.change, m.change.metric == "mean_score_shift");
                        let _ = writeln!(
                            out,
                            "| {} | {} | {} | {} | {} |",
                            md_cell(&a.artifact),
                            pointwise_metric_label(&c.metric),
                            pointwise_value_text(&c.a, m.unit, shift),
                            pointwise_value_text(&c.b, m.unit, shift),
                            pointwise_delta_text(c.delta, m.unit)
                        );
                    }
                }
            }
            if cr.conditions.is_empty() {
                continue;
            }
            let mark = |p: f64| {
                if p < crate::analyze::ALPHA {
                    " **✱**"
                } else {
                    ""
                }
            };
            let _ = writeln!(
                out,
                "\n| condition | shared calls | unmatched | grades changed | A | B | change | p raw / Bonferroni |\n|---|---|---|---|---|---|---|---|"
            );
            for cond in &cr.conditions {
                if let Some(t) = &cond.score {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {} | mean {:.2} | mean {:.2} | {:+.2} ({} up, {} down; Wilcoxon on {} pairs) | {} / {}{} |",
                        md_cell(&cond.condition),
                        cond.shared,
                        cond.unmatched,
                        cond.changed,
                        t.mean_a,
                        t.mean_b,
                        t.mean_change,
                        t.up,
                        t.down,
                        t.pairs_nonzero,
                        p_text(t.p_value),
                        p_text(t.p_bonferroni),
                        mark(t.p_bonferroni)
                    );
                }
                if let Some(t) = &cond.label {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {} | {} `{}` | {} `{}` | {} / {} (A only / B only; McNemar) | {} / {}{} |",
                        md_cell(&cond.condition),
                        cond.shared,
                        cond.unmatched,
                        cond.changed,
                        value_text(&t.a, false),
                        md(positive.map_or("", |p| p.as_str())),
                        value_text(&t.b, false),
                        md(positive.map_or("", |p| p.as_str())),
                        t.a_only,
                        t.b_only,
                        p_text(t.p_value),
                        p_text(t.p_bonferroni),
                        mark(t.p_bonferroni)
                    );
                }
            }
            let changed: Vec<ChangedCalls<'_>> = cr
                .conditions
                .iter()
                .map(|c| ChangedCalls {
                    condition: &c.condition,
                    changed: c.changed,
                    pairs: None,
                    calls: &c.changed_calls,
                })
                .collect();
            changed_list(out, "grade", &changed);
            out.push('\n');
        }
    }
}

/// Render the comparison as pretty JSON (trailing newline).
pub fn render_json(c: &Comparison) -> String {
    let mut s = serde_json::to_string_pretty(c).expect("a comparison serializes");
    s.push('\n');
    s
}
