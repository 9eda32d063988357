//! Convolution, transposed convolution and their backward ops: one N-d implementation.
//!
//! Layout is `(N, C, [D,] [H,] W)`. Every rank is normalised to three spatial dimensions by
//! inserting size-1 dimensions in front, so 1D, 2D and 3D run the same kernel
//! (`kernels::conv`): im2col packed straight into GEMM panels, tile by tile.

use crate::kernels::conv as kernel;
use crate::kernels::gemm::PackedA;
use crate::{Error, Result, Tensor};

/// How much padding to add before the convolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Padding {
    /// `(before, after)` per spatial dimension; one entry applies to every dimension.
    Explicit(Vec<(usize, usize)>),
    /// Output as large as the input (stride 1 only): `dilation * (k - 1)` split evenly, the odd
    /// element after, exactly as PyTorch's `padding="same"`.
    Same,
    /// No padding.
    Valid,
}

/// What the padded border holds (PyTorch's `padding_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PaddingMode {
    /// Zeros.
    #[default]
    Zeros,
    /// Mirror without repeating the edge: `c b | a b c d | c b`. Needs padding < size.
    Reflect,
    /// Repeat the edge: `a a | a b c d | d d`.
    Replicate,
    /// Wrap around: `c d | a b c d | a b`. Needs padding <= size.
    Circular,
}

/// Stride, dilation, padding and groups of a convolution. Per-dimension lists may have one
/// entry, which then applies to every spatial dimension.
///
/// ```
/// use tensor::{ConvOptions, Tensor};
/// // The seed's ECG example: 14 samples, 1 channel, 16 filters of size 5 -> 16 x 10.
/// let x = Tensor::zeros(&[1, 1, 14]);
/// let w = Tensor::zeros(&[16, 1, 5]);
/// let y = x.conv(&w, None, &ConvOptions::default())?;
/// assert_eq!(y.shape(), &[1, 16, 10]);
/// # Ok::<(), tensor::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvOptions {
    /// Step between windows, per spatial dimension.
    pub stride: Vec<usize>,
    /// Spacing between kernel taps, per spatial dimension.
    pub dilation: Vec<usize>,
    /// Padding amounts.
    pub padding: Padding,
    /// Padding contents.
    pub padding_mode: PaddingMode,
    /// Channel groups: `C_in` and `C_out` split into this many independent convolutions.
    pub groups: usize,
    /// Transposed convolution only: extra size added after the output (< max(stride, dilation)).
    pub output_padding: Vec<usize>,
}

impl Default for ConvOptions {
    fn default() -> Self {
        ConvOptions {
            stride: vec![1],
            dilation: vec![1],
            padding: Padding::Valid,
            padding_mode: PaddingMode::Zeros,
            groups: 1,
            output_padding: vec![0],
        }
    }
}

impl ConvOptions {
    /// Sets the stride (one value or one per dimension).
    pub fn stride(mut self, s: &[usize]) -> Self {
        self.stride = s.to_vec();
        self
    }
    /// Sets the dilation (one value or one per dimension).
    pub fn dilation(mut self, d: &[usize]) -> Self {
        self.dilation = d.to_vec();
        self
    }
    /// Symmetric padding `p` on every spatial dimension.
    pub fn pad(mut self, p: usize) -> Self {
        self.padding = Padding::Explicit(vec![(p, p)]);
        self
    }
    /// Sets the padding.
    pub fn padding(mut self, p: Padding) -> Self {
        self.padding = p;
        self
    }
    /// Sets the padding mode.
    pub fn padding_mode(mut self, m: PaddingMode) -> Self {
        self.padding_mode = m;
        self
    }
    /// Sets the number of groups.
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
    /// Sets the output padding of a transposed convolution.
    pub fn output_padding(mut self, p: &[usize]) -> Self {
        self.output_padding = p.to_vec();
        self
    }
}

/// A convolution weight for [`Tensor::conv_fixed`]: the tensor and, after its first use, its
/// packed form for the matrix kernels (which depends only on the weight and the groups).
pub struct FixedConvWeight {
    weight: Tensor,
    groups: usize,
    packed: std::sync::OnceLock<Vec<PackedA>>,
}

impl std::fmt::Debug for FixedConvWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FixedConvWeight")
            .field("shape", &self.weight.shape())
            .field("groups", &self.groups)
            .field("packed", &self.packed.get().is_some())
            .finish()
    }
}

impl FixedConvWeight {
    /// `weight` `(C_out, C_in / groups, *kernel)` for convolutions with `groups` groups.
    pub fn new(weight: Tensor, groups: usize) -> FixedConvWeight {
        FixedConvWeight {
            weight,
            groups,
            packed: std::sync::OnceLock::new(),
        }
    }

    /// The weight tensor.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

/// A convolution's sizes, normalised to three spatial dimensions (leading ones are 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConvGeom {
    pub(crate) n: usize,
    pub(crate) c_in: usize,
    pub(crate) c_out: usize,
    pub(crate) groups: usize,
    /// Input spatial size the kernel sees (after any non-zero-mode padding was materialised).
    pub(crate) in_sp: [usize; 3],
    pub(crate) k: [usize; 3],
    pub(crate) stride: [usize; 3],
    pub(crate) dil: [usize; 3],
    /// Implicit zero padding before each dimension (after is implied by `out_sp`).
    pub(crate) pad: [usize; 3],
    pub(crate) out_sp: [usize; 3],
}

impl ConvGeom {
    pub(crate) fn in_vol(&self) -> usize {
        self.in_sp.iter().product()
    }
    pub(crate) fn out_vol(&self) -> usize {
        self.out_sp.iter().product()
    }
    pub(crate) fn k_vol(&self) -> usize {
        self.k.iter().product()
    }
    /// Rows of the column matrix per group: `C_in / groups * prod(k)`.
    pub(crate) fn k_rows(&self) -> usize {
        self.c_in / self.groups * self.k_vol()
    }
    /// Output channels per group.
    pub(crate) fn m(&self) -> usize {
        self.c_out / self.groups
    }
}

/// `opts` field `name` expanded to `s` entries.
fn per_dim(
    op: &'static str,
    name: &str,
    v: &[usize],
    s: usize,
    input: &[usize],
) -> Result<Vec<usize>> {
    match v.len() {
        1 => Ok(vec![v[0]; s]),
        n if n == s => Ok(v.to_vec()),
        n => Err(window_err(
            op,
            input,
            None,
            format!("{name} has {n} entries for {s} spatial dims"),
        )),
    }
}

fn window_err(
    op: &'static str,
    input: &[usize],
    weight: Option<&[usize]>,
    reason: String,
) -> Error {
    Error::InvalidWindow {
        op,
        input: input.to_vec(),
        weight: weight.map(<[usize]>::to_vec),
        reason,
    }
}

/// A validated convolution: its geometry and the explicit padding the mode needs first.
pub(crate) struct ConvPlan {
    pub(crate) geom: ConvGeom,
    /// `(before, after)` per spatial dim, materialised with `mode` before the kernel runs
    /// (only for non-zero modes; zeros are implicit in the kernel).
    pub(crate) explicit_pad: Option<(Vec<(usize, usize)>, PaddingMode)>,
    pub(crate) spatial_rank: usize,
}

/// What a convolution and a transposed convolution check alike: the ranks, the groups, the
/// kernel sizes, the per-dimension stride and dilation (all at least 1).
struct Window {
    /// Spatial rank.
    s: usize,
    g: usize,
    stride: Vec<usize>,
    dil: Vec<usize>,
}

fn check_window(
    op: &'static str,
    x: &[usize],
    w: &[usize],
    opts: &ConvOptions,
    weight_layout: &str,
) -> Result<Window> {
    let rank = x.len();
    if !(3..=5).contains(&rank) {
        return Err(Error::rank(op, "3, 4 or 5 (N, C, [D,] [H,] W)", x));
    }
    if w.len() != rank {
        return Err(Error::shape(
            op,
            x,
            w,
            format!("weight must have the input's rank {weight_layout}"),
        ));
    }
    let s = rank - 2;
    let werr = |reason: String| window_err(op, x, Some(w), reason);
    if opts.groups == 0 {
        return Err(werr("groups must be at least 1".into()));
    }
    if w[2..].contains(&0) {
        return Err(werr("kernel has a zero-sized dimension".into()));
    }
    let stride = per_dim(op, "stride", &opts.stride, s, x)?;
    let dil = per_dim(op, "dilation", &opts.dilation, s, x)?;
    if stride.contains(&0) {
        return Err(werr("stride must be at least 1".into()));
    }
    if dil.contains(&0) {
        return Err(werr("dilation must be at least 1".into()));
    }
    Ok(Window {
        s,
        g: opts.groups,
        stride,
        dil,
    })
}

/// Checks a forward convolution and computes its output size, exactly as PyTorch does.
pub(crate) fn plan_conv(
    op: &'static str,
    x: &[usize],
    w: &[usize],
    opts: &ConvOptions,
) -> Result<ConvPlan> {
    let Window { s, g, stride, dil } = check_window(op, x, w, opts, "(C_out, C_in/groups, k...)")?;
    let (n, c_in, c_out) = (x[0], x[1], w[0]);
    let werr = |reason: String| window_err(op, x, Some(w), reason);
    if c_in == 0 || c_out == 0 {
        return Err(werr("channel counts must be non-zero".into()));
    }
    if c_in % g != 0 || c_out % g != 0 {
        return Err(werr(format!(
            "groups {g} must divide C_in {c_in} and C_out {c_out}"
        )));
    }
    if w[1] != c_in / g {
        return Err(werr(format!(
            "weight dim 1 is {} but C_in / groups = {}",
            w[1],
            c_in / g
        )));
    }
    let k = &w[2..];
    let pads: Vec<(usize, usize)> = match &opts.padding {
        Padding::Valid => vec![(0, 0); s],
        Padding::Same => {
            if stride.iter().any(|&st| st != 1) {
                return Err(werr("padding 'same' needs stride 1".into()));
            }
            (0..s)
                .map(|d| {
                    let total = dil[d] * (k[d] - 1);
                    (total / 2, total - total / 2)
                })
                .collect()
        }
        Padding::Explicit(p) => match p.len() {
            1 => vec![p[0]; s],
            len if len == s => p.clone(),
            len => {
                return Err(werr(format!(
                    "padding has {len} entries for {s} spatial dims"
                )));
            }
        },
    };
    let sp = &x[2..];
    for d in 0..s {
        let (b, a) = pads[d];
        let ok = match opts.padding_mode {
            PaddingMode::Zeros | PaddingMode::Replicate => true,
            PaddingMode::Reflect => b < sp[d] && a < sp[d],
            PaddingMode::Circular => b <= sp[d] && a <= sp[d],
        };
        if !ok {
            return Err(werr(format!(
                "{:?} padding ({b}, {a}) is too large for spatial dim {d} of size {}",
                opts.padding_mode, sp[d]
            )));
        }
        let span = dil[d] * (k[d] - 1) + 1;
        if sp[d] + b + a < span {
            return Err(werr(format!(
                "kernel span {span} (size {}, dilation {}) exceeds padded input {} in spatial dim {d}",
                k[d],
                dil[d],
                sp[d] + b + a
            )));
        }
    }
    let lift = |v: &[usize], fill: usize| -> [usize; 3] {
        let mut out = [fill; 3];
        out[3 - s..].copy_from_slice(v);
        out
    };
    let zeros_mode = opts.padding_mode == PaddingMode::Zeros;
    let padded: Vec<usize> = (0..s).map(|d| sp[d] + pads[d].0 + pads[d].1).collect();
    let out: Vec<usize> = (0..s)
        .map(|d| (padded[d] - dil[d] * (k[d] - 1) - 1) / stride[d] + 1)
        .collect();
    let kernel_in: Vec<usize> = if zeros_mode { sp.to_vec() } else { padded };
    let pad_before: Vec<usize> = if zeros_mode {
        pads.iter().map(|p| p.0).collect()
    } else {
        vec![0; s]
    };
    let geom = ConvGeom {
        n,
        c_in,
        c_out,
        groups: g,
        in_sp: lift(&kernel_in, 1),
        k: lift(k, 1),
        stride: lift(&stride, 1),
        dil: lift(&dil, 1),
        pad: lift(&pad_before, 0),
        out_sp: lift(&out, 1),
    };
    let explicit_pad = (!zeros_mode).then_some((pads, opts.padding_mode));
    Ok(ConvPlan {
        geom,
        explicit_pad,
        spatial_rank: s,
    })
}

fn out_shape(g: &ConvGeom, s: usize) -> Vec<usize> {
    let mut shape = vec![g.n, g.c_out];
    shape.extend_from_slice(&g.out_sp[3 - s..]);
    shape
}

fn check_bias(op: &'static str, bias: Option<&Tensor>, c_out: usize) -> Result<()> {
    match bias {
        Some(b) if b.shape() != [c_out] => Err(Error::shape(
            op,
            b.shape(),
            &[c_out],
            "bias must have shape [C_out]",
        )),
        _ => Ok(()),
    }
}

fn run_forward(
    plan: &ConvPlan,
    x: &Tensor,
    w: &Tensor,
    packed: Option<&[PackedA]>,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    let x = match &plan.explicit_pad {
        Some((pads, mode)) => x.pad(pads, *mode)?,
        None => x.clone(),
    };
    let (xd, wd) = (x.contiguous_data(), w.contiguous_data());
    let bd = bias.map(|b| b.contiguous_data());
    let out = kernel::forward(&plan.geom, &xd, &wd, packed, bd.as_deref());
    Ok(Tensor::from_parts(
        out,
        &out_shape(&plan.geom, plan.spatial_rank),
    ))
}

fn run_backward_input(
    plan: &ConvPlan,
    grad_out: &Tensor,
    w: &Tensor,
    input_shape: &[usize],
) -> Result<Tensor> {
    let (gd, wd) = (grad_out.contiguous_data(), w.contiguous_data());
    let dx = kernel::backward_input(&plan.geom, &gd, &wd);
    let mut kshape = vec![plan.geom.n, plan.geom.c_in];
    kshape.extend_from_slice(&plan.geom.in_sp[3 - plan.spatial_rank..]);
    let dx = Tensor::from_parts(dx, &kshape);
    match &plan.explicit_pad {
        Some((pads, mode)) => dx.pad_backward(input_shape, pads, *mode),
        None => Ok(dx),
    }
}

fn run_backward_weight(
    plan: &ConvPlan,
    x: &Tensor,
    grad_out: &Tensor,
    weight_shape: &[usize],
) -> Result<Tensor> {
    let x = match &plan.explicit_pad {
        Some((pads, mode)) => x.pad(pads, *mode)?,
        None => x.clone(),
    };
    let (xd, gd) = (x.contiguous_data(), grad_out.contiguous_data());
    Ok(Tensor::from_parts(
        kernel::backward_weight(&plan.geom, &xd, &gd),
        weight_shape,
    ))
}

fn check_grad_shape(op: &'static str, plan: &ConvPlan, grad_out: &Tensor) -> Result<()> {
    let expect = out_shape(&plan.geom, plan.spatial_rank);
    if grad_out.shape() != expect.as_slice() {
        return Err(Error::shape(
            op,
            &expect,
            grad_out.shape(),
            "grad_out must have the output shape",
        ));
    }
    Ok(())
}

impl Tensor {
    /// N-d convolution (cross-correlation, as in every DL framework) of `self` with `weight`.
    ///
    /// # Shapes
    /// `self`: `(N, C_in, *spatial)` with 1 to 3 spatial dims; `weight`:
    /// `(C_out, C_in / groups, *kernel)`; `bias`: `(C_out)`. Output spatial size per dim:
    /// `floor((in + before + after - dilation * (k - 1) - 1) / stride) + 1`.
    ///
    /// # Errors
    /// [`Error::RankMismatch`], [`Error::ShapeMismatch`] or [`Error::InvalidWindow`] naming the
    /// problem: groups that do not divide the channels, zero stride, a kernel larger than the
    /// padded input, too much reflect padding, ...
    pub fn conv(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        opts: &ConvOptions,
    ) -> Result<Tensor> {
        let plan = plan_conv("conv", self.shape(), weight.shape(), opts)?;
        check_bias("conv", bias, plan.geom.c_out)?;
        run_forward(&plan, self, weight, None, bias)
    }

    /// [`Tensor::conv`] with a weight that stays fixed across calls (inference): the weight is
    /// packed for the matrix kernels at its first use and reused after, where `conv` packs it
    /// on every call (a third of a batch-1 pass through a deep network's small maps). The
    /// result is the same, bit for bit.
    ///
    /// # Errors
    /// As [`Tensor::conv`], plus [`Error::InvalidWindow`] when `opts` has other groups than the
    /// weight was made for.
    pub fn conv_fixed(
        &self,
        weight: &FixedConvWeight,
        bias: Option<&Tensor>,
        opts: &ConvOptions,
    ) -> Result<Tensor> {
        let plan = plan_conv("conv_fixed", self.shape(), weight.weight.shape(), opts)?;
        check_bias("conv_fixed", bias, plan.geom.c_out)?;
        if opts.groups != weight.groups {
            return Err(window_err(
                "conv_fixed",
                self.shape(),
                Some(weight.weight.shape()),
                format!(
                    "groups {} differ from the {} the weight was made for",
                    opts.groups, weight.groups
                ),
            ));
        }
        let packed = weight.packed.get_or_init(|| {
            kernel::pack_weights(
                crate::kernels::gemm::micro_kernel(),
                &plan.geom,
                &weight.weight.contiguous_data(),
            )
        });
        run_forward(&plan, self, &weight.weight, Some(packed), bias)
    }

    /// Gradient of [`Tensor::conv`] with respect to its input, given the output gradient.
    ///
    /// # Errors
    /// As [`Tensor::conv`], plus [`Error::ShapeMismatch`] when `grad_out` is not the output shape.
    pub fn conv_backward_input(
        grad_out: &Tensor,
        weight: &Tensor,
        input_shape: &[usize],
        opts: &ConvOptions,
    ) -> Result<Tensor> {
        let plan = plan_conv("conv_backward_input", input_shape, weight.shape(), opts)?;
        check_grad_shape("conv_backward_input", &plan, grad_out)?;
        run_backward_input(&plan, grad_out, weight, input_shape)
    }

    /// Gradient of [`Tensor::conv`] with respect to its weight.
    ///
    /// # Errors
    /// As [`Tensor::conv_backward_input`].
    pub fn conv_backward_weight(
        input: &Tensor,
        grad_out: &Tensor,
        weight_shape: &[usize],
        opts: &ConvOptions,
    ) -> Result<Tensor> {
        let plan = plan_conv("conv_backward_weight", input.shape(), weight_shape, opts)?;
        check_grad_shape("conv_backward_weight", &plan, grad_out)?;
        run_backward_weight(&plan, input, grad_out, weight_shape)
    }

    /// Gradient of a convolution's bias: the output gradient summed over batch and space.
    ///
    /// # Errors
    /// [`Error::RankMismatch`] when `grad_out` is not `(N, C, spatial...)`.
    pub fn conv_backward_bias(grad_out: &Tensor) -> Result<Tensor> {
        if grad_out.rank() < 3 {
            return Err(Error::rank(
                "conv_backward_bias",
                "at least 3 (N, C, spatial...)",
                grad_out.shape(),
            ));
        }
        // Sum each (image, channel) plane in place: no permuted copy of the gradient.
        let (n, c) = (grad_out.shape()[0], grad_out.shape()[1]);
        let plane: usize = grad_out.shape()[2..].iter().product();
        let g = grad_out.contiguous_data();
        let mut db = vec![0.0f32; c];
        for img in 0..n {
            for (ch, d) in db.iter_mut().enumerate() {
                let start = (img * c + ch) * plane;
                *d += crate::ops::reduce::sum_slice(&g[start..start + plane]);
            }
        }
        Ok(Tensor::from_parts(db, &[c]))
    }

    /// Transposed convolution ("deconvolution"): the adjoint of [`Tensor::conv`] with the same
    /// options, zero padding only, as PyTorch's `conv_transposeNd`.
    ///
    /// # Shapes
    /// `self`: `(N, C_in, *spatial)`; `weight`: `(C_in, C_out / groups, *kernel)`; `bias`:
    /// `(C_out)`. Output per dim: `(in - 1) * stride - before - after + dilation * (k - 1) +
    /// output_padding + 1`.
    ///
    /// # Errors
    /// As [`Tensor::conv`], plus output padding not below `max(stride, dilation)`.
    pub fn conv_transpose(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        opts: &ConvOptions,
    ) -> Result<Tensor> {
        let (out_shape, plan) =
            plan_transpose("conv_transpose", self.shape(), weight.shape(), opts)?;
        check_bias("conv_transpose", bias, out_shape[1])?;
        let y = run_backward_input(&plan, self, weight, &out_shape)?;
        match bias {
            None => Ok(y),
            Some(b) => {
                let mut bshape = vec![1, out_shape[1]];
                bshape.resize(out_shape.len(), 1);
                y.add(&b.reshape(&bshape)?)
            }
        }
    }

    /// Gradient of [`Tensor::conv_transpose`] with respect to its input (a forward conv).
    ///
    /// # Errors
    /// As [`Tensor::conv_transpose`], plus [`Error::ShapeMismatch`] for a wrong `grad_out`.
    pub fn conv_transpose_backward_input(
        grad_out: &Tensor,
        weight: &Tensor,
        input_shape: &[usize],
        opts: &ConvOptions,
    ) -> Result<Tensor> {
        let op = "conv_transpose_backward_input";
        let (out_shape, plan) = plan_transpose(op, input_shape, weight.shape(), opts)?;
        if grad_out.shape() != out_shape.as_slice() {
            return Err(Error::shape(
                op,
                &out_shape,
                grad_out.shape(),
                "grad_out must have the output shape",
            ));
        }
        run_forward(&plan, grad_out, weight, None, None)
    }

    /// Gradient of [`Tensor::conv_transpose`] with respect to its weight.
    ///
    /// # Errors
    /// As [`Tensor::conv_transpose_backward_input`].
    pub fn conv_transpose_backward_weight(
        input: &Tensor,
        grad_out: &Tensor,
        weight_shape: &[usize],
        opts: &ConvOptions,
    ) -> Result<Tensor> {
        let op = "conv_transpose_backward_weight";
        let (out_shape, plan) = plan_transpose(op, input.shape(), weight_shape, opts)?;
        if grad_out.shape() != out_shape.as_slice() {
            return Err(Error::shape(
                op,
                &out_shape,
                grad_out.shape(),
                "grad_out must have the output shape",
            ));
        }
        // A transposed conv is a conv's input gradient with `grad_out` in the conv input's place.
        run_backward_weight(&plan, grad_out, input, weight_shape)
    }
}

/// Output shape of a transposed conv, and the forward-conv options it is the adjoint of.
fn plan_transpose(
    op: &'static str,
    x: &[usize],
    w: &[usize],
    opts: &ConvOptions,
) -> Result<(Vec<usize>, ConvPlan)> {
    let Window { s, g, stride, dil } = check_window(op, x, w, opts, "(C_in, C_out/groups, k...)")?;
    let werr = |reason: String| window_err(op, x, Some(w), reason);
    if opts.padding_mode != PaddingMode::Zeros {
        return Err(werr(
            "transposed convolution supports zero padding only".into(),
        ));
    }
    if x[2..].contains(&0) {
        return Err(werr("the input has a zero-sized spatial dimension".into()));
    }
    if w[0] != x[1] {
        return Err(werr(format!(
            "weight dim 0 is {} but C_in is {}",
            w[0], x[1]
        )));
    }
    let outp = per_dim(op, "output_padding", &opts.output_padding, s, x)?;
    let pads: Vec<(usize, usize)> = match &opts.padding {
        Padding::Valid => vec![(0, 0); s],
        Padding::Same => {
            return Err(werr(
                "padding 'same' is not defined for transposed convolution".into(),
            ));
        }
        Padding::Explicit(p) if p.len() == 1 => vec![p[0]; s],
        Padding::Explicit(p) if p.len() == s => p.clone(),
        Padding::Explicit(p) => {
            return Err(werr(format!(
                "padding has {} entries for {s} spatial dims",
                p.len()
            )));
        }
    };
    let mut out = vec![x[0], w[1] * g];
    for d in 0..s {
        if outp[d] >= stride[d].max(dil[d]) {
            return Err(werr(format!(
                "output_padding {} must be below max(stride, dilation) = {}",
                outp[d],
                stride[d].max(dil[d])
            )));
        }
        let full = (x[2 + d] - 1)
            .checked_mul(stride[d])
            .zip(dil[d].checked_mul(w[2 + d] - 1))
            .and_then(|(a, b)| a.checked_add(b))
            .and_then(|v| v.checked_add(outp[d] + 1))
            .ok_or_else(|| werr(format!("the output size overflows in spatial dim {d}")))?;
        let cut = pads[d].0 + pads[d].1;
        if full <= cut {
            return Err(werr(format!(
                "padding {:?} removes the whole output in spatial dim {d}",
                pads[d]
            )));
        }
        out.push(full - cut);
    }
    // The forward conv maps `out` back to `x`'s spatial size: output padding becomes extra
    // padding after, that the forward conv's floor division then ignores.
    let fwd = ConvOptions {
        stride,
        dilation: dil,
        padding: Padding::Explicit(pads),
        padding_mode: PaddingMode::Zeros,
        groups: g,
        output_padding: vec![0],
    };
    let mut plan = plan_conv(op, &out, w, &fwd)?;
    // With output_padding >= stride (allowed when dilation > stride) the forward conv would
    // see one more window than `x` has; those windows do not exist in the transposed conv.
    for d in 0..s {
        plan.geom.out_sp[3 - s + d] = x[2 + d];
    }
    Ok((out, plan))
}
