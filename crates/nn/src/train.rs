//! Datasets of labelled images, augmentation, and the training engine every network uses
//! ([`run`]: epochs, learning-rate schedule, periodic checkpoints, exact resume, `stop_after`,
//! a NaN guard in [`train_step`], progress through an [`Observer`]); [`fit`] is
//! classification on it.
//!
//! Every random choice is derived from `(seed, epoch, index)`, never from a stateful RNG
//! carried across epochs, so a run resumed from a checkpoint draws the same batches and the
//! same augmentations as an uninterrupted one and reproduces its loss curve exactly.

use std::path::{Path, PathBuf};
use std::time::Instant;

use autograd::Graph;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tensor::Tensor;

use crate::checkpoint::{self, Checkpoint};
use crate::ctx::{Ctx, Mode, Module};
use crate::optim::{LrSchedule, Optimizer, Schedule};
use crate::param::ParamStore;
use crate::{Error, Result, loss};

/// One labelled example: an image `(C, H, W)` and its class.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The image.
    pub image: Tensor,
    /// The class index.
    pub label: usize,
}

/// Image files with their class index.
pub type LabelledFiles = Vec<(PathBuf, usize)>;

/// A folder with one sub-folder of images per class (sorted by name; files sorted too).
#[derive(Debug, Clone)]
pub struct ImageFolder {
    /// Class names (sub-folder names).
    pub classes: Vec<String>,
    /// Every image file and its class.
    pub files: Vec<(PathBuf, usize)>,
}

const IMAGE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "pgm", "ppm", "pbm", "pnm", "bmp", "gif", "tif", "tiff", "webp",
];

/// True for a file name with an image extension the loader tries.
pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

impl ImageFolder {
    /// Lists `dir`.
    ///
    /// # Errors
    /// [`Error::Io`] for an unreadable folder; [`Error::InvalidArgument`] for a folder with no
    /// class folders, or a class folder with no image (naming it).
    pub fn scan(dir: &Path) -> Result<ImageFolder> {
        let classes = crate::data::class_folders(dir, "class")?;
        let mut files = vec![];
        for (i, (name, path)) in classes.iter().enumerate() {
            let mut imgs: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| Error::io(path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_image_file(p))
                .collect();
            imgs.sort_by(|a, b| {
                natural_key(&a.to_string_lossy()).cmp(&natural_key(&b.to_string_lossy()))
            });
            if imgs.is_empty() {
                return Err(Error::arg(
                    "ImageFolder",
                    format!("class folder {} has no images", path.display()),
                ));
            }
            files.extend(imgs.into_iter().map(|p| (p, i)));
            let _ = name;
        }
        Ok(ImageFolder {
            classes: classes.into_iter().map(|c| c.0).collect(),
            files,
        })
    }

    /// Splits every class: `train_per_class` files (chosen by `seed`) for training, the rest for
    /// testing.
    ///
    /// # Errors
    /// A class with no more than `train_per_class` files (nothing left to test).
    pub fn split(
        &self,
        train_per_class: usize,
        seed: u64,
    ) -> Result<(LabelledFiles, LabelledFiles)> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut train, mut test) = (vec![], vec![]);
        for c in 0..self.classes.len() {
            let mut mine: Vec<_> = self.files.iter().filter(|f| f.1 == c).cloned().collect();
            if mine.len() <= train_per_class {
                return Err(Error::arg(
                    "split",
                    format!(
                        "class {:?} has {} images, needs more than {train_per_class}",
                        self.classes[c],
                        mine.len()
                    ),
                ));
            }
            mine.shuffle(&mut rng);
            test.extend(mine.split_off(train_per_class));
            train.extend(mine);
        }
        Ok((train, test))
    }
}

/// Sort key that orders digit runs by value ("s2" < "s10").
/// A sort key that orders digit runs by value ("s2" before "s10").
pub fn natural_key(s: &str) -> Vec<(u8, u64, String)> {
    let mut out = vec![];
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_ascii_digit() {
            let mut n = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                n.push(d);
                chars.next();
            }
            out.push((0, n.parse().unwrap_or(u64::MAX), String::new()));
        } else {
            let mut t = String::new();
            while let Some(&d) = chars.peek().filter(|d| !d.is_ascii_digit()) {
                t.push(d);
                chars.next();
            }
            out.push((1, 0, t));
        }
    }
    out
}

/// Decodes files in parallel with `decode` (which should name the file in its error).
///
/// # Errors
/// The first file that fails.
pub fn decode_all(
    files: &[(PathBuf, usize)],
    decode: impl Fn(&Path) -> Result<Tensor> + Sync,
) -> Result<Vec<Sample>> {
    files
        .par_iter()
        .map(|(p, l)| {
            Ok(Sample {
                image: decode(p)?,
                label: *l,
            })
        })
        .collect()
}

/// Training-time augmentation.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Augment {
    /// Random crop: pad by this many pixels (edge replicated), crop back at a random offset.
    pub crop_pad: usize,
    /// Mirror left-right with probability 1/2.
    pub flip: bool,
    /// Brightness shift in `[-j, j]` and contrast factor in `[1 - j, 1 + j]`.
    pub jitter: f32,
    /// Zoom by a factor in `[1 - s, 1 + s]` about the image centre (0: off).
    #[serde(default)]
    pub scale: f32,
    /// Rotate by an angle in `[-r, r]` degrees about the image centre (0: off).
    #[serde(default)]
    pub rotate_degrees: f32,
    /// Probability of random erasing (Zhong et al. 2020): a rectangle of 2-40 % of the image,
    /// aspect ratio 0.3-3.3, set to the image's mean, so no single region can carry identity.
    #[serde(default)]
    pub erase: f32,
}

/// One augmented copy of `img` (`(C, H, W)`), from `rng`. The geometric part (shift, zoom,
/// rotation, mirror) maps each output pixel back to a source point, sampled bilinearly with the
/// edge replicated; a pure shift lands on whole pixels and copies them exactly.
pub fn augment(img: &Tensor, aug: &Augment, rng: &mut ChaCha8Rng) -> Tensor {
    let (c, h, w) = (img.shape()[0], img.shape()[1], img.shape()[2]);
    if h * w == 0 {
        // Nothing to move (and no pixel plane to chunk by).
        return img.clone();
    }
    let src = img.to_vec();
    let p = aug.crop_pad as i64;
    let (dy, dx) = if p > 0 {
        (
            rng.random_range(-p..=p) as f32,
            rng.random_range(-p..=p) as f32,
        )
    } else {
        (0.0, 0.0)
    };
    let flip = aug.flip && rng.random::<bool>();
    let (b, k) = if aug.jitter > 0.0 {
        (
            rng.random_range(-aug.jitter..=aug.jitter),
            rng.random_range(1.0 - aug.jitter..=1.0 + aug.jitter),
        )
    } else {
        (0.0, 1.0)
    };
    // Drawn only when enabled, so runs without them see the same random stream as before.
    let zoom = if aug.scale > 0.0 {
        rng.random_range(1.0 - aug.scale..=1.0 + aug.scale)
    } else {
        1.0
    };
    let angle = if aug.rotate_degrees > 0.0 {
        rng.random_range(-aug.rotate_degrees..=aug.rotate_degrees)
            .to_radians()
    } else {
        0.0
    };
    let warp = Warp {
        zoom,
        angle,
        shift: (dy, dx),
        flip,
    };
    let erased = (aug.erase > 0.0 && rng.random::<f32>() < aug.erase)
        .then(|| erase_box(h, w, rng))
        .flatten();
    let mut out = vec![0.0f32; c * h * w];
    for (plane, dst) in src.chunks_exact(h * w).zip(out.chunks_exact_mut(h * w)) {
        warp.apply(plane, h, w, dst);
        let mean = plane.iter().sum::<f32>() / (h * w) as f32;
        for v in dst.iter_mut() {
            *v = (*v - mean) * k + mean + b;
        }
        if let Some((y0, x0, eh, ew)) = erased {
            for row in dst.chunks_exact_mut(w).skip(y0).take(eh) {
                row[x0..x0 + ew].fill(mean + b);
            }
        }
    }
    Tensor::from_vec(out, &[c, h, w]).expect("same size")
}

/// Random erasing's rectangle `(y, x, height, width)` inside an `h x w` image: area 2-40 % of
/// the image, aspect ratio log-uniform in 0.3-3.3; `None` when ten draws do not fit.
fn erase_box(h: usize, w: usize, rng: &mut ChaCha8Rng) -> Option<(usize, usize, usize, usize)> {
    for _ in 0..10 {
        let area = rng.random_range(0.02..=0.4f32) * (h * w) as f32;
        let aspect = rng.random_range(0.3f32.ln()..=(1.0f32 / 0.3).ln()).exp();
        let eh = (area * aspect).sqrt().round() as usize;
        let ew = (area / aspect).sqrt().round() as usize;
        if eh >= 1 && ew >= 1 && eh < h && ew < w {
            return Some((
                rng.random_range(0..=h - eh),
                rng.random_range(0..=w - ew),
                eh,
                ew,
            ));
        }
    }
    None
}

/// A similarity transform about the image centre: mirror, then rotate by `angle` (radians,
/// counter-clockwise on screen) and zoom by `zoom`, then shift by `shift` (rows, columns).
struct Warp {
    zoom: f32,
    angle: f32,
    shift: (f32, f32),
    flip: bool,
}

impl Warp {
    /// Fills `dst` (`h x w`) by mapping each output pixel back to a point of `src` and sampling
    /// it bilinearly, with the edge replicated.
    fn apply(&self, src: &[f32], h: usize, w: usize, dst: &mut [f32]) {
        let (cy, cx) = ((h as f32 - 1.0) / 2.0, (w as f32 - 1.0) / 2.0);
        let (sin, cos) = (self.angle.sin() / self.zoom, self.angle.cos() / self.zoom);
        for y in 0..h {
            for x in 0..w {
                let xx = if self.flip { w - 1 - x } else { x };
                let (u, v) = (xx as f32 - cx, y as f32 - cy);
                let sx = cos * u - sin * v + cx + self.shift.1;
                let sy = sin * u + cos * v + cy + self.shift.0;
                dst[y * w + x] = crate::data::bilinear_clamped(src, h, w, sy, sx);
            }
        }
    }
}

/// Options of [`fit`].
#[derive(Debug, Clone)]
pub struct FitConfig {
    /// Total epochs.
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Augmentation of training images.
    pub augment: Option<Augment>,
    /// Learning rate per step (overrides the optimizer's rate each step).
    pub schedule: Option<LrSchedule>,
    /// Cross-entropy label smoothing.
    pub label_smoothing: f32,
    /// Where checkpoints go (none: no checkpoints).
    pub checkpoint: Option<PathBuf>,
    /// Checkpoint every this many epochs (and at the end).
    pub checkpoint_every: usize,
    /// Continue from `checkpoint`.
    pub resume: bool,
    /// Stop after this many epochs in this run (as if interrupted).
    pub stop_after: Option<usize>,
    /// Text identifying the model and data (checked on resume).
    pub config_text: String,
}

impl FitConfig {
    /// `epochs` over `n_train` examples in batches of `batch_size`: one epoch of linear warm-up
    /// to `lr`, then cosine decay to `min_lr`; no augmentation or label smoothing; a checkpoint
    /// every epoch at `checkpoint` (resume checks it against `config_text`).
    /// Change fields afterwards for anything else.
    #[allow(clippy::too_many_arguments)]
    pub fn warmup_cosine(
        epochs: usize,
        batch_size: usize,
        n_train: usize,
        lr: f32,
        min_lr: f32,
        seed: u64,
        checkpoint: Option<PathBuf>,
        config_text: String,
    ) -> FitConfig {
        let per_epoch = n_train.div_ceil(batch_size.max(1)) as u64;
        FitConfig {
            epochs,
            batch_size,
            seed,
            augment: None,
            schedule: Some(LrSchedule {
                base_lr: lr,
                warmup: per_epoch,
                schedule: Schedule::Cosine {
                    total: per_epoch * (epochs as u64).saturating_sub(1).max(1),
                    min_lr,
                },
            }),
            label_smoothing: 0.0,
            checkpoint,
            checkpoint_every: 1,
            resume: false,
            stop_after: None,
            config_text,
        }
    }
}

/// One epoch's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Optimizer steps so far.
    pub step: u64,
    /// Mean training loss.
    pub train_loss: f32,
    /// Training accuracy (on augmented batches, in training mode).
    pub train_accuracy: f32,
    /// Test loss.
    pub test_loss: f32,
    /// Test accuracy.
    pub test_accuracy: f32,
    /// Learning rate at the epoch's last step.
    pub lr: f32,
    /// Wall time of the epoch (training and evaluation).
    pub seconds: f64,
}

fn stack(samples: &[&Tensor]) -> Result<Tensor> {
    let views: Vec<Tensor> = samples
        .iter()
        .map(|t| t.unsqueeze(0))
        .collect::<std::result::Result<_, _>>()?;
    let refs: Vec<&Tensor> = views.iter().collect();
    Ok(Tensor::cat(&refs, 0)?)
}

/// The network's outputs `(N, classes)` for every example of `data`, in eval mode and in
/// batches of `batch`.
///
/// # Errors
/// Shape errors of the model; empty data.
pub fn predict(
    net: &dyn Module,
    store: &ParamStore,
    data: &[Sample],
    batch: usize,
) -> Result<Tensor> {
    let mut parts = vec![];
    for chunk in data.chunks(batch.max(1)) {
        let g = Graph::no_grad();
        let cx = Ctx::new(&g, store, Mode::Eval, 0);
        let x = stack(&chunk.iter().map(|s| &s.image).collect::<Vec<_>>())?;
        parts.push(net.forward(&cx, &g.constant(x))?.value().clone());
    }
    if parts.is_empty() {
        return Err(Error::arg("predict", "no examples"));
    }
    Ok(Tensor::cat(&parts.iter().collect::<Vec<_>>(), 0)?)
}

/// Mean loss and accuracy of `net` on `data` in eval mode.
///
/// # Errors
/// Shape errors of the model.
pub fn evaluate(
    net: &dyn Module,
    store: &ParamStore,
    data: &[Sample],
    batch: usize,
) -> Result<(f32, f32)> {
    if data.is_empty() {
        return Ok((0.0, 0.0));
    }
    let logits = predict(net, store, data, batch)?;
    let labels: Vec<usize> = data.iter().map(|s| s.label).collect();
    let g = Graph::no_grad();
    let loss = loss::cross_entropy(&g.constant(logits.clone()), &labels, 0.0)?
        .value()
        .to_scalar()?;
    let pred = logits.argmax(1)?;
    let correct = pred.iter().zip(&labels).filter(|(p, l)| p == l).count();
    Ok((loss, correct as f32 / data.len() as f32))
}

/// One well-mixed seed from a run seed and two counters (epoch, step, image...), so every
/// random choice of a run is reproducible from `--seed` alone and independent of the others.
pub fn derive_seed(seed: u64, a: u64, b: u64) -> u64 {
    // SplitMix-style mixing of (seed, a, b) into one seed.
    let mut z =
        seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

// ---------------------------------------------------------------------------------------------
// The training engine: one epoch loop for every network of the workspace.

/// Where a training step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepAt {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Step within the epoch (0-based).
    pub index: usize,
    /// Optimizer steps taken before this one, across resumes.
    pub step: u64,
}

/// What a training run repeats: one optimizer step, and an epoch's summary. The engine
/// ([`run`]) owns the epochs, the learning-rate schedule, checkpoints, resume, `stop_after`
/// and the history; a task owns its batches, its loss and what it records.
pub trait TrainTask {
    /// What one step reports to the epoch's summary.
    type Step;
    /// One epoch's record, kept in the history and in checkpoints.
    type Epoch: Serialize + serde::de::DeserializeOwned + Clone;
    /// Steps in every epoch.
    fn steps_per_epoch(&self) -> usize;
    /// Called before an epoch's first step (to shuffle, for instance).
    fn begin_epoch(&mut self, _epoch: usize) {}
    /// One optimizer step, usually ending in [`train_step`]; `None` when the batch had
    /// nothing to learn from (no active triplet).
    ///
    /// # Errors
    /// What the model, the loss or the optimizer return; [`Error::NonFinite`].
    fn step(
        &mut self,
        store: &mut ParamStore,
        opt: &mut dyn Optimizer,
        at: StepAt,
    ) -> Result<Option<Self::Step>>;
    /// A short progress text after each step (the running loss).
    fn progress(&self, steps: &[Self::Step]) -> String;
    /// The epoch's record from its steps (and, for instance, an evaluation on held-out data).
    ///
    /// # Errors
    /// What the evaluation returns.
    fn end_epoch(
        &mut self,
        store: &ParamStore,
        end: EpochEnd,
        steps: Vec<Self::Step>,
    ) -> Result<Self::Epoch>;
}

/// Where an epoch ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochEnd {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Optimizer steps taken so far, across resumes.
    pub step: u64,
    /// The learning rate of the epoch's last step.
    pub lr: f32,
    /// Wall time of the epoch (training and what `end_epoch` does before it is measured).
    pub seconds: f64,
}

/// How [`run`] drives a task.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Total epochs.
    pub epochs: usize,
    /// Learning rate per step (set on the optimizer before each step).
    pub schedule: Option<LrSchedule>,
    /// Where checkpoints go (none: no checkpoints).
    pub checkpoint: Option<PathBuf>,
    /// Checkpoint every this many epochs (and at the end, and when stopping early).
    pub checkpoint_every: usize,
    /// Continue from `checkpoint`.
    pub resume: bool,
    /// Stop after this many epochs in this run (as if interrupted).
    pub stop_after: Option<usize>,
    /// Text identifying the model, data and options (checked on resume).
    pub config_text: String,
}

/// What the engine reports while it trains. The libraries never print: the command line
/// draws a progress bar from this, a test counts calls, a service streams it.
pub trait Observer<E> {
    /// An epoch of `steps` steps begins.
    fn epoch_start(&mut self, _epoch: usize, _epochs: usize, _steps: usize) {}
    /// A step finished; `message` is the task's progress text.
    fn step_done(&mut self, _message: &str) {}
    /// An epoch finished with this record.
    fn epoch_end(&mut self, _record: &E) {}
    /// The run ends with an error in the middle of an epoch.
    fn aborted(&mut self) {}
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl<E> Observer<E> for Silent {}

/// An observer that calls a function with each epoch's record.
pub struct OnEpoch<F>(pub F);

impl<E, F: FnMut(&E)> Observer<E> for OnEpoch<F> {
    fn epoch_end(&mut self, record: &E) {
        (self.0)(record);
    }
}

/// What [`run`] did.
#[derive(Debug, Clone)]
pub struct RunReport<E> {
    /// Every epoch so far (including those before a resume).
    pub history: Vec<E>,
    /// Training seconds of this run.
    pub seconds: f64,
    /// True when `stop_after` ended the run early.
    pub interrupted: bool,
}

/// The six calls that end every optimizer step: the loss checked finite, backward, the
/// gradients mapped to parameters and checked finite, the buffer updates (BatchNorm running
/// statistics) written, the optimizer's update. Returns the loss.
///
/// # Errors
/// [`Error::NonFinite`] naming the step when the loss or a gradient is NaN or infinite;
/// errors of backward and of the optimizer.
pub fn train_step<'g>(
    graph: &'g Graph,
    cx: &Ctx<'g>,
    loss: &autograd::Var<'g>,
    store: &mut ParamStore,
    opt: &mut dyn Optimizer,
    at: StepAt,
) -> Result<f32> {
    let value = loss.value().to_scalar()?;
    let non_finite = |value| Error::NonFinite {
        step: at.step,
        epoch: at.epoch,
        value,
    };
    if !value.is_finite() {
        return Err(non_finite(value));
    }
    let grads = cx.param_grads(&graph.backward(loss)?);
    if grads.has_non_finite() {
        return Err(non_finite(f32::NAN));
    }
    cx.apply_updates(store)?;
    opt.step(store, &grads)?;
    Ok(value)
}

/// The checkpoint metadata key of the history (older face-training checkpoints used "log").
const HISTORY_KEY: &str = "history";

/// Runs `task` for `opts.epochs` epochs: resumes from the checkpoint when asked (weights,
/// optimizer state, history and step count; refused when it was written for another
/// configuration), sets the scheduled learning rate before each step, writes checkpoints at
/// the cadence asked (atomically), stops early after `stop_after` epochs as if interrupted,
/// and tells `observer` what happens.
///
/// # Errors
/// A task with no steps; a resume without a checkpoint path or from one written for another
/// configuration; the task's and the checkpoint's errors.
pub fn run<T: TrainTask>(
    task: &mut T,
    store: &mut ParamStore,
    opt: &mut dyn Optimizer,
    opts: &RunOptions,
    observer: &mut dyn Observer<T::Epoch>,
) -> Result<RunReport<T::Epoch>> {
    let steps = task.steps_per_epoch();
    if steps == 0 {
        return Err(Error::arg("train", "an epoch has no steps (empty data)"));
    }
    let mut history: Vec<T::Epoch> = vec![];
    let mut step: u64 = 0;
    if opts.resume {
        let path = opts
            .checkpoint
            .as_ref()
            .ok_or_else(|| Error::arg("train", "resume needs a checkpoint path"))?;
        let ck = checkpoint::load(path)?;
        if ck.config != opts.config_text {
            return Err(Error::arg(
                "train",
                format!(
                    "{} was written for another configuration (model, data or options):\n  file: {}\n  this run: {}",
                    path.display(),
                    ck.config,
                    opts.config_text
                ),
            ));
        }
        ck.apply_to(store)?;
        if let Some(st) = &ck.optimizer {
            opt.load_state(store, st)?;
        }
        let text = ck.meta(HISTORY_KEY).or(ck.meta("log")).unwrap_or("[]");
        history = serde_json::from_str(text)
            .map_err(|e| Error::corrupt(path, format!("bad training history: {e}")))?;
        step = ck.step;
    }
    let t0 = Instant::now();
    let report = |history, interrupted| RunReport {
        history,
        seconds: t0.elapsed().as_secs_f64(),
        interrupted,
    };
    for (done_this_run, epoch) in (history.len()..opts.epochs).enumerate() {
        let te = Instant::now();
        task.begin_epoch(epoch);
        observer.epoch_start(epoch, opts.epochs, steps);
        let mut done = vec![];
        for index in 0..steps {
            if let Some(s) = &opts.schedule {
                opt.set_lr(s.lr_at(step));
            }
            match task.step(store, opt, StepAt { epoch, index, step }) {
                Ok(Some(s)) => done.push(s),
                Ok(None) => {}
                Err(e) => {
                    observer.aborted();
                    return Err(e);
                }
            }
            step += 1;
            observer.step_done(&task.progress(&done));
        }
        let end = EpochEnd {
            epoch,
            step,
            lr: opt.lr(),
            seconds: te.elapsed().as_secs_f64(),
        };
        let record = task.end_epoch(store, end, done)?;
        observer.epoch_end(&record);
        history.push(record);
        let last = epoch + 1 == opts.epochs;
        let stop = opts.stop_after.is_some_and(|s| done_this_run + 1 >= s) && !last;
        let due = last || stop || (epoch + 1) % opts.checkpoint_every.max(1) == 0;
        if let Some(path) = opts.checkpoint.as_ref().filter(|_| due) {
            let mut ck =
                Checkpoint::from_store(store, &opts.config_text, step, Some(opt.state(store)));
            ck.metadata.push((
                HISTORY_KEY.into(),
                serde_json::to_string(&history).expect("serialisable"),
            ));
            checkpoint::save(path, &ck)?;
        }
        if stop {
            return Ok(report(history, true));
        }
    }
    Ok(report(history, false))
}

/// Cross-entropy classification on the engine: shuffled batches, augmentation, an evaluation
/// on the test set after every epoch.
struct Classify<'a> {
    net: &'a dyn Module,
    train: &'a [Sample],
    test: &'a [Sample],
    cfg: &'a FitConfig,
    order: Vec<usize>,
}

/// One classification step: examples, summed loss and correct answers.
struct ClassifyStep {
    seen: usize,
    loss_sum: f64,
    correct: usize,
}

impl TrainTask for Classify<'_> {
    type Step = ClassifyStep;
    type Epoch = EpochRecord;

    fn steps_per_epoch(&self) -> usize {
        self.train.len().div_ceil(self.cfg.batch_size.max(1))
    }

    fn begin_epoch(&mut self, epoch: usize) {
        self.order = (0..self.train.len()).collect();
        self.order
            .shuffle(&mut ChaCha8Rng::seed_from_u64(derive_seed(
                self.cfg.seed,
                epoch as u64,
                0,
            )));
    }

    fn step(
        &mut self,
        store: &mut ParamStore,
        opt: &mut dyn Optimizer,
        at: StepAt,
    ) -> Result<Option<ClassifyStep>> {
        let (cfg, train) = (self.cfg, self.train);
        let batch = cfg.batch_size.max(1);
        let idx = &self.order[at.index * batch..((at.index + 1) * batch).min(train.len())];
        let imgs: Vec<Tensor> = idx
            .par_iter()
            .map(|&i| match &cfg.augment {
                Some(a) => augment(
                    &train[i].image,
                    a,
                    &mut ChaCha8Rng::seed_from_u64(derive_seed(
                        cfg.seed,
                        at.epoch as u64 + 1,
                        (at.index * cfg.batch_size + i) as u64,
                    )),
                ),
                None => train[i].image.clone(),
            })
            .collect();
        let labels: Vec<usize> = idx.iter().map(|&i| train[i].label).collect();
        let g = Graph::new();
        let cx = Ctx::new(&g, store, Mode::Train, derive_seed(cfg.seed, 7, at.step));
        let logits = self
            .net
            .forward(&cx, &g.constant(stack(&imgs.iter().collect::<Vec<_>>())?))?;
        let l = loss::cross_entropy(&logits, &labels, cfg.label_smoothing)?;
        let lv = train_step(&g, &cx, &l, store, opt, at)?;
        let correct = logits
            .value()
            .argmax(1)?
            .iter()
            .zip(&labels)
            .filter(|(p, l)| p == l)
            .count();
        Ok(Some(ClassifyStep {
            seen: idx.len(),
            loss_sum: lv as f64 * idx.len() as f64,
            correct,
        }))
    }

    fn progress(&self, steps: &[ClassifyStep]) -> String {
        let seen: usize = steps.iter().map(|s| s.seen).sum();
        let loss: f64 = steps.iter().map(|s| s.loss_sum).sum();
        format!("loss {:.4}", loss / seen.max(1) as f64)
    }

    fn end_epoch(
        &mut self,
        store: &ParamStore,
        end: EpochEnd,
        steps: Vec<ClassifyStep>,
    ) -> Result<EpochRecord> {
        let seen: usize = steps.iter().map(|s| s.seen).sum();
        let loss_sum: f64 = steps.iter().map(|s| s.loss_sum).sum();
        let correct: usize = steps.iter().map(|s| s.correct).sum();
        let t_eval = Instant::now();
        let (test_loss, test_accuracy) = if self.test.is_empty() {
            (f32::NAN, f32::NAN)
        } else {
            evaluate(self.net, store, self.test, 64)?
        };
        Ok(EpochRecord {
            epoch: end.epoch + 1,
            step: end.step,
            train_loss: (loss_sum / seen as f64) as f32,
            train_accuracy: correct as f32 / seen as f32,
            test_loss,
            test_accuracy,
            lr: end.lr,
            // The test evaluation is part of the epoch's time, as before the engine.
            seconds: end.seconds + t_eval.elapsed().as_secs_f64(),
        })
    }
}

/// Trains `net` with cross-entropy on `train`, evaluating on `test` after every epoch: a
/// classification task on the engine ([`run`]).
///
/// # Errors
/// [`Error::NonFinite`] naming the step whose loss was NaN or infinite; checkpoint errors; an
/// empty training set; a resume checkpoint made for another configuration.
pub fn fit(
    net: &dyn Module,
    store: &mut ParamStore,
    opt: &mut dyn Optimizer,
    train: &[Sample],
    test: &[Sample],
    cfg: &FitConfig,
    observer: &mut dyn Observer<EpochRecord>,
) -> Result<RunReport<EpochRecord>> {
    if train.is_empty() {
        return Err(Error::arg("fit", "the training set is empty"));
    }
    let mut task = Classify {
        net,
        train,
        test,
        cfg,
        order: vec![],
    };
    let opts = RunOptions {
        epochs: cfg.epochs,
        schedule: cfg.schedule.clone(),
        checkpoint: cfg.checkpoint.clone(),
        checkpoint_every: cfg.checkpoint_every,
        resume: cfg.resume,
        stop_after: cfg.stop_after,
        config_text: cfg.config_text.clone(),
    };
    run(&mut task, store, opt, &opts, observer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(h: usize, w: usize) -> Vec<f32> {
        (0..h * w).map(|i| (i * i % 17) as f32).collect()
    }

    fn warped(w: &Warp, src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        let mut dst = vec![f32::NAN; rows * cols];
        w.apply(src, rows, cols, &mut dst);
        dst
    }

    #[test]
    fn a_whole_pixel_shift_copies_pixels_and_replicates_the_edge() {
        let (h, w) = (5, 4);
        let src = ramp(h, w);
        let shift = Warp {
            zoom: 1.0,
            angle: 0.0,
            shift: (2.0, -1.0),
            flip: false,
        };
        let dst = warped(&shift, &src, h, w);
        for y in 0..h {
            for x in 0..w {
                let (sy, sx) = ((y + 2).min(h - 1), (x as isize - 1).max(0) as usize);
                assert_eq!(dst[y * w + x], src[sy * w + sx], "({y}, {x})");
            }
        }
    }

    #[test]
    fn a_quarter_turn_of_a_square_image_moves_every_pixel_exactly() {
        let n = 5;
        let src = ramp(n, n);
        let turn = Warp {
            zoom: 1.0,
            angle: std::f32::consts::FRAC_PI_2,
            shift: (0.0, 0.0),
            flip: false,
        };
        let dst = warped(&turn, &src, n, n);
        // Output (y, x) samples source (x, n - 1 - y): x' = -v + c, y' = u + c.
        for y in 0..n {
            for x in 0..n {
                let want = src[x * n + (n - 1 - y)];
                assert!((dst[y * n + x] - want).abs() < 1e-4, "({y}, {x})");
            }
        }
    }

    #[test]
    fn zooming_in_by_two_samples_half_way_between_pixels() {
        // A horizontal ramp 0..6 (centre 3): zoom 2 maps output x to source 3 + (x - 3) / 2.
        let (h, w) = (1, 7);
        let src: Vec<f32> = (0..w).map(|x| x as f32).collect();
        let zoom = Warp {
            zoom: 2.0,
            angle: 0.0,
            shift: (0.0, 0.0),
            flip: false,
        };
        let dst = warped(&zoom, &src, h, w);
        let want = [1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5];
        assert_eq!(dst, want);
    }

    #[test]
    fn augment_with_only_flip_mirrors_and_keeps_every_value() {
        let img = Tensor::from_vec(ramp(3, 4), &[1, 3, 4]).unwrap();
        let aug = Augment {
            crop_pad: 0,
            flip: true,
            jitter: 0.0,
            scale: 0.0,
            rotate_degrees: 0.0,
            erase: 0.0,
        };
        let src = img.to_vec();
        let mut seen_mirror = false;
        for seed in 0..8 {
            let out = augment(&img, &aug, &mut ChaCha8Rng::seed_from_u64(seed)).to_vec();
            let mirror: Vec<f32> = (0..12).map(|i| src[(i / 4) * 4 + 3 - i % 4]).collect();
            assert!(out == src || out == mirror, "seed {seed}: {out:?}");
            seen_mirror |= out == mirror && out != src;
        }
        assert!(seen_mirror, "no mirror in 8 draws");
    }

    #[test]
    fn augmenting_an_empty_image_returns_it() {
        let img = Tensor::zeros(&[1, 0, 0]);
        let aug = Augment {
            crop_pad: 2,
            flip: true,
            jitter: 0.1,
            scale: 0.1,
            rotate_degrees: 5.0,
            erase: 0.5,
        };
        let out = augment(&img, &aug, &mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!(out.shape(), &[1, 0, 0]);
    }

    #[test]
    fn erasing_fills_one_rectangle_with_the_mean_and_keeps_the_rest() {
        let (h, w) = (12, 10);
        let src: Vec<f32> = (0..h * w).map(|i| 100.0 + i as f32).collect();
        let mean = src.iter().sum::<f32>() / (h * w) as f32;
        let img = Tensor::from_vec(src.clone(), &[1, h, w]).unwrap();
        let aug = Augment {
            crop_pad: 0,
            flip: false,
            jitter: 0.0,
            scale: 0.0,
            rotate_degrees: 0.0,
            erase: 1.0,
        };
        for seed in 0..20 {
            let out = augment(&img, &aug, &mut ChaCha8Rng::seed_from_u64(seed)).to_vec();
            let hit: Vec<usize> = (0..h * w).filter(|&i| out[i] != src[i]).collect();
            assert!(!hit.is_empty(), "seed {seed}: nothing erased");
            assert!(
                hit.iter().all(|&i| (out[i] - mean).abs() < 1e-3),
                "seed {seed}"
            );
            let (rows, cols): (Vec<usize>, Vec<usize>) =
                hit.iter().map(|&i| (i / w, i % w)).unzip();
            let (y0, y1) = (*rows.iter().min().unwrap(), *rows.iter().max().unwrap());
            let (x0, x1) = (*cols.iter().min().unwrap(), *cols.iter().max().unwrap());
            // One filled rectangle (the mean pixel itself may sit inside it unchanged).
            let inside = (y1 - y0 + 1) * (x1 - x0 + 1);
            assert!(hit.len() + 1 >= inside, "seed {seed}: not one rectangle");
            // At most 40 % of the image, plus what rounding each side can add.
            assert!(
                inside <= (0.4 * (h * w) as f32).ceil() as usize + w,
                "seed {seed}: {inside} px"
            );
        }
    }
}
