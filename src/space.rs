//! The identity of an embedding space: which model, with which
//! preprocessing, produced a database's vectors.
//!
//! Vectors of two CLIP models (or one model with two preprocessings) live in
//! different spaces and must never be compared. A database records its space
//! at creation and refuses any other (see [`crate::Error::SpaceMismatch`]).
//! The variant of the weights (fp32, int8, ...) is part of the space: two
//! variants of one model give close vectors, not equal ones, so a database
//! refuses another variant too ([`crate::Error::VariantMismatch`]) unless
//! told to accept it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::types::ModelVariant;

/// A BLAKE3 digest identifying a model and its preprocessing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a sequence of byte strings. Each part is prefixed
    /// with its length so that `["ab", "c"]` and `["a", "bc"]` differ.
    pub fn of_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Fingerprint {
        let mut hasher = blake3::Hasher::new();
        for part in parts {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        Fingerprint(*hasher.finalize().as_bytes())
    }

    /// The full digest in lowercase hexadecimal.
    pub fn to_hex(&self) -> String {
        crate::types::hex(&self.0)
    }

    /// The first 12 hexadecimal digits, enough to tell spaces apart in messages.
    pub fn short(&self) -> String {
        self.to_hex()[..12].to_string()
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.short())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Which model made a database's vectors: a readable id, the dimension, a
/// fingerprint of the model files and preprocessing, and the variant of the
/// weights. Two spaces are the same when dimension, fingerprint and variant
/// agree (the id is only a name: a renamed model folder is still the same
/// model).
///
/// The fingerprint identifies the model, not the variant: it digests the
/// fp32 towers when the folder has them, whichever variant runs, so that two
/// variants of one model are recognised as such ([`Self::same_model`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EmbeddingSpace {
    /// A readable model name, e.g. `clip-vit-base-patch32` (the model folder's name).
    pub model_id: String,
    /// The vector dimension.
    pub dim: u32,
    /// A digest of the model files and the preprocessing configuration.
    pub fingerprint: Fingerprint,
    /// The weights that made the vectors.
    pub variant: ModelVariant,
}

impl PartialEq for EmbeddingSpace {
    fn eq(&self, other: &EmbeddingSpace) -> bool {
        self.same_model(other) && self.variant == other.variant
    }
}

impl Eq for EmbeddingSpace {}

impl EmbeddingSpace {
    /// Whether `other` is this space's model, in any variant.
    pub fn same_model(&self, other: &EmbeddingSpace) -> bool {
        self.dim == other.dim && self.fingerprint == other.fingerprint
    }

    /// A space for vectors that come from elsewhere (an import, a test), named
    /// `model_id` and identified by that name and the dimension only.
    pub fn named(model_id: impl Into<String>, dim: u32) -> EmbeddingSpace {
        let model_id = model_id.into();
        let fingerprint = Fingerprint::of_parts([model_id.as_bytes(), &dim.to_le_bytes()]);
        EmbeddingSpace {
            model_id,
            dim,
            fingerprint,
            variant: ModelVariant::Fp32,
        }
    }
}

impl fmt::Display for EmbeddingSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "model `{}` ({} dimensions, fingerprint {}, {})",
            self.model_id,
            self.dim,
            self.fingerprint.short(),
            self.variant
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_length_prefixed() {
        let a = Fingerprint::of_parts([b"ab".as_slice(), b"c"]);
        let b = Fingerprint::of_parts([b"a".as_slice(), b"bc"]);
        assert_ne!(a, b);
    }

    #[test]
    fn named_spaces_differ_by_name_and_dim() {
        assert_ne!(EmbeddingSpace::named("a", 8), EmbeddingSpace::named("b", 8));
        assert_ne!(
            EmbeddingSpace::named("a", 8),
            EmbeddingSpace::named("a", 16)
        );
        assert_eq!(EmbeddingSpace::named("a", 8), EmbeddingSpace::named("a", 8));
    }

    #[test]
    fn another_variant_is_the_same_model_but_not_the_same_space() {
        let fp32 = EmbeddingSpace::named("a", 8);
        let int8 = EmbeddingSpace {
            variant: ModelVariant::Int8,
            ..fp32.clone()
        };
        assert!(fp32.same_model(&int8));
        assert_ne!(fp32, int8);
        assert!(!fp32.same_model(&EmbeddingSpace::named("b", 8)));
    }
}
