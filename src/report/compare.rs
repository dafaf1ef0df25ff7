//! `compare.md` and `compare.json`: the rendering of a typed [`Comparison`] (computed by
//! [`crate::analyze::compare`]; nothing here is a statistic).

use super::markdown::{cell_text as md_cell, escape as md, p_text};
pub use crate::analyze::compare::*;
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
    for j in &c.judges {
        let _ = writeln!(
            out,
            "## {}{}: {} → {}\n",
            md(&j.name),
            if j.simulated {
                " (SIMULATED judge)"
            } else {
                ""
            },
            j.verdict.0,
            j.verdict.1
        );
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
            let changed: Vec<&ConditionComparison> =
                j.conditions.iter().filter(|c| c.changed > 0).collect();
            if changed.is_empty() {
                let _ = writeln!(out, "\nNo shared verdict changed.");
            } else {
                let _ = writeln!(
                    out,
                    "\nChanged verdicts (first {CHANGED_CAP} call ids per condition):\n"
                );
                for cond in changed {
                    let more = cond.changed as usize - cond.changed_calls.len();
                    let _ = writeln!(
                        out,
                        "- {}: {} changed on {} pairs: {}{}",
                        md(&cond.condition),
                        cond.changed,
                        cond.changed_pairs.len(),
                        cond.changed_calls
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
        }
        out.push('\n');
    }
    out
}

/// Render the comparison as pretty JSON (trailing newline).
pub fn render_json(c: &Comparison) -> String {
    let mut s = serde_json::to_string_pretty(c).expect("a comparison serializes");
    s.push('\n');
    s
}
