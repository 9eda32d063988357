//! What the TF.js networks share: named weights in TF layout turned into this workspace's
//! convolutions, TF's asymmetric `same` padding, and face-api's input tensor (pad to a square,
//! then TF's legacy bilinear resize).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tensor::{ConvOptions, FixedConvWeight, Padding, Tensor};

/// TF's `same` padding of one axis: `(before, after)` for input `n`, kernel `k`, stride `s`.
/// Asymmetric: a 3 x 3 stride-2 convolution of an even size pads 0 before and 1 after.
pub(crate) fn same_pad(n: usize, k: usize, s: usize) -> (usize, usize) {
    let out = n.div_ceil(s);
    let total = ((out.saturating_sub(1)) * s + k).saturating_sub(n);
    (total / 2, total - total / 2)
}

/// How a convolution pads its input.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pad {
    /// TF `same` (computed from the input size at each call).
    Same,
    /// Fixed symmetric padding (`0` is TF `valid`).
    Fixed(usize),
}

/// A convolution with its bias, weight packed once for the matrix kernels.
pub(crate) struct Conv {
    weight: FixedConvWeight,
    bias: Option<Tensor>,
    stride: usize,
    groups: usize,
    pad: Pad,
}

impl Conv {
    pub(crate) fn new(weight: Tensor, bias: Option<Tensor>, stride: usize, pad: Pad) -> Conv {
        Conv::grouped(weight, bias, stride, pad, 1)
    }

    pub(crate) fn grouped(
        weight: Tensor,
        bias: Option<Tensor>,
        stride: usize,
        pad: Pad,
        groups: usize,
    ) -> Conv {
        Conv {
            weight: FixedConvWeight::new(weight, groups),
            bias,
            stride,
            groups,
            pad,
        }
    }

    pub(crate) fn forward(&self, x: &Tensor) -> nn::Result<Tensor> {
        let k = self.weight.weight().shape()[2];
        let padding = match self.pad {
            Pad::Same => {
                let s = x.shape();
                Padding::Explicit(vec![
                    same_pad(s[2], k, self.stride),
                    same_pad(s[3], k, self.stride),
                ])
            }
            Pad::Fixed(p) => Padding::Explicit(vec![(p, p)]),
        };
        let opts = ConvOptions::default()
            .stride(&[self.stride])
            .padding(padding)
            .groups(self.groups);
        Ok(x.conv_fixed(&self.weight, self.bias.as_ref(), &opts)?)
    }
}

/// The named tensors of one weight file; each is taken once, its shape checked.
pub(crate) struct Weights {
    named: HashMap<String, Tensor>,
    source: PathBuf,
}

impl Weights {
    /// Reads a TF.js weights manifest.
    pub(crate) fn tfjs(manifest: &Path) -> nn::Result<Weights> {
        Ok(Weights {
            named: nn::weights::read_tfjs(manifest)?.into_iter().collect(),
            source: manifest.to_path_buf(),
        })
    }

    /// The tensor `name`, which must have `shape`.
    pub(crate) fn take(&mut self, name: &str, shape: &[usize]) -> nn::Result<Tensor> {
        let t = self.named.remove(name).ok_or_else(|| {
            nn::Error::corrupt(
                &self.source,
                format!("no tensor {name:?} (not the weights of this network?)"),
            )
        })?;
        if t.shape() != shape {
            return Err(nn::Error::corrupt(
                &self.source,
                format!(
                    "tensor {name:?} has shape {:?}, expected {shape:?}",
                    t.shape()
                ),
            ));
        }
        Ok(t)
    }

    /// A plain filter stored HWIO `[k, k, cin, cout]`, as OIHW.
    pub(crate) fn filter(
        &mut self,
        name: &str,
        k: usize,
        cin: usize,
        cout: usize,
    ) -> nn::Result<Tensor> {
        Ok(self
            .take(name, &[k, k, cin, cout])?
            .permute(&[3, 2, 0, 1])?
            .contiguous())
    }

    /// A depthwise filter stored `[k, k, c, 1]`, as `(c, 1, k, k)` for `groups = c`.
    pub(crate) fn depthwise(&mut self, name: &str, k: usize, c: usize) -> nn::Result<Tensor> {
        Ok(self
            .take(name, &[k, k, c, 1])?
            .permute(&[2, 3, 0, 1])?
            .contiguous())
    }

    /// The source file (for errors).
    pub(crate) fn source(&self) -> &Path {
        &self.source
    }
}

/// A depthwise-separable convolution: depthwise 3 x 3 (stride, padding), then pointwise
/// 1 x 1 with the bias (TF's `separableConv2d` + bias). No activation.
pub(crate) struct SepConv {
    depthwise: Conv,
    pointwise: Conv,
}

impl SepConv {
    /// Reads `{prefix}/depthwise_filter`, `{prefix}/pointwise_filter` and `{prefix}/bias`.
    pub(crate) fn load(
        w: &mut Weights,
        prefix: &str,
        cin: usize,
        cout: usize,
        stride: usize,
        pad: Pad,
    ) -> nn::Result<SepConv> {
        let dw = w.depthwise(&format!("{prefix}/depthwise_filter"), 3, cin)?;
        let pw = w.filter(&format!("{prefix}/pointwise_filter"), 1, cin, cout)?;
        let bias = w.take(&format!("{prefix}/bias"), &[cout])?;
        Ok(SepConv {
            depthwise: Conv::grouped(dw, None, stride, pad, cin),
            pointwise: Conv::new(pw, Some(bias), 1, Pad::Fixed(0)),
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> nn::Result<Tensor> {
        self.pointwise.forward(&self.depthwise.forward(x)?)
    }
}

/// face-api's `NetInput.toBatchTensor(size, center)`: the RGB image zero-padded to a square
/// (at the bottom / right, or centred with the odd pixel after), then resized to
/// `size x size` with TF's legacy bilinear (`src = i * S / size`, no half-pixel offset, no
/// antialiasing; f64 arithmetic, unrounded). `(1, 3, size, size)` on the 0-255 scale.
pub(crate) fn to_batch_tensor(img: &image::RgbImage, size: usize, center: bool) -> Tensor {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let side = w.max(h);
    let d = side - w.min(h);
    // JavaScript's Math.round: halves up.
    let after = (d as f64 * 0.5 + 0.5).floor() as usize;
    let before = if center { d - after } else { 0 };
    let (off_x, off_y) = if h > w { (before, 0) } else { (0, before) };
    let raw = img.as_raw();
    // Pixel (y, x) of the padded square, channel c.
    let at = |y: usize, x: usize, c: usize| -> f64 {
        match (y.checked_sub(off_y), x.checked_sub(off_x)) {
            (Some(iy), Some(ix)) if iy < h && ix < w => f64::from(raw[(iy * w + ix) * 3 + c]),
            _ => 0.0,
        }
    };
    let mut out = vec![0f32; 3 * size * size];
    if side == size {
        for c in 0..3 {
            for y in 0..size {
                for x in 0..size {
                    out[(c * size + y) * size + x] = at(y, x, c) as f32;
                }
            }
        }
    } else {
        let r = side as f64 / size as f64;
        let taps: Vec<(usize, usize, f64)> = (0..size)
            .map(|i| {
                let f = r * i as f64;
                let lo = f.floor() as usize;
                (lo, (f.ceil() as usize).min(side - 1), f - lo as f64)
            })
            .collect();
        for c in 0..3 {
            for (i, &(y0, y1, wy)) in taps.iter().enumerate() {
                for (j, &(x0, x1, wx)) in taps.iter().enumerate() {
                    let top = at(y0, x0, c) + (at(y0, x1, c) - at(y0, x0, c)) * wx;
                    let bot = at(y1, x0, c) + (at(y1, x1, c) - at(y1, x0, c)) * wx;
                    out[(c * size + i) * size + j] = (top + (bot - top) * wy) as f32;
                }
            }
        }
    }
    Tensor::from_vec(out, &[1, 3, size, size]).expect("sizes agree")
}

/// `computeReshapedDimensions`: the image's width and height scaled so the longer side is
/// `size` (JavaScript rounding).
pub(crate) fn reshaped_dims(w: usize, h: usize, size: usize) -> (f64, f64) {
    let s = size as f64 / w.max(h) as f64;
    ((w as f64 * s + 0.5).floor(), (h as f64 * s + 0.5).floor())
}

/// `(x - mean[c]) / div` per channel of a `(1, 3, H, W)` tensor, in f32 as TF does it.
pub(crate) fn normalise(x: Tensor, mean: [f32; 3], div: f32) -> Tensor {
    let shape = x.shape().to_vec();
    let plane = shape[2] * shape[3];
    let mut v = x.into_vec();
    for (c, chunk) in v.chunks_mut(plane).enumerate() {
        chunk.iter_mut().for_each(|p| *p = (*p - mean[c]) / div);
    }
    Tensor::from_vec(v, &shape).expect("same shape")
}

/// Intersection over union of two boxes `(x0, y0, x1, y1)` (corners in any order); 0 when
/// either has no area.
pub fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let norm = |r: [f64; 4]| {
        [
            r[0].min(r[2]),
            r[1].min(r[3]),
            r[0].max(r[2]),
            r[1].max(r[3]),
        ]
    };
    let (a, b) = (norm(a), norm(b));
    let area = |r: [f64; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    if area(a) <= 0.0 || area(b) <= 0.0 {
        return 0.0;
    }
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    inter / (area(a) + area(b) - inter)
}

/// Greedy non-maximum suppression: `order` lists candidate indices best first; a candidate is
/// kept unless its IoU with an already kept box exceeds `threshold`; at most `max` are kept.
pub fn nms(order: &[usize], boxes: &[[f64; 4]], threshold: f64, max: usize) -> Vec<usize> {
    let mut kept: Vec<usize> = vec![];
    for &i in order {
        if kept.len() >= max {
            break;
        }
        if kept.iter().all(|&k| iou(boxes[i], boxes[k]) <= threshold) {
            kept.push(i);
        }
    }
    kept
}

/// `1 / (1 + e^-x)`.
pub(crate) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}
