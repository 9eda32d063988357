//! Reductions and the log-softmax (composite softmax, mean-of-all and friends build on them).

use tensor::Tensor;

use crate::Result;
use crate::graph::{NodeId, Var};
use crate::op::Op;

fn all_axes(axes: &[usize], rank: usize) -> Vec<usize> {
    if axes.is_empty() {
        (0..rank).collect()
    } else {
        axes.to_vec()
    }
}

/// The output gradient reshaped so it broadcasts over the reduced axes.
fn keepdim_shape(in_shape: &[usize], axes: &[usize]) -> Vec<usize> {
    in_shape
        .iter()
        .enumerate()
        .map(|(d, &n)| if axes.contains(&d) { 1 } else { n })
        .collect()
}

impl<'g> Var<'g> {
    /// Sum over `axes` (all when empty).
    ///
    /// # Errors
    /// Bad or repeated axes.
    pub fn sum_axes(&self, axes: &[usize], keepdim: bool) -> Result<Var<'g>> {
        let axes = all_axes(axes, self.value.rank());
        let value = self.value.sum_axes(&axes, keepdim)?;
        let x = self.node;
        Ok(self.wrap(value, &[x], || Op::Sum {
            x: x.expect("recorded only with an input node"),
            axes,
            in_shape: self.value.shape().to_vec(),
        }))
    }

    /// Sum of all elements, as a one-element tensor of shape `[]`.
    ///
    /// # Errors
    /// Never for a non-empty tensor; an empty one has nothing to sum.
    pub fn sum(&self) -> Result<Var<'g>> {
        self.sum_axes(&[], false)
    }

    /// Mean over `axes` (all when empty).
    ///
    /// # Errors
    /// As [`Var::sum_axes`].
    pub fn mean_axes(&self, axes: &[usize], keepdim: bool) -> Result<Var<'g>> {
        let axes = all_axes(axes, self.value.rank());
        let value = self.value.mean_axes(&axes, keepdim)?;
        let x = self.node;
        Ok(self.wrap(value, &[x], || Op::Mean {
            x: x.expect("recorded only with an input node"),
            axes,
            in_shape: self.value.shape().to_vec(),
        }))
    }

    /// Mean of all elements.
    ///
    /// # Errors
    /// As [`Var::sum`].
    pub fn mean(&self) -> Result<Var<'g>> {
        self.mean_axes(&[], false)
    }

    /// Maximum over `axes` (all when empty). The gradient is shared evenly among tied maxima.
    ///
    /// # Errors
    /// As [`Var::sum_axes`].
    pub fn max_axes(&self, axes: &[usize], keepdim: bool) -> Result<Var<'g>> {
        let axes = all_axes(axes, self.value.rank());
        let value = self.value.max_axes(&axes, keepdim)?;
        let x = self.node;
        Ok(self.wrap(value.clone(), &[x], || Op::Max {
            x: x.expect("recorded only with an input node"),
            axes,
            x_val: self.value.clone(),
            out: value,
        }))
    }

    /// Minimum over `axes` (composite: `-max(-x)`).
    ///
    /// # Errors
    /// As [`Var::sum_axes`].
    pub fn min_axes(&self, axes: &[usize], keepdim: bool) -> Result<Var<'g>> {
        Ok(self.neg().max_axes(axes, keepdim)?.neg())
    }

    /// `log_softmax` along `axis`, numerically stable.
    ///
    /// # Errors
    /// A bad axis.
    pub fn log_softmax(&self, axis: usize) -> Result<Var<'g>> {
        let value = self.value.log_softmax(axis)?;
        let x = self.node;
        Ok(self.wrap(value.clone(), &[x], || Op::LogSoftmax {
            x: x.expect("recorded only with an input node"),
            axis,
            out: value,
        }))
    }

    /// `softmax` along `axis` (composite: `exp(log_softmax)`).
    ///
    /// # Errors
    /// A bad axis.
    pub fn softmax(&self, axis: usize) -> Result<Var<'g>> {
        Ok(self.log_softmax(axis)?.exp())
    }

    /// `x / sqrt(sum(x², axis) + eps)` (composite). `eps` keeps the gradient finite at 0.
    ///
    /// # Errors
    /// A bad axis.
    pub fn l2_normalize(&self, axis: usize, eps: f32) -> Result<Var<'g>> {
        let norm = self.sqr().sum_axes(&[axis], true)?.add_scalar(eps).sqrt();
        self.div(&norm)
    }
}

pub(crate) fn backward(op: &Op, g: &Tensor) -> Result<Vec<(NodeId, Tensor)>> {
    Ok(match op {
        Op::Sum {
            x, axes, in_shape, ..
        } => {
            let gk = g.reshape(&keepdim_shape(in_shape, axes))?;
            vec![(*x, gk.broadcast_to(in_shape)?.contiguous())]
        }
        Op::Mean {
            x, axes, in_shape, ..
        } => {
            let count: usize = axes.iter().map(|&d| in_shape[d]).product();
            let gk = g
                .reshape(&keepdim_shape(in_shape, axes))?
                .scale(1.0 / count as f32);
            vec![(*x, gk.broadcast_to(in_shape)?.contiguous())]
        }
        Op::Max {
            x,
            axes,
            x_val,
            out,
            ..
        } => {
            let kshape = keepdim_shape(x_val.shape(), axes);
            let mask = x_val.eq(&out.reshape(&kshape)?)?;
            let ties = mask.sum_axes(axes, true)?;
            let gk = g.reshape(&kshape)?.div(&ties)?;
            vec![(*x, mask.mul(&gk)?)]
        }
        Op::LogSoftmax { x, axis, out } => {
            // d/dx_i = g_i - softmax_i * sum_j g_j
            let gsum = g.sum_axes(&[*axis], true)?;
            vec![(*x, g.sub(&out.exp().mul(&gsum)?)?)]
        }
        _ => unreachable!("reduce::backward called for {:?}", op.kind()),
    })
}
