//! Queries: texts and images, weighted and mixed, turned into one vector
//! and searched with filters.
//!
//! A query is a sum of weighted unit vectors: `"a dog" + image − "grass"`
//! is `e(a dog) + e(image) − e(grass)`, normalised. An image already in the
//! database contributes its stored vector (no decoding); any other image
//! file is encoded.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::db::{Db, SearchOptions};
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::model::Encoder;
use crate::store::record::{ImageRecord, ImageSource};
use crate::types::ImageId;

/// One part of a query.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum QueryTerm {
    /// A text, embedded by the text tower.
    Text {
        /// The text.
        text: String,
        /// Its weight (negative: steer away).
        weight: f32,
    },
    /// An image file.
    Image {
        /// The file.
        path: PathBuf,
        /// Its weight (negative: steer away).
        weight: f32,
    },
    /// An image given as its file's bytes (an upload), decoded under the
    /// encoder's limits.
    ImageBytes {
        /// The encoded image.
        bytes: Arc<[u8]>,
        /// Its weight (negative: steer away).
        weight: f32,
    },
    /// An image of the database, by its stored vector.
    Indexed {
        /// The image.
        id: ImageId,
        /// Its weight (negative: steer away).
        weight: f32,
    },
}

/// A search by texts and images. Defaults: 10 results, no score cutoff,
/// no filter, the database's `ef`.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// The terms, summed.
    pub terms: Vec<QueryTerm>,
    /// How many results.
    pub k: usize,
    /// Drop results under this cosine similarity.
    pub min_score: Option<f32>,
    /// Which images may be returned.
    pub filter: Filter,
    /// The graph's `ef` for this query.
    pub ef: Option<usize>,
}

impl Query {
    fn of(term: QueryTerm) -> Query {
        Query {
            terms: vec![term],
            k: 10,
            min_score: None,
            filter: Filter::default(),
            ef: None,
        }
    }

    /// Images matching a text.
    pub fn text(text: impl Into<String>) -> Query {
        Query::of(QueryTerm::Text {
            text: text.into(),
            weight: 1.0,
        })
    }

    /// Images similar to an image file.
    pub fn image(path: impl Into<PathBuf>) -> Query {
        Query::of(QueryTerm::Image {
            path: path.into(),
            weight: 1.0,
        })
    }

    /// Images similar to an image of the database.
    pub fn similar_to(id: ImageId) -> Query {
        Query::of(QueryTerm::Indexed { id, weight: 1.0 })
    }

    /// Adds a weighted text term.
    pub fn plus_text(mut self, text: impl Into<String>, weight: f32) -> Query {
        self.terms.push(QueryTerm::Text {
            text: text.into(),
            weight,
        });
        self
    }

    /// Adds a weighted image term.
    pub fn plus_image(mut self, path: impl Into<PathBuf>, weight: f32) -> Query {
        self.terms.push(QueryTerm::Image {
            path: path.into(),
            weight,
        });
        self
    }

    /// Subtracts a text.
    pub fn minus_text(self, text: impl Into<String>) -> Query {
        self.plus_text(text, -1.0)
    }

    /// Sets the number of results.
    pub fn k(mut self, k: usize) -> Query {
        self.k = k;
        self
    }

    /// Sets the filter.
    pub fn filter(mut self, filter: Filter) -> Query {
        self.filter = filter;
        self
    }
}

/// A query result with its image.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryHit {
    /// The image.
    pub id: ImageId,
    /// Cosine similarity to the query vector.
    pub score: f32,
    /// The image's canonical file.
    pub path: PathBuf,
    /// Everything known about the image.
    pub record: ImageRecord,
    /// Where it comes from when it was imported from a LAION /
    /// clip-retrieval shard: its URL and caption (its `path` is then the URL
    /// or key, not a local file).
    pub source: Option<ImageSource>,
}

impl Db {
    /// The vector a query stands for (unit length).
    pub fn query_vector(&self, encoder: &Encoder, query: &Query) -> Result<Vec<f32>> {
        self.check_space(encoder.space())?;
        let mut sum = vec![0.0f32; encoder.space().dim as usize];
        let texts: Vec<(&str, f32)> = query
            .terms
            .iter()
            .filter_map(|t| match t {
                QueryTerm::Text { text, weight } => Some((text.as_str(), *weight)),
                _ => None,
            })
            .collect();
        if !texts.is_empty() {
            let vectors =
                encoder.embed_texts(&texts.iter().map(|(t, _)| *t).collect::<Vec<_>>())?;
            for ((_, weight), vector) in texts.iter().zip(vectors) {
                add(&mut sum, &vector, *weight);
            }
        }
        for term in &query.terms {
            let (vector, weight) = match term {
                QueryTerm::Text { .. } => continue,
                QueryTerm::Image { path, weight } => (self.image_vector(encoder, path)?, weight),
                QueryTerm::ImageBytes { bytes, weight } => {
                    let prepared = encoder
                        .preprocessor()
                        .prepare(bytes, Path::new("(uploaded image)"))?;
                    (encoder.embed_pixels(&prepared.pixels, 1)?.remove(0), weight)
                }
                QueryTerm::Indexed { id, weight } => (
                    self.vector(*id).ok_or(Error::UnknownImage { id: *id })?,
                    weight,
                ),
            };
            add(&mut sum, &vector, *weight);
        }
        crate::vector::normalized(&sum)
    }

    /// An image's vector: the stored one when the file is indexed, else
    /// encoded from the file.
    fn image_vector(&self, encoder: &Encoder, path: &Path) -> Result<Vec<f32>> {
        if let Ok(canonical) = path.canonicalize()
            && let Some(record) = self.get_by_path(&canonical)?
            && let Some(vector) = self.vector(record.id)
        {
            return Ok(vector);
        }
        encoder.embed_image_file(path)
    }

    /// Runs a query: the images nearest to its vector, best first.
    pub fn query(&self, encoder: &Encoder, query: &Query) -> Result<Vec<QueryHit>> {
        let vector = self.query_vector(encoder, query)?;
        let options = SearchOptions {
            k: query.k,
            ef: query.ef,
            min_score: query.min_score,
            filter: query.filter.clone(),
        };
        let mut hits = Vec::new();
        for hit in self.search(&vector, &options)? {
            // An image deleted since the search is simply left out.
            if let Some(record) = self.get(hit.id)? {
                hits.push(QueryHit {
                    id: hit.id,
                    score: hit.score,
                    path: record.path().to_path_buf(),
                    record,
                    source: self.source(hit.id)?,
                });
            }
        }
        Ok(hits)
    }
}

fn add(sum: &mut [f32], vector: &[f32], weight: f32) {
    for (s, v) in sum.iter_mut().zip(vector) {
        *s += weight * v;
    }
}
