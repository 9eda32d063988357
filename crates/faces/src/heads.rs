//! The DeepFace verification heads (Taigman et al. 2014; seed eq. 3-4): a logistic unit over a
//! per-component comparison of two embeddings, trained with binary cross-entropy on pairs.
//!
//! - eq. 3, [`HeadKind::L1`]: `y = sigmoid(sum_k a_k |f_i[k] - f_j[k]| + b)`;
//! - eq. 4, [`HeadKind::ChiSquare`]: `y = sigmoid(sum_k a_k (f_i[k] - f_j[k])^2 / (f_i[k] + f_j[k]) + b)`.
//!
//! The chi-square form needs `f_i[k] + f_j[k] > 0`. Our choice: the embedding is rectified
//! before it is normalised ([`crate::model::EmbeddingConfig::non_negative`], as DeepFace's own
//! ReLU features are), so every component is >= 0, and the denominator gets `+ CHI2_EPS`;
//! a component where both are 0 then contributes exactly 0.
//!
//! The head's output is a logit for "same person". To share one evaluation harness with the
//! distance models (`same when d <= tau`), a head's pair score is `-logit`.

use autograd::Var;
use nn::{Ctx, Init, ParamBuilder, ParamId};
use serde::{Deserialize, Serialize};

/// Added to the chi-square denominator.
pub const CHI2_EPS: f32 = 1e-6;

/// Which comparison the head weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeadKind {
    /// Seed eq. 3: weighted absolute differences.
    L1,
    /// Seed eq. 4: weighted chi-square terms.
    ChiSquare,
}

/// A DeepFace head: weights `a` (one per embedding component) and bias `b`.
#[derive(Debug, Clone)]
pub struct DeepFaceHead {
    /// Which equation.
    pub kind: HeadKind,
    /// `a`, shape `(dim,)`.
    pub weight: ParamId,
    /// `b`, shape `(1,)`.
    pub bias: ParamId,
}

impl DeepFaceHead {
    /// A head under `b` (names `weight`, `bias`). `a` starts at -1 (a larger difference means
    /// "less likely the same"), `b` at `bias` (see [`initial_bias`]).
    ///
    /// # Errors
    /// Duplicate names.
    pub fn new(
        b: &mut ParamBuilder<'_>,
        kind: HeadKind,
        dim: usize,
        bias: f32,
    ) -> nn::Result<DeepFaceHead> {
        Ok(DeepFaceHead {
            kind,
            weight: b.weight("weight", &[dim], Init::Const(-1.0), None)?,
            bias: b.weight("bias", &[1], Init::Const(bias), None)?,
        })
    }

    /// The per-component comparison of eq. 3 or eq. 4, `(N, dim)`.
    ///
    /// # Errors
    /// Shapes that differ.
    pub fn features<'g>(&self, fi: &Var<'g>, fj: &Var<'g>) -> nn::Result<Var<'g>> {
        if fi.shape() != fj.shape() {
            return Err(nn::Error::arg(
                "DeepFaceHead",
                format!("{:?} vs {:?}", fi.shape(), fj.shape()),
            ));
        }
        let diff = fi.sub(fj)?;
        Ok(match self.kind {
            HeadKind::L1 => diff.abs(),
            HeadKind::ChiSquare => diff.sqr().div(&fi.add(fj)?.add_scalar(CHI2_EPS))?,
        })
    }

    /// Logits for "same person", `(N,)`.
    ///
    /// # Errors
    /// Shapes that differ.
    pub fn logits<'g>(&self, cx: &Ctx<'g>, fi: &Var<'g>, fj: &Var<'g>) -> nn::Result<Var<'g>> {
        let terms = self.features(fi, fj)?.mul(cx.param(self.weight))?;
        Ok(terms.sum_axes(&[1], false)?.add(cx.param(self.bias))?)
    }
}

/// The head's pair score `-logit` in plain arithmetic (evaluation, no graph): `weight` is `a`,
/// `bias` is `b`, `fi` and `fj` one embedding each. Agrees with [`DeepFaceHead::logits`]
/// (a test checks it).
pub fn score(kind: HeadKind, weight: &[f32], bias: f32, fi: &[f32], fj: &[f32]) -> f32 {
    let sum: f32 = weight
        .iter()
        .zip(fi.iter().zip(fj))
        .map(|(w, (a, b))| {
            w * match kind {
                HeadKind::L1 => (a - b).abs(),
                HeadKind::ChiSquare => (a - b) * (a - b) / (a + b + CHI2_EPS),
            }
        })
        .sum();
    -(sum + bias)
}

/// The starting bias: with `a = -1`, the logit is `b - s` where `s` is the summed comparison,
/// so `b` is put midway between the mean `s` of same pairs and of different pairs seen before
/// training. Without it, `b` would start tens of units from where it belongs (the sum over 128
/// components) and Adam would spend thousands of steps walking it there.
pub fn initial_bias(same_sums: &[f32], different_sums: &[f32]) -> f32 {
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len().max(1) as f32;
    0.5 * (mean(same_sums) + mean(different_sums))
}
