//! Fused batch normalisation: statistics, the normalise-and-scale pass, and its backward, one
//! or two passes over the data each instead of the ten a composition of elementwise ops takes.
//!
//! Layout `(N, C, ...)`; statistics per channel over the batch and every spatial position.

use rayon::prelude::*;

use crate::kernels::simd;
use crate::{Error, Result, Tensor};

/// `(N, C, S)` sizes of an `(N, C, ...)` tensor.
fn ncs(op: &'static str, x: &Tensor) -> Result<(usize, usize, usize)> {
    if x.rank() < 2 {
        return Err(Error::rank(op, "at least 2 (N, C, ...)", x.shape()));
    }
    let (n, c) = (x.shape()[0], x.shape()[1]);
    Ok((n, c, x.shape()[2..].iter().product()))
}

fn check_channel_vec(op: &'static str, name: &str, t: &Tensor, c: usize) -> Result<()> {
    if t.shape() != [c] {
        return Err(Error::shape(
            op,
            t.shape(),
            &[c],
            format!("{name} must have shape [C]"),
        ));
    }
    Ok(())
}

/// Runs `f(channel, runs)` in parallel over channels, where `runs` yields the channel's `N`
/// contiguous slices of length `S`.
fn per_channel<T: Send>(
    n: usize,
    c: usize,
    s: usize,
    f: impl Fn(usize, &dyn Fn(usize) -> std::ops::Range<usize>) -> T + Sync,
) -> Vec<T> {
    let run = move |ch: usize| move |img: usize| (img * c + ch) * s..(img * c + ch + 1) * s;
    if n * c * s >= 1 << 15 {
        (0..c).into_par_iter().map(|ch| f(ch, &run(ch))).collect()
    } else {
        (0..c).map(|ch| f(ch, &run(ch))).collect()
    }
}

impl Tensor {
    /// Per-channel mean and biased variance over every axis but 1.
    ///
    /// # Errors
    /// [`Error::RankMismatch`] below rank 2; [`Error::InvalidArgument`] for an empty channel.
    pub fn batch_norm_stats(&self) -> Result<(Tensor, Tensor)> {
        let (n, c, s) = ncs("batch_norm_stats", self)?;
        if n * s == 0 {
            return Err(Error::arg("batch_norm_stats", "no values per channel"));
        }
        let x = self.contiguous_data();
        let count = (n * s) as f64;
        let stats = per_channel(n, c, s, |_, run| {
            // Two passes: the mean, then the centred sum of squares (no cancellation). Partial
            // sums are f32 in sixteen lanes per run, added across runs in f64.
            let mean = (0..n).map(|i| simd::sum(&x[run(i)]) as f64).sum::<f64>() / count;
            let var = (0..n)
                .map(|i| simd::sum_sq_dev(&x[run(i)], mean as f32) as f64)
                .sum::<f64>()
                / count;
            (mean as f32, var as f32)
        });
        let (mean, var): (Vec<f32>, Vec<f32>) = stats.into_iter().unzip();
        Ok((
            Tensor::from_parts(mean, &[c]),
            Tensor::from_parts(var, &[c]),
        ))
    }

    /// `y = (x - mean) * invstd * gamma + beta` per channel.
    ///
    /// # Errors
    /// Rank below 2; parameter vectors that are not `[C]`.
    pub fn batch_norm_apply(
        &self,
        mean: &Tensor,
        invstd: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
    ) -> Result<Tensor> {
        let op = "batch_norm_apply";
        let (n, c, s) = ncs(op, self)?;
        for (name, t) in [
            ("mean", mean),
            ("invstd", invstd),
            ("gamma", gamma),
            ("beta", beta),
        ] {
            check_channel_vec(op, name, t, c)?;
        }
        let x = self.contiguous_data();
        let (m, is, g, b) = (
            mean.to_vec(),
            invstd.to_vec(),
            gamma.to_vec(),
            beta.to_vec(),
        );
        let mut out = crate::storage::zeroed(n * c * s);
        let plane = |(p, o): (usize, &mut [f32])| {
            let ch = p % c;
            let (k, off) = (is[ch] * g[ch], b[ch] - m[ch] * is[ch] * g[ch]);
            simd::map(&x[p * s..(p + 1) * s], o, &|v| v.mul_add(k, off));
        };
        if s > 0 {
            if out.len() >= 1 << 15 {
                out.par_chunks_mut(s).enumerate().for_each(plane);
            } else {
                out.chunks_mut(s).enumerate().for_each(plane);
            }
        }
        Ok(Tensor::from_parts(out, self.shape()))
    }

    /// Gradients of [`Tensor::batch_norm_apply`] given the output gradient: `(dx, dgamma,
    /// dbeta)`. With `batch_stats` the mean and variance are the batch's own (training), so
    /// `dx` includes their dependence on `x`; without, they are constants (evaluation).
    ///
    /// # Errors
    /// Shapes that differ from `x`'s or from `[C]`.
    pub fn batch_norm_backward(
        grad_out: &Tensor,
        x: &Tensor,
        mean: &Tensor,
        invstd: &Tensor,
        gamma: &Tensor,
        batch_stats: bool,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let op = "batch_norm_backward";
        let (n, c, s) = ncs(op, x)?;
        if grad_out.shape() != x.shape() {
            return Err(Error::shape(
                op,
                x.shape(),
                grad_out.shape(),
                "grad_out must have the input's shape",
            ));
        }
        for (name, t) in [("mean", mean), ("invstd", invstd), ("gamma", gamma)] {
            check_channel_vec(op, name, t, c)?;
        }
        let (xd, gd) = (x.contiguous_data(), grad_out.contiguous_data());
        let (m, is, g) = (mean.to_vec(), invstd.to_vec(), gamma.to_vec());
        // dbeta = sum(dy), dgamma = sum(dy * xhat) per channel, in f64.
        let sums = per_channel(n, c, s, |ch, run| {
            // sum(dy * xhat) = invstd * (sum(dy * x) - mean * sum(dy)).
            let (mut sdy, mut sdyx) = (0.0f64, 0.0f64);
            for i in 0..n {
                sdy += simd::sum(&gd[run(i)]) as f64;
                sdyx += simd::dot(&gd[run(i)], &xd[run(i)]) as f64;
            }
            (
                sdy as f32,
                ((sdyx - m[ch] as f64 * sdy) * is[ch] as f64) as f32,
            )
        });
        let (dbeta, dgamma): (Vec<f32>, Vec<f32>) = sums.iter().copied().unzip();
        let count = (n * s) as f32;
        let mut dx = crate::storage::zeroed(n * c * s);
        let plane = |(p, o): (usize, &mut [f32])| {
            let ch = p % c;
            let k = g[ch] * is[ch];
            let (dyp, xp) = (&gd[p * s..(p + 1) * s], &xd[p * s..(p + 1) * s]);
            if batch_stats {
                // dx = gamma * invstd / M * (M dy - dbeta - xhat * dgamma)
                let (mb, mg) = (dbeta[ch] / count, dgamma[ch] / count);
                // k (dy - mb - (v - m) is mg) = k dy - k is mg v + k (is mg m - mb)
                let (a, b) = (k * is[ch] * mg, k * (is[ch] * mg * m[ch] - mb));
                simd::zip(dyp, xp, o, &|dy, v| k * dy - a * v + b);
            } else {
                simd::map(dyp, o, &|dy| dy * k);
            }
        };
        if s > 0 {
            if dx.len() >= 1 << 15 {
                dx.par_chunks_mut(s).enumerate().for_each(plane);
            } else {
                dx.chunks_mut(s).enumerate().for_each(plane);
            }
        }
        Ok((
            Tensor::from_parts(dx, x.shape()),
            Tensor::from_parts(dgamma, &[c]),
            Tensor::from_parts(dbeta, &[c]),
        ))
    }
}
