//! Why two faces were judged the same person or not: occlusion of each face's input (the
//! seed's Zeiler-Fergus method applied to a verification decision). A square of the input is
//! set to the mean pixel (zero after normalisation) at every position on a grid; how much the
//! pair's distance moves says how much that region drives it.

use tensor::Tensor;

use crate::embedder::Embedder;

/// The distance maps of a pair.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// The pair's score without occlusion.
    pub distance: f32,
    /// For each face, `(rows, cols)` of the grid and, per grid cell, the score with that
    /// region of this face occluded minus the unoccluded score: positive where the region
    /// made the faces alike, negative where it set them apart.
    pub maps: [(usize, usize, Vec<f32>); 2],
    /// Patch side and stride in input pixels.
    pub patch: usize,
    /// Stride of the grid.
    pub stride: usize,
}

/// Occludes `patch x patch` squares of each input `(C, H, W)` at `stride` and scores each
/// occluded face against the other, unoccluded one.
///
/// # Errors
/// Inputs of different shapes or not `(C, H, W)`, a patch of 0 or larger than the input, a
/// stride of 0.
pub fn occlusion(
    model: &Embedder,
    a: &Tensor,
    b: &Tensor,
    patch: usize,
    stride: usize,
) -> nn::Result<Explanation> {
    let s = a.shape().to_vec();
    if s.len() != 3 || b.shape() != s.as_slice() {
        return Err(nn::Error::arg(
            "explain",
            format!(
                "needs two (C, H, W) inputs of one shape, got {:?} and {:?}",
                s,
                b.shape()
            ),
        ));
    }
    let (c, h, w) = (s[0], s[1], s[2]);
    if patch == 0 || patch > h.min(w) || stride == 0 {
        return Err(nn::Error::arg(
            "explain",
            format!(
                "patch {patch} must be 1..={} and stride {stride} at least 1",
                h.min(w)
            ),
        ));
    }
    let score = model.scorer();
    let base = model.embed(&[a, b], 2)?;
    let dim = model.dim();
    let (ea, eb) = (&base[..dim], &base[dim..]);
    let distance = score(ea, eb);
    let rows = (h - patch) / stride + 1;
    let cols = (w - patch) / stride + 1;
    let mut maps = vec![];
    for (face, other) in [(a, eb), (b, ea)] {
        let data = face.contiguous_data();
        let mut occluded = Vec::with_capacity(rows * cols);
        for r in 0..rows {
            for q in 0..cols {
                let mut v = data.to_vec();
                for ch in 0..c {
                    for y in r * stride..r * stride + patch {
                        let row = (ch * h + y) * w;
                        v[row + q * stride..row + q * stride + patch].fill(0.0);
                    }
                }
                occluded.push(Tensor::from_vec(v, &s)?);
            }
        }
        let refs: Vec<&Tensor> = occluded.iter().collect();
        let enc = model.embed(&refs, 32)?;
        let map: Vec<f32> = enc
            .chunks(dim)
            .map(|e| score(e, other) - distance)
            .collect();
        maps.push((rows, cols, map));
    }
    let mut it = maps.into_iter();
    Ok(Explanation {
        distance,
        maps: [it.next().expect("two"), it.next().expect("two")],
        patch,
        stride,
    })
}

/// A picture of the explanation: each face's pixels (`pixels_a`, `pixels_b`, RGB 0-255 of the
/// inputs) beside the same with its map laid over (red: the region made the faces alike;
/// blue: it set them apart), the colour scale shared by both faces.
pub fn render(
    e: &Explanation,
    pixels_a: &image::RgbImage,
    pixels_b: &image::RgbImage,
) -> image::RgbImage {
    let (w, h) = pixels_a.dimensions();
    let gap = 8;
    let mut out = image::RgbImage::from_pixel(4 * w + 3 * gap, h, image::Rgb([255, 255, 255]));
    let peak = e
        .maps
        .iter()
        .flat_map(|m| m.2.iter())
        .fold(1e-6f32, |m, v| m.max(v.abs()));
    for (k, (px, (rows, cols, map))) in [pixels_a, pixels_b].iter().zip(&e.maps).enumerate() {
        let x0 = k as u32 * 2 * (w + gap);
        image::imageops::replace(&mut out, *px, i64::from(x0), 0);
        // Each pixel takes the mean of the cells whose patch covers it.
        let mut over = (*px).clone();
        for y in 0..h as usize {
            for x in 0..w as usize {
                let (mut sum, mut n) = (0f32, 0f32);
                for r in 0..*rows {
                    for q in 0..*cols {
                        let (ty, tx) = (r * e.stride, q * e.stride);
                        if y >= ty && y < ty + e.patch && x >= tx && x < tx + e.patch {
                            sum += map[r * cols + q];
                            n += 1.0;
                        }
                    }
                }
                let v = if n > 0.0 { sum / n / peak } else { 0.0 };
                let p = over.get_pixel_mut(x as u32, y as u32);
                let grey = (u16::from(p.0[0]) + u16::from(p.0[1]) + u16::from(p.0[2])) as f32 / 3.0;
                let a = v.abs().min(1.0) * 0.75;
                let tint = if v >= 0.0 {
                    [255.0, 40.0, 40.0]
                } else {
                    [40.0, 90.0, 255.0]
                };
                for ch in 0..3 {
                    p.0[ch] = (grey * (1.0 - a) + tint[ch] * a) as u8;
                }
            }
        }
        image::imageops::replace(&mut out, &over, i64::from(x0 + w + gap), 0);
    }
    out
}
