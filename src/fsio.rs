//! [`Storage`]: the filesystem seam under the files the database writes
//! itself (index snapshots and the format marker), in the manner of
//! tantivy's `Directory`.
//!
//! Everything that must be durable in a given order goes through it: file
//! writes, fsyncs of files and directories, renames and removals. The
//! database never assumes an operation succeeded: each error reaches the
//! caller, and the on-disk protocol (write under a temporary name, fsync,
//! rename, fsync the directory) keeps the previous state readable whatever
//! step failed. Tests wrap [`LocalStorage`] to fail a chosen step (see
//! `tests/faults.rs`).
//!
//! Not covered: sled's own files (the store has its own durability, with a
//! hook at its commit, [`Storage::check_commit`]).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A read-only memory mapping of a file, as [`Storage::map`] returns it
/// (memmap2's, re-exported so that a `Storage` needs no dependency of its own).
pub use memmap2::Mmap;

/// A file being written: bytes go through [`Write`], and
/// [`sync`](StorageFile::sync) makes them durable.
pub trait StorageFile: Write + Send {
    /// Flushes and fsyncs the file's data and metadata.
    fn sync(&mut self) -> io::Result<()>;
}

/// When [`Storage::check_commit`] is asked about a store commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommitStage {
    /// Before anything of the batch is written: an error here means the
    /// batch was not stored.
    Before,
    /// After the batch's transaction was applied, before it is flushed: an
    /// error here leaves the writer not knowing whether the batch is stored
    /// (it is, but not known durable), which the database must handle by
    /// re-reading the store.
    Applied,
}

/// The file operations behind index snapshots and the format marker.
///
/// Implementations must be `Send + Sync`: the background maintenance thread
/// writes snapshots while other threads read.
pub trait Storage: Send + Sync {
    /// Creates (or truncates) a file for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Opens a file for reading; returns it with its length in bytes.
    fn open(&self, path: &Path) -> io::Result<(Box<dyn Read + Send>, u64)>;
    /// Fsyncs a directory, making the creations and renames in it durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Renames a file or directory, replacing a file at `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Creates a directory and its missing parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The entries of a directory (full paths), in no particular order.
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Whether something exists at `path`.
    fn exists(&self, path: &Path) -> bool;
    /// The bytes free for this process on the filesystem holding `path`.
    fn available_space(&self, path: &Path) -> io::Result<u64>;
    /// Maps a finished file read-only: a compact index serves its exact
    /// vectors from the snapshot's `vectors.f32` this way. The database
    /// never writes a file it has mapped (snapshots are written whole under
    /// a new name); whatever else changes or truncates the file while it is
    /// mapped changes what searches read, or kills the process (SIGBUS), as
    /// with any memory-mapped database. Default: the local file, mapped.
    fn map(&self, path: &Path) -> io::Result<Mmap> {
        let file = File::open(path)?;
        // SAFETY: see above: nothing of the database's writes a file that
        // is mapped, and the database's lock keeps other imgdb processes out.
        unsafe { Mmap::map(&file) }
    }
    /// Asked at each stage of every store commit; an error fails the commit
    /// as an I/O error of the store would. The store's files are sled's, so
    /// this is the seam's only say in them: real storage always answers
    /// `Ok`, tests answer errors to prove the database recovers from a
    /// failed commit.
    fn check_commit(&self, stage: CommitStage) -> io::Result<()> {
        let _ = stage;
        Ok(())
    }
}

/// The operating system's filesystem: what a database uses unless
/// [`DbOptions::storage`](crate::DbOptions::storage) says otherwise.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalStorage;

impl LocalStorage {
    /// The default storage, shared.
    pub fn shared() -> Arc<dyn Storage> {
        Arc::new(LocalStorage)
    }
}

/// A local file behind a buffer: snapshot files are written in large chunks.
struct LocalFile(io::BufWriter<File>);

impl Write for LocalFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl StorageFile for LocalFile {
    fn sync(&mut self) -> io::Result<()> {
        self.0.flush()?;
        self.0.get_ref().sync_all()
    }
}

impl Storage for LocalStorage {
    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let file = File::create(path)?;
        Ok(Box::new(LocalFile(io::BufWriter::with_capacity(
            1 << 20,
            file,
        ))))
    }

    fn open(&self, path: &Path) -> io::Result<(Box<dyn Read + Send>, u64)> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok((Box::new(file), len))
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        fs::read_dir(dir)?
            .map(|entry| entry.map(|e| e.path()))
            .collect()
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn available_space(&self, path: &Path) -> io::Result<u64> {
        fs2::available_space(path)
    }
}

/// Reads a whole file through `storage`.
pub(crate) fn read(storage: &dyn Storage, path: &Path) -> io::Result<Vec<u8>> {
    let (mut file, len) = storage.open(path)?;
    let mut bytes = Vec::with_capacity(len.min(1 << 20) as usize);
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Writes `bytes` to a new file at `path` and fsyncs it.
pub(crate) fn write_synced(storage: &dyn Storage, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = storage.create(path)?;
    file.write_all(bytes)?;
    file.sync()
}
