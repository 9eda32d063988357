//! Losses. Each returns a one-element var (ready for `Graph::backward`).

use autograd::Var;
use tensor::Tensor;

use crate::{Error, Result};

/// How a per-example loss becomes one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    /// Sum over examples (the seed's eq. 7 for the triplet loss).
    Sum,
    /// Mean over examples.
    Mean,
}

fn reduce<'g>(per_example: &Var<'g>, r: Reduction) -> Result<Var<'g>> {
    Ok(match r {
        Reduction::Sum => per_example.sum()?,
        Reduction::Mean => per_example.mean()?,
    })
}

/// Cross-entropy from logits `(N, C)` and class indices, averaged over the batch, with optional
/// label smoothing `eps` (target `1 - eps` on the class plus `eps / C` everywhere).
///
/// # Errors
/// Wrong shapes, an empty batch, a class index `>= C`, `eps` outside `[0, 1)`.
pub fn cross_entropy<'g>(
    logits: &Var<'g>,
    targets: &[usize],
    label_smoothing: f32,
) -> Result<Var<'g>> {
    let shape = logits.shape();
    if shape.len() != 2 || shape[0] != targets.len() || shape[0] == 0 {
        return Err(Error::arg(
            "cross_entropy",
            format!("logits {shape:?} for {} targets", targets.len()),
        ));
    }
    if !(0.0..1.0).contains(&label_smoothing) {
        return Err(Error::arg(
            "cross_entropy",
            format!("label smoothing {label_smoothing} outside [0, 1)"),
        ));
    }
    let (n, c) = (shape[0], shape[1]);
    if let Some(&bad) = targets.iter().find(|&&t| t >= c) {
        return Err(Error::arg(
            "cross_entropy",
            format!("class {bad} out of range for {c} classes"),
        ));
    }
    let mut q = vec![label_smoothing / c as f32; n * c];
    for (i, &t) in targets.iter().enumerate() {
        q[i * c + t] += 1.0 - label_smoothing;
    }
    let q = logits.graph().constant(Tensor::from_vec(q, &[n, c])?);
    Ok(logits
        .log_softmax(1)?
        .mul(&q)?
        .sum()?
        .scale(-1.0 / n as f32))
}

/// Binary cross-entropy from logits against targets in `[0, 1]`, averaged:
/// `softplus(x) - x y`, stable for large |x|.
///
/// # Errors
/// Shapes that differ.
pub fn bce_with_logits<'g>(logits: &Var<'g>, targets: &Var<'g>) -> Result<Var<'g>> {
    if logits.shape() != targets.shape() {
        return Err(Error::arg(
            "bce_with_logits",
            format!(
                "logits {:?} vs targets {:?}",
                logits.shape(),
                targets.shape()
            ),
        ));
    }
    Ok(logits.softplus().sub(&logits.mul(targets)?)?.mean()?)
}

/// Mean squared error.
///
/// # Errors
/// Shapes that differ.
pub fn mse<'g>(a: &Var<'g>, b: &Var<'g>) -> Result<Var<'g>> {
    if a.shape() != b.shape() {
        return Err(Error::arg(
            "mse",
            format!("{:?} vs {:?}", a.shape(), b.shape()),
        ));
    }
    Ok(a.sub(b)?.sqr().mean()?)
}

/// Mean absolute error.
///
/// # Errors
/// Shapes that differ.
pub fn l1<'g>(a: &Var<'g>, b: &Var<'g>) -> Result<Var<'g>> {
    if a.shape() != b.shape() {
        return Err(Error::arg(
            "l1",
            format!("{:?} vs {:?}", a.shape(), b.shape()),
        ));
    }
    Ok(a.sub(b)?.abs().mean()?)
}

/// Squared L2 distance per row of two `(N, D)` embeddings: the seed's eq. 2.
///
/// # Errors
/// Shapes that differ or are not rank 2.
pub fn squared_distance<'g>(a: &Var<'g>, b: &Var<'g>) -> Result<Var<'g>> {
    if a.shape() != b.shape() || a.shape().len() != 2 {
        return Err(Error::arg(
            "squared_distance",
            format!("{:?} vs {:?}", a.shape(), b.shape()),
        ));
    }
    Ok(a.sub(b)?.sqr().sum_axes(&[1], false)?)
}

/// Contrastive loss (Hadsell et al. 2006) on pairs of embeddings `(N, D)`: `d²` for same pairs,
/// `max(margin - d, 0)²` for different ones, `d = sqrt(d² + 1e-12)`; averaged.
///
/// # Errors
/// Shapes that differ; `same.len() != N`.
pub fn contrastive<'g>(a: &Var<'g>, b: &Var<'g>, same: &[bool], margin: f32) -> Result<Var<'g>> {
    let d2 = squared_distance(a, b)?;
    if same.len() != d2.shape()[0] {
        return Err(Error::arg(
            "contrastive",
            format!("{} labels for {} pairs", same.len(), d2.shape()[0]),
        ));
    }
    let y: Vec<f32> = same.iter().map(|&s| s as u8 as f32).collect();
    let y = a.graph().constant(Tensor::from_vec(y.clone(), &[y.len()])?);
    let d = d2.add_scalar(1e-12).sqrt();
    let hinge = d.neg().add_scalar(margin).relu().sqr();
    let per = y.mul(&d2)?.add(&y.neg().add_scalar(1.0).mul(&hinge)?)?;
    Ok(per.mean()?)
}

/// The FaceNet triplet loss, seed eq. 6-7: `max(|f(A)-f(P)|² - |f(A)-f(N)|² + alpha, 0)` per
/// triplet, summed (eq. 7) or averaged.
///
/// # Errors
/// Shapes that differ or are not rank 2.
pub fn triplet<'g>(
    anchor: &Var<'g>,
    positive: &Var<'g>,
    negative: &Var<'g>,
    margin: f32,
    reduction: Reduction,
) -> Result<Var<'g>> {
    let dap = squared_distance(anchor, positive)?;
    let dan = squared_distance(anchor, negative)?;
    reduce(&dap.sub(&dan)?.add_scalar(margin).relu(), reduction)
}
