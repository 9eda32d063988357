//! The closed set of recorded ops, and the thin backward dispatcher. Each family's forward
//! methods and backward formulas sit together in `ops/<family>.rs`.

use tensor::{ConvOptions, PoolOptions, PoolSwitches, Tensor};

use crate::Result;
use crate::graph::NodeId;
use crate::ops::{arith, nn, reduce, shape};

/// One recorded node: its inputs' nodes and exactly what its backward needs.
#[derive(Debug)]
pub(crate) enum Op {
    Leaf,
    Binary {
        kind: BinaryKind,
        a: Option<NodeId>,
        b: Option<NodeId>,
        a_shape: Vec<usize>,
        b_shape: Vec<usize>,
        /// Saved only when the other input needs a gradient (or the formula needs it).
        a_val: Option<Tensor>,
        b_val: Option<Tensor>,
    },
    Unary {
        kind: UnaryKind,
        x: NodeId,
        /// The input or the output, whichever the derivative is cheaper from.
        saved: Option<Tensor>,
    },
    Sum {
        x: NodeId,
        axes: Vec<usize>,
        in_shape: Vec<usize>,
    },
    Mean {
        x: NodeId,
        axes: Vec<usize>,
        in_shape: Vec<usize>,
    },
    Max {
        x: NodeId,
        axes: Vec<usize>,
        x_val: Tensor,
        out: Tensor,
    },
    LogSoftmax {
        x: NodeId,
        axis: usize,
        out: Tensor,
    },
    Reshape {
        x: NodeId,
        in_shape: Vec<usize>,
    },
    Permute {
        x: NodeId,
        perm: Vec<usize>,
    },
    Narrow {
        x: NodeId,
        axis: usize,
        start: usize,
        in_shape: Vec<usize>,
    },
    Cat {
        inputs: Vec<Option<NodeId>>,
        axis: usize,
        sizes: Vec<usize>,
    },
    IndexSelect {
        x: NodeId,
        axis: usize,
        indices: Vec<usize>,
        in_shape: Vec<usize>,
    },
    BroadcastTo {
        x: NodeId,
        in_shape: Vec<usize>,
    },
    Matmul {
        a: Option<NodeId>,
        b: Option<NodeId>,
        a_val: Tensor,
        b_val: Tensor,
    },
    Gram {
        x: NodeId,
        x_val: Tensor,
    },
    Conv {
        x: Option<NodeId>,
        w: Option<NodeId>,
        b: Option<NodeId>,
        x_val: Tensor,
        w_val: Tensor,
        opts: ConvOptions,
    },
    ConvTranspose {
        x: Option<NodeId>,
        w: Option<NodeId>,
        b: Option<NodeId>,
        x_val: Tensor,
        w_val: Tensor,
        opts: ConvOptions,
    },
    MaxPool {
        x: NodeId,
        switches: PoolSwitches,
    },
    BatchNorm {
        x: Option<NodeId>,
        gamma: Option<NodeId>,
        beta: Option<NodeId>,
        x_val: Tensor,
        mean: Tensor,
        invstd: Tensor,
        gamma_val: Tensor,
        /// True when `mean` and `invstd` are the batch's own statistics (training).
        batch_stats: bool,
    },
    AvgPool {
        x: NodeId,
        in_shape: Vec<usize>,
        opts: PoolOptions,
    },
}

/// The op table: every op kind is named once here. From the three lists it declares the
/// elementwise kinds ([`BinaryKind`], [`UnaryKind`] with their scalar parameters), [`OpKind`]
/// and [`OpKind::ALL`] (the list the gradient-check test walks), and [`Op::kind`]. Each name
/// under `recorded` is also an [`Op`] variant with what its backward needs: a variant missing
/// from the list, or a listed name with no variant, does not compile.
macro_rules! op_table {
    (
        binary { $($b:ident),* $(,)? }
        unary { $($u:ident $(($($param:ty),*))?),* $(,)? }
        recorded { $($o:ident),* $(,)? }
    ) => {
        /// Elementwise binary ops (inputs broadcast numpy-style; gradients are summed back).
        #[derive(Debug, Clone, Copy, PartialEq)]
        pub(crate) enum BinaryKind {
            $($b),*
        }

        /// Elementwise unary ops, with their scalar parameters.
        #[derive(Debug, Clone, Copy, PartialEq)]
        pub(crate) enum UnaryKind {
            $($u $(($($param),*))?),*
        }

        /// The kind of every recordable op, without its data: what tests enumerate to prove
        /// each op has a gradient check (see `tests/gradcheck.rs`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[allow(missing_docs)] // The names are the ops.
        pub enum OpKind {
            $($b,)* $($u,)* $($o),*
        }

        impl OpKind {
            /// Every kind, for exhaustive tests.
            pub const ALL: &'static [OpKind] = &[$(OpKind::$b,)* $(OpKind::$u,)* $(OpKind::$o),*];
        }

        impl Op {
            /// The op's kind.
            pub(crate) fn kind(&self) -> OpKind {
                match self {
                    Op::Binary { kind, .. } => match kind {
                        $(BinaryKind::$b => OpKind::$b),*
                    },
                    Op::Unary { kind, .. } => match kind {
                        $(UnaryKind::$u { .. } => OpKind::$u),*
                    },
                    $(Op::$o { .. } => OpKind::$o),*
                }
            }
        }
    };
}

op_table! {
    binary { Add, Sub, Mul, Div, Maximum, Minimum }
    unary {
        Neg,
        Abs,
        Sqr,
        Sqrt,
        Exp,
        Log,
        Relu,
        LeakyRelu(f32),
        Sigmoid,
        Tanh,
        Softplus,
        Clamp(f32, f32),
        Powf(f32),
        Scale(f32),
        AddScalar(f32),
    }
    recorded {
        Leaf,
        Sum,
        Mean,
        Max,
        LogSoftmax,
        Reshape,
        Permute,
        Narrow,
        Cat,
        IndexSelect,
        BroadcastTo,
        Matmul,
        Gram,
        Conv,
        ConvTranspose,
        MaxPool,
        AvgPool,
        BatchNorm,
    }
}

impl Op {
    /// The gradient of each input that is on the tape, given the output's gradient `g`.
    pub(crate) fn backward(&self, g: &Tensor) -> Result<Vec<(NodeId, Tensor)>> {
        match self {
            Op::Leaf => Ok(vec![]),
            Op::Binary { .. } | Op::Unary { .. } => arith::backward(self, g),
            Op::Sum { .. } | Op::Mean { .. } | Op::Max { .. } | Op::LogSoftmax { .. } => {
                reduce::backward(self, g)
            }
            Op::Reshape { .. }
            | Op::Permute { .. }
            | Op::Narrow { .. }
            | Op::Cat { .. }
            | Op::IndexSelect { .. }
            | Op::BroadcastTo { .. } => shape::backward(self, g),
            Op::Matmul { .. }
            | Op::Gram { .. }
            | Op::Conv { .. }
            | Op::ConvTranspose { .. }
            | Op::MaxPool { .. }
            | Op::AvgPool { .. }
            | Op::BatchNorm { .. } => nn::backward(self, g),
        }
    }
}
