//! Re-encoding a database with another model (`imgdb reindex`), keeping
//! every image's id, files, tags and times.
//!
//! This module only re-encodes: the new database is built and swapped in
//! under the open handle, crash-safely, by `Db::rebuild` (`src/db/swap.rs`).

use std::path::PathBuf;

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
    /// Re-encodes every image with `encoder` (a new model) into a new
    /// database and swaps it in under this handle and all its clones, keeping
    /// ids, files, tags and times. Queries go on meanwhile, answered by the
    /// old database until the swap; writes fail with [`Error::InUse`] until
    /// it is done. `progress` gets (done, total). Stops between batches once
    /// `cancel` is cancelled: the partial new database is discarded and the
    /// old one kept, taking writes again (the report says `cancelled`).
    ///
    /// The swap waits for calls under way on the old database, and new calls
    /// wait for the swap (the old database is closed first, then the new one
    /// opened under the path); a crash during it is finished by the next
    /// open. A call still holding the old database after 30 s (a
    /// [`records`](Db::records) iterator kept through the reindex) makes
    /// the reindex fail with [`Error::InUse`], the old database kept. See
    /// `src/db/swap.rs`.
    pub fn reindex(
        &self,
        encoder: &Encoder,
        cancel: &CancelToken,
        progress: impl FnMut(usize, usize) + Send,
    ) -> Result<ReindexReport> {
        let mut report = ReindexReport::default();
        let swapped = self.rebuild(encoder.space(), |old, new| {
            reencode(old, new, encoder, cancel, progress, &mut report)?;
            Ok(!cancel.is_cancelled())
        })?;
        report.cancelled = !swapped;
        Ok(report)
    }
}

/// Re-encodes `old`'s images into `new`, then copies its failures and the
/// sources of the images it kept; stops early when `cancel` is cancelled.
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
    // Ids are kept: a source goes with its image (those dropped are skipped).
    let mut sources = Vec::new();
    for (id, source) in old.sources()? {
        if let Some(record) = new.get(id)? {
            let path = record.path().to_path_buf();
            sources.push(WriteOp::SetSource { path, source });
        }
    }
    for chunk in sources.chunks(1000) {
        new.write(encoder.space(), chunk.to_vec().into())?;
    }
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
        let preprocessor = encoder.preprocessor();
        match ImageFile::read(&file.path, preprocessor)
            .and_then(|image| image.prepare(preprocessor))
        {
            Ok(prepared) => return Ok(prepared.pixels),
            Err(e) => last = Some((file.path.clone(), FailureReason::of(&e))),
        }
    }
    Err(last.expect("a record has at least one file"))
}
