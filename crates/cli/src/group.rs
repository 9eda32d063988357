//! The demo's group photo: people enrolled from one photo each are found and named in a picture
//! of several of them together (and one person never enrolled), by the pretrained face network
//! behind the face detector, 68 landmarks and dlib's aligned chips.

use std::path::Path;

use anyhow::{Context, Result};
use faces::embedder::Embedder;
use faces::eval::ScoredPair;
use faces::gallery::{Enrolled, Gallery, Precision};
use image::RgbImage;
use rand::{Rng, SeedableRng};

use crate::common::DetectArgs;

/// What the group photo showed.
pub(crate) struct GroupResult {
    /// Faces in the picture (people placed).
    pub placed: usize,
    /// Faces the detector found.
    pub detected: usize,
    /// Found faces given the right name (or `unknown` for the stranger).
    pub correct: usize,
    /// People enrolled (those whose enrolment photo had exactly one face).
    pub enrolled: usize,
    /// Tau chosen on the training people.
    pub tau: f32,
    /// Seconds taken.
    pub seconds: f64,
}

/// An ORL face (grey, 92 x 112) scaled by `scale` on a plain canvas with margin around it,
/// as a photo would show a head: detectors need the context ORL's tight crops lack.
pub(crate) fn portrait(face: &image::GrayImage, scale: f32) -> RgbImage {
    let (w, h) = (
        (face.width() as f32 * scale) as u32,
        (face.height() as f32 * scale) as u32,
    );
    let big = image::imageops::resize(face, w, h, image::imageops::FilterType::Triangle);
    let mut canvas = RgbImage::from_pixel(w * 2, h * 2, image::Rgb([128, 128, 128]));
    let rgb = image::DynamicImage::ImageLuma8(big).to_rgb8();
    image::imageops::replace(&mut canvas, &rgb, i64::from(w / 2), i64::from(h / 2));
    canvas
}

pub(crate) fn orl_face(dir: &Path, person: &str, image: usize) -> Result<image::GrayImage> {
    let p = dir.join(person).join(format!("{image}.pgm"));
    nn::data::load_gray(&p).with_context(|| format!("reading {}", p.display()))
}

/// The largest face's encoding in a photo, if any.
fn encode_largest(
    model: &Embedder,
    finder: &faces::detect::FaceFinder,
    img: &RgbImage,
) -> Result<Option<Vec<f32>>> {
    let faces = model.faces_in_image(img, finder, faces::align::Template::Dlib68)?;
    let Some(face) = crate::common::largest(&faces) else {
        return Ok(None);
    };
    Ok(Some(model.embed(&[&face.input], 1)?))
}

/// Enrols `unseen[i]` from their first photo with one face, chooses tau on the training
/// people's photos, composes and labels the group picture into `out/group.png`.
pub(crate) fn group_photo(
    orl: &Path,
    train: &[String],
    unseen: &[String],
    out: &Path,
    seed: u64,
) -> Result<GroupResult> {
    let t0 = std::time::Instant::now();
    let detect: DetectArgs = DetectArgs {
        detector: "ssd".into(),
        min_score: 0.5,
        nms_iou: None,
        max_faces: 100,
        min_face: 0.0,
        tiny_input: 416,
        template: "68".into(),
        detector_weights: None,
    };
    let finder = detect.finder()?;
    let model = Embedder::pretrained(None, None, false)?;
    // Tau on the training people (never the unseen): all pairs of their first 3 photos.
    let mut encs: Vec<(usize, Vec<f32>)> = vec![];
    for (p, name) in train.iter().enumerate() {
        for i in 1..=3 {
            let img = portrait(&orl_face(orl, name, i)?, 1.5);
            if let Some(e) = encode_largest(&model, &finder, &img)? {
                encs.push((p, e));
            }
        }
    }
    let mut pairs = vec![];
    for i in 0..encs.len() {
        for j in i + 1..encs.len() {
            pairs.push(ScoredPair {
                distance: faces::model::squared_l2(&encs[i].1, &encs[j].1),
                same: encs[i].0 == encs[j].0,
            });
        }
    }
    anyhow::ensure!(
        !pairs.is_empty(),
        "no training face was found to choose tau"
    );
    let (tau, _) = faces::eval::best_threshold(&pairs);
    let mut gallery = Gallery::new(model.fingerprint(), model.describe(), model.dim(), tau);
    for name in unseen {
        for i in 1..=10 {
            let img = portrait(&orl_face(orl, name, i)?, 1.5);
            let faces = model.faces_in_image(&img, &finder, faces::align::Template::Dlib68)?;
            if faces.len() == 1 {
                let encoding = model.embed(&[&faces[0].input], 1)?;
                let source = format!("{name}/{i}.pgm");
                gallery.enroll(
                    name,
                    &[(source.clone(), String::new())],
                    vec![Enrolled {
                        source,
                        content_hash: String::new(),
                        encoding,
                    }],
                )?;
                break;
            }
        }
    }
    // The picture: six unseen people and one training person (never enrolled), each from a
    // photo other than the ones enrolled, at different sizes, in two rows.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut cast: Vec<(String, bool)> = unseen.iter().take(6).map(|n| (n.clone(), true)).collect();
    if let Some(stranger) = train.first() {
        cast.insert(3, (stranger.clone(), false));
    }
    let (w, h) = (1200u32, 620u32);
    let mut photo = RgbImage::from_fn(w, h, |x, y| {
        let v = 150 + (40.0 * (f64::from(x) / f64::from(w))) as u8
            - (30.0 * f64::from(y) / f64::from(h)) as u8;
        image::Rgb([v, v.saturating_sub(6), v.saturating_sub(14)])
    });
    let mut truth = vec![];
    let per_row = cast.len().div_ceil(2);
    for (k, (name, enrolled)) in cast.iter().enumerate() {
        let image_no = rng.random_range(6..=10);
        let scale = rng.random_range(1.2f32..1.8);
        let face = orl_face(orl, name, image_no)?;
        let (fw, fh) = ((92.0 * scale) as u32, (112.0 * scale) as u32);
        let big = image::imageops::resize(&face, fw, fh, image::imageops::FilterType::Triangle);
        let (row, col) = (k / per_row, k % per_row);
        let cell_w = w / per_row as u32;
        let x = col as u32 * cell_w + (cell_w.saturating_sub(fw)) / 2 + (k as u32 % 2) * 20;
        let y = 40 + row as u32 * 300 + rng.random_range(0..30);
        let rgb = image::DynamicImage::ImageLuma8(big).to_rgb8();
        image::imageops::replace(&mut photo, &rgb, i64::from(x), i64::from(y));
        let centre = (f64::from(x + fw / 2), f64::from(y + fh / 2));
        truth.push((centre, if *enrolled { Some(name.clone()) } else { None }));
    }
    let found = model.faces_in_image(&photo, &finder, faces::align::Template::Dlib68)?;
    let index = gallery.index(Precision::F32);
    let mut labels = vec![];
    let mut correct = 0;
    for f in &found {
        let e = model.embed(&[&f.input], 1)?;
        let d = gallery.decide(&index.search(&e, 2)?);
        let face = f.face.as_ref().expect("detected");
        // The placed person whose centre is inside this box.
        let who = truth
            .iter()
            .find(|(c, _)| face.detection.contains(c.0, c.1))
            .map(|t| &t.1);
        if who.is_some_and(|w| *w == d.identity) {
            correct += 1;
        }
        labels.push((face.clone(), d.identity.unwrap_or_else(|| "unknown".into())));
    }
    let shown: Vec<_> = labels.iter().map(|(f, l)| (f, Some(l.as_str()))).collect();
    faces::detect::draw::draw_faces(&mut photo, &shown);
    let path = out.join("group.png");
    photo
        .save(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(GroupResult {
        placed: cast.len(),
        detected: found.len(),
        correct,
        enrolled: gallery.identities.len(),
        tau,
        seconds: t0.elapsed().as_secs_f64(),
    })
}
