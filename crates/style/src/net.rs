//! The pretrained loss network: SqueezeNet 1.1 (bundled, the default) or VGG16 / VGG19 from a
//! torchvision-layout safetensors file. Layers are chosen by name (`fire4`, `relu4_2`, ...) or
//! feature index. The network sees images in `[0, 1]` RGB; ImageNet normalisation is applied
//! inside, so the optimised pixels stay in image units.

use std::path::Path;

use autograd::Var;
use nn::models::squeezenet::{self, SqueezeNet};
use nn::models::vgg::{Vgg, VggKind, VggPool};
use nn::{Ctx, ParamStore};

/// Which network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkKind {
    /// SqueezeNet 1.1 (ImageNet, bundled).
    SqueezeNet,
    /// VGG16.
    Vgg16,
    /// VGG19 (Gatys et al.'s network).
    Vgg19,
}

impl std::str::FromStr for NetworkKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "squeezenet" => Ok(NetworkKind::SqueezeNet),
            "vgg16" => Ok(NetworkKind::Vgg16),
            "vgg19" => Ok(NetworkKind::Vgg19),
            o => Err(format!("unknown network {o:?} (squeezenet, vgg16, vgg19)")),
        }
    }
}

enum Body {
    SqueezeNet(Box<SqueezeNet>),
    Vgg(Box<Vgg>),
}

/// A loss network with its weights.
pub struct LossNetwork {
    body: Body,
    /// Its weights.
    pub store: ParamStore,
    /// Which network.
    pub kind: NetworkKind,
}

impl LossNetwork {
    /// Loads `kind` from `weights` (SqueezeNet: `None` = the bundled file), with average
    /// pooling when `average_pooling`.
    ///
    /// # Errors
    /// A missing or corrupt weights file, a missing tensor or a wrong shape (naming it); VGG
    /// without a weights file.
    pub fn load(
        kind: NetworkKind,
        weights: Option<&Path>,
        average_pooling: bool,
    ) -> nn::Result<LossNetwork> {
        let pool = if average_pooling {
            VggPool::Avg
        } else {
            VggPool::Max
        };
        let (body, store) = match kind {
            NetworkKind::SqueezeNet => {
                let path = weights
                    .map(Path::to_path_buf)
                    .unwrap_or_else(squeezenet::bundled_weights);
                let (mut net, store) = SqueezeNet::pretrained(&path)?;
                net.average_pooling = average_pooling;
                (Body::SqueezeNet(Box::new(net)), store)
            }
            NetworkKind::Vgg16 | NetworkKind::Vgg19 => {
                let path = weights.ok_or_else(|| {
                    nn::Error::arg(
                        "LossNetwork",
                        "VGG needs --weights FILE (torchvision names; see docs/STYLE.md)",
                    )
                })?;
                let vk = if kind == NetworkKind::Vgg16 {
                    VggKind::Vgg16
                } else {
                    VggKind::Vgg19
                };
                let (net, store) = Vgg::pretrained(path, vk, pool)?;
                (Body::Vgg(Box::new(net)), store)
            }
        };
        Ok(LossNetwork { body, store, kind })
    }

    /// A network from already-built parts (tests: random VGG weights in torchvision layout).
    pub fn from_vgg(net: Vgg, store: ParamStore, kind: NetworkKind) -> LossNetwork {
        LossNetwork {
            body: Body::Vgg(Box::new(net)),
            store,
            kind,
        }
    }

    /// The feature index of a layer name.
    ///
    /// # Errors
    /// An unknown name, listing the valid ones.
    pub fn layer_index(&self, name: &str) -> nn::Result<usize> {
        let (found, names): (Option<usize>, Vec<String>) = match &self.body {
            Body::SqueezeNet(_) => (
                squeezenet::feature_index(name),
                squeezenet::FEATURE_NAMES
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ),
            Body::Vgg(v) => (v.layer_index(name), v.layer_names().to_vec()),
        };
        found.ok_or_else(|| {
            nn::Error::arg(
                "LossNetwork",
                format!("no layer {name:?}; layers: {}", names.join(", ")),
            )
        })
    }

    /// The default layers of Gatys et al. for this network: (content layer, style layers).
    pub fn default_layers(&self) -> (&'static str, Vec<&'static str>) {
        match self.kind {
            NetworkKind::SqueezeNet => ("fire5", vec!["relu1", "fire2", "fire4", "fire6", "fire8"]),
            NetworkKind::Vgg16 | NetworkKind::Vgg19 => (
                "relu4_2",
                vec!["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"],
            ),
        }
    }

    /// The smallest side (pixels) an image needs for every layer in `taps` to exist: below it
    /// a pooling window no longer fits. Found by running the network on tiny blank squares
    /// (doubling, then bisecting: a handful of forwards of at most a few dozen pixels).
    ///
    /// # Errors
    /// Bad taps; a network that takes no image up to 1024 pixels.
    pub fn min_side(&self, taps: &[usize]) -> nn::Result<usize> {
        let fits = |side: usize| -> nn::Result<bool> {
            let g = autograd::Graph::no_grad();
            let cx = Ctx::new(&g, &self.store, nn::Mode::Eval, 0);
            let blank = g.constant(tensor::Tensor::zeros(&[1, 3, side, side]));
            match self.features(&cx, &blank, taps) {
                Ok(_) => Ok(true),
                Err(nn::Error::Tensor(_) | nn::Error::Autograd(_)) => Ok(false),
                Err(e) => Err(e),
            }
        };
        let (mut lo, mut hi) = (0usize, 8usize);
        while !fits(hi)? {
            lo = hi;
            hi *= 2;
            if hi > 1024 {
                return Err(nn::Error::arg(
                    "LossNetwork",
                    "takes no image up to 1024 pixels",
                ));
            }
        }
        // `lo` does not fit (or is 0), `hi` fits.
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if fits(mid)? {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Ok(hi)
    }

    /// Activations at `taps` of an image `(1, 3, H, W)` in `[0, 1]`.
    ///
    /// # Errors
    /// Images too small for the network's pooling; bad taps.
    pub fn features<'g>(
        &self,
        cx: &Ctx<'g>,
        image: &Var<'g>,
        taps: &[usize],
    ) -> nn::Result<Vec<Var<'g>>> {
        let x = nn::data::imagenet_normalize(image, 1.0, 0.0)?;
        match &self.body {
            Body::SqueezeNet(n) => n.features(cx, &x, taps),
            Body::Vgg(v) => v.features(cx, &x, taps),
        }
    }
}
