//! `cnn ecg train|eval`: heartbeat classification (AAMI classes N, S, V, F) with a 1D
//! CNN on the MIT-BIH records in a folder. Intra-patient: each record's first 70 % of time
//! trains, its last 30 % tests (with three patients, an inter-patient split is not possible).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nn::ModelSeed;
use nn::models::small_cnn::{SmallCnn, SmallCnnConfig};
use nn::optim::Adam;
use nn::train::{FitConfig, Sample, fit};
use signals::ecg::{Beat, beats};
use signals::wfdb::{read_annotations, read_record};
use tensor::Tensor;

/// The classes, in label order.
pub(crate) const CLASSES: [char; 4] = ['N', 'S', 'V', 'F'];
/// Common sampling rate and window (0.71 s).
const RATE_HZ: f64 = 360.0;
const WINDOW: usize = 256;
/// Fraction of each record's duration used for training.
const TRAIN_FRACTION: f64 = 0.7;

#[derive(clap::Subcommand, Debug)]
pub enum EcgCommand {
    /// Train the 1D CNN on the first 70 % of every record; evaluate on the rest.
    Train(EcgArgs),
    /// Evaluate a trained model on the last 30 % of every record.
    Eval(EcgArgs),
}

#[derive(clap::Args, Debug)]
pub struct EcgArgs {
    /// Folder with WFDB records (`NAME.hea`, `NAME.dat`, `NAME.atr`; searched recursively).
    #[arg(long)]
    records: PathBuf,
    /// Output folder (model.ckpt, results.json, confusion.png).
    #[arg(long, default_value = "out/ecg")]
    out: PathBuf,
    /// Epochs.
    #[arg(long, default_value_t = 15)]
    epochs: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// End with one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

fn find_records(dir: &Path, out: &mut Vec<(PathBuf, String)>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            find_records(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "hea") {
            let name = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if p.with_extension("atr").is_file() {
                out.push((dir.to_path_buf(), name));
            }
        }
    }
    Ok(())
}

/// Every beat of every record, split by time.
struct Beats {
    train: Vec<Sample>,
    test: Vec<Sample>,
    /// Q (unclassifiable) beats left out.
    q: usize,
    /// The records read.
    names: Vec<String>,
}

fn load_beats(dir: &Path) -> Result<Beats> {
    let mut records = vec![];
    find_records(dir, &mut records)?;
    if records.is_empty() {
        bail!(
            "{} has no WFDB record with annotations (NAME.hea + NAME.atr)",
            dir.display()
        );
    }
    let (mut train, mut test, mut q) = (vec![], vec![], 0);
    let mut names = vec![];
    for (d, name) in &records {
        let rec = read_record(d, name)?;
        let ann = read_annotations(d, name, "atr")?;
        let len = (rec.header.samples as f64 * RATE_HZ / rec.header.sampling_hz) as usize;
        let split = (len as f64 * TRAIN_FRACTION) as usize;
        for Beat { samples, class, at } in beats(&rec, &ann, 0, RATE_HZ, WINDOW) {
            let Some(label) = CLASSES.iter().position(|&c| c == class) else {
                q += 1;
                continue;
            };
            let s = Sample {
                image: Tensor::from_vec(samples, &[1, WINDOW])?,
                label,
            };
            if at < split {
                train.push(s);
            } else {
                test.push(s);
            }
        }
        names.push(format!("{}/{name}", d.display()));
    }
    Ok(Beats {
        train,
        test,
        q,
        names,
    })
}

fn model_config() -> SmallCnnConfig {
    SmallCnnConfig {
        rank: 1,
        kernel: 7,
        in_channels: 1,
        widths: [32, 64, 128],
        classes: CLASSES.len(),
        dropout: 0.2,
    }
}

/// Rare classes repeated until each has at least a quarter of the commonest one's count (S has
/// a few dozen beats against thousands of N).
fn oversample(train: &[Sample]) -> Vec<Sample> {
    let count = |c: usize| train.iter().filter(|s| s.label == c).count();
    let most = (0..CLASSES.len()).map(count).max().unwrap_or(0);
    let mut out = train.to_vec();
    for c in 0..CLASSES.len() {
        let n = count(c);
        if n == 0 {
            continue;
        }
        let reps = (most / 4).div_ceil(n).saturating_sub(1);
        for _ in 0..reps {
            out.extend(train.iter().filter(|s| s.label == c).cloned());
        }
    }
    out
}

pub(crate) fn ecg(cmd: EcgCommand) -> Result<()> {
    let (a, training) = match &cmd {
        EcgCommand::Train(a) => (a, true),
        EcgCommand::Eval(a) => (a, false),
    };
    let t0 = std::time::Instant::now();
    crate::args::output_dir(&a.out, "--out")?;
    let Beats {
        train,
        test,
        q,
        names,
    } = load_beats(&a.records)?;
    let per_class = |s: &[Sample]| -> Vec<usize> {
        (0..CLASSES.len())
            .map(|c| s.iter().filter(|x| x.label == c).count())
            .collect()
    };
    eprintln!(
        "records {}: training beats N/S/V/F {:?}, test beats {:?} (intra-patient: first 70 % of each record trains, last 30 % tests); {q} Q beats left out",
        names.join(", "),
        per_class(&train),
        per_class(&test)
    );
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let model_path = a.out.join("model.ckpt");
    let mut seed = ModelSeed::new(a.seed);
    let net = SmallCnn::new(&mut seed.builder(), &model_config())?;
    let mut store = seed.store;
    let config_text = format!("ecg 1D CNN {:?}", model_config());
    if training {
        let data = oversample(&train);
        let cfg = FitConfig::warmup_cosine(
            a.epochs,
            64,
            data.len(),
            2e-3,
            2e-5,
            a.seed,
            Some(model_path.clone()),
            config_text.clone(),
        );
        let mut bars = crate::common::EpochBars::new(true, |_: &nn::train::EpochRecord| {});
        fit(
            &net,
            &mut store,
            &mut Adam::new(2e-3),
            &data,
            &test,
            &cfg,
            &mut bars,
        )?;
    } else {
        crate::args::load_trained(&mut store, &model_path, &config_text, "ecg train")?;
    }
    // Confusion matrix on the held-out segment.
    let mut confusion = [[0usize; 4]; 4];
    let predicted = nn::train::predict(&net, &store, &test, 256)?.argmax(1)?;
    for (s, p) in test.iter().zip(predicted) {
        confusion[s.label][p] += 1;
    }
    let total: usize = confusion.iter().flatten().sum();
    let accuracy = (0..4).map(|i| confusion[i][i]).sum::<usize>() as f64 / total.max(1) as f64;
    let mut per = serde_json::Map::new();
    eprintln!("\nconfusion (rows: true, columns: predicted) on {total} held-out beats:");
    eprintln!("        {}", CLASSES.map(|c| format!("{c:>6}")).join(""));
    for (i, c) in CLASSES.iter().enumerate() {
        let tp = confusion[i][i] as f64;
        let support: usize = confusion[i].iter().sum();
        let predicted: usize = (0..4).map(|r| confusion[r][i]).sum();
        let precision = if predicted > 0 {
            tp / predicted as f64
        } else {
            0.0
        };
        let recall = if support > 0 {
            tp / support as f64
        } else {
            0.0
        };
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        eprintln!(
            "  {c}   {}   precision {:.3} recall {:.3} F1 {:.3} (support {support})",
            confusion[i].map(|v| format!("{v:>6}")).join(""),
            precision,
            recall,
            f1
        );
        per.insert(format!("f1_{c}"), f1.into());
        per.insert(format!("precision_{c}"), precision.into());
        per.insert(format!("recall_{c}"), recall.into());
        per.insert(format!("support_{c}"), support.into());
    }
    eprintln!(
        "accuracy {:.4} ({:.1} s)",
        accuracy,
        t0.elapsed().as_secs_f64()
    );
    let mut j = serde_json::Map::new();
    j.insert("accuracy".into(), accuracy.into());
    j.extend(per);
    j.insert("confusion".into(), serde_json::json!(confusion));
    j.insert(
        "classes".into(),
        serde_json::json!(CLASSES.map(String::from)),
    );
    j.insert("records".into(), serde_json::json!(names));
    j.insert("excluded_q_beats".into(), q.into());
    j.insert("seconds".into(), t0.elapsed().as_secs_f64().into());
    let text = serde_json::Value::Object(j).to_string();
    nn::checkpoint::write_atomic(&a.out.join("results.json"), text.as_bytes())?;
    save_confusion(&a.out.join("confusion.png"), &confusion)?;
    if a.json {
        println!("{text}");
    }
    Ok(())
}

/// The confusion matrix as a labelled grid, each cell shaded by its share of the row.
fn save_confusion(path: &Path, m: &[[usize; 4]; 4]) -> Result<()> {
    let cell = 90u32;
    let (w, h) = (cell * 5, cell * 5 + 30);
    let mut img = image::RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    let text = |img: &mut image::RgbImage, x: u32, y: u32, s: &str| {
        nn::plot::draw_text(img, x as i64, y as i64, s, [0, 0, 0], 2);
    };
    text(&mut img, 10, 8, "true \\ predicted");
    for (i, c) in CLASSES.iter().enumerate() {
        text(&mut img, cell * (i as u32 + 1) + 38, 40, &c.to_string());
        text(&mut img, 35, cell * (i as u32 + 1) + 70, &c.to_string());
        let row: usize = m[i].iter().sum();
        for j in 0..4 {
            let share = m[i][j] as f64 / row.max(1) as f64;
            let shade = (255.0 - 200.0 * share) as u8;
            let (x0, y0) = (cell * (j as u32 + 1), cell * (i as u32 + 1) + 30);
            for y in y0 + 2..y0 + cell - 2 {
                for x in x0 + 2..x0 + cell - 2 {
                    img.put_pixel(x, y, image::Rgb([shade, shade, 255]));
                }
            }
            text(&mut img, x0 + 12, y0 + 38, &m[i][j].to_string());
        }
    }
    img.save(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
