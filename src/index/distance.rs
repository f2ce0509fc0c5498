//! Distance kernels: the exact `f32` dot product used for re-ranking and
//! brute-force search, and the 8-bit quantized dot product the HNSW graph is
//! navigated with.
//!
//! Search is memory-bound: a 512-d `f32` vector is 2 KiB, and a query touches
//! a few thousand of them in random order. The graph therefore holds each
//! vector quantized to `i8` (a quarter of the bytes) with one `f32` scale per
//! vector, and the few candidates it returns are re-ranked with the exact
//! vectors. BENCHMARKS.md records what each step gave.
//!
//! The kernels use AVX2 (+FMA) when the CPU has it, detected at run time, and
//! portable code otherwise; both give the same results up to float rounding.

use hnsw_rs::prelude::Distance;

/// The element type of the vectors stored in the graph.
pub(crate) type Quantized = i8;

/// Trailing bytes of a quantized vector that hold its `f32` scale.
const SCALE_BYTES: usize = 4;

/// The graph's distance: `1 - dot` of two quantized unit vectors.
///
/// hnsw_rs records this type's name in its dump and refuses to reload a dump
/// made with another name: renaming it forces one rebuild of old snapshots.
#[derive(Default, Clone, Copy, Debug)]
pub(crate) struct QuantizedDot;

impl Distance<Quantized> for QuantizedDot {
    fn eval(&self, a: &[Quantized], b: &[Quantized]) -> f32 {
        let n = a.len() - SCALE_BYTES;
        let dot = dot_i8(&a[..n], &b[..n]) as f32 * scale(a) * scale(b);
        // hnsw_rs expects distances >= 0.
        (1.0 - dot).max(0.0)
    }
}

fn scale(q: &[Quantized]) -> f32 {
    let tail = &q[q.len() - SCALE_BYTES..];
    f32::from_le_bytes([tail[0] as u8, tail[1] as u8, tail[2] as u8, tail[3] as u8])
}

/// Quantizes a vector symmetrically to `i8`: codes `round(x / step)` with
/// `step = max|x| / 127`, so that `dot(a, b) ≈ dot_i8(qa, qb) · step_a · step_b`.
pub(crate) fn quantize_parts(v: &[f32]) -> (Vec<i8>, f32) {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let step = if max > 0.0 { max / 127.0 } else { 1.0 };
    let codes = v
        .iter()
        .map(|x| (x / step).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (codes, step)
}

/// The form hnsw_rs stores: the codes followed by the step as four
/// little-endian bytes (its distance sees one slice per point).
pub(crate) fn quantize(v: &[f32]) -> Vec<Quantized> {
    let (mut codes, step) = quantize_parts(v);
    codes.extend(step.to_le_bytes().map(|b| b as i8));
    codes
}

/// The exact dot product of two `f32` vectors of equal length.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { x86::dot_f32(a, b) };
        }
    }
    portable::dot_f32(a, b)
}

/// The dot product of two `i8` vectors of equal length, exactly, in `i32`,
/// when `b` holds no -128 ([`quantize`] never makes one; with one the AVX2
/// kernel may be off, though never unsound).
pub(crate) fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { x86::dot_i8(a, b) };
        }
    }
    portable::dot_i8(a, b)
}

mod portable {
    /// Four independent accumulators let the compiler vectorise and pipeline.
    pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0.0f32; 8];
        let chunks = a.len() / 8 * 8;
        for (ca, cb) in a[..chunks].chunks_exact(8).zip(b[..chunks].chunks_exact(8)) {
            for i in 0..8 {
                acc[i] += ca[i] * cb[i];
            }
        }
        let tail: f32 = a[chunks..]
            .iter()
            .zip(&b[chunks..])
            .map(|(x, y)| x * y)
            .sum();
        acc.iter().sum::<f32>() + tail
    }

    pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| i32::from(x) * i32::from(y))
            .sum()
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX2 and FMA; `a` and `b` must have equal lengths.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut s = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY: every load reads 8 floats at offsets below `n` of both slices.
        unsafe {
            while i + 32 <= n {
                for (j, acc) in s.iter_mut().enumerate() {
                    let x = _mm256_loadu_ps(pa.add(i + 8 * j));
                    let y = _mm256_loadu_ps(pb.add(i + 8 * j));
                    *acc = _mm256_fmadd_ps(x, y, *acc);
                }
                i += 32;
            }
            while i + 8 <= n {
                s[0] =
                    _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s[0]);
                i += 8;
            }
        }
        let sum = _mm256_add_ps(_mm256_add_ps(s[0], s[1]), _mm256_add_ps(s[2], s[3]));
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` has room for 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
        let tail: f32 = a[i..].iter().zip(&b[i..]).map(|(x, y)| x * y).sum();
        lanes.iter().sum::<f32>() + tail
    }

    /// # Safety
    /// The CPU must support AVX2; `a` and `b` must have equal lengths.
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        // `maddubs` multiplies unsigned by signed bytes and adds pairs into
        // i16: |a| times b with a's sign is a·b, 32 bytes an instruction
        // (twice the sign-extending kernel's), and a pair of products is at
        // most 2·128·127 in magnitude, inside i16. `madd` by ones widens the
        // pairs into i32 sums.
        #[target_feature(enable = "avx2")]
        fn step(a: __m256i, b: __m256i) -> __m256i {
            let pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(a), _mm256_sign_epi8(b, a));
            _mm256_madd_epi16(pairs, _mm256_set1_epi16(1))
        }
        let mut s0 = _mm256_setzero_si256();
        let mut s1 = _mm256_setzero_si256();
        let mut i = 0;
        // SAFETY: every load reads 32 bytes at offsets below `n` of both slices.
        unsafe {
            while i + 64 <= n {
                let a0 = _mm256_loadu_si256(pa.add(i).cast());
                let b0 = _mm256_loadu_si256(pb.add(i).cast());
                let a1 = _mm256_loadu_si256(pa.add(i + 32).cast());
                let b1 = _mm256_loadu_si256(pb.add(i + 32).cast());
                s0 = _mm256_add_epi32(s0, step(a0, b0));
                s1 = _mm256_add_epi32(s1, step(a1, b1));
                i += 64;
            }
            if i + 32 <= n {
                let a0 = _mm256_loadu_si256(pa.add(i).cast());
                let b0 = _mm256_loadu_si256(pb.add(i).cast());
                s0 = _mm256_add_epi32(s0, step(a0, b0));
                i += 32;
            }
        }
        let mut lanes = [0i32; 8];
        // SAFETY: `lanes` has room for 8 i32.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), _mm256_add_epi32(s0, s1)) };
        let tail: i32 = a[i..]
            .iter()
            .zip(&b[i..])
            .map(|(&x, &y)| i32::from(x) * i32::from(y))
            .sum();
        lanes.iter().sum::<i32>() + tail
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    fn unit(rng: &mut impl Rng, dim: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    /// Compares the AVX2 kernels, called directly, with the portable ones;
    /// on a CPU without AVX2 and FMA there is nothing to compare (`dot`
    /// would be the portable kernel itself), and the test says it skipped.
    #[test]
    fn simd_and_portable_kernels_agree() {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            let seed = 7;
            println!("seed {seed}");
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            for dim in [1, 7, 8, 31, 32, 33, 64, 512, 515, 768] {
                let (a, b) = (unit(&mut rng, dim), unit(&mut rng, dim));
                // SAFETY: the CPU supports AVX2 and FMA (checked above).
                let simd = unsafe { x86::dot_f32(&a, &b) };
                assert!((simd - portable::dot_f32(&a, &b)).abs() < 1e-5, "dim {dim}");
                let (qa, qb) = (quantize(&a), quantize(&b));
                let (qa, qb) = (&qa[..dim], &qb[..dim]);
                // SAFETY: as above.
                let simd = unsafe { x86::dot_i8(qa, qb) };
                assert_eq!(simd, portable::dot_i8(qa, qb), "dim {dim}");
            }
            // The extremes `quantize` makes, and -128 in `a`: no i16 pair
            // of products may saturate.
            for (x, y) in [
                (127, 127),
                (-127, 127),
                (-127, -127),
                (-128, 127),
                (-128, -127),
            ] {
                let (a, b) = (vec![x; 96], vec![y; 96]);
                // SAFETY: as above.
                let simd = unsafe { x86::dot_i8(&a, &b) };
                assert_eq!(simd, portable::dot_i8(&a, &b), "{x} · {y}");
            }
            return;
        }
        eprintln!("SKIPPED simd_and_portable_kernels_agree: no AVX2 and FMA on this CPU");
    }

    #[test]
    fn quantized_distance_approximates_the_exact_one() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for _ in 0..100 {
            let (a, b) = (unit(&mut rng, 512), unit(&mut rng, 512));
            let exact = 1.0 - dot(&a, &b);
            let approx = QuantizedDot.eval(&quantize(&a), &quantize(&b));
            assert!((exact - approx).abs() < 0.01, "{exact} vs {approx}");
        }
        let a = unit(&mut rng, 512);
        assert!(QuantizedDot.eval(&quantize(&a), &quantize(&a)) < 0.01);
    }
}
