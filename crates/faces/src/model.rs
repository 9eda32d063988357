//! The embedding network f(x): a small FaceNet-style CNN whose output is L2-normalised, so
//! that squared distances lie in [0, 4] and a margin has a fixed meaning. The twins of a
//! Siamese pair, or the three images of a triplet, go through this one network in one batch:
//! the weights are shared by construction.

use autograd::Var;
use nn::{Ctx, Flatten, Linear, Module, ParamBuilder, Sequential};
use serde::{Deserialize, Serialize};

/// Sizes of an [`EmbeddingNet`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingConfig {
    /// Input channels (1 grey, 3 RGB).
    pub in_channels: usize,
    /// Channels of each `conv 3x3 -> BatchNorm -> ReLU -> max pool 2` block.
    pub widths: Vec<usize>,
    /// Embedding size.
    pub dim: usize,
}

impl Default for EmbeddingConfig {
    fn default() -> Self {
        EmbeddingConfig {
            in_channels: 1,
            widths: vec![32, 64, 128],
            dim: 128,
        }
    }
}

/// `f(x)`: conv blocks, global average pooling, a linear map to `dim`, L2 normalisation.
pub struct EmbeddingNet {
    body: Sequential,
    head: Linear,
    /// Its configuration.
    pub config: EmbeddingConfig,
}

impl EmbeddingNet {
    /// Builds the network under `b` (names `block{i}.conv`, `block{i}.bn`, `embed`).
    ///
    /// # Errors
    /// An empty width list; duplicate names.
    pub fn new(b: &mut ParamBuilder<'_>, config: &EmbeddingConfig) -> nn::Result<EmbeddingNet> {
        if config.widths.is_empty() || config.dim == 0 {
            return Err(nn::Error::InvalidArgument {
                op: "EmbeddingNet",
                reason: "needs at least one block and dim > 0".into(),
            });
        }
        let (body, cin) =
            nn::models::conv_bn_relu_pool_blocks(b, config.in_channels, &config.widths)?;
        let head = Linear::new(&mut b.scope("embed"), cin, config.dim, true)?;
        Ok(EmbeddingNet {
            body,
            head,
            config: config.clone(),
        })
    }
}

impl Module for EmbeddingNet {
    /// `(N, C, H, W) -> (N, dim)`, each row of unit length.
    fn forward<'g>(&self, cx: &Ctx<'g>, x: &Var<'g>) -> nn::Result<Var<'g>> {
        let y = self.body.forward(cx, x)?;
        let y = Flatten.forward(cx, &y.global_avg_pool()?)?;
        Ok(self.head.forward(cx, &y)?.l2_normalize(1, 1e-12)?)
    }
}
