//! Export and import of embeddings in the layout clip-retrieval writes, so
//! that vectors computed elsewhere (LAION's, say) load without re-encoding
//! and an imgdb database can be moved or inspected with numpy.
//!
//! ```text
//! DIR/img_emb/img_emb_K.npy        [N_K, dim] float32 (float16 accepted on import)
//! DIR/metadata/metadata_K.jsonl    N_K lines, row i describes vector i
//! DIR/imgdb_export.json            the embedding space (written on export,
//!                                  checked on import when present)
//! ```
//! Layout and fields: `schema/cli.md` ("Export layout"). clip-retrieval
//! writes Parquet metadata; imgdb reads and writes JSON Lines with the same
//! `image_path` column.
//!
//! Export streams: records are read in id order and written to shards of
//! at most [`ExportOptions::shard_rows`] rows, so its memory does not grow
//! with the database. Shards are written under `.partial` names, which
//! import never reads, and renamed only once all are complete, the manifest
//! last: a cancelled or failed export leaves any earlier export in the
//! folder as it was.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use ndarray::Array2;
use ndarray_npy::{ReadDataError, ReadNpyExt, ReadableElement};
use serde::{Deserialize, Serialize};

use crate::cancel::CancelToken;
use crate::db::{Db, NewImage, WriteBatch, WriteOp};
use crate::error::{Error, ExchangeError, ExchangeProblem, Result};
use crate::model::Encoder;
use crate::space::{EmbeddingSpace, Fingerprint};
use crate::store::record::{ImageRecord, Tag};
use crate::types::{ContentHash, ImageFormat, ModelVariant, Timestamp};

/// The manifest's format version.
const EXPORT_FORMAT_VERSION: u32 = 2;
const MANIFEST: &str = "imgdb_export.json";

/// One line of `metadata_*.jsonl`.
#[derive(Serialize, Deserialize)]
struct Metadata {
    image_path: PathBuf,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    other_paths: Vec<PathBuf>,
    #[serde(default)]
    content_hash: Option<String>,
    #[serde(default)]
    byte_size: u64,
    #[serde(default)]
    width: u32,
    #[serde(default)]
    height: u32,
    #[serde(default)]
    format: Option<String>,
    /// Nanoseconds since the epoch.
    #[serde(default)]
    mtime: i64,
    #[serde(default)]
    tags: Vec<TagLine>,
}

#[derive(Serialize, Deserialize)]
struct TagLine {
    label: String,
    score: f32,
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    format_version: u32,
    model_id: String,
    dim: u32,
    fingerprint: String,
    /// Since export format 2; format 1 exports are fp32.
    #[serde(default = "fp32_name")]
    variant: String,
    count: usize,
}

fn fp32_name() -> String {
    ModelVariant::Fp32.name().to_string()
}

/// A float16 element, as LAION ships its embeddings.
#[derive(Clone, Copy)]
struct F16(half::f16);

impl ReadableElement for F16 {
    fn read_to_end_exact_vec<R: std::io::Read>(
        mut reader: R,
        type_desc: &py_literal::Value,
        len: usize,
    ) -> std::result::Result<Vec<F16>, ReadDataError> {
        let big_endian = match type_desc {
            py_literal::Value::String(s) if s == "<f2" => false,
            py_literal::Value::String(s) if s == ">f2" => true,
            other => return Err(ReadDataError::WrongDescriptor(other.clone())),
        };
        let mut bytes = vec![0u8; len * 2];
        reader.read_exact(&mut bytes)?;
        if reader.read(&mut [0u8])? != 0 {
            return Err(ReadDataError::ExtraBytes(1));
        }
        Ok(bytes
            .chunks_exact(2)
            .map(|b| {
                let bits = if big_endian {
                    u16::from_be_bytes([b[0], b[1]])
                } else {
                    u16::from_le_bytes([b[0], b[1]])
                };
                F16(half::f16::from_bits(bits))
            })
            .collect())
    }
}

fn npy_error(path: &Path) -> impl Fn(ndarray_npy::ReadNpyError) -> Error + '_ {
    move |source| {
        ExchangeError::Npy {
            path: path.to_path_buf(),
            source: Box::new(source),
        }
        .into()
    }
}

/// Reads an `[N, dim]` float32 or float16 `.npy` file as float32.
fn read_embeddings(path: &Path) -> Result<Array2<f32>> {
    let open = || File::open(path).map_err(Error::io(path));
    match Array2::<f32>::read_npy(open()?) {
        Ok(array) => Ok(array),
        Err(ndarray_npy::ReadNpyError::WrongDescriptor(_)) => {
            let halves = Array2::<F16>::read_npy(open()?).map_err(npy_error(path))?;
            Ok(halves.mapv(|h| h.0.to_f32()))
        }
        Err(e) => Err(npy_error(path)(e)),
    }
}

/// How an export runs. Defaults: shards of 65 536 rows (128 MiB of
/// float32 vectors at dimension 512), never cancelled.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// The most rows of one `img_emb_K.npy` / `metadata_K.jsonl` pair (at
    /// least 1). Readers that load a whole shard at once, imgdb's import
    /// among them, need this much memory.
    pub shard_rows: usize,
    /// Cancelled from another thread to stop at the next record: the
    /// export's files are removed and the report says `cancelled`.
    pub cancel: CancelToken,
}

impl Default for ExportOptions {
    fn default() -> ExportOptions {
        ExportOptions {
            shard_rows: 65_536,
            cancel: CancelToken::new(),
        }
    }
}

/// What an export did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportReport {
    /// Images written (none when cancelled).
    pub images: usize,
    /// Shards written: `img_emb_0.npy` … (at least one, even when empty).
    pub shards: usize,
    /// Stopped by the cancel token: nothing of this export is left.
    pub cancelled: bool,
}

/// Version 1.0 `.npy` headers are padded to this length (a multiple of
/// 64, as numpy writes them) so that a shard's header, written first with
/// no rows, can be rewritten in place with the final count.
const NPY_HEADER_LEN: usize = 128;

/// The `.npy` header of a little-endian float32 `[rows, dim]` array.
fn npy_header(rows: usize, dim: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    let mut header = b"\x93NUMPY\x01\x00".to_vec();
    let len = u16::try_from(NPY_HEADER_LEN - 10).expect("a small header");
    header.extend_from_slice(&len.to_le_bytes());
    header.extend_from_slice(dict.as_bytes());
    // At most 87 bytes of dictionary for 64-bit counts: it always fits.
    assert!(header.len() < NPY_HEADER_LEN);
    header.resize(NPY_HEADER_LEN - 1, b' ');
    header.push(b'\n');
    header
}

/// The name a file is written under until the export is complete.
fn partial(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".partial");
    name.into()
}

fn embeddings_path(dir: &Path, shard: usize) -> PathBuf {
    dir.join("img_emb").join(format!("img_emb_{shard}.npy"))
}

fn metadata_path(dir: &Path, shard: usize) -> PathBuf {
    dir.join("metadata").join(format!("metadata_{shard}.jsonl"))
}

/// One file of the shard being written, under its partial name.
struct ShardWriter {
    partial: PathBuf,
    writer: BufWriter<File>,
}

impl ShardWriter {
    fn create(path: &Path) -> Result<ShardWriter> {
        let partial = partial(path);
        let file = File::create(&partial).map_err(Error::io(&partial))?;
        Ok(ShardWriter {
            writer: BufWriter::new(file),
            partial,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.writer
            .write_all(bytes)
            .map_err(Error::io(&self.partial))
    }

    /// Flushes, writes `header` over the file's start, and syncs, so that
    /// the rename publishes a complete file even after a crash.
    fn finish(self, header: Option<&[u8]>) -> Result<()> {
        let io = Error::io(&self.partial);
        let finished = self
            .writer
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|mut file| {
                if let Some(header) = header {
                    file.rewind()?;
                    file.write_all(header)?;
                }
                file.sync_all()
            });
        finished.map_err(io)
    }
}

/// The shard being written: its vectors and its metadata lines.
struct Shard {
    rows: usize,
    embeddings: ShardWriter,
    metadata: ShardWriter,
}

impl Shard {
    /// Creates shard `index`, adding its final paths to `paths`.
    fn create(dir: &Path, index: usize, dim: usize, paths: &mut Vec<PathBuf>) -> Result<Shard> {
        let (emb_path, meta_path) = (embeddings_path(dir, index), metadata_path(dir, index));
        let mut embeddings = ShardWriter::create(&emb_path)?;
        paths.push(emb_path);
        let metadata = ShardWriter::create(&meta_path)?;
        paths.push(meta_path);
        embeddings.write(&npy_header(0, dim))?;
        Ok(Shard {
            rows: 0,
            embeddings,
            metadata,
        })
    }

    fn push(&mut self, record: &ImageRecord, dim: usize) -> Result<()> {
        if record.vector.len() != dim {
            return Err(Error::DimensionMismatch {
                expected: dim,
                found: record.vector.len(),
            });
        }
        let mut line = serde_json::to_vec(&Metadata::of(record)).expect("serialisable");
        line.push(b'\n');
        self.metadata.write(&line)?;
        let bytes: Vec<u8> = record.vector.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.embeddings.write(&bytes)?;
        self.rows += 1;
        Ok(())
    }

    fn finish(self, dim: usize) -> Result<()> {
        self.embeddings.finish(Some(&npy_header(self.rows, dim)))?;
        self.metadata.finish(None)
    }
}

impl Metadata {
    fn of(record: &ImageRecord) -> Metadata {
        Metadata {
            image_path: record.path().to_path_buf(),
            other_paths: record.files[1..].iter().map(|f| f.path.clone()).collect(),
            content_hash: Some(record.content_hash.to_hex()),
            byte_size: record.byte_size,
            width: record.width,
            height: record.height,
            format: Some(record.format.name().to_string()),
            mtime: record.mtime().0,
            tags: record
                .tags
                .iter()
                .map(|t| TagLine {
                    label: t.label.clone(),
                    score: t.score,
                })
                .collect(),
        }
    }
}

/// Writes the shards of one export under their partial names, adding the
/// final names to `paths`; returns the number of images, `None` when
/// cancelled.
fn write_shards(
    db: &Db,
    dir: &Path,
    options: &ExportOptions,
    paths: &mut Vec<PathBuf>,
) -> Result<Option<usize>> {
    let dim = db.space().dim as usize;
    let shard_rows = options.shard_rows.max(1);
    // Import needs shard 0, even of an empty database.
    let mut shard = Shard::create(dir, 0, dim, paths)?;
    let mut images = 0;
    for record in db.records() {
        if options.cancel.is_cancelled() {
            return Ok(None);
        }
        if shard.rows == shard_rows {
            let next = Shard::create(dir, paths.len() / 2, dim, paths)?;
            std::mem::replace(&mut shard, next).finish(dim)?;
        }
        shard.push(&record?, dim)?;
        images += 1;
    }
    shard.finish(dim)?;
    Ok(Some(images))
}

impl Db {
    /// Writes every image's vector and metadata into `dir` (created) with
    /// the default [`ExportOptions`]; returns the number of images.
    pub fn export(&self, dir: &Path) -> Result<usize> {
        Ok(self.export_with(dir, &ExportOptions::default())?.images)
    }

    /// Writes every image's vector and metadata into `dir` (created), in
    /// shards of `options.shard_rows` rows, streaming: memory does not
    /// depend on the number of images. Files of an earlier export in `dir`
    /// are replaced only when this one completes.
    pub fn export_with(&self, dir: &Path, options: &ExportOptions) -> Result<ExportReport> {
        for d in [dir.join("img_emb"), dir.join("metadata")] {
            std::fs::create_dir_all(&d).map_err(Error::io(&d))?;
        }
        let mut paths = Vec::new();
        let images = match write_shards(self, dir, options, &mut paths) {
            Ok(Some(images)) => images,
            outcome => {
                // Best effort: the export's own error matters more than one
                // of this cleanup, and a leftover `.partial` file is inert.
                for path in &paths {
                    let _ = std::fs::remove_file(partial(path));
                }
                return outcome.map(|_| ExportReport {
                    cancelled: true,
                    ..ExportReport::default()
                });
            }
        };
        let shards = paths.len() / 2;
        // An earlier export's manifest must not describe a mix of its shards
        // and these: gone first, back last.
        let manifest_path = dir.join(MANIFEST);
        match std::fs::remove_file(&manifest_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io(&manifest_path)(e));
            }
            _ => {}
        }
        for path in &paths {
            std::fs::rename(partial(path), path).map_err(Error::io(path))?;
        }
        // Shards beyond ours are an earlier, larger export's: import would
        // read them as part of this one.
        for stale in shards.. {
            let stale = [embeddings_path(dir, stale), metadata_path(dir, stale)];
            if !stale.iter().any(|p| p.exists()) {
                break;
            }
            for path in stale.iter().filter(|p| p.exists()) {
                std::fs::remove_file(path).map_err(Error::io(path))?;
            }
        }
        let space = self.space();
        let manifest = Manifest {
            format_version: EXPORT_FORMAT_VERSION,
            model_id: space.model_id.clone(),
            dim: space.dim,
            fingerprint: space.fingerprint.to_hex(),
            variant: space.variant.name().to_string(),
            count: images,
        };
        let written = partial(&manifest_path);
        std::fs::write(
            &written,
            serde_json::to_vec_pretty(&manifest).expect("serialisable"),
        )
        .map_err(Error::io(&written))?;
        std::fs::rename(&written, &manifest_path).map_err(Error::io(&manifest_path))?;
        Ok(ExportReport {
            images,
            shards,
            cancelled: false,
        })
    }

    /// Loads `img_emb/img_emb_*.npy` with their `metadata/metadata_*.jsonl`
    /// from `dir`. The vectors must be of the encoder's space: the dimension
    /// is always checked, the fingerprint when `dir` has imgdb's manifest.
    /// Returns the number of images added.
    pub fn import(&self, encoder: &Encoder, dir: &Path) -> Result<usize> {
        self.check_space(encoder.space())?;
        let manifest_path = dir.join(MANIFEST);
        if manifest_path.is_file() {
            let text =
                std::fs::read_to_string(&manifest_path).map_err(Error::io(&manifest_path))?;
            let manifest: Manifest =
                serde_json::from_str(&text).map_err(|source| ExchangeError::Json {
                    path: manifest_path.clone(),
                    source,
                })?;
            let inconsistent = |problem| ExchangeError::Inconsistent {
                path: manifest_path.clone(),
                problem,
            };
            if manifest.format_version > EXPORT_FORMAT_VERSION {
                return Err(inconsistent(ExchangeProblem::NewerFormat {
                    found: manifest.format_version,
                    newest: EXPORT_FORMAT_VERSION,
                })
                .into());
            }
            let fingerprint = Fingerprint(
                hex32(&manifest.fingerprint)
                    .ok_or_else(|| inconsistent(ExchangeProblem::BadFingerprint))?,
            );
            let variant = ModelVariant::from_name(&manifest.variant)
                .ok_or_else(|| inconsistent(ExchangeProblem::BadVariant))?;
            self.check_space(&EmbeddingSpace {
                model_id: manifest.model_id,
                dim: manifest.dim,
                fingerprint,
                variant,
            })?;
        }
        let mut added = 0;
        for part in 0.. {
            let emb_path = dir.join("img_emb").join(format!("img_emb_{part}.npy"));
            if !emb_path.is_file() {
                if part == 0 {
                    return Err(Error::io(&emb_path)(std::io::ErrorKind::NotFound.into()));
                }
                break;
            }
            let embeddings = read_embeddings(&emb_path)?;
            let meta_path = dir.join("metadata").join(format!("metadata_{part}.jsonl"));
            let lines =
                BufReader::new(File::open(&meta_path).map_err(Error::io(&meta_path))?).lines();
            let mut rows = embeddings.outer_iter();
            let mut batch = WriteBatch::new();
            for line in lines {
                let line = line.map_err(Error::io(&meta_path))?;
                if line.trim().is_empty() {
                    continue;
                }
                let meta: Metadata =
                    serde_json::from_str(&line).map_err(|source| ExchangeError::Json {
                        path: meta_path.clone(),
                        source,
                    })?;
                let vector = rows.next().ok_or(ExchangeError::Inconsistent {
                    path: emb_path.clone(),
                    problem: ExchangeProblem::FewerVectors,
                })?;
                push_import(&mut batch, meta, vector.to_vec());
                if batch.len() >= 1000 {
                    self.write(encoder.space(), std::mem::take(&mut batch))?;
                }
            }
            if rows.next().is_some() {
                return Err(ExchangeError::Inconsistent {
                    path: meta_path,
                    problem: ExchangeProblem::FewerLines,
                }
                .into());
            }
            added += embeddings.nrows();
            self.write(encoder.space(), batch)?;
        }
        Ok(added)
    }
}

/// The operations importing one row: the image, then its other files.
fn push_import(batch: &mut WriteBatch, meta: Metadata, vector: Vec<f32>) {
    let content_hash = meta
        .content_hash
        .as_deref()
        .and_then(hex32)
        .map(ContentHash)
        // Vectors from elsewhere have no file bytes: their identity is their path.
        .unwrap_or_else(|| {
            ContentHash::of(crate::store::record::path_to_bytes(&meta.image_path).as_slice())
        });
    let format = meta
        .format
        .as_deref()
        .and_then(ImageFormat::from_name)
        .unwrap_or(ImageFormat::Other);
    let image = NewImage {
        path: meta.image_path,
        mtime: Timestamp(meta.mtime),
        content_hash,
        byte_size: meta.byte_size,
        width: meta.width,
        height: meta.height,
        format,
        tags: meta
            .tags
            .into_iter()
            .map(|t| Tag {
                label: t.label,
                score: t.score,
            })
            .collect(),
        vector,
    };
    let (mtime, vector) = (image.mtime, image.vector.clone());
    batch.insert(image);
    // Identical content: the other paths join the image inserted above.
    for path in meta.other_paths {
        batch.push(WriteOp::Insert(NewImage {
            path,
            mtime,
            content_hash,
            byte_size: meta.byte_size,
            width: meta.width,
            height: meta.height,
            format,
            tags: Vec::new(),
            vector: vector.clone(),
        }));
    }
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
