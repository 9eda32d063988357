//! The one error type of the tensor crate.

use thiserror::Error;

/// Everything a tensor operation can refuse, with the op name and the shapes involved.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Error)]
pub enum Error {
    /// Two operands' shapes do not fit together.
    #[error("{op}: shape mismatch: lhs {lhs:?}, rhs {rhs:?}{}", fmt_detail(.detail))]
    ShapeMismatch {
        /// The operation that refused.
        op: &'static str,
        /// The left (or first) shape.
        lhs: Vec<usize>,
        /// The right (or second) shape.
        rhs: Vec<usize>,
        /// What was expected, in words.
        detail: String,
    },
    /// A tensor has the wrong number of dimensions.
    #[error("{op}: expected rank {expected}, got shape {got:?}")]
    RankMismatch {
        /// The operation that refused.
        op: &'static str,
        /// Expected rank, in words (e.g. "3 (N, C, W)").
        expected: String,
        /// The shape received.
        got: Vec<usize>,
    },
    /// An axis index is out of range for the tensor's rank.
    #[error("{op}: axis {axis} out of range for rank {rank}")]
    AxisOutOfRange {
        /// The operation that refused.
        op: &'static str,
        /// The axis asked for.
        axis: usize,
        /// The tensor's rank.
        rank: usize,
    },
    /// An index (into a dimension) is out of range.
    #[error("{op}: index {index} out of range for dimension of size {size}")]
    IndexOutOfRange {
        /// The operation that refused.
        op: &'static str,
        /// The offending index.
        index: usize,
        /// The size of the dimension.
        size: usize,
    },
    /// The number of elements does not match the shape.
    #[error("{op}: {len} elements cannot have shape {shape:?} ({expected} elements)")]
    ElementCount {
        /// The operation that refused.
        op: &'static str,
        /// Elements given.
        len: usize,
        /// Shape asked for.
        shape: Vec<usize>,
        /// Elements that shape holds.
        expected: usize,
    },
    /// A convolution or pooling configuration that cannot work, with the reason.
    #[error("{op}: invalid configuration for input {input:?}{}: {reason}", fmt_weight(.weight))]
    InvalidWindow {
        /// The operation that refused.
        op: &'static str,
        /// The input shape.
        input: Vec<usize>,
        /// The weight (or kernel) shape, when there is one.
        weight: Option<Vec<usize>>,
        /// What is wrong, in words.
        reason: String,
    },
    /// An argument outside its domain (e.g. an empty list, a zero size).
    #[error("{op}: {reason}")]
    InvalidArgument {
        /// The operation that refused.
        op: &'static str,
        /// What is wrong, in words.
        reason: String,
    },
}

fn fmt_detail(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}

fn fmt_weight(weight: &Option<Vec<usize>>) -> String {
    match weight {
        Some(w) => format!(" and weight {w:?}"),
        None => String::new(),
    }
}

/// The result type of every fallible tensor operation.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn shape(
        op: &'static str,
        lhs: &[usize],
        rhs: &[usize],
        detail: impl Into<String>,
    ) -> Self {
        Error::ShapeMismatch {
            op,
            lhs: lhs.to_vec(),
            rhs: rhs.to_vec(),
            detail: detail.into(),
        }
    }
    pub(crate) fn rank(op: &'static str, expected: impl Into<String>, got: &[usize]) -> Self {
        Error::RankMismatch {
            op,
            expected: expected.into(),
            got: got.to_vec(),
        }
    }
    pub(crate) fn axis(op: &'static str, axis: usize, rank: usize) -> Self {
        Error::AxisOutOfRange { op, axis, rank }
    }
    pub(crate) fn arg(op: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            reason: reason.into(),
        }
    }
}
