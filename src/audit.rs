//! The main job, end to end: `audit.toml` → dataset → perturbations → plan → run → analysis →
//! reports. This is the public entry point the CLI, tests and benches use.

use crate::analyze::pointwise::GradeRecord;
use crate::analyze::pointwise_summary::{
    ConsistencyInput, CriterionInput, GradeScale, PointwiseInputs, PointwiseJudgeInput,
    PointwiseJuryInput, PointwiseKind, PointwiseOptions, PointwiseSection, analyze_pointwise,
};
use crate::analyze::{self, AnalysisInput, AnalysisOptions, JuryOptions, TrustThresholds};
use crate::dataset::{self, Dataset, LoadOptions};
use crate::design::{DesignOptions, JudgeScope, PerturbedAnswers, Plan, TieTargets};
use crate::judge::config::JudgeKind;
use crate::judge::{self, JudgeConfig};
use crate::perturb::{Artifact, Catalog};
use crate::report::{self, ArtifactInfo, DatasetInfo, JudgeInfo, PlanInfo, Summary, ToolInfo};
use crate::run::rewrites::RewriterSet;
use crate::run::store::{RunStore, StoreError};
use crate::run::{self, JudgeHandle, ProgressMode, RunOptions, RunOutcome};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    /// Judge-layer mitigations audited with new calls (`[mitigations]`): each is run as a
    /// derived judge `<judge>+<mitigation>` on the full design.
    #[serde(default, skip_serializing_if = "MitigationsSection::is_empty")]
    pub mitigations: MitigationsSection,
}

/// `[mitigations]`: judge-layer mitigations to audit with new calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MitigationsSection {
    /// `true` for [`judge::mitigate::DEFAULT_BIAS_INSTRUCTION`], or the sentence itself: added
    /// to the system message of every request of the derived judge `<judge>+bias-instruction`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias_instruction: Option<BiasInstruction>,
    /// Audit `<judge>+normalise`: answers stripped of artifact phrases and formatting.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub normalise: bool,
    /// Audit `<judge>+reference`: the judge is shown each pair's reference answer (the
    /// dataset's `reference` field; an error when a pair has none).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reference: bool,
}

impl MitigationsSection {
    fn is_empty(&self) -> bool {
        *self == MitigationsSection::default()
    }

    /// The bias instruction to audit, if any.
    pub fn instruction(&self) -> Option<String> {
        match &self.bias_instruction {
            Some(BiasInstruction::On(true)) => {
                Some(judge::mitigate::DEFAULT_BIAS_INSTRUCTION.to_string())
            }
            Some(BiasInstruction::Text(t)) => Some(t.clone()),
            _ => None,
        }
    }
}

/// `bias_instruction = true | false | "sentence"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BiasInstruction {
    /// On with the default sentence, or off.
    On(bool),
    /// On with this sentence.
    Text(String),
}

/// The ids of the new-call mitigations, as derived-judge name suffixes (`<judge>+<id>`).
pub const NEW_CALL_MITIGATIONS: [&str; 3] = ["bias-instruction", "normalise", "reference"];

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
    /// Multiplicity families: `judge` (default; each judge's tests are one family, matching
    /// the per-judge adoption decision) or `run` (one family over every judge of the run).
    #[serde(default)]
    pub multiplicity: analyze::Multiplicity,
    /// Sequential audit: issue the plan in waves of pairs and stop decided cells
    /// ([`analyze::sequential`]). Off by default; omitted from stored snapshots when off, so
    /// non-sequential runs store exactly what they did before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sequential: bool,
    /// Pairs per wave of a sequential audit (default 16, at most
    /// [`analyze::sequential::MAX_WAVE_PAIRS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave_pairs: Option<usize>,
    /// Which calls a judge's template variants (`templates = [...]` in its file) make:
    /// `baseline` (default: the baseline calls only, enough for the template-sensitivity
    /// metrics) or `all` (the full design, so every artifact's T is measured per template).
    /// Omitted from stored snapshots at its default, so runs without variants store exactly
    /// what they did before.
    #[serde(default, skip_serializing_if = "TemplateDesign::is_baseline")]
    pub templates: TemplateDesign,
}

/// `[design] templates`: which calls template variants make.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TemplateDesign {
    /// Baseline calls only.
    #[default]
    Baseline,
    /// The full design.
    All,
}

impl TemplateDesign {
    fn is_baseline(&self) -> bool {
        *self == TemplateDesign::Baseline
    }
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
            multiplicity: analyze::Multiplicity::default(),
            sequential: false,
            wave_pairs: None,
            templates: TemplateDesign::Baseline,
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
    /// Send `openai` and `anthropic` judges' calls through their provider's batch API, as
    /// `run --batch` does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub batch: bool,
}

fn default_concurrency() -> usize {
    16
}

impl Default for RunSection {
    fn default() -> Self {
        RunSection {
            concurrency: default_concurrency(),
            batch: false,
        }
    }
}

/// `[perturbations]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerturbationsSection {
    /// Folder of extra or overriding `*.toml` artifact files.
    pub dir: Option<PathBuf>,
    /// Rewriter judge file for every rewrite artifact (overrides each artifact's `rewriter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewriter: Option<PathBuf>,
    /// Checker judge file for every rewrite artifact (overrides each artifact's `checker`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checker: Option<PathBuf>,
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
    /// The run store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Rewrite artifacts were asked for with the run store in memory.
    #[error(
        "rewrite artifacts ({}) keep their rewrites in a run directory; run them with a store on disk (Store::dir)",
        .0.join(", ")
    )]
    RewritesNeedDir(Vec<String>),
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
        let config: AuditConfig = toml::from_str(&text).map_err(|e| {
            AuditError::Config(format!(
                "{}: {}{}",
                path.display(),
                e,
                top_level_key_hint(e.message())
            ))
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok((config, base))
    }
}

/// Settings given as `run` flags; each one given replaces the config file's value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--dataset FILE`.
    pub dataset: Option<PathBuf>,
    /// `--judge NAME` (repeatable).
    pub judges: Vec<String>,
    /// `--artifacts a,b`.
    pub artifacts: Vec<String>,
    /// `--limit N`.
    pub limit: Option<usize>,
}

impl AuditConfig {
    /// A configuration with every default and no judge (what an empty `audit.toml` holds).
    pub fn empty() -> AuditConfig {
        toml::from_str("").expect("every field has a default")
    }

    /// Apply command-line `overrides` (flags win). Paths on the command line are relative to
    /// `cwd`, not to the config file. A `--judge` naming one of the config's `[[judge]]` tables
    /// keeps that table; other names are built-ins or judge files.
    pub fn apply(&mut self, overrides: &Overrides, cwd: &Path) -> Result<(), AuditError> {
        if let Some(path) = &overrides.dataset {
            self.dataset.path = Some(resolve(cwd, path));
        }
        if let Some(limit) = overrides.limit {
            self.dataset.limit = Some(limit);
        }
        if !overrides.artifacts.is_empty() {
            let ids: Vec<String> = overrides
                .artifacts
                .iter()
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty())
                .collect();
            if ids.is_empty() {
                return Err(AuditError::Config(
                    "--artifacts: no artifact id given".into(),
                ));
            }
            self.design.artifacts = ids;
        }
        if !overrides.judges.is_empty() {
            let inline = std::mem::take(&mut self.inline_judges);
            self.judges.clear();
            for name in &overrides.judges {
                if let Some(judge) = inline.iter().find(|j| &j.name == name) {
                    self.inline_judges.push(judge.clone());
                    continue;
                }
                let path = resolve(cwd, Path::new(name));
                if name.ends_with(".toml") || path.is_file() {
                    self.judges.push(path.to_string_lossy().into_owned());
                } else {
                    self.judges.push(name.clone());
                }
            }
        }
        Ok(())
    }
}

/// Keys that belong at the top of `audit.toml`, before any `[section]`.
const TOP_LEVEL_KEYS: &[&str] = &[
    "seed",
    "out",
    "dataset",
    "design",
    "run",
    "perturbations",
    "judges",
    "judge",
    "trust",
    "jury",
];

/// A top-level key written after a `[section]` header lands in that section (that is how TOML
/// works) and is reported there as unknown; say how to fix it.
fn top_level_key_hint(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return String::new();
    };
    let key = rest.split('`').next().unwrap_or("");
    if TOP_LEVEL_KEYS.contains(&key) {
        format!(
            "hint: `{key}` is a top-level key, but TOML puts every key after a `[section]` header into that section; move `{key} = …` above the first `[section]`\n"
        )
    } else {
        String::new()
    }
}

/// Everything resolved before the first call: the audit is fully determined by this.
pub struct Prepared {
    /// Seed.
    pub seed: u64,
    /// Dataset (shared with the snapshot and the runner's workers, never copied).
    pub dataset: Arc<Dataset>,
    /// Artifacts in plan order.
    pub artifacts: Vec<Artifact>,
    /// Judges.
    pub judges: Vec<JudgeHandle>,
    /// The plan.
    pub plan: Arc<Plan>,
    /// Perturbed answers.
    pub perturbed: Arc<PerturbedAnswers>,
    /// Concurrency bound.
    pub concurrency: usize,
    /// Bootstrap resamples.
    pub bootstrap_resamples: usize,
    /// Trust thresholds.
    pub trust: TrustThresholds,
    /// What all of the above was built from.
    pub snapshot: Snapshot,
    /// Jury settings.
    pub jury: JuryOptions,
    /// Usage of the stored rewrites, once they were read from a run store.
    pub rewrite_usage: Option<run::rewrites::RewriteUsage>,
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

/// One judge as stored with a run: its configuration and the file it came from (relative
/// template paths resolve against that file's folder).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotJudge {
    /// The configuration.
    pub config: JudgeConfig,
    /// Where it was read from.
    pub source_path: Option<PathBuf>,
}

/// Everything an audit is determined by, resolved: stored in the run directory so a run can be
/// resumed or re-rendered without the original files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Seed of every random choice.
    pub seed: u64,
    /// The pairs (shared, not copied, by the prepared audit).
    pub dataset: Arc<Dataset>,
    /// The artifacts, in plan order.
    pub artifacts: Vec<Artifact>,
    /// The judges, in plan order.
    pub judges: Vec<SnapshotJudge>,
    /// Design settings.
    pub design: DesignSection,
    /// Execution settings.
    pub run: RunSection,
    /// Trust thresholds.
    pub trust: TrustThresholds,
    /// Jury settings.
    #[serde(default)]
    pub jury: JuryOptions,
    /// The rewriter (and checker) of each rewrite artifact, by artifact id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rewriters: BTreeMap<String, RewriterSet>,
    /// A dataset of single answers: the items with their gold (the dataset's pairs then hold
    /// one answer each, [`dataset::single::items_as_pairs`]). Empty for pair datasets, and then
    /// omitted, so their snapshots are unchanged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<dataset::single::Item>,
}

/// Resolve the rewriter and checker of every rewrite artifact: the audit's
/// `[perturbations] rewriter`/`checker` when set, else the artifact's own, as judge files
/// relative to the audit file (or built-in judge names).
fn resolve_rewriters(
    config: &AuditConfig,
    base: &Path,
    artifacts: &[Artifact],
) -> Result<BTreeMap<String, RewriterSet>, AuditError> {
    let mut out = BTreeMap::new();
    for a in artifacts {
        let crate::perturb::Operation::Rewrite {
            rewriter, checker, ..
        } = &a.operation
        else {
            continue;
        };
        let path_spec = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let load = |spec: String, what: &str| {
            resolve_judge(&spec, base).map_err(|e| {
                AuditError::Config(format!(
                    "artifact `{}`: {what} `{spec}`: {e} (rewrite artifacts need a {what} judge \
                     file: set `[perturbations] {what} = \"FILE\"` in the audit)",
                    a.id
                ))
            })
        };
        let rewriter = load(
            path_spec(&config.perturbations.rewriter).unwrap_or_else(|| rewriter.clone()),
            "rewriter",
        )?;
        let checker = match path_spec(&config.perturbations.checker).or_else(|| checker.clone()) {
            Some(spec) => Some(load(spec, "checker")?),
            None => None,
        };
        out.insert(
            a.id.clone(),
            RewriterSet {
                rewriter_path: rewriter.source_path.clone(),
                rewriter,
                checker_path: checker.as_ref().and_then(|c| c.source_path.clone()),
                checker,
            },
        );
    }
    Ok(out)
}

/// Load the dataset, artifacts and judge configurations `config` names.
pub fn resolve_config(config: &AuditConfig, base: &Path) -> Result<Snapshot, AuditError> {
    let mut items = Vec::new();
    let mut dataset = match &config.dataset.path {
        Some(path) if dataset::single::looks_single(&resolve(base, path)) => {
            let path = resolve(base, path);
            if config.dataset.skip_invalid {
                return Err(AuditError::Config(format!(
                    "dataset.skip_invalid: {} holds single answers, which are loaded whole or not at all; fix the record the error names",
                    path.display()
                )));
            }
            items = dataset::single::load_items(&path)?;
            if let Some(limit) = config.dataset.limit {
                items.truncate(limit);
            }
            let pairs = dataset::single::items_as_pairs(&items);
            Dataset {
                name: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| path.display().to_string()),
                hash: dataset::hash_pairs(&pairs),
                pairs,
                skipped: Vec::new(),
            }
        }
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
        dataset.hash = dataset::hash_pairs(&dataset.pairs);
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
    let mut judges = Vec::new();
    for spec in &config.judges {
        let judge = resolve_judge(spec, base)?;
        let source_path = judge.source_path.clone();
        judges.push(SnapshotJudge {
            config: judge,
            source_path,
        });
    }
    for judge in &config.inline_judges {
        judges.push(SnapshotJudge {
            config: judge.clone(),
            // Inline judges' relative template paths resolve against the audit file's folder.
            source_path: Some(base.join("audit.toml")),
        });
    }
    let judges = with_template_variants(judges, config.design.templates)?;
    let mut judges = with_mitigated(judges, &config.mitigations)?;
    if judges.iter().any(|j| j.config.reference_guided) {
        let references = match &config.dataset.path {
            Some(path) => dataset::reference::load_references(&resolve(base, path))?,
            None => BTreeMap::new(),
        };
        judge::mitigate::attach_references(
            judges.iter_mut().map(|j| &mut j.config),
            &dataset.pairs,
            &references,
        )
        .map_err(AuditError::Config)?;
    }
    if judges.is_empty() {
        return Err(AuditError::Config(
            "judges: no judge configured (name built-in judges or judge files in `judges = [...]`, or add [[judge]] tables)".into(),
        ));
    }
    let rewriters = resolve_rewriters(config, base, &artifacts)?;
    Ok(Snapshot {
        rewriters,
        seed: config.seed,
        dataset: Arc::new(dataset),
        artifacts,
        judges,
        design: config.design.clone(),
        run: config.run.clone(),
        trust: config.trust,
        jury: config.jury.clone(),
        items,
    })
}

/// Every judge followed by the derived judges of its template variants
/// ([`JudgeConfig::template_variants`]), each on the baseline calls only (`templates =
/// "baseline"`: an empty artifact scope) or on the judge's own scope (`"all"`).
fn with_template_variants(
    judges: Vec<SnapshotJudge>,
    design: TemplateDesign,
) -> Result<Vec<SnapshotJudge>, AuditError> {
    let mut out = Vec::with_capacity(judges.len());
    for j in judges {
        let mut config = j.config.clone();
        config.source_path = j.source_path.clone();
        let variants = config
            .template_variants()
            .map_err(|e| AuditError::Config(e.to_string()))?;
        out.push(j);
        for mut v in variants {
            if design == TemplateDesign::Baseline {
                v.audit_artifacts = Some(Vec::new());
            }
            v.source_path = None;
            out.push(SnapshotJudge {
                source_path: config.source_path.clone(),
                config: v,
            });
        }
    }
    Ok(out)
}

/// Every judge followed by its `[mitigations]` derived judges (pairwise judges that are not
/// derived themselves): `<judge>+bias-instruction`, `<judge>+normalise`, each the judge's own
/// configuration with the mitigation on, on the judge's own scope.
fn with_mitigated(
    judges: Vec<SnapshotJudge>,
    section: &MitigationsSection,
) -> Result<Vec<SnapshotJudge>, AuditError> {
    if section.instruction().is_some_and(|t| t.trim().is_empty()) {
        return Err(AuditError::Config(
            "mitigations.bias_instruction: the sentence must not be empty".into(),
        ));
    }
    let mut out = Vec::with_capacity(judges.len());
    for j in judges {
        let base = j.config.clone();
        let source_path = j.source_path.clone();
        out.push(j);
        // A custom judge reads no configuration, so a mitigation set there would not reach it.
        if base.is_pointwise()
            || base.variant_of.is_some()
            || base.backend == judge::config::Backend::Custom
        {
            continue;
        }
        let derive = |id: &str, apply: &dyn Fn(&mut JudgeConfig)| {
            let mut d = base.clone();
            d.name = format!("{}+{id}", base.name);
            d.templates = Vec::new();
            d.variant_of = Some(base.name.clone());
            apply(&mut d);
            SnapshotJudge {
                config: d,
                source_path: source_path.clone(),
            }
        };
        if let Some(text) = section.instruction() {
            out.push(derive("bias-instruction", &|d| {
                d.bias_instruction = Some(text.clone())
            }));
        }
        if section.normalise {
            out.push(derive("normalise", &|d| d.normalise = true));
        }
        if section.reference {
            out.push(derive("reference", &|d| d.reference_guided = true));
        }
    }
    Ok(out)
}

/// Load everything and build the plan; no judge is called.
pub fn prepare(config: &AuditConfig, base: &Path) -> Result<Prepared, AuditError> {
    prepare_snapshot(resolve_config(config, base)?)
}

/// Build judges, plan and perturbations from a snapshot; no judge is called.
pub fn prepare_snapshot(snapshot: Snapshot) -> Result<Prepared, AuditError> {
    prepare_snapshot_with(snapshot, &HashMap::new())
}

/// [`prepare_snapshot`] where the judges named in `built` are not built from their
/// configuration but are the given backends (a judge implemented by the embedding program,
/// `backend = "custom"`, see [`crate::Audit::judge`]); every other judge is built as usual.
pub(crate) fn prepare_snapshot_with(
    snapshot: Snapshot,
    built: &HashMap<String, Arc<dyn judge::Judge>>,
) -> Result<Prepared, AuditError> {
    let mut seen = BTreeMap::new();
    for j in &snapshot.judges {
        if seen.insert(j.config.name.clone(), ()).is_some() {
            return Err(AuditError::Config(format!(
                "judges: two judges are named `{}`",
                j.config.name
            )));
        }
    }
    if let Some(w) = snapshot.design.wave_pairs
        && !(1..=analyze::sequential::MAX_WAVE_PAIRS).contains(&w)
    {
        return Err(AuditError::Config(format!(
            "design.wave_pairs: {w} is outside 1..={}",
            analyze::sequential::MAX_WAVE_PAIRS
        )));
    }
    if snapshot.design.repeats == 0 {
        return Err(AuditError::Config(
            "design.repeats: must be at least 1".into(),
        ));
    }
    let configs: Vec<_> = snapshot.judges.iter().map(|j| j.config.clone()).collect();
    run::check_concurrency(snapshot.run.concurrency, &configs).map_err(AuditError::Config)?;
    let mut judges = Vec::new();
    for j in &snapshot.judges {
        let mut config = j.config.clone();
        config.source_path = j.source_path.clone();
        let backend = match built.get(&config.name) {
            Some(judge) => judge.clone(),
            None => judge::build(&config)?,
        };
        backend.learn(&snapshot.dataset.pairs);
        judges.push(JudgeHandle {
            config,
            judge: backend,
        });
    }
    if !snapshot.items.is_empty()
        && let Some(j) = judges.iter().find(|j| !j.config.is_pointwise())
    {
        return Err(AuditError::Config(format!(
            "judge `{}`: the dataset holds single answers (`response`, no `response_a`/`response_b`), which a pairwise judge cannot compare; give it a pair dataset or audit a score, label or rubric judge",
            j.config.name
        )));
    }
    for j in judges.iter().filter(|j| j.config.is_pointwise()) {
        if snapshot.design.sequential {
            return Err(AuditError::Config(format!(
                "judge `{}`: design.sequential: the sequential audit stops pairwise cells; pointwise judges (kind = \"{}\") are audited on the full plan, so turn sequential off or audit them separately",
                j.config.name,
                j.config.kind.name()
            )));
        }
        if let Some(other) = &j.config.pairwise_judge
            && !judges
                .iter()
                .any(|p| &p.config.name == other && !p.config.is_pointwise())
        {
            return Err(AuditError::Config(format!(
                "judge `{}`: pairwise_judge: `{other}` is not a pairwise judge of this audit",
                j.config.name
            )));
        }
    }
    // A typo in `audit_artifacts` would silently audit the judge on nothing (and pass a gate).
    for j in &judges {
        for id in j.config.audit_artifacts.iter().flatten() {
            if !snapshot.artifacts.iter().any(|a| &a.id == id) {
                let known: Vec<&str> = snapshot.artifacts.iter().map(|a| a.id.as_str()).collect();
                return Err(AuditError::Config(format!(
                    "judge `{}`: audit_artifacts: unknown artifact `{id}` (this audit's artifacts: {})",
                    j.config.name,
                    known.join(", ")
                )));
            }
        }
    }
    let artifact_refs: Vec<&Artifact> = snapshot.artifacts.iter().collect();
    let scopes: Vec<JudgeScope> = judges
        .iter()
        .map(|j| JudgeScope {
            name: j.config.name.clone(),
            max_pairs: j.config.audit_max_pairs,
            artifacts: j.config.audit_artifacts.clone(),
            pointwise: j.config.is_pointwise(),
            single: !snapshot.items.is_empty(),
        })
        .collect();
    let options = DesignOptions {
        repeats: snapshot.design.repeats,
        tie_targets: snapshot.design.tie_targets,
    };
    crate::design::check(
        &scopes,
        &snapshot.dataset.pairs,
        &artifact_refs,
        &options,
        snapshot.design.bootstrap_resamples,
        &crate::design::Limits::from_system(),
    )
    .map_err(AuditError::Config)?;
    let plan = Plan::build_scoped(&scopes, &snapshot.dataset.pairs, &artifact_refs, &options);
    let mut perturbed =
        PerturbedAnswers::compute(&snapshot.dataset.pairs, &artifact_refs, snapshot.seed);
    // Until the rewrites are made (or read from a run store), rewrite items measure nothing.
    run::rewrites::fill(
        &mut perturbed,
        &plan,
        &snapshot.dataset.pairs,
        &snapshot.artifacts,
        &snapshot.rewriters,
        &BTreeMap::new(),
    );
    Ok(Prepared {
        seed: snapshot.seed,
        concurrency: snapshot.run.concurrency,
        bootstrap_resamples: snapshot.design.bootstrap_resamples,
        trust: snapshot.trust,
        jury: snapshot.jury.clone(),
        dataset: snapshot.dataset.clone(),
        artifacts: snapshot.artifacts.clone(),
        judges,
        plan: Arc::new(plan),
        perturbed: Arc::new(perturbed),
        rewrite_usage: None,
        snapshot,
    })
}

/// How a prepared audit is executed.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// No progress display.
    pub quiet: bool,
    /// Stop issuing calls once this much would be spent (USD).
    pub max_cost: Option<f64>,
    /// Response cache directory; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// A sequential audit issues no wave that would take its calls past this many.
    pub max_calls: Option<u64>,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            quiet: false,
            max_cost: None,
            cache_dir: run::cache::default_dir(),
            max_calls: None,
        }
    }
}

pub(crate) const SNAPSHOT_KEY: &str = "snapshot";

/// The snapshot as stored: everything but the pairs, which the store keeps one row each (the
/// dataset's hash stays in, so a different dataset still makes a different snapshot).
fn snapshot_header(snapshot: &Snapshot) -> String {
    let header = Snapshot {
        dataset: Arc::new(Dataset {
            pairs: Vec::new(),
            name: snapshot.dataset.name.clone(),
            hash: snapshot.dataset.hash.clone(),
            skipped: snapshot.dataset.skipped.clone(),
        }),
        ..snapshot.clone()
    };
    serde_json::to_string(&header).expect("snapshots serialize")
}

/// Open the run store in `out`, recording the snapshot and plan of a new run, or checking that an
/// existing store belongs to this very audit (same snapshot, same plan).
pub(crate) fn open_run(prepared: &Prepared, out: &Path) -> Result<RunStore, AuditError> {
    std::fs::create_dir_all(out).map_err(|source| AuditError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let mut store = RunStore::open(out)?;
    let header = snapshot_header(&prepared.snapshot);
    match store.meta(SNAPSHOT_KEY)? {
        // Runs stored by earlier versions kept the pairs inside the snapshot.
        Some(stored)
            if stored != header
                && serde_json::from_str::<Snapshot>(&stored)
                    .map(|old| snapshot_header(&old))
                    .ok()
                    .as_deref()
                    != Some(header.as_str()) =>
        {
            return Err(AuditError::Config(format!(
                "{}: this directory holds a different audit; use `run --resume {}` to continue it, or another --out",
                out.display(),
                out.display()
            )));
        }
        // The same audit: its stored plan must still be the one this version builds.
        Some(_) => check_stored_plan(&store, prepared, out)?,
        None => record_run(&mut store, prepared)?,
    }
    Ok(store)
}

/// Record a new run in `store`: the snapshot header, the tool version, the pairs and the plan.
fn record_run(store: &mut RunStore, prepared: &Prepared) -> Result<(), AuditError> {
    let header = snapshot_header(&prepared.snapshot);
    let plan = prepared
        .plan
        .calls
        .iter()
        .map(|c| (c.id.as_str(), c.judge.as_str()));
    store.create_run(
        &[
            (SNAPSHOT_KEY, header.as_str()),
            ("tool_version", env!("CARGO_PKG_VERSION")),
        ],
        &prepared.dataset.pairs,
        plan,
    )?;
    Ok(())
}

/// The plan stored in `dir` must be the one `prepared` holds, call for call: records are read in
/// the stored plan's order and analysed against the prepared one.
pub(crate) fn check_stored_plan(
    store: &RunStore,
    prepared: &Prepared,
    dir: &Path,
) -> Result<(), AuditError> {
    if !store.plan_is(prepared.plan.calls.iter().map(|c| c.id.as_str()))? {
        return Err(AuditError::Config(format!(
            "{}: the stored plan differs from the plan this version of judge-audit builds; it cannot be resumed or re-rendered",
            dir.display()
        )));
    }
    Ok(())
}

/// Load a run directory's snapshot and prepare it (for `--resume` and `report`).
pub fn prepare_stored(run_dir: &Path) -> Result<Prepared, AuditError> {
    if !RunStore::exists(run_dir) {
        return Err(AuditError::Config(format!(
            "{}: not a run directory (no {})",
            run_dir.display(),
            run::store::RUN_DB
        )));
    }
    let store = RunStore::open(run_dir)?;
    let text = store.meta(SNAPSHOT_KEY)?.ok_or_else(|| {
        AuditError::Config(format!(
            "{}: the run store has no snapshot",
            run_dir.display()
        ))
    })?;
    let mut snapshot: Snapshot = serde_json::from_str(&text).map_err(|e| {
        AuditError::Config(format!("{}: unreadable snapshot: {e}", run_dir.display()))
    })?;
    let pairs = store.pairs()?;
    if !pairs.is_empty() {
        let stored_hash = &snapshot.dataset.hash;
        if dataset::hash_pairs(&pairs) != *stored_hash {
            return Err(AuditError::Config(format!(
                "{}: the stored pairs do not match the snapshot's dataset hash {stored_hash}",
                run_dir.display()
            )));
        }
        Arc::make_mut(&mut snapshot.dataset).pairs = pairs;
    }
    let mut prepared = prepare_snapshot(snapshot)?;
    fill_stored_rewrites(&mut prepared, &store)?;
    Ok(prepared)
}

/// Put a run store's rewrites into the prepared perturbed answers (no call is made).
fn fill_stored_rewrites(prepared: &mut Prepared, store: &RunStore) -> Result<(), AuditError> {
    if prepared.snapshot.rewriters.is_empty() {
        return Ok(());
    }
    let stored = store.rewrites()?;
    prepared.perturbed = Arc::new(with_rewrites(prepared, &stored));
    prepared.rewrite_usage = Some(run::rewrites::usage(&stored));
    Ok(())
}

/// The prepared perturbed answers with `stored` rewrites filled in (no call is made).
fn with_rewrites(
    prepared: &Prepared,
    stored: &BTreeMap<String, run::rewrites::StoredRewrite>,
) -> PerturbedAnswers {
    let mut perturbed = (*prepared.perturbed).clone();
    run::rewrites::fill(
        &mut perturbed,
        &prepared.plan,
        &prepared.dataset.pairs,
        &prepared.artifacts,
        &prepared.snapshot.rewriters,
        stored,
    );
    perturbed
}

/// Re-render every output of a finished (or partial) run from its stored calls; no judge is
/// called.
pub fn rerender(run_dir: &Path) -> Result<Summary, AuditError> {
    let summary = summarize_stored(run_dir)?;
    write_reports(&summary, run_dir)?;
    Ok(summary)
}

/// The summary of a stored run restricted to the pairs `keep` accepts (for `harden
/// --holdout`): the plan, perturbations and analysis are rebuilt on those pairs from the stored
/// snapshot, and only their records are analysed. Also returns the prepared (restricted) audit.
pub fn summarize_stored_pairs(
    run_dir: &Path,
    keep: &dyn Fn(&dataset::Pair) -> bool,
) -> Result<(Summary, Prepared), AuditError> {
    let full = prepare_stored(run_dir)?;
    let store = RunStore::open(run_dir)?;
    check_stored_plan(&store, &full, run_dir)?;
    let mut records = store.records_for_analysis()?;
    add_failed_records(&full, &store, &mut records)?;
    let mut snapshot = full.snapshot.clone();
    let mut dataset = (*snapshot.dataset).clone();
    dataset.pairs.retain(|p| keep(p));
    dataset.hash = dataset::hash_pairs(&dataset.pairs);
    snapshot.dataset = Arc::new(dataset);
    let mut prepared = prepare_snapshot(snapshot)?;
    fill_stored_rewrites(&mut prepared, &store)?;
    let ids: std::collections::HashSet<&str> =
        prepared.plan.calls.iter().map(|c| c.id.as_str()).collect();
    records.retain(|r| ids.contains(r.call_id.as_str()));
    // The restricted plan's positions are not the stored plan's: its columns are built from the
    // kept records (the analysis reads columns for pairwise-only audits).
    let position: HashMap<&str, usize> = prepared
        .plan
        .calls
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.as_str(), i))
        .collect();
    let mut columns = run::columns::CallColumns::new(prepared.plan.calls.len());
    for r in &records {
        if let Some(&i) = position.get(r.call_id.as_str()) {
            columns.set(i, r.verdict, r.usage, r.label_probs.as_ref());
        }
    }
    if !reads_records(&prepared) {
        records = Vec::new();
    }
    let outcome = RunOutcome {
        records,
        columns,
        faults: store.fault_counts()?,
        ..RunOutcome::default()
    };
    Ok((summarize(&prepared, &outcome), prepared))
}

/// The summary of a stored run, analysed again from its stored calls (no judge is called, nothing
/// is written).
pub fn summarize_stored(run_dir: &Path) -> Result<Summary, AuditError> {
    let prepared = prepare_stored(run_dir)?;
    let store = RunStore::open(run_dir)?;
    check_stored_plan(&store, &prepared, run_dir)?;
    let mut outcome = RunOutcome {
        columns: store.call_columns(prepared.plan.calls.len())?,
        faults: store.fault_counts()?,
        ..RunOutcome::default()
    };
    load_records(&prepared, &store, &mut outcome)?;
    Ok(summarize(&prepared, &outcome))
}

/// Execute a prepared audit in `out` (a new run, or the continuation of the same audit), writing
/// `calls.jsonl` and the run store as calls complete.
pub async fn execute(
    prepared: &Prepared,
    out: &Path,
    options: &ExecOptions,
) -> Result<RunOutcome, AuditError> {
    execute_where(prepared, out, options, &|_| true).await
}

/// [`execute`] sending only the calls `keep` accepts (`run --batch` sends the calls of judges
/// without a batch route this way, leaving batch judges' calls to their batches).
pub async fn execute_where(
    prepared: &Prepared,
    out: &Path,
    options: &ExecOptions,
    keep: &(dyn Fn(&crate::design::CallSpec) -> bool + Sync),
) -> Result<RunOutcome, AuditError> {
    check_keys(prepared, |k| std::env::var(k).ok())?;
    drop(open_run(prepared, out)?);
    // A shard run (`run --shard`, or its resume) sends only its own calls.
    let shard = crate::batch::shard::stored(out)?;
    let run_options = RunOptions {
        concurrency: prepared.concurrency,
        seed: prepared.seed,
        progress: if options.quiet {
            ProgressMode::Quiet
        } else {
            ProgressMode::Auto
        },
        max_cost: options.max_cost,
        cache_dir: options.cache_dir.clone(),
    };
    // Rewrites first: every judge must see the same stored rewrite.
    let (perturbed, rewrite_stats, rewrite_usage) = if prepared.snapshot.rewriters.is_empty() {
        (prepared.perturbed.clone(), Default::default(), None)
    } else {
        let stats = run::rewrites::prepare(
            &prepared.plan,
            &prepared.dataset.pairs,
            &prepared.artifacts,
            &prepared.snapshot.rewriters,
            out,
            options.cache_dir.as_deref(),
            options.max_cost,
        )
        .await?;
        let stored = RunStore::open(out)?.rewrites()?;
        let perturbed = with_rewrites(prepared, &stored);
        if !options.quiet {
            eprintln!(
                "judge-audit: rewrites: {} sent, {} from the cache, {} stored, {} failed",
                stats.sent,
                stats.cache_hits,
                stored.len(),
                stats.failed.len()
            );
        }
        for f in &stats.failed {
            eprintln!("judge-audit: rewrite failed: {f}");
        }
        (
            Arc::new(perturbed),
            stats,
            Some(run::rewrites::usage(&stored)),
        )
    };
    // The judges get what the rewrites (of every session) left of the budget.
    let mut run_options = run_options;
    if let (Some(max), Some(u)) = (run_options.max_cost, &rewrite_usage) {
        run_options.max_cost = Some((max - u.cost_usd).max(0.0));
    }
    let sends = |call: &crate::design::CallSpec| {
        keep(call)
            && shard.is_none_or(|s| s.contains(&call.id))
            && !awaits_rewrite(&perturbed, call)
    };
    let target = run::RunTarget::Dir(out.to_path_buf());
    let (mut outcome, store) = drive(
        prepared,
        perturbed.clone(),
        target,
        &run_options,
        options.max_calls,
        &sends,
    )
    .await?;
    // The writer's connection saw every commit; no need to open the file again.
    load_records(prepared, &store, &mut outcome)?;
    if rewrite_usage.is_some() {
        outcome.perturbed = Some(perturbed);
        outcome.rewrites = rewrite_stats;
        outcome.rewrite_usage = rewrite_usage;
    }
    Ok(outcome)
}

/// True for a call whose rewrite could not be made yet: it is not sent (it stays pending), so a
/// resume sends it once the rewrite is stored instead of judging the original text.
fn awaits_rewrite(perturbed: &PerturbedAnswers, call: &crate::design::CallSpec) -> bool {
    let (Some(artifact), Some(side)) = (&call.artifact, call.side) else {
        return false;
    };
    perturbed
        .get(artifact, call.pair_index, side)
        .is_some_and(|p| p.rejected.as_deref() == Some(crate::perturb::rewrite::NOT_REWRITTEN))
}

/// The sequential engine's settings for `prepared` (a budget only where a run gives one).
pub fn sequential_options(
    prepared: &Prepared,
    max_calls: Option<u64>,
) -> analyze::sequential::SequentialOptions {
    analyze::sequential::SequentialOptions {
        wave_pairs: prepared.snapshot.design.wave_pairs.unwrap_or(16),
        alpha: 0.05,
        reject_size: prepared.trust.reject_abs_t,
        reject_wr: prepared.trust.reject_abs_wr,
        reject_excess_flip: prepared.trust.reject_excess_flip,
        seed: prepared.seed,
        max_calls,
    }
}

/// Why `batch export` and `batch submit` refuse a sequential audit: each wave's calls depend on
/// the previous wave's answers, so a detached submission of fixed calls cannot carry it; `run
/// --batch` can, one wave per batch round.
pub const SEQUENTIAL_BATCH_REFUSAL: &str = "a sequential audit (design.sequential / --sequential) cannot be exported or submitted as detached batches: each wave's calls depend on the previous wave's answers; run it with `judge-audit run --batch`, which submits one wave per batch round and decides each wave once its batches end";

/// Refuse detached batch submission (`batch export`, `batch submit`) of a sequential audit,
/// with [`SEQUENTIAL_BATCH_REFUSAL`] as the reason.
pub fn refuse_sequential_batch(prepared: &Prepared) -> Result<(), AuditError> {
    if prepared.snapshot.design.sequential {
        return Err(AuditError::Config(SEQUENTIAL_BATCH_REFUSAL.into()));
    }
    Ok(())
}

/// Send the plan calls `indices` of run `out` (recorded already) through the synchronous
/// executor in one [`run::RunSession`] and wait for them; calls already committed are skipped.
/// `run --batch` of a sequential audit sends each wave's calls of judges without a batch route
/// this way (and, with `--batch-fallback sync`, the calls the wave's batches left).
pub async fn execute_calls(
    prepared: &Prepared,
    out: &Path,
    options: &ExecOptions,
    indices: &[usize],
) -> Result<RunOutcome, AuditError> {
    check_keys(prepared, |k| std::env::var(k).ok())?;
    let wanted: std::collections::HashSet<&str> = indices
        .iter()
        .map(|&i| prepared.plan.calls[i].id.as_str())
        .collect();
    let perturbed = prepared.perturbed.clone();
    let keep = |c: &crate::design::CallSpec| {
        wanted.contains(c.id.as_str()) && !awaits_rewrite(&perturbed, c)
    };
    let run_options = RunOptions {
        concurrency: prepared.concurrency,
        seed: prepared.seed,
        progress: if options.quiet {
            ProgressMode::Quiet
        } else {
            ProgressMode::Auto
        },
        max_cost: options.max_cost,
        cache_dir: options.cache_dir.clone(),
    };
    let mut session = run::RunSession::open(
        prepared.plan.clone(),
        prepared.dataset.clone(),
        perturbed.clone(),
        &prepared.judges,
        out,
        &run_options,
        &keep,
    )?;
    let send = session.pending().to_vec();
    session.send(&send).await;
    Ok(session.finish()?)
}

/// The configured juries as (name, members) for the sequential section: one per rule over the
/// configured members (every judge when none are named). The composer's suggested jury is
/// chosen after the analysis, so it has no sequential state.
fn sequential_juries(prepared: &Prepared) -> Vec<(String, Vec<String>)> {
    let jury = &prepared.jury;
    if !jury.enabled {
        return Vec::new();
    }
    let members = if !jury.members.is_empty() {
        jury.members.clone()
    } else {
        let named = default_jury_members(prepared);
        if named.is_empty() {
            prepared.plan.judges.clone()
        } else {
            named
        }
    };
    let mut rules = jury.rules.clone();
    rules.dedup();
    rules
        .into_iter()
        .map(|rule| (format!("jury-{}", rule.name()), members.clone()))
        .collect()
}

/// Open one [`run::RunSession`] on `target` and send what it holds pending that `keep`
/// accepts: wave by wave for a sequential design ([`execute_sequential`]), else all at once.
/// Returns the outcome with the store the session committed to.
async fn drive(
    prepared: &Prepared,
    perturbed: Arc<PerturbedAnswers>,
    target: run::RunTarget,
    run_options: &RunOptions,
    max_calls: Option<u64>,
    keep: &(dyn Fn(&crate::design::CallSpec) -> bool + Sync),
) -> Result<(RunOutcome, RunStore), AuditError> {
    let mut session = run::RunSession::open_target(
        prepared.plan.clone(),
        prepared.dataset.clone(),
        perturbed,
        &prepared.judges,
        target,
        run_options,
        keep,
    )?;
    if prepared.snapshot.design.sequential {
        execute_sequential(prepared, &mut session, max_calls, keep).await?;
    } else {
        let pending = session.pending().to_vec();
        session.send(&pending).await;
    }
    Ok(session.finish_with_store()?)
}

/// [`execute`] with the run store in memory ([`RunStore::memory`]): the same plan, runner,
/// cache and analysis inputs, and nothing written to disk (no run directory, no
/// `calls.jsonl`). Rewrite artifacts are refused ([`AuditError::RewritesNeedDir`]): their
/// rewrites are made before any judge call and kept in a run directory.
pub async fn execute_in_memory(
    prepared: &Prepared,
    options: &ExecOptions,
) -> Result<RunOutcome, AuditError> {
    if !prepared.snapshot.rewriters.is_empty() {
        return Err(AuditError::RewritesNeedDir(
            prepared.snapshot.rewriters.keys().cloned().collect(),
        ));
    }
    check_keys(prepared, |k| std::env::var(k).ok())?;
    let mut store = RunStore::memory()?;
    record_run(&mut store, prepared)?;
    let run_options = RunOptions {
        concurrency: prepared.concurrency,
        seed: prepared.seed,
        progress: if options.quiet {
            ProgressMode::Quiet
        } else {
            ProgressMode::Auto
        },
        max_cost: options.max_cost,
        cache_dir: options.cache_dir.clone(),
    };
    let (mut outcome, store) = drive(
        prepared,
        prepared.perturbed.clone(),
        run::RunTarget::Memory(store),
        &run_options,
        options.max_calls,
        &|_| true,
    )
    .await?;
    load_records(prepared, &store, &mut outcome)?;
    Ok(outcome)
}

/// A sequential run in one [`run::RunSession`]: the stored calls are folded through the engine
/// (so a resumed run recomputes every decision and continues from the first incomplete wave
/// without re-sending), then each wave's missing calls are sent and its answers folded in,
/// until the engine is finished. The store, cache, limiters and judges stay open across waves,
/// and a wave is analysed incrementally, so a wave costs its own calls only. Stops early when a
/// wave makes no progress (its calls keep failing, a judge was stopped, the cost budget ended):
/// the summary then shows the cells as undecided.
async fn execute_sequential(
    prepared: &Prepared,
    session: &mut run::RunSession,
    max_calls: Option<u64>,
    keep: &(dyn Fn(&crate::design::CallSpec) -> bool + Sync),
) -> Result<(), AuditError> {
    let plan = &prepared.plan;
    let options = sequential_options(prepared, max_calls);
    session.collect_answers();
    let mut records: HashMap<String, run::CallRecord> = session
        .committed_before()?
        .into_iter()
        .map(|r| (r.call_id.clone(), r))
        .collect();
    let mut engine = analyze::sequential::Sequential::new(plan, &options);
    // (wave, calls of it still missing) after the previous round: a wave that did not shrink
    // is not sent again (its calls keep failing).
    let mut last = (usize::MAX, usize::MAX);
    while let Some(calls) = engine.next_wave(plan) {
        let missing: Vec<usize> = calls
            .iter()
            .copied()
            .filter(|&i| !records.contains_key(&plan.calls[i].id))
            .collect();
        if missing.is_empty() {
            let by_id: HashMap<&str, &run::CallRecord> = calls
                .iter()
                .filter_map(|&i| {
                    let id = plan.calls[i].id.as_str();
                    records.get(id).map(|r| (id, r))
                })
                .collect();
            engine.observe(plan, &calls, &by_id);
            continue;
        }
        if engine.waves_run() == last.0 && missing.len() >= last.1 {
            break;
        }
        last = (engine.waves_run(), missing.len());
        let send: Vec<usize> = missing
            .into_iter()
            .filter(|&i| keep(&plan.calls[i]))
            .collect();
        let running = session.send(&send).await;
        let Some(answers) = session.flush().await else {
            break;
        };
        for mut record in answers {
            // The engine reads verdicts, not texts; the store keeps the texts.
            record.raw = None;
            records.insert(record.call_id.clone(), record);
        }
        if !running || session.over_budget() > 0 || session.any_stopped() {
            break;
        }
    }
    Ok(())
}

/// True when [`summarize`] reads the committed calls as records: the sequential engine and the
/// pointwise analysis read them; every other audit is analysed from [`RunOutcome::columns`].
fn reads_records(prepared: &Prepared) -> bool {
    prepared.snapshot.design.sequential || prepared.judges.iter().any(|h| h.config.is_pointwise())
}

/// Fill `outcome.records` from the store (with the failed calls' records) when [`summarize`]
/// reads them, so an audit analysed from columns holds no record per call.
fn load_records(
    prepared: &Prepared,
    store: &RunStore,
    outcome: &mut RunOutcome,
) -> Result<(), AuditError> {
    if reads_records(prepared) {
        outcome.records = store.records_for_analysis()?;
        add_failed_records(prepared, store, &mut outcome.records)?;
    }
    Ok(())
}

/// The store commits answers only (a failed call is sent again by a resume), so a call with
/// no committed record is either failed (sent, and its faults are recorded) or pending (never
/// sent). Add a record without a verdict for each failed call, so the analysis counts it as
/// failed and every other call without a record as pending.
fn add_failed_records(
    prepared: &Prepared,
    store: &RunStore,
    records: &mut Vec<run::CallRecord>,
) -> Result<(), AuditError> {
    let failed = store.failed_ids()?;
    if failed.is_empty() {
        return Ok(());
    }
    for spec in prepared
        .plan
        .calls
        .iter()
        .filter(|c| failed.contains(&c.id))
    {
        records.push(run::CallRecord {
            attempts: 1,
            error: Some("failed (see the faults)".into()),
            ..run::CallRecord::new(spec)
        });
    }
    Ok(())
}

/// Refuse to start when a judge with planned calls talks to a hosted API (an `https://` base
/// URL that is not loopback) and its key variable is unset or blank: every call would fail with
/// 401 after retries, and the run would end in "could not audit" having waited for nothing.
/// Local servers (http, or loopback) need no key. `env` looks up an environment variable.
pub fn check_keys(
    prepared: &Prepared,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(), AuditError> {
    // Rewriters and checkers are called before any judge: a missing key fails them first.
    let helpers = prepared
        .snapshot
        .rewriters
        .values()
        .flat_map(|s| std::iter::once(&s.rewriter).chain(s.checker.as_ref()));
    for (config, is_judge) in prepared
        .judges
        .iter()
        .map(|j| (&j.config, true))
        .chain(helpers.map(|c| (c, false)))
    {
        let Some(var) = config.api_key_env_name() else {
            continue;
        };
        if is_judge && !prepared.plan.calls.iter().any(|c| c.judge == config.name) {
            continue;
        }
        let Ok(url) = config.resolve_base_url_with(&env) else {
            continue;
        };
        if !needs_key(&url) || config.resolve_api_key_with(&env).is_some() {
            continue;
        }
        let state = if env(var).is_some() {
            "empty"
        } else {
            "not set"
        };
        return Err(AuditError::Config(format!(
            "judge `{}`: api_key_env: the environment variable {var} is {state}, and {url} needs a key;              export {var}=… (or point the judge at a local server) and run again; no call was sent",
            config.name
        )));
    }
    Ok(())
}

/// Whether a base URL is a hosted API that needs a key: https and not a loopback host.
fn needs_key(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    !(host == "localhost" || host.starts_with("127.") || host == "::1")
}

/// What a plan will cost one judge, before anything is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanEstimate {
    /// Judge name.
    pub judge: String,
    /// Calls planned.
    pub calls: usize,
    /// Estimated input tokens (about four characters a token of the rendered prompt).
    pub input_tokens: u64,
    /// Upper bound on output tokens (`max_tokens` per call).
    pub output_tokens: u64,
    /// Estimated cost in USD when the judge file has prices.
    pub cost_usd: Option<f64>,
}

/// Estimate calls, tokens and cost per judge.
pub fn estimate(prepared: &Prepared) -> Vec<PlanEstimate> {
    estimate_where(prepared, |_| true)
}

/// What is left of a stored run: the calls of its plan with no committed record, per judge
/// (for `run --resume DIR --dry-run`).
pub fn remaining(prepared: &Prepared, run_dir: &Path) -> Result<Vec<PlanEstimate>, AuditError> {
    let store = RunStore::open(run_dir)?;
    check_stored_plan(&store, prepared, run_dir)?;
    let committed = store.completed_ids()?;
    Ok(estimate_where(prepared, |spec| {
        !committed.contains(&spec.id)
    }))
}

/// Estimate calls, tokens and cost per judge over the planned calls `keep` accepts.
fn estimate_where(
    prepared: &Prepared,
    keep: impl Fn(&crate::design::CallSpec) -> bool,
) -> Vec<PlanEstimate> {
    prepared
        .judges
        .iter()
        .map(|handle| {
            let (mut calls, mut input_tokens) = (0usize, 0u64);
            for spec in prepared
                .plan
                .calls
                .iter()
                .filter(|c| c.judge == handle.config.name && keep(c))
            {
                if let Some(request) =
                    crate::design::request(spec, &prepared.dataset.pairs, &prepared.perturbed)
                {
                    calls += 1;
                    input_tokens += handle.judge.estimate_input_tokens(&request);
                }
            }
            let output_tokens = calls as u64 * u64::from(handle.config.max_tokens);
            let cost_usd = handle.config.pricing.map(|p| {
                run::cost_usd(
                    &crate::judge::TokenUsage {
                        input_tokens,
                        output_tokens,
                    },
                    &p,
                )
            });
            PlanEstimate {
                judge: handle.config.name.clone(),
                calls,
                input_tokens,
                output_tokens,
                cost_usd,
            }
        })
        .collect()
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
    // A sequential audit is analysed on the calls of the waves it issued: the calls its stopping
    // rule never asked for are not missing answers.
    let sequential = prepared.snapshot.design.sequential.then(|| {
        let by_id: HashMap<&str, &run::CallRecord> = outcome
            .records
            .iter()
            .map(|r| (r.call_id.as_str(), r))
            .collect();
        let mut engine = analyze::sequential::Sequential::new(
            &prepared.plan,
            &sequential_options(prepared, None),
        );
        let next = engine.replay(&prepared.plan, &by_id);
        let mut issued: std::collections::HashSet<usize> =
            engine.issued().iter().copied().collect();
        // A wave went through batches when one of its answers came from a provider batch.
        let batched = |wave: &[usize]| {
            wave.iter().any(|&i| {
                by_id
                    .get(prepared.plan.calls[i].id.as_str())
                    .and_then(|r| r.via.as_deref())
                    .is_some_and(|via| via.starts_with(crate::batch::provider::VIA_PREFIX))
            })
        };
        let mut batch_waves = engine.issued_waves().filter(|w| batched(w)).count();
        if let Some(next) = &next
            && batched(next)
        {
            batch_waves += 1;
        }
        if let Some(next) = next {
            // The run ended before the engine did (a budget, failures, an interruption): the
            // undecided cells say what they would still need. A wave with some answers was
            // under way and stays in the plan (its other calls are pending); one with none
            // was never started.
            engine.end_early(&prepared.plan);
            if next
                .iter()
                .any(|&i| by_id.contains_key(prepared.plan.calls[i].id.as_str()))
            {
                issued.extend(next);
            }
        }
        let mut plan = (*prepared.plan).clone();
        let mut index = 0;
        plan.calls.retain(|_| {
            index += 1;
            issued.contains(&(index - 1))
        });
        let mut summary = engine.summary();
        summary.note_batch_waves(batch_waves);
        summary.add_juries(&sequential_juries(prepared));
        (summary, plan)
    });
    let plan = sequential.as_ref().map_or(&*prepared.plan, |(_, p)| p);
    // Pointwise judges are analysed on their own (below); the pairwise analysis sees only the
    // pairwise judges, exactly as an audit without pointwise judges would.
    let has_pointwise = prepared.judges.iter().any(|h| h.config.is_pointwise());
    let pairwise_parts = has_pointwise.then(|| pairwise_only(prepared, plan, &outcome.records));
    let (plan, records) = match &pairwise_parts {
        Some((plan, records)) => (plan, records.as_slice()),
        None => (plan, outcome.records.as_slice()),
    };
    let input = AnalysisInput {
        dataset: &prepared.dataset,
        plan,
        records,
        planted: &planted,
        simulated: &simulated,
        faults: &outcome.faults,
        stopped: &outcome.stopped,
        // A run's own rewrites when it made them, else the prepared (stored) ones.
        perturbed: outcome.perturbed.as_deref().unwrap_or(&prepared.perturbed),
    };
    let options = AnalysisOptions {
        bootstrap_resamples: prepared.bootstrap_resamples,
        seed: prepared.seed,
        confidence: 0.95,
        trust: prepared.trust,
        jury: pairwise_jury(prepared),
        multiplicity: prepared.snapshot.design.multiplicity,
        ..AnalysisOptions::default()
    };
    let extensions = analyze::Extensions {
        templates: template_groups(prepared, plan),
        template_design: match prepared.snapshot.design.templates {
            TemplateDesign::Baseline => "baseline",
            TemplateDesign::All => "all",
        }
        .into(),
        new_call: new_call_mitigations(prepared, plan),
    };
    let (analysis, examples) = if reads_records(prepared) {
        (
            analyze::analyze_extended(&input, &options, &extensions),
            analyze::flipped_examples(&input),
        )
    } else {
        (
            analyze::analyze_extended_columns(&input, &outcome.columns, &options, &extensions),
            analyze::flipped_examples_columns(&input, &outcome.columns),
        )
    };
    let mut categories = BTreeMap::new();
    for pair in &prepared.dataset.pairs {
        *categories
            .entry(pair.category.clone().unwrap_or_else(|| "(none)".into()))
            .or_insert(0) += 1;
    }
    let mut summary = Summary {
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
        examples,
        juries: analysis.juries,
        agreement: analysis.agreement,
        jury: analysis.jury,
        analysis: Some(analysis.info),
        completeness: if has_pointwise {
            completeness_with_pointwise(prepared, &analysis.judges, &outcome.records)
        } else {
            analyze::Completeness::of(&analysis.judges)
        },
        judges: analysis.judges,
        mitigations: analysis.mitigations,
        templates: analysis.templates,
        warnings: Vec::new(),
        rewrites: report::rewrites::RewriteSection::build(
            &prepared.artifacts,
            &prepared.dataset.pairs,
            input.perturbed,
            &prepared.snapshot.rewriters,
            outcome
                .rewrite_usage
                .as_ref()
                .or(prepared.rewrite_usage.as_ref()),
        ),
        sequential: sequential.map(|(s, _)| s),
        pointwise: has_pointwise.then(|| pointwise_section(prepared, &outcome.records)),
    }
    .with_warnings();
    if has_pointwise {
        summary.warnings.extend(pointwise_notes(prepared));
    }
    summary
}

/// Every judge of `plan` with template variants, its primary template first: the groups of the
/// template-sensitivity section (indices into `plan.judges`).
fn template_groups(
    prepared: &Prepared,
    plan: &crate::design::Plan,
) -> Vec<analyze::templates::TemplateGroup> {
    let index = |name: &str| plan.judges.iter().position(|j| j == name);
    let template = |h: &JudgeHandle| {
        h.config
            .load_template()
            .map(|t| t.name)
            .unwrap_or_else(|_| h.config.template.clone())
    };
    prepared
        .judges
        .iter()
        .filter(|h| !h.config.templates.is_empty() && h.config.variant_of.is_none())
        .filter_map(|base| {
            let mut members = vec![(index(&base.config.name)?, template(base))];
            let prefix = format!("{}@", base.config.name);
            for v in prepared.judges.iter().filter(|h| {
                h.config.variant_of.as_deref() == Some(base.config.name.as_str())
                    && h.config.name.starts_with(&prefix)
            }) {
                members.push((index(&v.config.name)?, template(v)));
            }
            (members.len() >= 2).then(|| analyze::templates::TemplateGroup {
                judge: base.config.name.clone(),
                members,
            })
        })
        .collect()
}

/// The `[mitigations]` derived judges of `plan`, each with its base judge (indices into
/// `plan.judges`).
fn new_call_mitigations(
    prepared: &Prepared,
    plan: &crate::design::Plan,
) -> Vec<analyze::mitigation::NewCall> {
    let index = |name: &str| plan.judges.iter().position(|j| j == name);
    prepared
        .judges
        .iter()
        .filter_map(|h| {
            let base = h.config.variant_of.as_deref()?;
            let id = NEW_CALL_MITIGATIONS
                .into_iter()
                .find(|id| h.config.name == format!("{base}+{id}"))?;
            Some(analyze::mitigation::NewCall {
                base: index(base)?,
                derived: index(&h.config.name)?,
                id: id.to_string(),
            })
        })
        .collect()
}

/// The plan and records of the pairwise judges only (judge indices renumbered).
fn pairwise_only(
    prepared: &Prepared,
    plan: &Plan,
    records: &[run::CallRecord],
) -> (Plan, Vec<run::CallRecord>) {
    let pairwise: Vec<String> = prepared
        .judges
        .iter()
        .filter(|h| !h.config.is_pointwise())
        .map(|h| h.config.name.clone())
        .collect();
    let index: HashMap<&str, usize> = pairwise
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let calls = plan
        .calls
        .iter()
        .filter_map(|c| {
            let &judge_index = index.get(c.judge.as_str())?;
            Some(crate::design::CallSpec {
                judge_index,
                ..c.clone()
            })
        })
        .collect();
    let records = records
        .iter()
        .filter(|r| index.contains_key(r.judge.as_str()))
        .cloned()
        .collect();
    (
        Plan {
            judges: pairwise,
            artifacts: plan.artifacts.clone(),
            options: plan.options.clone(),
            calls,
        },
        records,
    )
}

/// The run's completeness over every judge, pointwise ones included (their calls are not in
/// the pairwise analysis): `None` when nothing is pending, as for pairwise runs.
fn completeness_with_pointwise(
    prepared: &Prepared,
    pairwise: &[analyze::JudgeResult],
    records: &[run::CallRecord],
) -> Option<analyze::Completeness> {
    let mut c = analyze::Completeness::default();
    for j in pairwise
        .iter()
        .filter(|j| j.kind == analyze::JudgeKind::Judge)
    {
        c.planned += j.calls.planned;
        c.pending += j.calls.pending;
        c.failed += j.calls.failed;
    }
    let pointwise: std::collections::HashSet<&str> = prepared
        .judges
        .iter()
        .filter(|h| h.config.is_pointwise())
        .map(|h| h.config.name.as_str())
        .collect();
    let by_id: HashMap<&str, &run::CallRecord> =
        records.iter().map(|r| (r.call_id.as_str(), r)).collect();
    for call in prepared
        .plan
        .calls
        .iter()
        .filter(|c| pointwise.contains(c.judge.as_str()))
    {
        c.planned += 1;
        match by_id.get(call.id.as_str()) {
            None => c.pending += 1,
            Some(r) if !r.succeeded() => c.failed += 1,
            Some(_) => {}
        }
    }
    c.committed = c.planned - c.pending;
    (c.pending > 0).then_some(c)
}

/// The `[jury]` settings for the pairwise analysis: pointwise members left out (they form
/// their own jury, [`pointwise_jury`]), derived judges left out of the default members
/// ([`default_jury_members`]); a member list naming only pointwise judges forms no pairwise
/// jury. With neither kind in the run this is `[jury]` as written.
fn pairwise_jury(prepared: &Prepared) -> JuryOptions {
    let mut jury = prepared.jury.clone();
    if jury.members.is_empty() {
        jury.members = default_jury_members(prepared);
    }
    if jury.members.is_empty() {
        return jury;
    }
    let pointwise = |name: &String| {
        prepared
            .judges
            .iter()
            .any(|h| &h.config.name == name && h.config.is_pointwise())
    };
    jury.members.retain(|m| !pointwise(m));
    if jury.members.is_empty() {
        jury.enabled = false;
    }
    jury
}

/// The jury when `[jury]` names no members: every judge, except that the derived judges of
/// template variants and `[mitigations]` (`<judge>@<variant>`, `<judge>+<mitigation>`) are the
/// same model asked differently, not jurors of their own; with any of them in the plan the
/// members are the other judges, named (empty, i.e. every judge, otherwise).
fn default_jury_members(prepared: &Prepared) -> Vec<String> {
    if prepared
        .judges
        .iter()
        .all(|h| h.config.variant_of.is_none())
    {
        return Vec::new();
    }
    prepared
        .judges
        .iter()
        .filter(|h| h.config.variant_of.is_none())
        .map(|h| h.config.name.clone())
        .collect()
}

/// The jury of pointwise judges: the `[jury]` members that are pointwise (every pointwise
/// judge when no members are named), when there are two or more. Members of different kinds
/// or scales are refused by the analysis, with the reason.
fn pointwise_jury(prepared: &Prepared) -> Option<PointwiseJuryInput> {
    if !prepared.jury.enabled {
        return None;
    }
    let members: Vec<String> = prepared
        .judges
        .iter()
        .filter(|h| h.config.is_pointwise())
        .filter(|h| {
            prepared.jury.members.is_empty() || prepared.jury.members.contains(&h.config.name)
        })
        .map(|h| h.config.name.clone())
        .collect();
    (members.len() >= 2).then(|| PointwiseJuryInput {
        name: "pointwise-jury".into(),
        members,
    })
}

/// The scale of each criterion a pointwise judge file declares, in declaration order.
pub fn pointwise_criteria(config: &JudgeConfig) -> Vec<(String, GradeScale)> {
    let label = |labels: &[String], positive: &Option<String>| GradeScale::Label {
        labels: labels.iter().map(|l| l.trim().to_string()).collect(),
        positive: positive.as_deref().unwrap_or_default().trim().to_string(),
    };
    let score = |s: &judge::config::ScaleConfig| GradeScale::Score {
        min: s.min,
        max: s.max,
    };
    match config.kind {
        JudgeKind::Pairwise => Vec::new(),
        JudgeKind::Score => config
            .scale
            .iter()
            .map(|s| ("score".to_string(), score(s)))
            .collect(),
        JudgeKind::Label => vec![("label".into(), label(&config.labels, &config.positive))],
        JudgeKind::Rubric => config
            .criteria
            .iter()
            .map(|c| {
                let scale = match &c.scale {
                    Some(s) => score(s),
                    None => label(&c.labels, &c.positive),
                };
                (c.name.clone(), scale)
            })
            .collect(),
    }
}

/// Build the pointwise analysis' inputs from the stored records and run it: one entry per
/// pointwise judge, grades per criterion, gold from the pairs' preferences, and the
/// score–comparison consistency against a named pairwise judge.
fn pointwise_section(prepared: &Prepared, records: &[run::CallRecord]) -> PointwiseSection {
    let single = !prepared.snapshot.items.is_empty();
    let items = if single {
        prepared.snapshot.items.clone()
    } else {
        dataset::single::items_from_pairs(&prepared.dataset.pairs)
    };
    let mut gold = BTreeMap::new();
    let mut pair_of = BTreeMap::new();
    for item in items {
        if let Some(pair) = &item.pair_id {
            pair_of.insert(item.id.clone(), pair.clone());
        }
        if let Some(g) = item.gold {
            gold.insert(item.id, g);
        }
    }
    let mut judges = Vec::new();
    for handle in prepared.judges.iter().filter(|h| h.config.is_pointwise()) {
        let config = &handle.config;
        let kind = match config.kind {
            JudgeKind::Score => PointwiseKind::Score,
            JudgeKind::Label => PointwiseKind::Label,
            _ => PointwiseKind::Rubric,
        };
        let mut criteria: Vec<CriterionInput> = pointwise_criteria(config)
            .into_iter()
            .map(|(name, scale)| CriterionInput {
                name,
                scale,
                records: Vec::new(),
            })
            .collect();
        let mine = records.iter().filter(|r| r.judge == config.name);
        for record in mine {
            let (Some(grades), Some(side)) = (&record.grades, record.side) else {
                continue;
            };
            // A single answer is its own item; a pair's answers are `<pair>/a` and `<pair>/b`.
            let item_id = if single {
                record.pair_id.clone()
            } else {
                format!("{}/{}", record.pair_id, side.letter())
            };
            for c in &mut criteria {
                if let Some(g) = grades.iter().find(|g| g.name == c.name) {
                    c.records.push(GradeRecord {
                        item_id: item_id.clone(),
                        cluster: record.pair_id.clone(),
                        artifact: record.artifact.clone(),
                        repeat: record.repeat,
                        grade: g.grade.clone(),
                        probability: g.probability,
                    });
                }
            }
        }
        let artifacts = prepared
            .artifacts
            .iter()
            .filter(|a| crate::design::grades_one_answer(a))
            .filter(|a| {
                config
                    .audit_artifacts
                    .as_ref()
                    .is_none_or(|only| only.contains(&a.id))
            })
            .map(|a| a.id.clone())
            .collect();
        let consistency = config.pairwise_judge.as_ref().and_then(|other| {
            // Pairs only: single answers have no pairwise verdict to compare with.
            (kind == PointwiseKind::Score && !single)
                .then(|| consistency_input(other, &criteria[0], records))
        });
        judges.push(PointwiseJudgeInput {
            judge: config.name.clone(),
            kind,
            simulated: handle.judge.simulated(),
            artifacts,
            criteria,
            consistency,
        });
    }
    let inputs = PointwiseInputs {
        judges,
        gold,
        pair_of,
        juries: pointwise_jury(prepared).into_iter().collect(),
    };
    let options = PointwiseOptions {
        bootstrap_resamples: prepared.bootstrap_resamples,
        seed: prepared.seed,
        // The audit's `[trust]` thresholds, pointwise rules included.
        trust: prepared.trust,
        ..PointwiseOptions::default()
    };
    analyze_pointwise(&inputs, &options)
}

/// Per pair: the mean baseline score of answer a and of answer b, and the pairwise judge's
/// baseline verdict (first repeat, both orders): a or b when both orders pick the same answer,
/// `None` for a tie, an invalid verdict or an order-dependent pick. Pairs missing a score or
/// a verdict are left out.
fn consistency_input(
    pairwise_judge: &str,
    scores: &CriterionInput,
    records: &[run::CallRecord],
) -> ConsistencyInput {
    use crate::design::{ConditionKind, Order};
    use crate::judge::SlotVerdict;
    let mut sums: BTreeMap<(String, char), (f64, u32)> = BTreeMap::new();
    for r in scores.records.iter().filter(|r| r.artifact.is_none()) {
        if let judge::grade::Grade::Score(v) = r.grade {
            let (pair, side) = r.item_id.rsplit_once('/').unwrap_or((&r.item_id, "a"));
            let e = sums
                .entry((pair.to_string(), side.chars().next().unwrap_or('a')))
                .or_default();
            e.0 += v;
            e.1 += 1;
        }
    }
    let mut verdicts: BTreeMap<&str, [Option<SlotVerdict>; 2]> = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| r.judge == pairwise_judge && r.kind == ConditionKind::Baseline && r.repeat == 0)
    {
        let slot = usize::from(r.order == Order::Ba);
        verdicts.entry(r.pair_id.as_str()).or_default()[slot] = r.verdict;
    }
    let mut pairs = Vec::new();
    for (pair, [ab, ba]) in verdicts {
        let mean = |side| {
            sums.get(&(pair.to_string(), side))
                .map(|(s, n)| s / f64::from(*n))
        };
        let (Some(a), Some(b), Some(ab), Some(ba)) = (mean('a'), mean('b'), ab, ba) else {
            continue;
        };
        // `Ab` shows a first; `Ba` shows b first.
        let won = match (ab, ba) {
            (SlotVerdict::First, SlotVerdict::Second) => Some(true),
            (SlotVerdict::Second, SlotVerdict::First) => Some(false),
            _ => None,
        };
        pairs.push((a, b, won));
    }
    ConsistencyInput {
        pairwise_judge: pairwise_judge.to_string(),
        pairs,
    }
}

/// Notes on what a pointwise judge is not audited on: artifacts that need two answers.
fn pointwise_notes(prepared: &Prepared) -> Vec<report::Warning> {
    let mut notes = Vec::new();
    for handle in prepared.judges.iter().filter(|h| h.config.is_pointwise()) {
        let skipped: Vec<&str> = prepared
            .artifacts
            .iter()
            .filter(|a| !crate::design::grades_one_answer(a))
            .filter(|a| {
                handle
                    .config
                    .audit_artifacts
                    .as_ref()
                    .is_none_or(|only| only.contains(&a.id))
            })
            .map(|a| a.id.as_str())
            .collect();
        if !skipped.is_empty() {
            notes.push(report::Warning {
                kind: "pointwise_artifact_skipped".into(),
                judge: Some(handle.config.name.clone()),
                message: format!(
                    "{} grades one answer at a time, so {} {} not tested for it: {} two answers in one prompt",
                    handle.config.name,
                    skipped.join(", "),
                    if skipped.len() == 1 { "is" } else { "are" },
                    if skipped.len() == 1 { "it needs" } else { "they need" }
                ),
            });
        }
    }
    notes
}

fn judge_info(config: &JudgeConfig, simulated: bool) -> JudgeInfo {
    // A custom judge builds its own request from the pair: the configured template (the
    // default one) is never rendered, so the reports must not name it.
    if config.backend == judge::config::Backend::Custom {
        return JudgeInfo {
            name: config.name.clone(),
            simulated,
            backend: config.backend.name(),
            model: config.model.clone(),
            template: "none".into(),
            template_sha256: "none".into(),
            template_min_max_tokens: None,
            config: serde_json::to_value(config).unwrap_or(serde_json::Value::Null),
        };
    }
    let template = config.load_template().ok();
    let template_sha256 = template
        .as_ref()
        .map(|t| t.sha256())
        .unwrap_or_else(|| "unresolved".into());
    JudgeInfo {
        name: config.name.clone(),
        simulated,
        backend: config.backend.name(),
        model: config.model.clone(),
        template: config.template_spec().to_string(),
        template_sha256,
        template_min_max_tokens: template.and_then(|t| t.min_max_tokens),
        config: serde_json::to_value(config).unwrap_or(serde_json::Value::Null),
    }
}

/// Write every report (`summary.json`, `report.md`, `report.html`, `results.csv`) into `out`.
pub fn write_reports(summary: &Summary, out: &Path) -> Result<(), AuditError> {
    report::write_all(summary, out).map_err(|source| AuditError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    Ok(())
}

/// The demo: built-in pairs, default artifacts, and the simulated reference jury; plus the real
/// local SmolLM2 judge when the binary has the `local` feature and the model file is present.
pub fn demo_config(seed: u64) -> AuditConfig {
    let mut judges: Vec<String> = DEMO_JUDGES.iter().map(|s| s.to_string()).collect();
    if local_demo_judge_available() {
        judges.push(LOCAL_DEMO_JUDGE.to_string());
    }
    AuditConfig {
        seed,
        out: None,
        dataset: DatasetSection::default(),
        design: DesignSection::default(),
        run: RunSection::default(),
        perturbations: PerturbationsSection::default(),
        judges,
        inline_judges: Vec::new(),
        trust: TrustThresholds::default(),
        jury: JuryOptions::default(),
        mitigations: MitigationsSection::default(),
    }
}

/// The real language-model judge the demo adds when it can.
pub const LOCAL_DEMO_JUDGE: &str = "smollm2-local";

/// True when this binary can run the local SmolLM2 judge (feature `local`, model file present).
pub fn local_demo_judge_available() -> bool {
    #[cfg(feature = "local")]
    {
        crate::judge::local_judge::default_model_path().is_some_and(|p| p.is_file())
    }
    #[cfg(not(feature = "local"))]
    {
        false
    }
}

/// The simulated reference jury of the demo: distinct planted biases, one of them unbiased.
/// The two mild jurors of opposite sign give the composer an eligible jury to suggest. The last
/// three grade one answer at a time (a 1–10 grader, unbiased and apology-loving, and a
/// safe/unsafe classifier that an apology fools), so the demo shows the pointwise audit too.
pub const DEMO_JUDGES: [&str; 10] = [
    "sim-unbiased",
    "sim-apology-lover",
    "sim-first-slot",
    "sim-authority-skeptic",
    "sim-verbose-fan",
    "sim-mild-apology",
    "sim-mild-apology-averse",
    "sim-grader-unbiased",
    "sim-grader-apology",
    "sim-safety-apology",
];

#[cfg(test)]
mod key_tests {
    use super::needs_key;

    #[test]
    fn hosted_https_apis_need_a_key_local_servers_do_not() {
        assert!(needs_key("https://api.openai.com/v1"));
        assert!(needs_key("https://api.anthropic.com"));
        assert!(needs_key("https://openrouter.ai/api/v1"));
        assert!(!needs_key("http://127.0.0.1:8080/v1"));
        assert!(!needs_key("http://localhost:11434/v1"));
        assert!(!needs_key("https://localhost:8443/v1"));
        assert!(!needs_key("https://127.0.0.1/v1"));
        assert!(!needs_key("https://[::1]:8443/v1"));
    }
}

/// What `judge-audit init` writes an `audit.toml` for.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// The user's dataset, as the path to write (relative to the new file's folder, or
    /// absolute); `None` uses the built-in sample pairs.
    pub dataset: Option<PathBuf>,
    /// Pairs in that dataset (said in a comment).
    pub pairs: Option<usize>,
    /// Judges to audit; empty writes the simulated reference judge, so the file runs as is.
    pub judges: Vec<String>,
}

/// A commented `audit.toml` that parses and runs as written: every section with its defaults,
/// what each key means, and the built-in judges to choose from.
pub fn init_config(options: &InitOptions) -> String {
    // A TOML basic string, so any path (quotes, backslashes, non-ASCII) is written exactly.
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut out = String::new();
    out.push_str("# judge-audit configuration, written by `judge-audit init`.\n");
    out.push_str(
        "# Run it with `judge-audit run --config audit.toml` (flags such as --judge, --artifacts\n",
    );
    out.push_str(
        "# or --limit override the values below). Top-level keys must stay above the first\n",
    );
    out.push_str("# [section]: TOML puts every key after a header into that section.\n\n");
    out.push_str("# Seed of every random choice (perturbations, simulated judges, bootstrap).\n");
    out.push_str("seed = 42\n\n");
    out.push_str("# Judges by built-in name or judge-file path (relative to this file).\n");
    let judges = if options.judges.is_empty() {
        out.push_str("# `sim-unbiased` is a SIMULATED reference judge, so this file runs offline as is; put\n");
        out.push_str("# your judge here. Built-ins (`judge-audit judges list`):\n");
        vec!["sim-unbiased".to_string()]
    } else {
        out.push_str("# Built-ins (`judge-audit judges list`):\n");
        options.judges.clone()
    };
    for j in judge::config::builtin_judges() {
        let sim = if j.sim.is_some() { " (simulated)" } else { "" };
        out.push_str(&format!(
            "#   {:<28} {} {}{sim}\n",
            j.name,
            j.backend.name(),
            j.model
        ));
    }
    let list: Vec<String> = judges.iter().map(|j| quote(j)).collect();
    out.push_str(&format!("judges = [{}]\n\n", list.join(", ")));
    out.push_str(
        "# Output directory (default reports/<run-id>), relative to where you run judge-audit.\n",
    );
    out.push_str("# out = \"reports/my-audit\"\n\n");
    out.push_str("[dataset]\n");
    match &options.dataset {
        Some(path) => {
            let pairs = options
                .pairs
                .map(|n| format!(" ({n} pairs)"))
                .unwrap_or_default();
            out.push_str(&format!(
                "# Your pairs{pairs}: JSONL or CSV with id, prompt, response_a, response_b and optionally\n# preferred (a / b / tie) and category.\n"
            ));
            out.push_str(&format!("path = {}\n", quote(&path.to_string_lossy())));
        }
        None => {
            out.push_str("# JSONL or CSV with id, prompt, response_a, response_b (optional: preferred, category).\n");
            out.push_str("# Without a path the built-in sample pairs are used.\n");
            out.push_str("# path = \"pairs.jsonl\"\n");
        }
    }
    out.push_str(
        "# Skip invalid records instead of refusing the file (they are counted in the report).\n",
    );
    out.push_str("skip_invalid = false\n");
    out.push_str("# Audit only the first N pairs (try a small N first: every pair costs calls).\n");
    out.push_str("# limit = 20\n\n");
    out.push_str("[design]\n");
    out.push_str(
        "# Artifacts to test (`judge-audit artifacts list`); empty means the default set:\n",
    );
    let defaults: Vec<String> = DEFAULT_ARTIFACTS.iter().map(|a| quote(a)).collect();
    out.push_str(&format!("artifacts = [{}]\n", defaults.join(", ")));
    out.push_str("# Baseline repeats per order (run-to-run noise is measured from them).\n");
    out.push_str(&format!("repeats = {}\n", default_repeats()));
    out.push_str("# Bootstrap resamples for the clustered intervals.\n");
    out.push_str(&format!("bootstrap_resamples = {}\n", default_resamples()));
    out.push_str("# Multiplicity family: \"judge\" (each judge's tests, matching the per-judge decision) or \"run\".\n");
    out.push_str("multiplicity = \"judge\"\n\n");
    out.push_str("[run]\n");
    out.push_str("# Calls in flight per judge.\n");
    out.push_str(&format!("concurrency = {}\n", default_concurrency()));
    out
}

/// Latency measured on one judge's earlier calls (answered, sent, not from the cache).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeasuredLatency {
    /// Median wall time of one call, in milliseconds.
    pub median_ms: u64,
    /// Calls it was measured on.
    pub calls: usize,
}

/// Per judge name, the median latency of the calls stored in `run_dir` (a run of any audit:
/// judges are matched by name). Cached replies (0 ms) and failed calls are left out.
pub fn measured_latency(run_dir: &Path) -> Result<BTreeMap<String, MeasuredLatency>, AuditError> {
    if !RunStore::exists(run_dir) {
        return Err(AuditError::Config(format!(
            "{}: not a run directory (no {})",
            run_dir.display(),
            run::store::RUN_DB
        )));
    }
    let mut by_judge: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in RunStore::open(run_dir)?.records()? {
        if r.succeeded() && !r.cached && r.attempts > 0 {
            by_judge.entry(r.judge).or_default().push(r.latency_ms);
        }
    }
    Ok(by_judge
        .into_iter()
        .map(|(judge, mut ms)| {
            ms.sort_unstable();
            let median_ms = ms[ms.len() / 2];
            (
                judge,
                MeasuredLatency {
                    median_ms,
                    calls: ms.len(),
                },
            )
        })
        .collect())
}

/// How long one judge's planned calls take at a latency, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct WallEstimate {
    /// Judge name.
    pub judge: String,
    /// Seconds, when a latency is known.
    pub seconds: Option<f64>,
    /// Calls sent at once (the run's and the judge's concurrency bound; 1 for the in-process
    /// local judge, which serves one call at a time).
    pub parallel: usize,
}

/// Wall time per judge for `estimates` at `latency`: calls × latency / calls in parallel, and
/// never faster than the judge's `rpm` budget allows. Judges run side by side, so the run takes
/// about as long as its slowest judge.
pub fn wall_time(
    prepared: &Prepared,
    estimates: &[PlanEstimate],
    latency: &BTreeMap<String, MeasuredLatency>,
) -> Vec<WallEstimate> {
    prepared
        .judges
        .iter()
        .map(|h| {
            let c = &h.config;
            let calls = estimates
                .iter()
                .find(|e| e.judge == c.name)
                .map_or(0, |e| e.calls);
            let parallel = if c.backend == judge::config::Backend::Local {
                1
            } else {
                c.concurrency
                    .map_or(prepared.concurrency, |j| j.min(prepared.concurrency))
                    .max(1)
            };
            let seconds = latency.get(&c.name).map(|m| {
                let by_latency = calls as f64 * m.median_ms as f64 / 1000.0 / parallel as f64;
                let by_rpm = c.rpm.map_or(0.0, |rpm| calls as f64 / rpm * 60.0);
                by_latency.max(by_rpm)
            });
            WallEstimate {
                judge: c.name.clone(),
                seconds,
                parallel,
            }
        })
        .collect()
}
