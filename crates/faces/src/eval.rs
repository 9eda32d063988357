//! Verification and identification metrics, one harness for every protocol: distances of
//! labelled pairs in, accuracy / ROC / AUC / EER / VAL@FAR and k-fold threshold selection out.
//!
//! Convention: a pair is predicted "same person" when its distance is `<= tau` (seed eq. 1).

use serde::Serialize;

/// A scored pair: its distance and whether the two images show the same person.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredPair {
    /// Distance (squared L2 for embeddings).
    pub distance: f32,
    /// Ground truth.
    pub same: bool,
}

/// Accuracy of the rule `distance <= tau`.
pub fn accuracy_at(pairs: &[ScoredPair], tau: f32) -> f64 {
    if pairs.is_empty() {
        return 0.0;
    }
    pairs
        .iter()
        .filter(|p| (p.distance <= tau) == p.same)
        .count() as f64
        / pairs.len() as f64
}

/// The threshold with the best accuracy on `pairs` (ties: the midpoint between the sorted
/// distances where accuracy peaks, so that it does not sit on a training example).
pub fn best_threshold(pairs: &[ScoredPair]) -> (f32, f64) {
    if pairs.is_empty() {
        return (0.0, 0.0);
    }
    let mut sorted: Vec<ScoredPair> = pairs.to_vec();
    sorted.sort_by(|a, b| a.distance.total_cmp(&b.distance));
    let n = sorted.len();
    let total_diff = sorted.iter().filter(|p| !p.same).count();
    // Threshold below everything: every pair predicted "different".
    let (mut correct, mut best, mut best_tau) = (total_diff, total_diff, sorted[0].distance - 1.0);
    for i in 0..n {
        correct = if sorted[i].same {
            correct + 1
        } else {
            correct - 1
        };
        let distinct_next = i + 1 == n || sorted[i + 1].distance > sorted[i].distance;
        if distinct_next && correct > best {
            best = correct;
            best_tau = if i + 1 == n {
                sorted[i].distance + 1.0
            } else {
                0.5 * (sorted[i].distance + sorted[i + 1].distance)
            };
        }
    }
    (best_tau, best as f64 / n as f64)
}

/// One point of a ROC curve at threshold `tau`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RocPoint {
    /// Threshold.
    pub tau: f32,
    /// False-accept rate: different pairs with distance `<= tau`.
    pub far: f64,
    /// True-accept rate (VAL): same pairs with distance `<= tau`.
    pub tar: f64,
}

/// The ROC curve over every distinct threshold, from accept-nothing to accept-everything.
pub fn roc(pairs: &[ScoredPair]) -> Vec<RocPoint> {
    let mut sorted: Vec<ScoredPair> = pairs.to_vec();
    sorted.sort_by(|a, b| a.distance.total_cmp(&b.distance));
    let (ns, nd) = (
        sorted.iter().filter(|p| p.same).count().max(1) as f64,
        sorted.iter().filter(|p| !p.same).count().max(1) as f64,
    );
    let mut out = vec![RocPoint {
        tau: f32::NEG_INFINITY,
        far: 0.0,
        tar: 0.0,
    }];
    let (mut ts, mut fd) = (0usize, 0usize);
    for i in 0..sorted.len() {
        if sorted[i].same {
            ts += 1
        } else {
            fd += 1
        }
        if i + 1 == sorted.len() || sorted[i + 1].distance > sorted[i].distance {
            out.push(RocPoint {
                tau: sorted[i].distance,
                far: fd as f64 / nd,
                tar: ts as f64 / ns,
            });
        }
    }
    out
}

/// Area under the ROC curve (trapezoids).
pub fn auc(curve: &[RocPoint]) -> f64 {
    curve
        .windows(2)
        .map(|w| (w[1].far - w[0].far) * (w[1].tar + w[0].tar) / 2.0)
        .sum()
}

/// Equal error rate: where the false-accept rate meets the false-reject rate (interpolated).
pub fn eer(curve: &[RocPoint]) -> f64 {
    for w in curve.windows(2) {
        let (f0, f1) = (w[0].far - (1.0 - w[0].tar), w[1].far - (1.0 - w[1].tar));
        if f0 <= 0.0 && f1 >= 0.0 {
            let t = if f1 == f0 { 0.0 } else { -f0 / (f1 - f0) };
            return w[0].far + t * (w[1].far - w[0].far);
        }
    }
    1.0
}

/// VAL@FAR: the highest true-accept rate whose false-accept rate is at most `far`.
pub fn val_at_far(curve: &[RocPoint], far: f64) -> f64 {
    curve
        .iter()
        .filter(|p| p.far <= far)
        .map(|p| p.tar)
        .fold(0.0, f64::max)
}

/// How a threshold is chosen from labelled pairs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThresholdRule {
    /// The best accuracy ([`best_threshold`]).
    BestAccuracy,
    /// The largest threshold whose false-accept rate is at most this (a point of [`roc`]).
    TargetFar(f64),
}

impl std::fmt::Display for ThresholdRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ThresholdRule::BestAccuracy => write!(f, "best-accuracy"),
            ThresholdRule::TargetFar(far) => write!(f, "far<={far}"),
        }
    }
}

/// tau for `pairs` under `rule`.
///
/// # Errors
/// Pairs that are not both same-person and different-person (no threshold separates them).
pub fn choose_threshold(pairs: &[ScoredPair], rule: ThresholdRule) -> Result<f32, String> {
    let same = pairs.iter().filter(|p| p.same).count();
    if same == 0 || same == pairs.len() {
        return Err(format!(
            "calibration needs both same-person and different-person pairs ({same} same of {})",
            pairs.len()
        ));
    }
    Ok(match rule {
        ThresholdRule::BestAccuracy => best_threshold(pairs).0,
        ThresholdRule::TargetFar(far) => roc(pairs)
            .iter()
            .filter(|p| p.far <= far && p.tau.is_finite())
            .map(|p| p.tau)
            .fold(0.0, f32::max),
    })
}

/// The false-accept and false-reject rates of the rule `distance <= tau` (0 for a kind of
/// pair that is absent).
pub fn error_rates(pairs: &[ScoredPair], tau: f32) -> (f64, f64) {
    let (mut fa, mut nd, mut fr, mut ns) = (0, 0, 0, 0);
    for p in pairs {
        if p.same {
            ns += 1;
            fr += usize::from(p.distance > tau);
        } else {
            nd += 1;
            fa += usize::from(p.distance <= tau);
        }
    }
    (fa as f64 / nd.max(1) as f64, fr as f64 / ns.max(1) as f64)
}

/// The share of pairs that are different-person: the accuracy of always answering
/// "different", the baseline a skewed pair set must be read against.
pub fn different_share<'a>(same: impl IntoIterator<Item = &'a bool>) -> f64 {
    let (mut n, mut d) = (0usize, 0usize);
    for s in same {
        n += 1;
        d += usize::from(!*s);
    }
    d as f64 / n.max(1) as f64
}

/// Result of k-fold verification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KFold {
    /// Accuracy on each held-out fold.
    pub fold_accuracy: Vec<f64>,
    /// Threshold chosen on the other folds, per fold.
    pub fold_tau: Vec<f32>,
    /// Mean accuracy.
    pub mean: f64,
    /// Sample standard deviation of the fold accuracies (divisor k - 1, as the LFW protocol's
    /// README defines it; the standard error is `std / sqrt(k)`).
    pub std: f64,
}

/// k-fold cross-validated verification accuracy: for each fold, `tau` is chosen on the other
/// folds (best accuracy) and applied to it. `folds[i]` lists the pair indices of fold `i`.
pub fn kfold_accuracy(pairs: &[ScoredPair], folds: &[Vec<usize>]) -> KFold {
    let mut acc = vec![];
    let mut taus = vec![];
    for (i, test) in folds.iter().enumerate() {
        let train: Vec<ScoredPair> = folds
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .flat_map(|(_, f)| f.iter().map(|&k| pairs[k]))
            .collect();
        let (tau, _) = best_threshold(&train);
        let test_pairs: Vec<ScoredPair> = test.iter().map(|&k| pairs[k]).collect();
        acc.push(accuracy_at(&test_pairs, tau));
        taus.push(tau);
    }
    let (mean, std) = mean_and_sample_std(&acc);
    KFold {
        fold_accuracy: acc,
        fold_tau: taus,
        mean,
        std,
    }
}

/// Mean and sample standard deviation (divisor `n - 1`; 0 for fewer than two values).
pub fn mean_and_sample_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// `k` folds of `n` items, contiguous (item `i` in fold `i * k / n`).
pub fn contiguous_folds(n: usize, k: usize) -> Vec<Vec<usize>> {
    (0..k)
        .map(|f| (f * n / k..(f + 1) * n / k).collect())
        .collect()
}

/// `k` folds of `n` items after a shuffle seeded by `seed`.
pub fn random_folds(n: usize, k: usize, seed: u64) -> Vec<Vec<usize>> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    (0..k)
        .map(|f| order.iter().copied().skip(f).step_by(k).collect())
        .collect()
}

/// The summary every verification protocol prints and writes as JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verification {
    /// Accuracy (the k-fold mean when folds are used).
    pub accuracy: f64,
    /// Standard deviation over folds (0 with a fixed tau).
    pub std: f64,
    /// ROC AUC over all pairs.
    pub auc: f64,
    /// Equal error rate over all pairs.
    pub eer: f64,
    /// True-accept rate at a false-accept rate of 1e-3.
    pub val_at_far: f64,
    /// The threshold (the mean of the per-fold thresholds under k-fold).
    pub tau: f32,
    /// Pairs scored.
    pub n_pairs: usize,
}

/// Verification with tau chosen by k-fold cross-validation (`folds[i]` = pair indices of fold
/// `i`; LFW View 2: its 10 folds). Also returns the ROC curve.
pub fn verify_kfold(pairs: &[ScoredPair], folds: &[Vec<usize>]) -> (Verification, Vec<RocPoint>) {
    let kf = kfold_accuracy(pairs, folds);
    let tau = kf.fold_tau.iter().sum::<f32>() / kf.fold_tau.len().max(1) as f32;
    verification(pairs, kf.mean, kf.std, tau)
}

/// The measures every protocol reports, from its accuracy (and std) and tau: the ROC over all
/// of `pairs` and what is read off it.
fn verification(
    pairs: &[ScoredPair],
    accuracy: f64,
    std: f64,
    tau: f32,
) -> (Verification, Vec<RocPoint>) {
    let curve = roc(pairs);
    (
        Verification {
            accuracy,
            std,
            auc: auc(&curve),
            eer: eer(&curve),
            val_at_far: val_at_far(&curve, 1e-3),
            tau,
            n_pairs: pairs.len(),
        },
        curve,
    )
}

/// Verification with a threshold fixed beforehand (chosen on other data, e.g. LFW
/// `pairsDevTrain` for `pairsDevTest`).
pub fn verify_at(pairs: &[ScoredPair], tau: f32) -> (Verification, Vec<RocPoint>) {
    verification(pairs, accuracy_at(pairs, tau), 0.0, tau)
}

/// Accuracy of nearest-neighbour classification: query `i` (row of `queries`) is right when
/// its nearest support row (by `score`, lower = closer) is `answer[i]`.
pub fn nearest_accuracy(
    support: &[f32],
    queries: &[f32],
    answer: &[usize],
    dim: usize,
    score: impl Fn(&[f32], &[f32]) -> f32,
) -> f64 {
    let ns = support.len() / dim;
    let right = answer
        .iter()
        .enumerate()
        .filter(|&(i, &a)| {
            let q = &queries[i * dim..(i + 1) * dim];
            let best = (0..ns)
                .min_by(|&x, &y| {
                    score(q, &support[x * dim..(x + 1) * dim])
                        .total_cmp(&score(q, &support[y * dim..(y + 1) * dim]))
                })
                .expect("non-empty support");
            best == a
        })
        .count();
    right as f64 / answer.len().max(1) as f64
}

/// Mean accuracy of random N-way k-shot episodes with a 95 % confidence interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Episodes {
    /// Classes per episode.
    pub n_way: usize,
    /// Support images per class (averaged into a prototype when k > 1).
    pub k_shot: usize,
    /// Episodes run.
    pub episodes: usize,
    /// Mean accuracy.
    pub accuracy: f64,
    /// Half-width of the 95 % confidence interval (1.96 standard errors).
    pub ci95: f64,
}

/// Random N-way k-shot episodes over embedded classes: `emb[c]` holds the embeddings (`dim`
/// each, concatenated) of class `c`. Each episode draws `n_way` classes, `k_shot` support and
/// `queries` query images per class, classifies each query by its nearest class prototype
/// (mean of the support embeddings) in squared L2, and scores the episode's accuracy.
pub fn episodes(
    emb: &[Vec<f32>],
    dim: usize,
    n_way: usize,
    k_shot: usize,
    queries: usize,
    count: usize,
    rng: &mut impl rand::Rng,
) -> Episodes {
    use rand::seq::SliceRandom;
    let eligible: Vec<usize> = (0..emb.len())
        .filter(|&c| emb[c].len() / dim >= k_shot + queries)
        .collect();
    let mut accs = vec![];
    if eligible.len() >= n_way && n_way > 0 {
        for _ in 0..count {
            let mut classes = eligible.clone();
            classes.shuffle(rng);
            classes.truncate(n_way);
            let (mut protos, mut qs, mut ans) = (vec![], vec![], vec![]);
            for (ci, &c) in classes.iter().enumerate() {
                let mut idx: Vec<usize> = (0..emb[c].len() / dim).collect();
                idx.shuffle(rng);
                let mut proto = vec![0.0f32; dim];
                for &s in &idx[..k_shot] {
                    for (p, v) in proto.iter_mut().zip(&emb[c][s * dim..(s + 1) * dim]) {
                        *p += v / k_shot as f32;
                    }
                }
                protos.extend(proto);
                for &q in &idx[k_shot..k_shot + queries] {
                    qs.extend_from_slice(&emb[c][q * dim..(q + 1) * dim]);
                    ans.push(ci);
                }
            }
            accs.push(nearest_accuracy(
                &protos,
                &qs,
                &ans,
                dim,
                crate::model::squared_l2,
            ));
        }
    }
    let n = accs.len().max(1) as f64;
    let mean = accs.iter().sum::<f64>() / n;
    let var = accs.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    Episodes {
        n_way,
        k_shot,
        episodes: accs.len(),
        accuracy: mean,
        ci95: 1.96 * (var / n).sqrt(),
    }
}

/// One probe of an open-set identification test: the distance to its nearest enrolled
/// person, and (for a probe of an enrolled person) whether that nearest person is the right
/// one. A probe of someone never enrolled has `correct: None`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenSetProbe {
    /// Distance to the nearest enrolled person.
    pub distance: f32,
    /// `Some(right)` for enrolled people's probes, `None` for strangers.
    pub correct: Option<bool>,
}

/// A point of the open-set ROC: at threshold `tau`, the fraction of strangers accepted as
/// someone (false alarms) and of enrolled people's probes identified correctly within `tau`
/// (detection and identification rate).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OpenSetPoint {
    /// Threshold.
    pub tau: f32,
    /// False-alarm rate.
    pub far: f64,
    /// Detection and identification rate.
    pub dir: f64,
}

/// The open-set ROC over every distinct threshold (accept nothing ... accept everything).
pub fn open_set_roc(probes: &[OpenSetProbe]) -> Vec<OpenSetPoint> {
    let mut sorted = probes.to_vec();
    sorted.sort_by(|a, b| a.distance.total_cmp(&b.distance));
    let strangers = sorted.iter().filter(|p| p.correct.is_none()).count().max(1) as f64;
    let known = sorted.iter().filter(|p| p.correct.is_some()).count().max(1) as f64;
    let mut out = vec![OpenSetPoint {
        tau: f32::NEG_INFINITY,
        far: 0.0,
        dir: 0.0,
    }];
    let (mut fa, mut di) = (0usize, 0usize);
    for (i, p) in sorted.iter().enumerate() {
        match p.correct {
            None => fa += 1,
            Some(true) => di += 1,
            Some(false) => {}
        }
        if i + 1 == sorted.len() || sorted[i + 1].distance > p.distance {
            out.push(OpenSetPoint {
                tau: p.distance,
                far: fa as f64 / strangers,
                dir: di as f64 / known,
            });
        }
    }
    out
}

/// The detection and identification rate at the largest threshold whose false-alarm rate is
/// within `far` (the ROC point an operator would pick for that false-alarm budget).
pub fn dir_at_far(curve: &[OpenSetPoint], far: f64) -> OpenSetPoint {
    curve
        .iter()
        .rev()
        .find(|p| p.far <= far)
        .copied()
        .unwrap_or(curve[0])
}
