//! Search filters: which images a search may return.
//!
//! The folder and tag parts are resolved to id sets through the store's
//! sorted path and tag maps; the attribute parts are tested on the index's
//! row table during the graph walk, so a filter
//! never leaves a search with fewer than `k` results while matches exist
//! further out.

use std::path::PathBuf;

use crate::index::RowAttrs;
use crate::types::{ImageFormat, Timestamp};

/// Conditions on the images a search may return; all given ones must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    /// Only images with a file under this folder (a canonical path).
    pub under: Option<PathBuf>,
    /// Only images carrying this tag.
    pub tag: Option<String>,
    /// Only these formats (all when empty).
    pub formats: Vec<ImageFormat>,
    /// Only images at least this wide.
    pub min_width: Option<u32>,
    /// Only images at least this high.
    pub min_height: Option<u32>,
    /// Only files of at least this many bytes.
    pub min_bytes: Option<u64>,
    /// Only files of at most this many bytes.
    pub max_bytes: Option<u64>,
    /// Only images whose file was modified at or after this time.
    pub modified_after: Option<Timestamp>,
    /// Only images whose file was modified before this time.
    pub modified_before: Option<Timestamp>,
}

impl Filter {
    /// Whether the filter lets everything through.
    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    /// Whether an image's attributes pass the attribute conditions.
    pub(crate) fn accepts(&self, attrs: &RowAttrs) -> bool {
        (self.formats.is_empty() || self.formats.contains(&attrs.format))
            && self.min_width.is_none_or(|w| attrs.width >= w)
            && self.min_height.is_none_or(|h| attrs.height >= h)
            && self.min_bytes.is_none_or(|b| attrs.byte_size >= b)
            && self.max_bytes.is_none_or(|b| attrs.byte_size <= b)
            && self.modified_after.is_none_or(|t| attrs.mtime >= t)
            && self.modified_before.is_none_or(|t| attrs.mtime < t)
    }
}
