//! Every nn component on tiny data: layers, losses against hand-computed values, optimizers
//! against hand-worked steps, schedules, and a small model that learns.

use autograd::Graph;
use nn::loss::{self, Reduction};
use nn::optim::{Adam, LrSchedule, Optimizer, Schedule, Sgd};
use nn::*;
use tensor::{PoolOptions, Tensor};

fn t(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape).unwrap()
}

fn close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol, "{a:?} vs {b:?}");
    }
}

#[test]
fn linear_matches_hand_computation() {
    let mut seed = ModelSeed::new(1);
    let fc = Linear::new(&mut seed.builder().scope("fc"), 2, 2, true).unwrap();
    let mut store = seed.store;
    store
        .set(fc.weight, t(&[1.0, 2.0, 3.0, 4.0], &[2, 2]))
        .unwrap();
    store.set(fc.bias.unwrap(), t(&[0.5, -0.5], &[2])).unwrap();
    assert_eq!(store.name(fc.weight), "fc.weight");
    let g = Graph::no_grad();
    let cx = Ctx::new(&g, &store, Mode::Eval, 0);
    let y = fc
        .forward(&cx, &g.constant(t(&[1.0, 1.0], &[1, 2])))
        .unwrap();
    // [1+2+0.5, 3+4-0.5]
    assert_eq!(y.value().to_vec(), vec![3.5, 6.5]);
}

#[test]
fn default_init_bounds_follow_pytorch() {
    let mut seed = ModelSeed::new(2);
    let conv = Conv::new(&mut seed.builder().scope("c"), &ConvConfig::new(2, 4, 8, 3)).unwrap();
    let store = seed.store;
    let bound = 1.0 / ((4 * 9) as f32).sqrt();
    assert!(
        store
            .get(conv.weight)
            .to_vec()
            .iter()
            .all(|v| v.abs() <= bound)
    );
    assert!(
        store
            .get(conv.bias.unwrap())
            .to_vec()
            .iter()
            .all(|v| v.abs() <= bound)
    );
    assert_eq!(fans(&[8, 4, 3, 3]), (36, 72));
}

#[test]
fn batchnorm_normalises_in_training_and_tracks_running_stats() {
    let mut seed = ModelSeed::new(3);
    let bn = BatchNorm::new(&mut seed.builder().scope("bn"), 2).unwrap();
    let mut store = seed.store;
    // Channel 0: 1, 3, 5, 7 (mean 4, biased var 5, unbiased 20/3); channel 1: all 2.
    let x = t(&[1.0, 3.0, 2.0, 2.0, 5.0, 7.0, 2.0, 2.0], &[2, 2, 2]);
    let g = Graph::new();
    let cx = Ctx::new(&g, &store, Mode::Train, 0);
    let y = bn.forward(&cx, &g.constant(x.clone())).unwrap();
    let s = 1.0 / (5.0f32 + 1e-5).sqrt();
    close(
        &y.value().to_vec(),
        &[-3.0 * s, -s, 0.0, 0.0, s, 3.0 * s, 0.0, 0.0],
        1e-5,
    );
    cx.apply_updates(&mut store).unwrap();
    close(&store.get(bn.running_mean).to_vec(), &[0.4, 0.2], 1e-6);
    close(
        &store.get(bn.running_var).to_vec(),
        &[0.9 + 0.1 * 20.0 / 3.0, 0.9],
        1e-5,
    );
    // Eval uses the running statistics.
    let g = Graph::no_grad();
    let cx = Ctx::new(&g, &store, Mode::Eval, 0);
    let y = bn.forward(&cx, &g.constant(x)).unwrap();
    let rv0 = 0.9 + 0.1 * 20.0 / 3.0;
    assert!((y.value().to_vec()[0] - (1.0 - 0.4) / (rv0 + 1e-5f32).sqrt()).abs() < 1e-5);
}

#[test]
fn group_and_layer_norm_give_zero_mean_unit_variance() {
    let mut seed = ModelSeed::new(4);
    let gn = GroupNorm::new(&mut seed.builder().scope("gn"), 2, 4).unwrap();
    let ln = LayerNorm::new(&mut seed.builder().scope("ln"), &[6]).unwrap();
    assert!(GroupNorm::new(&mut seed.builder().scope("bad"), 3, 4).is_err());
    let store = seed.store;
    let g = Graph::no_grad();
    let cx = Ctx::new(&g, &store, Mode::Eval, 0);
    let x = Tensor::randn(
        &[2, 4, 3],
        1.0,
        2.0,
        &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(5),
    );
    let y = gn
        .forward(&cx, &g.constant(x.clone()))
        .unwrap()
        .value()
        .reshape(&[2, 2, 6])
        .unwrap();
    for m in y.mean_axes(&[2], false).unwrap().to_vec() {
        assert!(m.abs() < 1e-5);
    }
    for v in y.sqr().mean_axes(&[2], false).unwrap().to_vec() {
        assert!((v - 1.0).abs() < 1e-3);
    }
    let z = ln
        .forward(&cx, &g.constant(x.reshape(&[4, 6]).unwrap()))
        .unwrap();
    for m in z.value().mean_axes(&[1], false).unwrap().to_vec() {
        assert!(m.abs() < 1e-5);
    }
}

#[test]
fn dropout_masks_in_training_only_and_keeps_the_mean() {
    let store = ParamStore::new();
    let g = Graph::no_grad();
    let x = Tensor::ones(&[10_000]);
    let train = Ctx::new(&g, &store, Mode::Train, 7);
    let y = Dropout(0.25)
        .forward(&train, &g.constant(x.clone()))
        .unwrap()
        .value()
        .to_vec();
    let zeros = y.iter().filter(|&&v| v == 0.0).count() as f32 / 1e4;
    assert!((zeros - 0.25).abs() < 0.02, "dropped fraction {zeros}");
    let mean = y.iter().sum::<f32>() / 1e4;
    assert!((mean - 1.0).abs() < 0.03);
    let eval = Ctx::new(&g, &store, Mode::Eval, 7);
    assert_eq!(
        Dropout(0.25)
            .forward(&eval, &g.constant(x.clone()))
            .unwrap()
            .value()
            .to_vec(),
        x.to_vec()
    );
    assert!(Dropout(1.5).forward(&train, &g.constant(x)).is_err());
}

#[test]
fn adaptive_pool_uses_pytorch_windows() {
    // 5 -> 3: windows [0,2), [1,4), [3,5) (start floor(i*5/3), end ceil((i+1)*5/3)).
    let store = ParamStore::new();
    let g = Graph::no_grad();
    let cx = Ctx::new(&g, &store, Mode::Eval, 0);
    let x = t(&[1.0, 2.0, 3.0, 4.0, 5.0], &[1, 1, 5]);
    let y = AdaptiveAvgPool(vec![3])
        .forward(&cx, &g.constant(x))
        .unwrap();
    close(&y.value().to_vec(), &[1.5, 3.0, 4.5], 1e-6);
}

#[test]
fn sequential_residual_pool_flatten_compose() {
    let mut seed = ModelSeed::new(6);
    let mut b = seed.builder();
    let conv = Conv::new(
        &mut b.scope("conv"),
        &ConvConfig::new(2, 2, 2, 3).padding(1),
    )
    .unwrap();
    let net = Sequential::new()
        .push(Residual {
            block: Box::new(conv),
            shortcut: None,
        })
        .push(Activation::Relu)
        .push(Pool::Max(PoolOptions::new(&[2])))
        .push(Flatten);
    let store = seed.store;
    let g = Graph::no_grad();
    let cx = Ctx::new(&g, &store, Mode::Eval, 0);
    let y = net
        .forward(&cx, &g.constant(Tensor::ones(&[3, 2, 4, 4])))
        .unwrap();
    assert_eq!(y.shape(), &[3, 8]);
}

#[test]
fn losses_match_hand_computed_values() {
    let g = Graph::new();
    // Cross-entropy of logits [0, ln 3] for class 1: -ln(3/4).
    let logits = g.leaf(t(&[0.0, 3f32.ln()], &[1, 2]));
    let ce = loss::cross_entropy(&logits, &[1], 0.0)
        .unwrap()
        .value()
        .to_scalar()
        .unwrap();
    assert!((ce - (-(0.75f32).ln())).abs() < 1e-6);
    // With smoothing 0.2 over 2 classes the target is [0.1, 0.9].
    let ls = loss::cross_entropy(&logits, &[1], 0.2)
        .unwrap()
        .value()
        .to_scalar()
        .unwrap();
    assert!((ls - (-(0.1 * 0.25f32.ln() + 0.9 * 0.75f32.ln()))).abs() < 1e-6);
    assert!(loss::cross_entropy(&logits, &[2], 0.0).is_err());
    // BCE of logit 0 against 1: ln 2.
    let z = g.leaf(t(&[0.0], &[1]));
    let one = g.constant(t(&[1.0], &[1]));
    assert!(
        (loss::bce_with_logits(&z, &one)
            .unwrap()
            .value()
            .to_scalar()
            .unwrap()
            - 2f32.ln())
        .abs()
            < 1e-6
    );
    // MSE and L1 of [1, 3] vs [0, 0]: 5 and 2.
    let a = g.leaf(t(&[1.0, 3.0], &[2]));
    let zero = g.constant(Tensor::zeros(&[2]));
    assert_eq!(
        loss::mse(&a, &zero).unwrap().value().to_scalar().unwrap(),
        5.0
    );
    assert_eq!(
        loss::l1(&a, &zero).unwrap().value().to_scalar().unwrap(),
        2.0
    );
    // Triplet (eq. 6-7): d(A,P) = 1, d(A,N) = 4, margin 0.5: max(1 - 4 + 0.5, 0) = 0 for the
    // first triplet; the second has d(A,P) = 4, d(A,N) = 1: 4 - 1 + 0.5 = 3.5. Sum 3.5, mean 1.75.
    let anc = g.leaf(t(&[0.0, 0.0, 0.0, 0.0], &[2, 2]));
    let pos = g.constant(t(&[1.0, 0.0, 2.0, 0.0], &[2, 2]));
    let neg = g.constant(t(&[2.0, 0.0, 1.0, 0.0], &[2, 2]));
    let sum = loss::triplet(&anc, &pos, &neg, 0.5, Reduction::Sum).unwrap();
    assert_eq!(sum.value().to_scalar().unwrap(), 3.5);
    assert_eq!(
        loss::triplet(&anc, &pos, &neg, 0.5, Reduction::Mean)
            .unwrap()
            .value()
            .to_scalar()
            .unwrap(),
        1.75
    );
    // Contrastive, margin 2: same pair at d = 1 -> 1; different pair at d = 1 -> (2-1)² = 1;
    // different pair at d = 3 -> 0. Mean over 3 = 2/3.
    let p1 = g.constant(t(&[0.0, 0.0, 0.0], &[3, 1]));
    let p2 = g.constant(t(&[1.0, 1.0, 3.0], &[3, 1]));
    let c = loss::contrastive(&p1, &p2, &[true, false, false], 2.0)
        .unwrap()
        .value()
        .to_scalar()
        .unwrap();
    assert!((c - 2.0 / 3.0).abs() < 1e-5);
}

fn one_param_store(v: f32) -> (ParamStore, ParamId) {
    let mut s = ParamStore::new();
    let id = s.add("w", t(&[v], &[1]), ParamKind::Weight).unwrap();
    (s, id)
}

fn grads_of(store: &ParamStore, g: f32) -> ParamGrads {
    // Gradient of `g * w` with respect to w is g.
    let graph = Graph::new();
    let cx = Ctx::new(&graph, store, Mode::Train, 0);
    let id = store.ids().next().unwrap();
    let loss = cx.param(id).scale(g).sum().unwrap();
    cx.param_grads(&graph.backward(&loss).unwrap())
}

#[test]
fn sgd_momentum_and_nesterov_match_hand_steps() {
    // Constant gradient 1, lr 0.1, momentum 0.9: v1 = 1, v2 = 1.9; w = 1 - 0.1 - 0.19 = 0.71.
    let (mut s, id) = one_param_store(1.0);
    let mut opt = Sgd::new(0.1).momentum(0.9, false);
    for _ in 0..2 {
        let gr = grads_of(&s, 1.0);
        opt.step(&mut s, &gr).unwrap();
    }
    assert!((s.get(id).to_vec()[0] - 0.71).abs() < 1e-6);
    // Nesterov: step uses g + mu v: (1 + 0.9) then (1 + 0.9 * 1.9) = 2.71 -> 1 - 0.19 - 0.271.
    let (mut s, id) = one_param_store(1.0);
    let mut opt = Sgd::new(0.1).momentum(0.9, true);
    for _ in 0..2 {
        let gr = grads_of(&s, 1.0);
        opt.step(&mut s, &gr).unwrap();
    }
    assert!((s.get(id).to_vec()[0] - 0.539).abs() < 1e-6);
}

#[test]
fn adam_first_step_moves_by_lr_and_adamw_decays() {
    // Adam's bias-corrected first step is lr * g / (|g| + eps) = lr * sign(g).
    let (mut s, id) = one_param_store(1.0);
    let mut opt = Adam::new(0.01);
    let gr = grads_of(&s, 3.0);
    opt.step(&mut s, &gr).unwrap();
    assert!((s.get(id).to_vec()[0] - 0.99).abs() < 1e-6);
    // AdamW multiplies the weight by (1 - lr * wd) first: 1 * (1 - 0.01 * 0.5) - 0.01.
    let (mut s, id) = one_param_store(1.0);
    let mut opt = Adam::adamw(0.01, 0.5);
    let gr = grads_of(&s, 3.0);
    opt.step(&mut s, &gr).unwrap();
    assert!((s.get(id).to_vec()[0] - (0.995 - 0.01)).abs() < 1e-6);
    // State round trip.
    let st = opt.state(&s);
    let mut fresh = Adam::adamw(0.01, 0.5);
    fresh.load_state(&s, &st).unwrap();
    assert_eq!(fresh.state(&s), st);
    assert!(Sgd::new(0.1).load_state(&s, &st).is_err());
}

#[test]
fn frozen_parameters_do_not_move_and_clipping_caps_the_norm() {
    let (mut s, id) = one_param_store(1.0);
    assert_eq!(s.freeze(""), 1);
    let gr = grads_of(&s, 1.0);
    assert!(
        gr.get(id).is_none(),
        "a frozen weight is a constant: no gradient"
    );
    Sgd::new(1.0).step(&mut s, &gr).unwrap();
    assert_eq!(s.get(id).to_vec(), vec![1.0]);
    s.unfreeze("");
    let mut gr = grads_of(&s, 10.0);
    let before = gr.clip_global_norm(1.0);
    assert_eq!(before, 10.0);
    assert!((gr.global_norm() - 1.0).abs() < 1e-6);
}

#[test]
fn schedules_follow_their_formulas() {
    let step = LrSchedule {
        base_lr: 1.0,
        warmup: 0,
        schedule: Schedule::Step {
            every: 10,
            gamma: 0.5,
        },
    };
    assert_eq!(
        (step.lr_at(9), step.lr_at(10), step.lr_at(25)),
        (1.0, 0.5, 0.25)
    );
    let cos = LrSchedule {
        base_lr: 1.0,
        warmup: 4,
        schedule: Schedule::Cosine {
            total: 10,
            min_lr: 0.0,
        },
    };
    assert_eq!((cos.lr_at(0), cos.lr_at(3)), (0.25, 1.0));
    assert!((cos.lr_at(4 + 5) - 0.5).abs() < 1e-6 && cos.lr_at(4 + 10).abs() < 1e-6);
}

#[test]
fn a_small_cnn_learns_two_synthetic_classes() {
    // Class 0: bright left half; class 1: bright right half. 12 steps of Adam separate them.
    let mut seed = ModelSeed::new(11);
    let mut b = seed.builder();
    let net = Sequential::new()
        .push(
            Conv::new(
                &mut b.scope("conv"),
                &ConvConfig::new(2, 1, 4, 3).padding(1),
            )
            .unwrap(),
        )
        .push(BatchNorm::new(&mut b.scope("bn"), 4).unwrap())
        .push(Activation::Relu)
        .push(AdaptiveAvgPool(vec![1, 2]))
        .push(Flatten)
        .push(Linear::new(&mut b.scope("fc"), 8, 2, true).unwrap());
    let mut store = seed.store;
    let mut data = vec![];
    let mut labels = vec![];
    for i in 0..8 {
        let cls = i % 2;
        let img: Vec<f32> = (0..36)
            .map(|p| if (p % 6 < 3) == (cls == 0) { 1.0 } else { 0.0 } + 0.05 * (i as f32))
            .collect();
        data.extend(img);
        labels.push(cls);
    }
    let x = t(&data, &[8, 1, 6, 6]);
    let mut opt = Adam::new(0.05);
    let mut losses = vec![];
    for step in 0..12 {
        let g = Graph::new();
        let cx = Ctx::new(&g, &store, Mode::Train, step);
        let logits = net.forward(&cx, &g.constant(x.clone())).unwrap();
        let l = loss::cross_entropy(&logits, &labels, 0.0).unwrap();
        losses.push(l.value().to_scalar().unwrap());
        let grads = cx.param_grads(&g.backward(&l).unwrap());
        cx.apply_updates(&mut store).unwrap();
        opt.step(&mut store, &grads).unwrap();
    }
    assert!(
        losses[11] < 0.1 && losses[11] < losses[0] / 5.0,
        "losses {losses:?}"
    );
}

/// Grey pixels `x = 4 (p - 0.5)` with p = 0.75 (x = 1): each RGB channel becomes
/// `(0.75 - mean_c) / std_c`; an RGB input is normalised channel by channel; 2 channels are
/// refused.
#[test]
fn imagenet_normalisation_by_hand() {
    let g = autograd::Graph::no_grad();
    let grey = g.constant(tensor::Tensor::full(&[1, 1, 2, 2], 1.0));
    let y = nn::data::imagenet_normalize(&grey, 0.25, 0.5).unwrap();
    assert_eq!(y.shape(), &[1, 3, 2, 2]);
    let v = y.value().to_vec();
    for c in 0..3 {
        let want = (0.75 - nn::data::IMAGENET_MEAN[c]) / nn::data::IMAGENET_STD[c];
        assert!(
            (v[c * 4] - want).abs() < 1e-6,
            "channel {c}: {} vs {want}",
            v[c * 4]
        );
    }
    let rgb = g.constant(tensor::Tensor::from_vec(vec![0.0, 0.5, 1.0], &[1, 3, 1, 1]).unwrap());
    let v = nn::data::imagenet_normalize(&rgb, 1.0, 0.0)
        .unwrap()
        .value()
        .to_vec();
    for (c, p) in [0.0f32, 0.5, 1.0].iter().enumerate() {
        let want = (p - nn::data::IMAGENET_MEAN[c]) / nn::data::IMAGENET_STD[c];
        assert!((v[c] - want).abs() < 1e-6);
    }
    let two = g.constant(tensor::Tensor::zeros(&[1, 2, 1, 1]));
    assert!(nn::data::imagenet_normalize(&two, 1.0, 0.0).is_err());
}
