//! The pretrained 128-D face embedding: dlib's ResNet-29 (`dlib_face_recognition_resnet_model_v1`,
//! public domain) with the uint8-quantised weights of face-api.js (MIT), ready to use without
//! training. Inference only: each conv unit's frozen affine layer is folded into its conv
//! (`W' = W * gamma`, `b' = b * gamma + beta`, exact up to f32 rounding), so a forward pass is
//! 29 convolutions, two kinds of pooling, ReLUs and residual sums on the tensor core.
//!
//! The weights load from their original TF.js weights-manifest format (the bundled copy) or
//! from a safetensors file with PyTorch names; both check every name and shape.

use std::path::{Path, PathBuf};

use autograd::{Graph, Var};
use serde::{Deserialize, Serialize};
use tensor::{ConvOptions, FixedConvWeight, PoolOptions, Tensor};

use crate::data::{CropBox, Normalise, Preprocess, Resample};

/// Embedding size.
pub const DIM: usize = 128;
/// Input side in pixels.
pub const INPUT_SIDE: u32 = 150;
/// Mean pixel (R, G, B on the 0-255 scale) subtracted before dividing by 255.
pub const MEAN_RGB: [f32; 3] = [122.782, 117.001, 104.298];
/// The usual decision threshold on the Euclidean distance (dlib's 0.6), squared, for the
/// squared distances this workspace compares. Calibrate on your own data to do better.
pub const DEFAULT_TAU: f32 = 0.36;

/// Residual blocks in order: name, input channels, output channels, down-sampling.
pub const BLOCKS: [(&str, usize, usize, bool); 14] = [
    ("conv32_1", 32, 32, false),
    ("conv32_2", 32, 32, false),
    ("conv32_3", 32, 32, false),
    ("conv64_down", 32, 64, true),
    ("conv64_1", 64, 64, false),
    ("conv64_2", 64, 64, false),
    ("conv64_3", 64, 64, false),
    ("conv128_down", 64, 128, true),
    ("conv128_1", 128, 128, false),
    ("conv128_2", 128, 128, false),
    ("conv256_down", 128, 256, true),
    ("conv256_1", 256, 256, false),
    ("conv256_2", 256, 256, false),
    ("conv256_down_out", 256, 256, true),
];

/// The bundled TF.js weights (manifest next to the `.bin`).
pub fn bundled_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/face_resnet29/face_recognition_model-weights_manifest.json")
}

/// How images become this network's input: a crop box (when given), half-pixel bilinear
/// resize to 150 x 150, RGB, `(pixel - mean) / 255`.
pub fn preprocess(crop: Option<CropBox>) -> Preprocess {
    Preprocess {
        channels: 3,
        size: (INPUT_SIDE, INPUT_SIDE),
        crop,
        resample: Resample::BilinearHalfPixel,
        normalise: Normalise::MeanOver255 { mean: MEAN_RGB },
    }
}

/// The crop of a 250 x 250 LFW deep-funneled image that imitates dlib's face chip: the
/// 115-pixel square 13 pixels below the centre.
pub const LFW_CROP: CropBox = CropBox {
    x: 67,
    y: 80,
    w: 115,
    h: 115,
};

/// A square face box in an image's pixel coordinates (pixel `i` spans `[i, i + 1)`). Unlike a
/// [`CropBox`] it may reach beyond the image, whose edge is then replicated: close-up faces
/// (ORL's fill the frame) need the margin dlib's face chips have around the face.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SquareBox {
    /// Left edge.
    pub x: f32,
    /// Top edge.
    pub y: f32,
    /// Side.
    pub side: f32,
}

/// The face box of ORL's 92 x 112 images (chip centre 46, 74; side 104 pixels). Chosen on
/// the training people s1-s30 only, from sides 95-115 and centres 66-78 pixels down, by
/// one-shot rank-1 with every image enrolled in turn (docs/FACES.md).
pub const ORL_BOX: SquareBox = SquareBox {
    x: -6.0,
    y: 22.0,
    side: 104.0,
};

/// The network's input `(3, 150, 150)` cut from `pixels`, an image `(C, H, W)` on the 0-255
/// scale (C = 1 is grey, used for all three channels; C = 3 is RGB): half-pixel bilinear
/// sampling of the box with the edge replicated, then `(p - mean) / 255`.
///
/// # Errors
/// An image that is not `(1 | 3, H, W)`, a box whose side is not positive and finite.
pub fn chip(pixels: &Tensor, face: SquareBox) -> nn::Result<Tensor> {
    let s = pixels.shape();
    if s.len() != 3 || (s[0] != 1 && s[0] != 3) || s[1] == 0 || s[2] == 0 {
        return Err(nn::Error::arg(
            "resnet29::chip",
            format!("needs a (1 or 3, H, W) image, got {s:?}"),
        ));
    }
    if !(face.side > 0.0 && face.side.is_finite() && face.x.is_finite() && face.y.is_finite()) {
        return Err(nn::Error::arg(
            "resnet29::chip",
            format!("face box {face:?} needs a positive side and finite corners"),
        ));
    }
    let (h, w, n) = (s[1], s[2], INPUT_SIDE as usize);
    let data = pixels.contiguous_data();
    let step = face.side / n as f32;
    // Source index of output pixel d along an axis starting at `start` (half-pixel centres).
    let src = |start: f32, d: usize| start + (d as f32 + 0.5) * step - 0.5;
    let mut out = vec![0f32; 3 * n * n];
    for (c, mean) in MEAN_RGB.iter().enumerate() {
        let plane = &data[c.min(s[0] - 1) * h * w..][..h * w];
        for oy in 0..n {
            let sy = src(face.y, oy);
            for ox in 0..n {
                let v = nn::data::bilinear_clamped(plane, h, w, sy, src(face.x, ox));
                out[(c * n + oy) * n + ox] = (v - mean) / 255.0;
            }
        }
    }
    Ok(Tensor::from_vec(out, &[3, n, n])?)
}

/// The network's input `(3, 150, 150)` of an aligned 150 x 150 RGB face chip (dlib's, see
/// [`crate::align`]): `(pixel - mean) / 255`, no resampling.
///
/// # Errors
/// A chip of another size.
pub fn chip_input(chip: &image::RgbImage) -> nn::Result<Tensor> {
    let n = INPUT_SIDE;
    if chip.dimensions() != (n, n) {
        return Err(nn::Error::arg(
            "resnet29::chip_input",
            format!(
                "an aligned chip is {n} x {n} pixels, got {} x {}",
                chip.width(),
                chip.height()
            ),
        ));
    }
    let n = n as usize;
    let mut out = vec![0f32; 3 * n * n];
    for (i, px) in chip.pixels().enumerate() {
        for c in 0..3 {
            out[c * n * n + i] = (f32::from(px.0[c]) - MEAN_RGB[c]) / 255.0;
        }
    }
    Ok(Tensor::from_vec(out, &[3, n, n])?)
}

/// A conv unit with its affine layer folded in; the weight is packed for the matrix kernels
/// once, at its first use, not on every pass.
struct ConvUnit {
    weight: FixedConvWeight,
    bias: Tensor,
    opts: ConvOptions,
}

impl ConvUnit {
    fn forward<'g>(&self, x: &Var<'g>, relu: bool) -> nn::Result<Var<'g>> {
        let bias = x.graph().constant(self.bias.clone());
        let y = x.conv_fixed(&self.weight, Some(&bias), &self.opts)?;
        Ok(if relu { y.relu() } else { y })
    }
}

struct Block {
    name: &'static str,
    conv1: ConvUnit,
    conv2: ConvUnit,
    down: bool,
}

/// The network with its weights.
pub struct FaceResNet29 {
    stem: ConvUnit,
    blocks: Vec<Block>,
    /// `(128, 256)`, no bias.
    fc: Tensor,
    /// SHA-256 of every weight (names, shapes, values) in order, hex.
    pub weights_hash: String,
}

/// Every tensor the network needs, with its shape (PyTorch layout), in a fixed order.
pub fn expected_tensors() -> Vec<(String, Vec<usize>)> {
    let mut out = vec![];
    let mut unit = |p: String, o: usize, i: usize, k: usize| {
        out.push((format!("{p}.conv.weight"), vec![o, i, k, k]));
        out.push((format!("{p}.conv.bias"), vec![o]));
        out.push((format!("{p}.scale.weight"), vec![o]));
        out.push((format!("{p}.scale.bias"), vec![o]));
    };
    unit("conv32_down".into(), 32, 3, 7);
    for (name, cin, cout, _) in BLOCKS {
        unit(format!("{name}.conv1"), cout, cin, 3);
        unit(format!("{name}.conv2"), cout, cout, 3);
    }
    out.push(("fc.weight".into(), vec![DIM, 256]));
    out
}

impl FaceResNet29 {
    /// The bundled weights.
    ///
    /// # Errors
    /// As [`FaceResNet29::load_tfjs`] (a repository checkout without its assets).
    pub fn bundled() -> nn::Result<FaceResNet29> {
        Self::load_tfjs(&bundled_manifest())
    }

    /// Loads a file by its kind: `.json` is a TF.js weights manifest, anything else
    /// safetensors.
    ///
    /// # Errors
    /// As the loader of that kind.
    pub fn load(path: &Path) -> nn::Result<FaceResNet29> {
        if path.extension().is_some_and(|e| e == "json") {
            Self::load_tfjs(path)
        } else {
            Self::load_safetensors(path)
        }
    }

    /// Loads the safetensors copy with PyTorch names (section 4 of the spec).
    ///
    /// # Errors
    /// An unreadable file, a missing tensor or one of the wrong shape (named).
    pub fn load_safetensors(path: &Path) -> nn::Result<FaceResNet29> {
        Self::from_named(nn::weights::read_safetensors(path)?, path)
    }

    /// Loads the TF.js weights manifest at `manifest` and the `.bin` files it names (in its
    /// folder): uint8-quantised tensors become `q * scale + min` (in f64, rounded to f32, as
    /// TF.js does), filters go from HWIO to OIHW and `fc` from `(in, out)` to `(out, in)`.
    ///
    /// # Errors
    /// An unreadable or malformed manifest, a missing or short `.bin`, an unsupported dtype,
    /// a missing tensor or one of the wrong shape (each naming the file).
    pub fn load_tfjs(manifest: &Path) -> nn::Result<FaceResNet29> {
        let named = nn::weights::read_tfjs(manifest)?
            .into_iter()
            .map(|(name, t)| {
                torch_layout(&name, t)
                    .map_err(|e| nn::Error::corrupt(manifest, format!("{name}: {e}")))
            })
            .collect::<nn::Result<Vec<_>>>()?;
        Self::from_named(named, manifest)
    }

    /// Builds the network from tensors named as in [`expected_tensors`] (`source` is named in
    /// errors).
    ///
    /// # Errors
    /// [`nn::Error::MissingParam`] / [`nn::Error::ParamShape`] wrapped with the file.
    pub fn from_named(mut named: Vec<(String, Tensor)>, source: &Path) -> nn::Result<FaceResNet29> {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        let mut take = |name: &str, shape: &[usize]| -> nn::Result<Tensor> {
            let i = named.iter().position(|(n, _)| n == name).ok_or_else(|| {
                nn::Error::corrupt(
                    source,
                    format!("no tensor {name:?} (not face ResNet-29 weights?)"),
                )
            })?;
            let t = named.swap_remove(i).1;
            if t.shape() != shape {
                return Err(nn::Error::corrupt(
                    source,
                    format!(
                        "tensor {name:?} has shape {:?}, expected {shape:?}",
                        t.shape()
                    ),
                ));
            }
            hash.update(name.as_bytes());
            for &d in shape {
                hash.update((d as u64).to_le_bytes());
            }
            for v in t.contiguous_data().iter() {
                hash.update(v.to_le_bytes());
            }
            Ok(t)
        };
        let mut unit = |p: &str, o: usize, i: usize, k: usize, stride: usize, pad: usize| {
            let w = take(&format!("{p}.conv.weight"), &[o, i, k, k])?;
            let b = take(&format!("{p}.conv.bias"), &[o])?;
            let gamma = take(&format!("{p}.scale.weight"), &[o])?.to_vec();
            let beta = take(&format!("{p}.scale.bias"), &[o])?.to_vec();
            let mut wv = w.to_vec();
            let per_out = i * k * k;
            for (oc, chunk) in wv.chunks_mut(per_out).enumerate() {
                chunk.iter_mut().for_each(|v| *v *= gamma[oc]);
            }
            let bv: Vec<f32> = b
                .to_vec()
                .iter()
                .zip(gamma.iter().zip(&beta))
                .map(|(b, (g, be))| b * g + be)
                .collect();
            Ok::<_, nn::Error>(ConvUnit {
                weight: FixedConvWeight::new(Tensor::from_vec(wv, &[o, i, k, k])?, 1),
                bias: Tensor::from_vec(bv, &[o])?,
                opts: ConvOptions::default().stride(&[stride]).pad(pad),
            })
        };
        let stem = unit("conv32_down", 32, 3, 7, 2, 0)?;
        let mut blocks = vec![];
        for (name, cin, cout, down) in BLOCKS {
            let (s, p) = if down { (2, 0) } else { (1, 1) };
            blocks.push(Block {
                name,
                conv1: unit(&format!("{name}.conv1"), cout, cin, 3, s, p)?,
                conv2: unit(&format!("{name}.conv2"), cout, cout, 3, 1, 1)?,
                down,
            });
        }
        let fc = take("fc.weight", &[DIM, 256])?;
        Ok(FaceResNet29 {
            stem,
            blocks,
            fc,
            weights_hash: hex(&hash.finalize()),
        })
    }

    /// Embeddings `(N, 128)` of a batch `(N, 3, 150, 150)` of preprocessed faces (not
    /// L2-normalised; norms are near 1.4).
    ///
    /// # Errors
    /// An input of another shape.
    pub fn forward(&self, x: &Tensor) -> nn::Result<Tensor> {
        self.forward_with(x, &mut |_, _| {})
    }

    /// [`FaceResNet29::forward`] that also hands every stage's output to `seen` (names as in
    /// the spec's `stages.npz`: `conv32_down`, `maxpool`, each block, `avg`).
    ///
    /// # Errors
    /// As [`FaceResNet29::forward`].
    pub fn forward_with(
        &self,
        x: &Tensor,
        seen: &mut dyn FnMut(&str, &Tensor),
    ) -> nn::Result<Tensor> {
        let side = INPUT_SIDE as usize;
        if x.rank() != 4 || x.shape()[1..] != [3, side, side] {
            return Err(nn::Error::arg(
                "FaceResNet29",
                format!(
                    "input must be (N, 3, {side}, {side}) preprocessed faces, got {:?}",
                    x.shape()
                ),
            ));
        }
        let g = Graph::no_grad();
        let h = self.stages(&g.constant(x.clone()), STAGES.len() - 1, seen)?;
        let n = h.shape()[0];
        let pooled = h.value().global_avg_pool()?.reshape(&[n, 256])?;
        seen("avg", &pooled);
        Ok(pooled.matmul(&self.fc.transpose(0, 1)?)?)
    }

    /// The one forward pass, on the graph, through the stages `0..=last` of [`STAGES`], each
    /// stage's output handed to `seen`: on a no-grad graph for inference
    /// ([`FaceResNet29::forward`]), on a recording one for inspection ([`nn::inspect::Layered`]).
    fn stages<'g>(
        &self,
        x: &Var<'g>,
        last: usize,
        seen: &mut dyn FnMut(&str, &Tensor),
    ) -> nn::Result<Var<'g>> {
        let mut h = self.stem.forward(x, true)?;
        seen(STAGES[0], h.value());
        if last == 0 {
            return Ok(h);
        }
        h = h.max_pool(&PoolOptions::new(&[3, 3]).stride(&[2, 2]))?;
        seen(STAGES[1], h.value());
        for b in self.blocks.iter().take(last - 1) {
            let r = b.conv2.forward(&b.conv1.forward(&h, true)?, false)?;
            h = if b.down {
                let sc = h.avg_pool(&PoolOptions::new(&[2, 2]).stride(&[2, 2]))?;
                zero_extend_add(&r, &sc)?
            } else {
                r.add(&h)?
            }
            .relu();
            seen(b.name, h.value());
        }
        Ok(h)
    }
}

/// The stages [`FaceResNet29`] shows layer by layer ([`nn::inspect::Layered`]): the stem, its
/// max pooling, then each residual block (the names of the spec's `stages.npz`).
pub const STAGES: [&str; 16] = [
    "conv32_down",
    "maxpool",
    "conv32_1",
    "conv32_2",
    "conv32_3",
    "conv64_down",
    "conv64_1",
    "conv64_2",
    "conv64_3",
    "conv128_down",
    "conv128_1",
    "conv128_2",
    "conv256_down",
    "conv256_1",
    "conv256_2",
    "conv256_down_out",
];

impl FaceResNet29 {
    /// The stem's (folded) filters `(32, 3, 7, 7)`.
    pub fn first_filters(&self) -> &Tensor {
        self.stem.weight.weight()
    }
}

/// The network on a recording graph, for looking inside it (top patches, deconvnet
/// projections): layer `l` is the output of [`STAGES`]`[l]`, through the same forward pass
/// inference runs (the weights enter as fixed, pre-packed constants).
impl nn::inspect::Layered for FaceResNet29 {
    fn layer<'g>(
        &self,
        _cx: &nn::Ctx<'g>,
        x: &autograd::Var<'g>,
        layer: usize,
    ) -> nn::Result<autograd::Var<'g>> {
        if layer >= STAGES.len() {
            return Err(nn::Error::arg(
                "FaceResNet29::layer",
                format!(
                    "layer {layer} beyond the last, {} ({})",
                    STAGES.len() - 1,
                    STAGES[15]
                ),
            ));
        }
        self.stages(x, layer, &mut |_, _| {})
    }
}

/// dlib's `add_prev`: the result takes the larger size of each axis, and each operand is
/// zero-extended at the end of every axis (aligned at index 0): a concatenation with constant
/// zeros, then an addition.
fn zero_extend_add<'g>(a: &Var<'g>, b: &Var<'g>) -> nn::Result<Var<'g>> {
    let g = a.graph();
    let target: Vec<usize> = a
        .shape()
        .iter()
        .zip(b.shape())
        .map(|(x, y)| *x.max(y))
        .collect();
    let extend = |v: &Var<'g>| -> nn::Result<Var<'g>> {
        let mut v = v.clone();
        for axis in 1..4 {
            let have = v.shape()[axis];
            if have < target[axis] {
                let mut shape = v.shape().to_vec();
                shape[axis] = target[axis] - have;
                let zeros = g.constant(Tensor::zeros(&shape));
                v = Var::cat(&[&v, &zeros], axis)?;
            }
        }
        Ok(v)
    };
    Ok(extend(a)?.add(&extend(b)?)?)
}

/// A TF.js name and tensor in PyTorch naming and layout: `/` becomes `.`, the leaves
/// `filters`/`weights` become `weight` and `biases` `bias`; HWIO filters become OIHW and the
/// `(in, out)` fc matrix `(out, in)`.
fn torch_layout(name: &str, t: Tensor) -> tensor::Result<(String, Tensor)> {
    if name == "fc" {
        return Ok(("fc.weight".into(), t.transpose(0, 1)?.contiguous()));
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    let leaf = parts.pop().unwrap_or_default();
    let (leaf, t) = match leaf {
        "filters" => ("weight", t.permute(&[3, 2, 0, 1])?.contiguous()),
        "weights" => ("weight", t),
        "biases" => ("bias", t),
        other => (other, t),
    };
    parts.push(leaf);
    Ok((parts.join("."), t))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
