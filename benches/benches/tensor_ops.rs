//! Criterion benchmarks of the tensor core, reported as GFLOP/s ("Gelem/s" in criterion's
//! output counts floating-point operations): sgemm at 256..2048 and the issue-2 convolution
//! shapes, forward and forward + backward (input, weight and bias gradients).
//!
//! `cargo bench -p benches` runs them; CI runs `cargo bench -p benches -- --test` (each once).

// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tensor::{ConvOptions, Tensor};

fn sgemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("sgemm");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for n in [256usize, 512, 1024, 2048] {
        let a = Tensor::randn(&[n, n], 0.0, 1.0, &mut rng);
        let b = Tensor::randn(&[n, n], 0.0, 1.0, &mut rng);
        group.throughput(Throughput::Elements(2 * (n * n * n) as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |bench, _| {
            bench.iter(|| a.matmul(&b).unwrap())
        });
    }
    group.finish();
}

/// (name, N, C_in, spatial, C_out, kernel, stride, padding), as `cargo xtask conv-bench`.
type Shape = (
    &'static str,
    usize,
    usize,
    &'static [usize],
    usize,
    usize,
    usize,
    usize,
);
const SHAPES: &[Shape] = &[
    ("2d_64x256x256_64", 1, 64, &[256, 256], 64, 3, 1, 1),
    ("2d_128x64x64_256", 1, 128, &[64, 64], 256, 3, 1, 1),
    ("2d_512x16x16_512", 1, 512, &[16, 16], 512, 3, 1, 1),
    ("2d_b64_32x32x32_64", 64, 32, &[32, 32], 64, 3, 1, 1),
    ("2d_b32_3x96x96_64_k7s2", 32, 3, &[96, 96], 64, 7, 2, 3),
    ("1d_b256_1x14_16_k5", 256, 1, &[14], 16, 5, 1, 0),
    ("1d_b64_32x1000_64_k7", 64, 32, &[1000], 64, 7, 1, 3),
    ("3d_1x14^3_16_k5", 1, 1, &[14, 14, 14], 16, 5, 1, 0),
    ("3d_b8_16x32^3_32", 8, 16, &[32, 32, 32], 32, 3, 1, 1),
];

fn conv(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for &(name, n, c_in, spatial, c_out, k, stride, pad) in SHAPES {
        let mut xs = vec![n, c_in];
        xs.extend_from_slice(spatial);
        let mut ws = vec![c_out, c_in];
        ws.extend(std::iter::repeat_n(k, spatial.len()));
        let x = Tensor::randn(&xs, 0.0, 1.0, &mut rng);
        let w = Tensor::randn(&ws, 0.0, 0.1, &mut rng);
        let b = Tensor::randn(&[c_out], 0.0, 0.1, &mut rng);
        let opts = ConvOptions::default().stride(&[stride]).pad(pad);
        let y = x.conv(&w, Some(&b), &opts).unwrap();
        let g = Tensor::randn(y.shape(), 0.0, 1.0, &mut rng);
        let out_vol: usize = y.shape()[2..].iter().product();
        let flops = 2 * n * c_out * out_vol * c_in * k.pow(spatial.len() as u32);
        group.throughput(Throughput::Elements(flops as u64));
        group.bench_function(BenchmarkId::new("forward", name), |bench| {
            bench.iter(|| x.conv(&w, Some(&b), &opts).unwrap())
        });
        group.throughput(Throughput::Elements(3 * flops as u64));
        group.bench_function(BenchmarkId::new("forward_backward", name), |bench| {
            bench.iter(|| {
                let y = x.conv(&w, Some(&b), &opts).unwrap();
                let dx = Tensor::conv_backward_input(&g, &w, x.shape(), &opts).unwrap();
                let dw = Tensor::conv_backward_weight(&x, &g, w.shape(), &opts).unwrap();
                let db = Tensor::conv_backward_bias(&g).unwrap();
                (y, dx, dw, db)
            })
        });
    }
    group.finish();
}

/// Elementwise and reduction throughput on 4 Mi floats (16 MiB), in elements per second.
fn elementwise(c: &mut Criterion) {
    let mut group = c.benchmark_group("elementwise");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(2));
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let n = 1 << 22;
    let a = Tensor::randn(&[n], 0.0, 1.0, &mut rng);
    let b = Tensor::randn(&[n], 0.0, 1.0, &mut rng);
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("add", |bench| bench.iter(|| a.add(&b).unwrap()));
    group.bench_function("relu", |bench| bench.iter(|| a.relu()));
    group.bench_function("affine", |bench| bench.iter(|| a.affine(0.5, 1.0)));
    group.bench_function("sum", |bench| bench.iter(|| a.sum_all()));
    let rows = a.reshape(&[n / 1024, 1024]).unwrap();
    group.bench_function("softmax_rows_1024", |bench| {
        bench.iter(|| rows.softmax(1).unwrap())
    });
    group.finish();
}

criterion_group!(benches, sgemm, conv, elementwise);
criterion_main!(benches);
