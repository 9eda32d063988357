//! The training pipeline on tiny synthetic identities: batches are identity-balanced; every
//! objective (triplet, contrastive, both DeepFace heads) separates two identities; a saved
//! model scores exactly as before; an interrupted run resumes bit-exactly; one-shot
//! identification and rejection count correctly.

use faces::data::{Identities, Preprocess, pk_batch};
use faces::eval::best_threshold;
use faces::heads::HeadKind;
use faces::mining::Mining;
use faces::model::{Backbone, EmbeddingConfig, FaceModel, FaceModelSpec, FaceStream, squared_l2};
use faces::oneshot::{all_pairs, one_shot};
use faces::resnet29::SquareBox;
use faces::train::{CheckpointOptions, EpochLog, Objective, TrainConfig, init_head_bias, train};
use nn::train::{OnEpoch, Silent};
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

/// A grey model spec with no head; tests change the fields they care about.
fn spec(backbone: Backbone, size: (u32, u32), dim: usize) -> FaceModelSpec {
    FaceModelSpec {
        preprocess: Preprocess::grey(size.0, size.1),
        embedding: EmbeddingConfig {
            in_channels: 1,
            backbone,
            dim,
            pool_grid: 1,
            non_negative: false,
        },
        head: None,
        tau: 0.0,
        trained_with: "test".into(),
        flip_average: false,
        face_stream: None,
    }
}

fn tiny_model(head: Option<HeadKind>) -> FaceModel {
    let mut s = spec(Backbone::Conv { widths: vec![4, 8] }, (8, 8), 8);
    s.head = head;
    s.embedding.non_negative = head == Some(HeadKind::ChiSquare);
    FaceModel::new(s, 2, 0.0).unwrap()
}

fn config(objective: Objective) -> TrainConfig {
    TrainConfig {
        objective,
        epochs: 8,
        steps_per_epoch: 5,
        p: 2,
        k: 4,
        lr: 1e-2,
        weight_decay: 0.0,
        seed: 3,
        augment: None,
        frozen_embedding: false,
    }
}

fn embed_all(model: &FaceModel, ids: &Identities) -> (Vec<f32>, Vec<usize>) {
    let flat = ids.flat();
    let imgs: Vec<&Tensor> = flat.iter().map(|f| f.1).collect();
    (
        model.embed(&imgs, 16).unwrap(),
        flat.iter().map(|f| f.0).collect(),
    )
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
fn every_objective_separates_two_identities() {
    let ids = two_people(6);
    // A triplet margin of 1.5 (squared distances of unit vectors lie in [0, 4]) keeps the
    // triplets of this easy data active at the start, so training has something to do.
    let cases = [
        (
            Objective::Triplet {
                mining: Mining::BatchHard,
                margin: 1.5,
            },
            None,
        ),
        (Objective::Contrastive { margin: 1.5 }, None),
        (Objective::DeepFaceHead, Some(HeadKind::L1)),
        (Objective::DeepFaceHead, Some(HeadKind::ChiSquare)),
    ];
    for (objective, head) in cases {
        let mut model = tiny_model(head);
        let cfg = config(objective);
        init_head_bias(&mut model, &ids, &cfg).unwrap();
        let log = train(
            &mut model,
            &ids,
            &cfg,
            &CheckpointOptions::default(),
            &mut Silent,
        )
        .unwrap();
        assert!(
            log.last().unwrap().loss < log[0].loss,
            "{objective:?} {head:?}: {log:?}"
        );
        let (emb, labels) = embed_all(&model, &ids);
        for r in emb.chunks(8) {
            assert!((r.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-4);
            if head == Some(HeadKind::ChiSquare) {
                assert!(
                    r.iter().all(|&v| v >= 0.0),
                    "chi-square needs f >= 0: {r:?}"
                );
            }
        }
        let pairs = all_pairs(&emb, &labels, 8, model.scorer());
        let (tau, acc) = best_threshold(&pairs);
        assert_eq!(
            acc, 1.0,
            "{objective:?} {head:?}: every pair separated at tau {tau}"
        );
    }
}

#[test]
fn one_shot_identifies_and_rejects() {
    let ids = two_people(6);
    let mut model = tiny_model(None);
    let cfg = config(Objective::Triplet {
        mining: Mining::BatchHard,
        margin: 1.5,
    });
    train(
        &mut model,
        &ids,
        &cfg,
        &CheckpointOptions::default(),
        &mut Silent,
    )
    .unwrap();
    let (emb, labels) = embed_all(&model, &ids);
    let score = model.scorer();
    let (tau, _) = best_threshold(&all_pairs(&emb, &labels, 8, &score));
    let os = one_shot(&emb, &labels, 8, 2, tau, &score);
    assert_eq!((os.rank1, os.probes), (1.0, 10));
    // With only person 0 enrolled, person 1's 6 images are strangers and are rejected.
    let open = one_shot(&emb, &labels, 8, 1, tau, &score);
    assert_eq!((open.impostor_probes, open.impostor_rejection), (6, 1.0));
}

#[test]
fn saved_model_scores_the_same_and_bad_files_are_refused() {
    let ids = two_people(4);
    let mut model = tiny_model(Some(HeadKind::L1));
    let mut cfg = config(Objective::DeepFaceHead);
    cfg.epochs = 2;
    train(
        &mut model,
        &ids,
        &cfg,
        &CheckpointOptions::default(),
        &mut Silent,
    )
    .unwrap();
    model.spec.tau = 0.25;
    let dir = std::env::temp_dir().join(format!("faces-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.ckpt");
    model.save(&path).unwrap();
    let back = FaceModel::load(&path).unwrap();
    assert_eq!(back.spec, model.spec);
    let (a, labels) = embed_all(&model, &ids);
    let (b, _) = embed_all(&back, &ids);
    assert_eq!(a, b);
    assert_eq!(
        all_pairs(&a, &labels, 8, model.scorer()),
        all_pairs(&b, &labels, 8, back.scorer())
    );
    // A flipped byte is caught by the checksum, naming the file.
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    let bad = dir.join("bad.ckpt");
    std::fs::write(&bad, &bytes).unwrap();
    let e = FaceModel::load(&bad)
        .err()
        .expect("corrupt file refused")
        .to_string();
    assert!(e.contains("bad.ckpt"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn interrupted_training_resumes_bit_exactly() {
    let ids = two_people(5);
    let dir = std::env::temp_dir().join(format!("faces-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = config(Objective::Triplet {
        mining: Mining::SemiHard,
        margin: 1.5,
    });
    let mut whole = tiny_model(None);
    let log_whole = train(
        &mut whole,
        &ids,
        &cfg,
        &CheckpointOptions::default(),
        &mut Silent,
    )
    .unwrap();
    // The same run, stopped after 3 epochs, then resumed from the checkpoint.
    let ck = CheckpointOptions {
        path: Some(dir.join("run.ckpt")),
        resume: false,
    };
    let mut first = tiny_model(None);
    // The process "dies" in the third epoch's callback (before that epoch's checkpoint).
    let mut seen = 0;
    let stop = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train(
            &mut first,
            &ids,
            &cfg,
            &ck,
            &mut OnEpoch(|_: &EpochLog| {
                seen += 1;
                if seen == 3 {
                    panic!("killed after epoch 3");
                }
            }),
        )
    }));
    assert!(stop.is_err());
    let mut resumed = tiny_model(None);
    let log = train(
        &mut resumed,
        &ids,
        &cfg,
        &CheckpointOptions { resume: true, ..ck },
        &mut Silent,
    )
    .unwrap();
    assert_eq!(log.len(), log_whole.len());
    let (a, _) = embed_all(&whole, &ids);
    let (b, _) = embed_all(&resumed, &ids);
    assert_eq!(a, b, "resumed weights differ from the uninterrupted run");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn flip_averaged_embeddings_do_not_see_the_mirror() {
    let ids = two_people(3);
    let mut model = tiny_model(None);
    model.spec.flip_average = true;
    let img = &ids.images[0][0];
    let mirrored = faces::model::mirror(img);
    assert_ne!(img.to_vec(), mirrored.to_vec());
    assert_eq!(faces::model::mirror(&mirrored).to_vec(), img.to_vec());
    let a = model.embed(&[img], 4).unwrap();
    let b = model.embed(&[&mirrored], 4).unwrap();
    assert_eq!(a, b);
    assert!((a.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-5);
}

#[test]
fn a_face_stream_appends_the_pretrained_encoding_with_its_weight() {
    let ids = two_people(2);
    let plain = tiny_model(None);
    let mut with = spec(Backbone::Conv { widths: vec![4, 8] }, (8, 8), 8);
    let face_box = SquareBox {
        x: -1.0,
        y: 0.5,
        side: 9.0,
    };
    with.face_stream = Some(FaceStream {
        face_box,
        weight: 0.8,
        weights_sha256: String::new(),
    });
    let mut model = FaceModel::new(with, 2, 0.0).unwrap();
    model.store = plain.store.clone();
    assert_eq!(model.dim(), 8 + 128);
    let net = model.face_net.as_ref().unwrap();
    assert_eq!(
        model.spec.face_stream.as_ref().unwrap().weights_sha256,
        net.weights_hash
    );
    let imgs = [&ids.images[0][0], &ids.images[1][0]];
    let fused = model.embed(&imgs, 2).unwrap();
    let trained = plain.embed(&imgs, 2).unwrap();
    // The face stream by hand: chip of the pixels, ResNet-29, unit length.
    let face: Vec<Vec<f32>> = imgs
        .iter()
        .map(|t| {
            let px = model.spec.preprocess.to_pixels(t);
            let chip = faces::resnet29::chip(&px, face_box).unwrap();
            let e = net.forward(&chip.unsqueeze(0).unwrap()).unwrap().to_vec();
            let n = e.iter().map(|v| v * v).sum::<f32>().sqrt();
            e.iter().map(|v| v / n).collect()
        })
        .collect();
    for row in fused.chunks(136) {
        assert!((row.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-5);
    }
    let d = squared_l2(&fused[..136], &fused[136..]);
    let want =
        0.2 * squared_l2(&trained[..8], &trained[8..]) + 0.8 * squared_l2(&face[0], &face[1]);
    assert!((d - want).abs() < 1e-5, "{d} vs {want}");
    // Saved and loaded, it encodes the same.
    let dir = std::env::temp_dir().join(format!("faces-stream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.ckpt");
    model.save(&path).unwrap();
    let back = FaceModel::load(&path).unwrap();
    assert_eq!(back.embed(&imgs, 2).unwrap(), fused);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_face_stream_refuses_heads_bad_weights_and_other_resnet_weights() {
    let stream = |weight: f32, sha: &str| FaceStream {
        face_box: SquareBox {
            x: 0.0,
            y: 0.0,
            side: 8.0,
        },
        weight,
        weights_sha256: sha.into(),
    };
    let base = spec(Backbone::Conv { widths: vec![4] }, (8, 8), 8);
    let err = |s: FaceModelSpec| match FaceModel::new(s, 0, 0.0) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    let mut s = base.clone();
    s.face_stream = Some(stream(0.5, ""));
    s.head = Some(HeadKind::L1);
    assert!(err(s).contains("DeepFace head"));
    for w in [0.0, 1.0, f32::NAN] {
        let mut s = base.clone();
        s.face_stream = Some(stream(w, ""));
        assert!(err(s).contains("weight must lie in (0, 1)"));
    }
    let mut s = base.clone();
    s.face_stream = Some(stream(0.5, "abc123"));
    let e = err(s);
    assert!(e.contains("abc123") && e.contains("bundled"), "{e}");
}

#[test]
fn a_pooling_grid_keeps_the_layout() {
    let mut spec = spec(Backbone::Conv { widths: vec![4, 8] }, (8, 8), 8);
    spec.embedding.pool_grid = 2;
    let model = FaceModel::new(spec, 2, 0.0).unwrap();
    // 8 channels x 2 x 2 cells feed the embedding layer.
    let w = model.store.id("embed.weight").unwrap();
    assert_eq!(model.store.get(w).shape(), &[8, 32]);
    let ids = two_people(2);
    let e = model.embed(&[&ids.images[0][0]], 1).unwrap();
    assert_eq!(e.len(), 8);
}

#[test]
fn squeezenet_body_loads_imagenet_weights_and_takes_grey_faces() {
    let spec = spec(Backbone::SqueezeNet { cut: 9 }, (48, 40), 16);
    let mut model = FaceModel::new(spec, 0, 0.0).unwrap();
    let conv = model.store.id("backbone.features.0.weight").unwrap();
    let before = model.store.get(conv).to_vec();
    model
        .net
        .load_pretrained(&mut model.store, &nn::models::squeezenet::bundled_weights())
        .unwrap();
    let after = model.store.get(conv).to_vec();
    assert_ne!(before, after, "ImageNet weights replaced the random ones");
    let classifier = model.store.id("backbone.classifier.1.weight").unwrap();
    assert!(
        !model.store.is_trainable(classifier),
        "the unused classifier is frozen"
    );
    let img = Tensor::zeros(&[1, 48, 40]);
    let e = model.embed(&[&img], 1).unwrap();
    assert!((e.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-4);
    // A missing weights file is a clear error naming it.
    let err = model
        .net
        .load_pretrained(
            &mut model.store,
            std::path::Path::new("/nonexistent/sq.safetensors"),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/sq.safetensors"), "{err}");
}

/// A head fit on frozen encodings learns which components matter: component 0 carries the
/// identity, component 1 is noise that is larger than the identity signal. Squared L2 is
/// fooled by the noise; the fitted L1 and chi-square heads (the latter on sign-split
/// encodings) weight it down and separate the pairs (ROC AUC 0.72 for the distance).
#[test]
fn heads_fit_on_frozen_encodings_learn_the_informative_component() {
    use faces::heads::{HeadKind, fit_frozen, score, split_signs};
    use rand::Rng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let (n, dim) = (200usize, 2usize);
    let mut emb = vec![];
    let mut label = vec![];
    for i in 0..n {
        let person = i % 20;
        emb.push(1.0 + person as f32 * 0.1 + rng.random_range(-0.01..0.01));
        emb.push(rng.random_range(-1.0..1.0));
        label.push(person);
    }
    let pairs: Vec<(usize, usize, bool)> = (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .map(|(i, j)| (i, j, label[i] == label[j]))
        .collect();
    // Area under the ROC (insensitive to the 19:1 imbalance of different to same pairs).
    let auc = |scores: Vec<f32>| {
        let scored: Vec<faces::eval::ScoredPair> = scores
            .iter()
            .zip(&pairs)
            .map(|(&d, p)| faces::eval::ScoredPair {
                distance: d,
                same: p.2,
            })
            .collect();
        faces::eval::auc(&faces::eval::roc(&scored))
    };
    let l2 = auc(pairs
        .iter()
        .map(|&(i, j, _)| {
            faces::model::squared_l2(&emb[i * dim..(i + 1) * dim], &emb[j * dim..(j + 1) * dim])
        })
        .collect());
    let split = split_signs(&emb, dim);
    assert_eq!(split.len(), 2 * emb.len());
    assert!(split.iter().all(|&v| v >= 0.0));
    for (kind, e, w) in [
        (HeadKind::L1, &emb, dim),
        (HeadKind::ChiSquare, &split, 2 * dim),
    ] {
        let (a, b) = fit_frozen(kind, e, w, &pairs, 3000, 0.05);
        let acc = auc(pairs
            .iter()
            .map(|&(i, j, _)| score(kind, &a, b, &e[i * w..(i + 1) * w], &e[j * w..(j + 1) * w]))
            .collect());
        // The chi-square terms of the identity component are tiny (1e-4 to 1e-3) next to the
        // noise's, so that head needs large weights and many steps (AUC 0.90 after 300 steps,
        // 0.96 after 1000, 0.987 after 3000).
        let floor = if kind == HeadKind::L1 { 0.99 } else { 0.96 };
        assert!(
            acc > floor && acc > l2 + 0.2,
            "{kind:?}: head AUC {acc}, squared L2 {l2}"
        );
        if kind == HeadKind::L1 {
            assert!(a[0].abs() > 5.0 * a[1].abs(), "weights {a:?}");
        }
    }
}

/// One-shot rank-1 pooled over every choice of the enrolled image, by hand: person 0 at 0.0,
/// 1.0, 2.0 and person 1 at 2.4, 3.0, 4.0 (1-D encodings).
/// - enrol the first images (0.0 and 2.4): probes 1.0 -> 0 (right), 2.0 -> 1 (wrong), 3.0 and
///   4.0 -> 1 (right): 3 of 4;
/// - enrol the second (1.0 and 3.0): 0.0 right, 2.0 -> 1.0 (right), 2.4 -> 3.0 (right), 4.0
///   right: 4 of 4;
/// - enrol the third (2.0 and 4.0): 0.0 and 1.0 right, 2.4 -> 2.0 (wrong), 3.0 -> 2.0 or 4.0
///   (equal distance 1; the first enrolled, person 0, wins: wrong): 2 of 4.
///
/// Pooled: 9 of 12.
#[test]
fn one_shot_every_enrolment_pools_the_rounds() {
    use faces::oneshot::one_shot_every_enrolment;
    let emb = [0.0f32, 1.0, 2.0, 2.4, 3.0, 4.0];
    let labels = [0usize, 0, 0, 1, 1, 1];
    let first = one_shot(&emb, &labels, 1, 2, 10.0, squared_l2);
    assert_eq!((first.rank1, first.probes), (0.75, 4));
    let every = one_shot_every_enrolment(&emb, &labels, 1, 2, 10.0, squared_l2);
    assert_eq!(every.probes, 12);
    assert!((every.rank1 - 9.0 / 12.0).abs() < 1e-12, "{}", every.rank1);
}

#[test]
fn a_model_file_whose_spec_asks_for_more_than_its_weights_is_refused_before_allocating() {
    let dir = std::env::temp_dir().join(format!("faces-hostile-spec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.model");
    tiny_model(None).save(&good).unwrap();
    let rewrite = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut ck = nn::checkpoint::load(&good).unwrap();
        let mut spec: serde_json::Value = serde_json::from_str(&ck.config).unwrap();
        edit(&mut spec);
        ck.config = spec.to_string();
        let p = dir.join("hostile.model");
        nn::checkpoint::save(&p, &ck).unwrap();
        match FaceModel::load(&p) {
            Ok(_) => panic!("loaded {spec}"),
            Err(e) => e.to_string(),
        }
    };
    let huge = 1u64 << 40;
    for msg in [
        rewrite(&|s| s["embedding"]["dim"] = huge.into()),
        rewrite(&|s| s["embedding"]["backbone"]["Conv"]["widths"] = vec![huge, 8].into()),
        rewrite(&|s| s["embedding"]["pool_grid"] = (1u64 << 33).into()),
        rewrite(&|s| s["embedding"]["backbone"]["Conv"]["widths"] = vec![4u64, 8, 16].into()),
    ] {
        assert!(
            msg.contains("hostile.model") && msg.contains("model spec"),
            "{msg}"
        );
    }
    let msg = rewrite(&|s| s["preprocess"]["size"] = vec![4_000_000_000u64, 4_000_000_000].into());
    assert!(
        msg.contains("input size") && msg.contains("pixels"),
        "{msg}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
