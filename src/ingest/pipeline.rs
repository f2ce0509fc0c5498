//! The ingest pipeline's threads and the messages between them.
//!
//! [`run`] owns every stage but the first: what feeds it jobs is the
//! caller's [`Feed`] closure, the walk of the roots for an ingest
//! ([`ingest`]) or the paths of file events (`super::events`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};

use super::{FileOutcome, IngestEvent, IngestObserver, IngestOptions, IngestReport, is_hidden};
use crate::cancel::CancelToken;
use crate::db::{Db, NewImage, WriteBatch, WriteOp};
use crate::error::{Error, FailureReason, Result};
use crate::model::{Encoder, Prepared, Preprocessor, has_image_extension};
use crate::prepare::ImageFile;
use crate::store::Failure;
use crate::store::record::ImageRecord;
use crate::types::{ContentHash, ImageId, Timestamp};

/// An image file to settle.
struct Job {
    path: PathBuf,
    size: u64,
    mtime: Timestamp,
    /// Where the file was before a rename: if that path's image has this
    /// size and mtime, the file shows it and is linked without being read.
    moved_from: Option<PathBuf>,
}

/// A file decoded and preprocessed, on its way to the encoder.
struct EncoderInput {
    job: Job,
    hash: ContentHash,
    prepared: Prepared,
    clear_failure: bool,
}

/// What reaches the writer.
enum ToWriter {
    Found {
        files: u64,
        done: bool,
    },
    Skipped {
        path: PathBuf,
        outcome: FileOutcome,
    },
    /// Content already indexed: the path joins that image (`unchanged`: it
    /// was this path's own image, only its mtime is updated).
    Link {
        job: Job,
        id: ImageId,
        unchanged: bool,
        clear_failure: bool,
    },
    Encoded {
        image: NewImage,
        clear_failure: bool,
    },
    Failed {
        job: Job,
        reason: FailureReason,
    },
    Fatal(Error),
}

/// Asks every stage to stop: the caller's token, or a fatal error in a
/// stage (then the writer has returned and nothing more is written).
struct Stop {
    cancel: CancelToken,
    fatal: CancelToken,
}

impl Stop {
    fn is_set(&self) -> bool {
        self.cancel.is_cancelled() || self.fatal.is_cancelled()
    }
}

/// Ingests `roots` (folders or files) into `db` with `encoder`.
pub(super) fn ingest(
    db: &Db,
    encoder: &Encoder,
    roots: &[PathBuf],
    options: &IngestOptions,
    observer: &mut dyn IngestObserver,
) -> Result<IngestReport> {
    db.check_space(encoder.space())?;
    let started = Instant::now();
    let roots: Vec<PathBuf> = roots
        .iter()
        .map(|root| super::canonical(root).map_err(Error::io(root)))
        .collect::<Result<_>>()?;
    let mut report = IngestReport::default();
    let seen = run(
        db,
        encoder,
        options,
        |feed| {
            for root in &roots {
                if !feed.walk(root, None) {
                    return;
                }
            }
        },
        &mut report,
        observer,
    )?;
    report.cancelled = options.cancel.is_cancelled();
    if options.remove_missing && !report.cancelled {
        remove_missing(db, encoder, &roots, &seen, &mut report, observer)?;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Runs the workers, the encoder and the writer (on this thread) over the
/// jobs `feed` sends from its own thread; returns every image file fed.
/// Adds to `report` what it settles (`elapsed` and `cancelled` are the
/// caller's).
pub(super) fn run(
    db: &Db,
    encoder: &Encoder,
    options: &IngestOptions,
    feed: impl FnOnce(&mut Feed) + Send,
    report: &mut IngestReport,
    observer: &mut dyn IngestObserver,
) -> Result<HashSet<PathBuf>> {
    let stop = Stop {
        cancel: options.cancel.clone(),
        fatal: CancelToken::new(),
    };
    let preprocessor = encoder
        .preprocessor()
        .clone()
        .with_dct_scaling(options.dct_scaling);
    let batch_size = options
        .batch_size
        .unwrap_or_else(|| encoder.batch_size())
        .max(1);

    let (jobs_tx, jobs_rx) = bounded::<Job>(1024);
    let (inputs_tx, inputs_rx) = bounded::<EncoderInput>(2 * batch_size);
    let (writer_tx, writer_rx) = bounded::<ToWriter>(1024);

    std::thread::scope(|scope| -> Result<HashSet<PathBuf>> {
        let feeder = {
            let mut feeder = Feed {
                options,
                jobs: jobs_tx,
                writer: writer_tx.clone(),
                stop: &stop,
                seen: HashSet::new(),
            };
            scope.spawn(move || {
                feed(&mut feeder);
                feeder.finish()
            })
        };
        for _ in 0..options.workers.max(1) {
            let (jobs_rx, inputs_tx, writer_tx) =
                (jobs_rx.clone(), inputs_tx.clone(), writer_tx.clone());
            let (preprocessor, stop) = (&preprocessor, &stop);
            scope.spawn(move || work(db, preprocessor, &jobs_rx, &inputs_tx, &writer_tx, stop));
        }
        drop((jobs_rx, inputs_tx));
        let encode_time = {
            let writer_tx = writer_tx.clone();
            scope.spawn(move || encode(encoder, &inputs_rx, &writer_tx, batch_size))
        };
        drop(writer_tx);

        let result = write(
            db,
            encoder,
            &writer_rx,
            options.write_batch.max(1),
            &stop.cancel,
            report,
            observer,
        );
        if result.is_err() {
            stop.fatal.cancel();
        }
        // What is still queued after a cancel or an error is not written
        // (nor reported): the next run does it. Drained so that no stage
        // stays blocked on a full queue.
        for _ in writer_rx.iter() {}
        report.encode_time += encode_time
            .join()
            .expect("the encoder thread does not panic");
        let seen = feeder.join().expect("the feeder thread does not panic");
        result.map(|()| seen)
    })
}

/// The first stage: sends image files to the workers, once each, and tells
/// the writer how many were found.
pub(super) struct Feed<'a> {
    options: &'a IngestOptions,
    jobs: Sender<Job>,
    writer: Sender<ToWriter>,
    stop: &'a Stop,
    seen: HashSet<PathBuf>,
}

impl Feed<'_> {
    /// Sends the image files of `root`, a folder (walked) or a file.
    /// `moved_from`: where `root` was before a rename. Returns `false` once
    /// the pipeline stops (cancelled, or a fatal error): feed no more.
    pub(super) fn walk(&mut self, root: &Path, moved_from: Option<&Path>) -> bool {
        let options = self.options;
        let walker = walkdir::WalkDir::new(root)
            .follow_links(options.follow_links)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| options.include_hidden || !is_hidden(e));
        for entry in walker {
            if self.stop.is_set() {
                return false;
            }
            let Ok(entry) = entry else { continue };
            if !entry.file_type().is_file() || !has_image_extension(entry.path()) {
                continue;
            }
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            let path = entry.into_path();
            if !self.seen.insert(path.clone()) {
                continue;
            }
            let moved_from = moved_from.map(|from| match path.strip_prefix(root) {
                // `root` is the file itself: joining "" would add a slash.
                Ok(rest) if !rest.as_os_str().is_empty() => from.join(rest),
                _ => from.to_path_buf(),
            });
            let job = Job {
                path,
                size: metadata.len(),
                mtime: metadata.modified().map(Timestamp::from).unwrap_or_default(),
                moved_from,
            };
            if self.jobs.send(job).is_err() {
                return false;
            }
            if self.seen.len().is_multiple_of(256) {
                let _ = self.writer.send(ToWriter::Found {
                    files: self.seen.len() as u64,
                    done: false,
                });
            }
        }
        true
    }

    /// Says the feeding is over; returns every image file sent.
    fn finish(self) -> HashSet<PathBuf> {
        let _ = self.writer.send(ToWriter::Found {
            files: self.seen.len() as u64,
            done: true,
        });
        self.seen
    }
}

/// Sorts each file into skipped, linked, failed or decoded.
fn work(
    db: &Db,
    preprocessor: &Preprocessor,
    jobs: &Receiver<Job>,
    inputs: &Sender<EncoderInput>,
    writer: &Sender<ToWriter>,
    stop: &Stop,
) {
    for job in jobs.iter() {
        if stop.is_set() {
            continue;
        }
        let message = match classify(db, preprocessor, job) {
            Ok(Classified::Writer(message)) => message,
            Ok(Classified::Encode(input)) => {
                if inputs.send(input).is_err() {
                    return;
                }
                continue;
            }
            Err(e) => ToWriter::Fatal(e),
        };
        if writer.send(message).is_err() {
            return;
        }
    }
}

enum Classified {
    Writer(ToWriter),
    Encode(EncoderInput),
}

/// Whether `record` was indexed from `path` as it is now (size and mtime).
fn indexed_as(record: &ImageRecord, path: &Path, size: u64, mtime: Timestamp) -> bool {
    record.byte_size == size
        && record
            .files
            .iter()
            .any(|f| f.path == path && f.mtime == mtime)
}

fn classify(db: &Db, preprocessor: &Preprocessor, job: Job) -> Result<Classified> {
    let existing = db.get_by_path(&job.path)?;
    if let Some(record) = &existing
        && indexed_as(record, &job.path, job.size, job.mtime)
    {
        return Ok(Classified::Writer(ToWriter::Skipped {
            path: job.path,
            outcome: FileOutcome::Unchanged,
        }));
    }
    let failure = db.failure(&job.path)?;
    if let Some(failure) = &failure
        && failure.byte_size == job.size
        && failure.mtime == job.mtime
    {
        return Ok(Classified::Writer(ToWriter::Skipped {
            path: job.path,
            outcome: FileOutcome::StillFailing,
        }));
    }
    let clear_failure = failure.is_some();
    // A rename keeps size and mtime: trust the old path's image unread.
    if let Some(from) = &job.moved_from
        && let Some(record) = db.get_by_path(from)?
        && indexed_as(&record, from, job.size, job.mtime)
    {
        return Ok(Classified::Writer(ToWriter::Link {
            id: record.id,
            unchanged: false,
            clear_failure,
            job,
        }));
    }
    let file = match ImageFile::read(&job.path, preprocessor) {
        Ok(file) => file,
        Err(e) => {
            return Ok(Classified::Writer(ToWriter::Failed {
                reason: FailureReason::of(&e),
                job,
            }));
        }
    };
    let hash = file.hash();
    if let Some(record) = &existing
        && record.content_hash == hash
    {
        return Ok(Classified::Writer(ToWriter::Link {
            id: record.id,
            unchanged: true,
            clear_failure,
            job,
        }));
    }
    if let Some(&id) = db.ids_by_hash(&hash)?.first() {
        return Ok(Classified::Writer(ToWriter::Link {
            id,
            unchanged: false,
            clear_failure,
            job,
        }));
    }
    Ok(match file.prepare(preprocessor) {
        Ok(prepared) => Classified::Encode(EncoderInput {
            job,
            hash,
            prepared,
            clear_failure,
        }),
        Err(e) => Classified::Writer(ToWriter::Failed {
            reason: FailureReason::of(&e),
            job,
        }),
    })
}

/// Embeds decoded images in batches; returns the time spent in the model.
fn encode(
    encoder: &Encoder,
    inputs: &Receiver<EncoderInput>,
    writer: &Sender<ToWriter>,
    batch_size: usize,
) -> Duration {
    let mut spent = Duration::ZERO;
    while let Ok(first) = inputs.recv() {
        let mut batch = vec![first];
        // Fill the batch with what arrives soon; a slow trickle still flows.
        while batch.len() < batch_size {
            match inputs.recv_timeout(Duration::from_millis(20)) {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let pixels: Vec<f32> = batch
            .iter()
            .flat_map(|d| d.prepared.pixels.iter().copied())
            .collect();
        let started = Instant::now();
        let vectors = encoder.embed_pixels(&pixels, batch.len());
        spent += started.elapsed();
        let vectors = match vectors {
            Ok(vectors) => vectors,
            Err(e) => {
                let _ = writer.send(ToWriter::Fatal(e));
                return spent;
            }
        };
        for (item, vector) in batch.into_iter().zip(vectors) {
            let image = NewImage {
                path: item.job.path,
                mtime: item.job.mtime,
                content_hash: item.hash,
                byte_size: item.job.size,
                width: item.prepared.width,
                height: item.prepared.height,
                format: item.prepared.format,
                tags: Vec::new(),
                vector,
            };
            if writer
                .send(ToWriter::Encoded {
                    image,
                    clear_failure: item.clear_failure,
                })
                .is_err()
            {
                return spent;
            }
        }
    }
    spent
}

/// A store batch being filled, with what to report once it is written.
#[derive(Default)]
struct SettleBatch {
    batch: WriteBatch,
    /// Per operation: the file it settles and how (`None` for a cleared
    /// failure, which rides along with its file's operation).
    settles: Vec<Option<(PathBuf, Settle)>>,
}

#[derive(Clone)]
enum Settle {
    Indexed,
    Linked,
    Unchanged,
    Failed(FailureReason),
    Removed,
}

impl SettleBatch {
    fn push(&mut self, op: WriteOp, settles: Option<(PathBuf, Settle)>) {
        self.batch.push(op);
        self.settles.push(settles);
    }

    fn files(&self) -> usize {
        self.settles.iter().filter(|s| s.is_some()).count()
    }

    /// Writes the batch and reports every file it settles.
    fn flush(
        &mut self,
        db: &Db,
        encoder: &Encoder,
        report: &mut IngestReport,
        observer: &mut dyn IngestObserver,
    ) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let ids = db.write(encoder.space(), batch)?;
        for (settle, id) in std::mem::take(&mut self.settles).into_iter().zip(ids) {
            let Some((path, settle)) = settle else {
                continue;
            };
            let id = id.unwrap_or(ImageId(0));
            let outcome = match settle {
                Settle::Indexed => {
                    report.indexed += 1;
                    FileOutcome::Indexed(id)
                }
                Settle::Linked => {
                    report.linked += 1;
                    FileOutcome::Linked(id)
                }
                Settle::Unchanged => {
                    report.unchanged += 1;
                    FileOutcome::Unchanged
                }
                Settle::Removed => {
                    report.removed += 1;
                    FileOutcome::Removed
                }
                Settle::Failed(reason) => {
                    report.failures.push((path.clone(), reason.clone()));
                    FileOutcome::Failed(reason)
                }
            };
            observer.event(&IngestEvent::File { path, outcome });
        }
        Ok(())
    }

    /// Writes the operations in batches of at most `size`, in order.
    fn flush_in_chunks(
        self,
        size: usize,
        db: &Db,
        encoder: &Encoder,
        report: &mut IngestReport,
        observer: &mut dyn IngestObserver,
    ) -> Result<()> {
        let mut ops = self.batch.ops.into_iter();
        let mut settles = self.settles.into_iter();
        loop {
            let mut part = SettleBatch {
                batch: WriteBatch::from(ops.by_ref().take(size).collect::<Vec<_>>()),
                settles: settles.by_ref().take(size).collect(),
            };
            if part.batch.is_empty() {
                return Ok(());
            }
            part.flush(db, encoder, report, observer)?;
        }
    }
}

/// Collects messages into store batches and reports progress. Once
/// `cancel` is set, it writes the batch it holds and stops.
fn write(
    db: &Db,
    encoder: &Encoder,
    messages: &Receiver<ToWriter>,
    write_batch: usize,
    cancel: &CancelToken,
    report: &mut IngestReport,
    observer: &mut dyn IngestObserver,
) -> Result<()> {
    let mut pending = SettleBatch::default();
    while !cancel.is_cancelled() {
        let message = match messages.recv_timeout(Duration::from_millis(250)) {
            Ok(message) => message,
            Err(RecvTimeoutError::Timeout) => {
                // Input is slow (the model, say): write what there is, so a
                // kill loses little and progress shows.
                pending.flush(db, encoder, report, observer)?;
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        match message {
            ToWriter::Found { files, done } => {
                report.found = files;
                observer.event(&IngestEvent::Found { files, done });
            }
            ToWriter::Skipped { path, outcome } => {
                report.unchanged += 1;
                observer.event(&IngestEvent::File { path, outcome });
            }
            ToWriter::Link {
                job,
                id,
                unchanged,
                clear_failure,
            } => {
                if clear_failure {
                    pending.push(
                        WriteOp::ClearFailure {
                            path: job.path.clone(),
                        },
                        None,
                    );
                }
                let settle = if unchanged {
                    Settle::Unchanged
                } else {
                    Settle::Linked
                };
                pending.push(
                    WriteOp::Link {
                        path: job.path.clone(),
                        mtime: job.mtime,
                        id,
                    },
                    Some((job.path, settle)),
                );
            }
            ToWriter::Encoded {
                image,
                clear_failure,
            } => {
                if clear_failure {
                    pending.push(
                        WriteOp::ClearFailure {
                            path: image.path.clone(),
                        },
                        None,
                    );
                }
                let path = image.path.clone();
                pending.push(WriteOp::Insert(image), Some((path, Settle::Indexed)));
            }
            ToWriter::Failed { job, reason } => {
                let failure = Failure {
                    reason: reason.clone(),
                    byte_size: job.size,
                    mtime: job.mtime,
                    at: Timestamp::now(),
                };
                pending.push(
                    WriteOp::RecordFailure {
                        path: job.path.clone(),
                        failure,
                    },
                    Some((job.path, Settle::Failed(reason))),
                );
            }
            ToWriter::Fatal(e) => return Err(e),
        }
        if pending.files() >= write_batch {
            pending.flush(db, encoder, report, observer)?;
        }
    }
    pending.flush(db, encoder, report, observer)
}

/// Removes what was indexed at or under the roots but is gone now, and
/// forgets the failures of files that are gone; `seen`: files known to
/// exist (fed to the pipeline), not looked at again.
pub(super) fn remove_missing(
    db: &Db,
    encoder: &Encoder,
    roots: &[PathBuf],
    seen: &HashSet<PathBuf>,
    report: &mut IngestReport,
    observer: &mut dyn IngestObserver,
) -> Result<()> {
    let gone = |path: &Path| !seen.contains(path) && !path.exists();
    let mut pending = SettleBatch::default();
    let mut unlinked = HashSet::new();
    for root in roots {
        // `paths_under` lists what is below a folder; a root that was a
        // file is its own entry.
        let own = db
            .get_by_path(root)?
            .map(|record| (root.clone(), record.id));
        for (path, _) in own.into_iter().chain(db.paths_under(root)?) {
            if gone(&path) && unlinked.insert(path.clone()) {
                pending.push(
                    WriteOp::Unlink { path: path.clone() },
                    Some((path, Settle::Removed)),
                );
            }
        }
    }
    for (path, _) in db.failures()? {
        if roots.iter().any(|root| path.starts_with(root)) && gone(&path) {
            pending.push(WriteOp::ClearFailure { path }, None);
        }
    }
    // Removals are cheap: one batch each 1024 operations.
    pending.flush_in_chunks(1024, db, encoder, report, observer)
}
