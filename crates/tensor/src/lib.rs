//! `tensor`: an f32 n-dimensional CPU tensor and the numeric kernels the workspace stands on.
//!
//! - [`Tensor`] is a cheap handle (shared storage + [`Layout`]); views (`reshape`, `permute`,
//!   `transpose`, `narrow`, `broadcast_to`) change only the layout.
//! - Every op returns [`Result`] with a typed [`Error`] naming the op and the shapes.
//! - Convolution is one N-d implementation for 1D, 2D and 3D ([`Tensor::conv`] and its
//!   backward ops, [`Tensor::conv_transpose`]); pooling likewise ([`Tensor::max_pool`]).
//!
//! This crate knows nothing of gradients, parameters or files: autograd and nn build on it.
//!
//! ```
//! use tensor::{ConvOptions, Tensor};
//! // The seed's CT example: a 14x14x14 volume, 16 filters of 5x5x5 -> 16 x 10 x 10 x 10.
//! let x = Tensor::ones(&[1, 1, 14, 14, 14]);
//! let w = Tensor::ones(&[16, 1, 5, 5, 5]);
//! let y = x.conv(&w, None, &ConvOptions::default())?;
//! assert_eq!(y.shape(), &[1, 16, 10, 10, 10]);
//! assert_eq!(y.get(&[0, 3, 2, 2, 2])?, 125.0);
//! # Ok::<(), tensor::Error>(())
//! ```
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod error;
mod kernels;
mod layout;
mod ops;
mod storage;
mod tensor;

pub use error::{Error, Result};
pub use kernels::gemm::kernel_name;
pub use kernels::peak::fma_peak_gflops;
pub use layout::{Layout, contiguous_strides};
pub use ops::conv::{ConvOptions, FixedConvWeight, Padding, PaddingMode};
pub use ops::pool::{NO_SWITCH, PoolOptions, PoolSwitches};
pub use storage::OutOfMemory;
pub use tensor::{Tensor, broadcast_shapes};

/// `sum(a[i] * b[i])` over the common length of two slices, with 16 partial sums on the widest
/// vector unit the CPU has (AVX2+FMA when detected at run time, SSE2 otherwise).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    kernels::simd::dot(a, b)
}
