//! Re-encoding a database with another model (`imgdb reindex`), keeping
//! every image's id, files, tags and times.
//!
//! This module only re-encodes: the new database is built and swapped in,
//! crash-safely, by [`Db::rebuild`] (`src/db/swap.rs`).

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::cancel::CancelToken;
use crate::db::{Db, WriteBatch, WriteOp};
use crate::error::{FailureReason, Result};
use crate::model::Encoder;
use crate::prepare::ImageFile;
use crate::store::record::ImageRecord;

/// What a re-index did.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ReindexReport {
    /// Images re-encoded.
    pub reindexed: usize,
    /// Images left out: no file could be read and decoded (the last file
    /// tried, and why).
    pub dropped: Vec<(PathBuf, FailureReason)>,
    /// Whether it was cancelled: the old database was kept as it was.
    pub cancelled: bool,
}

impl Db {
    /// Re-encodes every image of the database at `path` with `encoder` (a
    /// new model) and swaps the result in. `progress` gets (done, total).
    /// The database must not be open. Same as [`reindex_cancellable`]
    /// with a token nobody cancels.
    ///
    /// [`reindex_cancellable`]: Db::reindex_cancellable
    pub fn reindex(
        path: &Path,
        encoder: &Encoder,
        progress: impl FnMut(usize, usize) + Send,
    ) -> Result<ReindexReport> {
        Db::reindex_cancellable(path, encoder, &CancelToken::new(), progress)
    }

    /// [`reindex`](Db::reindex), stopping between batches once `cancel` is
    /// cancelled: the partial new database is discarded and the old one
    /// kept (the report says `cancelled`).
    pub fn reindex_cancellable(
        path: &Path,
        encoder: &Encoder,
        cancel: &CancelToken,
        progress: impl FnMut(usize, usize) + Send,
    ) -> Result<ReindexReport> {
        let mut report = ReindexReport::default();
        let swapped = Db::rebuild(path, encoder.space(), |old, new| {
            reencode(old, new, encoder, cancel, progress, &mut report)?;
            Ok(!cancel.is_cancelled())
        })?;
        report.cancelled = !swapped;
        Ok(report)
    }
}

/// Re-encodes `old`'s images into `new`, then copies its failures; stops
/// early when `cancel` is cancelled.
fn reencode(
    old: &Db,
    new: &Db,
    encoder: &Encoder,
    cancel: &CancelToken,
    mut progress: impl FnMut(usize, usize) + Send,
    report: &mut ReindexReport,
) -> Result<()> {
    let total = old.stats()?.images;
    // Streamed a batch at a time: memory does not grow with the database.
    let mut records = old.records();
    loop {
        let chunk: Vec<ImageRecord> = records
            .by_ref()
            .take(encoder.batch_size())
            .collect::<Result<_>>()?;
        if chunk.is_empty() || cancel.is_cancelled() {
            break;
        }
        let prepared: Vec<std::result::Result<Vec<f32>, (PathBuf, FailureReason)>> = chunk
            .par_iter()
            .map(|record| prepare_first_readable(record, encoder))
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
    if cancel.is_cancelled() {
        return Ok(());
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
    Ok(())
}

/// The model input of the first of the record's files that still reads and
/// decodes, or the last file's failure.
fn prepare_first_readable(
    record: &ImageRecord,
    encoder: &Encoder,
) -> std::result::Result<Vec<f32>, (PathBuf, FailureReason)> {
    let mut last = None;
    for file in &record.files {
        match ImageFile::read(&file.path).and_then(|image| image.prepare(encoder.preprocessor())) {
            Ok(prepared) => return Ok(prepared.pixels),
            Err(e) => last = Some((file.path.clone(), FailureReason::of(&e))),
        }
    }
    Err(last.expect("a record has at least one file"))
}
