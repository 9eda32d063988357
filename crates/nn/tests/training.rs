//! The training loop: an interrupted run resumed from its checkpoint reproduces the
//! uninterrupted loss curve exactly; a non-finite loss stops training naming the step.

use nn::models::small_cnn::{SmallCnn, SmallCnnConfig};
use nn::optim::Adam;
use nn::train::{Augment, EpochRecord, FitConfig, Sample, fit};
use nn::{Error, ModelSeed};
use rand::SeedableRng;
use tensor::Tensor;

fn data(n: usize, seed: u64) -> Vec<Sample> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let label = i % 3;
            let img = Tensor::randn(&[1, 12, 10], label as f32, 1.0, &mut rng);
            Sample { image: img, label }
        })
        .collect()
}

fn config(dir: &std::path::Path, resume: bool, stop_after: Option<usize>) -> FitConfig {
    FitConfig {
        epochs: 4,
        batch_size: 8,
        seed: 5,
        augment: Some(Augment {
            crop_pad: 2,
            flip: true,
            jitter: 0.1,
            scale: 0.0,
            rotate_degrees: 0.0,
            erase: 0.0,
        }),
        schedule: None,
        label_smoothing: 0.1,
        checkpoint: Some(dir.join("run.ckpt")),
        checkpoint_every: 1,
        resume,
        stop_after,
        config_text: "test".into(),
        progress: false,
    }
}

fn run(
    dir: &std::path::Path,
    resume: bool,
    stop_after: Option<usize>,
) -> nn::Result<nn::train::FitReport> {
    let mut seed = ModelSeed::new(3);
    let cfg = SmallCnnConfig {
        rank: 2,
        kernel: 3,
        in_channels: 1,
        widths: [4, 8, 8],
        classes: 3,
        dropout: 0.2,
    };
    let net = SmallCnn::new(&mut seed.builder(), &cfg).unwrap();
    let mut store = seed.store;
    let mut opt = Adam::new(0.01);
    fit(
        &net,
        &mut store,
        &mut opt,
        &data(30, 1),
        &data(9, 2),
        &config(dir, resume, stop_after),
    )
}

fn curve(h: &[EpochRecord]) -> Vec<(usize, u64, u32, u32, u32)> {
    h.iter()
        .map(|r| {
            (
                r.epoch,
                r.step,
                r.train_loss.to_bits(),
                r.test_loss.to_bits(),
                r.test_accuracy.to_bits(),
            )
        })
        .collect()
}

#[test]
fn resume_reproduces_the_uninterrupted_run() {
    let base = std::env::temp_dir().join(format!("nn-train-{}", std::process::id()));
    let (a, b) = (base.join("a"), base.join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let full = run(&a, false, None).unwrap();
    assert!(!full.interrupted && full.history.len() == 4);
    let first = run(&b, false, Some(2)).unwrap();
    assert!(first.interrupted && first.history.len() == 2);
    let resumed = run(&b, true, None).unwrap();
    assert_eq!(
        curve(&resumed.history),
        curve(&full.history),
        "same steps, same losses, bit for bit"
    );
    assert_eq!(resumed.history[2].step, full.history[2].step);
    // A checkpoint of another configuration is refused.
    let mut other = config(&b, true, None);
    other.config_text = "something else".into();
    let mut seed = ModelSeed::new(3);
    let net = SmallCnn::new(
        &mut seed.builder(),
        &SmallCnnConfig {
            rank: 2,
            kernel: 3,
            in_channels: 1,
            widths: [4, 8, 8],
            classes: 3,
            dropout: 0.2,
        },
    )
    .unwrap();
    let mut store = seed.store;
    let err = fit(
        &net,
        &mut store,
        &mut Adam::new(0.01),
        &data(30, 1),
        &data(9, 2),
        &other,
    )
    .unwrap_err();
    assert!(err.to_string().contains("another configuration"), "{err}");
}

#[test]
fn a_non_finite_loss_names_the_step() {
    let dir = std::env::temp_dir().join(format!("nn-nan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut bad = data(16, 1);
    bad[3].image = Tensor::full(&[1, 12, 10], f32::NAN);
    let mut seed = ModelSeed::new(3);
    let net = SmallCnn::new(
        &mut seed.builder(),
        &SmallCnnConfig {
            rank: 2,
            kernel: 3,
            in_channels: 1,
            widths: [4, 8, 8],
            classes: 3,
            dropout: 0.0,
        },
    )
    .unwrap();
    let mut store = seed.store;
    let mut cfg = config(&dir, false, None);
    cfg.augment = None;
    match fit(&net, &mut store, &mut Adam::new(0.01), &bad, &[], &cfg) {
        Err(e @ Error::NonFinite { step: 0, .. }) => {
            assert!(e.to_string().contains("step 0"), "{e}")
        }
        other => panic!(
            "expected NonFinite at step 0, got {:?}",
            other.map(|r| r.history.len())
        ),
    }
    assert!(matches!(
        fit(&net, &mut store, &mut Adam::new(0.01), &[], &[], &cfg),
        Err(Error::InvalidArgument { .. })
    ));
}
