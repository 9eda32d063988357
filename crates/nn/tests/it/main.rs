//! The nn crate's integration tests, one binary (each module was its own test binary: one
//! link instead of eight).

mod checkpoint;
mod components;
mod images;
mod inspect;
mod npy;
mod squeezenet;
mod training;
mod vgg;
