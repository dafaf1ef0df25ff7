//! The main job, end to end: `audit.toml` → dataset → perturbations → plan → run → analysis →
//! reports. This is the public entry point the CLI, tests and benches use.

use crate::analyze::{self, AnalysisInput, AnalysisOptions, JuryOptions, TrustThresholds};
use crate::dataset::{self, Dataset, LoadOptions};
use crate::design::{DesignOptions, PerturbedAnswers, Plan, TieTargets};
use crate::judge::{self, JudgeConfig, config::Backend};
use crate::perturb::{Artifact, Catalog};
use crate::report::{
    self, ArtifactInfo, DatasetInfo, JudgeInfo, PlanInfo, Summary, ToolInfo, markdown,
};
use crate::run::{self, JudgeHandle, RunOptions, RunOutcome};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The artifacts audited when a configuration names none.
pub const DEFAULT_ARTIFACTS: [&str; 7] = [
    "apology",
    "authority",
    "halo",
    "verbosity",
    "reorder",
    "repetition",
    "position",
];

/// `audit.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Seed of every random choice (perturbations, simulated judges, bootstrap, retry jitter).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Output directory (default `reports/<run-id>`).
    #[serde(default)]
    pub out: Option<PathBuf>,
    /// The pairs.
    #[serde(default)]
    pub dataset: DatasetSection,
    /// The design.
    #[serde(default)]
    pub design: DesignSection,
    /// Execution settings.
    #[serde(default)]
    pub run: RunSection,
    /// Extra artifact definitions.
    #[serde(default)]
    pub perturbations: PerturbationsSection,
    /// Judges by built-in name or judge-file path (relative to this file).
    #[serde(default)]
    pub judges: Vec<String>,
    /// Judges declared inline.
    #[serde(default, rename = "judge")]
    pub inline_judges: Vec<JudgeConfig>,
    /// Thresholds of the ADOPT / CAUTION / REJECT verdict.
    #[serde(default)]
    pub trust: TrustThresholds,
    /// Juries aggregated post hoc from the judges' verdicts (`[jury]`).
    #[serde(default)]
    pub jury: JuryOptions,
}

fn default_seed() -> u64 {
    42
}

/// `[dataset]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSection {
    /// JSONL or CSV file; absent means the built-in sample set.
    pub path: Option<PathBuf>,
    /// Skip invalid records (they are counted in the report).
    #[serde(default)]
    pub skip_invalid: bool,
    /// Use at most this many pairs (the first ones in file order).
    pub limit: Option<usize>,
}

/// `[design]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesignSection {
    /// Baseline repeats per order.
    #[serde(default = "default_repeats")]
    pub repeats: u32,
    /// `preferred` or `both`.
    #[serde(default)]
    pub tie_targets: TieTargets,
    /// Artifact ids; empty means the default set.
    #[serde(default)]
    pub artifacts: Vec<String>,
    /// Bootstrap resamples for clustered intervals.
    #[serde(default = "default_resamples")]
    pub bootstrap_resamples: usize,
}

fn default_repeats() -> u32 {
    2
}

fn default_resamples() -> usize {
    2000
}

impl Default for DesignSection {
    fn default() -> Self {
        DesignSection {
            repeats: default_repeats(),
            tie_targets: TieTargets::Preferred,
            artifacts: Vec::new(),
            bootstrap_resamples: default_resamples(),
        }
    }
}

/// `[run]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// Per-judge concurrency bound.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

fn default_concurrency() -> usize {
    16
}

impl Default for RunSection {
    fn default() -> Self {
        RunSection {
            concurrency: default_concurrency(),
        }
    }
}

/// `[perturbations]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerturbationsSection {
    /// Folder of extra or overriding `*.toml` artifact files.
    pub dir: Option<PathBuf>,
}

/// Why an audit could not run. Every message names the file and field at fault.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A configuration problem.
    #[error("{0}")]
    Config(String),
    /// The dataset could not be loaded.
    #[error(transparent)]
    Dataset(#[from] dataset::DatasetError),
    /// The artifact catalog could not be loaded.
    #[error(transparent)]
    Perturb(#[from] crate::perturb::PerturbError),
    /// A judge could not be built.
    #[error(transparent)]
    Judge(#[from] judge::JudgeBuildError),
    /// The run failed.
    #[error(transparent)]
    Run(#[from] run::RunError),
    /// Writing outputs failed.
    #[error("{path}: {source}")]
    Io {
        /// File path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
}

impl AuditConfig {
    /// Parse `audit.toml`; relative paths inside it resolve against its folder.
    pub fn from_file(path: &Path) -> Result<(AuditConfig, PathBuf), AuditError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let config: AuditConfig = toml::from_str(&text)
            .map_err(|e| AuditError::Config(format!("{}: {}", path.display(), e)))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok((config, base))
    }
}

/// Everything resolved before the first call: the audit is fully determined by this.
pub struct Prepared {
    /// Seed.
    pub seed: u64,
    /// Dataset.
    pub dataset: Dataset,
    /// Artifacts in plan order.
    pub artifacts: Vec<Artifact>,
    /// Judges.
    pub judges: Vec<JudgeHandle>,
    /// The plan.
    pub plan: Plan,
    /// Perturbed answers.
    pub perturbed: PerturbedAnswers,
    /// Concurrency bound.
    pub concurrency: usize,
    /// Bootstrap resamples.
    pub bootstrap_resamples: usize,
    /// Trust thresholds.
    pub trust: TrustThresholds,
    /// Jury settings.
    pub jury: JuryOptions,
}

fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// Resolve a judge given by built-in name or file path.
pub fn resolve_judge(spec: &str, base: &Path) -> Result<JudgeConfig, AuditError> {
    let path = resolve(base, Path::new(spec));
    if spec.ends_with(".toml") || path.is_file() {
        return JudgeConfig::from_file(&path).map_err(|e| AuditError::Config(e.to_string()));
    }
    judge::config::builtin_judge(spec).map_err(|_| {
        let known: Vec<String> = judge::config::builtin_judges()
            .into_iter()
            .map(|j| j.name)
            .collect();
        AuditError::Config(format!(
            "judge `{spec}` is neither a file nor a built-in judge (built-ins: {})",
            known.join(", ")
        ))
    })
}

/// Load everything and build the plan; no judge is called.
pub fn prepare(config: &AuditConfig, base: &Path) -> Result<Prepared, AuditError> {
    let mut dataset = match &config.dataset.path {
        Some(path) => dataset::load(
            &resolve(base, path),
            &LoadOptions {
                skip_invalid: config.dataset.skip_invalid,
                placement_seed: None,
            },
        )?,
        None => dataset::builtin(),
    };
    if let Some(limit) = config.dataset.limit {
        dataset.pairs.truncate(limit);
    }
    let mut catalog = Catalog::builtin();
    if let Some(dir) = &config.perturbations.dir {
        catalog.extend_from_dir(&resolve(base, dir))?;
    }
    let ids: Vec<String> = if config.design.artifacts.is_empty() {
        DEFAULT_ARTIFACTS.iter().map(|s| s.to_string()).collect()
    } else {
        config.design.artifacts.clone()
    };
    let mut artifacts = Vec::new();
    for id in &ids {
        let artifact = catalog.get(id).ok_or_else(|| {
            AuditError::Config(format!(
                "design.artifacts: unknown artifact `{id}` (known: {})",
                catalog
                    .artifacts()
                    .iter()
                    .map(|a| a.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        artifacts.push(artifact.clone());
    }
    let mut configs = Vec::new();
    for spec in &config.judges {
        configs.push(resolve_judge(spec, base)?);
    }
    configs.extend(config.inline_judges.iter().cloned());
    if configs.is_empty() {
        return Err(AuditError::Config(
            "judges: no judge configured (name built-in judges or judge files in `judges = [...]`, or add [[judge]] tables)".into(),
        ));
    }
    let mut seen = BTreeMap::new();
    for c in &configs {
        if seen.insert(c.name.clone(), ()).is_some() {
            return Err(AuditError::Config(format!(
                "judges: two judges are named `{}`",
                c.name
            )));
        }
    }
    let mut judges = Vec::new();
    for c in configs {
        let backend = judge::build(&c)?;
        judges.push(JudgeHandle {
            config: c,
            judge: backend,
        });
    }
    if config.design.repeats == 0 {
        return Err(AuditError::Config(
            "design.repeats: must be at least 1".into(),
        ));
    }
    let artifact_refs: Vec<&Artifact> = artifacts.iter().collect();
    let names: Vec<String> = judges.iter().map(|j| j.config.name.clone()).collect();
    let options = DesignOptions {
        repeats: config.design.repeats,
        tie_targets: config.design.tie_targets,
    };
    let plan = Plan::build(&names, &dataset.pairs, &artifact_refs, &options);
    let perturbed = PerturbedAnswers::compute(&dataset.pairs, &artifact_refs, config.seed);
    Ok(Prepared {
        seed: config.seed,
        dataset,
        artifacts,
        judges,
        plan,
        perturbed,
        concurrency: config.run.concurrency.max(1),
        bootstrap_resamples: config.design.bootstrap_resamples,
        trust: config.trust,
        jury: config.jury.clone(),
    })
}

/// Execute a prepared audit, writing `calls.jsonl` into `out` as calls complete.
pub async fn execute(
    prepared: &Prepared,
    out: &Path,
    quiet: bool,
) -> Result<RunOutcome, AuditError> {
    std::fs::create_dir_all(out).map_err(|source| AuditError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let options = RunOptions {
        concurrency: prepared.concurrency,
        seed: prepared.seed,
        calls_path: out.join("calls.jsonl"),
        quiet,
    };
    Ok(run::execute(
        &prepared.plan,
        &prepared.dataset.pairs,
        &prepared.perturbed,
        &prepared.judges,
        &options,
    )
    .await?)
}

/// Analyse a finished run and build the summary.
pub fn summarize(prepared: &Prepared, outcome: &RunOutcome) -> Summary {
    let mut planted = BTreeMap::new();
    let mut simulated = BTreeMap::new();
    for handle in &prepared.judges {
        simulated.insert(handle.config.name.clone(), handle.judge.simulated());
        if let Some(sim) = &handle.config.sim {
            let mut effects = sim.artifact_preference.clone();
            effects.insert("position".into(), sim.position_bias);
            planted.insert(handle.config.name.clone(), effects);
        }
    }
    let input = AnalysisInput {
        dataset: &prepared.dataset,
        plan: &prepared.plan,
        records: &outcome.records,
        planted: &planted,
        simulated: &simulated,
        faults: &outcome.faults,
        stopped: &outcome.stopped,
        perturbed: &prepared.perturbed,
    };
    let options = AnalysisOptions {
        bootstrap_resamples: prepared.bootstrap_resamples,
        seed: prepared.seed,
        confidence: 0.95,
        trust: prepared.trust,
        jury: prepared.jury.clone(),
        ..AnalysisOptions::default()
    };
    let analysis = analyze::analyze_full(&input, &options);
    let examples = analyze::flipped_examples(&input);
    let mut categories = BTreeMap::new();
    for pair in &prepared.dataset.pairs {
        *categories
            .entry(pair.category.clone().unwrap_or_else(|| "(none)".into()))
            .or_insert(0) += 1;
    }
    Summary {
        schema_version: report::SCHEMA_VERSION,
        tool: ToolInfo::default(),
        seed: prepared.seed,
        dataset: DatasetInfo {
            name: prepared.dataset.name.clone(),
            hash: prepared.dataset.hash.clone(),
            pairs: prepared.dataset.pairs.len(),
            skipped: prepared.dataset.skipped.len(),
            categories,
        },
        plan: PlanInfo {
            repeats: prepared.plan.options.repeats,
            tie_targets: match prepared.plan.options.tie_targets {
                TieTargets::Preferred => "preferred".into(),
                TieTargets::Both => "both".into(),
            },
            artifacts: prepared.plan.artifacts.clone(),
            total_calls: prepared.plan.calls.len(),
            calls_by_judge: prepared.plan.counts(),
        },
        artifacts: prepared
            .artifacts
            .iter()
            .map(|a| ArtifactInfo {
                id: a.id.clone(),
                title: a.title.clone(),
                source: a.source.clone(),
                expected_effect: a.expected_effect.clone(),
                operation: a.operation.describe(),
            })
            .collect(),
        judge_configs: prepared
            .judges
            .iter()
            .map(|h| judge_info(&h.config, h.judge.simulated()))
            .collect(),
        judges: analysis.judges,
        examples,
        juries: analysis.juries,
        agreement: analysis.agreement,
        jury: analysis.jury,
        analysis: Some(analysis.info),
    }
}

fn judge_info(config: &JudgeConfig, simulated: bool) -> JudgeInfo {
    let template_sha256 = config
        .load_template()
        .map(|t| t.sha256())
        .unwrap_or_else(|_| "unresolved".into());
    JudgeInfo {
        name: config.name.clone(),
        simulated,
        backend: match config.backend {
            Backend::Sim => "sim".into(),
            Backend::Openai => "openai".into(),
        },
        model: config.model.clone(),
        template: config.template.clone(),
        template_sha256,
        config: serde_json::to_value(config).unwrap_or(serde_json::Value::Null),
    }
}

/// Write `summary.json` and `report.md` into `out`.
pub fn write_reports(summary: &Summary, out: &Path) -> Result<(), AuditError> {
    let io = |path: PathBuf| move |source| AuditError::Io { path, source };
    report::write_json(summary, &out.join("summary.json")).map_err(io(out.join("summary.json")))?;
    std::fs::write(out.join("report.md"), markdown::render(summary))
        .map_err(io(out.join("report.md")))?;
    Ok(())
}

/// The demo: built-in pairs, default artifacts, and the simulated reference jury.
pub fn demo_config(seed: u64) -> AuditConfig {
    AuditConfig {
        seed,
        out: None,
        dataset: DatasetSection::default(),
        design: DesignSection::default(),
        run: RunSection::default(),
        perturbations: PerturbationsSection::default(),
        judges: DEMO_JUDGES.iter().map(|s| s.to_string()).collect(),
        inline_judges: Vec::new(),
        trust: TrustThresholds::default(),
        jury: JuryOptions::default(),
    }
}

/// The simulated reference jury of the demo: distinct planted biases, one of them unbiased.
pub const DEMO_JUDGES: [&str; 5] = [
    "sim-unbiased",
    "sim-apology-lover",
    "sim-first-slot",
    "sim-authority-skeptic",
    "sim-verbose-fan",
];
