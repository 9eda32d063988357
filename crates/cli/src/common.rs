//! What several commands share: the embedder and detector flags, finding and encoding the
//! faces of image files with progress, and the ROC chart. Command modules import this one
//! and `args`, never each other (except `faces` dispatching its subcommands and `demo`
//! composing the others).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use faces::data::CropBox;
use faces::embedder::{Embedder, FaceInput, FaceSource};
use faces::eval::RocPoint;
use indicatif::{ProgressBar, ProgressStyle};
use nn::plot::{Chart, PALETTE, Series};
use nn::train::Observer;
use rayon::prelude::*;

/// `--model pretrained|PATH` and what goes with the pretrained network.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct EmbedderArgs {
    /// `pretrained` (the bundled face ResNet-29) or a model written by `faces train`.
    #[arg(long, default_value = "pretrained")]
    pub model: String,
    /// Other weights for the pretrained network: a TF.js manifest (.json) or safetensors.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// The images are face crops, not photos: cut this box from each, `X,Y,W,H` in pixels
    /// (it may reach beyond the image: the edge is replicated), `lfw` (the box for 250 x 250
    /// LFW deep-funneled images) or `none` (the whole image is the face). Without it the
    /// pretrained network finds faces with the detector.
    #[arg(long, allow_hyphen_values = true)]
    pub crop: Option<String>,
    /// The images are already dlib-aligned 150 x 150 face chips.
    #[arg(long, conflicts_with = "crop")]
    pub aligned_input: bool,
    /// Pretrained network: average each image's encoding with its mirror image's.
    #[arg(long)]
    pub flip_average: bool,
    /// Pretrained network: each encoding is the mean over N randomly jittered copies of the
    /// face (dlib's test-time jittering; N times the encoding work; 0 = off).
    #[arg(long, default_value_t = 0)]
    pub jitter: usize,
    #[command(flatten)]
    pub detect: DetectArgs,
}

/// How faces are found in photos.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct DetectArgs {
    /// Face detector: `ssd` (SSD MobileNet v1, accurate) or `tiny` (Tiny Face Detector, about
    /// 2.5 times faster: 60 against 155 ms a photo on one thread; misses more turned faces).
    #[arg(long, default_value = "ssd")]
    pub detector: String,
    /// Keep faces the detector scores above this (0-1).
    #[arg(long, default_value_t = 0.5)]
    pub min_score: f64,
    /// Drop a face overlapping a better one by more than this IoU (default: 0.5 for ssd, 0.4
    /// for tiny).
    #[arg(long)]
    pub nms_iou: Option<f64>,
    /// At most this many faces per photo.
    #[arg(long, default_value_t = 100)]
    pub max_faces: usize,
    /// Ignore faces smaller than this many pixels (the box's shorter side).
    #[arg(long, default_value_t = 0.0)]
    pub min_face: f64,
    /// Tiny detector's input side (a multiple of 32; larger finds smaller faces, slower).
    #[arg(long, default_value_t = 416)]
    pub tiny_input: usize,
    /// Alignment template: `68` (dlib's 68-point chip) or `5` (its 5-point template from
    /// the eye corners and the nose).
    #[arg(long, default_value = "68")]
    pub template: String,
    /// Other detector and landmark weights: a folder with face-api.js's model files.
    #[arg(long)]
    pub detector_weights: Option<PathBuf>,
}

impl DetectArgs {
    /// The detector and landmark net with these settings (checked).
    pub(crate) fn finder(&self) -> Result<faces::detect::FaceFinder> {
        let kind: faces::detect::DetectorKind = self
            .detector
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--detector: {e}"))?;
        let mut f = faces::detect::FaceFinder::load(kind, self.detector_weights.as_deref())?;
        f.options.min_score = self.min_score;
        if let Some(iou) = self.nms_iou {
            f.options.iou = iou;
        }
        f.options.max_faces = self.max_faces;
        f.options.min_size = self.min_face;
        f.options.input_size = self.tiny_input;
        f.options.check().map_err(|e| {
            anyhow::anyhow!(
                "{e} (flags --min-score, --nms-iou, --max-faces, --min-face, --tiny-input)"
            )
        })?;
        Ok(f)
    }

    pub(crate) fn template(&self) -> Result<faces::align::Template> {
        match self.template.as_str() {
            "68" => Ok(faces::align::Template::Dlib68),
            "5" => Ok(faces::align::Template::FivePoint),
            t => bail!("--template takes 68 or 5, not {t:?}"),
        }
    }
}

impl EmbedderArgs {
    /// Loads the model. For the pretrained network: `--crop` / `--aligned-input` say the
    /// images are prepared faces; otherwise faces are detected when `photos`, else the
    /// images are cut with `default_crop`.
    pub(crate) fn load(&self, default_crop: Option<CropBox>, photos: bool) -> Result<Embedder> {
        if self.model != "pretrained" {
            anyhow::ensure!(
                self.weights.is_none()
                    && self.crop.is_none()
                    && !self.flip_average
                    && !self.aligned_input
                    && self.jitter == 0,
                "--weights, --crop, --aligned-input, --flip-average and --jitter are for --model pretrained; a trained model stores its own preprocessing"
            );
            let p = Path::new(&self.model);
            return Embedder::trained(p).with_context(|| format!("loading model {}", p.display()));
        }
        let crop = match self.crop.as_deref() {
            None => default_crop,
            Some("none") => None,
            Some("lfw") => Some(faces::resnet29::LFW_CROP),
            Some(text) => {
                Some(parse_crop_box("--crop", text).context("--crop also takes `lfw` or `none`")?)
            }
        };
        anyhow::ensure!(
            self.jitter <= 1000,
            "--jitter takes 0 to 1000 copies, not {}",
            self.jitter
        );
        let mut model = Embedder::pretrained(self.weights.as_deref(), crop, self.flip_average)?;
        if let Embedder::Pretrained(p) = &mut model {
            p.jitter = self.jitter;
        }
        let source = if self.aligned_input {
            FaceSource::AlignedChip
        } else if photos && self.crop.is_none() {
            FaceSource::Detect {
                finder: Box::new(self.detect.finder()?),
                template: self.detect.template()?,
            }
        } else {
            FaceSource::Whole
        };
        Ok(model.with_source(source)?)
    }
}

/// A face box `X,Y,W,H` in pixels (positive width and height).
pub(crate) fn parse_crop_box(flag: &str, text: &str) -> Result<CropBox> {
    CropBox::parse(text).map_err(|e| anyhow::anyhow!("{flag} {e}"))
}

/// Encodes images in batches of 64 with a progress bar (rate and ETA).
pub(crate) fn embed_with_progress(
    model: &Embedder,
    images: &[&tensor::Tensor],
) -> Result<Vec<f32>> {
    let bar = progress_bar(images.len() as u64, "encoding");
    let mut out = Vec::with_capacity(images.len() * model.dim());
    for chunk in images.chunks(64) {
        out.extend(model.embed(chunk, 64)?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// Saves a ROC curve as a PNG, the false-accept rate on a logarithmic axis (as face papers
/// draw it: the low-FAR end is where a deployed threshold sits).
pub(crate) fn save_roc(path: &Path, title: &str, curves: &[(String, &[RocPoint])]) -> Result<()> {
    Chart {
        title: title.into(),
        x_label: "false-accept rate".into(),
        y_label: "true-accept rate".into(),
        series: curves
            .iter()
            .enumerate()
            .map(|(i, (name, c))| Series {
                name: name.clone(),
                points: c.iter().map(|p| (p.far, p.tar)).collect(),
                color: PALETTE[i % PALETTE.len()],
            })
            .collect(),
        y_range: Some((0.0, 1.0)),
        x_log: true,
    }
    .save_png(path)?;
    Ok(())
}

/// The faces found in each readable file, and the files that could not be read with the
/// reason (which names the file).
pub(crate) struct Decoded {
    pub(crate) files: Vec<(PathBuf, Vec<FaceInput>)>,
    pub(crate) bad: Vec<(PathBuf, String)>,
}

/// A skipped file's reason as listed under that file: without the leading "PATH: " the
/// error text starts with, so the path is said once.
pub(crate) fn reason_for<'a>(file: &Path, why: &'a str) -> &'a str {
    why.strip_prefix(&format!("{}: ", file.display()))
        .unwrap_or(why)
}

/// Finds the faces of files in parallel (a progress bar with rate and ETA when faces are
/// detected in more than one photo).
pub(crate) fn decode(model: &Embedder, files: &[PathBuf]) -> Decoded {
    let bar = (model.detects() && files.len() > 1)
        .then(|| progress_bar(files.len() as u64, "finding faces"));
    let results: Vec<_> = files
        .par_iter()
        .map(|f| {
            let r = model.faces_in(f);
            if let Some(b) = &bar {
                b.inc(1);
            }
            (f.clone(), r)
        })
        .collect();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let (mut ok, mut bad) = (vec![], vec![]);
    for (f, r) in results {
        match r {
            Ok(t) => ok.push((f, t)),
            Err(e) => bad.push((f, e.to_string())),
        }
    }
    Decoded { files: ok, bad }
}

/// The largest face of a file's faces (by box area; the only one for crops and chips).
pub(crate) fn largest(faces: &[FaceInput]) -> Option<&FaceInput> {
    let area = |f: &FaceInput| {
        f.face
            .as_ref()
            .map_or(0.0, |f| f.detection.width * f.detection.height)
    };
    faces.iter().max_by(|a, b| area(a).total_cmp(&area(b)))
}

/// Encodings of face inputs, one row each.
pub(crate) fn encode(model: &Embedder, inputs: &[&tensor::Tensor]) -> Result<Vec<Vec<f32>>> {
    let flat = crate::common::embed_with_progress(model, inputs)?;
    Ok(flat.chunks(model.dim()).map(<[f32]>::to_vec).collect())
}

/// A progress bar of `len` items labelled `what`, with rate and ETA.
pub(crate) fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {per_sec} ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}

/// The training engine drawn on standard error: a bar per epoch (`epoch 3/15 [===>  ]
/// 12/40 4.1/s ETA 7s loss 0.4372`), and `on_epoch` called with each epoch's record (a
/// command prints its line there). `show: false` keeps the bars hidden (`--json` runs).
pub(crate) struct EpochBars<F> {
    show: bool,
    bar: Option<ProgressBar>,
    on_epoch: F,
}

impl<F> EpochBars<F> {
    pub(crate) fn new(show: bool, on_epoch: F) -> Self {
        EpochBars {
            show,
            bar: None,
            on_epoch,
        }
    }
}

impl<E, F: FnMut(&E)> Observer<E> for EpochBars<F> {
    fn epoch_start(&mut self, epoch: usize, epochs: usize, steps: usize) {
        let bar = if self.show {
            ProgressBar::new(steps as u64)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "epoch {prefix} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("{}/{epochs}", epoch + 1));
        self.bar = Some(bar);
    }

    fn step_done(&mut self, message: &str) {
        if let Some(b) = &self.bar {
            b.set_message(message.to_string());
            b.inc(1);
        }
    }

    fn epoch_end(&mut self, record: &E) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        (self.on_epoch)(record);
    }

    fn aborted(&mut self) {
        if let Some(b) = self.bar.take() {
            b.abandon();
        }
    }
}
