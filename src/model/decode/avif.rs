//! AVIF's primary image as Pillow's AVIF plugin decodes it: the AV1
//! bitstream of the item (found by mp4parse, Firefox's ISO-BMFF parser),
//! decoded by dav1d to its coded YCbCr planes, then converted to RGB with
//! libyuv's bilinear chroma upsampling and fixed-point matrix (`yuv.rs`),
//! which is what libavif hands 8-bit images to. libheif 1.15 (Debian 12)
//! cannot give the coded planes: it converts with nearest-neighbour chroma
//! right after the decoder, up to 80 levels away from Pillow on sharp edges.
//!
//! This path takes what it reproduces exactly and nothing else: 8-bit 4:2:0,
//! 4:2:2 and 4:4:4 with a `colr` box naming BT.601, BT.709 or BT.2020
//! (non-constant luminance), straight or no alpha. Anything else (deeper
//! samples, monochrome, other matrices, premultiplied alpha, a file one of
//! the two libraries refuses) returns `None`, and `heif.rs` decodes the
//! file with libheif as before. The rotation (`irot`) and mirror (`imir`)
//! are applied in MIAF's order: rotation, then mirror.

use std::io::Cursor;

use dav1d::{PixelLayout, PlanarImageComponent};
use image::{DynamicImage, RgbImage, RgbaImage};
use mp4parse::{ImageMirror, ImageRotation, NclxColourInformation, ParseStrictness};

use super::DecodeLimits;
use super::yuv::{Coefficients, Matrix, Plane, Subsampling, to_rgb};

/// mp4parse's [`NclxColourInformation`] (the `colr` box), `#[repr(C)]` for
/// its C API with private fields: read through the same layout, which is
/// why mp4parse is pinned. (libheif-rs 0.20's accessor leaks libheif's copy
/// when libheif returns it with an error: found by the decode_image fuzz
/// target.)
#[repr(C)]
struct Nclx {
    _colour_primaries: u8,
    _transfer_characteristics: u8,
    matrix_coefficients: u8,
    full_range: bool,
}

// The layout read through must be at least as large as mp4parse's.
const _: () = assert!(size_of::<Nclx>() == size_of::<NclxColourInformation>());

/// The primary image as 8-bit RGB or RGBA, oriented, or `None` where this
/// path does not reproduce libavif (see the module documentation).
pub(super) fn decode(bytes: &[u8], limits: &DecodeLimits) -> Option<DynamicImage> {
    if !boxes_fit(bytes) {
        return None;
    }
    let context = mp4parse::read_avif(&mut Cursor::new(bytes), ParseStrictness::Normal).ok()?;
    if context.premultiplied_alpha {
        return None;
    }
    let nclx: *const NclxColourInformation = context.nclx_colour_information_ptr()?.ok()?;
    // SAFETY: the pointer is not null (mp4parse returns one only for a box
    // it holds) and points into `context`, alive here, at a `#[repr(C)]`
    // struct of `Nclx`'s layout.
    let nclx = unsafe { &*nclx.cast::<Nclx>() };
    // CICP matrix coefficients (ITU-T H.273); libavif reads unspecified (2)
    // as BT.601.
    let matrix = match nclx.matrix_coefficients {
        1 => Matrix::Bt709,
        2 | 5 | 6 => Matrix::Bt601,
        9 => Matrix::Bt2020,
        _ => return None,
    };
    let limit = u32::try_from(limits.max_pixels).unwrap_or(u32::MAX);
    let colour = picture(context.primary_item_coded_data()?, limit)?;
    let subsampling = match colour.pixel_layout() {
        PixelLayout::I420 => Subsampling::Half,
        PixelLayout::I422 => Subsampling::HalfWidth,
        PixelLayout::I444 => Subsampling::None,
        PixelLayout::I400 => return None,
    };
    let alpha = match context.alpha_item_coded_data() {
        Some(coded) => Some(picture(coded, limit)?),
        None => None,
    };
    let (width, height) = (colour.width(), colour.height());
    if alpha
        .as_ref()
        .is_some_and(|a| (a.width(), a.height()) != (width, height))
    {
        return None;
    }
    let plane = |picture: &dav1d::Picture, component| {
        (picture.plane(component), picture.stride(component) as usize)
    };
    let (y, u, v) = (
        plane(&colour, PlanarImageComponent::Y),
        plane(&colour, PlanarImageComponent::U),
        plane(&colour, PlanarImageComponent::V),
    );
    let a = alpha.as_ref().map(|a| plane(a, PlanarImageComponent::Y));
    let pixels = to_rgb(
        (view(&y), view(&u), view(&v)),
        a.as_ref().map(view),
        (width as usize, height as usize),
        subsampling,
        Coefficients::new(matrix, nclx.full_range),
    );
    let image = if alpha.is_some() {
        DynamicImage::ImageRgba8(RgbaImage::from_raw(width, height, pixels)?)
    } else {
        DynamicImage::ImageRgb8(RgbImage::from_raw(width, height, pixels)?)
    };
    let rotated = match context.image_rotation().ok()? {
        ImageRotation::D0 => image,
        // irot turns anti-clockwise; `rotate90` turns clockwise.
        ImageRotation::D90 => image.rotate270(),
        ImageRotation::D180 => image.rotate180(),
        ImageRotation::D270 => image.rotate90(),
    };
    // SAFETY: the pointer is null or points into `context`, alive here.
    let mirror = unsafe { context.image_mirror_ptr().ok()?.as_ref() };
    Some(match mirror {
        None => rotated,
        Some(ImageMirror::TopBottom) => rotated.flipv(),
        Some(ImageMirror::LeftRight) => rotated.fliph(),
    })
}

/// Whether every top-level ISO-BMFF box ends inside the file. mp4parse
/// reserves a box's declared size before reading it (4 GB for a 1 KB file
/// that says so: found by the decode_image fuzz target); libheif, which
/// checks sizes against the data, takes such a file instead.
fn boxes_fit(bytes: &[u8]) -> bool {
    let mut at = 0usize;
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + 8) else {
            return false;
        };
        let size = match u32::from_be_bytes(header[..4].try_into().expect("4 bytes")) {
            // To the end of the file.
            0 => return true,
            // A 64-bit size follows the type.
            1 => match bytes.get(at + 8..at + 16) {
                Some(large) => u64::from_be_bytes(large.try_into().expect("8 bytes")),
                None => return false,
            },
            size => u64::from(size),
        };
        match usize::try_from(size) {
            Ok(size) if size >= 8 && size <= bytes.len() - at => at += size,
            _ => return false,
        }
    }
    true
}

/// A dav1d plane and its stride as `yuv.rs` reads planes.
fn view((data, stride): &(dav1d::Plane, usize)) -> Plane<'_> {
    Plane {
        data: data.as_ref(),
        stride: *stride,
    }
}

/// The one 8-bit picture of an AV1 still image's bitstream, decoded on the
/// calling thread (ingest decodes files in parallel already), or `None`.
fn picture(coded: &[u8], frame_size_limit: u32) -> Option<dav1d::Picture> {
    let mut settings = dav1d::Settings::new();
    settings.set_n_threads(1);
    settings.set_max_frame_delay(1);
    settings.set_frame_size_limit(frame_size_limit);
    let mut decoder = dav1d::Decoder::with_settings(&settings).ok()?;
    match decoder.send_data(coded.to_vec(), None, None, None) {
        Ok(()) => {}
        Err(e) if e.is_again() => {}
        Err(_) => return None,
    }
    // A still image is one frame: it comes out within a few rounds of
    // handing over what the decoder kept pending, or not at all.
    for _ in 0..16 {
        match decoder.get_picture() {
            Ok(picture) if picture.bit_depth() == 8 => return Some(picture),
            Ok(_) => return None,
            Err(e) if e.is_again() => match decoder.send_pending_data() {
                Ok(()) => {}
                Err(e) if e.is_again() => {}
                Err(_) => return None,
            },
            Err(_) => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(size: u32, kind: &[u8; 4], body: usize) -> Vec<u8> {
        let mut b = size.to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.resize(8 + body, 0);
        b
    }

    #[test]
    fn a_box_that_claims_more_than_the_file_is_refused() {
        let ftyp = boxed(16, b"ftyp", 8);
        let mut good = ftyp.clone();
        good.extend(boxed(24, b"mdat", 16));
        assert!(boxes_fit(&good));
        // Size 0: to the end of the file.
        let mut to_end = ftyp.clone();
        to_end.extend(boxed(0, b"mdat", 100));
        assert!(boxes_fit(&to_end));
        // 4 GB declared, 16 bytes there; a 64-bit size likewise; a size
        // below the header's own.
        let mut huge = ftyp.clone();
        huge.extend(boxed(u32::MAX, b"mdat", 16));
        assert!(!boxes_fit(&huge));
        let mut large = ftyp.clone();
        large.extend(boxed(1, b"mdat", 0));
        large.extend((1u64 << 40).to_be_bytes());
        assert!(!boxes_fit(&large));
        let mut tiny = ftyp;
        tiny.extend(boxed(4, b"mdat", 0));
        assert!(!boxes_fit(&tiny));
    }
}
