//! `cnn train classifier`: a small CNN trained from scratch on a folder of class folders.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nn::ModelSeed;
use nn::data::{gray_to_tensor, load_gray, load_rgb, resize_rgb, rgb_to_tensor};
use nn::models::small_cnn::{SmallCnn, SmallCnnConfig};
use nn::optim::Adam;
use nn::plot::Chart;
use nn::train::{Augment, EpochRecord, FitConfig, ImageFolder, decode_all, fit};
use tensor::Tensor;

#[derive(clap::Subcommand, Debug)]
pub enum TrainCommand {
    /// Train an image classifier on DATA (one sub-folder of images per class); writes
    /// metrics.csv, metrics.json, curves.png and model.ckpt under --out.
    Classifier(ClassifierArgs),
}

#[derive(clap::Args, Debug)]
pub struct ClassifierArgs {
    /// Folder with one sub-folder of images per class (any format the `image` crate reads).
    #[arg(long)]
    data: PathBuf,
    /// Output folder.
    #[arg(long, default_value = "out/classifier")]
    out: PathBuf,
    /// Training images per class (the rest are the test set), chosen by --seed.
    #[arg(long, default_value_t = 7)]
    train_per_class: usize,
    /// Epochs.
    #[arg(long, default_value_t = 40)]
    epochs: usize,
    /// Batch size.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Peak learning rate (Adam; linear warm-up over one epoch, then cosine to 0).
    #[arg(long, default_value_t = 3e-3, value_parser = crate::args::learning_rate, allow_negative_numbers = true)]
    lr: f32,
    /// Seed of the split, the initialisation, shuffling, augmentation and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Input size HxW the images are resized to (default: half the first image's size, its
    /// longest side at most 128).
    #[arg(long)]
    size: Option<String>,
    /// 1 (grey) or 3 (RGB) input channels.
    #[arg(long, default_value_t = 1)]
    channels: usize,
    /// Channels of the three conv blocks.
    #[arg(long, default_value = "32,64,128")]
    widths: String,
    /// Turn augmentation (random crop, flip, brightness/contrast jitter) off.
    #[arg(long)]
    no_augment: bool,
    /// Checkpoint every N epochs (and at the end).
    #[arg(long, default_value_t = 5)]
    checkpoint_every: usize,
    /// Continue from OUT/model.ckpt.
    #[arg(long)]
    resume: bool,
    /// Stop after N epochs of this run, as if interrupted (for testing --resume).
    #[arg(long)]
    stop_after: Option<usize>,
    /// End with one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(cmd: TrainCommand) -> Result<()> {
    match cmd {
        TrainCommand::Classifier(a) => classifier(&a),
    }
}

fn decode(path: &Path, channels: usize, (h, w): (u32, u32)) -> nn::Result<Tensor> {
    if channels == 1 {
        let g = load_gray(path)?;
        let g = image::imageops::resize(&g, w, h, image::imageops::FilterType::Triangle);
        Ok(gray_to_tensor(&g).affine(1.0 / 0.25, -0.5 / 0.25))
    } else {
        let img = resize_rgb(&load_rgb(path)?, w, h);
        Ok(rgb_to_tensor(
            &img,
            nn::data::IMAGENET_MEAN,
            nn::data::IMAGENET_STD,
        ))
    }
}

/// The input size when `--size` is not given: half the first image's, its longest side at most
/// [`DEFAULT_MAX_SIDE`] (one large photo first in the folder must not make every input huge).
fn default_input_size(first: &image::GrayImage) -> (u32, u32) {
    let (h, w) = ((first.height() / 2).max(1), (first.width() / 2).max(1));
    let scale = (DEFAULT_MAX_SIDE as f64 / h.max(w) as f64).min(1.0);
    let fit = |v: u32| ((v as f64 * scale).round() as u32).max(8);
    (fit(h), fit(w))
}

/// The longest side of the default input size.
const DEFAULT_MAX_SIDE: u32 = 128;

fn classifier(a: &ClassifierArgs) -> Result<()> {
    crate::args::output_outside_data(&a.out, &a.data)?;
    crate::args::output_dir(&a.out, "--out")?;
    if a.channels != 1 && a.channels != 3 {
        bail!("--channels must be 1 or 3, got {}", a.channels);
    }
    let widths = crate::args::parse_list("--widths", &a.widths)?;
    let widths: [usize; 3] = widths
        .try_into()
        .map_err(|_| anyhow::anyhow!("--widths needs three numbers"))?;
    let given_size = a.size.as_deref().map(crate::args::parse_size).transpose()?;
    let folder = ImageFolder::scan(&a.data)?;
    let (train_files, test_files) = folder.split(a.train_per_class, a.seed)?;
    let size = match given_size {
        Some(s) => s,
        None => default_input_size(&load_gray(&folder.files[0].0)?),
    };
    // Every image is held decoded at once: the set must fit one input's memory.
    let per = 4 * a.channels as u64 * u64::from(size.0) * u64::from(size.1);
    let n = (train_files.len() + test_files.len()) as u64;
    anyhow::ensure!(
        nn::limits::checked_bytes(n, per).is_some(),
        "{n} images at {}x{}: {}; use a smaller --size",
        size.0,
        size.1,
        nn::limits::too_large("the decoded set", n.checked_mul(per))
    );
    let t_load = std::time::Instant::now();
    let unreadable = || {
        format!(
            "--data {}: every image must decode (move the file named next out of the folder, or fix it)",
            a.data.display()
        )
    };
    let train =
        decode_all(&train_files, |p| decode(p, a.channels, size)).with_context(unreadable)?;
    let test = decode_all(&test_files, |p| decode(p, a.channels, size)).with_context(unreadable)?;
    eprintln!(
        "{} classes, {} training and {} test images at {}x{}, decoded in {:.2}s",
        folder.classes.len(),
        train.len(),
        test.len(),
        size.0,
        size.1,
        t_load.elapsed().as_secs_f64()
    );
    let cfg = SmallCnnConfig {
        rank: 2,
        kernel: 3,
        in_channels: a.channels,
        widths,
        classes: folder.classes.len(),
        dropout: 0.2,
    };
    let mut seed = ModelSeed::new(a.seed);
    let net = SmallCnn::new(&mut seed.builder(), &cfg)?;
    let mut store = seed.store;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let fit_cfg = FitConfig {
        augment: (!a.no_augment).then_some(Augment {
            crop_pad: 4,
            flip: true,
            jitter: 0.1,
            scale: 0.0,
            rotate_degrees: 0.0,
            erase: 0.0,
        }),
        label_smoothing: 0.1,
        checkpoint_every: a.checkpoint_every,
        resume: a.resume,
        stop_after: a.stop_after,
        config_text: format!(
            "{{\"model\":\"small_cnn\",\"widths\":{widths:?},\"channels\":{},\"classes\":{},\"size\":[{},{}],\"data\":{:?},\"train_per_class\":{},\"seed\":{},\"epochs\":{},\"batch\":{},\"lr\":{}}}",
            a.channels,
            cfg.classes,
            size.0,
            size.1,
            a.data.display().to_string(),
            a.train_per_class,
            a.seed,
            a.epochs,
            a.batch,
            a.lr
        ),
        ..FitConfig::warmup_cosine(
            a.epochs,
            a.batch,
            train.len(),
            a.lr,
            0.0,
            a.seed,
            Some(a.out.join("model.ckpt")),
            String::new(),
        )
    };
    let mut opt = Adam::adamw(a.lr, 5e-4);
    let mut bars = crate::common::EpochBars::new(!a.json, |_: &EpochRecord| {});
    let report = fit(
        &net, &mut store, &mut opt, &train, &test, &fit_cfg, &mut bars,
    )?;
    for r in &report.history {
        eprintln!(
            "epoch {:>3}/{}  train loss {:.4} acc {:5.1}%  test loss {:.4} acc {:5.1}%  lr {:.2e}  {:.2}s",
            r.epoch,
            a.epochs,
            r.train_loss,
            100.0 * r.train_accuracy,
            r.test_loss,
            100.0 * r.test_accuracy,
            r.lr,
            r.seconds
        );
    }
    write_metrics(&a.out, &report.history)?;
    let last = report.history.last().context("no epoch ran")?;
    let train_seconds: f64 = report.history.iter().map(|r| r.seconds).sum();
    if report.interrupted {
        eprintln!(
            "stopped after epoch {} (--stop-after); continue with --resume",
            last.epoch
        );
    }
    eprintln!(
        "test accuracy {:.2}% after {} epochs, {:.1}s of training; wrote {}",
        100.0 * last.test_accuracy,
        last.epoch,
        train_seconds,
        a.out.display()
    );
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "test_accuracy": last.test_accuracy,
                "test_loss": last.test_loss,
                "train_accuracy": last.train_accuracy,
                "train_seconds": train_seconds,
                "epochs": last.epoch,
                "steps": last.step,
                "interrupted": report.interrupted,
                "threads": rayon::current_num_threads(),
                "out": a.out.display().to_string(),
            })
        );
    }
    Ok(())
}

fn write_metrics(out: &Path, history: &[EpochRecord]) -> Result<()> {
    let mut csv =
        String::from("epoch,step,train_loss,train_accuracy,test_loss,test_accuracy,lr,seconds\n");
    for r in history {
        csv += &format!(
            "{},{},{},{},{},{},{},{}\n",
            r.epoch,
            r.step,
            r.train_loss,
            r.train_accuracy,
            r.test_loss,
            r.test_accuracy,
            r.lr,
            r.seconds
        );
    }
    nn::checkpoint::write_atomic(&out.join("metrics.csv"), csv.as_bytes())?;
    nn::checkpoint::write_atomic(
        &out.join("metrics.json"),
        serde_json::to_string_pretty(history)?.as_bytes(),
    )?;
    let pts = |f: fn(&EpochRecord) -> f32| {
        history
            .iter()
            .map(|r| (r.epoch as f64, f(r) as f64))
            .collect::<Vec<_>>()
    };
    let chart = Chart::lines(
        "Training",
        "epoch",
        "loss / accuracy",
        vec![
            ("train loss", pts(|r| r.train_loss)),
            ("test loss", pts(|r| r.test_loss)),
            ("train accuracy", pts(|r| r.train_accuracy)),
            ("test accuracy", pts(|r| r.test_accuracy)),
        ],
    );
    chart.save_png(&out.join("curves.png"))?;
    Ok(())
}
