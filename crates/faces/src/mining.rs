//! Online triplet selection inside a batch of `P` identities x `K` images (FaceNet, section 3.2;
//! Hermans et al. 2017 for batch-hard). All rules work on the batch's matrix of squared
//! distances, so a batch is embedded once and every triplet reuses those embeddings.

use rand::Rng;
use rand::seq::IndexedRandom;

/// How triplets are chosen in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Mining {
    /// Every (anchor, positive) pair with a random negative.
    Random,
    /// Every (anchor, positive) pair with the closest negative.
    Hardest,
    /// FaceNet's semi-hard rule: a random negative with `d(A,P) < d(A,N) < d(A,P) + margin`
    /// (the hardest one when none is in the band).
    SemiHard,
    /// One triplet per anchor: its farthest positive and its closest negative.
    BatchHard,
}

impl std::str::FromStr for Mining {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "random" => Ok(Mining::Random),
            "hardest" => Ok(Mining::Hardest),
            "semi-hard" | "semihard" => Ok(Mining::SemiHard),
            "batch-hard" | "batchhard" => Ok(Mining::BatchHard),
            other => Err(format!(
                "unknown mining rule {other:?} (random, hardest, semi-hard, batch-hard)"
            )),
        }
    }
}

/// Squared Euclidean distances between all rows of an `n x d` row-major matrix.
pub fn pairwise_sq_distances(emb: &[f32], n: usize, d: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; n * n];
    for i in 0..n {
        for j in i + 1..n {
            let (a, b) = (&emb[i * d..(i + 1) * d], &emb[j * d..(j + 1) * d]);
            let v: f32 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
            out[i * n + j] = v;
            out[j * n + i] = v;
        }
    }
    out
}

/// Triplets `(anchor, positive, negative)` as batch indices, chosen by `rule` from the squared
/// distance matrix `dist` (`n x n`) and the labels.
pub fn select_triplets(
    rule: Mining,
    dist: &[f32],
    labels: &[usize],
    margin: f32,
    rng: &mut impl Rng,
) -> Vec<(usize, usize, usize)> {
    let n = labels.len();
    let d = |i: usize, j: usize| dist[i * n + j];
    let negatives =
        |a: usize| -> Vec<usize> { (0..n).filter(|&j| labels[j] != labels[a]).collect() };
    let mut out = vec![];
    for a in 0..n {
        let negs = negatives(a);
        if negs.is_empty() {
            continue;
        }
        let positives: Vec<usize> = (0..n)
            .filter(|&j| j != a && labels[j] == labels[a])
            .collect();
        if positives.is_empty() {
            continue;
        }
        let hardest_neg = *negs
            .iter()
            .min_by(|&&x, &&y| d(a, x).total_cmp(&d(a, y)))
            .expect("non-empty");
        match rule {
            Mining::BatchHard => {
                let p = *positives
                    .iter()
                    .max_by(|&&x, &&y| d(a, x).total_cmp(&d(a, y)))
                    .expect("non-empty");
                out.push((a, p, hardest_neg));
            }
            Mining::Random => {
                for &p in &positives {
                    out.push((a, p, *negs.choose(rng).expect("non-empty")));
                }
            }
            Mining::Hardest => {
                for &p in &positives {
                    out.push((a, p, hardest_neg));
                }
            }
            Mining::SemiHard => {
                for &p in &positives {
                    let dap = d(a, p);
                    let band: Vec<usize> = negs
                        .iter()
                        .copied()
                        .filter(|&ng| d(a, ng) > dap && d(a, ng) < dap + margin)
                        .collect();
                    let ng = band.choose(rng).copied().unwrap_or(hardest_neg);
                    out.push((a, p, ng));
                }
            }
        }
    }
    out
}

/// The fraction of triplets that violate the margin (`d(A,P) - d(A,N) + margin > 0`): the ones
/// that produce a gradient.
pub fn active_fraction(
    triplets: &[(usize, usize, usize)],
    dist: &[f32],
    n: usize,
    margin: f32,
) -> f32 {
    if triplets.is_empty() {
        return 0.0;
    }
    let active = triplets
        .iter()
        .filter(|&&(a, p, ng)| dist[a * n + p] - dist[a * n + ng] + margin > 0.0)
        .count();
    active as f32 / triplets.len() as f32
}
