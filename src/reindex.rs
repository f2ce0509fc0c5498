//! Re-encoding a database with another model (`imgdb reindex`), keeping
//! every image's id, files, tags and times.
//!
//! The new vectors go into a new database beside the old one
//! (`<db>.reindex`), which is swapped in only when complete: a crash before
//! the swap leaves the old database as it was, and one during the swap is
//! finished by the next open (`finish_interrupted_swap`).

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::db::{Db, DbOptions, WriteBatch, WriteOp};
use crate::error::{Error, Result};
use crate::model::Encoder;

/// Marks a `<db>.reindex` folder as complete, ready to be swapped in.
const COMPLETE_MARKER: &str = "reindex-complete";

/// What a re-index did.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ReindexReport {
    /// Images re-encoded.
    pub reindexed: usize,
    /// Images left out: no file could be read and decoded (path, reason).
    pub dropped: Vec<(PathBuf, String)>,
}

fn sibling(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    db.with_file_name(name)
}

/// Completes a swap a crash interrupted: `db` is gone, and a complete
/// re-indexed database waits beside it.
pub(crate) fn finish_interrupted_swap(db: &Path) -> Result<()> {
    let new = sibling(db, ".reindex");
    if db.exists() || !new.join(COMPLETE_MARKER).is_file() {
        return Ok(());
    }
    std::fs::rename(&new, db).map_err(Error::io(db))?;
    std::fs::remove_file(db.join(COMPLETE_MARKER)).map_err(Error::io(db))?;
    let old = sibling(db, ".reindex-old");
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(Error::io(&old))?;
    }
    Ok(())
}

impl Db {
    /// Re-encodes every image of the database at `path` with `encoder` (a
    /// new model) and swaps the result in. `progress` gets (done, total).
    /// The database must not be open.
    pub fn reindex(
        path: &Path,
        encoder: &Encoder,
        progress: impl FnMut(usize, usize),
    ) -> Result<ReindexReport> {
        reindex(path, encoder, progress)
    }
}

fn reindex(
    path: &Path,
    encoder: &Encoder,
    mut progress: impl FnMut(usize, usize),
) -> Result<ReindexReport> {
    let old = Db::open(path)?;
    let new_path = sibling(path, ".reindex");
    if new_path.exists() {
        // A re-index that never completed.
        std::fs::remove_dir_all(&new_path).map_err(Error::io(&new_path))?;
    }
    let new = DbOptions::new()
        .space(encoder.space().clone())
        .create_if_missing(true)
        .open(&new_path)?;
    let total = old.stats()?.images;
    let mut report = ReindexReport::default();
    let records: Vec<_> = old.records().collect::<Result<_>>()?;
    let preprocessor = encoder.preprocessor();
    for chunk in records.chunks(encoder.batch_size()) {
        // The first file of each image that still reads and decodes.
        let prepared: Vec<std::result::Result<Vec<f32>, (PathBuf, String)>> = chunk
            .par_iter()
            .map(|record| {
                let mut last = (record.path().to_path_buf(), String::from("no file"));
                for file in &record.files {
                    match std::fs::read(&file.path)
                        .map_err(Error::io(&file.path))
                        .and_then(|bytes| preprocessor.prepare(&bytes, &file.path))
                    {
                        Ok(prepared) => return Ok(prepared.pixels),
                        Err(e) => last = (file.path.clone(), e.to_string()),
                    }
                }
                Err(last)
            })
            .collect();
        let ok: Vec<&Vec<f32>> = prepared.iter().filter_map(|p| p.as_ref().ok()).collect();
        let pixels: Vec<f32> = ok.iter().flat_map(|p| p.iter().copied()).collect();
        let mut vectors = encoder.embed_pixels(&pixels, ok.len())?.into_iter();
        let mut batch = WriteBatch::new();
        for (record, prepared) in chunk.iter().zip(prepared) {
            match prepared {
                Ok(_) => {
                    let mut record = record.clone();
                    record.vector = vectors.next().expect("one vector per prepared image");
                    batch.push(WriteOp::Restore(record));
                    report.reindexed += 1;
                }
                Err(dropped) => report.dropped.push(dropped),
            }
        }
        new.write(encoder.space(), batch)?;
        progress(report.reindexed + report.dropped.len(), total);
    }
    let failures = old.failures()?;
    new.write(
        encoder.space(),
        failures
            .into_iter()
            .map(|(path, failure)| WriteOp::RecordFailure { path, failure })
            .collect::<Vec<_>>()
            .into(),
    )?;
    new.close()?;
    old.close()?;

    // The swap: complete marker, old aside, new in place, old removed.
    std::fs::write(new_path.join(COMPLETE_MARKER), b"").map_err(Error::io(&new_path))?;
    let aside = sibling(path, ".reindex-old");
    std::fs::rename(path, &aside).map_err(Error::io(path))?;
    finish_interrupted_swap(path)?;
    Ok(report)
}
