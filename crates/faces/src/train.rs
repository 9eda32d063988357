//! Training a [`FaceModel`] on identity-balanced `P x K` batches with one of four objectives:
//! the FaceNet triplet loss with online mining (seed eq. 6-7), the Siamese contrastive loss on
//! pairs, or a DeepFace head (eq. 3 or eq. 4) with binary cross-entropy on pairs, end to end or
//! on a frozen embedding. Every batch is embedded once; pairs and triplets index into it, so the
//! twins share weights by construction.

use std::path::PathBuf;

use autograd::{Graph, Var};
use nn::ParamStore;
use nn::loss::{Reduction, bce_with_logits, contrastive, triplet};
use nn::optim::{Adam, LrSchedule, Optimizer, Schedule};
use nn::train::{
    Augment, EpochEnd, Observer, RunOptions, StepAt, TrainTask, augment, derive_seed, train_step,
};
use nn::{Ctx, Mode, Module};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tensor::Tensor;

use crate::data::{Identities, pk_batch};
use crate::mining::{Mining, active_fraction, pairwise_sq_distances, select_triplets};
use crate::model::{FaceModel, embed, stack};

/// What the model is trained to do.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Objective {
    /// FaceNet's triplet loss with margin `alpha` (on squared distances of unit vectors).
    Triplet {
        /// Triplet selection in the batch.
        mining: Mining,
        /// alpha.
        margin: f32,
    },
    /// Hadsell et al.'s contrastive loss on pairs, margin on the (unsquared) distance.
    Contrastive {
        /// Different pairs closer than this are pushed apart.
        margin: f32,
    },
    /// Binary cross-entropy of the model's DeepFace head on pairs.
    DeepFaceHead,
}

/// Options of [`train`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The objective.
    pub objective: Objective,
    /// Epochs.
    pub epochs: usize,
    /// Batches per epoch.
    pub steps_per_epoch: usize,
    /// Identities per batch.
    pub p: usize,
    /// Images per identity per batch.
    pub k: usize,
    /// Peak Adam learning rate (one epoch of linear warm-up, then cosine decay to 1 %).
    pub lr: f32,
    /// Decoupled weight decay (AdamW); 0 for plain Adam.
    pub weight_decay: f32,
    /// Seed of batches, augmentation and negatives.
    pub seed: u64,
    /// Training-time augmentation.
    pub augment: Option<Augment>,
    /// Train only the head (the embedding is frozen); needs a model with a head.
    pub frozen_embedding: bool,
}

/// Where [`train`] keeps its checkpoint.
#[derive(Debug, Clone, Default)]
pub struct CheckpointOptions {
    /// Written atomically after every epoch (weights, optimizer, log).
    pub path: Option<PathBuf>,
    /// Continue from `path` (same model and configuration), skipping finished epochs.
    pub resume: bool,
}

/// One epoch's numbers (the per-epoch log the issue asks for).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Mean loss.
    pub loss: f32,
    /// Triplets: the fraction of selected triplets that violate the margin (produce a
    /// gradient). Pairs: the fraction of pairs with a non-zero loss term (contrastive) or on
    /// the wrong side of the decision (heads).
    pub active_fraction: f32,
    /// Mean score of same-identity pairs (triplets: d(A,P) of the selected triplets).
    pub mean_same: f32,
    /// Mean score of different-identity pairs (triplets: d(A,N)).
    pub mean_different: f32,
    /// Learning rate at the epoch's end.
    pub lr: f32,
    /// Wall time.
    pub seconds: f64,
}

/// Per-batch statistics before averaging.
struct BatchStats {
    loss: f32,
    active: f32,
    same: f32,
    different: f32,
}

fn mean(v: impl Iterator<Item = f32>) -> f32 {
    let (s, n) = v.fold((0.0f64, 0usize), |(s, n), x| (s + x as f64, n + 1));
    (s / n.max(1) as f64) as f32
}

/// Every same-identity pair of the batch and as many different-identity pairs, drawn at random:
/// a balanced set of `(i, j, same)`.
pub fn balanced_pairs(labels: &[usize], rng: &mut impl Rng) -> Vec<(usize, usize, bool)> {
    let n = labels.len();
    let mut out = vec![];
    let mut negatives = vec![];
    for i in 0..n {
        for j in i + 1..n {
            if labels[i] == labels[j] {
                out.push((i, j, true));
            } else {
                negatives.push((i, j, false));
            }
        }
    }
    let positives = out.len();
    out.extend(negatives.choose_multiple(rng, positives));
    out
}

fn pair_config_text(model: &FaceModel, cfg: &TrainConfig) -> String {
    format!(
        "{}\n{}",
        model.spec_json(),
        serde_json::to_string(cfg).expect("serialisable")
    )
}

/// The most images in one training batch (P x K).
pub const MAX_BATCH: usize = 4096;

/// Trains `model` on `data`; returns the per-epoch log (including epochs restored from a
/// checkpoint when resuming).
///
/// # Errors
/// A batch of P x K outside 2..=[`MAX_BATCH`]; fewer than two identities with two images; a
/// head objective without a head (or a frozen embedding without one); a resume checkpoint for
/// another model or configuration; a non-finite loss (naming the step); checkpoint I/O.
pub fn train(
    model: &mut FaceModel,
    data: &Identities,
    cfg: &TrainConfig,
    ck: &CheckpointOptions,
    observer: &mut dyn Observer<EpochLog>,
) -> nn::Result<Vec<EpochLog>> {
    if data.images.iter().filter(|v| v.len() >= 2).count() < 2 {
        return Err(nn::Error::arg(
            "faces::train",
            format!(
                "needs at least two identities with two or more images; the data has {} identities, {} of them with two or more",
                data.len(),
                data.images.iter().filter(|v| v.len() >= 2).count()
            ),
        ));
    }
    // P people x K images is one batch through the network: bounded before anything is drawn.
    if !(2..=MAX_BATCH).contains(&cfg.p)
        || !(2..=MAX_BATCH).contains(&cfg.k)
        || cfg.p * cfg.k > MAX_BATCH
    {
        return Err(nn::Error::arg(
            "faces::train",
            format!(
                "a batch of {} people x {} images: each must be at least 2 and the batch at most {MAX_BATCH} images (--people-per-batch, --images-per-person)",
                cfg.p, cfg.k
            ),
        ));
    }
    let needs_head = matches!(cfg.objective, Objective::DeepFaceHead) || cfg.frozen_embedding;
    if needs_head && model.head.is_none() {
        return Err(nn::Error::arg(
            "faces::train",
            "the DeepFace objective and --frozen need a model with a head",
        ));
    }
    if cfg.frozen_embedding {
        model.store.freeze("");
        model.store.unfreeze("head");
    }
    let steps = cfg.steps_per_epoch.max(1) as u64;
    let schedule = LrSchedule {
        base_lr: cfg.lr,
        warmup: steps,
        schedule: Schedule::Cosine {
            total: (cfg.epochs as u64 * steps).saturating_sub(steps).max(1),
            min_lr: cfg.lr * 0.01,
        },
    };
    let mut opt = Adam::adamw(cfg.lr, cfg.weight_decay);
    let opts = RunOptions {
        epochs: cfg.epochs,
        schedule: Some(schedule),
        checkpoint: ck.path.clone(),
        checkpoint_every: 1,
        resume: ck.resume,
        stop_after: None,
        config_text: pair_config_text(model, cfg),
    };
    let FaceModel {
        net,
        head,
        spec,
        store,
        ..
    } = model;
    let mut task = PairTask {
        net,
        head: head.as_ref(),
        dim: spec.embedding.dim,
        data,
        cfg,
    };
    Ok(nn::train::run(&mut task, store, &mut opt, &opts, observer)?.history)
}

/// Face training on the engine: a `P x K` batch embedded once per step, the objective's
/// pairs or triplets indexed into it.
struct PairTask<'a> {
    net: &'a crate::model::EmbeddingNet,
    head: Option<&'a crate::heads::DeepFaceHead>,
    dim: usize,
    data: &'a Identities,
    cfg: &'a TrainConfig,
}

impl TrainTask for PairTask<'_> {
    type Step = BatchStats;
    type Epoch = EpochLog;

    fn steps_per_epoch(&self) -> usize {
        self.cfg.steps_per_epoch.max(1)
    }

    fn step(
        &mut self,
        store: &mut ParamStore,
        opt: &mut dyn Optimizer,
        at: StepAt,
    ) -> nn::Result<Option<BatchStats>> {
        let (cfg, data) = (self.cfg, self.data);
        let mut rng =
            ChaCha8Rng::seed_from_u64(derive_seed(cfg.seed, at.epoch as u64, at.index as u64));
        let step = at.step;
        let rng = &mut rng;
        let batch = pk_batch(data, cfg.p, cfg.k, rng);
        let labels: Vec<usize> = batch.iter().map(|&(i, _)| i).collect();
        let images: Vec<Tensor> = batch
            .par_iter()
            .enumerate()
            .map(|(j, &(i, m))| match &cfg.augment {
                Some(a) => augment(
                    &data.images[i][m],
                    a,
                    &mut ChaCha8Rng::seed_from_u64(derive_seed(cfg.seed ^ 0xA5, step, j as u64)),
                ),
                None => data.images[i][m].clone(),
            })
            .collect();
        let g = Graph::new();
        let cx = Ctx::new(&g, store, Mode::Train, derive_seed(cfg.seed, 7, step));
        let emb = if cfg.frozen_embedding {
            let refs: Vec<&Tensor> = images.iter().collect();
            let values = embed(self.net, store, &refs, 64)?;
            g.constant(Tensor::from_vec(values, &[labels.len(), self.dim])?)
        } else {
            self.net.forward(&cx, &g.constant(stack(&images)?))?
        };
        let nb = labels.len();
        let dist = pairwise_sq_distances(&emb.value().to_vec(), nb, self.dim);
        let (loss, stats) = match cfg.objective {
            Objective::Triplet { mining, margin } => {
                let trips = select_triplets(mining, &dist, &labels, margin, rng);
                if trips.is_empty() {
                    return Ok(None);
                }
                let pick = |f: fn(&(usize, usize, usize)) -> usize| -> Vec<usize> {
                    trips.iter().map(f).collect()
                };
                let l = triplet(
                    &emb.index_select(0, &pick(|t| t.0))?,
                    &emb.index_select(0, &pick(|t| t.1))?,
                    &emb.index_select(0, &pick(|t| t.2))?,
                    margin,
                    Reduction::Mean,
                )?;
                let stats = BatchStats {
                    loss: 0.0,
                    active: active_fraction(&trips, &dist, nb, margin),
                    same: mean(trips.iter().map(|&(a, p, _)| dist[a * nb + p])),
                    different: mean(trips.iter().map(|&(a, _, n)| dist[a * nb + n])),
                };
                (l, stats)
            }
            Objective::Contrastive { margin } => {
                let pairs = balanced_pairs(&labels, rng);
                let (a, b, same) = split_pairs(&emb, &pairs)?;
                let l = contrastive(&a, &b, &same, margin)?;
                let active = mean(pairs.iter().map(|&(i, j, s)| {
                    let d2 = dist[i * nb + j];
                    (if s { d2 > 0.0 } else { d2.sqrt() < margin }) as u8 as f32
                }));
                let stats = pair_stats(&pairs, |i, j| dist[i * nb + j], active);
                (l, stats)
            }
            Objective::DeepFaceHead => {
                let head = self.head.expect("checked in train");
                let pairs = balanced_pairs(&labels, rng);
                let (a, b, same) = split_pairs(&emb, &pairs)?;
                let logits = head.logits(&cx, &a, &b)?;
                let targets: Vec<f32> = same.iter().map(|&s| s as u8 as f32).collect();
                let t = g.constant(Tensor::from_vec(targets, &[same.len()])?);
                let l = bce_with_logits(&logits, &t)?;
                let lv = logits.value().to_vec();
                let active = mean(
                    lv.iter()
                        .zip(&same)
                        .map(|(&z, &s)| ((z > 0.0) != s) as u8 as f32),
                );
                let score: Vec<f32> = lv.iter().map(|z| -z).collect();
                let mut k = 0;
                let stats = pair_stats(
                    &pairs,
                    |_, _| {
                        k += 1;
                        score[k - 1]
                    },
                    active,
                );
                (l, stats)
            }
        };
        let lv = train_step(&g, &cx, &loss, store, opt, at)?;
        Ok(Some(BatchStats { loss: lv, ..stats }))
    }

    fn progress(&self, steps: &[BatchStats]) -> String {
        steps
            .last()
            .map_or_else(String::new, |b| format!("loss {:.4}", b.loss))
    }

    fn end_epoch(
        &mut self,
        _store: &ParamStore,
        end: EpochEnd,
        stats: Vec<BatchStats>,
    ) -> nn::Result<EpochLog> {
        Ok(EpochLog {
            epoch: end.epoch + 1,
            loss: mean(stats.iter().map(|b| b.loss)),
            active_fraction: mean(stats.iter().map(|b| b.active)),
            mean_same: mean(stats.iter().map(|b| b.same)),
            mean_different: mean(stats.iter().map(|b| b.different)),
            lr: end.lr,
            seconds: end.seconds,
        })
    }
}

/// The two sides of `pairs` as `(N, dim)` rows of `emb`, and the labels.
fn split_pairs<'g>(
    emb: &Var<'g>,
    pairs: &[(usize, usize, bool)],
) -> nn::Result<(Var<'g>, Var<'g>, Vec<bool>)> {
    let ia: Vec<usize> = pairs.iter().map(|p| p.0).collect();
    let ib: Vec<usize> = pairs.iter().map(|p| p.1).collect();
    Ok((
        emb.index_select(0, &ia)?,
        emb.index_select(0, &ib)?,
        pairs.iter().map(|p| p.2).collect(),
    ))
}

fn pair_stats(
    pairs: &[(usize, usize, bool)],
    mut score: impl FnMut(usize, usize) -> f32,
    active: f32,
) -> BatchStats {
    let scored: Vec<(f32, bool)> = pairs.iter().map(|&(i, j, s)| (score(i, j), s)).collect();
    BatchStats {
        loss: 0.0,
        active,
        same: mean(scored.iter().filter(|p| p.1).map(|p| p.0)),
        different: mean(scored.iter().filter(|p| !p.1).map(|p| p.0)),
    }
}

/// Sets a fresh head's bias `b` midway between the summed comparisons of same and different
/// pairs of one batch ([`crate::heads::initial_bias`]); a no-op without a head. Returns `b`.
///
/// # Errors
/// Model errors.
pub fn init_head_bias(
    model: &mut FaceModel,
    data: &Identities,
    cfg: &TrainConfig,
) -> nn::Result<f32> {
    let Some(head) = model.head.clone() else {
        return Ok(0.0);
    };
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(cfg.seed, u64::MAX, 0));
    let batch = pk_batch(data, cfg.p, cfg.k, &mut rng);
    let labels: Vec<usize> = batch.iter().map(|&(i, _)| i).collect();
    let images: Vec<&Tensor> = batch.iter().map(|&(i, m)| &data.images[i][m]).collect();
    let dim = model.spec.embedding.dim;
    let values = embed(&model.net, &model.store, &images, 64)?;
    let pairs = balanced_pairs(&labels, &mut rng);
    let g = Graph::no_grad();
    let emb = g.constant(Tensor::from_vec(values, &[labels.len(), dim])?);
    let (a, b, same) = split_pairs(&emb, &pairs)?;
    let sums = head
        .features(&a, &b)?
        .sum_axes(&[1], false)?
        .value()
        .to_vec();
    let pick = |want: bool| -> Vec<f32> {
        sums.iter()
            .zip(&same)
            .filter(|p| *p.1 == want)
            .map(|p| *p.0)
            .collect()
    };
    let bias = crate::heads::initial_bias(&pick(true), &pick(false));
    model
        .store
        .set(head.bias, Tensor::from_vec(vec![bias], &[1])?)?;
    Ok(bias)
}
