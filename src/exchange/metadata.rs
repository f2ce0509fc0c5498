//! The metadata of an export's rows: `metadata_K.parquet` (what
//! clip-retrieval and LAION ship, and what export writes) or
//! `metadata_K.jsonl` (what imgdb exported before export format 3), read a
//! row at a time, Parquet a row group at a time; and the Parquet writer of
//! export, which buffers one row group of rows.
//!
//! Columns are read by name, others ignored (LAION's `similarity`,
//! `status`, …); numbers are accepted in any integer or floating width and
//! may be null. A row is named by `image_path`, else `url`, else `key`:
//! at least one of these columns must exist, and each row must have one.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int32Type, Int64Type};
use parquet::errors::Result as ParquetResult;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::{SerializedColumnWriter, SerializedFileWriter};
use parquet::record::{Field, Row, reader::RowIter};
use parquet::schema::types::Type;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ExchangeError, Result};
use crate::store::record::{ImageRecord, ImageSource};

/// The columns read; any other is ignored.
const COLUMNS: [&str; 12] = [
    "image_path",
    "url",
    "key",
    "caption",
    "other_paths",
    "content_hash",
    "byte_size",
    "width",
    "height",
    "format",
    "mtime",
    "tags",
];

/// The columns that can name a row, in order of preference.
const IDENTITY: [&str; 3] = ["image_path", "url", "key"];

/// One row's metadata, whichever file it came from.
#[derive(Default, Deserialize)]
// A JSON line may leave out any field.
#[serde(default)]
pub(crate) struct Metadata {
    /// imgdb's path of the image (absent in LAION's shards).
    pub image_path: Option<PathBuf>,
    pub other_paths: Vec<PathBuf>,
    pub content_hash: Option<String>,
    pub byte_size: u64,
    pub width: u32,
    pub height: u32,
    pub format: Option<String>,
    /// Nanoseconds since the epoch.
    pub mtime: i64,
    pub tags: Vec<TagLine>,
    pub url: Option<String>,
    pub caption: Option<String>,
    pub key: Option<String>,
}

/// A tag as the metadata holds it (Parquet: in the JSON of `tags`).
#[derive(Serialize, Deserialize)]
pub(crate) struct TagLine {
    pub label: String,
    pub score: f32,
}

impl Metadata {
    /// The row's identity, the record's path: `image_path`, else the URL,
    /// else the key.
    pub fn identity(&self) -> Option<PathBuf> {
        self.image_path
            .clone()
            .or_else(|| self.url.clone().map(PathBuf::from))
            .or_else(|| self.key.clone().map(PathBuf::from))
    }

    /// Where the image comes from, when the row says.
    pub fn source(&self) -> Option<ImageSource> {
        let source = ImageSource {
            url: self.url.clone(),
            caption: self.caption.clone(),
            key: self.key.clone(),
        };
        (!source.is_empty()).then_some(source)
    }
}

/// The metadata file of shard `shard` in `dir`: Parquet when there is one,
/// else JSON Lines (`None` when neither exists).
pub(crate) fn find(dir: &Path, shard: usize) -> Option<PathBuf> {
    ["parquet", "jsonl"]
        .into_iter()
        .map(|ext| dir.join("metadata").join(format!("metadata_{shard}.{ext}")))
        .find(|path| path.is_file())
}

/// Calls `f` with each row of the metadata file at `path`, in order.
pub(crate) fn for_each_row(path: &Path, f: impl FnMut(Metadata) -> Result<()>) -> Result<()> {
    if path.extension().is_some_and(|e| e == "jsonl") {
        json_lines(path, f)
    } else {
        parquet_rows(path, f)
    }
}

fn json_lines(path: &Path, mut f: impl FnMut(Metadata) -> Result<()>) -> Result<()> {
    let file = File::open(path).map_err(Error::io(path))?;
    for line in BufReader::new(file).lines() {
        let line = line.map_err(Error::io(path))?;
        if line.trim().is_empty() {
            continue;
        }
        let meta = serde_json::from_str(&line).map_err(|source| ExchangeError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        f(meta)?;
    }
    Ok(())
}

fn parquet_error(path: &Path) -> impl Fn(parquet::errors::ParquetError) -> Error + '_ {
    move |source| {
        ExchangeError::Parquet {
            path: path.to_path_buf(),
            source,
        }
        .into()
    }
}

/// Runs one decoding step of the parquet crate on the file at `path`: a
/// file it cannot read may make it panic (habit 16: a dependency's panic
/// on a user's file is that file's error, never the end of the process).
fn guarded<T>(path: &Path, step: impl FnOnce() -> parquet::errors::Result<T>) -> Result<T> {
    crate::model::contained_as(
        || step().map_err(parquet_error(path)),
        |message| {
            ExchangeError::ParquetPanicked {
                path: path.to_path_buf(),
                message,
            }
            .into()
        },
    )
}

fn parquet_rows(path: &Path, mut f: impl FnMut(Metadata) -> Result<()>) -> Result<()> {
    let file = File::open(path).map_err(Error::io(path))?;
    let reader = guarded(path, || SerializedFileReader::new(file))?;
    let schema = reader.metadata().file_metadata().schema();
    let fields: Vec<_> = schema
        .get_fields()
        .iter()
        .filter(|field| COLUMNS.contains(&field.name()))
        .cloned()
        .collect();
    if !fields.iter().any(|field| IDENTITY.contains(&field.name())) {
        return Err(ExchangeError::NoIdentityColumn {
            path: path.to_path_buf(),
        }
        .into());
    }
    // Only the columns imgdb reads are decoded.
    let projection = guarded(path, || {
        Type::group_type_builder(schema.name())
            .with_fields(fields)
            .build()
    })?;
    let mut row_number = 0;
    // A row group at a time, each read through its own iterator: the
    // file-wide `RowIter` panics on a row group it cannot open.
    for group in 0..reader.num_row_groups() {
        let group = guarded(path, || reader.get_row_group(group))?;
        let mut rows = guarded(path, || {
            RowIter::from_row_group(Some(projection.clone()), group.as_ref())
        })?;
        // Decoding happens as rows are taken; `f` runs outside the guard.
        while let Some(row) = guarded(path, || rows.next().transpose())? {
            f(from_row(path, row_number, &row)?)?;
            row_number += 1;
        }
    }
    Ok(())
}

/// A Parquet row's metadata, lenient on numeric widths and nulls, strict on
/// types: a string column holding a number (but for `key`) is an error.
fn from_row(path: &Path, row: u64, values: &Row) -> Result<Metadata> {
    let wrong = |column: &str, expected| ExchangeError::ColumnType {
        path: path.to_path_buf(),
        row,
        column: column.to_string(),
        expected,
    };
    let mut meta = Metadata::default();
    for (name, field) in values.get_column_iter() {
        let name = name.as_str();
        match name {
            "image_path" | "url" | "caption" | "content_hash" | "format" => {
                let value = text(field).ok_or_else(|| wrong(name, "a string"))?;
                match name {
                    "image_path" => meta.image_path = value.map(PathBuf::from),
                    "url" => meta.url = value,
                    "caption" => meta.caption = value,
                    "content_hash" => meta.content_hash = value,
                    _ => meta.format = value,
                }
            }
            // clip-retrieval's keys are strings; a numbered key is kept as one.
            "key" => {
                meta.key = match field {
                    Field::Int(n) => Some(n.to_string()),
                    Field::Long(n) => Some(n.to_string()),
                    other => text(other).ok_or_else(|| wrong(name, "a string or integer"))?,
                }
            }
            "width" | "height" => {
                let value = count(field)
                    .and_then(|n| u32::try_from(n.unwrap_or(0)).ok())
                    .ok_or_else(|| wrong(name, "a pixel count"))?;
                if name == "width" {
                    meta.width = value;
                } else {
                    meta.height = value;
                }
            }
            "byte_size" => {
                meta.byte_size = count(field)
                    .ok_or_else(|| wrong(name, "a byte count"))?
                    .unwrap_or(0);
            }
            "mtime" => {
                meta.mtime = match field {
                    Field::Null => 0,
                    Field::Int(n) => i64::from(*n),
                    Field::Long(n) => *n,
                    _ => return Err(wrong(name, "integer nanoseconds").into()),
                }
            }
            "tags" | "other_paths" => {
                let Some(json) = text(field).ok_or_else(|| wrong(name, "a JSON string"))? else {
                    continue;
                };
                let parsed = |e| ExchangeError::Json {
                    path: path.to_path_buf(),
                    source: e,
                };
                if name == "tags" {
                    meta.tags = serde_json::from_str(&json).map_err(parsed)?;
                } else {
                    meta.other_paths = serde_json::from_str(&json).map_err(parsed)?;
                }
            }
            _ => {}
        }
    }
    Ok(meta)
}

/// A string value: `Some(None)` for null, `None` for another type.
fn text(field: &Field) -> Option<Option<String>> {
    match field {
        Field::Null => Some(None),
        Field::Str(s) => Some(Some(s.clone())),
        Field::Bytes(b) => b.as_utf8().ok().map(|s| Some(s.to_string())),
        _ => None,
    }
}

/// A non-negative count in any numeric width: `Some(None)` for null,
/// `None` for another type or a negative or fractional value.
fn count(field: &Field) -> Option<Option<u64>> {
    let n = match *field {
        Field::Null => return Some(None),
        Field::Byte(n) => u64::try_from(n).ok(),
        Field::Short(n) => u64::try_from(n).ok(),
        Field::Int(n) => u64::try_from(n).ok(),
        Field::Long(n) => u64::try_from(n).ok(),
        Field::UByte(n) => Some(u64::from(n)),
        Field::UShort(n) => Some(u64::from(n)),
        Field::UInt(n) => Some(u64::from(n)),
        Field::ULong(n) => Some(n),
        Field::Float(x) => whole(f64::from(x)),
        Field::Double(x) => whole(x),
        _ => None,
    };
    n.map(Some)
}

fn whole(x: f64) -> Option<u64> {
    (x >= 0.0 && x.fract() == 0.0 && x <= u64::MAX as f64).then_some(x as u64)
}

/// The schema export writes: imgdb's fields, and the source of imported
/// rows (null for images indexed from files).
const SCHEMA: &str = "message schema {
    REQUIRED BYTE_ARRAY image_path (UTF8);
    OPTIONAL BYTE_ARRAY url (UTF8);
    OPTIONAL BYTE_ARRAY caption (UTF8);
    OPTIONAL BYTE_ARRAY key (UTF8);
    REQUIRED BYTE_ARRAY content_hash (UTF8);
    REQUIRED INT64 byte_size;
    REQUIRED INT32 width;
    REQUIRED INT32 height;
    REQUIRED BYTE_ARRAY format (UTF8);
    REQUIRED INT64 mtime;
    REQUIRED BYTE_ARRAY tags (UTF8);
    REQUIRED BYTE_ARRAY other_paths (UTF8);
}";

/// Rows of one row group: what the writer buffers.
const ROW_GROUP_ROWS: usize = 8192;

/// The columns of the rows buffered for the next row group.
#[derive(Default)]
struct Columns {
    image_path: Vec<ByteArray>,
    /// url, caption, key: the non-null values and each row's definition level.
    source: [(Vec<ByteArray>, Vec<i16>); 3],
    content_hash: Vec<ByteArray>,
    byte_size: Vec<i64>,
    width: Vec<i32>,
    height: Vec<i32>,
    format: Vec<ByteArray>,
    mtime: Vec<i64>,
    tags: Vec<ByteArray>,
    other_paths: Vec<ByteArray>,
}

/// Writes a string column's values (`levels`: each row's definition level,
/// for a nullable column).
fn strings<'a>(
    values: &'a [ByteArray],
    levels: Option<&'a [i16]>,
) -> impl Fn(&mut SerializedColumnWriter<'_>) -> ParquetResult<usize> + 'a {
    move |c| c.typed::<ByteArrayType>().write_batch(values, levels, None)
}

/// The Parquet metadata file of one shard, written at `path`.
pub(crate) struct MetadataWriter {
    path: PathBuf,
    writer: SerializedFileWriter<BufWriter<File>>,
    rows: Columns,
}

fn utf8(path: &Path) -> Result<String> {
    path.to_str().map(str::to_string).ok_or_else(|| {
        ExchangeError::NotUtf8 {
            path: path.to_path_buf(),
        }
        .into()
    })
}

impl MetadataWriter {
    /// Creates the file at `path` (snappy-compressed, as pyarrow writes).
    pub fn create(path: &Path) -> Result<MetadataWriter> {
        let pq = parquet_error(path);
        let schema = Arc::new(parquet::schema::parser::parse_message_type(SCHEMA).map_err(&pq)?);
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let file = File::create(path).map_err(Error::io(path))?;
        let writer = SerializedFileWriter::new(BufWriter::new(file), schema, Arc::new(properties))
            .map_err(&pq)?;
        Ok(MetadataWriter {
            path: path.to_path_buf(),
            writer,
            rows: Columns::default(),
        })
    }

    /// Appends a record's row.
    pub fn push(&mut self, record: &ImageRecord, source: Option<&ImageSource>) -> Result<()> {
        let rows = &mut self.rows;
        rows.image_path
            .push(utf8(record.path())?.into_bytes().into());
        let source = source.cloned().unwrap_or_default();
        for ((values, levels), value) in
            rows.source
                .iter_mut()
                .zip([source.url, source.caption, source.key])
        {
            levels.push(i16::from(value.is_some()));
            values.extend(value.map(|v| ByteArray::from(v.into_bytes())));
        }
        rows.content_hash
            .push(record.content_hash.to_hex().as_str().into());
        rows.byte_size
            .push(i64::try_from(record.byte_size).unwrap_or(i64::MAX));
        // Parquet has no unsigned 32-bit physical type; no image is that wide.
        rows.width
            .push(i32::try_from(record.width).unwrap_or(i32::MAX));
        rows.height
            .push(i32::try_from(record.height).unwrap_or(i32::MAX));
        rows.format.push(record.format.name().into());
        rows.mtime.push(record.mtime().0);
        let tags: Vec<TagLine> = record
            .tags
            .iter()
            .map(|t| TagLine {
                label: t.label.clone(),
                score: t.score,
            })
            .collect();
        rows.tags.push(
            serde_json::to_string(&tags)
                .expect("serialisable")
                .as_str()
                .into(),
        );
        let others = record.files[1..]
            .iter()
            .map(|f| utf8(&f.path))
            .collect::<Result<Vec<_>>>()?;
        rows.other_paths.push(
            serde_json::to_string(&others)
                .expect("serialisable")
                .as_str()
                .into(),
        );
        if rows.image_path.len() == ROW_GROUP_ROWS {
            self.flush_row_group()?;
        }
        Ok(())
    }

    /// Writes the buffered rows as one row group, its columns in the
    /// schema's order.
    fn flush_row_group(&mut self) -> Result<()> {
        let rows = std::mem::take(&mut self.rows);
        if rows.image_path.is_empty() {
            return Ok(());
        }
        let pq = parquet_error(&self.path);
        let mut group = self.writer.next_row_group().map_err(&pq)?;
        let [url, caption, key] = &rows.source;
        let mut column =
            |write: &dyn Fn(&mut SerializedColumnWriter<'_>) -> ParquetResult<usize>| {
                let mut column = group.next_column()?.expect("in the schema");
                write(&mut column)?;
                column.close()
            };
        column(&strings(&rows.image_path, None)).map_err(&pq)?;
        for (values, levels) in [url, caption, key] {
            column(&strings(values, Some(levels))).map_err(&pq)?;
        }
        column(&strings(&rows.content_hash, None)).map_err(&pq)?;
        column(&|c| {
            c.typed::<Int64Type>()
                .write_batch(&rows.byte_size, None, None)
        })
        .map_err(&pq)?;
        for values in [&rows.width, &rows.height] {
            column(&|c| c.typed::<Int32Type>().write_batch(values, None, None)).map_err(&pq)?;
        }
        column(&strings(&rows.format, None)).map_err(&pq)?;
        column(&|c| c.typed::<Int64Type>().write_batch(&rows.mtime, None, None)).map_err(&pq)?;
        column(&strings(&rows.tags, None)).map_err(&pq)?;
        column(&strings(&rows.other_paths, None)).map_err(&pq)?;
        group.close().map_err(&pq)?;
        Ok(())
    }

    /// Writes the last row group and the footer, and syncs the file.
    pub fn finish(mut self) -> Result<()> {
        self.flush_row_group()?;
        let pq = parquet_error(&self.path);
        let buffered = self.writer.into_inner().map_err(&pq)?;
        let file = buffered
            .into_inner()
            .map_err(|e| Error::io(&self.path)(e.into_error()))?;
        file.sync_all().map_err(Error::io(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row_of(columns: &[(&str, Field)]) -> Row {
        Row::new(
            columns
                .iter()
                .map(|(name, field)| (name.to_string(), field.clone()))
                .collect(),
        )
    }

    #[test]
    fn a_panic_of_the_parquet_reader_is_the_files_error() {
        let err =
            guarded::<()>(Path::new("m.parquet"), || panic!("index out of bounds")).unwrap_err();
        assert!(
            matches!(
                &err,
                Error::Exchange(ExchangeError::ParquetPanicked { message, .. })
                    if message == "index out of bounds"
            ),
            "{err}"
        );
    }

    #[test]
    fn numbers_of_any_width_and_nulls_are_read_and_strings_stay_strict() {
        let path = Path::new("m.parquet");
        let meta = from_row(
            path,
            0,
            &row_of(&[
                ("url", Field::Str("https://x/a.jpg".into())),
                ("caption", Field::Null),
                ("key", Field::Long(12)),
                ("width", Field::Double(640.0)),
                ("height", Field::Null),
                ("similarity", Field::Double(0.3)),
            ]),
        )
        .unwrap();
        assert_eq!(meta.identity(), Some(PathBuf::from("https://x/a.jpg")));
        assert_eq!((meta.width, meta.height), (640, 0));
        assert_eq!(
            meta.source(),
            Some(ImageSource {
                url: Some("https://x/a.jpg".into()),
                caption: None,
                key: Some("12".into()),
            })
        );
        let wrong = from_row(path, 3, &row_of(&[("url", Field::Int(1))]))
            .err()
            .unwrap();
        assert!(
            wrong
                .to_string()
                .contains("row 3: column `url` is not a string"),
            "{wrong}"
        );
        let negative = from_row(path, 0, &row_of(&[("width", Field::Int(-1))]));
        assert!(negative.is_err());
    }
}
