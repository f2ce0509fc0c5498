//! Printing: JSON Lines objects (fields in schema/cli.md) and readable
//! lines, all through one writer so that a closed pipe ends the command
//! quietly; and the ingest progress bar.

use std::io::{BufWriter, IsTerminal, Stdout, Write};
use std::path::Path;
use std::time::Instant;

use imgdb::ingest::{FileOutcome, IngestEvent, IngestObserver};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

/// Standard output.
pub struct Out {
    writer: BufWriter<Stdout>,
}

impl Out {
    pub fn new() -> Out {
        Out {
            writer: BufWriter::new(std::io::stdout()),
        }
    }

    /// One line of text.
    pub fn line(&mut self, text: impl std::fmt::Display) -> std::io::Result<()> {
        writeln!(self.writer, "{text}")
    }

    /// `prefix`, the path's bytes as the OS gives them (not necessarily
    /// UTF-8, as ripgrep prints them, so that `xargs` gets the real file),
    /// `suffix` and a newline.
    pub fn path_line(&mut self, prefix: &str, path: &Path, suffix: &str) -> std::io::Result<()> {
        self.writer.write_all(prefix.as_bytes())?;
        self.writer.write_all(path.as_os_str().as_encoded_bytes())?;
        self.writer.write_all(suffix.as_bytes())?;
        self.writer.write_all(b"\n")
    }

    /// One JSON object on one line.
    pub fn json(&mut self, value: &Value) -> std::io::Result<()> {
        writeln!(self.writer, "{value}")
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

pub use imgdb_daemon::json::{hit_json, path_json, stats_json, timestamp_text};

/// Progress of an ingest: a bar on a terminal, JSON events with `--json`,
/// nothing otherwise.
pub enum Progress {
    Bar {
        bar: ProgressBar,
        started: Instant,
        encoded: u64,
    },
    Json(Out),
    Silent,
}

impl Progress {
    pub fn new(json: bool, quiet: bool) -> Progress {
        if json {
            Progress::Json(Out::new())
        } else if !quiet && std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} files  {msg}  ETA {eta}")
                    .expect("a valid template"),
            );
            Progress::Bar {
                bar,
                started: Instant::now(),
                encoded: 0,
            }
        } else {
            Progress::Silent
        }
    }

    pub fn finish(&mut self) -> std::io::Result<()> {
        match self {
            Progress::Bar { bar, .. } => {
                bar.finish_and_clear();
                Ok(())
            }
            Progress::Json(out) => out.flush(),
            Progress::Silent => Ok(()),
        }
    }
}

fn outcome_json(outcome: &FileOutcome) -> Value {
    match outcome {
        FileOutcome::Unchanged => json!({"outcome": "unchanged"}),
        FileOutcome::StillFailing => json!({"outcome": "still_failing"}),
        FileOutcome::Indexed(id) => json!({"outcome": "indexed", "id": id.0}),
        FileOutcome::Linked(id) => json!({"outcome": "linked", "id": id.0}),
        FileOutcome::Failed(reason) => json!({
            "outcome": "failed", "kind": reason.kind.name(), "message": reason.message,
        }),
        FileOutcome::Removed => json!({"outcome": "removed"}),
        _ => json!({"outcome": "other"}),
    }
}

impl IngestObserver for Progress {
    fn event(&mut self, event: &IngestEvent) {
        match (self, event) {
            (Progress::Bar { bar, .. }, IngestEvent::Found { files, .. }) => bar.set_length(*files),
            (
                Progress::Bar {
                    bar,
                    started,
                    encoded,
                },
                IngestEvent::File { outcome, .. },
            ) => {
                if !matches!(outcome, FileOutcome::Removed) {
                    bar.inc(1);
                }
                if matches!(outcome, FileOutcome::Indexed(_)) {
                    *encoded += 1;
                    let rate = *encoded as f64 / started.elapsed().as_secs_f64().max(1e-3);
                    bar.set_message(format!("{rate:.1} images/s"));
                }
            }
            // Flushed per event: a script reads progress as it happens.
            (Progress::Json(out), IngestEvent::Found { files, done }) => {
                let _ = out.json(&json!({"event": "found", "files": files, "done": done}));
                let _ = out.flush();
            }
            (Progress::Json(out), IngestEvent::File { path, outcome }) => {
                let mut value = json!({"event": "file", "path": path_json(path)});
                for (k, v) in outcome_json(outcome).as_object().expect("an object") {
                    value[k] = v.clone();
                }
                let _ = out.json(&value);
                let _ = out.flush();
            }
            _ => {}
        }
    }
}
