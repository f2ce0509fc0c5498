//! The `imgdb` command line: parses arguments, routes each command to one
//! function in `commands.rs`, and maps the outcome to an exit code. The
//! library does all the work, and also decides where the database and the
//! model are (`imgdb::resolve`).
//!
//! Exit codes (schema/cli.md): 0 success, 1 partial success, 2 usage error
//! or a request that cannot be done as asked, 3 database in use, 4 damaged
//! or unsupported data, 5 model or runtime unusable, 6 I/O or network. A
//! closed output pipe is success.
//!
//! While `imgdb daemon` holds the database, the commands it can answer go
//! through its API (`remote.rs`); the others, which must open the
//! database, say that the daemon holds it.

mod args;
mod commands;
mod output;
mod remote;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use imgdb::ErrorKind;

use args::{Cli, Command};
use output::Out;

/// Why a command did not fully succeed.
pub enum CommandError {
    /// Some inputs failed; the rest was done (exit 1).
    Partial,
    /// Ctrl-C stopped the command before the end; what was done is kept
    /// (exit 130, as shells report an interrupt).
    Cancelled,
    /// Wrong usage (exit 2).
    Usage(String),
    /// The library failed (exit code by its kind).
    Imgdb(imgdb::Error),
    /// The daemon could not start or run (exit 2 for its settings, 6 for
    /// the network and files around it).
    Daemon(imgdb_daemon::DaemonError),
    /// Writing the output failed (exit 6; a closed pipe is success).
    Output(std::io::Error),
    /// A failure described already: its message, then its causes, and
    /// its exit code (errors the daemon's API answered, say).
    Failed {
        /// The message, then each cause.
        messages: Vec<String>,
        /// The exit code.
        code: u8,
    },
}

impl From<imgdb::Error> for CommandError {
    fn from(e: imgdb::Error) -> CommandError {
        CommandError::Imgdb(e)
    }
}

impl From<std::io::Error> for CommandError {
    fn from(e: std::io::Error) -> CommandError {
        CommandError::Output(e)
    }
}

fn main() -> ExitCode {
    quiet_contained_panics();
    let cli = Cli::parse();
    init_logging(&cli);
    let mut out = Out::new();
    let result = run(&cli, &mut out);
    let flushed = out.flush().map_err(CommandError::from);
    match result.and(flushed) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => ExitCode::from(exit_code(failure)),
    }
}

/// A decoder that panics on a file fails only that file, and the failure
/// is reported with the file's other errors: the default hook's
/// "thread panicked at …" for it would only alarm. Other panics still print.
fn quiet_contained_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !imgdb::decoding_contained() {
            default(info);
        }
    }));
}

/// Runs the command; a database it could not open because a running
/// daemon holds it is reported as such.
fn run(cli: &Cli, out: &mut Out) -> commands::Result<()> {
    match route(cli, out) {
        Err(CommandError::Imgdb(e)) if e.kind() == ErrorKind::InUse => {
            Err(remote::held_by_daemon(cli).unwrap_or(CommandError::Imgdb(e)))
        }
        other => other,
    }
}

/// One function per command.
fn route(cli: &Cli, out: &mut Out) -> commands::Result<()> {
    match &cli.command {
        Command::Ingest(args) => commands::ingest(cli, args, out),
        Command::Query(args) => commands::query(cli, args, out),
        Command::Failures(args) => commands::failures(cli, args, out),
        Command::Tag(args) => commands::tag(cli, args, out),
        Command::Classify(args) => commands::classify(cli, args, out),
        Command::Dupes(args) => commands::dupes(cli, args, out),
        Command::Stats(args) => commands::stats(cli, args.json, out),
        Command::Check(args) => commands::check(cli, args.json, out),
        Command::Rm(args) => commands::rm(cli, &args.paths, out),
        Command::Reindex => commands::reindex(cli, out),
        Command::Export(args) => commands::export(cli, args, out),
        Command::Import(args) => commands::import(cli, args, out),
        Command::Eval(args) => commands::eval(cli, args, out),
        Command::Daemon(args) => commands::daemon(cli, args),
        Command::Model(args::ModelCommand::Pull { name, variant }) => {
            commands::model_pull(cli, name.as_deref(), variant.as_deref(), out)
        }
        Command::Debug(command) => commands::debug(cli, command, out),
    }
}

fn init_logging(cli: &Cli) {
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
}

/// Prints what failed (with its causes, one per line) and picks the code.
fn exit_code(failure: CommandError) -> u8 {
    match failure {
        CommandError::Partial => 1,
        CommandError::Cancelled => 130,
        CommandError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        CommandError::Output(e) => {
            eprintln!("error: cannot write the output: {e}");
            6
        }
        CommandError::Usage(message) => {
            eprintln!("error: {message}");
            2
        }
        CommandError::Daemon(e) => {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message.push_str(&format!("\n  caused by: {cause}"));
                source = cause.source();
            }
            eprintln!("error: {message}");
            use imgdb_daemon::DaemonError as D;
            match e {
                D::Serve { .. } | D::AddressFile { .. } | D::Root { .. } => 6,
                _ => 2,
            }
        }
        CommandError::Imgdb(e) => {
            report(&e.messages());
            code_of(e.kind())
        }
        CommandError::Failed { messages, code } => {
            report(&messages);
            code
        }
    }
}

/// The exit code of an error kind (the table in schema/cli.md).
pub fn code_of(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::InUse => 3,
        ErrorKind::Corrupt | ErrorKind::Unsupported => 4,
        ErrorKind::Model => 5,
        ErrorKind::Io | ErrorKind::Network => 6,
        _ => 2,
    }
}

/// The error, then each cause on its own line.
fn report(messages: &[String]) {
    let Some((first, causes)) = messages.split_first() else {
        eprintln!("error: failed");
        return;
    };
    eprintln!("error: {first}");
    for cause in causes {
        eprintln!("  caused by: {cause}");
    }
}
