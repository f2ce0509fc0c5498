//! Export and import of embeddings in the layout clip-retrieval writes, so
//! that vectors computed elsewhere (LAION's, say) load without re-encoding
//! and an imgdb database can be moved or inspected with numpy.
//!
//! ```text
//! DIR/img_emb/img_emb_0.npy        [N, dim] float32 (float16 accepted on import)
//! DIR/metadata/metadata_0.jsonl    N lines, row i describes vector i
//! DIR/imgdb_export.json            the embedding space (written on export,
//!                                  checked on import when present)
//! ```
//! Layout and fields: `schema/cli.md` ("Export layout"). clip-retrieval
//! writes Parquet metadata; imgdb reads and writes JSON Lines with the same
//! `image_path` column.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use ndarray::Array2;
use ndarray_npy::{ReadDataError, ReadNpyExt, ReadableElement, WriteNpyExt};
use serde::{Deserialize, Serialize};

use crate::db::{Db, NewImage, WriteBatch, WriteOp};
use crate::error::{Error, Result};
use crate::model::Encoder;
use crate::space::{EmbeddingSpace, Fingerprint};
use crate::store::record::{ContentHash, ImageFormat, Tag, Timestamp};

/// The manifest's format version.
const EXPORT_FORMAT_VERSION: u32 = 1;
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
    count: usize,
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
    move |source| Error::Npy {
        path: path.to_path_buf(),
        source: Box::new(source),
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

impl Db {
    /// Writes every image's vector and metadata into `dir` (created); returns
    /// the number of images.
    pub fn export(&self, dir: &Path) -> Result<usize> {
        let (emb_dir, meta_dir) = (dir.join("img_emb"), dir.join("metadata"));
        for d in [&emb_dir, &meta_dir] {
            std::fs::create_dir_all(d).map_err(Error::io(d))?;
        }
        let meta_path = meta_dir.join("metadata_0.jsonl");
        let mut meta = BufWriter::new(File::create(&meta_path).map_err(Error::io(&meta_path))?);
        let dim = self.space().dim as usize;
        let mut vectors = Vec::new();
        let mut count = 0;
        for record in self.records() {
            let record = record?;
            let line = Metadata {
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
            };
            serde_json::to_writer(&mut meta, &line).map_err(|e| Error::io(&meta_path)(e.into()))?;
            meta.write_all(b"\n").map_err(Error::io(&meta_path))?;
            vectors.extend_from_slice(&record.vector);
            count += 1;
        }
        meta.flush().map_err(Error::io(&meta_path))?;
        let emb_path = emb_dir.join("img_emb_0.npy");
        let array = Array2::from_shape_vec((count, dim), vectors).expect("dim per record");
        let file = BufWriter::new(File::create(&emb_path).map_err(Error::io(&emb_path))?);
        array.write_npy(file).map_err(|source| Error::Npy {
            path: emb_path.clone(),
            source: Box::new(source),
        })?;
        let space = self.space();
        let manifest = Manifest {
            format_version: EXPORT_FORMAT_VERSION,
            model_id: space.model_id.clone(),
            dim: space.dim,
            fingerprint: space.fingerprint.to_hex(),
            count,
        };
        let manifest_path = dir.join(MANIFEST);
        std::fs::write(
            &manifest_path,
            serde_json::to_vec_pretty(&manifest).expect("serialisable"),
        )
        .map_err(Error::io(&manifest_path))?;
        Ok(count)
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
                serde_json::from_str(&text).map_err(|source| Error::ModelConfig {
                    path: manifest_path.clone(),
                    source,
                })?;
            let fingerprint = Fingerprint(hex32(&manifest.fingerprint).ok_or(Error::Corrupt {
                path: manifest_path.clone(),
                what: "export manifest",
                problem: "the fingerprint is not 64 hexadecimal digits",
            })?);
            self.check_space(&EmbeddingSpace {
                model_id: manifest.model_id,
                dim: manifest.dim,
                fingerprint,
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
                    serde_json::from_str(&line).map_err(|source| Error::ModelConfig {
                        path: meta_path.clone(),
                        source,
                    })?;
                let vector = rows.next().ok_or(Error::Corrupt {
                    path: emb_path.clone(),
                    what: "embeddings",
                    problem: "fewer vectors than metadata lines",
                })?;
                push_import(&mut batch, meta, vector.to_vec());
                if batch.len() >= 1000 {
                    self.write(encoder.space(), std::mem::take(&mut batch))?;
                }
            }
            if rows.next().is_some() {
                return Err(Error::Corrupt {
                    path: meta_path,
                    what: "metadata",
                    problem: "fewer metadata lines than vectors",
                });
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
