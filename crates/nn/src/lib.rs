//! `nn`: layers, losses, optimizers, checkpoints and pretrained-weight import.
//!
//! Parameters live in a [`ParamStore`] by dotted name; layers hold [`ParamId`]s and implement
//! [`Module::forward`] against a [`Ctx`], which wraps the store's tensors as autograd vars for
//! one graph (trainable weights as leaves). After `graph.backward(&loss)`,
//! [`Ctx::param_grads`] gives the gradients an [`optim::Optimizer`] applies to the store.
//!
//! ```
//! use autograd::Graph;
//! use nn::{Ctx, Linear, ModelSeed, Mode, Module, optim::Sgd};
//! use tensor::Tensor;
//!
//! let mut seed = ModelSeed::new(0);
//! let layer = Linear::new(&mut seed.builder().scope("fc"), 3, 1, true)?;
//! let mut store = seed.store;
//! let mut opt = Sgd::new(0.02);
//! let x = Tensor::from_vec(vec![1.0, 2.0, 3.0], &[1, 3])?;
//! let target = Tensor::from_vec(vec![1.0], &[1, 1])?;
//! let mut last = f32::INFINITY;
//! for step in 0..20 {
//!     let g = Graph::new();
//!     let cx = Ctx::new(&g, &store, Mode::Train, step);
//!     let y = layer.forward(&cx, &g.constant(x.clone()))?;
//!     let loss = nn::loss::mse(&y, &g.constant(target.clone()))?;
//!     let at = nn::train::StepAt { epoch: 0, index: step as usize, step };
//!     // Loss and gradients checked finite, backward, buffer updates, the optimizer's step.
//!     last = nn::train::train_step(&g, &cx, &loss, &mut store, &mut opt, at)?;
//! }
//! assert!(last < 1e-3);
//! # Ok::<(), nn::Error>(())
//! ```
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

pub mod checkpoint;
mod ctx;
pub mod data;
mod error;
pub mod inspect;
mod layers;
pub mod lbfgs;
pub use limits;
pub mod loss;
pub mod models;
pub mod npy;
pub mod optim;
mod param;
pub mod plot;
pub mod train;
pub mod weights;

pub use ctx::{Ctx, Mode, Module, ParamGrads};
pub use error::{Error, Result};
pub use layers::*;
pub use param::{Init, ModelSeed, ParamBuilder, ParamId, ParamKind, ParamStore, fans};
