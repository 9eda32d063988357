//! The triplet pipeline on tiny synthetic identities: batches are identity-balanced, training
//! separates two identities, and one-shot identification and rejection count correctly.

use faces::data::{Identities, pk_batch};
use faces::eval::best_threshold;
use faces::mining::Mining;
use faces::model::{EmbeddingConfig, EmbeddingNet};
use faces::oneshot::{all_pairs, one_shot};
use faces::train::{TripletConfig, embed, train_triplet};
use nn::ModelSeed;
use rand::SeedableRng;
use tensor::Tensor;

/// Identity 0: a bright left half; identity 1: a bright right half; small noise.
fn two_people(per: usize) -> Identities {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    let make = |left: bool, rng: &mut rand_chacha::ChaCha8Rng| {
        let noise = Tensor::randn(&[1, 8, 8], 0.0, 0.1, rng).to_vec();
        let v: Vec<f32> = (0..64)
            .map(|p| if ((p % 8) < 4) == left { 1.0 } else { -1.0 } + noise[p])
            .collect();
        Tensor::from_vec(v, &[1, 8, 8]).unwrap()
    };
    Identities {
        names: vec!["a".into(), "b".into()],
        images: vec![
            (0..per).map(|_| make(true, &mut rng)).collect(),
            (0..per).map(|_| make(false, &mut rng)).collect(),
        ],
    }
}

#[test]
fn batches_are_identity_balanced() {
    let ids = two_people(3);
    let b = pk_batch(&ids, 2, 5, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
    assert_eq!(b.len(), 10);
    assert_eq!(b.iter().filter(|x| x.0 == 0).count(), 5);
    assert!(b.iter().all(|&(i, m)| m < ids.images[i].len()));
}

#[test]
fn triplet_training_separates_two_identities() {
    let ids = two_people(6);
    let cfg = EmbeddingConfig {
        in_channels: 1,
        widths: vec![4, 8],
        dim: 8,
    };
    let mut seed = ModelSeed::new(2);
    let net = EmbeddingNet::new(&mut seed.builder(), &cfg).unwrap();
    let mut store = seed.store;
    // A margin of 1.5 (squared distances of unit vectors lie in [0, 4]) keeps the triplets of
    // this easy data active at the start, so training has something to do.
    let tcfg = TripletConfig {
        epochs: 8,
        steps_per_epoch: 5,
        p: 2,
        k: 4,
        margin: 1.5,
        mining: Mining::BatchHard,
        lr: 1e-2,
        seed: 3,
        augment: None,
    };
    let log = train_triplet(&net, &mut store, &ids, &tcfg, |_| {}).unwrap();
    assert!(log.last().unwrap().loss < log[0].loss, "{log:?}");
    let flat = ids.flat();
    let imgs: Vec<&Tensor> = flat.iter().map(|f| f.1).collect();
    let labels: Vec<usize> = flat.iter().map(|f| f.0).collect();
    let emb = embed(&net, &store, &imgs, 16).unwrap();
    // Unit-length embeddings.
    for r in emb.chunks(8) {
        assert!((r.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-4);
    }
    let pairs = all_pairs(&emb, &labels, 8);
    let (tau, acc) = best_threshold(&pairs);
    assert_eq!(acc, 1.0, "every pair separated at tau {tau}");
    let os = one_shot(&emb, &labels, 8, 2, tau);
    assert_eq!((os.rank1, os.probes), (1.0, 10));
    // With only person 0 enrolled, person 1's 6 images are strangers and are rejected.
    let open = one_shot(&emb, &labels, 8, 1, tau);
    assert_eq!((open.impostor_probes, open.impostor_rejection), (6, 1.0));
}
