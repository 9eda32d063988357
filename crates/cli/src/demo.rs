//! `cnn demo`: the project's main job on bundled data only. Trains a face embedding
//! (FaceNet triplet loss, batch-hard mining) on ORL people s1-s30, chooses tau on them, verifies
//! all pairs of the 10 unseen people s31-s40, then enrols one image per unseen person and
//! recognises their other images, rejecting people never enrolled. Writes a report under --out.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use faces::data::Identities;
use faces::eval::{Verification, best_threshold, verify_at, verify_kfold};
use faces::model::{FaceModel, squared_l2};
use faces::oneshot::{OneShot, all_pairs, one_shot, one_shot_every_enrolment};

use crate::common::save_roc;
use crate::faces::{
    ModelArgs, ObjectiveArgs, choose_tau, new_model, save_training_curves, train_model,
};

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Folder per person (default: the bundled ORL faces).
    #[arg(long)]
    data: Option<PathBuf>,
    /// People used for training (the rest are never seen).
    #[arg(long, default_value_t = 30)]
    train_people: usize,
    /// Model selection without the unseen people: keep only the --train-people, hold out the
    /// F-th of --validation-folds equal groups of them as "unseen" and train on the others.
    #[arg(long)]
    validation_fold: Option<usize>,
    /// Groups of training people for --validation-fold.
    #[arg(long, default_value_t = 3)]
    validation_folds: usize,
    /// Output folder.
    #[arg(long, default_value = "out/demo")]
    out: PathBuf,
    /// End with one JSON object on the last line.
    #[arg(long)]
    json: bool,
    /// Longest side of the demo's style transfer (0 skips it).
    #[arg(long, default_value_t = 256)]
    style_size: u32,
    /// L-BFGS iterations of the demo's style transfer.
    #[arg(long, default_value_t = 60)]
    style_iters: usize,
    /// Skip the group photo (faces found and named by the pretrained network).
    #[arg(long)]
    no_group_photo: bool,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    objective: ObjectiveArgs,
}

fn bundled_orl() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../faces/assets/orl")
}

pub(crate) fn demo(a: &DemoArgs) -> Result<()> {
    let t0 = Instant::now();
    let dir = a.data.clone().unwrap_or_else(bundled_orl);
    crate::args::output_outside_data(&a.out, &dir)?;
    crate::args::output_dir(&a.out, "--out")?;
    let pre = a.model.face_folder_preprocess()?;
    let all = Identities::load(&dir, &pre)
        .with_context(|| format!("loading faces from {}", dir.display()))?;
    anyhow::ensure!(
        all.len() > a.train_people + 1,
        "{} has {} people; need more than --train-people {}",
        dir.display(),
        all.len(),
        a.train_people
    );
    let (train, test) = match a.validation_fold {
        None => (
            all.slice(0..a.train_people),
            all.slice(a.train_people..all.len()),
        ),
        Some(f) => {
            let k = a.validation_folds;
            anyhow::ensure!(
                f < k && k >= 2 && a.train_people >= 2 * k,
                "--validation-fold {f} of --validation-folds {k}: need 0 <= fold < folds, folds >= 2 and at least 2 people per fold (--train-people {})",
                a.train_people
            );
            let known = all.slice(0..a.train_people);
            let held = f * known.len() / k..(f + 1) * known.len() / k;
            (known.without(held.clone()), known.slice(held))
        }
    };
    let span = |names: &[String]| match names {
        [first, .., last] => format!("{first}..{last}"),
        names => names.join(", "),
    };
    let split = match a.validation_fold {
        None => format!(
            "trained on {} people ({}), evaluated on the {} never seen ({})",
            train.len(),
            span(&train.names),
            test.len(),
            span(&test.names)
        ),
        Some(f) => format!(
            "validation fold {f} of {}: trained on {} of the first {} people ({} but {}), evaluated on the {} held out; the other {} people are not used",
            a.validation_folds,
            train.len(),
            a.train_people,
            span(&all.names[..a.train_people]),
            span(&test.names),
            test.len(),
            all.len() - a.train_people
        ),
    };
    eprintln!("{} people: {split}", all.len());
    // The face stream's ORL box, scaled with --size; not for a cropped input (the box would
    // be elsewhere) nor a DeepFace head (it scores pairs its own way).
    let face_box =
        (a.model.face_box.is_none() && a.objective.objective()?.1.is_none()).then(|| {
            let (sy, sx) = (pre.size.0 as f32 / 112.0, pre.size.1 as f32 / 92.0);
            let b = faces::resnet29::ORL_BOX;
            faces::resnet29::SquareBox {
                x: b.x * sx,
                y: b.y * sy,
                side: b.side * sx,
            }
        });
    let mut model = new_model(&a.model, &a.objective, pre, face_box)?;
    let has_head = model.head.is_some();
    let log = train_model(
        &mut model,
        &train,
        &a.objective,
        false,
        has_head,
        None,
        false,
    )?;
    let train_seconds = t0.elapsed().as_secs_f64();
    // tau from the training people's pairs; verification on the unseen people's pairs.
    let (tau, train_acc) = choose_tau(&model, &train, a.objective.seed)?;
    model.spec.tau = tau;
    let score = model.scorer();
    let dim = model.dim();
    let (te_emb, te_lab) = faces::oneshot::embed_identities(&model, &test)?;
    let pairs = all_pairs(&te_emb, &te_lab, dim, &score);
    let (fixed, curve) = verify_at(&pairs, tau);
    let kf = verify_kfold(
        &pairs,
        &faces::eval::random_folds(pairs.len(), 10, a.objective.seed),
    )
    .0;
    let closed = one_shot(&te_emb, &te_lab, dim, test.len(), tau, &score);
    let closed_every = one_shot_every_enrolment(&te_emb, &te_lab, dim, test.len(), tau, &score);
    let open = one_shot(&te_emb, &te_lab, dim, test.len() / 2, tau, &score);
    let streams = stream_parts(&model, &te_emb, &te_lab, test.len());
    // Baselines beside each result.
    let flat = |ids: &Identities| -> (Vec<f32>, Vec<usize>, usize) {
        let f = ids.flat();
        let (px, d) = faces::oneshot::pixel_rows(&f.iter().map(|x| x.1).collect::<Vec<_>>());
        (px, f.iter().map(|x| x.0).collect(), d)
    };
    let (px, pl, pdim) = flat(&test);
    let ppairs = all_pairs(&px, &pl, pdim, squared_l2);
    let (ptr, ptl, _) = flat(&train);
    let (ptau, _) = best_threshold(&all_pairs(&ptr, &ptl, pdim, squared_l2));
    let (pixel, _) = verify_at(&ppairs, ptau);
    let pixel_rank1 = one_shot(&px, &pl, pdim, test.len(), ptau, squared_l2).rank1;
    let pixel_rank1_every =
        one_shot_every_enrolment(&px, &pl, pdim, test.len(), ptau, squared_l2).rank1;
    let majority = pairs.iter().filter(|p| !p.same).count() as f64 / pairs.len() as f64;
    let chance_rank1 = 1.0 / test.len() as f64;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    save_training_curves(&a.out.join("training.png"), &log)?;
    save_roc(
        &a.out.join("roc.png"),
        "ROC, unseen people",
        &[(format!("AUC {:.4}", fixed.auc), &curve)],
    )?;
    model.save(&a.out.join("model.ckpt"))?;
    let group = if a.no_group_photo || a.validation_fold.is_some() || a.data.is_some() {
        None
    } else {
        eprintln!(
            "\nGroup photo: {} enrolled from one photo each, found and named with the face detector",
            span(&test.names)
        );
        let g =
            crate::group::group_photo(&dir, &train.names, &test.names, &a.out, a.objective.seed)?;
        eprintln!(
            "  {} of {} faces found, {} named right ({} people enrolled, tau {:.4} from the training people; {:.1} s)",
            g.detected, g.placed, g.correct, g.enrolled, g.tau, g.seconds
        );
        Some(g)
    };
    let style_seconds = if a.style_size > 0 {
        eprintln!("\nStyle transfer: the bundled cat photo painted as The Starry Night");
        Some(crate::style::demo_style(
            &a.out.join("style.png"),
            a.style_size,
            a.style_iters,
        )?)
    } else {
        None
    };
    let seconds = t0.elapsed().as_secs_f64();
    let r = Results {
        split,
        fixed,
        kf,
        closed,
        closed_every,
        open,
        pixel,
        pixel_rank1,
        pixel_rank1_every,
        majority,
        chance_rank1,
        train_acc,
        train_seconds,
        seconds,
        streams,
        group,
    };
    write_report(a, &model, &r)?;
    eprintln!(
        "\nVerification on all {} pairs of the {} unseen people (tau = {tau:.4} chosen on the training people, where it scores {:.2} %):",
        r.fixed.n_pairs,
        test.len(),
        100.0 * train_acc
    );
    eprintln!(
        "  accuracy {:.2} %   (pixels: {:.2} %, always \"different\": {:.2} %)",
        100.0 * r.fixed.accuracy,
        100.0 * r.pixel.accuracy,
        100.0 * majority
    );
    eprintln!(
        "  10-fold accuracy {:.2} % +- {:.2}",
        100.0 * r.kf.accuracy,
        100.0 * r.kf.std
    );
    eprintln!(
        "  AUC {:.4} (pixels {:.4})   EER {:.2} %   VAL@FAR=1e-3 {:.2} %",
        r.fixed.auc,
        r.pixel.auc,
        100.0 * r.fixed.eer,
        100.0 * r.fixed.val_at_far
    );
    eprintln!(
        "One-shot (one enrolled image per person, the other {} images as probes):",
        r.closed.probes
    );
    eprintln!(
        "  rank-1 {:.2} %   (pixels {:.2} %, chance {:.2} %)",
        100.0 * r.closed.rank1,
        100.0 * pixel_rank1,
        100.0 * chance_rank1
    );
    eprintln!(
        "  rank-1 with every image enrolled in turn ({} probes): {:.2} %   (pixels {:.2} %)",
        r.closed_every.probes,
        100.0 * r.closed_every.rank1,
        100.0 * r.pixel_rank1_every
    );
    for p in &r.streams {
        eprintln!(
            "  {} alone: AUC {:.4}, rank-1 {:.2} % (first image), {:.2} % (every image)",
            p.name,
            p.auc,
            100.0 * p.rank1,
            100.0 * p.rank1_every
        );
    }
    eprintln!(
        "  open set ({} enrolled, {} never enrolled): identified {:.2} % of enrolled probes, rejected {:.2} % of strangers",
        test.len() / 2,
        test.len() - test.len() / 2,
        100.0 * r.open.detect_and_identify,
        100.0 * r.open.impostor_rejection
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
                "verification_accuracy": r.fixed.accuracy,
                "kfold_accuracy": r.kf.accuracy,
                "kfold_std": r.kf.std,
                "auc": r.fixed.auc,
                "eer": r.fixed.eer,
                "val_at_far": r.fixed.val_at_far,
                "tau": tau,
                "oneshot_rank1": r.closed.rank1,
                "oneshot_rank1_every_enrolment": r.closed_every.rank1,
                "open_set_identified": r.open.detect_and_identify,
                "open_set_rejected": r.open.impostor_rejection,
                "pixel_verification_accuracy": r.pixel.accuracy,
                "pixel_oneshot_rank1": pixel_rank1,
                "n_pairs": r.fixed.n_pairs,
                "train_seconds": train_seconds,
                "seconds": seconds,
                "model": model.spec.trained_with,
                "style_seconds": style_seconds,
                "group_photo": r.group.as_ref().map(|g| serde_json::json!({
                    "placed": g.placed, "detected": g.detected, "named_right": g.correct,
                    "enrolled": g.enrolled, "tau": g.tau, "seconds": g.seconds,
                })),
                "epochs": a.objective.epochs,
                "validation_fold": a.validation_fold,
                "streams": r.streams.iter().map(|p| serde_json::json!({
                    "stream": p.name,
                    "auc": p.auc,
                    "oneshot_rank1": p.rank1,
                    "oneshot_rank1_every_enrolment": p.rank1_every,
                })).collect::<Vec<_>>(),
            })
        );
    }
    Ok(())
}

/// One stream of a two-stream model, measured alone on the unseen people.
struct StreamPart {
    name: &'static str,
    auc: f64,
    rank1: f64,
    rank1_every: f64,
}

/// With a face stream, each stream's own AUC and rank-1 (its columns of the encodings: a
/// constant factor away from its own distances, which neither measure sees); else nothing.
fn stream_parts(
    model: &FaceModel,
    emb: &[f32],
    labels: &[usize],
    people: usize,
) -> Vec<StreamPart> {
    if model.spec.face_stream.is_none() {
        return Vec::new();
    }
    let (dim, trained) = (model.dim(), model.spec.embedding.dim);
    [
        ("trained stream", 0..trained),
        ("face stream", trained..dim),
    ]
    .into_iter()
    .map(|(name, cols)| {
        let n = cols.len();
        let part: Vec<f32> = emb
            .chunks(dim)
            .flat_map(|r| r[cols.clone()].to_vec())
            .collect();
        let pairs = all_pairs(&part, labels, n, squared_l2);
        StreamPart {
            name,
            auc: verify_at(&pairs, 0.0).0.auc,
            rank1: one_shot(&part, labels, n, people, f32::INFINITY, squared_l2).rank1,
            rank1_every: one_shot_every_enrolment(
                &part,
                labels,
                n,
                people,
                f32::INFINITY,
                squared_l2,
            )
            .rank1,
        }
    })
    .collect()
}

struct Results {
    /// Each stream alone, for a two-stream model.
    streams: Vec<StreamPart>,
    /// Who was trained on and who was evaluated, in words.
    split: String,
    fixed: Verification,
    kf: Verification,
    closed: OneShot,
    closed_every: OneShot,
    open: OneShot,
    pixel: Verification,
    pixel_rank1: f64,
    pixel_rank1_every: f64,
    majority: f64,
    chance_rank1: f64,
    train_acc: f64,
    train_seconds: f64,
    seconds: f64,
    group: Option<crate::group::GroupResult>,
}

/// The report's group-photo paragraph.
fn group_section(g: Option<&crate::group::GroupResult>) -> String {
    let Some(g) = g else {
        return String::new();
    };
    format!(
        "## From a group photo to names\n\n\
         The pretrained face network (dlib's ResNet-29) behind the SSD face detector, 68 \
         landmarks and dlib's aligned chip: {} unseen people enrolled from one photo each (an \
         ORL face on a plain canvas), tau {:.4} chosen on the training people's photos. The \
         picture holds {} people, one of them never enrolled (should read `unknown`), each \
         from a photo that was not enrolled: {} faces found, {} named right ({:.1} s).\n\n\
         ![group photo](group.png)\n\n",
        g.enrolled, g.tau, g.placed, g.detected, g.correct, g.seconds
    )
}

fn write_report(a: &DemoArgs, model: &FaceModel, r: &Results) -> Result<()> {
    let streams = match &model.spec.face_stream {
        None => String::new(),
        Some(fs) => {
            let mut t = format!(
                "The model has two streams: the network trained here, and the pretrained face \
                 ResNet-29 (dlib's, frozen) on the square face box of side {} pixels at ({}, {}) (it may \
                 reach beyond the image); its encoding is both \
                 embeddings side by side, so its squared distance is {:.2} x the trained \
                 stream's + {:.2} x the face stream's. Each stream alone on the same people:\n\n\
                 | stream | ROC AUC | rank-1, first image | rank-1, every image |\n|---|---:|---:|---:|\n",
                fs.face_box.side,
                fs.face_box.x,
                fs.face_box.y,
                1.0 - fs.weight,
                fs.weight
            );
            for p in &r.streams {
                t += &format!(
                    "| {} | {:.4} | {:.2} % | {:.2} % |\n",
                    p.name,
                    p.auc,
                    100.0 * p.rank1,
                    100.0 * p.rank1_every
                );
            }
            t + "\n"
        }
    };
    let report = format!(
        "# Face verification and one-shot recognition on ORL\n\n\
         Trained from scratch or fine-tuned ({}) for {} epochs ({:.1} s); {}.\n\n\
         | measure | ours | nearest neighbour on pixels | chance / trivial |\n|---|---:|---:|---:|\n\
         | verification accuracy, all {} pairs, tau = {:.4} from training people | {:.2} % | {:.2} % | {:.2} % (always \"different\") |\n\
         | 10-fold verification accuracy (tau from 9 folds) | {:.2} % +- {:.2} | | |\n\
         | ROC AUC | {:.4} | {:.4} | 0.5 |\n| EER | {:.2} % | | 50 % |\n| VAL @ FAR = 1e-3 | {:.2} % | | |\n\
         | one-shot rank-1 ({} probes, 1 enrolled image each: the first) | {:.2} % | {:.2} % | {:.2} % |\n\
         | one-shot rank-1 ({} probes, every image enrolled in turn) | {:.2} % | {:.2} % | {:.2} % |\n\
         | open set: enrolled probes identified within tau | {:.2} % | | |\n\
         | open set: strangers rejected | {:.2} % | | |\n\n{}\
         tau scores {:.2} % on the training people's pairs. Total time {:.1} s. The model is in \
         `model.ckpt` (`cnn faces eval --model {}/model.ckpt --pairs-dir DIR`).\n\n\
         ![training](training.png)\n\n![ROC](roc.png)\n\n{}\
         Style transfer (SqueezeNet, L-BFGS; `style.png`, skipped with `--style-size 0`):\n\n\
         ![style](style.png)\n\n\
         Faces: the ORL Database of Faces, AT&T Laboratories Cambridge.\n",
        model.spec.trained_with,
        a.objective.epochs,
        r.train_seconds,
        r.split,
        r.fixed.n_pairs,
        r.fixed.tau,
        100.0 * r.fixed.accuracy,
        100.0 * r.pixel.accuracy,
        100.0 * r.majority,
        100.0 * r.kf.accuracy,
        100.0 * r.kf.std,
        r.fixed.auc,
        r.pixel.auc,
        100.0 * r.fixed.eer,
        100.0 * r.fixed.val_at_far,
        r.closed.probes,
        100.0 * r.closed.rank1,
        100.0 * r.pixel_rank1,
        100.0 * r.chance_rank1,
        r.closed_every.probes,
        100.0 * r.closed_every.rank1,
        100.0 * r.pixel_rank1_every,
        100.0 * r.chance_rank1,
        100.0 * r.open.detect_and_identify,
        100.0 * r.open.impostor_rejection,
        streams,
        100.0 * r.train_acc,
        r.seconds,
        a.out.display(),
        group_section(r.group.as_ref()),
    );
    nn::checkpoint::write_atomic(&a.out.join("report.md"), report.as_bytes())?;
    Ok(())
}
