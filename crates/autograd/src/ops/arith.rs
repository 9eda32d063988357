//! Elementwise arithmetic and activations.
//!
//! Each derivative is one fused pass over `(g, saved)` (`zip_map`), not a mask then a product.
//!
//! Subgradients at kinks (documented choices): relu, leaky relu and abs pass 0 / slope / 0 at
//! exactly 0; maximum and minimum give a tie to the first input; clamp passes the gradient on
//! the closed interval `[lo, hi]`.

use tensor::Tensor;

use super::unbroadcast;
use crate::Result;
use crate::graph::{NodeId, Var};
use crate::op::{BinaryKind, Op, UnaryKind};

impl<'g> Var<'g> {
    fn binary(&self, other: &Var<'g>, kind: BinaryKind, name: &'static str) -> Result<Var<'g>> {
        self.same_graph(name, other)?;
        let value = match kind {
            BinaryKind::Add => self.value.add(&other.value)?,
            BinaryKind::Sub => self.value.sub(&other.value)?,
            BinaryKind::Mul => self.value.mul(&other.value)?,
            BinaryKind::Div => self.value.div(&other.value)?,
            BinaryKind::Maximum => self.value.maximum(&other.value)?,
            BinaryKind::Minimum => self.value.minimum(&other.value)?,
        };
        let (a, b) = (self.node, other.node);
        // What each side's gradient needs: Mul needs the other value; Div needs b for a and
        // both for b; Maximum / Minimum need both to rebuild the mask.
        let (need_a, need_b) = match kind {
            BinaryKind::Add | BinaryKind::Sub => (false, false),
            BinaryKind::Mul => (b.is_some(), a.is_some()),
            BinaryKind::Div => (b.is_some(), true),
            BinaryKind::Maximum | BinaryKind::Minimum => (true, true),
        };
        Ok(self.wrap(value, &[a, b], || Op::Binary {
            kind,
            a,
            b,
            a_shape: self.value.shape().to_vec(),
            b_shape: other.value.shape().to_vec(),
            a_val: need_a.then(|| self.value.clone()),
            b_val: need_b.then(|| other.value.clone()),
        }))
    }

    /// `self + other`, broadcasting.
    ///
    /// # Errors
    /// Shapes that do not broadcast; vars of different graphs.
    pub fn add(&self, other: &Var<'g>) -> Result<Var<'g>> {
        self.binary(other, BinaryKind::Add, "add")
    }
    /// `self - other`, broadcasting.
    ///
    /// # Errors
    /// As [`Var::add`].
    pub fn sub(&self, other: &Var<'g>) -> Result<Var<'g>> {
        self.binary(other, BinaryKind::Sub, "sub")
    }
    /// `self * other`, broadcasting.
    ///
    /// # Errors
    /// As [`Var::add`].
    pub fn mul(&self, other: &Var<'g>) -> Result<Var<'g>> {
        self.binary(other, BinaryKind::Mul, "mul")
    }
    /// `self / other`, broadcasting.
    ///
    /// # Errors
    /// As [`Var::add`].
    pub fn div(&self, other: &Var<'g>) -> Result<Var<'g>> {
        self.binary(other, BinaryKind::Div, "div")
    }
    /// Elementwise maximum, broadcasting (a tie sends the gradient to `self`).
    ///
    /// # Errors
    /// As [`Var::add`].
    pub fn maximum(&self, other: &Var<'g>) -> Result<Var<'g>> {
        self.binary(other, BinaryKind::Maximum, "maximum")
    }
    /// Elementwise minimum, broadcasting (a tie sends the gradient to `self`).
    ///
    /// # Errors
    /// As [`Var::add`].
    pub fn minimum(&self, other: &Var<'g>) -> Result<Var<'g>> {
        self.binary(other, BinaryKind::Minimum, "minimum")
    }

    fn unary(&self, kind: UnaryKind) -> Var<'g> {
        let x = &self.value;
        let value = match kind {
            UnaryKind::Neg => x.neg(),
            UnaryKind::Abs => x.abs(),
            UnaryKind::Sqr => x.sqr(),
            UnaryKind::Sqrt => x.sqrt(),
            UnaryKind::Exp => x.exp(),
            UnaryKind::Log => x.log(),
            UnaryKind::Relu => x.relu(),
            UnaryKind::LeakyRelu(s) => x.leaky_relu(s),
            UnaryKind::Sigmoid => x.sigmoid(),
            UnaryKind::Tanh => x.tanh(),
            UnaryKind::Softplus => x.softplus(),
            UnaryKind::Clamp(lo, hi) => x.clamp(lo, hi),
            UnaryKind::Powf(p) => x.powf(p),
            UnaryKind::Scale(s) => x.scale(s),
            UnaryKind::AddScalar(s) => x.add_scalar(s),
        };
        let saved = match kind {
            UnaryKind::Neg | UnaryKind::Scale(_) | UnaryKind::AddScalar(_) => None,
            UnaryKind::Sqrt | UnaryKind::Exp | UnaryKind::Sigmoid | UnaryKind::Tanh => {
                Some(value.clone())
            }
            _ => Some(x.clone()),
        };
        let node = self.node;
        self.wrap(value, &[node], || Op::Unary {
            kind,
            x: node.expect("recorded only with an input node"),
            saved,
        })
    }

    /// `-x`.
    pub fn neg(&self) -> Var<'g> {
        self.unary(UnaryKind::Neg)
    }
    /// `|x|` (subgradient 0 at 0).
    pub fn abs(&self) -> Var<'g> {
        self.unary(UnaryKind::Abs)
    }
    /// `sqrt(x)`.
    pub fn sqrt(&self) -> Var<'g> {
        self.unary(UnaryKind::Sqrt)
    }
    /// `e^x`.
    pub fn exp(&self) -> Var<'g> {
        self.unary(UnaryKind::Exp)
    }
    /// `ln(x)`.
    pub fn log(&self) -> Var<'g> {
        self.unary(UnaryKind::Log)
    }
    /// `max(x, 0)` (gradient 0 at 0).
    pub fn relu(&self) -> Var<'g> {
        self.unary(UnaryKind::Relu)
    }
    /// `x` where positive, `slope * x` elsewhere.
    pub fn leaky_relu(&self, slope: f32) -> Var<'g> {
        self.unary(UnaryKind::LeakyRelu(slope))
    }
    /// `1 / (1 + e^-x)`.
    pub fn sigmoid(&self) -> Var<'g> {
        self.unary(UnaryKind::Sigmoid)
    }
    /// `tanh(x)`.
    pub fn tanh(&self) -> Var<'g> {
        self.unary(UnaryKind::Tanh)
    }
    /// `ln(1 + e^x)`.
    pub fn softplus(&self) -> Var<'g> {
        self.unary(UnaryKind::Softplus)
    }
    /// Limits to `[lo, hi]` (gradient passes on the closed interval).
    pub fn clamp(&self, lo: f32, hi: f32) -> Var<'g> {
        self.unary(UnaryKind::Clamp(lo, hi))
    }
    /// `x^p` for a scalar `p`.
    pub fn powf(&self, p: f32) -> Var<'g> {
        self.unary(UnaryKind::Powf(p))
    }
    /// `x * s`.
    pub fn scale(&self, s: f32) -> Var<'g> {
        self.unary(UnaryKind::Scale(s))
    }
    /// `x + s`.
    pub fn add_scalar(&self, s: f32) -> Var<'g> {
        self.unary(UnaryKind::AddScalar(s))
    }
    /// `x²`.
    pub fn sqr(&self) -> Var<'g> {
        self.unary(UnaryKind::Sqr)
    }
}

pub(crate) fn backward(op: &Op, g: &Tensor) -> Result<Vec<(NodeId, Tensor)>> {
    let mut out = vec![];
    match op {
        Op::Binary {
            kind,
            a,
            b,
            a_shape,
            b_shape,
            a_val,
            b_val,
        } => {
            fn val(v: &Option<Tensor>) -> &Tensor {
                v.as_ref().expect("saved when needed")
            }
            let (ga, gb) = match kind {
                BinaryKind::Add => (a.map(|_| g.clone()), b.map(|_| g.clone())),
                BinaryKind::Sub => (a.map(|_| g.clone()), b.map(|_| g.neg())),
                BinaryKind::Mul => (
                    a.map(|_| g.mul(val(b_val))).transpose()?,
                    b.map(|_| g.mul(val(a_val))).transpose()?,
                ),
                BinaryKind::Div => {
                    let bv = val(b_val);
                    let ga = a.map(|_| g.div(bv)).transpose()?;
                    // d(a/b)/db = -a / b²
                    let gb = match b {
                        Some(_) => Some(g.mul(val(a_val))?.div(&bv.sqr())?.neg()),
                        None => None,
                    };
                    (ga, gb)
                }
                BinaryKind::Maximum | BinaryKind::Minimum => {
                    let (av, bv) = (val(a_val), val(b_val));
                    let mask = if *kind == BinaryKind::Maximum {
                        av.ge(bv)?
                    } else {
                        av.le(bv)?
                    };
                    let ga = a.map(|_| g.mul(&mask)).transpose()?;
                    let gb = b.map(|_| g.mul(&mask.affine(-1.0, 1.0))).transpose()?;
                    (ga, gb)
                }
            };
            if let (Some(a), Some(ga)) = (a, ga) {
                out.push((*a, unbroadcast(&ga, a_shape)?));
            }
            if let (Some(b), Some(gb)) = (b, gb) {
                out.push((*b, unbroadcast(&gb, b_shape)?));
            }
        }
        Op::Unary { kind, x, saved } => {
            let s = || saved.as_ref().expect("saved for this kind");
            let gx = match *kind {
                UnaryKind::Neg => g.neg(),
                UnaryKind::Abs => g.zip_map(s(), |g, x| {
                    if x > 0.0 {
                        g
                    } else if x < 0.0 {
                        -g
                    } else {
                        0.0
                    }
                })?,
                UnaryKind::Sqr => g.zip_map(s(), |g, x| 2.0 * x * g)?,
                UnaryKind::Sqrt => g.zip_map(s(), |g, y| g / (2.0 * y))?,
                UnaryKind::Exp => g.mul(s())?,
                UnaryKind::Log => g.div(s())?,
                UnaryKind::Relu => g.zip_map(s(), |g, x| if x > 0.0 { g } else { 0.0 })?,
                UnaryKind::LeakyRelu(slope) => {
                    g.zip_map(s(), |g, x| if x > 0.0 { g } else { slope * g })?
                }
                UnaryKind::Sigmoid => g.zip_map(s(), |g, y| g * y * (1.0 - y))?,
                UnaryKind::Tanh => g.zip_map(s(), |g, y| g * (1.0 - y * y))?,
                UnaryKind::Softplus => g.mul(&s().sigmoid())?,
                UnaryKind::Clamp(lo, hi) => {
                    g.zip_map(s(), |g, x| if (lo..=hi).contains(&x) { g } else { 0.0 })?
                }
                UnaryKind::Powf(p) => g.zip_map(s(), |g, x| g * p * x.powf(p - 1.0))?,
                UnaryKind::Scale(k) => g.scale(k),
                UnaryKind::AddScalar(_) => g.clone(),
            };
            out.push((*x, gx));
        }
        _ => unreachable!("arith::backward called for {:?}", op.kind()),
    }
    Ok(out)
}
