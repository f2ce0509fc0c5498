//! `.npy` files of vectors, streamed: [`NpyRows`] reads an `[N, dim]`
//! float32 or float16 array a chunk of rows at a time (float16 converted
//! to float32 per chunk), so that importing a shard of any size needs the
//! memory of one chunk; [`header`] writes the fixed-size header export
//! rewrites in place once a shard's row count is known.
//!
//! Owns only the file format; what the rows mean is the caller's.

use std::io::Read;
use std::path::{Path, PathBuf};

use ndarray_npy::npy::header::Header;

use crate::error::{Error, ExchangeError, NpyProblem, Result};

/// The element types a shard may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Element {
    F32 { big_endian: bool },
    F16 { big_endian: bool },
}

impl Element {
    fn from_descr(descr: &str) -> Option<Element> {
        Some(match descr {
            "<f4" => Element::F32 { big_endian: false },
            ">f4" => Element::F32 { big_endian: true },
            "<f2" => Element::F16 { big_endian: false },
            ">f2" => Element::F16 { big_endian: true },
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Element::F32 { .. } => 4,
            Element::F16 { .. } => 2,
        }
    }

    /// Appends the elements of `bytes` to `out` as float32.
    fn decode(self, bytes: &[u8], out: &mut Vec<f32>) {
        match self {
            Element::F32 { big_endian } => out.extend(bytes.chunks_exact(4).map(|b| {
                let b = [b[0], b[1], b[2], b[3]];
                if big_endian {
                    f32::from_be_bytes(b)
                } else {
                    f32::from_le_bytes(b)
                }
            })),
            Element::F16 { big_endian } => out.extend(bytes.chunks_exact(2).map(|b| {
                let bits = if big_endian {
                    u16::from_be_bytes([b[0], b[1]])
                } else {
                    u16::from_le_bytes([b[0], b[1]])
                };
                half::f16::from_bits(bits).to_f32()
            })),
        }
    }
}

/// The rows of an `[N, dim]` `.npy` array, read in chunks.
pub(crate) struct NpyRows<R> {
    path: PathBuf,
    reader: R,
    element: Element,
    rows: usize,
    dim: usize,
    /// Rows handed out so far.
    read: usize,
    /// The raw bytes of one chunk, reused.
    bytes: Vec<u8>,
}

impl NpyRows<std::fs::File> {
    /// Opens `path` and checks its header and length.
    pub fn open(path: &Path) -> Result<NpyRows<std::fs::File>> {
        let file = std::fs::File::open(path).map_err(Error::io(path))?;
        let len = file.metadata().map_err(Error::io(path))?.len();
        NpyRows::new(path, file, len)
    }
}

impl<R: Read> NpyRows<R> {
    /// Reads the header from `reader` (at the file's start), checking that
    /// it is a C-order two-dimensional float32/float16 array and that the
    /// file's `len` is exactly the header's plus the data's.
    pub fn new(path: &Path, mut reader: R, len: u64) -> Result<NpyRows<R>> {
        let layout = |problem| ExchangeError::NpyLayout {
            path: path.to_path_buf(),
            problem,
        };
        let mut counted = Counted {
            inner: &mut reader,
            count: 0,
        };
        let header = Header::from_reader(&mut counted).map_err(|source| ExchangeError::Npy {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        let header_len = counted.count;
        let element = match &header.type_descriptor {
            py_literal::Value::String(descr) => Element::from_descr(descr),
            _ => None,
        }
        .ok_or_else(|| layout(NpyProblem::Dtype(header.type_descriptor.to_string())))?;
        if header.layout.is_fortran() {
            return Err(layout(NpyProblem::FortranOrder).into());
        }
        let [rows, dim] = header.shape[..] else {
            return Err(layout(NpyProblem::Shape(header.shape.clone())).into());
        };
        let expected = (rows as u64)
            .checked_mul(dim as u64)
            .and_then(|n| n.checked_mul(element.size() as u64))
            .and_then(|n| n.checked_add(header_len));
        if expected != Some(len) {
            return Err(layout(NpyProblem::Length {
                expected: expected.unwrap_or(u64::MAX),
                found: len,
            })
            .into());
        }
        Ok(NpyRows {
            path: path.to_path_buf(),
            reader,
            element,
            rows,
            dim,
            read: 0,
            bytes: Vec::new(),
        })
    }

    /// The number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The length of a row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The rows not read yet.
    pub fn remaining(&self) -> usize {
        self.rows - self.read
    }

    /// Replaces `out` with the next at most `max_rows` rows (row-major,
    /// float32); returns how many (0 at the end). One read of at most
    /// `max_rows × dim` elements.
    pub fn next_chunk(&mut self, max_rows: usize, out: &mut Vec<f32>) -> Result<usize> {
        out.clear();
        let rows = max_rows.min(self.remaining());
        if rows == 0 {
            return Ok(0);
        }
        self.bytes.resize(rows * self.dim * self.element.size(), 0);
        self.reader
            .read_exact(&mut self.bytes)
            .map_err(Error::io(&self.path))?;
        self.element.decode(&self.bytes, out);
        self.read += rows;
        Ok(rows)
    }
}

/// Counts the bytes read through it (the header's length, whatever its
/// padding).
struct Counted<'a, R> {
    inner: &'a mut R,
    count: u64,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Version 1.0 `.npy` headers are padded to this length (a multiple of
/// 64, as numpy writes them) so that a shard's header, written first with
/// no rows, can be rewritten in place with the final count.
const HEADER_LEN: usize = 128;

/// The `.npy` header of a little-endian float32 `[rows, dim]` array.
pub(crate) fn header(rows: usize, dim: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    let mut header = b"\x93NUMPY\x01\x00".to_vec();
    let len = u16::try_from(HEADER_LEN - 10).expect("a small header");
    header.extend_from_slice(&len.to_le_bytes());
    header.extend_from_slice(dict.as_bytes());
    // At most 87 bytes of dictionary for 64-bit counts: it always fits.
    assert!(header.len() < HEADER_LEN);
    header.resize(HEADER_LEN - 1, b' ');
    header.push(b'\n');
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that records the largest single read asked of it.
    struct Watched<'a> {
        bytes: &'a [u8],
        largest: usize,
        reads: usize,
    }

    impl Read for Watched<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.largest = self.largest.max(buf.len());
            self.reads += 1;
            self.bytes.read(buf)
        }
    }

    fn float16_file(rows: usize, dim: usize) -> Vec<u8> {
        let dict =
            format!("{{'descr': '<f2', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
        let mut file = b"\x93NUMPY\x01\x00".to_vec();
        let pad = (64 - (10 + dict.len() + 1) % 64) % 64;
        let len = u16::try_from(dict.len() + pad + 1).unwrap();
        file.extend_from_slice(&len.to_le_bytes());
        file.extend_from_slice(dict.as_bytes());
        file.extend(std::iter::repeat_n(b' ', pad));
        file.push(b'\n');
        for i in 0..rows * dim {
            file.extend_from_slice(&half::f16::from_f32((i % 7) as f32).to_le_bytes());
        }
        file
    }

    /// A shard of 100 000 rows is read a chunk at a time: no read asks for
    /// more than one chunk, the output never holds more than one chunk, and
    /// every row arrives, converted from float16.
    #[test]
    fn a_large_shard_is_read_in_chunks_of_bounded_size() {
        let (rows, dim, chunk) = (100_000, 8, 1024);
        let file = float16_file(rows, dim);
        let mut watched = Watched {
            bytes: &file,
            largest: 0,
            reads: 0,
        };
        let mut npy = NpyRows::new(Path::new("big.npy"), &mut watched, file.len() as u64).unwrap();
        assert_eq!((npy.rows(), npy.dim()), (rows, dim));
        let (mut seen, mut chunks, mut out) = (0, 0, Vec::new());
        loop {
            let n = npy.next_chunk(chunk, &mut out).unwrap();
            if n == 0 {
                break;
            }
            assert!(out.len() <= chunk * dim && out.capacity() <= 2 * chunk * dim);
            assert_eq!(out[0], ((seen * dim) % 7) as f32);
            seen += n;
            chunks += 1;
        }
        assert_eq!((seen, chunks), (rows, rows.div_ceil(chunk)));
        assert!(npy.bytes.capacity() <= chunk * dim * 2);
        drop(npy);
        assert!(
            watched.largest <= chunk * dim * 2,
            "a read of {} bytes",
            watched.largest
        );
        assert!(watched.reads >= rows / chunk);
    }

    #[test]
    fn a_wrong_length_type_or_shape_is_refused() {
        let file = float16_file(3, 4);
        let short = NpyRows::new(Path::new("a.npy"), &file[..], file.len() as u64 - 2);
        assert!(matches!(
            short.err().unwrap(),
            Error::Exchange(ExchangeError::NpyLayout {
                problem: NpyProblem::Length { .. },
                ..
            })
        ));
        let mut ints = file.clone();
        let at = ints.windows(3).position(|w| w == b"<f2").unwrap();
        ints[at + 1] = b'i';
        let refused = NpyRows::new(Path::new("a.npy"), &ints[..], ints.len() as u64);
        assert!(matches!(
            refused.err().unwrap(),
            Error::Exchange(ExchangeError::NpyLayout {
                problem: NpyProblem::Dtype(_),
                ..
            })
        ));
        let written = header(0, 5);
        let empty = NpyRows::new(Path::new("e.npy"), &written[..], written.len() as u64).unwrap();
        assert_eq!((empty.rows(), empty.dim()), (0, 5));
    }
}
