//! Element types, static shapes and tensor types.
//!
//! A tensor type prints as `f32[128,784]`; a scalar (rank 0) as `f32[]`.

use smallvec::SmallVec;
use std::fmt;

/// The most dimensions a shape may have. Kept small so shapes live inline, large enough for every model in the course
/// (and for the batched matmuls autodiff produces).
pub const MAX_RANK: usize = 8;

/// The size limit of every tensor type in a graph (SPEC §1): the product of its *nonzero* dims is at most 2^40.
///
/// So the element count, every dim, every row-major stride and every partial product of dims is at most 2^40, and a
/// byte size at most 2^43: all fit the `i64` index arithmetic of the CPU backend and the `usize` of the interpreter
/// and runtime with room to add two of them. Counting only nonzero dims matters: `f32[0,2^63]` has no elements but
/// a stride of 2^63, and two of them concatenated overflow. (The Vulkan backend further refuses buffers of more than
/// 2^32 - 1 elements, its `u32` indexes.)
pub const MAX_ELEMENTS: usize = 1 << 40;

/// Rank above which a shape prints abbreviated (`[1,1,1,1,1,1,1,1,… (200000 dims)]`). Only a type that breaks
/// [`MAX_RANK`] can reach it, so graphs print exactly; an error about a huge bogus type stays short.
const SHOWN_DIMS: usize = 16;

/// Element type of a tensor.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum DType {
    F32,
    F64,
    I32,
    Bool,
}

impl DType {
    pub const ALL: [DType; 4] = [DType::F32, DType::F64, DType::I32, DType::Bool];

    /// The spelling used by the text format and error messages.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I32 => "i32",
            DType::Bool => "bool",
        }
    }

    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }

    /// Float or integer: the types arithmetic is defined on.
    pub fn is_numeric(self) -> bool {
        !matches!(self, DType::Bool)
    }

    /// Bytes per element in a dense buffer.
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F64 => 8,
            DType::Bool => 1,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A static shape: the extent of each dimension, outermost first (row-major).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default, PartialOrd, Ord)]
pub struct Shape(pub SmallVec<[usize; MAX_RANK]>);

impl Shape {
    pub fn new(dims: &[usize]) -> Shape {
        Shape(SmallVec::from_slice(dims))
    }

    pub fn scalar() -> Shape {
        Shape(SmallVec::new())
    }

    pub fn rank(&self) -> usize {
        self.0.len()
    }

    pub fn dims(&self) -> &[usize] {
        &self.0
    }

    /// Number of elements (1 for a scalar). Exact for shapes [`within_limits`](Shape::within_limits); saturates
    /// rather than overflowing for others, which the typing rules reject.
    pub fn numel(&self) -> usize {
        self.0.iter().fold(1usize, |acc, &d| acc.saturating_mul(d))
    }

    /// SPEC §1's limits: rank at most [`MAX_RANK`] and the product of the nonzero dims at most [`MAX_ELEMENTS`]
    /// (computed without overflow).
    pub fn within_limits(&self) -> bool {
        self.rank() <= MAX_RANK
            && self
                .0
                .iter()
                .filter(|&&d| d != 0)
                .try_fold(1usize, |acc, &d| {
                    acc.checked_mul(d).filter(|&p| p <= MAX_ELEMENTS)
                })
                .is_some()
    }

    /// Row-major strides in elements. Exact for shapes within the limits; saturating otherwise.
    pub fn strides(&self) -> SmallVec<[usize; MAX_RANK]> {
        let mut strides: SmallVec<[usize; MAX_RANK]> = SmallVec::from_elem(0, self.rank());
        let mut acc = 1usize;
        for i in (0..self.rank()).rev() {
            strides[i] = acc;
            acc = acc.saturating_mul(self.0[i]);
        }
        strides
    }
}

impl From<&[usize]> for Shape {
    fn from(dims: &[usize]) -> Shape {
        Shape::new(dims)
    }
}

impl<const N: usize> From<[usize; N]> for Shape {
    fn from(dims: [usize; N]) -> Shape {
        Shape::new(&dims)
    }
}

impl From<Vec<usize>> for Shape {
    fn from(dims: Vec<usize>) -> Shape {
        Shape::new(&dims)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", Abbreviated(&self.0, ",", "dims"))
    }
}

/// A list of integers as `[a,b,c]` (items joined by the separator), abbreviated past `SHOWN_DIMS` items to the
/// first half of them and the count: what error messages use to echo a shape or an integer attribute, which bad
/// input can make millions of items long.
/// The last field names the items in the count (`… (200000 dims)`).
pub(crate) struct Abbreviated<'a>(pub &'a [usize], pub &'a str, pub &'a str);

impl fmt::Display for Abbreviated<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Abbreviated(items, sep, noun) = *self;
        let shown = if items.len() > SHOWN_DIMS {
            &items[..SHOWN_DIMS / 2]
        } else {
            items
        };
        f.write_str("[")?;
        for (i, d) in shown.iter().enumerate() {
            if i > 0 {
                f.write_str(sep)?;
            }
            write!(f, "{d}")?;
        }
        if shown.len() < items.len() {
            write!(f, "{sep}… ({} {noun})", items.len())?;
        }
        f.write_str("]")
    }
}

/// The type of every value in the IR: an element type and a static shape.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Shape,
}

impl TensorType {
    pub fn new(dtype: DType, shape: impl Into<Shape>) -> TensorType {
        TensorType {
            dtype,
            shape: shape.into(),
        }
    }

    pub fn f32(dims: &[usize]) -> TensorType {
        TensorType::new(DType::F32, dims)
    }

    pub fn f64(dims: &[usize]) -> TensorType {
        TensorType::new(DType::F64, dims)
    }

    pub fn i32(dims: &[usize]) -> TensorType {
        TensorType::new(DType::I32, dims)
    }

    pub fn scalar(dtype: DType) -> TensorType {
        TensorType {
            dtype,
            shape: Shape::scalar(),
        }
    }

    pub fn rank(&self) -> usize {
        self.shape.rank()
    }

    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }

    pub fn numel(&self) -> usize {
        self.shape.numel()
    }

    pub fn with_dtype(&self, dtype: DType) -> TensorType {
        TensorType {
            dtype,
            shape: self.shape.clone(),
        }
    }

    pub fn with_shape(&self, shape: impl Into<Shape>) -> TensorType {
        TensorType {
            dtype: self.dtype,
            shape: shape.into(),
        }
    }

    /// SPEC §1's limits (see [`Shape::within_limits`]).
    pub fn within_limits(&self) -> bool {
        self.shape.within_limits()
    }

    /// Size of a dense row-major buffer holding this tensor. Exact within the limits (at most 2^43); saturating
    /// otherwise.
    pub fn size_bytes(&self) -> usize {
        self.numel().saturating_mul(self.dtype.size_bytes())
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, self.shape)
    }
}
