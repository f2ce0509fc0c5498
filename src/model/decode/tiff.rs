//! TIFF through libtiff, the library Pillow reads TIFF with: every
//! compression (LZW, Deflate, PackBits, JPEG, old JPEG, CCITT, LogLuv…),
//! strips and tiles, contiguous and planar samples, 1 to 16 bits, grey,
//! palette, RGB, CMYK and YCbCr, all through its RGBA interface
//! (`TIFFReadRGBAImageOriented`). The pure-Rust `tiff` crate panics on some
//! valid tiled planar files and refuses several of these layouts.
//!
//! Only the few functions that takes are bound here, by hand: the bytes are
//! served from memory through libtiff's client callbacks, errors are
//! collected per file (never printed), no single allocation may exceed
//! what [`DecodeLimits`] allows, and reads fail once the time budget is spent.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::path::Path;
use std::time::Instant;

use image::RgbImage;
use image::metadata::Orientation;

use super::{DecodeLimits, Decoded, Transparency};
use crate::error::{Error, ImageError, Result};
use crate::types::ImageFormat;

/// libtiff's opaque handles.
#[repr(C)]
struct Tiff {
    _opaque: [u8; 0],
}
#[repr(C)]
struct TiffOpenOptions {
    _opaque: [u8; 0],
}

type ReadWriteProc = unsafe extern "C" fn(*mut c_void, *mut c_void, isize) -> isize;
type SeekProc = unsafe extern "C" fn(*mut c_void, u64, c_int) -> u64;
type CloseProc = unsafe extern "C" fn(*mut c_void) -> c_int;
type SizeProc = unsafe extern "C" fn(*mut c_void) -> u64;
type MapProc = unsafe extern "C" fn(*mut c_void, *mut *mut c_void, *mut u64) -> c_int;
type UnmapProc = unsafe extern "C" fn(*mut c_void, *mut c_void, u64);
/// `(tif, user_data, module, format, va_list)`: a `va_list` argument is a
/// pointer in the ABIs of every 64-bit target Rust has (an array that decays,
/// or a large struct passed by reference), so it is taken as one and handed
/// on to `vsnprintf` untouched.
type ErrorHandler = unsafe extern "C" fn(
    *mut Tiff,
    *mut c_void,
    *const c_char,
    *const c_char,
    *mut c_void,
) -> c_int;

const TIFFTAG_IMAGEWIDTH: u32 = 256;
const TIFFTAG_IMAGELENGTH: u32 = 257;
const TIFFTAG_ORIENTATION: u32 = 274;
const TIFFTAG_EXTRASAMPLES: u32 = 338;
const EXTRASAMPLE_ASSOCALPHA: u16 = 1;
const EXTRASAMPLE_UNASSALPHA: u16 = 2;

#[link(name = "tiff")]
unsafe extern "C" {
    fn TIFFOpenOptionsAlloc() -> *mut TiffOpenOptions;
    fn TIFFOpenOptionsFree(options: *mut TiffOpenOptions);
    fn TIFFOpenOptionsSetMaxSingleMemAlloc(options: *mut TiffOpenOptions, max: isize);
    fn TIFFOpenOptionsSetErrorHandlerExtR(
        options: *mut TiffOpenOptions,
        handler: ErrorHandler,
        user_data: *mut c_void,
    );
    fn TIFFOpenOptionsSetWarningHandlerExtR(
        options: *mut TiffOpenOptions,
        handler: ErrorHandler,
        user_data: *mut c_void,
    );
    #[allow(clippy::too_many_arguments)]
    fn TIFFClientOpenExt(
        name: *const c_char,
        mode: *const c_char,
        client: *mut c_void,
        read: ReadWriteProc,
        write: ReadWriteProc,
        seek: SeekProc,
        close: CloseProc,
        size: SizeProc,
        map: MapProc,
        unmap: UnmapProc,
        options: *mut TiffOpenOptions,
    ) -> *mut Tiff;
    fn TIFFClose(tif: *mut Tiff);
    fn TIFFGetField(tif: *mut Tiff, tag: u32, ...) -> c_int;
    fn TIFFGetFieldDefaulted(tif: *mut Tiff, tag: u32, ...) -> c_int;
    fn TIFFSetField(tif: *mut Tiff, tag: u32, ...) -> c_int;
    fn TIFFReadRGBAImageOriented(
        tif: *mut Tiff,
        width: u32,
        height: u32,
        raster: *mut u32,
        orientation: c_int,
        stop_on_error: c_int,
    ) -> c_int;
}

unsafe extern "C" {
    fn vsnprintf(buf: *mut c_char, len: usize, format: *const c_char, args: *mut c_void) -> c_int;
}

/// The file, served to libtiff from memory until the time budget is spent.
struct Source<'a> {
    bytes: &'a [u8],
    position: u64,
    deadline: Instant,
    timed_out: bool,
}

unsafe extern "C" fn read(client: *mut c_void, buf: *mut c_void, len: isize) -> isize {
    // SAFETY: `client` is the `Source` given to TIFFClientOpenExt, alive
    // until TIFFClose; libtiff hands a buffer of `len` bytes.
    let source = unsafe { &mut *client.cast::<Source>() };
    // A failed read is an error libtiff reports, ending the decode.
    if Instant::now() > source.deadline {
        source.timed_out = true;
        return -1;
    }
    let start = usize::try_from(source.position)
        .unwrap_or(usize::MAX)
        .min(source.bytes.len());
    let count = usize::try_from(len)
        .unwrap_or(0)
        .min(source.bytes.len() - start);
    // SAFETY: as above; `count` fits both the buffer and what is left.
    unsafe {
        std::ptr::copy_nonoverlapping(source.bytes.as_ptr().add(start), buf.cast::<u8>(), count)
    };
    source.position = (start + count) as u64;
    count as isize
}

unsafe extern "C" fn write(_: *mut c_void, _: *mut c_void, _: isize) -> isize {
    -1
}

unsafe extern "C" fn seek(client: *mut c_void, offset: u64, whence: c_int) -> u64 {
    // SAFETY: see `read`.
    let source = unsafe { &mut *client.cast::<Source>() };
    let base = match whence {
        0 => 0,
        1 => source.position,
        2 => source.bytes.len() as u64,
        _ => return u64::MAX,
    };
    // `offset` is a signed value in an unsigned type (SEEK_CUR may go back).
    match base.checked_add_signed(offset as i64) {
        Some(position) => {
            source.position = position;
            position
        }
        None => u64::MAX,
    }
}

unsafe extern "C" fn close(_: *mut c_void) -> c_int {
    0
}

unsafe extern "C" fn size(client: *mut c_void) -> u64 {
    // SAFETY: see `read`.
    unsafe { &*client.cast::<Source>() }.bytes.len() as u64
}

unsafe extern "C" fn map(_: *mut c_void, _: *mut *mut c_void, _: *mut u64) -> c_int {
    0
}

unsafe extern "C" fn unmap(_: *mut c_void, _: *mut c_void, _: u64) {}

/// Keeps each error message of the file (warnings are ignored: libtiff
/// warns of harmless oddities Pillow ignores too).
unsafe extern "C" fn record_error(
    _: *mut Tiff,
    user_data: *mut c_void,
    module: *const c_char,
    format: *const c_char,
    args: *mut c_void,
) -> c_int {
    let mut buf = [0 as c_char; 512];
    // SAFETY: libtiff passes a format string with its arguments; vsnprintf
    // writes at most `buf.len()` bytes, NUL included.
    unsafe { vsnprintf(buf.as_mut_ptr(), buf.len(), format, args) };
    // SAFETY: NUL-terminated by vsnprintf; `module` is NULL or a C string.
    let message = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy();
    let module = (!module.is_null()).then(|| unsafe { CStr::from_ptr(module) }.to_string_lossy());
    // SAFETY: `user_data` is the `Vec<String>` of `decode`, which outlives the handle.
    let errors = unsafe { &mut *user_data.cast::<Vec<String>>() };
    errors.push(match module {
        Some(module) if module != "imgdb" => format!("{module}: {message}"),
        _ => message.into_owned(),
    });
    1
}

unsafe extern "C" fn ignore_warning(
    _: *mut Tiff,
    _: *mut c_void,
    _: *const c_char,
    _: *const c_char,
    _: *mut c_void,
) -> c_int {
    1
}

/// An open TIFF, closed on drop.
struct Handle(*mut Tiff);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: opened by TIFFClientOpenExt, closed once.
        unsafe { TIFFClose(self.0) }
    }
}

/// Decodes the first image of a TIFF to 8-bit RGB, oriented by its
/// Orientation tag (as `exif_transpose` does with it).
pub(super) fn decode(
    bytes: &[u8],
    path: &Path,
    transparency: Transparency,
    limits: &DecodeLimits,
) -> Result<Decoded> {
    let mut source = Source {
        bytes,
        position: 0,
        // As `DeadlineReader` has it.
        deadline: Instant::now() + limits.max_decode_time,
        timed_out: false,
    };
    let mut errors: Vec<String> = Vec::new();
    let fail = |errors: &[String], what: &str| {
        let message = errors.last().cloned().unwrap_or_else(|| what.to_string());
        Error::image(path)(ImageError::Tiff { message })
    };
    // SAFETY: the callbacks above match libtiff's prototypes; `source` and
    // `errors` outlive the handle (declared before it, dropped after).
    let tif = unsafe {
        let options = TIFFOpenOptionsAlloc();
        if options.is_null() {
            return Err(fail(&errors, "out of memory"));
        }
        // A strip or tile of 16-bit RGBA samples the size of the largest image.
        let max_alloc = isize::try_from(limits.max_pixels.saturating_mul(8)).unwrap_or(isize::MAX);
        TIFFOpenOptionsSetMaxSingleMemAlloc(options, max_alloc);
        let user_data = (&raw mut errors).cast::<c_void>();
        TIFFOpenOptionsSetErrorHandlerExtR(options, record_error, user_data);
        TIFFOpenOptionsSetWarningHandlerExtR(options, ignore_warning, std::ptr::null_mut());
        // "m": no memory mapping (the bytes are already in memory).
        let tif = TIFFClientOpenExt(
            c"imgdb".as_ptr(),
            c"rm".as_ptr(),
            (&raw mut source).cast::<c_void>(),
            read,
            write,
            seek,
            close,
            size,
            map,
            unmap,
            options,
        );
        // The handle keeps copies of the options.
        TIFFOpenOptionsFree(options);
        if tif.is_null() {
            return Err(fail(&errors, "not a readable TIFF"));
        }
        Handle(tif)
    };
    let (mut width, mut height, mut orientation) = (0u32, 0u32, 1u16);
    // SAFETY: these tags are read into a uint32_t, uint32_t and uint16_t.
    unsafe {
        TIFFGetField(tif.0, TIFFTAG_IMAGEWIDTH, &raw mut width);
        TIFFGetField(tif.0, TIFFTAG_IMAGELENGTH, &raw mut height);
        TIFFGetFieldDefaulted(tif.0, TIFFTAG_ORIENTATION, &raw mut orientation);
    }
    if width == 0 || height == 0 {
        return Err(Error::image(path)(ImageError::Empty));
    }
    limits.check_dimensions(path, width, height)?;
    // SAFETY: `tif` is open.
    let alpha = unsafe { alpha(tif.0) };
    let mut raster = vec![0u32; width as usize * height as usize];
    // Asking for the file's own orientation leaves the pixels as stored
    // (libtiff only flips between orientations), rotated below.
    // SAFETY: the raster holds width × height pixels.
    let complete = unsafe {
        TIFFReadRGBAImageOriented(
            tif.0,
            width,
            height,
            raster.as_mut_ptr(),
            c_int::from(orientation),
            1,
        )
    };
    drop(tif);
    if source.timed_out {
        return Err(Error::image(path)(ImageError::TimedOut {
            budget: limits.max_decode_time,
        }));
    }
    if complete == 0 {
        return Err(fail(&errors, "cannot read the pixels"));
    }
    let rgb = RgbImage::from_raw(width, height, flatten(&raster, alpha, transparency))
        .expect("same size");
    let mut image = image::DynamicImage::ImageRgb8(rgb);
    let orientation = u8::try_from(orientation)
        .ok()
        .and_then(Orientation::from_exif)
        .unwrap_or(Orientation::NoTransforms);
    image.apply_orientation(orientation);
    Ok(Decoded {
        width: image.width(),
        height: image.height(),
        rgb: image.into_rgb8(),
        format: ImageFormat::Tiff,
    })
}

/// What the fourth sample of a pixel is, as Pillow reads it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Alpha {
    /// None, or an extra sample of unspecified meaning (Pillow: `RGBX`).
    Ignored,
    /// Unassociated alpha (`RGBA`).
    Straight,
    /// Associated alpha (`RGBa`: colours premultiplied).
    Premultiplied,
}

/// The file's alpha. libtiff premultiplies unassociated alpha, rounded to 8
/// bits, which loses the colour of transparent pixels that dropping alpha
/// keeps: relabelled associated, it hands the samples over unchanged.
///
/// # Safety
/// `tif` must be an open handle.
unsafe fn alpha(tif: *mut Tiff) -> Alpha {
    let (mut count, mut info) = (0u16, std::ptr::null::<u16>());
    // SAFETY: ExtraSamples is read into a uint16_t count and a uint16_t
    // array that libtiff owns, of that length.
    let kinds = unsafe {
        if TIFFGetField(tif, TIFFTAG_EXTRASAMPLES, &raw mut count, &raw mut info) == 0
            || info.is_null()
        {
            return Alpha::Ignored;
        }
        std::slice::from_raw_parts(info, usize::from(count)).to_vec()
    };
    match kinds.first() {
        Some(&EXTRASAMPLE_ASSOCALPHA) => Alpha::Premultiplied,
        Some(&EXTRASAMPLE_UNASSALPHA) => {
            let mut relabelled = kinds;
            relabelled[0] = EXTRASAMPLE_ASSOCALPHA;
            // SAFETY: a count (promoted to int) and an array of that many
            // uint16_t, which libtiff copies.
            unsafe {
                TIFFSetField(
                    tif,
                    TIFFTAG_EXTRASAMPLES,
                    c_int::from(count),
                    relabelled.as_ptr(),
                )
            };
            Alpha::Straight
        }
        _ => Alpha::Ignored,
    }
}

/// libtiff's ABGR pixels to RGB as Pillow flattens the same samples: onto
/// white `c·a/255 + 255 − a` for straight colour, `c + 255 − a` for
/// premultiplied; dropping alpha keeps straight colour and divides
/// premultiplied colour back out, truncating as Pillow's `RGBa` unpacker does.
fn flatten(raster: &[u32], alpha: Alpha, transparency: Transparency) -> Vec<u8> {
    let mut out = Vec::with_capacity(raster.len() * 3);
    for &abgr in raster {
        let a = if alpha == Alpha::Ignored {
            255
        } else {
            abgr >> 24
        };
        for shift in [0, 8, 16] {
            let c = (abgr >> shift) & 0xff;
            let flat = match (alpha, transparency) {
                (Alpha::Ignored, _) | (Alpha::Straight, Transparency::Dropped) => c,
                (Alpha::Straight, Transparency::OntoWhite) => (c * a + 255 * (255 - a) + 127) / 255,
                (Alpha::Premultiplied, Transparency::OntoWhite) => (c + 255 - a).min(255),
                (Alpha::Premultiplied, Transparency::Dropped) if a == 0 => 0,
                (Alpha::Premultiplied, Transparency::Dropped) => (c * 255 / a).min(255),
            };
            out.push(flat as u8);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_flattens_as_pillow_does() {
        let abgr = |[r, g, b, a]: [u32; 4]| a << 24 | b << 16 | g << 8 | r;
        let straight = [200, 100, 0, 128];
        let white = super::super::composite_on_white(
            &image::RgbaImage::from_raw(1, 1, straight.map(|v| v as u8).to_vec()).unwrap(),
        )
        .into_raw();
        let flat = |px, alpha, transparency| flatten(&[abgr(px)], alpha, transparency);
        assert_eq!(
            flat(straight, Alpha::Straight, Transparency::OntoWhite),
            white
        );
        assert_eq!(
            flat(straight, Alpha::Straight, Transparency::Dropped),
            [200, 100, 0]
        );
        assert_eq!(
            flat(straight, Alpha::Ignored, Transparency::OntoWhite),
            [200, 100, 0]
        );
        // The same pixel premultiplied (rounded): over white it is the same.
        let premultiplied = straight.map(|c| if c == 128 { c } else { (c * 128 + 127) / 255 });
        let over_white = flat(premultiplied, Alpha::Premultiplied, Transparency::OntoWhite);
        assert_eq!(over_white, white);
        let dropped = flat(premultiplied, Alpha::Premultiplied, Transparency::Dropped);
        assert!(
            dropped
                .iter()
                .zip([200u8, 100, 0])
                .all(|(a, b)| a.abs_diff(b) <= 2),
            "{dropped:?}"
        );
    }
}
