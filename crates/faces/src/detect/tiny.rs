//! The Tiny Face Detector (face-api.js): a tiny-YOLOv2 with depthwise-separable convolutions,
//! one class, five anchors; 416 x 416 input by default (any multiple of 32).

use std::path::Path;

use tensor::{PoolOptions, Tensor};

use super::tf::{self, Conv, Pad, SepConv, Weights};
use super::{DetectOptions, Detection};

/// Default input side.
pub const DEFAULT_INPUT: usize = 416;
/// Mean pixel subtracted before dividing by 255.
const MEAN_RGB: [f32; 3] = [117.001, 114.697, 97.404];
/// Anchor `(width, height)` in grid cells.
const ANCHORS: [(f64, f64); 5] = [
    (1.603231, 2.094468),
    (6.041143, 7.080126),
    (2.882459, 3.518061),
    (4.266906, 5.178857),
    (9.041765, 10.66308),
];
/// Widths of the separable layers conv1-conv5.
const WIDTHS: [usize; 6] = [16, 32, 64, 128, 256, 512];

/// The network with its weights.
pub struct TinyFaceDetector {
    conv0: Conv,
    seps: Vec<SepConv>,
    head: Conv,
}

/// The raw grid output of one image and how to map it back.
#[derive(Debug, Clone)]
pub struct TinyOutput {
    /// `[row][col][anchor][tx, ty, tw, th, to]`, row-major, `grid x grid x 5 x 5` values.
    pub raw: Vec<f32>,
    /// Grid side (input / 32).
    pub grid: usize,
    input: usize,
    width: usize,
    height: usize,
}

impl TinyFaceDetector {
    /// Loads the TF.js weights manifest.
    ///
    /// # Errors
    /// An unreadable or malformed file, a missing tensor or one of the wrong shape (named).
    pub fn load(manifest: &Path) -> nn::Result<TinyFaceDetector> {
        let mut w = Weights::tfjs(manifest)?;
        let conv0 = Conv::new(
            w.filter("conv0/filters", 3, 3, 16)?,
            Some(w.take("conv0/bias", &[16])?),
            1,
            Pad::Fixed(0),
        );
        let mut seps = vec![];
        for i in 1..WIDTHS.len() {
            seps.push(SepConv::load(
                &mut w,
                &format!("conv{i}"),
                WIDTHS[i - 1],
                WIDTHS[i],
                1,
                Pad::Fixed(1),
            )?);
        }
        let head = Conv::new(
            w.filter("conv8/filters", 1, 512, 25)?,
            Some(w.take("conv8/bias", &[25])?),
            1,
            Pad::Fixed(0),
        );
        Ok(TinyFaceDetector { conv0, seps, head })
    }

    /// The network input: padded at the bottom / right to a square, resized to `size`
    /// (TF legacy bilinear), `(x - mean) / 255`.
    pub fn input(img: &image::RgbImage, size: usize) -> Tensor {
        tf::normalise(tf::to_batch_tensor(img, size, false), MEAN_RGB, 255.0)
    }

    /// Every stage handed to `seen` (`conv0`, `pool1`, `conv1`, ..., `conv8`); the `(1, 25,
    /// k, k)` output.
    ///
    /// # Errors
    /// An input that is not `(1, 3, 32k, 32k)`.
    pub fn forward_with(
        &self,
        x: &Tensor,
        seen: &mut dyn FnMut(&str, &Tensor),
    ) -> nn::Result<Tensor> {
        let s = x.shape();
        if s.len() != 4
            || s[0] != 1
            || s[1] != 3
            || s[2] != s[3]
            || !s[2].is_multiple_of(32)
            || s[2] == 0
        {
            return Err(nn::Error::arg(
                "TinyFaceDetector",
                format!("input must be (1, 3, 32k, 32k), got {s:?}"),
            ));
        }
        let leaky = |t: Tensor| t.leaky_relu(0.1);
        let mut h = leaky(self.conv0.forward(x)?);
        seen("conv0", &h);
        for (i, sep) in self.seps.iter().enumerate() {
            // 2 x 2 stride-2 max pooling, TF `same`: an odd side gets one -inf row / column
            // after, which ceil mode's partial last window is.
            h = h.max_pool_values(&PoolOptions::new(&[2, 2]).stride(&[2, 2]).ceil_mode(true))?;
            seen(&format!("pool{}", i + 1), &h);
            h = leaky(sep.forward(&h)?);
            seen(&format!("conv{}", i + 1), &h);
        }
        h = max_pool_2x2_stride1_same(&h);
        seen("pool6", &h);
        let out = self.head.forward(&h)?;
        seen("conv8", &out);
        Ok(out)
    }

    /// Runs the network at input side `size` (a multiple of 32).
    ///
    /// # Errors
    /// A size that is not a positive multiple of 32.
    pub fn run(&self, img: &image::RgbImage, size: usize) -> nn::Result<TinyOutput> {
        let out = self.forward_with(&Self::input(img, size), &mut |_, _| {})?;
        let k = out.shape()[2];
        let v = out.contiguous_data();
        let plane = k * k;
        // (25, k, k) -> [row][col][25].
        let mut raw = vec![0f32; plane * 25];
        for ch in 0..25 {
            for cell in 0..plane {
                raw[cell * 25 + ch] = v[ch * plane + cell];
            }
        }
        Ok(TinyOutput {
            raw,
            grid: k,
            input: size,
            width: img.width() as usize,
            height: img.height() as usize,
        })
    }
}

/// 2 x 2 max pooling at stride 1 with TF `same` padding (one -inf row and column after).
fn max_pool_2x2_stride1_same(x: &Tensor) -> Tensor {
    let s = x.shape().to_vec();
    let (c, h, w) = (s[1], s[2], s[3]);
    let v = x.contiguous_data();
    let mut out = vec![0f32; c * h * w];
    for ch in 0..c {
        let p = &v[ch * h * w..][..h * w];
        for y in 0..h {
            for xx in 0..w {
                let mut m = p[y * w + xx];
                if xx + 1 < w {
                    m = m.max(p[y * w + xx + 1]);
                }
                if y + 1 < h {
                    m = m.max(p[(y + 1) * w + xx]);
                    if xx + 1 < w {
                        m = m.max(p[(y + 1) * w + xx + 1]);
                    }
                }
                out[(ch * h + y) * w + xx] = m;
            }
        }
    }
    Tensor::from_vec(out, &s).expect("same shape")
}

impl TinyOutput {
    /// Faces above `opts.min_score` after NMS (IoU `opts.iou`), best first, in image pixels
    /// (unclipped: a box may start left of or above the image).
    pub fn faces(&self, opts: &DetectOptions) -> Vec<Detection> {
        let k = self.grid;
        let (rw, rh) = tf::reshaped_dims(self.width, self.height, self.input);
        let isz = rw.max(rh);
        let (cfx, cfy) = (isz / rw, isz / rh);
        let mut cands = vec![];
        for row in 0..k {
            for col in 0..k {
                for (a, &(aw, ah)) in ANCHORS.iter().enumerate() {
                    let i = ((row * k + col) * 5 + a) * 5;
                    let t = |j: usize| f64::from(self.raw[i + j]);
                    let score = tf::sigmoid(t(4));
                    if score <= opts.min_score {
                        continue;
                    }
                    let cx = ((col as f64 + tf::sigmoid(t(0))) / k as f64) * cfx;
                    let cy = ((row as f64 + tf::sigmoid(t(1))) / k as f64) * cfy;
                    let w = (t(2).exp() * aw / k as f64) * cfx;
                    let h = (t(3).exp() * ah / k as f64) * cfy;
                    cands.push(([cx - w / 2.0, cy - h / 2.0, w, h], score, i / 5));
                }
            }
        }
        // face-api sorts ascending (stable) and pops the last: best first, and among equal
        // scores the later candidate first.
        let mut order: Vec<usize> = (0..cands.len()).collect();
        order.sort_by(|&a, &b| cands[b].1.total_cmp(&cands[a].1).then(b.cmp(&a)));
        let corners: Vec<[f64; 4]> = cands
            .iter()
            .map(|(b, _, _)| [b[0], b[1], b[0] + b[2], b[1] + b[3]])
            .collect();
        let kept = tf::nms(&order, &corners, opts.iou, opts.max_faces);
        let (w, h) = (self.width as f64, self.height as f64);
        kept.into_iter()
            .map(|i| {
                let (b, score, cell) = cands[i];
                Detection {
                    x: b[0] * w,
                    y: b[1] * h,
                    width: b[2] * w,
                    height: b[3] * h,
                    score: score as f32,
                    anchor: cell,
                }
            })
            .collect()
    }
}
