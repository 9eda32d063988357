//! The pretrained face ResNet-29 against the golden fixtures of its reference implementation
//! (numpy / PyTorch re-implementations that match face-api.js to 3e-7): the bundled public-domain
//! astronaut fixture always; the LFW fixtures and the safetensors copy when `CNN_WEIGHTS_DIR`
//! (and `CNN_LFW_DIR`) point at them.

#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};

use faces::data::CropBox;
use faces::resnet29::{self, FaceResNet29};
use nn::npy::{parse_npy, read_npz};
use tensor::Tensor;

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/face_resnet29/golden")
}

fn npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let a = parse_npy(&bytes, path).unwrap();
    (a.shape.clone(), a.to_f32())
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// An `rgb_u8` fixture as an image.
fn rgb_image(path: &Path) -> image::DynamicImage {
    let bytes = std::fs::read(path).unwrap();
    let a = parse_npy(&bytes, path).unwrap();
    assert_eq!(a.shape.len(), 3);
    let (h, w) = (a.shape[0] as u32, a.shape[1] as u32);
    image::DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, a.bytes.clone()).unwrap())
}

fn embed(net: &FaceResNet29, input: &Tensor) -> Vec<f32> {
    net.forward(input).unwrap().to_vec()
}

#[test]
fn astronaut_embedding_from_the_exact_input_matches_within_1e4() {
    let net = FaceResNet29::bundled().unwrap();
    let (shape, input) = npy(&golden().join("astronaut.input.npy"));
    let (_, want) = npy(&golden().join("astronaut.emb.npy"));
    let got = embed(&net, &Tensor::from_vec(input, &shape).unwrap());
    let d = max_abs_diff(&got, &want);
    eprintln!("astronaut from input.npy: max |diff| {d:.2e}");
    assert!(d <= 1e-4, "max |diff| {d}");
}

#[test]
fn astronaut_through_our_crop_and_resize_matches_within_1e4() {
    let net = FaceResNet29::bundled().unwrap();
    let pre = resnet29::preprocess(Some(CropBox {
        x: 166,
        y: 69,
        w: 117,
        h: 117,
    }));
    let img = rgb_image(&golden().join("astronaut.rgb_u8.npy"));
    let x = pre.apply(img, Path::new("astronaut")).unwrap();
    let (shape, want_input) = npy(&golden().join("astronaut.input.npy"));
    let di = max_abs_diff(&x.to_vec(), &want_input);
    assert!(di <= 1e-5, "input max |diff| {di}");
    let got = embed(&net, &x.reshape(&shape).unwrap());
    let (_, want) = npy(&golden().join("astronaut.emb.npy"));
    let d = max_abs_diff(&got, &want);
    eprintln!("astronaut from rgb_u8: input max |diff| {di:.2e}, embedding {d:.2e}");
    assert!(d <= 1e-4, "max |diff| {d}");
}

#[test]
fn a_chip_samples_the_box_like_the_reference_and_replicates_the_edge() {
    // The astronaut's reference input: the same half-pixel bilinear sampling of the box
    // (166, 69, side 117), except that the reference clamps to the crop where a chip reads
    // the neighbouring pixels: the two agree inside a one-pixel border.
    let img = rgb_image(&golden().join("astronaut.rgb_u8.npy")).to_rgb8();
    let pixels = nn::data::rgb_to_tensor(&img, [0.0; 3], [1.0 / 255.0; 3]);
    let face = resnet29::SquareBox {
        x: 166.0,
        y: 69.0,
        side: 117.0,
    };
    let chip = resnet29::chip(&pixels, face).unwrap();
    assert_eq!(chip.shape(), &[3, 150, 150]);
    let (_, want) = npy(&golden().join("astronaut.input.npy"));
    let got = chip.to_vec();
    let mut worst = 0f32;
    for c in 0..3 {
        for y in 1..149 {
            for x in 1..149 {
                let i = (c * 150 + y) * 150 + x;
                worst = worst.max((got[i] - want[i]).abs());
            }
        }
    }
    assert!(worst <= 1e-5, "max |diff| inside the border {worst}");
    // A grey image feeds all three channels; left of the image, the left column repeats.
    let grey = Tensor::from_vec((0..12).map(|v| v as f32 * 20.0).collect(), &[1, 3, 4]).unwrap();
    let off = resnet29::chip(
        &grey,
        resnet29::SquareBox {
            x: -10.0,
            y: 0.0,
            side: 3.0,
        },
    )
    .unwrap()
    .to_vec();
    for c in 0..3 {
        let mean = resnet29::MEAN_RGB[c];
        let row0 = &off[c * 150 * 150..][..150];
        assert!(row0.iter().all(|v| (v - (0.0 - mean) / 255.0).abs() < 1e-6));
        let last = &off[(c * 150 + 149) * 150..][..150];
        assert!(
            last.iter()
                .all(|v| (v - (160.0 - mean) / 255.0).abs() < 1e-4)
        );
    }
    // Bad input is a named error.
    assert!(resnet29::chip(&Tensor::zeros(&[2, 4, 4]), face).is_err());
    let flat = resnet29::SquareBox { side: 0.0, ..face };
    let e = resnet29::chip(&pixels, flat).unwrap_err().to_string();
    assert!(e.contains("positive side"), "{e}");
}

#[test]
fn astronaut_stage_activations_match_per_block() {
    let net = FaceResNet29::bundled().unwrap();
    let (shape, input) = npy(&golden().join("astronaut.input.npy"));
    let stages = read_npz(&golden().join("astronaut.stages.npz")).unwrap();
    let mut seen = vec![];
    net.forward_with(&Tensor::from_vec(input, &shape).unwrap(), &mut |name, t| {
        seen.push((name.to_string(), t.shape().to_vec(), t.to_vec()));
    })
    .unwrap();
    assert_eq!(seen.len(), stages.len(), "one stage per golden array");
    for (name, want) in &stages {
        let (_, got_shape, got) = seen
            .iter()
            .find(|s| &s.0 == name)
            .unwrap_or_else(|| panic!("no stage {name}"));
        assert_eq!(got_shape, &want.shape, "{name}");
        let want = want.to_f32();
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = max_abs_diff(got, &want);
        eprintln!("stage {name:16} max |diff| {d:.2e} (values up to {scale:.2})");
        assert!(d <= 1e-5 * (1.0 + scale), "{name}: max |diff| {d}");
    }
}

#[test]
fn the_graph_version_gives_every_golden_stage_and_projects_back_to_the_input() {
    use nn::inspect::Layered;
    let net = FaceResNet29::bundled().unwrap();
    let (shape, input) = npy(&golden().join("astronaut.input.npy"));
    let x = Tensor::from_vec(input, &shape).unwrap();
    let stages = read_npz(&golden().join("astronaut.stages.npz")).unwrap();
    let store = nn::ParamStore::default();
    for (l, name) in resnet29::STAGES.iter().enumerate() {
        let g = autograd::Graph::no_grad();
        let cx = nn::Ctx::new(&g, &store, nn::Mode::Eval, 0);
        let got = net.layer(&cx, &g.constant(x.clone()), l).unwrap();
        let want = &stages.iter().find(|s| s.0 == *name).unwrap().1;
        assert_eq!(got.shape(), &want.shape[..], "{name}");
        let want = want.to_f32();
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = max_abs_diff(&got.value().to_vec(), &want);
        assert!(d <= 1e-5 * (1.0 + scale), "{name}: max |diff| {d}");
    }
    // The strongest unit of the last block at (0, 0), projected back by the deconvnet rule
    // through the zero-extended residual sums: an input-shaped, finite, non-zero map.
    let last = {
        let g = autograd::Graph::no_grad();
        let cx = nn::Ctx::new(&g, &store, nn::Mode::Eval, 0);
        net.layer(&cx, &g.constant(x.clone()), 15)
            .unwrap()
            .value()
            .to_vec()
    };
    let unit = (0..256)
        .max_by(|&a, &b| last[a * 4].total_cmp(&last[b * 4]))
        .unwrap();
    assert!(last[unit * 4] > 0.0);
    let p = nn::inspect::project(
        &net,
        &store,
        &x.reshape(&[3, 150, 150]).unwrap(),
        15,
        unit,
        (0, 0),
        autograd::ReluRule::Deconvnet,
    )
    .unwrap();
    assert_eq!(p.shape(), &[3, 150, 150]);
    let v = p.to_vec();
    assert!(v.iter().all(|x| x.is_finite()) && v.iter().any(|x| *x != 0.0));
    let g = autograd::Graph::no_grad();
    let cx = nn::Ctx::new(&g, &store, nn::Mode::Eval, 0);
    let e = net.layer(&cx, &g.constant(x), 16).unwrap_err().to_string();
    assert!(e.contains("beyond the last"), "{e}");
}

#[test]
fn wrong_input_shape_and_broken_weight_files_are_named_errors() {
    let net = FaceResNet29::bundled().unwrap();
    let e = net.forward(&Tensor::zeros(&[1, 3, 112, 112])).unwrap_err();
    assert!(e.to_string().contains("(N, 3, 150, 150)"), "{e}");

    let dir = tempdir("resnet29-broken");
    let src = resnet29::bundled_manifest();
    let src_dir = src.parent().unwrap();
    let manifest = dir.join("face_recognition_model-weights_manifest.json");
    std::fs::copy(&src, &manifest).unwrap();
    // Truncated .bin.
    let bin = std::fs::read(src_dir.join("face_recognition_model.bin")).unwrap();
    std::fs::write(
        dir.join("face_recognition_model.bin"),
        &bin[..bin.len() - 100],
    )
    .unwrap();
    let e = FaceResNet29::load_tfjs(&manifest)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("face_recognition_model.bin") && e.contains("truncated"),
        "{e}"
    );
    // Missing .bin.
    std::fs::remove_file(dir.join("face_recognition_model.bin")).unwrap();
    let e = FaceResNet29::load_tfjs(&manifest)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("face_recognition_model.bin"), "{e}");
    // A manifest that lost a tensor.
    std::fs::write(dir.join("face_recognition_model.bin"), &bin).unwrap();
    let text = std::fs::read_to_string(&src).unwrap();
    let renamed = text.replace("\"fc\"", "\"fully_connected\"");
    std::fs::write(&manifest, renamed).unwrap();
    let e = FaceResNet29::load_tfjs(&manifest)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("\"fc.weight\""), "{e}");
    // Not JSON.
    std::fs::write(&manifest, "<html>").unwrap();
    let e = FaceResNet29::load_tfjs(&manifest)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a TF.js weights manifest"), "{e}");
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn weights_dir() -> Option<PathBuf> {
    match std::env::var_os("CNN_WEIGHTS_DIR") {
        Some(v) => Some(PathBuf::from(v).join("face_resnet29")),
        None => {
            eprintln!("skipped: set CNN_WEIGHTS_DIR to run this test on the shared weights");
            None
        }
    }
}

#[test]
fn safetensors_copy_equals_the_bundled_tfjs_weights() {
    let Some(dir) = weights_dir() else { return };
    let a = FaceResNet29::load_safetensors(&dir.join("face_resnet29.safetensors")).unwrap();
    let b = FaceResNet29::bundled().unwrap();
    assert_eq!(a.weights_hash, b.weights_hash);
    let (shape, input) = npy(&golden().join("astronaut.input.npy"));
    let x = Tensor::from_vec(input, &shape).unwrap();
    assert_eq!(embed(&a, &x), embed(&b, &x));
}

/// The four LFW fixtures (kept out of the repository: LFW is for research only): from the
/// exact input, from the decoded pixels through our crop and resize, and from the JPEG decoded
/// by the `image` crate (which may differ from Pillow by one level on some pixels).
#[test]
fn lfw_golden_fixtures_are_reproduced() {
    let Some(dir) = weights_dir() else { return };
    let gold = dir.join("golden");
    let net = FaceResNet29::bundled().unwrap();
    let pre = resnet29::preprocess(Some(resnet29::LFW_CROP));
    let ids = [
        "Colin_Powell_0049",
        "Colin_Powell_0074",
        "Tony_Blair_0048",
        "Tony_Blair_0064",
    ];
    let lfw = std::env::var_os("CNN_LFW_DIR").map(PathBuf::from);
    let mut from_jpeg = vec![];
    for id in ids {
        let (shape, input) = npy(&gold.join(format!("{id}.input.npy")));
        let (_, want) = npy(&gold.join(format!("{id}.emb.npy")));
        let d = max_abs_diff(
            &embed(&net, &Tensor::from_vec(input, &shape).unwrap()),
            &want,
        );
        assert!(d <= 1e-4, "{id} from input.npy: {d}");
        let x = pre
            .apply(
                rgb_image(&gold.join(format!("{id}.rgb_u8.npy"))),
                Path::new(id),
            )
            .unwrap();
        let d2 = max_abs_diff(&embed(&net, &x.reshape(&shape).unwrap()), &want);
        assert!(d2 <= 1e-4, "{id} from rgb_u8: {d2}");
        eprintln!("{id}: input.npy {d:.2e}, rgb_u8 {d2:.2e}");
        if let Some(lfw) = &lfw {
            let person = &id[..id.len() - 5];
            let file = lfw
                .join("lfw-deepfunneled")
                .join(person)
                .join(format!("{id}.jpg"));
            let x = pre.load(&file).unwrap();
            let e = embed(&net, &x.reshape(&shape).unwrap());
            let d3 = max_abs_diff(&e, &want);
            eprintln!("{id}: from the JPEG {d3:.2e}");
            assert!(d3 <= 1e-2, "{id} from the JPEG: {d3}");
            from_jpeg.push(e);
        }
    }
    if from_jpeg.len() == 4 {
        let dist = |a: &[f32], b: &[f32]| faces::model::squared_l2(a, b).sqrt();
        assert!(dist(&from_jpeg[0], &from_jpeg[1]) < 0.6);
        assert!(dist(&from_jpeg[2], &from_jpeg[3]) < 0.6);
        for i in 0..2 {
            for j in 2..4 {
                assert!(dist(&from_jpeg[i], &from_jpeg[j]) > 0.6);
            }
        }
    }
}
