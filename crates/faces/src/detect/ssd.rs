//! The SSD MobileNet v1 face detector (TF Object Detection API, face-api.js weights): a 512 x
//! 512 input, a MobileNet v1 backbone of depthwise-separable convolutions, six feature maps and
//! 5,118 anchors.

use std::path::Path;

use tensor::Tensor;

use super::tf::{self, Conv, Pad, Weights};
use super::{DetectOptions, Detection};

/// Input side.
pub const INPUT: usize = 512;
/// Anchors over the six feature maps.
pub const ANCHORS: usize = 5118;
/// Batch-norm epsilon of the depthwise units (f32 0.001).
const BN_EPS: f32 = 0.001;

/// Backbone widths: `(input channels, output channels, depthwise stride)` of units 1-13.
const UNITS: [(usize, usize, usize); 13] = [
    (32, 64, 1),
    (64, 128, 2),
    (128, 128, 1),
    (128, 256, 2),
    (256, 256, 1),
    (256, 512, 2),
    (512, 512, 1),
    (512, 512, 1),
    (512, 512, 1),
    (512, 512, 1),
    (512, 512, 1),
    (512, 1024, 2),
    (1024, 1024, 1),
];

/// Extra layers: `(kernel, input, output, stride)`.
const EXTRA: [(usize, usize, usize, usize); 8] = [
    (1, 1024, 256, 1),
    (3, 256, 512, 2),
    (1, 512, 128, 1),
    (3, 128, 256, 2),
    (1, 256, 128, 1),
    (3, 128, 256, 2),
    (1, 256, 64, 1),
    (3, 64, 128, 2),
];

/// Feature-map channels and anchors per cell of the six box predictors.
const PREDICTORS: [(usize, usize); 6] =
    [(512, 3), (1024, 6), (512, 6), (256, 6), (256, 6), (128, 6)];

/// The raw box encodings and class logits of every anchor.
pub type RawHeads = (Vec<[f32; 4]>, Vec<[f32; 3]>);

struct Predictor {
    boxes: Conv,
    classes: Conv,
    anchors: usize,
}

/// The network with its weights.
pub struct SsdMobilenetV1 {
    conv0: Conv,
    units: Vec<(Conv, Conv)>,
    extra: Vec<Conv>,
    predictors: Vec<Predictor>,
    /// `(ymin, xmin, ymax, xmax)` of each anchor, normalised to the padded square.
    anchors: Vec<[f32; 4]>,
}

/// The network's raw answer for one image, before thresholds and NMS: every anchor's decoded
/// box (normalised `(ymin, xmin, ymax, xmax)` of the padded square, unclipped) and score.
#[derive(Debug, Clone)]
pub struct SsdOutput {
    /// Decoded boxes.
    pub boxes: Vec<[f32; 4]>,
    /// Face scores (sigmoid of class column 1).
    pub scores: Vec<f32>,
    /// Raw box encodings `[5118][4]` (for checking against the reference).
    pub box_encodings: Vec<[f32; 4]>,
    /// Raw class logits `[5118][3]`.
    pub class_logits: Vec<[f32; 3]>,
    width: usize,
    height: usize,
}

impl SsdMobilenetV1 {
    /// Loads the TF.js weights manifest (and the `.bin` beside it).
    ///
    /// # Errors
    /// An unreadable or malformed file, a missing tensor or one of the wrong shape (named).
    pub fn load(manifest: &Path) -> nn::Result<SsdMobilenetV1> {
        let mut w = Weights::tfjs(manifest)?;
        let conv0 = Conv::new(
            w.filter("MobilenetV1/Conv2d_0_pointwise/weights", 3, 3, 32)?,
            Some(w.take(
                "MobilenetV1/Conv2d_0_pointwise/convolution_bn_offset",
                &[32],
            )?),
            2,
            Pad::Same,
        );
        let mut units = vec![];
        for (i, &(cin, cout, stride)) in UNITS.iter().enumerate() {
            let i = i + 1;
            let p = format!("MobilenetV1/Conv2d_{i}_depthwise");
            let dw = w.depthwise(&format!("{p}/depthwise_weights"), 3, cin)?;
            let gamma = w.take(&format!("{p}/BatchNorm/gamma"), &[cin])?.into_vec();
            let beta = w.take(&format!("{p}/BatchNorm/beta"), &[cin])?.into_vec();
            let mean = w
                .take(&format!("{p}/BatchNorm/moving_mean"), &[cin])?
                .into_vec();
            let var = w
                .take(&format!("{p}/BatchNorm/moving_variance"), &[cin])?
                .into_vec();
            // The inference batch norm folded into the depthwise filter and a bias.
            let k: Vec<f32> = gamma
                .iter()
                .zip(&var)
                .map(|(g, v)| g / (v + BN_EPS).sqrt())
                .collect();
            let mut dwv = dw.into_vec();
            for (c, chunk) in dwv.chunks_mut(9).enumerate() {
                chunk.iter_mut().for_each(|v| *v *= k[c]);
            }
            let bias: Vec<f32> = (0..cin).map(|c| beta[c] - mean[c] * k[c]).collect();
            let depthwise = Conv::grouped(
                Tensor::from_vec(dwv, &[cin, 1, 3, 3])?,
                Some(Tensor::from_vec(bias, &[cin])?),
                stride,
                Pad::Same,
                cin,
            );
            let q = format!("MobilenetV1/Conv2d_{i}_pointwise");
            let pointwise = Conv::new(
                w.filter(&format!("{q}/weights"), 1, cin, cout)?,
                Some(w.take(&format!("{q}/convolution_bn_offset"), &[cout])?),
                1,
                Pad::Fixed(0),
            );
            units.push((depthwise, pointwise));
        }
        let mut extra = vec![];
        for (j, &(k, cin, cout, stride)) in EXTRA.iter().enumerate() {
            let q = format!("Prediction/Conv2d_{j}_pointwise");
            extra.push(Conv::new(
                w.filter(&format!("{q}/weights"), k, cin, cout)?,
                Some(w.take(&format!("{q}/convolution_bn_offset"), &[cout])?),
                stride,
                Pad::Same,
            ));
        }
        let mut predictors = vec![];
        for (i, &(c, a)) in PREDICTORS.iter().enumerate() {
            let p = format!("Prediction/BoxPredictor_{i}");
            let head = |w: &mut Weights, kind: &str, n: usize| -> nn::Result<Conv> {
                Ok(Conv::new(
                    w.filter(&format!("{p}/{kind}/weights"), 1, c, n)?,
                    Some(w.take(&format!("{p}/{kind}/biases"), &[n])?),
                    1,
                    Pad::Fixed(0),
                ))
            };
            predictors.push(Predictor {
                boxes: head(&mut w, "BoxEncodingPredictor", 4 * a)?,
                classes: head(&mut w, "ClassPredictor", 3 * a)?,
                anchors: a,
            });
        }
        let anchors = w
            .take("Output/extra_dim", &[1, ANCHORS, 4])?
            .into_vec()
            .chunks_exact(4)
            .map(|a| [a[0], a[1], a[2], a[3]])
            .collect();
        let _ = w.source();
        Ok(SsdMobilenetV1 {
            conv0,
            units,
            extra,
            predictors,
            anchors,
        })
    }

    /// The network input of an image: padded at the bottom / right to a square, resized to
    /// 512 x 512 (TF legacy bilinear), `x / 127.5 - 1`.
    pub fn input(img: &image::RgbImage) -> Tensor {
        let x = tf::to_batch_tensor(img, INPUT, false);
        x.map(|v| v / 127.5 - 1.0)
    }

    /// Every layer's output handed to `seen` (names as in the reference's stage file:
    /// `conv_0`, `conv_{i}.dw`, `conv_{i}`, `prediction.conv_{j}`), and the raw outputs.
    ///
    /// # Errors
    /// An input that is not `(1, 3, H, W)`.
    pub fn forward_with(
        &self,
        x: &Tensor,
        seen: &mut dyn FnMut(&str, &Tensor),
    ) -> nn::Result<RawHeads> {
        if x.rank() != 4 || x.shape()[0] != 1 || x.shape()[1] != 3 {
            return Err(nn::Error::arg(
                "SsdMobilenetV1",
                format!("input must be (1, 3, H, W), got {:?}", x.shape()),
            ));
        }
        // In place on the convolution's own buffer: a fresh tensor per activation cost a
        // quarter of a pass in allocation and page faults.
        let relu6 = |t: Tensor| {
            let shape = t.shape().to_vec();
            let mut v = t.into_vec();
            v.iter_mut().for_each(|x| *x = x.clamp(0.0, 6.0));
            Tensor::from_vec(v, &shape).expect("same shape")
        };
        let mut h = relu6(self.conv0.forward(x)?);
        seen("conv_0", &h);
        let mut maps = vec![];
        for (i, (dw, pw)) in self.units.iter().enumerate() {
            h = relu6(dw.forward(&h)?);
            seen(&format!("conv_{}.dw", i + 1), &h);
            h = relu6(pw.forward(&h)?);
            seen(&format!("conv_{}", i + 1), &h);
            if i + 1 == 11 || i + 1 == 13 {
                maps.push(h.clone());
            }
        }
        for (j, conv) in self.extra.iter().enumerate() {
            h = relu6(conv.forward(&h)?);
            seen(&format!("prediction.conv_{j}"), &h);
            if j % 2 == 1 {
                maps.push(h.clone());
            }
        }
        let mut encodings = Vec::with_capacity(ANCHORS);
        let mut logits = Vec::with_capacity(ANCHORS);
        for (map, p) in maps.iter().zip(&self.predictors) {
            let b = p.boxes.forward(map)?;
            let c = p.classes.forward(map)?;
            // NCHW -> rows (y, x, anchor) with the anchor fastest, as TF's NHWC reshape.
            let (gh, gw) = (b.shape()[2], b.shape()[3]);
            let (bv, cv) = (b.contiguous_data(), c.contiguous_data());
            let plane = gh * gw;
            for cell in 0..plane {
                for a in 0..p.anchors {
                    let bx = |k: usize| bv[(a * 4 + k) * plane + cell];
                    let cx = |k: usize| cv[(a * 3 + k) * plane + cell];
                    encodings.push([bx(0), bx(1), bx(2), bx(3)]);
                    logits.push([cx(0), cx(1), cx(2)]);
                }
            }
        }
        if encodings.len() != self.anchors.len() {
            return Err(nn::Error::arg(
                "SsdMobilenetV1",
                format!(
                    "{} box rows for {} anchors: the input must be 512 x 512",
                    encodings.len(),
                    self.anchors.len()
                ),
            ));
        }
        Ok((encodings, logits))
    }

    /// Runs the network on an image and decodes every anchor.
    ///
    /// # Errors
    /// As [`SsdMobilenetV1::forward_with`] (not for a decoded image).
    pub fn run(&self, img: &image::RgbImage) -> nn::Result<SsdOutput> {
        let (box_encodings, class_logits) = self.forward_with(&Self::input(img), &mut |_, _| {})?;
        let mut boxes = Vec::with_capacity(ANCHORS);
        let mut scores = Vec::with_capacity(ANCHORS);
        for ((a, t), l) in self.anchors.iter().zip(&box_encodings).zip(&class_logits) {
            // The TF OD API box coder (scale factors 10, 10, 5, 5), in f32 in this order.
            let ha = a[2] - a[0];
            let wa = a[3] - a[1];
            let cya = a[0] + ha / 2.0;
            let cxa = a[1] + wa / 2.0;
            let hh = (t[2] / 5.0).exp() * ha / 2.0;
            let cy = (t[0] / 10.0) * ha + cya;
            let hw = (t[3] / 5.0).exp() * wa / 2.0;
            let cx = (t[1] / 10.0) * wa + cxa;
            boxes.push([cy - hh, cx - hw, cy + hh, cx + hw]);
            scores.push(1.0 / (1.0 + (-l[1]).exp()));
        }
        Ok(SsdOutput {
            boxes,
            scores,
            box_encodings,
            class_logits,
            width: img.width() as usize,
            height: img.height() as usize,
        })
    }
}

impl SsdOutput {
    /// Faces above `opts.min_score` after NMS (IoU `opts.iou`, at most `opts.max_faces`), best
    /// first, in image pixels; each keeps the index of its anchor.
    pub fn faces(&self, opts: &DetectOptions) -> Vec<Detection> {
        let mut order: Vec<usize> = (0..self.scores.len())
            .filter(|&i| f64::from(self.scores[i]) > opts.min_score)
            .collect();
        // Stable: equal scores keep anchor order.
        order.sort_by(|&a, &b| self.scores[b].total_cmp(&self.scores[a]));
        let corners: Vec<[f64; 4]> = self.boxes.iter().map(|b| b.map(f64::from)).collect();
        let kept = tf::nms(&order, &corners, opts.iou, opts.max_faces);
        let (rw, rh) = tf::reshaped_dims(self.width, self.height, INPUT);
        let (pad_x, pad_y) = (INPUT as f64 / rw, INPUT as f64 / rh);
        let (w, h) = (self.width as f64, self.height as f64);
        kept.into_iter()
            .map(|i| {
                let b = corners[i];
                let top = b[0].max(0.0) * pad_y;
                let bottom = b[2].min(1.0) * pad_y;
                let left = b[1].max(0.0) * pad_x;
                let right = b[3].min(1.0) * pad_x;
                Detection {
                    x: left * w,
                    y: top * h,
                    width: (right - left) * w,
                    height: (bottom - top) * h,
                    score: self.scores[i],
                    anchor: i,
                }
            })
            .collect()
    }
}
