//! Mining rules against a brute-force search, and the evaluation metrics against worked
//! examples.

use faces::eval::*;
use faces::mining::*;
use rand::SeedableRng;

fn rng() -> rand_chacha::ChaCha8Rng {
    rand_chacha::ChaCha8Rng::seed_from_u64(0)
}

/// 1-D embeddings: identity 0 at 0.0 and 1.0, identity 1 at 1.5 and 4.0, identity 2 at 10.
fn batch() -> (Vec<f32>, Vec<usize>) {
    (vec![0.0, 1.0, 1.5, 4.0, 10.0, 10.5], vec![0, 0, 1, 1, 2, 2])
}

#[test]
fn pairwise_distances_are_squared_euclidean() {
    let d = pairwise_sq_distances(&[0.0, 0.0, 3.0, 4.0], 2, 2);
    assert_eq!(d, vec![0.0, 25.0, 25.0, 0.0]);
}

#[test]
fn mining_rules_match_brute_force() {
    let (emb, labels) = batch();
    let n = labels.len();
    let dist = pairwise_sq_distances(&emb, n, 1);
    let d = |i: usize, j: usize| dist[i * n + j];
    // Brute force per anchor: the hardest negative and the hardest positive.
    for (a, p, ng) in select_triplets(Mining::BatchHard, &dist, &labels, 0.2, &mut rng()) {
        let hp = (0..n)
            .filter(|&j| j != a && labels[j] == labels[a])
            .map(|j| d(a, j))
            .fold(f32::MIN, f32::max);
        let hn = (0..n)
            .filter(|&j| labels[j] != labels[a])
            .map(|j| d(a, j))
            .fold(f32::MAX, f32::min);
        assert_eq!((d(a, p), d(a, ng)), (hp, hn), "anchor {a}");
    }
    // Anchor 1 (at 1.0): positive 0 (d=1), negatives at 1.5 (d=0.25), 4 (9), 10 (81), 10.5 (90.25).
    let hard = select_triplets(Mining::Hardest, &dist, &labels, 0.2, &mut rng());
    assert!(hard.contains(&(1, 0, 2)));
    assert_eq!(hard.len(), 6, "one triplet per (anchor, positive) pair");
    // Semi-hard for (A=2 at 1.5, P=3 at 4.0): d(A,P) = 6.25; negatives of A: 0 (2.25), 1 (0.25),
    // 4 (72.25), 5 (81). With margin 70, the band (6.25, 76.25) holds only 4.
    let semi = select_triplets(Mining::SemiHard, &dist, &labels, 70.0, &mut rng());
    assert!(semi.contains(&(2, 3, 4)), "{semi:?}");
    // Random negatives are negatives.
    for (a, p, ng) in select_triplets(Mining::Random, &dist, &labels, 0.2, &mut rng()) {
        assert!(labels[a] == labels[p] && a != p && labels[a] != labels[ng]);
    }
    // Active fraction: batch-hard triplets of this batch with margin 0.2.
    let bh = select_triplets(Mining::BatchHard, &dist, &labels, 0.2, &mut rng());
    let brute = bh
        .iter()
        .filter(|&&(a, p, ng)| d(a, p) - d(a, ng) + 0.2 > 0.0)
        .count() as f32
        / bh.len() as f32;
    assert_eq!(active_fraction(&bh, &dist, n, 0.2), brute);
    assert!("batch-hard".parse::<Mining>().is_ok() && "nope".parse::<Mining>().is_err());
}

fn p(distance: f32, same: bool) -> ScoredPair {
    ScoredPair { distance, same }
}

#[test]
fn threshold_roc_auc_eer_on_a_worked_example() {
    // Same pairs at 0.1, 0.2, 0.6; different pairs at 0.4, 0.8, 0.9.
    let pairs = [
        p(0.1, true),
        p(0.2, true),
        p(0.6, true),
        p(0.4, false),
        p(0.8, false),
        p(0.9, false),
    ];
    // Best: tau between 0.2 and 0.4 (5/6) or between 0.6 and 0.8 (5/6); the first found is 0.3.
    let (tau, acc) = best_threshold(&pairs);
    assert!((acc - 5.0 / 6.0).abs() < 1e-12);
    assert!((tau - 0.3).abs() < 1e-6, "tau {tau}");
    assert!((accuracy_at(&pairs, 0.7) - 5.0 / 6.0).abs() < 1e-12);
    let curve = roc(&pairs);
    // Sorted: S S D S D D -> (FAR, TAR) steps: (0,1/3) (0,2/3) (1/3,2/3) (1/3,1) (2/3,1) (1,1).
    let pts: Vec<(f64, f64)> = curve.iter().map(|r| (r.far, r.tar)).collect();
    let third = 1.0 / 3.0;
    assert_eq!(pts.len(), 7);
    assert!((pts[3].0 - third).abs() < 1e-12 && (pts[3].1 - 2.0 * third).abs() < 1e-12);
    // AUC = P(d_same < d_diff) = 8 of 9 pairs ordered correctly.
    assert!((auc(&curve) - 8.0 / 9.0).abs() < 1e-12);
    // FRR = 1 - TAR crosses FAR at 1/3.
    assert!((eer(&curve) - third).abs() < 1e-12);
    assert!((val_at_far(&curve, 0.0) - 2.0 * third).abs() < 1e-12);
    assert_eq!(val_at_far(&curve, 0.5), 1.0);
}

#[test]
fn kfold_picks_tau_on_the_other_folds() {
    // Two folds. Fold 0: same 0.1, diff 0.5. Fold 1: same 0.3, diff 0.35.
    // Tau for fold 0 from fold 1: midpoint 0.325 -> fold 0 fully right (accuracy 1).
    // Tau for fold 1 from fold 0: midpoint 0.3 -> same 0.3 <= 0.3 right, diff 0.35 right.
    let pairs = [p(0.1, true), p(0.5, false), p(0.3, true), p(0.35, false)];
    let k = kfold_accuracy(&pairs, &contiguous_folds(4, 2));
    assert_eq!(k.fold_accuracy, vec![1.0, 1.0]);
    assert!(
        (k.fold_tau[0] - 0.325).abs() < 1e-6 && (k.fold_tau[1] - 0.3).abs() < 1e-6,
        "{:?}",
        k.fold_tau
    );
    assert_eq!((k.mean, k.std), (1.0, 0.0));
    assert_eq!(
        contiguous_folds(10, 3),
        vec![vec![0, 1, 2], vec![3, 4, 5], vec![6, 7, 8, 9]]
    );
}

/// Open set, worked by hand: enrolled people's probes at 0.1 (right), 0.3 (wrong person),
/// 0.5 (right); strangers at 0.2, 0.4, 0.6, 0.8.
#[test]
fn open_set_roc_and_dir_at_far_worked_example() {
    use faces::eval::{OpenSetProbe, dir_at_far, open_set_roc};
    let p = |distance: f32, correct: Option<bool>| OpenSetProbe { distance, correct };
    let probes = [
        p(0.5, Some(true)),
        p(0.2, None),
        p(0.1, Some(true)),
        p(0.8, None),
        p(0.3, Some(false)),
        p(0.6, None),
        p(0.4, None),
    ];
    let curve = open_set_roc(&probes);
    let at = |tau: f32| curve.iter().find(|q| q.tau == tau).unwrap();
    // tau 0.1: one of 3 identified, no stranger accepted.
    assert_eq!((at(0.1).far, at(0.1).dir), (0.0, 1.0 / 3.0));
    // tau 0.4: strangers 0.2 and 0.4 accepted (2 of 4); the wrong match never counts.
    assert_eq!((at(0.4).far, at(0.4).dir), (0.5, 1.0 / 3.0));
    // tau 0.5: the second right match.
    assert_eq!((at(0.5).far, at(0.5).dir), (0.5, 2.0 / 3.0));
    assert_eq!(curve.last().unwrap().far, 1.0);
    // Budget 30 % false alarms: 0.2 and 0.3 accept 1 stranger of 4 (25 %), 0.4 accepts 2
    // (50 %), so the operating point is tau 0.3.
    let q = dir_at_far(&curve, 0.3);
    assert_eq!((q.tau, q.far, q.dir), (0.3, 0.25, 1.0 / 3.0));
    let q = dir_at_far(&curve, 0.0);
    assert_eq!((q.tau, q.dir), (0.1, 1.0 / 3.0));
}

fn sp(distance: f32, same: bool) -> ScoredPair {
    ScoredPair { distance, same }
}

#[test]
fn a_threshold_for_a_target_false_accept_rate_keeps_the_rate_and_is_the_largest_that_does() {
    use faces::eval::{ThresholdRule, choose_threshold, error_rates};
    // Different pairs at 0.2, 0.5, 0.8, 1.1; same pairs at 0.1, 0.3, 0.6.
    let pairs = [
        sp(0.1, true),
        sp(0.2, false),
        sp(0.3, true),
        sp(0.5, false),
        sp(0.6, true),
        sp(0.8, false),
        sp(1.1, false),
    ];
    let tau = choose_threshold(&pairs, ThresholdRule::TargetFar(0.25)).unwrap();
    assert_eq!(
        tau, 0.3,
        "accepting 0.5 would take the false accepts to 2 of 4"
    );
    assert_eq!(error_rates(&pairs, tau), (0.25, 1.0 / 3.0));
    let tau = choose_threshold(&pairs, ThresholdRule::TargetFar(0.0)).unwrap();
    assert_eq!(error_rates(&pairs, tau).0, 0.0);
    assert_eq!(tau, 0.1);
    let best = choose_threshold(&pairs, ThresholdRule::BestAccuracy).unwrap();
    assert_eq!(best, faces::eval::best_threshold(&pairs).0);
    assert_eq!(ThresholdRule::TargetFar(0.01).to_string(), "far<=0.01");
    let one_kind = [sp(0.1, true), sp(0.2, true)];
    let e = choose_threshold(&one_kind, ThresholdRule::BestAccuracy).unwrap_err();
    assert!(e.contains("2 same of 2"), "{e}");
}

#[test]
fn random_folds_partition_the_items_reproducibly() {
    let folds = faces::eval::random_folds(23, 5, 7);
    let mut all: Vec<usize> = folds.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..23).collect::<Vec<_>>());
    assert!(folds.iter().all(|f| f.len() == 4 || f.len() == 5));
    assert_eq!(folds, faces::eval::random_folds(23, 5, 7));
    assert_ne!(folds, faces::eval::random_folds(23, 5, 8));
    assert_eq!(
        faces::eval::different_share(&[true, false, false, false]),
        0.75
    );
}
