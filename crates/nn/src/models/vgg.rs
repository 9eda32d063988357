//! VGG16 / VGG19 feature extractors with torchvision's parameter names (`features.N.weight`),
//! so that a safetensors file converted from torchvision's weights loads as it is. Layers are
//! addressed by torchvision index or by the usual names (`conv1_1`, `relu4_2`, `pool3`).

use std::path::Path;

use autograd::Var;
use tensor::PoolOptions;

use crate::ctx::{Ctx, Module};
use crate::layers::{Conv, ConvConfig};
use crate::param::{ModelSeed, ParamBuilder, ParamStore};
use crate::{Error, Result};

/// Which VGG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VggKind {
    /// 13 conv layers.
    Vgg16,
    /// 16 conv layers.
    Vgg19,
}

/// Pooling between blocks (Gatys et al. found average pooling gives smoother images).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VggPool {
    /// Max pooling 2x2 (as trained).
    Max,
    /// Average pooling 2x2.
    Avg,
}

enum Layer {
    Conv(Conv),
    Relu,
    Pool,
}

/// The `features` part of a VGG network.
pub struct Vgg {
    layers: Vec<Layer>,
    names: Vec<String>,
    pool: VggPool,
}

fn block_sizes(kind: VggKind) -> [usize; 5] {
    match kind {
        VggKind::Vgg16 => [2, 2, 3, 3, 3],
        VggKind::Vgg19 => [2, 2, 4, 4, 4],
    }
}

impl Vgg {
    /// A randomly initialised network (PyTorch's default init), names `features.N.*`.
    ///
    /// # Errors
    /// Duplicate names (internal).
    pub fn new(b: &mut ParamBuilder<'_>, kind: VggKind, pool: VggPool) -> Result<Vgg> {
        let widths = [64, 128, 256, 512, 512];
        let mut f = b.scope("features");
        let (mut layers, mut names) = (vec![], vec![]);
        let mut cin = 3;
        for (blk, (&n, &w)) in block_sizes(kind).iter().zip(&widths).enumerate() {
            for i in 0..n {
                let idx = layers.len();
                layers.push(Layer::Conv(Conv::new(
                    &mut f.scope(&idx.to_string()),
                    &ConvConfig::new(2, cin, w, 3).padding(1),
                )?));
                names.push(format!("conv{}_{}", blk + 1, i + 1));
                layers.push(Layer::Relu);
                names.push(format!("relu{}_{}", blk + 1, i + 1));
                cin = w;
            }
            layers.push(Layer::Pool);
            names.push(format!("pool{}", blk + 1));
        }
        Ok(Vgg {
            layers,
            names,
            pool,
        })
    }

    /// The network with weights from a torchvision-layout safetensors file (`features.N.*`
    /// keys; classifier keys, if present, are ignored).
    ///
    /// # Errors
    /// The file's errors, naming missing tensors and wrong shapes.
    pub fn pretrained(path: &Path, kind: VggKind, pool: VggPool) -> Result<(Vgg, ParamStore)> {
        let mut seed = ModelSeed::new(0);
        let net = Vgg::new(&mut seed.builder(), kind, pool)?;
        let mut store = seed.store;
        crate::weights::load_safetensors_into(&mut store, path, |n| n.to_string())?;
        Ok((net, store))
    }

    /// The torchvision index of a layer name (`relu4_2`) or of a number given as text.
    pub fn layer_index(&self, name: &str) -> Option<usize> {
        self.names
            .iter()
            .position(|n| n == name)
            .or_else(|| name.parse().ok().filter(|&i| i < self.layers.len()))
    }

    /// Every layer name, in order.
    pub fn layer_names(&self) -> &[String] {
        &self.names
    }

    /// Runs the layers up to the deepest of `taps` (indices) and returns their outputs in the
    /// order asked.
    ///
    /// # Errors
    /// An index beyond the network; inputs too small for the pooling.
    pub fn features<'g>(&self, cx: &Ctx<'g>, x: &Var<'g>, taps: &[usize]) -> Result<Vec<Var<'g>>> {
        let last = *taps
            .iter()
            .max()
            .ok_or_else(|| Error::arg("Vgg::features", "no layer asked for"))?;
        if last >= self.layers.len() {
            return Err(Error::arg(
                "Vgg::features",
                format!("layer {last} beyond the {} layers", self.layers.len()),
            ));
        }
        let pool = PoolOptions::new(&[2]);
        let mut outs: Vec<Option<Var<'g>>> = vec![None; taps.len()];
        let mut y = x.clone();
        for (i, layer) in self.layers.iter().enumerate().take(last + 1) {
            y = match layer {
                Layer::Conv(c) => c.forward(cx, &y)?,
                Layer::Relu => y.relu(),
                Layer::Pool => match self.pool {
                    VggPool::Max => y.max_pool(&pool)?,
                    VggPool::Avg => y.avg_pool(&pool)?,
                },
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
}
