//! Measurements of the deployable face pipeline: open-set identification on LFW
//! (`faces openset`), DeepFace heads on frozen encodings under the View 2 protocol
//! (`faces heads`), and exact search over galleries of 10k to 1M synthetic encodings
//! (`faces search-bench`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use faces::eval::{
    OpenSetProbe, ScoredPair, accuracy_at, best_threshold, dir_at_far, open_set_roc,
};
use faces::gallery::{Index, Precision};
use faces::heads::{HeadKind, fit_frozen, score, split_signs};
use faces::oneshot::score_pairs;
use nn::plot::{Chart, PALETTE, Series};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use crate::common::{EmbedderArgs, embed_with_progress};
use crate::lfw::{encode_lfw_pairs, lfw_dirs};

#[derive(clap::Args, Debug)]
pub struct OpenSetArgs {
    #[command(flatten)]
    model: EmbedderArgs,
    /// LFW root (lfw-deepfunneled/ inside).
    #[arg(long)]
    lfw: PathBuf,
    /// Fraction of the people with at least two images who are enrolled (one image each);
    /// the others, and everyone with a single image, are never enrolled.
    #[arg(long, default_value_t = 0.5)]
    enrolled_fraction: f64,
    /// Seed of the choice of enrolled people.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Folder for the ROC picture and result.json.
    #[arg(long)]
    out: Option<PathBuf>,
    /// End with one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct OpenSetResult {
    enrolled_people: usize,
    genuine_probes: usize,
    stranger_probes: usize,
    rank1: f64,
    dir_at_far_1pct: f64,
    tau_at_far_1pct: f32,
    dir_at_far_10pct: f64,
    tau_at_far_10pct: f32,
    default_tau: f32,
    dir_at_default_tau: f64,
    far_at_default_tau: f64,
    seconds: f64,
}

pub(crate) fn openset(a: &OpenSetArgs) -> Result<()> {
    let t0 = Instant::now();
    if let Some(out) = &a.out {
        crate::args::output_dir(out, "--out")?;
    }
    let model = a.model.load(Some(faces::resnet29::LFW_CROP), false)?;
    let (root, _) = lfw_dirs(&a.lfw)?;
    // Every person folder and its images.
    let mut people: Vec<(String, Vec<PathBuf>)> = vec![];
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .with_context(|| format!("cannot list {}", root.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for d in dirs {
        let mut files = nn::data::image_files(&d)?;
        files.retain(|f| f.extension().is_some_and(|e| e == "jpg"));
        if !files.is_empty() {
            let name = d
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            people.push((name, files));
        }
    }
    let mut multi: Vec<usize> = (0..people.len())
        .filter(|&p| people[p].1.len() >= 2)
        .collect();
    anyhow::ensure!(
        multi.len() >= 2,
        "{}: fewer than two people with two images (is this LFW?)",
        root.display()
    );
    multi.shuffle(&mut ChaCha8Rng::seed_from_u64(a.seed));
    let n_enrolled =
        ((multi.len() as f64 * a.enrolled_fraction).round() as usize).clamp(1, multi.len() - 1);
    let enrolled: Vec<usize> = {
        let mut e = multi[..n_enrolled].to_vec();
        e.sort();
        e
    };
    eprintln!(
        "{} people ({} with two or more images); enrolling one image of {n_enrolled}",
        people.len(),
        multi.len()
    );
    // Gallery rows: first image of each enrolled person. Probes: everything else.
    let mut gallery_files = vec![];
    let mut probe_files = vec![]; // (file, Some(gallery row) or None)
    for (p, (_, files)) in people.iter().enumerate() {
        match enrolled.binary_search(&p) {
            Ok(row) => {
                gallery_files.push(files[0].clone());
                probe_files.extend(files[1..].iter().map(|f| (f.clone(), Some(row))));
            }
            Err(_) => probe_files.extend(files.iter().map(|f| (f.clone(), None))),
        }
    }
    let all: Vec<(PathBuf, usize)> = gallery_files
        .iter()
        .chain(probe_files.iter().map(|p| &p.0))
        .cloned()
        .enumerate()
        .map(|(i, f)| (f, i))
        .collect();
    let images = nn::train::decode_all(&all, |p| model.preprocess().load(p))?;
    let refs: Vec<&tensor::Tensor> = images.iter().map(|s| &s.image).collect();
    let emb = embed_with_progress(&model, &refs)?;
    let dim = model.dim();
    let ng = gallery_files.len();
    let index = Index::new(
        emb[..ng * dim].to_vec(),
        (0..ng as u32).collect(),
        dim,
        Precision::F32,
    );
    let found = index.search_batch(&emb[ng * dim..], 1)?;
    let probes: Vec<OpenSetProbe> = probe_files
        .iter()
        .zip(&found)
        .map(|((_, truth), f)| OpenSetProbe {
            distance: f[0].1,
            correct: truth.map(|t| f[0].0 as usize == t),
        })
        .collect();
    let genuine: Vec<&OpenSetProbe> = probes.iter().filter(|p| p.correct.is_some()).collect();
    let rank1 = genuine.iter().filter(|p| p.correct == Some(true)).count() as f64
        / genuine.len().max(1) as f64;
    let curve = open_set_roc(&probes);
    let (p1, p10) = (dir_at_far(&curve, 0.01), dir_at_far(&curve, 0.10));
    let tau = model.tau();
    let at_default = curve
        .iter()
        .rev()
        .find(|p| p.tau <= tau)
        .copied()
        .unwrap_or(curve[0]);
    let r = OpenSetResult {
        enrolled_people: ng,
        genuine_probes: genuine.len(),
        stranger_probes: probes.len() - genuine.len(),
        rank1,
        dir_at_far_1pct: p1.dir,
        tau_at_far_1pct: p1.tau,
        dir_at_far_10pct: p10.dir,
        tau_at_far_10pct: p10.tau,
        default_tau: tau,
        dir_at_default_tau: at_default.dir,
        far_at_default_tau: at_default.far,
        seconds: t0.elapsed().as_secs_f64(),
    };
    eprintln!(
        "open set on LFW: {} enrolled (one image each), {} probes of them, {} of people never enrolled",
        r.enrolled_people, r.genuine_probes, r.stranger_probes
    );
    eprintln!(
        "  rank-1 identification (closed set) {:.2} %",
        100.0 * r.rank1
    );
    eprintln!(
        "  detection and identification rate: {:.2} % at 1 % false alarms (tau {:.4}), {:.2} % at 10 % (tau {:.4})",
        100.0 * r.dir_at_far_1pct,
        r.tau_at_far_1pct,
        100.0 * r.dir_at_far_10pct,
        r.tau_at_far_10pct
    );
    eprintln!(
        "  at the model's tau {:.4}: {:.2} % identified, {:.2} % false alarms ({:.1} s)",
        tau,
        100.0 * r.dir_at_default_tau,
        100.0 * r.far_at_default_tau,
        r.seconds
    );
    if let Some(out) = &a.out {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        Chart {
            title: "Open-set identification, LFW".into(),
            x_label: "false-alarm rate (strangers accepted)".into(),
            y_label: "detection and identification rate".into(),
            series: vec![Series {
                name: format!("RANK-1 {:.1} %", 100.0 * r.rank1),
                points: curve.iter().map(|p| (p.far, p.dir)).collect(),
                color: PALETTE[0],
            }],
            y_range: Some((0.0, 1.0)),
            x_log: true,
        }
        .save_png(&out.join("openset_roc.png"))?;
        nn::checkpoint::write_atomic(
            &out.join("openset.json"),
            serde_json::to_string_pretty(&r)?.as_bytes(),
        )?;
    }
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct HeadsArgs {
    #[command(flatten)]
    model: EmbedderArgs,
    /// LFW root (images and pairs.txt).
    #[arg(long)]
    lfw: PathBuf,
    /// Adam steps of each head fit (full batch).
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// Learning rate of the head fits.
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    /// End with one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct HeadRow {
    method: String,
    accuracy: f64,
    std: f64,
    folds: Vec<f64>,
}

pub(crate) fn heads(a: &HeadsArgs) -> Result<()> {
    let t0 = Instant::now();
    let model = a.model.load(Some(faces::resnet29::LFW_CROP), false)?;
    let (images, protocol) = lfw_dirs(&a.lfw)?;
    let p = protocol.join("pairs.txt");
    let pairs = faces::data::read_protocol(&p, faces::data::parse_pairs)?;
    faces::data::check_pair_images(&images, &pairs, &p)?;
    let enc = encode_lfw_pairs(&model, &images, &pairs, &Default::default())?;
    let dim = model.dim();
    let folds = pairs.iter().map(|q| q.fold).max().map_or(0, |f| f + 1);
    // (name, encodings, width, head)
    let split = split_signs(&enc.emb, dim);
    let methods: Vec<(&str, &[f32], usize, Option<HeadKind>)> = vec![
        ("squared L2, tau from 9 folds", &enc.emb, dim, None),
        (
            "DeepFace eq. 3 (L1) head",
            &enc.emb,
            dim,
            Some(HeadKind::L1),
        ),
        (
            "DeepFace eq. 4 (chi-square) head, on [f+, f-]",
            &split,
            2 * dim,
            Some(HeadKind::ChiSquare),
        ),
    ];
    let mut rows = vec![];
    for (name, emb, width, head) in methods {
        let accs: Vec<f64> = (0..folds)
            .into_par_iter()
            .map(|k| {
                let (train, test): (Vec<_>, Vec<_>) =
                    enc.idx.iter().zip(&pairs).partition(|(_, p)| p.fold != k);
                let train: Vec<(usize, usize, bool)> = train.iter().map(|x| *x.0).collect();
                let test: Vec<(usize, usize, bool)> = test.iter().map(|x| *x.0).collect();
                let scored = |set: &[(usize, usize, bool)]| -> Vec<ScoredPair> {
                    match head {
                        None => score_pairs(emb, width, set, faces::model::squared_l2),
                        Some(kind) => {
                            let (w, b) = fit_frozen(kind, emb, width, &train, a.steps, a.lr);
                            score_pairs(emb, width, set, |x, y| score(kind, &w, b, x, y))
                        }
                    }
                };
                let (tau, _) = best_threshold(&scored(&train));
                accuracy_at(&scored(&test), tau)
            })
            .collect();
        let (m, s) = faces::eval::mean_and_sample_std(&accs);
        eprintln!("{name:48} {:.2} % +- {:.2}", 100.0 * m, 100.0 * s);
        rows.push(HeadRow {
            method: name.into(),
            accuracy: m,
            std: s,
            folds: accs,
        });
    }
    eprintln!(
        "LFW View 2, 10 folds, heads and tau fit on the 9 training folds ({:.1} s)",
        t0.elapsed().as_secs_f64()
    );
    if a.json {
        println!("{}", serde_json::to_string(&rows)?);
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct SearchBenchArgs {
    /// Gallery sizes (entries).
    #[arg(long, default_value = "10000,100000,1000000")]
    sizes: String,
    /// Encoding size.
    #[arg(long, default_value_t = 128)]
    dim: usize,
    /// Probes timed one at a time (latency).
    #[arg(long, default_value_t = 50)]
    probes: usize,
    /// Probes per batch (throughput).
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Nearest people returned per probe.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// End with one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct SearchRow {
    entries: usize,
    precision: String,
    index_mb: f64,
    process_peak_mb: f64,
    latency_ms_median: f64,
    latency_ms_p95: f64,
    batch_probes_per_s: f64,
}

pub(crate) fn search_bench(a: &SearchBenchArgs) -> Result<()> {
    let sizes: Vec<usize> = crate::args::parse_list("--sizes", &a.sizes)?;
    anyhow::ensure!(
        (1..=4096).contains(&a.dim) && (1..=1000).contains(&a.top_k) && a.batch >= 1,
        "--dim must be 1..=4096, --top-k 1..=1000 and --batch at least 1"
    );
    // The gallery and one batch of probes are allocated whole: their size is checked first.
    for &n in sizes.iter().chain([a.batch, a.probes].iter()) {
        anyhow::ensure!(
            nn::limits::checked_bytes(n as u64, 4 * a.dim as u64).is_some(),
            "{n} encodings of {} values: {}",
            a.dim,
            nn::limits::too_large("the gallery", (n as u64).checked_mul(4 * a.dim as u64))
        );
    }
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut rows = vec![];
    eprintln!(
        "exact search, {}-D encodings, top {}, {} threads",
        a.dim,
        a.top_k,
        rayon::current_num_threads()
    );
    eprintln!(
        "{:>9} {:>5} {:>9} {:>9} {:>10} {:>10} {:>12}",
        "entries", "prec", "index MB", "peak MB", "median ms", "p95 ms", "batch /s"
    );
    for &n in &sizes {
        // Encodings like the face network's: Gaussian, norm about 1.4.
        let scale = 1.4 / (a.dim as f32).sqrt();
        let rows_f32: Vec<f32> = (0..n * a.dim)
            .map(|_| scale * rng.sample::<f32, _>(rand_distr::StandardNormal))
            .collect();
        let owners: Vec<u32> = (0..n as u32).collect();
        let probes: Vec<f32> = (0..a.probes.max(a.batch) * a.dim)
            .map(|_| scale * rng.sample::<f32, _>(rand_distr::StandardNormal))
            .collect();
        for precision in [Precision::F32, Precision::F16] {
            let index = Index::new(rows_f32.clone(), owners.clone(), a.dim, precision);
            let _ = index.search(&probes[..a.dim], a.top_k)?; // warm-up
            let mut times: Vec<f64> = (0..a.probes)
                .map(|q| {
                    let t = Instant::now();
                    let r = index.search(&probes[q * a.dim..(q + 1) * a.dim], a.top_k);
                    std::hint::black_box(r).map(|_| t.elapsed().as_secs_f64() * 1e3)
                })
                .collect::<std::result::Result<_, _>>()?;
            times.sort_by(f64::total_cmp);
            let t = Instant::now();
            let rounds = 3;
            for _ in 0..rounds {
                std::hint::black_box(index.search_batch(&probes[..a.batch * a.dim], a.top_k)?);
            }
            let batch_rate = (rounds * a.batch) as f64 / t.elapsed().as_secs_f64();
            let row = SearchRow {
                entries: n,
                precision: format!("{precision:?}").to_lowercase(),
                index_mb: index.memory_bytes() as f64 / 1e6,
                process_peak_mb: nn::limits::memory::peak_rss_mb().unwrap_or(f64::NAN),
                latency_ms_median: times[times.len() / 2],
                latency_ms_p95: times[(times.len() * 95 / 100).min(times.len() - 1)],
                batch_probes_per_s: batch_rate,
            };
            eprintln!(
                "{:>9} {:>5} {:>9.1} {:>9.0} {:>10.2} {:>10.2} {:>12.0}",
                row.entries,
                row.precision,
                row.index_mb,
                row.process_peak_mb,
                row.latency_ms_median,
                row.latency_ms_p95,
                row.batch_probes_per_s
            );
            rows.push(row);
        }
    }
    if a.json {
        println!("{}", serde_json::to_string(&rows)?);
    }
    Ok(())
}
