//! `cnn volumes train|eval`: a 3D CNN on MedMNIST-style volumes (`.npz` with
//! `{train,val,test}_{images,labels}`), with the official split: trained on `train`, the epoch
//! log on `val`, accuracy and ROC AUC on `test`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use faces::eval::{ScoredPair, auc, roc};
use nn::ModelSeed;
use nn::models::small_cnn::{SmallCnn, SmallCnnConfig};
use nn::npy::{NpyArray, read_npz, take_array};
use nn::optim::Adam;
use nn::train::{FitConfig, Sample, fit};
use tensor::Tensor;

#[derive(clap::Subcommand, Debug)]
pub enum VolumesCommand {
    /// Train on the training split (mirrored copies added), log validation accuracy per epoch,
    /// then report the test split.
    Train(VolumesArgs),
    /// Report the test split of a trained model.
    Eval(VolumesArgs),
}

#[derive(clap::Args, Debug)]
pub struct VolumesArgs {
    /// A MedMNIST 3D `.npz` file, or a folder holding `adrenalmnist3d.npz`.
    #[arg(long)]
    data: PathBuf,
    /// Output folder (model.ckpt, results.json).
    #[arg(long, default_value = "out/volumes")]
    out: PathBuf,
    /// Epochs (12: where the validation loss of a 30-epoch run stopped improving).
    #[arg(long, default_value_t = 12)]
    epochs: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// End with one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

fn npz_path(p: &Path) -> Result<PathBuf> {
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    [
        p.join("adrenalmnist3d.npz"),
        p.join("medmnist3d/adrenalmnist3d.npz"),
    ]
    .into_iter()
    .find(|c| c.is_file())
    .with_context(|| {
        format!(
            "{} is not an .npz file nor a folder with adrenalmnist3d.npz",
            p.display()
        )
    })
}

/// The volumes and labels of one split as samples `(1, D, H, W)` in [0, 1].
fn split(arrays: &mut Vec<(String, NpyArray)>, name: &str, path: &Path) -> Result<Vec<Sample>> {
    let images = take_array(arrays, &format!("{name}_images"), path)?;
    let labels = take_array(arrays, &format!("{name}_labels"), path)?;
    if images.shape.len() != 4 {
        bail!(
            "{}: {name}_images has shape {:?}; expected (N, D, H, W)",
            path.display(),
            images.shape
        );
    }
    let n = images.shape[0];
    if labels.numel() != n {
        bail!(
            "{}: {n} {name} volumes but {} labels",
            path.display(),
            labels.numel()
        );
    }
    let vox = images.shape[1] * images.shape[2] * images.shape[3];
    let scale = if images.dtype == nn::npy::Dtype::U8 {
        1.0 / 255.0
    } else {
        1.0
    };
    let values = images.to_f32();
    let labels = labels.to_i64();
    (0..n)
        .map(|i| {
            let label = usize::try_from(labels[i])
                .ok()
                .filter(|&l| l < 2)
                .with_context(|| {
                    format!(
                        "{}: {name} label {} is not 0 or 1",
                        path.display(),
                        labels[i]
                    )
                })?;
            let v: Vec<f32> = values[i * vox..(i + 1) * vox]
                .iter()
                .map(|x| x * scale)
                .collect();
            Ok(Sample {
                image: Tensor::from_vec(
                    v,
                    &[1, images.shape[1], images.shape[2], images.shape[3]],
                )?,
                label,
            })
        })
        .collect()
}

/// A copy mirrored along the last axis (left-right).
fn mirrored(s: &Sample) -> Sample {
    Sample {
        image: faces::model::mirror(&s.image),
        label: s.label,
    }
}

fn model_config() -> SmallCnnConfig {
    SmallCnnConfig {
        rank: 3,
        kernel: 3,
        in_channels: 1,
        widths: [16, 32, 64],
        classes: 2,
        dropout: 0.3,
    }
}

pub(crate) fn volumes(cmd: VolumesCommand) -> Result<()> {
    let (a, training) = match &cmd {
        VolumesCommand::Train(a) => (a, true),
        VolumesCommand::Eval(a) => (a, false),
    };
    let t0 = std::time::Instant::now();
    crate::args::output_dir(&a.out, "--out")?;
    let path = npz_path(&a.data)?;
    let mut arrays = read_npz(&path)?;
    let train = split(&mut arrays, "train", &path)?;
    let val = split(&mut arrays, "val", &path)?;
    let test = split(&mut arrays, "test", &path)?;
    eprintln!(
        "{}: train {} / val {} / test {} volumes of {:?}",
        path.display(),
        train.len(),
        val.len(),
        test.len(),
        &train[0].image.shape()[1..]
    );
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let model_path = a.out.join("model.ckpt");
    let mut seed = ModelSeed::new(a.seed);
    let net = SmallCnn::new(&mut seed.builder(), &model_config())?;
    let mut store = seed.store;
    let config_text = format!("volumes 3D CNN {:?}", model_config());
    let mut train_seconds = 0.0;
    if training {
        let mut data = train.clone();
        data.extend(train.iter().map(mirrored));
        let cfg = FitConfig::warmup_cosine(
            a.epochs,
            32,
            data.len(),
            1e-3,
            1e-5,
            a.seed,
            Some(model_path.clone()),
            config_text.clone(),
        );
        let report = fit(
            &net,
            &mut store,
            &mut Adam::adamw(1e-3, 1e-4),
            &data,
            &val,
            &cfg,
            &mut crate::common::EpochBars::new(true, |_: &nn::train::EpochRecord| {}),
        )?;
        train_seconds = report.seconds;
        for e in &report.history {
            eprintln!(
                "epoch {:>3}  train loss {:.4} acc {:.3}  val loss {:.4} acc {:.3}  {:.1}s",
                e.epoch, e.train_loss, e.train_accuracy, e.test_loss, e.test_accuracy, e.seconds
            );
        }
    } else {
        crate::args::load_trained(&mut store, &model_path, &config_text, "volumes train")?;
    }
    let (mut correct, mut scored) = (0usize, vec![]);
    let p = nn::train::predict(&net, &store, &test, 64)?
        .softmax(1)?
        .to_vec();
    for (i, s) in test.iter().enumerate() {
        let p1 = p[2 * i + 1];
        correct += ((p1 > 0.5) as usize == s.label) as usize;
        // The one ROC harness: "positive" when the score -p1 is <= tau.
        scored.push(ScoredPair {
            distance: -p1,
            same: s.label == 1,
        });
    }
    let accuracy = correct as f64 / test.len().max(1) as f64;
    let area = auc(&roc(&scored));
    eprintln!(
        "test: accuracy {:.4}, ROC AUC {:.4} on {} volumes ({:.1} s; training {:.1} s)",
        accuracy,
        area,
        test.len(),
        t0.elapsed().as_secs_f64(),
        train_seconds
    );
    let text = serde_json::json!({
        "accuracy": accuracy,
        "auc": area,
        "test_volumes": test.len(),
        "train_seconds": train_seconds,
        "seconds": t0.elapsed().as_secs_f64(),
    })
    .to_string();
    nn::checkpoint::write_atomic(&a.out.join("results.json"), text.as_bytes())?;
    if a.json {
        println!("{text}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn npy(shape: &[usize], value: f32) -> Vec<u8> {
        nn::npy::npy_bytes(&Tensor::full(shape, value))
    }

    fn write_npz(path: &Path, arrays: &[(&str, Vec<u8>)]) {
        let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        for (name, bytes) in arrays {
            z.start_file(
                format!("{name}.npy"),
                zip::write::SimpleFileOptions::default(),
            )
            .unwrap();
            z.write_all(bytes).unwrap();
        }
        z.finish().unwrap();
    }

    #[test]
    fn splits_load_and_bad_shapes_are_named() {
        let dir = std::env::temp_dir().join(format!("volumes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.npz");
        write_npz(
            &good,
            &[
                ("train_images", npy(&[2, 2, 2, 2], 0.5)),
                (
                    "train_labels",
                    nn::npy::npy_bytes(&Tensor::from_vec(vec![0.0, 1.0], &[2, 1]).unwrap()),
                ),
            ],
        );
        let mut arrays = read_npz(&good).unwrap();
        let s = split(&mut arrays, "train", &good).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].label, 1);
        assert_eq!(s[0].image.shape(), &[1, 2, 2, 2]);
        assert!(s[0].image.to_vec().iter().all(|&v| v == 0.5));
        // Volumes stored flat (N, D*H*W): a wrong shape, named.
        let bad = dir.join("bad.npz");
        write_npz(
            &bad,
            &[
                ("train_images", npy(&[2, 8], 0.0)),
                ("train_labels", npy(&[2, 1], 0.0)),
            ],
        );
        let mut arrays = read_npz(&bad).unwrap();
        let e = split(&mut arrays, "train", &bad).unwrap_err().to_string();
        assert!(e.contains("bad.npz") && e.contains("[2, 8]"), "{e}");
        // A missing split is named with the keys that are there.
        let mut arrays = read_npz(&good).unwrap();
        let e = split(&mut arrays, "test", &good).unwrap_err().to_string();
        assert!(e.contains("test_images"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
