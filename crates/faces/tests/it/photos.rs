//! Photos as people bring them: EXIF-rotated JPEGs, grey / RGBA / 16-bit / GIF inputs, no
//! face, many faces, faces below the minimum size, an oversized header; NMS against a naive
//! reference and the alignment undoing a known similarity (property tests).

use std::path::{Path, PathBuf};

use faces::align::{self, ChipDetails, Similarity, Template};
use faces::detect::{DetectorKind, FaceFinder, iou, nms};
use proptest::prelude::*;

fn astronaut() -> image::RgbImage {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/face_resnet29/golden/astronaut.rgb_u8.npy");
    let a = nn::npy::parse_npy(&std::fs::read(&p).unwrap(), &p).unwrap();
    image::RgbImage::from_raw(a.shape[1] as u32, a.shape[0] as u32, a.bytes.clone()).unwrap()
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("faces-photos-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn ssd() -> FaceFinder {
    FaceFinder::load(DetectorKind::Ssd, None).unwrap()
}

/// The one face of the upright astronaut.
fn upright_box() -> [f64; 4] {
    let f = ssd().find(&astronaut()).unwrap();
    assert_eq!(f.len(), 1);
    let d = f[0].detection;
    [d.x, d.y, d.x + d.width, d.y + d.height]
}

/// A JPEG of `img` carrying an EXIF orientation tag (an APP1 segment after SOI).
fn jpeg_with_orientation(img: &image::RgbImage, orientation: u16) -> Vec<u8> {
    let mut jpeg = vec![];
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
        .encode_image(img)
        .unwrap();
    // TIFF, little endian: header, one IFD with one SHORT entry (0x0112), no next IFD.
    let mut tiff = b"II\x2a\x00\x08\x00\x00\x00".to_vec();
    tiff.extend(1u16.to_le_bytes());
    tiff.extend(0x0112u16.to_le_bytes());
    tiff.extend(3u16.to_le_bytes());
    tiff.extend(1u32.to_le_bytes());
    tiff.extend(orientation.to_le_bytes());
    tiff.extend([0, 0]);
    tiff.extend(0u32.to_le_bytes());
    let mut app1 = vec![0xff, 0xe1];
    app1.extend(((2 + 6 + tiff.len()) as u16).to_be_bytes());
    app1.extend(b"Exif\0\0");
    app1.extend(tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend(app1);
    out.extend(&jpeg[2..]);
    out
}

#[test]
fn an_exif_rotated_jpeg_is_read_upright() {
    let dir = tempdir("exif");
    // Stored turned a quarter counter-clockwise; orientation 6 says "turn clockwise to show".
    let stored = image::imageops::rotate270(&astronaut());
    let p = dir.join("sideways.jpg");
    std::fs::write(&p, jpeg_with_orientation(&stored, 6)).unwrap();
    let img = nn::data::read_image(&p, nn::data::DEFAULT_MAX_PIXELS)
        .unwrap()
        .to_rgb8();
    assert_eq!(img.dimensions(), (512, 512));
    let faces = ssd().find(&img).unwrap();
    assert_eq!(faces.len(), 1, "one upright face");
    let d = faces[0].detection;
    let overlap = iou([d.x, d.y, d.x + d.width, d.y + d.height], upright_box());
    assert!(overlap > 0.9, "IoU with the upright face {overlap}");
    // Without the tag the same pixels are sideways: the box is elsewhere.
    let p2 = dir.join("no_tag.jpg");
    std::fs::write(&p2, jpeg_with_orientation(&stored, 1)).unwrap();
    let raw = nn::data::read_image(&p2, nn::data::DEFAULT_MAX_PIXELS)
        .unwrap()
        .to_rgb8();
    assert_ne!(raw.as_raw(), img.as_raw());
}

#[test]
fn grey_rgba_sixteen_bit_and_gif_inputs_find_the_face() {
    let dir = tempdir("formats");
    let rgb = astronaut();
    let grey = image::DynamicImage::ImageRgb8(rgb.clone()).to_luma8();
    let rgba = image::DynamicImage::ImageRgb8(rgb.clone()).to_rgba8();
    let rgb16 = image::DynamicImage::ImageRgb8(rgb.clone()).to_rgb16();
    grey.save(dir.join("grey.png")).unwrap();
    rgba.save(dir.join("rgba.png")).unwrap();
    rgb16.save(dir.join("deep.png")).unwrap();
    image::DynamicImage::ImageRgba8(rgba.clone())
        .save(dir.join("old.gif"))
        .unwrap();
    image::DynamicImage::ImageRgb8(rgb.clone())
        .save(dir.join("photo.bmp"))
        .unwrap();
    image::DynamicImage::ImageRgb8(rgb.clone())
        .save(dir.join("photo.tiff"))
        .unwrap();
    let finder = ssd();
    let want = upright_box();
    for f in [
        "grey.png",
        "rgba.png",
        "deep.png",
        "old.gif",
        "photo.bmp",
        "photo.tiff",
    ] {
        let img = nn::data::read_image(&dir.join(f), nn::data::DEFAULT_MAX_PIXELS)
            .unwrap()
            .to_rgb8();
        let faces = finder.find(&img).unwrap();
        assert_eq!(faces.len(), 1, "{f}");
        let d = faces[0].detection;
        let o = iou([d.x, d.y, d.x + d.width, d.y + d.height], want);
        assert!(o > 0.85, "{f}: IoU {o}");
    }
}

#[test]
fn no_face_many_faces_and_a_minimum_size() {
    let finder = ssd();
    let flat = image::RgbImage::from_pixel(300, 200, image::Rgb([120, 130, 140]));
    assert!(
        finder.find(&flat).unwrap().is_empty(),
        "no face in a flat image"
    );
    // An 8 x 5 grid of the astronaut's head (40 faces of about 80 px).
    let head = image::imageops::crop_imm(&astronaut(), 150, 40, 150, 170).to_image();
    let mut grid = image::RgbImage::from_pixel(8 * 160, 5 * 180, image::Rgb([128, 128, 128]));
    for r in 0..5 {
        for c in 0..8 {
            image::imageops::replace(&mut grid, &head, c * 160 + 5, r * 180 + 5);
        }
    }
    let faces = finder.find(&grid).unwrap();
    assert_eq!(faces.len(), 40, "every head of the grid");
    let mut few = ssd();
    few.options.max_faces = 7;
    assert_eq!(few.find(&grid).unwrap().len(), 7, "--max-faces");
    let mut big_only = ssd();
    big_only.options.min_size = 120.0;
    assert!(
        big_only.find(&grid).unwrap().is_empty(),
        "faces smaller than the minimum size are dropped"
    );
    // The astronaut shrunk so her face is about 20 pixels, beside her full-size copy: with a
    // 30-pixel minimum only the big face is kept.
    let small = image::imageops::resize(
        &astronaut(),
        100,
        100,
        image::imageops::FilterType::Triangle,
    );
    let mut both = image::RgbImage::from_pixel(700, 512, image::Rgb([128, 128, 128]));
    image::imageops::replace(&mut both, &astronaut(), 0, 0);
    image::imageops::replace(&mut both, &small, 560, 200);
    let mut min30 = ssd();
    min30.options.min_size = 30.0;
    let kept = min30.find(&both).unwrap();
    assert!(
        kept.iter()
            .all(|f| f.detection.width.min(f.detection.height) >= 30.0)
    );
    assert!(
        kept.iter().any(|f| f.detection.x < 512.0),
        "the big face stays"
    );
    assert!(
        kept.iter().all(|f| f.detection.x < 512.0),
        "no face of the small copy"
    );
}

#[test]
fn an_oversized_png_header_is_refused_before_decoding() {
    let dir = tempdir("huge");
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(60_000u32.to_be_bytes());
    ihdr.extend(60_000u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc32fast::hash(&ihdr).to_be_bytes());
    // A (short) data chunk, as a crafted file would have: decoding would need 10.8 GB.
    let mut idat = b"IDAT".to_vec();
    idat.extend([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    png.extend(8u32.to_be_bytes());
    png.extend(&idat);
    png.extend(crc32fast::hash(&idat).to_be_bytes());
    let p = dir.join("huge.png");
    std::fs::write(&p, png).unwrap();
    let e = nn::data::read_image(&p, nn::data::DEFAULT_MAX_PIXELS)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("3600000000 pixels") && e.contains("huge.png") && e.contains("limit"),
        "{e}"
    );
    // Garbage and a truncated PNG are named errors too.
    std::fs::write(&p, b"not an image").unwrap();
    assert!(
        nn::data::read_image(&p, 1_000_000)
            .unwrap_err()
            .to_string()
            .contains("huge.png")
    );
}

/// Naive NMS: repeatedly take the best remaining box and drop every box overlapping it by
/// more than the threshold.
fn naive_nms(boxes: &[[f64; 4]], scores: &[f64], t: f64) -> Vec<usize> {
    let mut left: Vec<usize> = (0..boxes.len()).collect();
    let mut kept = vec![];
    while !left.is_empty() {
        let (pos, &best) = left
            .iter()
            .enumerate()
            .max_by(|a, b| scores[*a.1].total_cmp(&scores[*b.1]).then(b.1.cmp(a.1)))
            .unwrap();
        left.remove(pos);
        kept.push(best);
        left.retain(|&i| {
            // IoU by hand, from the intersection rectangle.
            let (a, b) = (boxes[i], boxes[best]);
            let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
            let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
            let area = |r: [f64; 4]| (r[2] - r[0]) * (r[3] - r[1]);
            w * h / (area(a) + area(b) - w * h) <= t
        });
    }
    kept
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn nms_matches_a_naive_reference(
        raw in prop::collection::vec((0.0..100.0f64, 0.0..100.0f64, 1.0..40.0f64, 1.0..40.0f64, 0.0..1.0f64), 0..40),
        t in 0.1..0.9f64,
    ) {
        let boxes: Vec<[f64; 4]> = raw.iter().map(|r| [r.0, r.1, r.0 + r.2, r.1 + r.3]).collect();
        let scores: Vec<f64> = raw.iter().map(|r| r.4).collect();
        let mut order: Vec<usize> = (0..boxes.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        let got = nms(&order, &boxes, t, usize::MAX);
        prop_assert_eq!(got, naive_nms(&boxes, &scores, t));
    }

    #[test]
    fn a_known_similarity_is_recovered_and_undone(
        scale in 0.3..4.0f64,
        angle in -0.7..0.7f64,
        tx in 50.0..250.0f64,
        ty in 50.0..250.0f64,
    ) {
        // Landmarks placed by a known chip -> image similarity: the fit recovers it.
        let (s, c) = angle.sin_cos();
        let truth = Similarity { m: [[scale * c, -scale * s], [scale * s, scale * c]], t: [tx, ty] };
        let template = template_landmarks();
        let landmarks: Vec<[f64; 2]> = template.iter().map(|&q| truth.apply(q)).collect();
        let d = ChipDetails::from_landmarks(&landmarks, Template::Dlib68).unwrap();
        let want = ChipDetails::from_similarity(&truth);
        prop_assert!((d.angle - angle).abs() < 1e-9);
        for k in 0..4 {
            prop_assert!((d.rect[k] - want.rect[k]).abs() < 1e-7);
        }
    }
}

/// 68 chip-space points: dlib's template where it has them (the 33 it fits), the chip centre
/// elsewhere.
fn template_landmarks() -> Vec<[f64; 2]> {
    let mut pts = vec![[75.0, 75.0]; 68];
    for (i, p) in align::template_points(Template::Dlib68) {
        pts[i] = p;
    }
    pts
}

#[test]
fn the_template_maps_to_itself_and_a_warped_chip_is_undone() {
    let pts = template_landmarks();
    let d = ChipDetails::from_landmarks(&pts, Template::Dlib68).unwrap();
    assert!(d.angle.abs() < 1e-12);
    // Identity: centre (75, 75), side 150 - 1 between edge coordinates.
    let want = [75.0 - 74.5, 75.0 - 74.5, 75.0 + 74.5, 75.0 + 74.5];
    for k in 0..4 {
        assert!((d.rect[k] - want[k]).abs() < 1e-9, "{:?}", d.rect);
    }
    // A smooth chip-space pattern, warped into a photo by a known similarity (scale 2,
    // 20 degrees), comes back out of the photo's landmarks.
    let pattern = |x: f64, y: f64| -> [u8; 3] {
        [
            (128.0 + 100.0 * (x / 40.0).sin()) as u8,
            (128.0 + 100.0 * (y / 47.0).cos()) as u8,
            (128.0 + 60.0 * ((x + y) / 61.0).sin()) as u8,
        ]
    };
    let (s, c) = 0.35f64.sin_cos();
    let truth = Similarity {
        m: [[2.0 * c, -2.0 * s], [2.0 * s, 2.0 * c]],
        t: [180.0, 60.0],
    };
    // Inverse map photo -> chip for rendering the photo.
    let det = truth.m[0][0] * truth.m[1][1] - truth.m[0][1] * truth.m[1][0];
    let photo = image::RgbImage::from_fn(600, 600, |x, y| {
        let (px, py) = (f64::from(x) - truth.t[0], f64::from(y) - truth.t[1]);
        let qx = (truth.m[1][1] * px - truth.m[0][1] * py) / det;
        let qy = (-truth.m[1][0] * px + truth.m[0][0] * py) / det;
        image::Rgb(pattern(qx, qy))
    });
    let landmarks: Vec<[f64; 2]> = pts.iter().map(|&q| truth.apply(q)).collect();
    let chip = align::face_chip(&photo, &landmarks, Template::Dlib68).unwrap();
    let mut err = 0f64;
    let mut n = 0;
    for y in 10..140u32 {
        for x in 10..140u32 {
            let want = pattern(f64::from(x), f64::from(y));
            let got = chip.get_pixel(x, y).0;
            for k in 0..3 {
                err += (f64::from(got[k]) - f64::from(want[k])).abs();
                n += 1;
            }
        }
    }
    let mean = err / f64::from(n);
    assert!(mean < 3.0, "mean |chip - pattern| {mean} levels");
}

#[test]
fn explaining_a_face_against_itself_finds_only_regions_that_make_it_alike() {
    let model = faces::embedder::Embedder::pretrained(None, None, false).unwrap();
    let finder = ssd();
    let img = astronaut();
    let faces = model
        .faces_in_image(&img, &finder, Template::Dlib68)
        .unwrap();
    let x = &faces[0].input;
    let e = faces::explain::occlusion(&model, x, x, 50, 25).unwrap();
    assert!(e.distance.abs() < 1e-6);
    for (rows, cols, map) in &e.maps {
        assert_eq!((*rows, *cols), (5, 5));
        assert_eq!(map.len(), 25);
        // From a distance of 0, hiding part of one copy can only move them apart.
        assert!(map.iter().all(|&v| v >= 0.0), "{map:?}");
        assert!(map.iter().any(|&v| v > 0.01));
    }
    let picture = faces::explain::render(&e, &img.clone(), &img);
    assert_eq!(picture.width(), 4 * 512 + 24);
    assert!(faces::explain::occlusion(&model, x, x, 0, 1).is_err());
}

#[test]
fn jittered_encodings_are_reproducible_and_near_the_plain_one() {
    let mut model = faces::embedder::Embedder::pretrained(None, None, false).unwrap();
    let faces = model
        .faces_in_image(&astronaut(), &ssd(), Template::Dlib68)
        .unwrap();
    let x = faces[0].input.clone();
    let plain = model.embed(&[&x], 1).unwrap();
    if let faces::embedder::Embedder::Pretrained(p) = &mut model {
        p.jitter = 8;
    }
    let a = model.embed(&[&x], 1).unwrap();
    let b = model.embed(&[&x], 1).unwrap();
    assert_eq!(a, b, "the same copies every time");
    let d = faces::model::squared_l2(&a, &plain);
    assert!(
        d > 0.0 && d < 0.05,
        "squared distance to the plain encoding {d}"
    );
}
