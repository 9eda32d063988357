//! Looking inside a CNN (Zeiler & Fergus 2013; the seed's section 2.1): first-layer filters as
//! images, the dataset patches that most excite a unit, deconvnet projections of those
//! activations back to pixels, and occlusion sensitivity maps.
//!
//! A network is seen through [`Layered`]: the activation `(N, C, H, W)` of layer `l` for a batch.
//! Projections use the graph's own reverse sweep with [`ReluRule::Deconvnet`]: max pooling's
//! backward unpools with the recorded switches, convolution's is the transposed convolution
//! with the same filters, ReLU rectifies the signal.

use autograd::{Graph, ReluRule, Var};
use image::RgbImage;
use tensor::Tensor;

use crate::{Ctx, Mode, ParamStore, Result};

/// A network whose intermediate activations can be asked for by index.
pub trait Layered {
    /// The activation of layer `layer` for input `x`.
    ///
    /// # Errors
    /// A layer index out of range; inputs the network cannot take.
    fn layer<'g>(&self, cx: &Ctx<'g>, x: &Var<'g>, layer: usize) -> Result<Var<'g>>;
}

/// A network shared between the inspector and other users (occlusion scorers) is inspected
/// through its `Rc`.
impl<T: Layered + ?Sized> Layered for std::rc::Rc<T> {
    fn layer<'g>(&self, cx: &Ctx<'g>, x: &Var<'g>, layer: usize) -> Result<Var<'g>> {
        (**self).layer(cx, x, layer)
    }
}

impl Layered for crate::models::squeezenet::SqueezeNet {
    fn layer<'g>(&self, cx: &Ctx<'g>, x: &Var<'g>, layer: usize) -> Result<Var<'g>> {
        Ok(self.features(cx, x, &[layer])?.remove(0))
    }
}

/// One strong activation of a unit: which image, where, how strong.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// Index of the image in the dataset.
    pub image: usize,
    /// Row and column in the activation map.
    pub at: (usize, usize),
    /// The activation.
    pub value: f32,
}

/// For each unit in `units` of `layer`, its `k` strongest activations over `images` (each
/// `(C, H, W)`), one per image at most (the image's strongest position), strongest first.
///
/// # Errors
/// The network's errors.
pub fn top_activations(
    net: &dyn Layered,
    store: &ParamStore,
    images: &[Tensor],
    layer: usize,
    units: &[usize],
    k: usize,
) -> Result<Vec<Vec<Hit>>> {
    let mut hits: Vec<Vec<Hit>> = vec![vec![]; units.len()];
    for (i, img) in images.iter().enumerate() {
        let g = Graph::no_grad();
        let cx = Ctx::new(&g, store, Mode::Eval, 0);
        let a = net.layer(&cx, &g.constant(img.unsqueeze(0)?), layer)?;
        let s = a.shape().to_vec();
        let (c, h, w) = (s[1], s[2], s[3]);
        let v = a.value().to_vec();
        for (slot, &u) in hits.iter_mut().zip(units) {
            if u >= c {
                return Err(crate::Error::arg(
                    "top_activations",
                    format!("unit {u} of a layer with {c} channels"),
                ));
            }
            let plane = &v[u * h * w..(u + 1) * h * w];
            let (best, value) = plane
                .iter()
                .copied()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .expect("non-empty map");
            slot.push(Hit {
                image: i,
                at: (best / w, best % w),
                value,
            });
        }
    }
    for slot in &mut hits {
        slot.sort_by(|a, b| b.value.total_cmp(&a.value));
        slot.truncate(k);
    }
    Ok(hits)
}

/// What a reverse sweep from one activation starts with.
#[derive(Clone, Copy)]
enum Seed {
    /// The activation's own value (a projection of what the unit saw).
    Activation,
    /// 1 (which inputs can reach the unit at all).
    One,
}

/// A reverse sweep from unit `unit` at `at` of `layer` to the input: the input-shaped signal,
/// `None` when nothing reaches the input.
#[allow(clippy::too_many_arguments)]
fn sweep_from_unit(
    net: &dyn Layered,
    store: &ParamStore,
    image: &Tensor,
    layer: usize,
    unit: usize,
    at: (usize, usize),
    seed: Seed,
    rule: ReluRule,
) -> Result<Option<Tensor>> {
    let g = Graph::new();
    let cx = Ctx::new(&g, store, Mode::Eval, 0);
    let x = g.leaf(image.unsqueeze(0)?);
    let a = net.layer(&cx, &x, layer)?;
    let s = a.shape().to_vec();
    if s.len() != 4 || unit >= s[1] || at.0 >= s[2] || at.1 >= s[3] {
        return Err(crate::Error::arg(
            "inspect",
            format!("unit {unit} at {at:?} outside a layer of shape {s:?}"),
        ));
    }
    let i = (unit * s[2] + at.0) * s[3] + at.1;
    let mut values = vec![0.0f32; a.value().numel()];
    values[i] = match seed {
        Seed::Activation => a.value().to_vec()[i],
        Seed::One => 1.0,
    };
    let grads = g.backward_from(&a, Tensor::from_vec(values, &s)?, rule)?;
    Ok(grads
        .get(&x)
        .map(|t| t.reshape(image.shape()))
        .transpose()?)
}

/// The projection of one activation (unit `unit` at `at` of `layer`) back to the input's pixels
/// by the deconvnet rule (`ReluRule::Deconvnet`), or by the true gradient
/// (`ReluRule::Gradient`). Returns a tensor of the image's shape `(C, H, W)`.
///
/// # Errors
/// The network's errors; a unit or position outside the layer.
pub fn project(
    net: &dyn Layered,
    store: &ParamStore,
    image: &Tensor,
    layer: usize,
    unit: usize,
    at: (usize, usize),
    rule: ReluRule,
) -> Result<Tensor> {
    Ok(
        sweep_from_unit(net, store, image, layer, unit, at, Seed::Activation, rule)?
            .unwrap_or_else(|| Tensor::zeros(image.shape())),
    )
}

/// The box `(y0, x0, y1, x1)` (exclusive ends) of the input pixels that influence one
/// activation: the support of a reverse sweep from it, found by the graph itself rather than by
/// receptive-field arithmetic per layer type. `None` when nothing reaches the input (a dead
/// unit).
///
/// # Errors
/// As [`project`].
pub fn influence_box(
    net: &dyn Layered,
    store: &ParamStore,
    image: &Tensor,
    layer: usize,
    unit: usize,
    at: (usize, usize),
) -> Result<Option<(usize, usize, usize, usize)>> {
    // A seed of 1 and the rectified (deconvnet) sweep: every path that reaches the input
    // contributes, even where the activation itself is 0.
    let Some(gx) = sweep_from_unit(
        net,
        store,
        image,
        layer,
        unit,
        at,
        Seed::One,
        ReluRule::Deconvnet,
    )?
    else {
        return Ok(None);
    };
    let (c, h, w) = (image.shape()[0], image.shape()[1], image.shape()[2]);
    let v = gx.to_vec();
    let (mut y0, mut x0, mut y1, mut x1) = (h, w, 0, 0);
    for ch in 0..c {
        for y in 0..h {
            for xx in 0..w {
                if v[(ch * h + y) * w + xx] != 0.0 {
                    y0 = y0.min(y);
                    x0 = x0.min(xx);
                    y1 = y1.max(y + 1);
                    x1 = x1.max(xx + 1);
                }
            }
        }
    }
    Ok((y1 > y0).then_some((y0, x0, y1, x1)))
}

/// Occlusion sensitivity: a `patch x patch` square of value `fill` slides over the image with
/// stride `stride`; each cell holds `score(original) - score(occluded)` (how much the score
/// falls when that part is hidden). Returns the map `(rows, cols)` and its values.
///
/// # Errors
/// Errors of `score`.
pub fn occlusion_map(
    image: &Tensor,
    patch: usize,
    stride: usize,
    fill: f32,
    score: &dyn Fn(&Tensor) -> Result<f32>,
) -> Result<((usize, usize), Vec<f32>)> {
    let (c, h, w) = (image.shape()[0], image.shape()[1], image.shape()[2]);
    let stride = stride.max(1);
    let rows = h.saturating_sub(patch) / stride + 1;
    let cols = w.saturating_sub(patch) / stride + 1;
    let base = score(image)?;
    let src = image.to_vec();
    let mut out = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for q in 0..cols {
            let mut v = src.clone();
            for ch in 0..c {
                for y in r * stride..(r * stride + patch).min(h) {
                    for x in q * stride..(q * stride + patch).min(w) {
                        v[(ch * h + y) * w + x] = fill;
                    }
                }
            }
            out.push(base - score(&Tensor::from_vec(v, image.shape())?)?);
        }
    }
    Ok(((rows, cols), out))
}

/// A `(C, H, W)` tensor as an RGB image, each image min-max normalised on its own (grey for 1
/// channel), scaled up `zoom` times (nearest neighbour).
pub fn to_tile(t: &Tensor, zoom: u32) -> RgbImage {
    let s = t.shape();
    let (c, h, w) = (s[0], s[1], s[2]);
    let v = t.to_vec();
    let (lo, hi) = v
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    let span = (hi - lo).max(1e-12);
    let z = zoom.max(1);
    RgbImage::from_fn(w as u32 * z, h as u32 * z, |x, y| {
        let (xx, yy) = ((x / z) as usize, (y / z) as usize);
        let at = |ch: usize| {
            let ch = if c == 1 { 0 } else { ch };
            (((v[(ch * h + yy) * w + xx] - lo) / span) * 255.0).round() as u8
        };
        image::Rgb([at(0), at(1), at(2)])
    })
}

/// Tiles in a labelled grid: `rows` of images (all resized to `tile x tile`), a label left of
/// each row and under each tile.
pub fn grid(rows: &[(String, Vec<(String, RgbImage)>)], tile: u32) -> RgbImage {
    let cols = rows.iter().map(|r| r.1.len()).max().unwrap_or(0) as u32;
    let (left, pad, text_h) = (90u32, 6u32, 14u32);
    let w = left + cols * (tile + pad) + pad;
    let h = rows.len() as u32 * (tile + text_h + pad) + pad;
    let mut img = RgbImage::from_pixel(w.max(1), h.max(1), image::Rgb([255, 255, 255]));
    for (r, (label, tiles)) in rows.iter().enumerate() {
        let y0 = pad + r as u32 * (tile + text_h + pad);
        crate::plot::draw_text(&mut img, 4, (y0 + tile / 2) as i64, label, [0, 0, 0], 1);
        for (q, (caption, t)) in tiles.iter().enumerate() {
            let x0 = left + pad + q as u32 * (tile + pad);
            let t = image::imageops::resize(t, tile, tile, image::imageops::FilterType::Nearest);
            image::imageops::overlay(&mut img, &t, x0 as i64, y0 as i64);
            crate::plot::draw_text(
                &mut img,
                x0 as i64,
                (y0 + tile + 3) as i64,
                caption,
                [60, 60, 60],
                1,
            );
        }
    }
    img
}

/// A heat map (rows x cols values) blended over an image: red where the values are large.
pub fn heat_overlay(base: &RgbImage, map: (usize, usize), values: &[f32]) -> RgbImage {
    let (rows, cols) = map;
    let hi = values.iter().copied().fold(0.0f32, f32::max).max(1e-12);
    let (w, h) = (base.width(), base.height());
    RgbImage::from_fn(w, h, |x, y| {
        let r = ((y as usize * rows) / h as usize).min(rows.saturating_sub(1));
        let q = ((x as usize * cols) / w as usize).min(cols.saturating_sub(1));
        let a = (values.get(r * cols + q).copied().unwrap_or(0.0) / hi).clamp(0.0, 1.0);
        let p = base.get_pixel(x, y);
        let mix = |c: u8, t: f32| (c as f32 * (1.0 - 0.6 * a) + t * 0.6 * a) as u8;
        image::Rgb([mix(p[0], 255.0), mix(p[1], 0.0), mix(p[2], 0.0)])
    })
}
