//! The pinned serialization of stored values and the encoding of keys.
//!
//! Values use bincode 2.0.1's `standard()` configuration (little-endian,
//! variable-length integers) through serde, with a decode size limit so that
//! a corrupt length prefix cannot make the decoder allocate gigabytes. Keys
//! are fixed-width big-endian so that sled's byte order is numeric order.
//! `schema/store.md` documents both byte for byte.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Corruption, Error, Result, StoreError};
use crate::types::{ContentHash, ImageId};

/// The largest value the store encodes or decodes (a 512-d record is ~2.2 KB).
pub(crate) const VALUE_SIZE_LIMIT: usize = 16 << 20;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<VALUE_SIZE_LIMIT>()
}

/// Encodes a value with the pinned configuration.
pub(crate) fn encode<T: Serialize>(value: &T, what: &'static str) -> Result<Vec<u8>> {
    bincode::serde::encode_to_vec(value, config())
        .map_err(|source| StoreError::Encode { what, source }.into())
}

/// Decodes a value with the pinned configuration; trailing bytes are corruption.
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    path: &Path,
    what: &'static str,
) -> Result<T> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config()).map_err(|source| {
        StoreError::Decode {
            path: path.to_path_buf(),
            what,
            source,
        }
    })?;
    if used != bytes.len() {
        return Err(corrupt(path, what, Corruption::TrailingBytes));
    }
    Ok(value)
}

/// The error for a damaged `what` in the store of `path`.
pub(crate) fn corrupt(path: &Path, what: &'static str, problem: Corruption) -> Error {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        what,
        problem,
    }
    .into()
}

/// `records` and `log` keys: the id as 8 big-endian bytes.
pub(crate) fn id_key(id: ImageId) -> [u8; 8] {
    id.0.to_be_bytes()
}

/// Reads an 8-byte big-endian id.
pub(crate) fn id_from_bytes(bytes: &[u8], path: &Path, what: &'static str) -> Result<ImageId> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| corrupt(path, what, Corruption::IdLength))?;
    Ok(ImageId(u64::from_be_bytes(array)))
}

/// `hashes` keys: the content hash followed by the id.
pub(crate) fn hash_key(hash: &ContentHash, id: ImageId) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..32].copy_from_slice(&hash.0);
    key[32..].copy_from_slice(&id.0.to_be_bytes());
    key
}

/// `tags` keys: the label's UTF-8 bytes, a zero byte, then the id.
pub(crate) fn tag_key(label: &str, id: ImageId) -> Vec<u8> {
    let mut key = tag_prefix(label);
    key.extend_from_slice(&id.0.to_be_bytes());
    key
}

/// The prefix shared by every `tags` key of one label.
pub(crate) fn tag_prefix(label: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(label.len() + 9);
    key.extend_from_slice(label.as_bytes());
    key.push(0);
    key
}

/// `log` keys: the batch sequence number followed by the id.
pub(crate) fn log_key(seq: u64, id: ImageId) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&seq.to_be_bytes());
    key[8..].copy_from_slice(&id.0.to_be_bytes());
    key
}

/// Splits a `log` key into sequence number and id.
pub(crate) fn split_log_key(key: &[u8], path: &Path) -> Result<(u64, ImageId)> {
    if key.len() != 16 {
        return Err(corrupt(path, "change log", Corruption::LogKeyLength));
    }
    let seq = u64::from_be_bytes(key[..8].try_into().expect("8 bytes"));
    let id = u64::from_be_bytes(key[8..].try_into().expect("8 bytes"));
    Ok((seq, ImageId(id)))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::store::record::{FileEntry, ImageRecord, Tag};
    use crate::types::{ImageFormat, Timestamp};

    fn record() -> ImageRecord {
        ImageRecord {
            id: ImageId(7),
            files: vec![FileEntry {
                path: PathBuf::from("/photos/a.jpg"),
                mtime: Timestamp(1_700_000_000_000_000_000),
            }],
            content_hash: ContentHash([3; 32]),
            byte_size: 1234,
            width: 640,
            height: 480,
            format: ImageFormat::Jpeg,
            added: Timestamp(1_700_000_001_000_000_000),
            tags: vec![Tag {
                label: "dog".into(),
                score: 0.5,
            }],
            vector: vec![0.6, 0.8],
            seq: 3,
            vector_seq: 2,
        }
    }

    #[test]
    fn record_round_trips() {
        let r = record();
        let bytes = encode(&r, "record").unwrap();
        let back: ImageRecord = decode(&bytes, Path::new("db"), "record").unwrap();
        assert_eq!(r, back);
    }

    /// Freezes the byte layout documented in schema/store.md.
    #[test]
    fn record_layout_is_the_documented_one() {
        let bytes = encode(&record(), "record").unwrap();
        let mut expected = vec![7u8]; // id
        expected.push(1); // one file
        expected.push(13); // path length
        expected.extend_from_slice(b"/photos/a.jpg");
        // mtime 1.7e18 as a zigzag varint: 0xFD then u64 LE.
        expected.push(0xfd);
        expected.extend_from_slice(&(1_700_000_000_000_000_000u64 * 2).to_le_bytes());
        expected.extend_from_slice(&[3; 32]); // hash
        expected.extend_from_slice(&[0xfb, 0xd2, 0x04]); // byte_size 1234 as u16 varint
        expected.extend_from_slice(&[0xfb, 0x80, 0x02]); // width 640
        expected.extend_from_slice(&[0xfb, 0xe0, 0x01]); // height 480
        expected.push(0); // format Jpeg
        expected.push(0xfd);
        expected.extend_from_slice(&(1_700_000_001_000_000_000u64 * 2).to_le_bytes());
        expected.push(1); // one tag
        expected.push(3);
        expected.extend_from_slice(b"dog");
        expected.extend_from_slice(&0.5f32.to_le_bytes());
        expected.push(2); // vector length
        expected.extend_from_slice(&0.6f32.to_le_bytes());
        expected.extend_from_slice(&0.8f32.to_le_bytes());
        expected.push(3); // seq
        expected.push(2); // vector_seq
        assert_eq!(bytes, expected);
    }

    #[test]
    fn trailing_bytes_are_corruption() {
        let mut bytes = encode(&record(), "record").unwrap();
        bytes.push(0);
        let err = decode::<ImageRecord>(&bytes, Path::new("db"), "record").unwrap_err();
        assert!(
            matches!(err, Error::Store(StoreError::Corrupt { .. })),
            "{err}"
        );
    }

    #[test]
    fn a_huge_length_prefix_is_refused_without_allocating() {
        // id 1, then a file count of u64::MAX.
        let mut bytes = vec![1u8, 0xfd];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        let err = decode::<ImageRecord>(&bytes, Path::new("db"), "record").unwrap_err();
        assert!(
            matches!(err, Error::Store(StoreError::Decode { .. })),
            "{err}"
        );
    }

    #[test]
    fn keys_sort_numerically() {
        assert!(id_key(ImageId(255)) < id_key(ImageId(256)));
        assert!(log_key(1, ImageId(9)) < log_key(2, ImageId(0)));
        assert_eq!(
            split_log_key(&log_key(5, ImageId(6)), Path::new("db")).unwrap(),
            (5, ImageId(6))
        );
    }
}
