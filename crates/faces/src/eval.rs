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

/// Result of k-fold verification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KFold {
    /// Accuracy on each held-out fold.
    pub fold_accuracy: Vec<f64>,
    /// Threshold chosen on the other folds, per fold.
    pub fold_tau: Vec<f32>,
    /// Mean accuracy.
    pub mean: f64,
    /// Standard deviation of the fold accuracies (population, as the LFW protocol reports).
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
    let mean = acc.iter().sum::<f64>() / acc.len().max(1) as f64;
    let std =
        (acc.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / acc.len().max(1) as f64).sqrt();
    KFold {
        fold_accuracy: acc,
        fold_tau: taus,
        mean,
        std,
    }
}

/// `k` folds of `n` items, contiguous (item `i` in fold `i * k / n`).
pub fn contiguous_folds(n: usize, k: usize) -> Vec<Vec<usize>> {
    (0..k)
        .map(|f| (f * n / k..(f + 1) * n / k).collect())
        .collect()
}
