//! Explicit padding of the trailing dimensions (zeros, reflect, replicate, circular) and its
//! adjoint. Convolution uses it for the non-zero padding modes.

use crate::ops::conv::PaddingMode;
use crate::{Error, Result, Tensor};

/// For each padded index of one dim, the source index it copies (None: a zero).
fn index_map(size: usize, before: usize, after: usize, mode: PaddingMode) -> Vec<Option<usize>> {
    (0..size + before + after)
        .map(|i| {
            let pos = i as isize - before as isize;
            let n = size as isize;
            let src = match mode {
                PaddingMode::Zeros => (0..n).contains(&pos).then_some(pos),
                PaddingMode::Replicate => Some(pos.clamp(0, n - 1)),
                PaddingMode::Circular => Some(pos.rem_euclid(n)),
                PaddingMode::Reflect => {
                    if n == 1 {
                        Some(0)
                    } else {
                        let period = 2 * (n - 1);
                        let r = pos.rem_euclid(period);
                        Some(if r < n { r } else { period - r })
                    }
                }
            };
            src.map(|s| s as usize)
        })
        .collect()
}

struct PadPlan {
    outer: usize,
    in_inner: Vec<usize>,
    out_inner: Vec<usize>,
    maps: Vec<Vec<Option<usize>>>,
    out_shape: Vec<usize>,
}

fn plan(
    op: &'static str,
    shape: &[usize],
    pads: &[(usize, usize)],
    mode: PaddingMode,
) -> Result<PadPlan> {
    let s = pads.len();
    if s > shape.len() {
        return Err(Error::shape(
            op,
            shape,
            &[s],
            "more padded dims than the tensor has",
        ));
    }
    let lead = shape.len() - s;
    for (d, &(b, a)) in pads.iter().enumerate() {
        let n = shape[lead + d];
        let ok = match mode {
            PaddingMode::Zeros => true,
            PaddingMode::Replicate => n > 0 || (b == 0 && a == 0),
            PaddingMode::Reflect => b < n && a < n,
            PaddingMode::Circular => b <= n && a <= n,
        };
        if !ok {
            return Err(Error::arg(
                op,
                format!(
                    "{mode:?} padding ({b}, {a}) too large for dim {} of size {n}",
                    lead + d
                ),
            ));
        }
    }
    let in_inner = shape[lead..].to_vec();
    let out_inner: Vec<usize> = (0..s)
        .map(|d| in_inner[d] + pads[d].0 + pads[d].1)
        .collect();
    let maps = (0..s)
        .map(|d| index_map(in_inner[d], pads[d].0, pads[d].1, mode))
        .collect();
    let mut out_shape = shape[..lead].to_vec();
    out_shape.extend_from_slice(&out_inner);
    Ok(PadPlan {
        outer: shape[..lead].iter().product(),
        in_inner,
        out_inner,
        maps,
        out_shape,
    })
}

/// Visits every (padded offset, source offset) pair of one outer slice.
fn for_each_pair(p: &PadPlan, mut f: impl FnMut(usize, Option<usize>)) {
    let s = p.out_inner.len();
    let in_strides = crate::layout::contiguous_strides(&p.in_inner);
    let total: usize = p.out_inner.iter().product();
    let mut idx = vec![0usize; s];
    for o in 0..total {
        let mut src = Some(0usize);
        for d in 0..s {
            src = match (src, p.maps[d][idx[d]]) {
                (Some(acc), Some(i)) => Some(acc + i * in_strides[d]),
                _ => None,
            };
        }
        f(o, src);
        for d in (0..s).rev() {
            idx[d] += 1;
            if idx[d] < p.out_inner[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

impl Tensor {
    /// Pads the last `pads.len()` dimensions by `(before, after)` each, filled per `mode`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for more pads than dims; [`Error::InvalidArgument`] when reflect
    /// padding is not below the size (or circular above it).
    pub fn pad(&self, pads: &[(usize, usize)], mode: PaddingMode) -> Result<Tensor> {
        let p = plan("pad", self.shape(), pads, mode)?;
        let src = self.contiguous_data();
        let (in_sz, out_sz) = (
            p.in_inner.iter().product::<usize>(),
            p.out_inner.iter().product::<usize>(),
        );
        let mut out = crate::storage::zeroed(p.outer * out_sz);
        for o in 0..p.outer {
            let (si, so) = (
                &src[o * in_sz..(o + 1) * in_sz],
                &mut out[o * out_sz..(o + 1) * out_sz],
            );
            for_each_pair(&p, |dst, s| {
                if let Some(s) = s {
                    so[dst] = si[s];
                }
            });
        }
        Ok(Tensor::from_parts(out, &p.out_shape))
    }

    /// The adjoint of [`Tensor::pad`]: each padded element's gradient is added to the element it
    /// copied. `self` is the gradient of the padded tensor.
    ///
    /// # Errors
    /// As [`Tensor::pad`], plus [`Error::ShapeMismatch`] when `self` is not the padded shape.
    pub fn pad_backward(
        &self,
        input_shape: &[usize],
        pads: &[(usize, usize)],
        mode: PaddingMode,
    ) -> Result<Tensor> {
        let p = plan("pad_backward", input_shape, pads, mode)?;
        if self.shape() != p.out_shape.as_slice() {
            return Err(Error::shape(
                "pad_backward",
                &p.out_shape,
                self.shape(),
                "gradient must have the padded shape",
            ));
        }
        let g = self.contiguous_data();
        let (in_sz, out_sz) = (
            p.in_inner.iter().product::<usize>(),
            p.out_inner.iter().product::<usize>(),
        );
        let mut out = crate::storage::zeroed(p.outer * in_sz);
        for o in 0..p.outer {
            let (gi, so) = (
                &g[o * out_sz..(o + 1) * out_sz],
                &mut out[o * in_sz..(o + 1) * in_sz],
            );
            for_each_pair(&p, |dst, s| {
                if let Some(s) = s {
                    so[s] += gi[dst];
                }
            });
        }
        Ok(Tensor::from_parts(out, input_shape))
    }
}
