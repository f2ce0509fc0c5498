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
        match self {
            ImageError::Unsupported { .. } => ErrorKind::Unsupported,
            ImageError::TooLarge { .. } => ErrorKind::TooLarge,
            ImageError::Empty | ImageError::Decode { .. } | ImageError::Jpeg { .. } => {
                ErrorKind::Corrupt
            }
        }
    }
}
