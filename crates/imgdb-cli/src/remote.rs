//! The commands a running daemon answers for its database: while
//! `imgdb daemon` holds the database, `query`, `stats`, `ingest`, `rm`,
//! `tag` and `failures` send their request to its API
//! (`imgdb_daemon::client`) instead of opening the store, which only one
//! process may hold. Each command in `commands.rs` asks [`daemon`] first,
//! after validating its arguments exactly as the direct path does, and
//! prints the API's JSON with the same printers, so that the output, the
//! `--json` objects and the exit codes are those of the direct command.
//!
//! Not answered here: the other commands open the database, and when the
//! daemon holds it they say so ([`held_by_daemon`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use imgdb::{ErrorKind, Query, QueryTerm, Timestamp};
use imgdb_daemon::address::Address;
use imgdb_daemon::client::{Client, ClientError};
use serde_json::{Map, Value, json};

use crate::CommandError;
use crate::args::{Cli, IngestArgs, QueryArgs};
use crate::commands::{self, Result, db_path};
use crate::output::Out;

/// How often `ingest` asks the daemon whether its queue is empty.
const POLL: Duration = Duration::from_millis(200);

/// The daemon holding the database of `cli`, when one runs and answers.
pub fn daemon(cli: &Cli) -> Option<Client> {
    Client::connect(&db_path(cli))
}

/// The error of a command that could not open the database because a
/// live daemon holds it; `None` when no live daemon's address is there.
pub fn held_by_daemon(cli: &Cli) -> Option<CommandError> {
    let address = Address::read(&db_path(cli)).filter(Address::process_alive)?;
    Some(CommandError::Failed {
        messages: vec![format!(
            "the imgdb daemon (pid {}, {}) holds this database: stop it first, or use its API",
            address.pid, address.url
        )],
        code: crate::code_of(ErrorKind::InUse),
    })
}

impl From<ClientError> for CommandError {
    fn from(error: ClientError) -> CommandError {
        let code = match &error {
            ClientError::Api { kind, .. } => match ErrorKind::from_name(kind) {
                Some(kind) => crate::code_of(kind),
                // The API's own kinds: a request the daemon would not do
                // as asked, except a timeout, which is the connection's.
                None if kind == "timeout" => crate::code_of(ErrorKind::Network),
                None => 2,
            },
            ClientError::NotLoopback { .. } => 2,
            _ => crate::code_of(ErrorKind::Network),
        };
        let mut messages = vec![error.to_string()];
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            messages.push(cause.to_string());
            source = cause.source();
        }
        CommandError::Failed { messages, code }
    }
}

/// `imgdb query` through the daemon: the query the direct path would run,
/// as the API's JSON body, with image files sent as their bytes.
pub fn query(client: &Client, args: &QueryArgs, query: &Query, out: &mut Out) -> Result<()> {
    let results = client.query(&query_body(query)?)?;
    commands::print_hits(&results, args, out)
}

/// The `POST /v1/query` body of `query`. Terms keep their order (the
/// vector is summed in it); `negative` is not used, `--minus` texts are
/// terms of weight −1 as in the direct query.
fn query_body(query: &Query) -> Result<Value> {
    let base64 = base64::engine::general_purpose::STANDARD;
    let mut terms = Vec::new();
    for term in &query.terms {
        terms.push(match term {
            QueryTerm::Text { text, weight } => json!({"text": text, "weight": weight}),
            QueryTerm::Image { path, weight } => {
                // The daemon may not read the client's files: the bytes
                // travel, read as the library reads an image file.
                let bytes = read_image(path)?;
                json!({"image_base64": base64.encode(bytes), "weight": weight})
            }
            QueryTerm::ImageBytes { bytes, weight } => {
                json!({"image_base64": base64.encode(bytes), "weight": weight})
            }
            QueryTerm::Indexed { id, weight } => json!({"image_id": id.0, "weight": weight}),
            _ => {
                return Err(CommandError::Usage(
                    "this query term cannot be sent to the daemon".into(),
                ));
            }
        });
    }
    let f = &query.filter;
    let mut filter = Map::new();
    if let Some(under) = &f.under {
        let text = under.to_str().ok_or_else(|| {
            CommandError::Usage(format!(
                "--under {}: the daemon takes UTF-8 folders only",
                under.display()
            ))
        })?;
        filter.insert("under".into(), json!(text));
    }
    if let Some(tag) = &f.tag {
        filter.insert("tag".into(), json!(tag));
    }
    if !f.formats.is_empty() {
        let names: Vec<&str> = f.formats.iter().map(|f| f.name()).collect();
        filter.insert("formats".into(), json!(names));
    }
    let numbers = [
        ("min_width", f.min_width.map(u64::from)),
        ("min_height", f.min_height.map(u64::from)),
        ("min_bytes", f.min_bytes),
        ("max_bytes", f.max_bytes),
    ];
    for (name, value) in numbers {
        if let Some(value) = value {
            filter.insert(name.into(), json!(value));
        }
    }
    let times = [
        ("modified_after", f.modified_after),
        ("modified_before", f.modified_before),
    ];
    for (name, time) in times {
        if let Some(time) = time {
            filter.insert(name.into(), json!(time.to_rfc3339()));
        }
    }
    let mut body = json!({"terms": terms, "k": query.k, "filter": filter});
    if let Some(min_score) = query.min_score {
        body["min_score"] = json!(min_score);
    }
    if let Some(ef) = query.ef {
        body["ef"] = json!(ef);
    }
    Ok(body)
}

/// The bytes of an `--image` file; a file that cannot be read fails as
/// the direct query does (`I/O error on PATH`, exit 6).
fn read_image(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| CommandError::Failed {
        messages: vec![format!("I/O error on {}", path.display()), e.to_string()],
        code: crate::code_of(ErrorKind::Io),
    })
}

/// `imgdb stats` through the daemon: `GET /v1/stats` is the object of
/// `imgdb stats --json`.
pub fn stats(client: &Client, json: bool, out: &mut Out) -> Result<()> {
    commands::print_stats(&client.stats()?, json, out)
}

/// `imgdb failures` through the daemon.
pub fn failures(client: &Client, kind: Option<ErrorKind>, json: bool, out: &mut Out) -> Result<()> {
    let failures = client.failures(kind.map(ErrorKind::name))?;
    commands::print_failures(&failures, json, out)
}

/// `imgdb tag` through the daemon (the daemon's model embeds the labels).
pub fn tag(
    client: &Client,
    labels: &[String],
    options: &imgdb::TagOptions,
    json: bool,
    out: &mut Out,
) -> Result<()> {
    let tagged = client.tag(labels, &options.template, options.top, options.min_score)?;
    commands::print_tagged(tagged, json, out)
}

/// `imgdb rm` through the daemon: one `POST /v1/remove` per path, so that
/// a path that removes nothing is reported as the direct command does.
pub fn rm(client: &Client, paths: &[PathBuf], out: &mut Out) -> Result<()> {
    let mut removed = 0;
    let mut missing = false;
    for path in paths {
        let found = client.remove(std::slice::from_ref(path))?;
        if found == 0 {
            eprintln!("not indexed: {}", path.display());
            missing = true;
        }
        removed += found;
    }
    commands::print_removed(removed, missing, out)
}

/// The indexer's cumulative counts, from `GET /v1/status`.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    indexed: u64,
    linked: u64,
    removed: u64,
    failed: u64,
}

impl Counts {
    fn of(status: &Value) -> Counts {
        let n = |field: &str| status[field].as_u64().unwrap_or(0);
        Counts {
            indexed: n("indexed"),
            linked: n("linked"),
            removed: n("removed"),
            failed: n("failed"),
        }
    }

    fn since(self, before: Counts) -> Counts {
        Counts {
            indexed: self.indexed.saturating_sub(before.indexed),
            linked: self.linked.saturating_sub(before.linked),
            removed: self.removed.saturating_sub(before.removed),
            failed: self.failed.saturating_sub(before.failed),
        }
    }
}

/// `imgdb ingest` through the daemon: the paths are queued with `POST
/// /v1/ingest` (they must lie under its watched roots), then the command
/// waits until the daemon's queue is empty and reports what the daemon
/// did meanwhile (its counts are the daemon's, so files the watcher queued
/// at the same time are counted too; `schema/cli.md`).
pub fn ingest(client: &Client, cli: &Cli, args: &IngestArgs, out: &mut Out) -> Result<()> {
    let ignored = [
        ("--workers", args.workers.is_some()),
        ("--batch-size", args.batch_size.is_some()),
        ("--hidden", args.hidden),
        ("--follow-links", args.follow_links),
        ("--keep-missing", args.keep_missing),
        ("--fast-decode", args.fast_decode),
    ];
    let ignored: Vec<&str> = ignored
        .iter()
        .filter(|(_, g)| *g)
        .map(|(f, _)| *f)
        .collect();
    if !ignored.is_empty() && !cli.quiet {
        eprintln!(
            "note: the imgdb daemon indexes with its own settings: {} ignored",
            ignored.join(", ")
        );
    }
    let mut paths = Vec::with_capacity(args.paths.len());
    for path in &args.paths {
        let absolute = path.canonicalize().map_err(|e| CommandError::Failed {
            messages: vec![format!("I/O error on {}", path.display()), e.to_string()],
            code: crate::code_of(ErrorKind::Io),
        })?;
        paths.push(absolute);
    }
    let started = Instant::now();
    let since = Timestamp::now();
    let before = client.status()?;
    let queued = match client.ingest(&paths) {
        Err(ClientError::Api { kind, message, .. }) if kind == "forbidden" => {
            return Err(outside_the_roots(client, &before, &message));
        }
        other => other?,
    };
    let status = loop {
        let status = client.status()?;
        if status["queued"].as_u64() == Some(0) && status["indexing"] == json!(false) {
            break status;
        }
        std::thread::sleep(POLL);
    };
    let counts = Counts::of(&status).since(Counts::of(&before));
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        out.json(&json!({
            "event": "done", "daemon": client.url(), "queued": queued,
            "indexed": counts.indexed, "linked": counts.linked, "removed": counts.removed,
            "failed": counts.failed, "seconds": seconds,
        }))?;
    } else if !cli.quiet {
        out.line(format!(
            "queued {queued} paths; the imgdb daemon has indexed them: {} indexed, {} linked, {} removed, {} failed in {seconds:.1}s",
            counts.indexed, counts.linked, counts.removed, counts.failed,
        ))?;
    }
    if counts.failed == 0 {
        return Ok(());
    }
    if !args.json && !cli.quiet {
        for failure in client.failures(None)? {
            let recent = failure["at"]
                .as_str()
                .and_then(Timestamp::parse)
                .is_some_and(|at| at >= since);
            let path = path_of(&failure["path"]);
            if recent
                && path
                    .as_ref()
                    .is_some_and(|p| paths.iter().any(|r| p.starts_with(r)))
            {
                let path = path.expect("checked");
                eprintln!(
                    "failed: {}: {} ({})",
                    path.display(),
                    failure["message"].as_str().unwrap_or(""),
                    failure["kind"].as_str().unwrap_or("")
                );
            }
        }
    }
    Err(CommandError::Partial)
}

/// The 403 of a path outside the watched roots, naming them.
fn outside_the_roots(client: &Client, status: &Value, message: &str) -> CommandError {
    let roots: Vec<String> = status["roots"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|root| path_of(&root["path"]))
        .map(|path| path.display().to_string())
        .collect();
    CommandError::Failed {
        messages: vec![
            format!(
                "the imgdb daemon (pid {}, {}) holds this database and only indexes under its watched roots: {}",
                client.pid(),
                client.url(),
                if roots.is_empty() {
                    "none".to_string()
                } else {
                    roots.join(", ")
                }
            ),
            message.to_string(),
        ],
        code: crate::code_of(ErrorKind::InvalidInput),
    }
}

/// A path of the API's JSON: a string, or `{"bytes": BASE64}` with the
/// OS's bytes (`imgdb_daemon::json::path_json`).
pub fn path_of(value: &Value) -> Option<PathBuf> {
    match value {
        Value::String(text) => Some(PathBuf::from(text)),
        Value::Object(object) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(object.get("bytes")?.as_str()?)
                .ok()?;
            Some(path_from_bytes(bytes))
        }
        _ => None,
    }
}

#[cfg(unix)]
fn path_from_bytes(bytes: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(OsString::from_vec(bytes))
}

#[cfg(not(unix))]
fn path_from_bytes(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(OsString::from(String::from_utf8_lossy(&bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_come_back_as_the_bytes_they_left_as() {
        use std::os::unix::ffi::OsStrExt;
        let path = Path::new(std::ffi::OsStr::from_bytes(b"/photos/caf\xe9.jpg"));
        let json = imgdb_daemon::json::path_json(path);
        assert!(json.is_object());
        assert_eq!(path_of(&json).as_deref(), Some(path));
        assert_eq!(path_of(&json!("/a/b.png")), Some(PathBuf::from("/a/b.png")));
        assert_eq!(path_of(&json!(3)), None);
    }

    #[test]
    fn api_kinds_keep_the_exit_codes_of_library_kinds() {
        let code = |kind: &str| {
            let error = ClientError::Api {
                status: 500,
                kind: kind.into(),
                message: "m".into(),
            };
            match CommandError::from(error) {
                CommandError::Failed { code, .. } => code,
                _ => unreachable!(),
            }
        };
        assert_eq!(code("in_use"), 3);
        assert_eq!(code("corrupt"), 4);
        assert_eq!(code("model"), 5);
        assert_eq!(code("io"), 6);
        assert_eq!(code("not_found"), 2);
        assert_eq!(code("forbidden"), 2);
        assert_eq!(code("timeout"), 6);
    }
}
