//! Matrix product, convolutions and pooling.

use tensor::{ConvOptions, FixedConvWeight, PoolOptions, Tensor};

use super::unbroadcast;
use crate::Result;
use crate::graph::{NodeId, Var};
use crate::op::Op;

/// Swaps the last two dims (a view).
fn t_last(t: &Tensor) -> Result<Tensor> {
    let r = t.rank();
    Ok(t.transpose(r - 2, r - 1)?)
}

impl<'g> Var<'g> {
    /// Matrix product over the last two dims, batched with broadcasting.
    ///
    /// # Errors
    /// Rank below 2, inner dims that differ, batch dims that do not broadcast.
    pub fn matmul(&self, other: &Var<'g>) -> Result<Var<'g>> {
        self.same_graph("matmul", other)?;
        let value = self.value.matmul(&other.value)?;
        let (a, b) = (self.node, other.node);
        Ok(self.wrap(value, &[a, b], || Op::Matmul {
            a,
            b,
            a_val: self.value.clone(),
            b_val: other.value.clone(),
        }))
    }

    /// The Gram matrix `x x^T` of the rows of a 2-D `x` (`(m, k) -> (m, m)`; style transfer's
    /// eq. 10 on an activation reshaped to channels x positions). One op rather than
    /// `x.matmul(x^T)` so the backward pass is the single product `(g + g^T) x`, on the
    /// convolution kernels when `k` is long, with no transposed copies of `x`.
    ///
    /// # Errors
    /// A rank other than 2.
    pub fn gram(&self) -> Result<Var<'g>> {
        if self.value.rank() != 2 {
            return Err(tensor::Error::RankMismatch {
                op: "gram",
                expected: "2 (rows, features)".into(),
                got: self.value.shape().to_vec(),
            }
            .into());
        }
        let x_val = self.value.contiguous();
        let value = x_val.matmul(&x_val.transpose(0, 1)?)?;
        Ok(match self.node {
            Some(x) => self.wrap(value, &[Some(x)], || Op::Gram { x, x_val }),
            None => self.wrap(value, &[None], || Op::Leaf),
        })
    }

    /// N-d convolution (1D/2D/3D) with every option of [`tensor::ConvOptions`].
    ///
    /// # Errors
    /// Any shape or option error of [`tensor::Tensor::conv`].
    pub fn conv(
        &self,
        weight: &Var<'g>,
        bias: Option<&Var<'g>>,
        opts: &ConvOptions,
    ) -> Result<Var<'g>> {
        self.same_graph("conv", weight)?;
        if let Some(b) = bias {
            self.same_graph("conv", b)?;
        }
        let value = self
            .value
            .conv(&weight.value, bias.map(|b| &b.value), opts)?;
        let (x, w, b) = (self.node, weight.node, bias.and_then(|b| b.node));
        Ok(self.wrap(value, &[x, w, b], || Op::Conv {
            x,
            w,
            b,
            x_val: self.value.clone(),
            w_val: weight.value.clone(),
            opts: opts.clone(),
        }))
    }

    /// Convolution with a fixed weight packed once for the matrix kernels (a pretrained
    /// network's): the same op as [`Var::conv`] with a constant weight, so inference (on a
    /// no-grad graph) and inspection (gradients or deconvnet projections to the input) run one
    /// forward pass.
    ///
    /// # Errors
    /// Any shape or option error of [`tensor::Tensor::conv_fixed`].
    pub fn conv_fixed(
        &self,
        weight: &FixedConvWeight,
        bias: Option<&Var<'g>>,
        opts: &ConvOptions,
    ) -> Result<Var<'g>> {
        if let Some(b) = bias {
            self.same_graph("conv_fixed", b)?;
        }
        let value = self
            .value
            .conv_fixed(weight, bias.map(|b| &b.value), opts)?;
        let (x, b) = (self.node, bias.and_then(|b| b.node));
        Ok(self.wrap(value, &[x, b], || Op::Conv {
            x,
            w: None,
            b,
            x_val: self.value.clone(),
            w_val: weight.weight().clone(),
            opts: opts.clone(),
        }))
    }

    /// Transposed convolution (the adjoint of [`Var::conv`]).
    ///
    /// # Errors
    /// Any shape or option error of [`tensor::Tensor::conv_transpose`].
    pub fn conv_transpose(
        &self,
        weight: &Var<'g>,
        bias: Option<&Var<'g>>,
        opts: &ConvOptions,
    ) -> Result<Var<'g>> {
        self.same_graph("conv_transpose", weight)?;
        if let Some(b) = bias {
            self.same_graph("conv_transpose", b)?;
        }
        let value = self
            .value
            .conv_transpose(&weight.value, bias.map(|b| &b.value), opts)?;
        let (x, w, b) = (self.node, weight.node, bias.and_then(|b| b.node));
        Ok(self.wrap(value, &[x, w, b], || Op::ConvTranspose {
            x,
            w,
            b,
            x_val: self.value.clone(),
            w_val: weight.value.clone(),
            opts: opts.clone(),
        }))
    }

    /// Max pooling; the gradient goes to the element each window picked.
    ///
    /// # Errors
    /// Any error of [`tensor::Tensor::max_pool`].
    pub fn max_pool(&self, opts: &PoolOptions) -> Result<Var<'g>> {
        let x = self.node;
        if x.is_none() || !self.graph.is_recording() {
            // Nothing will go back through it: the values alone, without the switches.
            return Ok(self.graph.constant(self.value.max_pool_values(opts)?));
        }
        let (value, switches) = self.value.max_pool(opts)?;
        Ok(self.wrap(value, &[x], || Op::MaxPool {
            x: x.expect("recorded only with an input node"),
            switches,
        }))
    }

    /// Average pooling.
    ///
    /// # Errors
    /// Any error of [`tensor::Tensor::avg_pool`].
    pub fn avg_pool(&self, opts: &PoolOptions) -> Result<Var<'g>> {
        let value = self.value.avg_pool(opts)?;
        let x = self.node;
        Ok(self.wrap(value, &[x], || Op::AvgPool {
            x: x.expect("recorded only with an input node"),
            in_shape: self.value.shape().to_vec(),
            opts: opts.clone(),
        }))
    }

    /// Batch normalisation of an `(N, C, ...)` input with per-channel `gamma` and `beta`, as
    /// one fused op. With `running = None` it uses (and returns) the batch's mean and biased
    /// variance, and the gradient flows through them (training); with `Some((mean, var))` it
    /// uses those as constants (evaluation).
    ///
    /// # Errors
    /// Shapes that are not `(N, C, ...)` and `[C]`; an empty channel.
    pub fn batch_norm(
        &self,
        gamma: &Var<'g>,
        beta: &Var<'g>,
        running: Option<(&Tensor, &Tensor)>,
        eps: f32,
    ) -> Result<(Var<'g>, Option<(Tensor, Tensor)>)> {
        self.same_graph("batch_norm", gamma)?;
        self.same_graph("batch_norm", beta)?;
        let (mean, var, batch) = match running {
            Some((m, v)) => (m.clone(), v.clone(), None),
            None => {
                let (m, v) = self.value.batch_norm_stats()?;
                (m.clone(), v.clone(), Some((m, v)))
            }
        };
        let invstd = var.map(|v| 1.0 / (v + eps).sqrt());
        let value = self
            .value
            .batch_norm_apply(&mean, &invstd, &gamma.value, &beta.value)?;
        let (x, g, b) = (self.node, gamma.node, beta.node);
        let out = self.wrap(value, &[x, g, b], || Op::BatchNorm {
            x,
            gamma: g,
            beta: b,
            x_val: self.value.clone(),
            mean,
            invstd,
            gamma_val: gamma.value.clone(),
            batch_stats: running.is_none(),
        });
        Ok((out, batch))
    }

    /// Mean over the spatial dims: `(N, C, ...) -> (N, C)` (composite).
    ///
    /// # Errors
    /// Rank below 3.
    pub fn global_avg_pool(&self) -> Result<Var<'g>> {
        let rank = self.value.rank();
        if rank < 3 {
            return Err(tensor::Error::RankMismatch {
                op: "global_avg_pool",
                expected: "at least 3 (N, C, spatial...)".into(),
                got: self.value.shape().to_vec(),
            }
            .into());
        }
        let axes: Vec<usize> = (2..rank).collect();
        self.mean_axes(&axes, false)
    }
}

pub(crate) fn backward(op: &Op, g: &Tensor) -> Result<Vec<(NodeId, Tensor)>> {
    let mut out = vec![];
    match op {
        Op::Matmul { a, b, a_val, b_val } => {
            if let Some(a) = a {
                out.push((*a, unbroadcast(&g.matmul(&t_last(b_val)?)?, a_val.shape())?));
            }
            if let Some(b) = b {
                out.push((*b, unbroadcast(&t_last(a_val)?.matmul(g)?, b_val.shape())?));
            }
        }
        Op::Gram { x, x_val } => {
            let sym = g.add(&g.transpose(0, 1)?)?;
            out.push((*x, sym.matmul(x_val)?));
        }
        Op::Conv {
            x,
            w,
            b,
            x_val,
            w_val,
            opts,
        } => {
            if let Some(x) = x {
                out.push((
                    *x,
                    Tensor::conv_backward_input(g, w_val, x_val.shape(), opts)?,
                ));
            }
            if let Some(w) = w {
                out.push((
                    *w,
                    Tensor::conv_backward_weight(x_val, g, w_val.shape(), opts)?,
                ));
            }
            if let Some(b) = b {
                out.push((*b, Tensor::conv_backward_bias(g)?));
            }
        }
        Op::ConvTranspose {
            x,
            w,
            b,
            x_val,
            w_val,
            opts,
        } => {
            if let Some(x) = x {
                out.push((
                    *x,
                    Tensor::conv_transpose_backward_input(g, w_val, x_val.shape(), opts)?,
                ));
            }
            if let Some(w) = w {
                out.push((
                    *w,
                    Tensor::conv_transpose_backward_weight(x_val, g, w_val.shape(), opts)?,
                ));
            }
            if let Some(b) = b {
                out.push((*b, Tensor::conv_backward_bias(g)?));
            }
        }
        Op::MaxPool { x, switches } => out.push((*x, Tensor::max_pool_backward(g, switches)?)),
        Op::AvgPool { x, in_shape, opts } => {
            out.push((*x, Tensor::avg_pool_backward(g, in_shape, opts)?))
        }
        Op::BatchNorm {
            x,
            gamma,
            beta,
            x_val,
            mean,
            invstd,
            gamma_val,
            batch_stats,
        } => {
            let (dx, dg, db) =
                Tensor::batch_norm_backward(g, x_val, mean, invstd, gamma_val, *batch_stats)?;
            for (node, grad) in [(x, dx), (gamma, dg), (beta, db)] {
                if let Some(n) = node {
                    out.push((*n, grad));
                }
            }
        }
        _ => unreachable!("nn::backward called for {:?}", op.kind()),
    }
    Ok(out)
}
