//! Layers: a config, a constructor that creates named parameters, and `forward`.

mod conv;
mod linear;
mod misc;
mod norm;

pub use conv::{Conv, ConvConfig, ConvTranspose};
pub use linear::Linear;
pub use misc::{Activation, AdaptiveAvgPool, Dropout, Flatten, Pool, Residual, Sequential};
pub use norm::{BatchNorm, GroupNorm, LayerNorm};
