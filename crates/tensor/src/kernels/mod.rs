//! Slice-level numeric kernels. Every `unsafe` block of the workspace lives under this module.

pub(crate) mod conv;
pub(crate) mod gemm;
pub(crate) mod peak;
pub(crate) mod scratch;
pub(crate) mod sgemm;
pub(crate) mod simd;
