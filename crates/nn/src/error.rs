//! The error type of the nn crate.

use std::path::PathBuf;

use thiserror::Error;

/// What building, running, saving or loading a model can refuse.
#[non_exhaustive]
#[derive(Debug, Error)]
pub enum Error {
    /// A tensor op refused its inputs.
    #[error(transparent)]
    Tensor(#[from] tensor::Error),
    /// Recording or differentiating failed.
    #[error(transparent)]
    Autograd(#[from] autograd::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file's contents are not what they should be (bad magic, checksum, truncation, ...).
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A parameter the model needs is not in the store or file.
    #[error("missing parameter {name:?}")]
    MissingParam {
        /// Its dotted name.
        name: String,
    },
    /// A parameter has another shape than the model expects.
    #[error("parameter {name:?} has shape {got:?}, expected {expected:?}")]
    ParamShape {
        /// Its dotted name.
        name: String,
        /// The model's shape.
        expected: Vec<usize>,
        /// The file's shape.
        got: Vec<usize>,
    },
    /// Two parameters with one name.
    #[error("parameter {name:?} defined twice")]
    DuplicateParam {
        /// The name.
        name: String,
    },
    /// Training produced a NaN or an infinity.
    #[error(
        "non-finite loss ({value}) at step {step} (epoch {epoch}): lower the learning rate or check the data"
    )]
    NonFinite {
        /// Optimizer step (0-based) whose loss was not finite.
        step: u64,
        /// Epoch (0-based).
        epoch: usize,
        /// The loss value.
        value: f32,
    },
    /// An argument outside its domain (an empty batch, a class index out of range, ...).
    #[error("{op}: {reason}")]
    InvalidArgument {
        /// The operation.
        op: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// The result type of the nn crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// [`Error::Io`] naming the file.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    /// [`Error::Corrupt`] naming the file.
    pub fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
    /// [`Error::InvalidArgument`] naming the operation.
    pub fn arg(op: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            reason: reason.into(),
        }
    }
}
