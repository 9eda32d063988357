//! The bundled pretrained SqueezeNet 1.1 reproduces PyTorch's golden numbers and classifies
//! the bundled CC0 photos as PyTorch does.

use std::path::PathBuf;

use autograd::Graph;
use nn::data::{IMAGENET_MEAN, IMAGENET_STD, load_rgb, resize_rgb, rgb_to_tensor};
use nn::models::squeezenet::SqueezeNet;
use nn::{Ctx, Error, Mode, Module};
use tensor::Tensor;

fn assets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets")
}

/// Relative closeness with a floor for values near zero.
fn rel_close(got: f64, want: f64, tol: f64) -> bool {
    (got - want).abs() <= tol * want.abs().max(1e-2)
}

#[test]
fn golden_statistics_match_pytorch() {
    let (net, store) = SqueezeNet::pretrained(&assets().join("squeezenet1_1.safetensors")).unwrap();
    assert_eq!(store.num_weights(), 1_235_496);
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(assets().join("squeezenet1_1.golden.json")).unwrap(),
    )
    .unwrap();
    // x[0,c,h,w] = sin(0.1 h + 0.2 w + c), computed in f64 then cast.
    let mut data = vec![0.0f32; 3 * 64 * 64];
    for c in 0..3 {
        for h in 0..64 {
            for w in 0..64 {
                data[(c * 64 + h) * 64 + w] =
                    (0.1 * h as f64 + 0.2 * w as f64 + c as f64).sin() as f32;
            }
        }
    }
    let g = Graph::no_grad();
    let cx = Ctx::new(&g, &store, Mode::Eval, 0);
    let x = g.constant(Tensor::from_vec(data, &[1, 3, 64, 64]).unwrap());
    let taps = [0usize, 1, 2, 3, 5, 8, 12];
    let outs = net.features(&cx, &x, &taps).unwrap();
    for (&i, out) in taps.iter().zip(&outs) {
        let want = &golden["outputs"][format!("features.{i}")];
        let shape: Vec<usize> = want["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(out.shape(), &shape[..], "features.{i} shape");
        let v: Vec<f64> = out.value().to_vec().iter().map(|&x| x as f64).collect();
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        // torch.std is the unbiased estimate.
        let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        let sum_abs: f64 = v.iter().map(|x| x.abs()).sum();
        for (name, got, key) in [
            ("mean", mean, "mean"),
            ("std", std, "std"),
            ("sum|x|", sum_abs, "sum_abs"),
        ] {
            let w = want[key].as_f64().unwrap();
            assert!(rel_close(got, w, 1e-3), "features.{i} {name}: {got} vs {w}");
        }
        for (k, w) in want["first5"].as_array().unwrap().iter().enumerate() {
            let w = w.as_f64().unwrap();
            assert!(
                rel_close(v[k], w, 1e-3),
                "features.{i} first5[{k}]: {} vs {w}",
                v[k]
            );
        }
    }
    let pre = net
        .class_map(&cx, &x)
        .unwrap()
        .value()
        .mean_axes(&[], false)
        .unwrap()
        .to_scalar()
        .unwrap() as f64;
    let want_pre = golden["outputs"]["classifier.1 (pre-relu) mean"]
        .as_f64()
        .unwrap();
    assert!(
        rel_close(pre, want_pre, 1e-3),
        "classifier pre-relu mean {pre} vs {want_pre}"
    );
    let scores = net.forward(&cx, &x).unwrap().value().to_vec();
    let mut order: Vec<usize> = (0..1000).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    for (k, pair) in golden["outputs"]["model output after relu+avgpool top5"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let (cls, val) = (
            pair[0].as_u64().unwrap() as usize,
            pair[1].as_f64().unwrap(),
        );
        assert_eq!(order[k], cls, "top-{} class", k + 1);
        assert!(
            rel_close(scores[cls] as f64, val, 1e-3),
            "class {cls} score {} vs {val}",
            scores[cls]
        );
    }
}

/// Softmax probabilities of the photo at `path`, resized to 227 x 227.
fn classify(net: &SqueezeNet, store: &nn::ParamStore, name: &str) -> Vec<f32> {
    let img = resize_rgb(
        &load_rgb(&assets().join("images").join(name)).unwrap(),
        227,
        227,
    );
    let x = rgb_to_tensor(&img, IMAGENET_MEAN, IMAGENET_STD)
        .unsqueeze(0)
        .unwrap();
    let g = Graph::no_grad();
    let cx = Ctx::new(&g, store, Mode::Eval, 0);
    net.forward(&cx, &g.constant(x))
        .unwrap()
        .value()
        .softmax(1)
        .unwrap()
        .to_vec()
}

fn top1(p: &[f32]) -> usize {
    (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap()
}

#[test]
fn classifies_the_bundled_photos() {
    let (net, store) = SqueezeNet::pretrained(&assets().join("squeezenet1_1.safetensors")).unwrap();
    let coffee = classify(&net, &store, "coffee.png");
    assert_eq!(top1(&coffee), 967, "espresso");
    assert!(coffee[967] > 0.9, "espresso probability {}", coffee[967]);
    assert_eq!(top1(&classify(&net, &store, "camera.png")), 872, "tripod");
    // ImageNet's domestic cats are 281..=285 (tabby, tiger, Persian, Siamese, Egyptian).
    let cat = top1(&classify(&net, &store, "chelsea.png"));
    assert!((281..=285).contains(&cat), "class {cat} is not a cat");
}

#[test]
fn bad_weight_files_and_images_are_named_in_the_error() {
    let dir = std::env::temp_dir().join(format!("nn-sq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"definitely not safetensors").unwrap();
    match SqueezeNet::pretrained(&junk) {
        Err(Error::Corrupt { path, .. }) => assert_eq!(path, junk),
        other => panic!("expected Corrupt, got {:?}", other.err()),
    }
    assert!(matches!(
        SqueezeNet::pretrained(&dir.join("absent.safetensors")),
        Err(Error::Io { .. })
    ));
    let not_img = dir.join("x.png");
    std::fs::write(&not_img, b"nope").unwrap();
    match load_rgb(&not_img) {
        Err(e @ Error::Corrupt { .. }) => assert!(e.to_string().contains("x.png"), "{e}"),
        other => panic!("expected Corrupt, got {:?}", other.err()),
    }
}
