//! Argument types for every subcommand and their thin handlers.

use clap::{Parser, Subcommand};
use judge_audit::audit::{self, AuditConfig, ExecOptions, Prepared};
use judge_audit::judge::config;
use judge_audit::perturb::{Artifact, Catalog};
use judge_audit::run::cache::ResponseCache;
use judge_audit::{Audit, Finished, Store};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Does this LLM judge decide on substance, or can superficial artifacts move its verdict?
#[derive(Debug, Parser)]
#[command(name = "judge-audit", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an audit described by an audit.toml.
    Run(Box<RunArgs>),
    /// Audit the simulated reference jury on the built-in pairs (seconds); in a build with the
    /// `local` feature and the SmolLM2 model present (scripts/demo.sh), also the real SmolLM2
    /// judge, which takes minutes on 2 cores.
    Demo(DemoArgs),
    /// Print the size of the plan by judge and condition, then stop.
    Plan(PlanArgs),
    /// Pick the cheapest mitigation (or stack) a judge file can declare whose residual effects
    /// pass the trust thresholds without losing gold accuracy, and write it as
    /// hardened/<judge>.toml with the evidence (no judge is called).
    Harden {
        /// The run directory.
        run_dir: PathBuf,
        /// Choose on the pairs not held out and write the held-out share of pairs (a seeded
        /// split) with hardened/confirm.toml to confirm the choice on them.
        #[arg(long, value_name = "FRACTION")]
        holdout: Option<f64>,
        /// Where to write the files (default RUN_DIR/hardened).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Equivalence margin: every significant artifact's residual T interval must lie
        /// within ± this (default: the trust thresholds' reject_abs_t, 0.2).
        #[arg(long, value_name = "T")]
        margin: Option<f64>,
    },
    /// Re-render every output of a run directory from its stored calls (no judge is called).
    Report {
        /// The run directory.
        run_dir: PathBuf,
        /// Gate the stored run without calling a judge again: exit 1 when any judge has this
        /// verdict or worse (0 pass, 2 could not run or a judge could not be audited).
        #[arg(long, value_enum)]
        fail_on: Option<FailOn>,
        #[command(flatten)]
        output: OutputArgs,
        /// Open report.html in the browser afterwards (when a display exists; the command in
        /// $JUDGE_AUDIT_OPENER, else xdg-open / open).
        #[arg(long)]
        open: bool,
    },
    /// The shared response cache.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
        /// Cache directory (default $JUDGE_AUDIT_CACHE, else ~/.cache/judge-audit).
        #[arg(long, value_name = "DIR", global = true)]
        cache: Option<PathBuf>,
    },
    /// The artifact catalog.
    Artifacts {
        #[command(subcommand)]
        command: ArtifactsCommand,
    },
    /// Judge presets.
    Judges {
        #[command(subcommand)]
        command: JudgesCommand,
    },
    /// Compare two runs: metric changes and paired tests on the calls they share (McNemar on
    /// verdicts and labels, Wilcoxon on score changes).
    Compare(CompareArgs),
    /// Write a commented audit.toml for your data, which `run --config` then runs as is.
    Init(InitArgs),
    /// Print a shell completion script: `judge-audit completions bash > ~/.local/share/bash-completion/completions/judge-audit`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Merge shard run directories of one audit into one run directory and write its reports.
    Merge(MergeArgs),
    /// Rerun a published judge-bias study on your judge (`chen2025`, `calm2024`,
    /// `mtbench-position`): the paper's template, artifacts, orders and repeats, the usual
    /// reports, and reproduction.md / reproduction.json setting the paper's values beside this
    /// judge's, in the paper's units.
    Reproduce(ReproduceArgs),
    /// OpenAI batch files: export a run's pending calls for `vllm run-batch` or any
    /// OpenAI-batch executor, and import the output file back into the run.
    Batch {
        #[command(subcommand)]
        command: BatchCommand,
    },
}

#[derive(Debug, Subcommand)]
enum BatchCommand {
    /// Write the pending calls of RUN_DIR's `openai` judges as OpenAI batch input files
    /// (`<judge>-<n>.jsonl`, at most 50,000 lines each).
    Export {
        /// The run directory (with --config, created when it holds no run yet).
        run_dir: PathBuf,
        /// Folder for the input files (default RUN_DIR/batch).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Start RUN_DIR from this audit configuration first (no call is sent), when it holds
        /// no run yet.
        #[arg(long)]
        config: Option<PathBuf>,
        /// With --config: start RUN_DIR as shard i/N.
        #[arg(long, value_name = "i/N", requires = "config")]
        shard: Option<judge_audit::batch::shard::Shard>,
    },
    /// Read an OpenAI batch output file into RUN_DIR (matched by custom_id; a line of another
    /// plan refuses the file) and write the reports again.
    Import {
        /// The run directory.
        run_dir: PathBuf,
        /// The output file (`vllm run-batch -o`, the Batch API's output file).
        results: PathBuf,
    },
    /// Send RUN_DIR's pending calls of `openai` judges through the provider's Batch API and
    /// return; each batch id is committed to the run store as soon as it is created.
    Submit {
        /// The run directory (with --config, created when it holds no run yet).
        run_dir: PathBuf,
        /// Start RUN_DIR from this audit configuration first, when it holds no run yet.
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        limits: BatchLimits,
    },
    /// Poll RUN_DIR's open batches and print each batch's status and counts.
    Status {
        /// The run directory.
        run_dir: PathBuf,
    },
    /// Commit the results of RUN_DIR's batches that have ended; when every call is in, the
    /// reports are complete.
    Collect {
        /// The run directory.
        run_dir: PathBuf,
    },
}

/// Limits of provider batch submissions.
#[derive(Debug, Clone, clap::Args)]
struct BatchLimits {
    /// Stop creating batches once their estimated cost at batch prices (half of `[pricing]`)
    /// would exceed this (USD).
    #[arg(long, value_name = "USD", value_parser = judge_audit::run::parse_max_cost)]
    max_cost: Option<f64>,
    /// Requests per batch (at most 50,000, the OpenAI limit).
    #[arg(long, value_name = "N", default_value_t = judge_audit::batch::provider::OPENAI_MAX_LINES)]
    batch_max_lines: usize,
}

impl BatchLimits {
    fn options(&self) -> judge_audit::batch::provider::SubmitOptions {
        judge_audit::batch::provider::SubmitOptions {
            max_cost: self.max_cost,
            max_lines: self.batch_max_lines,
            ..Default::default()
        }
    }
}

/// Where calls a provider batch did not answer go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BatchFallback {
    /// Leave them pending (a later `run --resume` batches them again).
    None,
    /// Send them through the normal synchronous client.
    Sync,
}

#[derive(Debug, clap::Args)]
struct MergeArgs {
    /// The shard run directories (`run --shard i/N --out DIR`).
    #[arg(required = true)]
    run_dirs: Vec<PathBuf>,
    /// The merged run directory (must not hold a run yet).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
struct InitArgs {
    /// Your dataset (JSONL or CSV); it is loaded once to check it and count its pairs.
    #[arg(long, value_name = "FILE")]
    dataset: Option<PathBuf>,
    /// A judge to put in the file (repeatable; default the simulated `sim-unbiased`, so the file
    /// runs offline as is).
    #[arg(long = "judge", value_name = "NAME")]
    judges: Vec<String>,
    /// Where to write it.
    #[arg(long, default_value = "audit.toml")]
    out: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    force: bool,
}

/// Verdict at which `--fail-on` makes the command exit with code 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FailOn {
    /// Fail when any judge is CAUTION or REJECT.
    Caution,
    /// Fail when any judge is REJECT.
    Reject,
}

impl FailOn {
    fn trust(self) -> judge_audit::analyze::Trust {
        match self {
            FailOn::Caution => judge_audit::analyze::Trust::Caution,
            FailOn::Reject => judge_audit::analyze::Trust::Reject,
        }
    }
}

#[derive(Debug, clap::Args)]
struct CompareArgs {
    /// The first run directory (summary.json and calls.jsonl).
    run_a: PathBuf,
    /// The second run directory.
    run_b: PathBuf,
    /// Write JSON instead of Markdown.
    #[arg(long)]
    json: bool,
    /// Write to this file instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The audit configuration (optional when --dataset and --judge say enough; flags given
    /// with it win over its values).
    #[arg(long, required_unless_present_any = ["resume", "judges"])]
    config: Option<PathBuf>,
    /// Continue an interrupted run in this directory; completed calls are never sent again.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "out", "seed", "concurrency", "skip_invalid", "dataset", "judges", "artifacts", "limit"])]
    resume: Option<PathBuf>,
    /// Dataset file (JSONL or CSV); replaces the config's `[dataset] path`.
    #[arg(long, value_name = "FILE")]
    dataset: Option<PathBuf>,
    /// A judge to audit (repeatable): a built-in name, a judge file, or the name of a `[[judge]]`
    /// of the config; replaces the config's judges.
    #[arg(long = "judge", value_name = "NAME")]
    judges: Vec<String>,
    /// Artifact ids, comma-separated; replaces the config's `[design] artifacts`.
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    artifacts: Vec<String>,
    /// Use at most this many pairs (the first ones); replaces the config's `[dataset] limit`.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Output directory (default: the config's `out`, else reports/<run-id>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the plan and stop without calling any judge.
    #[arg(long)]
    dry_run: bool,
    /// Override the per-judge concurrency bound.
    #[arg(long, value_parser = judge_audit::run::parse_concurrency)]
    concurrency: Option<usize>,
    /// Override the seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Skip invalid dataset records (they are counted in the report).
    #[arg(long)]
    skip_invalid: bool,
    /// Stop issuing new calls once the run would cost more than this (USD), then report what
    /// finished.
    #[arg(long, value_name = "USD", value_parser = judge_audit::run::parse_max_cost)]
    max_cost: Option<f64>,
    /// Sequential audit (`design.sequential = true`): issue the plan in waves of pairs and stop
    /// the judge × artifact cells that are decided.
    #[arg(long, conflicts_with = "resume")]
    sequential: bool,
    /// Pairs per wave of a sequential audit (`design.wave_pairs`, default 16).
    #[arg(long, value_name = "N", conflicts_with = "resume")]
    wave_pairs: Option<usize>,
    /// A sequential audit sends no wave that would take its calls past this many; the report
    /// lists the cells left undecided and the calls each would still need.
    #[arg(long, value_name = "N")]
    max_calls: Option<u64>,
    #[command(flatten)]
    cache: CacheArgs,
    /// No progress on stderr.
    #[arg(long, short)]
    quiet: bool,
    /// Exit with code 1 when any judge gets this verdict or worse (0 pass, 2 could not run or a
    /// judge could not be audited).
    #[arg(long, value_enum)]
    fail_on: Option<FailOn>,
    #[command(flatten)]
    output: OutputArgs,
    /// Run only shard i of N of the plan (a call's shard is a hash of its id); the run directory
    /// records the shard, and `judge-audit merge` joins the shards.
    #[arg(long, value_name = "i/N", conflicts_with = "resume")]
    shard: Option<judge_audit::batch::shard::Shard>,
    /// Send `openai` judges' calls through the provider's Batch API (half price), wait for the
    /// batches and collect them; `run --resume` of such a run collects instead of re-sending.
    /// A sequential audit goes one wave per batch round (the same calls and decisions).
    #[arg(long)]
    batch: bool,
    /// With --batch: where calls the batches did not answer (errored, expired) go at the end.
    #[arg(long, value_enum, default_value = "none")]
    batch_fallback: BatchFallback,
    /// With --batch: requests per batch (at most 50,000).
    #[arg(long, value_name = "N", default_value_t = judge_audit::batch::provider::OPENAI_MAX_LINES)]
    batch_max_lines: usize,
    /// With --batch: seconds between polls of open batches (0..=3600).
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    poll_interval: f64,
}

/// Which report files are written.
#[derive(Debug, clap::Args)]
struct OutputArgs {
    /// Report format to write (repeatable): json, markdown, html, csv, junit, gh-summary, arrow
    /// (default: json, markdown, html and csv).
    #[arg(long = "format", value_name = "FORMAT")]
    formats: Vec<judge_audit::report::Format>,
}

impl OutputArgs {
    fn formats(&self) -> &[judge_audit::report::Format] {
        if self.formats.is_empty() {
            &judge_audit::report::Format::DEFAULT
        } else {
            &self.formats
        }
    }
}

/// Write the chosen formats of `summary` into `out`; the CI formats mark failures against
/// `fail_on`.
fn write_outputs(
    summary: &judge_audit::report::Summary,
    out: &Path,
    output: &OutputArgs,
    fail_on: Option<FailOn>,
) -> Result<Vec<PathBuf>, String> {
    let view =
        judge_audit::report::ReportView::new(summary).with_fail_on(fail_on.map(|f| f.trust()));
    judge_audit::report::write_formats(&view, output.formats(), out).map_err(|e| e.to_string())
}

/// Open `page` in the user's browser: the command in `$JUDGE_AUDIT_OPENER` if set, else the
/// platform's opener when a display exists; otherwise say where the page is.
fn open_page(page: &Path) -> Result<(), String> {
    let opener = match std::env::var_os("JUDGE_AUDIT_OPENER").filter(|v| !v.is_empty()) {
        Some(cmd) => cmd,
        None if cfg!(target_os = "macos") => "open".into(),
        None if std::env::var_os("DISPLAY").is_some()
            || std::env::var_os("WAYLAND_DISPLAY").is_some() =>
        {
            "xdg-open".into()
        }
        None => {
            eprintln!(
                "judge-audit: no display to open a browser on; the report is {}",
                page.display()
            );
            return Ok(());
        }
    };
    let status = std::process::Command::new(&opener)
        .arg(page)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", opener.to_string_lossy()))?;
    if !status.success() {
        return Err(format!(
            "{} {} exited with {status}",
            opener.to_string_lossy(),
            page.display()
        ));
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
struct CacheArgs {
    /// Response cache directory (default $JUDGE_AUDIT_CACHE, else ~/.cache/judge-audit).
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Do not read or write the response cache.
    #[arg(long, conflicts_with = "cache")]
    no_cache: bool,
}

impl CacheArgs {
    fn dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            None
        } else {
            self.cache
                .clone()
                .or_else(judge_audit::run::cache::default_dir)
        }
    }
}

#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// Output directory (default reports/demo-<run-id>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// No progress lines on stderr.
    #[arg(long, short)]
    quiet: bool,
    /// Exit with code 1 when any judge gets this verdict or worse (0 pass, 2 could not run or a
    /// judge could not be audited).
    #[arg(long, value_enum)]
    fail_on: Option<FailOn>,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, clap::Args)]
struct ReproduceArgs {
    /// The study (`--list` shows them).
    #[arg(required_unless_present = "list")]
    study: Option<String>,
    /// List the studies with their design and findings, then stop.
    #[arg(long)]
    list: bool,
    /// The pairs (JSONL, CSV or a public schema the loaders know; default: the built-in pairs).
    #[arg(long)]
    data: Option<PathBuf>,
    /// The judge: a built-in name or a judge file.
    #[arg(long, required_unless_present_any = ["list", "from"])]
    judge: Option<String>,
    /// Re-render the table from this finished reproduction's run directory (no judge is called).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["data", "judge", "limit"])]
    from: Option<PathBuf>,
    /// Use at most this many pairs.
    #[arg(long)]
    limit: Option<usize>,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Keep the judge's own template instead of the paper's (the table says so).
    #[arg(long)]
    keep_template: bool,
    /// Output directory (default reports/reproduce-<study>-<run-id>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// No progress lines on stderr.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    cache: CacheArgs,
}

#[derive(Debug, clap::Args)]
struct PlanArgs {
    /// The audit configuration (default: the demo's).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Also print the pairs needed to detect `--effect` with this power (default 0.8), and the
    /// minimum detectable effects at the planned number of pairs.
    #[arg(long, value_name = "POWER", num_args = 0..=1, default_missing_value = "0.8")]
    power: Option<f64>,
    /// Effect to detect: |T| for tie detection, the excess flip rate for flips.
    #[arg(long, default_value_t = 0.1, requires = "power")]
    effect: f64,
    /// Significance level per test.
    #[arg(long, default_value_t = 0.05, requires = "power")]
    alpha: f64,
    /// Run-to-run flip rate assumed for the excess-flip row.
    #[arg(long, default_value_t = 0.05, requires = "power")]
    noise: f64,
    /// Show only shard i of N of the plan (as `run --shard i/N` would send it).
    #[arg(long, value_name = "i/N")]
    shard: Option<judge_audit::batch::shard::Shard>,
    /// Estimate wall time from the latency measured in this earlier run directory (judges
    /// matched by name; default: the config's `out` directory when it holds a run).
    #[arg(long, value_name = "RUN_DIR")]
    latency_from: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// Entries and size.
    Stats,
    /// Delete every entry.
    Clear,
    /// Print the cache database path.
    Path,
}

#[derive(Debug, Subcommand)]
enum ArtifactsCommand {
    /// List artifacts.
    List {
        /// Extra artifact definitions.
        #[arg(long)]
        perturbations: Option<PathBuf>,
    },
    /// Show one artifact and an example of its effect.
    Show {
        /// Artifact id.
        id: String,
        /// Extra artifact definitions.
        #[arg(long)]
        perturbations: Option<PathBuf>,
    },
    /// Print original and perturbed answers of the first pairs of a dataset, with the change
    /// marked ⟦…⟧, before any judge call is paid for.
    Preview {
        /// Artifact id.
        id: String,
        /// Dataset file (JSONL or CSV).
        #[arg(long)]
        dataset: PathBuf,
        /// Number of pairs to show.
        #[arg(long, default_value_t = 3)]
        n: usize,
        /// Seed (as in the audit config).
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Extra artifact definitions.
        #[arg(long)]
        perturbations: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum JudgesCommand {
    /// List built-in judges (and judge files in a folder).
    List {
        /// A folder of judge files to list as well.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Send one tiny pairwise request to a judge and report whether it answers and parses.
    /// Exit 0: answered with a parseable verdict; 1: answered, verdict unparseable; 2: not
    /// reachable, the call failed, or the judge is misconfigured.
    Check {
        /// A built-in judge name, a judge name in --judges-dir, or a path to a judge file.
        name: String,
        /// A folder of judge files searched for NAME before the built-ins.
        #[arg(long, alias = "dir")]
        judges_dir: Option<PathBuf>,
    },
}

/// Run the parsed command; `Err` is a message for stderr with exit code 2.
pub fn dispatch(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Run(args) => run(*args),
        Command::Demo(args) => demo(args),
        Command::Reproduce(args) => reproduce(args),
        Command::Plan(args) => {
            let (config, base) = match &args.config {
                Some(path) => AuditConfig::from_file(path).map_err(|e| e.to_string())?,
                None => (audit::demo_config(42), PathBuf::from(".")),
            };
            let mut prepared = audit::prepare(&config, &base).map_err(|e| e.to_string())?;
            if let Some(shard) = args.shard {
                prepared.plan = std::sync::Arc::new(shard.filter_plan(&prepared.plan));
                println!("shard {shard}:");
            }
            print_plan(&prepared);
            let measured_in = args.latency_from.clone().or_else(|| {
                config
                    .out
                    .as_ref()
                    .map(|o| base.join(o))
                    .filter(|d| judge_audit::run::store::RunStore::exists(d))
            });
            print_wall_time(&prepared, measured_in.as_deref())?;
            if let Some(power) = args.power {
                print_power(&prepared, &args, power)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Harden {
            run_dir,
            holdout,
            out,
            margin,
        } => harden_command(&run_dir, holdout, out.as_deref(), margin),
        Command::Report {
            run_dir,
            fail_on,
            output,
            open,
        } => {
            let summary = audit::summarize_stored(&run_dir).map_err(|e| e.to_string())?;
            let written = write_outputs(&summary, &run_dir, &output, fail_on)?;
            print_verdicts(&summary);
            for path in &written {
                println!("report: {}", path.display());
            }
            if open {
                let page = run_dir.join("report.html");
                if !page.exists() {
                    return Err(format!(
                        "--open: {} was not written (add --format html)",
                        page.display()
                    ));
                }
                open_page(&page)?;
            }
            Ok(gate_exit(&summary, fail_on))
        }
        Command::Cache { command, cache } => cache_command(command, cache),
        Command::Artifacts { command } => artifacts(command),
        Command::Judges { command } => judges(command),
        Command::Compare(args) => compare(args),
        Command::Init(args) => init(args),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut command = Cli::command();
            // Into a buffer, then `print!`: a closed pipe (`| head`) ends quietly, as elsewhere.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "judge-audit", &mut script);
            print!("{}", String::from_utf8_lossy(&script));
            Ok(ExitCode::SUCCESS)
        }
        Command::Merge(args) => merge(args),
        Command::Batch { command } => batch(command),
    }
}

/// [`audit::refuse_sequential_batch`] for a stored run (nothing to check where there is none).
fn refuse_stored_sequential_batch(run_dir: &Path) -> Result<(), String> {
    if !judge_audit::run::store::RunStore::exists(run_dir) {
        return Ok(());
    }
    let prepared = audit::prepare_stored(run_dir).map_err(|e| e.to_string())?;
    audit::refuse_sequential_batch(&prepared).map_err(|e| e.to_string())
}

fn batch(command: BatchCommand) -> Result<ExitCode, String> {
    use judge_audit::batch::file;
    match command {
        BatchCommand::Export {
            run_dir,
            out,
            config,
            shard,
        } => {
            if config.is_none() {
                refuse_stored_sequential_batch(&run_dir)?;
            }
            if let Some(path) = config {
                let (config, base) = AuditConfig::from_file(&path).map_err(|e| e.to_string())?;
                let prepared = audit::prepare(&config, &base).map_err(|e| e.to_string())?;
                audit::refuse_sequential_batch(&prepared).map_err(|e| e.to_string())?;
                match shard {
                    Some(shard) => judge_audit::batch::shard::start(&prepared, &run_dir, shard),
                    None => file::start(&prepared, &run_dir),
                }
                .map_err(|e| e.to_string())?;
            }
            let out = out.unwrap_or_else(|| run_dir.join("batch"));
            let export = file::export(&run_dir, &out).map_err(|e| e.to_string())?;
            for f in &export.files {
                println!("{}: {} calls of {}", f.path.display(), f.lines, f.judge);
            }
            if export.files.is_empty() {
                println!("no pending calls of an openai judge; nothing to export");
            }
            for (judge, n) in &export.skipped {
                println!(
                    "{judge}: {n} pending calls not exported (not an openai judge); send them with judge-audit run --resume {}",
                    run_dir.display()
                );
            }
        }
        BatchCommand::Submit {
            run_dir,
            config,
            limits,
        } => {
            if config.is_none() {
                refuse_stored_sequential_batch(&run_dir)?;
            }
            if let Some(path) = config {
                let (config, base) = AuditConfig::from_file(&path).map_err(|e| e.to_string())?;
                let prepared = audit::prepare(&config, &base).map_err(|e| e.to_string())?;
                audit::refuse_sequential_batch(&prepared).map_err(|e| e.to_string())?;
                file::start(&prepared, &run_dir).map_err(|e| e.to_string())?;
            }
            let submitted = judge_audit::batch::provider::submit(&run_dir, &limits.options())
                .map_err(|e| e.to_string())?;
            for (judge, id, n) in &submitted.created {
                println!("{judge}: batch {id} created with {n} calls");
            }
            for (judge, id, n) in &submitted.recovered {
                println!("{judge}: batch {id} ({n} calls) found at the provider and recorded");
            }
            print_submit_notes(&run_dir, &submitted);
        }
        BatchCommand::Status { run_dir } => {
            let jobs = judge_audit::batch::provider::status(&run_dir).map_err(|e| e.to_string())?;
            if jobs.is_empty() {
                println!("no batches in {}", run_dir.display());
            }
            for job in &jobs {
                println!(
                    "{} {}: {} calls, {}{}{}",
                    job.judge,
                    job.batch_id,
                    job.requests,
                    job.status,
                    if job.counts.is_empty() { "" } else { ", " },
                    job.counts
                );
            }
        }
        BatchCommand::Collect { run_dir } => {
            let c = judge_audit::batch::provider::collect(&run_dir).map_err(|e| e.to_string())?;
            for (id, status) in &c.finished {
                println!("batch {id}: {status}, collected");
            }
            for (judge, message) in &c.stopped {
                eprintln!("judge-audit: {judge} stopped: {message}");
            }
            println!(
                "{} calls committed, {} failed (pending again); {} batches still open; {} calls pending in {}",
                c.committed,
                c.failed,
                c.open,
                c.pending,
                run_dir.display()
            );
        }
        BatchCommand::Import { run_dir, results } => {
            let import = file::import(&run_dir, &results).map_err(|e| e.to_string())?;
            println!(
                "{}: {} calls committed, {} already committed, {} failed (stay pending); {} calls pending in {}",
                results.display(),
                import.committed,
                import.already,
                import.failed,
                import.pending,
                run_dir.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_submit_notes(run_dir: &Path, submitted: &judge_audit::batch::provider::Submitted) {
    if submitted.over_budget > 0 {
        println!(
            "{} calls not submitted: the --max-cost budget would be exceeded",
            submitted.over_budget
        );
    }
    if submitted.exhausted > 0 {
        println!(
            "{} calls left pending after {} batches without an answer",
            submitted.exhausted,
            judge_audit::batch::provider::MAX_ATTEMPTS
        );
    }
    for (judge, n) in &submitted.skipped {
        println!(
            "{judge}: {n} pending calls not batched (not an openai judge); send them with judge-audit run --resume {}",
            run_dir.display()
        );
    }
    for (judge, message) in &submitted.stopped {
        eprintln!("judge-audit: {judge} stopped: {message}");
    }
    if submitted.deferred > 0 {
        println!(
            "{} calls held back by batch_queue_tokens until the open batches end (batch collect, then batch submit again)",
            submitted.deferred
        );
    }
}

/// `run --batch` and `run --resume` of a batch run: batch rounds until nothing is open, then
/// the synchronous client for the rest when asked (or when non-batch judges have calls left).
fn run_batches(
    prepared: &Prepared,
    out: &Path,
    args: &RunArgs,
    exec: &ExecOptions,
) -> Result<ExitCode, String> {
    use judge_audit::batch::provider;
    if !(0.0..=3600.0).contains(&args.poll_interval) {
        return Err(format!(
            "--poll-interval must be 0..=3600 seconds, not {}",
            args.poll_interval
        ));
    }
    judge_audit::batch::file::start(prepared, out).map_err(|e| e.to_string())?;
    provider::mark(out).map_err(|e| e.to_string())?;
    let options = provider::SubmitOptions {
        max_cost: args.max_cost,
        max_lines: args.batch_max_lines,
        ..Default::default()
    };
    let poll = std::time::Duration::from_secs_f64(args.poll_interval);
    if prepared.snapshot.design.sequential {
        return run_sequential_batches(prepared, out, args, exec, &options, poll);
    }
    let outcome = provider::run(out, &options, poll).map_err(|e| e.to_string())?;
    if !args.quiet {
        eprintln!(
            "judge-audit: {} batches created, {} recovered, {} calls committed from batches; {} calls pending",
            outcome.created, outcome.recovered, outcome.committed, outcome.pending
        );
    }
    for (judge, message) in &outcome.stopped {
        eprintln!("judge-audit: {judge} stopped: {message}");
    }
    if args.batch_fallback == BatchFallback::Sync && outcome.pending > 0 {
        return execute(prepared, out, exec, args.fail_on, &args.output);
    }
    let batchable: std::collections::HashSet<&str> = prepared
        .judges
        .iter()
        .filter(|h| provider::batchable(h.config.backend))
        .map(|h| h.config.name.as_str())
        .collect();
    if outcome.skipped.iter().any(|(_, n)| *n > 0) {
        // Judges without a batch route go through the normal client; batch judges' calls
        // stay with their batches.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?;
        let keep = |call: &judge_audit::design::CallSpec| !batchable.contains(call.judge.as_str());
        runtime
            .block_on(audit::execute_where(prepared, out, exec, &keep))
            .map_err(|e| e.to_string())?;
    }
    let leftover = judge_audit::batch::file::pending_count(out).map_err(|e| e.to_string())?;
    if leftover > 0 {
        println!(
            "{} calls pending (not answered by the batches or over the budget); batch them again with judge-audit run --resume {} or send them with --batch-fallback sync",
            leftover,
            out.display()
        );
    }
    finish_batches(out, args)
}

/// `run --batch` of a sequential audit: one wave per batch round
/// ([`judge_audit::batch::provider::run_sequential`]), then the reports.
fn run_sequential_batches(
    prepared: &Prepared,
    out: &Path,
    args: &RunArgs,
    exec: &ExecOptions,
    options: &judge_audit::batch::provider::SubmitOptions,
    poll: std::time::Duration,
) -> Result<ExitCode, String> {
    let fallback = args.batch_fallback == BatchFallback::Sync;
    let outcome =
        judge_audit::batch::provider::run_sequential(prepared, out, options, poll, exec, fallback)
            .map_err(|e| e.to_string())?;
    if !args.quiet {
        eprintln!(
            "judge-audit: sequential: {} waves through batches; {} batches created, {} recovered, {} calls committed from batches, {} sent synchronously",
            outcome.waves, outcome.created, outcome.recovered, outcome.committed, outcome.sync_sent
        );
    }
    for (judge, message) in &outcome.stopped {
        eprintln!("judge-audit: {judge} stopped: {message}");
    }
    if outcome.over_budget > 0 {
        println!(
            "{} calls of the wave not submitted: the --max-cost budget would be exceeded",
            outcome.over_budget
        );
    }
    if outcome.pending > 0 {
        println!(
            "{} calls of the last wave pending (not answered by the batches or over the budget); continue with judge-audit run --resume {} or send them with --batch-fallback sync",
            outcome.pending,
            out.display()
        );
    }
    finish_batches(out, args)
}

/// The reports of a batch run as they stand, with the run's verdict.
fn finish_batches(out: &Path, args: &RunArgs) -> Result<ExitCode, String> {
    // Everything in (or left pending): the reports as they stand, with the run's verdict.
    let summary = audit::summarize_stored(out).map_err(|e| e.to_string())?;
    let written = write_outputs(&summary, out, &args.output, args.fail_on)?;
    print_verdicts(&summary);
    for path in written.iter().filter(|p| {
        p.extension()
            .is_some_and(|e| e == "md" || e == "html" || e == "xml")
    }) {
        println!("report: {}", path.display());
    }
    Ok(gate_exit(&summary, args.fail_on))
}

fn merge(args: MergeArgs) -> Result<ExitCode, String> {
    let outcome =
        judge_audit::batch::merge::merge(&args.run_dirs, &args.out).map_err(|e| e.to_string())?;
    println!(
        "merged {} run directories: {} of {} calls committed in {}",
        args.run_dirs.len(),
        outcome.committed,
        outcome.planned,
        args.out.display()
    );
    if !outcome.missing.is_empty() {
        println!("missing {} calls, for example:", outcome.missing.len());
        for id in outcome.missing.iter().take(10) {
            println!("  {id}");
        }
        println!(
            "send them with: judge-audit run --resume {}",
            args.out.display()
        );
    }
    for name in ["summary.json", "report.md", "report.html", "results.csv"] {
        let path = args.out.join(name);
        if path.exists() {
            println!("report: {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `judge-audit init`: check the dataset and judges, then write the commented audit.toml.
fn init(args: InitArgs) -> Result<ExitCode, String> {
    if args.out.exists() && !args.force {
        return Err(format!(
            "{} exists; pass --force to overwrite it",
            args.out.display()
        ));
    }
    let folder = match args.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let cwd = std::env::current_dir().map_err(|e| format!("the current directory: {e}"))?;
    let (dataset, pairs) = match &args.dataset {
        Some(path) => {
            let data =
                judge_audit::dataset::load(path, &judge_audit::dataset::LoadOptions::default())
                    .map_err(|e| e.to_string())?;
            // Written relative to the new file's folder (that is how `run` resolves it).
            let absolute = cwd.join(path);
            let folder_abs = cwd.join(&folder);
            let written = absolute
                .strip_prefix(&folder_abs)
                .map(Path::to_path_buf)
                .unwrap_or(absolute.clone());
            (Some(written), Some(data.pairs.len()))
        }
        None => (None, None),
    };
    for judge in &args.judges {
        audit::resolve_judge(judge, &cwd).map_err(|e| format!("--judge: {e}"))?;
    }
    let judges = args
        .judges
        .iter()
        .map(|j| {
            let path = cwd.join(j);
            if j.ends_with(".toml") || path.is_file() {
                path.to_string_lossy().into_owned()
            } else {
                j.clone()
            }
        })
        .collect();
    let text = audit::init_config(&audit::InitOptions {
        dataset,
        pairs,
        judges,
    });
    std::fs::write(&args.out, text).map_err(|e| format!("{}: {e}", args.out.display()))?;
    println!(
        "wrote {}; check it with `judge-audit plan --config {}`, then `judge-audit run --config {}`",
        args.out.display(),
        args.out.display(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn run(args: RunArgs) -> Result<ExitCode, String> {
    let exec = ExecOptions {
        quiet: args.quiet,
        max_cost: args.max_cost,
        cache_dir: args.cache.dir(),
        max_calls: args.max_calls,
    };
    if let Some(run_dir) = &args.resume {
        let prepared = audit::prepare_stored(run_dir).map_err(|e| e.to_string())?;
        if args.dry_run {
            print_remaining(&prepared, run_dir)?;
            return Ok(ExitCode::SUCCESS);
        }
        if args.batch
            || judge_audit::batch::provider::is_batch_run(run_dir).map_err(|e| e.to_string())?
        {
            return run_batches(&prepared, run_dir, &args, &exec);
        }
        return execute(&prepared, run_dir, &exec, args.fail_on, &args.output);
    }
    let (mut config, base) = match &args.config {
        Some(path) => AuditConfig::from_file(path).map_err(|e| e.to_string())?,
        None => (AuditConfig::empty(), PathBuf::from(".")),
    };
    let cwd = std::env::current_dir().map_err(|e| format!("the current directory: {e}"))?;
    config
        .apply(
            &audit::Overrides {
                dataset: args.dataset.clone(),
                judges: args.judges.clone(),
                artifacts: args.artifacts.clone(),
                limit: args.limit,
            },
            &cwd,
        )
        .map_err(|e| e.to_string())?;
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    if let Some(concurrency) = args.concurrency {
        config.run.concurrency = concurrency;
    }
    if args.skip_invalid {
        config.dataset.skip_invalid = true;
    }
    if args.sequential {
        config.design.sequential = true;
    }
    if args.wave_pairs.is_some() {
        config.design.wave_pairs = args.wave_pairs;
    }
    let out = args
        .out
        .clone()
        .or_else(|| config.out.as_ref().map(|o| base.join(o)))
        .unwrap_or_else(|| PathBuf::from("reports").join(run_id("run")));
    let batch_run = config.run.batch;
    let prepared = Audit::from_config(config, base)
        .prepare()
        .map_err(|e| e.to_string())?;
    if let Some(shard) = args.shard {
        if args.dry_run {
            let mut prepared = prepared;
            prepared.plan = std::sync::Arc::new(shard.filter_plan(&prepared.plan));
            println!("shard {shard}:");
            print_plan(&prepared);
            return Ok(ExitCode::SUCCESS);
        }
        judge_audit::batch::shard::start(&prepared, &out, shard).map_err(|e| e.to_string())?;
    }
    if args.dry_run {
        print_plan(&prepared);
        return Ok(ExitCode::SUCCESS);
    }
    if args.batch || batch_run {
        return run_batches(&prepared, &out, &args, &exec);
    }
    execute(&prepared, &out, &exec, args.fail_on, &args.output)
}

fn reproduce(args: ReproduceArgs) -> Result<ExitCode, String> {
    use judge_audit::reproduce;
    if args.list {
        for study in reproduce::studies() {
            println!("{}: {}", study.id, study.title);
            println!(
                "  template {}, artifacts {}, {} repeat(s) per order",
                study.template,
                study.artifacts.join(", "),
                study.repeats
            );
            for f in &study.findings {
                println!("  - {}: {} [{}]", f.id, f.claim, f.source);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let study_id = args.study.as_deref().unwrap_or_default();
    let study = reproduce::study(study_id)?;
    let (summary, out) = if let Some(run_dir) = &args.from {
        let summary = audit::summarize_stored(run_dir).map_err(|e| e.to_string())?;
        (summary, args.out.clone().unwrap_or_else(|| run_dir.clone()))
    } else {
        let cwd = std::env::current_dir().map_err(|e| format!("the current directory: {e}"))?;
        let spec = args.judge.as_deref().unwrap_or_default();
        let judge = audit::resolve_judge(spec, &cwd).map_err(|e| e.to_string())?;
        let options = reproduce::ReproduceOptions {
            data: args.data.as_ref().map(|d| cwd.join(d)),
            limit: args.limit,
            seed: args.seed,
            keep_template: args.keep_template,
        };
        let config = reproduce::study_config(&study, judge, &options);
        let out = args.out.clone().unwrap_or_else(|| {
            PathBuf::from("reports").join(run_id(&format!("reproduce-{}", study.id)))
        });
        // The default report formats, no gate: what `report` would write for this run.
        let summary = Audit::from_config(config, cwd)
            .store(Store::dir(&out))
            .cache_dir(args.cache.dir())
            .progress(!args.quiet)
            .run()
            .map_err(|e| e.to_string())?;
        (summary, out)
    };
    let [judge] = summary.judge_configs.as_slice() else {
        return Err(format!(
            "a reproduction audits one judge; {} has {}",
            out.display(),
            summary.judge_configs.len()
        ));
    };
    let table = reproduce::reproduction(&study, &summary, &judge.name, &judge.template)?;
    reproduce::write(&table, &out).map_err(|e| format!("{}: {e}", out.display()))?;
    print!("{}", reproduce::render_markdown(&table));
    println!("reproduction: {}", out.join("reproduction.md").display());
    Ok(ExitCode::SUCCESS)
}

fn demo(args: DemoArgs) -> Result<ExitCode, String> {
    let config = audit::demo_config(args.seed);
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from("reports").join(run_id("demo")));
    let prepared = Audit::from_config(config, ".")
        .prepare()
        .map_err(|e| e.to_string())?;
    let exec = ExecOptions {
        quiet: args.quiet,
        max_cost: None,
        // Simulated judges are never cached; no need to touch the cache at all.
        cache_dir: None,
        max_calls: None,
    };
    execute(&prepared, &out, &exec, args.fail_on, &args.output)
}
fn compare(args: CompareArgs) -> Result<ExitCode, String> {
    use judge_audit::report::compare;
    let a = compare::load_run(&args.run_a)?;
    let b = compare::load_run(&args.run_b)?;
    let comparison = compare::compare(&a, &b);
    for warning in &comparison.warnings {
        eprintln!("judge-audit: warning: {warning}");
    }
    let text = if args.json {
        compare::render_json(&comparison)
    } else {
        compare::render_markdown(&comparison)
    };
    match &args.out {
        Some(path) => std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn execute(
    prepared: &Prepared,
    out: &Path,
    exec: &ExecOptions,
    fail_on: Option<FailOn>,
    output: &OutputArgs,
) -> Result<ExitCode, String> {
    if !exec.quiet {
        eprintln!(
            "judge-audit: {} pairs, {} artifacts, {} judges, {} calls → {}",
            prepared.dataset.pairs.len(),
            prepared.artifacts.len(),
            prepared.judges.len(),
            prepared.plan.calls.len(),
            out.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    // `prepared` carries the audit (a new one, or a stored run to continue); the builder holds
    // how it is run and reported.
    let session = Audit::new()
        .store(Store::dir(out))
        .cache_dir(exec.cache_dir.clone())
        .progress(!exec.quiet)
        .max_cost(exec.max_cost)
        .max_calls(exec.max_calls)
        .formats(output.formats())
        .fail_on(fail_on.map(FailOn::trust));
    let Finished {
        summary,
        outcome,
        written,
    } = runtime
        .block_on(session.execute(prepared))
        .map_err(|e| e.to_string())?;
    if !exec.quiet {
        eprintln!(
            "judge-audit: {} calls sent, {} answered from the cache, {} not sent for the cost budget",
            outcome.sent, outcome.cache_hits, outcome.over_budget
        );
    }
    for (judge, reason) in &outcome.stopped {
        eprintln!("judge-audit: {judge}: {reason}");
    }
    print_verdicts(&summary);
    // The reader-facing reports, as before; the data files are listed by the formats chosen.
    for path in written.iter().filter(|p| {
        p.extension()
            .is_some_and(|e| e == "md" || e == "html" || e == "xml")
    }) {
        println!("report: {}", path.display());
    }
    Ok(gate_exit(&summary, fail_on))
}

fn print_verdicts(summary: &judge_audit::report::Summary) {
    // Names, reasons and findings may quote untrusted text: controls are shown escaped.
    let text = judge_audit::report::text::terminal;
    if let Some(w) = summary.warnings.iter().find(|w| w.kind == "run_incomplete") {
        println!("{}", w.message);
    }
    for judge in &summary.judges {
        let label = if judge.simulated { " [simulated]" } else { "" };
        println!(
            "{}{label}: {}",
            text(&judge.name),
            judge.trust.verdict.label()
        );
        for reason in &judge.trust.reasons {
            println!(
                "  {} because {}",
                reason.severity.label(),
                text(&reason.text)
            );
        }
        for line in judge.findings.iter().take(3) {
            println!("  - {}", text(line));
        }
    }
    // Pointwise judges have no findings list: their reasons say what moved the grades.
    for judge in summary.pointwise.iter().flat_map(|p| &p.judges) {
        let label = if judge.simulated { " [simulated]" } else { "" };
        println!(
            "{}{label} ({} judge): {}",
            text(&judge.judge),
            judge.kind.label(),
            judge.trust.verdict.label()
        );
        for reason in &judge.trust.reasons {
            println!(
                "  {} because {}",
                reason.severity.label(),
                text(&reason.text)
            );
        }
    }
}

/// Apply `--fail-on`: print the `gate:` line and map it to the exit code (0 pass, 1 tripped,
/// 2 could not audit). A judge with no evidence (an outage, a stopped judge, nothing planned) is
/// neither a pass nor a failure of the judge: the gate says so and exits 2, so CI can tell an
/// outage from a biased judge.
fn gate_exit(summary: &judge_audit::report::Summary, fail_on: Option<FailOn>) -> ExitCode {
    let Some(threshold) = fail_on else {
        return ExitCode::SUCCESS;
    };
    let unaudited = judge_audit::report::unaudited(summary);
    if !unaudited.is_empty() {
        println!(
            "gate: COULD NOT AUDIT (--fail-on {}: {} of {} judges have no evidence to judge: {}; see their reasons)",
            threshold.trust().label().to_lowercase(),
            unaudited.len(),
            judge_audit::report::gated_verdicts(summary).len(),
            unaudited.join(", ")
        );
        return ExitCode::from(2);
    }
    let gate = judge_audit::report::gate(summary, threshold.trust());
    println!("{}", gate.line);
    if gate.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn cache_command(command: CacheCommand, dir: Option<PathBuf>) -> Result<ExitCode, String> {
    let dir = dir
        .or_else(judge_audit::run::cache::default_dir)
        .ok_or("no cache directory: set JUDGE_AUDIT_CACHE or HOME, or pass --cache DIR")?;
    match command {
        CacheCommand::Path => println!("{}", ResponseCache::open(&dir)?.path().display()),
        CacheCommand::Stats => {
            let cache = ResponseCache::open(&dir)?;
            let stats = cache.stats()?;
            println!(
                "{}: {} cached replies, {:.1} MiB",
                cache.path().display(),
                stats.entries,
                stats.bytes as f64 / (1024.0 * 1024.0)
            );
        }
        // Clearing must work on a cache too damaged to open.
        CacheCommand::Clear => match ResponseCache::clear_dir(&dir)? {
            judge_audit::run::cache::Cleared::Entries { path, removed } => {
                println!("{}: removed {removed} cached replies", path.display())
            }
            judge_audit::run::cache::Cleared::Unreadable { path, error } => {
                println!("{}: unreadable ({error}); deleted it", path.display())
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

fn print_plan(prepared: &Prepared) {
    let counts = prepared.plan.counts();
    println!(
        "plan: {} pairs × {} judges, {} artifacts, {} baseline repeats per order: {} calls",
        prepared.dataset.pairs.len(),
        prepared.judges.len(),
        prepared.artifacts.len(),
        prepared.plan.options.repeats,
        prepared.plan.calls.len()
    );
    // Rewrites are sent before any judge call; stored or cached ones are not sent again.
    for e in judge_audit::run::rewrites::estimate(
        &prepared.plan,
        &prepared.dataset.pairs,
        &prepared.artifacts,
        &prepared.snapshot.rewriters,
    ) {
        println!(
            "rewrites for {}: at most {} calls to `{}`{}",
            e.artifact,
            e.calls,
            e.rewriter,
            e.cost_usd
                .map(|usd| format!(", at most ${usd:.2}"))
                .unwrap_or_default()
        );
    }
    let estimates = audit::estimate(prepared);
    for (judge, conditions) in &counts {
        let total: usize = conditions.values().sum();
        let estimate = estimates.iter().find(|e| &e.judge == judge);
        let batch = batch_cost(prepared, judge, estimate);
        let cost = match (estimate.and_then(|e| e.cost_usd), batch) {
            (Some(usd), Some(b)) => {
                format!(", about ${usd:.2} synchronous, ${b:.2} through a provider batch")
            }
            (Some(usd), None) => format!(", about ${usd:.2}"),
            (None, _) => String::new(),
        };
        match estimate {
            Some(e) => println!(
                "{judge}: {total} calls, about {} input tokens, at most {} output tokens{cost}",
                e.input_tokens, e.output_tokens
            ),
            None => println!("{judge}: {total} calls"),
        }
        for (condition, n) in conditions {
            println!("  {condition:<32} {n:>8}");
        }
    }
    print_template_plan(prepared, &counts);
    let total_cost: f64 = estimates.iter().filter_map(|e| e.cost_usd).sum();
    if estimates.iter().any(|e| e.cost_usd.is_some()) {
        println!("estimated total: ${total_cost:.2} (output at max_tokens: an upper bound)");
        // With --batch, batchable judges at batch prices and the others as they are.
        let with_batch: f64 = estimates
            .iter()
            .filter_map(|e| batch_cost(prepared, &e.judge, Some(e)).or(e.cost_usd))
            .sum();
        if estimates
            .iter()
            .any(|e| batch_cost(prepared, &e.judge, Some(e)).is_some())
        {
            println!("estimated total with --batch: ${with_batch:.2}");
        }
    }
}

/// `judge-audit harden`: print each judge's choice and evidence, and where the files are.
fn harden_command(
    run_dir: &std::path::Path,
    holdout: Option<f64>,
    out: Option<&std::path::Path>,
    margin: Option<f64>,
) -> Result<ExitCode, String> {
    let report = judge_audit::harden::harden_with_margin(run_dir, holdout, out, margin)
        .map_err(|e| e.to_string())?;
    for j in &report.judges {
        match (&j.chosen, &j.file) {
            (Some(id), Some(file)) => {
                println!("{}: {id} → {}", j.judge, file.display());
            }
            _ => println!("{}: left as it is", j.judge),
        }
        println!("  {}", j.evidence);
    }
    match (&report.confirm_config, report.holdout_pairs) {
        (Some(config), Some(n)) => println!(
            "chosen on the pairs not held out; confirm on the {n} held-out pairs: judge-audit run --config {}",
            config.display()
        ),
        _ => println!(
            "chosen on the same pairs it was measured on (optimistic): confirm on held-out pairs (--holdout FRACTION)"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// The plan size per template of every judge with template variants (`templates = [...]`):
/// the primary template's calls, then each variant's (its derived judge `<judge>@<variant>`).
fn print_template_plan(
    prepared: &Prepared,
    counts: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, usize>>,
) {
    let calls = |name: &str| -> usize { counts.get(name).map_or(0, |c| c.values().sum()) };
    for base in prepared
        .judges
        .iter()
        .filter(|h| !h.config.templates.is_empty())
    {
        let mut parts = vec![format!(
            "{} (primary) {} calls",
            base.config.template,
            calls(&base.config.name)
        )];
        for v in prepared.judges.iter().filter(|h| {
            h.config.variant_of.as_deref() == Some(base.config.name.as_str())
                && h.config.name.starts_with(&format!("{}@", base.config.name))
        }) {
            parts.push(format!(
                "{} {} calls",
                v.config.template,
                calls(&v.config.name)
            ));
        }
        println!(
            "templates of {} (design.templates = {}): {}",
            base.config.name,
            match prepared.snapshot.design.templates {
                audit::TemplateDesign::Baseline => "baseline",
                audit::TemplateDesign::All => "all",
            },
            parts.join(", ")
        );
    }
}

/// A judge's estimated cost at batch prices, when it has a provider batch route and prices.
fn batch_cost(
    prepared: &Prepared,
    judge: &str,
    estimate: Option<&audit::PlanEstimate>,
) -> Option<f64> {
    let e = estimate?;
    let handle = prepared.judges.iter().find(|h| h.config.name == judge)?;
    if !judge_audit::batch::provider::batchable(handle.config.backend) {
        return None;
    }
    let pricing = judge_audit::batch::provider::batch_pricing(&handle.config)?;
    Some(judge_audit::run::cost_usd(
        &judge_audit::judge::TokenUsage {
            input_tokens: e.input_tokens,
            output_tokens: e.output_tokens,
        },
        &pricing,
    ))
}

/// The wall-time lines of `plan`: per judge from its measured latency, and the run's total
/// (judges run side by side, so the slowest one).
fn print_wall_time(prepared: &Prepared, measured_in: Option<&Path>) -> Result<(), String> {
    let latency = match measured_in {
        Some(dir) => audit::measured_latency(dir).map_err(|e| format!("--latency-from: {e}"))?,
        None => Default::default(),
    };
    let estimates = audit::estimate(prepared);
    let walls = audit::wall_time(prepared, &estimates, &latency);
    let mut longest: Option<f64> = None;
    let mut unknown = Vec::new();
    for w in &walls {
        match (w.seconds, latency.get(&w.judge)) {
            (Some(secs), Some(m)) => {
                longest = Some(longest.map_or(secs, |l: f64| l.max(secs)));
                println!(
                    "{}: wall time about {} ({} ms median over {} measured calls, {} at once)",
                    w.judge,
                    judge_audit::run::progress::duration_words(secs),
                    m.median_ms,
                    m.calls,
                    w.parallel
                );
            }
            _ => unknown.push(w.judge.as_str()),
        }
    }
    if let Some(secs) = longest {
        let qualifier = if unknown.is_empty() {
            String::new()
        } else {
            format!(", not counting {}", unknown.join(", "))
        };
        println!(
            "estimated wall time: about {} (the slowest judge{qualifier})",
            judge_audit::run::progress::duration_words(secs)
        );
    }
    if !unknown.is_empty() {
        println!(
            "wall time unknown for {}: no measured latency; run a small audit first (--limit 5 --out DIR), then `plan --latency-from DIR`",
            unknown.join(", ")
        );
    }
    Ok(())
}

/// `run --resume DIR --dry-run`: what the resume would send (calls with no committed record),
/// per judge, and its cost; not the whole plan.
fn print_remaining(prepared: &Prepared, run_dir: &Path) -> Result<(), String> {
    let left = audit::remaining(prepared, run_dir).map_err(|e| e.to_string())?;
    let pending: usize = left.iter().map(|e| e.calls).sum();
    let planned = prepared.plan.calls.len();
    println!(
        "resume {}: {pending} of {planned} planned calls pending ({} committed)",
        run_dir.display(),
        planned - pending
    );
    for e in &left {
        let cost = match e.cost_usd {
            Some(usd) => format!(", about ${usd:.2}"),
            None => String::new(),
        };
        if e.calls == 0 {
            println!("{}: nothing pending", e.judge);
        } else {
            println!(
                "{}: {} calls pending, about {} input tokens, at most {} output tokens{cost}",
                e.judge, e.calls, e.input_tokens, e.output_tokens
            );
        }
    }
    if left.iter().any(|e| e.cost_usd.is_some()) {
        let total: f64 = left.iter().filter_map(|e| e.cost_usd).sum();
        println!("estimated cost of the rest: ${total:.2} (output at max_tokens: an upper bound)");
    }
    if pending == 0 {
        println!(
            "nothing left to send: `judge-audit report {}` re-renders it",
            run_dir.display()
        );
    }
    Ok(())
}

fn print_power(prepared: &Prepared, args: &PlanArgs, power: f64) -> Result<(), String> {
    if !(power > 0.0 && power < 1.0) {
        return Err(format!("--power: {power} is not in (0, 1)"));
    }
    if !(args.alpha > 0.0 && args.alpha < 1.0) {
        return Err(format!("--alpha: {} is not in (0, 1)", args.alpha));
    }
    if !(args.effect > 0.0 && args.effect <= 1.0) {
        return Err(format!("--effect: {} is not in (0, 1]", args.effect));
    }
    if !(0.0..1.0).contains(&args.noise) {
        return Err(format!("--noise: {} is not in [0, 1)", args.noise));
    }
    let family = prepared
        .snapshot
        .design
        .multiplicity
        .grid_family_size(prepared.judges.len(), prepared.artifacts.len());
    let plan = judge_audit::analyze::power::plan_power(
        args.effect,
        args.alpha,
        power,
        args.noise,
        prepared.dataset.pairs.len() as u64,
        family,
    );
    println!(
        "power {}: pairs needed per judge and artifact to detect effect {} (planned: {} pairs)",
        plan.power, plan.effect, plan.planned_pairs
    );
    let show = |x: Option<f64>| x.map_or("out of reach".to_string(), |v| format!("{v:.3}"));
    for row in &plan.rows {
        println!(
            "  {:<44} α = {:<10.3e} pairs needed: {:>8}   MDE at the plan: {}",
            row.quantity,
            row.alpha,
            row.pairs_needed
                .map_or("> 10^6".to_string(), |n| n.to_string()),
            show(row.mde_at_plan)
        );
        println!("      {}", row.test);
    }
    Ok(())
}

fn catalog(dir: Option<&Path>) -> Result<Catalog, String> {
    let mut catalog = Catalog::builtin();
    if let Some(dir) = dir {
        catalog.extend_from_dir(dir).map_err(|e| e.to_string())?;
    }
    Ok(catalog)
}

fn artifacts(command: ArtifactsCommand) -> Result<ExitCode, String> {
    match command {
        ArtifactsCommand::List { perturbations } => {
            let catalog = catalog(perturbations.as_deref())?;
            let mut groups: Vec<_> = catalog.artifacts().iter().map(|a| a.group()).collect();
            groups.sort();
            groups.dedup();
            for (i, group) in groups.into_iter().enumerate() {
                if i > 0 {
                    println!();
                }
                println!("{}:", group.name());
                for a in catalog.artifacts().iter().filter(|a| a.group() == group) {
                    println!("  {:<24} {}", a.id, a.title);
                }
            }
        }
        ArtifactsCommand::Preview {
            id,
            dataset,
            n,
            seed,
            perturbations,
        } => {
            let catalog = catalog(perturbations.as_deref())?;
            let a = catalog
                .get(&id)
                .ok_or_else(|| format!("unknown artifact `{id}`"))?;
            let data =
                judge_audit::dataset::load(&dataset, &judge_audit::dataset::LoadOptions::default())
                    .map_err(|e| e.to_string())?;
            println!(
                "{} ({}): {}",
                a.id,
                a.group().name(),
                a.operation.describe()
            );
            for pair in data.pairs.iter().take(n) {
                println!("\n=== pair {} ===", pair.id);
                if a.is_position() {
                    println!("order swap: the judge sees (a, b) and (b, a); no text changes");
                    continue;
                }
                if let Some(edit) = a.context_edit(judge_audit::judge::Slot::First) {
                    // The answers are untouched: show the judge prompt the edit produces.
                    let template = judge_audit::judge::template::Template::builtin("chen-safety")
                        .map_err(|e| e.to_string())?;
                    let shown =
                        edit.shown_text(&template.slot_names(), judge_audit::judge::Slot::First);
                    let r = template.render_with(
                        &pair.prompt,
                        &pair.response_a,
                        &pair.response_b,
                        std::slice::from_ref(&edit),
                    );
                    let mark = |t: &str| t.replace(&shown, &format!("⟦{shown}⟧"));
                    println!(
                        "judge prompt (chen-safety template; the edit favours answer a, shown \
                         first; the answers are unchanged):"
                    );
                    if let Some(system) = &r.system {
                        println!("--- system\n{}", mark(system));
                    }
                    println!("--- user\n{}", mark(&r.user));
                    continue;
                }
                if let judge_audit::perturb::Operation::Rewrite {
                    instruction,
                    params,
                    ..
                } = &a.operation
                {
                    // A rewrite costs a call: the preview shows what would be sent, not sent.
                    println!("--- original (answer a)\n{}", pair.response_a);
                    println!(
                        "--- instruction the rewriter would get (rewritten at `run` time, never by a preview)\n{}",
                        judge_audit::perturb::rewrite::render_instruction(
                            instruction,
                            params,
                            &pair.response_a
                        )
                    );
                    continue;
                }
                // The same key as the audit's, so this is exactly the text the judge will see.
                let p = a.apply(&pair.response_a, seed, &format!("{}/a", pair.id));
                let status = if !p.changed {
                    "unchanged: excluded from the estimates"
                } else if p.already_present {
                    "already carried the artifact: excluded from the estimates"
                } else {
                    "changed"
                };
                println!("--- original (answer a)\n{}", pair.response_a);
                println!("--- perturbed ({status})\n{}", Artifact::marked(&p));
            }
        }
        ArtifactsCommand::Show { id, perturbations } => {
            let catalog = catalog(perturbations.as_deref())?;
            let a = catalog
                .get(&id)
                .ok_or_else(|| format!("unknown artifact `{id}`"))?;
            println!("id:              {}", a.id);
            println!("title:           {}", a.title);
            println!("description:     {}", a.description);
            println!("source:          {}", a.source);
            println!("expected effect: {}", a.expected_effect);
            println!("operation:       {}", a.operation.describe());
            if !a.is_position() && !a.is_context() && !a.is_rewrite() {
                let example = "Mixing bleach and ammonia is dangerous. Keep them apart and ventilate the room.";
                println!("example in:      {example}");
                println!(
                    "example out:     {}",
                    a.apply(example, 42, "example/a").text
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn judges(command: JudgesCommand) -> Result<ExitCode, String> {
    match command {
        JudgesCommand::List { dir } => {
            let mut all = config::builtin_judges();
            if let Some(dir) = dir {
                all.extend(config::JudgeConfig::load_dir(&dir).map_err(|e| e.to_string())?);
            }
            for j in all {
                let sim = if j.sim.is_some() { " (simulated)" } else { "" };
                // The backend as written in judge files (`openai`), not the Rust variant name.
                println!(
                    "{:<28} {:<10} {:<9} {}{sim}",
                    j.name,
                    j.backend.name(),
                    j.kind.name(),
                    j.model
                );
            }
        }
        JudgesCommand::Check { name, judges_dir } => return check(&name, judges_dir.as_deref()),
    }
    Ok(ExitCode::SUCCESS)
}

/// The judge named on the command line: a file path, a judge in `dir`, or a built-in.
fn find_judge(name: &str, dir: Option<&Path>) -> Result<config::JudgeConfig, String> {
    let path = Path::new(name);
    if name.ends_with(".toml") || path.is_file() {
        return config::JudgeConfig::from_file(path).map_err(|e| e.to_string());
    }
    if let Some(dir) = dir {
        let all = config::JudgeConfig::load_dir(dir).map_err(|e| e.to_string())?;
        if let Some(found) = all.into_iter().find(|c| c.name == name) {
            return Ok(found);
        }
    }
    config::builtin_judge(name).map_err(|e| match dir {
        Some(dir) => format!("no judge `{name}` in {}; {e}", dir.display()),
        None => e.to_string(),
    })
}

/// `judges check NAME`: the library builds the judge, sends one fixed pair and writes the report.
fn check(name: &str, dir: Option<&Path>) -> Result<ExitCode, String> {
    let config = find_judge(name, dir)?;
    let report = judge_audit::judge::check::check(&config)?;
    print!("{}", report.text);
    Ok(ExitCode::from(report.exit_code))
}

/// A run id from the wall clock: only names the output folder, never enters a report.
fn run_id(prefix: &str) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{prefix}-{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
