use autograd::Var;

use crate::Result;
use crate::ctx::{Ctx, Module};
use crate::param::{Init, ParamBuilder, ParamId};

/// `y = x W^T + b` over the last dimension (`W` is `(out, in)`, as in PyTorch).
#[derive(Debug, Clone)]
pub struct Linear {
    /// Weight `(out, in)`.
    pub weight: ParamId,
    /// Bias `(out)`.
    pub bias: Option<ParamId>,
}

impl Linear {
    /// A layer with PyTorch's default initialisation.
    ///
    /// # Errors
    /// Duplicate parameter names.
    pub fn new(
        b: &mut ParamBuilder<'_>,
        in_features: usize,
        out_features: usize,
        bias: bool,
    ) -> Result<Linear> {
        let weight = b.weight(
            "weight",
            &[out_features, in_features],
            Init::PytorchDefault,
            None,
        )?;
        let bias = if bias {
            Some(b.weight(
                "bias",
                &[out_features],
                Init::PytorchDefault,
                Some(in_features),
            )?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }
}

impl Module for Linear {
    fn forward<'g>(&self, cx: &Ctx<'g>, x: &Var<'g>) -> Result<Var<'g>> {
        let y = x.matmul(&cx.param(self.weight).transpose(0, 1)?)?;
        Ok(match self.bias {
            Some(b) => y.add(cx.param(b))?,
            None => y,
        })
    }
}
