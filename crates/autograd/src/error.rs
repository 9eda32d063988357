//! The error type of the autograd crate.

use thiserror::Error;

/// What recording or differentiating can refuse.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Error)]
pub enum Error {
    /// A tensor op refused its inputs.
    #[error(transparent)]
    Tensor(#[from] tensor::Error),
    /// `backward` needs a loss with exactly one element.
    #[error("backward: the loss must hold one element, got shape {shape:?}")]
    NonScalarLoss {
        /// The loss's shape.
        shape: Vec<usize>,
    },
    /// `backward_from` needs a seed of the var's shape.
    #[error("backward_from: seed of shape {seed:?} for a var of shape {var:?}")]
    SeedShape {
        /// The seed's shape.
        seed: Vec<usize>,
        /// The var's shape.
        var: Vec<usize>,
    },
    /// Two vars from different graphs met in one op.
    #[error("{op}: inputs belong to different graphs")]
    GraphMismatch {
        /// The op.
        op: &'static str,
    },
}

/// The result type of autograd operations.
pub type Result<T> = std::result::Result<T, Error>;
