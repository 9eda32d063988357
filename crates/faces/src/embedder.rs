//! One face embedder for every command that takes `--model pretrained|PATH`: the pretrained
//! ResNet-29 or a model trained here. Each has a fingerprint (hash of its weights and of how
//! images are preprocessed) that galleries record, so encodings of one model are never
//! compared with another's.

use std::path::Path;

use sha2::Digest;
use tensor::Tensor;

use crate::data::{CropBox, Preprocess};
use crate::model::{FaceModel, mirror, squared_l2, stack};
use crate::resnet29::{self, FaceResNet29};

/// A pair score function (`same when score <= tau`).
pub type PairScore<'a> = Box<dyn Fn(&[f32], &[f32]) -> f32 + Sync + 'a>;

/// The pretrained network with its preprocessing.
pub struct Pretrained {
    /// The network.
    pub net: FaceResNet29,
    /// Crop box (if any), half-pixel bilinear to 150 x 150, `(p - mean) / 255`.
    pub preprocess: Preprocess,
    /// Average the embeddings of each image and its mirror image (the spec measures +0.3
    /// points on LFW for twice the compute).
    pub flip_average: bool,
}

/// A face embedding model.
pub enum Embedder {
    /// dlib's ResNet-29.
    Pretrained(Box<Pretrained>),
    /// A model written by `faces train`.
    Trained(Box<FaceModel>),
}

impl Embedder {
    /// The pretrained network: the bundled weights, or a TF.js manifest (`.json`) or
    /// safetensors file.
    ///
    /// # Errors
    /// Unreadable or wrong weights (named).
    pub fn pretrained(
        weights: Option<&Path>,
        crop: Option<CropBox>,
        flip_average: bool,
    ) -> nn::Result<Embedder> {
        let net = match weights {
            Some(p) => FaceResNet29::load(p)?,
            None => FaceResNet29::bundled()?,
        };
        Ok(Embedder::Pretrained(Box::new(Pretrained {
            net,
            preprocess: resnet29::preprocess(crop),
            flip_average,
        })))
    }

    /// A model trained here.
    ///
    /// # Errors
    /// As [`FaceModel::load`].
    pub fn trained(path: &Path) -> nn::Result<Embedder> {
        Ok(Embedder::Trained(Box::new(FaceModel::load(path)?)))
    }

    /// How image files become inputs.
    pub fn preprocess(&self) -> &Preprocess {
        match self {
            Embedder::Pretrained(p) => &p.preprocess,
            Embedder::Trained(m) => &m.spec.preprocess,
        }
    }

    /// Embedding size.
    pub fn dim(&self) -> usize {
        match self {
            Embedder::Pretrained(_) => resnet29::DIM,
            Embedder::Trained(m) => m.dim(),
        }
    }

    /// The model's own decision threshold on the pair score (dlib's 0.6 squared for the
    /// pretrained network; the one chosen after training otherwise).
    pub fn tau(&self) -> f32 {
        match self {
            Embedder::Pretrained(_) => resnet29::DEFAULT_TAU,
            Embedder::Trained(m) => m.spec.tau,
        }
    }

    /// One line saying what the model is.
    pub fn describe(&self) -> String {
        match self {
            Embedder::Pretrained(p) => format!(
                "pretrained face ResNet-29 (dlib, face-api.js weights){}",
                if p.flip_average {
                    ", flip-averaged"
                } else {
                    ""
                }
            ),
            Embedder::Trained(m) => match &m.spec.face_stream {
                None => m.spec.trained_with.clone(),
                Some(fs) => format!(
                    "{} beside the pretrained face ResNet-29 (frozen, weight {})",
                    m.spec.trained_with, fs.weight
                ),
            },
        }
    }

    /// Embeddings of preprocessed images, `n x dim` row-major, in batches of `batch`.
    ///
    /// # Errors
    /// Images of the wrong shape.
    pub fn embed(&self, images: &[&Tensor], batch: usize) -> nn::Result<Vec<f32>> {
        match self {
            Embedder::Trained(m) => m.embed(images, batch),
            Embedder::Pretrained(p) => {
                let mut out = Vec::with_capacity(images.len() * resnet29::DIM);
                for chunk in images.chunks(batch.max(1)) {
                    let x = stack(&chunk.iter().map(|t| (*t).clone()).collect::<Vec<_>>())?;
                    let e = p.net.forward(&x)?.into_vec();
                    if p.flip_average {
                        let m: Vec<Tensor> = chunk.iter().map(|t| mirror(t)).collect();
                        let f = p.net.forward(&stack(&m)?)?.into_vec();
                        out.extend(e.iter().zip(&f).map(|(a, b)| 0.5 * (a + b)));
                    } else {
                        out.extend(e);
                    }
                }
                Ok(out)
            }
        }
    }

    /// The pair score (`same when score <= tau`): squared L2, or a trained DeepFace head.
    pub fn scorer(&self) -> PairScore<'_> {
        match self {
            Embedder::Pretrained(_) => Box::new(squared_l2),
            Embedder::Trained(m) => Box::new(m.scorer()),
        }
    }

    /// SHA-256 (hex) of the weights and the preprocessing: two models with one fingerprint
    /// embed every image identically.
    pub fn fingerprint(&self) -> String {
        let mut h = sha2::Sha256::new();
        match self {
            Embedder::Pretrained(p) => {
                h.update(b"face-resnet29\0");
                h.update(p.net.weights_hash.as_bytes());
                h.update(serde_json::to_string(&p.preprocess).unwrap_or_default());
                h.update([u8::from(p.flip_average)]);
            }
            Embedder::Trained(m) => {
                h.update(b"faces-model\0");
                h.update(m.spec_json().as_bytes());
                let ck = nn::checkpoint::Checkpoint::from_store(&m.store, "", 0, None);
                for t in &ck.params {
                    h.update(t.name.as_bytes());
                    for v in &t.data {
                        h.update(v.to_le_bytes());
                    }
                }
            }
        }
        resnet29::hex(&h.finalize())
    }
}

/// What evaluation needs of a model: encodings and the pair score. Implemented by
/// [`Embedder`] and by [`FaceModel`] (during training, before it is saved).
pub trait Encode {
    /// Encodings of preprocessed images, `n x dim` row-major, in batches of `batch`.
    ///
    /// # Errors
    /// Images of the wrong shape.
    fn encode(&self, images: &[&Tensor], batch: usize) -> nn::Result<Vec<f32>>;
    /// Encoding size.
    fn encoding_dim(&self) -> usize;
    /// The pair score (`same when score <= tau`).
    fn pair_score(&self) -> PairScore<'_>;
}

impl Encode for Embedder {
    fn encode(&self, images: &[&Tensor], batch: usize) -> nn::Result<Vec<f32>> {
        self.embed(images, batch)
    }
    fn encoding_dim(&self) -> usize {
        self.dim()
    }
    fn pair_score(&self) -> PairScore<'_> {
        self.scorer()
    }
}

impl Encode for FaceModel {
    fn encode(&self, images: &[&Tensor], batch: usize) -> nn::Result<Vec<f32>> {
        self.embed(images, batch)
    }
    fn encoding_dim(&self) -> usize {
        self.dim()
    }
    fn pair_score(&self) -> PairScore<'_> {
        Box::new(self.scorer())
    }
}
