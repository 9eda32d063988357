//! Reductions over axes, and the numerically stable softmax family.

use rayon::prelude::*;

use crate::ops::elementwise::PAR_MIN_ELEMS;
use crate::{Error, Result, Tensor};

/// The data rearranged as `rows x row_len` with the reduced axes innermost, plus the output shape.
struct Rows<'a> {
    data: std::borrow::Cow<'a, [f32]>,
    row_len: usize,
    out_shape: Vec<usize>,
}

/// Which axes are reduced, after checking `axes`.
fn reduced_mask(op: &'static str, rank: usize, axes: &[usize]) -> Result<Vec<bool>> {
    let mut reduced = vec![false; rank];
    for &a in axes {
        if a >= rank {
            return Err(Error::axis(op, a, rank));
        }
        if std::mem::replace(&mut reduced[a], true) {
            return Err(Error::arg(op, format!("axis {a} listed twice in {axes:?}")));
        }
    }
    Ok(reduced)
}

fn out_shape_of(shape: &[usize], reduced: &[bool], keepdim: bool) -> Vec<usize> {
    (0..shape.len())
        .filter_map(|d| match (reduced[d], keepdim) {
            (false, _) => Some(shape[d]),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect()
}

/// Sums over the reduced axes by walking the input in memory order and adding each run into
/// its output slot: no permuted copy of the input (the gradient of a broadcast, e.g. a
/// per-channel bias, reduces over the outer and inner axes around a kept one).
fn sum_in_place(t: &Tensor, reduced: &[bool]) -> Vec<f32> {
    let shape = t.shape();
    let kept: Vec<usize> = shape
        .iter()
        .zip(reduced)
        .map(|(&n, &r)| if r { 1 } else { n })
        .collect();
    let mut out_strides = crate::layout::contiguous_strides(&kept);
    for (s, &r) in out_strides.iter_mut().zip(reduced) {
        if r {
            *s = 0;
        }
    }
    let mut out = crate::storage::zeroed(kept.iter().product());
    let src = t.storage();
    crate::layout::for_each_run(
        shape,
        [t.layout().strides(), &out_strides],
        [t.layout().offset(), 0],
        |[xi, oi], len, [xs, os]| match (xs, os) {
            (1, 0) => out[oi] += sum_slice(&src[xi..xi + len]),
            (_, 0) => out[oi] += (0..len).map(|i| src[xi + i * xs]).sum::<f32>(),
            (1, 1) => out[oi..oi + len]
                .iter_mut()
                .zip(&src[xi..xi + len])
                .for_each(|(o, &v)| *o += v),
            _ => (0..len).for_each(|i| out[oi + i * os] += src[xi + i * xs]),
        },
    );
    out
}

fn rows_for<'a>(
    op: &'static str,
    t: &'a Tensor,
    axes: &[usize],
    keepdim: bool,
) -> Result<Rows<'a>> {
    let rank = t.rank();
    let reduced = reduced_mask(op, rank, axes)?;
    let kept: Vec<usize> = (0..rank).filter(|&d| !reduced[d]).collect();
    let gone: Vec<usize> = (0..rank).filter(|&d| reduced[d]).collect();
    let row_len: usize = gone.iter().map(|&d| t.shape()[d]).product();
    if row_len == 0 {
        return Err(Error::arg(
            op,
            format!("reducing over empty axes {axes:?} of {:?}", t.shape()),
        ));
    }
    let perm: Vec<usize> = kept.iter().chain(&gone).copied().collect();
    let data = if perm.iter().enumerate().all(|(i, &p)| i == p) {
        t.contiguous_data()
    } else {
        std::borrow::Cow::Owned(t.permute(&perm)?.contiguous_data().into_owned())
    };
    let out_shape = out_shape_of(t.shape(), &reduced, keepdim);
    Ok(Rows {
        data,
        row_len,
        out_shape,
    })
}

fn reduce_rows(rows: &Rows, f: impl Fn(&[f32]) -> f32 + Sync) -> Vec<f32> {
    if rows.data.len() >= PAR_MIN_ELEMS {
        rows.data.par_chunks(rows.row_len).map(&f).collect()
    } else {
        rows.data.chunks(rows.row_len).map(f).collect()
    }
}

/// Sum of a slice (vectorised; see `kernels::simd`).
pub(crate) fn sum_slice(x: &[f32]) -> f32 {
    crate::kernels::simd::sum(x)
}

fn max_slice(x: &[f32]) -> f32 {
    x.iter().fold(f32::NEG_INFINITY, |m, &v| {
        if v > m || v.is_nan() || m.is_nan() {
            if m.is_nan() { m } else { v }
        } else {
            m
        }
    })
}

fn min_slice(x: &[f32]) -> f32 {
    x.iter().fold(f32::INFINITY, |m, &v| {
        if v < m || v.is_nan() || m.is_nan() {
            if m.is_nan() { m } else { v }
        } else {
            m
        }
    })
}

impl Tensor {
    /// Sum over `axes` (all of them when empty), keeping them as size 1 when `keepdim`.
    ///
    /// # Errors
    /// [`Error::AxisOutOfRange`] or [`Error::InvalidArgument`] (repeated or empty axes).
    ///
    /// ```
    /// let t = tensor::Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2])?;
    /// assert_eq!(t.sum_axes(&[0], false)?.to_vec(), vec![4.0, 6.0]);
    /// # Ok::<(), tensor::Error>(())
    /// ```
    pub fn sum_axes(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        let axes = all_if_empty(axes, self.rank());
        let reduced = reduced_mask("sum_axes", self.rank(), &axes)?;
        check_nonempty("sum_axes", self, &reduced, &axes)?;
        let out = sum_in_place(self, &reduced);
        Ok(Tensor::from_parts(
            out,
            &out_shape_of(self.shape(), &reduced, keepdim),
        ))
    }

    /// Mean over `axes` (all of them when empty).
    ///
    /// # Errors
    /// As [`Tensor::sum_axes`].
    pub fn mean_axes(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        let axes = all_if_empty(axes, self.rank());
        let reduced = reduced_mask("mean_axes", self.rank(), &axes)?;
        check_nonempty("mean_axes", self, &reduced, &axes)?;
        let n: usize = axes.iter().map(|&a| self.shape()[a]).product();
        let mut out = sum_in_place(self, &reduced);
        let inv = 1.0 / n as f32;
        out.iter_mut().for_each(|v| *v *= inv);
        Ok(Tensor::from_parts(
            out,
            &out_shape_of(self.shape(), &reduced, keepdim),
        ))
    }

    /// Maximum over `axes` (all of them when empty); NaN if a NaN is present.
    ///
    /// # Errors
    /// As [`Tensor::sum_axes`].
    pub fn max_axes(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        let rows = rows_for("max_axes", self, &all_if_empty(axes, self.rank()), keepdim)?;
        Ok(Tensor::from_parts(
            reduce_rows(&rows, max_slice),
            &rows.out_shape,
        ))
    }

    /// Minimum over `axes` (all of them when empty); NaN if a NaN is present.
    ///
    /// # Errors
    /// As [`Tensor::sum_axes`].
    pub fn min_axes(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        let rows = rows_for("min_axes", self, &all_if_empty(axes, self.rank()), keepdim)?;
        Ok(Tensor::from_parts(
            reduce_rows(&rows, min_slice),
            &rows.out_shape,
        ))
    }

    /// Sum of all elements.
    pub fn sum_all(&self) -> f32 {
        sum_slice(&self.contiguous_data())
    }

    /// Index of the largest element along `axis` (the first one on ties), for every position of
    /// the other axes, in row-major order of the shape without `axis`.
    ///
    /// # Errors
    /// [`Error::AxisOutOfRange`], or [`Error::InvalidArgument`] for an empty axis.
    pub fn argmax(&self, axis: usize) -> Result<Vec<usize>> {
        let rows = rows_for("argmax", self, &[axis], false)?;
        Ok(rows
            .data
            .chunks(rows.row_len)
            .map(|r| {
                let mut best = 0;
                for (i, &v) in r.iter().enumerate() {
                    if v > r[best] || (v.is_nan() && !r[best].is_nan()) {
                        best = i;
                    }
                }
                best
            })
            .collect())
    }

    /// `softmax` along `axis`: `exp(x - max) / sum(exp(x - max))`.
    ///
    /// # Errors
    /// [`Error::AxisOutOfRange`], or [`Error::InvalidArgument`] for an empty axis.
    pub fn softmax(&self, axis: usize) -> Result<Tensor> {
        self.along_axis("softmax", axis, |row, out| {
            let m = max_slice(row);
            let mut s = 0.0;
            for (o, &x) in out.iter_mut().zip(row) {
                *o = (x - m).exp();
                s += *o;
            }
            out.iter_mut().for_each(|o| *o /= s);
        })
    }

    /// `log_softmax` along `axis`: `x - max - ln(sum(exp(x - max)))`, stable for large inputs.
    ///
    /// # Errors
    /// As [`Tensor::softmax`].
    pub fn log_softmax(&self, axis: usize) -> Result<Tensor> {
        self.along_axis("log_softmax", axis, |row, out| {
            let m = max_slice(row);
            // Subtract the max first: `x - (m + ln s)` would lose digits when |m| is large.
            let ln_s = row.iter().map(|&x| (x - m).exp()).sum::<f32>().ln();
            for (o, &x) in out.iter_mut().zip(row) {
                *o = (x - m) - ln_s;
            }
        })
    }

    /// Applies `f(row, out_row)` to every 1-D line along `axis`.
    fn along_axis(
        &self,
        op: &'static str,
        axis: usize,
        f: impl Fn(&[f32], &mut [f32]) + Sync,
    ) -> Result<Tensor> {
        let rank = self.rank();
        if axis >= rank {
            return Err(Error::axis(op, axis, rank));
        }
        let rows = rows_for(op, self, &[axis], false)?;
        let mut out = crate::storage::zeroed(rows.data.len());
        out.par_chunks_mut(rows.row_len)
            .zip(rows.data.par_chunks(rows.row_len))
            .with_min_len((PAR_MIN_ELEMS / rows.row_len).max(1))
            .for_each(|(o, r)| f(r, o));
        // Undo the move of `axis` to the end.
        let mut moved_shape: Vec<usize> = self.shape().to_vec();
        let n = moved_shape.remove(axis);
        moved_shape.push(n);
        let mut perm: Vec<usize> = (0..rank - 1).collect();
        perm.insert(axis, rank - 1);
        Tensor::from_parts(out, &moved_shape)
            .permute(&perm)
            .map(|t| t.contiguous())
    }
}

fn check_nonempty(op: &'static str, t: &Tensor, reduced: &[bool], axes: &[usize]) -> Result<()> {
    let n: usize = t
        .shape()
        .iter()
        .zip(reduced)
        .filter(|(_, r)| **r)
        .map(|(&n, _)| n)
        .product();
    if n == 0 {
        return Err(Error::arg(
            op,
            format!("reducing over empty axes {axes:?} of {:?}", t.shape()),
        ));
    }
    Ok(())
}

fn all_if_empty(axes: &[usize], rank: usize) -> Vec<usize> {
    if axes.is_empty() {
        (0..rank).collect()
    } else {
        axes.to_vec()
    }
}
