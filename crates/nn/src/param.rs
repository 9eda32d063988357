//! Named parameters and buffers, and the builder that creates them with PyTorch's initialisers.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tensor::Tensor;

use crate::{Error, Result};

/// Index of a parameter in its [`ParamStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(pub(crate) u32);

/// Whether a stored tensor is learned or running state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// Learned by gradient descent (weights, biases).
    Weight,
    /// State updated by the forward pass (BatchNorm running statistics); never differentiated.
    Buffer,
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    value: Tensor,
    kind: ParamKind,
    trainable: bool,
}

/// Owns every parameter value of a model, by dotted name (`block1.conv.weight`). Layers hold
/// [`ParamId`]s only; optimizers and checkpoint loading are the only writers.
#[derive(Debug, Clone, Default)]
pub struct ParamStore {
    entries: Vec<Entry>,
}

impl ParamStore {
    /// An empty store.
    pub fn new() -> Self {
        ParamStore::default()
    }

    /// Adds a tensor under a new name.
    ///
    /// # Errors
    /// [`Error::DuplicateParam`] when the name exists.
    pub fn add(&mut self, name: &str, value: Tensor, kind: ParamKind) -> Result<ParamId> {
        if self.id(name).is_some() {
            return Err(Error::DuplicateParam {
                name: name.to_string(),
            });
        }
        let id = ParamId(u32::try_from(self.entries.len()).expect("fewer than 2^32 parameters"));
        self.entries.push(Entry {
            name: name.to_string(),
            value,
            kind,
            trainable: kind == ParamKind::Weight,
        });
        Ok(id)
    }

    /// The id of a name.
    pub fn id(&self, name: &str) -> Option<ParamId> {
        self.entries
            .iter()
            .position(|e| e.name == name)
            .map(|i| ParamId(i as u32))
    }

    /// Number of stored tensors (weights and buffers).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every id, in creation order.
    pub fn ids(&self) -> impl Iterator<Item = ParamId> + '_ {
        (0..self.entries.len()).map(|i| ParamId(i as u32))
    }

    /// The value.
    pub fn get(&self, id: ParamId) -> &Tensor {
        &self.entries[id.0 as usize].value
    }

    /// The name.
    pub fn name(&self, id: ParamId) -> &str {
        &self.entries[id.0 as usize].name
    }

    /// Weight or buffer.
    pub fn kind(&self, id: ParamId) -> ParamKind {
        self.entries[id.0 as usize].kind
    }

    /// True when an optimizer should update it (a weight that is not frozen).
    pub fn is_trainable(&self, id: ParamId) -> bool {
        self.entries[id.0 as usize].trainable
    }

    /// Replaces a value, keeping the shape.
    ///
    /// # Errors
    /// [`Error::ParamShape`] when the shape differs.
    pub fn set(&mut self, id: ParamId, value: Tensor) -> Result<()> {
        let e = &mut self.entries[id.0 as usize];
        if e.value.shape() != value.shape() {
            return Err(Error::ParamShape {
                name: e.name.clone(),
                expected: e.value.shape().to_vec(),
                got: value.shape().to_vec(),
            });
        }
        e.value = value;
        Ok(())
    }

    /// Stops training every weight whose name starts with `prefix` (all with `""`); returns
    /// how many changed.
    pub fn freeze(&mut self, prefix: &str) -> usize {
        self.set_trainable(prefix, false)
    }

    /// Resumes training every weight whose name starts with `prefix`.
    pub fn unfreeze(&mut self, prefix: &str) -> usize {
        self.set_trainable(prefix, true)
    }

    fn set_trainable(&mut self, prefix: &str, on: bool) -> usize {
        let mut n = 0;
        for e in self
            .entries
            .iter_mut()
            .filter(|e| e.kind == ParamKind::Weight)
        {
            if e.name.starts_with(prefix) && e.trainable != on {
                e.trainable = on;
                n += 1;
            }
        }
        n
    }

    /// Number of learned scalars (weights only).
    pub fn num_weights(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.kind == ParamKind::Weight)
            .map(|e| e.value.numel())
            .sum()
    }
}

/// How a new weight is filled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// A constant.
    Const(f32),
    /// Uniform in `[-bound, bound]`.
    Uniform(f32),
    /// Normal with this standard deviation.
    Normal(f32),
    /// PyTorch's default for conv and linear weights: `kaiming_uniform(a = sqrt(5))`, i.e.
    /// uniform in `+-1/sqrt(fan_in)`.
    PytorchDefault,
    /// He et al.: normal with std `sqrt(2 / fan_in)` (for ReLU nets).
    KaimingNormal,
    /// He et al.: uniform in `+-sqrt(6 / fan_in)`.
    KaimingUniform,
    /// Glorot & Bengio: uniform in `+-sqrt(6 / (fan_in + fan_out))`.
    XavierUniform,
}

/// `(fan_in, fan_out)` of a weight shaped `(out, in, k...)` (linear: `(out, in)`).
pub fn fans(shape: &[usize]) -> (usize, usize) {
    let receptive: usize = shape.iter().skip(2).product();
    let fan_in = shape.get(1).copied().unwrap_or(1) * receptive;
    let fan_out = shape.first().copied().unwrap_or(1) * receptive;
    (fan_in.max(1), fan_out.max(1))
}

impl Init {
    /// A tensor of `shape` filled by this rule (fans from the shape; `fan_in_override` for
    /// biases, whose fans are their layer's).
    pub fn make(
        self,
        shape: &[usize],
        fan_in_override: Option<usize>,
        rng: &mut ChaCha8Rng,
    ) -> Tensor {
        let (fan_in, fan_out) = fans(shape);
        let fan_in = fan_in_override.unwrap_or(fan_in) as f32;
        match self {
            Init::Const(c) => Tensor::full(shape, c),
            Init::Uniform(b) => Tensor::rand_uniform(shape, -b, b, rng),
            Init::Normal(s) => Tensor::randn(shape, 0.0, s, rng),
            Init::PytorchDefault => {
                let b = 1.0 / fan_in.sqrt();
                Tensor::rand_uniform(shape, -b, b, rng)
            }
            Init::KaimingNormal => Tensor::randn(shape, 0.0, (2.0 / fan_in).sqrt(), rng),
            Init::KaimingUniform => {
                let b = (6.0 / fan_in).sqrt();
                Tensor::rand_uniform(shape, -b, b, rng)
            }
            Init::XavierUniform => {
                let b = (6.0 / (fan_in + fan_out as f32)).sqrt();
                Tensor::rand_uniform(shape, -b, b, rng)
            }
        }
    }
}

/// Creates parameters under a scoped dotted name, from a seeded RNG.
pub struct ParamBuilder<'s> {
    store: &'s mut ParamStore,
    rng: &'s mut ChaCha8Rng,
    prefix: String,
    /// Elements that may still be created ([`ModelSeed::limit_elements`]).
    remaining: &'s mut usize,
}

/// The store and RNG a model is built from.
pub struct ModelSeed {
    /// The parameters.
    pub store: ParamStore,
    rng: ChaCha8Rng,
    remaining: usize,
}

impl ModelSeed {
    /// An empty store and an RNG seeded with `seed`: building the same model from the same
    /// seed gives the same weights.
    pub fn new(seed: u64) -> Self {
        ModelSeed {
            store: ParamStore::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            // However it is described (flags, a file), no model holds more values than one
            // input may take.
            remaining: usize::try_from(limits::max_input_bytes() / 4).unwrap_or(usize::MAX),
        }
    }

    /// Refuses (with an error, before allocating) any parameter that would take the model past
    /// `max_elements` values in all: building a model from a description read from a file
    /// (a model file's spec) then cannot allocate more than the file's own weights. Without
    /// it, the limit is what one input may take (`limits::max_input_bytes`, in f32 values).
    pub fn limit_elements(mut self, max_elements: usize) -> Self {
        self.remaining = max_elements;
        self
    }

    /// The root builder.
    pub fn builder(&mut self) -> ParamBuilder<'_> {
        ParamBuilder {
            store: &mut self.store,
            rng: &mut self.rng,
            prefix: String::new(),
            remaining: &mut self.remaining,
        }
    }
}

impl ParamBuilder<'_> {
    /// A builder whose names are prefixed by `name.`.
    pub fn scope(&mut self, name: &str) -> ParamBuilder<'_> {
        let prefix = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        };
        ParamBuilder {
            store: self.store,
            rng: self.rng,
            prefix,
            remaining: self.remaining,
        }
    }

    fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// A new weight.
    ///
    /// # Errors
    /// [`Error::DuplicateParam`]; [`Error::InvalidArgument`] past [`ModelSeed::limit_elements`].
    pub fn weight(
        &mut self,
        name: &str,
        shape: &[usize],
        init: Init,
        fan_in: Option<usize>,
    ) -> Result<ParamId> {
        self.claim(name, shape)?;
        let value = init.make(shape, fan_in, self.rng);
        let full = self.full_name(name);
        self.store.add(&full, value, ParamKind::Weight)
    }

    /// A new buffer (running state) of `shape`, every value `fill`.
    ///
    /// # Errors
    /// As [`ParamBuilder::weight`].
    pub fn buffer(&mut self, name: &str, shape: &[usize], fill: f32) -> Result<ParamId> {
        self.claim(name, shape)?;
        let full = self.full_name(name);
        self.store
            .add(&full, Tensor::full(shape, fill), ParamKind::Buffer)
    }

    /// Takes `shape`'s element count from the budget, or refuses before anything is allocated.
    fn claim(&mut self, name: &str, shape: &[usize]) -> Result<()> {
        let numel = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        match numel {
            Some(n) if n <= *self.remaining => {
                *self.remaining -= n;
                Ok(())
            }
            _ => Err(Error::arg(
                "ParamBuilder",
                format!(
                    "parameter {:?} of shape {shape:?} does not fit: the model may hold {} more values (the file's own weights, or {} MiB in all: {})",
                    self.full_name(name),
                    self.remaining,
                    limits::max_input_bytes() >> 20,
                    limits::MAX_INPUT_MB_ENV
                ),
            )),
        }
    }
}
