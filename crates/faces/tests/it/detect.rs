//! Face detection, landmarks and dlib alignment against the golden outputs of the reference
//! package (@vladmandic/face-api 1.7.15 on its tfjs CPU backend) and of dlib 20.0.1: the
//! bundled public-domain astronaut fixtures always; the LFW-derived fixtures (not
//! redistributed) when `CNN_WEIGHTS_DIR` points at the shared weights folder.

#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};

use faces::align::{self, ChipDetails, Template};
use faces::detect::{
    DetectOptions, Detection, DetectorKind, FaceFinder, LandmarkKind, LandmarkNet, SsdMobilenetV1,
    TinyFaceDetector, bundled_dir,
};
use nn::npy::{parse_npy, read_npz};
use serde_json::Value;

fn golden_dir() -> PathBuf {
    bundled_dir().join("golden")
}

fn golden() -> Value {
    let text = std::fs::read_to_string(golden_dir().join("golden_astronaut.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn astronaut() -> image::RgbImage {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/face_resnet29/golden/astronaut.rgb_u8.npy");
    npy_rgb(&p)
}

fn npy_rgb(p: &Path) -> image::RgbImage {
    let a = parse_npy(&std::fs::read(p).unwrap(), p).unwrap();
    image::RgbImage::from_raw(a.shape[1] as u32, a.shape[0] as u32, a.bytes.clone()).unwrap()
}

fn portrait() -> image::RgbImage {
    image::imageops::crop_imm(&astronaut(), 101, 10, 281, 400).to_image()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|x| match x {
            Value::Array(_) => f64s(x),
            _ => vec![x.as_f64().unwrap()],
        })
        .collect()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn boxes(d: &[Detection]) -> Vec<f64> {
    d.iter()
        .flat_map(|d| [d.x, d.y, d.width, d.height])
        .collect()
}

/// Detections and landmarks of one image against its golden entry: same count and order,
/// boxes and landmarks within 1e-2 px, scores within 1e-3.
fn check_image(img: &image::RgbImage, entry: &Value, ssd: &FaceFinder, tiny: &FaceFinder) {
    let id = entry["id"].as_str().unwrap();
    let tiny_lm = LandmarkNet::load(
        &bundled_dir().join("face_landmark_68_tiny_model-weights_manifest.json"),
        LandmarkKind::Tiny,
    )
    .unwrap();
    for (finder, key) in [(ssd, "ssd"), (tiny, "tiny")] {
        let want = entry[key].as_array().unwrap();
        let faces = finder.find(img).unwrap();
        assert_eq!(faces.len(), want.len(), "{id} {key}: face count");
        let dets: Vec<Detection> = faces.iter().map(|f| f.detection).collect();
        let want_boxes: Vec<f64> = want.iter().flat_map(|w| f64s(&w["box"])).collect();
        let db = max_diff(&boxes(&dets), &want_boxes);
        let ds = max_diff(
            &dets.iter().map(|d| f64::from(d.score)).collect::<Vec<_>>(),
            &want
                .iter()
                .map(|w| w["score"].as_f64().unwrap())
                .collect::<Vec<_>>(),
        );
        let got_lm: Vec<f64> = faces
            .iter()
            .flat_map(|f| f.landmarks.clone().unwrap().into_iter().flatten())
            .collect();
        let want_lm: Vec<f64> = want.iter().flat_map(|w| f64s(&w["lm68"])).collect();
        let dl = max_diff(&got_lm, &want_lm);
        eprintln!("{id} {key}: boxes {db:.2e} px, scores {ds:.2e}, landmarks {dl:.2e} px");
        assert!(db <= 1e-2 && ds <= 1e-3 && dl <= 1e-2, "{id} {key}");
        if key == "ssd" {
            let mut d = 0f64;
            for (f, w) in dets.iter().zip(want) {
                let lm = tiny_lm.landmarks(img, f).unwrap().unwrap();
                let got: Vec<f64> = lm.iter().flatten().copied().collect();
                d = d.max(max_diff(&got, &f64s(&w["lm68_tinynet"])));
            }
            eprintln!("{id} tiny landmark net on SSD faces: {d:.2e} px");
            assert!(d <= 1e-2, "{id} tiny landmark net");
        }
    }
}

fn finders() -> (FaceFinder, FaceFinder) {
    (
        FaceFinder::load(DetectorKind::Ssd, None).unwrap(),
        FaceFinder::load(DetectorKind::Tiny, None).unwrap(),
    )
}

#[test]
fn astronaut_ssd_raw_outputs_match_the_package() {
    let net =
        SsdMobilenetV1::load(&bundled_dir().join("ssd_mobilenetv1_model-weights_manifest.json"))
            .unwrap();
    let out = net.run(&astronaut()).unwrap();
    let raw = read_npz(&golden_dir().join("astronaut.ssd_raw.npz")).unwrap();
    let get = |k: &str| -> Vec<f64> {
        let a = &raw.iter().find(|(n, _)| n == k).unwrap().1;
        a.to_f32().into_iter().map(f64::from).collect()
    };
    let flat4 = |v: &[[f32; 4]]| {
        v.iter()
            .flatten()
            .map(|&x| f64::from(x))
            .collect::<Vec<_>>()
    };
    let enc = max_diff(&flat4(&out.box_encodings), &get("box_encodings"));
    let logits: Vec<f64> = out
        .class_logits
        .iter()
        .flatten()
        .map(|&x| f64::from(x))
        .collect();
    let cls = max_diff(&logits, &get("class_logits"));
    let bx = max_diff(&flat4(&out.boxes), &get("boxes"));
    let sc = max_diff(
        &out.scores.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(),
        &get("scores"),
    );
    eprintln!(
        "astronaut SSD: encodings {enc:.2e}, logits {cls:.2e}, boxes {bx:.2e}, scores {sc:.2e}"
    );
    assert!(enc <= 1e-3 && cls <= 1e-3 && bx <= 1e-3 && sc <= 1e-3);
}

#[test]
fn astronaut_tiny_raw_output_matches_the_package() {
    let net = TinyFaceDetector::load(
        &bundled_dir().join("tiny_face_detector_model-weights_manifest.json"),
    )
    .unwrap();
    let out = net.run(&astronaut(), 416).unwrap();
    let raw = read_npz(&golden_dir().join("astronaut.ssd_raw.npz")).unwrap();
    let want: Vec<f64> = raw
        .iter()
        .find(|(n, _)| n == "tiny_output")
        .unwrap()
        .1
        .to_f32()
        .into_iter()
        .map(f64::from)
        .collect();
    let got: Vec<f64> = out.raw.iter().map(|&x| f64::from(x)).collect();
    let d = max_diff(&got, &want);
    eprintln!("astronaut tiny raw 13x13x25: {d:.2e}");
    assert!(d <= 1e-3);
}

#[test]
fn astronaut_and_portrait_faces_and_landmarks_match_the_package() {
    let g = golden();
    let (ssd, tiny) = finders();
    for entry in g["images"].as_array().unwrap() {
        let img = match entry["id"].as_str().unwrap() {
            "astronaut" => astronaut(),
            "astronaut_portrait" => portrait(),
            other => panic!("unexpected fixture {other}"),
        };
        check_image(&img, entry, &ssd, &tiny);
    }
}

#[test]
fn chips_from_the_golden_landmarks_are_dlibs_to_the_pixel() {
    let g = golden();
    let img = astronaut();
    let mut cases = vec![];
    let lm = f64s(&g["images"][0]["ssd"][0]["lm68"]);
    cases.push((
        lm,
        &g["chips"]["astronaut"],
        golden_dir().join("astronaut.chip68.npy"),
    ));
    for (k, file) in [
        ("synthetic_scale3", "astronaut.synthetic_scale3.chip68.npy"),
        (
            "synthetic_scale6_rot30_border",
            "astronaut.synthetic_scale6_rot30_border.chip68.npy",
        ),
    ] {
        let c = &g["chips_geometric"][k];
        cases.push((f64s(&c["landmarks_68"]), c, golden_dir().join(file)));
    }
    for (lm, want, file) in cases {
        let points: Vec<[f64; 2]> = lm.chunks(2).map(|p| [p[0], p[1]]).collect();
        let details = ChipDetails::from_landmarks(&points, Template::Dlib68).unwrap();
        let rect = f64s(&want["chip_details"]["rect_ltrb"]);
        let dr = max_diff(&details.rect, &rect);
        let da = (details.angle - want["chip_details"]["angle_rad"].as_f64().unwrap()).abs();
        let (chip, ex) = align::extract_chip(&img, &details);
        let ex_want = &want["extract"];
        assert_eq!(
            i64::from(ex.level),
            ex_want["pyramid_level"].as_i64().unwrap()
        );
        let bb: Vec<f64> = ex.bounding_box.unwrap().iter().map(|&v| v as f64).collect();
        assert_eq!(bb, f64s(&ex_want["bounding_box_ltrb"]));
        let da_map = max_diff(
            &ex.a.iter().flatten().copied().collect::<Vec<_>>(),
            &f64s(&ex_want["chip_to_source_A"]),
        );
        let want_chip = npy_rgb(&file);
        let differing = chip
            .as_raw()
            .iter()
            .zip(want_chip.as_raw())
            .filter(|(a, b)| a != b)
            .count();
        eprintln!(
            "{}: rect {dr:.1e}, angle {da:.1e}, A {da_map:.1e}, level {}, differing values {differing}",
            file.display(),
            ex.level
        );
        assert!(dr <= 1e-9 && da <= 1e-9 && da_map <= 1e-9);
        assert_eq!(differing, 0, "{}", file.display());
    }
}

#[test]
fn five_point_template_matches_dlib_rect_and_angle() {
    let g = golden();
    let lm = f64s(&g["images"][0]["ssd"][0]["lm68"]);
    let points: Vec<[f64; 2]> = lm.chunks(2).map(|p| [p[0], p[1]]).collect();
    let d = ChipDetails::from_landmarks(&points, Template::FivePoint).unwrap();
    let want = &g["chips"]["astronaut"]["five_point_variant"];
    assert!(max_diff(&d.rect, &f64s(&want["rect_ltrb"])) <= 1e-9);
    assert!((d.angle - want["angle_rad"].as_f64().unwrap()).abs() <= 1e-9);
    let (chip, _) = align::extract_chip(&astronaut(), &d);
    let sum: u64 = chip.as_raw().iter().map(|&v| u64::from(v)).sum();
    assert_eq!(sum, want["chip_u8_sum"].as_u64().unwrap());
}

#[test]
fn chip_embedding_matches_the_reference() {
    let net = faces::resnet29::FaceResNet29::bundled().unwrap();
    let chip = npy_rgb(&golden_dir().join("astronaut.chip68.npy"));
    let x = faces::resnet29::chip_input(&chip).unwrap();
    let got = net.forward(&x.unsqueeze(0).unwrap()).unwrap().to_vec();
    let p = golden_dir().join("astronaut.chip68.emb.npy");
    let want = parse_npy(&std::fs::read(&p).unwrap(), &p).unwrap().to_f32();
    let d = max_diff(
        &got.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
        &want.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
    );
    eprintln!("astronaut chip embedding: {d:.2e}");
    assert!(d <= 1e-4);
}

/// The shared weights folder, when set (tests on LFW-derived fixtures).
fn shared_golden() -> Option<PathBuf> {
    match std::env::var_os("CNN_WEIGHTS_DIR") {
        None => {
            eprintln!("CNN_WEIGHTS_DIR unset: LFW-derived detection fixtures skipped");
            None
        }
        Some(d) => {
            let p = PathBuf::from(d).join("face_detect/golden");
            assert!(
                p.join("golden.json").is_file(),
                "CNN_WEIGHTS_DIR is set but {} has no golden.json",
                p.display()
            );
            Some(p)
        }
    }
}

#[test]
fn lfw_and_group_fixtures_match_the_package() {
    let Some(dir) = shared_golden() else { return };
    let g: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap();
    let (ssd, tiny) = finders();
    let mut n = 0;
    for entry in g["images"].as_array().unwrap() {
        let id = entry["id"].as_str().unwrap();
        let png = dir.join(format!("{id}.png"));
        if !png.is_file() {
            continue;
        }
        let img = image::open(&png).unwrap().to_rgb8();
        check_image(&img, entry, &ssd, &tiny);
        n += 1;
    }
    assert_eq!(n, 6, "six PNG fixtures");
    // Colin Powell's chip from the golden landmarks, to the pixel.
    let c = &g["chips"]["Colin_Powell_0049"];
    let img = image::open(dir.join("Colin_Powell_0049.png"))
        .unwrap()
        .to_rgb8();
    let entry = g["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "Colin_Powell_0049")
        .unwrap();
    let lm = f64s(&entry["ssd"][0]["lm68"]);
    let points: Vec<[f64; 2]> = lm.chunks(2).map(|p| [p[0], p[1]]).collect();
    let chip = align::face_chip(&img, &points, Template::Dlib68).unwrap();
    let want = npy_rgb(&dir.join("Colin_Powell_0049.chip68.npy"));
    assert_eq!(chip.as_raw(), want.as_raw());
    let _ = c;
}

#[test]
fn options_are_checked() {
    let mut o = DetectOptions::defaults(DetectorKind::Tiny);
    assert!(o.check().is_ok());
    o.input_size = 100;
    assert!(
        o.check()
            .unwrap_err()
            .to_string()
            .contains("multiple of 32")
    );
    let mut o = DetectOptions::defaults(DetectorKind::Ssd);
    o.min_score = 1.5;
    assert!(o.check().unwrap_err().to_string().contains("[0, 1)"));
}
