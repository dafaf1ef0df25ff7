//! `report.md`: GitHub-flavoured Markdown, readable in a PR comment.

use super::Summary;
use crate::analyze::{Estimate, JudgeResult};
use std::fmt::Write;

/// Escape text for a Markdown table cell or line (answers and names are untrusted).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '|' | '*' | '_' | '`' | '[' | ']' | '<' | '>' | '#' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

fn pct(x: f64) -> String {
    format!("{:+.1}%", 100.0 * x)
}

fn rate(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn cell(e: &Estimate, signed: bool) -> String {
    let f = if signed { pct } else { rate };
    match (e.estimate, e.ci_low, e.ci_high) {
        (Some(v), Some(l), Some(h)) => format!("{} [{}, {}] n={}", f(v), f(l), f(h), e.n),
        (Some(v), _, _) => format!("{} n={}", f(v), e.n),
        _ => format!("n/a (n={})", e.n),
    }
}

/// A p-value in a compact, exact-enough form.
pub fn p_text(p: f64) -> String {
    if p < 0.001 {
        format!("{p:.1e}")
    } else {
        format!("{p:.3}")
    }
}

fn p_cell(e: &Estimate) -> String {
    match (e.p_value, e.p_adjusted) {
        (Some(p), Some(q)) => {
            let mark = if q < crate::analyze::ALPHA {
                " **✱**"
            } else {
                ""
            };
            format!("{} / {}{mark}", p_text(p), p_text(q))
        }
        (Some(p), None) => format!("{} / –", p_text(p)),
        _ => "–".into(),
    }
}

fn judge_section(out: &mut String, judge: &JudgeResult) {
    let label = if judge.simulated {
        " (SIMULATED judge)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "## {}{label}: {}\n",
        escape(&judge.name),
        judge.trust.verdict.label()
    );
    for reason in &judge.trust.reasons {
        let _ = writeln!(
            out,
            "- {} because {}",
            judge.trust.verdict.label(),
            escape(reason)
        );
    }
    if !judge.trust.reasons.is_empty() {
        out.push('\n');
    }
    if let Some(reason) = &judge.stopped {
        let _ = writeln!(out, "> **Stopped:** {}\n", escape(reason));
    }
    let c = &judge.calls;
    let _ = writeln!(
        out,
        "Calls: {} planned, {} completed, {} failed, {} unparseable verdicts (counted, never coerced). Tokens: {} in, {} out.\n",
        c.planned, c.completed, c.failed, c.invalid, c.input_tokens, c.output_tokens
    );
    if !judge.faults.is_empty() {
        let faults: Vec<String> = judge
            .faults
            .iter()
            .map(|(kind, n)| format!("{kind:?}: {n}"))
            .collect();
        let _ = writeln!(
            out,
            "Faults (every failed attempt): {}.\n",
            faults.join(", ")
        );
    }
    let _ = writeln!(out, "**Findings**\n");
    for line in &judge.findings {
        let _ = writeln!(out, "- {}", escape(line));
    }
    let _ = writeln!(
        out,
        "\n| artifact | T (tie detection) | p raw / Holm | WR (winrate shift) | p raw / Holm | flip rate | toward / away | p raw / Holm | excess over noise |{}",
        if judge.simulated { " planted T |" } else { "" }
    );
    let _ = writeln!(
        out,
        "|---|---|---|---|---|---|---|---|---|{}",
        if judge.simulated { "---|" } else { "" }
    );
    for a in &judge.artifacts {
        let planted = match &a.planted {
            Some(p) => format!(
                " {} ({}) |",
                pct(p.value),
                if p.recovered {
                    "inside CI"
                } else {
                    "OUTSIDE CI"
                }
            ),
            None if judge.simulated => " – |".into(),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} / {} | {} | {} |{planted}",
            escape(&a.artifact),
            cell(&a.tie_detection.score, true),
            p_cell(&a.tie_detection.score),
            cell(&a.winrate_shift.shift, true),
            p_cell(&a.winrate_shift.shift),
            cell(&a.flip_rate.rate, false),
            a.flip_rate.toward,
            a.flip_rate.away,
            p_cell(&a.flip_rate.rate),
            cell(&a.excess_flip_rate, true),
        );
    }
    let b = &judge.baseline;
    let pc = &b.position_consistency;
    let _ = writeln!(
        out,
        "\nBaseline: position consistency {} (first slot both times: {}, second: {}, win/tie mix: {}, error: {}); run-to-run flip rate {}; gold accuracy {}; {} unparseable baseline verdicts.\n",
        cell(&pc.rate, false),
        pc.prefers_first,
        pc.prefers_second,
        pc.other,
        pc.error,
        cell(&b.noise_flip_rate, false),
        cell(&b.gold_accuracy, false),
        b.invalid
    );
}

/// Render the whole Markdown report.
pub fn render(summary: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# judge-audit report\n");
    let simulated: Vec<&str> = summary
        .judges
        .iter()
        .filter(|j| j.simulated)
        .map(|j| j.name.as_str())
        .collect();
    if !simulated.is_empty() {
        let _ = writeln!(
            out,
            "> **Simulated judges:** {} are simulated reference judges with planted biases, not language models.\n",
            simulated
                .iter()
                .map(|s| escape(s))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(
        out,
        "Dataset `{}` ({} pairs, {} skipped as invalid, sha256 `{}`), seed {}, {} judge calls planned ({} baseline repeats per order). judge-audit {}.\n",
        escape(&summary.dataset.name),
        summary.dataset.pairs,
        summary.dataset.skipped,
        &summary.dataset.hash[..16.min(summary.dataset.hash.len())],
        summary.seed,
        summary.plan.total_calls,
        summary.plan.repeats,
        summary.tool.version
    );
    let _ = writeln!(
        out,
        "How to read: **T** is Chen & Goldfarb-Tarrant's tie-detection score (answer vs the same answer with the artifact; +100% = always prefers the artifact, for position = always prefers the first slot). **WR** is their winrate shift in net-preference units. **Flip rate** is the share of verdicts that changed against the baseline; *toward* means toward the perturbed answer (position: the first slot). Intervals are 95%; p-values are raw / Holm-adjusted over every artifact test of this run; ✱ marks Holm p < 0.05.\n"
    );
    for judge in &summary.judges {
        judge_section(&mut out, judge);
    }
    let _ = writeln!(out, "## Artifacts\n");
    for a in &summary.artifacts {
        let _ = writeln!(
            out,
            "- **{}** ({}): {}. Source: {}. Expected: {}.",
            escape(&a.id),
            escape(&a.title),
            escape(&a.operation),
            escape(&a.source),
            escape(&a.expected_effect)
        );
    }
    let _ = writeln!(out, "\n## Judges\n");
    for j in &summary.judge_configs {
        let _ = writeln!(
            out,
            "- **{}**{}: backend `{}`, model `{}`, template `{}` (sha256 `{}`).",
            escape(&j.name),
            if j.simulated { " (simulated)" } else { "" },
            escape(&j.backend),
            escape(&j.model),
            escape(&j.template),
            &j.template_sha256[..16.min(j.template_sha256.len())]
        );
    }
    out
}
