//! 8-bit YCbCr to RGB as Pillow's AVIF decoder converts it: libavif hands
//! 8-bit images whose matrix libyuv knows to libyuv's `I4xxToARGBMatrixFilter`
//! with its bilinear filter (libavif's `AVIF_CHROMA_UPSAMPLING_AUTOMATIC`).
//! This module owns that arithmetic only: chroma upsampling with libyuv's
//! edge rules, and libyuv's 6-bit fixed-point `YuvPixel`, bit for bit (Pillow
//! 13.0.0's libavif 1.4.2 with libyuv 1924 gives the same bytes on every
//! 4:2:0, 4:2:2 and 4:4:4 file measured, odd sizes, limited range and BT.709
//! and BT.2020 included). Deciding when it applies is `avif.rs`'s business.

/// How the chroma planes are subsampled against the luma plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Subsampling {
    /// 4:2:0: half width, half height.
    Half,
    /// 4:2:2: half width, full height.
    HalfWidth,
    /// 4:4:4: none.
    None,
}

/// The matrix coefficients that libavif maps to a libyuv table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Matrix {
    /// BT.601 (CICP 5 and 6), and unspecified (2), which libavif reads as it.
    Bt601,
    /// BT.709 (CICP 1).
    Bt709,
    /// BT.2020 non-constant luminance (CICP 9).
    Bt2020,
}

/// libyuv's `YuvConstants` for one matrix and range: the chroma
/// contributions in 1/64 (`UB`, `VR`, `UG`, `VG`), the luma scale `YG` (in
/// 1/64 × 65536/257) and bias `YB` (with the rounding half of 64 in it), as
/// libyuv's `row_common.cc` defines them. Limited-range blue is held at 128
/// there (`max(128, ...)`, for its SIMD code) unless libyuv is built with
/// `LIBYUV_UNLIMITED_DATA`, which Pillow's is not: kept, since it is what
/// Pillow gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Coefficients {
    ub: i32,
    vr: i32,
    ug: i32,
    vg: i32,
    yg: u32,
    yb: i32,
}

impl Coefficients {
    /// The table libavif picks for `matrix` at full or limited range.
    pub(super) fn new(matrix: Matrix, full_range: bool) -> Self {
        let (ub, vr, ug, vg, yg, yb) = match (matrix, full_range) {
            // kYuvJPEGConstants, kYuvI601Constants
            (Matrix::Bt601, true) => (113, 90, 22, 46, 16320, 32),
            (Matrix::Bt601, false) => (128, 102, 25, 52, 18997, -1160),
            // kYuvF709Constants, kYuvH709Constants
            (Matrix::Bt709, true) => (119, 101, 12, 30, 16320, 32),
            (Matrix::Bt709, false) => (128, 115, 14, 34, 18997, -1160),
            // kYuvV2020Constants, kYuv2020Constants
            (Matrix::Bt2020, true) => (120, 94, 11, 37, 16320, 32),
            (Matrix::Bt2020, false) => (128, 107, 12, 42, 19003, -1160),
        };
        Coefficients {
            ub,
            vr,
            ug,
            vg,
            yg,
            yb,
        }
    }

    /// libyuv's `YuvPixel`: one pixel to `[r, g, b]`.
    fn rgb(&self, y: u8, u: u8, v: u8) -> [u8; 3] {
        let y1 = ((u32::from(y) * 0x0101 * self.yg) >> 16) as i32 + self.yb;
        let (u, v) = (i32::from(u) - 128, i32::from(v) - 128);
        let clamp = |x: i32| (x >> 6).clamp(0, 255) as u8;
        [
            clamp(y1 + v * self.vr),
            clamp(y1 - (u * self.ug + v * self.vg)),
            clamp(y1 + u * self.ub),
        ]
    }
}

/// One plane of 8-bit samples, rows `stride` bytes apart.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plane<'a> {
    pub(super) data: &'a [u8],
    pub(super) stride: usize,
}

impl<'a> Plane<'a> {
    fn row(self, y: usize, width: usize) -> &'a [u8] {
        &self.data[y * self.stride..][..width]
    }
}

/// Converts a `width` × `height` image to interleaved RGB, or RGBA when
/// `alpha` is given (its samples copied as they are: libavif does not
/// touch straight alpha). Panics if a plane is smaller than the sizes say.
pub(super) fn to_rgb(
    (y, cb, cr): (Plane, Plane, Plane),
    alpha: Option<Plane>,
    (width, height): (usize, usize),
    subsampling: Subsampling,
    coefficients: Coefficients,
) -> Vec<u8> {
    let channels = if alpha.is_some() { 4 } else { 3 };
    let mut out = vec![0; width * height * channels];
    if width == 0 || height == 0 {
        return out;
    }
    let chroma_width = match subsampling {
        Subsampling::None => width,
        _ => width.div_ceil(2),
    };
    let mut u = vec![0; width];
    let mut v = vec![0; width];
    for (row, line) in out.chunks_exact_mut(width * channels).enumerate() {
        for (plane, full) in [(cb, &mut u), (cr, &mut v)] {
            let chroma = |r: usize| plane.row(r, chroma_width);
            match subsampling {
                Subsampling::None => full.copy_from_slice(chroma(row)),
                Subsampling::HalfWidth => upsample_row(chroma(row), full),
                Subsampling::Half => match vertical_pair(row, height) {
                    None => upsample_row(chroma(row / 2), full),
                    Some((near, far)) => upsample_rows(chroma(near), chroma(far), full),
                },
            }
        }
        let luma = y.row(row, width);
        let alpha = alpha.map(|a| a.row(row, width));
        for (x, pixel) in line.chunks_exact_mut(channels).enumerate() {
            pixel[..3].copy_from_slice(&coefficients.rgb(luma[x], u[x], v[x]));
            if let Some(alpha) = alpha {
                pixel[3] = alpha[x];
            }
        }
    }
    out
}

/// Which chroma rows luma row `row` blends, nearer first (weights 3/4 and
/// 1/4), or `None` where libyuv takes one chroma row as it is: the first
/// luma row, and the last of an even height. libyuv's chroma sits midway
/// between two luma rows; its loop blends row pairs 1-2, 3-4, … in between.
fn vertical_pair(row: usize, height: usize) -> Option<(usize, usize)> {
    if row == 0 || (row == height - 1 && height.is_multiple_of(2)) {
        return None;
    }
    let (upper, lower) = ((row - 1) / 2, row.div_ceil(2));
    Some(if row % 2 == 1 {
        (upper, lower)
    } else {
        (lower, upper)
    })
}

/// libyuv's `ScaleRowUp2_Linear_Any_C`: doubles a row, each output 3/4 of
/// its nearer sample and 1/4 of the other, the first and last outputs copied
/// from the samples under them.
fn upsample_row(src: &[u8], dst: &mut [u8]) {
    let w = dst.len();
    dst[0] = src[0];
    for i in 0..(w - 1) / 2 {
        let (a, b) = (u16::from(src[i]), u16::from(src[i + 1]));
        dst[2 * i + 1] = ((3 * a + b + 2) >> 2) as u8;
        dst[2 * i + 2] = ((a + 3 * b + 2) >> 2) as u8;
    }
    dst[w - 1] = src[(w - 1) / 2];
}

/// libyuv's `ScaleRowUp2_Bilinear_Any_C` for one output row: `near` is the
/// chroma row weighted 3/4, `far` the one weighted 1/4; inside, weights
/// 9-3-3-1 in sixteenths; the first and last columns blend vertically only.
fn upsample_rows(near: &[u8], far: &[u8], dst: &mut [u8]) {
    let w = dst.len();
    let edge = |k: usize| ((3 * u16::from(near[k]) + u16::from(far[k]) + 2) >> 2) as u8;
    dst[0] = edge(0);
    for i in 0..(w - 1) / 2 {
        let (s0, s1) = (u16::from(near[i]), u16::from(near[i + 1]));
        let (t0, t1) = (u16::from(far[i]), u16::from(far[i + 1]));
        dst[2 * i + 1] = ((9 * s0 + 3 * s1 + 3 * t0 + t1 + 8) >> 4) as u8;
        dst[2 * i + 2] = ((3 * s0 + 9 * s1 + t0 + 3 * t1 + 8) >> 4) as u8;
    }
    dst[w - 1] = edge((w - 1) / 2);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(data: &[u8], stride: usize) -> Plane<'_> {
        Plane { data, stride }
    }

    #[test]
    fn pixels_are_libyuvs() {
        // Expected values from a numpy transcription of libyuv's YuvPixel,
        // which gave Pillow's bytes on every file measured.
        let k = Coefficients::new(Matrix::Bt601, true);
        assert_eq!(k.rgb(128, 128, 128), [128, 128, 128]);
        assert_eq!(k.rgb(255, 128, 128), [255, 255, 255]);
        assert_eq!(k.rgb(0, 128, 128), [0, 0, 0]);
        // Red in JPEG YCbCr.
        assert_eq!(k.rgb(76, 85, 255), [255, 0, 0]);
        // Limited range: black and white at 16 and 235; blue's UB held at
        // 128 gives 253 where the exact BT.601 formula gives 255.
        let k = Coefficients::new(Matrix::Bt601, false);
        assert_eq!(k.rgb(16, 128, 128), [0, 0, 0]);
        assert_eq!(k.rgb(235, 128, 128), [255, 255, 255]);
        assert_eq!(k.rgb(41, 240, 110), [0, 0, 253]);
    }

    #[test]
    fn rows_blend_as_libyuv_does() {
        // Even width: edges copied, inside 3:1 and 1:3.
        let mut dst = [0; 6];
        upsample_row(&[0, 100, 200], &mut dst);
        assert_eq!(dst, [0, 25, 75, 125, 175, 200]);
        // Odd width: the last output is the last sample, not a blend.
        let mut dst = [0; 5];
        upsample_row(&[0, 100, 200], &mut dst);
        assert_eq!(dst, [0, 25, 75, 125, 200]);
        let mut dst = [0; 4];
        upsample_rows(&[0, 160], &[16, 0], &mut dst);
        // (0*3+16+2)>>2, (9*0+3*160+3*16+0+8)>>4, (0+9*160+16+0+8)>>4, (3*160+0+2)>>2
        assert_eq!(dst, [4, 33, 91, 120]);
    }

    #[test]
    fn chroma_rows_pair_midway() {
        // Height 4: row 0 alone, rows 1-2 between chroma rows 0 and 1, row 3 alone.
        let pairs: Vec<_> = (0..4).map(|r| vertical_pair(r, 4)).collect();
        assert_eq!(pairs, [None, Some((0, 1)), Some((1, 0)), None]);
        // Height 5: the last row blends (1/4 of chroma row 1, 3/4 of row 2).
        assert_eq!(vertical_pair(4, 5), Some((2, 1)));
        assert_eq!(vertical_pair(0, 1), None);
    }

    #[test]
    fn converts_subsampled_planes_with_alpha() {
        // 3x3 grey luma, chroma neutral but for one sample: 4:2:0 spreads it.
        let y = [128; 9];
        let cb = [128, 128, 128, 128];
        let cr = [128, 128, 128, 255];
        let a = [7; 9];
        let rgba = to_rgb(
            (plane(&y, 3), plane(&cb, 2), plane(&cr, 2)),
            Some(plane(&a, 3)),
            (3, 3),
            Subsampling::Half,
            Coefficients::new(Matrix::Bt601, true),
        );
        let red: Vec<u8> = rgba.chunks(4).map(|p| p[0]).collect();
        // Cr upsampled is [128, 128, 128], [128, 136, 160], [128, 152, 223].
        assert_eq!(red, [128, 128, 128, 128, 139, 173, 128, 162, 255]);
        assert!(rgba.chunks(4).all(|p| p[3] == 7));
    }
}
