//! Elementwise unary and binary ops (binary ones broadcast numpy-style), comparisons and select.

use crate::kernels::simd;
use crate::layout::for_each_run;
use crate::tensor::broadcast_shapes;
use crate::{Result, Tensor};

/// Below this many elements a kernel runs on the calling thread: rayon's fork costs more.
pub(crate) const PAR_MIN_ELEMS: usize = 1 << 15;

/// Applies `f` to each element, contiguous-first, in parallel for large tensors.
pub(crate) fn map(t: &Tensor, f: impl Fn(f32) -> f32 + Sync) -> Tensor {
    let src = t.contiguous_data();
    let out = simd::map_new(&src, &f, src.len() >= PAR_MIN_ELEMS);
    Tensor::from_parts(out, t.shape())
}

/// Combines two tensors elementwise after broadcasting them to a common shape.
pub(crate) fn zip_map(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    f: impl Fn(f32, f32) -> f32 + Sync,
) -> Result<Tensor> {
    let shape = broadcast_shapes(op, a.shape(), b.shape())?;
    if let (true, Some(sa), Some(sb)) = (
        a.shape() == b.shape(),
        a.as_contiguous_slice(),
        b.as_contiguous_slice(),
    ) {
        let out = simd::zip_new(sa, sb, &f, sa.len() >= PAR_MIN_ELEMS);
        return Ok(Tensor::from_parts(out, &shape));
    }
    let (a, b) = (a.broadcast_to(&shape)?, b.broadcast_to(&shape)?);
    let (da, db) = (a.storage(), b.storage());
    let mut out = crate::storage::with_capacity(shape.iter().product());
    for_each_run(
        &shape,
        [a.layout().strides(), b.layout().strides()],
        [a.layout().offset(), b.layout().offset()],
        |[oa, ob], len, [sa, sb]| match (sa, sb) {
            (1, 1) => out.extend(
                da[oa..oa + len]
                    .iter()
                    .zip(&db[ob..ob + len])
                    .map(|(&x, &y)| f(x, y)),
            ),
            (1, 0) => out.extend(da[oa..oa + len].iter().map(|&x| f(x, db[ob]))),
            (0, 1) => out.extend(db[ob..ob + len].iter().map(|&y| f(da[oa], y))),
            _ => out.extend((0..len).map(|i| f(da[oa + i * sa], db[ob + i * sb]))),
        },
    );
    Ok(Tensor::from_parts(out, &shape))
}

macro_rules! unary_ops {
    ($($(#[$doc:meta])* $name:ident => |$x:ident| $body:expr;)*) => {
        impl Tensor {
            $(
                $(#[$doc])*
                pub fn $name(&self) -> Tensor {
                    map(self, |$x| $body)
                }
            )*
        }
    };
}

unary_ops! {
    /// `-x`.
    neg => |x| -x;
    /// `|x|`.
    abs => |x| x.abs();
    /// `e^x`.
    exp => |x| x.exp();
    /// Natural logarithm (NaN for negative input, -inf at 0, as IEEE says).
    log => |x| x.ln();
    /// Square root (NaN for negative input).
    sqrt => |x| x.sqrt();
    /// `x²`.
    sqr => |x| x * x;
    /// `1 / x`.
    recip => |x| 1.0 / x;
    /// `max(x, 0)`.
    relu => |x| if x > 0.0 { x } else { 0.0 };
    /// `1 / (1 + e^-x)`, computed without overflow for large |x|.
    sigmoid => |x| if x >= 0.0 { 1.0 / (1.0 + (-x).exp()) } else { let e = x.exp(); e / (1.0 + e) };
    /// Hyperbolic tangent.
    tanh => |x| x.tanh();
    /// `ln(1 + e^x)`, computed without overflow for large x.
    softplus => |x| if x > 20.0 { x } else { x.exp().ln_1p() };
    /// 1 where `x > 0`, else 0 (the derivative of relu; 0 at the kink).
    positive_mask => |x| if x > 0.0 { 1.0 } else { 0.0 };
    /// The sign: -1, 0 or 1 (0 at 0; NaN stays NaN).
    sign => |x| if x > 0.0 { 1.0 } else if x < 0.0 { -1.0 } else { x * 0.0 };
}

impl Tensor {
    /// `x^p` for a scalar exponent.
    pub fn powf(&self, p: f32) -> Tensor {
        map(self, |x| x.powf(p))
    }

    /// `x * mul + add`, one pass.
    pub fn affine(&self, mul: f32, add: f32) -> Tensor {
        map(self, |x| x.mul_add(mul, add))
    }

    /// Multiplies every element by `s`.
    pub fn scale(&self, s: f32) -> Tensor {
        map(self, |x| x * s)
    }

    /// Adds `s` to every element.
    pub fn add_scalar(&self, s: f32) -> Tensor {
        map(self, |x| x + s)
    }

    /// `x` where positive, `slope * x` elsewhere.
    pub fn leaky_relu(&self, slope: f32) -> Tensor {
        map(self, |x| if x > 0.0 { x } else { slope * x })
    }

    /// Limits each element to `[lo, hi]` (NaN stays NaN).
    pub fn clamp(&self, lo: f32, hi: f32) -> Tensor {
        map(self, |x| {
            if x < lo {
                lo
            } else if x > hi {
                hi
            } else {
                x
            }
        })
    }

    /// Applies any function elementwise.
    pub fn map(&self, f: impl Fn(f32) -> f32 + Sync) -> Tensor {
        map(self, f)
    }

    /// Combines two tensors elementwise with any function, broadcasting them.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] when the shapes do not broadcast.
    pub fn zip_map(&self, other: &Tensor, f: impl Fn(f32, f32) -> f32 + Sync) -> Result<Tensor> {
        zip_map("zip_map", self, other, f)
    }

    /// Picks `on_true` where `self` (the mask) is non-zero and `on_false` elsewhere; all three
    /// broadcast to a common shape.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] when the shapes do not broadcast.
    pub fn where_cond(&self, on_true: &Tensor, on_false: &Tensor) -> Result<Tensor> {
        let shape = broadcast_shapes("where_cond", self.shape(), on_true.shape())?;
        let shape = broadcast_shapes("where_cond", &shape, on_false.shape())?;
        let m = self.broadcast_to(&shape)?.contiguous_data().into_owned();
        let t = on_true.broadcast_to(&shape)?.contiguous_data().into_owned();
        let f = on_false
            .broadcast_to(&shape)?
            .contiguous_data()
            .into_owned();
        let out = m
            .iter()
            .zip(t.iter().zip(&f))
            .map(|(&m, (&t, &f))| if m != 0.0 { t } else { f });
        Ok(Tensor::from_parts(out.collect(), &shape))
    }
}

macro_rules! binary_ops {
    ($($(#[$doc:meta])* $name:ident => |$a:ident, $b:ident| $body:expr;)*) => {
        impl Tensor {
            $(
                $(#[$doc])*
                ///
                /// Broadcasts numpy-style.
                ///
                /// # Errors
                /// [`crate::Error::ShapeMismatch`] when the shapes do not broadcast.
                pub fn $name(&self, other: &Tensor) -> Result<Tensor> {
                    zip_map(stringify!($name), self, other, |$a, $b| $body)
                }
            )*
        }
    };
}

binary_ops! {
    /// `a + b`.
    add => |a, b| a + b;
    /// `a - b`.
    sub => |a, b| a - b;
    /// `a * b`.
    mul => |a, b| a * b;
    /// `a / b`.
    div => |a, b| a / b;
    /// `a ^ b`.
    pow => |a, b| a.powf(b);
    /// The larger of the two (NaN if either is NaN).
    maximum => |a, b| if a.is_nan() || b.is_nan() { f32::NAN } else { a.max(b) };
    /// The smaller of the two (NaN if either is NaN).
    minimum => |a, b| if a.is_nan() || b.is_nan() { f32::NAN } else { a.min(b) };
    /// 1 where `a == b`, else 0.
    eq => |a, b| (a == b) as u8 as f32;
    /// 1 where `a != b`, else 0.
    ne => |a, b| (a != b) as u8 as f32;
    /// 1 where `a < b`, else 0.
    lt => |a, b| (a < b) as u8 as f32;
    /// 1 where `a <= b`, else 0.
    le => |a, b| (a <= b) as u8 as f32;
    /// 1 where `a > b`, else 0.
    gt => |a, b| (a > b) as u8 as f32;
    /// 1 where `a >= b`, else 0.
    ge => |a, b| (a >= b) as u8 as f32;
}
