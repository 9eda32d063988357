//! Movement ops: reshape, permute, narrow, concatenation, index-select, broadcast.

use tensor::Tensor;

use super::unbroadcast;
use crate::graph::{NodeId, Var};
use crate::op::Op;
use crate::{Error, Result};

impl<'g> Var<'g> {
    /// The same elements with a new shape.
    ///
    /// # Errors
    /// Element counts differ.
    pub fn reshape(&self, shape: &[usize]) -> Result<Var<'g>> {
        let value = self.value.reshape(shape)?;
        let x = self.node;
        Ok(self.wrap(value, &[x], || Op::Reshape {
            x: x.expect("recorded only with an input node"),
            in_shape: self.value.shape().to_vec(),
        }))
    }

    /// Reorders dimensions (output dim `i` is input dim `perm[i]`).
    ///
    /// # Errors
    /// `perm` is not a permutation.
    pub fn permute(&self, perm: &[usize]) -> Result<Var<'g>> {
        let value = self.value.permute(perm)?;
        let x = self.node;
        Ok(self.wrap(value, &[x], || Op::Permute {
            x: x.expect("recorded only with an input node"),
            perm: perm.to_vec(),
        }))
    }

    /// Swaps two dimensions.
    ///
    /// # Errors
    /// A bad axis.
    pub fn transpose(&self, a: usize, b: usize) -> Result<Var<'g>> {
        let rank = self.value.rank();
        if a >= rank || b >= rank {
            return Err(tensor::Error::AxisOutOfRange {
                op: "transpose",
                axis: a.max(b),
                rank,
            }
            .into());
        }
        let mut perm: Vec<usize> = (0..rank).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// `start .. start + len` of dimension `axis`.
    ///
    /// # Errors
    /// The range does not fit.
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Result<Var<'g>> {
        let value = self.value.narrow(axis, start, len)?;
        let x = self.node;
        Ok(self.wrap(value, &[x], || Op::Narrow {
            x: x.expect("recorded only with an input node"),
            axis,
            start,
            in_shape: self.value.shape().to_vec(),
        }))
    }

    /// Joins vars along `axis`.
    ///
    /// # Errors
    /// Empty list, mismatched shapes, vars of different graphs.
    pub fn cat(vars: &[&Var<'g>], axis: usize) -> Result<Var<'g>> {
        let first = vars.first().ok_or(tensor::Error::InvalidArgument {
            op: "cat",
            reason: "no vars to concatenate".into(),
        })?;
        for v in vars {
            first.same_graph("cat", v)?;
        }
        let tensors: Vec<&Tensor> = vars.iter().map(|v| &v.value).collect();
        let value = Tensor::cat(&tensors, axis)?;
        let inputs: Vec<_> = vars.iter().map(|v| v.node).collect();
        Ok(first.wrap(value, &inputs, || Op::Cat {
            inputs: inputs.clone(),
            axis,
            sizes: vars.iter().map(|v| v.value.shape()[axis]).collect(),
        }))
    }

    /// Entries `indices` of dimension `axis` (repeats allowed: their gradients add).
    ///
    /// # Errors
    /// A bad axis or index.
    pub fn index_select(&self, axis: usize, indices: &[usize]) -> Result<Var<'g>> {
        let value = self.value.index_select(axis, indices)?;
        let x = self.node;
        Ok(self.wrap(value, &[x], || Op::IndexSelect {
            x: x.expect("recorded only with an input node"),
            axis,
            indices: indices.to_vec(),
            in_shape: self.value.shape().to_vec(),
        }))
    }

    /// Repeats size-1 dimensions to reach `shape` (gradients are summed back).
    ///
    /// # Errors
    /// Shapes that do not broadcast that way.
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Var<'g>> {
        let value = self.value.broadcast_to(shape)?.contiguous();
        let x = self.node;
        Ok(self.wrap(value, &[x], || Op::BroadcastTo {
            x: x.expect("recorded only with an input node"),
            in_shape: self.value.shape().to_vec(),
        }))
    }

    /// Flattens dimensions `from..` into one (e.g. `(N, C, H, W) -> (N, C*H*W)` with 1).
    ///
    /// # Errors
    /// `from` beyond the rank.
    pub fn flatten_from(&self, from: usize) -> Result<Var<'g>> {
        let shape = self.value.shape();
        if from > shape.len() {
            return Err(Error::Tensor(tensor::Error::AxisOutOfRange {
                op: "flatten_from",
                axis: from,
                rank: shape.len(),
            }));
        }
        let mut new: Vec<usize> = shape[..from].to_vec();
        new.push(shape[from..].iter().product());
        self.reshape(&new)
    }
}

pub(crate) fn backward(op: &Op, g: &Tensor) -> Result<Vec<(NodeId, Tensor)>> {
    Ok(match op {
        Op::Reshape { x, in_shape } => vec![(*x, g.reshape(in_shape)?)],
        Op::Permute { x, perm } => {
            let mut inverse = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inverse[p] = i;
            }
            vec![(*x, g.permute(&inverse)?.contiguous())]
        }
        Op::Narrow {
            x,
            axis,
            start,
            in_shape,
        } => {
            // Zeros before and after the slice along `axis`.
            let len = g.shape()[*axis];
            let mut parts = vec![];
            let mut zeros_shape = in_shape.clone();
            zeros_shape[*axis] = *start;
            let before = Tensor::zeros(&zeros_shape);
            zeros_shape[*axis] = in_shape[*axis] - start - len;
            let after = Tensor::zeros(&zeros_shape);
            if *start > 0 {
                parts.push(&before);
            }
            parts.push(g);
            if in_shape[*axis] > start + len {
                parts.push(&after);
            }
            vec![(*x, Tensor::cat(&parts, *axis)?)]
        }
        Op::Cat {
            inputs,
            axis,
            sizes,
        } => {
            let mut out = vec![];
            let mut start = 0;
            for (input, &size) in inputs.iter().zip(sizes) {
                if let Some(node) = input {
                    out.push((*node, g.narrow(*axis, start, size)?.contiguous()));
                }
                start += size;
            }
            out
        }
        Op::IndexSelect {
            x,
            axis,
            indices,
            in_shape,
        } => {
            vec![(*x, Tensor::index_add_zeros(in_shape, *axis, indices, g)?)]
        }
        Op::BroadcastTo { x, in_shape } => vec![(*x, unbroadcast(g, in_shape)?)],
        _ => unreachable!("shape::backward called for {:?}", op.kind()),
    })
}
