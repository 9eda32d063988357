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
    }
}

fn run(
    dir: &std::path::Path,
    resume: bool,
    stop_after: Option<usize>,
) -> nn::Result<nn::train::RunReport<EpochRecord>> {
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
        &mut nn::train::Silent,
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
        &mut nn::train::Silent,
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
    match fit(
        &net,
        &mut store,
        &mut Adam::new(0.01),
        &bad,
        &[],
        &cfg,
        &mut nn::train::Silent,
    ) {
        Err(e @ Error::NonFinite { step: 0, .. }) => {
            assert!(e.to_string().contains("step 0"), "{e}")
        }
        other => panic!(
            "expected NonFinite at step 0, got {:?}",
            other.map(|r| r.history.len())
        ),
    }
    assert!(matches!(
        fit(
            &net,
            &mut store,
            &mut Adam::new(0.01),
            &[],
            &[],
            &cfg,
            &mut nn::train::Silent
        ),
        Err(Error::InvalidArgument { .. })
    ));
}

/// A task that learns nothing: it counts what the engine asks of it.
struct Counting {
    steps: usize,
    skipped_every: usize,
    begun: Vec<usize>,
}

impl nn::train::TrainTask for Counting {
    type Step = u64;
    type Epoch = (usize, u64, usize);

    fn steps_per_epoch(&self) -> usize {
        self.steps
    }

    fn begin_epoch(&mut self, epoch: usize) {
        self.begun.push(epoch);
    }

    fn step(
        &mut self,
        _store: &mut nn::ParamStore,
        _opt: &mut dyn nn::optim::Optimizer,
        at: nn::train::StepAt,
    ) -> nn::Result<Option<u64>> {
        Ok((!at.index.is_multiple_of(self.skipped_every)).then_some(at.step))
    }

    fn progress(&self, steps: &[u64]) -> String {
        format!("{}", steps.len())
    }

    fn end_epoch(
        &mut self,
        _store: &nn::ParamStore,
        end: nn::train::EpochEnd,
        steps: Vec<u64>,
    ) -> nn::Result<(usize, u64, usize)> {
        Ok((end.epoch, end.step, steps.len()))
    }
}

#[derive(Default)]
struct Seen {
    starts: usize,
    steps: Vec<String>,
    ends: usize,
}

impl<E> nn::train::Observer<E> for Seen {
    fn epoch_start(&mut self, _epoch: usize, epochs: usize, steps: usize) {
        assert_eq!((epochs, steps), (3, 4));
        self.starts += 1;
    }
    fn step_done(&mut self, message: &str) {
        self.steps.push(message.to_string());
    }
    fn epoch_end(&mut self, _record: &E) {
        self.ends += 1;
    }
}

#[test]
fn the_engine_runs_every_step_reports_to_the_observer_and_stops_and_resumes_on_epochs() {
    let dir = std::env::temp_dir().join(format!("nn-engine-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut seed = ModelSeed::new(0);
    nn::Linear::new(&mut seed.builder().scope("fc"), 2, 1, true).unwrap();
    let mut store = seed.store;
    let mut task = Counting {
        steps: 4,
        skipped_every: 2,
        begun: vec![],
    };
    let mut opts = nn::train::RunOptions {
        epochs: 3,
        checkpoint: Some(dir.join("e.ckpt")),
        stop_after: Some(2),
        config_text: "counting".into(),
        ..Default::default()
    };
    let mut seen = Seen::default();
    let mut opt = Adam::new(0.1);
    let r = nn::train::run(&mut task, &mut store, &mut opt, &opts, &mut seen).unwrap();
    assert!(r.interrupted);
    // Steps 0 and 2 of each epoch report nothing; every step is counted.
    assert_eq!(r.history, vec![(0, 4, 2), (1, 8, 2)]);
    assert_eq!((seen.starts, seen.ends, seen.steps.len()), (2, 2, 8));
    assert_eq!(&seen.steps[..4], ["0", "1", "1", "2"]);
    opts.resume = true;
    opts.stop_after = None;
    let mut seen = Seen::default();
    let r = nn::train::run(&mut task, &mut store, &mut opt, &opts, &mut seen).unwrap();
    assert!(!r.interrupted);
    assert_eq!(r.history, vec![(0, 4, 2), (1, 8, 2), (2, 12, 2)]);
    assert_eq!(task.begun, vec![0, 1, 2]);
    assert_eq!(seen.ends, 1);
    // A checkpoint of another configuration is refused; a task without steps too.
    opts.config_text = "other".into();
    let e = nn::train::run(&mut task, &mut store, &mut opt, &opts, &mut seen).unwrap_err();
    assert!(e.to_string().contains("another configuration"), "{e}");
    task.steps = 0;
    let e = nn::train::run(&mut task, &mut store, &mut opt, &opts, &mut seen).unwrap_err();
    assert!(e.to_string().contains("no steps"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
