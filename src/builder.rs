//! [`Audit`]: the whole pipeline (load, validate, plan, run, analyse, report) behind one
//! builder, for programs that embed the crate and for the CLI's `run` and `demo`.
//!
//! Every setting starts at the value an empty `audit.toml` gives it, except where the result
//! goes: a new builder keeps the run store in memory ([`Store::memory`]), shows no progress and
//! uses no response cache, so an embedded audit touches nothing outside the process unless it
//! is asked to. [`Audit::from_config`] starts from a parsed `audit.toml` instead.
//!
//! Relative paths given to the builder (dataset, judge files, perturbations folder) resolve
//! against its base folder: the current directory for [`Audit::new`], the `audit.toml`'s
//! folder for [`Audit::from_file`].

use crate::analyze::{JuryOptions, Multiplicity, Trust, TrustThresholds};
use crate::audit::{self, AuditConfig, AuditError, ExecOptions, Prepared, TemplateDesign};
use crate::dataset::{self, Dataset, Pair};
use crate::design::TieTargets;
use crate::judge::{Judge, JudgeConfig, config::Backend};
use crate::report::{self, Format, ReportView, Summary};
use crate::run::RunOutcome;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where an audit keeps its calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// A run directory, as `judge-audit run --out DIR` writes it: the run store, `calls.jsonl`
    /// and the reports. It can be resumed (`run --resume DIR`) and re-rendered (`report DIR`).
    Dir(PathBuf),
    /// A run store in memory: nothing is written to disk; the [`Summary`] is the only result.
    Memory,
}

impl Store {
    /// A run directory at `path` (created when missing; an existing one must hold this audit).
    pub fn dir(path: impl Into<PathBuf>) -> Store {
        Store::Dir(path.into())
    }

    /// A run store in memory, dropped when the run ends.
    pub fn memory() -> Store {
        Store::Memory
    }
}

/// Why an [`Audit`] could not be prepared or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Loading, validating, planning or running failed (the message names the file and field).
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// [`Audit::pairs`] was given no pair.
    #[error("pairs: no pair given")]
    NoPairs,
    /// [`Audit::pairs`] was given two pairs with one id (verdicts are matched to pairs by id).
    #[error("pairs: duplicate id `{0}`")]
    DuplicatePair(String),
    /// A judge given to [`Audit::judge`] returned an empty name (names key every result).
    #[error("judge: a custom judge returned an empty name")]
    UnnamedJudge,
    /// The tokio runtime [`Audit::run`] needs could not be started.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// A report file could not be written (the message names it).
    #[error(transparent)]
    Reports(std::io::Error),
}

/// What [`Audit::execute`] returns: the analysed summary, the runner's account of the session
/// (calls sent, cache hits, stopped judges) and the report files written.
#[derive(Debug)]
pub struct Finished {
    /// The analysed results, the same value every report renders.
    pub summary: Summary,
    /// What the runner did in this session.
    pub outcome: RunOutcome,
    /// The report files written (none for [`Store::Memory`]).
    pub written: Vec<PathBuf>,
}

/// An audit of one or more judges, configured step by step and run with [`Audit::run`].
///
/// ```no_run
/// use judge_audit::{Audit, Store};
///
/// let summary = Audit::new()
///     .dataset_file("pairs.jsonl")
///     .artifacts(["apology", "verbosity"])
///     .preset("sim-apology-lover")
///     .repeats(2)
///     .seed(7)
///     .store(Store::dir("reports/my-audit"))
///     .run()?;
/// println!("{}", summary.judges[0].trust.verdict.label());
/// # Ok::<(), judge_audit::Error>(())
/// ```
#[derive(Clone)]
pub struct Audit {
    config: AuditConfig,
    /// Folder that relative paths of `config` resolve against.
    base: PathBuf,
    /// Pairs given in memory, with the dataset name the reports show.
    pairs: Option<(String, Vec<Pair>)>,
    custom: Vec<Arc<dyn Judge>>,
    store: Store,
    exec: ExecOptions,
    formats: Vec<Format>,
    fail_on: Option<Trust>,
}

impl Default for Audit {
    fn default() -> Self {
        Audit::new()
    }
}

impl Audit {
    /// Every default: the built-in pairs, the default artifacts
    /// ([`audit::DEFAULT_ARTIFACTS`]), no judge yet, seed 42, the run store in memory.
    pub fn new() -> Audit {
        Audit::from_config(AuditConfig::empty(), ".")
    }

    /// Start from a parsed `audit.toml` whose relative paths resolve against `base` (the
    /// folder [`AuditConfig::from_file`] returns).
    pub fn from_config(config: AuditConfig, base: impl Into<PathBuf>) -> Audit {
        Audit {
            config,
            base: base.into(),
            pairs: None,
            custom: Vec::new(),
            store: Store::Memory,
            exec: ExecOptions {
                quiet: true,
                max_cost: None,
                cache_dir: None,
                max_calls: None,
            },
            formats: Format::DEFAULT.to_vec(),
            fail_on: None,
        }
    }

    /// Start from the `audit.toml` at `path`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Audit, Error> {
        let (config, base) = AuditConfig::from_file(path.as_ref())?;
        Ok(Audit::from_config(config, base))
    }

    /// Pairs from a JSONL or CSV file (any of the formats `run --dataset` reads).
    pub fn dataset_file(mut self, path: impl AsRef<Path>) -> Audit {
        self.config.dataset.path = Some(path.as_ref().to_path_buf());
        self.pairs = None;
        self
    }

    /// Pairs in memory; `name` is the dataset's name in the reports. Replaces any file.
    pub fn pairs(
        mut self,
        name: impl Into<String>,
        pairs: impl IntoIterator<Item = Pair>,
    ) -> Audit {
        self.config.dataset.path = None;
        self.pairs = Some((name.into(), pairs.into_iter().collect()));
        self
    }

    /// Skip (and count) invalid records of a dataset file instead of stopping at the first.
    pub fn skip_invalid(mut self, skip: bool) -> Audit {
        self.config.dataset.skip_invalid = skip;
        self
    }

    /// Audit only the first `n` pairs.
    pub fn limit(mut self, n: usize) -> Audit {
        self.config.dataset.limit = Some(n);
        self
    }

    /// The artifacts to audit, by catalog id (`judge-audit artifacts list`); an empty list
    /// means the defaults.
    pub fn artifacts<S: Into<String>>(mut self, ids: impl IntoIterator<Item = S>) -> Audit {
        self.config.design.artifacts = ids.into_iter().map(Into::into).collect();
        self
    }

    /// Add (or override) artifacts from the `*.toml` files of `dir`.
    pub fn perturbations_dir(mut self, dir: impl AsRef<Path>) -> Audit {
        self.config.perturbations.dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// The judge file of the model that makes the rewrite artifacts' texts (`kind =
    /// "rewrite"`), asked once per answer before any judge call. Rewrites are kept in the run
    /// directory, so an audit with rewrite artifacts needs [`Store::Dir`].
    pub fn rewriter(mut self, path: impl AsRef<Path>) -> Audit {
        self.config.perturbations.rewriter = Some(path.as_ref().to_path_buf());
        self
    }

    /// The judge file of the model asked whether a rewrite keeps the original's claims.
    pub fn checker(mut self, path: impl AsRef<Path>) -> Audit {
        self.config.perturbations.checker = Some(path.as_ref().to_path_buf());
        self
    }

    /// A judge from a judge file (`judges/*.toml` format).
    pub fn judge_file(mut self, path: impl AsRef<Path>) -> Audit {
        self.config
            .judges
            .push(path.as_ref().to_string_lossy().into_owned());
        self
    }

    /// A built-in judge preset by name (`judge-audit judges list`).
    pub fn preset(mut self, name: impl Into<String>) -> Audit {
        self.config.judges.push(name.into());
        self
    }

    /// A judge configuration built in code (what a `[[judge]]` table of `audit.toml` holds).
    pub fn judge_config(mut self, config: JudgeConfig) -> Audit {
        self.config.inline_judges.push(config);
        self
    }

    /// A judge implemented by the caller. It is asked exactly what any backend is asked and
    /// analysed like one; its reports name it with `backend = "custom"`. A run directory
    /// holding one can be re-rendered, but its pending calls can only be sent by a program
    /// that hands the judge over again.
    pub fn judge(self, judge: impl Judge + 'static) -> Audit {
        self.judge_arc(Arc::new(judge))
    }

    /// [`Audit::judge`] for a judge already shared.
    pub fn judge_arc(mut self, judge: Arc<dyn Judge>) -> Audit {
        self.custom.push(judge);
        self
    }

    /// Repeats of every baseline call per order (at least 1; the default 2 measures the
    /// judge's run-to-run noise).
    pub fn repeats(mut self, repeats: u32) -> Audit {
        self.config.design.repeats = repeats;
        self
    }

    /// Which answers carry the artifact in tie-detection calls (both orders are always asked).
    pub fn tie_targets(mut self, targets: TieTargets) -> Audit {
        self.config.design.tie_targets = targets;
        self
    }

    /// Which calls a judge's template variants make.
    pub fn templates(mut self, design: TemplateDesign) -> Audit {
        self.config.design.templates = design;
        self
    }

    /// Bootstrap resamples for every interval.
    pub fn bootstrap_resamples(mut self, n: usize) -> Audit {
        self.config.design.bootstrap_resamples = n;
        self
    }

    /// The family within which p-values are Holm-adjusted.
    pub fn multiplicity(mut self, multiplicity: Multiplicity) -> Audit {
        self.config.design.multiplicity = multiplicity;
        self
    }

    /// Run the sequential design (waves of pairs, stopping a cell once it is decided).
    pub fn sequential(mut self, on: bool) -> Audit {
        self.config.design.sequential = on;
        self
    }

    /// The trust verdict's thresholds.
    pub fn trust(mut self, thresholds: TrustThresholds) -> Audit {
        self.config.trust = thresholds;
        self
    }

    /// Jury settings.
    pub fn jury(mut self, jury: JuryOptions) -> Audit {
        self.config.jury = jury;
        self
    }

    /// The seed of every random choice (perturbation variants, bootstrap, simulated judges).
    pub fn seed(mut self, seed: u64) -> Audit {
        self.config.seed = seed;
        self
    }

    /// Calls in flight per judge, unless its file sets its own.
    pub fn concurrency(mut self, n: usize) -> Audit {
        self.config.run.concurrency = n;
        self
    }

    /// Where the calls are kept (default [`Store::memory`]).
    pub fn store(mut self, store: Store) -> Audit {
        self.store = store;
        self
    }

    /// The response cache folder shared between runs; `None` (the default) uses none.
    pub fn cache_dir(mut self, dir: Option<PathBuf>) -> Audit {
        self.exec.cache_dir = dir;
        self
    }

    /// Show the progress display on stderr (default off).
    pub fn progress(mut self, on: bool) -> Audit {
        self.exec.quiet = !on;
        self
    }

    /// Stop sending calls once they would cost more than this many USD.
    pub fn max_cost(mut self, usd: Option<f64>) -> Audit {
        self.exec.max_cost = usd;
        self
    }

    /// A sequential audit starts no wave that would take it past this many calls.
    pub fn max_calls(mut self, calls: Option<u64>) -> Audit {
        self.exec.max_calls = calls;
        self
    }

    /// The report formats a [`Store::Dir`] run writes (default [`Format::DEFAULT`]).
    pub fn formats(mut self, formats: &[Format]) -> Audit {
        self.formats = formats.to_vec();
        self
    }

    /// The gate the CI formats (JUnit, GitHub summary) mark failures against.
    pub fn fail_on(mut self, threshold: Option<Trust>) -> Audit {
        self.fail_on = threshold;
        self
    }

    /// The configuration as built so far (without the pairs and judges given in memory).
    pub fn config(&self) -> &AuditConfig {
        &self.config
    }

    /// Load and check everything and build the plan; no judge is called.
    pub fn prepare(&self) -> Result<Prepared, Error> {
        let mut config = self.config.clone();
        let mut built = HashMap::new();
        for judge in &self.custom {
            let name = judge.name().to_string();
            if name.trim().is_empty() {
                return Err(Error::UnnamedJudge);
            }
            config.inline_judges.push(custom_config(&name));
            built.insert(name, judge.clone());
        }
        let mut snapshot = audit::resolve_config(&config, &self.base)?;
        if let Some((name, pairs)) = &self.pairs {
            snapshot.dataset = Arc::new(in_memory(name, pairs, config.dataset.limit)?);
        }
        Ok(audit::prepare_snapshot_with(snapshot, &built)?)
    }

    /// Run `prepared` (from [`Audit::prepare`], or a stored run's
    /// [`audit::prepare_stored`] to continue it) on this builder's store with its run and
    /// report settings, then analyse it. A [`Store::Dir`] run also writes the chosen report
    /// formats into the directory.
    pub async fn execute(&self, prepared: &Prepared) -> Result<Finished, Error> {
        let outcome = match &self.store {
            Store::Dir(dir) => audit::execute(prepared, dir, &self.exec).await?,
            Store::Memory => audit::execute_in_memory(prepared, &self.exec).await?,
        };
        let summary = audit::summarize(prepared, &outcome);
        let written = match &self.store {
            Store::Dir(dir) => {
                let view = ReportView::new(&summary).with_fail_on(self.fail_on);
                report::write_formats(&view, &self.formats, dir).map_err(Error::Reports)?
            }
            Store::Memory => Vec::new(),
        };
        Ok(Finished {
            summary,
            outcome,
            written,
        })
    }

    /// [`Audit::run`] for callers already inside a tokio runtime.
    pub async fn run_async(&self) -> Result<Summary, Error> {
        let prepared = self.prepare()?;
        Ok(self.execute(&prepared).await?.summary)
    }

    /// Prepare, run and analyse the audit on a runtime of its own; returns the summary every
    /// report renders. Called from inside a tokio runtime it panics: use [`Audit::run_async`]
    /// there.
    pub fn run(&self) -> Result<Summary, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        runtime.block_on(self.run_async())
    }
}

/// The configuration standing for a custom judge in the snapshot and the reports: its name and
/// `backend = "custom"`, every other field at its default.
fn custom_config(name: &str) -> JudgeConfig {
    let mut table = toml::Table::new();
    table.insert("name".into(), name.into());
    table.insert("backend".into(), Backend::Custom.name().into());
    table
        .try_into()
        .expect("a name and a backend are all a judge configuration needs")
}

/// A dataset of `pairs` given in memory, checked as a file's records are (at least one pair,
/// unique ids), truncated to `limit`.
fn in_memory(name: &str, pairs: &[Pair], limit: Option<usize>) -> Result<Dataset, Error> {
    let mut seen = BTreeSet::new();
    for pair in pairs {
        if !seen.insert(pair.id.as_str()) {
            return Err(Error::DuplicatePair(pair.id.clone()));
        }
    }
    let mut pairs = pairs.to_vec();
    if let Some(limit) = limit {
        pairs.truncate(limit);
    }
    if pairs.is_empty() {
        return Err(Error::NoPairs);
    }
    Ok(Dataset {
        name: name.to_string(),
        hash: dataset::hash_pairs(&pairs),
        pairs,
        skipped: Vec::new(),
    })
}
