//! HEIF (HEIC, every iPhone photo since 2017) and AVIF through libheif and
//! the decoders it links (libde265 for HEVC, dav1d or aom for AV1): the
//! library pillow-heif wraps. The primary image is decoded with the file's
//! own transformations (rotation `irot`, mirror `imir`, crop `clap`) applied;
//! in HEIF those are the orientation, and an EXIF orientation tag beside them
//! is not applied again (pillow-heif resets it, Pillow's AVIF plugin replaces
//! it with the transformations). libheif decodes from memory in one call,
//! bounded by `max_pixels` (as JPEGs are), not by the time budget.
//!
//! AVIF files that `avif.rs` reproduces exactly as Pillow's libavif decodes
//! them (8-bit, a known matrix) take that path instead, once libheif has
//! checked the size; libheif decodes every other file.

use std::path::Path;
use std::sync::OnceLock;

use image::{DynamicImage, RgbImage, RgbaImage};
use libheif_rs::{ColorSpace, HeifContext, LibHeif, RgbChroma};

use super::{DecodeLimits, Decoded, Transparency, to_rgb};
use crate::error::{Error, ImageError, Result};
use crate::types::ImageFormat;

/// libheif's global state: initialised once, never torn down, because
/// `heif_deinit` would unload what concurrent decodes still use.
static LIBHEIF: OnceLock<LibHeif> = OnceLock::new();

/// The HEIF format an ISO-BMFF file's `ftyp` brands name, if any: the major
/// brand first, then the compatible ones (`mif1` files name their codec
/// among those).
pub(super) fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.get(4..8)? != b"ftyp" {
        return None;
    }
    let size = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
    let major = bytes.get(8..12)?;
    let compatible = bytes.get(16..size.min(bytes.len())).unwrap_or_default();
    std::iter::once(major)
        .chain(compatible.chunks_exact(4))
        .find_map(|brand| match brand {
            b"avif" | b"avis" => Some(ImageFormat::Avif),
            b"heic" | b"heix" | b"heim" | b"heis" | b"hevc" | b"hevx" => Some(ImageFormat::Heif),
            _ => None,
        })
}

/// Decodes the primary image of a HEIF or AVIF file to 8-bit RGB; deeper
/// samples are reduced by libheif, as pillow-heif has it do.
pub(super) fn decode(
    bytes: &[u8],
    path: &Path,
    format: ImageFormat,
    transparency: Transparency,
    limits: &DecodeLimits,
) -> Result<Decoded> {
    let fail = |source| Error::image(path)(ImageError::Heif { source });
    let libheif = LIBHEIF.get_or_init(LibHeif::new);
    let context = HeifContext::read_from_bytes(bytes).map_err(fail)?;
    let handle = context.primary_image_handle().map_err(fail)?;
    // The handle's size is the one after the transformations.
    let (width, height) = (handle.width(), handle.height());
    limits.check_dimensions(path, width, height)?;
    if format == ImageFormat::Avif
        && let Some(image) = super::avif::decode(bytes, limits)
    {
        return Ok(Decoded {
            width: image.width(),
            height: image.height(),
            rgb: to_rgb(image, transparency),
            format,
        });
    }
    let alpha = handle.has_alpha_channel();
    let chroma = if alpha {
        RgbChroma::Rgba
    } else {
        RgbChroma::Rgb
    };
    // No decoding options: libheif-rs 0.20 frees given ones too early
    // (fixed in 1.0.1, which needs libheif 1.17).
    let image = libheif
        .decode(&handle, ColorSpace::Rgb(chroma), None)
        .map_err(fail)?;
    let empty = || Error::image(path)(ImageError::Empty);
    let plane = image.planes().interleaved.ok_or_else(empty)?;
    let row = plane.width as usize * if alpha { 4 } else { 3 };
    // Rows are `stride` bytes apart; keep the pixels of each.
    let pixels: Vec<u8> = plane
        .data
        .chunks(plane.stride)
        .take(plane.height as usize)
        .flat_map(|line| &line[..row])
        .copied()
        .collect();
    let (w, h) = (plane.width, plane.height);
    let image = if alpha {
        RgbaImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgba8)
    } else {
        RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8)
    }
    .ok_or_else(empty)?;
    Ok(Decoded {
        width: image.width(),
        height: image.height(),
        rgb: to_rgb(image, transparency),
        format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ftyp(major: &[u8; 4], compatible: &[&[u8; 4]]) -> Vec<u8> {
        let size = 16 + 4 * compatible.len() as u32;
        let mut bytes = size.to_be_bytes().to_vec();
        bytes.extend_from_slice(b"ftyp");
        bytes.extend_from_slice(major);
        bytes.extend_from_slice(&[0; 4]);
        compatible.iter().for_each(|b| bytes.extend_from_slice(*b));
        bytes
    }

    #[test]
    fn brands_name_the_format() {
        assert_eq!(sniff(&ftyp(b"heic", &[b"mif1"])), Some(ImageFormat::Heif));
        assert_eq!(sniff(&ftyp(b"avif", &[b"mif1"])), Some(ImageFormat::Avif));
        assert_eq!(
            sniff(&ftyp(b"mif1", &[b"mif1", b"heic"])),
            Some(ImageFormat::Heif)
        );
        assert_eq!(
            sniff(&ftyp(b"mif1", &[b"miaf", b"avif"])),
            Some(ImageFormat::Avif)
        );
        // An MP4 video is ISO-BMFF too, but not an image.
        assert_eq!(sniff(&ftyp(b"isom", &[b"mp41"])), None);
        assert_eq!(sniff(b"\0\0\0\x10ftyp"), None);
    }
}
