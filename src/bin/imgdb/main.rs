//! The `imgdb` command line: argument parsing, printing and exit codes over
//! the library, which does all the work.
//!
//! Exit codes: 0 success, 1 partial success (some files failed, or `check`
//! found problems), 2 usage or fatal error. A closed output pipe is success.

mod args;
mod commands;
mod output;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use args::Cli;

/// Why a command did not fully succeed.
pub enum Failure {
    /// Some inputs failed; the rest was done (exit 1).
    Partial,
    /// Wrong usage (exit 2).
    Usage(String),
    /// The library failed (exit 2).
    Imgdb(imgdb::Error),
    /// Writing the output failed (exit 2; a closed pipe is success).
    Output(std::io::Error),
}

impl From<imgdb::Error> for Failure {
    fn from(e: imgdb::Error) -> Failure {
        Failure::Imgdb(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::Output(e)
    }
}

/// Prints an error with its causes, one per line.
fn report(error: &dyn std::error::Error) {
    eprintln!("error: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        eprintln!("  caused by: {cause}");
        source = cause.source();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("IMGDB_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("imgdb={level},ort=error,{level}"))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .init();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Partial) => ExitCode::from(1),
        Err(Failure::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(Failure::Output(e)) => {
            report(&e);
            ExitCode::from(2)
        }
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Imgdb(e)) => {
            report(&e);
            ExitCode::from(2)
        }
    }
}
