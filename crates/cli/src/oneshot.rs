//! `cnn oneshot train|eval`: one-shot learning on Omniglot (train on the background set,
//! score the 20 official 20-way runs and random episodes).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use faces::data::{Preprocess, load_omniglot_npz, load_oneshot_runs};
use faces::eval::{Episodes, episodes};
use faces::model::{FaceModel, squared_l2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::faces::{
    ModelArgs, ObjectiveArgs, choose_tau, new_model, save_training_curves, train_model,
};

#[derive(clap::Subcommand, Debug)]
pub enum OneShotCommand {
    /// Train on Omniglot's background set only.
    Train(Box<OneShotTrainArgs>),
    /// The 20 official 20-way one-shot runs (400 trials) and random N-way k-shot episodes on
    /// the evaluation set, beside the pixel and chance baselines.
    Eval(OneShotEvalArgs),
}

#[derive(clap::Args, Debug)]
pub struct OneShotTrainArgs {
    /// Omniglot folder (npz/images_background.npz, one_shot_runs/).
    #[arg(long)]
    omniglot: PathBuf,
    /// Where the model is written.
    #[arg(long)]
    out: PathBuf,
    /// Continue an interrupted run from OUT.ckpt.
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    objective: ObjectiveArgs,
}

#[derive(clap::Args, Debug)]
pub struct OneShotEvalArgs {
    /// A model written by `oneshot train`.
    #[arg(long)]
    model: PathBuf,
    /// Omniglot folder.
    #[arg(long)]
    omniglot: PathBuf,
    /// Random episodes per setting on the evaluation set.
    #[arg(long, default_value_t = 1000)]
    episodes: usize,
    /// Seed of the episodes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// End with one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

fn omniglot_file(dir: &Path, name: &str) -> Result<PathBuf> {
    [dir.join("npz").join(name), dir.join(name)]
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| format!("{} has no {name} (in it or in npz/)", dir.display()))
}

pub(crate) fn oneshot(cmd: OneShotCommand) -> Result<()> {
    match cmd {
        OneShotCommand::Train(a) => oneshot_train(&a),
        OneShotCommand::Eval(a) => oneshot_eval(&a),
    }
}

fn oneshot_train(a: &OneShotTrainArgs) -> Result<()> {
    let t0 = Instant::now();
    crate::args::output_file(&a.out, "--out")?;
    let (h, w) = crate::args::parse_size(a.model.size.as_deref().unwrap_or("28x28"))?;
    anyhow::ensure!(h == w, "Omniglot images are square: --size {h}x{w}");
    let pre = Preprocess::grey(h, w);
    let mut model = new_model(&a.model, &a.objective, pre, None)?;
    let path = omniglot_file(&a.omniglot, "images_background.npz")?;
    let data = load_omniglot_npz(&path, h)?;
    eprintln!(
        "background set: {} characters, {} images ({:.1} s to load)",
        data.len(),
        data.num_images(),
        t0.elapsed().as_secs_f64()
    );
    let has_head = model.head.is_some();
    let log = train_model(
        &mut model,
        &data,
        &a.objective,
        false,
        has_head && !a.resume,
        Some(a.out.with_extension("ckpt")),
        a.resume,
    )?;
    let (tau, _) = choose_tau(&model, &data.slice(0..100), a.objective.seed)?;
    model.spec.tau = tau;
    model.save(&a.out)?;
    save_training_curves(&a.out.with_extension("training.png"), &log)?;
    eprintln!(
        "model written to {} ({:.1} s)",
        a.out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn oneshot_eval(a: &OneShotEvalArgs) -> Result<()> {
    let t0 = Instant::now();
    let model = FaceModel::load(&a.model)
        .with_context(|| format!("loading model {}", a.model.display()))?;
    let size = model.spec.preprocess.size.0;
    let runs_dir = a.omniglot.join("one_shot_runs");
    let runs = load_oneshot_runs(&runs_dir, size)?;
    let dim = model.dim();
    let (acc, per_run) = faces::oneshot::official_runs_accuracy(
        &runs,
        |imgs| model.embed(imgs, 64).map(|e| (e, dim)),
        &model.scorer(),
    )?;
    let (px_acc, _) = faces::oneshot::official_runs_accuracy(
        &runs,
        |imgs| Ok::<_, nn::Error>(faces::oneshot::pixel_rows(imgs)),
        squared_l2,
    )?;
    let trials: usize = runs.iter().map(|r| r.test.len()).sum();
    eprintln!(
        "Official 20-way one-shot runs ({} runs, {trials} trials): {:.2} %   (pixels {:.2} %, chance {:.2} %)",
        runs.len(),
        100.0 * acc,
        100.0 * px_acc,
        100.0 / runs.first().map_or(20, |r| r.training.len()) as f64
    );
    eprintln!(
        "  per run: {}",
        per_run
            .iter()
            .map(|a| format!("{:.0}", 100.0 * a))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let eval = load_omniglot_npz(&omniglot_file(&a.omniglot, "images_evaluation.npz")?, size)?;
    let per_class: Vec<Vec<f32>> = eval
        .images
        .iter()
        .map(|imgs| model.embed(&imgs.iter().collect::<Vec<_>>(), 64))
        .collect::<nn::Result<_>>()?;
    let px_class: Vec<Vec<f32>> = eval
        .images
        .iter()
        .map(|imgs| faces::oneshot::pixel_rows(&imgs.iter().collect::<Vec<_>>()).0)
        .collect();
    let pdim = eval.images[0][0].numel();
    let mut rows: Vec<(Episodes, Episodes)> = vec![];
    for (n, k) in [(20, 1), (5, 1), (20, 5), (5, 5)] {
        let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
        let ours = episodes(&per_class, dim, n, k, 1, a.episodes, &mut rng);
        let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
        let px = episodes(&px_class, pdim, n, k, 1, a.episodes, &mut rng);
        eprintln!(
            "{n}-way {k}-shot, {} random episodes on the evaluation set: {:.2} % +- {:.2}   (pixels {:.2} %, chance {:.2} %)",
            ours.episodes,
            100.0 * ours.accuracy,
            100.0 * ours.ci95,
            100.0 * px.accuracy,
            100.0 / n as f64
        );
        rows.push((ours, px));
    }
    eprintln!("{:.1} s", t0.elapsed().as_secs_f64());
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "official_runs_accuracy": acc,
                "official_runs_per_run": per_run,
                "official_runs_pixel_accuracy": px_acc,
                "trials": trials,
                "episodes": rows.iter().map(|(o, p)| serde_json::json!({
                    "n_way": o.n_way, "k_shot": o.k_shot, "episodes": o.episodes,
                    "accuracy": o.accuracy, "ci95": o.ci95, "pixel_accuracy": p.accuracy,
                })).collect::<Vec<_>>(),
                "seconds": t0.elapsed().as_secs_f64(),
            })
        );
    }
    Ok(())
}
