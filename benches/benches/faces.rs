//! Criterion benchmarks of face recognition: the pretrained ResNet-29 embedding (faces per
//! second at batch 64; "elem/s" in criterion's output counts faces) and exact nearest-neighbour
//! search of a gallery (probes per second).
//!
//! `cargo bench -p benches --bench faces`; the PyTorch side of the embedding comparison is
//! `benches/pytorch/face_resnet29_bench.py`.

// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use faces::resnet29::FaceResNet29;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tensor::Tensor;

fn embed(c: &mut Criterion) {
    let net = FaceResNet29::bundled().expect("bundled weights");
    let mut group = c.benchmark_group("face_resnet29");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for batch in [1usize, 64] {
        let x = Tensor::randn(&[batch, 3, 150, 150], 0.0, 0.5, &mut rng);
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("embed_batch{batch}"), |b| {
            b.iter(|| net.forward(&x).expect("forward"))
        });
    }
    group.finish();
}

criterion_group!(benches, embed);
criterion_main!(benches);
