//! Export and import of embeddings in the layout clip-retrieval writes and
//! LAION ships, so that vectors computed elsewhere load without
//! re-encoding and an imgdb database can be read with numpy and pyarrow
//! (or by autofaiss and clip-retrieval's own tools).
//!
//! ```text
//! DIR/img_emb/img_emb_K.npy            [N_K, dim] float32 (float16 accepted on import)
//! DIR/metadata/metadata_K.parquet      N_K rows, row i describes vector i
//! DIR/metadata/metadata_K.jsonl        the same as JSON Lines (read on import
//!                                      when there is no Parquet file: exports
//!                                      of formats 1 and 2)
//! DIR/imgdb_export.json                the embedding space (written on export,
//!                                      checked on import when present)
//! ```
//! Layout and columns: `schema/cli.md` ("Export layout").
//!
//! Both directions stream. Export reads the records in id order and writes
//! shards of at most [`ExportOptions::shard_rows`] rows, under `.partial`
//! names that import never reads, renamed only once all are complete, the
//! manifest last: a cancelled or failed export leaves any earlier export in
//! the folder as it was. Import reads vectors a chunk of rows at a time
//! (`npy.rs`) and Parquet a row group at a time (`metadata.rs`), writing
//! the store in batches.
//!
//! Rows from elsewhere have no local file: their record's path is their URL
//! (or key), and their URL and caption are kept as an [`ImageSource`] in the
//! store's `sources` tree, committed with their records
//! ([`WriteOp::SetSource`](crate::WriteOp::SetSource)).

mod metadata;
mod npy;

use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cancel::CancelToken;
use crate::db::{Db, NewImage, WriteBatch, WriteOp};
use crate::error::{Error, ExchangeError, ExchangeProblem, Result};
use crate::model::Encoder;
use crate::space::{EmbeddingSpace, Fingerprint};
use crate::store::record::{ImageRecord, ImageSource, Tag};
use crate::types::{ContentHash, ImageFormat, ModelVariant, Timestamp};
use metadata::{Metadata, MetadataWriter};
use npy::NpyRows;

/// The manifest's format version: 3 writes Parquet metadata; 1 and 2 wrote
/// JSON Lines, which import still reads.
const EXPORT_FORMAT_VERSION: u32 = 3;
const MANIFEST: &str = "imgdb_export.json";

/// Rows written to the store per batch on import, and read from a `.npy`
/// file per chunk.
const IMPORT_BATCH_ROWS: usize = 1000;

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

/// How an export runs. Defaults: shards of 65 536 rows (128 MiB of
/// float32 vectors at dimension 512), never cancelled.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// The most rows of one `img_emb_K.npy` / `metadata_K.parquet` pair (at
    /// least 1). Readers that load a whole shard at once (numpy's
    /// `np.load`, not imgdb's import, which streams) need this much memory.
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
    dir.join("metadata")
        .join(format!("metadata_{shard}.parquet"))
}

/// The metadata files an export of an older format (or another tool) may
/// have left beside shard `shard`'s: import prefers Parquet, so a stale
/// JSON Lines file must not survive an export either.
fn stale_metadata_path(dir: &Path, shard: usize) -> PathBuf {
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
    fn finish(self, header: &[u8]) -> Result<()> {
        let io = Error::io(&self.partial);
        let finished = self
            .writer
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|mut file| {
                file.rewind()?;
                file.write_all(header)?;
                file.sync_all()
            });
        finished.map_err(io)
    }
}

/// The shard being written: its vectors and its metadata rows.
struct Shard {
    rows: usize,
    embeddings: ShardWriter,
    metadata: MetadataWriter,
}

impl Shard {
    /// Creates shard `index`, adding its final paths to `paths`.
    fn create(dir: &Path, index: usize, dim: usize, paths: &mut Vec<PathBuf>) -> Result<Shard> {
        let (emb_path, meta_path) = (embeddings_path(dir, index), metadata_path(dir, index));
        let mut embeddings = ShardWriter::create(&emb_path)?;
        paths.push(emb_path);
        let metadata = MetadataWriter::create(&partial(&meta_path))?;
        paths.push(meta_path);
        embeddings.write(&npy::header(0, dim))?;
        Ok(Shard {
            rows: 0,
            embeddings,
            metadata,
        })
    }

    fn push(
        &mut self,
        record: &ImageRecord,
        source: Option<&ImageSource>,
        dim: usize,
    ) -> Result<()> {
        if record.vector.len() != dim {
            return Err(Error::DimensionMismatch {
                expected: dim,
                found: record.vector.len(),
            });
        }
        self.metadata.push(record, source)?;
        let bytes: Vec<u8> = record.vector.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.embeddings.write(&bytes)?;
        self.rows += 1;
        Ok(())
    }

    fn finish(self, dim: usize) -> Result<()> {
        self.embeddings.finish(&npy::header(self.rows, dim))?;
        self.metadata.finish()
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
        let record = record?;
        shard.push(&record, db.source(record.id)?.as_ref(), dim)?;
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
            let stale = [
                embeddings_path(dir, stale),
                metadata_path(dir, stale),
                stale_metadata_path(dir, stale),
            ];
            if !stale.iter().any(|p| p.exists()) {
                break;
            }
            for path in stale.iter().filter(|p| p.exists()) {
                std::fs::remove_file(path).map_err(Error::io(path))?;
            }
        }
        // A JSON Lines file of an older export beside one of ours would be
        // ignored by import, but misleads a reader of the folder.
        for shard in 0..shards {
            let old = stale_metadata_path(dir, shard);
            if old.exists() {
                std::fs::remove_file(&old).map_err(Error::io(&old))?;
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

    /// [`import_with`](Db::import_with) without progress reports.
    pub fn import(&self, encoder: &Encoder, dir: &Path) -> Result<usize> {
        self.import_with(encoder, dir, |_, _| {})
    }

    /// Loads `img_emb/img_emb_K.npy` (float32 or float16 `[N, dim]`) with
    /// `metadata/metadata_K.parquet` (preferred) or `metadata_K.jsonl`, for
    /// K = 0, 1, … while they exist: an imgdb export, or LAION /
    /// clip-retrieval shards. Returns the number of rows imported.
    ///
    /// The vectors must be of the encoder's space: the dimension is checked
    /// against every shard before anything is written, the fingerprint when
    /// `dir` has imgdb's manifest (shards from elsewhere carry none: the
    /// caller names their model by the encoder). Each vector is
    /// L2-normalised on the way in (LAION's already are; a vector with NaN,
    /// an infinity or no length is refused, naming its file and row). A row
    /// is identified by `image_path`, else its `url`, else its `key`; its
    /// URL, caption and key are kept as its [`ImageSource`]
    /// ([`Db::source`], [`QueryHit::source`](crate::QueryHit::source)).
    ///
    /// Streaming: vectors are read 1000 rows at a time and
    /// Parquet a row group at a time, and rows are written in batches of as
    /// many, so memory does not grow with a shard's size. Importing again is
    /// harmless: a row already present (same path and identity) is not
    /// added twice, so an import that failed or was killed midway can simply
    /// be run again. `progress` gets (rows done, rows in all shards) after
    /// each batch.
    pub fn import_with(
        &self,
        encoder: &Encoder,
        dir: &Path,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<usize> {
        self.check_space(encoder.space())?;
        self.check_manifest(dir)?;
        // Every shard's header first: a wrong dimension anywhere is refused
        // before anything is written.
        let mut shards = Vec::new();
        for shard in 0.. {
            let path = embeddings_path(dir, shard);
            if !path.is_file() {
                if shard == 0 {
                    return Err(Error::io(&path)(std::io::ErrorKind::NotFound.into()));
                }
                break;
            }
            let vectors = NpyRows::open(&path)?;
            let space = encoder.space();
            if vectors.dim() != space.dim as usize {
                return Err(ExchangeError::Dimension {
                    path,
                    found: vectors.dim(),
                    expected: space.dim as usize,
                    model: space.model_id.clone(),
                }
                .into());
            }
            let meta_path = metadata::find(dir, shard).ok_or_else(|| {
                Error::io(&metadata_path(dir, shard))(std::io::ErrorKind::NotFound.into())
            })?;
            shards.push((path, meta_path));
        }
        let total = shards
            .iter()
            .map(|(path, _)| NpyRows::open(path).map(|v| v.rows()))
            .sum::<Result<usize>>()?;
        let mut importer = Importer {
            db: self,
            space: encoder.space(),
            batch: WriteBatch::new(),
            done: 0,
            total,
            progress: &mut progress,
        };
        for (emb_path, meta_path) in shards {
            importer.shard(&emb_path, &meta_path)?;
            // A shard's last rows are committed with it: a later shard's
            // failure keeps the shards before it.
            importer.flush()?;
        }
        Ok(importer.done)
    }

    /// Checks imgdb's manifest in `dir`, when there is one, against this
    /// database's space.
    fn check_manifest(&self, dir: &Path) -> Result<()> {
        let manifest_path = dir.join(MANIFEST);
        if !manifest_path.is_file() {
            return Ok(());
        }
        let text = std::fs::read_to_string(&manifest_path).map_err(Error::io(&manifest_path))?;
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
        })
    }
}

/// An import under way: the batch being filled.
struct Importer<'a, P: FnMut(usize, usize)> {
    db: &'a Db,
    space: &'a EmbeddingSpace,
    batch: WriteBatch,
    done: usize,
    total: usize,
    progress: &'a mut P,
}

impl<P: FnMut(usize, usize)> Importer<'_, P> {
    /// Imports one shard: its metadata rows paired with its vectors, read a
    /// chunk at a time.
    fn shard(&mut self, emb_path: &Path, meta_path: &Path) -> Result<()> {
        let mut vectors = NpyRows::open(emb_path)?;
        let dim = vectors.dim();
        let (mut chunk, mut at, mut row) = (Vec::new(), 0, 0u64);
        metadata::for_each_row(meta_path, |meta| {
            if at == chunk.len() {
                vectors.next_chunk(IMPORT_BATCH_ROWS, &mut chunk)?;
                at = 0;
            }
            let vector = chunk
                .get(at..at + dim)
                .ok_or_else(|| ExchangeError::Inconsistent {
                    path: emb_path.to_path_buf(),
                    problem: ExchangeProblem::FewerVectors,
                })?;
            at += dim;
            let bad = |problem| ExchangeError::BadVector {
                path: emb_path.to_path_buf(),
                row,
                problem,
            };
            if vector.iter().any(|x| !x.is_finite()) {
                return Err(bad(crate::error::VectorProblem::NotFinite).into());
            }
            if vector.iter().all(|&x| x == 0.0) {
                return Err(bad(crate::error::VectorProblem::Zero).into());
            }
            let path = meta.identity().ok_or_else(|| ExchangeError::NoIdentity {
                path: meta_path.to_path_buf(),
                row,
            })?;
            push_import(&mut self.batch, path, meta, vector.to_vec());
            row += 1;
            self.done += 1;
            if self.batch.len() >= IMPORT_BATCH_ROWS {
                self.flush()?;
            }
            Ok(())
        })?;
        if at < chunk.len() || vectors.remaining() > 0 {
            return Err(ExchangeError::Inconsistent {
                path: meta_path.to_path_buf(),
                problem: ExchangeProblem::FewerLines,
            }
            .into());
        }
        Ok(())
    }

    /// Writes the batch: its rows with their sources, in one commit.
    fn flush(&mut self) -> Result<()> {
        self.db.write(self.space, std::mem::take(&mut self.batch))?;
        (self.progress)(self.done, self.total);
        Ok(())
    }
}

/// The operations importing one row: the image, then its other files.
fn push_import(batch: &mut WriteBatch, path: PathBuf, meta: Metadata, vector: Vec<f32>) {
    let source = meta.source().map(|source| WriteOp::SetSource {
        path: path.clone(),
        source,
    });
    let content_hash = meta
        .content_hash
        .as_deref()
        .and_then(hex32)
        .map(ContentHash)
        // Vectors from elsewhere have no file bytes: their identity is their
        // path (a LAION row's URL or key).
        .unwrap_or_else(|| ContentHash::of(crate::store::record::path_to_bytes(&path).as_slice()));
    let format = meta
        .format
        .as_deref()
        .and_then(ImageFormat::from_name)
        .unwrap_or(ImageFormat::Other);
    let image = NewImage {
        path,
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
    // In the image's own commit: a crash cannot leave it without its source.
    if let Some(source) = source {
        batch.push(source);
    }
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
