use autograd::Var;

use crate::ctx::{Ctx, Module};
use crate::param::{Init, ParamBuilder, ParamId};
use crate::{Error, Result};

/// Shape `(1, C, 1, ...)` that broadcasts a per-channel vector over an `(N, C, ...)` input.
fn channel_shape(rank: usize, c: usize) -> Vec<usize> {
    let mut s = vec![1; rank];
    s[1] = c;
    s
}

/// Batch normalisation over `(N, C, ...)` (1D/2D/3D): batch statistics in training (updating
/// running mean and unbiased variance with `momentum`), running statistics in eval.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    /// Scale `gamma`.
    pub weight: ParamId,
    /// Shift `beta`.
    pub bias: ParamId,
    /// Running mean (buffer).
    pub running_mean: ParamId,
    /// Running variance (buffer).
    pub running_var: ParamId,
    channels: usize,
    eps: f32,
    momentum: f32,
}

impl BatchNorm {
    /// PyTorch's defaults: `eps = 1e-5`, `momentum = 0.1`, gamma 1, beta 0.
    ///
    /// # Errors
    /// Duplicate parameter names.
    pub fn new(b: &mut ParamBuilder<'_>, channels: usize) -> Result<BatchNorm> {
        Ok(BatchNorm {
            weight: b.weight("weight", &[channels], Init::Const(1.0), None)?,
            bias: b.weight("bias", &[channels], Init::Const(0.0), None)?,
            running_mean: b.buffer("running_mean", &[channels], 0.0)?,
            running_var: b.buffer("running_var", &[channels], 1.0)?,
            channels,
            eps: 1e-5,
            momentum: 0.1,
        })
    }
}

impl Module for BatchNorm {
    fn forward<'g>(&self, cx: &Ctx<'g>, x: &Var<'g>) -> Result<Var<'g>> {
        let rank = x.shape().len();
        if rank < 2 || x.shape()[1] != self.channels {
            return Err(Error::arg(
                "BatchNorm",
                format!("expected (N, {}, ...), got {:?}", self.channels, x.shape()),
            ));
        }
        let (gamma, beta) = (cx.param(self.weight), cx.param(self.bias));
        if cx.is_train() {
            let count: usize = x
                .shape()
                .iter()
                .enumerate()
                .filter(|&(d, _)| d != 1)
                .map(|(_, &n)| n)
                .product();
            if count < 2 {
                return Err(Error::arg(
                    "BatchNorm",
                    "training needs more than one value per channel",
                ));
            }
            let (y, stats) = x.batch_norm(gamma, beta, None, self.eps)?;
            let (mean, var) = stats.expect("training mode returns the batch statistics");
            // Running statistics use the unbiased variance, as PyTorch does.
            let m = self.momentum;
            let unbiased = var.scale(count as f32 / (count - 1) as f32);
            let rm = cx
                .param(self.running_mean)
                .value()
                .scale(1.0 - m)
                .add(&mean.scale(m))?;
            let rv = cx
                .param(self.running_var)
                .value()
                .scale(1.0 - m)
                .add(&unbiased.scale(m))?;
            cx.update_buffer(self.running_mean, rm);
            cx.update_buffer(self.running_var, rv);
            Ok(y)
        } else {
            let running = (
                cx.param(self.running_mean).value(),
                cx.param(self.running_var).value(),
            );
            Ok(x.batch_norm(gamma, beta, Some(running), self.eps)?.0)
        }
    }
}

/// Group normalisation: channels split into groups, each normalised over (channels in group,
/// space), then a per-channel affine map. Same in training and eval.
#[derive(Debug, Clone)]
pub struct GroupNorm {
    /// Scale.
    pub weight: ParamId,
    /// Shift.
    pub bias: ParamId,
    groups: usize,
    channels: usize,
    eps: f32,
}

impl GroupNorm {
    /// `groups` must divide `channels`.
    ///
    /// # Errors
    /// Groups that do not divide the channels; duplicate names.
    pub fn new(b: &mut ParamBuilder<'_>, groups: usize, channels: usize) -> Result<GroupNorm> {
        if groups == 0 || !channels.is_multiple_of(groups) {
            return Err(Error::arg(
                "GroupNorm",
                format!("{groups} groups do not divide {channels} channels"),
            ));
        }
        Ok(GroupNorm {
            weight: b.weight("weight", &[channels], Init::Const(1.0), None)?,
            bias: b.weight("bias", &[channels], Init::Const(0.0), None)?,
            groups,
            channels,
            eps: 1e-5,
        })
    }
}

impl Module for GroupNorm {
    fn forward<'g>(&self, cx: &Ctx<'g>, x: &Var<'g>) -> Result<Var<'g>> {
        let shape = x.shape().to_vec();
        if shape.len() < 2 || shape[1] != self.channels {
            return Err(Error::arg(
                "GroupNorm",
                format!("expected (N, {}, ...), got {shape:?}", self.channels),
            ));
        }
        let n = shape[0];
        let per_group: usize = shape[1..].iter().product::<usize>() / self.groups;
        let grouped = x.reshape(&[n, self.groups, per_group])?;
        let mean = grouped.mean_axes(&[2], true)?;
        let centered = grouped.sub(&mean)?;
        let var = centered.sqr().mean_axes(&[2], true)?;
        let normed = centered
            .div(&var.add_scalar(self.eps).sqrt())?
            .reshape(&shape)?;
        let cs = channel_shape(shape.len(), self.channels);
        Ok(normed
            .mul(&cx.param(self.weight).reshape(&cs)?)?
            .add(&cx.param(self.bias).reshape(&cs)?)?)
    }
}

/// Layer normalisation over the trailing `normalized_shape` dims, with an elementwise affine.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    /// Scale.
    pub weight: ParamId,
    /// Shift.
    pub bias: ParamId,
    shape: Vec<usize>,
    eps: f32,
}

impl LayerNorm {
    /// Normalises over the trailing dims of shape `normalized_shape`.
    ///
    /// # Errors
    /// Duplicate names.
    pub fn new(b: &mut ParamBuilder<'_>, normalized_shape: &[usize]) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: b.weight("weight", normalized_shape, Init::Const(1.0), None)?,
            bias: b.weight("bias", normalized_shape, Init::Const(0.0), None)?,
            shape: normalized_shape.to_vec(),
            eps: 1e-5,
        })
    }
}

impl Module for LayerNorm {
    fn forward<'g>(&self, cx: &Ctx<'g>, x: &Var<'g>) -> Result<Var<'g>> {
        let rank = x.shape().len();
        let k = self.shape.len();
        if rank < k || x.shape()[rank - k..] != self.shape[..] {
            return Err(Error::arg(
                "LayerNorm",
                format!("input {:?} does not end with {:?}", x.shape(), self.shape),
            ));
        }
        let axes: Vec<usize> = (rank - k..rank).collect();
        let mean = x.mean_axes(&axes, true)?;
        let centered = x.sub(&mean)?;
        let var = centered.sqr().mean_axes(&axes, true)?;
        let normed = centered.div(&var.add_scalar(self.eps).sqrt())?;
        Ok(normed
            .mul(cx.param(self.weight))?
            .add(cx.param(self.bias))?)
    }
}
