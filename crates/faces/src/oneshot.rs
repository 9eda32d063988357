//! Pairs for verification and one-shot identification against a gallery of precomputed
//! embeddings (one enrolled image per person), with rejection of people never enrolled.
//!
//! Everything takes the model's pair score as a function (`same when score <= tau`): the
//! squared L2 distance of eq. 2, or a DeepFace head's `-logit`.

use rand::Rng;
use rand::seq::IndexedRandom;
use serde::Serialize;
use tensor::Tensor;

use crate::data::{Identities, OneShotRun};
use crate::embedder::Encode;
use crate::eval::{RocPoint, ScoredPair, Verification};
use crate::model::squared_l2;

fn row(emb: &[f32], dim: usize, i: usize) -> &[f32] {
    &emb[i * dim..(i + 1) * dim]
}

/// Labelled index pairs `(i, j, same)` over rows with these labels: every unordered pair when
/// there are at most `cap` of each kind, otherwise `cap` same and `cap` different pairs drawn at
/// random (LFW's 9,525 training images have 45 million pairs).
pub fn index_pairs(labels: &[usize], cap: usize, rng: &mut impl Rng) -> Vec<(usize, usize, bool)> {
    let n = labels.len();
    let (mut same, mut diff) = (vec![], vec![]);
    let total_pairs = n * n.saturating_sub(1) / 2;
    if total_pairs <= 2 * cap {
        for i in 0..n {
            for j in i + 1..n {
                if labels[i] == labels[j] {
                    same.push((i, j, true));
                } else {
                    diff.push((i, j, false));
                }
            }
        }
    } else {
        // Same pairs: enumerate within each label (few), sample if too many.
        let mut by_label: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for (i, &l) in labels.iter().enumerate() {
            by_label.entry(l).or_default().push(i);
        }
        for members in by_label.values() {
            for (x, &i) in members.iter().enumerate() {
                for &j in &members[x + 1..] {
                    same.push((i, j, true));
                }
            }
        }
        let mut tries = 0;
        while diff.len() < cap && tries < cap * 20 {
            tries += 1;
            let (i, j) = (rng.random_range(0..n), rng.random_range(0..n));
            if labels[i] != labels[j] {
                diff.push((i.min(j), i.max(j), false));
            }
        }
    }
    if same.len() > cap {
        same = same.choose_multiple(rng, cap).copied().collect();
    }
    if diff.len() > cap {
        diff = diff.choose_multiple(rng, cap).copied().collect();
    }
    same.extend(diff);
    same
}

/// Scores index pairs of embedding rows.
pub fn score_pairs(
    emb: &[f32],
    dim: usize,
    pairs: &[(usize, usize, bool)],
    score: impl Fn(&[f32], &[f32]) -> f32,
) -> Vec<ScoredPair> {
    pairs
        .iter()
        .map(|&(i, j, same)| ScoredPair {
            distance: score(row(emb, dim, i), row(emb, dim, j)),
            same,
        })
        .collect()
}

/// Every unordered pair of rows of `emb` (`n x dim`) with its score and whether the labels
/// agree.
pub fn all_pairs(
    emb: &[f32],
    labels: &[usize],
    dim: usize,
    score: impl Fn(&[f32], &[f32]) -> f32,
) -> Vec<ScoredPair> {
    let n = labels.len();
    let mut out = Vec::with_capacity(n * n.saturating_sub(1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            out.push(ScoredPair {
                distance: score(row(emb, dim, i), row(emb, dim, j)),
                same: labels[i] == labels[j],
            });
        }
    }
    out
}

/// Results of one-shot identification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OneShot {
    /// Closed set: probes whose nearest enrolled person is theirs.
    pub rank1: f64,
    /// Open set, enrolled people's probes: nearest is theirs and within tau.
    pub detect_and_identify: f64,
    /// Open set, never-enrolled people's probes: rejected (nearest score above tau).
    pub impostor_rejection: f64,
    /// Probes of enrolled people.
    pub probes: usize,
    /// Probes of people never enrolled.
    pub impostor_probes: usize,
}

/// Enrols the first image of each person with a label below `enrolled` (a gallery of stored
/// encodings), then identifies every other image: nearest enrolled person by `score`, accepted
/// when the score is `<= tau`. `labels[i]` is the person of row `i` of `emb`.
pub fn one_shot(
    emb: &[f32],
    labels: &[usize],
    dim: usize,
    enrolled: usize,
    tau: f32,
    score: impl Fn(&[f32], &[f32]) -> f32,
) -> OneShot {
    Counts::of(emb, labels, dim, enrolled, tau, &score, 0).rates()
}

/// [`one_shot`] repeated with every choice of the enrolled image: round `k` enrols the `k`-th
/// image of each person (wrapping for people with fewer), and the counts of all rounds are
/// pooled. One fixed enrolled image makes rank-1 hinge on whether that one photo is typical
/// (with 10 people and 9 probes each, one probe moves it by 1.1 points); the pooled rate uses
/// every image as the enrolled one once.
pub fn one_shot_every_enrolment(
    emb: &[f32],
    labels: &[usize],
    dim: usize,
    enrolled: usize,
    tau: f32,
    score: impl Fn(&[f32], &[f32]) -> f32,
) -> OneShot {
    let mut per_person: std::collections::BTreeMap<usize, usize> = Default::default();
    for &l in labels {
        *per_person.entry(l).or_default() += 1;
    }
    let rounds = per_person.values().copied().max().unwrap_or(0);
    let mut total = Counts::default();
    for k in 0..rounds {
        total.add(&Counts::of(emb, labels, dim, enrolled, tau, &score, k));
    }
    total.rates()
}

/// Tallies of one gallery round.
#[derive(Debug, Default)]
struct Counts {
    rank1: usize,
    detected: usize,
    probes: usize,
    rejected: usize,
    impostors: usize,
}

impl Counts {
    /// Enrols the `pick`-th image (modulo the person's count) of each person below `enrolled`
    /// and identifies every other image.
    fn of(
        emb: &[f32],
        labels: &[usize],
        dim: usize,
        enrolled: usize,
        tau: f32,
        score: &impl Fn(&[f32], &[f32]) -> f32,
        pick: usize,
    ) -> Self {
        let mut rows_of: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for (i, &l) in labels.iter().enumerate() {
            if l < enrolled {
                rows_of.entry(l).or_default().push(i);
            }
        }
        // (person, row)
        let gallery: Vec<(usize, usize)> = rows_of
            .iter()
            .map(|(&p, rows)| (p, rows[pick % rows.len()]))
            .collect();
        let mut c = Counts::default();
        for (i, &label) in labels.iter().enumerate() {
            if gallery.iter().any(|g| g.1 == i) {
                continue;
            }
            let Some((best_person, best)) = gallery
                .iter()
                .map(|&(p, r)| (p, score(row(emb, dim, i), row(emb, dim, r))))
                .min_by(|a, b| a.1.total_cmp(&b.1))
            else {
                continue;
            };
            if label < enrolled {
                c.probes += 1;
                c.rank1 += (best_person == label) as usize;
                c.detected += (best_person == label && best <= tau) as usize;
            } else {
                c.impostors += 1;
                c.rejected += (best > tau) as usize;
            }
        }
        c
    }

    fn add(&mut self, o: &Counts) {
        self.rank1 += o.rank1;
        self.detected += o.detected;
        self.probes += o.probes;
        self.rejected += o.rejected;
        self.impostors += o.impostors;
    }

    fn rates(&self) -> OneShot {
        let frac = |a: usize, b: usize| {
            if b == 0 {
                f64::NAN
            } else {
                a as f64 / b as f64
            }
        };
        OneShot {
            rank1: frac(self.rank1, self.probes),
            detect_and_identify: frac(self.detected, self.probes),
            impostor_rejection: frac(self.rejected, self.impostors),
            probes: self.probes,
            impostor_probes: self.impostors,
        }
    }
}
/// The encodings of every image of `ids` (rows, identity by identity) and each row's identity.
///
/// # Errors
/// Images the model cannot take (wrong shape).
pub fn embed_identities(
    model: &dyn Encode,
    ids: &Identities,
) -> nn::Result<(Vec<f32>, Vec<usize>)> {
    let flat = ids.flat();
    let imgs: Vec<&Tensor> = flat.iter().map(|f| f.1).collect();
    Ok((model.encode(&imgs, 64)?, flat.iter().map(|f| f.0).collect()))
}

/// Each image flattened and scaled to unit length: the nearest-neighbour-on-pixels baseline's
/// "embedding", as (rows, row length).
pub fn pixel_rows(images: &[&Tensor]) -> (Vec<f32>, usize) {
    let dim = images.first().map_or(0, |t| t.numel());
    let mut out = Vec::with_capacity(images.len() * dim);
    for t in images {
        let v = t.to_vec();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        out.extend(v.iter().map(|x| x / norm));
    }
    (out, dim)
}

/// Verification on the pairs of a set of identities.
#[derive(Debug, Clone)]
pub struct IdentityVerification {
    /// The model's verification over 10 random folds.
    pub model: Verification,
    /// The model's ROC curve.
    pub roc: Vec<RocPoint>,
    /// The nearest-neighbour-on-pixels baseline on the same pairs and folds.
    pub pixels: Verification,
    /// The share of different-person pairs (the always-"different" baseline).
    pub different_share: f64,
}

/// All pairs of `ids` (sampled beyond 20,000 of each kind, by `seed`), 10 random folds: the
/// model's and the pixel baseline's verification, and the model's ROC.
///
/// # Errors
/// Images the model cannot take.
pub fn verify_identities(
    model: &dyn Encode,
    ids: &Identities,
    seed: u64,
) -> nn::Result<IdentityVerification> {
    use rand::SeedableRng;
    let (emb, labels) = embed_identities(model, ids)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let idx = index_pairs(&labels, 20_000, &mut rng);
    let folds = crate::eval::random_folds(idx.len(), 10, seed);
    let scored = score_pairs(&emb, model.encoding_dim(), &idx, model.pair_score());
    let flat = ids.flat();
    let (px, pdim) = pixel_rows(&flat.iter().map(|f| f.1).collect::<Vec<_>>());
    let base = score_pairs(&px, pdim, &idx, squared_l2);
    let (model, roc) = crate::eval::verify_kfold(&scored, &folds);
    let (pixels, _) = crate::eval::verify_kfold(&base, &folds);
    Ok(IdentityVerification {
        model,
        roc,
        pixels,
        different_share: crate::eval::different_share(idx.iter().map(|p| &p.2)),
    })
}

/// Accuracy on Omniglot's official one-shot runs (each test item named by its nearest
/// training image): the mean and each run's. `embed` turns images into (rows, row length).
///
/// # Errors
/// What `embed` returns.
pub fn official_runs_accuracy<E>(
    runs: &[OneShotRun],
    embed: impl Fn(&[&Tensor]) -> Result<(Vec<f32>, usize), E>,
    score: impl Fn(&[f32], &[f32]) -> f32 + Copy,
) -> Result<(f64, Vec<f64>), E> {
    let mut per_run = vec![];
    for run in runs {
        let (s, dim) = embed(&run.training.iter().collect::<Vec<_>>())?;
        let (q, _) = embed(&run.test.iter().collect::<Vec<_>>())?;
        per_run.push(crate::eval::nearest_accuracy(
            &s,
            &q,
            &run.answer,
            dim,
            score,
        ));
    }
    let mean = per_run.iter().sum::<f64>() / per_run.len().max(1) as f64;
    Ok((mean, per_run))
}
