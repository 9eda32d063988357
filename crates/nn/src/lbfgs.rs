//! L-BFGS with a strong-Wolfe line search (Nocedal & Wright, algorithms 7.4, 3.5 and 3.6), on a
//! flat parameter vector. Style transfer optimises the pixels of one image with it.
//!
//! Each [`Lbfgs::step`] is one iteration: a search direction from the last `history` curvature
//! pairs, then a line search (or a fixed step) along it. The objective is a closure returning
//! the loss and its gradient at a point.

use crate::{Error, Result};

/// Settings of [`Lbfgs`] (PyTorch's defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct LbfgsConfig {
    /// Initial step length along the direction (1 is natural for quasi-Newton steps).
    pub lr: f64,
    /// Curvature pairs kept.
    pub history: usize,
    /// Stop when the largest gradient component is below this.
    pub tolerance_grad: f64,
    /// Stop when the step or the loss changes by less than this.
    pub tolerance_change: f64,
    /// Strong-Wolfe line search (else a fixed step `lr`, the first one scaled down).
    pub line_search: bool,
    /// Most function evaluations in one line search.
    pub max_line_search: usize,
}

impl Default for LbfgsConfig {
    fn default() -> Self {
        LbfgsConfig {
            lr: 1.0,
            history: 100,
            tolerance_grad: 1e-7,
            tolerance_change: 1e-9,
            line_search: true,
            max_line_search: 25,
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, PartialEq)]
pub struct LbfgsStep {
    /// Loss at the new point.
    pub loss: f64,
    /// Function evaluations used.
    pub evaluations: usize,
    /// True when a tolerance says the minimum is reached.
    pub converged: bool,
}

/// L-BFGS state: curvature pairs and the last point's loss and gradient.
#[derive(Debug, Clone)]
pub struct Lbfgs {
    cfg: LbfgsConfig,
    /// The curvature pairs in f32, as PyTorch keeps them: they are most of the optimiser's
    /// memory (2 x history x parameters; 1.7 GB instead of 3.4 GB for a 1024 x 683 image).
    s: Vec<Vec<f32>>,
    y: Vec<Vec<f32>>,
    /// `1 / (y_i . s_i)` of each kept pair.
    rho: std::collections::VecDeque<f64>,
    last: Option<(f64, Vec<f64>)>,
    iterations: usize,
}

/// Vectors at least this long are split over the rayon pool (style transfer's pixel vectors
/// hold 10^5-10^6 values; the two-loop recursion reads each pair four times per iteration).
const PAR_LEN: usize = 1 << 15;
const PAR_CHUNK: usize = 1 << 13;

/// Dot product with eight independent partial sums: the compiler can keep them in vector
/// registers, where one running sum would chain every addition on the last (4 cycles each).
/// Sums in f64 whether the vectors are f64 (points, gradients) or f32 (the stored pairs).
fn dot_serial<A: Copy + Into<f64>, B: Copy + Into<f64>>(a: &[A], b: &[B]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| x.into() * y.into())
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k].into() * y[k].into();
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Dot product; long vectors in parallel chunks whose partial sums are added in chunk order,
/// so the result does not depend on how rayon schedules them.
fn dot<A, B>(a: &[A], b: &[B]) -> f64
where
    A: Copy + Into<f64> + Sync,
    B: Copy + Into<f64> + Sync,
{
    use rayon::prelude::*;
    if a.len() < PAR_LEN {
        return dot_serial(a, b);
    }
    let parts: Vec<f64> = a
        .par_chunks(PAR_CHUNK)
        .zip(b.par_chunks(PAR_CHUNK))
        .map(|(x, y)| dot_serial(x, y))
        .collect();
    parts.iter().sum()
}

/// `y += alpha * x`.
fn axpy(y: &mut [f64], alpha: f64, x: &[f32]) {
    use rayon::prelude::*;
    let serial = |y: &mut [f64], x: &[f32]| {
        y.iter_mut()
            .zip(x)
            .for_each(|(yv, &xv)| *yv += alpha * f64::from(xv));
    };
    if y.len() < PAR_LEN {
        serial(y, x);
    } else {
        y.par_chunks_mut(PAR_CHUNK)
            .zip(x.par_chunks(PAR_CHUNK))
            .for_each(|(y, x)| serial(y, x));
    }
}

fn max_abs(a: &[f64]) -> f64 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// Minimiser of the cubic through `(x1, f1, g1)` and `(x2, f2, g2)`, clamped to `bounds`.
fn cubic_interpolate(
    x1: f64,
    f1: f64,
    g1: f64,
    x2: f64,
    f2: f64,
    g2: f64,
    bounds: (f64, f64),
) -> f64 {
    let (lo, hi) = bounds;
    let d1 = g1 + g2 - 3.0 * (f1 - f2) / (x1 - x2);
    let d2_square = d1 * d1 - g1 * g2;
    if d2_square >= 0.0 {
        let d2 = d2_square.sqrt();
        let min_pos = if x1 <= x2 {
            x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2.0 * d2))
        } else {
            x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2.0 * d2))
        };
        if min_pos.is_finite() {
            return min_pos.clamp(lo, hi);
        }
    }
    (lo + hi) / 2.0
}

type Objective<'a> = dyn FnMut(&[f64]) -> Result<(f64, Vec<f64>)> + 'a;

fn eval_at(f: &mut Objective<'_>, x: &[f64], t: f64, d: &[f64]) -> Result<(f64, Vec<f64>)> {
    let p: Vec<f64> = x.iter().zip(d).map(|(xi, di)| xi + t * di).collect();
    f(&p)
}

/// Strong-Wolfe line search from `x` along `d`; returns (loss, gradient, step, evaluations).
#[allow(clippy::too_many_arguments)]
fn strong_wolfe(
    f: &mut Objective<'_>,
    x: &[f64],
    mut t: f64,
    d: &[f64],
    f0: f64,
    g0: &[f64],
    gtd0: f64,
    max_ls: usize,
    tol_change: f64,
) -> Result<(f64, Vec<f64>, f64, usize)> {
    let (c1, c2) = (1e-4, 0.9);
    let d_norm = max_abs(d);
    let (mut f_new, mut g_new) = eval_at(f, x, t, d)?;
    let mut evals = 1;
    let mut gtd_new = dot(&g_new, d);
    let (mut t_prev, mut f_prev, mut g_prev, mut gtd_prev) = (0.0, f0, g0.to_vec(), gtd0);
    let mut done = false;
    // Bracket: (t, f, g, gtd) at each end.
    let mut bracket: Vec<(f64, f64, Vec<f64>, f64)>;
    let mut iters = 0;
    loop {
        if f_new > f0 + c1 * t * gtd0 || (iters > 1 && f_new >= f_prev) {
            bracket = vec![
                (t_prev, f_prev, g_prev, gtd_prev),
                (t, f_new, g_new, gtd_new),
            ];
            break;
        }
        if gtd_new.abs() <= -c2 * gtd0 {
            bracket = vec![(t, f_new, g_new, gtd_new)];
            done = true;
            break;
        }
        if gtd_new >= 0.0 {
            bracket = vec![
                (t_prev, f_prev, g_prev, gtd_prev),
                (t, f_new, g_new, gtd_new),
            ];
            break;
        }
        let (min_step, max_step) = (t + 0.01 * (t - t_prev), t * 10.0);
        let next = cubic_interpolate(
            t_prev,
            f_prev,
            gtd_prev,
            t,
            f_new,
            gtd_new,
            (min_step, max_step),
        );
        (t_prev, f_prev, g_prev, gtd_prev) = (t, f_new, g_new, gtd_new);
        t = next;
        (f_new, g_new) = eval_at(f, x, t, d)?;
        evals += 1;
        gtd_new = dot(&g_new, d);
        iters += 1;
        if iters == max_ls {
            bracket = vec![(0.0, f0, g0.to_vec(), gtd0), (t, f_new, g_new, gtd_new)];
            break;
        }
    }
    // Zoom: shrink the bracket until the strong-Wolfe conditions hold.
    let mut insufficient = false;
    while !done && iters < max_ls && bracket.len() == 2 {
        if (bracket[1].0 - bracket[0].0).abs() * d_norm < tol_change {
            break;
        }
        let (lo, hi) = if bracket[0].1 <= bracket[1].1 {
            (0, 1)
        } else {
            (1, 0)
        };
        let (a, b) = (&bracket[0], &bracket[1]);
        let mut t_new =
            cubic_interpolate(a.0, a.1, a.3, b.0, b.1, b.3, (a.0.min(b.0), a.0.max(b.0)));
        // Keep away from the ends: an interpolant stuck at an edge makes no progress.
        let (bmin, bmax) = (a.0.min(b.0), a.0.max(b.0));
        let eps = 0.1 * (bmax - bmin);
        if (bmax - t_new).min(t_new - bmin) < eps {
            if insufficient || t_new >= bmax || t_new <= bmin {
                t_new = if (t_new - bmax).abs() < (t_new - bmin).abs() {
                    bmax - eps
                } else {
                    bmin + eps
                };
                insufficient = false;
            } else {
                insufficient = true;
            }
        } else {
            insufficient = false;
        }
        let (fv, gv) = eval_at(f, x, t_new, d)?;
        evals += 1;
        iters += 1;
        let gtd = dot(&gv, d);
        if fv > f0 + c1 * t_new * gtd0 || fv >= bracket[lo].1 {
            bracket[hi] = (t_new, fv, gv, gtd);
        } else {
            if gtd.abs() <= -c2 * gtd0 {
                done = true;
            } else if gtd * (bracket[hi].0 - bracket[lo].0) >= 0.0 {
                bracket[hi] = bracket[lo].clone();
            }
            bracket[lo] = (t_new, fv, gv, gtd);
        }
    }
    let best = if bracket.len() == 1 || bracket[0].1 <= bracket[1].1 {
        bracket.swap_remove(0)
    } else {
        bracket.swap_remove(1)
    };
    Ok((best.1, best.2, best.0, evals))
}

impl Lbfgs {
    /// A fresh optimiser.
    ///
    /// # Errors
    /// A history of 0 or a non-positive learning rate.
    pub fn new(cfg: LbfgsConfig) -> Result<Lbfgs> {
        if cfg.history == 0 || cfg.lr.is_nan() || cfg.lr <= 0.0 {
            return Err(Error::arg(
                "Lbfgs",
                format!("history {} and lr {} must be positive", cfg.history, cfg.lr),
            ));
        }
        Ok(Lbfgs {
            cfg,
            s: vec![],
            y: vec![],
            rho: std::collections::VecDeque::new(),
            last: None,
            iterations: 0,
        })
    }

    /// Iterations done.
    pub fn iterations(&self) -> usize {
        self.iterations
    }

    /// One iteration from `x` (updated in place). `f` returns the loss and gradient at a point.
    ///
    /// # Errors
    /// Errors of `f`; a non-finite loss.
    pub fn step(&mut self, x: &mut [f64], f: &mut Objective<'_>) -> Result<LbfgsStep> {
        let mut evaluations = 0;
        let (loss, grad) = match self.last.take() {
            Some(v) => v,
            None => {
                evaluations += 1;
                f(x)?
            }
        };
        if !loss.is_finite() {
            return Err(Error::NonFinite {
                step: self.iterations as u64,
                epoch: 0,
                value: loss as f32,
            });
        }
        if max_abs(&grad) <= self.cfg.tolerance_grad {
            self.last = Some((loss, grad));
            return Ok(LbfgsStep {
                loss,
                evaluations,
                converged: true,
            });
        }
        // Two-loop recursion: d = -H g.
        let k = self.s.len();
        let mut q: Vec<f64> = grad.iter().map(|g| -g).collect();
        let mut alpha = vec![0.0; k];
        for i in (0..k).rev() {
            alpha[i] = self.rho[i] * dot(&self.s[i], &q);
            axpy(&mut q, -alpha[i], &self.y[i]);
        }
        if k > 0 {
            let gamma = dot(&self.s[k - 1], &self.y[k - 1]) / dot(&self.y[k - 1], &self.y[k - 1]);
            q.iter_mut().for_each(|v| *v *= gamma);
        }
        for i in 0..k {
            let beta = self.rho[i] * dot(&self.y[i], &q);
            axpy(&mut q, alpha[i] - beta, &self.s[i]);
        }
        let d = q;
        let gtd = dot(&grad, &d);
        if gtd > -self.cfg.tolerance_change {
            self.last = Some((loss, grad));
            return Ok(LbfgsStep {
                loss,
                evaluations,
                converged: true,
            });
        }
        // The first step is scaled so that it moves at most lr in the largest coordinate.
        let t0 = if self.iterations == 0 {
            (1.0f64).min(1.0 / grad.iter().map(|g| g.abs()).sum::<f64>()) * self.cfg.lr
        } else {
            self.cfg.lr
        };
        let (new_loss, new_grad, t, evals) = if self.cfg.line_search {
            strong_wolfe(
                f,
                x,
                t0,
                &d,
                loss,
                &grad,
                gtd,
                self.cfg.max_line_search,
                self.cfg.tolerance_change,
            )?
        } else {
            let (fl, gv) = eval_at(f, x, t0, &d)?;
            (fl, gv, t0, 1)
        };
        evaluations += evals;
        let s: Vec<f64> = d.iter().map(|v| v * t).collect();
        x.iter_mut().zip(&s).for_each(|(xi, si)| *xi += si);
        let step_max = max_abs(&s);
        let s: Vec<f32> = s.iter().map(|&v| v as f32).collect();
        let y: Vec<f32> = new_grad
            .iter()
            .zip(&grad)
            .map(|(a, b)| (a - b) as f32)
            .collect();
        // Keep the pair only if it has positive curvature (keeps H positive definite); rho
        // from the stored f32 values, so the recursion is consistent with what it reads (a pair
        // beyond f32's range would make it infinite and is dropped too).
        let ys = dot(&y, &s);
        if ys > 1e-10 && ys.is_finite() {
            if self.s.len() == self.cfg.history {
                self.s.remove(0);
                self.y.remove(0);
                self.rho.pop_front();
            }
            self.s.push(s);
            self.y.push(y);
            self.rho.push_back(1.0 / ys);
        }
        self.iterations += 1;
        let converged = step_max <= self.cfg.tolerance_change
            || (new_loss - loss).abs() < self.cfg.tolerance_change;
        self.last = Some((new_loss, new_grad));
        Ok(LbfgsStep {
            loss: new_loss,
            evaluations,
            converged,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rosenbrock(x: &[f64]) -> Result<(f64, Vec<f64>)> {
        let (a, b) = (x[0], x[1]);
        let f = (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2);
        Ok((
            f,
            vec![
                -2.0 * (1.0 - a) - 400.0 * a * (b - a * a),
                200.0 * (b - a * a),
            ],
        ))
    }

    /// Tighter stopping tolerances than the defaults, so the tests measure the accuracy the
    /// method reaches rather than where the default rule stops.
    fn precise() -> LbfgsConfig {
        LbfgsConfig {
            tolerance_change: 1e-15,
            tolerance_grad: 1e-12,
            ..LbfgsConfig::default()
        }
    }

    #[test]
    fn minimises_rosenbrock_with_the_line_search() {
        let mut opt = Lbfgs::new(precise()).unwrap();
        let mut x = vec![-1.5, 2.0];
        let mut f = rosenbrock;
        let mut last = f64::INFINITY;
        for _ in 0..100 {
            let st = opt.step(&mut x, &mut f).unwrap();
            assert!(
                st.loss <= last + 1e-12,
                "a strong-Wolfe step never increases the loss"
            );
            last = st.loss;
            if st.converged {
                break;
            }
        }
        assert!(last < 1e-10, "loss {last}");
        assert!(
            (x[0] - 1.0).abs() < 1e-4 && (x[1] - 1.0).abs() < 1e-4,
            "{x:?}"
        );
    }

    #[test]
    fn long_vectors_take_the_parallel_path_to_the_same_answer() {
        // 100,000 coordinates (above PAR_LEN): f = sum(c_i (x_i - t_i)^2) with five distinct
        // curvatures; the parallel dot products and updates must still converge, and the
        // chunked reduction must not depend on scheduling (two runs agree bit for bit).
        let n = 100_000;
        let run = || {
            let mut f = |x: &[f64]| -> Result<(f64, Vec<f64>)> {
                let c = |i: usize| 1.0 + (i % 5) as f64;
                let t = |i: usize| (i % 7) as f64 - 3.0;
                let v = x
                    .iter()
                    .enumerate()
                    .map(|(i, &xi)| c(i) * (xi - t(i)).powi(2))
                    .sum();
                let g = x
                    .iter()
                    .enumerate()
                    .map(|(i, &xi)| 2.0 * c(i) * (xi - t(i)))
                    .collect();
                Ok((v, g))
            };
            let mut opt = Lbfgs::new(precise()).unwrap();
            let mut x = vec![0.0; n];
            for _ in 0..40 {
                if opt.step(&mut x, &mut f).unwrap().converged {
                    break;
                }
            }
            x
        };
        let (a, b) = (run(), run());
        assert_eq!(a, b);
        for (i, v) in a.iter().enumerate() {
            assert!((v - ((i % 7) as f64 - 3.0)).abs() < 1e-5, "x[{i}] = {v}");
        }
    }

    #[test]
    fn solves_a_quadratic_in_few_iterations() {
        // f = sum(c_i (x_i - i)^2): L-BFGS with exact curvature pairs converges in about n steps.
        let c = [1.0, 4.0, 9.0, 16.0, 25.0];
        let mut f = |x: &[f64]| -> Result<(f64, Vec<f64>)> {
            let v = x
                .iter()
                .enumerate()
                .map(|(i, &xi)| c[i] * (xi - i as f64).powi(2))
                .sum();
            Ok((
                v,
                x.iter()
                    .enumerate()
                    .map(|(i, &xi)| 2.0 * c[i] * (xi - i as f64))
                    .collect(),
            ))
        };
        let mut opt = Lbfgs::new(precise()).unwrap();
        let mut x = vec![0.0; 5];
        let mut iters = 0;
        while !opt.step(&mut x, &mut f).unwrap().converged && iters < 30 {
            iters += 1;
        }
        assert!(iters <= 12, "{iters} iterations");
        for (i, v) in x.iter().enumerate() {
            assert!((v - i as f64).abs() < 1e-6, "{x:?}");
        }
        assert!(
            Lbfgs::new(LbfgsConfig {
                history: 0,
                ..LbfgsConfig::default()
            })
            .is_err()
        );
    }
}
