//! Ready-made networks.

pub mod squeezenet;
