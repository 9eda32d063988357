//! A small classifier: three `conv -> BatchNorm -> ReLU -> max pool 2` blocks, global average
//! pooling, dropout and a linear layer, for signals (rank 1), images (rank 2) or volumes (rank
//! 3). The image network is built in PyTorch by `benches/pytorch/train_bench.py` for the
//! throughput comparison.

use autograd::Var;

use crate::Result;
use crate::ctx::{Ctx, Module};
use crate::layers::{Dropout, Flatten, Linear, Sequential};
use crate::param::ParamBuilder;

/// Sizes of a [`SmallCnn`].
#[derive(Debug, Clone, PartialEq)]
pub struct SmallCnnConfig {
    /// Spatial dimensions: 1 (signals), 2 (images), 3 (volumes).
    pub rank: usize,
    /// Odd kernel size of every conv (3 for images).
    pub kernel: usize,
    /// Input channels (1 grey, 3 RGB).
    pub in_channels: usize,
    /// Channels of the three blocks.
    pub widths: [usize; 3],
    /// Output classes.
    pub classes: usize,
    /// Dropout before the classifier.
    pub dropout: f32,
}

/// The network.
pub struct SmallCnn {
    body: Sequential,
    head: Sequential,
}

impl SmallCnn {
    /// Builds it (names `block{1,2,3}.{conv,bn}.*`, `fc.*`).
    ///
    /// # Errors
    /// Duplicate names (internal).
    pub fn new(b: &mut ParamBuilder<'_>, cfg: &SmallCnnConfig) -> Result<SmallCnn> {
        let (body, cin) = super::conv_bn_relu_pool_blocks_nd(
            b,
            cfg.rank,
            cfg.kernel,
            cfg.in_channels,
            &cfg.widths,
        )?;
        let head = Sequential::new()
            .push(Dropout(cfg.dropout))
            .push(Linear::new(&mut b.scope("fc"), cin, cfg.classes, true)?);
        Ok(SmallCnn { body, head })
    }

    /// The pooled features `(N, widths[2])` (the embedding before the classifier).
    ///
    /// # Errors
    /// Shape errors for inputs smaller than 8 in any spatial dimension.
    pub fn features<'g>(&self, cx: &Ctx<'g>, x: &Var<'g>) -> Result<Var<'g>> {
        let y = self.body.forward(cx, x)?;
        Flatten.forward(cx, &y.global_avg_pool()?)
    }
}

impl Module for SmallCnn {
    fn forward<'g>(&self, cx: &Ctx<'g>, x: &Var<'g>) -> Result<Var<'g>> {
        let f = self.features(cx, x)?;
        self.head.forward(cx, &f)
    }
}
