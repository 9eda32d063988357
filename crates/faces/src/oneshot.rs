//! Verification of all pairs and one-shot identification against a gallery of precomputed
//! embeddings (one enrolled image per person), with rejection of people never enrolled.

use serde::Serialize;

use crate::eval::ScoredPair;

/// Every unordered pair of rows of `emb` (`n x dim`) with its squared distance and whether the
/// labels agree.
pub fn all_pairs(emb: &[f32], labels: &[usize], dim: usize) -> Vec<ScoredPair> {
    let n = labels.len();
    let mut out = Vec::with_capacity(n * (n - 1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            let d: f32 = emb[i * dim..(i + 1) * dim]
                .iter()
                .zip(&emb[j * dim..(j + 1) * dim])
                .map(|(a, b)| (a - b) * (a - b))
                .sum();
            out.push(ScoredPair {
                distance: d,
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
    /// Open set, never-enrolled people's probes: rejected (nearest distance above tau).
    pub impostor_rejection: f64,
    /// Probes of enrolled people.
    pub probes: usize,
    /// Probes of people never enrolled.
    pub impostor_probes: usize,
}

/// Enrols the first image of each of the first `enrolled` people (a gallery of stored
/// encodings), then identifies every other image. `rows[i]` is the embedding row of image `i`;
/// `labels[i]` its person; `first[p]` the row of person `p`'s enrolled image.
pub fn one_shot(emb: &[f32], labels: &[usize], dim: usize, enrolled: usize, tau: f32) -> OneShot {
    let n = labels.len();
    let mut gallery: Vec<(usize, usize)> = vec![]; // (person, row)
    for (i, &l) in labels.iter().enumerate() {
        if l < enrolled && !gallery.iter().any(|g| g.0 == l) {
            gallery.push((l, i));
        }
    }
    let dist = |a: usize, b: usize| -> f32 {
        emb[a * dim..(a + 1) * dim]
            .iter()
            .zip(&emb[b * dim..(b + 1) * dim])
            .map(|(x, y)| (x - y) * (x - y))
            .sum()
    };
    let (mut r1, mut di, mut probes, mut rej, mut imp) = (0usize, 0usize, 0usize, 0usize, 0usize);
    for i in 0..n {
        if gallery.iter().any(|g| g.1 == i) {
            continue;
        }
        let (best_person, best_d) = gallery
            .iter()
            .map(|&(p, r)| (p, dist(i, r)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("non-empty gallery");
        if labels[i] < enrolled {
            probes += 1;
            r1 += (best_person == labels[i]) as usize;
            di += (best_person == labels[i] && best_d <= tau) as usize;
        } else {
            imp += 1;
            rej += (best_d > tau) as usize;
        }
    }
    let frac = |a: usize, b: usize| {
        if b == 0 {
            f64::NAN
        } else {
            a as f64 / b as f64
        }
    };
    OneShot {
        rank1: frac(r1, probes),
        detect_and_identify: frac(di, probes),
        impostor_rejection: frac(rej, imp),
        probes,
        impostor_probes: imp,
    }
}
