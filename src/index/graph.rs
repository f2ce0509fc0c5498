//! The HNSW graph over quantized vectors, owning hnsw_rs in one place.
//!
//! hnsw_rs's reload (`HnswIo::load_hnsw*`) returns an `Hnsw<'b, ..>` that
//! borrows the `HnswIo` loader for its whole life (data may be memory-mapped
//! from files the loader owns). Rather than spreading that lifetime through
//! the crate, a loaded graph keeps its loader beside it in a `self_cell`,
//! which guarantees without `unsafe` code of ours that the graph is dropped
//! before the loader it borrows. A freshly built graph borrows nothing.
//!
//! Searches do not walk this graph (see `flat.rs`); it is the builder and
//! the persisted form. This module must not know about rows, records or
//! tombstones: it maps data ids (`usize`) to quantized vectors.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use hnsw_rs::api::AnnT;
use hnsw_rs::hnswio::HnswIo;
use hnsw_rs::prelude::Hnsw;

use super::distance::{Quantized, QuantizedDot};
use super::flat::FlatGraph;

/// Layers of the graph; hnsw_rs caps it at 16, enough for billions of points.
const MAX_LAYERS: usize = 16;

type QuantizedHnsw<'a> = Hnsw<'a, Quantized, QuantizedDot>;

self_cell::self_cell!(
    /// A graph reloaded from a dump, beside the loader it borrows.
    pub(crate) struct LoadedGraph {
        owner: HnswIo,
        #[not_covariant]
        dependent: QuantizedHnsw,
    }
);

/// An HNSW graph, built here or reloaded from a dump.
pub(crate) enum Graph {
    /// Built in this process.
    Built(Box<QuantizedHnsw<'static>>),
    /// Reloaded from a snapshot.
    Loaded(LoadedGraph),
}

/// Why a dumped graph could not be reloaded.
#[derive(Debug)]
pub(crate) enum LoadError {
    /// hnsw_rs returned an error.
    Failed(String),
    /// hnsw_rs panicked (it asserts on malformed files).
    Panicked,
}

impl Graph {
    /// An empty graph. `m` and `ef_construction` must have been validated
    /// (hnsw_rs exits the process when `m > 256`).
    pub fn new(m: usize, ef_construction: usize, capacity: usize) -> Graph {
        debug_assert!((2..=256).contains(&m));
        let hnsw = Hnsw::new(
            m,
            capacity.max(1024),
            MAX_LAYERS,
            ef_construction,
            QuantizedDot,
        );
        Graph::Built(Box::new(hnsw))
    }

    /// Reloads the graph dumped as `basename` in `dir`. The caller has
    /// verified the files' checksums; a panic inside hnsw_rs is still caught.
    pub fn load(dir: &Path, basename: &str) -> Result<Graph, LoadError> {
        let loader = HnswIo::new(dir, basename);
        let loaded = catch_unwind(AssertUnwindSafe(|| {
            LoadedGraph::try_new(loader, |io| io.load_hnsw_with_dist(QuantizedDot))
        }));
        match loaded {
            Ok(Ok(graph)) => Ok(Graph::Loaded(graph)),
            Ok(Err(e)) => Err(LoadError::Failed(format!("{e:#}"))),
            Err(_) => Err(LoadError::Panicked),
        }
    }

    fn with<R>(&self, f: impl for<'a> FnOnce(&QuantizedHnsw<'a>) -> R) -> R {
        match self {
            Graph::Built(hnsw) => f(hnsw),
            Graph::Loaded(loaded) => loaded.with_dependent(|_, hnsw| f(hnsw)),
        }
    }

    /// Inserts points, in parallel when there are several.
    pub fn insert(&self, points: &[(Vec<Quantized>, usize)]) {
        self.with(|hnsw| match points {
            [] => {}
            [(v, id)] => hnsw.insert_slice((v, *id)),
            _ => {
                let items: Vec<(&[Quantized], usize)> =
                    points.iter().map(|(v, id)| (v.as_slice(), *id)).collect();
                hnsw.parallel_insert_slice(&items);
            }
        })
    }

    /// The graph's links, copied into the flat search layout. Data ids must
    /// be the rows `0..len()`.
    pub fn flatten(&self, m: usize) -> FlatGraph {
        FlatGraph::from_links(m, &self.links())
    }

    /// Each row's links per layer (layer 0 first). Data ids must be the rows
    /// `0..len()`. This is the part of a refresh that needs the graph; laying
    /// the links out ([`FlatGraph::from_links`]) does not.
    pub fn links(&self) -> Vec<Vec<Vec<u32>>> {
        self.with(|hnsw| {
            let points = hnsw.get_point_indexation();
            if points.get_nb_point() == 0 {
                // hnsw_rs's point iterator panics on an empty graph.
                return Vec::new();
            }
            let mut layers: Vec<Vec<Vec<u32>>> = vec![Vec::new(); points.get_nb_point()];
            for point in points {
                let level = point.get_point_id().0 as usize;
                let neighbours = point.get_neighborhood_id();
                layers[point.get_origin_id()] = neighbours
                    .iter()
                    .take(level + 1)
                    .map(|layer| layer.iter().map(|n| n.d_id as u32).collect())
                    .collect();
            }
            layers
        })
    }

    /// The number of points.
    pub fn len(&self) -> usize {
        self.with(|hnsw| hnsw.get_nb_point())
    }

    /// Dumps the graph as `basename` into the existing directory `dir` and
    /// returns the basename hnsw_rs actually used.
    pub fn dump(
        &self,
        dir: &Path,
        basename: &str,
    ) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        self.with(|hnsw| hnsw.file_dump(dir, basename).map_err(Into::into))
    }
}
