//! Write batches: what callers ask for, and how it becomes one atomic store
//! batch of before/after record pairs.
//!
//! Operations of a batch apply in order to a working set of the records they
//! touch ([`Pending`]), which overlays the store's path and content maps so
//! that later operations see earlier ones. Nothing reaches the store until
//! the whole batch has been validated and applied in memory.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::record::{FileEntry, ImageRecord, ImageSource, Tag};
use crate::store::{Batch, Failure, Store};
use crate::types::{ContentHash, ImageFormat, ImageId, Timestamp};
use crate::vector::normalized_to;

/// A new image file with its embedding.
#[derive(Clone, Debug, PartialEq)]
pub struct NewImage {
    /// The canonical path.
    pub path: PathBuf,
    /// The file's modification time.
    pub mtime: Timestamp,
    /// BLAKE3 of the file bytes.
    pub content_hash: ContentHash,
    /// The file size in bytes.
    pub byte_size: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The file format.
    pub format: ImageFormat,
    /// Labels to attach.
    pub tags: Vec<Tag>,
    /// The embedding (normalised on insert).
    pub vector: Vec<f32>,
}

/// One operation of a [`WriteBatch`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum WriteOp {
    /// Adds an image file. A path already indexed with the same content only
    /// updates its mtime; with other content it is re-pointed. Content that
    /// is already indexed (a copy or a moved file) gains the path and keeps
    /// its id and vector: the given vector is then unused.
    Insert(NewImage),
    /// Adds a path to an existing image (a moved or copied file whose
    /// content is known), taking it away from any image that had it.
    Link {
        /// The canonical path.
        path: PathBuf,
        /// The file's modification time.
        mtime: Timestamp,
        /// The image it shows.
        id: ImageId,
    },
    /// Removes a path; an image left without paths is deleted.
    Unlink {
        /// The canonical path.
        path: PathBuf,
    },
    /// Deletes an image and all its paths.
    Delete {
        /// The image.
        id: ImageId,
    },
    /// Replaces an image's tags.
    SetTags {
        /// The image.
        id: ImageId,
        /// Its new tags.
        tags: Vec<Tag>,
    },
    /// Recreates an image with its id, files, tags and times, and the
    /// record's vector (normalised on write): what re-indexing into a new
    /// database does. The id must be free.
    Restore(ImageRecord),
    /// Records that a file could not be indexed.
    RecordFailure {
        /// The canonical path.
        path: PathBuf,
        /// What happened.
        failure: Failure,
    },
    /// Forgets a recorded failure.
    ClearFailure {
        /// The canonical path.
        path: PathBuf,
    },
    /// Records where the image at `path` comes from (an imported row's URL,
    /// caption and key), replacing what it had: committed with the image
    /// itself when the same batch inserts it. The path must be indexed, by
    /// an earlier operation of the batch or before it.
    SetSource {
        /// The image's path (an imported row's URL or key).
        path: PathBuf,
        /// Where it comes from.
        source: ImageSource,
    },
}

/// Operations committed together: all or none, durable when
/// [`Db::write`](crate::Db::write) returns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteBatch {
    pub(crate) ops: Vec<WriteOp>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    /// Appends an operation.
    pub fn push(&mut self, op: WriteOp) -> &mut WriteBatch {
        self.ops.push(op);
        self
    }

    /// Appends [`WriteOp::Insert`].
    pub fn insert(&mut self, image: NewImage) -> &mut WriteBatch {
        self.push(WriteOp::Insert(image))
    }

    /// The number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether there are no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl From<Vec<WriteOp>> for WriteBatch {
    fn from(ops: Vec<WriteOp>) -> WriteBatch {
        WriteBatch { ops }
    }
}

/// Tag labels are keys followed by a zero byte (`schema/store.md`).
fn check_tags(tags: &[Tag]) -> Result<()> {
    match tags
        .iter()
        .find(|t| t.label.contains('\0') || t.label.is_empty())
    {
        Some(tag) => Err(Error::InvalidParameter {
            name: "tag label",
            value: format!("{:?}", tag.label),
            expected: "a non-empty label without NUL characters",
        }),
        None => Ok(()),
    }
}

/// A record's state before the batch and now.
struct Touched {
    before: Option<ImageRecord>,
    after: Option<ImageRecord>,
}

/// The working set of one batch.
pub(crate) struct Pending<'s> {
    store: &'s Store,
    dim: usize,
    touched: BTreeMap<ImageId, Touched>,
    paths: HashMap<PathBuf, Option<ImageId>>,
    hashes: HashMap<ContentHash, Vec<ImageId>>,
    failures: Vec<(PathBuf, Failure)>,
    cleared_failures: Vec<PathBuf>,
    sources: BTreeMap<ImageId, ImageSource>,
    first_new_id: u64,
    next_id: u64,
}

impl<'s> Pending<'s> {
    pub fn new(store: &'s Store, dim: usize, next_id: u64) -> Pending<'s> {
        Pending {
            store,
            dim,
            touched: BTreeMap::new(),
            paths: HashMap::new(),
            hashes: HashMap::new(),
            failures: Vec::new(),
            cleared_failures: Vec::new(),
            sources: BTreeMap::new(),
            first_new_id: next_id,
            next_id,
        }
    }

    /// Applies one operation; returns the image it concerns, if any.
    pub fn apply(&mut self, op: WriteOp) -> Result<Option<ImageId>> {
        match op {
            WriteOp::Insert(image) => self.insert(image).map(Some),
            WriteOp::Link { path, mtime, id } => self.link(path, mtime, id).map(|()| Some(id)),
            WriteOp::Unlink { path } => self.unlink(&path),
            WriteOp::Delete { id } => self.delete(id).map(|()| Some(id)),
            WriteOp::SetTags { id, tags } => {
                check_tags(&tags)?;
                self.existing(id)?.tags = tags;
                Ok(Some(id))
            }
            WriteOp::Restore(record) => self.restore(record).map(Some),
            WriteOp::RecordFailure { path, failure } => {
                self.cleared_failures.retain(|p| *p != path);
                self.failures.push((path, failure));
                Ok(None)
            }
            WriteOp::ClearFailure { path } => {
                self.failures.retain(|(p, _)| *p != path);
                self.cleared_failures.push(path);
                Ok(None)
            }
            WriteOp::SetSource { path, source } => {
                let id = self
                    .id_by_path(&path)?
                    .ok_or_else(|| Error::InvalidParameter {
                        name: "path",
                        value: path.display().to_string(),
                        expected: "an indexed path (the source of an image not in the database)",
                    })?;
                self.sources.insert(id, source);
                Ok(Some(id))
            }
        }
    }

    /// The record as it stands in the batch, loading it on first touch.
    fn record(&mut self, id: ImageId) -> Result<Option<&mut ImageRecord>> {
        if !self.touched.contains_key(&id) {
            let record = self.store.record(id)?;
            self.touched.insert(
                id,
                Touched {
                    before: record.clone(),
                    after: record,
                },
            );
        }
        Ok(self.touched.get_mut(&id).and_then(|t| t.after.as_mut()))
    }

    fn existing(&mut self, id: ImageId) -> Result<&mut ImageRecord> {
        self.record(id)?.ok_or(Error::UnknownImage { id })
    }

    fn id_by_path(&self, path: &Path) -> Result<Option<ImageId>> {
        match self.paths.get(path) {
            Some(id) => Ok(*id),
            None => self.store.id_by_path(path),
        }
    }

    /// A live image with this content, if any.
    fn id_by_hash(&mut self, hash: &ContentHash) -> Result<Option<ImageId>> {
        if !self.hashes.contains_key(hash) {
            let ids = self.store.ids_by_hash(hash)?;
            self.hashes.insert(*hash, ids);
        }
        Ok(self.hashes[hash].first().copied())
    }

    fn insert(&mut self, image: NewImage) -> Result<ImageId> {
        let vector = normalized_to(&image.vector, self.dim)?;
        check_tags(&image.tags)?;
        if let Some(id) = self.id_by_path(&image.path)? {
            let record = self.existing(id)?;
            if record.content_hash == image.content_hash {
                set_mtime(record, &image.path, image.mtime);
                return Ok(id);
            }
            self.unlink(&image.path)?;
        }
        if let Some(id) = self.id_by_hash(&image.content_hash)? {
            self.link(image.path, image.mtime, id)?;
            return Ok(id);
        }
        let id = ImageId(self.next_id);
        self.next_id += 1;
        self.paths.insert(image.path.clone(), Some(id));
        self.hashes.entry(image.content_hash).or_default().push(id);
        let record = ImageRecord {
            id,
            files: vec![FileEntry {
                path: image.path,
                mtime: image.mtime,
            }],
            content_hash: image.content_hash,
            byte_size: image.byte_size,
            width: image.width,
            height: image.height,
            format: image.format,
            added: Timestamp::now(),
            tags: image.tags,
            vector,
            seq: 0,
            vector_seq: 0,
        };
        self.touched.insert(
            id,
            Touched {
                before: None,
                after: Some(record),
            },
        );
        Ok(id)
    }

    fn restore(&mut self, mut record: ImageRecord) -> Result<ImageId> {
        record.vector = normalized_to(&record.vector, self.dim)?;
        check_tags(&record.tags)?;
        let id = record.id;
        if self.record(id)?.is_some() {
            return Err(Error::ImageExists { id });
        }
        for file in &record.files {
            if self.id_by_path(&file.path)?.is_some() {
                self.unlink(&file.path)?;
            }
            self.paths.insert(file.path.clone(), Some(id));
        }
        self.id_by_hash(&record.content_hash)?;
        self.hashes.entry(record.content_hash).or_default().push(id);
        self.next_id = self.next_id.max(id.0 + 1);
        self.touched.get_mut(&id).expect("loaded above").after = Some(record);
        Ok(id)
    }

    fn link(&mut self, path: PathBuf, mtime: Timestamp, id: ImageId) -> Result<()> {
        match self.id_by_path(&path)? {
            Some(current) if current == id => {
                set_mtime(self.existing(id)?, &path, mtime);
                return Ok(());
            }
            Some(_) => {
                self.unlink(&path)?;
            }
            None => {}
        }
        self.existing(id)?.files.push(FileEntry {
            path: path.clone(),
            mtime,
        });
        self.paths.insert(path, Some(id));
        Ok(())
    }

    fn unlink(&mut self, path: &Path) -> Result<Option<ImageId>> {
        let Some(id) = self.id_by_path(path)? else {
            return Ok(None);
        };
        self.paths.insert(path.to_path_buf(), None);
        let record = self.existing(id)?;
        record.files.retain(|f| f.path != path);
        if record.files.is_empty() {
            self.delete(id)?;
        }
        Ok(Some(id))
    }

    fn delete(&mut self, id: ImageId) -> Result<()> {
        let record = self.existing(id)?.clone();
        for file in &record.files {
            self.paths.insert(file.path.clone(), None);
        }
        self.id_by_hash(&record.content_hash)?;
        if let Some(ids) = self.hashes.get_mut(&record.content_hash) {
            ids.retain(|i| *i != id);
        }
        self.touched.get_mut(&id).expect("loaded above").after = None;
        Ok(())
    }

    /// The store batch, stamped with sequence number `seq`.
    pub fn into_batch(self, seq: u64) -> Batch {
        let mut batch = Batch {
            failures: self.failures,
            cleared_failures: self.cleared_failures,
            sources: self.sources.into_iter().collect(),
            next_id: (self.next_id != self.first_new_id).then_some(self.next_id),
            ..Batch::default()
        };
        for touched in self.touched.into_values() {
            match (touched.before, touched.after) {
                (None, Some(mut new)) => {
                    new.seq = seq;
                    new.vector_seq = seq;
                    batch.puts.push((None, new));
                }
                (Some(old), Some(mut new)) if old != new => {
                    new.seq = seq;
                    if new.vector != old.vector {
                        new.vector_seq = seq;
                    }
                    batch.puts.push((Some(old), new));
                }
                (Some(old), None) => batch.deletes.push(old),
                _ => {}
            }
        }
        // An image deleted later in the batch keeps no source.
        batch
            .sources
            .retain(|(id, _)| !batch.deletes.iter().any(|old| old.id == *id));
        batch
    }
}

fn set_mtime(record: &mut ImageRecord, path: &Path, mtime: Timestamp) {
    if let Some(file) = record.files.iter_mut().find(|f| f.path == path) {
        file.mtime = mtime;
    }
}
