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
        .map(|(w, (&a, &b))| w * compare(kind, a, b))
        .sum();
    -(sum + bias)
}

/// One component's comparison: `|a - b|` (eq. 3) or `(a - b)^2 / (a + b + eps)` (eq. 4).
pub fn compare(kind: HeadKind, a: f32, b: f32) -> f32 {
    match kind {
        HeadKind::L1 => (a - b).abs(),
        HeadKind::ChiSquare => (a - b) * (a - b) / (a + b + CHI2_EPS),
    }
}

/// Embeddings with negative components made fit for the chi-square head without losing
/// anything: each row `f` becomes `[max(f, 0), max(-f, 0)]`, twice as wide and with no
/// negative component. For a frozen embedding that was not trained to be non-negative (the
/// pretrained ResNet).
pub fn split_signs(emb: &[f32], dim: usize) -> Vec<f32> {
    emb.chunks(dim)
        .flat_map(|row| {
            row.iter()
                .map(|v| v.max(0.0))
                .chain(row.iter().map(|v| (-v).max(0.0)))
        })
        .collect()
}

/// Fits a head's `a` and `b` on frozen embeddings: logistic regression of `same` on the
/// per-component comparisons of each pair `(i, j, same)` of rows of `emb` (`dim` wide), by
/// full-batch Adam on the mean binary cross-entropy (`steps` steps, learning rate `lr`),
/// starting from `a = -1` and [`initial_bias`]. Deterministic.
pub fn fit_frozen(
    kind: HeadKind,
    emb: &[f32],
    dim: usize,
    pairs: &[(usize, usize, bool)],
    steps: usize,
    lr: f64,
) -> (Vec<f32>, f32) {
    let n = pairs.len().max(1);
    let feats: Vec<f64> = pairs
        .iter()
        .flat_map(|&(i, j, _)| {
            let (a, b) = (&emb[i * dim..(i + 1) * dim], &emb[j * dim..(j + 1) * dim]);
            a.iter()
                .zip(b)
                .map(move |(&x, &y)| f64::from(compare(kind, x, y)))
        })
        .collect();
    let sums = |same: bool| -> Vec<f32> {
        pairs
            .iter()
            .enumerate()
            .filter(|(_, p)| p.2 == same)
            .map(|(r, _)| feats[r * dim..(r + 1) * dim].iter().sum::<f64>() as f32)
            .collect()
    };
    let mut w = vec![-1.0f64; dim + 1];
    w[dim] = f64::from(initial_bias(&sums(true), &sums(false)));
    let (mut m, mut v) = (vec![0.0; dim + 1], vec![0.0; dim + 1]);
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
    for t in 1..=steps {
        let mut g = vec![0.0f64; dim + 1];
        for (r, &(_, _, same)) in pairs.iter().enumerate() {
            let x = &feats[r * dim..(r + 1) * dim];
            let z = x.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() + w[dim];
            let err = 1.0 / (1.0 + (-z).exp()) - f64::from(u8::from(same));
            x.iter().zip(&mut g).for_each(|(xi, gi)| *gi += err * xi);
            g[dim] += err;
        }
        for k in 0..=dim {
            let gk = g[k] / n as f64;
            m[k] = b1 * m[k] + (1.0 - b1) * gk;
            v[k] = b2 * v[k] + (1.0 - b2) * gk * gk;
            let mh = m[k] / (1.0 - b1.powi(t as i32));
            let vh = v[k] / (1.0 - b2.powi(t as i32));
            w[k] -= lr * mh / (vh.sqrt() + eps);
        }
    }
    (w[..dim].iter().map(|&x| x as f32).collect(), w[dim] as f32)
}

/// The starting bias: with `a = -1`, the logit is `b - s` where `s` is the summed comparison,
/// so `b` is put midway between the mean `s` of same pairs and of different pairs seen before
/// training. Without it, `b` would start tens of units from where it belongs (the sum over 128
/// components) and Adam would spend thousands of steps walking it there.
pub fn initial_bias(same_sums: &[f32], different_sums: &[f32]) -> f32 {
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len().max(1) as f32;
    0.5 * (mean(same_sums) + mean(different_sums))
}
