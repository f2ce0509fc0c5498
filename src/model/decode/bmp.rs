//! RLE-compressed palette BMPs (RLE8, RLE4), decoded the way Pillow's
//! `BmpRleDecoder` reads them: the pixels that delta and end-of-line codes
//! skip take palette entry 0 (the `image` crate paints them black), runs
//! that overflow a row are cut at its end. Uncompressed and bit-field BMPs
//! stay with the `image` crate, which reads them as Pillow does.

use std::path::Path;

use image::RgbImage;

use super::{DecodeLimits, Decoded};
use crate::error::{Error, ImageError, Result};
use crate::types::ImageFormat;

/// What an RLE BMP's headers say.
struct Header {
    width: u32,
    height: u32,
    /// Rows stored bottom-up (a positive height).
    bottom_up: bool,
    rle4: bool,
    /// BGR entries.
    palette: Vec<[u8; 3]>,
    data_offset: usize,
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// The headers of an RLE8 or RLE4 BMP (a BITMAPINFOHEADER or later, whose
/// compression field is 1 or 2); `None` for every other BMP.
fn header(bytes: &[u8]) -> Option<Header> {
    let info_size = u32_at(bytes, 14)? as usize;
    let rle4 = match (info_size >= 40).then(|| u32_at(bytes, 30))?? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let width = u32_at(bytes, 18)? as i32;
    let height = u32_at(bytes, 22)? as i32;
    let bits = u16_at(bytes, 28)?;
    let colours = match u32_at(bytes, 46)? {
        0 => 1usize << bits.min(8),
        n => n.min(256) as usize,
    };
    let palette_at = 14 + info_size;
    let palette = bytes
        .get(palette_at..palette_at.checked_add(4 * colours)?)?
        .chunks_exact(4)
        .map(|bgrx| [bgrx[0], bgrx[1], bgrx[2]])
        .collect();
    Some(Header {
        width: u32::try_from(width).ok()?,
        height: height.unsigned_abs(),
        bottom_up: height > 0,
        rle4,
        palette,
        data_offset: u32_at(bytes, 10)? as usize,
    })
}

/// Whether `bytes` are an RLE-compressed BMP (decoded here).
pub(super) fn is_rle(bytes: &[u8]) -> bool {
    header(bytes).is_some()
}

/// Decodes an RLE BMP (see [`is_rle`]).
pub(super) fn decode(bytes: &[u8], path: &Path, limits: &DecodeLimits) -> Result<Decoded> {
    let header = header(bytes).ok_or_else(|| {
        Error::image(path)(ImageError::Unsupported {
            format: Some("BMP".into()),
        })
    })?;
    let (width, height) = (header.width, header.height);
    limits.check_dimensions(path, width, height)?;
    if width == 0 || height == 0 {
        return Err(Error::image(path)(ImageError::Empty));
    }
    let indices = expand(bytes, &header);
    // Pillow reads the rows even when the codes end early (the rest stays
    // index 0); an out-of-range index reads grey, as Pillow's default palette.
    let w = width as usize;
    let mut rgb = Vec::with_capacity(w * height as usize * 3);
    for y in 0..height as usize {
        let row = if header.bottom_up {
            height as usize - 1 - y
        } else {
            y
        };
        for x in 0..w {
            let index = indices.get(row * w + x).copied().unwrap_or(0);
            let [b, g, r] = header
                .palette
                .get(usize::from(index))
                .copied()
                .unwrap_or([index; 3]);
            rgb.extend_from_slice(&[r, g, b]);
        }
    }
    Ok(Decoded {
        rgb: RgbImage::from_raw(width, height, rgb).expect("same size"),
        width,
        height,
        format: ImageFormat::Bmp,
    })
}

/// The palette indices, in stored row order, as Pillow's `BmpRleDecoder`
/// produces them (a port of its loop; offsets are the file's, as its word
/// alignment is).
fn expand(bytes: &[u8], header: &Header) -> Vec<u8> {
    let w = header.width as usize;
    let total = w * header.height as usize;
    let mut data: Vec<u8> = Vec::with_capacity(total);
    let (mut pos, mut x) = (header.data_offset, 0usize);
    let pad_to = |data: &mut Vec<u8>, len: usize| data.resize(len.min(total), 0);
    while data.len() < total {
        let (Some(&count), Some(&value)) = (bytes.get(pos), bytes.get(pos + 1)) else {
            break;
        };
        pos += 2;
        match (count, value) {
            (0, 0) => {
                // End of line: to the next row start (none when at one).
                let len = data.len().div_ceil(w) * w;
                pad_to(&mut data, len);
                x = 0;
            }
            (0, 1) => break,
            (0, 2) => {
                let (Some(&right), Some(&up)) = (bytes.get(pos), bytes.get(pos + 1)) else {
                    break;
                };
                pos += 2;
                let len = data.len() + usize::from(right) + usize::from(up) * w;
                pad_to(&mut data, len);
                x = data.len() % w;
            }
            (0, literal) => {
                let wanted = usize::from(literal).min(total - data.len());
                let byte_count = if header.rle4 {
                    wanted.div_ceil(2)
                } else {
                    wanted
                };
                let read = &bytes[pos.min(bytes.len())..(pos + byte_count).min(bytes.len())];
                pos += read.len();
                if header.rle4 {
                    for (i, byte) in read.iter().enumerate() {
                        data.push(byte >> 4);
                        if i * 2 + 1 < wanted {
                            data.push(byte & 0x0f);
                        }
                    }
                } else {
                    data.extend_from_slice(read);
                }
                if read.len() < byte_count || data.len() == total {
                    break;
                }
                x += usize::from(literal);
                pos += pos % 2;
            }
            (run, value) => {
                let run = usize::from(run).min(w.saturating_sub(x));
                if header.rle4 {
                    data.extend(
                        (0..run).map(|i| if i % 2 == 0 { value >> 4 } else { value & 0x0f }),
                    );
                } else {
                    data.extend(std::iter::repeat_n(value, run));
                }
                x += run;
            }
        }
    }
    data.truncate(total);
    data
}
