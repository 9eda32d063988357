//! The tape, the var handle and the reverse sweep.

use std::cell::RefCell;

use tensor::Tensor;

use crate::op::{Op, OpKind, UnaryKind};
use crate::{Error, Result};

/// Index of a recorded node; creation order is a topological order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub(crate) u32);

/// An append-only tape of recorded ops.
///
/// The `RefCell` is the only interior mutability in the crate: it is borrowed inside
/// `Graph::record` and [`Graph::backward`] only, never while user code runs, so it cannot be
/// re-entered. A graph is `!Sync`; parallelism lives inside the tensor kernels.
pub struct Graph {
    tape: RefCell<Vec<Op>>,
    recording: bool,
}

/// A value in a graph: the tensor, and its node when it is on the tape.
#[derive(Clone)]
pub struct Var<'g> {
    pub(crate) value: Tensor,
    pub(crate) node: Option<NodeId>,
    pub(crate) graph: &'g Graph,
}

impl std::fmt::Debug for Var<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Var({:?}, node {:?})", self.value, self.node)
    }
}

/// Gradients of a loss with respect to the leaves of a graph.
#[derive(Debug)]
pub struct Gradients {
    grads: Vec<Option<Tensor>>,
}

impl Gradients {
    /// The gradient of a leaf, or `None` when the loss does not depend on it (or it is not a
    /// leaf of this graph: intermediate gradients are freed during the sweep).
    pub fn get(&self, var: &Var<'_>) -> Option<&Tensor> {
        self.get_node(var.node?)
    }

    /// The gradient of a node by id.
    pub fn get_node(&self, node: NodeId) -> Option<&Tensor> {
        self.grads.get(node.0 as usize)?.as_ref()
    }

    /// Takes a leaf's gradient out, leaving `None`.
    pub fn take(&mut self, var: &Var<'_>) -> Option<Tensor> {
        self.grads.get_mut(var.node?.0 as usize)?.take()
    }
}

impl Default for Graph {
    fn default() -> Self {
        Graph::new()
    }
}

impl Graph {
    /// A graph that records ops on leaves for [`Graph::backward`].
    pub fn new() -> Graph {
        Graph {
            tape: RefCell::new(Vec::new()),
            recording: true,
        }
    }

    /// A graph that records nothing: for inference, and for targets computed once.
    pub fn no_grad() -> Graph {
        Graph {
            tape: RefCell::new(Vec::new()),
            recording: false,
        }
    }

    /// True when this graph records ops.
    pub fn is_recording(&self) -> bool {
        self.recording
    }

    /// A var whose gradient [`Graph::backward`] computes (no node on a no-grad graph).
    pub fn leaf(&self, value: Tensor) -> Var<'_> {
        let node = self.recording.then(|| self.push(Op::Leaf));
        Var {
            value,
            node,
            graph: self,
        }
    }

    /// A var that never gets a gradient and records nothing.
    pub fn constant(&self, value: Tensor) -> Var<'_> {
        Var {
            value,
            node: None,
            graph: self,
        }
    }

    /// Number of recorded nodes.
    pub fn len(&self) -> usize {
        self.tape.borrow().len()
    }

    /// True when nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The kinds of the recorded nodes, in creation order (for tests and debugging).
    pub fn op_kinds(&self) -> Vec<OpKind> {
        self.tape.borrow().iter().map(Op::kind).collect()
    }

    fn push(&self, op: Op) -> NodeId {
        let mut tape = self.tape.borrow_mut();
        let id = NodeId(u32::try_from(tape.len()).expect("fewer than 2^32 nodes"));
        tape.push(op);
        id
    }

    /// Wraps an op's output: records `make_op()` when the graph records and an input is on the
    /// tape, else returns an untracked var (and never builds the op, so nothing is saved).
    pub(crate) fn record(
        &self,
        value: Tensor,
        inputs: &[Option<NodeId>],
        make_op: impl FnOnce() -> Op,
    ) -> Var<'_> {
        let node =
            (self.recording && inputs.iter().any(Option::is_some)).then(|| self.push(make_op()));
        Var {
            value,
            node,
            graph: self,
        }
    }

    /// Gradients of `loss` (one element) with respect to every leaf it depends on.
    ///
    /// One reverse sweep from the loss's node: each node's gradient is taken (freeing it) when
    /// its op runs, and added into its inputs' slots. Leaves keep theirs.
    ///
    /// # Errors
    /// [`Error::NonScalarLoss`] unless the loss has one element; [`Error::GraphMismatch`] when
    /// it belongs to another graph; tensor errors from the backward formulas (internal).
    pub fn backward(&self, loss: &Var<'_>) -> Result<Gradients> {
        if loss.value.numel() != 1 {
            return Err(Error::NonScalarLoss {
                shape: loss.value.shape().to_vec(),
            });
        }
        self.backward_from(loss, Tensor::ones(loss.value.shape()), ReluRule::Gradient)
    }

    /// A reverse sweep from any var with the seed `seed` (its shape), with the chosen rule for
    /// ReLU. With [`ReluRule::Deconvnet`] this is Zeiler & Fergus's deconvnet projection: max
    /// pooling's backward unpools with the recorded switches, a convolution's backward is the
    /// transposed convolution with the same filters, and ReLU rectifies the signal going back.
    ///
    /// # Errors
    /// [`Error::GraphMismatch`] when `from` belongs to another graph;
    /// [`Error::SeedShape`] when the seed's shape differs from the var's.
    pub fn backward_from(&self, from: &Var<'_>, seed: Tensor, rule: ReluRule) -> Result<Gradients> {
        if !std::ptr::eq(from.graph, self) {
            return Err(Error::GraphMismatch { op: "backward" });
        }
        if seed.shape() != from.value.shape() {
            return Err(Error::SeedShape {
                seed: seed.shape().to_vec(),
                var: from.value.shape().to_vec(),
            });
        }
        let tape = self.tape.borrow();
        let mut grads: Vec<Option<Tensor>> = vec![None; tape.len()];
        let Some(root) = from.node else {
            return Ok(Gradients { grads });
        };
        grads[root.0 as usize] = Some(seed);
        for id in (0..=root.0 as usize).rev() {
            let op = &tape[id];
            if matches!(op, Op::Leaf) {
                continue;
            }
            let Some(g) = grads[id].take() else { continue };
            let contributions = match (rule, op) {
                (
                    ReluRule::Deconvnet,
                    Op::Unary {
                        kind: UnaryKind::Relu,
                        x,
                        ..
                    },
                ) => vec![(*x, g.relu())],
                _ => op.backward(&g)?,
            };
            for (input, gi) in contributions {
                let slot = &mut grads[input.0 as usize];
                *slot = Some(match slot.take() {
                    None => gi,
                    Some(acc) => acc.add(&gi)?,
                });
            }
        }
        Ok(Gradients { grads })
    }
}

/// How a reverse sweep passes a signal back through ReLU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReluRule {
    /// The true gradient: the signal where the input was positive.
    Gradient,
    /// Zeiler & Fergus's deconvnet: the rectified signal, whatever the input was.
    Deconvnet,
}

impl<'g> Var<'g> {
    /// The value.
    pub fn value(&self) -> &Tensor {
        &self.value
    }

    /// The value's shape.
    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }

    /// The node, when this var is on the tape.
    pub fn node(&self) -> Option<NodeId> {
        self.node
    }

    /// The graph this var belongs to.
    pub fn graph(&self) -> &'g Graph {
        self.graph
    }

    /// The same value, cut off from the tape: no gradient flows through it.
    pub fn detach(&self) -> Var<'g> {
        Var {
            value: self.value.clone(),
            node: None,
            graph: self.graph,
        }
    }

    pub(crate) fn same_graph(&self, op: &'static str, other: &Var<'_>) -> Result<()> {
        if std::ptr::eq(self.graph, other.graph) {
            Ok(())
        } else {
            Err(Error::GraphMismatch { op })
        }
    }

    pub(crate) fn wrap(
        &self,
        value: Tensor,
        inputs: &[Option<NodeId>],
        op: impl FnOnce() -> Op,
    ) -> Var<'g> {
        self.graph.record(value, inputs, op)
    }
}
