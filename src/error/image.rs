//! Errors of reading an image file the user gave: what is wrong with the
//! file itself. The path travels in the umbrella [`Error::Image`], so a
//! failure record can keep the message without repeating the path.
//!
//! [`Error::Image`]: super::Error::Image

use super::ErrorKind;

/// An image file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// Not an image imgdb reads.
    #[error("not a supported image{}", format.as_ref().map(|f| format!(" ({f})")).unwrap_or_default())]
    Unsupported {
        /// The format recognised, if any.
        format: Option<String>,
    },

    /// Over the decode limits (a decompression bomb, say).
    #[error("image of {width}x{height} pixels is over the limit of {max_pixels} pixels")]
    TooLarge {
        /// Its width.
        width: u32,
        /// Its height.
        height: u32,
        /// The limit.
        max_pixels: u64,
    },

    /// A file over the size limit.
    #[error("file of {bytes} bytes is over the limit of {max_bytes} bytes")]
    FileTooLarge {
        /// Its size.
        bytes: u64,
        /// The limit.
        max_bytes: u64,
    },

    /// Not a regular file (a directory, a FIFO, a device).
    #[error("not a regular file")]
    NotAFile,

    /// The decode went on past its time budget.
    #[error("decoding took longer than the budget of {budget:?}")]
    TimedOut {
        /// The budget.
        budget: std::time::Duration,
    },

    /// A decoder panicked on the file: a bug in the decoder, contained so
    /// that it fails only this file.
    #[error("the decoder failed on this file: {message}")]
    DecoderPanicked {
        /// The panic's message.
        message: String,
    },

    /// An image without pixels.
    #[error("image has no pixels")]
    Empty,

    /// The decoder refused the data.
    #[error("cannot decode image")]
    Decode {
        /// The decoder's error.
        #[source]
        source: image::ImageError,
    },

    /// libheif refused the data (HEIF, HEIC, AVIF).
    #[error("cannot decode HEIF")]
    Heif {
        /// libheif's error.
        #[source]
        source: libheif_rs::HeifError,
    },

    /// libtiff refused the data.
    #[error("cannot decode TIFF: {message}")]
    Tiff {
        /// libtiff's message.
        message: String,
    },

    /// A thumbnail could not be encoded.
    #[error("cannot encode the thumbnail")]
    Encode {
        /// The encoder's error.
        #[source]
        source: image::ImageError,
    },

    /// libjpeg refused the data.
    #[error("cannot decode JPEG: {message}")]
    Jpeg {
        /// libjpeg's message.
        message: String,
    },
}

impl ImageError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        use libheif_rs::HeifErrorCode;
        match self {
            ImageError::Unsupported { .. }
            | ImageError::NotAFile
            | ImageError::DecoderPanicked { .. }
            | ImageError::Encode { .. } => ErrorKind::Unsupported,
            // A codec libheif was built without (JPEG 2000, VVC…), say.
            ImageError::Heif { source }
                if matches!(
                    source.code,
                    HeifErrorCode::UnsupportedFeature | HeifErrorCode::UnsupportedFileType
                ) =>
            {
                ErrorKind::Unsupported
            }
            ImageError::TooLarge { .. }
            | ImageError::FileTooLarge { .. }
            | ImageError::TimedOut { .. } => ErrorKind::TooLarge,
            // The decoder's own allocation and size limits (set from ours).
            ImageError::Decode {
                source: image::ImageError::Limits(_),
            } => ErrorKind::TooLarge,
            ImageError::Empty
            | ImageError::Decode { .. }
            | ImageError::Heif { .. }
            | ImageError::Tiff { .. }
            | ImageError::Jpeg { .. } => ErrorKind::Corrupt,
        }
    }
}
