//! The op table: one row per op with its mnemonic, attributes (in printing order, with their kinds), class, arity and
//! the flags passes ask about.
//!
//! The parser looks mnemonics and attribute names up here, the printer and DOT export name attributes from here, and
//! a test keeps SPEC.md's op and attribute lists equal to [`OpKind::all`]. The elementwise ops' own facts (scalar
//! meaning, cost, gradient) are in [`super::elementwise`]; the typing rule is [`Op::infer`].

use super::{BinaryOp, Op, OpClass, UnaryOp};

/// What an attribute's value is, as written in `.kir` (`axes=[0,1]`, `keep_dims=true`, `role=param`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum AttrKind {
    /// `data`, `param` or `state`.
    Role,
    /// A number or a list of numbers in the result's dtype.
    Literal,
    /// A non-negative integer.
    Int,
    /// A list of non-negative integers, `[1,0]`.
    IntList,
    /// `true` or `false`.
    Bool,
    /// `f32`, `f64`, `i32` or `bool`.
    DType,
    /// `lt`, `le`, `gt`, `ge`, `eq` or `ne`.
    CmpDir,
    /// `sum` or `mean`.
    ReduceOp,
}

/// How many operands an op takes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Arity {
    Fixed(usize),
    /// One or more (`concat`).
    Variadic,
}

macro_rules! op_table {
    ($(
        $kind:ident $mnemonic:literal, $class:ident, $arity:expr, inline: $inline:expr,
            [$($attr:ident: $attr_kind:ident),*];
    )*) => {
        /// Which op a node is, without its attributes: one per mnemonic.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
        pub enum OpKind {
            $($kind,)*
            Unary(UnaryOp),
            Binary(BinaryOp),
        }

        impl OpKind {
            /// Every op, in SPEC.md's order: the structural ones, then the unary and binary elementwise ops.
            pub fn all() -> impl Iterator<Item = OpKind> {
                [$(OpKind::$kind,)*]
                    .into_iter()
                    .chain(UnaryOp::ALL.map(OpKind::Unary))
                    .chain(BinaryOp::ALL.map(OpKind::Binary))
            }

            /// The op's name in the text format, DOT labels and error messages.
            pub fn mnemonic(self) -> &'static str {
                match self {
                    $(OpKind::$kind => $mnemonic,)*
                    OpKind::Unary(u) => u.name(),
                    OpKind::Binary(b) => b.name(),
                }
            }

            /// The attributes, in the canonical (printing) order.
            pub fn attributes(self) -> &'static [(&'static str, AttrKind)] {
                match self {
                    $(OpKind::$kind => &[$((stringify!($attr), AttrKind::$attr_kind)),*],)*
                    OpKind::Unary(_) | OpKind::Binary(_) => &[],
                }
            }

            /// The coarse kind fusion and the backends dispatch on.
            pub fn class(self) -> OpClass {
                match self {
                    $(OpKind::$kind => OpClass::$class,)*
                    OpKind::Unary(_) | OpKind::Binary(_) => OpClass::Elementwise,
                }
            }

            pub fn arity(self) -> Arity {
                use Arity::*;
                match self {
                    $(OpKind::$kind => $arity,)*
                    OpKind::Unary(_) => Fixed(1),
                    OpKind::Binary(_) => Fixed(2),
                }
            }

            /// Whether fusion recomputes the op inside each consumer's loop nest instead of storing it: views fold into
            /// index arithmetic and `iota` into an index; a splat `constant` (a dense one is a buffer) into a value.
            pub fn inline(self) -> bool {
                match self {
                    $(OpKind::$kind => $inline,)*
                    OpKind::Unary(_) | OpKind::Binary(_) => false,
                }
            }

            /// The op a mnemonic names.
            pub fn from_mnemonic(mnemonic: &str) -> Option<OpKind> {
                OpKind::all().find(|k| k.mnemonic() == mnemonic)
            }
        }
    };
}

op_table! {
    // kind      mnemonic      class        arity      recomputed  attributes (printing order)
    Input      "input",      Source,      Fixed(0), inline: false, [role: Role];
    Constant   "constant",   Source,      Fixed(0), inline: true,  [value: Literal];
    Iota       "iota",       Source,      Fixed(0), inline: true,  [axis: Int];
    Cast       "cast",       Elementwise, Fixed(1), inline: false, [to: DType];
    Compare    "compare",    Elementwise, Fixed(2), inline: false, [dir: CmpDir];
    Select     "select",     Elementwise, Fixed(3), inline: false, [];
    ReduceSum  "reduce_sum", Reduction,   Fixed(1), inline: false, [axes: IntList, keep_dims: Bool];
    ReduceMax  "reduce_max", Reduction,   Fixed(1), inline: false, [axes: IntList, keep_dims: Bool];
    Reshape    "reshape",    Movement,    Fixed(1), inline: true,  [shape: IntList];
    Transpose  "transpose",  Movement,    Fixed(1), inline: true,  [perm: IntList];
    Broadcast  "broadcast",  Movement,    Fixed(1), inline: true,  [shape: IntList];
    Slice      "slice",      Movement,    Fixed(1), inline: true,  [start: IntList, end: IntList];
    Concat     "concat",     Movement,    Variadic, inline: false, [axis: Int];
    Matmul     "matmul",     Contraction, Fixed(2), inline: false, [];
    Pad        "pad",        Movement,    Fixed(1), inline: false, [low: IntList, high: IntList, value: Literal];
    Windows    "windows",    Movement,    Fixed(1), inline: true,  [window: IntList, stride: IntList, dilation: IntList];
    OverlapAdd "overlap_add", Reduction,  Fixed(1), inline: false, [size: IntList, stride: IntList, dilation: IntList];
    Gather     "gather",     Movement,    Fixed(2), inline: false, [axis: Int];
    AllReduce  "all_reduce", Collective,  Fixed(1), inline: false, [op: ReduceOp, group: Int];
}

impl Op {
    /// The table row of this op.
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Input { .. } => OpKind::Input,
            Op::Constant { .. } => OpKind::Constant,
            Op::Iota { .. } => OpKind::Iota,
            Op::Unary(u) => OpKind::Unary(*u),
            Op::Cast { .. } => OpKind::Cast,
            Op::Binary(b) => OpKind::Binary(*b),
            Op::Compare(_) => OpKind::Compare,
            Op::Select => OpKind::Select,
            Op::ReduceSum { .. } => OpKind::ReduceSum,
            Op::ReduceMax { .. } => OpKind::ReduceMax,
            Op::Reshape { .. } => OpKind::Reshape,
            Op::Transpose { .. } => OpKind::Transpose,
            Op::Broadcast { .. } => OpKind::Broadcast,
            Op::Slice { .. } => OpKind::Slice,
            Op::Concat { .. } => OpKind::Concat,
            Op::Matmul => OpKind::Matmul,
            Op::Pad { .. } => OpKind::Pad,
            Op::Windows { .. } => OpKind::Windows,
            Op::OverlapAdd { .. } => OpKind::OverlapAdd,
            Op::Gather { .. } => OpKind::Gather,
            Op::AllReduce { .. } => OpKind::AllReduce,
        }
    }

    /// The op's name in the text format, DOT labels and error messages.
    pub fn mnemonic(&self) -> &'static str {
        self.kind().mnemonic()
    }

    /// Number of operands; `None` for `concat`, which takes one or more.
    pub fn arity(&self) -> Option<usize> {
        match self.kind().arity() {
            Arity::Fixed(n) => Some(n),
            Arity::Variadic => None,
        }
    }

    pub fn class(&self) -> OpClass {
        self.kind().class()
    }
}

#[cfg(test)]
mod tests {
    //! SPEC.md's per-op rows stay the normative text; these keep its lists of ops and attributes equal to the table.
    use super::*;
    use std::collections::BTreeMap;

    const SPEC: &str = include_str!("../../SPEC.md");

    /// The backquoted names in `text`, in order.
    fn quoted(text: &str) -> Vec<&str> {
        text.split('`').skip(1).step_by(2).collect()
    }

    #[test]
    fn spec_grammar_lists_every_mnemonic_in_table_order() {
        let start = SPEC
            .find("MNEMONIC   =")
            .expect("SPEC §6 has a MNEMONIC rule");
        let rule = &SPEC[start..];
        let rule = &rule[..rule.find(';').expect("the rule ends with `;`")];
        let spec: Vec<&str> = rule.split('"').skip(1).step_by(2).collect();
        let table: Vec<&str> = OpKind::all().map(|k| k.mnemonic()).collect();
        let mut table_spec_order = table.clone();
        // SPEC lists the elementwise ops where §3 has them (unary ops after `iota`), the table groups them by family.
        table_spec_order.sort();
        let mut sorted_spec = spec.clone();
        sorted_spec.sort();
        assert_eq!(
            sorted_spec, table_spec_order,
            "SPEC's MNEMONIC rule vs OpKind::all()"
        );
    }

    #[test]
    fn spec_has_a_row_for_every_op_in_section_3() {
        let section = &SPEC[SPEC.find("## 3. Primitive ops").unwrap()..SPEC.find("## 4.").unwrap()];
        for kind in OpKind::all() {
            let m = kind.mnemonic();
            // A table row (`| `exp` |`), a paragraph (`**`reshape{shape}`**`) or a heading (`### 3.6 `select``).
            let row = format!("| `{m}` |");
            let paragraph = format!("**`{m}");
            let heading = format!("`{m}`");
            let documented = section.contains(&row)
                || section.contains(&paragraph)
                || section
                    .lines()
                    .any(|l| l.starts_with("###") && l.contains(&heading));
            assert!(documented, "SPEC §3 has no row or heading for `{m}`");
        }
    }

    #[test]
    fn spec_attribute_table_equals_the_table() {
        let start = SPEC
            .find("### Attributes, per op")
            .expect("SPEC §6 has the attribute table");
        let mut spec: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for line in SPEC[start..].lines().skip(1) {
            if line.starts_with("###") {
                break;
            }
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            if cells.len() < 4 || cells[1] == "op" || cells[1].starts_with("---") {
                continue;
            }
            // `value`: a SCALAR ... — only the leading backquoted names before any `:` are attribute names.
            let attrs_cell = cells[2].split(':').next().unwrap_or("");
            for op in quoted(cells[1]) {
                spec.insert(op, quoted(attrs_cell));
            }
        }
        let table: BTreeMap<&str, Vec<&str>> = OpKind::all()
            .filter(|k| !k.attributes().is_empty())
            .map(|k| {
                (
                    k.mnemonic(),
                    k.attributes().iter().map(|(n, _)| *n).collect(),
                )
            })
            .collect();
        assert_eq!(
            spec, table,
            "SPEC §6's attribute table vs OpKind::attributes"
        );
    }
}
