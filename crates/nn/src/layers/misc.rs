use autograd::Var;
use rand::Rng;
use tensor::{PoolOptions, Tensor};

use crate::ctx::{Ctx, Module};
use crate::{Error, Result};

/// Pointwise nonlinearities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// Leaky ReLU with this slope.
    LeakyRelu(f32),
    /// Logistic sigmoid.
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// `ln(1 + e^x)`.
    Softplus,
}

impl Module for Activation {
    fn forward<'g>(&self, _cx: &Ctx<'g>, x: &Var<'g>) -> Result<Var<'g>> {
        Ok(match *self {
            Activation::Relu => x.relu(),
            Activation::LeakyRelu(s) => x.leaky_relu(s),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Tanh => x.tanh(),
            Activation::Softplus => x.softplus(),
        })
    }
}

/// Inverted dropout: in training, zeroes each element with probability `p` and scales the
/// rest by `1 / (1 - p)`; the identity in eval.
#[derive(Debug, Clone, Copy)]
pub struct Dropout(pub f32);

impl Module for Dropout {
    fn forward<'g>(&self, cx: &Ctx<'g>, x: &Var<'g>) -> Result<Var<'g>> {
        let p = self.0;
        if !(0.0..1.0).contains(&p) {
            return Err(Error::arg(
                "Dropout",
                format!("p must be in [0, 1), got {p}"),
            ));
        }
        if !cx.is_train() || p == 0.0 {
            return Ok(x.clone());
        }
        let n = x.value().numel();
        let keep = 1.0 / (1.0 - p);
        let mask: Vec<f32> = cx.with_rng(|r| {
            (0..n)
                .map(|_| if r.random::<f32>() < p { 0.0 } else { keep })
                .collect()
        });
        let mask = cx.graph().constant(Tensor::from_vec(mask, x.shape())?);
        Ok(x.mul(&mask)?)
    }
}

/// Max or average pooling layer.
#[derive(Debug, Clone)]
pub enum Pool {
    /// Max pooling.
    Max(PoolOptions),
    /// Average pooling.
    Avg(PoolOptions),
}

impl Module for Pool {
    fn forward<'g>(&self, _cx: &Ctx<'g>, x: &Var<'g>) -> Result<Var<'g>> {
        Ok(match self {
            Pool::Max(o) => x.max_pool(o)?,
            Pool::Avg(o) => x.avg_pool(o)?,
        })
    }
}

/// Adaptive average pooling to a fixed output size per spatial dim, with PyTorch's windows
/// (`start = floor(i * in / out)`, `end = ceil((i + 1) * in / out)`).
#[derive(Debug, Clone)]
pub struct AdaptiveAvgPool(pub Vec<usize>);

impl Module for AdaptiveAvgPool {
    fn forward<'g>(&self, _cx: &Ctx<'g>, x: &Var<'g>) -> Result<Var<'g>> {
        let shape = x.shape().to_vec();
        let s = shape.len().saturating_sub(2);
        if s == 0 || !(self.0.len() == s || self.0.len() == 1) {
            return Err(Error::arg(
                "AdaptiveAvgPool",
                format!("output size {:?} for input {shape:?}", self.0),
            ));
        }
        let out: Vec<usize> = if self.0.len() == 1 {
            vec![self.0[0]; s]
        } else {
            self.0.clone()
        };
        // Pool one spatial dim at a time: windows along one axis, then the next.
        let mut y = x.clone();
        for d in 0..s {
            let axis = 2 + d;
            let (inn, o) = (shape[axis], out[d]);
            if o == 0 || o > inn {
                return Err(Error::arg(
                    "AdaptiveAvgPool",
                    format!("output size {o} for input size {inn}"),
                ));
            }
            if o == inn {
                continue;
            }
            let pieces: Vec<Var<'g>> = (0..o)
                .map(|i| {
                    let (start, end) = (i * inn / o, ((i + 1) * inn).div_ceil(o));
                    y.narrow(axis, start, end - start)?.mean_axes(&[axis], true)
                })
                .collect::<std::result::Result<_, _>>()?;
            let refs: Vec<&Var<'g>> = pieces.iter().collect();
            y = Var::cat(&refs, axis)?;
        }
        Ok(y)
    }
}

/// `(N, ...) -> (N, prod(...))`.
#[derive(Debug, Clone, Copy)]
pub struct Flatten;

impl Module for Flatten {
    fn forward<'g>(&self, _cx: &Ctx<'g>, x: &Var<'g>) -> Result<Var<'g>> {
        Ok(x.flatten_from(1)?)
    }
}

/// Layers applied in order.
#[derive(Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Module + Send + Sync>>,
}

impl Sequential {
    /// An empty stack.
    pub fn new() -> Self {
        Sequential::default()
    }
    /// Appends a layer.
    pub fn push(mut self, layer: impl Module + Send + Sync + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }
    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl Module for Sequential {
    fn forward<'g>(&self, cx: &Ctx<'g>, x: &Var<'g>) -> Result<Var<'g>> {
        let mut y = x.clone();
        for l in &self.layers {
            y = l.forward(cx, &y)?;
        }
        Ok(y)
    }
}

/// `y = block(x) + shortcut(x)` (identity shortcut when `None`).
pub struct Residual {
    /// The main branch.
    pub block: Box<dyn Module + Send + Sync>,
    /// The skip branch (a projection when shapes change).
    pub shortcut: Option<Box<dyn Module + Send + Sync>>,
}

impl Module for Residual {
    fn forward<'g>(&self, cx: &Ctx<'g>, x: &Var<'g>) -> Result<Var<'g>> {
        let main = self.block.forward(cx, x)?;
        let skip = match &self.shortcut {
            Some(s) => s.forward(cx, x)?,
            None => x.clone(),
        };
        Ok(main.add(&skip)?)
    }
}
