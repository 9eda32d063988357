//! dlib's face chip: a similarity transform (rotation, uniform scale, translation) fitted by
//! least squares from dlib's mean-face template to a face's landmarks, and the 150 x 150 chip
//! resampled through it (`get_face_chip_details(shape, 150, 0.25)` + `extract_image_chip`),
//! reproducing dlib's arithmetic: its rectangle conventions, the image pyramid for large faces,
//! bilinear sampling truncated to u8 and black outside the image.

use serde::{Deserialize, Serialize};

/// Chip side in pixels.
pub const CHIP_SIZE: usize = 150;
/// Margin around the template as a fraction of its size.
pub const CHIP_PADDING: f64 = 0.25;

/// dlib's mean face shape (unit square) for landmarks 17..=67.
const MEAN_FACE_X: [f64; 51] = [
    0.000213256,
    0.0752622,
    0.18113,
    0.29077,
    0.393397,
    0.586856,
    0.689483,
    0.799124,
    0.904991,
    0.98004,
    0.490127,
    0.490127,
    0.490127,
    0.490127,
    0.36688,
    0.426036,
    0.490127,
    0.554217,
    0.613373,
    0.121737,
    0.187122,
    0.265825,
    0.334606,
    0.260918,
    0.182743,
    0.645647,
    0.714428,
    0.793132,
    0.858516,
    0.79751,
    0.719335,
    0.254149,
    0.340985,
    0.428858,
    0.490127,
    0.551395,
    0.639268,
    0.726104,
    0.642159,
    0.556721,
    0.490127,
    0.423532,
    0.338094,
    0.290379,
    0.428096,
    0.490127,
    0.552157,
    0.689874,
    0.553364,
    0.490127,
    0.42689,
];
const MEAN_FACE_Y: [f64; 51] = [
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891, 0.0187482, 0.038915,
    0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326, 0.609345, 0.628106, 0.609345,
    0.587326, 0.216423, 0.178758, 0.179852, 0.231733, 0.245099, 0.244077, 0.231733, 0.179852,
    0.178758, 0.216423, 0.244077, 0.245099, 0.780233, 0.745405, 0.727388, 0.742578, 0.727388,
    0.745405, 0.780233, 0.864805, 0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746,
    0.785343, 0.778746, 0.784792, 0.824182, 0.831803, 0.824182,
];

/// dlib's 5-point template (unit square) and the 68-point landmarks standing in for its
/// points: the outer and inner eye corners and the bottom of the nose.
const FIVE_POINT: [(usize, f64, f64); 5] = [
    (45, 0.8595674595992, 0.2134981538014),
    (42, 0.6460604764104, 0.2289674387677),
    (36, 0.1205750620789, 0.2137274526848),
    (39, 0.3340850613712, 0.2290642403242),
    (33, 0.4901123135679, 0.6277975316475),
];

/// Which landmarks anchor the chip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Template {
    /// dlib's 68-point recipe: 33 points (nose, eyes, upper lips), canonical.
    #[default]
    Dlib68,
    /// dlib's 5-point template fed from the 68 landmarks (eye corners, nose).
    FivePoint,
}

/// A chip pixel and the image point it should land on.
pub type PointPair = ([f64; 2], [f64; 2]);

/// The template's points in chip pixels, each with the landmark (0-67) it stands for.
pub fn template_points(template: Template) -> Vec<(usize, [f64; 2])> {
    let s = CHIP_SIZE as f64;
    let chip = |mx: f64, my: f64| {
        [
            (CHIP_PADDING + mx) / (2.0 * CHIP_PADDING + 1.0) * s,
            (CHIP_PADDING + my) / (2.0 * CHIP_PADDING + 1.0) * s,
        ]
    };
    match template {
        Template::Dlib68 => (27..=54)
            .chain(60..=64)
            .map(|i| (i, chip(MEAN_FACE_X[i - 17], MEAN_FACE_Y[i - 17])))
            .collect(),
        Template::FivePoint => FIVE_POINT
            .iter()
            .map(|&(i, x, y)| (i, chip(x, y)))
            .collect(),
    }
}

/// Pairs of (chip pixel, image point) for the fit.
fn correspondences(landmarks: &[[f64; 2]], template: Template) -> Vec<PointPair> {
    template_points(template)
        .into_iter()
        .map(|(i, q)| (q, landmarks[i]))
        .collect()
}

/// A similarity transform `p = M q + t` with `M = [[a, -b], [b, a]]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    /// `M` row-major.
    pub m: [[f64; 2]; 2],
    /// Translation.
    pub t: [f64; 2],
}

impl Similarity {
    /// Applies the transform.
    pub fn apply(&self, q: [f64; 2]) -> [f64; 2] {
        [
            self.m[0][0] * q[0] + self.m[0][1] * q[1] + self.t[0],
            self.m[1][0] * q[0] + self.m[1][1] * q[1] + self.t[1],
        ]
    }
}

/// The least-squares similarity taking `from` to `to` (Umeyama's, which in 2D with a proper
/// rotation has this closed form).
pub fn fit_similarity(pairs: &[PointPair]) -> Similarity {
    let n = pairs.len() as f64;
    let mean = |sel: fn(&PointPair) -> [f64; 2]| {
        let s = pairs
            .iter()
            .map(sel)
            .fold([0.0; 2], |a, p| [a[0] + p[0], a[1] + p[1]]);
        [s[0] / n, s[1] / n]
    };
    let mq = mean(|p| p.0);
    let mp = mean(|p| p.1);
    let (mut sqq, mut dot, mut cross) = (0.0, 0.0, 0.0);
    for (q, p) in pairs {
        let (qx, qy) = (q[0] - mq[0], q[1] - mq[1]);
        let (px, py) = (p[0] - mp[0], p[1] - mp[1]);
        sqq += qx * qx + qy * qy;
        dot += qx * px + qy * py;
        cross += qx * py - qy * px;
    }
    let (a, b) = if sqq > 0.0 {
        (dot / sqq, cross / sqq)
    } else {
        (1.0, 0.0)
    };
    let m = [[a, -b], [b, a]];
    let t = [
        mp[0] - (m[0][0] * mq[0] + m[0][1] * mq[1]),
        mp[1] - (m[1][0] * mq[0] + m[1][1] * mq[1]),
    ];
    Similarity { m, t }
}

/// dlib's `chip_details`: the chip's rectangle in the image (inclusive edge coordinates
/// `l, t, r, b`) and its rotation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChipDetails {
    /// `(left, top, right, bottom)`.
    pub rect: [f64; 4],
    /// Rotation in radians.
    pub angle: f64,
}

impl ChipDetails {
    /// The chip of a face's 68 landmarks (image pixels).
    ///
    /// # Errors
    /// Fewer than 68 landmarks or a non-finite one.
    pub fn from_landmarks(landmarks: &[[f64; 2]], template: Template) -> nn::Result<ChipDetails> {
        if landmarks.len() != 68 || landmarks.iter().flatten().any(|v| !v.is_finite()) {
            return Err(nn::Error::arg(
                "align",
                format!("needs 68 finite landmarks, got {} points", landmarks.len()),
            ));
        }
        Ok(Self::from_similarity(&fit_similarity(&correspondences(
            landmarks, template,
        ))))
    }

    /// The chip of a chip-to-image similarity.
    pub fn from_similarity(s: &Similarity) -> ChipDetails {
        let (u, v) = (s.m[0][0], s.m[1][0]);
        let angle = v.atan2(u);
        let scale = u.hypot(v);
        let half = CHIP_SIZE as f64 / 2.0;
        let c = s.apply([half, half]);
        let side = CHIP_SIZE as f64 * scale;
        let r = (side - 1.0) / 2.0;
        ChipDetails {
            rect: [c[0] - r, c[1] - r, c[0] + r, c[1] + r],
            angle,
        }
    }
}

fn rect_down(r: [f64; 4]) -> [f64; 4] {
    [
        r[0] / 2.0 - 1.25,
        r[1] / 2.0 - 0.75,
        r[2] / 2.0 - 1.25,
        r[3] / 2.0 - 0.75,
    ]
}

fn area(r: [f64; 4]) -> f64 {
    (r[2] - r[0] + 1.0) * (r[3] - r[1] + 1.0)
}

fn centre(r: [f64; 4]) -> [f64; 2] {
    [(r[0] + r[2]) / 2.0, (r[1] + r[3]) / 2.0]
}

fn rotate(c: [f64; 2], p: [f64; 2], angle: f64) -> [f64; 2] {
    let (s, co) = angle.sin_cos();
    let (dx, dy) = (p[0] - c[0], p[1] - c[1]);
    [c[0] + co * dx - s * dy, c[1] + s * dx + co * dy]
}

/// An 8-bit RGB image as dlib holds it: rows of interleaved pixels.
#[derive(Debug, Clone, PartialEq)]
struct Rgb {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

/// `pyramid_down<2>` of an RGB image: a separable `[1 4 6 4 1]` filter and a 2:1 step, in
/// integers (`((n - 3) / 2)` per side).
fn pyramid_down(img: &Rgb) -> Rgb {
    if img.w <= 8 || img.h <= 8 {
        return Rgb {
            w: 0,
            h: 0,
            px: vec![],
        };
    }
    let (ow, oh) = ((img.w - 3) / 2, (img.h - 3) / 2);
    let mut tmp = vec![0u32; img.h * ow * 3];
    for r in 0..img.h {
        for c in 0..ow {
            for ch in 0..3 {
                let at = |x: usize| u32::from(img.px[(r * img.w + x) * 3 + ch]);
                tmp[(r * ow + c) * 3 + ch] = at(2 * c)
                    + 4 * at(2 * c + 1)
                    + 6 * at(2 * c + 2)
                    + 4 * at(2 * c + 3)
                    + at(2 * c + 4);
            }
        }
    }
    let mut px = vec![0u8; oh * ow * 3];
    for k in 0..oh {
        for c in 0..ow {
            for ch in 0..3 {
                let at = |r: usize| tmp[(r * ow + c) * 3 + ch];
                let v = (at(2 * k)
                    + 4 * at(2 * k + 1)
                    + 6 * at(2 * k + 2)
                    + 4 * at(2 * k + 3)
                    + at(2 * k + 4))
                    / 256;
                px[(k * ow + c) * 3 + ch] = v as u8;
            }
        }
    }
    Rgb { w: ow, h: oh, px }
}

/// How a chip was cut (for checking against dlib): the pyramid level used (-1: none), the
/// integer working box `(l, t, r, b)` and the chip-to-source affine map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Extraction {
    /// Pyramid level.
    pub level: i32,
    /// Working box in the image (inclusive), `None` when the chip lies wholly outside.
    pub bounding_box: Option<[i64; 4]>,
    /// `A` of `source = A (col, row) + b`.
    pub a: [[f64; 2]; 2],
    /// `b`.
    pub b: [f64; 2],
}

/// The `CHIP_SIZE x CHIP_SIZE` RGB chip at `details` of an image, as dlib's
/// `extract_image_chip` with bilinear interpolation cuts it, and how it was cut.
pub fn extract_chip(img: &image::RgbImage, details: &ChipDetails) -> (image::RgbImage, Extraction) {
    let n = CHIP_SIZE;
    let size = (n * n) as f64;
    let rect = details.rect;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut depth = 0;
    let mut grow = 2.0;
    let mut r = rect_down(rect);
    while area(r) > size {
        r = rect_down(r);
        depth += 1;
        grow = grow * 2.0 + 2.0;
    }
    // The rotated rectangle's bounding box, grown against border effects, inside the image.
    let c = centre(rect);
    let corners = [
        [rect[0], rect[1]],
        [rect[2], rect[1]],
        [rect[0], rect[3]],
        [rect[2], rect[3]],
    ]
    .map(|p| rotate(c, p, details.angle));
    let lo_x = corners.iter().map(|p| p[0]).fold(f64::INFINITY, f64::min) - grow;
    let lo_y = corners.iter().map(|p| p[1]).fold(f64::INFINITY, f64::min) - grow;
    let hi_x = corners
        .iter()
        .map(|p| p[0])
        .fold(f64::NEG_INFINITY, f64::max)
        + grow;
    let hi_y = corners
        .iter()
        .map(|p| p[1])
        .fold(f64::NEG_INFINITY, f64::max)
        + grow;
    let bb = [
        lo_x.max(0.0).round(),
        lo_y.max(0.0).round(),
        hi_x.min(w as f64 - 1.0).round(),
        hi_y.min(h as f64 - 1.0).round(),
    ];
    let mut chip = image::RgbImage::new(n as u32, n as u32);
    let empty = !(bb[0] <= bb[2] && bb[1] <= bb[3]) || w == 0 || h == 0;
    let bounding_box = (!empty).then(|| bb.map(|v| v as i64));
    // The source: the working box, or a level of its pyramid.
    let mut src = if empty {
        Rgb {
            w: 0,
            h: 0,
            px: vec![],
        }
    } else {
        let (l, t) = (bb[0] as usize, bb[1] as usize);
        let (sw, sh) = (bb[2] as usize - l + 1, bb[3] as usize - t + 1);
        let mut px = Vec::with_capacity(sw * sh * 3);
        for y in t..t + sh {
            let row = &img.as_raw()[(y * w + l) * 3..][..sw * 3];
            px.extend_from_slice(row);
        }
        Rgb { w: sw, h: sh, px }
    };
    let mut level = -1;
    let mut r = [
        rect[0] - bb[0],
        rect[1] - bb[1],
        rect[2] - bb[0],
        rect[3] - bb[1],
    ];
    while area(rect_down(r)) > size {
        level += 1;
        r = rect_down(r);
    }
    if level >= 0 && depth > 0 {
        for _ in 0..=level {
            src = pyramid_down(&src);
        }
    }
    let c = centre(r);
    let p0 = rotate(c, [r[0], r[1]], details.angle);
    let p1 = rotate(c, [r[2], r[1]], details.angle);
    let p2 = rotate(c, [r[0], r[3]], details.angle);
    let last = (n - 1) as f64;
    let a = [
        [(p1[0] - p0[0]) / last, (p2[0] - p0[0]) / last],
        [(p1[1] - p0[1]) / last, (p2[1] - p0[1]) / last],
    ];
    let b = p0;
    for row in 0..n {
        for col in 0..n {
            let (cf, rf) = (col as f64, row as f64);
            let px = a[0][0] * cf + a[0][1] * rf + b[0];
            let py = a[1][0] * cf + a[1][1] * rf + b[1];
            let (x0, y0) = (px.floor(), py.floor());
            if !(x0 >= 0.0 && y0 >= 0.0 && x0 + 1.0 < src.w as f64 && y0 + 1.0 < src.h as f64) {
                continue;
            }
            let (fx, fy) = (px - x0, py - y0);
            let (x0, y0) = (x0 as usize, y0 as usize);
            let mut out = [0u8; 3];
            for (ch, o) in out.iter_mut().enumerate() {
                let s = |x: usize, y: usize| f64::from(src.px[(y * src.w + x) * 3 + ch]);
                let v = (1.0 - fy) * ((1.0 - fx) * s(x0, y0) + fx * s(x0 + 1, y0))
                    + fy * ((1.0 - fx) * s(x0, y0 + 1) + fx * s(x0 + 1, y0 + 1));
                *o = v as u8;
            }
            chip.put_pixel(col as u32, row as u32, image::Rgb(out));
        }
    }
    (
        chip,
        Extraction {
            level,
            bounding_box,
            a,
            b,
        },
    )
}

/// The aligned chip of a face's 68 landmarks.
///
/// # Errors
/// As [`ChipDetails::from_landmarks`].
pub fn face_chip(
    img: &image::RgbImage,
    landmarks: &[[f64; 2]],
    template: Template,
) -> nn::Result<image::RgbImage> {
    let details = ChipDetails::from_landmarks(landmarks, template)?;
    Ok(extract_chip(img, &details).0)
}
