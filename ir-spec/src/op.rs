//! The primitive op set: one closed enum and, next to it, every per-op fact (mnemonic, arity, class, typing rule).
//!
//! Every layer, activation and loss is a composition of these (see `composite.rs`); the gradient rule of each op is in
//! `vjp.rs`, one arm per op in the order of this enum. Adding an op means: a variant here, an arm in each `match` the
//! compiler then points at, a section in SPEC.md, tests.

pub use crate::types::MAX_ELEMENTS;
use crate::types::{Abbreviated, DType, Shape, TensorType, MAX_RANK};
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

/// Elementwise ops of one operand.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum UnaryOp {
    Neg,
    Exp,
    Log,
    Sqrt,
    Recip,
    Tanh,
    /// The logistic sigmoid `1 / (1 + exp(-x))`.
    Logistic,
    Abs,
}

impl UnaryOp {
    pub const ALL: [UnaryOp; 8] = [
        UnaryOp::Neg,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Recip,
        UnaryOp::Tanh,
        UnaryOp::Logistic,
        UnaryOp::Abs,
    ];

    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Recip => "recip",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Logistic => "logistic",
            UnaryOp::Abs => "abs",
        }
    }

    /// Transcendental ops are defined on floats only; `neg` and `abs` also on i32 (wrapping).
    pub fn float_only(self) -> bool {
        !matches!(self, UnaryOp::Neg | UnaryOp::Abs)
    }
}

/// Elementwise ops of two operands of equal type.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    Pow,
}

impl BinaryOp {
    pub const ALL: [BinaryOp; 7] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::Pow,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Max => "max",
            BinaryOp::Min => "min",
            BinaryOp::Pow => "pow",
        }
    }

    pub fn float_only(self) -> bool {
        matches!(self, BinaryOp::Pow)
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
}

/// Why an op can't be applied to its operands. The message names the op and the offending types; the graph adds the
/// node.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("{0}")]
pub struct TypeError(pub String);

macro_rules! type_err {
    ($($arg:tt)*) => { Err(TypeError(format!($($arg)*))) };
}

/// The operand types for a message, abbreviated past 8 (a `concat` may have millions of operands).
fn list(types: &[&TensorType]) -> String {
    const SHOWN: usize = 8;
    let mut out = types
        .iter()
        .take(SHOWN)
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if types.len() > SHOWN {
        out += &format!(", … ({} operands)", types.len());
    }
    out
}

/// An integer attribute (`perm`, `start`, `axes`) for a message, as `[1, 0]`, abbreviated when huge.
fn ints(items: &[usize]) -> String {
    Abbreviated(items, ", ", "items").to_string()
}

impl Op {
    /// The op's name in the text format, DOT labels and error messages.
    pub fn mnemonic(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Constant { .. } => "constant",
            Op::Iota { .. } => "iota",
            Op::Unary(u) => u.name(),
            Op::Cast { .. } => "cast",
            Op::Binary(b) => b.name(),
            Op::Compare(_) => "compare",
            Op::Select => "select",
            Op::ReduceSum { .. } => "reduce_sum",
            Op::ReduceMax { .. } => "reduce_max",
            Op::Reshape { .. } => "reshape",
            Op::Transpose { .. } => "transpose",
            Op::Broadcast { .. } => "broadcast",
            Op::Slice { .. } => "slice",
            Op::Concat { .. } => "concat",
            Op::Matmul => "matmul",
        }
    }

    /// Number of operands; `None` for `concat`, which takes one or more.
    pub fn arity(&self) -> Option<usize> {
        Some(match self {
            Op::Input { .. } | Op::Constant { .. } | Op::Iota { .. } => 0,
            Op::Unary(_)
            | Op::Cast { .. }
            | Op::ReduceSum { .. }
            | Op::ReduceMax { .. }
            | Op::Reshape { .. }
            | Op::Transpose { .. }
            | Op::Broadcast { .. }
            | Op::Slice { .. } => 1,
            Op::Binary(_) | Op::Compare(_) | Op::Matmul => 2,
            Op::Select => 3,
            Op::Concat { .. } => return None,
        })
    }

    pub fn class(&self) -> OpClass {
        match self {
            Op::Input { .. } | Op::Constant { .. } | Op::Iota { .. } => OpClass::Source,
            Op::Unary(_) | Op::Cast { .. } | Op::Binary(_) | Op::Compare(_) | Op::Select => {
                OpClass::Elementwise
            }
            Op::ReduceSum { .. } | Op::ReduceMax { .. } => OpClass::Reduction,
            Op::Reshape { .. }
            | Op::Transpose { .. }
            | Op::Broadcast { .. }
            | Op::Slice { .. }
            | Op::Concat { .. } => OpClass::Movement,
            Op::Matmul => OpClass::Contraction,
        }
    }

    /// The typing rule: the result type of this op applied to operands of these types, or why it can't be applied.
    ///
    /// Every result is within SPEC §1's limits ([`TensorType::within_limits`]), and every shape computation on the
    /// way is checked, so no operand types (even ones beyond the limits) make it overflow or panic.
    pub fn infer(&self, operands: &[&TensorType]) -> Result<TensorType, TypeError> {
        let out = self.infer_unchecked(operands)?;
        if !out.within_limits() {
            let name = self.mnemonic();
            let of = if operands.is_empty() {
                String::new()
            } else {
                format!(" of {}", list(operands))
            };
            return type_err!(
                "{name}{of} gives {out}, beyond the limits: rank <= {MAX_RANK} and at most 2^40 elements (the product of the nonzero dims)"
            );
        }
        Ok(out)
    }

    /// The typing rule without the final limit check; its own arithmetic is checked.
    fn infer_unchecked(&self, operands: &[&TensorType]) -> Result<TensorType, TypeError> {
        let name = self.mnemonic();
        match self.arity() {
            Some(n) if operands.len() != n => {
                return type_err!("{name} takes {n} operand(s), got {}", operands.len());
            }
            None if operands.is_empty() => {
                return type_err!("{name} takes at least one operand, got none")
            }
            _ => {}
        }
        match self {
            Op::Input { ty, .. } => check_shape_size(name, ty).map(|()| ty.clone()),
            Op::Constant { ty, value } => {
                // Before comparing against `numel`, which saturates beyond the limits.
                check_shape_size(name, ty)?;
                if let Literal::Dense(vs) = value {
                    if vs.len() != ty.numel() {
                        return type_err!(
                            "constant of type {ty} has {} values, expected {}",
                            vs.len(),
                            ty.numel()
                        );
                    }
                }
                for &v in value.values() {
                    let ok = match ty.dtype {
                        DType::F32 => v.is_nan() || v.is_infinite() || (v as f32) as f64 == v,
                        DType::F64 => true,
                        DType::I32 => {
                            v.fract() == 0.0 && v >= i32::MIN as f64 && v <= i32::MAX as f64
                        }
                        DType::Bool => v == 0.0 || v == 1.0,
                    };
                    if !ok {
                        return type_err!(
                            "constant value {v} is not representable as {}",
                            ty.dtype
                        );
                    }
                }
                Ok(ty.clone())
            }
            Op::Iota { ty, axis } => {
                check_shape_size(name, ty)?;
                if *axis >= ty.rank() {
                    return type_err!("iota axis {axis} out of range for {ty}");
                }
                if !ty.dtype.is_numeric() {
                    return type_err!("iota needs a numeric type, got {ty}");
                }
                Ok(ty.clone())
            }
            Op::Unary(u) => {
                let t = operands[0];
                if u.float_only() && !t.dtype.is_float() {
                    return type_err!("{name} needs a float operand, got {t}");
                }
                if !t.dtype.is_numeric() {
                    return type_err!("{name} needs a numeric operand, got {t}");
                }
                Ok(t.clone())
            }
            Op::Cast { to } => Ok(operands[0].with_dtype(*to)),
            Op::Binary(b) => {
                let (l, r) = (operands[0], operands[1]);
                if l != r {
                    return type_err!("{name} needs operands of equal type, got {l} and {r}");
                }
                if b.float_only() && !l.dtype.is_float() {
                    return type_err!("{name} needs float operands, got {l}");
                }
                if !l.dtype.is_numeric() {
                    return type_err!("{name} needs numeric operands, got {l}");
                }
                Ok(l.clone())
            }
            Op::Compare(dir) => {
                let (l, r) = (operands[0], operands[1]);
                if l != r {
                    return type_err!(
                        "compare.{} needs operands of equal type, got {l} and {r}",
                        dir.name()
                    );
                }
                if dir.is_ordering() && !l.dtype.is_numeric() {
                    return type_err!("compare.{} needs numeric operands, got {l}", dir.name());
                }
                Ok(l.with_dtype(DType::Bool))
            }
            Op::Select => {
                let (c, a, b) = (operands[0], operands[1], operands[2]);
                if c.dtype != DType::Bool {
                    return type_err!("select needs a bool condition, got {c}");
                }
                if a != b {
                    return type_err!("select needs branches of equal type, got {a} and {b}");
                }
                if c.shape != a.shape {
                    return type_err!(
                        "select needs a condition of the branches' shape, got {c} for {a}"
                    );
                }
                Ok(a.clone())
            }
            Op::ReduceSum { axes, keep_dims } | Op::ReduceMax { axes, keep_dims } => {
                let t = operands[0];
                if !t.dtype.is_numeric() {
                    return type_err!("{name} needs a numeric operand, got {t}");
                }
                check_axes(name, axes, t)?;
                let dims: Vec<usize> = if *keep_dims {
                    t.dims()
                        .iter()
                        .enumerate()
                        .map(|(i, &d)| if axes.contains(&i) { 1 } else { d })
                        .collect()
                } else {
                    t.dims()
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !axes.contains(i))
                        .map(|(_, &d)| d)
                        .collect()
                };
                Ok(t.with_shape(dims))
            }
            Op::Reshape { shape } => {
                let t = operands[0];
                let out = t.with_shape(shape.clone());
                // Both counts must be exact (not saturated) to compare them.
                check_shape_size(name, t)?;
                check_shape_size(name, &out)?;
                if shape.numel() != t.numel() {
                    return type_err!("reshape of {t} to {shape} changes the element count");
                }
                Ok(out)
            }
            Op::Transpose { perm } => {
                let t = operands[0];
                let mut seen = [false; MAX_RANK];
                let is_perm = perm.len() == t.rank()
                    && perm
                        .iter()
                        .all(|&p| p < t.rank() && !std::mem::replace(&mut seen[p], true));
                if !is_perm {
                    return type_err!(
                        "transpose permutation {} is not a permutation of the dims of {t}",
                        ints(perm)
                    );
                }
                Ok(t.with_shape(perm.iter().map(|&p| t.dims()[p]).collect::<Vec<_>>()))
            }
            Op::Broadcast { shape } => {
                let t = operands[0];
                let out = t.with_shape(shape.clone());
                if !broadcastable_to(t.dims(), shape.dims()) {
                    return type_err!("cannot broadcast {t} to {shape}");
                }
                Ok(out)
            }
            Op::Slice { start, end } => {
                let t = operands[0];
                let ok = start.len() == t.rank()
                    && end.len() == t.rank()
                    && (0..t.rank()).all(|i| start[i] <= end[i] && end[i] <= t.dims()[i]);
                if !ok {
                    return type_err!("slice [{}, {}) is not within {t}", ints(start), ints(end));
                }
                Ok(t.with_shape((0..t.rank()).map(|i| end[i] - start[i]).collect::<Vec<_>>()))
            }
            Op::Concat { axis } => {
                let first = operands[0];
                if *axis >= first.rank() {
                    return type_err!("concat axis {axis} out of range for {first}");
                }
                let mut dims = first.dims().to_vec();
                dims[*axis] = 0;
                for t in operands {
                    let same_but_axis = t.dtype == first.dtype
                        && t.rank() == first.rank()
                        && (0..t.rank()).all(|i| i == *axis || t.dims()[i] == first.dims()[i]);
                    if !same_but_axis {
                        return type_err!(
                            "concat along axis {axis} needs equal types except that axis, got {}",
                            list(operands)
                        );
                    }
                    // Checked: extents beyond the limits (`f32[0,2^63]` twice) must not wrap to a small type.
                    dims[*axis] = match dims[*axis].checked_add(t.dims()[*axis]) {
                        Some(sum) if sum <= MAX_ELEMENTS => sum,
                        _ => {
                            return type_err!(
                                "concat along axis {axis} of {}: the result's extent exceeds 2^40",
                                list(operands)
                            )
                        }
                    };
                }
                Ok(first.with_shape(dims))
            }
            Op::Matmul => {
                let (a, b) = (operands[0], operands[1]);
                let r = a.rank();
                let ok = a.dtype == b.dtype
                    && a.dtype.is_numeric()
                    && r >= 2
                    && b.rank() == r
                    && a.dims()[..r - 2] == b.dims()[..r - 2]
                    && a.dims()[r - 1] == b.dims()[r - 2];
                if !ok {
                    return type_err!(
                        "matmul needs [...,m,k] x [...,k,n] of one numeric type and equal batch dims, got {a} and {b}"
                    );
                }
                let mut dims = a.dims().to_vec();
                dims[r - 1] = b.dims()[r - 1];
                Ok(a.with_shape(dims))
            }
        }
    }
}

/// SPEC §1's limits for a type an op is given (its source type, or an operand whose count it compares).
fn check_shape_size(name: &str, ty: &TensorType) -> Result<(), TypeError> {
    if ty.rank() > MAX_RANK {
        return type_err!("{name} type {ty} has rank {} > {MAX_RANK}", ty.rank());
    }
    if !ty.within_limits() {
        return type_err!(
            "{name} type {ty} is too large: more than 2^40 elements (the product of its nonzero dims)"
        );
    }
    Ok(())
}

fn check_axes(name: &str, axes: &Axes, t: &TensorType) -> Result<(), TypeError> {
    let sorted_unique = axes.windows(2).all(|w| w[0] < w[1]);
    if !sorted_unique || axes.iter().any(|&a| a >= t.rank()) {
        return type_err!(
            "{name} axes {} must be sorted, distinct and < rank of {t}",
            ints(axes)
        );
    }
    Ok(())
}

/// NumPy's rule: align from the right; each source dim equals the target's or is 1.
pub fn broadcastable_to(from: &[usize], to: &[usize]) -> bool {
    from.len() <= to.len()
        && from
            .iter()
            .rev()
            .zip(to.iter().rev())
            .all(|(&f, &t)| f == t || f == 1)
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
