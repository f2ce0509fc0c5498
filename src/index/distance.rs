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
//! The kernels use AVX-512 (the `i8` one with VNNI's `vpdpbusd`) or AVX2 (+FMA)
//! when the CPU has them, detected at run time, and portable code otherwise;
//! all give the same results up to float rounding (the `i8` ones exactly).

/// Quantizes a vector symmetrically to `i8`: codes `round(x / step)` with
/// `step = max|x| / 127`, so that `dot(a, b) ≈ dot_i8(qa, qb) · step_a · step_b`.
pub(crate) fn quantize_parts(v: &[f32]) -> (Vec<i8>, f32) {
    let mut codes = vec![0; v.len()];
    let step = quantize_into(v, &mut codes);
    (codes, step)
}

/// [`quantize_parts`] into `codes` (as long as `v`); returns the step.
fn quantize_into(v: &[f32], codes: &mut [i8]) -> f32 {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let step = if max > 0.0 { max / 127.0 } else { 1.0 };
    for (code, x) in codes.iter_mut().zip(v) {
        *code = (x / step).round().clamp(-127.0, 127.0) as i8;
    }
    step
}

/// The `i8` codes of rows, in one array, and each row's step.
pub(crate) type QuantizedRows = (Vec<i8>, Vec<f32>);

/// The codes of `vectors` (rows of `dim`) in one array, and their steps,
/// quantized in parallel: no per-row allocation, and no second copy at the
/// end (a snapshot load at 1M rows held 512 MB of both at once).
pub(crate) fn quantize_rows(vectors: &[f32], dim: usize) -> QuantizedRows {
    let mut out = (
        Vec::with_capacity(vectors.len()),
        Vec::with_capacity(vectors.len() / dim.max(1)),
    );
    quantize_rows_onto(vectors, dim, &mut out);
    out
}

/// [`quantize_rows`], appended to `out`: a snapshot load quantizes block by
/// block into the one array it keeps.
pub(crate) fn quantize_rows_onto(vectors: &[f32], dim: usize, (codes, steps): &mut QuantizedRows) {
    use rayon::prelude::*;
    let dim = dim.max(1);
    let start = codes.len();
    codes.resize(start + vectors.len(), 0);
    steps.par_extend(
        codes[start..]
            .par_chunks_mut(dim)
            .zip(vectors.par_chunks(dim))
            .map(|(codes, v)| quantize_into(v, codes)),
    );
}

/// The exact dot product of two `f32` vectors of equal length.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked just above).
            return unsafe { x86::dot_f32_avx512(a, b) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { x86::dot_f32(a, b) };
        }
    }
    portable::dot_f32(a, b)
}

/// The dot product of two `i8` vectors of equal length, exactly, in `i32`,
/// when `b` holds no -128 ([`quantize_parts`] never makes one; with one the
/// SIMD kernels may be off, though never unsound).
pub(crate) fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    {
        if x86::has_vnni() {
            // SAFETY: the CPU supports AVX-512 BW and VNNI (checked just above).
            return unsafe { x86::dot_i8_vnni(a, b) };
        }
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

    /// Whether the CPU has what [`dot_i8_vnni`] needs.
    pub fn has_vnni() -> bool {
        std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }

    /// # Safety
    /// The CPU must support AVX-512F; `a` and `b` must have equal lengths.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot_f32_avx512(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut s0 = _mm512_setzero_ps();
        let mut s1 = _mm512_setzero_ps();
        let mut i = 0;
        // SAFETY: every full load reads 16 floats below `n`; the masked
        // load of the tail reads only the lanes below `n`.
        unsafe {
            while i + 32 <= n {
                s0 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), s0);
                s1 = _mm512_fmadd_ps(
                    _mm512_loadu_ps(pa.add(i + 16)),
                    _mm512_loadu_ps(pb.add(i + 16)),
                    s1,
                );
                i += 32;
            }
            while i < n {
                let mask: __mmask16 = if n - i >= 16 {
                    u16::MAX
                } else {
                    (1u16 << (n - i)) - 1
                };
                let x = _mm512_maskz_loadu_ps(mask, pa.add(i));
                let y = _mm512_maskz_loadu_ps(mask, pb.add(i));
                s0 = _mm512_fmadd_ps(x, y, s0);
                i += 16;
            }
        }
        _mm512_reduce_add_ps(_mm512_add_ps(s0, s1))
    }

    /// # Safety
    /// The CPU must support AVX-512 BW and VNNI; `a` and `b` must have equal
    /// lengths.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn dot_i8_vnni(a: &[i8], b: &[i8]) -> i32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        // `vpdpbusd` multiplies unsigned by signed bytes and adds each four
        // into an i32 lane, without saturation: |a| (as unsigned, so -128
        // is 128) times b with a's sign is a·b, 64 bytes an instruction.
        #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
        fn step(acc: __m512i, a: __m512i, b: __m512i) -> __m512i {
            let negative = _mm512_movepi8_mask(a);
            let signed_b = _mm512_mask_sub_epi8(b, negative, _mm512_setzero_si512(), b);
            _mm512_dpbusd_epi32(acc, _mm512_abs_epi8(a), signed_b)
        }
        let mut s0 = _mm512_setzero_si512();
        let mut s1 = _mm512_setzero_si512();
        let mut i = 0;
        // SAFETY: every full load reads 64 bytes below `n`; the masked load
        // of the tail reads only the bytes below `n`.
        unsafe {
            while i + 128 <= n {
                let a0 = _mm512_loadu_si512(pa.add(i).cast());
                let b0 = _mm512_loadu_si512(pb.add(i).cast());
                let a1 = _mm512_loadu_si512(pa.add(i + 64).cast());
                let b1 = _mm512_loadu_si512(pb.add(i + 64).cast());
                s0 = step(s0, a0, b0);
                s1 = step(s1, a1, b1);
                i += 128;
            }
            while i < n {
                let mask: __mmask64 = if n - i >= 64 {
                    u64::MAX
                } else {
                    (1u64 << (n - i)) - 1
                };
                let a0 = _mm512_maskz_loadu_epi8(mask, pa.add(i));
                let b0 = _mm512_maskz_loadu_epi8(mask, pb.add(i));
                s0 = step(s0, a0, b0);
                i += 64;
            }
        }
        _mm512_reduce_add_epi32(_mm512_add_epi32(s0, s1))
    }

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
                let (qa, qb) = (quantize_parts(&a).0, quantize_parts(&b).0);
                let (qa, qb) = (&qa[..], &qb[..]);
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

    /// The same for the AVX-512 kernels, with every tail length of the
    /// masked loads; says it skipped on a CPU without AVX-512 BW and VNNI.
    #[test]
    fn avx512_and_portable_kernels_agree() {
        #[cfg(target_arch = "x86_64")]
        if x86::has_vnni() {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
            for dim in (0..=130).chain([512, 515, 768]) {
                let (a, b) = (unit(&mut rng, dim.max(1)), unit(&mut rng, dim.max(1)));
                let (a, b) = (&a[..dim], &b[..dim]);
                // SAFETY: the CPU supports AVX-512 F, BW and VNNI (checked above).
                let simd = unsafe { x86::dot_f32_avx512(a, b) };
                assert!((simd - portable::dot_f32(a, b)).abs() < 1e-5, "dim {dim}");
                let (qa, qb) = (quantize_parts(a).0, quantize_parts(b).0);
                // SAFETY: as above.
                let simd = unsafe { x86::dot_i8_vnni(&qa, &qb) };
                assert_eq!(simd, portable::dot_i8(&qa, &qb), "dim {dim}");
            }
            for (x, y) in [
                (127, 127),
                (-127, 127),
                (-127, -127),
                (-128, 127),
                (-128, -127),
            ] {
                let (a, b) = (vec![x; 200], vec![y; 200]);
                // SAFETY: as above.
                let simd = unsafe { x86::dot_i8_vnni(&a, &b) };
                assert_eq!(simd, portable::dot_i8(&a, &b), "{x} · {y}");
            }
            return;
        }
        eprintln!("SKIPPED avx512_and_portable_kernels_agree: no AVX-512 BW and VNNI on this CPU");
    }

    #[test]
    fn quantized_distance_approximates_the_exact_one() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for _ in 0..100 {
            let (a, b) = (unit(&mut rng, 512), unit(&mut rng, 512));
            let exact = 1.0 - dot(&a, &b);
            let ((qa, sa), (qb, sb)) = (quantize_parts(&a), quantize_parts(&b));
            let approx = 1.0 - dot_i8(&qa, &qb) as f32 * sa * sb;
            assert!((exact - approx).abs() < 0.01, "{exact} vs {approx}");
        }
    }
}
