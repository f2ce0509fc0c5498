//! Index snapshots: the graph, the row table and the exact vectors written
//! to disk so that opening a database does not rebuild the graph.
//!
//! A snapshot is a directory `snapshot-<watermark as 16 hex digits>` inside
//! the database's `index/` folder. It is written under a temporary name,
//! fsynced, then renamed into place, so a crash leaves either the old or the
//! new snapshot, never a half one. Its `header` names the database it belongs
//! to, the store sequence number it covers (the watermark) and the size and
//! BLAKE3 digest of every other file; everything is verified before a byte
//! is used. Layout: `schema/index.md`.
//!
//! Opening verifies and loads the row table, the vectors and the graph's
//! links in the search layout; a writer resumes building from those links.
//! Format 1 also held hnsw_rs's dump of the graph (imgdb's builder until
//! then): its other files are read as they are, and the dump is ignored.
//!
//! A snapshot is only ever an accelerator: whatever is wrong with one, the
//! caller rebuilds from the store and says why ([`RebuildReason`]).
//!
//! Every file operation goes through the database's [`Storage`], so that
//! tests can fail any step. A snapshot is written from a
//! [`Frozen`] view while writes go on (see [`VectorIndex::freeze`]).

use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::distance::{QuantizedRows, quantize_rows_onto};
use super::flat::FlatGraph;
use super::vectors::Vectors;
use super::{Frozen, IndexParams, Row, RowAttrs, VectorIndex};
use crate::error::{Error, Result, SnapshotError};
use crate::fsio::{self, Storage};
use crate::types::IndexMemory;
use crate::types::{ImageFormat, ImageId, Timestamp};

/// The snapshot format this build writes; it also reads format 1.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 2;

/// The format whose header names hnsw_rs's dump of the graph.
const HNSW_RS_FORMAT: u32 = 1;

const MAGIC: [u8; 8] = *b"\x89IMGIDX\n";
const HEADER_FILE: &str = "header";
const ROWS_FILE: &str = "rows.bin";
const VECTORS_FILE: &str = "vectors.f32";
const FLAT_FILE: &str = "flat.bin";
const DIR_PREFIX: &str = "snapshot-";
const TMP_PREFIX: &str = "tmp-";
/// Bytes per row in `rows.bin`.
const ROW_BYTES: usize = 50;

/// Why the index was rebuilt from the store instead of loaded.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RebuildReason {
    /// There was no snapshot (a first open after a crash before any, say).
    NoSnapshot,
    /// The snapshot is damaged: a checksum, length or layout check failed.
    Corrupt {
        /// What was wrong.
        problem: SnapshotProblem,
    },
    /// The snapshot was written by another snapshot format version.
    UnsupportedVersion {
        /// Its version.
        found: u32,
    },
    /// The snapshot belongs to another database (it was copied in).
    ForeignDatabase,
    /// The snapshot covers store changes the store does not have (the store
    /// was truncated, or replaced by an older copy). Opening refuses such a
    /// store ([`Corruption::StoreBehindIndex`](crate::Corruption))
    /// rather than rebuilding the index from what it has left.
    AheadOfStore {
        /// The snapshot's watermark.
        watermark: u64,
        /// The store's last sequence number.
        last_seq: u64,
    },
    /// The snapshot is older than the change log's start: replaying the log
    /// cannot bring it up to date (an old snapshot was restored, say).
    OlderThanLog {
        /// The snapshot's watermark.
        watermark: u64,
        /// The sequence number through which the log was pruned.
        pruned_through: u64,
    },
    /// The snapshot's dimension or graph parameters differ from the database's.
    ParameterMismatch,
}

impl fmt::Display for RebuildReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RebuildReason::NoSnapshot => f.write_str("no index snapshot"),
            RebuildReason::Corrupt { problem } => {
                write!(f, "the index snapshot is corrupt: {problem}")
            }
            RebuildReason::UnsupportedVersion { found } => write!(
                f,
                "the index snapshot has format version {found}, this build reads {SNAPSHOT_FORMAT_VERSION}"
            ),
            RebuildReason::ForeignDatabase => {
                f.write_str("the index snapshot belongs to another database")
            }
            RebuildReason::AheadOfStore {
                watermark,
                last_seq,
            } => write!(
                f,
                "the index snapshot covers changes up to {watermark}, but the store ends at {last_seq}"
            ),
            RebuildReason::OlderThanLog {
                watermark,
                pruned_through,
            } => write!(
                f,
                "the index snapshot covers changes up to {watermark}, but the change log starts after {pruned_through}"
            ),
            RebuildReason::ParameterMismatch => f.write_str(
                "the index snapshot's dimension or graph parameters differ from the database's",
            ),
        }
    }
}

/// What was wrong with a damaged snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotProblem {
    /// A file could not be read (the operating system's message).
    Unreadable {
        /// The file.
        file: PathBuf,
        /// Why.
        cause: String,
    },
    /// A file's length differs from the header's record of it.
    WrongLength {
        /// The file's name.
        file: String,
        /// Its length.
        found: u64,
        /// The recorded length.
        expected: u64,
    },
    /// A file does not match its recorded checksum.
    Checksum {
        /// The file's name.
        file: String,
    },
    /// The header lists no such file.
    NotListed {
        /// The file's name.
        file: &'static str,
    },
    /// The header is shorter than its fixed fields.
    HeaderTooShort,
    /// The header's magic bytes are missing.
    HeaderMagic,
    /// The header does not match its CRC.
    HeaderChecksum,
    /// The header ends inside a field.
    HeaderTruncated,
    /// Bytes follow the header's last field.
    HeaderTrailingBytes,
    /// A file name in the header is not UTF-8.
    NameNotUtf8,
    /// A row's alive flag is neither 0 nor 1.
    AliveFlag,
    /// A row's image format code is unknown.
    FormatCode,
    /// The row table's length is not the header's row count.
    RowTableLength,
    /// The vector table's length is not rows × dimension.
    VectorTableLength,
    /// The flat graph links do not decode.
    MalformedLinks,
    /// The flat graph links do not match the row table.
    LinksMismatch,
}

impl fmt::Display for SnapshotProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotProblem::Unreadable { file, cause } => {
                write!(f, "cannot read {}: {cause}", file.display())
            }
            SnapshotProblem::WrongLength {
                file,
                found,
                expected,
            } => write!(f, "{file} has {found} bytes, {expected} expected"),
            SnapshotProblem::Checksum { file } => write!(f, "{file} does not match its checksum"),
            SnapshotProblem::NotListed { file } => write!(f, "the header lists no {file}"),
            SnapshotProblem::HeaderTooShort => f.write_str("header too short"),
            SnapshotProblem::HeaderMagic => f.write_str("header magic bytes missing"),
            SnapshotProblem::HeaderChecksum => f.write_str("header checksum mismatch"),
            SnapshotProblem::HeaderTruncated => f.write_str("header truncated"),
            SnapshotProblem::HeaderTrailingBytes => f.write_str("trailing bytes in the header"),
            SnapshotProblem::NameNotUtf8 => f.write_str("a name is not UTF-8"),
            SnapshotProblem::AliveFlag => f.write_str("a row's alive flag is not 0 or 1"),
            SnapshotProblem::FormatCode => f.write_str("a row's format code is unknown"),
            SnapshotProblem::RowTableLength => {
                f.write_str("the row table's length does not match the header")
            }
            SnapshotProblem::VectorTableLength => {
                f.write_str("the vector table's length does not match the header")
            }
            SnapshotProblem::MalformedLinks => f.write_str("the graph links are malformed"),
            SnapshotProblem::LinksMismatch => {
                f.write_str("the graph links do not match the row table")
            }
        }
    }
}

fn corrupt(problem: SnapshotProblem) -> RebuildReason {
    RebuildReason::Corrupt { problem }
}

/// What a snapshot must match to be loaded.
pub(crate) struct Identity {
    pub db_id: [u8; 16],
    pub dim: usize,
    pub params: IndexParams,
    /// Where the loaded index keeps its exact vectors.
    pub memory: IndexMemory,
    /// The store's last sequence number.
    pub last_seq: u64,
    /// The sequence number through which the change log was pruned.
    pub log_pruned_through: u64,
}

/// The parsed header.
struct Header {
    version: u32,
    db_id: [u8; 16],
    dim: u32,
    m: u32,
    ef_construction: u32,
    watermark: u64,
    rows: u64,
    files: Vec<FileDigest>,
}

#[derive(Clone)]
struct FileDigest {
    name: String,
    len: u64,
    blake3: [u8; 32],
}

impl FileDigest {
    /// Reads the file in `dir` in blocks, handing each to `consume`, and
    /// checks the recorded size and digest: one pass, whatever the size.
    fn read_checked(
        &self,
        storage: &dyn Storage,
        dir: &Path,
        mut consume: impl FnMut(&[u8]),
    ) -> Result<(), RebuildReason> {
        let path = dir.join(&self.name);
        let unreadable = |e: std::io::Error| {
            corrupt(SnapshotProblem::Unreadable {
                file: path.clone(),
                cause: e.to_string(),
            })
        };
        let (mut file, actual) = storage.open(&path).map_err(unreadable)?;
        if actual != self.len {
            return Err(corrupt(SnapshotProblem::WrongLength {
                file: self.name.clone(),
                found: actual,
                expected: self.len,
            }));
        }
        let mut hasher = blake3::Hasher::new();
        // A multiple of 4, so that f32 consumers get whole values; large
        // enough for the digest to use every core on it.
        let mut block = vec![0u8; (4 << 20).min(self.len as usize)];
        let mut left = self.len;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            file.read_exact(&mut block[..n]).map_err(unreadable)?;
            hasher.update_rayon(&block[..n]);
            consume(&block[..n]);
            left -= n as u64;
        }
        if *hasher.finalize().as_bytes() != self.blake3 {
            return Err(corrupt(SnapshotProblem::Checksum {
                file: self.name.clone(),
            }));
        }
        Ok(())
    }

    /// The file's bytes, checked.
    fn read(&self, storage: &dyn Storage, dir: &Path) -> Result<Vec<u8>, RebuildReason> {
        let mut bytes = Vec::new();
        self.read_checked(storage, dir, |block| {
            // Only once the file is known to have the recorded length: a
            // damaged header must not make us allocate what it claims.
            if bytes.is_empty() {
                bytes.reserve_exact(self.len as usize);
            }
            bytes.extend_from_slice(block);
        })?;
        Ok(bytes)
    }
}

impl Header {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.db_id);
        out.extend_from_slice(&self.dim.to_le_bytes());
        out.extend_from_slice(&self.m.to_le_bytes());
        out.extend_from_slice(&self.ef_construction.to_le_bytes());
        out.extend_from_slice(&self.watermark.to_le_bytes());
        out.extend_from_slice(&self.rows.to_le_bytes());
        out.extend_from_slice(&(self.files.len() as u16).to_le_bytes());
        for file in &self.files {
            put_str(&mut out, &file.name);
            out.extend_from_slice(&file.len.to_le_bytes());
            out.extend_from_slice(&file.blake3);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Header, RebuildReason> {
        let body_len = bytes
            .len()
            .checked_sub(4)
            .ok_or_else(|| corrupt(SnapshotProblem::HeaderTooShort))?;
        if bytes.len() < MAGIC.len() + 4 || bytes[..MAGIC.len()] != MAGIC {
            return Err(corrupt(SnapshotProblem::HeaderMagic));
        }
        let crc = u32::from_le_bytes(bytes[body_len..].try_into().expect("4 bytes"));
        if crc != crc32fast::hash(&bytes[..body_len]) {
            return Err(corrupt(SnapshotProblem::HeaderChecksum));
        }
        let mut r = Reader(&bytes[MAGIC.len()..body_len]);
        let version = r.u32()?;
        if version != SNAPSHOT_FORMAT_VERSION && version != HNSW_RS_FORMAT {
            return Err(RebuildReason::UnsupportedVersion { found: version });
        }
        let header = Header {
            version,
            db_id: r.array()?,
            dim: r.u32()?,
            m: r.u32()?,
            ef_construction: r.u32()?,
            watermark: r.u64()?,
            rows: r.u64()?,
            files: {
                if version == HNSW_RS_FORMAT {
                    // The dump's basename: the dump is not read.
                    r.str()?;
                }
                let count = r.u16()?;
                (0..count)
                    .map(|_| {
                        Ok(FileDigest {
                            name: r.str()?,
                            len: r.u64()?,
                            blake3: r.array()?,
                        })
                    })
                    .collect::<Result<_, RebuildReason>>()?
            },
        };
        if !r.0.is_empty() {
            return Err(corrupt(SnapshotProblem::HeaderTrailingBytes));
        }
        Ok(header)
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A little-endian cursor that reports truncation as corruption.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], RebuildReason> {
        if self.0.len() < n {
            return Err(corrupt(SnapshotProblem::HeaderTruncated));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], RebuildReason> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }
    fn u16(&mut self) -> Result<u16, RebuildReason> {
        self.array().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Result<u32, RebuildReason> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, RebuildReason> {
        self.array().map(u64::from_le_bytes)
    }
    fn str(&mut self) -> Result<String, RebuildReason> {
        let len = self.u16()? as usize;
        String::from_utf8(self.take(len)?.to_vec())
            .map_err(|_| corrupt(SnapshotProblem::NameNotUtf8))
    }
}

fn encode_row(row: &Row, out: &mut Vec<u8>) {
    out.extend_from_slice(&row.id.0.to_le_bytes());
    out.extend_from_slice(&row.vector_seq.to_le_bytes());
    out.push(u8::from(row.alive));
    out.push(row.attrs.format.code());
    out.extend_from_slice(&row.attrs.width.to_le_bytes());
    out.extend_from_slice(&row.attrs.height.to_le_bytes());
    out.extend_from_slice(&row.attrs.byte_size.to_le_bytes());
    out.extend_from_slice(&row.attrs.mtime.0.to_le_bytes());
    out.extend_from_slice(&row.attrs.added.0.to_le_bytes());
}

fn decode_row(bytes: &[u8]) -> Result<Row, RebuildReason> {
    let mut r = Reader(bytes);
    let id = ImageId(r.u64()?);
    let vector_seq = r.u64()?;
    let alive = match r.array::<1>()?[0] {
        0 => false,
        1 => true,
        _ => return Err(corrupt(SnapshotProblem::AliveFlag)),
    };
    let format = ImageFormat::from_code(r.array::<1>()?[0])
        .ok_or_else(|| corrupt(SnapshotProblem::FormatCode))?;
    Ok(Row {
        id,
        vector_seq,
        alive,
        attrs: RowAttrs {
            format,
            width: r.u32()?,
            height: r.u32()?,
            byte_size: r.u64()?,
            mtime: Timestamp(r.u64()? as i64),
            added: Timestamp(r.u64()? as i64),
        },
    })
}

/// Parses a snapshot header (for the fuzz targets).
#[cfg(feature = "fuzzing")]
pub(crate) fn decode_header(bytes: &[u8]) -> Result<(), RebuildReason> {
    Header::decode(bytes).map(|_| ())
}

/// Wraps a failed file operation of a snapshot write.
fn io(path: impl AsRef<Path>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.as_ref().to_path_buf();
    move |source| SnapshotError::Io { path, source }.into()
}

/// Writes `chunks` to a new file at `path` and fsyncs it; returns its digest.
fn write_synced(
    storage: &dyn Storage,
    path: &Path,
    chunks: impl IntoIterator<Item = Vec<u8>>,
) -> Result<FileDigest> {
    let mut out = storage.create(path).map_err(io(path))?;
    let mut hasher = blake3::Hasher::new();
    let mut len = 0u64;
    for chunk in chunks {
        hasher.update(&chunk);
        len += chunk.len() as u64;
        out.write_all(&chunk).map_err(io(path))?;
    }
    out.sync().map_err(io(path))?;
    Ok(FileDigest {
        name: file_name(path),
        len,
        blake3: *hasher.finalize().as_bytes(),
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("a file")
        .to_string_lossy()
        .into_owned()
}

/// Writes a snapshot of `frozen` (a view of `index`) into `index_dir` and
/// removes older ones. Writes to the index go on meanwhile: `frozen` holds
/// the graph only while its links are copied, and the vectors of its rows
/// never change. Returns the snapshot's size in bytes.
pub(crate) fn write(
    storage: &dyn Storage,
    index_dir: &Path,
    index: &VectorIndex,
    frozen: Frozen<'_>,
    db_id: [u8; 16],
) -> Result<u64> {
    let watermark = frozen.watermark;
    storage.create_dir_all(index_dir).map_err(io(index_dir))?;
    let tmp = index_dir.join(format!(
        "{TMP_PREFIX}{watermark:016x}-{}",
        std::process::id()
    ));
    if storage.exists(&tmp) {
        storage.remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    storage.create_dir_all(&tmp).map_err(io(&tmp))?;

    let (rows, flat) = frozen.links();
    let mut files = Vec::new();
    let row_chunks = rows.chunks(16384).map(|rows| {
        let mut out = Vec::with_capacity(rows.len() * ROW_BYTES);
        rows.iter().for_each(|row| encode_row(row, &mut out));
        out
    });
    files.push(write_synced(storage, &tmp.join(ROWS_FILE), row_chunks)?);
    // The frozen rows' vectors are read a block at a time, each under a
    // short read lock, so searches and writes are never held up for long.
    let dim = index.dim();
    let block = (1 << 18) / dim.max(1);
    let vector_chunks = (0..rows.len()).step_by(block.max(1)).map(|start| {
        let end = (start + block.max(1)).min(rows.len());
        let rows = index.read().vectors.copy_rows(start..end);
        rows.iter()
            .flat_map(|x| x.to_le_bytes())
            .collect::<Vec<u8>>()
    });
    files.push(write_synced(
        storage,
        &tmp.join(VECTORS_FILE),
        vector_chunks,
    )?);
    files.push(write_synced(
        storage,
        &tmp.join(FLAT_FILE),
        [flat.encode()],
    )?);

    let params = index.params();
    let header = Header {
        version: SNAPSHOT_FORMAT_VERSION,
        db_id,
        dim: dim as u32,
        m: params.m as u32,
        ef_construction: params.ef_construction as u32,
        watermark,
        rows: rows.len() as u64,
        files,
    };
    let total: u64 = header.files.iter().map(|f| f.len).sum();
    write_synced(storage, &tmp.join(HEADER_FILE), [header.encode()])?;
    storage.sync_dir(&tmp).map_err(io(&tmp))?;

    let target = index_dir.join(format!("{DIR_PREFIX}{watermark:016x}"));
    if storage.exists(&target) {
        storage.remove_dir_all(&target).map_err(io(&target))?;
    }
    storage.rename(&tmp, &target).map_err(io(&target))?;
    storage.sync_dir(index_dir).map_err(io(index_dir))?;
    if index.memory() == IndexMemory::Compact {
        // The rows just written are served from the file from now on. Not
        // mapping them only costs memory: the snapshot itself is done.
        let path = target.join(VECTORS_FILE);
        let mapped = storage
            .map(&path)
            .map(|map| index.map_snapshot_vectors(map, rows.len()));
        if !matches!(mapped, Ok(true)) {
            tracing::warn!(
                "{}: the compact index keeps its vectors in memory: {mapped:?}",
                path.display()
            );
        }
    }
    remove_others(storage, index_dir, &target)?;
    Ok(total)
}

/// Removes every snapshot and temporary directory except `keep`.
fn remove_others(storage: &dyn Storage, index_dir: &Path, keep: &Path) -> Result<()> {
    for path in storage.list(index_dir).map_err(io(index_dir))? {
        let name = file_name(&path);
        if path != keep && (name.starts_with(DIR_PREFIX) || name.starts_with(TMP_PREFIX)) {
            storage.remove_dir_all(&path).map_err(io(&path))?;
        }
    }
    Ok(())
}

/// The newest snapshot directory, if any.
fn newest(storage: &dyn Storage, index_dir: &Path) -> Option<PathBuf> {
    let entries = storage.list(index_dir).ok()?;
    entries
        .into_iter()
        .filter_map(|path| {
            let name = file_name(&path);
            let watermark = u64::from_str_radix(name.strip_prefix(DIR_PREFIX)?, 16).ok()?;
            Some((watermark, path))
        })
        .max_by_key(|(watermark, _)| *watermark)
        .map(|(_, path)| path)
}

/// Size in bytes of the current snapshot.
pub(crate) fn size_on_disk(storage: &dyn Storage, index_dir: &Path) -> u64 {
    newest(storage, index_dir)
        .and_then(|dir| fs::read_dir(dir).ok())
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Loads the newest snapshot in `index_dir`, after checking that it belongs
/// to this database, matches its parameters, covers no more than the store
/// holds and no less than its change log can replay, and that every file has its recorded size and digest.
pub(crate) fn load(
    storage: &Arc<dyn Storage>,
    index_dir: &Path,
    identity: &Identity,
) -> Result<VectorIndex, RebuildReason> {
    let dir = newest(&**storage, index_dir).ok_or(RebuildReason::NoSnapshot)?;
    let read = |name: &str| {
        let path = dir.join(name);
        fsio::read(&**storage, &path).map_err(|e| {
            corrupt(SnapshotProblem::Unreadable {
                file: path.clone(),
                cause: e.to_string(),
            })
        })
    };
    let header = Header::decode(&read(HEADER_FILE)?)?;
    if header.db_id != identity.db_id {
        return Err(RebuildReason::ForeignDatabase);
    }
    if header.dim as usize != identity.dim
        || header.m as usize != identity.params.m
        || header.ef_construction as usize != identity.params.ef_construction
    {
        return Err(RebuildReason::ParameterMismatch);
    }
    if header.watermark > identity.last_seq {
        return Err(RebuildReason::AheadOfStore {
            watermark: header.watermark,
            last_seq: identity.last_seq,
        });
    }
    if header.watermark < identity.log_pruned_through {
        return Err(RebuildReason::OlderThanLog {
            watermark: header.watermark,
            pruned_through: identity.log_pruned_through,
        });
    }
    let digest = |name: &'static str| {
        header
            .files
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| corrupt(SnapshotProblem::NotListed { file: name }))
    };
    let dim = identity.dim;
    let rows_bytes = digest(ROWS_FILE)?.read(&**storage, &dir)?;
    if Some(rows_bytes.len() as u64) != header.rows.checked_mul(ROW_BYTES as u64) {
        return Err(corrupt(SnapshotProblem::RowTableLength));
    }
    let rows = rows_bytes
        .chunks_exact(ROW_BYTES)
        .map(decode_row)
        .collect::<Result<Vec<_>, _>>()?;
    let vectors = load_vectors(
        storage,
        &dir,
        digest(VECTORS_FILE)?,
        rows.len(),
        dim,
        identity.memory,
    )?;
    let flat = FlatGraph::decode(
        &digest(FLAT_FILE)?.read(&**storage, &dir)?,
        header.version != HNSW_RS_FORMAT,
    )
    .ok_or_else(|| corrupt(SnapshotProblem::MalformedLinks))?;
    if flat.len() != rows.len() || flat.m != identity.params.m {
        return Err(corrupt(SnapshotProblem::LinksMismatch));
    }
    Ok(VectorIndex::from_snapshot(
        dim,
        identity.params,
        identity.memory,
        rows,
        vectors,
        flat,
        header.watermark,
    ))
}

/// Reads `vectors.f32` once: checks its digest, quantizes its rows, and
/// keeps them in memory (resident) or maps the file (compact).
fn load_vectors(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    digest: &FileDigest,
    rows: usize,
    dim: usize,
    memory: IndexMemory,
) -> Result<(Vectors, QuantizedRows), RebuildReason> {
    if Some(digest.len) != (rows as u64).checked_mul(dim as u64 * 4) {
        return Err(corrupt(SnapshotProblem::VectorTableLength));
    }
    // A big-endian target cannot serve the little-endian file in place.
    let map = memory == IndexMemory::Compact && cfg!(target_endian = "little");
    let mut codes: QuantizedRows = (Vec::new(), Vec::new());
    // Resident: every row, converted once, in the array the index keeps.
    // Compact: only the rows of the block at hand.
    let mut floats = Vec::<f32>::new();
    let mut quantized = 0;
    digest.read_checked(&**storage, dir, |block| {
        // Reserved only once the file is known to have the recorded length,
        // as in `FileDigest::read`.
        if codes.0.capacity() == 0 {
            codes.0.reserve_exact(rows * dim);
            codes.1.reserve_exact(rows);
            if !map {
                floats.reserve_exact(rows * dim);
            }
        }
        floats.extend(
            block
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))),
        );
        // Blocks need not end on a row: the rest waits for the next one.
        let whole = floats.len() - floats.len() % dim.max(1);
        quantize_rows_onto(&floats[quantized..whole], dim, &mut codes);
        if map {
            floats.drain(..whole);
        } else {
            quantized = whole;
        }
    })?;
    let vectors = if map {
        let path = dir.join(VECTORS_FILE);
        let unreadable = |cause: String| {
            corrupt(SnapshotProblem::Unreadable {
                file: path.clone(),
                cause,
            })
        };
        let file = storage.map(&path).map_err(|e| unreadable(e.to_string()))?;
        Vectors::mapped(dim, file, rows)
            .ok_or_else(|| unreadable("the mapping does not hold the rows".into()))?
    } else {
        Vectors::in_memory(dim, floats)
    };
    Ok((vectors, codes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_detects_damage() {
        let header = Header {
            version: SNAPSHOT_FORMAT_VERSION,
            db_id: [9; 16],
            dim: 512,
            m: 16,
            ef_construction: 200,
            watermark: 42,
            rows: 3,
            files: vec![FileDigest {
                name: "rows.bin".into(),
                len: 150,
                blake3: [1; 32],
            }],
        };
        let bytes = header.encode();
        let back = Header::decode(&bytes).unwrap();
        assert_eq!((back.watermark, back.rows, back.files[0].len), (42, 3, 150));
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x40;
            assert!(
                Header::decode(&damaged).is_err(),
                "flipped byte {i} went unnoticed"
            );
        }
        for len in 0..bytes.len() {
            assert!(
                Header::decode(&bytes[..len]).is_err(),
                "truncation to {len} went unnoticed"
            );
        }
    }

    #[test]
    fn rows_round_trip() {
        let row = Row {
            id: ImageId(u64::MAX - 1),
            vector_seq: 77,
            alive: false,
            attrs: RowAttrs {
                format: ImageFormat::Tiff,
                width: 4000,
                height: 3000,
                byte_size: 5 << 30,
                mtime: Timestamp(-5),
                added: Timestamp(1_700_000_000_000_000_000),
            },
        };
        let mut bytes = Vec::new();
        encode_row(&row, &mut bytes);
        assert_eq!(bytes.len(), ROW_BYTES);
        assert_eq!(decode_row(&bytes).unwrap(), row);
    }
}
