//! Ready-made networks.

pub mod small_cnn;
pub mod squeezenet;
pub mod vgg;
