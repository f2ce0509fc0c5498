//! File events: bringing the database up to date with what a watcher saw,
//! without walking the roots.
//!
//! An event only names paths to look at again; the disk as it is now
//! decides what happens to them, so events that arrive late, twice or out
//! of order do no harm, and applying the same events again changes nothing:
//!
//! - a path that exists goes through the ingest pipeline (a folder is
//!   walked): new and changed files are encoded, unchanged ones skipped,
//!   known content linked;
//! - a path that is gone is unlinked with everything indexed under it, and
//!   the failures recorded there are forgotten;
//! - the new path of a rename whose size and mtime match the old path's
//!   image joins that image unread (same id, same vector); anything else at
//!   the new path is read and indexed as a new file would be.
//!
//! Removals run after the pipeline, so that a renamed file's image gains
//! its new path before it loses its old one (an image without paths is
//! deleted, and would lose its id).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::pipeline;
use super::{IngestObserver, IngestOptions, IngestReport};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::model::Encoder;

pub use crate::store::record::FileEvent;

/// Applies `events`: see the module documentation. `options` apply as to
/// an ingest; `remove_missing` concerns the folders walked (what is gone
/// under a folder named by an event is removed), while paths found gone
/// are always removed. Cancelled, nothing is removed: apply the same
/// events again to finish.
pub(super) fn apply(
    db: &Db,
    encoder: &Encoder,
    events: &[FileEvent],
    options: &IngestOptions,
    observer: &mut dyn IngestObserver,
) -> Result<IngestReport> {
    db.check_space(encoder.space())?;
    let started = Instant::now();
    // Paths that exist, each with where it was before a rename; sorted and
    // once each, so that the walk order does not depend on event order.
    let mut present: BTreeMap<PathBuf, Option<PathBuf>> = BTreeMap::new();
    let mut gone: Vec<PathBuf> = Vec::new();
    let mut look_at = |path: &Path, moved_from: Option<&Path>| -> Result<()> {
        match locate(path)? {
            Located::Present(path) => {
                if options.include_hidden || !hidden_name(&path) {
                    let entry = present.entry(path).or_default();
                    if let Some(from) = moved_from {
                        *entry = Some(from.to_path_buf());
                    }
                }
            }
            Located::Gone(path) => gone.push(path),
        }
        Ok(())
    };
    for event in events {
        match event {
            FileEvent::Created(path) | FileEvent::Changed(path) | FileEvent::Deleted(path) => {
                look_at(path, None)?
            }
            FileEvent::Renamed { from, to } => {
                let from = match locate(from)? {
                    Located::Present(path) | Located::Gone(path) => path,
                };
                look_at(&from, None)?;
                look_at(to, Some(&from))?;
            }
        }
    }

    let mut report = IngestReport::default();
    let seen = pipeline::run(
        db,
        encoder,
        options,
        |feed| {
            for (path, moved_from) in &present {
                if !feed.walk(path, moved_from.as_deref()) {
                    return;
                }
            }
        },
        &mut report,
        observer,
    )?;
    report.cancelled = options.cancel.is_cancelled();
    if !report.cancelled {
        let mut roots = gone;
        if options.remove_missing {
            roots.extend(present.into_keys().filter(|path| path.is_dir()));
        }
        pipeline::remove_missing(db, encoder, &roots, &seen, &mut report, observer)?;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Where an event's path is, in the canonical form the database stores.
enum Located {
    Present(PathBuf),
    /// Gone: the part of the path that still exists is resolved, the rest
    /// appended, which is how it was stored when it existed.
    Gone(PathBuf),
}

fn locate(path: &Path) -> Result<Located> {
    match super::canonical(path) {
        Ok(path) => return Ok(Located::Present(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(path)(e)),
    }
    let absolute = std::path::absolute(path).map_err(Error::io(path))?;
    let mut base = absolute.as_path();
    let mut missing = Vec::new();
    loop {
        if let Ok(mut resolved) = base.canonicalize() {
            resolved.extend(missing.iter().rev());
            return Ok(Located::Gone(resolved));
        }
        match (base.parent(), base.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name);
                base = parent;
            }
            // Nothing of it exists (or it ends in `..`): as given.
            _ => return Ok(Located::Gone(absolute)),
        }
    }
}

/// Whether the last component starts with a dot. Without the roots an
/// event cannot tell a hidden folder above the file; the walk of a folder
/// skips hidden entries below it, as an ingest does.
fn hidden_name(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with('.'))
}
