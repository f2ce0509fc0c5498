//! The benchmark data generator, shared by the bench binaries, with exact
//! ground truth. Seeded, so every run and every peer sees the same data.
//! Two shapes ([`Kind`]):
//!
//! - `hard`: unit vectors drawn around many random centres (not trivially
//!   clustered: each point is its centre plus noise of twice the centre's
//!   norm, so neighbours are close but clusters overlap and a query's
//!   neighbours differ little in cosine).
//! - `clip`: a hierarchy, as a photo collection is: topics, each with
//!   subtopics (one subject), each with a few members at small noise (its
//!   near-duplicates and photos of it), so a query's true neighbours stand
//!   clearly above the rest.

use std::path::Path;

use ndarray::{Array2, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

/// Which data set [`generate_kind`] draws. Its name goes into the
/// descriptions, the benches' JSON lines and `data.json` beside the `.npy`
/// files, so that figures always say what they were measured on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Hard,
    Clip,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Hard => "hard",
            Kind::Clip => "clip",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        match name {
            "hard" => Some(Kind::Hard),
            "clip" => Some(Kind::Clip),
            _ => None,
        }
    }
}

/// The `clip` set's topics hold about this many base rows each, so that its
/// shape (and difficulty) stays the same at any `base`.
const CLIP_TOPIC_ROWS: usize = 200;
/// Subtopics per topic: about ten members each, Poisson distributed, so
/// some subjects have a handful of photos and some twenty.
const CLIP_SUBTOPICS: usize = 20;
/// A subtopic centre's noise norm from its topic, drawn per subtopic, so
/// that a subtopic's siblings lie at a range of cosines (about 0.35 to
/// 0.75), not all at one.
const CLIP_SPREAD: (f32, f32) = (0.6, 1.4);
/// A member's noise norm from its subtopic, drawn per member: from a
/// near-duplicate (0.15: cosine 0.99 to the centre) to a looser photo of
/// the subject (0.45: 0.91).
const CLIP_NOISE: (f32, f32) = (0.15, 0.45);

/// What the data is made of. `centres` and `sigma` shape the `hard` set
/// only; the `clip` set's shape is fixed and scales with `base`.
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
    /// The description of the `hard` set, what [`generate`] draws.
    #[allow(dead_code)] // ann.rs picks a kind; the tests and write_latency do not
    pub fn describe(&self) -> String {
        self.describe_as(Kind::Hard)
    }

    pub fn describe_as(&self, kind: Kind) -> String {
        let head = format!(
            "{}: {} base + {} query unit vectors, {}-d",
            kind.name(),
            self.base,
            self.queries,
            self.dim
        );
        match kind {
            Kind::Hard => format!(
                "{head}, around {} centres, noise {}, seed {}",
                self.centres, self.sigma, self.seed
            ),
            Kind::Clip => format!(
                "{head}, {} topics of {CLIP_SUBTOPICS} subtopics, subtopic spread {}-{}, \
                 member noise {}-{}, seed {}",
                clip_topics(self),
                CLIP_SPREAD.0,
                CLIP_SPREAD.1,
                CLIP_NOISE.0,
                CLIP_NOISE.1,
                self.seed
            ),
        }
    }
}

fn clip_topics(spec: &Spec) -> usize {
    (spec.base / CLIP_TOPIC_ROWS).max(1)
}

pub struct Data {
    pub kind: Kind,
    pub base: Array2<f32>,
    pub queries: Array2<f32>,
    /// The exact 10 nearest base rows of each query, best first.
    pub truth: Array2<i64>,
}

fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
}

fn random_unit(rng: &mut ChaCha8Rng, dim: usize) -> Vec<f32> {
    let mut c: Vec<f32> = (0..dim).map(|_| StandardNormal.sample(rng)).collect();
    normalise(&mut c);
    c
}

/// `n` unit vectors, each a random one of `centres` plus noise of the norm
/// `norm` draws (per row, after the centre).
fn draw(
    rng: &mut ChaCha8Rng,
    centres: &[Vec<f32>],
    n: usize,
    dim: usize,
    mut norm: impl FnMut(&mut ChaCha8Rng) -> f32,
) -> Array2<f32> {
    let mut out = Array2::zeros((n, dim));
    for mut row in out.rows_mut() {
        let centre = &centres[rng.random_range(0..centres.len())];
        let noise = norm(rng) / (dim as f32).sqrt();
        for (x, c) in row.iter_mut().zip(centre) {
            let z: f32 = StandardNormal.sample(rng);
            *x = c + noise * z;
        }
        normalise(row.as_slice_mut().expect("contiguous"));
    }
    out
}

/// The exact `k` nearest rows of `base` for each query by dot product, best
/// first, with their scores.
fn scored_neighbours(
    base: ArrayView2<f32>,
    queries: ArrayView2<f32>,
    k: usize,
) -> Vec<Vec<(f32, i64)>> {
    (0..queries.nrows())
        .into_par_iter()
        .map(|qi| {
            let q = queries.row(qi);
            let mut scored: Vec<(f32, i64)> = base
                .outer_iter()
                .enumerate()
                .map(|(i, b)| (q.dot(&b), i as i64))
                .collect();
            if k < scored.len() {
                scored.select_nth_unstable_by(k, |a, b| b.0.total_cmp(&a.0));
                scored.truncate(k);
                // Or every query keeps its whole scored list: 16 GB at 1M
                // base rows, the "peak while building" of the 1M figures.
                scored.shrink_to_fit();
            }
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            scored
        })
        .collect()
}

/// The exact `k` nearest rows of `base` for each query, by dot product.
pub fn exact_neighbours(base: ArrayView2<f32>, queries: ArrayView2<f32>, k: usize) -> Array2<i64> {
    let rows = scored_neighbours(base, queries, k);
    let ids: Vec<i64> = rows.iter().flatten().map(|&(_, i)| i).collect();
    Array2::from_shape_vec((rows.len(), k), ids).expect("k per query")
}

/// The mean cosine of each query's true `rank`-th neighbour (from 1) for
/// each of `ranks` that `base` has: how far the true top 10 stand above
/// the rest, the difficulty recall@10 does not show.
pub fn neighbour_cosines(data: &Data, ranks: &[usize]) -> Vec<(usize, f64)> {
    let ranks: Vec<usize> = ranks
        .iter()
        .copied()
        .filter(|&r| r >= 1 && r <= data.base.nrows())
        .collect();
    let k = ranks.iter().copied().max().unwrap_or(0);
    let rows = scored_neighbours(data.base.view(), data.queries.view(), k);
    ranks
        .into_iter()
        .map(|r| {
            let sum: f64 = rows.iter().map(|row| f64::from(row[r - 1].0)).sum();
            (r, sum / rows.len() as f64)
        })
        .collect()
}

/// The `hard` set of `spec`.
#[allow(dead_code)] // as `Spec::describe`
pub fn generate(spec: &Spec) -> Data {
    generate_kind(spec, Kind::Hard)
}

pub fn generate_kind(spec: &Spec, kind: Kind) -> Data {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let (base, queries) = match kind {
        Kind::Hard => {
            let centres: Vec<Vec<f32>> = (0..spec.centres)
                .map(|_| random_unit(&mut rng, spec.dim))
                .collect();
            let sigma = |_: &mut ChaCha8Rng| spec.sigma;
            let base = draw(&mut rng, &centres, spec.base, spec.dim, sigma);
            let queries = draw(&mut rng, &centres, spec.queries, spec.dim, sigma);
            (base, queries)
        }
        Kind::Clip => {
            let mut subtopics = Vec::with_capacity(clip_topics(spec) * CLIP_SUBTOPICS);
            for _ in 0..clip_topics(spec) {
                let topic = [random_unit(&mut rng, spec.dim)];
                let spread = |rng: &mut ChaCha8Rng| rng.random_range(CLIP_SPREAD.0..CLIP_SPREAD.1);
                let centres = draw(&mut rng, &topic, CLIP_SUBTOPICS, spec.dim, spread);
                subtopics.extend(centres.outer_iter().map(|c| c.to_vec()));
            }
            let noise = |rng: &mut ChaCha8Rng| rng.random_range(CLIP_NOISE.0..CLIP_NOISE.1);
            // A query is one more photo of an indexed subject.
            let base = draw(&mut rng, &subtopics, spec.base, spec.dim, noise);
            let queries = draw(&mut rng, &subtopics, spec.queries, spec.dim, noise);
            (base, queries)
        }
    };
    let truth = exact_neighbours(base.view(), queries.view(), 10);
    Data {
        kind,
        base,
        queries,
        truth,
    }
}

/// Writes the data as `.npy` files for the peers, and its kind's name to
/// `data.json` (which `load` and `benches/peers.py` read back).
pub fn save(data: &Data, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let kind = serde_json::json!({ "data_set": data.kind.name() });
    std::fs::write(dir.join("data.json"), format!("{kind}\n")).unwrap();
    ndarray_npy::write_npy(dir.join("base.npy"), &data.base).unwrap();
    ndarray_npy::write_npy(dir.join("queries.npy"), &data.queries).unwrap();
    ndarray_npy::write_npy(dir.join("truth.npy"), &data.truth).unwrap();
}

/// Reads data written by [`save`].
pub fn load(dir: &Path) -> Data {
    // Without `data.json`, a directory written before there was a choice.
    let kind = std::fs::read_to_string(dir.join("data.json")).map_or(Kind::Hard, |text| {
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let name = value["data_set"].as_str().unwrap_or_default();
        Kind::parse(name).unwrap_or_else(|| panic!("unknown data set {name:?} in data.json"))
    });
    Data {
        kind,
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
