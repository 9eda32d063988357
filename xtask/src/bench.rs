//! `cargo xtask conv-bench`, `vgg-bench`, `train-bench` and `fma-peak`: timings for the
//! PyTorch comparison, and the core's FMA peak.

use std::time::Instant;

use anyhow::{Context, Result, bail};

use nn::ModelSeed;
use nn::models::small_cnn::{SmallCnn, SmallCnnConfig};
use nn::optim::Adam;
use tensor::{ConvOptions, Tensor};

/// One benchmark shape: (name, N, C_in, spatial, C_out, kernel, stride, padding).
pub(crate) struct ConvShape {
    name: &'static str,
    n: usize,
    c_in: usize,
    spatial: &'static [usize],
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

/// The shapes of issue 2, shared with `benches/pytorch/conv_bench.py`.
const SHAPES: &[ConvShape] = &[
    ConvShape {
        name: "2d_64x256x256_64",
        n: 1,
        c_in: 64,
        spatial: &[256, 256],
        c_out: 64,
        k: 3,
        stride: 1,
        pad: 1,
    },
    ConvShape {
        name: "2d_128x64x64_256",
        n: 1,
        c_in: 128,
        spatial: &[64, 64],
        c_out: 256,
        k: 3,
        stride: 1,
        pad: 1,
    },
    ConvShape {
        name: "2d_512x16x16_512",
        n: 1,
        c_in: 512,
        spatial: &[16, 16],
        c_out: 512,
        k: 3,
        stride: 1,
        pad: 1,
    },
    ConvShape {
        name: "2d_b64_32x32x32_64",
        n: 64,
        c_in: 32,
        spatial: &[32, 32],
        c_out: 64,
        k: 3,
        stride: 1,
        pad: 1,
    },
    ConvShape {
        name: "2d_b32_3x96x96_64_k7s2",
        n: 32,
        c_in: 3,
        spatial: &[96, 96],
        c_out: 64,
        k: 7,
        stride: 2,
        pad: 3,
    },
    ConvShape {
        name: "1d_b256_1x14_16_k5",
        n: 256,
        c_in: 1,
        spatial: &[14],
        c_out: 16,
        k: 5,
        stride: 1,
        pad: 0,
    },
    ConvShape {
        name: "1d_b64_32x1000_64_k7",
        n: 64,
        c_in: 32,
        spatial: &[1000],
        c_out: 64,
        k: 7,
        stride: 1,
        pad: 3,
    },
    ConvShape {
        name: "3d_1x14^3_16_k5",
        n: 1,
        c_in: 1,
        spatial: &[14, 14, 14],
        c_out: 16,
        k: 5,
        stride: 1,
        pad: 0,
    },
    ConvShape {
        name: "3d_b8_16x32^3_32",
        n: 8,
        c_in: 16,
        spatial: &[32, 32, 32],
        c_out: 32,
        k: 3,
        stride: 1,
        pad: 1,
    },
];

/// Parses `N,C_in,D1[xD2[xD3]],C_out,k,stride,pad` (e.g. `1,64,56x56,64,3,1,1`).
fn parse_shape(text: &str) -> Result<ConvShape> {
    let parts: Vec<&str> = text.split(',').collect();
    if parts.len() != 7 {
        bail!("--shape wants N,C_in,HxW,C_out,k,stride,pad; got {text:?}");
    }
    let num = |i: usize| -> Result<usize> {
        parts[i]
            .parse()
            .with_context(|| format!("--shape field {} ({:?}) is not a number", i + 1, parts[i]))
    };
    let spatial: Vec<usize> = parts[2]
        .split('x')
        .map(|d| {
            d.parse()
                .with_context(|| format!("--shape spatial size {d:?} is not a number"))
        })
        .collect::<Result<_>>()?;
    Ok(ConvShape {
        name: "custom",
        n: num(0)?,
        c_in: num(1)?,
        spatial: Box::leak(spatial.into_boxed_slice()),
        c_out: num(3)?,
        k: num(4)?,
        stride: num(5)?,
        pad: num(6)?,
    })
}

fn median_ms(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?; // warm-up
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Options of `cargo xtask conv-bench`.
#[derive(clap::Args, Debug)]
pub(crate) struct ConvBenchArgs {
    /// Print one JSON line instead of a table.
    #[arg(long)]
    json: bool,
    /// Timed repetitions per measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Only shapes whose name contains this.
    #[arg(long)]
    only: Option<String>,
    /// One custom shape instead: N,C_in,HxW,C_out,k,stride,pad (e.g. 1,64,56x56,64,3,1,1).
    #[arg(long)]
    shape: Option<String>,
    /// Multiply the input by this (1e-39 makes every input subnormal).
    #[arg(long, default_value_t = 1.0)]
    input_scale: f32,
}

pub(crate) fn conv_bench(args: &ConvBenchArgs) -> Result<()> {
    let (json, reps, input_scale) = (args.json, args.reps, args.input_scale);
    let only = args.only.as_ref();
    let custom = args.shape.as_deref().map(parse_shape).transpose()?;
    let threads = rayon::current_num_threads();
    let mut rows = vec![];
    let selected: Vec<&ConvShape> = match &custom {
        Some(c) => vec![c],
        None => SHAPES
            .iter()
            .filter(|s| only.is_none_or(|o| s.name.contains(o.as_str())))
            .collect(),
    };
    for s in selected {
        let mut xs = vec![s.n, s.c_in];
        xs.extend_from_slice(s.spatial);
        let mut ws = vec![s.c_out, s.c_in];
        ws.extend(std::iter::repeat_n(s.k, s.spatial.len()));
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
        // --input-scale 1e-39 makes every input (and most products) subnormal.
        let x = Tensor::randn(&xs, 0.0, 1.0, &mut rng).scale(input_scale);
        let w = Tensor::randn(&ws, 0.0, 0.1, &mut rng);
        let b = Tensor::randn(&[s.c_out], 0.0, 0.1, &mut rng);
        let opts = ConvOptions::default().stride(&[s.stride]).pad(s.pad);
        let y = x.conv(&w, Some(&b), &opts)?;
        let g = Tensor::randn(y.shape(), 0.0, 1.0, &mut rng);
        let out_vol: usize = y.shape()[2..].iter().product();
        let k_vol = s.k.pow(s.spatial.len() as u32);
        let flops = 2.0 * (s.n * s.c_out * out_vol * s.c_in * k_vol) as f64;
        let fwd = median_ms(reps, || {
            x.conv(&w, Some(&b), &opts).map(drop).map_err(Into::into)
        })?;
        let bwd = median_ms(reps, || {
            let y = x.conv(&w, Some(&b), &opts)?;
            let dx = Tensor::conv_backward_input(&g, &w, x.shape(), &opts)?;
            let dw = Tensor::conv_backward_weight(&x, &g, w.shape(), &opts)?;
            let db = Tensor::conv_backward_bias(&g)?;
            drop((y, dx, dw, db));
            Ok(())
        })?;
        if !json {
            let dx = median_ms(reps, || {
                Tensor::conv_backward_input(&g, &w, x.shape(), &opts)
                    .map(drop)
                    .map_err(Into::into)
            })?;
            let dw = median_ms(reps, || {
                Tensor::conv_backward_weight(&x, &g, w.shape(), &opts)
                    .map(drop)
                    .map_err(Into::into)
            })?;
            println!(
                "{:<26} fwd {:>8.3} ms {:>6.1} GFLOP/s | fwd+bwd {:>8.3} ms {:>6.1} GFLOP/s | dx {:>8.3} ms, dw {:>8.3} ms",
                s.name,
                fwd,
                flops / fwd / 1e6,
                bwd,
                3.0 * flops / bwd / 1e6,
                dx,
                dw
            );
        }
        rows.push(format!(
            "{{\"name\":\"{}\",\"fwd_ms\":{fwd:.4},\"fwdbwd_ms\":{bwd:.4},\"gflop\":{:.4}}}",
            s.name,
            flops / 1e9
        ));
    }
    if json {
        println!(
            "{{\"impl\":\"ours\",\"threads\":{threads},\"kernel\":\"{}\",\"rows\":[{}]}}",
            tensor::kernel_name(),
            rows.join(",")
        );
    }
    Ok(())
}

pub(crate) fn fma_peak() {
    for (name, gflops) in tensor::fma_peak_gflops() {
        println!("{name:<20} {gflops:7.1} GFLOP/s per core");
    }
}

/// Options of `cargo xtask vgg-bench`.
#[derive(clap::Args, Debug)]
pub(crate) struct VggBenchArgs {
    /// Image side (the input is 1 x 3 x side x side).
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Timed repetitions (median reported).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Print one JSON line.
    #[arg(long)]
    json: bool,
}

/// VGG19 features up to relu5_1 (random torchvision-layout weights): seconds per forward, and
/// per forward + backward to the input image (one style-transfer iteration).
pub(crate) fn vgg_bench(a: &VggBenchArgs) -> Result<()> {
    use autograd::Graph;
    use nn::models::vgg::{Vgg, VggKind, VggPool};
    use nn::{Ctx, Mode, ModelSeed};
    let mut seed = ModelSeed::new(0);
    let net = Vgg::new(&mut seed.builder(), VggKind::Vgg19, VggPool::Max)?;
    let mut store = seed.store;
    store.freeze("");
    let tap = net.layer_index("relu5_1").context("relu5_1")?;
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    let x = Tensor::randn(&[1, 3, a.size, a.size], 0.0, 1.0, &mut rng);
    let fwd = median_ms(a.reps, || {
        let g = Graph::no_grad();
        let cx = Ctx::new(&g, &store, Mode::Eval, 0);
        net.features(&cx, &g.constant(x.clone()), &[tap])?;
        Ok(())
    })?;
    let fwdbwd = median_ms(a.reps, || {
        let g = Graph::new();
        let cx = Ctx::new(&g, &store, Mode::Eval, 0);
        let img = g.leaf(x.clone());
        let y = net.features(&cx, &img, &[tap])?.remove(0).sum()?;
        let grads = g.backward(&y)?;
        anyhow::ensure!(grads.get(&img).is_some(), "no gradient reached the image");
        Ok(())
    })?;
    let threads = rayon::current_num_threads();
    if a.json {
        println!(
            "{}",
            serde_json::json!({"impl": "ours", "threads": threads, "size": a.size, "fwd_s": fwd / 1e3, "fwdbwd_s": fwdbwd / 1e3})
        );
    } else {
        println!(
            "VGG19 to relu5_1, 1x3x{0}x{0}, {threads} threads: forward {1:.3} s, forward + backward to the image {2:.3} s",
            a.size,
            fwd / 1e3,
            fwdbwd / 1e3
        );
    }
    Ok(())
}

/// Options of `cargo xtask train-bench`.
#[derive(clap::Args, Debug)]
pub(crate) struct TrainBenchArgs {
    /// Batch size.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Timed steps (after 3 warm-up steps).
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Input size HxW (1 channel).
    #[arg(long, default_value = "56x46")]
    size: String,
    /// Classes.
    #[arg(long, default_value_t = 40)]
    classes: usize,
    /// Channels of the three conv blocks.
    #[arg(long, default_value = "32,64,128")]
    widths: String,
    /// Print one JSON line.
    #[arg(long)]
    json: bool,
}

/// Images per second of forward + backward + AdamW step of the ORL classifier network on random
/// data: the number `benches/pytorch/train_bench.py` measures for the same network in PyTorch.
pub(crate) fn train_bench(a: &TrainBenchArgs) -> Result<()> {
    use autograd::Graph;
    use nn::{Ctx, Mode, Module};
    let (h, w) = cli::args::parse_size(&a.size)?;
    let widths = cli::args::parse_list("--widths", &a.widths)?;
    let widths: [usize; 3] = widths
        .try_into()
        .map_err(|_| anyhow::anyhow!("--widths needs three numbers"))?;
    let mut seed = ModelSeed::new(0);
    let net = SmallCnn::new(
        &mut seed.builder(),
        &SmallCnnConfig {
            rank: 2,
            kernel: 3,
            in_channels: 1,
            widths,
            classes: a.classes,
            dropout: 0.2,
        },
    )?;
    let mut store = seed.store;
    let mut opt = Adam::adamw(1e-3, 5e-4);
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    let x = Tensor::randn(&[a.batch, 1, h as usize, w as usize], 0.0, 1.0, &mut rng);
    let labels: Vec<usize> = (0..a.batch).map(|i| i % a.classes).collect();
    let mut step = |i: u64| -> Result<()> {
        let g = Graph::new();
        let cx = Ctx::new(&g, &store, Mode::Train, i);
        let logits = net.forward(&cx, &g.constant(x.clone()))?;
        let l = nn::loss::cross_entropy(&logits, &labels, 0.1)?;
        let at = nn::train::StepAt {
            epoch: 0,
            index: i as usize,
            step: i,
        };
        nn::train::train_step(&g, &cx, &l, &mut store, &mut opt, at)?;
        Ok(())
    };
    for i in 0..3 {
        step(i)?;
    }
    let t = std::time::Instant::now();
    for i in 0..a.steps as u64 {
        step(100 + i)?;
    }
    let secs = t.elapsed().as_secs_f64();
    let ips = (a.steps * a.batch) as f64 / secs;
    if a.json {
        println!(
            "{}",
            serde_json::json!({"impl": "ours", "threads": rayon::current_num_threads(), "batch": a.batch, "images_per_second": ips, "ms_per_step": 1e3 * secs / a.steps as f64})
        );
    } else {
        println!(
            "{:.1} images/s ({:.2} ms per step of {}) on {} threads",
            ips,
            1e3 * secs / a.steps as f64,
            a.batch,
            rayon::current_num_threads()
        );
    }
    Ok(())
}
