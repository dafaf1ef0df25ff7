//! judge-audit command line: parses arguments, calls the library, maps errors to exit codes.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("judge-audit: error: {message}");
            ExitCode::from(2)
        }
    }
}
