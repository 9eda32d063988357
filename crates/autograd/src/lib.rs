//! `autograd`: reverse-mode differentiation over `tensor` ops.
//!
//! A [`Graph`] is an append-only tape. [`Graph::leaf`] makes a [`Var`] that wants a gradient;
//! every op on vars records one node of a closed op enum *only* when an input is on the tape,
//! so constants and [`Graph::no_grad`] graphs record nothing and free each activation as soon
//! as its var is dropped. [`Graph::backward`] sweeps the tape once in reverse creation order
//! (a topological order by construction) and returns the leaves' [`Gradients`]. The backward
//! pass runs plain tensor ops and never records.
//!
//! ```
//! use autograd::Graph;
//! use tensor::Tensor;
//! let g = Graph::new();
//! let x = g.leaf(Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3])?);
//! // y = sum(x * x + x): dy/dx = 2x + 1
//! let y = x.mul(&x)?.add(&x)?.sum()?;
//! let grads = g.backward(&y)?;
//! assert_eq!(grads.get(&x).unwrap().to_vec(), vec![3.0, 5.0, 7.0]);
//! # Ok::<(), autograd::Error>(())
//! ```
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod error;
mod graph;
mod op;
mod ops;

pub use error::{Error, Result};
pub use graph::{Gradients, Graph, NodeId, ReluRule, Var};
pub use op::OpKind;
