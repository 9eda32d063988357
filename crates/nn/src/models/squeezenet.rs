//! SqueezeNet 1.1 (Iandola et al. 2016) with torchvision's parameter names, so that
//! torchvision-layout weight files load as they are.
//!
//! `features.i` indexes torchvision's `features` Sequential: 0 conv 3x3/2, 1 relu,
//! 2 max pool 3/2 (ceil), 3-4 Fire, 5 max pool, 6-7 Fire, 8 max pool, 9-12 Fire; then
//! `classifier.1` (1x1 conv to 1000 classes), relu and global average pooling.

use std::path::Path;

use autograd::Var;
use tensor::PoolOptions;

use crate::ctx::{Ctx, Module};
use crate::layers::{Conv, ConvConfig};
use crate::param::{ModelSeed, ParamBuilder, ParamStore};
use crate::{Error, Result};

/// The last index of `features`.
pub const LAST_FEATURE: usize = 12;

/// A Fire module: squeeze 1x1, then expand 1x1 and 3x3 concatenated.
#[derive(Debug, Clone)]
struct Fire {
    squeeze: Conv,
    expand1x1: Conv,
    expand3x3: Conv,
}

impl Fire {
    fn new(b: &mut ParamBuilder<'_>, inp: usize, s: usize, e1: usize, e3: usize) -> Result<Fire> {
        Ok(Fire {
            squeeze: Conv::new(&mut b.scope("squeeze"), &ConvConfig::new(2, inp, s, 1))?,
            expand1x1: Conv::new(&mut b.scope("expand1x1"), &ConvConfig::new(2, s, e1, 1))?,
            expand3x3: Conv::new(
                &mut b.scope("expand3x3"),
                &ConvConfig::new(2, s, e3, 3).padding(1),
            )?,
        })
    }
}

impl Module for Fire {
    fn forward<'g>(&self, cx: &Ctx<'g>, x: &Var<'g>) -> Result<Var<'g>> {
        let s = self.squeeze.forward(cx, x)?.relu();
        let a = self.expand1x1.forward(cx, &s)?.relu();
        let b = self.expand3x3.forward(cx, &s)?.relu();
        Ok(Var::cat(&[&a, &b], 1)?)
    }
}

enum Stage {
    Conv(Conv),
    Relu,
    Pool,
    Fire(Box<Fire>),
}

/// The ImageNet weights shipped with this repository (`crates/nn/assets`, BSD-2-Clause,
/// DeepScale): the path as this crate was built.
pub fn bundled_weights() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/squeezenet1_1.safetensors")
}

/// Output channels of `features.{i}`.
pub const FEATURE_CHANNELS: [usize; LAST_FEATURE + 1] =
    [64, 64, 64, 128, 128, 128, 256, 256, 256, 384, 384, 512, 512];

/// Names of `features.0..=12` (the Caffe model's names: fire modules numbered from 2).
pub const FEATURE_NAMES: [&str; LAST_FEATURE + 1] = [
    "conv1", "relu1", "pool1", "fire2", "fire3", "pool3", "fire4", "fire5", "pool5", "fire6",
    "fire7", "fire8", "fire9",
];

/// The feature index of a layer name (`fire4`), of `features.N`, or of a number given as text.
pub fn feature_index(name: &str) -> Option<usize> {
    FEATURE_NAMES.iter().position(|n| *n == name).or_else(|| {
        name.strip_prefix("features.")
            .unwrap_or(name)
            .parse()
            .ok()
            .filter(|&i| i <= LAST_FEATURE)
    })
}

/// SqueezeNet 1.1.
pub struct SqueezeNet {
    stages: Vec<Stage>,
    classifier: Conv,
    /// Average instead of max pooling between stages (style transfer: smoother images).
    pub average_pooling: bool,
}

impl SqueezeNet {
    /// A randomly initialised network (names `features.N...`, `classifier.1...`).
    ///
    /// # Errors
    /// Duplicate names (internal).
    pub fn new(b: &mut ParamBuilder<'_>, classes: usize) -> Result<SqueezeNet> {
        let mut f = b.scope("features");
        let fire = |f: &mut ParamBuilder<'_>, i: usize, inp, s, e| {
            Fire::new(&mut f.scope(&i.to_string()), inp, s, e, e)
        };
        let stages = vec![
            Stage::Conv(Conv::new(
                &mut f.scope("0"),
                &ConvConfig::new(2, 3, 64, 3).stride(2),
            )?),
            Stage::Relu,
            Stage::Pool,
            Stage::Fire(Box::new(fire(&mut f, 3, 64, 16, 64)?)),
            Stage::Fire(Box::new(fire(&mut f, 4, 128, 16, 64)?)),
            Stage::Pool,
            Stage::Fire(Box::new(fire(&mut f, 6, 128, 32, 128)?)),
            Stage::Fire(Box::new(fire(&mut f, 7, 256, 32, 128)?)),
            Stage::Pool,
            Stage::Fire(Box::new(fire(&mut f, 9, 256, 48, 192)?)),
            Stage::Fire(Box::new(fire(&mut f, 10, 384, 48, 192)?)),
            Stage::Fire(Box::new(fire(&mut f, 11, 384, 64, 256)?)),
            Stage::Fire(Box::new(fire(&mut f, 12, 512, 64, 256)?)),
        ];
        let classifier = Conv::new(
            &mut b.scope("classifier").scope("1"),
            &ConvConfig::new(2, 512, classes, 1),
        )?;
        Ok(SqueezeNet {
            stages,
            classifier,
            average_pooling: false,
        })
    }

    /// The ImageNet network with weights from a torchvision-layout safetensors file.
    ///
    /// # Errors
    /// The file's errors ([`Error::Io`], [`Error::Corrupt`], [`Error::MissingParam`],
    /// [`Error::ParamShape`]).
    pub fn pretrained(path: &Path) -> Result<(SqueezeNet, ParamStore)> {
        let mut seed = ModelSeed::new(0);
        let net = SqueezeNet::new(&mut seed.builder(), 1000)?;
        let mut store = seed.store;
        crate::weights::load_safetensors_into(&mut store, path, |n| n.to_string())?;
        Ok((net, store))
    }

    /// Runs `features` up to the largest index in `taps` and returns the output of each tapped
    /// index, in the order asked.
    ///
    /// # Errors
    /// An index above [`LAST_FEATURE`]; shape errors for inputs smaller than the network's
    /// receptive field.
    pub fn features<'g>(&self, cx: &Ctx<'g>, x: &Var<'g>, taps: &[usize]) -> Result<Vec<Var<'g>>> {
        let last = *taps
            .iter()
            .max()
            .ok_or_else(|| Error::arg("features", "no layer asked for"))?;
        if last > LAST_FEATURE {
            return Err(Error::arg(
                "features",
                format!("index {last} beyond features.{LAST_FEATURE}"),
            ));
        }
        let pool = PoolOptions::new(&[3]).stride(&[2]).ceil_mode(true);
        let mut outs: Vec<Option<Var<'g>>> = vec![None; taps.len()];
        let mut y = x.clone();
        for (i, stage) in self.stages.iter().enumerate().take(last + 1) {
            y = match stage {
                Stage::Conv(c) => c.forward(cx, &y)?,
                Stage::Relu => y.relu(),
                Stage::Pool if self.average_pooling => y.avg_pool(&pool)?,
                Stage::Pool => y.max_pool(&pool)?,
                Stage::Fire(f) => f.forward(cx, &y)?,
            };
            for (slot, &t) in outs.iter_mut().zip(taps) {
                if t == i {
                    *slot = Some(y.clone());
                }
            }
        }
        Ok(outs
            .into_iter()
            .map(|o| o.expect("every tap is at most `last`"))
            .collect())
    }

    /// The classifier's input to its ReLU (pre-activation class scores per position).
    ///
    /// # Errors
    /// As [`SqueezeNet::features`].
    pub fn class_map<'g>(&self, cx: &Ctx<'g>, x: &Var<'g>) -> Result<Var<'g>> {
        let f = self.features(cx, x, &[LAST_FEATURE])?.remove(0);
        // Dropout(0.5) precedes the classifier in training; it is the identity in eval.
        let f = crate::layers::Dropout(0.5).forward(cx, &f)?;
        self.classifier.forward(cx, &f)
    }
}

impl Module for SqueezeNet {
    /// Class scores `(N, classes)`: classifier conv, ReLU, global average pooling.
    fn forward<'g>(&self, cx: &Ctx<'g>, x: &Var<'g>) -> Result<Var<'g>> {
        Ok(self.class_map(cx, x)?.relu().global_avg_pool()?)
    }
}
