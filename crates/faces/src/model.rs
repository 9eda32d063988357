//! The embedding network f(x), L2-normalised so that squared distances lie in [0, 4] and a
//! margin has a fixed meaning. The twins of a Siamese pair, or the three images of a triplet,
//! go through this one network in one batch: the weights are shared by construction.
//!
//! Two bodies: a FaceNet-style stack of conv blocks trained from scratch, or the ImageNet
//! SqueezeNet 1.1 shipped with `nn`, cut at a chosen fire module and fine-tuned (transfer from
//! objects to faces: with 300 training images, as on ORL, it generalises to unseen people far
//! better than a network that has seen nothing else).

use autograd::Var;
use nn::models::squeezenet::{FEATURE_CHANNELS, LAST_FEATURE, SqueezeNet};
use nn::{Ctx, Flatten, Linear, Module, ParamBuilder, ParamStore, Sequential};
use serde::{Deserialize, Serialize};
use tensor::Tensor;

use crate::heads::{DeepFaceHead, HeadKind};
use crate::resnet29::{self, FaceResNet29, SquareBox};

/// The convolutional body of an [`EmbeddingNet`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Backbone {
    /// `conv 3x3 -> BatchNorm -> ReLU -> max pool 2` blocks of these widths, from scratch.
    Conv {
        /// Channels per block (the depth is the length).
        widths: Vec<usize>,
    },
    /// SqueezeNet 1.1 `features.0..=cut` (ImageNet weights loaded by [`EmbeddingNet::load_pretrained`]).
    SqueezeNet {
        /// Last feature index kept (`0..=12`; 12 is the last fire module).
        cut: usize,
    },
}

/// Sizes of an [`EmbeddingNet`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingConfig {
    /// Input channels (1 grey, 3 RGB).
    pub in_channels: usize,
    /// The body.
    pub backbone: Backbone,
    /// Embedding size.
    pub dim: usize,
    /// Spatial grid of the pooling before the linear map: 1 is global average pooling; 2 keeps
    /// the coarse layout of an aligned face (a 2 x 2 grid of averages, 4x the features).
    #[serde(default = "one")]
    pub pool_grid: usize,
    /// Rectify the embedding before normalising it, so that every component is >= 0 (what the
    /// chi-square head of DeepFace eq. 4 needs).
    pub non_negative: bool,
}

fn one() -> usize {
    1
}

impl Default for EmbeddingConfig {
    fn default() -> Self {
        EmbeddingConfig {
            in_channels: 1,
            backbone: Backbone::Conv {
                widths: vec![32, 64, 128],
            },
            dim: 128,
            pool_grid: 1,
            non_negative: false,
        }
    }
}

enum Body {
    Conv(Sequential),
    SqueezeNet(Box<SqueezeNet>, usize),
}

/// `f(x)`: body, global average pooling, a linear map to `dim`, L2 normalisation.
pub struct EmbeddingNet {
    body: Body,
    head: Linear,
    /// Its configuration.
    pub config: EmbeddingConfig,
}

impl EmbeddingNet {
    /// Builds the network under `b` (names `block{i}.conv` / `block{i}.bn` or
    /// `backbone.features.N`, then `embed`). A SqueezeNet body starts random: call
    /// [`EmbeddingNet::load_pretrained`].
    ///
    /// # Errors
    /// An empty width list, `dim == 0`, a cut beyond the last fire module, a SqueezeNet body on
    /// other than 1 or 3 channels; duplicate names.
    pub fn new(b: &mut ParamBuilder<'_>, config: &EmbeddingConfig) -> nn::Result<EmbeddingNet> {
        let bad = |reason: String| nn::Error::InvalidArgument {
            op: "EmbeddingNet",
            reason,
        };
        if config.dim == 0 {
            return Err(bad("dim must be > 0".into()));
        }
        let (body, cin) = match &config.backbone {
            Backbone::Conv { widths } => {
                if widths.is_empty() {
                    return Err(bad("needs at least one conv block".into()));
                }
                let (s, c) = nn::models::conv_bn_relu_pool_blocks(b, config.in_channels, widths)?;
                (Body::Conv(s), c)
            }
            Backbone::SqueezeNet { cut } => {
                if *cut > LAST_FEATURE {
                    return Err(bad(format!(
                        "SqueezeNet cut {cut} beyond features.{LAST_FEATURE}"
                    )));
                }
                if config.in_channels != 1 && config.in_channels != 3 {
                    return Err(bad(format!(
                        "SqueezeNet takes 1 (grey) or 3 (RGB) channels, not {}",
                        config.in_channels
                    )));
                }
                let net = SqueezeNet::new(&mut b.scope("backbone"), 1000)?;
                (
                    Body::SqueezeNet(Box::new(net), *cut),
                    FEATURE_CHANNELS[*cut],
                )
            }
        };
        if config.pool_grid == 0 {
            return Err(bad("pool_grid must be >= 1".into()));
        }
        let features = config
            .pool_grid
            .checked_mul(config.pool_grid)
            .and_then(|g| g.checked_mul(cin))
            .ok_or_else(|| bad(format!("pool_grid {} is too large", config.pool_grid)))?;
        let head = Linear::new(&mut b.scope("embed"), features, config.dim, true)?;
        Ok(EmbeddingNet {
            body,
            head,
            config: config.clone(),
        })
    }

    /// Loads ImageNet weights into a SqueezeNet body from a torchvision-layout safetensors
    /// file (e.g. [`nn::models::squeezenet::bundled_weights`]); a no-op for a conv body. The
    /// unused classifier is then frozen so the optimizer never touches it.
    ///
    /// # Errors
    /// The file's errors, a missing or misshapen tensor.
    pub fn load_pretrained(
        &self,
        store: &mut ParamStore,
        path: &std::path::Path,
    ) -> nn::Result<()> {
        if let Body::SqueezeNet(..) = self.body {
            nn::weights::load_safetensors_under(store, path, "backbone.", |n| n.to_string())?;
            store.freeze("backbone.classifier");
        }
        Ok(())
    }
}

impl EmbeddingNet {
    /// Our normalised grey or RGB input (`4 (p - 0.5)`) as the ImageNet-normalised RGB a
    /// SqueezeNet expects.
    fn imagenet_input<'g>(x: &Var<'g>) -> nn::Result<Var<'g>> {
        nn::data::imagenet_normalize(x, 0.25, 0.5)
    }
}

impl nn::inspect::Layered for EmbeddingNet {
    /// Layer `l` of a SqueezeNet body (`features.l`; the model's own preprocessing in front).
    fn layer<'g>(&self, cx: &Ctx<'g>, x: &Var<'g>, layer: usize) -> nn::Result<Var<'g>> {
        match &self.body {
            Body::SqueezeNet(net, _) => Ok(net
                .features(cx, &Self::imagenet_input(x)?, &[layer])?
                .remove(0)),
            Body::Conv(_) => Err(nn::Error::arg(
                "EmbeddingNet::layer",
                "layer-wise inspection is available for SqueezeNet bodies",
            )),
        }
    }
}

impl Module for EmbeddingNet {
    /// `(N, C, H, W) -> (N, dim)`, each row of unit length.
    fn forward<'g>(&self, cx: &Ctx<'g>, x: &Var<'g>) -> nn::Result<Var<'g>> {
        let y = match &self.body {
            Body::Conv(s) => s.forward(cx, x)?,
            Body::SqueezeNet(net, cut) => net
                .features(cx, &Self::imagenet_input(x)?, &[*cut])?
                .remove(0),
        };
        let y = if self.config.pool_grid == 1 {
            y.global_avg_pool()?
        } else {
            nn::AdaptiveAvgPool(vec![self.config.pool_grid]).forward(cx, &y)?
        };
        let y = Flatten.forward(cx, &y)?;
        let mut e = self.head.forward(cx, &y)?;
        if self.config.non_negative {
            e = e.relu();
        }
        Ok(e.l2_normalize(1, 1e-12)?)
    }
}

/// Stacks `(C, H, W)` images into one `(N, C, H, W)` batch.
///
/// # Errors
/// Images of different shapes.
pub fn stack(images: &[Tensor]) -> nn::Result<Tensor> {
    let views: Vec<Tensor> = images
        .iter()
        .map(|t| t.unsqueeze(0))
        .collect::<Result<_, _>>()?;
    Ok(Tensor::cat(&views.iter().collect::<Vec<_>>(), 0)?)
}

/// Everything that defines a trained face model besides its weights; stored as the
/// checkpoint's configuration text (JSON), so a model file is self-describing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaceModelSpec {
    /// How an image file becomes the network's input.
    pub preprocess: crate::data::Preprocess,
    /// The embedding network.
    pub embedding: EmbeddingConfig,
    /// A DeepFace head on top of the embedding, if the model was trained with one.
    pub head: Option<HeadKind>,
    /// The decision threshold on the pair score (`same when score <= tau`), chosen on labelled
    /// pairs after training.
    pub tau: f32,
    /// How it was trained (the objective's name and options), for the record.
    pub trained_with: String,
    /// Embed each image and its mirror image and average the two (test-time augmentation;
    /// faces are nearly symmetric, and training mirrors at random).
    #[serde(default)]
    pub flip_average: bool,
    /// A second, frozen stream beside the trained one, if any.
    #[serde(default)]
    pub face_stream: Option<FaceStream>,
}

/// The pretrained face ResNet-29 as a frozen second stream of a trained model. Its unit-length
/// encoding of a face box of the input is appended to the trained stream's, the two scaled so
/// that the squared distance of two encodings is `(1 - weight) d_trained + weight d_face`
/// (each `d` in `[0, 4]`). Training never sees it: the triplet (or contrastive) loss shapes
/// the trained stream; tau and every evaluation use the whole encoding. The point: a network
/// that has seen thousands of faces and one fine-tuned on the few people at hand make
/// different mistakes (measured on ORL in docs/FACES.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaceStream {
    /// Where the face is in the model's input (its pixels after resizing).
    pub face_box: SquareBox,
    /// Share of the face stream in the squared distance, in `(0, 1)`.
    pub weight: f32,
    /// SHA-256 of the ResNet-29 weights (the bundled ones are loaded; a model built with other
    /// weights refuses to load rather than compare unlike encodings).
    pub weights_sha256: String,
}

/// A face model: the embedding network, an optional DeepFace head, the weights and the spec.
pub struct FaceModel {
    /// `f(x)`.
    pub net: EmbeddingNet,
    /// The head, when the spec has one.
    pub head: Option<DeepFaceHead>,
    /// The frozen face ResNet-29 of the spec's face stream.
    pub face_net: Option<FaceResNet29>,
    /// Weights (names `body...`/`embed...` and `head...`).
    pub store: ParamStore,
    /// Its description.
    pub spec: FaceModelSpec,
}

/// Checkpoint metadata key of the model file's format version.
const SPEC_KEY: &str = "faces.model";
/// Version of the face model file (inside the checkpoint's own versioned container).
pub const MODEL_FORMAT: &str = "1";

impl FaceModel {
    /// A freshly initialised model (a SqueezeNet body still needs
    /// [`EmbeddingNet::load_pretrained`]). `head_bias` is the head's starting `b`.
    ///
    /// # Errors
    /// As [`EmbeddingNet::new`]; a face stream with a DeepFace head, a weight outside `(0, 1)`
    /// or recorded weights other than the bundled ones.
    pub fn new(spec: FaceModelSpec, seed: u64, head_bias: f32) -> nn::Result<FaceModel> {
        FaceModel::build(spec, nn::ModelSeed::new(seed), head_bias)
    }

    fn build(
        mut spec: FaceModelSpec,
        mut s: nn::ModelSeed,
        head_bias: f32,
    ) -> nn::Result<FaceModel> {
        spec.preprocess.check()?;
        if !spec.tau.is_finite() {
            return Err(nn::Error::arg(
                "FaceModel",
                format!("tau must be a finite number, not {}", spec.tau),
            ));
        }
        let face_net = match &mut spec.face_stream {
            Some(stream) => Some(open_face_stream(stream, spec.head.is_some())?),
            None => None,
        };
        let net = EmbeddingNet::new(&mut s.builder(), &spec.embedding)?;
        let head = match spec.head {
            Some(kind) => Some(DeepFaceHead::new(
                &mut s.builder().scope("head"),
                kind,
                spec.embedding.dim,
                head_bias,
            )?),
            None => None,
        };
        Ok(FaceModel {
            net,
            head,
            face_net,
            store: s.store,
            spec,
        })
    }

    /// Encoding size: the trained stream's, plus the face stream's when there is one.
    pub fn dim(&self) -> usize {
        self.spec.embedding.dim + self.spec.face_stream.as_ref().map_or(0, |_| resnet29::DIM)
    }

    /// Encodings of `images` (eval mode), `n x dim()` row-major, in batches of `batch`: the
    /// trained stream's embedding, followed by the face stream's when there is one.
    ///
    /// # Errors
    /// Images of the wrong shape.
    pub fn embed(&self, images: &[&Tensor], batch: usize) -> nn::Result<Vec<f32>> {
        let trained = self.embed_averaged(images, self.spec.embedding.dim, true, &|imgs| {
            embed(&self.net, &self.store, imgs, batch)
        })?;
        let (Some(stream), Some(net)) = (&self.spec.face_stream, &self.face_net) else {
            return Ok(trained);
        };
        let face = self.embed_averaged(images, resnet29::DIM, false, &|imgs| {
            let mut out = Vec::with_capacity(imgs.len() * resnet29::DIM);
            for chunk in imgs.chunks(batch.max(1)) {
                let chips = chunk
                    .iter()
                    .map(|t| resnet29::chip(&self.spec.preprocess.to_pixels(t), stream.face_box))
                    .collect::<nn::Result<Vec<_>>>()?;
                out.extend(net.forward(&stack(&chips)?)?.into_vec());
            }
            Ok(out)
        })?;
        let (a, b) = ((1.0 - stream.weight).sqrt(), stream.weight.sqrt());
        let d = self.spec.embedding.dim;
        let mut out = Vec::with_capacity(images.len() * self.dim());
        for (t, f) in trained.chunks(d).zip(face.chunks(resnet29::DIM)) {
            out.extend(t.iter().map(|v| a * v));
            out.extend(f.iter().map(|v| b * v));
        }
        Ok(out)
    }

    /// `encode` of the images, or (with the spec's flip averaging) of each image and its
    /// mirror image summed; each row then scaled to unit length (left as it is when `encode`
    /// already gives unit rows and there is nothing to average).
    fn embed_averaged(
        &self,
        images: &[&Tensor],
        dim: usize,
        unit_rows: bool,
        encode: &dyn Fn(&[&Tensor]) -> nn::Result<Vec<f32>>,
    ) -> nn::Result<Vec<f32>> {
        let mut out = encode(images)?;
        if unit_rows && !self.spec.flip_average {
            return Ok(out);
        }
        if self.spec.flip_average {
            let mirrored: Vec<Tensor> = images.iter().map(|t| mirror(t)).collect();
            let refs: Vec<&Tensor> = mirrored.iter().collect();
            out.iter_mut()
                .zip(encode(&refs)?)
                .for_each(|(a, b)| *a += b);
        }
        for row in out.chunks_mut(dim) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            row.iter_mut().for_each(|v| *v /= norm);
        }
        Ok(out)
    }

    /// The pair score used for decisions (`same when score <= tau`) as a function of two
    /// embeddings: the squared L2 distance (seed eq. 2), or `-logit` of the DeepFace head
    /// (its weights read once here).
    pub fn scorer(&self) -> impl Fn(&[f32], &[f32]) -> f32 + Sync + '_ {
        let head = self.head.as_ref().map(|h| {
            (
                h.kind,
                self.store.get(h.weight).to_vec(),
                self.store.get(h.bias).to_vec()[0],
            )
        });
        move |a: &[f32], b: &[f32]| match &head {
            None => squared_l2(a, b),
            Some((kind, w, bias)) => crate::heads::score(*kind, w, *bias, a, b),
        }
    }

    /// Writes the model (weights + spec) atomically to `path`.
    ///
    /// # Errors
    /// I/O errors naming the file.
    pub fn save(&self, path: &std::path::Path) -> nn::Result<()> {
        let mut ck =
            nn::checkpoint::Checkpoint::from_store(&self.store, &self.spec_json(), 0, None);
        ck.metadata.push((SPEC_KEY.into(), MODEL_FORMAT.into()));
        nn::checkpoint::save(path, &ck)
    }

    /// The spec as stored.
    pub fn spec_json(&self) -> String {
        serde_json::to_string(&self.spec).expect("serialisable")
    }

    /// Reads a model written by [`FaceModel::save`] (or a training checkpoint).
    ///
    /// # Errors
    /// A missing, corrupt or truncated file; a checkpoint that is not a face model; weights
    /// that do not fit the spec (each naming the file).
    pub fn load(path: &std::path::Path) -> nn::Result<FaceModel> {
        FaceModel::from_checkpoint(&nn::checkpoint::load(path)?, path)
    }

    /// [`FaceModel::load`] on a checkpoint already read (`path` is used in errors).
    ///
    /// # Errors
    /// As [`FaceModel::load`].
    pub fn from_checkpoint(
        ck: &nn::checkpoint::Checkpoint,
        path: &std::path::Path,
    ) -> nn::Result<FaceModel> {
        if ck.meta(SPEC_KEY).is_none_or(|v| v != MODEL_FORMAT) {
            return Err(nn::Error::corrupt(
                path,
                format!(
                    "not a face model of format {MODEL_FORMAT} (metadata {SPEC_KEY} = {:?})",
                    ck.meta(SPEC_KEY)
                ),
            ));
        }
        let spec: FaceModelSpec = serde_json::from_str(&ck.config)
            .map_err(|e| nn::Error::corrupt(path, format!("bad model spec: {e}")))?;
        // The spec comes from the file: the network it describes may not hold more values
        // than the file stores, so hostile sizes are refused before anything is allocated.
        let stored = ck.params.iter().map(|t| t.data.len()).sum();
        let mut m = FaceModel::build(spec, nn::ModelSeed::new(0).limit_elements(stored), 0.0)
            .map_err(|e| nn::Error::corrupt(path, format!("model spec: {e}")))?;
        ck.apply_to(&mut m.store)?;
        Ok(m)
    }
}

/// Loads the bundled ResNet-29 for `stream`, recording its weights' hash in a new spec and
/// checking it against an old one's.
fn open_face_stream(stream: &mut FaceStream, has_head: bool) -> nn::Result<FaceResNet29> {
    let bad = |reason: String| nn::Error::InvalidArgument {
        op: "FaceStream",
        reason,
    };
    if has_head {
        return Err(bad(
            "the face stream adds squared distances; a DeepFace head scores pairs its own way"
                .into(),
        ));
    }
    if !(stream.weight > 0.0 && stream.weight < 1.0) {
        return Err(bad(format!(
            "weight must lie in (0, 1), not {}",
            stream.weight
        )));
    }
    if !(stream.face_box.side > 0.0 && stream.face_box.side.is_finite()) {
        return Err(bad(format!(
            "face box {:?} needs a positive side",
            stream.face_box
        )));
    }
    let net = FaceResNet29::bundled()?;
    if stream.weights_sha256.is_empty() {
        stream.weights_sha256.clone_from(&net.weights_hash);
    } else if stream.weights_sha256 != net.weights_hash {
        return Err(bad(format!(
            "the model was built with face ResNet-29 weights {}, the bundled ones are {}",
            stream.weights_sha256, net.weights_hash
        )));
    }
    Ok(net)
}

/// The left-right mirror image of a `(C, H, W)` image.
pub fn mirror(img: &Tensor) -> Tensor {
    let w = img.shape()[img.shape().len() - 1];
    let mut v = img.to_vec();
    v.chunks_mut(w).for_each(|row| row.reverse());
    Tensor::from_vec(v, img.shape()).expect("same shape")
}

impl nn::inspect::Layered for FaceModel {
    fn layer<'g>(&self, cx: &Ctx<'g>, x: &Var<'g>, layer: usize) -> nn::Result<Var<'g>> {
        self.net.layer(cx, x, layer)
    }
}

/// `||a - b||²`.
pub fn squared_l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Embeddings of `images` in eval mode, `n x dim` row-major.
///
/// # Errors
/// Model errors.
pub fn embed(
    net: &EmbeddingNet,
    store: &ParamStore,
    images: &[&Tensor],
    batch: usize,
) -> nn::Result<Vec<f32>> {
    let mut out = Vec::with_capacity(images.len() * net.config.dim);
    for chunk in images.chunks(batch.max(1)) {
        let g = autograd::Graph::no_grad();
        let cx = Ctx::new(&g, store, nn::Mode::Eval, 0);
        let x = stack(&chunk.iter().map(|t| (*t).clone()).collect::<Vec<_>>())?;
        out.extend(net.forward(&cx, &g.constant(x))?.value().to_vec());
    }
    Ok(out)
}
