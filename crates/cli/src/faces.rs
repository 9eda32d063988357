//! `cnn faces train|eval` and `cnn oneshot train|eval`: learning and measuring a
//! similarity function on faces (folder per person, LFW) and on Omniglot characters. The demo
//! uses the same pieces.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use faces::data::{
    Identities, LabelledPair, Preprocess, check_pair_images, parse_pairs, parse_people,
    read_protocol,
};
use faces::embedder::Embedder;
use faces::eval::{RocPoint, ScoredPair, Verification, best_threshold};
use faces::heads::HeadKind;
use faces::mining::Mining;
use faces::model::{Backbone, EmbeddingConfig, FaceModel, FaceModelSpec, FaceStream, squared_l2};
use faces::oneshot::{index_pairs, score_pairs};
use faces::resnet29::SquareBox;
use faces::train::{CheckpointOptions, EpochLog, Objective, TrainConfig, init_head_bias, train};
use nn::plot::Chart;
use nn::train::Augment;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::common::{EmbedderArgs, parse_crop_box, save_roc};
use crate::lfw::{LfwAlign, encode_lfw_pairs, lfw_dirs};

/// The embedding network's shape.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ModelArgs {
    /// Body: `conv` (conv-BN-ReLU-pool blocks from scratch) or `squeezenet` (the bundled
    /// ImageNet SqueezeNet 1.1, cut at --cut and fine-tuned).
    #[arg(long, default_value = "squeezenet")]
    pub backbone: String,
    /// Channels of the conv blocks (their number is the depth).
    #[arg(long, default_value = "32,64,128")]
    pub widths: String,
    /// Last SqueezeNet feature index kept (0-12).
    #[arg(long, default_value_t = 9)]
    pub cut: usize,
    /// Embedding size.
    #[arg(long, default_value_t = 128)]
    pub dim: usize,
    /// Pooling grid before the embedding layer: 1 = global average, 2 = 2 x 2 averages.
    #[arg(long, default_value_t = 1)]
    pub pool_grid: usize,
    /// Input size HxW the images are resized to (default per data set).
    #[arg(long)]
    pub size: Option<String>,
    /// Box `X,Y,W,H` (pixels) cut from each image before resizing to --size.
    #[arg(long)]
    pub face_box: Option<String>,
    /// 1 (grey) or 3 (RGB) input channels.
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// Embed each image and its mirror image and average them (faces: yes; characters: no).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub flip_average: bool,
    /// Keep the pretrained body fixed and train only what follows it (with few identities,
    /// fine-tuning the body overfits them).
    #[arg(long)]
    pub freeze_backbone: bool,
    /// Keep SqueezeNet features 0..N fixed and fine-tune the rest (0: fine-tune all).
    #[arg(long, default_value_t = 0)]
    pub freeze_below: usize,
    /// SqueezeNet weights (default: the bundled file).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// A second, frozen stream: the bundled face ResNet-29 on the square `X,Y,SIDE` (pixels of
    /// the resized input; it may reach beyond the image), or `none`. Default: none, but the
    /// demo's ORL box (`-6,22,104` at 112 x 92, scaled with --size) for `demo`.
    #[arg(long, allow_hyphen_values = true)]
    pub face_stream: Option<String>,
    /// Share of the face stream in the squared distance, in (0, 1).
    #[arg(long, default_value_t = 0.85)]
    pub face_stream_weight: f32,
}

impl ModelArgs {
    /// The face stream of --face-stream (`default` when the flag is absent) and
    /// --face-stream-weight.
    pub(crate) fn face_stream(&self, default: Option<SquareBox>) -> Result<Option<FaceStream>> {
        let face_box = match self.face_stream.as_deref() {
            None => default,
            Some("none") => None,
            Some(text) => {
                let v: Vec<f32> = text
                    .split(',')
                    .map(|p| p.trim().parse::<f32>())
                    .collect::<Result<_, _>>()
                    .ok()
                    .filter(|v: &Vec<f32>| v.len() == 3 && v.iter().all(|x| x.is_finite()))
                    .with_context(|| {
                        format!("--face-stream {text:?}: expected X,Y,SIDE in pixels or `none`")
                    })?;
                anyhow::ensure!(v[2] > 0.0, "--face-stream {text:?}: SIDE must be positive");
                Some(SquareBox {
                    x: v[0],
                    y: v[1],
                    side: v[2],
                })
            }
        };
        let w = self.face_stream_weight;
        anyhow::ensure!(
            face_box.is_none() || (w > 0.0 && w < 1.0),
            "--face-stream-weight {w} must lie strictly between 0 and 1"
        );
        Ok(face_box.map(|face_box| FaceStream {
            face_box,
            weight: w,
            weights_sha256: String::new(),
        }))
    }

    /// Preprocessing of a folder of ORL-like faces: --face-box, --size, --channels.
    pub(crate) fn face_folder_preprocess(&self) -> Result<Preprocess> {
        let (h, w) = crate::args::parse_size(self.size.as_deref().unwrap_or("112x92"))?;
        Ok(Preprocess {
            channels: self.channels,
            crop: match &self.face_box {
                Some(text) => Some(parse_crop_box("--face-box", text)?),
                None => None,
            },
            ..Preprocess::grey(h, w)
        })
    }
}

/// How the model is trained.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ObjectiveArgs {
    /// triplet | contrastive | deepface-l1 (eq. 3) | deepface-chi2 (eq. 4).
    #[arg(long, default_value = "triplet")]
    pub loss: String,
    /// Triplet selection: random | hardest | semi-hard | batch-hard.
    #[arg(long, default_value = "batch-hard")]
    pub mining: String,
    /// Margin: alpha of the triplet loss (squared distances, default 1.5) or the contrastive
    /// margin on distances (default 1.0).
    #[arg(long, value_parser = crate::args::non_negative, allow_negative_numbers = true)]
    pub margin: Option<f32>,
    /// Epochs.
    #[arg(long, default_value_t = 15)]
    pub epochs: usize,
    /// Batches per epoch.
    #[arg(long, default_value_t = 20)]
    pub steps_per_epoch: usize,
    /// Identities per batch (P).
    #[arg(long, default_value_t = 16)]
    pub people_per_batch: usize,
    /// Images per identity per batch (K).
    #[arg(long, default_value_t = 4)]
    pub images_per_person: usize,
    /// Peak learning rate (Adam; warm-up one epoch, cosine decay).
    #[arg(long, default_value_t = 3e-4, value_parser = crate::args::learning_rate, allow_negative_numbers = true)]
    pub lr: f32,
    /// Decoupled weight decay (AdamW).
    #[arg(long, default_value_t = 0.0, value_parser = crate::args::non_negative, allow_negative_numbers = true)]
    pub weight_decay: f32,
    /// Random-crop padding of the training augmentation, in pixels (0 turns augmentation off).
    #[arg(long, default_value_t = 3)]
    pub crop_pad: usize,
    /// Mirror training images left-right at random.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub flip: bool,
    /// Zoom training images by a random factor in [1 - z, 1 + z] (0 turns it off).
    // Range checked (with the reason) in `objective`; NaN fails that check too.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub zoom_aug: f32,
    /// Rotate training images by a random angle in [-r, r] degrees (0 turns it off).
    // Range checked (with the reason) in `objective`; NaN fails that check too.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub rotate_aug: f32,
    /// Probability of random erasing: a random rectangle of the training image set to its mean.
    // Range checked (with the reason) in `objective`; NaN fails that check too.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub erase_aug: f32,
    /// Seed of initialisation, batches and augmentation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl ObjectiveArgs {
    pub(crate) fn objective(&self) -> Result<(Objective, Option<HeadKind>, bool)> {
        anyhow::ensure!(
            (0.0..1.0).contains(&self.zoom_aug),
            "--zoom-aug {} must be in [0, 1)",
            self.zoom_aug
        );
        anyhow::ensure!(
            (0.0..=180.0).contains(&self.rotate_aug),
            "--rotate-aug {} must be in [0, 180] degrees",
            self.rotate_aug
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.erase_aug),
            "--erase-aug {} is a probability, in [0, 1]",
            self.erase_aug
        );
        Ok(match self.loss.as_str() {
            "triplet" => (
                Objective::Triplet {
                    mining: self.mining.parse::<Mining>().map_err(anyhow::Error::msg)?,
                    margin: self.margin.unwrap_or(1.5),
                },
                None,
                false,
            ),
            "contrastive" => (
                Objective::Contrastive {
                    margin: self.margin.unwrap_or(1.0),
                },
                None,
                false,
            ),
            "deepface-l1" => (Objective::DeepFaceHead, Some(HeadKind::L1), false),
            "deepface-chi2" => (Objective::DeepFaceHead, Some(HeadKind::ChiSquare), true),
            other => {
                bail!("unknown --loss {other:?} (triplet, contrastive, deepface-l1, deepface-chi2)")
            }
        })
    }

    fn train_config(&self, objective: Objective, frozen: bool) -> TrainConfig {
        TrainConfig {
            objective,
            epochs: self.epochs,
            steps_per_epoch: self.steps_per_epoch,
            p: self.people_per_batch,
            k: self.images_per_person,
            lr: self.lr,
            weight_decay: self.weight_decay,
            seed: self.seed,
            augment: (self.crop_pad > 0
                || self.flip
                || self.zoom_aug > 0.0
                || self.rotate_aug > 0.0
                || self.erase_aug > 0.0)
                .then_some(Augment {
                    crop_pad: self.crop_pad,
                    flip: self.flip,
                    jitter: 0.1,
                    scale: self.zoom_aug,
                    rotate_degrees: self.rotate_aug,
                    erase: self.erase_aug,
                }),
            frozen_embedding: frozen,
        }
    }
}

/// Builds a fresh model (pretrained body loaded) for `pre` from the command line.
/// A new model of --backbone etc.; `default_face_box` is the face stream's box without
/// --face-stream.
pub(crate) fn new_model(
    m: &ModelArgs,
    o: &ObjectiveArgs,
    pre: Preprocess,
    default_face_box: Option<SquareBox>,
) -> Result<FaceModel> {
    let (objective, head, non_negative) = o.objective()?;
    let backbone = match m.backbone.as_str() {
        "conv" => Backbone::Conv {
            widths: crate::args::parse_list("--widths", &m.widths)?,
        },
        "squeezenet" => Backbone::SqueezeNet { cut: m.cut },
        other => bail!("unknown --backbone {other:?} (conv, squeezenet)"),
    };
    let spec = FaceModelSpec {
        preprocess: pre,
        embedding: EmbeddingConfig {
            in_channels: m.channels,
            backbone,
            dim: m.dim,
            pool_grid: m.pool_grid,
            non_negative,
        },
        head,
        tau: 0.0,
        trained_with: format!("{objective:?}"),
        flip_average: m.flip_average,
        face_stream: m.face_stream(default_face_box)?,
    };
    let mut model = FaceModel::new(spec, o.seed, 0.0)?;
    let weights = m
        .weights
        .clone()
        .unwrap_or_else(nn::models::squeezenet::bundled_weights);
    model
        .net
        .load_pretrained(&mut model.store, &weights)
        .with_context(|| format!("loading SqueezeNet weights from {}", weights.display()))?;
    if m.freeze_backbone {
        model.store.freeze("backbone");
    }
    anyhow::ensure!(
        m.freeze_below == 0
            || (m.backbone == "squeezenet"
                && m.freeze_below <= nn::models::squeezenet::LAST_FEATURE + 1),
        "--freeze-below {} needs the squeezenet body and at most {}",
        m.freeze_below,
        nn::models::squeezenet::LAST_FEATURE + 1
    );
    for i in 0..m.freeze_below {
        model.store.freeze(&format!("backbone.features.{i}."));
    }
    Ok(model)
}

/// Trains `model` on `data` (printing one line per epoch) and returns the log; `init_bias`
/// first sets a new DeepFace head's starting bias from one batch.
pub(crate) fn train_model(
    model: &mut FaceModel,
    data: &Identities,
    o: &ObjectiveArgs,
    frozen: bool,
    init_bias: bool,
    checkpoint: Option<PathBuf>,
    resume: bool,
) -> Result<Vec<EpochLog>> {
    let (objective, _, _) = o.objective()?;
    let cfg = o.train_config(objective, frozen);
    if init_bias && model.head.is_some() {
        let b = init_head_bias(model, data, &cfg)?;
        eprintln!("DeepFace head: bias starts at {b:.3}");
    }
    let epochs = cfg.epochs;
    let what = match objective {
        Objective::Triplet { .. } => ("active triplets", "d(A,P)", "d(A,N)"),
        Objective::Contrastive { .. } => ("active pairs", "d same", "d diff"),
        Objective::DeepFaceHead => ("misclassified", "score same", "score diff"),
    };
    let log = train(
        model,
        data,
        &cfg,
        &CheckpointOptions {
            path: checkpoint,
            resume,
        },
        &mut crate::common::EpochBars::new(true, |e: &EpochLog| {
            eprintln!(
                "epoch {:>3}/{epochs}  loss {:.4}  {} {:5.1}%  {} {:.3}  {} {:.3}  lr {:.2e}  {:.1}s",
                e.epoch,
                e.loss,
                what.0,
                100.0 * e.active_fraction,
                what.1,
                e.mean_same,
                what.2,
                e.mean_different,
                e.lr,
                e.seconds
            )
        }),
    )?;
    Ok(log)
}

/// Chooses tau at the best accuracy on (a sample of) the pairs of `ids`; returns (tau, accuracy).
pub(crate) fn choose_tau(model: &FaceModel, ids: &Identities, seed: u64) -> Result<(f32, f64)> {
    let (emb, labels) = faces::oneshot::embed_identities(model, ids)?;
    let pairs = index_pairs(&labels, 20_000, &mut ChaCha8Rng::seed_from_u64(seed));
    Ok(best_threshold(&score_pairs(
        &emb,
        model.dim(),
        &pairs,
        model.scorer(),
    )))
}

/// Saves the training curves as a PNG.
pub(crate) fn save_training_curves(path: &Path, log: &[EpochLog]) -> Result<()> {
    let pts = |f: fn(&EpochLog) -> f32| {
        log.iter()
            .map(|e| (e.epoch as f64, f(e) as f64))
            .collect::<Vec<_>>()
    };
    Chart::lines(
        "Training",
        "epoch",
        "loss / fraction / score",
        vec![
            ("loss", pts(|e| e.loss)),
            ("active fraction", pts(|e| e.active_fraction)),
            ("mean score, same person", pts(|e| e.mean_same)),
            ("mean score, different people", pts(|e| e.mean_different)),
        ],
    )
    .save_png(path)?;
    Ok(())
}

fn print_verification(
    label: &str,
    v: &Verification,
    baseline: Option<&Verification>,
    different: f64,
) {
    eprintln!("{label}: {} pairs", v.n_pairs);
    eprintln!(
        "  accuracy {:.2} % +- {:.2}   (pixels: {}; always \"{}\": {:.2} %)",
        100.0 * v.accuracy,
        100.0 * v.std,
        baseline.map_or("-".into(), |b| format!("{:.2} %", 100.0 * b.accuracy)),
        if different >= 0.5 {
            "different"
        } else {
            "same"
        },
        100.0 * different.max(1.0 - different)
    );
    eprintln!(
        "  AUC {:.4} (pixels {})   EER {:.2} %   VAL@FAR=1e-3 {:.2} %   tau {:.4}",
        v.auc,
        baseline.map_or("-".into(), |b| format!("{:.4}", b.auc)),
        100.0 * v.eer,
        100.0 * v.val_at_far,
        v.tau
    );
}

fn json_line(v: &Verification, extra: serde_json::Value) -> String {
    let mut j = serde_json::to_value(v).expect("serialisable");
    if let (Some(o), Some(e)) = (j.as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            o.insert(k.clone(), x.clone());
        }
    }
    j.to_string()
}

// ---------------------------------------------------------------------------------------------
// faces

#[derive(clap::Subcommand, Debug)]
pub enum FacesCommand {
    /// Train an embedding (and head) on faces; tau is chosen on the training identities' pairs.
    Train(Box<FacesTrainArgs>),
    /// Verification on LFW (View 1: tau from pairsDevTrain, scored on pairsDevTest; View 2:
    /// 10-fold on pairs.txt) or on every pair of a folder-per-person tree (10-fold).
    Eval(Box<FacesEvalArgs>),
    /// Find the faces in photos: boxes, scores and 68 landmarks (`--draw DIR` writes each
    /// photo with them drawn).
    Detect(crate::recognise::DetectCmdArgs),
    /// Are two photos the same person? (the largest face of each; distance against tau)
    Verify(crate::recognise::VerifyArgs),
    /// Why two faces are judged alike or not: occlusion maps of both (which regions drive
    /// their distance), drawn into a picture.
    Explain(crate::recognise::ExplainArgs),
    /// Add people to a gallery (created when missing): their encodings, not their images.
    /// Re-enrolling encodes only new or changed images.
    Enroll(crate::recognise::EnrollArgs),
    /// Who is in these images? Nearest enrolled person, or unknown beyond tau.
    Identify(crate::recognise::IdentifyArgs),
    /// Set a gallery's tau from labelled data (best accuracy or a target false-accept rate).
    Calibrate(crate::recognise::CalibrateArgs),
    /// List, remove or rename the people of a gallery.
    Gallery {
        #[command(subcommand)]
        what: crate::recognise::GalleryCommand,
    },
    /// Open-set identification on LFW: enrol one image of some people, probe with their other
    /// images and with people never enrolled.
    Openset(crate::studies::OpenSetArgs),
    /// DeepFace heads (eq. 3, eq. 4) on frozen encodings against the plain distance, LFW
    /// View 2 (heads and tau fit on the 9 training folds of each split).
    Heads(crate::studies::HeadsArgs),
    /// Latency, batch throughput and memory of exact search over 10k-1M synthetic encodings.
    SearchBench(crate::studies::SearchBenchArgs),
}

#[derive(clap::Args, Debug)]
pub struct FacesTrainArgs {
    /// Folder per person (ORL), or the LFW root with --lfw-people.
    #[arg(long)]
    data: PathBuf,
    /// LFW people file naming the training identities (e.g. peopleDevTrain.txt); the images
    /// are read from --data (its lfw-deepfunneled/ folder, or --data itself).
    #[arg(long)]
    lfw_people: Option<PathBuf>,
    /// Use only the first N identities (natural order: ORL s1..sN).
    #[arg(long)]
    train_people: Option<usize>,
    /// Where the model is written.
    #[arg(long)]
    out: PathBuf,
    /// Continue an interrupted run from OUT.ckpt.
    #[arg(long)]
    resume: bool,
    /// Start from this model's weights (e.g. to train a head on its embedding).
    #[arg(long)]
    from: Option<PathBuf>,
    /// Train only the DeepFace head on the frozen embedding of --from.
    #[arg(long)]
    frozen: bool,
    /// LFW crop: the central SIDE x SIDE square of the 250 x 250 images.
    #[arg(long, default_value_t = 120)]
    crop: u32,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    objective: ObjectiveArgs,
}

pub(crate) fn faces(cmd: FacesCommand) -> Result<()> {
    match cmd {
        FacesCommand::Train(a) => faces_train(&a),
        FacesCommand::Eval(a) => faces_eval(&a),
        FacesCommand::Detect(a) => crate::recognise::detect(&a),
        FacesCommand::Verify(a) => crate::recognise::verify(&a),
        FacesCommand::Explain(a) => crate::recognise::explain(&a),
        FacesCommand::Enroll(a) => crate::recognise::enroll(&a),
        FacesCommand::Identify(a) => crate::recognise::identify(&a),
        FacesCommand::Calibrate(a) => crate::recognise::calibrate(&a),
        FacesCommand::Gallery { what } => crate::recognise::gallery(&what),
        FacesCommand::Openset(a) => crate::studies::openset(&a),
        FacesCommand::Heads(a) => crate::studies::heads(&a),
        FacesCommand::SearchBench(a) => crate::studies::search_bench(&a),
    }
}

fn faces_train(a: &FacesTrainArgs) -> Result<()> {
    let t0 = Instant::now();
    crate::args::output_file(&a.out, "--out")?;
    // (model, train only its head, the head is new and needs its starting bias)
    let (mut model, frozen, new_head) = match &a.from {
        Some(from) => {
            let mut m =
                FaceModel::load(from).with_context(|| format!("loading {}", from.display()))?;
            let (objective, head, _) = a.objective.objective()?;
            if let Some(kind) = head {
                // A new head on the loaded embedding.
                let mut spec = m.spec.clone();
                spec.head = Some(kind);
                spec.trained_with = format!("{} + {objective:?}", m.spec.trained_with);
                let mut fresh = FaceModel::new(spec, a.objective.seed, 0.0)?;
                for id in m.store.ids().collect::<Vec<_>>() {
                    let name = m.store.name(id).to_string();
                    let dst = fresh
                        .store
                        .id(&name)
                        .with_context(|| format!("{name} missing"))?;
                    fresh.store.set(dst, m.store.get(id).clone())?;
                }
                m = fresh;
            }
            (m, a.frozen, head.is_some())
        }
        None => {
            if a.frozen {
                bail!("--frozen needs --from MODEL (the embedding to freeze)");
            }
            let pre = match &a.lfw_people {
                Some(_) => {
                    anyhow::ensure!(
                        a.model.face_box.is_none(),
                        "--face-box is for a folder per person; LFW images take --crop"
                    );
                    let s = a.model.size.as_deref().unwrap_or("64x64");
                    let (h, w) = crate::args::parse_size(s)?;
                    anyhow::ensure!(h == w, "LFW crops are square: --size {s}");
                    Preprocess::lfw(a.model.channels, h, a.crop)
                }
                None => a.model.face_folder_preprocess()?,
            };
            let m = new_model(&a.model, &a.objective, pre, None)?;
            let has_head = m.head.is_some();
            (m, false, has_head)
        }
    };
    let data = load_train_faces(a, &model.spec.preprocess)?;
    eprintln!(
        "training on {} identities, {} images ({:.1} s to load)",
        data.len(),
        data.num_images(),
        t0.elapsed().as_secs_f64()
    );
    let ckpt = a.out.with_extension("ckpt");
    let log = train_model(
        &mut model,
        &data,
        &a.objective,
        frozen,
        new_head && !a.resume,
        Some(ckpt),
        a.resume,
    )?;
    let (tau, acc) = choose_tau(&model, &data, a.objective.seed)?;
    model.spec.tau = tau;
    model.save(&a.out)?;
    let curves = a.out.with_extension("training.png");
    save_training_curves(&curves, &log)?;
    eprintln!(
        "tau {tau:.4} (accuracy {:.2} % on training pairs); model written to {}, curves to {} ({:.1} s)",
        100.0 * acc,
        a.out.display(),
        curves.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn load_train_faces(a: &FacesTrainArgs, pre: &Preprocess) -> Result<Identities> {
    let mut data = match &a.lfw_people {
        Some(list) => {
            let (images, _) = lfw_dirs(&a.data).unwrap_or((a.data.clone(), a.data.clone()));
            let people = read_protocol(list, parse_people)?;
            Identities::load_lfw(&images, &people, pre)?
        }
        None => Identities::load(&a.data, pre)
            .with_context(|| format!("loading faces from {}", a.data.display()))?,
    };
    if let Some(n) = a.train_people {
        anyhow::ensure!(
            n >= 2 && n <= data.len(),
            "--train-people {n}: the data has {} identities",
            data.len()
        );
        data = data.slice(0..n);
    }
    Ok(data)
}

#[derive(clap::Args, Debug)]
pub struct FacesEvalArgs {
    #[command(flatten)]
    model: EmbedderArgs,
    /// LFW root (images in lfw-deepfunneled/ or itself, protocol files in protocol/ or itself).
    #[arg(long, conflicts_with = "pairs_dir")]
    lfw: Option<PathBuf>,
    /// LFW view: 1 (tau from pairsDevTrain, scored on pairsDevTest), 2 (10-fold pairs.txt) or
    /// `devtest` (10 folds inside pairsDevTest, the face-detection spec's protocol: fold k =
    /// same pairs 50k.. and different pairs 50k.., 50 of each).
    #[arg(long, default_value = "2")]
    view: String,
    /// With --align on LFW, the subject of each image: `centre` (a face box containing the
    /// image centre) or `nearest` (the face nearest the centre, wherever it is).
    #[arg(long, default_value = "centre")]
    subject: String,
    /// With --align on LFW, also write every aligned chip into this folder (PNG, one folder
    /// per person), e.g. to feed them to another implementation.
    #[arg(long)]
    dump_chips: Option<PathBuf>,
    /// A folder per person: every pair of its images (sampled beyond 20,000 of each kind),
    /// 10-fold.
    #[arg(long)]
    pairs_dir: Option<PathBuf>,
    /// Skip the first N identities of --pairs-dir (e.g. the ones trained on).
    #[arg(long, default_value_t = 0)]
    skip_people: usize,
    /// Folder for roc.png and result.json.
    #[arg(long)]
    out: Option<PathBuf>,
    /// End with one JSON object on the last line.
    #[arg(long)]
    json: bool,
    /// Find the faces in the photos (detector, 68 landmarks, dlib's aligned chip) instead of
    /// a fixed crop; with --lfw, each image's subject is the face containing the centre.
    #[arg(long)]
    align: bool,
    /// With --lfw --view 2 or devtest: only the first K of the 10 folds, k-fold among them (a
    /// quicker check; the protocol's figure needs all 10).
    #[arg(long, value_parser = clap::value_parser!(u64).range(2..=10))]
    folds: Option<u64>,
}

/// What one evaluation reports: its label, the model's and the pixel baseline's verification,
/// the model's ROC, and the share of different-person pairs.
type EvalResult = (String, Verification, Vec<RocPoint>, Verification, f64);

fn faces_eval(a: &FacesEvalArgs) -> Result<()> {
    let t0 = Instant::now();
    anyhow::ensure!(
        a.folds.is_none() || (a.lfw.is_some() && matches!(a.view.as_str(), "2" | "devtest")),
        "--folds is for --lfw with --view 2 or devtest (the protocols made of 10 folds)"
    );
    if let Some(out) = &a.out {
        crate::args::output_dir(out, "--out")?;
    }
    if let Some(dir) = &a.dump_chips {
        crate::args::output_dir(dir, "--dump-chips")?;
    }
    let lfw_default = a.lfw.as_ref().map(|_| faces::resnet29::LFW_CROP);
    let model = a.model.load(lfw_default, a.align)?;
    eprintln!(
        "model {}: {} (its own tau {:.4})",
        a.model.model,
        model.describe(),
        model.tau()
    );
    let (label, v, curve, base, different) = if let Some(lfw) = &a.lfw {
        let (images, protocol) = lfw_dirs(lfw)?;
        let choice = &LfwAlign {
            subject: match a.subject.as_str() {
                "centre" => faces::detect::SubjectChoice::ContainsCentre,
                "nearest" => faces::detect::SubjectChoice::NearestCentre,
                s => bail!("--subject takes centre or nearest, not {s:?}"),
            },
            dump_chips: a.dump_chips.clone(),
        };
        match a.view.as_str() {
            "devtest" => {
                let p = protocol.join("pairsDevTest.txt");
                let pairs = read_protocol(&p, parse_pairs)?;
                check_pair_images(&images, &pairs, &p)?;
                // Pairs are listed same first, then different, in equal numbers.
                let half = pairs.iter().filter(|q| q.same).count();
                let per = half.div_ceil(10).max(1);
                let mut folds = vec![vec![]; 10];
                for (i, q) in pairs.iter().enumerate() {
                    let k = if q.same { i / per } else { (i - half) / per };
                    folds[k.min(9)].push(i);
                }
                lfw_kfold(
                    "LFW View 1 pairsDevTest, 10 folds inside it",
                    (&model, &images, choice),
                    &pairs,
                    &folds,
                    a.folds,
                )?
            }
            "1" => {
                let read = |name: &str| -> Result<Vec<LabelledPair>> {
                    let p = protocol.join(name);
                    let pairs = read_protocol(&p, parse_pairs)?;
                    check_pair_images(&images, &pairs, &p)?;
                    Ok(pairs)
                };
                let (train, test) = (read("pairsDevTrain.txt")?, read("pairsDevTest.txt")?);
                let (tr, tr_px) = score_lfw_pairs(&model, &images, &train, choice)?;
                let (te, te_px) = score_lfw_pairs(&model, &images, &test, choice)?;
                let (tau, _) = best_threshold(&tr);
                let (ptau, _) = best_threshold(&tr_px);
                let (v, curve) = faces::eval::verify_at(&te, tau);
                let (b, _) = faces::eval::verify_at(&te_px, ptau);
                (
                    "LFW View 1 (pairsDevTest, tau from pairsDevTrain)".to_string(),
                    v,
                    curve,
                    b,
                    faces::eval::different_share(test.iter().map(|p| &p.same)),
                )
            }
            "2" => {
                let p = protocol.join("pairs.txt");
                let pairs = read_protocol(&p, parse_pairs)?;
                check_pair_images(&images, &pairs, &p)?;
                let nf = pairs.iter().map(|q| q.fold).max().map_or(0, |f| f + 1);
                let folds: Vec<Vec<usize>> = (0..nf)
                    .map(|f| (0..pairs.len()).filter(|&i| pairs[i].fold == f).collect())
                    .collect();
                lfw_kfold(
                    "LFW View 2 (pairs.txt, 10 folds, tau from 9)",
                    (&model, &images, choice),
                    &pairs,
                    &folds,
                    a.folds,
                )?
            }
            v => bail!("--view must be 1, 2 or devtest, not {v:?}"),
        }
    } else if let Some(dir) = &a.pairs_dir {
        let all = load_people_for_eval(&model, dir)?;
        anyhow::ensure!(
            all.len() >= a.skip_people + 2,
            "{} has {} identities; --skip-people {} leaves fewer than 2",
            dir.display(),
            all.len(),
            a.skip_people
        );
        let ids = all.slice(a.skip_people..all.len());
        eprintln!(
            "{} images of {} people (after --skip-people {})",
            ids.num_images(),
            ids.len(),
            a.skip_people
        );
        let r = faces::oneshot::verify_identities(&model, &ids, 0)?;
        let (v, curve, b, different) = (r.model, r.roc, r.pixels, r.different_share);
        let label = if v.n_pairs < all_pairs_count(&ids) {
            "pairs of the folder (sampled: 20,000 of each kind at most), 10 random folds"
        } else {
            "every pair of the folder, 10 random folds"
        };
        (label.to_string(), v, curve, b, different)
    } else {
        bail!("give --lfw DIR or --pairs-dir DIR");
    };
    print_verification(&label, &v, Some(&base), different);
    if let Some(out) = &a.out {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        save_roc(
            &out.join("roc.png"),
            "ROC",
            &[(format!("AUC {:.4}", v.auc), &curve)],
        )?;
        nn::checkpoint::write_atomic(
            &out.join("result.json"),
            json_line(&v, serde_json::json!({})).as_bytes(),
        )?;
        eprintln!("ROC and JSON written to {}", out.display());
    }
    eprintln!("{:.1} s", t0.elapsed().as_secs_f64());
    if a.json {
        println!(
            "{}",
            json_line(
                &v,
                serde_json::json!({
                    "protocol": label,
                    "pixel_accuracy": base.accuracy,
                    "pixel_auc": base.auc,
                    "seconds": t0.elapsed().as_secs_f64(),
                })
            )
        );
    }
    Ok(())
}

/// The number of pairs of all images of `ids`.
fn all_pairs_count(ids: &Identities) -> usize {
    let n = ids.num_images();
    n * n.saturating_sub(1) / 2
}

/// A folder per person for evaluation: through the face detector (largest face of each
/// photo, unreadable photos and photos without a face reported and left out) when the model
/// detects faces, else each image is the face. One file rule for every command
/// (`recognise::image_files`).
fn load_people_for_eval(model: &Embedder, dir: &Path) -> Result<Identities> {
    let people = nn::data::class_folders(dir, "person")?;
    let mut ids = Identities {
        names: vec![],
        images: vec![],
    };
    let mut skipped = 0;
    for (name, folder) in &people {
        let files = nn::data::image_files(folder)?;
        let decoded = crate::common::decode(model, &files);
        for (f, why) in &decoded.bad {
            eprintln!(
                "skipped {}: {}",
                f.display(),
                crate::common::reason_for(f, why)
            );
        }
        skipped += decoded.bad.len();
        let mut images = vec![];
        for (f, faces) in decoded.files {
            match crate::common::largest(&faces) {
                Some(face) => images.push(face.input.clone()),
                None => {
                    eprintln!("skipped {}: no face found", f.display());
                    skipped += 1;
                }
            }
        }
        ids.names.push(name.clone());
        ids.images.push(images);
    }
    if skipped > 0 {
        eprintln!("{skipped} image(s) skipped");
    }
    Ok(ids)
}

/// LFW pairs scored by `(model, image root, face choice)` and verified in the given folds.
fn lfw_kfold(
    label: &'static str,
    (model, root, choice): (&Embedder, &Path, &LfwAlign),
    pairs: &[LabelledPair],
    folds: &[Vec<usize>],
    first: Option<u64>,
) -> Result<EvalResult> {
    // --folds K: the pairs of the first K folds only, renumbered.
    let (label, pairs, folds) = match first {
        Some(k) if (k as usize) < folds.len() => {
            let kept = &folds[..k as usize];
            let order: Vec<usize> = kept.iter().flatten().copied().collect();
            let subset: Vec<LabelledPair> = order.iter().map(|&i| pairs[i].clone()).collect();
            let mut next = 0;
            let renumbered: Vec<Vec<usize>> = kept
                .iter()
                .map(|f| {
                    next += f.len();
                    (next - f.len()..next).collect()
                })
                .collect();
            (
                format!("{label}; first {k} of {} folds only", folds.len()),
                subset,
                renumbered,
            )
        }
        _ => (label.to_string(), pairs.to_vec(), folds.to_vec()),
    };
    let (s, s_px) = score_lfw_pairs(model, root, &pairs, choice)?;
    let (v, curve) = faces::eval::verify_kfold(&s, &folds);
    let (b, _) = faces::eval::verify_kfold(&s_px, &folds);
    Ok((
        label,
        v,
        curve,
        b,
        faces::eval::different_share(pairs.iter().map(|p| &p.same)),
    ))
}

/// Scores LFW pairs with the model and with the pixel baseline.
fn score_lfw_pairs(
    model: &Embedder,
    root: &Path,
    pairs: &[LabelledPair],
    choice: &LfwAlign,
) -> Result<(Vec<ScoredPair>, Vec<ScoredPair>)> {
    let e = encode_lfw_pairs(model, root, pairs, choice)?;
    Ok((
        score_pairs(&e.emb, model.dim(), &e.idx, model.scorer()),
        score_pairs(&e.pixels, e.pixel_dim, &e.idx, squared_l2),
    ))
}
