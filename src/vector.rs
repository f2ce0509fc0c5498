//! Vectors: the one normaliser of the crate and its rule for vectors
//! without a direction.
//!
//! Everything that enters the space goes through [`normalized`]: model
//! outputs, a query's weighted sum, vectors written to a database. The rule
//! is the same everywhere: a vector with a NaN or infinite component, or
//! whose L2 norm is at most [`MIN_NORM`] (all zeros, or a sum whose terms
//! cancel out), has no direction and is refused with a
//! [`VectorProblem`], never turned into zeros or NaNs.

use crate::error::{Error, Result, VectorProblem};

/// Vectors at most this long have no reliable direction. Model outputs
/// are orders of magnitude longer; a query such as `"a dog" - "a dog"`
/// sums to float rounding noise below it.
pub(crate) const MIN_NORM: f64 = 1e-6;

/// `vector` scaled to unit length, computed in f64 so that the result does
/// not depend on the order or size of the components.
pub(crate) fn normalized(vector: &[f32]) -> Result<Vec<f32>> {
    unit(vector).map_err(|problem| Error::InvalidVector { problem })
}

/// [`normalized`], for a vector that must have `dim` components (a
/// database's): a wrong length is [`Error::DimensionMismatch`].
pub(crate) fn normalized_to(vector: &[f32], dim: usize) -> Result<Vec<f32>> {
    if vector.len() != dim {
        return Err(Error::DimensionMismatch {
            expected: dim,
            found: vector.len(),
        });
    }
    normalized(vector)
}

fn unit(vector: &[f32]) -> std::result::Result<Vec<f32>, VectorProblem> {
    if vector.iter().any(|x| !x.is_finite()) {
        return Err(VectorProblem::NotFinite);
    }
    let norm = vector
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm <= MIN_NORM {
        return Err(VectorProblem::Zero);
    }
    Ok(vector
        .iter()
        .map(|&x| (f64::from(x) / norm) as f32)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_length_or_a_named_problem() {
        let v = normalized(&[3.0, 4.0]).unwrap();
        assert!((v[0] - 0.6).abs() < 1e-7 && (v[1] - 0.8).abs() < 1e-7);
        assert_eq!(unit(&[0.0, 0.0]), Err(VectorProblem::Zero));
        assert_eq!(unit(&[1e-9, -1e-9]), Err(VectorProblem::Zero));
        assert_eq!(unit(&[]), Err(VectorProblem::Zero));
        assert_eq!(unit(&[1.0, f32::NAN]), Err(VectorProblem::NotFinite));
        assert_eq!(unit(&[f32::INFINITY, 0.0]), Err(VectorProblem::NotFinite));
        assert!(matches!(
            normalized(&[0.0]),
            Err(Error::InvalidVector {
                problem: VectorProblem::Zero
            })
        ));
        assert!(matches!(
            normalized_to(&[1.0, 2.0], 3),
            Err(Error::DimensionMismatch {
                expected: 3,
                found: 2
            })
        ));
        assert_eq!(normalized_to(&[0.0, 2.0], 2).unwrap(), [0.0, 1.0]);
    }
}
