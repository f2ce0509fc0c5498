//! The one file-to-model-input step: read an image file, hash its bytes,
//! decode and preprocess them. Ingest reads files through it, and so should
//! every other reader of image files (reindex), so that a file reads,
//! hashes and fails the same way whichever operation touches it.
//!
//! It is two calls rather than one because ingest looks at the content hash
//! before decoding: content already indexed is linked, never decoded.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::model::{Prepared, Preprocessor};
use crate::types::ContentHash;

/// An image file read into memory and hashed, not yet decoded.
pub(crate) struct ImageFile {
    path: PathBuf,
    bytes: Vec<u8>,
    hash: ContentHash,
}

impl ImageFile {
    /// Reads (within the preprocessor's limits) and hashes the file at `path`.
    pub(crate) fn read(path: &Path, preprocessor: &Preprocessor) -> Result<ImageFile> {
        let bytes = preprocessor.read_file(path)?;
        Ok(ImageFile {
            path: path.to_path_buf(),
            hash: ContentHash::of(&bytes),
            bytes,
        })
    }

    /// The BLAKE3 hash of the bytes: the image's content identity.
    pub(crate) fn hash(&self) -> ContentHash {
        self.hash
    }

    /// Decodes and preprocesses the bytes into the model's input; a decoder
    /// panic is an error of this file (see `model::limits`).
    pub(crate) fn prepare(&self, preprocessor: &Preprocessor) -> Result<Prepared> {
        preprocessor.prepare(&self.bytes, &self.path)
    }
}
