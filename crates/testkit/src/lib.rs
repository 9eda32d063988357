//! Test support for the workspace: naive reference kernels in f64, written as plain nested
//! loops over explicit multi-indices. They share no code with the real kernels, so a bug
//! cannot hide in both. Every reference also returns a *magnitude* (the same sum over absolute
//! values of the terms), the scale against which rounding error is judged: for a sum of `K`
//! products computed in f32 the error is bounded by about `K * eps * magnitude`.

/// A dense f64 array with its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Arr {
    /// Row-major values.
    pub data: Vec<f64>,
    /// Shape.
    pub shape: Vec<usize>,
}

impl Arr {
    /// An array of zeros.
    pub fn zeros(shape: &[usize]) -> Arr {
        Arr {
            data: vec![0.0; shape.iter().product()],
            shape: shape.to_vec(),
        }
    }
    /// From f32 values.
    pub fn from_f32(data: &[f32], shape: &[usize]) -> Arr {
        assert_eq!(data.len(), shape.iter().product::<usize>());
        Arr {
            data: data.iter().map(|&v| v as f64).collect(),
            shape: shape.to_vec(),
        }
    }
    fn strides(&self) -> Vec<usize> {
        let mut s = vec![1; self.shape.len()];
        for d in (0..self.shape.len().saturating_sub(1)).rev() {
            s[d] = s[d + 1] * self.shape[d + 1];
        }
        s
    }
    /// Flat position of a multi-index.
    pub fn pos(&self, idx: &[usize]) -> usize {
        idx.iter().zip(self.strides()).map(|(i, s)| i * s).sum()
    }
    /// Element at a multi-index.
    pub fn at(&self, idx: &[usize]) -> f64 {
        self.data[self.pos(idx)]
    }
}

/// Every multi-index of `shape` in row-major order.
pub fn indices(shape: &[usize]) -> Vec<Vec<usize>> {
    let total: usize = shape.iter().product();
    let mut out = Vec::with_capacity(total);
    for mut flat in 0..total {
        let mut idx = vec![0; shape.len()];
        for d in (0..shape.len()).rev() {
            idx[d] = flat % shape[d];
            flat /= shape[d];
        }
        out.push(idx);
    }
    out
}

/// Padding contents for [`ref_conv`], mirroring PyTorch's `padding_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefPad {
    /// Zeros.
    Zeros,
    /// Mirror without the edge.
    Reflect,
    /// Repeat the edge.
    Replicate,
    /// Wrap around.
    Circular,
}

/// The source index of padded coordinate `pos` (may be negative or past the end), if any.
pub fn ref_pad_index(pos: i64, size: usize, mode: RefPad) -> Option<usize> {
    let n = size as i64;
    if (0..n).contains(&pos) {
        return Some(pos as usize);
    }
    match mode {
        RefPad::Zeros => None,
        RefPad::Replicate => Some(if pos < 0 { 0 } else { size - 1 }),
        RefPad::Circular => Some((((pos % n) + n) % n) as usize),
        RefPad::Reflect => {
            // Bounce off the edges until inside (the edge element is not repeated).
            let mut p = pos;
            while !(0..n).contains(&p) {
                if p < 0 {
                    p = -p;
                }
                if p >= n {
                    p = 2 * (n - 1) - p;
                }
            }
            Some(p as usize)
        }
    }
}

/// A convolution's parameters for the references (per spatial dim).
#[derive(Debug, Clone)]
pub struct RefConv {
    /// Stride per dim.
    pub stride: Vec<usize>,
    /// Dilation per dim.
    pub dilation: Vec<usize>,
    /// `(before, after)` padding per dim.
    pub pad: Vec<(usize, usize)>,
    /// Groups.
    pub groups: usize,
    /// Padding contents.
    pub mode: RefPad,
}

/// Output spatial size of a conv, from the textbook formula.
pub fn ref_conv_out(input: &[usize], kernel: &[usize], p: &RefConv) -> Vec<usize> {
    (0..input.len())
        .map(|d| {
            let padded = input[d] + p.pad[d].0 + p.pad[d].1;
            let span = p.dilation[d] * (kernel[d] - 1) + 1;
            (padded - span) / p.stride[d] + 1
        })
        .collect()
}

/// Forward convolution: returns `(output, magnitude)`.
pub fn ref_conv(x: &Arr, w: &Arr, bias: Option<&[f64]>, p: &RefConv) -> (Arr, Arr) {
    let s = x.shape.len() - 2;
    let (n, c_in, c_out) = (x.shape[0], x.shape[1], w.shape[0]);
    let cg = c_in / p.groups;
    let mg = c_out / p.groups;
    let ksz = &w.shape[2..];
    let osz = ref_conv_out(&x.shape[2..], ksz, p);
    let mut oshape = vec![n, c_out];
    oshape.extend(&osz);
    let mut out = Arr::zeros(&oshape);
    let mut mag = Arr::zeros(&oshape);
    for oi in indices(&oshape) {
        let (b, co) = (oi[0], oi[1]);
        let grp = co / mg;
        let mut acc = bias.map_or(0.0, |bb| bb[co]);
        let mut m = acc.abs();
        for ci in 0..cg {
            for ki in indices(ksz) {
                let mut src = vec![b, grp * cg + ci];
                let mut inside = true;
                for d in 0..s {
                    let pos = (oi[2 + d] * p.stride[d] + ki[d] * p.dilation[d]) as i64
                        - p.pad[d].0 as i64;
                    match ref_pad_index(pos, x.shape[2 + d], p.mode) {
                        Some(i) => src.push(i),
                        None => inside = false,
                    }
                }
                if !inside {
                    continue;
                }
                let mut widx = vec![co, ci];
                widx.extend(&ki);
                let t = x.at(&src) * w.at(&widx);
                acc += t;
                m += t.abs();
            }
        }
        let at = out.pos(&oi);
        out.data[at] = acc;
        mag.data[at] = m;
    }
    (out, mag)
}

/// Gradients of `sum(grad_out * conv(x, w))` with respect to x and w, by scattering every
/// product's contribution: returns `(dx, dx_magnitude, dw, dw_magnitude)`.
pub fn ref_conv_grads(x: &Arr, w: &Arr, grad_out: &Arr, p: &RefConv) -> (Arr, Arr, Arr, Arr) {
    let s = x.shape.len() - 2;
    let c_in = x.shape[1];
    let cg = c_in / p.groups;
    let mg = w.shape[0] / p.groups;
    let ksz = w.shape[2..].to_vec();
    let (mut dx, mut dxm) = (Arr::zeros(&x.shape), Arr::zeros(&x.shape));
    let (mut dw, mut dwm) = (Arr::zeros(&w.shape), Arr::zeros(&w.shape));
    for oi in indices(&grad_out.shape) {
        let (b, co) = (oi[0], oi[1]);
        let g = grad_out.at(&oi);
        let grp = co / mg;
        for ci in 0..cg {
            for ki in indices(&ksz) {
                let mut src = vec![b, grp * cg + ci];
                let mut inside = true;
                for d in 0..s {
                    let pos = (oi[2 + d] * p.stride[d] + ki[d] * p.dilation[d]) as i64
                        - p.pad[d].0 as i64;
                    match ref_pad_index(pos, x.shape[2 + d], p.mode) {
                        Some(i) => src.push(i),
                        None => inside = false,
                    }
                }
                if !inside {
                    continue;
                }
                let mut widx = vec![co, ci];
                widx.extend(&ki);
                let (xp, wp) = (x.pos(&src), w.pos(&widx));
                dx.data[xp] += g * w.data[wp];
                dxm.data[xp] += (g * w.data[wp]).abs();
                dw.data[wp] += g * x.data[xp];
                dwm.data[wp] += (g * x.data[xp]).abs();
            }
        }
    }
    (dx, dxm, dw, dwm)
}

/// Transposed convolution by its definition (every input element scatters a scaled copy of
/// its filter): `x` is `(N, C_in, ...)`, `w` is `(C_in, C_out/groups, k...)`, zero padding.
/// Returns `(output, magnitude)`.
pub fn ref_conv_transpose(x: &Arr, w: &Arr, p: &RefConv, output_padding: &[usize]) -> (Arr, Arr) {
    let s = x.shape.len() - 2;
    let (n, c_in) = (x.shape[0], x.shape[1]);
    let cg = c_in / p.groups;
    let og = w.shape[1];
    let ksz = w.shape[2..].to_vec();
    let mut oshape = vec![n, og * p.groups];
    for d in 0..s {
        oshape.push(
            (x.shape[2 + d] - 1) * p.stride[d]
                + p.dilation[d] * (ksz[d] - 1)
                + output_padding[d]
                + 1
                - p.pad[d].0
                - p.pad[d].1,
        );
    }
    let (mut out, mut mag) = (Arr::zeros(&oshape), Arr::zeros(&oshape));
    for xi in indices(&x.shape) {
        let (b, ci) = (xi[0], xi[1]);
        let grp = ci / cg;
        let v = x.at(&xi);
        for oc in 0..og {
            for ki in indices(&ksz) {
                let mut dst = vec![b, grp * og + oc];
                let mut inside = true;
                for d in 0..s {
                    let pos = (xi[2 + d] * p.stride[d] + ki[d] * p.dilation[d]) as i64
                        - p.pad[d].0 as i64;
                    if pos < 0 || pos >= oshape[2 + d] as i64 {
                        inside = false;
                    }
                    dst.push(pos.max(0) as usize);
                }
                if !inside {
                    continue;
                }
                let mut widx = vec![ci, oc];
                widx.extend(&ki);
                let t = v * w.at(&widx);
                let at = out.pos(&dst);
                out.data[at] += t;
                mag.data[at] += t.abs();
            }
        }
    }
    (out, mag)
}

/// `a (m x k) * b (k x n)` with magnitudes.
pub fn ref_matmul(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut c = vec![0.0; m * n];
    let mut mag = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            for kk in 0..k {
                let t = a[i * k + kk] * b[kk * n + j];
                c[i * n + j] += t;
                mag[i * n + j] += t.abs();
            }
        }
    }
    (c, mag)
}

/// Pooling parameters for the references.
#[derive(Debug, Clone)]
pub struct RefPool {
    /// Window.
    pub kernel: Vec<usize>,
    /// Stride.
    pub stride: Vec<usize>,
    /// Symmetric padding.
    pub pad: Vec<usize>,
    /// Dilation (max only).
    pub dilation: Vec<usize>,
    /// PyTorch's ceil_mode.
    pub ceil_mode: bool,
    /// PyTorch's count_include_pad.
    pub count_include_pad: bool,
}

/// Output size per PyTorch's `pooling_output_shape`.
pub fn ref_pool_out(input: &[usize], p: &RefPool) -> Vec<usize> {
    (0..input.len())
        .map(|d| {
            let (i, k, s, pd, dl) = (
                input[d] as i64,
                p.kernel[d] as i64,
                p.stride[d] as i64,
                p.pad[d] as i64,
                p.dilation[d] as i64,
            );
            let num = i + 2 * pd - dl * (k - 1) - 1 + if p.ceil_mode { s - 1 } else { 0 };
            let mut o = num.div_euclid(s) + 1;
            if p.ceil_mode && (o - 1) * s >= i + pd {
                o -= 1;
            }
            o as usize
        })
        .collect()
}

/// Max pooling forward and the gradient it routes back for `grad_out` (first max wins; a NaN
/// beats every number, as in PyTorch).
pub fn ref_max_pool(x: &Arr, p: &RefPool, grad_out: Option<&Arr>) -> (Arr, Arr) {
    let s = x.shape.len() - 2;
    let osz = ref_pool_out(&x.shape[2..], p);
    let mut oshape = x.shape[..2].to_vec();
    oshape.extend(&osz);
    let mut out = Arr::zeros(&oshape);
    let mut dx = Arr::zeros(&x.shape);
    for oi in indices(&oshape) {
        let mut best = f64::NEG_INFINITY;
        let mut arg: Option<usize> = None;
        for ki in indices(&p.kernel) {
            let mut src = vec![oi[0], oi[1]];
            let mut inside = true;
            for d in 0..s {
                let pos =
                    (oi[2 + d] * p.stride[d] + ki[d] * p.dilation[d]) as i64 - p.pad[d] as i64;
                if pos < 0 || pos >= x.shape[2 + d] as i64 {
                    inside = false;
                }
                src.push(pos.max(0) as usize);
            }
            if !inside {
                continue;
            }
            let v = x.at(&src);
            if v > best || (v.is_nan() && !best.is_nan()) {
                best = v;
                arg = Some(x.pos(&src));
            }
        }
        let at = out.pos(&oi);
        out.data[at] = best;
        if let (Some(a), Some(g)) = (arg, grad_out) {
            dx.data[a] += g.data[at];
        }
    }
    (out, dx)
}

/// Average pooling forward and its gradient for `grad_out`, with PyTorch's divisor rules.
pub fn ref_avg_pool(x: &Arr, p: &RefPool, grad_out: Option<&Arr>) -> (Arr, Arr) {
    let s = x.shape.len() - 2;
    let osz = ref_pool_out(&x.shape[2..], p);
    let mut oshape = x.shape[..2].to_vec();
    oshape.extend(&osz);
    let mut out = Arr::zeros(&oshape);
    let mut dx = Arr::zeros(&x.shape);
    for oi in indices(&oshape) {
        // Divisor: the window clipped to input + padding on the right, as PyTorch computes it.
        let mut padded = 1i64;
        for d in 0..s {
            let start = (oi[2 + d] * p.stride[d]) as i64 - p.pad[d] as i64;
            let end = (start + p.kernel[d] as i64).min((x.shape[2 + d] + p.pad[d]) as i64);
            padded *= end - start;
        }
        let mut srcs = vec![];
        for ki in indices(&p.kernel) {
            let mut src = vec![oi[0], oi[1]];
            let mut inside = true;
            for d in 0..s {
                let pos = (oi[2 + d] * p.stride[d] + ki[d]) as i64 - p.pad[d] as i64;
                if pos < 0 || pos >= x.shape[2 + d] as i64 {
                    inside = false;
                }
                src.push(pos.max(0) as usize);
            }
            if inside {
                srcs.push(x.pos(&src));
            }
        }
        let div = if p.count_include_pad {
            padded as f64
        } else {
            srcs.len() as f64
        };
        let at = out.pos(&oi);
        out.data[at] = srcs.iter().map(|&i| x.data[i]).sum::<f64>() / div;
        if let Some(g) = grad_out {
            for &i in &srcs {
                dx.data[i] += g.data[at] / div;
            }
        }
    }
    (out, dx)
}

/// Largest error of `got` against `want`, relative to the per-element magnitude (sum of
/// absolute terms) with a floor of `floor` times the largest magnitude; returns
/// `(max_error, worst_index)`.
pub fn max_rel_err(got: &[f32], want: &[f64], magnitude: &[f64]) -> (f64, usize) {
    assert_eq!(got.len(), want.len(), "length mismatch");
    let mut worst = (0.0f64, 0usize);
    for i in 0..got.len() {
        // Equal values (infinities included) are exact.
        let err = if got[i] as f64 == want[i] {
            0.0
        } else {
            (got[i] as f64 - want[i]).abs()
        };
        let scale = magnitude[i].max(want[i].abs()).max(1e-30);
        let rel = if err == 0.0 { 0.0 } else { err / scale };
        if rel > worst.0 || rel.is_nan() {
            worst = (rel, i);
        }
    }
    worst
}

/// Panics with the worst element when the relative error exceeds `tol`.
#[track_caller]
pub fn assert_rel_close(what: &str, got: &[f32], want: &[f64], magnitude: &[f64], tol: f64) {
    let (err, i) = max_rel_err(got, want, magnitude);
    assert!(
        err <= tol,
        "{what}: max relative error {err:.3e} > {tol:.0e} at element {i}: got {}, want {} (magnitude {})",
        got[i],
        want[i],
        magnitude[i]
    );
}
