//! imgdb: an embedded image-search database.
//!
//! A CLIP-family model turns images and texts into vectors of one space; a
//! [`Db`] keeps those vectors with each image's metadata in a crash-safe
//! store (sled) and finds the nearest ones through an HNSW graph that
//! survives restarts without a rebuild.
//!
//! ```
//! use imgdb::{Db, EmbeddingSpace, NewImage, SearchOptions, ContentHash, ImageFormat, Timestamp};
//!
//! # fn main() -> imgdb::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let space = EmbeddingSpace::named("example", 3);
//! let db = Db::open_or_create(dir.path().join("photos.imgdb"), space.clone())?;
//! let image = |path: &str, vector: Vec<f32>| NewImage {
//!     path: path.into(),
//!     mtime: Timestamp(0),
//!     content_hash: ContentHash::of(path.as_bytes()),
//!     byte_size: 1,
//!     width: 1,
//!     height: 1,
//!     format: ImageFormat::Png,
//!     tags: Vec::new(),
//!     vector,
//! };
//! let ids = db.insert(&space, vec![
//!     image("/photos/red.png", vec![1.0, 0.0, 0.0]),
//!     image("/photos/green.png", vec![0.0, 1.0, 0.0]),
//! ])?;
//! let hits = db.search(&[0.9, 0.1, 0.0], &SearchOptions::default())?;
//! assert_eq!(hits[0].id, ids[0]);
//! # Ok(())
//! # }
//! ```
//!
//! ARCHITECTURE.md walks through the modules; `schema/` holds the normative
//! on-disk formats.

mod cancel;
mod db;
mod dupes;
mod error;
pub mod eval;
mod exchange;
mod filter;
mod fsio;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
#[cfg(feature = "hub")]
pub mod hub;
mod index;
pub mod ingest;
mod model;
mod paths;
mod prepare;
mod query;
mod reindex;
pub mod resolve;
mod space;
mod store;
mod types;
mod vector;
mod zeroshot;

pub use cancel::CancelToken;
pub use db::marker::{FORMAT_MARKER_FILE, FORMAT_OLDEST_SUPPORTED_VERSION, FORMAT_VERSION};
pub use db::{
    Db, DbOptions, Hit, IndexOrigin, NewImage, Problem, QueuedEvent, SearchOptions, Stats,
    VerifyReport, WriteBatch, WriteOp,
};
pub use dupes::DuplicateGroup;
pub use error::{
    Corruption, Error, ErrorKind, ExchangeError, ExchangeProblem, FailureReason, HubError,
    ImageError, ModelError, ModelProblem, NpyProblem, ReindexConflict, Result, SnapshotError,
    StoreError, TensorRole, TowerKind, VectorProblem,
};
pub use exchange::{ExportOptions, ExportReport};
pub use filter::Filter;
pub use fsio::{CommitStage, LocalStorage, Mmap, Storage, StorageFile};
pub use index::IndexParams;
pub use index::snapshot::{RebuildReason, SNAPSHOT_FORMAT_VERSION, SnapshotProblem};
pub use model::{
    DecodeLimits, Decoded, Device, Encoder, EncoderOptions, IMAGE_EXTENSIONS, Layout, ModelFolder,
    ONNXRUNTIME_LIBRARY, ONNXRUNTIME_VERSION, Optimization, Prepared, PreprocessConfig,
    Preprocessor, Provider, ResampleFilter, Resize, SearchedPlace, SearchedPlaces,
    TextNormalization, TextTokenizer, Towers, Transparency, decoding_contained,
    has_image_extension,
};
pub use query::{Query, QueryHit, QueryTerm};
pub use reindex::ReindexReport;
pub use space::{EmbeddingSpace, Fingerprint};
pub use store::Failure;
pub use store::record::{FileEntry, ImageRecord, ImageSource, Tag, WatchedRoot};
pub use types::{
    ContentHash, ImageFormat, ImageId, IndexMemory, ModelVariant, Timestamp, VariantChoice,
};
pub use zeroshot::{TagOptions, ZeroShot};
