//! The summary document (`summary.json`): what an audit found, as typed data. Analysis builds
//! it; `report` renders it and `compare` reads it back, so it lives on the analysis side of the
//! one-way pipeline.

use crate::analyze::{AgreementResult, AnalysisInfo, FlipExample, JudgeResult, JuryAnalysis};
use crate::design::PlanCounts;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the `summary.json` schema; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Tool identity recorded in every output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolInfo {
    /// Always `judge-audit`.
    pub name: String,
    /// Crate version.
    pub version: String,
}

impl Default for ToolInfo {
    fn default() -> Self {
        ToolInfo {
            name: "judge-audit".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// The dataset as recorded in the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// Name (file name or `builtin`).
    pub name: String,
    /// sha256 of the canonical pairs.
    pub hash: String,
    /// Pairs used.
    pub pairs: usize,
    /// Records skipped as invalid (`--skip-invalid`).
    pub skipped: usize,
    /// Pairs per category.
    pub categories: BTreeMap<String, usize>,
}

/// An artifact as recorded in the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactInfo {
    /// Id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Citation.
    pub source: String,
    /// Expected effect from the literature.
    pub expected_effect: String,
    /// One-line description of the operation.
    pub operation: String,
}

/// A judge's configuration as recorded in the summary (no secret, ever).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeInfo {
    /// Name.
    pub name: String,
    /// True for simulated judges.
    pub simulated: bool,
    /// Backend kind.
    pub backend: String,
    /// Model id.
    pub model: String,
    /// Template name.
    pub template: String,
    /// sha256 of the template content.
    pub template_sha256: String,
    /// The template's declared minimum `max_tokens` (a reply cut shorter may lose its verdict);
    /// absent when the template declares none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_min_max_tokens: Option<u32>,
    /// The full configuration as loaded (API keys are never part of it; only env var names).
    pub config: serde_json::Value,
}

impl JudgeInfo {
    /// The judge's configured prices, typed; `None` when it has none.
    pub fn pricing(&self) -> Option<crate::judge::config::Pricing> {
        self.config
            .get("pricing")
            .and_then(|p| serde_json::from_value(p.clone()).ok())
    }
}

/// The plan as recorded in the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanInfo {
    /// Baseline repeats.
    pub repeats: u32,
    /// Tie-detection targets.
    pub tie_targets: String,
    /// Artifact ids.
    pub artifacts: Vec<String>,
    /// Total calls.
    pub total_calls: usize,
    /// Calls per judge and condition.
    pub calls_by_judge: PlanCounts,
}

/// Everything a report shows: the content of `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Schema version of this document.
    pub schema_version: u32,
    /// Tool identity.
    pub tool: ToolInfo,
    /// The run's seed (perturbations, simulated judges, bootstrap, retry jitter).
    pub seed: u64,
    /// Dataset.
    pub dataset: DatasetInfo,
    /// Plan.
    pub plan: PlanInfo,
    /// Artifacts audited.
    pub artifacts: Vec<ArtifactInfo>,
    /// Judge configurations.
    pub judge_configs: Vec<JudgeInfo>,
    /// Per-judge results.
    pub judges: Vec<JudgeResult>,
    /// Flipped examples (a few per judge and artifact), for reports to show.
    pub examples: Vec<FlipExample>,
    /// Juries aggregated post hoc from the judges' verdicts, analysed like judges (`kind` =
    /// `jury`, `members`, `rule`); empty with fewer than two judges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub juries: Vec<JudgeResult>,
    /// Agreement between judges (pairwise κ / π, Fleiss' κ, Krippendorff's α).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<AgreementResult>,
    /// Jury design: rules, weights, juror error correlation, effective size, composer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jury: Option<JuryAnalysis>,
    /// How the analysis was run: bootstrap method and size, α, power, multiplicity families.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisInfo>,
    /// How much of the plan the run committed; present only when calls are pending (an
    /// interrupted or unfinished run, whose verdicts are provisional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completeness: Option<crate::analyze::Completeness>,
    /// Warnings about the run (judge stopped, records skipped, failed calls, unparseable
    /// verdicts), shown by every exporter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
    /// LLM-rewritten artifacts: rewriter, meaning-check failures, examples (absent without
    /// rewrite artifacts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrites: Option<crate::analyze::rewrites::RewriteSection>,
    /// A sequential audit's waves, stopping rule and per-cell decisions; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequential: Option<crate::analyze::sequential::SequentialSummary>,
    /// Pointwise judges (score, label, rubric) and their juries; absent when the audit has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointwise: Option<crate::analyze::pointwise_summary::PointwiseSection>,
    /// Post-hoc mitigations per pairwise judge (swap-and-confirm, order-averaged label
    /// probabilities, majority over repeats, juries), measured on the calls already made;
    /// absent in summaries written before they existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mitigations: Option<crate::analyze::mitigation::MitigationSection>,
    /// Judge-prompt sensitivity of the judges with template variants (`templates = [...]`);
    /// absent when no judge has variants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub templates: Option<crate::analyze::templates::TemplateSection>,
}

/// A warning about the run, as data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// What happened: `run_incomplete`, `records_skipped`, `template_limit`,
    /// `artifact_low_change`, `judge_stopped`, `calls_failed`, `calls_pending`, `label_mass_low`
    /// or `verdicts_unparseable`.
    pub kind: String,
    /// The judge it concerns, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<String>,
    /// The warning in words, numbers included.
    pub message: String,
}
