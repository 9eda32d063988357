//! Ops that copy elements into a new arrangement: concatenation and index selection.

use crate::{Error, Result, Tensor};

impl Tensor {
    /// Joins tensors along `axis`; every other dimension must agree.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty list, [`Error::AxisOutOfRange`], or
    /// [`Error::ShapeMismatch`] naming the first tensor that does not fit.
    pub fn cat(tensors: &[&Tensor], axis: usize) -> Result<Tensor> {
        let first = tensors
            .first()
            .ok_or_else(|| Error::arg("cat", "no tensors to concatenate"))?;
        let rank = first.rank();
        if axis >= rank {
            return Err(Error::axis("cat", axis, rank));
        }
        let mut total = 0;
        for (i, t) in tensors.iter().enumerate() {
            let same_rank = t.rank() == rank;
            if !same_rank || (0..rank).any(|d| d != axis && t.shape()[d] != first.shape()[d]) {
                return Err(Error::shape(
                    "cat",
                    first.shape(),
                    t.shape(),
                    format!("tensor {i} differs outside axis {axis}"),
                ));
            }
            total += t.shape()[axis];
        }
        let outer: usize = first.shape()[..axis].iter().product();
        let inner: usize = first.shape()[axis + 1..].iter().product();
        let mut out_shape = first.shape().to_vec();
        out_shape[axis] = total;
        let parts: Vec<_> = tensors.iter().map(|t| t.contiguous_data()).collect();
        let mut out = crate::storage::with_capacity(outer * total * inner);
        for o in 0..outer {
            for (t, p) in tensors.iter().zip(&parts) {
                let run = t.shape()[axis] * inner;
                out.extend_from_slice(&p[o * run..(o + 1) * run]);
            }
        }
        Ok(Tensor::from_parts(out, &out_shape))
    }

    /// The entries `indices` of dimension `axis`, in that order (repeats allowed).
    ///
    /// # Errors
    /// [`Error::AxisOutOfRange`] or [`Error::IndexOutOfRange`] naming the bad index.
    pub fn index_select(&self, axis: usize, indices: &[usize]) -> Result<Tensor> {
        let size = self
            .dim(axis)
            .map_err(|_| Error::axis("index_select", axis, self.rank()))?;
        if let Some(&bad) = indices.iter().find(|&&i| i >= size) {
            return Err(Error::IndexOutOfRange {
                op: "index_select",
                index: bad,
                size,
            });
        }
        let data = self.contiguous_data();
        let outer: usize = self.shape()[..axis].iter().product();
        let inner: usize = self.shape()[axis + 1..].iter().product();
        let mut out = crate::storage::with_capacity(outer * indices.len() * inner);
        for o in 0..outer {
            for &i in indices {
                let start = (o * size + i) * inner;
                out.extend_from_slice(&data[start..start + inner]);
            }
        }
        let mut shape = self.shape().to_vec();
        shape[axis] = indices.len();
        Ok(Tensor::from_parts(out, &shape))
    }

    /// Adds `src` into the rows `indices` of dimension `axis` of a zero tensor of `shape`; the
    /// adjoint of [`Tensor::index_select`] (repeated indices accumulate).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `src` is not `shape` with `axis` resized to the index count,
    /// or [`Error::IndexOutOfRange`].
    pub fn index_add_zeros(
        shape: &[usize],
        axis: usize,
        indices: &[usize],
        src: &Tensor,
    ) -> Result<Tensor> {
        let rank = shape.len();
        if axis >= rank {
            return Err(Error::axis("index_add", axis, rank));
        }
        let mut expect = shape.to_vec();
        expect[axis] = indices.len();
        if src.shape() != expect.as_slice() {
            return Err(Error::shape(
                "index_add",
                &expect,
                src.shape(),
                "src must match the selection",
            ));
        }
        let size = shape[axis];
        if let Some(&bad) = indices.iter().find(|&&i| i >= size) {
            return Err(Error::IndexOutOfRange {
                op: "index_add",
                index: bad,
                size,
            });
        }
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..].iter().product();
        let s = src.contiguous_data();
        let mut out = crate::storage::zeroed(shape.iter().product());
        for o in 0..outer {
            for (j, &i) in indices.iter().enumerate() {
                let dst = (o * size + i) * inner;
                let from = (o * indices.len() + j) * inner;
                for k in 0..inner {
                    out[dst + k] += s[from + k];
                }
            }
        }
        Ok(Tensor::from_parts(out, shape))
    }
}
