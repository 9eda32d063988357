//! The LFW protocol parsers, the Omniglot readers and the DeepFace heads against hand-made
//! inputs and hand-computed values.

use std::path::Path;

use autograd::Graph;
use faces::data::{check_pair_images, load_oneshot_runs, parse_pairs, parse_people};
use faces::heads::{DeepFaceHead, HeadKind, score};
use nn::{Ctx, Mode, ModelSeed};
use tensor::Tensor;

const PAIRS_V2: &str = "2\t1\nAlice\t1\t2\nAlice\t1\tBob\t3\nCarol\t2\t4\nBob\t1\tDave\t1\n";

#[test]
fn pairs_file_with_folds() {
    let p = parse_pairs(PAIRS_V2, Path::new("pairs.txt")).unwrap();
    assert_eq!(p.len(), 4);
    assert_eq!((p[0].same, p[0].fold, p[0].line), (true, 0, 2));
    assert_eq!(
        (p[1].a.name.as_str(), p[1].b.name.as_str(), p[1].b.index),
        ("Alice", "Bob", 3)
    );
    assert_eq!(
        (p[2].same, p[2].fold, p[2].a.index, p[2].b.index),
        (true, 1, 2, 4)
    );
    assert_eq!((p[3].same, p[3].fold, p[3].line), (false, 1, 5));
}

#[test]
fn dev_pairs_file_has_one_fold() {
    let p = parse_pairs("1\nA\t1\t2\nA\t1\tB\t1\n", Path::new("pairsDevTest.txt")).unwrap();
    assert_eq!(p.len(), 2);
    assert!(p.iter().all(|q| q.fold == 0));
}

#[test]
fn bad_pairs_files_name_the_line() {
    let err = |text: &str| {
        parse_pairs(text, Path::new("pairs.txt"))
            .unwrap_err()
            .to_string()
    };
    // A different-person line where a same-person line belongs.
    let e = err("1\nA\t1\tB\t2\nA\t1\tB\t1\n");
    assert!(e.contains("line 2") && e.contains("same-person"), "{e}");
    // A non-numeric image number.
    let e = err("1\nA\t1\tx\nA\t1\tB\t1\n");
    assert!(e.contains("line 2") && e.contains("\"x\""), "{e}");
    // Fewer lines than the header promises.
    let e = err("2\t1\nA\t1\t2\nA\t1\tB\t1\n");
    assert!(
        e.contains("2 fold(s) of 1 + 1") && e.contains("has 2 lines"),
        "{e}"
    );
    assert!(err("").contains("empty"));
    assert!(err("ten\n").contains("header"));
    // No pairs at all: an error, not metrics of nothing.
    assert!(err("0\n").contains("no pairs"));
    assert!(err("10\t0\n").contains("no pairs"));
    // Counts whose product overflows: refused, not a panic or a wrapped count.
    let e = err("18446744073709551615\t18446744073709551615\nA\t1\t2\n");
    assert!(e.contains("fold(s)"), "{e}");
}

#[test]
fn people_files_both_layouts() {
    let dev = parse_people("2\nAlice\t3\nBob\t1\n", Path::new("peopleDevTrain.txt")).unwrap();
    assert_eq!(dev, vec![("Alice".to_string(), 3), ("Bob".to_string(), 1)]);
    let folded = parse_people(
        "2\n1\nAlice\t3\n2\nBob\t1\nCarol\t2\n",
        Path::new("people.txt"),
    )
    .unwrap();
    assert_eq!(folded.len(), 3);
    assert_eq!(folded[2], ("Carol".to_string(), 2));
    let e = parse_people("2\nAlice\t3\n", Path::new("p.txt"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("fewer people"), "{e}");
    let e = parse_people("1\nAlice 3\n", Path::new("p.txt"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2") && e.contains("name<TAB>count"), "{e}");
}

#[test]
fn a_pair_naming_a_missing_image_is_reported_with_its_line() {
    let dir = std::env::temp_dir().join(format!("faces-lfw-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("Alice")).unwrap();
    let img = image::GrayImage::new(4, 4);
    img.save(dir.join("Alice/Alice_0001.jpg")).unwrap();
    img.save(dir.join("Alice/Alice_0002.jpg")).unwrap();
    let pairs = parse_pairs("1\nAlice\t1\t2\nAlice\t1\tBob\t1\n", Path::new("pairs.txt")).unwrap();
    let e = check_pair_images(&dir, &pairs, Path::new("pairs.txt"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 3") && e.contains("Bob_0001.jpg"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn oneshot_runs_map_items_to_their_class() {
    let dir = std::env::temp_dir().join(format!("faces-runs-{}", std::process::id()));
    let run = dir.join("run01");
    std::fs::create_dir_all(run.join("training")).unwrap();
    std::fs::create_dir_all(run.join("test")).unwrap();
    for (i, v) in [0u8, 128, 255].iter().enumerate() {
        let img = image::GrayImage::from_pixel(6, 6, image::Luma([*v]));
        img.save(run.join(format!("training/class{:02}.png", i + 1)))
            .unwrap();
        img.save(run.join(format!("test/item{:02}.png", i + 1)))
            .unwrap();
    }
    std::fs::write(
        run.join("class_labels.txt"),
        "run01/test/item01.png run01/training/class03.png\nrun01/test/item02.png run01/training/class01.png\n",
    )
    .unwrap();
    let runs = load_oneshot_runs(&dir, 4).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].training.len(), 3);
    assert_eq!(runs[0].answer, vec![2, 0]);
    // Ink is dark on white: a black image is all ink (value 1 -> normalised 2).
    assert!(
        runs[0].training[0]
            .to_vec()
            .iter()
            .all(|&v| (v - 2.0).abs() < 1e-6)
    );
    std::fs::write(run.join("class_labels.txt"), "run01/test/item01.png\n").unwrap();
    let e = load_oneshot_runs(&dir, 4).unwrap_err().to_string();
    assert!(e.contains("line 1"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Eq. 3 and eq. 4 with a = (-1, -2), b = 0.5 on f_i = (0.6, 0.8), f_j = (0.8, 0.6):
/// |f_i - f_j| = (0.2, 0.2): logit = -0.2 - 0.4 + 0.5 = -0.1;
/// chi-square terms 0.04 / 1.4 each: logit = -(1 + 2) * 0.04 / 1.4 + 0.5 = 0.414286.
/// BCE for a same pair is -log(sigmoid(logit)) = log(1 + e^{-logit}).
#[test]
fn deepface_heads_match_hand_computed_values() {
    for (kind, want) in [
        (HeadKind::L1, -0.1f32),
        (HeadKind::ChiSquare, 0.5 - 0.12 / 1.4),
    ] {
        let mut seed = ModelSeed::new(0);
        let head = DeepFaceHead::new(&mut seed.builder(), kind, 2, 0.5).unwrap();
        let mut store = seed.store;
        store
            .set(
                head.weight,
                Tensor::from_vec(vec![-1.0, -2.0], &[2]).unwrap(),
            )
            .unwrap();
        let g = Graph::new();
        let cx = Ctx::new(&g, &store, Mode::Train, 0);
        let fi = g.constant(Tensor::from_vec(vec![0.6, 0.8], &[1, 2]).unwrap());
        let fj = g.constant(Tensor::from_vec(vec![0.8, 0.6], &[1, 2]).unwrap());
        let logit = head.logits(&cx, &fi, &fj).unwrap();
        let got = logit.value().to_vec()[0];
        assert!((got - want).abs() < 1e-5, "{kind:?}: {got} vs {want}");
        let plain = score(kind, &[-1.0, -2.0], 0.5, &[0.6, 0.8], &[0.8, 0.6]);
        assert!(
            (plain + want).abs() < 1e-5,
            "{kind:?}: score {plain} vs -{want}"
        );
        let t = g.constant(Tensor::from_vec(vec![1.0], &[1]).unwrap());
        let bce = nn::loss::bce_with_logits(&logit, &t)
            .unwrap()
            .value()
            .to_vec()[0];
        let want_bce = (1.0 + (-want).exp()).ln();
        assert!(
            (bce - want_bce).abs() < 1e-5,
            "{kind:?}: bce {bce} vs {want_bce}"
        );
    }
}

#[test]
fn without_keeps_every_identity_outside_the_range_in_order() {
    let ids = faces::data::Identities {
        names: (1..=6).map(|i| format!("s{i}")).collect(),
        images: (0..6)
            .map(|i| vec![Tensor::from_vec(vec![i as f32], &[1, 1, 1]).unwrap()])
            .collect(),
    };
    let rest = ids.without(2..4);
    assert_eq!(rest.names, ["s1", "s2", "s5", "s6"]);
    let firsts: Vec<f32> = rest.images.iter().map(|v| v[0].to_vec()[0]).collect();
    assert_eq!(firsts, [0.0, 1.0, 4.0, 5.0]);
    assert_eq!(ids.slice(2..4).names, ["s3", "s4"]);
}

#[test]
fn to_pixels_undoes_either_normalisation() {
    let rgb =
        image::RgbImage::from_fn(5, 4, |x, y| image::Rgb([(x * 40) as u8, (y * 60) as u8, 7]));
    let img = image::DynamicImage::ImageRgb8(rgb.clone());
    let grey = faces::data::Preprocess::grey(4, 5);
    let dlib = faces::resnet29::preprocess(None);
    let dlib = faces::data::Preprocess {
        size: (4, 5),
        ..dlib
    };
    for (pre, channels) in [(grey, 1usize), (dlib, 3)] {
        let back = pre
            .to_pixels(&pre.apply(img.clone(), Path::new("t")).unwrap())
            .to_vec();
        let luma = image::DynamicImage::ImageRgb8(rgb.clone()).to_luma8();
        for c in 0..channels {
            for (i, (x, y, p)) in rgb.enumerate_pixels().enumerate() {
                let want = if channels == 1 {
                    f32::from(luma.get_pixel(x, y)[0])
                } else {
                    f32::from(p[c])
                };
                let got = back[c * 20 + i];
                assert!(
                    (got - want).abs() < 1e-3,
                    "channel {c} pixel {i}: {got} vs {want}"
                );
            }
        }
    }
}
