//! Decoding image files into 8-bit RGB, the way the reference pipelines see
//! them: orientation applied as Pillow's `ImageOps.exif_transpose` does,
//! transparency composited onto white (as transformers' `convert_to_rgb`
//! does) or dropped (as Pillow's `convert("RGB")`, which Immich uses, does),
//! 16-bit samples cut to their high byte (as Pillow does for RGB).
//!
//! One decoder per format, each the one Pillow (with pillow-heif) uses where
//! a pure-Rust one falls short:
//! - JPEG: libjpeg-turbo's decoder (the one Pillow ships, so the pixels are
//!   the reference's exactly; pure-Rust decoders were measured 3 to 4 levels
//!   off). When asked, those much larger than the model's input are decoded
//!   at a reduced scale n/8 (the IDCT computes fewer pixels), which skips most
//!   of the decoding and resizing work (see `Preprocessor::with_dct_scaling`).
//! - HEIF/HEIC and AVIF: libheif ([`heif`]).
//! - TIFF: libtiff ([`tiff`]).
//! - PNG, WebP, GIF, BMP: the `image` crate, but RLE BMPs ([`bmp`]).
//!
//! Every decode is bounded: dimensions and allocations over [`DecodeLimits`]
//! are refused before the pixels are allocated, and reads stop at the time
//! budget.

use std::cell::Cell;
use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

use super::limits::{DeadlineReader, DecodeLimits};
use super::preprocess::Transparency;
use crate::error::{Error, ImageError, Result};
use crate::types::ImageFormat;

mod avif;
mod bmp;
mod heif;
mod tiff;
mod yuv;

/// A decoded image.
pub struct Decoded {
    /// The pixels, oriented; smaller than the file when DCT-scaled.
    pub rgb: RgbImage,
    /// The file's width after orientation (at full scale).
    pub width: u32,
    /// The file's height after orientation (at full scale).
    pub height: u32,
    /// The file's format.
    pub format: ImageFormat,
}

/// File extensions of the formats imgdb decodes (lowercase).
pub const IMAGE_EXTENSIONS: [&str; 12] = [
    "jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff", "heic", "heif", "hif", "avif",
];

/// Whether a path has one of [`IMAGE_EXTENSIONS`] (any case).
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn format_of(format: image::ImageFormat) -> Option<ImageFormat> {
    Some(match format {
        image::ImageFormat::Jpeg => ImageFormat::Jpeg,
        image::ImageFormat::Png => ImageFormat::Png,
        image::ImageFormat::WebP => ImageFormat::WebP,
        image::ImageFormat::Gif => ImageFormat::Gif,
        image::ImageFormat::Bmp => ImageFormat::Bmp,
        image::ImageFormat::Tiff => ImageFormat::Tiff,
        // AVIF files are found by `heif::sniff` first.
        _ => return None,
    })
}

/// Decodes `bytes` (read from `path`, which only names the file in errors).
/// `min_short_side` allows a DCT-scaled JPEG decode down to that size.
pub fn decode(
    bytes: &[u8],
    path: &Path,
    min_short_side: Option<u32>,
    transparency: Transparency,
    limits: &DecodeLimits,
) -> Result<Decoded> {
    let guessed = image::guess_format(bytes).ok();
    let format = heif::sniff(bytes)
        .or_else(|| guessed.and_then(format_of))
        .ok_or_else(|| {
            Error::image(path)(ImageError::Unsupported {
                format: guessed.map(|f| format!("{f:?}")),
            })
        })?;
    match format {
        ImageFormat::Jpeg => decode_jpeg(bytes, path, min_short_side, limits),
        ImageFormat::Heif | ImageFormat::Avif => {
            heif::decode(bytes, path, format, transparency, limits)
        }
        ImageFormat::Tiff => tiff::decode(bytes, path, transparency, limits),
        ImageFormat::Bmp if bmp::is_rle(bytes) => bmp::decode(bytes, path, limits),
        _ => decode_full(bytes, path, format, transparency, limits),
    }
}

fn decode_full(
    bytes: &[u8],
    path: &Path,
    format: ImageFormat,
    transparency: Transparency,
    limits: &DecodeLimits,
) -> Result<Decoded> {
    let image_err = |source| {
        Error::image(path)(match source {
            image::ImageError::IoError(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                ImageError::TimedOut {
                    budget: limits.max_decode_time,
                }
            }
            source => ImageError::Decode { source },
        })
    };
    let input = DeadlineReader::new(Cursor::new(bytes), limits.max_decode_time);
    let mut reader = ImageReader::new(input)
        .with_guessed_format()
        .map_err(|e| image_err(image::ImageError::IoError(e)))?;
    let mut image_limits = image::Limits::default();
    image_limits.max_image_width = Some(limits.max_width);
    image_limits.max_image_height = Some(limits.max_height);
    // RGBA16 is the widest buffer a decoder fills, plus the RGB copy.
    image_limits.max_alloc = Some(limits.max_pixels * 8 + limits.max_pixels * 3);
    reader.limits(image_limits);
    let mut decoder = reader.into_decoder().map_err(image_err)?;
    let (width, height) = decoder.dimensions();
    limits.check_dimensions(path, width, height)?;
    let exif = decoder.exif_metadata().ok().flatten();
    let xmp = decoder.xmp_metadata().ok().flatten();
    let orientation = pillow_orientation(exif.as_deref(), xmp.as_deref());
    let mut image = DynamicImage::from_decoder(decoder).map_err(image_err)?;
    image.apply_orientation(orientation);
    Ok(Decoded {
        width: image.width(),
        height: image.height(),
        rgb: to_rgb(image, transparency),
        format,
    })
}

/// The orientation `exif_transpose` applies: the EXIF tag when there is one
/// (with or without the `Exif\0\0` prefix some writers keep in WebP and
/// PNG), else XMP's `tiff:Orientation` (attribute or element, as Pillow's
/// `getexif` matches it).
fn pillow_orientation(exif: Option<&[u8]>, xmp: Option<&[u8]>) -> Orientation {
    let from_exif = exif.and_then(|exif| {
        Orientation::from_exif_chunk(exif.strip_prefix(b"Exif\0\0").unwrap_or(exif))
    });
    let from_xmp = || {
        let (xmp, key) = (xmp?, b"tiff:Orientation");
        let digit = (0..xmp.len().saturating_sub(key.len()))
            .filter(|&at| xmp[at..].starts_with(key))
            .find_map(|at| match xmp.get(at + key.len()..)? {
                [b'=', b'"', digit, ..] | [b'>', digit, ..] if digit.is_ascii_digit() => {
                    Some(*digit - b'0')
                }
                _ => None,
            })?;
        Some(Orientation::from_exif(digit).unwrap_or(Orientation::NoTransforms))
    };
    from_exif
        .or_else(from_xmp)
        .unwrap_or(Orientation::NoTransforms)
}

/// Decodes a JPEG with libjpeg-turbo's decoder (through mozjpeg, C only):
/// the decoder Pillow ships, so the pixels are exactly the reference's. With
/// a `min_short_side`, at the smallest DCT scale n/8 that keeps the short
/// side at least that long.
fn decode_jpeg(
    bytes: &[u8],
    path: &Path,
    min_short_side: Option<u32>,
    limits: &DecodeLimits,
) -> Result<Decoded> {
    let ran_out = Cell::new(false);
    // libjpeg reports errors by unwinding out of its callbacks.
    let decoded = catch_unwind(AssertUnwindSafe(|| -> std::io::Result<Result<Decoded>> {
        let input = WatchedEnd {
            rest: bytes,
            ran_out: &ran_out,
        };
        // APP1 holds both EXIF and XMP.
        let mut decompress =
            mozjpeg::Decompress::with_markers(&[mozjpeg::Marker::APP(1)]).from_reader(input)?;
        let (width, height) = (decompress.width() as u32, decompress.height() as u32);
        if let Err(e) = limits.check_dimensions(path, width, height) {
            return Ok(Err(e));
        }
        let app1 = |prefix: &[u8]| {
            decompress
                .markers()
                .find(|m| m.data.starts_with(prefix))
                .map(|m| m.data.to_vec())
        };
        let orientation = pillow_orientation(
            app1(b"Exif\0\0").as_deref(),
            app1(b"http://ns.adobe.com/xap/1.0/\0").as_deref(),
        );
        if let Some(wanted) = min_short_side {
            let wanted = u64::from(wanted);
            let short = u64::from(width.min(height));
            let eighths = (1..=8u8)
                .find(|&n| short * u64::from(n) >= wanted * 8)
                .unwrap_or(8);
            decompress.scale(eighths);
        }
        let cmyk = matches!(
            decompress.color_space(),
            mozjpeg::ColorSpace::JCS_CMYK | mozjpeg::ColorSpace::JCS_YCCK
        );
        let rgb = if cmyk {
            let mut started = decompress.to_colorspace(mozjpeg::ColorSpace::JCS_CMYK)?;
            let (w, h) = (started.width() as u32, started.height() as u32);
            let cmyk = started.read_scanlines::<u8>()?;
            started.finish()?;
            RgbImage::from_raw(
                w,
                h,
                cmyk.chunks_exact(4)
                    .flat_map(inverted_cmyk_to_rgb)
                    .collect(),
            )
        } else {
            let mut started = decompress.rgb()?;
            let (w, h) = (started.width() as u32, started.height() as u32);
            let rgb = started.read_scanlines::<u8>()?;
            started.finish()?;
            RgbImage::from_raw(w, h, rgb)
        };
        let Some(rgb) = rgb else {
            return Err(std::io::Error::other("short image data"));
        };
        let mut image = DynamicImage::ImageRgb8(rgb);
        image.apply_orientation(orientation);
        let rotated = matches!(
            orientation,
            Orientation::Rotate90
                | Orientation::Rotate270
                | Orientation::Rotate90FlipH
                | Orientation::Rotate270FlipH
        );
        let (width, height) = if rotated {
            (height, width)
        } else {
            (width, height)
        };
        Ok(Ok(Decoded {
            rgb: image.into_rgb8(),
            width,
            height,
            format: ImageFormat::Jpeg,
        }))
    }));
    let problem = match decoded {
        // libjpeg only warns when the data ends early, and fills the rest
        // grey; Pillow refuses such a file, and so do we.
        _ if ran_out.get() => "the file is truncated".to_string(),
        Ok(Ok(result)) => return result,
        Ok(Err(e)) => e.to_string(),
        Err(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "libjpeg error".into()),
    };
    Err(Error::image(path)(ImageError::Jpeg { message: problem }))
}

/// The JPEG's bytes. Asked for more than there is, it notes it and fails
/// the read, which stops libjpeg at once: left to its warning, it would
/// fill the rest of the image grey, which for a few hundred bytes that
/// declare 100 megapixels takes seconds.
struct WatchedEnd<'a> {
    rest: &'a [u8],
    ran_out: &'a Cell<bool>,
}

impl WatchedEnd<'_> {
    fn refuse_at_end(&self) -> std::io::Result<()> {
        if self.rest.is_empty() {
            self.ran_out.set(true);
            return Err(std::io::Error::other("the file is truncated"));
        }
        Ok(())
    }
}

impl std::io::Read for WatchedEnd<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !buf.is_empty() {
            self.refuse_at_end()?;
        }
        self.rest.read(buf)
    }
}

impl std::io::BufRead for WatchedEnd<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.refuse_at_end()?;
        Ok(self.rest)
    }

    fn consume(&mut self, amount: usize) {
        self.rest = &self.rest[amount..];
    }
}

/// CMYK as Pillow converts it: it reads every CMYK JPEG as Adobe's inverted
/// CMYK, then `R = (255 − K) − C·(255 − K)/255` (likewise G with M, B with Y).
fn inverted_cmyk_to_rgb(stored: &[u8]) -> [u8; 3] {
    let k = 255 - u32::from(stored[3]);
    let nk = 255 - k;
    let channel = |stored: u8| {
        let c = 255 - u32::from(stored);
        let product = c * nk + 128;
        (nk - ((product >> 8) + product) / 256) as u8
    };
    [channel(stored[0]), channel(stored[1]), channel(stored[2])]
}

/// 8-bit RGB: transparency handled as asked, 16-bit samples reduced to
/// their high byte (image's own conversion rounds `v / 257`; Pillow keeps
/// the high byte, and so do we).
fn to_rgb(image: DynamicImage, transparency: Transparency) -> RgbImage {
    let high_byte = |v: &u16| (v >> 8) as u8;
    let flatten = |rgba: &image::RgbaImage| match transparency {
        Transparency::OntoWhite => composite_on_white(rgba),
        Transparency::Dropped => DynamicImage::ImageRgba8(rgba.clone()).into_rgb8(),
    };
    match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        DynamicImage::ImageRgb16(img) => {
            let (w, h) = img.dimensions();
            RgbImage::from_raw(w, h, img.iter().map(high_byte).collect()).expect("same size")
        }
        DynamicImage::ImageLuma16(img) => {
            let (w, h) = img.dimensions();
            let rgb = img.iter().flat_map(|v| [high_byte(v); 3]).collect();
            RgbImage::from_raw(w, h, rgb).expect("same size")
        }
        DynamicImage::ImageRgba16(img) => {
            let (w, h) = img.dimensions();
            let rgba = image::RgbaImage::from_raw(w, h, img.iter().map(high_byte).collect())
                .expect("same size");
            flatten(&rgba)
        }
        DynamicImage::ImageLumaA16(img) => {
            let (w, h) = img.dimensions();
            let rgba = img
                .chunks_exact(2)
                .flat_map(|la| {
                    let l = high_byte(&la[0]);
                    [l, l, l, high_byte(&la[1])]
                })
                .collect();
            flatten(&image::RgbaImage::from_raw(w, h, rgba).expect("same size"))
        }
        other if other.color().has_alpha() => flatten(&other.into_rgba8()),
        other => other.into_rgb8(),
    }
}

/// `src over white`, as Pillow's `alpha_composite` onto an opaque white
/// background computes it: `c·a/255 + 255·(1 − a/255)`, rounded.
fn composite_on_white(rgba: &image::RgbaImage) -> RgbImage {
    let (w, h) = rgba.dimensions();
    let mut out = Vec::with_capacity(w as usize * h as usize * 3);
    for px in rgba.pixels() {
        let a = u32::from(px[3]);
        for c in &px.0[..3] {
            out.push(((u32::from(*c) * a + 255 * (255 - a) + 127) / 255) as u8);
        }
    }
    RgbImage::from_raw(w, h, out).expect("same size")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transparency_becomes_white() {
        let mut rgba = image::RgbaImage::new(2, 1);
        rgba.put_pixel(0, 0, image::Rgba([10, 20, 30, 0]));
        rgba.put_pixel(1, 0, image::Rgba([10, 20, 30, 255]));
        let rgb = composite_on_white(&rgba);
        assert_eq!(rgb.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(rgb.get_pixel(1, 0).0, [10, 20, 30]);
    }

    #[test]
    fn garbage_is_an_unsupported_image() {
        let err = decode(
            b"not an image at all",
            Path::new("x.jpg"),
            None,
            Transparency::OntoWhite,
            &DecodeLimits::default(),
        )
        .err()
        .unwrap();
        assert!(
            matches!(
                err,
                Error::Image {
                    source: ImageError::Unsupported { .. },
                    ..
                }
            ),
            "{err}"
        );
    }
}
