//! Optimizers and learning-rate schedules. Optimizer state is plain named tensors, so it goes
//! into checkpoints.

use serde::{Deserialize, Serialize};
use tensor::Tensor;

use crate::ctx::ParamGrads;
use crate::param::{ParamId, ParamStore};
use crate::{Error, Result};

/// One optimizer buffer of one parameter, for checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateTensor {
    /// Parameter name.
    pub param: String,
    /// Buffer name (`momentum`, `exp_avg`, ...).
    pub slot: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Values.
    pub data: Vec<f32>,
}

/// An optimizer's full state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimState {
    /// Which optimizer.
    pub kind: String,
    /// Steps taken.
    pub step: u64,
    /// Buffers.
    pub tensors: Vec<StateTensor>,
}

/// Updates parameters from gradients.
pub trait Optimizer {
    /// One update of every trainable parameter that has a gradient.
    ///
    /// # Errors
    /// Shape mismatches (internal).
    fn step(&mut self, store: &mut ParamStore, grads: &ParamGrads) -> Result<()>;
    /// The learning rate.
    fn lr(&self) -> f32;
    /// Sets the learning rate (schedules call this).
    fn set_lr(&mut self, lr: f32);
    /// The state, for a checkpoint.
    fn state(&self, store: &ParamStore) -> OptimState;
    /// Restores a state saved by [`Optimizer::state`].
    ///
    /// # Errors
    /// Another optimizer's state, or buffers for unknown parameters or of the wrong shape.
    fn load_state(&mut self, store: &ParamStore, state: &OptimState) -> Result<()>;
}

type Slots = Vec<Option<Tensor>>;

fn slot_get(slots: &mut Slots, id: ParamId, like: &Tensor) -> Tensor {
    let i = id.0 as usize;
    if slots.len() <= i {
        slots.resize(i + 1, None);
    }
    slots[i]
        .get_or_insert_with(|| Tensor::zeros(like.shape()))
        .clone()
}

fn save_slots(store: &ParamStore, name: &str, slots: &Slots, out: &mut Vec<StateTensor>) {
    for (i, s) in slots.iter().enumerate() {
        if let Some(t) = s {
            out.push(StateTensor {
                param: store.name(ParamId(i as u32)).to_string(),
                slot: name.to_string(),
                shape: t.shape().to_vec(),
                data: t.to_vec(),
            });
        }
    }
}

fn load_slots(store: &ParamStore, state: &OptimState, name: &str) -> Result<Slots> {
    let mut slots: Slots = vec![None; store.len()];
    for t in state.tensors.iter().filter(|t| t.slot == name) {
        let id = store.id(&t.param).ok_or_else(|| Error::MissingParam {
            name: t.param.clone(),
        })?;
        if store.get(id).shape() != t.shape.as_slice() {
            return Err(Error::ParamShape {
                name: t.param.clone(),
                expected: store.get(id).shape().to_vec(),
                got: t.shape.clone(),
            });
        }
        slots[id.0 as usize] = Some(Tensor::from_vec(t.data.clone(), &t.shape)?);
    }
    Ok(slots)
}

fn check_kind(state: &OptimState, kind: &str) -> Result<()> {
    if state.kind != kind {
        return Err(Error::arg(
            "load_state",
            format!("state of a {} optimizer given to {kind}", state.kind),
        ));
    }
    Ok(())
}

/// Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay (PyTorch's
/// formulation: `v = mu v + g (+ wd p)`, `p -= lr v` or `lr (g + mu v)` with Nesterov).
#[derive(Debug, Clone)]
pub struct Sgd {
    /// Learning rate.
    pub lr: f32,
    /// Momentum.
    pub momentum: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
    velocity: Slots,
    steps: u64,
}

impl Sgd {
    /// Plain SGD.
    pub fn new(lr: f32) -> Self {
        Sgd {
            lr,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            velocity: vec![],
            steps: 0,
        }
    }
    /// Sets momentum (and Nesterov).
    pub fn momentum(mut self, m: f32, nesterov: bool) -> Self {
        self.momentum = m;
        self.nesterov = nesterov;
        self
    }
    /// Sets weight decay.
    pub fn weight_decay(mut self, wd: f32) -> Self {
        self.weight_decay = wd;
        self
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, store: &mut ParamStore, grads: &ParamGrads) -> Result<()> {
        let ids: Vec<ParamId> = store.ids().collect();
        for id in ids {
            let Some(g) = grads.get(id) else { continue };
            if !store.is_trainable(id) {
                continue;
            }
            let p = store.get(id).clone();
            let mut g = g.clone();
            if self.weight_decay != 0.0 {
                g = g.add(&p.scale(self.weight_decay))?;
            }
            let update = if self.momentum != 0.0 {
                let v = slot_get(&mut self.velocity, id, &p);
                // The first step starts the velocity at the gradient (PyTorch).
                let v = if self.steps == 0 {
                    g.clone()
                } else {
                    v.scale(self.momentum).add(&g)?
                };
                self.velocity[id.0 as usize] = Some(v.clone());
                if self.nesterov {
                    g.add(&v.scale(self.momentum))?
                } else {
                    v
                }
            } else {
                g
            };
            store.set(id, p.sub(&update.scale(self.lr))?)?;
        }
        self.steps += 1;
        Ok(())
    }
    fn lr(&self) -> f32 {
        self.lr
    }
    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }
    fn state(&self, store: &ParamStore) -> OptimState {
        let mut tensors = vec![];
        save_slots(store, "momentum", &self.velocity, &mut tensors);
        OptimState {
            kind: "sgd".into(),
            step: self.steps,
            tensors,
        }
    }
    fn load_state(&mut self, store: &ParamStore, state: &OptimState) -> Result<()> {
        check_kind(state, "sgd")?;
        self.velocity = load_slots(store, state, "momentum")?;
        self.steps = state.step;
        Ok(())
    }
}

/// Adam (Kingma & Ba) and AdamW (decoupled weight decay, Loshchilov & Hutter).
#[derive(Debug, Clone)]
pub struct Adam {
    /// Learning rate.
    pub lr: f32,
    /// `(beta1, beta2)`.
    pub betas: (f32, f32),
    /// Added to the denominator.
    pub eps: f32,
    /// Weight decay: L2 in the gradient for Adam, decoupled for AdamW.
    pub weight_decay: f32,
    /// AdamW when true.
    pub decoupled: bool,
    m: Slots,
    v: Slots,
    steps: u64,
}

impl Adam {
    /// Adam with PyTorch's defaults (`betas = (0.9, 0.999)`, `eps = 1e-8`).
    pub fn new(lr: f32) -> Self {
        Adam {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            m: vec![],
            v: vec![],
            steps: 0,
        }
    }
    /// AdamW with decoupled weight decay `wd` (PyTorch's default 0.01).
    pub fn adamw(lr: f32, wd: f32) -> Self {
        Adam {
            weight_decay: wd,
            decoupled: true,
            ..Adam::new(lr)
        }
    }
    /// Sets L2 weight decay (Adam) or decoupled decay (AdamW).
    pub fn weight_decay(mut self, wd: f32) -> Self {
        self.weight_decay = wd;
        self
    }
    fn kind(&self) -> &'static str {
        if self.decoupled { "adamw" } else { "adam" }
    }
}

impl Optimizer for Adam {
    fn step(&mut self, store: &mut ParamStore, grads: &ParamGrads) -> Result<()> {
        self.steps += 1;
        let t = self.steps as i32;
        let (b1, b2) = self.betas;
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        let ids: Vec<ParamId> = store.ids().collect();
        for id in ids {
            let Some(g) = grads.get(id) else { continue };
            if !store.is_trainable(id) {
                continue;
            }
            let mut p = store.get(id).clone();
            let mut g = g.clone();
            if self.weight_decay != 0.0 {
                if self.decoupled {
                    p = p.scale(1.0 - self.lr * self.weight_decay);
                } else {
                    g = g.add(&p.scale(self.weight_decay))?;
                }
            }
            let m = slot_get(&mut self.m, id, &p)
                .scale(b1)
                .add(&g.scale(1.0 - b1))?;
            let v = slot_get(&mut self.v, id, &p)
                .scale(b2)
                .add(&g.sqr().scale(1.0 - b2))?;
            let step_size = self.lr / c1;
            let denom = v.scale(1.0 / c2).sqrt().add_scalar(self.eps);
            let p = p.sub(&m.div(&denom)?.scale(step_size))?;
            self.m[id.0 as usize] = Some(m);
            self.v[id.0 as usize] = Some(v);
            store.set(id, p)?;
        }
        Ok(())
    }
    fn lr(&self) -> f32 {
        self.lr
    }
    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }
    fn state(&self, store: &ParamStore) -> OptimState {
        let mut tensors = vec![];
        save_slots(store, "exp_avg", &self.m, &mut tensors);
        save_slots(store, "exp_avg_sq", &self.v, &mut tensors);
        OptimState {
            kind: self.kind().into(),
            step: self.steps,
            tensors,
        }
    }
    fn load_state(&mut self, store: &ParamStore, state: &OptimState) -> Result<()> {
        check_kind(state, self.kind())?;
        self.m = load_slots(store, state, "exp_avg")?;
        self.v = load_slots(store, state, "exp_avg_sq")?;
        self.steps = state.step;
        Ok(())
    }
}

/// Learning rate as a function of the step.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Constant.
    Constant,
    /// Multiply by `gamma` every `every` steps.
    Step {
        /// Period in steps.
        every: u64,
        /// Factor.
        gamma: f32,
    },
    /// Cosine from the base rate to `min_lr` over `total` steps.
    Cosine {
        /// Steps to reach the minimum.
        total: u64,
        /// Final rate.
        min_lr: f32,
    },
}

/// A schedule with an optional linear warm-up.
#[derive(Debug, Clone, PartialEq)]
pub struct LrSchedule {
    /// The base rate.
    pub base_lr: f32,
    /// Linear warm-up from 0 over this many steps.
    pub warmup: u64,
    /// The shape after warm-up.
    pub schedule: Schedule,
}

impl LrSchedule {
    /// The rate at `step` (0-based).
    pub fn lr_at(&self, step: u64) -> f32 {
        if step < self.warmup {
            return self.base_lr * (step + 1) as f32 / self.warmup as f32;
        }
        let s = step - self.warmup;
        match self.schedule {
            Schedule::Constant => self.base_lr,
            Schedule::Step { every, gamma } => self.base_lr * gamma.powi((s / every.max(1)) as i32),
            Schedule::Cosine { total, min_lr } => {
                let t = (s as f32 / total.max(1) as f32).min(1.0);
                min_lr + 0.5 * (self.base_lr - min_lr) * (1.0 + (std::f32::consts::PI * t).cos())
            }
        }
    }
}
