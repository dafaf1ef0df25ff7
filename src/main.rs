//! judge-audit command line: parses arguments, calls the library, maps errors to exit codes.

mod cli;

use clap::Parser;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    handle_stdout_errors();
    let args = cli::Cli::parse();
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("judge-audit: error: {message}");
            // An interrupted run exits as a shell reports a signal: 128 + its number (130, 143).
            match judge_audit::run::interrupted_by() {
                Some(signal) => ExitCode::from(128u8.saturating_add(signal as u8)),
                None => ExitCode::from(2),
            }
        }
    }
}

/// `println!` panics when stdout is a closed pipe (`judge-audit run … | head -1`) or a full
/// device (`judges list > /dev/full`). As ripgrep does, a closed pipe ends the program quietly
/// with success (the reader stopped reading; every report file is already written), and any
/// other stdout error is one line on stderr and exit code 2, never a panic.
fn handle_stdout_errors() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if let Some(error) = message.strip_prefix("failed printing to stdout: ") {
            if error.contains(&format!("(os error {})", libc::EPIPE)) {
                std::process::exit(0);
            }
            let _ = writeln!(std::io::stderr(), "judge-audit: error: stdout: {error}");
            std::process::exit(2);
        }
        default(info);
    }));
}
