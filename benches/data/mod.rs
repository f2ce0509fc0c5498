//! The benchmark data generator, shared by the bench binaries: unit vectors
//! drawn around many random centres (not trivially clustered: each point is
//! its centre plus noise of twice the centre's norm, so neighbours are close
//! but clusters overlap), with exact ground truth. Seeded, so every run and
//! every peer sees the same data.

use std::path::Path;

use ndarray::{Array2, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

/// What the data is made of.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spec {
    pub base: usize,
    pub queries: usize,
    pub dim: usize,
    pub centres: usize,
    /// Noise norm relative to the (unit) centre.
    pub sigma: f32,
    pub seed: u64,
}

impl Spec {
    pub fn describe(&self) -> String {
        format!(
            "{} base + {} query unit vectors, {}-d, around {} centres, noise {}, seed {}",
            self.base, self.queries, self.dim, self.centres, self.sigma, self.seed
        )
    }
}

pub struct Data {
    pub base: Array2<f32>,
    pub queries: Array2<f32>,
    /// The exact 10 nearest base rows of each query, best first.
    pub truth: Array2<i64>,
}

fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
}

fn draw(rng: &mut ChaCha8Rng, centres: &[Vec<f32>], n: usize, spec: &Spec) -> Array2<f32> {
    let noise = spec.sigma / (spec.dim as f32).sqrt();
    let mut out = Array2::zeros((n, spec.dim));
    for mut row in out.rows_mut() {
        let centre = &centres[rng.random_range(0..centres.len())];
        for (x, c) in row.iter_mut().zip(centre) {
            let z: f32 = StandardNormal.sample(rng);
            *x = c + noise * z;
        }
        normalise(row.as_slice_mut().expect("contiguous"));
    }
    out
}

/// The exact `k` nearest rows of `base` for each query, by dot product.
pub fn exact_neighbours(base: ArrayView2<f32>, queries: ArrayView2<f32>, k: usize) -> Array2<i64> {
    let rows: Vec<Vec<i64>> = (0..queries.nrows())
        .into_par_iter()
        .map(|qi| {
            let q = queries.row(qi);
            let mut scored: Vec<(f32, i64)> = base
                .outer_iter()
                .enumerate()
                .map(|(i, b)| (q.dot(&b), i as i64))
                .collect();
            scored.select_nth_unstable_by(k, |a, b| b.0.total_cmp(&a.0));
            scored.truncate(k);
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            scored.into_iter().map(|(_, i)| i).collect()
        })
        .collect();
    Array2::from_shape_vec((rows.len(), k), rows.concat()).expect("k per query")
}

pub fn generate(spec: &Spec) -> Data {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let centres: Vec<Vec<f32>> = (0..spec.centres)
        .map(|_| {
            let mut c: Vec<f32> = (0..spec.dim)
                .map(|_| StandardNormal.sample(&mut rng))
                .collect();
            normalise(&mut c);
            c
        })
        .collect();
    let base = draw(&mut rng, &centres, spec.base, spec);
    let queries = draw(&mut rng, &centres, spec.queries, spec);
    let truth = exact_neighbours(base.view(), queries.view(), 10);
    Data {
        base,
        queries,
        truth,
    }
}

/// Writes the data as `.npy` files for the peers.
pub fn save(data: &Data, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    ndarray_npy::write_npy(dir.join("base.npy"), &data.base).unwrap();
    ndarray_npy::write_npy(dir.join("queries.npy"), &data.queries).unwrap();
    ndarray_npy::write_npy(dir.join("truth.npy"), &data.truth).unwrap();
}

/// Reads data written by [`save`].
pub fn load(dir: &Path) -> Data {
    Data {
        base: ndarray_npy::read_npy(dir.join("base.npy")).unwrap(),
        queries: ndarray_npy::read_npy(dir.join("queries.npy")).unwrap(),
        truth: ndarray_npy::read_npy(dir.join("truth.npy")).unwrap(),
    }
}

/// recall@k of `found` against the truth row.
pub fn recall(found: &[Vec<i64>], truth: &Array2<i64>, k: usize) -> f64 {
    let hits: usize = found
        .iter()
        .zip(truth.outer_iter())
        .map(|(f, t)| {
            f.iter()
                .take(k)
                .filter(|id| t.iter().take(k).any(|x| x == *id))
                .count()
        })
        .sum();
    hits as f64 / (found.len() * k) as f64
}
