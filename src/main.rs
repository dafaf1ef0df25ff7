//! judge-audit command line: parses arguments, calls the library, maps errors to exit codes.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    init_tracing();
    let args = cli::Cli::parse();
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("judge-audit: error: {message}");
            ExitCode::from(2)
        }
    }
}

/// Send `tracing` events to stderr, so the library's `warn!` (skipped records, template limits,
/// retries given up) reaches the user. The level is `warn` unless `RUST_LOG` says otherwise
/// (e.g. `RUST_LOG=judge_audit=debug`); llama.cpp's own log lines only from errors up.
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,llama_cpp_2=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}
