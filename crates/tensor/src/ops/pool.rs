//! Max and average pooling over 1 to 3 spatial dims, with backward; global average pooling.

use rayon::prelude::*;

use crate::{Error, Result, Tensor};

/// Window, stride, padding, dilation and rounding of a pooling op. Per-dimension lists may have
/// one entry, which then applies to every spatial dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolOptions {
    /// Window size.
    pub kernel: Vec<usize>,
    /// Step between windows; empty means "equal to the kernel" (PyTorch's default).
    pub stride: Vec<usize>,
    /// Implicit padding on both sides (at most half the window, as PyTorch requires).
    pub padding: Vec<usize>,
    /// Spacing between window taps (max pooling only).
    pub dilation: Vec<usize>,
    /// Round the output size up, keeping windows that start inside the input or left padding.
    pub ceil_mode: bool,
    /// Average pooling: count padded positions in the divisor (PyTorch's default: true).
    pub count_include_pad: bool,
}

impl PoolOptions {
    /// A `k`-wide window in every dim with stride `k`, no padding.
    pub fn new(kernel: &[usize]) -> Self {
        PoolOptions {
            kernel: kernel.to_vec(),
            stride: vec![],
            padding: vec![0],
            dilation: vec![1],
            ceil_mode: false,
            count_include_pad: true,
        }
    }
    /// Sets the stride.
    pub fn stride(mut self, s: &[usize]) -> Self {
        self.stride = s.to_vec();
        self
    }
    /// Sets the padding.
    pub fn padding(mut self, p: &[usize]) -> Self {
        self.padding = p.to_vec();
        self
    }
    /// Sets the dilation.
    pub fn dilation(mut self, d: &[usize]) -> Self {
        self.dilation = d.to_vec();
        self
    }
    /// Sets ceil mode.
    pub fn ceil_mode(mut self, on: bool) -> Self {
        self.ceil_mode = on;
        self
    }
    /// Sets whether average pooling counts padding.
    pub fn count_include_pad(mut self, on: bool) -> Self {
        self.count_include_pad = on;
        self
    }
}

/// Where each max-pooling output came from: the flat spatial index of the winning input
/// element within its (image, channel) plane. The backward pass routes gradients through them
/// (Zeiler & Fergus call them "switches").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSwitches {
    /// Shape of the pooled input.
    pub input_shape: Vec<usize>,
    /// Shape of the pooled output.
    pub output_shape: Vec<usize>,
    /// One index per output element, row-major ([`NO_SWITCH`] where the window held no input).
    pub indices: Vec<usize>,
}

/// The switch of an output whose window lies wholly in the padding.
pub const NO_SWITCH: usize = usize::MAX;

#[derive(Debug, Clone)]
struct PoolGeom {
    planes: usize,
    in_sp: [usize; 3],
    k: [usize; 3],
    stride: [usize; 3],
    pad: [usize; 3],
    dil: [usize; 3],
    out_sp: [usize; 3],
    out_shape: Vec<usize>,
}

fn plan(op: &'static str, shape: &[usize], o: &PoolOptions, is_max: bool) -> Result<PoolGeom> {
    let rank = shape.len();
    if !(3..=5).contains(&rank) {
        return Err(Error::rank(op, "3, 4 or 5 (N, C, [D,] [H,] W)", shape));
    }
    let s = rank - 2;
    let bad = |reason: String| Error::InvalidWindow {
        op,
        input: shape.to_vec(),
        weight: None,
        reason,
    };
    let expand = |name: &str, v: &[usize]| -> Result<Vec<usize>> {
        match v.len() {
            1 => Ok(vec![v[0]; s]),
            n if n == s => Ok(v.to_vec()),
            n => Err(bad(format!("{name} has {n} entries for {s} spatial dims"))),
        }
    };
    let k = expand("kernel", &o.kernel)?;
    let stride = if o.stride.is_empty() {
        k.clone()
    } else {
        expand("stride", &o.stride)?
    };
    let pad = expand("padding", &o.padding)?;
    let dil = expand("dilation", &o.dilation)?;
    if !is_max && dil.iter().any(|&d| d != 1) {
        return Err(bad("average pooling has no dilation".into()));
    }
    let mut out = Vec::with_capacity(s);
    for d in 0..s {
        if k[d] == 0 || stride[d] == 0 || dil[d] == 0 {
            return Err(bad("kernel, stride and dilation must be at least 1".into()));
        }
        let span = dil[d] * (k[d] - 1) + 1;
        let limit = if is_max { span / 2 } else { k[d] / 2 };
        if pad[d] > limit {
            return Err(bad(format!(
                "padding {} exceeds half the window ({limit}) in dim {d}",
                pad[d]
            )));
        }
        let padded = shape[2 + d] + 2 * pad[d];
        if padded < span {
            return Err(bad(format!(
                "window span {span} exceeds padded input {padded} in dim {d}"
            )));
        }
        let num = padded - span + if o.ceil_mode { stride[d] - 1 } else { 0 };
        let mut n = num / stride[d] + 1;
        // PyTorch: the last window must start inside the input or the left padding.
        if o.ceil_mode && (n - 1) * stride[d] >= shape[2 + d] + pad[d] {
            n -= 1;
        }
        out.push(n);
    }
    let lift = |v: &[usize], fill: usize| {
        let mut a = [fill; 3];
        a[3 - s..].copy_from_slice(v);
        a
    };
    let mut out_shape = shape[..2].to_vec();
    out_shape.extend_from_slice(&out);
    Ok(PoolGeom {
        planes: shape[0] * shape[1],
        in_sp: lift(&shape[2..], 1),
        k: lift(&k, 1),
        stride: lift(&stride, 1),
        pad: lift(&pad, 0),
        dil: lift(&dil, 1),
        out_sp: lift(&out, 1),
        out_shape,
    })
}

/// Every output position's window, computed once per call and shared by all planes: the
/// in-bounds flat input indices of window `j` are `taps[starts[j]..starts[j + 1]]`, and
/// `padded[j]` is the window size clipped to the padded input (PyTorch's avg divisor).
struct Windows {
    taps: Vec<usize>,
    starts: Vec<usize>,
    padded: Vec<usize>,
}

impl Windows {
    fn new(g: &PoolGeom) -> Windows {
        // Per dim: for each output index, the in-bounds input coordinates and the clipped count.
        let lists: [(Vec<Vec<usize>>, Vec<usize>); 3] = std::array::from_fn(|d| {
            let span = ((g.k[d] - 1) * g.dil[d] + 1) as isize;
            (0..g.out_sp[d])
                .map(|o| {
                    let start = (o * g.stride[d]) as isize - g.pad[d] as isize;
                    let end = (start + span).min((g.in_sp[d] + g.pad[d]) as isize);
                    let coords = (0..g.k[d])
                        .map(|t| start + (t * g.dil[d]) as isize)
                        .filter(|&c| c >= 0 && c < g.in_sp[d] as isize)
                        .map(|c| c as usize)
                        .collect();
                    (coords, (end - start).max(0) as usize)
                })
                .unzip()
        });
        let [_, ih, iw] = g.in_sp;
        let [od, oh, ow] = g.out_sp;
        let mut w = Windows {
            taps: vec![],
            starts: vec![0],
            padded: vec![],
        };
        for oz in 0..od {
            for oy in 0..oh {
                for ox in 0..ow {
                    for &z in &lists[0].0[oz] {
                        for &y in &lists[1].0[oy] {
                            let base = (z * ih + y) * iw;
                            w.taps.extend(lists[2].0[ox].iter().map(|&x| base + x));
                        }
                    }
                    w.starts.push(w.taps.len());
                    w.padded
                        .push(lists[0].1[oz] * lists[1].1[oy] * lists[2].1[ox]);
                }
            }
        }
        w
    }

    /// Calls `f(out_index, taps, padded_count)` for every output position of a plane.
    fn for_each(&self, mut f: impl FnMut(usize, &[usize], usize)) {
        for j in 0..self.padded.len() {
            f(
                j,
                &self.taps[self.starts[j]..self.starts[j + 1]],
                self.padded[j],
            );
        }
    }
}

/// Max pooling with 2x2 windows and stride 2 over one `h x w` plane: the same selection rule
/// as the general path (first maximum in row-major window order; a NaN wins). Written as
/// independent selects per output so that the compiler vectorises it; windows holding a NaN
/// take the general rule.
fn max_pool_2x2(plane: &[f32], w: usize, oh: usize, ow: usize, out: &mut [f32], idx: &mut [usize]) {
    for oy in 0..oh {
        let (r0, r1) = (&plane[2 * oy * w..], &plane[(2 * oy + 1) * w..]);
        let (o, ix) = (
            &mut out[oy * ow..(oy + 1) * ow],
            &mut idx[oy * ow..(oy + 1) * ow],
        );
        for ox in 0..ow {
            let (a, b, c, d) = (r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]);
            let m = a.max(b).max(c.max(d));
            // Offset of the first maximum from the window's top-left corner, without branches
            // (which element wins is random, so a branch would mispredict half the time):
            // a -> 0, else b -> 1, else c -> w, else d -> w + 1.
            let (not_a, not_b, not_c) = ((a < m) as usize, (b < m) as usize, (c < m) as usize);
            let k = not_a * (1 - not_b + not_b * (w + not_c));
            o[ox] = m;
            // A window of -inf routes no gradient, as in the general path.
            ix[ox] = if m == f32::NEG_INFINITY {
                NO_SWITCH
            } else {
                2 * oy * w + 2 * ox + k
            };
        }
        // NaN windows (rare): the first NaN wins, as in the general path.
        for ox in 0..ow {
            let vals = [r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]];
            if let Some(j) = vals.iter().position(|v| v.is_nan()) {
                o[ox] = f32::NAN;
                ix[ox] = 2 * oy * w + 2 * ox + [0, 1, w, w + 1][j];
            }
        }
    }
}

/// True for unpadded, undilated 2D windows (one depth slice): [`max_pool_dense_2d`]'s case.
fn dense_2d(g: &PoolGeom) -> bool {
    g.k[0] == 1 && g.stride[0] == 1 && g.pad == [0; 3] && g.dil == [1; 3] && g.in_sp[0] == 1
}

/// Max pooling of one plane with unpadded, undilated 2D windows, with the general path's
/// result and switches: a window's first maximum in row-major order (a NaN wins). Separable,
/// and vectorised in both passes: down the window's rows for whole rows at once (each column's
/// best value and its first row), then across its columns for all windows of the row at once,
/// preferring on a tie (equal values, or two NaNs) the smaller row, then the smaller column —
/// exactly the first position in row-major order.
#[allow(clippy::too_many_arguments)]
fn max_pool_dense_2d(
    plane: &[f32],
    (h, w): (usize, usize),
    (kh, kw): (usize, usize),
    (sh, sw): (usize, usize),
    (oh, ow): (usize, usize),
    out: &mut [f32],
    idx: &mut [usize],
) {
    let mut col_best = vec![0f32; w];
    let mut col_row = vec![0f32; w];
    let (mut win_best, mut win_row, mut win_off) = (vec![0f32; ow], vec![0f32; ow], vec![0f32; ow]);
    let (mut cand, mut cand_row) = (vec![0f32; ow], vec![0f32; ow]);
    for oy in 0..oh {
        let (y0, y1) = (oy * sh, (oy * sh + kh).min(h));
        col_best.copy_from_slice(&plane[y0 * w..(y0 + 1) * w]);
        col_row.fill(y0 as f32);
        for y in y0 + 1..y1 {
            let row = &plane[y * w..(y + 1) * w];
            crate::kernels::simd::column_max_step(row, &mut col_best, &mut col_row, y as f32);
        }
        // Across the window's columns, one offset j at a time for every window of the row
        // (the candidates of offset j are columns j, j + sw, ...; windows clipped by the
        // right edge take fewer).
        for (ox, (b, r)) in win_best.iter_mut().zip(win_row.iter_mut()).enumerate() {
            (*b, *r) = (col_best[ox * sw], col_row[ox * sw]);
        }
        win_off.fill(0.0);
        for j in 1..kw.min(w) {
            let n = ow.min((w - j).div_ceil(sw));
            for ox in 0..n {
                cand[ox] = col_best[ox * sw + j];
                cand_row[ox] = col_row[ox * sw + j];
            }
            crate::kernels::simd::window_max_step(
                &cand[..n],
                &cand_row[..n],
                j as f32,
                &mut win_best[..n],
                &mut win_row[..n],
                &mut win_off[..n],
            );
        }
        for ox in 0..ow {
            out[oy * ow + ox] = win_best[ox];
            idx[oy * ow + ox] = win_row[ox] as usize * w + ox * sw + win_off[ox] as usize;
        }
    }
}

impl Tensor {
    /// Max pooling; returns the output and the switches its backward pass needs. Padding counts
    /// as -inf; a NaN in a window wins (as in PyTorch).
    ///
    /// # Errors
    /// [`Error::RankMismatch`] or [`Error::InvalidWindow`] (zero sizes, padding above half the
    /// window, a window larger than the padded input).
    pub fn max_pool(&self, opts: &PoolOptions) -> Result<(Tensor, PoolSwitches)> {
        let g = plan("max_pool", self.shape(), opts, true)?;
        let windows = Windows::new(&g);
        let x = self.contiguous_data();
        let (iv, ov) = (
            g.in_sp.iter().product::<usize>(),
            g.out_sp.iter().product::<usize>(),
        );
        let mut out = crate::storage::zeroed(g.planes * ov);
        let mut idx = vec![0usize; g.planes * ov];
        // The common case (2x2 windows, stride 2, no padding or dilation, one depth slice) gets
        // a loop without the window tables; the result is the same element for element.
        // (Only when every window is whole: a ceil-mode window clipped by the edge is not.)
        let two_by_two = g.k == [1, 2, 2]
            && g.stride == [1, 2, 2]
            && g.pad == [0; 3]
            && g.dil == [1; 3]
            && g.in_sp[0] == 1
            && 2 * g.out_sp[1] <= g.in_sp[1]
            && 2 * g.out_sp[2] <= g.in_sp[2];
        let dense_2d = dense_2d(&g);
        out.par_chunks_mut(ov.max(1))
            .zip(idx.par_chunks_mut(ov.max(1)))
            .enumerate()
            .for_each(|(p, (o, ix))| {
                let plane = &x[p * iv..(p + 1) * iv];
                if two_by_two {
                    max_pool_2x2(plane, g.in_sp[2], g.out_sp[1], g.out_sp[2], o, ix);
                    return;
                }
                if dense_2d {
                    max_pool_dense_2d(
                        plane,
                        (g.in_sp[1], g.in_sp[2]),
                        (g.k[1], g.k[2]),
                        (g.stride[1], g.stride[2]),
                        (g.out_sp[1], g.out_sp[2]),
                        o,
                        ix,
                    );
                    return;
                }
                windows.for_each(|j, taps, _| {
                    // A window wholly in the padding yields -inf and routes no gradient.
                    let (mut best, mut at) = (f32::NEG_INFINITY, NO_SWITCH);
                    // Branch-free selects (the compiler emits conditional moves); a NaN wins
                    // once and is kept, since nothing compares greater than it.
                    for &t in taps {
                        let v = plane[t];
                        let take = v > best || (v.is_nan() && !best.is_nan());
                        best = if take { v } else { best };
                        at = if take { t } else { at };
                    }
                    o[j] = best;
                    ix[j] = at;
                });
            });
        let sw = PoolSwitches {
            input_shape: self.shape().to_vec(),
            output_shape: g.out_shape.clone(),
            indices: idx,
        };
        Ok((Tensor::from_parts(out, &g.out_shape), sw))
    }

    /// Gradient of [`Tensor::max_pool`]: each output gradient goes to the input its switch names.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `grad_out` is not the pooled shape.
    pub fn max_pool_backward(grad_out: &Tensor, switches: &PoolSwitches) -> Result<Tensor> {
        if grad_out.shape() != switches.output_shape.as_slice() {
            return Err(Error::shape(
                "max_pool_backward",
                &switches.output_shape,
                grad_out.shape(),
                "grad_out must have the pooled shape",
            ));
        }
        let g = grad_out.contiguous_data();
        let planes = switches.input_shape[..2].iter().product::<usize>();
        let iv: usize = switches.input_shape[2..].iter().product();
        let ov: usize = switches.output_shape[2..].iter().product();
        let mut dx = crate::storage::zeroed(planes * iv);
        if iv > 0 && ov > 0 {
            dx.par_chunks_mut(iv).enumerate().for_each(|(p, d)| {
                for j in 0..ov {
                    let at = switches.indices[p * ov + j];
                    if at != NO_SWITCH {
                        d[at] += g[p * ov + j];
                    }
                }
            });
        }
        Ok(Tensor::from_parts(dx, &switches.input_shape))
    }

    /// Max pooling without switches (inference: nothing to route a gradient to), equal to
    /// `max_pool(opts).0` without holding a switch per output.
    ///
    /// # Errors
    /// As [`Tensor::max_pool`].
    pub fn max_pool_values(&self, opts: &PoolOptions) -> Result<Tensor> {
        let g = plan("max_pool", self.shape(), opts, true)?;
        if !dense_2d(&g) {
            return Ok(self.max_pool(opts)?.0);
        }
        let x = self.contiguous_data();
        let ([_, h, w], [_, oh, ow]) = (g.in_sp, g.out_sp);
        let mut out = crate::storage::zeroed(g.planes * oh * ow);
        out.par_chunks_mut((oh * ow).max(1))
            .enumerate()
            .for_each(|(p, o)| {
                // The switches of one plane, computed and dropped.
                let mut switches = vec![0usize; oh * ow];
                max_pool_dense_2d(
                    &x[p * h * w..(p + 1) * h * w],
                    (h, w),
                    (g.k[1], g.k[2]),
                    (g.stride[1], g.stride[2]),
                    (oh, ow),
                    o,
                    &mut switches,
                );
            });
        Ok(Tensor::from_parts(out, &g.out_shape))
    }

    /// Average pooling, with PyTorch's divisor rules (`count_include_pad`, ceil-mode windows
    /// clipped to the padded input).
    ///
    /// # Errors
    /// As [`Tensor::max_pool`]; dilation other than 1 is refused.
    pub fn avg_pool(&self, opts: &PoolOptions) -> Result<Tensor> {
        let g = plan("avg_pool", self.shape(), opts, false)?;
        let windows = Windows::new(&g);
        let x = self.contiguous_data();
        let (iv, ov) = (
            g.in_sp.iter().product::<usize>(),
            g.out_sp.iter().product::<usize>(),
        );
        let mut out = crate::storage::zeroed(g.planes * ov);
        out.par_chunks_mut(ov.max(1))
            .enumerate()
            .for_each(|(p, o)| {
                let plane = &x[p * iv..(p + 1) * iv];
                windows.for_each(|j, taps, padded| {
                    let div = if opts.count_include_pad {
                        padded
                    } else {
                        taps.len()
                    };
                    let s: f32 = taps.iter().map(|&t| plane[t]).sum();
                    o[j] = if div == 0 { 0.0 } else { s / div as f32 };
                });
            });
        Ok(Tensor::from_parts(out, &g.out_shape))
    }

    /// Gradient of [`Tensor::avg_pool`].
    ///
    /// # Errors
    /// As [`Tensor::avg_pool`], plus [`Error::ShapeMismatch`] for a wrong `grad_out`.
    pub fn avg_pool_backward(
        grad_out: &Tensor,
        input_shape: &[usize],
        opts: &PoolOptions,
    ) -> Result<Tensor> {
        let g = plan("avg_pool_backward", input_shape, opts, false)?;
        let windows = Windows::new(&g);
        if grad_out.shape() != g.out_shape.as_slice() {
            return Err(Error::shape(
                "avg_pool_backward",
                &g.out_shape,
                grad_out.shape(),
                "grad_out must have the pooled shape",
            ));
        }
        let gd = grad_out.contiguous_data();
        let (iv, ov) = (
            g.in_sp.iter().product::<usize>(),
            g.out_sp.iter().product::<usize>(),
        );
        let mut dx = crate::storage::zeroed(g.planes * iv);
        if iv > 0 {
            dx.par_chunks_mut(iv).enumerate().for_each(|(p, d)| {
                windows.for_each(|j, taps, padded| {
                    let div = if opts.count_include_pad {
                        padded
                    } else {
                        taps.len()
                    };
                    if div > 0 {
                        let v = gd[p * ov + j] / div as f32;
                        taps.iter().for_each(|&t| d[t] += v);
                    }
                });
            });
        }
        Ok(Tensor::from_parts(dx, input_shape))
    }

    /// Mean over all spatial dims: `(N, C, *spatial) -> (N, C)`.
    ///
    /// # Errors
    /// [`Error::RankMismatch`] for rank < 3.
    pub fn global_avg_pool(&self) -> Result<Tensor> {
        if self.rank() < 3 {
            return Err(Error::rank(
                "global_avg_pool",
                "at least 3 (N, C, spatial...)",
                self.shape(),
            ));
        }
        let axes: Vec<usize> = (2..self.rank()).collect();
        self.mean_axes(&axes, false)
    }
}
