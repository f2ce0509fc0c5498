//! Bounds on what reading one image file may cost, and the containment of
//! decoder panics: imgdb reads files it did not write, and no file may
//! crash the process, hang it or exhaust its memory.
//!
//! Each bound has a default sized for real photo libraries (larger than any
//! camera's output, smaller than a decompression bomb) and can be changed
//! with [`Preprocessor::with_limits`](super::Preprocessor::with_limits).

use std::cell::Cell;
use std::io::{BufRead, Read, Seek, SeekFrom};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, ImageError, Result};

/// Bounds on what reading and decoding one image may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Widest accepted image, in pixels. Default 65 535 (the JPEG maximum).
    pub max_width: u32,
    /// Tallest accepted image, in pixels. Default 65 535.
    pub max_height: u32,
    /// Most pixels accepted (width × height of the decoded image), checked
    /// from the file's header before any pixel is allocated. Default 150
    /// megapixels.
    pub max_pixels: u64,
    /// Largest file read, in bytes. Default 512 MiB.
    pub max_file_bytes: u64,
    /// Longest a decode may go on reading its input. Checked each time the
    /// decoder reads more of the file; a decoder working on data it already
    /// holds finishes that step first (JPEGs decode from memory in one
    /// call, bounded by `max_pixels`). Default 30 s.
    pub max_decode_time: Duration,
}

impl Default for DecodeLimits {
    fn default() -> DecodeLimits {
        DecodeLimits {
            max_width: 65_535,
            max_height: 65_535,
            max_pixels: 150_000_000,
            max_file_bytes: 512 << 20,
            max_decode_time: Duration::from_secs(30),
        }
    }
}

impl DecodeLimits {
    /// Refuses dimensions over the limits.
    pub(crate) fn check_dimensions(&self, path: &Path, width: u32, height: u32) -> Result<()> {
        if width > self.max_width
            || height > self.max_height
            || u64::from(width) * u64::from(height) > self.max_pixels
        {
            return Err(Error::image(path)(ImageError::TooLarge {
                width,
                height,
                max_pixels: self.max_pixels,
            }));
        }
        Ok(())
    }

    /// Reads the file at `path`, refusing one over `max_file_bytes` (and
    /// anything that is not a regular file, such as a FIFO that would
    /// block forever).
    pub(crate) fn read_file(&self, path: &Path) -> Result<Vec<u8>> {
        // Looked at before opening: opening a FIFO would block.
        let metadata = std::fs::metadata(path).map_err(Error::io(path))?;
        if !metadata.is_file() {
            return Err(Error::image(path)(ImageError::NotAFile));
        }
        let too_big = |bytes| {
            Error::image(path)(ImageError::FileTooLarge {
                bytes,
                max_bytes: self.max_file_bytes,
            })
        };
        if metadata.len() > self.max_file_bytes {
            return Err(too_big(metadata.len()));
        }
        let file = std::fs::File::open(path).map_err(Error::io(path))?;
        // The file may grow between the check and the read.
        let mut bytes = Vec::with_capacity(metadata.len() as usize);
        file.take(self.max_file_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(Error::io(path))?;
        if bytes.len() as u64 > self.max_file_bytes {
            return Err(too_big(bytes.len() as u64));
        }
        Ok(bytes)
    }
}

/// A reader that fails once its deadline has passed, so that a decoder
/// reading a hostile file cannot go on for ever.
pub(crate) struct DeadlineReader<R> {
    inner: R,
    deadline: Instant,
}

impl<R> DeadlineReader<R> {
    /// `inner`, failing from `budget` from now.
    pub(crate) fn new(inner: R, budget: Duration) -> DeadlineReader<R> {
        DeadlineReader {
            inner,
            deadline: Instant::now() + budget,
        }
    }

    fn check(&self) -> std::io::Result<()> {
        if Instant::now() > self.deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the decode time budget ran out",
            ));
        }
        Ok(())
    }
}

impl<R: Read> Read for DeadlineReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.check()?;
        self.inner.read(buf)
    }
}

impl<R: BufRead> BufRead for DeadlineReader<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.check()?;
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.inner.consume(amount);
    }
}

impl<R: Seek> Seek for DeadlineReader<R> {
    fn seek(&mut self, position: SeekFrom) -> std::io::Result<u64> {
        self.check()?;
        self.inner.seek(position)
    }
}

thread_local! {
    static CONTAINING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `work` on the image at `path`, turning a panic inside it (in a
/// decoder of ours or of a dependency) into an error of that file.
pub(crate) fn contained<T>(path: &Path, work: impl FnOnce() -> Result<T>) -> Result<T> {
    contained_as(work, |message| {
        Error::image(path)(ImageError::DecoderPanicked { message })
    })
}

/// Runs `work`, which decodes a file the user did not write, turning a
/// panic inside it into the error `panicked` makes of the panic's message.
pub(crate) fn contained_as<T>(
    work: impl FnOnce() -> Result<T>,
    panicked: impl FnOnce(String) -> Error,
) -> Result<T> {
    let outer = CONTAINING.replace(true);
    // The work only reads its inputs; whatever it built is dropped with it.
    let outcome = catch_unwind(AssertUnwindSafe(work));
    CONTAINING.set(outer);
    outcome.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "no message".into());
        Err(panicked(message))
    })
}

/// Whether this thread is inside an image decode whose panics are
/// contained (and become a failure of that file). A program's panic hook
/// can stay quiet for these, since the failure is reported as an error.
pub fn decoding_contained() -> bool {
    CONTAINING.get()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_of_the_file() {
        let err = contained::<()>(Path::new("bad.tif"), || {
            panic!("assertion failed: buf.len()")
        })
        .unwrap_err();
        assert!(
            matches!(&err, Error::Image { path, source: ImageError::DecoderPanicked { message } }
                if path == Path::new("bad.tif") && message == "assertion failed: buf.len()"),
            "{err:?}"
        );
        assert!(!decoding_contained());
    }

    #[test]
    fn the_deadline_stops_reads() {
        let mut reader = DeadlineReader::new(std::io::Cursor::new(vec![0u8; 8]), Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1));
        let err = reader.read(&mut [0u8; 4]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        let mut reader = DeadlineReader::new(
            std::io::Cursor::new(vec![7u8; 8]),
            Duration::from_secs(3600),
        );
        let mut buf = [0u8; 4];
        assert_eq!(reader.read(&mut buf).unwrap(), 4);
        assert_eq!(buf, [7; 4]);
    }

    #[test]
    fn files_over_the_size_limit_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.png");
        std::fs::write(&path, vec![0u8; 100]).unwrap();
        let limits = DecodeLimits {
            max_file_bytes: 99,
            ..DecodeLimits::default()
        };
        let err = limits.read_file(&path).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Image {
                    source: ImageError::FileTooLarge {
                        bytes: 100,
                        max_bytes: 99
                    },
                    ..
                }
            ),
            "{err:?}"
        );
        let limits = DecodeLimits {
            max_file_bytes: 100,
            ..DecodeLimits::default()
        };
        assert_eq!(limits.read_file(&path).unwrap().len(), 100);
        let err = limits.read_file(dir.path()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Image {
                    source: ImageError::NotAFile,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
