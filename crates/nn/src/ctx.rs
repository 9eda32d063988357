//! The forward context: a graph, the parameters as vars, the mode, and pending buffer updates.

use std::cell::RefCell;

use autograd::{Gradients, Graph, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tensor::Tensor;

use crate::Result;
use crate::param::{ParamId, ParamKind, ParamStore};

/// Training or inference behaviour of layers (dropout, batch statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Dropout active, BatchNorm uses and updates batch statistics.
    Train,
    /// Dropout off, BatchNorm uses its running statistics.
    Eval,
}

/// What a layer's `forward` sees.
pub struct Ctx<'g> {
    graph: &'g Graph,
    params: Vec<Var<'g>>,
    mode: Mode,
    rng: RefCell<ChaCha8Rng>,
    updates: RefCell<Vec<(ParamId, Tensor)>>,
}

/// Something that maps a var to a var.
pub trait Module {
    /// Runs the layer.
    ///
    /// # Errors
    /// Shape errors of the underlying ops.
    fn forward<'g>(&self, cx: &Ctx<'g>, x: &Var<'g>) -> Result<Var<'g>>;
}

impl<'g> Ctx<'g> {
    /// Wraps every stored tensor as a var of `graph`: trainable weights as leaves (when the
    /// graph records), frozen weights and buffers as constants. `seed` drives dropout masks.
    pub fn new(graph: &'g Graph, store: &ParamStore, mode: Mode, seed: u64) -> Ctx<'g> {
        let params = store
            .ids()
            .map(|id| {
                let v = store.get(id).clone();
                if store.kind(id) == ParamKind::Weight && store.is_trainable(id) {
                    graph.leaf(v)
                } else {
                    graph.constant(v)
                }
            })
            .collect();
        Ctx {
            graph,
            params,
            mode,
            rng: RefCell::new(ChaCha8Rng::seed_from_u64(seed)),
            updates: RefCell::new(Vec::new()),
        }
    }

    /// The graph.
    pub fn graph(&self) -> &'g Graph {
        self.graph
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// True in training mode.
    pub fn is_train(&self) -> bool {
        self.mode == Mode::Train
    }

    /// A parameter as a var.
    pub fn param(&self, id: ParamId) -> &Var<'g> {
        &self.params[id.0 as usize]
    }

    /// Runs `f` with this context's RNG (dropout masks, augmentation).
    pub fn with_rng<T>(&self, f: impl FnOnce(&mut ChaCha8Rng) -> T) -> T {
        f(&mut self.rng.borrow_mut())
    }

    /// Queues a new value for a buffer (applied by [`Ctx::apply_updates`]).
    pub fn update_buffer(&self, id: ParamId, value: Tensor) {
        self.updates.borrow_mut().push((id, value));
    }

    /// Writes the queued buffer updates (BatchNorm running statistics) into the store.
    ///
    /// # Errors
    /// A shape mismatch (internal).
    pub fn apply_updates(&self, store: &mut ParamStore) -> Result<()> {
        for (id, v) in self.updates.borrow_mut().drain(..) {
            store.set(id, v)?;
        }
        Ok(())
    }

    /// The gradient of each trainable parameter (indexed by [`ParamId`]).
    pub fn param_grads(&self, grads: &Gradients) -> ParamGrads {
        ParamGrads {
            grads: self.params.iter().map(|p| grads.get(p).cloned()).collect(),
        }
    }
}

/// Gradients by parameter.
#[derive(Debug, Clone)]
pub struct ParamGrads {
    pub(crate) grads: Vec<Option<Tensor>>,
}

impl ParamGrads {
    /// The gradient of one parameter (`None` when frozen, a buffer, or unused).
    pub fn get(&self, id: ParamId) -> Option<&Tensor> {
        self.grads.get(id.0 as usize)?.as_ref()
    }

    /// The global L2 norm of all gradients.
    pub fn global_norm(&self) -> f32 {
        self.grads
            .iter()
            .flatten()
            .map(|g| g.sqr().sum_all() as f64)
            .sum::<f64>()
            .sqrt() as f32
    }

    /// Scales all gradients so that their global norm is at most `max_norm`; returns the norm
    /// before clipping.
    pub fn clip_global_norm(&mut self, max_norm: f32) -> f32 {
        let norm = self.global_norm();
        if norm > max_norm && norm > 0.0 {
            let s = max_norm / norm;
            for g in self.grads.iter_mut().flatten() {
                *g = g.scale(s);
            }
        }
        norm
    }

    /// True when any gradient holds a NaN or an infinity.
    pub fn has_non_finite(&self) -> bool {
        self.grads
            .iter()
            .flatten()
            .any(|g| g.to_vec().iter().any(|v| !v.is_finite()))
    }
}
