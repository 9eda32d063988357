//! Triplet training (FaceNet, seed eq. 6-7) with online mining in identity-balanced batches.

use std::time::Instant;

use autograd::Graph;
use nn::loss::{Reduction, triplet};
use nn::optim::{Adam, Optimizer};
use nn::train::{Augment, augment};
use nn::{Ctx, Mode, Module, ParamStore};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;
use tensor::Tensor;

use crate::data::{Identities, pk_batch};
use crate::mining::{Mining, active_fraction, pairwise_sq_distances, select_triplets};
use crate::model::EmbeddingNet;

/// Options of [`train_triplet`].
#[derive(Debug, Clone)]
pub struct TripletConfig {
    /// Epochs.
    pub epochs: usize,
    /// Batches per epoch.
    pub steps_per_epoch: usize,
    /// Identities per batch.
    pub p: usize,
    /// Images per identity per batch.
    pub k: usize,
    /// The margin alpha of eq. 5-6 (on squared distances of unit vectors, so in [0, 4]).
    pub margin: f32,
    /// Triplet selection.
    pub mining: Mining,
    /// Adam learning rate.
    pub lr: f32,
    /// Seed of batches, augmentation and negatives.
    pub seed: u64,
    /// Training-time augmentation.
    pub augment: Option<Augment>,
}

/// One epoch's numbers (the per-epoch log the issue asks for).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TripletEpoch {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Mean triplet loss.
    pub loss: f32,
    /// Fraction of selected triplets that violate the margin (produce a gradient).
    pub active_fraction: f32,
    /// Mean d(A, P) of selected triplets.
    pub mean_dap: f32,
    /// Mean d(A, N) of selected triplets.
    pub mean_dan: f32,
    /// Wall time.
    pub seconds: f64,
}

fn stack(ts: &[Tensor]) -> nn::Result<Tensor> {
    let views: Vec<Tensor> = ts
        .iter()
        .map(|t| t.unsqueeze(0))
        .collect::<Result<_, _>>()?;
    Ok(Tensor::cat(&views.iter().collect::<Vec<_>>(), 0)?)
}

/// Trains `net` with the triplet loss; returns the per-epoch log.
///
/// # Errors
/// Fewer than two identities with two images; model errors; a non-finite loss.
pub fn train_triplet(
    net: &EmbeddingNet,
    store: &mut ParamStore,
    train: &Identities,
    cfg: &TripletConfig,
    mut on_epoch: impl FnMut(&TripletEpoch),
) -> nn::Result<Vec<TripletEpoch>> {
    if train.images.iter().filter(|v| v.len() >= 2).count() < 2 {
        return Err(nn::Error::InvalidArgument {
            op: "train_triplet",
            reason: "needs at least two identities with two or more images".into(),
        });
    }
    let mut opt = Adam::new(cfg.lr);
    let mut log = vec![];
    let mut step: u64 = 0;
    for epoch in 0..cfg.epochs {
        let t0 = Instant::now();
        let (mut loss_sum, mut act_sum, mut dap_sum, mut dan_sum, mut n) =
            (0.0f64, 0.0f64, 0.0f64, 0.0f64, 0usize);
        for s in 0..cfg.steps_per_epoch {
            let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ (epoch as u64) << 20 ^ s as u64);
            let batch = pk_batch(train, cfg.p, cfg.k, &mut rng);
            let labels: Vec<usize> = batch.iter().map(|&(i, _)| i).collect();
            let images: Vec<Tensor> = batch
                .par_iter()
                .enumerate()
                .map(|(j, &(i, m))| match &cfg.augment {
                    Some(a) => augment(
                        &train.images[i][m],
                        a,
                        &mut ChaCha8Rng::seed_from_u64(cfg.seed ^ step << 8 ^ j as u64),
                    ),
                    None => train.images[i][m].clone(),
                })
                .collect();
            let g = Graph::new();
            let cx = Ctx::new(&g, store, Mode::Train, cfg.seed ^ step);
            let emb = net.forward(&cx, &g.constant(stack(&images)?))?;
            let nb = labels.len();
            let dist = pairwise_sq_distances(&emb.value().to_vec(), nb, net.config.dim);
            let trips = select_triplets(cfg.mining, &dist, &labels, cfg.margin, &mut rng);
            step += 1;
            if trips.is_empty() {
                continue;
            }
            act_sum += active_fraction(&trips, &dist, nb, cfg.margin) as f64;
            dap_sum += trips
                .iter()
                .map(|&(a, p, _)| dist[a * nb + p] as f64)
                .sum::<f64>()
                / trips.len() as f64;
            dan_sum += trips
                .iter()
                .map(|&(a, _, ng)| dist[a * nb + ng] as f64)
                .sum::<f64>()
                / trips.len() as f64;
            let pick = |f: fn(&(usize, usize, usize)) -> usize| {
                trips.iter().map(f).collect::<Vec<usize>>()
            };
            let (ai, pi, ni) = (pick(|t| t.0), pick(|t| t.1), pick(|t| t.2));
            let l = triplet(
                &emb.index_select(0, &ai)?,
                &emb.index_select(0, &pi)?,
                &emb.index_select(0, &ni)?,
                cfg.margin,
                Reduction::Mean,
            )?;
            let lv = l.value().to_scalar()?;
            if !lv.is_finite() {
                return Err(nn::Error::NonFinite {
                    step: step - 1,
                    epoch,
                    value: lv,
                });
            }
            let grads = cx.param_grads(&g.backward(&l)?);
            cx.apply_updates(store)?;
            opt.step(store, &grads)?;
            loss_sum += lv as f64;
            n += 1;
        }
        let d = n.max(1) as f64;
        let rec = TripletEpoch {
            epoch: epoch + 1,
            loss: (loss_sum / d) as f32,
            active_fraction: (act_sum / d) as f32,
            mean_dap: (dap_sum / d) as f32,
            mean_dan: (dan_sum / d) as f32,
            seconds: t0.elapsed().as_secs_f64(),
        };
        on_epoch(&rec);
        log.push(rec);
    }
    Ok(log)
}

/// Embeddings of `images` in eval mode, `n x dim` row-major.
///
/// # Errors
/// Model errors.
pub fn embed(
    net: &EmbeddingNet,
    store: &ParamStore,
    images: &[&Tensor],
    batch: usize,
) -> nn::Result<Vec<f32>> {
    let mut out = Vec::with_capacity(images.len() * net.config.dim);
    for chunk in images.chunks(batch.max(1)) {
        let g = Graph::no_grad();
        let cx = Ctx::new(&g, store, Mode::Eval, 0);
        let x = stack(&chunk.iter().map(|t| (*t).clone()).collect::<Vec<_>>())?;
        out.extend(net.forward(&cx, &g.constant(x))?.value().to_vec());
    }
    Ok(out)
}
