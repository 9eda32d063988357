//! `cargo xtask demo`: the project's main job on bundled data only. Trains a triplet embedding
//! (FaceNet, batch-hard mining) on ORL people s1-s30, chooses tau on them, verifies all pairs of
//! the 10 unseen people s31-s40, then enrols one image per unseen person and recognises their
//! other images, rejecting people never enrolled. Writes a report under --out.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use faces::data::Identities;
use faces::eval::{
    ScoredPair, accuracy_at, auc, best_threshold, eer, kfold_accuracy, roc, val_at_far,
};
use faces::mining::Mining;
use faces::model::{EmbeddingConfig, EmbeddingNet};
use faces::oneshot::{all_pairs, one_shot};
use faces::train::{TripletConfig, embed, train_triplet};
use nn::ModelSeed;
use nn::plot::{Chart, PALETTE, Series};
use nn::train::Augment;

#[derive(clap::Args, Debug)]
pub(crate) struct DemoArgs {
    /// Folder per person (default: the bundled ORL faces).
    #[arg(long)]
    data: Option<PathBuf>,
    /// People used for training (the rest are never seen).
    #[arg(long, default_value_t = 30)]
    train_people: usize,
    /// Output folder.
    #[arg(long, default_value = "out/demo")]
    out: PathBuf,
    /// Epochs of 20 batches of 16 people x 4 images.
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    /// Triplet selection: random, hardest, semi-hard, batch-hard.
    #[arg(long, default_value = "batch-hard")]
    mining: String,
    /// Margin alpha (squared distances of unit vectors).
    #[arg(long, default_value_t = 0.5)]
    margin: f32,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Channels of the embedding network's conv blocks.
    #[arg(long, default_value = "32,64,128")]
    widths: String,
    /// Embedding size.
    #[arg(long, default_value_t = 128)]
    dim: usize,
    /// People per batch.
    #[arg(long, default_value_t = 16)]
    people_per_batch: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 2e-3)]
    lr: f32,
    /// Input size HxW the faces are resized to (ORL originals are 112x92).
    #[arg(long, default_value = "56x46")]
    size: String,
    /// End with one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

fn bundled_orl() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/faces/assets/orl")
}

/// Pixel-space "embeddings": each image flattened and scaled to unit length (the nearest-
/// neighbour-on-pixels baseline).
fn pixel_embeddings(ids: &Identities) -> (Vec<f32>, Vec<usize>, usize) {
    let flat = ids.flat();
    let dim = flat[0].1.numel();
    let mut out = Vec::with_capacity(flat.len() * dim);
    for (_, t) in &flat {
        let v = t.to_vec();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        out.extend(v.iter().map(|x| x / norm));
    }
    (out, flat.iter().map(|f| f.0).collect(), dim)
}

pub(crate) fn demo(a: &DemoArgs) -> Result<()> {
    let t0 = Instant::now();
    let dir = a.data.clone().unwrap_or_else(bundled_orl);
    let (h, w) = crate::args::parse_size(&a.size)?;
    let all = Identities::load_grey(&dir, h, w)
        .with_context(|| format!("loading faces from {}", dir.display()))?;
    anyhow::ensure!(
        all.len() > a.train_people + 1,
        "{} has {} people; need more than --train-people {}",
        dir.display(),
        all.len(),
        a.train_people
    );
    let (train, test) = (
        all.slice(0..a.train_people),
        all.slice(a.train_people..all.len()),
    );
    eprintln!(
        "{} people: training on {} ({}..{}), {} never seen ({}..{})",
        all.len(),
        train.len(),
        train.names[0],
        train.names[train.len() - 1],
        test.len(),
        test.names[0],
        test.names[test.len() - 1]
    );
    let mining: Mining = a.mining.parse().map_err(anyhow::Error::msg)?;
    let widths = crate::args::parse_list("--widths", &a.widths)?;
    let cfg = EmbeddingConfig {
        in_channels: 1,
        widths,
        dim: a.dim,
    };
    let mut seed = ModelSeed::new(a.seed);
    let net = EmbeddingNet::new(&mut seed.builder(), &cfg)?;
    let mut store = seed.store;
    let tcfg = TripletConfig {
        epochs: a.epochs,
        steps_per_epoch: 20,
        p: a.people_per_batch,
        k: 4,
        margin: a.margin,
        mining,
        lr: a.lr,
        seed: a.seed,
        augment: Some(Augment {
            crop_pad: 3,
            flip: true,
            jitter: 0.1,
        }),
    };
    let log = train_triplet(&net, &mut store, &train, &tcfg, |e| {
        eprintln!(
            "epoch {:>3}/{}  triplet loss {:.4}  active {:5.1}%  d(A,P) {:.3}  d(A,N) {:.3}  {:.2}s",
            e.epoch,
            a.epochs,
            e.loss,
            100.0 * e.active_fraction,
            e.mean_dap,
            e.mean_dan,
            e.seconds
        )
    })?;
    let train_seconds = t0.elapsed().as_secs_f64();
    // tau from the training people's pairs; verification on the unseen people's pairs.
    let embed_ids = |ids: &Identities| -> Result<(Vec<f32>, Vec<usize>)> {
        let flat = ids.flat();
        let imgs: Vec<&tensor::Tensor> = flat.iter().map(|f| f.1).collect();
        Ok((
            embed(&net, &store, &imgs, 64)?,
            flat.iter().map(|f| f.0).collect(),
        ))
    };
    let (tr_emb, tr_lab) = embed_ids(&train)?;
    let (tau, train_acc) = best_threshold(&all_pairs(&tr_emb, &tr_lab, cfg.dim));
    let (te_emb, te_lab) = embed_ids(&test)?;
    let pairs = all_pairs(&te_emb, &te_lab, cfg.dim);
    let acc = accuracy_at(&pairs, tau);
    let curve = roc(&pairs);
    let (area, err, val) = (auc(&curve), eer(&curve), val_at_far(&curve, 1e-3));
    let mut shuffled: Vec<usize> = (0..pairs.len()).collect();
    use rand::seq::SliceRandom;
    shuffled.shuffle(&mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(a.seed));
    let folds: Vec<Vec<usize>> = (0..10)
        .map(|f| shuffled.iter().copied().skip(f).step_by(10).collect())
        .collect();
    let kf = kfold_accuracy(&pairs, &folds);
    let closed = one_shot(&te_emb, &te_lab, cfg.dim, test.len(), tau);
    let open = one_shot(&te_emb, &te_lab, cfg.dim, test.len() / 2, tau);
    // Baselines beside each result.
    let (px, pl, pdim) = pixel_embeddings(&test);
    let ppairs = all_pairs(&px, &pl, pdim);
    let (ptr, ptl, _) = pixel_embeddings(&train);
    let (ptau, _) = best_threshold(&all_pairs(&ptr, &ptl, pdim));
    let pixel_acc = accuracy_at(&ppairs, ptau);
    let pixel_auc = auc(&roc(&ppairs));
    let pixel_rank1 = one_shot(&px, &pl, pdim, test.len(), ptau).rank1;
    let majority = pairs.iter().filter(|p| !p.same).count() as f64 / pairs.len() as f64;
    let chance_rank1 = 1.0 / test.len() as f64;
    let seconds = t0.elapsed().as_secs_f64();
    write_report(
        a,
        &log,
        &curve,
        &pairs,
        tau,
        train_acc,
        acc,
        area,
        err,
        val,
        &kf,
        &closed,
        &open,
        pixel_acc,
        pixel_auc,
        pixel_rank1,
        majority,
        chance_rank1,
        train_seconds,
        seconds,
    )?;
    eprintln!(
        "\nVerification on all {} pairs of the {} unseen people (tau = {tau:.4} chosen on the training people, where it scores {:.2} %):",
        pairs.len(),
        test.len(),
        100.0 * train_acc
    );
    eprintln!(
        "  accuracy {:.2} %   (pixels: {:.2} %, always \"different\": {:.2} %)",
        100.0 * acc,
        100.0 * pixel_acc,
        100.0 * majority
    );
    eprintln!(
        "  10-fold accuracy {:.2} % +- {:.2}",
        100.0 * kf.mean,
        100.0 * kf.std
    );
    eprintln!(
        "  AUC {area:.4} (pixels {pixel_auc:.4})   EER {:.2} %   VAL@FAR=1e-3 {:.2} %",
        100.0 * err,
        100.0 * val
    );
    eprintln!(
        "One-shot (one enrolled image per person, the other {} images as probes):",
        closed.probes
    );
    eprintln!(
        "  rank-1 {:.2} %   (pixels {:.2} %, chance {:.2} %)",
        100.0 * closed.rank1,
        100.0 * pixel_rank1,
        100.0 * chance_rank1
    );
    eprintln!(
        "  open set ({} enrolled, {} never enrolled): identified {:.2} % of enrolled probes, rejected {:.2} % of strangers",
        test.len() / 2,
        test.len() - test.len() / 2,
        100.0 * open.detect_and_identify,
        100.0 * open.impostor_rejection
    );
    eprintln!(
        "Report: {}/report.md ({:.1} s in all)",
        a.out.display(),
        seconds
    );
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "verification_accuracy": acc,
                "kfold_accuracy": kf.mean,
                "kfold_std": kf.std,
                "auc": area,
                "eer": err,
                "val_at_far": val,
                "tau": tau,
                "oneshot_rank1": closed.rank1,
                "open_set_identified": open.detect_and_identify,
                "open_set_rejected": open.impostor_rejection,
                "pixel_verification_accuracy": pixel_acc,
                "pixel_oneshot_rank1": pixel_rank1,
                "n_pairs": pairs.len(),
                "train_seconds": train_seconds,
                "seconds": seconds,
                "mining": a.mining,
                "epochs": a.epochs,
            })
        );
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn write_report(
    a: &DemoArgs,
    log: &[faces::train::TripletEpoch],
    curve: &[faces::eval::RocPoint],
    pairs: &[ScoredPair],
    tau: f32,
    train_acc: f64,
    acc: f64,
    area: f64,
    err: f64,
    val: f64,
    kf: &faces::eval::KFold,
    closed: &faces::oneshot::OneShot,
    open: &faces::oneshot::OneShot,
    pixel_acc: f64,
    pixel_auc: f64,
    pixel_rank1: f64,
    majority: f64,
    chance_rank1: f64,
    train_seconds: f64,
    seconds: f64,
) -> Result<()> {
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let pts = |f: fn(&faces::train::TripletEpoch) -> f32| {
        log.iter()
            .map(|e| (e.epoch as f64, f(e) as f64))
            .collect::<Vec<_>>()
    };
    Chart::lines(
        "TRIPLET TRAINING",
        "EPOCH",
        "LOSS / FRACTION / DISTANCE",
        vec![
            ("LOSS", pts(|e| e.loss)),
            ("ACTIVE TRIPLETS", pts(|e| e.active_fraction)),
            ("D(A,P)", pts(|e| e.mean_dap)),
            ("D(A,N)", pts(|e| e.mean_dan)),
        ],
    )
    .save_png(&a.out.join("training.png"))?;
    Chart {
        title: "ROC, UNSEEN PEOPLE".into(),
        x_label: "FALSE ACCEPT RATE".into(),
        y_label: "TRUE ACCEPT RATE".into(),
        series: vec![Series {
            name: format!("AUC {area:.4}"),
            points: curve.iter().map(|p| (p.far, p.tar)).collect(),
            color: PALETTE[0],
        }],
        y_range: Some((0.0, 1.0)),
    }
    .save_png(&a.out.join("roc.png"))?;
    let report = format!(
        "# Face verification and one-shot recognition on ORL\n\n\
         Trained from scratch with the triplet loss ({} mining, margin {}) on people 1-{} for {} epochs \
         ({:.1} s); evaluated on the {} people never seen in training.\n\n\
         | measure | ours | nearest neighbour on pixels | chance / trivial |\n|---|---:|---:|---:|\n\
         | verification accuracy, all {} pairs, tau = {:.4} from training people | {:.2} % | {:.2} % | {:.2} % (always \"different\") |\n\
         | 10-fold verification accuracy (tau from 9 folds) | {:.2} % +- {:.2} | | |\n\
         | ROC AUC | {:.4} | {:.4} | 0.5 |\n| EER | {:.2} % | | 50 % |\n| VAL @ FAR = 1e-3 | {:.2} % | | |\n\
         | one-shot rank-1 ({} probes, 1 enrolled image each) | {:.2} % | {:.2} % | {:.2} % |\n\
         | open set: enrolled probes identified within tau | {:.2} % | | |\n\
         | open set: strangers rejected | {:.2} % | | |\n\n\
         tau scores {:.2} % on the training people's pairs. Total time {:.1} s.\n\n\
         ![training](training.png)\n\n![ROC](roc.png)\n\n\
         Faces: the ORL Database of Faces, AT&T Laboratories Cambridge.\n",
        a.mining,
        a.margin,
        a.train_people,
        a.epochs,
        train_seconds,
        kf.fold_accuracy.len(),
        pairs.len(),
        tau,
        100.0 * acc,
        100.0 * pixel_acc,
        100.0 * majority,
        100.0 * kf.mean,
        100.0 * kf.std,
        area,
        pixel_auc,
        100.0 * err,
        100.0 * val,
        closed.probes,
        100.0 * closed.rank1,
        100.0 * pixel_rank1,
        100.0 * chance_rank1,
        100.0 * open.detect_and_identify,
        100.0 * open.impostor_rejection,
        100.0 * train_acc,
        seconds
    );
    nn::checkpoint::write_atomic(&a.out.join("report.md"), report.as_bytes())?;
    Ok(())
}
