//! One face embedder for every command that takes `--model pretrained|PATH`: the pretrained
//! ResNet-29 or a model trained here. Each has a fingerprint (hash of its weights and of how
//! images are preprocessed) that galleries record, so encodings of one model are never
//! compared with another's.

use std::path::Path;

use sha2::Digest;
use tensor::Tensor;

use crate::align::{self, Template};
use crate::data::{CropBox, Preprocess};
use crate::detect::{Face, FaceFinder};
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
    /// Where the faces in an image are.
    pub source: FaceSource,
    /// Test-time jittering: each encoding is the mean over this many randomly rotated
    /// (+-3 degrees), scaled (0.97-1), shifted (+-2 %) and mirrored copies of the input, as
    /// dlib's `jitter_image` does (0: the input alone).
    pub jitter: usize,
}

/// Where the pretrained network finds the face in an image file.
pub enum FaceSource {
    /// The image (or its crop box) is the face: [`Pretrained::preprocess`] alone.
    Whole,
    /// Photos: every face found by the detector, cut to dlib's aligned chip from its 68
    /// landmarks.
    Detect {
        /// Detector and landmark net.
        finder: Box<FaceFinder>,
        /// The alignment template.
        template: Template,
    },
    /// Each image is already an aligned 150 x 150 chip.
    AlignedChip,
}

/// One face of an image file, ready to encode.
pub struct FaceInput {
    /// Where it was found (`None` when the whole image, or its crop box, is the face).
    pub face: Option<Face>,
    /// The network input `(C, H, W)`.
    pub input: Tensor,
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
            source: FaceSource::Whole,
            jitter: 0,
        })))
    }

    /// Sets where the pretrained network finds faces (a trained model keeps its own
    /// preprocessing: refused).
    ///
    /// # Errors
    /// A trained model with a source other than [`FaceSource::Whole`].
    pub fn with_source(mut self, source: FaceSource) -> nn::Result<Embedder> {
        match &mut self {
            Embedder::Pretrained(p) => p.source = source,
            Embedder::Trained(_) => {
                if !matches!(source, FaceSource::Whole) {
                    return Err(nn::Error::arg(
                        "Embedder",
                        "face detection and aligned chips are for the pretrained network; a trained model reads images as it was trained",
                    ));
                }
            }
        }
        Ok(self)
    }

    /// The detector and alignment template, when faces are found by a detector.
    pub fn finder(&self) -> Option<(&FaceFinder, Template)> {
        match self {
            Embedder::Pretrained(p) => match &p.source {
                FaceSource::Detect { finder, template } => Some((finder, *template)),
                _ => None,
            },
            Embedder::Trained(_) => None,
        }
    }

    /// Whether faces are found by a detector (one image may hold none or many).
    pub fn detects(&self) -> bool {
        matches!(
            self,
            Embedder::Pretrained(p) if matches!(p.source, FaceSource::Detect { .. })
        )
    }

    /// The faces of an image file, ready to encode: one for a face crop (or crop box) or an
    /// aligned chip, every detected face (best first) for photos.
    ///
    /// # Errors
    /// An unreadable file, a crop box that does not fit, a chip that is not 150 x 150 (each
    /// naming the file).
    pub fn faces_in(&self, path: &std::path::Path) -> nn::Result<Vec<FaceInput>> {
        let whole = |pre: &Preprocess| -> nn::Result<Vec<FaceInput>> {
            Ok(vec![FaceInput {
                face: None,
                input: pre.load(path)?,
            }])
        };
        let p = match self {
            Embedder::Trained(m) => return whole(&m.spec.preprocess),
            Embedder::Pretrained(p) => p,
        };
        match &p.source {
            FaceSource::Whole => whole(&p.preprocess),
            FaceSource::AlignedChip => {
                let img = nn::data::read_image(path, nn::data::DEFAULT_MAX_PIXELS)?.to_rgb8();
                let input = resnet29::chip_input(&img)
                    .map_err(|e| nn::Error::corrupt(path, format!("not an aligned chip: {e}")))?;
                Ok(vec![FaceInput { face: None, input }])
            }
            FaceSource::Detect { finder, template } => {
                let img = nn::data::read_image(path, nn::data::DEFAULT_MAX_PIXELS)?.to_rgb8();
                self.faces_in_image(&img, finder, *template)
            }
        }
    }

    /// The centred subject of a photo (LFW), as an aligned chip: see
    /// [`FaceFinder::subject`]. `None` (with [`crate::detect::SubjectRule::NotFound`]) when no face box
    /// contains the image centre, or when faces are not detected.
    ///
    /// # Errors
    /// An unreadable file.
    pub fn subject_in(
        &self,
        path: &std::path::Path,
        choice: crate::detect::SubjectChoice,
    ) -> nn::Result<(Option<FaceInput>, crate::detect::SubjectRule)> {
        let Embedder::Pretrained(p) = self else {
            return Ok((None, crate::detect::SubjectRule::NotFound));
        };
        let FaceSource::Detect { finder, template } = &p.source else {
            return Ok((None, crate::detect::SubjectRule::NotFound));
        };
        let img = nn::data::read_image(path, nn::data::DEFAULT_MAX_PIXELS)?.to_rgb8();
        let (face, rule) = finder.subject(&img, choice)?;
        let Some(face) = face else {
            return Ok((None, rule));
        };
        let chip = align::face_chip(
            &img,
            face.landmarks.as_deref().unwrap_or_default(),
            *template,
        )?;
        Ok((
            Some(FaceInput {
                input: resnet29::chip_input(&chip)?,
                face: Some(face),
            }),
            rule,
        ))
    }

    /// Every face the finder sees in a decoded photo, as aligned chips.
    ///
    /// # Errors
    /// Settings out of range.
    pub fn faces_in_image(
        &self,
        img: &image::RgbImage,
        finder: &FaceFinder,
        template: Template,
    ) -> nn::Result<Vec<FaceInput>> {
        finder
            .find(img)?
            .into_iter()
            .map(|f| {
                let lm = f.landmarks.as_deref().unwrap_or_default();
                let chip = align::face_chip(img, lm, template)?;
                Ok(FaceInput {
                    input: resnet29::chip_input(&chip)?,
                    face: Some(f),
                })
            })
            .collect()
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
                "pretrained face ResNet-29 (dlib, face-api.js weights){}{}{}",
                match &p.source {
                    FaceSource::Whole => match p.preprocess.crop {
                        Some(c) => format!(", face crop box {}x{}+{}+{}", c.w, c.h, c.x, c.y),
                        None => ", whole image as the face".into(),
                    },
                    FaceSource::Detect { template, .. } =>
                        format!(", faces detected and aligned ({template:?} chip)"),
                    FaceSource::AlignedChip => ", aligned 150 x 150 chips as input".into(),
                },
                if p.flip_average {
                    ", flip-averaged"
                } else {
                    ""
                },
                if p.jitter > 0 {
                    format!(", mean of {} jittered copies", p.jitter)
                } else {
                    String::new()
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
            Embedder::Pretrained(p) if p.jitter > 0 => {
                let mut out = Vec::with_capacity(images.len() * resnet29::DIM);
                for img in images {
                    let copies = jittered(img, &p.preprocess, p.jitter)?;
                    let e = p.net.forward(&stack(&copies)?)?.into_vec();
                    let n = copies.len() as f32;
                    let mut mean = vec![0f32; resnet29::DIM];
                    for row in e.chunks(resnet29::DIM) {
                        mean.iter_mut().zip(row).for_each(|(m, v)| *m += v / n);
                    }
                    out.extend(mean);
                }
                Ok(out)
            }
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
                if p.jitter > 0 {
                    h.update(format!("jitter:{}", p.jitter));
                }
                // Galleries made from crops keep their fingerprint; aligned chips (detected
                // or given) are another input, comparable among themselves.
                if !matches!(p.source, FaceSource::Whole) {
                    h.update(b"dlib-chip");
                }
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

/// `n` jittered copies of a `(3, S, S)` network input (dlib's `jitter_image`): each a chip of
/// the input's pixels through a random small rotation, scale and shift, mirrored half of the
/// time, black outside. The random stream is seeded by the input's values, so an image always
/// gets the same copies.
fn jittered(input: &Tensor, pre: &Preprocess, n: usize) -> nn::Result<Vec<Tensor>> {
    use rand::{Rng, SeedableRng};
    let s = input.shape().to_vec();
    if s.len() != 3 || s[0] != 3 || s[1] != s[2] || s[1] != align::CHIP_SIZE {
        return Err(nn::Error::arg(
            "jitter",
            format!("needs a (3, 150, 150) input, got {s:?}"),
        ));
    }
    let side = s[1];
    let img = pre.to_image(input);
    let v = input.contiguous_data();
    let seed = v.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, x| {
        (h ^ u64::from(x.to_bits())).wrapping_mul(0x1000_0000_01b3)
    });
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        // The image's rectangle shrunk by 3 pixels, moved by up to 2 % and enlarged by
        // 1-3 %, turned by up to 3 degrees.
        let inner = side as f64 - 6.0;
        let (dx, dy) = (
            rng.random_range(-0.02..0.02) * inner,
            rng.random_range(-0.02..0.02) * inner,
        );
        let boxed = (inner / rng.random_range(0.97..0.99999)).floor();
        let (cx, cy) = (
            (side as f64 - 1.0) / 2.0 + dx,
            (side as f64 - 1.0) / 2.0 + dy,
        );
        let half = (boxed - 1.0) / 2.0;
        let details = align::ChipDetails {
            rect: [cx - half, cy - half, cx + half, cy + half],
            angle: rng.random_range(-3.0f64..3.0).to_radians(),
        };
        let mut chip = align::extract_chip(&img, &details).0;
        if rng.random_bool(0.5) {
            image::imageops::flip_horizontal_in_place(&mut chip);
        }
        out.push(resnet29::chip_input(&chip)?);
    }
    Ok(out)
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
