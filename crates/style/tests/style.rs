//! Style transfer against hand-computed values and small real runs.

use autograd::Graph;
use nn::models::vgg::{Vgg, VggKind, VggPool};
use nn::{Ctx, Mode, ModelSeed};
use style::cost::{content_cost, gram, style_layer_cost, total_variation};
use style::image_io::{keep_colours, load_image, luminance_image, resize};
use style::net::{LossNetwork, NetworkKind};
use style::transfer::{Init, Optimizer, Targets, TransferConfig, total_cost, transfer};
use tensor::Tensor;

fn t(v: Vec<f32>, s: &[usize]) -> Tensor {
    Tensor::from_vec(v, s).unwrap()
}

/// a = one image, 2 channels, 1 x 2 positions: channel 0 = (1, 2), channel 1 = (3, 4).
/// Gram = [[1+4, 3+8], [3+8, 9+16]] = [[5, 11], [11, 25]].
#[test]
fn gram_matrix_by_hand() {
    let g = Graph::no_grad();
    let a = g.constant(t(vec![1.0, 2.0, 3.0, 4.0], &[1, 2, 1, 2]));
    assert_eq!(
        gram(&a).unwrap().value().to_vec(),
        vec![5.0, 11.0, 11.0, 25.0]
    );
}

/// Eq. 9: 1/2 * ((1-0)² + (2-4)²) = 2.5; and 0 when G = C.
/// Eq. 12 for the activation above against a zero Gram: n_H n_W n_C = 1*2*2 = 4, so the factor
/// is 1/(2*4)² = 1/64, times 5² + 11² + 11² + 25² = 892: 13.9375.
/// TV of [[1, 2], [4, 8]] (one channel): vertical (4-1)² + (8-2)² = 45, horizontal
/// (2-1)² + (8-4)² = 17: 62.
#[test]
fn costs_by_hand() {
    let g = Graph::no_grad();
    let c = g.constant(t(vec![1.0, 2.0], &[1, 1, 1, 2]));
    let x = g.constant(t(vec![0.0, 4.0], &[1, 1, 1, 2]));
    assert_eq!(
        content_cost(&c, &x).unwrap().value().to_scalar().unwrap(),
        2.5
    );
    assert_eq!(
        content_cost(&c, &c).unwrap().value().to_scalar().unwrap(),
        0.0
    );
    let a = g.constant(t(vec![1.0, 2.0, 3.0, 4.0], &[1, 2, 1, 2]));
    let zero = g.constant(Tensor::zeros(&[2, 2]));
    let s = style_layer_cost(&zero, &a)
        .unwrap()
        .value()
        .to_scalar()
        .unwrap();
    assert!((s - 892.0 / 64.0).abs() < 1e-5, "{s}");
    let img = g.constant(t(vec![1.0, 2.0, 4.0, 8.0], &[1, 1, 2, 2]));
    assert_eq!(
        total_variation(&img).unwrap().value().to_scalar().unwrap(),
        62.0
    );
    assert!(style_layer_cost(&g.constant(Tensor::zeros(&[3, 3])), &a).is_err());
}

fn random_vgg(kind: VggKind) -> (Vgg, nn::ParamStore) {
    let mut seed = ModelSeed::new(5);
    let net = Vgg::new(&mut seed.builder(), kind, VggPool::Avg).unwrap();
    (net, seed.store)
}

fn config(
    content: &str,
    styles: &[&str],
    optimizer: Optimizer,
    iterations: usize,
) -> TransferConfig {
    TransferConfig {
        content_layer: content.into(),
        style_layers: styles.iter().map(|s| s.to_string()).collect(),
        style_layer_weights: vec![],
        alpha: 1.0,
        beta: 1e3,
        tv: 1e-3,
        optimizer,
        iterations,
        init: Init::Noise,
        seed: 1,
    }
}

/// The gradient with respect to the pixels, through a random VGG's first convolution (content
/// and style taps there) plus total variation, against central differences. The taps sit before
/// the first ReLU on purpose: a finite difference across a ReLU kink is not a derivative, and a
/// random network has units near every kink; ReLU and pooling have their own gradient checks in
/// `autograd`.
#[test]
fn pixel_gradient_matches_finite_differences() {
    let (vgg, store) = random_vgg(VggKind::Vgg16);
    let net = LossNetwork::from_vgg(vgg, store, NetworkKind::Vgg16);
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3);
    let content = Tensor::rand_uniform(&[1, 3, 12, 12], 0.0, 1.0, &mut rng);
    let painting = Tensor::rand_uniform(&[1, 3, 12, 12], 0.0, 1.0, &mut rng);
    let cfg = config("conv1_1", &["conv1_1"], Optimizer::Lbfgs, 1);
    let targets = Targets::new(&net, &content, &[(painting, 1.0)], &cfg).unwrap();
    let x = Tensor::rand_uniform(&[1, 3, 12, 12], 0.0, 1.0, &mut rng);
    let loss_at = |img: &Tensor| -> f64 {
        let g = Graph::no_grad();
        let cx = Ctx::new(&g, &net.store, Mode::Eval, 0);
        let (l, _) = total_cost(&net, &targets, &cfg, &cx, &g.constant(img.clone())).unwrap();
        l.value().to_scalar().unwrap() as f64
    };
    let g = Graph::new();
    let cx = Ctx::new(&g, &net.store, Mode::Eval, 0);
    let leaf = g.leaf(x.clone());
    let (l, _) = total_cost(&net, &targets, &cfg, &cx, &leaf).unwrap();
    let grad = g.backward(&l).unwrap().get(&leaf).unwrap().to_vec();
    // Directional derivatives (along random unit directions and along the gradient itself):
    // a whole-image perturbation moves the f32 loss far above its rounding noise.
    let base = x.to_vec();
    let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>().sqrt();
    let mut dirs: Vec<Vec<f32>> = (0..3)
        .map(|_| Tensor::randn(x.shape(), 0.0, 1.0, &mut rng).to_vec())
        .collect();
    dirs.push(grad.clone());
    for d in dirs {
        let n = norm(&d);
        let d: Vec<f32> = d.iter().map(|v| v / n).collect();
        let h = 1e-2f32;
        let shifted = |s: f32| {
            t(
                base.iter().zip(&d).map(|(b, v)| b + s * v).collect(),
                x.shape(),
            )
        };
        let fd = (loss_at(&shifted(h)) - loss_at(&shifted(-h))) / (2.0 * h as f64);
        let analytic: f64 = grad
            .iter()
            .zip(&d)
            .map(|(g, v)| (*g as f64) * (*v as f64))
            .sum();
        let scale = fd.abs().max(analytic.abs()).max(1e-6);
        assert!(
            (fd - analytic).abs() / scale < 1e-2,
            "directional derivative: finite difference {fd} vs gradient {analytic}"
        );
    }
}

fn assets(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join(name)
}

fn photo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../nn/assets/images/coffee.png")
}

/// L-BFGS and Adam each lower the total loss on a 64 px run with the bundled SqueezeNet, and the
/// result is the lowest-loss image.
#[test]
fn lbfgs_and_adam_lower_the_loss_at_64_px() {
    let net = LossNetwork::load(NetworkKind::SqueezeNet, None, false).unwrap();
    let content = load_image(&photo(), Some(64)).unwrap();
    let painting = load_image(&assets("starry_night.jpg"), Some(64)).unwrap();
    let (c, s) = net.default_layers();
    for opt in [Optimizer::Lbfgs, Optimizer::Adam { lr: 0.05 }] {
        let cfg = config(c, &s, opt, 8);
        let targets = Targets::new(&net, &content, &[(painting.clone(), 1.0)], &cfg).unwrap();
        let out = transfer(&net, &targets, &content, &cfg, None, |_, _| true).unwrap();
        let first = out.history[0].loss;
        let last = out.history.last().unwrap().loss;
        assert!(last < 0.5 * first, "{opt:?}: {first} -> {last}");
        assert!(
            out.best_loss <= last,
            "{opt:?}: best {} last {last}",
            out.best_loss
        );
        assert_eq!(out.image.shape(), content.shape());
    }
}

/// VGG19 with random weights in torchvision's layout, written to and read from safetensors:
/// layer names resolve and a transfer step runs; unknown layers list the valid ones.
#[test]
fn vgg19_from_a_torchvision_layout_file() {
    let (_, store) = random_vgg(VggKind::Vgg19);
    let dir = std::env::temp_dir().join(format!("style-vgg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vgg19.safetensors");
    nn::weights::save_safetensors(&store, &path).unwrap();
    let net = LossNetwork::load(NetworkKind::Vgg19, Some(&path), true).unwrap();
    assert_eq!(net.layer_index("relu4_2").unwrap(), 22);
    assert_eq!(net.layer_index("conv1_1").unwrap(), 0);
    let e = net.layer_index("relu9_9").unwrap_err().to_string();
    assert!(e.contains("relu5_1"), "{e}");
    let content = Tensor::full(&[1, 3, 32, 32], 0.5);
    let cfg = config(
        "relu4_2",
        &["relu1_1", "relu3_1"],
        Optimizer::Adam { lr: 0.01 },
        2,
    );
    let targets = Targets::new(&net, &content, &[(content.clone(), 1.0)], &cfg).unwrap();
    let out = transfer(&net, &targets, &content, &cfg, None, |_, _| true).unwrap();
    assert_eq!(out.history.len(), 2);
    // A missing weights file is an error naming it.
    let e = LossNetwork::load(
        NetworkKind::Vgg19,
        Some(&dir.join("nope.safetensors")),
        false,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("nope.safetensors"), "{e}");
    assert!(LossNetwork::load(NetworkKind::Vgg19, None, false).is_err());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn colour_preservation_keeps_the_content_colours() {
    let content = load_image(&photo(), Some(48)).unwrap();
    let lum = luminance_image(&content, None);
    // A grey image: the three channels are equal.
    let v = lum.to_vec();
    let n = v.len() / 3;
    assert!((0..n).all(|i| v[i] == v[n + i] && v[i] == v[2 * n + i]));
    // Putting the content's own luminance back under its colours gives the content again.
    let back = keep_colours(&lum, &content);
    let (a, b) = (back.to_vec(), content.to_vec());
    let err = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(err < 2e-3, "max error {err}");
    assert_eq!(resize(&content, 24, 30).shape(), &[1, 3, 24, 30]);
    let e = load_image(std::path::Path::new("/nonexistent/photo.jpg"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/photo.jpg"), "{e}");
}
