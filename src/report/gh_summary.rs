//! `step-summary.md`: a short GitHub-flavoured Markdown for `$GITHUB_STEP_SUMMARY` (which GitHub
//! caps at 1 MiB): the verdicts with their reasons, the warnings and, with `--fail-on`, the gate.
//! The full report is `report.md`.

use super::markdown::{cell_text, escape, warnings_section};
use super::view::{Exporter, Format, ReportView};
use std::fmt::Write;

/// Reasons shown per judge before "and N more".
pub const REASONS_SHOWN: usize = 5;

/// `step-summary.md`.
pub struct GhSummaryExporter;

impl Exporter for GhSummaryExporter {
    fn format(&self) -> Format {
        Format::GhSummary
    }

    fn file_name(&self) -> &'static str {
        "step-summary.md"
    }

    fn render(&self, view: &ReportView<'_>) -> std::io::Result<Vec<u8>> {
        Ok(render(view).into_bytes())
    }
}

/// Render the step summary.
pub fn render(view: &ReportView<'_>) -> String {
    let s = view.summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### judge-audit: {} on `{}` ({} pairs, seed {})\n",
        super::format::counted(
            (s.judges.len() + s.pointwise.as_ref().map_or(0, |p| p.judges.len())) as u64,
            "judge"
        ),
        escape(&s.dataset.name),
        s.dataset.pairs,
        s.seed
    );
    if let Some(t) = view.fail_on {
        let gate = super::gate(s, t);
        let _ = writeln!(out, "**{}**\n", escape(&gate.line));
    }
    warnings_section(&mut out, view.warnings());
    if let Some(seq) = s
        .sequential
        .as_ref()
        .filter(|_| view.has(super::Section::Sequential))
    {
        super::markdown::sequential_section(&mut out, seq);
    }
    let _ = writeln!(out, "| judge | verdict | reasons |\n|---|---|---|");
    let pairwise = s
        .judges
        .iter()
        .chain(&s.juries)
        .map(|j| (j.name.clone(), j.simulated, &j.trust));
    // Pointwise judges and juries, named so a reader tells them from pairwise ones.
    let pointwise = s.pointwise.iter().flat_map(|p| {
        let judges = p.judges.iter().map(|j| {
            let kind = j.kind.label();
            (format!("{} ({kind})", j.judge), j.simulated, &j.trust)
        });
        let juries = p.juries.iter().map(|j| {
            (
                format!("{} (pointwise jury)", j.jury),
                j.simulated,
                &j.trust,
            )
        });
        judges.chain(juries)
    });
    for (name, simulated, trust) in pairwise.chain(pointwise) {
        let sim = if simulated { " (simulated)" } else { "" };
        let mut reasons: Vec<String> = trust
            .reasons
            .iter()
            .take(REASONS_SHOWN)
            .map(|r| format!("{}: {}", r.severity.label(), cell_text(&r.text)))
            .collect();
        if trust.reasons.len() > REASONS_SHOWN {
            reasons.push(format!(
                "and {} more in report.md",
                trust.reasons.len() - REASONS_SHOWN
            ));
        }
        let reasons = if reasons.is_empty() {
            "every check passed".to_string()
        } else {
            reasons.join("<br>")
        };
        let _ = writeln!(
            out,
            "| {}{sim} | **{}** | {reasons} |",
            cell_text(&name),
            trust.verdict.label()
        );
    }
    out.push_str("\nFull report: `report.md` and `report.html` in the run directory.\n");
    out
}
