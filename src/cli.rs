//! Argument types for every subcommand and their thin handlers.

use clap::{Parser, Subcommand};
use judge_audit::audit::{self, AuditConfig, Prepared};
use judge_audit::judge::config;
use judge_audit::perturb::Catalog;
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
    Run(RunArgs),
    /// Audit the simulated reference jury on the built-in pairs (finishes in seconds).
    Demo(DemoArgs),
    /// Print the size of the plan by judge and condition, then stop.
    Plan(PlanArgs),
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
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The audit configuration.
    #[arg(long)]
    config: PathBuf,
    /// Output directory (default: the config's `out`, else reports/<run-id>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the plan and stop without calling any judge.
    #[arg(long)]
    dry_run: bool,
    /// Override the per-judge concurrency bound.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Override the seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Skip invalid dataset records (they are counted in the report).
    #[arg(long)]
    skip_invalid: bool,
    /// No progress lines on stderr.
    #[arg(long, short)]
    quiet: bool,
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
}

#[derive(Debug, Subcommand)]
enum JudgesCommand {
    /// List built-in judges (and judge files in a folder).
    List {
        /// A folder of judge files to list as well.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Run the parsed command; `Err` is a message for stderr with exit code 2.
pub fn dispatch(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Run(args) => run(args),
        Command::Demo(args) => demo(args),
        Command::Plan(args) => {
            let (config, base) = match &args.config {
                Some(path) => AuditConfig::from_file(path).map_err(|e| e.to_string())?,
                None => (audit::demo_config(42), PathBuf::from(".")),
            };
            let prepared = audit::prepare(&config, &base).map_err(|e| e.to_string())?;
            print_plan(&prepared);
            if let Some(power) = args.power {
                print_power(&prepared, &args, power)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Artifacts { command } => artifacts(command),
        Command::Judges { command } => judges(command),
    }
}

fn run(args: RunArgs) -> Result<ExitCode, String> {
    let (mut config, base) = AuditConfig::from_file(&args.config).map_err(|e| e.to_string())?;
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    if let Some(concurrency) = args.concurrency {
        config.run.concurrency = concurrency;
    }
    if args.skip_invalid {
        config.dataset.skip_invalid = true;
    }
    let out = args
        .out
        .or_else(|| config.out.as_ref().map(|o| base.join(o)))
        .unwrap_or_else(|| PathBuf::from("reports").join(run_id("run")));
    let prepared = audit::prepare(&config, &base).map_err(|e| e.to_string())?;
    if args.dry_run {
        print_plan(&prepared);
        return Ok(ExitCode::SUCCESS);
    }
    execute(&prepared, &out, args.quiet)
}

fn demo(args: DemoArgs) -> Result<ExitCode, String> {
    let config = audit::demo_config(args.seed);
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from("reports").join(run_id("demo")));
    let prepared = audit::prepare(&config, Path::new(".")).map_err(|e| e.to_string())?;
    execute(&prepared, &out, args.quiet)
}

fn execute(prepared: &Prepared, out: &Path, quiet: bool) -> Result<ExitCode, String> {
    if !quiet {
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
    let outcome = runtime
        .block_on(audit::execute(prepared, out, quiet))
        .map_err(|e| e.to_string())?;
    let summary = audit::summarize(prepared, &outcome);
    audit::write_reports(&summary, out).map_err(|e| e.to_string())?;
    for judge in &summary.judges {
        let label = if judge.simulated { " [simulated]" } else { "" };
        println!("{}{label}: {}", judge.name, judge.trust.verdict.label());
        for reason in &judge.trust.reasons {
            println!("  because {reason}");
        }
        for line in judge.findings.iter().take(3) {
            println!("  - {line}");
        }
    }
    println!("report: {}", out.join("report.md").display());
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
    for (judge, conditions) in &counts {
        let total: usize = conditions.values().sum();
        println!("{judge}: {total} calls");
        for (condition, n) in conditions {
            println!("  {condition:<32} {n:>8}");
        }
    }
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
    let family = (prepared.judges.len() * prepared.artifacts.len() * 3) as u64;
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
            for a in catalog.artifacts() {
                println!("{:<14} {}", a.id, a.title);
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
            if !a.is_position() {
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
                println!("{:<28} {:?} {}{sim}", j.name, j.backend, j.model);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
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
