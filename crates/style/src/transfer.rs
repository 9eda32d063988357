//! Gradient descent on the pixels of G (seed section 2.2): the total cost eq. 8 over a content
//! layer and several style layers, minimised with L-BFGS (Gatys et al.'s choice, the default) or
//! Adam. Targets are computed once without recording gradients; each evaluation builds one
//! graph from the current pixels and takes the gradient with respect to them.

use std::cell::RefCell;
use std::time::Instant;

use autograd::{Graph, Var};
use nn::lbfgs::{Lbfgs, LbfgsConfig};
use nn::optim::{Adam, Optimizer as _};
use nn::{Ctx, Mode, ParamKind, ParamStore};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tensor::Tensor;

use crate::cost::{content_cost, gram, style_layer_cost, total_variation};
use crate::net::LossNetwork;

/// The optimiser of the pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Optimizer {
    /// L-BFGS with a strong-Wolfe line search (history 100).
    Lbfgs,
    /// Adam with this learning rate (pixels are in [0, 1]).
    Adam {
        /// Learning rate.
        lr: f32,
    },
}

/// Where G starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// Uniform white noise in [0, 1] (the seed's algorithm).
    Noise,
    /// The content image.
    Content,
}

/// Everything that defines the cost and the optimisation.
#[derive(Debug, Clone)]
pub struct TransferConfig {
    /// Content layer name (eq. 9).
    pub content_layer: String,
    /// Style layer names (eq. 13).
    pub style_layers: Vec<String>,
    /// lambda per style layer (eq. 13); empty = equal weights summing to 1.
    pub style_layer_weights: Vec<f32>,
    /// alpha of eq. 8.
    pub alpha: f32,
    /// beta of eq. 8.
    pub beta: f32,
    /// Weight of the total-variation term (0 = off).
    pub tv: f32,
    /// Optimiser.
    pub optimizer: Optimizer,
    /// Iterations.
    pub iterations: usize,
    /// Start point (ignored when an initial image is passed to [`transfer`]).
    pub init: Init,
    /// Seed of the noise.
    pub seed: u64,
}

/// One iteration's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    /// Iteration (1-based).
    pub iteration: usize,
    /// Total of eq. 8 (+ TV).
    pub loss: f64,
    /// alpha * J_content.
    pub content: f64,
    /// beta * J_style.
    pub style: f64,
    /// tv * J_TV.
    pub tv: f64,
    /// Seconds since the start.
    pub seconds: f64,
    /// Evaluations of the cost (forward + backward) so far; L-BFGS's line search may take
    /// several per iteration.
    pub evaluations: usize,
}

/// The result of [`transfer`].
#[derive(Debug, Clone)]
pub struct Transferred {
    /// The lowest-loss image seen, `(1, 3, H, W)`, not clamped.
    pub image: Tensor,
    /// Its loss.
    pub best_loss: f64,
    /// Per-iteration log.
    pub history: Vec<Progress>,
}

/// Precomputed targets and layer indices: everything that stays fixed while G changes.
pub struct Targets {
    content_tap: usize,
    style_taps: Vec<usize>,
    lambdas: Vec<f32>,
    content: Tensor,
    grams: Vec<Tensor>,
}

impl Targets {
    /// Computes the content activation and the blended style Gram matrices once (no graph is
    /// recorded). `styles` are `(image, blend weight)`; weights are normalised to sum to 1.
    ///
    /// # Errors
    /// Unknown layers, a weight count that does not match the layers, no style image, images
    /// too small for the network.
    pub fn new(
        net: &LossNetwork,
        content: &Tensor,
        styles: &[(Tensor, f32)],
        cfg: &TransferConfig,
    ) -> nn::Result<Targets> {
        if styles.is_empty() {
            return Err(nn::Error::arg("style", "needs at least one style image"));
        }
        if cfg.style_layers.is_empty() {
            return Err(nn::Error::arg("style", "needs at least one style layer"));
        }
        let content_tap = net.layer_index(&cfg.content_layer)?;
        let style_taps: Vec<usize> = cfg
            .style_layers
            .iter()
            .map(|l| net.layer_index(l))
            .collect::<nn::Result<_>>()?;
        let lambdas = if cfg.style_layer_weights.is_empty() {
            vec![1.0 / style_taps.len() as f32; style_taps.len()]
        } else if cfg.style_layer_weights.len() == style_taps.len() {
            cfg.style_layer_weights.clone()
        } else {
            return Err(nn::Error::arg(
                "style",
                format!(
                    "{} style layer weights for {} style layers",
                    cfg.style_layer_weights.len(),
                    style_taps.len()
                ),
            ));
        };
        let total_w: f32 = styles.iter().map(|s| s.1).sum();
        if total_w <= 0.0 || styles.iter().any(|s| s.1 < 0.0) {
            return Err(nn::Error::arg(
                "style",
                "blend weights must be >= 0 with a positive sum",
            ));
        }
        let g = Graph::no_grad();
        let cx = Ctx::new(&g, &net.store, Mode::Eval, 0);
        let c = net
            .features(&cx, &g.constant(content.clone()), &[content_tap])?
            .remove(0)
            .value()
            .clone();
        let mut grams: Vec<Option<Tensor>> = vec![None; style_taps.len()];
        for (img, w) in styles {
            let acts = net.features(&cx, &g.constant(img.clone()), &style_taps)?;
            for (slot, a) in grams.iter_mut().zip(&acts) {
                let gm = gram(a)?.value().scale(w / total_w);
                *slot = Some(match slot.take() {
                    Some(prev) => prev.add(&gm)?,
                    None => gm,
                });
            }
        }
        Ok(Targets {
            content_tap,
            style_taps,
            lambdas,
            content: c,
            grams: grams
                .into_iter()
                .map(|g| g.expect("one style at least"))
                .collect(),
        })
    }
}

/// The loss of eq. 8 (+ TV) for image `x` (a var of `g`), and its parts (weighted).
///
/// # Errors
/// Shape errors (an image of another size than the content's).
pub fn total_cost<'g>(
    net: &LossNetwork,
    targets: &Targets,
    cfg: &TransferConfig,
    cx: &Ctx<'g>,
    x: &Var<'g>,
) -> nn::Result<(Var<'g>, [f64; 3])> {
    let g = x.graph();
    let mut taps = targets.style_taps.clone();
    taps.push(targets.content_tap);
    let mut acts = net.features(cx, x, &taps)?;
    let content_act = acts.pop().expect("content tap");
    let jc = content_cost(&g.constant(targets.content.clone()), &content_act)?.scale(cfg.alpha);
    let mut js: Option<Var<'g>> = None;
    for ((a, gm), &lambda) in acts.iter().zip(&targets.grams).zip(&targets.lambdas) {
        let term = style_layer_cost(&g.constant(gm.clone()), a)?.scale(lambda);
        js = Some(match js {
            Some(s) => s.add(&term)?,
            None => term,
        });
    }
    let js = js.expect("one style layer at least").scale(cfg.beta);
    let mut total = jc.add(&js)?;
    let mut tv_value = 0.0;
    if cfg.tv > 0.0 {
        let tv = total_variation(x)?.scale(cfg.tv);
        tv_value = tv.value().to_scalar()? as f64;
        total = total.add(&tv)?;
    }
    let parts = [
        jc.value().to_scalar()? as f64,
        js.value().to_scalar()? as f64,
        tv_value,
    ];
    Ok((total, parts))
}

/// White noise in [0, 1] of `shape`, from `seed`.
pub fn noise_image(shape: &[usize], seed: u64) -> Tensor {
    Tensor::rand_uniform(shape, 0.0, 1.0, &mut ChaCha8Rng::seed_from_u64(seed))
}

/// Minimises the cost over the pixels of G, starting from `start` (or from `cfg.init`).
/// `on_iteration` sees every iteration's numbers and the current image; returning `false`
/// stops early. Returns the lowest-loss image.
///
/// # Errors
/// As [`total_cost`]; a non-finite loss.
pub fn transfer(
    net: &LossNetwork,
    targets: &Targets,
    content: &Tensor,
    cfg: &TransferConfig,
    start: Option<Tensor>,
    mut on_iteration: impl FnMut(&Progress, &Tensor) -> bool,
) -> nn::Result<Transferred> {
    let shape = content.shape().to_vec();
    let x0 = start.unwrap_or_else(|| match cfg.init {
        Init::Noise => noise_image(&shape, cfg.seed),
        Init::Content => content.clone(),
    });
    let t0 = Instant::now();
    let mut history = vec![];
    let mut best: Option<(f64, Tensor)> = None;
    let keep_best = |loss: f64, img: &Tensor, best: &mut Option<(f64, Tensor)>| {
        if best.as_ref().is_none_or(|b| loss < b.0) {
            *best = Some((loss, img.clone()));
        }
    };
    match cfg.optimizer {
        Optimizer::Lbfgs => {
            let last_parts = RefCell::new([0.0f64; 3]);
            let mut objective = |x: &[f64]| -> nn::Result<(f64, Vec<f64>)> {
                let g = Graph::new();
                let cx = Ctx::new(&g, &net.store, Mode::Eval, 0);
                let img = Tensor::from_vec(x.iter().map(|&v| v as f32).collect(), &shape)?;
                let leaf = g.leaf(img);
                let (loss, parts) = total_cost(net, targets, cfg, &cx, &leaf)?;
                *last_parts.borrow_mut() = parts;
                let grads = g.backward(&loss)?;
                let grad = grads
                    .get(&leaf)
                    .map(|t| t.to_vec().iter().map(|&v| v as f64).collect())
                    .unwrap_or_else(|| vec![0.0; x.len()]);
                Ok((loss.value().to_scalar()? as f64, grad))
            };
            let mut opt = Lbfgs::new(LbfgsConfig::default())?;
            let mut x: Vec<f64> = x0.to_vec().iter().map(|&v| v as f64).collect();
            let mut evaluations = 0;
            for it in 0..cfg.iterations {
                let step = opt.step(&mut x, &mut objective)?;
                evaluations += step.evaluations;
                let img = Tensor::from_vec(x.iter().map(|&v| v as f32).collect(), &shape)?;
                let parts = *last_parts.borrow();
                let p = Progress {
                    iteration: it + 1,
                    loss: step.loss,
                    content: parts[0],
                    style: parts[1],
                    tv: parts[2],
                    seconds: t0.elapsed().as_secs_f64(),
                    evaluations,
                };
                keep_best(step.loss, &img, &mut best);
                let go_on = on_iteration(&p, &img);
                history.push(p);
                if step.converged || !go_on {
                    break;
                }
            }
        }
        Optimizer::Adam { lr } => {
            // The image is the one parameter of its own store, so nn's Adam updates it; the
            // network's weights stay constants of the same graph.
            let mut pixels = ParamStore::new();
            let id = pixels.add("image", x0, ParamKind::Weight)?;
            let mut opt = Adam::new(lr);
            for it in 0..cfg.iterations {
                let g = Graph::new();
                let cx = Ctx::new(&g, &net.store, Mode::Eval, 0);
                let cx_pixels = Ctx::new(&g, &pixels, Mode::Eval, 0);
                let (loss, parts) = total_cost(net, targets, cfg, &cx, cx_pixels.param(id))?;
                let lv = loss.value().to_scalar()? as f64;
                if !lv.is_finite() {
                    return Err(nn::Error::NonFinite {
                        step: it as u64,
                        epoch: 0,
                        value: lv as f32,
                    });
                }
                // The loss is of the pixels before this step: keep that image if best.
                keep_best(lv, pixels.get(id), &mut best);
                let grads = cx_pixels.param_grads(&g.backward(&loss)?);
                opt.step(&mut pixels, &grads)?;
                let p = Progress {
                    iteration: it + 1,
                    loss: lv,
                    content: parts[0],
                    style: parts[1],
                    tv: parts[2],
                    seconds: t0.elapsed().as_secs_f64(),
                    evaluations: it + 1,
                };
                let go_on = on_iteration(&p, pixels.get(id));
                history.push(p);
                if !go_on {
                    break;
                }
            }
        }
    }
    let (best_loss, image) = best.ok_or_else(|| nn::Error::arg("style", "no iteration ran"))?;
    Ok(Transferred {
        image,
        best_loss,
        history,
    })
}
