//! Ready-made networks.

pub mod small_cnn;
pub mod squeezenet;
pub mod vgg;

use tensor::PoolOptions;

use crate::layers::{Activation, BatchNorm, Conv, ConvConfig, Pool, Sequential};
use crate::param::ParamBuilder;

/// `conv 3x3 (no bias) -> BatchNorm -> ReLU -> max pool 2` per width, named `block{i}.conv` and
/// `block{i}.bn`: the body of the small classifiers and face embedders. Returns the stack and
/// its output channels.
///
/// # Errors
/// Duplicate names.
pub fn conv_bn_relu_pool_blocks(
    b: &mut ParamBuilder<'_>,
    in_channels: usize,
    widths: &[usize],
) -> crate::Result<(Sequential, usize)> {
    conv_bn_relu_pool_blocks_nd(b, 2, 3, in_channels, widths)
}

/// The same blocks for any number of spatial dimensions (`rank` 1: signals, 2: images, 3:
/// volumes) and an odd `kernel` size (padding keeps the size; the pooling halves it).
///
/// # Errors
/// Duplicate names.
pub fn conv_bn_relu_pool_blocks_nd(
    b: &mut ParamBuilder<'_>,
    rank: usize,
    kernel: usize,
    in_channels: usize,
    widths: &[usize],
) -> crate::Result<(Sequential, usize)> {
    let mut body = Sequential::new();
    let mut cin = in_channels;
    for (i, &w) in widths.iter().enumerate() {
        let mut s = b.scope(&format!("block{}", i + 1));
        body = body
            .push(Conv::new(
                &mut s.scope("conv"),
                &ConvConfig::new(rank, cin, w, kernel)
                    .padding(kernel / 2)
                    .no_bias(),
            )?)
            .push(BatchNorm::new(&mut s.scope("bn"), w)?)
            .push(Activation::Relu)
            .push(Pool::Max(PoolOptions::new(&[2])));
        cin = w;
    }
    Ok((body, cin))
}
