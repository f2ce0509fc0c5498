//! The ingest pipeline's threads and the messages between them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};

use super::{FileOutcome, IngestEvent, IngestObserver, IngestOptions, IngestReport, is_hidden};
use crate::db::{Db, NewImage, WriteBatch, WriteOp};
use crate::error::{Error, Result};
use crate::model::{Encoder, Prepared, Preprocessor, has_image_extension};
use crate::store::Failure;
use crate::store::record::{ContentHash, ImageId, Timestamp};

/// A file found by the walk.
struct Job {
    path: PathBuf,
    size: u64,
    mtime: Timestamp,
}

/// A file decoded and preprocessed, on its way to the encoder.
struct Decoded {
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
        reason: String,
    },
    Fatal(Error),
}

/// Ingests `roots` (folders or files) into `db` with `encoder`.
pub fn ingest(
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
    let cancel = options.cancel.clone().unwrap_or_default();
    // Set by a fatal error, to stop every stage.
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = || cancel.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed);
    let preprocessor = encoder
        .preprocessor()
        .clone()
        .with_dct_scaling(options.dct_scaling);
    let batch_size = options
        .batch_size
        .unwrap_or_else(|| encoder.batch_size())
        .max(1);

    let (jobs_tx, jobs_rx) = bounded::<Job>(1024);
    let (decoded_tx, decoded_rx) = bounded::<Decoded>(2 * batch_size);
    let (writer_tx, writer_rx) = bounded::<ToWriter>(1024);
    let mut report = IngestReport::default();

    let seen = std::thread::scope(|scope| -> Result<HashSet<PathBuf>> {
        let walker = {
            let writer_tx = writer_tx.clone();
            let roots = &roots;
            let stopped = &stopped;
            scope.spawn(move || walk(roots, options, &jobs_tx, &writer_tx, stopped))
        };
        for _ in 0..options.workers.max(1) {
            let (jobs_rx, decoded_tx, writer_tx) =
                (jobs_rx.clone(), decoded_tx.clone(), writer_tx.clone());
            let (preprocessor, stopped) = (&preprocessor, &stopped);
            scope.spawn(move || work(db, preprocessor, &jobs_rx, &decoded_tx, &writer_tx, stopped));
        }
        drop((jobs_rx, decoded_tx));
        let encode_time = {
            let writer_tx = writer_tx.clone();
            scope.spawn(move || encode(encoder, &decoded_rx, &writer_tx, batch_size))
        };
        drop(writer_tx);

        let result = write(
            db,
            encoder,
            &writer_rx,
            options.write_batch.max(1),
            &mut report,
            observer,
        );
        if result.is_err() {
            stop.store(true, Ordering::Relaxed);
            // Drain so that no stage stays blocked on a full queue.
            for _ in writer_rx.iter() {}
        }
        report.encode_time = encode_time
            .join()
            .expect("the encoder thread does not panic");
        let seen = walker.join().expect("the walker thread does not panic");
        result.map(|()| seen)
    })?;

    report.cancelled = cancel.load(Ordering::Relaxed);
    if options.remove_missing && !report.cancelled {
        remove_missing(db, encoder, &roots, &seen, &mut report, observer)?;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Walks the roots, sending image files to the workers; returns every image
/// file seen.
fn walk(
    roots: &[PathBuf],
    options: &IngestOptions,
    jobs: &Sender<Job>,
    writer: &Sender<ToWriter>,
    stopped: &dyn Fn() -> bool,
) -> HashSet<PathBuf> {
    let mut seen = HashSet::new();
    for root in roots {
        let walker = walkdir::WalkDir::new(root)
            .follow_links(options.follow_links)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| options.include_hidden || !is_hidden(e));
        for entry in walker {
            if stopped() {
                return seen;
            }
            let Ok(entry) = entry else { continue };
            if !entry.file_type().is_file() || !has_image_extension(entry.path()) {
                continue;
            }
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            let path = entry.into_path();
            if !seen.insert(path.clone()) {
                continue;
            }
            let job = Job {
                path,
                size: metadata.len(),
                mtime: metadata.modified().map(Timestamp::from).unwrap_or_default(),
            };
            if jobs.send(job).is_err() {
                return seen;
            }
            if seen.len() % 256 == 0 {
                let _ = writer.send(ToWriter::Found {
                    files: seen.len() as u64,
                    done: false,
                });
            }
        }
    }
    let _ = writer.send(ToWriter::Found {
        files: seen.len() as u64,
        done: true,
    });
    seen
}

/// Sorts each file into skipped, linked, failed or decoded.
fn work(
    db: &Db,
    preprocessor: &Preprocessor,
    jobs: &Receiver<Job>,
    decoded: &Sender<Decoded>,
    writer: &Sender<ToWriter>,
    stopped: &dyn Fn() -> bool,
) {
    for job in jobs.iter() {
        if stopped() {
            continue;
        }
        let message = match classify(db, preprocessor, job) {
            Ok(Classified::Writer(message)) => message,
            Ok(Classified::Decoded(item)) => {
                if decoded.send(item).is_err() {
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
    Decoded(Decoded),
}

fn classify(db: &Db, preprocessor: &Preprocessor, job: Job) -> Result<Classified> {
    let existing = db.get_by_path(&job.path)?;
    if let Some(record) = &existing
        && record.byte_size == job.size
        && record
            .files
            .iter()
            .any(|f| f.path == job.path && f.mtime == job.mtime)
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
    let bytes = match std::fs::read(&job.path) {
        Ok(bytes) => bytes,
        Err(e) => {
            return Ok(Classified::Writer(ToWriter::Failed {
                reason: format!("cannot read: {e}"),
                job,
            }));
        }
    };
    let hash = ContentHash::of(&bytes);
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
    Ok(match preprocessor.prepare(&bytes, &job.path) {
        Ok(prepared) => Classified::Decoded(Decoded {
            job,
            hash,
            prepared,
            clear_failure,
        }),
        Err(e) => Classified::Writer(ToWriter::Failed {
            reason: e.chain(),
            job,
        }),
    })
}

/// Embeds decoded images in batches; returns the time spent in the model.
fn encode(
    encoder: &Encoder,
    decoded: &Receiver<Decoded>,
    writer: &Sender<ToWriter>,
    batch_size: usize,
) -> Duration {
    let mut spent = Duration::ZERO;
    while let Ok(first) = decoded.recv() {
        let mut batch = vec![first];
        // Fill the batch with what arrives soon; a slow trickle still flows.
        while batch.len() < batch_size {
            match decoded.recv_timeout(Duration::from_millis(20)) {
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
struct Pending {
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
    Failed(String),
    Removed,
}

impl Pending {
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
}

/// Collects messages into store batches and reports progress.
fn write(
    db: &Db,
    encoder: &Encoder,
    messages: &Receiver<ToWriter>,
    write_batch: usize,
    report: &mut IngestReport,
    observer: &mut dyn IngestObserver,
) -> Result<()> {
    let mut pending = Pending::default();
    loop {
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

/// Removes what was indexed under the roots but is gone now, and forgets
/// the failures of files that are gone.
fn remove_missing(
    db: &Db,
    encoder: &Encoder,
    roots: &[PathBuf],
    seen: &HashSet<PathBuf>,
    report: &mut IngestReport,
    observer: &mut dyn IngestObserver,
) -> Result<()> {
    let mut pending = Pending::default();
    let under = |path: &Path| roots.iter().any(|root| path.starts_with(root));
    for root in roots {
        for (path, _) in db.paths_under(root)? {
            if !seen.contains(&path) && !path.exists() {
                pending.push(
                    WriteOp::Unlink { path: path.clone() },
                    Some((path, Settle::Removed)),
                );
            }
        }
    }
    for (path, _) in db.failures()? {
        if under(&path) && !seen.contains(&path) && !path.exists() {
            pending.push(WriteOp::ClearFailure { path }, None);
        }
    }
    // Removals are cheap: one batch each 1024 files.
    for chunk_start in (0..pending.settles.len()).step_by(1024) {
        let end = (chunk_start + 1024).min(pending.settles.len());
        let mut part = Pending {
            batch: WriteBatch::from(pending.batch.ops[chunk_start..end].to_vec()),
            settles: pending.settles[chunk_start..end].to_vec(),
        };
        part.flush(db, encoder, report, observer)?;
    }
    Ok(())
}
