//! The primitive op set: one closed enum and, next to it, every per-op fact.
//!
//! - [`Op`]: the ops with their attributes; [`table`]: each op's mnemonic, attributes, class and arity (the parser,
//!   printer, DOT export and SPEC test read it); [`typing`]: the typing rule.
//! - [`elementwise`]: the elementwise ops' table: cost class, scalar meaning per dtype, gradient;
//!   [`scalar`]: one element and the ops applied to it.
//!
//! Every layer, activation and loss is a composition of these (see `composite.rs`). ARCHITECTURE.md's "how to add an
//! op" lists the steps.

pub mod elementwise;
pub mod scalar;
pub mod table;
mod typing;

pub use elementwise::{BinaryOp, Cost, Float, UnaryOp};
pub use scalar::Scalar;
pub use table::{Arity, AttrKind, OpKind};

pub use crate::collective::ReduceOp;
pub use crate::types::MAX_ELEMENTS;
use crate::types::{DType, Shape, TensorType, MAX_RANK};
use smallvec::SmallVec;
use std::fmt;
use std::hash::{Hash, Hasher};

/// Axes of a reduction: sorted, without duplicates (the typing rule checks it).
pub type Axes = SmallVec<[usize; MAX_RANK]>;

/// What a graph input is for. Runtimes keep `param` and `state` inputs resident; only `param`s are trained.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Role {
    /// Fed anew on every run (features, labels).
    Data,
    /// A trainable parameter.
    Param,
    /// Carried from run to run but not trained (optimizer moments, step counters).
    State,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Data => "data",
            Role::Param => "param",
            Role::State => "state",
        }
    }

    pub fn from_name(name: &str) -> Option<Role> {
        [Role::Data, Role::Param, Role::State]
            .into_iter()
            .find(|r| r.name() == name)
    }
}

/// Direction of a comparison; the result is `bool`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum CmpDir {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl CmpDir {
    pub const ALL: [CmpDir; 6] = [
        CmpDir::Lt,
        CmpDir::Le,
        CmpDir::Gt,
        CmpDir::Ge,
        CmpDir::Eq,
        CmpDir::Ne,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CmpDir::Lt => "lt",
            CmpDir::Le => "le",
            CmpDir::Gt => "gt",
            CmpDir::Ge => "ge",
            CmpDir::Eq => "eq",
            CmpDir::Ne => "ne",
        }
    }

    pub fn from_name(name: &str) -> Option<CmpDir> {
        CmpDir::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Ordering comparisons need an order: not defined on `bool`.
    pub fn is_ordering(self) -> bool {
        !matches!(self, CmpDir::Eq | CmpDir::Ne)
    }

    /// The comparison's meaning: IEEE on floats (every comparison with NaN is false except `ne`).
    pub fn eval<T: PartialOrd>(self, a: &T, b: &T) -> bool {
        match self {
            CmpDir::Lt => a < b,
            CmpDir::Le => a <= b,
            CmpDir::Gt => a > b,
            CmpDir::Ge => a >= b,
            CmpDir::Eq => a == b,
            CmpDir::Ne => a != b,
        }
    }
}

/// The value of a `constant`: one value splatted over the whole shape, or every element in row-major order.
///
/// Values are stored as f64, which holds every f32, i32 and bool exactly. Equality and hashing are by bit pattern, so
/// `-0.0 != 0.0` and `NaN == NaN` here, which is what CSE and the text round-trip need.
#[derive(Clone, Debug)]
pub enum Literal {
    Splat(f64),
    Dense(Vec<f64>),
}

impl Literal {
    /// The element at row-major index `i` (for a splat, the one value).
    pub fn get(&self, i: usize) -> f64 {
        match self {
            Literal::Splat(v) => *v,
            Literal::Dense(vs) => vs[i],
        }
    }

    pub fn values(&self) -> &[f64] {
        match self {
            Literal::Splat(v) => std::slice::from_ref(v),
            Literal::Dense(vs) => vs,
        }
    }

    /// The splatted value, if every element is that value.
    pub fn as_splat(&self) -> Option<f64> {
        match self {
            Literal::Splat(v) => Some(*v),
            Literal::Dense(vs) => {
                let first = *vs.first()?;
                vs.iter()
                    .all(|v| v.to_bits() == first.to_bits())
                    .then_some(first)
            }
        }
    }
}

impl PartialEq for Literal {
    fn eq(&self, other: &Literal) -> bool {
        match (self, other) {
            (Literal::Splat(a), Literal::Splat(b)) => a.to_bits() == b.to_bits(),
            (Literal::Dense(a), Literal::Dense(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            }
            _ => false,
        }
    }
}

impl Eq for Literal {}

impl Hash for Literal {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        for v in self.values() {
            v.to_bits().hash(state);
        }
    }
}

/// A constant as the dtype stores it: f32 values rounded to nearest (`0.01` in an f32 graph is the nearest f32), and
/// integer/bool zeros without a sign. The builder and the parser apply it; the typing rule still rejects values the
/// dtype can't hold, such as 0.5 for i32.
pub fn fit_to_dtype(value: f64, dtype: DType) -> f64 {
    match dtype {
        DType::F32 => value as f32 as f64,
        DType::F64 => value,
        DType::I32 | DType::Bool => value + 0.0,
    }
}

/// The coarse kind of an op, which fusion and the backends dispatch on.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum OpClass {
    Source,
    Elementwise,
    Reduction,
    Movement,
    Contraction,
    /// Communicates with the other processes of a group (`all_reduce`): never fused, its own host step.
    Collective,
}

/// A primitive operation. Attributes are inline; sources carry their result type.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Op {
    /// A graph input, fed by the caller.
    Input {
        name: String,
        role: Role,
        ty: TensorType,
    },
    /// A constant tensor.
    Constant {
        ty: TensorType,
        value: Literal,
    },
    /// `out[i_0, ..., i_n] = i_axis`: the index along `axis`, as the result's dtype.
    Iota {
        ty: TensorType,
        axis: usize,
    },
    Unary(UnaryOp),
    /// Element type conversion (float→int truncates toward zero and saturates; NaN→0; x→bool is `x != 0`).
    Cast {
        to: DType,
    },
    Binary(BinaryOp),
    Compare(CmpDir),
    /// `select(cond, a, b)`: `a` where `cond`, else `b`.
    Select,
    ReduceSum {
        axes: Axes,
        keep_dims: bool,
    },
    ReduceMax {
        axes: Axes,
        keep_dims: bool,
    },
    /// Same elements in row-major order, new shape.
    Reshape {
        shape: Shape,
    },
    /// `out[i_0..i_n] = in[j]` where `j[perm[k]] = i_k`, i.e. result dim k is operand dim `perm[k]`.
    Transpose {
        perm: Vec<usize>,
    },
    /// NumPy broadcasting made explicit: dims aligned from the right; each operand dim equals the target's or is 1.
    Broadcast {
        shape: Shape,
    },
    /// The half-open box `[start, end)` in every dimension (unit stride).
    Slice {
        start: Vec<usize>,
        end: Vec<usize>,
    },
    /// Operands joined along `axis`.
    Concat {
        axis: usize,
    },
    /// `[..., m, k] x [..., k, n] -> [..., m, n]`; the leading (batch) dims are equal.
    Matmul,
    /// Constant padding: `low[d]` elements of `value` (a splat) before dim d and `high[d]` after it.
    Pad {
        low: Vec<usize>,
        high: Vec<usize>,
        value: Literal,
    },
    /// The sliding windows over the last `s = window.len()` dims: `[lead.., n_1..n_s] -> [lead.., o_1..o_s,
    /// k_1..k_s]` with `out[l, o, a] = in[l, o·stride + a·dilation]` and `o = (n − dilation·(k − 1) − 1) / stride
    /// + 1` per dim. A view: what convolutions and pooling read.
    Windows {
        window: Vec<usize>,
        stride: Vec<usize>,
        dilation: Vec<usize>,
    },
    /// The transpose of `windows` (its gradient): `[lead.., o_1..o_s, k_1..k_s] -> [lead.., size_1..size_s]`, every
    /// window element added back to the position `o·stride + a·dilation` it was read from.
    OverlapAdd {
        size: Vec<usize>,
        stride: Vec<usize>,
        dilation: Vec<usize>,
    },
    /// `out[p] = x[p with p[axis] := idx[p]]` (NumPy's `take_along_axis`): operands `x` and `idx` (i32) of one
    /// rank, equal dims but along `axis`; the result has `idx`'s shape and `x`'s dtype. An index outside
    /// `0..x.dims[axis]` reads 0 (SPEC §3.11): defined, the same on every backend, and never an out-of-range load.
    Gather {
        axis: usize,
    },
    /// Every process's `x` reduced (`sum` or `mean`) in rank order, the same result on every rank (SPEC §3.12). One
    /// process: the identity. `group` 0 is every process; other groups are reserved.
    AllReduce {
        op: ReduceOp,
        group: usize,
    },
}

pub use typing::{broadcastable_to, representable, windows_out, TypeError};

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
