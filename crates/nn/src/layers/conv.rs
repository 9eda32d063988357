use autograd::Var;
use tensor::{ConvOptions, Padding, PaddingMode};

use crate::Result;
use crate::ctx::{Ctx, Module};
use crate::param::{Init, ParamBuilder, ParamId};

/// Sizes and options of a convolution layer (1D, 2D or 3D by the kernel's length).
#[derive(Debug, Clone, PartialEq)]
pub struct ConvConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel size per spatial dim (its length sets the rank).
    pub kernel: Vec<usize>,
    /// Stride (one value or one per dim).
    pub stride: Vec<usize>,
    /// Symmetric padding (one value or one per dim).
    pub padding: Vec<usize>,
    /// Dilation (one value or one per dim).
    pub dilation: Vec<usize>,
    /// Channel groups.
    pub groups: usize,
    /// Padding contents.
    pub padding_mode: PaddingMode,
    /// Whether there is a bias.
    pub bias: bool,
    /// Transposed conv only: output padding.
    pub output_padding: Vec<usize>,
}

impl ConvConfig {
    /// `in -> out` channels, kernel `k` in `rank` dims, stride 1, no padding, with bias.
    pub fn new(rank: usize, in_channels: usize, out_channels: usize, k: usize) -> Self {
        ConvConfig {
            in_channels,
            out_channels,
            kernel: vec![k; rank],
            stride: vec![1],
            padding: vec![0],
            dilation: vec![1],
            groups: 1,
            padding_mode: PaddingMode::Zeros,
            bias: true,
            output_padding: vec![0],
        }
    }
    /// Sets the stride.
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = vec![s];
        self
    }
    /// Sets symmetric padding.
    pub fn padding(mut self, p: usize) -> Self {
        self.padding = vec![p];
        self
    }
    /// Sets the dilation.
    pub fn dilation(mut self, d: usize) -> Self {
        self.dilation = vec![d];
        self
    }
    /// Sets the groups.
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
    /// Drops the bias.
    pub fn no_bias(mut self) -> Self {
        self.bias = false;
        self
    }
    /// Sets the padding mode.
    pub fn padding_mode(mut self, m: PaddingMode) -> Self {
        self.padding_mode = m;
        self
    }

    fn options(&self) -> ConvOptions {
        let pad = match self.padding.len() {
            1 => vec![(self.padding[0], self.padding[0])],
            _ => self.padding.iter().map(|&p| (p, p)).collect(),
        };
        ConvOptions {
            stride: self.stride.clone(),
            dilation: self.dilation.clone(),
            padding: Padding::Explicit(pad),
            padding_mode: self.padding_mode,
            groups: self.groups,
            output_padding: self.output_padding.clone(),
        }
    }
}

/// Convolution layer: weight `(out, in / groups, k...)`, PyTorch's default initialisation.
#[derive(Debug, Clone)]
pub struct Conv {
    /// Weight.
    pub weight: ParamId,
    /// Bias.
    pub bias: Option<ParamId>,
    opts: ConvOptions,
}

impl Conv {
    /// A new layer (its rank is the kernel's length: `Conv1d`, `Conv2d`, `Conv3d`), with
    /// PyTorch's default initialisation of weight and bias.
    ///
    /// # Errors
    /// Duplicate parameter names.
    pub fn new(b: &mut ParamBuilder<'_>, cfg: &ConvConfig) -> Result<Conv> {
        Conv::build(b, cfg, Init::PytorchDefault, None)
    }

    /// A new layer with another weight initialisation (e.g. [`Init::KaimingNormal`]) and a
    /// zero bias.
    ///
    /// # Errors
    /// Duplicate parameter names.
    pub fn with_init(b: &mut ParamBuilder<'_>, cfg: &ConvConfig, init: Init) -> Result<Conv> {
        Conv::build(b, cfg, init, Some(Init::Const(0.0)))
    }

    /// `bias_init: None` draws the bias as PyTorch does (uniform in +-1/sqrt(fan_in)).
    fn build(
        b: &mut ParamBuilder<'_>,
        cfg: &ConvConfig,
        init: Init,
        bias_init: Option<Init>,
    ) -> Result<Conv> {
        let mut shape = vec![cfg.out_channels, cfg.in_channels / cfg.groups.max(1)];
        shape.extend(&cfg.kernel);
        let fan_in = shape[1..].iter().product();
        let weight = b.weight("weight", &shape, init, None)?;
        let bias = if cfg.bias {
            let bi = bias_init.unwrap_or(Init::PytorchDefault);
            Some(b.weight("bias", &[cfg.out_channels], bi, Some(fan_in))?)
        } else {
            None
        };
        Ok(Conv {
            weight,
            bias,
            opts: cfg.options(),
        })
    }
}

impl Module for Conv {
    fn forward<'g>(&self, cx: &Ctx<'g>, x: &Var<'g>) -> Result<Var<'g>> {
        Ok(x.conv(
            cx.param(self.weight),
            self.bias.map(|b| cx.param(b)),
            &self.opts,
        )?)
    }
}

/// Transposed convolution layer: weight `(in, out / groups, k...)`.
#[derive(Debug, Clone)]
pub struct ConvTranspose {
    /// Weight.
    pub weight: ParamId,
    /// Bias.
    pub bias: Option<ParamId>,
    opts: ConvOptions,
}

impl ConvTranspose {
    /// A new layer.
    ///
    /// # Errors
    /// Duplicate parameter names.
    pub fn new(b: &mut ParamBuilder<'_>, cfg: &ConvConfig) -> Result<ConvTranspose> {
        let mut shape = vec![cfg.in_channels, cfg.out_channels / cfg.groups.max(1)];
        shape.extend(&cfg.kernel);
        // PyTorch computes the fans of a transposed conv's weight from dim 1.
        let fan_in = shape[1..].iter().product();
        let weight = b.weight("weight", &shape, Init::PytorchDefault, Some(fan_in))?;
        let bias = if cfg.bias {
            Some(b.weight(
                "bias",
                &[cfg.out_channels],
                Init::PytorchDefault,
                Some(fan_in),
            )?)
        } else {
            None
        };
        Ok(ConvTranspose {
            weight,
            bias,
            opts: cfg.options(),
        })
    }
}

impl Module for ConvTranspose {
    fn forward<'g>(&self, cx: &Ctx<'g>, x: &Var<'g>) -> Result<Var<'g>> {
        Ok(x.conv_transpose(
            cx.param(self.weight),
            self.bias.map(|b| cx.param(b)),
            &self.opts,
        )?)
    }
}
