//! The one typed view every exporter renders, the [`Exporter`] trait and the formats.
//!
//! A [`ReportView`] is built once from a [`Summary`]: which sections the run has (juries only
//! with two or more judges, agreement and composer only when computed), the warnings to show,
//! and the `--fail-on` threshold the CI formats mark failures against. Exporters read typed data
//! only; a section a format cannot show is listed in [`UNSUPPORTED`], the one visible place.

use super::{Summary, Warning};
use crate::analyze::Trust;
use crate::judge::FaultKind;

/// A section of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Section {
    /// Verdict per judge with its reasons.
    Verdicts,
    /// A sequential audit's stopping rule, waves and per-cell decisions.
    Sequential,
    /// Artifact effects (T, WR) per judge and artifact.
    Effects,
    /// Flip rates per judge and artifact.
    Flips,
    /// Position consistency.
    Position,
    /// Juries aggregated from the judges' verdicts, analysed like judges.
    Juries,
    /// Pointwise judges (score, label, rubric) and their juries.
    Pointwise,
    /// Post-hoc mitigations per judge (swap-and-confirm, order averaging, majority, juries).
    Mitigations,
    /// Agreement between judges.
    Agreement,
    /// The jury composer's suggestion.
    Composer,
    /// Gold accuracy and flips per category.
    Categories,
    /// Flipped examples (answers shown).
    Examples,
    /// LLM-rewritten artifacts: meaning-check failures and originals next to rewrites.
    Rewrites,
    /// Warnings about the run.
    Warnings,
    /// Dataset, plan, judges and method.
    Metadata,
}

impl Section {
    /// Every section, in page order.
    pub const ALL: [Section; 15] = [
        Section::Verdicts,
        Section::Sequential,
        Section::Effects,
        Section::Flips,
        Section::Position,
        Section::Juries,
        Section::Pointwise,
        Section::Mitigations,
        Section::Agreement,
        Section::Composer,
        Section::Categories,
        Section::Examples,
        Section::Rewrites,
        Section::Warnings,
        Section::Metadata,
    ];

    /// True when `summary` has data for this section.
    pub fn present(self, summary: &Summary) -> bool {
        match self {
            Section::Juries => !summary.juries.is_empty(),
            Section::Agreement => summary.agreement.is_some(),
            Section::Composer => summary.jury.as_ref().is_some_and(|j| j.composer.is_some()),
            Section::Examples => !summary.examples.is_empty(),
            Section::Rewrites => summary.rewrites.is_some(),
            Section::Warnings => !summary.warnings.is_empty(),
            Section::Sequential => summary.sequential.is_some(),
            Section::Pointwise => summary.pointwise.is_some(),
            Section::Mitigations => summary
                .mitigations
                .as_ref()
                .is_some_and(|m| !m.judges.is_empty()),
            _ => true,
        }
    }
}

/// An output format (`--format`, repeatable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    /// `summary.json`: the whole summary.
    Json,
    /// `report.md`: GitHub-flavoured Markdown.
    Markdown,
    /// `report.html`: one self-contained, script-free page.
    Html,
    /// `results.csv`: every number, long format.
    Csv,
    /// `report.junit.xml`: one test case per judge × check, for CI test views.
    Junit,
    /// `step-summary.md`: a short Markdown for `$GITHUB_STEP_SUMMARY`.
    GhSummary,
    /// `results.arrow`: the rows of `results.csv` as a typed Arrow IPC file.
    Arrow,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 7] = [
        Format::Json,
        Format::Markdown,
        Format::Html,
        Format::Csv,
        Format::Junit,
        Format::GhSummary,
        Format::Arrow,
    ];

    /// The formats written when none is chosen: the four of earlier versions.
    pub const DEFAULT: [Format; 4] = [Format::Json, Format::Markdown, Format::Html, Format::Csv];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Markdown => "markdown",
            Format::Html => "html",
            Format::Csv => "csv",
            Format::Junit => "junit",
            Format::GhSummary => "gh-summary",
            Format::Arrow => "arrow",
        }
    }

    /// The exporter of this format.
    pub fn exporter(self) -> &'static dyn Exporter {
        match self {
            Format::Json => &super::JsonExporter,
            Format::Markdown => &super::markdown::MarkdownExporter,
            Format::Html => &super::html::HtmlExporter,
            Format::Csv => &super::csv::CsvExporter,
            Format::Junit => &super::junit::JunitExporter,
            Format::GhSummary => &super::gh_summary::GhSummaryExporter,
            Format::Arrow => &super::arrow::ArrowExporter,
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
        match s {
            "md" => Ok(Format::Markdown),
            _ => Format::ALL
                .into_iter()
                .find(|f| f.name() == s)
                .ok_or_else(|| format!("unknown format `{s}` (one of: {})", names.join(", "))),
        }
    }
}

/// Sections a format does not show, and why: the one place that says so.
pub const UNSUPPORTED: &[(Format, Section, &str)] = &[
    (
        Format::Csv,
        Section::Examples,
        "answers are text, not numbers; they are in summary.json",
    ),
    (
        Format::Csv,
        Section::Warnings,
        "warnings are sentences; they are in every other format",
    ),
    (
        Format::Csv,
        Section::Metadata,
        "the run's metadata is in summary.json",
    ),
    (
        Format::Csv,
        Section::Rewrites,
        "rewrites are text; each artifact's rejected count is the row `rewrite_rejected_count`, the rest is in summary.json",
    ),
    (
        Format::Csv,
        Section::Sequential,
        "the per-cell decisions, waves and intervals are in summary.json's `sequential`",
    ),
    (Format::Arrow, Section::Examples, "as for results.csv"),
    (Format::Arrow, Section::Rewrites, "as for results.csv"),
    (Format::Arrow, Section::Sequential, "as for results.csv"),
    (Format::Arrow, Section::Warnings, "as for results.csv"),
    (Format::Arrow, Section::Metadata, "as for results.csv"),
    (
        Format::Junit,
        Section::Effects,
        "JUnit holds pass/fail checks; effects are behind each failure's reason",
    ),
    (Format::Junit, Section::Flips, "as for effects"),
    (Format::Junit, Section::Position, "as for effects"),
    (
        Format::Junit,
        Section::Juries,
        "the gate checks judges, not juries",
    ),
    (Format::Junit, Section::Agreement, "not a pass/fail check"),
    (
        Format::Junit,
        Section::Sequential,
        "how the audit stopped is not a pass/fail check",
    ),
    (Format::Junit, Section::Composer, "not a pass/fail check"),
    (
        Format::Junit,
        Section::Mitigations,
        "post-hoc what-ifs, not a pass/fail check",
    ),
    (Format::Junit, Section::Categories, "not a pass/fail check"),
    (Format::Junit, Section::Examples, "not a pass/fail check"),
    (Format::Junit, Section::Rewrites, "not a pass/fail check"),
    (Format::Junit, Section::Metadata, "not a pass/fail check"),
    (
        Format::GhSummary,
        Section::Examples,
        "sized for $GITHUB_STEP_SUMMARY; the examples are in report.md",
    ),
    (Format::GhSummary, Section::Categories, "as for examples"),
    (Format::GhSummary, Section::Rewrites, "as for examples"),
    (Format::GhSummary, Section::Mitigations, "as for examples"),
];

/// True when `format` shows `section` (when the run has it).
pub fn supports(format: Format, section: Section) -> bool {
    !UNSUPPORTED
        .iter()
        .any(|(f, s, _)| *f == format && *s == section)
}

/// What every exporter renders.
#[derive(Debug, Clone)]
pub struct ReportView<'a> {
    /// The summary, typed.
    pub summary: &'a Summary,
    /// The sections this run has, in page order.
    pub sections: Vec<Section>,
    /// The `--fail-on` threshold, if one was given: CI formats mark failures against it
    /// (REJECT when none was given, the verdict that always means "do not use").
    pub fail_on: Option<Trust>,
    /// Each judge's configured prices, typed once here so no exporter reads the recorded
    /// configuration (a JSON value) itself.
    pub prices: std::collections::BTreeMap<String, crate::judge::config::Pricing>,
}

impl<'a> ReportView<'a> {
    /// The view of `summary`.
    pub fn new(summary: &'a Summary) -> ReportView<'a> {
        ReportView {
            summary,
            sections: Section::ALL
                .into_iter()
                .filter(|s| s.present(summary))
                .collect(),
            fail_on: None,
            prices: summary
                .judge_configs
                .iter()
                .filter_map(|j| Some((j.name.clone(), j.pricing()?)))
                .collect(),
        }
    }

    /// The same view with a `--fail-on` threshold.
    pub fn with_fail_on(mut self, fail_on: Option<Trust>) -> ReportView<'a> {
        self.fail_on = fail_on;
        self
    }

    /// True when the run has `section`.
    pub fn has(&self, section: Section) -> bool {
        self.sections.contains(&section)
    }

    /// The warnings to show.
    pub fn warnings(&self) -> &[Warning] {
        &self.summary.warnings
    }

    /// The threshold failures are marked against.
    pub fn threshold(&self) -> Trust {
        self.fail_on.unwrap_or(Trust::Reject)
    }
}

/// One output format: a file name and a renderer of the view.
pub trait Exporter: Sync {
    /// The format.
    fn format(&self) -> Format;
    /// The file written in the run directory.
    fn file_name(&self) -> &'static str;
    /// The file's bytes. Identical views give identical bytes.
    fn render(&self, view: &ReportView<'_>) -> std::io::Result<Vec<u8>>;
}

/// Names of every simulated judge, pairwise then pointwise, for the banners.
pub fn simulated_judges(s: &Summary) -> Vec<&str> {
    let pairwise = s
        .judges
        .iter()
        .filter(|j| j.simulated)
        .map(|j| j.name.as_str());
    let pointwise = s
        .pointwise
        .iter()
        .flat_map(|p| &p.judges)
        .filter(|j| j.simulated)
        .map(|j| j.judge.as_str());
    pairwise.chain(pointwise).collect()
}

/// Artifact ids in plan order, then any id a judge reports that the plan does not list.
pub fn artifact_ids(s: &Summary) -> Vec<String> {
    let mut ids: Vec<String> = s.plan.artifacts.clone();
    for j in &s.judges {
        for a in &j.artifacts {
            if !ids.contains(&a.artifact) {
                ids.push(a.artifact.clone());
            }
        }
    }
    ids
}

/// The name of a fault kind as `summary.json` spells it (`rate_limited`), for every exporter.
pub fn fault_name(kind: FaultKind) -> &'static str {
    match kind {
        FaultKind::RateLimited => "rate_limited",
        FaultKind::ServerError => "server_error",
        FaultKind::Timeout => "timeout",
        FaultKind::Connection => "connection",
        FaultKind::MalformedResponse => "malformed_response",
        FaultKind::Auth => "auth",
        FaultKind::BadRequest => "bad_request",
        FaultKind::Quota => "quota",
        FaultKind::Backend => "backend",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_by_name_and_have_distinct_files() {
        for f in Format::ALL {
            assert_eq!(f.name().parse::<Format>(), Ok(f));
            assert_eq!(f.exporter().format(), f);
        }
        let mut files: Vec<&str> = Format::ALL
            .iter()
            .map(|f| f.exporter().file_name())
            .collect();
        files.sort();
        files.dedup();
        assert_eq!(files.len(), Format::ALL.len());
        assert!("xml".parse::<Format>().unwrap_err().contains("junit"));
    }

    #[test]
    fn fault_names_match_the_summary_spelling() {
        use FaultKind::*;
        for k in [
            RateLimited,
            ServerError,
            Timeout,
            Connection,
            MalformedResponse,
            Auth,
            BadRequest,
            Quota,
            Backend,
        ] {
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", fault_name(k))
            );
        }
    }
}
