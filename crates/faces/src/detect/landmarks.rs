//! face-api.js's 68-point landmark nets (full and tiny): densely connected blocks of separable
//! convolutions regressing 68 `(x, y)` points (iBUG 300-W order) from a 112 x 112 face crop.

use std::path::Path;

use tensor::Tensor;

use super::Detection;
use super::tf::{self, Conv, Pad, SepConv, Weights};

/// Input side.
pub const INPUT: usize = 112;
/// Mean pixel subtracted before dividing by 255 (the ResNet-29's).
const MEAN_RGB: [f32; 3] = [122.782, 117.001, 104.298];

/// The 68 points of one face in image pixels.
pub type Landmarks = [[f64; 2]; 68];

/// First unit of a dense block: a plain convolution (block 0) or a separable one.
enum FirstUnit {
    Plain(Conv),
    Separable(SepConv),
}

struct DenseBlock {
    first: FirstUnit,
    rest: Vec<SepConv>,
}

/// Which landmark net.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LandmarkKind {
    /// Four blocks of four units (356,840 weights).
    Full,
    /// Three blocks of three units (77,224 weights).
    Tiny,
}

/// A landmark net with its weights.
pub struct LandmarkNet {
    blocks: Vec<DenseBlock>,
    /// `(136, width)`.
    fc: Tensor,
    fc_bias: Tensor,
}

/// The integer crop the landmark net sees for a detection (`clipAtImageBorders`, each value
/// floored): `(x, y, w, h)`, or `None` when nothing of the box is inside the image.
pub fn crop_box(d: &Detection, width: usize, height: usize) -> Option<[usize; 4]> {
    let (w, h) = (width as f64, height as f64);
    let cx = d.x.max(0.0);
    let cy = d.y.max(0.0);
    let cw = (d.x + d.width - cx).min(w - cx);
    let ch = (d.y + d.height - cy).min(h - cy);
    let (cx, cy, cw, ch) = (cx.floor(), cy.floor(), cw.floor(), ch.floor());
    if !(cw > 0.0 && ch > 0.0 && cx < w && cy < h) {
        return None;
    }
    Some([cx as usize, cy as usize, cw as usize, ch as usize])
}

impl LandmarkNet {
    /// Loads a TF.js weights manifest of either kind.
    ///
    /// # Errors
    /// An unreadable or malformed file, a missing tensor or one of the wrong shape (named).
    pub fn load(manifest: &Path, kind: LandmarkKind) -> nn::Result<LandmarkNet> {
        let mut w = Weights::tfjs(manifest)?;
        let (widths, units): (&[usize], usize) = match kind {
            LandmarkKind::Full => (&[32, 64, 128, 256], 4),
            LandmarkKind::Tiny => (&[32, 64, 128], 3),
        };
        let mut blocks = vec![];
        let mut cin = 3;
        for (b, &c) in widths.iter().enumerate() {
            let first = if b == 0 {
                FirstUnit::Plain(Conv::new(
                    w.filter("dense0/conv0/filters", 3, 3, c)?,
                    Some(w.take("dense0/conv0/bias", &[c])?),
                    2,
                    Pad::Same,
                ))
            } else {
                FirstUnit::Separable(SepConv::load(
                    &mut w,
                    &format!("dense{b}/conv0"),
                    cin,
                    c,
                    2,
                    Pad::Same,
                )?)
            };
            let rest = (1..units)
                .map(|u| SepConv::load(&mut w, &format!("dense{b}/conv{u}"), c, c, 1, Pad::Same))
                .collect::<nn::Result<Vec<_>>>()?;
            blocks.push(DenseBlock { first, rest });
            cin = c;
        }
        let fc = w
            .take("fc/weights", &[cin, 136])?
            .transpose(0, 1)?
            .contiguous();
        let fc_bias = w.take("fc/bias", &[136])?;
        Ok(LandmarkNet {
            blocks,
            fc,
            fc_bias,
        })
    }

    /// The net's input for a crop of the image: zero-padded to a centred square, resized to
    /// 112 (TF legacy bilinear), `(x - mean) / 255`.
    pub fn input(crop: &image::RgbImage) -> Tensor {
        tf::normalise(tf::to_batch_tensor(crop, INPUT, true), MEAN_RGB, 255.0)
    }

    /// The 136 raw outputs (`x0, y0, x1, ...`, relative to the 112 x 112 input), every block
    /// handed to `seen` (`dense0`...).
    ///
    /// # Errors
    /// An input that is not `(1, 3, 112, 112)`.
    pub fn forward_with(
        &self,
        x: &Tensor,
        seen: &mut dyn FnMut(&str, &Tensor),
    ) -> nn::Result<Vec<f32>> {
        if x.shape() != [1, 3, INPUT, INPUT] {
            return Err(nn::Error::arg(
                "LandmarkNet",
                format!("input must be (1, 3, 112, 112), got {:?}", x.shape()),
            ));
        }
        let mut h = x.clone();
        for (b, block) in self.blocks.iter().enumerate() {
            let o1 = match &block.first {
                FirstUnit::Plain(c) => c.forward(&h)?,
                FirstUnit::Separable(s) => s.forward(&h)?,
            }
            .relu();
            // Dense connections: each unit sees the ReLU of the sum of all before it (tfjs
            // adds right to left).
            let mut outs = vec![o1];
            for unit in &block.rest {
                let input = if outs.len() == 1 {
                    outs[0].clone()
                } else {
                    sum_right_to_left(&outs)?.relu()
                };
                outs.push(unit.forward(&input)?);
            }
            h = sum_right_to_left(&outs)?.relu();
            seen(&format!("dense{b}"), &h);
        }
        let feat = h.global_avg_pool()?.reshape(&[1, self.fc.shape()[1]])?;
        seen("avgpool", &feat);
        let out = feat.matmul(&self.fc.transpose(0, 1)?)?.add(&self.fc_bias)?;
        Ok(out.into_vec())
    }

    /// The 68 landmarks of a detection in image pixels, with face-api's post-processing:
    /// the crop it sees is the box clipped to the image and floored, and the points are
    /// shifted back by the box's own (unfloored) origin. `None` for a box outside the image.
    ///
    /// # Errors
    /// None in practice (shapes are fixed).
    pub fn landmarks(&self, img: &image::RgbImage, d: &Detection) -> nn::Result<Option<Landmarks>> {
        let Some([cx, cy, cw, ch]) = crop_box(d, img.width() as usize, img.height() as usize)
        else {
            return Ok(None);
        };
        let crop =
            image::imageops::crop_imm(img, cx as u32, cy as u32, cw as u32, ch as u32).to_image();
        let fc = self.forward_with(&Self::input(&crop), &mut |_, _| {})?;
        Ok(Some(postprocess(&fc, cw, ch, d.x, d.y)))
    }
}

/// `a[0] + (a[1] + (... + a[n-1]))`.
fn sum_right_to_left(a: &[Tensor]) -> nn::Result<Tensor> {
    let mut acc = a[a.len() - 1].clone();
    for t in a[..a.len() - 1].iter().rev() {
        acc = t.add(&acc)?;
    }
    Ok(acc)
}

/// face-api's `postProcess` and `extendWithFaceLandmarks`: the net's output relative to the
/// padded input, made relative to the `cw x ch` crop, then shifted by the detection origin.
pub(crate) fn postprocess(fc: &[f32], cw: usize, ch: usize, x0: f64, y0: f64) -> Landmarks {
    let s = INPUT as f64 / cw.max(ch) as f64;
    let (dw, dh) = ((cw as f64 * s) as f32, (ch as f64 * s) as f32);
    let pad_x = if dw < dh { (dw - dh).abs() / 2.0 } else { 0.0 };
    let pad_y = if dh < dw { (dw - dh).abs() / 2.0 } else { 0.0 };
    let mut out = [[0f64; 2]; 68];
    for (i, p) in out.iter_mut().enumerate() {
        let rx = (fc[2 * i] * INPUT as f32 - pad_x) / dw;
        let ry = (fc[2 * i + 1] * INPUT as f32 - pad_y) / dh;
        *p = [
            f64::from(rx) * cw as f64 + x0,
            f64::from(ry) * ch as f64 + y0,
        ];
    }
    out
}
