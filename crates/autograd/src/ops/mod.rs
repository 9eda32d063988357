//! Var methods (forward + record) and their backward formulas, one file per family.

pub(crate) mod arith;
pub(crate) mod nn;
pub(crate) mod reduce;
pub(crate) mod shape;

use tensor::Tensor;

use crate::Result;

/// Sums a gradient back to the shape of an input that was broadcast to `g`'s shape. The one
/// place where broadcasting is undone.
pub(crate) fn unbroadcast(g: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if g.shape() == shape {
        return Ok(g.clone());
    }
    let lead = g.rank() - shape.len();
    let axes: Vec<usize> = (0..g.rank())
        .filter(|&d| d < lead || (shape[d - lead] == 1 && g.shape()[d] != 1))
        .collect();
    let summed = if axes.is_empty() {
        g.clone()
    } else {
        g.sum_axes(&axes, true)?
    };
    Ok(summed.reshape(shape)?)
}
