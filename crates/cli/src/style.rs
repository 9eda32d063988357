//! `cnn style`: repaint a photo in the style of one or more paintings (Gatys et al.),
//! with a progress bar, coarse-to-fine scales, colour preservation, a memory and time estimate
//! before the run, and a report (time, peak memory, loss curve).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use nn::plot::Chart;
use style::image_io::{keep_colours, load_image, luminance_image, resize, save_image};
use style::net::{LossNetwork, NetworkKind};
use style::transfer::{Init, Optimizer, Progress, Targets, TransferConfig, transfer};
use tensor::Tensor;

#[derive(clap::Args, Debug)]
pub struct StyleArgs {
    /// The photo to repaint.
    #[arg(long)]
    content: PathBuf,
    /// A painting; repeat for several styles (blended with --blend).
    #[arg(long = "style", required = true)]
    styles: Vec<PathBuf>,
    /// Blend weights of the styles, e.g. 0.7,0.3 (default: equal).
    #[arg(long)]
    blend: Option<String>,
    /// Output image (PNG or JPEG by extension).
    #[arg(long)]
    out: PathBuf,
    /// Longest side of the output, in pixels.
    #[arg(long, default_value_t = 256)]
    size: u32,
    /// Iterations (per scale with --multiscale).
    #[arg(long, default_value_t = 100)]
    iters: usize,
    /// lbfgs (default, Gatys et al.) or adam.
    #[arg(long, default_value = "lbfgs")]
    optimizer: String,
    /// Adam's learning rate (pixels are in [0, 1]).
    #[arg(long, default_value_t = 0.02, value_parser = crate::args::learning_rate, allow_negative_numbers = true)]
    lr: f32,
    /// Start from white noise (the seed's algorithm) or from the content image.
    #[arg(long, default_value = "content")]
    init: String,
    /// Loss network: squeezenet (bundled), vgg16 or vgg19 (needs --weights).
    #[arg(long, default_value = "squeezenet")]
    network: String,
    /// Weights file (torchvision names); default for SqueezeNet: the bundled file.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Average instead of max pooling in the network (smoother images).
    #[arg(long)]
    avg_pool: bool,
    /// Content layer (default: fire5 for SqueezeNet, relu4_2 for VGG).
    #[arg(long)]
    content_layer: Option<String>,
    /// Style layers, comma separated (default: relu1,fire2,fire4,fire6,fire8 / relu1_1..relu5_1).
    #[arg(long)]
    style_layers: Option<String>,
    /// lambda per style layer (eq. 13), comma separated (default: equal, summing to 1).
    #[arg(long)]
    style_layer_weights: Option<String>,
    /// alpha: weight of the content cost (eq. 8).
    #[arg(long, default_value_t = 1.0)]
    alpha: f32,
    /// beta: weight of the style cost (eq. 8).
    #[arg(long, default_value_t = 1e4)]
    beta: f32,
    /// Weight of the total-variation smoothing term (0 = off).
    #[arg(long, default_value_t = 0.0)]
    tv: f32,
    /// Size of the style images relative to the output (1 = same longest side).
    #[arg(long, default_value_t = 1.0)]
    style_scale: f32,
    /// Keep the content's colours: transfer on luminance only.
    #[arg(long)]
    preserve_colors: bool,
    /// Coarse-to-fine: run K scales, doubling the size up to --size (1 = off).
    #[arg(long, default_value_t = 1)]
    multiscale: usize,
    /// Save the current image every N iterations (0 = never) next to --out.
    #[arg(long, default_value_t = 0)]
    save_every: usize,
    /// Refuse to start when the estimated peak memory exceeds this many MiB.
    #[arg(long)]
    memory_limit_mb: Option<f64>,
    /// Write the prepared content, style and start images of the (last) scale as .npy files
    /// into this folder (benches/pytorch/style_bench.py reads them for a same-input comparison).
    #[arg(long)]
    dump_inputs: Option<PathBuf>,
    /// Seed of the noise initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// End with one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

/// The largest `--size`.
const MAX_SIDE: u32 = 8192;

/// Output sizes of each scale, coarse to fine: the longest side halves per scale.
fn scale_sides(size: u32, scales: usize) -> Vec<u32> {
    (0..scales.max(1))
        .rev()
        .map(|k| (size >> k).max(32))
        .collect()
}

pub(crate) fn style(a: &StyleArgs) -> Result<()> {
    let t0 = Instant::now();
    crate::args::output_file(&a.out, "--out")?;
    if let Some(dir) = &a.dump_inputs {
        crate::args::output_dir(dir, "--dump-inputs")?;
    }
    let kind: NetworkKind = a.network.parse().map_err(anyhow::Error::msg)?;
    let net = LossNetwork::load(kind, a.weights.as_deref(), a.avg_pool).with_context(|| {
        format!(
            "loading the {} weights{}",
            a.network,
            a.weights
                .as_ref()
                .map_or(String::new(), |w| format!(" from {}", w.display()))
        )
    })?;
    let (dc, ds) = net.default_layers();
    let optimizer = match a.optimizer.as_str() {
        "lbfgs" => Optimizer::Lbfgs,
        "adam" => Optimizer::Adam { lr: a.lr },
        o => bail!("unknown --optimizer {o:?} (lbfgs, adam)"),
    };
    let init = match a.init.as_str() {
        "noise" => Init::Noise,
        "content" => Init::Content,
        o => bail!("unknown --init {o:?} (noise, content)"),
    };
    let cfg = TransferConfig {
        content_layer: a.content_layer.clone().unwrap_or_else(|| dc.to_string()),
        style_layers: match &a.style_layers {
            Some(s) => s.split(',').map(|l| l.trim().to_string()).collect(),
            None => ds.iter().map(|s| s.to_string()).collect(),
        },
        style_layer_weights: match &a.style_layer_weights {
            Some(w) => crate::args::parse_list("--style-layer-weights", w)?,
            None => vec![],
        },
        alpha: a.alpha,
        beta: a.beta,
        tv: a.tv,
        optimizer,
        iterations: a.iters,
        init,
        seed: a.seed,
    };
    let blend = match &a.blend {
        Some(b) => crate::args::parse_list("--blend", b)?,
        None => vec![1.0; a.styles.len()],
    };
    anyhow::ensure!(
        blend.len() == a.styles.len(),
        "--blend has {} weights for {} --style images",
        blend.len(),
        a.styles.len()
    );
    anyhow::ensure!(
        (1..=MAX_SIDE).contains(&a.size),
        "--size {} is outside 1..={MAX_SIDE} pixels",
        a.size
    );
    anyhow::ensure!(
        a.style_scale > 0.0 && a.style_scale <= 4.0,
        "--style-scale {} is outside (0, 4]",
        a.style_scale
    );
    anyhow::ensure!(a.iters >= 1, "--iters must be at least 1");
    // Every layer the cost reads must exist: the network's smallest input side.
    let mut taps = vec![net.layer_index(&cfg.content_layer)?];
    for l in &cfg.style_layers {
        taps.push(net.layer_index(l)?);
    }
    let min_side = net.min_side(&taps)?;
    // Read every input once at full size (errors name the file).
    let content_full = load_image(&a.content, Some(a.size))
        .with_context(|| format!("reading the content image {}", a.content.display()))?;
    let style_side = ((a.size as f32) * a.style_scale)
        .round()
        .clamp(min_side as f32, MAX_SIDE as f32) as u32;
    let styles_full: Vec<Tensor> = a
        .styles
        .iter()
        .map(|p| {
            load_image(p, Some(style_side))
                .with_context(|| format!("reading the style image {}", p.display()))
        })
        .collect::<Result<_>>()?;
    anyhow::ensure!(
        (1..=6).contains(&a.multiscale),
        "--multiscale {} is outside 1..=6",
        a.multiscale
    );
    let sides = scale_sides(a.size, a.multiscale);
    let (fh, fw) = (content_full.shape()[2], content_full.shape()[3]);
    let dims = |side: u32| -> (usize, usize) {
        let s = side as f64 / fh.max(fw) as f64;
        (
            ((fh as f64 * s).round() as usize).max(1),
            ((fw as f64 * s).round() as usize).max(1),
        )
    };
    let (h, w) = dims(a.size);
    // The shorter side decides: the --size that gives it `min_side` pixels.
    let need = (min_side as f64 * fh.max(fw) as f64 / fh.min(fw) as f64).ceil();
    if h.min(w) < min_side {
        bail!(
            "--size {} makes a {w} x {h} image; the {} network needs at least {min_side} pixels on each side for its layers: use --size {need} or more",
            a.size,
            a.network
        );
    }
    // Coarse scales keep the network's smallest input.
    let sides: Vec<u32> = sides
        .into_iter()
        .map(|s| s.max(need.min(a.size as f64) as u32))
        .collect();
    for (p, s) in a.styles.iter().zip(&styles_full) {
        let short = s.shape()[2].min(s.shape()[3]);
        anyhow::ensure!(
            short >= min_side,
            "the style image {} is {} x {} at --size {} x --style-scale {}; the network needs at least {min_side} pixels on each side: raise --style-scale",
            p.display(),
            s.shape()[3],
            s.shape()[2],
            a.size,
            a.style_scale
        );
    }
    let prepare = |side: u32| -> Result<(Tensor, Vec<(Tensor, f32)>)> {
        let (h, w) = dims(side);
        let content = resize(&content_full, h, w);
        let styles: Vec<(Tensor, f32)> = styles_full
            .iter()
            .zip(&blend)
            .map(|(s, &b)| {
                let k = side as f64 / a.size as f64;
                let (sh, sw) = (
                    ((s.shape()[2] as f64 * k).round() as usize).max(min_side),
                    ((s.shape()[3] as f64 * k).round() as usize).max(min_side),
                );
                let s = resize(s, sh, sw);
                let s = if a.preserve_colors {
                    luminance_image(&s, Some(&content))
                } else {
                    s
                };
                (s, b)
            })
            .collect();
        let content = if a.preserve_colors {
            luminance_image(&content, None)
        } else {
            content
        };
        Ok((content, styles))
    };
    // The estimate: one evaluation (forward + backward) at half the final side, timed and
    // measured, scaled by the pixel count (both grow linearly with it).
    // The probe is capped: the estimate must not itself need the memory it is checking for.
    let probe_side = (a.size / 2).clamp(32, 256).max(min_side as u32 * 2);
    let (pc, ps) = prepare(probe_side)?;
    // Reset the peak (Linux: "5" to clear_refs) so that the probe's own peak is measured,
    // not the transient buffers of decoding and resizing the inputs.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss0 = nn::limits::memory::current_rss_mb().unwrap_or(0.0);
    let probe_targets = Targets::new(&net, &pc, &ps, &cfg)?;
    let probe_cfg = TransferConfig {
        iterations: 3,
        optimizer: Optimizer::Adam { lr: 0.0 },
        ..cfg.clone()
    };
    // Three evaluations; the first pays for allocations, the other two are the steady rate.
    let probe = transfer(&net, &probe_targets, &pc, &probe_cfg, None, |_, _| true)?;
    let probe_s = (probe.history[2].seconds - probe.history[0].seconds) / 2.0;
    let probe_mb = (nn::limits::memory::peak_rss_mb().unwrap_or(0.0) - rss0).max(0.0);
    let probe_px = (pc.shape()[2] * pc.shape()[3]) as f64;
    // L-BFGS evaluates about 1.25 times per iteration (line search); Adam once.
    let evals = if matches!(optimizer, Optimizer::Lbfgs) {
        1.25
    } else {
        1.0
    };
    let est_s: f64 = sides
        .iter()
        .map(|&s| {
            let (h, w) = dims(s);
            probe_s * (h * w) as f64 / probe_px * evals * a.iters as f64
        })
        .sum();
    let lbfgs_mb = if matches!(optimizer, Optimizer::Lbfgs) {
        // Up to 100 curvature pairs of f32 pixel vectors (one per iteration until the history
        // is full), and about 12 f64 working vectors (point, gradients, direction, step, the
        // line search's bracket).
        let pairs = a.iters.min(nn::lbfgs::LbfgsConfig::default().history);
        ((2 * pairs * 4 + 12 * 8) * 3 * h * w) as f64 / (1024.0 * 1024.0)
    } else {
        0.0
    };
    let est_mb = rss0 + probe_mb * (h * w) as f64 / probe_px + lbfgs_mb;
    eprintln!(
        "{} x {} output, {} scale(s), {} iterations each with {}: estimated {:.0} s and {:.0} MiB peak",
        w,
        h,
        sides.len(),
        a.iters,
        a.optimizer,
        est_s,
        est_mb
    );
    match a.memory_limit_mb {
        Some(limit) => anyhow::ensure!(
            est_mb <= limit,
            "a {w} x {h} run needs about {est_mb:.0} MiB, above --memory-limit-mb {limit:.0}; try a smaller --size or --optimizer adam"
        ),
        None => {
            if let Some(free) = nn::limits::memory::available_mb() {
                anyhow::ensure!(
                    est_mb <= free,
                    "a {w} x {h} run needs about {est_mb:.0} MiB, more than the {free:.0} MiB this process may use; try a smaller --size or --optimizer adam"
                );
            }
        }
    }
    let mut image: Option<Tensor> = None;
    let mut log: Vec<Progress> = vec![];
    let total_iters = (sides.len() * a.iters) as u64;
    let bar = ProgressBar::new(total_iters);
    bar.set_style(
        ProgressStyle::with_template("[{bar:30}] {pos}/{len} {per_sec} ETA {eta} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut best_loss = f64::NAN;
    let mut evaluations = 0;
    for (si, &side) in sides.iter().enumerate() {
        let (content, styles) = prepare(side)?;
        let targets = Targets::new(&net, &content, &styles, &cfg)?;
        let start = image
            .take()
            .map(|prev: Tensor| resize(&prev, content.shape()[2], content.shape()[3]));
        if let Some(dir) = &a.dump_inputs {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            nn::npy::write_npy(&dir.join("content.npy"), &content)?;
            for (i, (s, w)) in styles.iter().enumerate() {
                nn::npy::write_npy(&dir.join(format!("style{i}.npy")), s)?;
                nn::npy::write_npy(
                    &dir.join(format!("style{i}_weight.npy")),
                    &Tensor::full(&[1], *w),
                )?;
            }
            let init = match (&start, init) {
                (Some(s), _) => s.clone(),
                (None, Init::Content) => content.clone(),
                (None, Init::Noise) => style::transfer::noise_image(content.shape(), a.seed),
            };
            nn::npy::write_npy(&dir.join("init.npy"), &init)?;
        }
        let offset = log.last().map_or(0.0, |p| p.seconds);
        let out = transfer(&net, &targets, &content, &cfg, start, |p, img| {
            bar.set_message(format!(
                "scale {}/{} loss {:.4e} (content {:.3e} style {:.3e} tv {:.2e})",
                si + 1,
                sides.len(),
                p.loss,
                p.content,
                p.style,
                p.tv
            ));
            bar.inc(1);
            if a.save_every > 0 && p.iteration % a.save_every == 0 {
                let path = a
                    .out
                    .with_extension(format!("s{}-{:04}.png", si + 1, p.iteration));
                if let Err(e) = save_image(img, &path) {
                    bar.println(format!("could not save {}: {e}", path.display()));
                }
            }
            true
        })?;
        log.extend(out.history.iter().map(|p| Progress {
            seconds: p.seconds + offset,
            ..p.clone()
        }));
        best_loss = out.best_loss;
        evaluations += out.history.last().map_or(0, |p| p.evaluations);
        image = Some(out.image);
    }
    bar.finish_and_clear();
    let mut result = image.expect("one scale at least");
    if a.preserve_colors {
        let (h, w) = (result.shape()[2], result.shape()[3]);
        result = keep_colours(&result, &resize(&content_full, h, w));
    }
    save_image(&result, &a.out).with_context(|| format!("writing {}", a.out.display()))?;
    let curve = a.out.with_extension("loss.png");
    Chart::lines(
        "Style transfer loss",
        "iteration",
        "log10 loss",
        vec![
            ("total", points(&log, |p| p.loss)),
            ("content", points(&log, |p| p.content)),
            ("style", points(&log, |p| p.style)),
        ],
    )
    .save_png(&curve)?;
    let seconds = t0.elapsed().as_secs_f64();
    let iter_s = log.last().map_or(0.0, |p| p.seconds) / log.len().max(1) as f64;
    let peak = nn::limits::memory::peak_rss_mb().unwrap_or(f64::NAN);
    eprintln!(
        "wrote {} ({} x {}); final loss {:.4e} (best {:.4e}); {:.3} s per iteration, {:.1} s in all; peak memory {:.0} MiB; loss curve {}",
        a.out.display(),
        result.shape()[3],
        result.shape()[2],
        log.last().map_or(f64::NAN, |p| p.loss),
        best_loss,
        iter_s,
        seconds,
        peak,
        curve.display()
    );
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "out": a.out,
                "width": result.shape()[3],
                "height": result.shape()[2],
                "iterations": log.len(),
                "evaluations": evaluations,
                "final_loss": log.last().map(|p| p.loss),
                "best_loss": best_loss,
                "seconds_per_iteration": iter_s,
                "seconds": seconds,
                "estimated_seconds": est_s,
                "peak_memory_mb": peak,
                "estimated_memory_mb": est_mb,
                "losses": log.iter().map(|p| p.loss).collect::<Vec<_>>(),
            })
        );
    }
    Ok(())
}

fn points(log: &[Progress], f: fn(&Progress) -> f64) -> Vec<(f64, f64)> {
    log.iter()
        .enumerate()
        .filter(|(_, p)| f(p) > 0.0)
        .map(|(i, p)| ((i + 1) as f64, f(p).log10()))
        .collect()
}

#[derive(clap::Parser)]
struct StyleCli {
    #[command(flatten)]
    args: StyleArgs,
}

/// The demo's short style transfer: the bundled cat photo (CC0) painted as *The Starry Night*
/// (public domain), with the command line's defaults for everything not given here.
pub(crate) fn demo_style(out: &Path, size: u32, iters: usize) -> Result<f64> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let content = root.join("crates/nn/assets/images/chelsea.png");
    let painting = root.join("crates/style/assets/starry_night.jpg");
    let cli = <StyleCli as clap::Parser>::try_parse_from([
        "style".as_ref(),
        "--content".as_ref(),
        content.as_os_str(),
        "--style".as_ref(),
        painting.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--size".as_ref(),
        size.to_string().as_ref(),
        "--iters".as_ref(),
        iters.to_string().as_ref(),
    ])?;
    let t0 = Instant::now();
    style(&cli.args)?;
    Ok(t0.elapsed().as_secs_f64())
}
