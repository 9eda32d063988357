//! The faces crate's integration tests, one binary (each module was its own test binary: one
//! link instead of eight).

mod data;
mod detect;
mod gallery;
mod metrics;
mod photos;
mod pipeline;
mod real_data;
mod resnet29;
