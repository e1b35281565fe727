//! `.kir` text → verified graph.
//!
//! Recursive descent over one statement per line. Nodes are added through `Graph::add_named` as they are read, so the
//! typing rules run at the line that breaks them; labels must be defined before use. No input can make the parser
//! panic: every index is checked, every integer is parsed with overflow checks, and nothing recurses.

use super::lexer::{Cursor, Pos};
use super::ParseError;
use crate::error::IrError;
use crate::graph::{Graph, NodeId};
use crate::op::{fit_to_dtype, AttrKind, Axes, CmpDir, Literal, Op, OpKind, ReduceOp, Role};
use crate::types::{DType, Shape, TensorType};
use crate::verify::verify;
use std::borrow::Cow;
use std::collections::HashMap;

/// Parses and verifies `.kir` text. A leading UTF-8 byte order mark (which some editors write) is skipped.
pub fn parse(src: &str) -> Result<Graph, ParseError> {
    // Positions are then offsets into the text after the mark, so line 1's columns don't count it.
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    Parser::new(src)
        .file()
        .map_err(|e| ParseError::at(src, e.pos, e.message))
}

/// An error before it is placed on a line: the byte offset and the message.
struct Error {
    pos: Pos,
    message: String,
}

type PResult<T> = Result<T, Error>;

fn err<T>(pos: Pos, message: impl Into<String>) -> PResult<T> {
    Err(Error {
        pos,
        message: message.into(),
    })
}

/// A scalar or list attribute value as written, interpreted once the op is known.
enum Value<'s> {
    Scalar(&'s str),
    List(Vec<(Pos, &'s str)>),
}

struct Attr<'s> {
    name: &'s str,
    value: Value<'s>,
    value_pos: Pos,
}

/// The attributes of one node, each taken at most once by the op that interprets them.
struct Attrs<'s> {
    mnemonic: &'s str,
    /// Where to report a missing attribute: the mnemonic.
    op_pos: Pos,
    list: Vec<(Attr<'s>, bool)>,
}

impl<'s> Attrs<'s> {
    /// Rejects an attribute the op does not have. Called as each is read, so that a misspelt attribute is reported
    /// as such rather than as a missing one, and so that the list never holds more than the op's few attributes
    /// (checking each new one for a duplicate is then cheap even when the text has thousands).
    fn check_known(&self, name: &str, pos: Pos, known: &[(&str, AttrKind)]) -> PResult<()> {
        if !known.iter().any(|(k, _)| *k == name) {
            let expected = if known.is_empty() {
                format!("{} takes no attributes", self.mnemonic)
            } else {
                let names: Vec<&str> = known.iter().map(|(k, _)| *k).collect();
                format!("{} takes {}", self.mnemonic, names.join(", "))
            };
            return err(
                pos,
                format!("unknown attribute `{}` ({expected})", short(name)),
            );
        }
        Ok(())
    }

    fn take(&mut self, name: &str) -> PResult<&Attr<'s>> {
        match self.list.iter_mut().find(|(a, _)| a.name == name) {
            Some((a, used)) => {
                *used = true;
                Ok(a)
            }
            None => err(
                self.op_pos,
                format!("missing attribute `{name}` for {}", self.mnemonic),
            ),
        }
    }

    fn uint(&mut self, name: &str) -> PResult<usize> {
        let a = self.take(name)?;
        match &a.value {
            Value::Scalar(text) => uint(a.value_pos, text),
            Value::List(_) => err(
                a.value_pos,
                format!("attribute `{name}` is an integer, not a list"),
            ),
        }
    }

    fn uint_list(&mut self, name: &str) -> PResult<Vec<usize>> {
        let a = self.take(name)?;
        match &a.value {
            Value::List(items) => items.iter().map(|&(pos, text)| uint(pos, text)).collect(),
            Value::Scalar(_) => err(
                a.value_pos,
                format!("attribute `{name}` is a list of integers like `[0,1]`"),
            ),
        }
    }

    /// A word attribute (`role=param`, `dir=gt`) looked up by `from_name`; `choices` is for the error message.
    fn word<T>(
        &mut self,
        name: &str,
        choices: &str,
        from_name: fn(&str) -> Option<T>,
    ) -> PResult<T> {
        let a = self.take(name)?;
        if let Value::Scalar(text) = &a.value {
            if let Some(v) = from_name(text) {
                return Ok(v);
            }
        }
        err(
            a.value_pos,
            format!("attribute `{name}` must be one of {choices}"),
        )
    }

    fn bool(&mut self, name: &str) -> PResult<bool> {
        self.word(name, "true, false", |w| match w {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        })
    }

    fn literal(&mut self, name: &str) -> PResult<Literal> {
        let a = self.take(name)?;
        match &a.value {
            Value::Scalar(text) => Ok(Literal::Splat(number(a.value_pos, text)?)),
            Value::List(items) => Ok(Literal::Dense(
                items
                    .iter()
                    .map(|&(pos, text)| number(pos, text))
                    .collect::<PResult<_>>()?,
            )),
        }
    }
}

/// Source text echoed in an error message, cut to 40 characters: bad input may hold a megabyte-long word.
fn short(text: &str) -> Cow<'_, str> {
    const MAX: usize = 40;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}… ({} bytes)", &text[..cut], text.len()).into(),
        None => text.into(),
    }
}

/// A non-negative decimal integer that fits `usize`.
fn uint(pos: Pos, text: &str) -> PResult<usize> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return err(
            pos,
            format!("expected a non-negative integer, found `{}`", short(text)),
        );
    }
    text.parse()
        .or_else(|_| err(pos, format!("integer `{}` is too large", short(text))))
}

/// A constant element: `[+-]digits[.digits][(e|E)[+-]digits]`, `inf` or `nan` (optionally signed), or `true`/`false`.
fn number(pos: Pos, text: &str) -> PResult<f64> {
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let magnitude = match body {
        "inf" => f64::INFINITY,
        "nan" => f64::NAN,
        "true" if body.len() == text.len() => 1.0,
        "false" if body.len() == text.len() => 0.0,
        _ if is_decimal(body) => match body.parse::<f64>() {
            Ok(v) if v.is_finite() => v,
            _ => return err(pos, format!("number `{}` is out of range", short(text))),
        },
        _ => return err(pos, format!("expected a number, found `{}`", short(text))),
    };
    Ok(if negative { -magnitude } else { magnitude })
}

fn is_decimal(s: &str) -> bool {
    fn digits(s: &[u8]) -> usize {
        s.iter().take_while(|b| b.is_ascii_digit()).count()
    }
    let b = s.as_bytes();
    let mut i = digits(b);
    if i == 0 {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        let n = digits(&b[i + 1..]);
        if n == 0 {
            return false;
        }
        i += 1 + n;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let n = digits(&b[i..]);
        if n == 0 {
            return false;
        }
        i += n;
    }
    i == b.len()
}

/// The op of a mnemonic, built once its attributes are read.
trait BuildOp {
    fn build(self, attrs: &mut Attrs, ty: &TensorType, label: &str) -> PResult<Op>;
}

impl BuildOp for OpKind {
    /// The op with its attributes; sources take `ty` (the annotated type) and inputs `label` as their name.
    fn build(self, attrs: &mut Attrs, ty: &TensorType, label: &str) -> PResult<Op> {
        let axes = |list: Vec<usize>| list.into_iter().collect::<Axes>();
        Ok(match self {
            OpKind::Input => Op::Input {
                name: label.to_string(),
                role: attrs.word("role", "data, param, state", Role::from_name)?,
                ty: ty.clone(),
            },
            OpKind::Constant => Op::Constant {
                ty: ty.clone(),
                // f32 constants print as the shortest f32 text (`0.9`), which reads back as the nearest f32.
                value: match attrs.literal("value")? {
                    Literal::Splat(v) => Literal::Splat(fit_to_dtype(v, ty.dtype)),
                    Literal::Dense(vs) => {
                        Literal::Dense(vs.into_iter().map(|v| fit_to_dtype(v, ty.dtype)).collect())
                    }
                },
            },
            OpKind::Iota => Op::Iota {
                ty: ty.clone(),
                axis: attrs.uint("axis")?,
            },
            OpKind::Unary(u) => Op::Unary(u),
            OpKind::Cast => Op::Cast {
                to: attrs.word("to", "f32, f64, i32, bool", DType::from_name)?,
            },
            OpKind::Binary(b) => Op::Binary(b),
            OpKind::Compare => {
                Op::Compare(attrs.word("dir", "lt, le, gt, ge, eq, ne", CmpDir::from_name)?)
            }
            OpKind::Select => Op::Select,
            OpKind::ReduceSum => Op::ReduceSum {
                axes: axes(attrs.uint_list("axes")?),
                keep_dims: attrs.bool("keep_dims")?,
            },
            OpKind::ReduceMax => Op::ReduceMax {
                axes: axes(attrs.uint_list("axes")?),
                keep_dims: attrs.bool("keep_dims")?,
            },
            OpKind::Reshape => Op::Reshape {
                shape: Shape::from(attrs.uint_list("shape")?),
            },
            OpKind::Transpose => Op::Transpose {
                perm: attrs.uint_list("perm")?,
            },
            OpKind::Broadcast => Op::Broadcast {
                shape: Shape::from(attrs.uint_list("shape")?),
            },
            OpKind::Slice => Op::Slice {
                start: attrs.uint_list("start")?,
                end: attrs.uint_list("end")?,
            },
            OpKind::Concat => Op::Concat {
                axis: attrs.uint("axis")?,
            },
            OpKind::Matmul => Op::Matmul,
            OpKind::Pad => Op::Pad {
                low: attrs.uint_list("low")?,
                high: attrs.uint_list("high")?,
                value: match attrs.literal("value")? {
                    Literal::Splat(v) => Literal::Splat(fit_to_dtype(v, ty.dtype)),
                    dense => dense,
                },
            },
            OpKind::Windows => Op::Windows {
                window: attrs.uint_list("window")?,
                stride: attrs.uint_list("stride")?,
                dilation: attrs.uint_list("dilation")?,
            },
            OpKind::OverlapAdd => Op::OverlapAdd {
                size: attrs.uint_list("size")?,
                stride: attrs.uint_list("stride")?,
                dilation: attrs.uint_list("dilation")?,
            },
            OpKind::Gather => Op::Gather {
                axis: attrs.uint("axis")?,
            },
            OpKind::AllReduce => Op::AllReduce {
                op: attrs.word("op", "sum, mean", ReduceOp::from_name)?,
                group: attrs.uint("group")?,
            },
        })
    }
}

fn is_index_label(label: &str) -> bool {
    label.bytes().all(|b| b.is_ascii_digit())
}

struct Parser<'s> {
    cur: Cursor<'s>,
    graph: Graph,
    /// Every label defined so far (input names, node names, index labels as written) and its node.
    labels: HashMap<&'s str, NodeId>,
}

impl<'s> Parser<'s> {
    fn new(src: &'s str) -> Parser<'s> {
        Parser {
            cur: Cursor::new(src),
            graph: Graph::default(),
            labels: HashMap::new(),
        }
    }

    fn expect(&mut self, c: char, what: &str) -> PResult<()> {
        self.cur.skip_blank();
        if self.cur.eat(c) {
            Ok(())
        } else {
            err(self.cur.pos(), format!("expected {what}{}", self.found()))
        }
    }

    /// `, found X` describing what is at the cursor, for "expected ..." messages.
    fn found(&self) -> String {
        match self.cur.peek() {
            None => ", found the end of the input".into(),
            Some('\n') => ", found the end of the line".into(),
            Some(c) => format!(", found `{c}`"),
        }
    }

    /// `graph NAME { STATEMENT* }`
    fn file(mut self) -> PResult<Graph> {
        self.cur.skip_blank_lines();
        let at = self.cur.pos();
        if self.cur.word() != "graph" {
            return err(at, "expected `graph NAME {` at the start of the file");
        }
        self.cur.skip_blank();
        self.graph.name = if self.cur.peek() == Some('"') {
            self.cur.string().or_else(|(pos, m)| err(pos, m))?
        } else {
            let at = self.cur.pos();
            let name = self.cur.word();
            if name.is_empty() {
                return err(at, format!("expected a graph name{}", self.found()));
            }
            name.to_string()
        };
        self.expect('{', "`{` after the graph name")?;
        loop {
            self.cur.skip_blank_lines();
            let at = self.cur.pos();
            match self.cur.peek() {
                None => {
                    return err(
                        at,
                        "expected `}` to close the graph, found the end of the input",
                    )
                }
                Some('}') => {
                    self.cur.bump();
                    break;
                }
                Some('%') => self.node()?,
                Some(_) => {
                    if self.cur.word() != "output" {
                        return err(at, "expected a node `%label = ...`, an `output` or `}`");
                    }
                    self.output()?;
                }
            }
            self.cur.skip_blank();
            if !self.cur.at_line_end() {
                return err(
                    self.cur.pos(),
                    format!("expected the end of the line{}", self.found()),
                );
            }
        }
        self.cur.skip_blank_lines();
        if self.cur.peek().is_some() {
            return err(self.cur.pos(), "unexpected text after the end of the graph");
        }
        // Every node went through `add_named`, so this only fails on a bug; it is cheap insurance.
        verify(&self.graph).or_else(|e| err(0, e.to_string()))?;
        Ok(self.graph)
    }

    /// `%LABEL` at the cursor (after blanks): the label's position and text.
    fn label(&mut self, what: &str) -> PResult<(Pos, &'s str)> {
        self.cur.skip_blank();
        let at = self.cur.pos();
        if !self.cur.eat('%') {
            return err(at, format!("expected {what} `%label`{}", self.found()));
        }
        let label = self.cur.word();
        if label.is_empty() {
            return err(at, "expected a label after `%`");
        }
        Ok((at, label))
    }

    /// A use of `%LABEL`: the node it names.
    fn operand(&mut self, what: &str) -> PResult<(Pos, &'s str, NodeId)> {
        let (at, label) = self.label(what)?;
        match self.labels.get(label) {
            Some(&id) => Ok((at, label, id)),
            None => err(
                at,
                format!("`%{}` is not defined before this use", short(label)),
            ),
        }
    }

    /// `%LABEL = MNEMONIC{attrs}? OPERANDS? : TYPE`
    fn node(&mut self) -> PResult<()> {
        let (label_pos, label) = self.label("a node")?;
        if self.labels.contains_key(label) {
            return err(
                label_pos,
                format!(
                    "duplicate label `%{}`: it is already defined above",
                    short(label)
                ),
            );
        }
        self.expect('=', "`=` after the label")?;
        self.cur.skip_blank();
        let op_pos = self.cur.pos();
        let mnemonic = self.cur.word();
        if mnemonic.is_empty() {
            return err(op_pos, format!("expected an op name{}", self.found()));
        }
        let Some(op_kind) = OpKind::from_mnemonic(mnemonic) else {
            return err(op_pos, format!("unknown op `{}`", short(mnemonic)));
        };
        self.cur.skip_blank();
        let mut attrs = Attrs {
            mnemonic,
            op_pos,
            list: Vec::new(),
        };
        if self.cur.peek() == Some('{') {
            self.attributes(&mut attrs, op_kind.attributes())?;
        }
        let mut operands = Vec::new();
        self.cur.skip_blank();
        if self.cur.peek() == Some('%') {
            loop {
                operands.push(self.operand("an operand")?.2);
                self.cur.skip_blank();
                if !self.cur.eat(',') {
                    break;
                }
            }
        }
        self.expect(':', "`:` and the result type")?;
        let (ty_pos, declared) = self.tensor_type()?;
        let op = op_kind.build(&mut attrs, &declared, label)?;
        let is_input = matches!(op, Op::Input { .. });
        if is_input && is_index_label(label) {
            return err(
                label_pos,
                "an input needs a name, not a number, as its label",
            );
        }
        let name = (!is_input && !is_index_label(label)).then(|| label.to_string());
        let id = self
            .graph
            .add_named(op, &operands, name)
            .or_else(|e| match e {
                // Name the node by its label as written, not its index.
                IrError::Type { op, message, .. } => err(
                    op_pos,
                    IrError::Type {
                        node: short(label).into_owned(),
                        op,
                        message,
                    }
                    .to_string(),
                ),
                IrError::BadName { .. } | IrError::Duplicate { .. } => {
                    err(label_pos, e.to_string())
                }
                e => err(op_pos, e.to_string()),
            })?;
        let inferred = self.graph.ty(id);
        if *inferred != declared {
            return err(
                ty_pos,
                format!("declared {declared} but {mnemonic} gives {inferred}"),
            );
        }
        self.labels.insert(label, id);
        Ok(())
    }

    /// `{ NAME = VALUE (, NAME = VALUE)* }`; the cursor is at `{`. Values are a scalar or a `[...]` list.
    fn attributes(&mut self, attrs: &mut Attrs<'s>, known: &[(&str, AttrKind)]) -> PResult<()> {
        self.cur.eat('{');
        self.cur.skip_blank_lines();
        if self.cur.eat('}') {
            return Ok(());
        }
        loop {
            self.cur.skip_blank_lines();
            let pos = self.cur.pos();
            let name = self.cur.word();
            if name.is_empty() {
                return err(pos, format!("expected an attribute name{}", self.found()));
            }
            attrs.check_known(name, pos, known)?;
            if attrs.list.iter().any(|(a, _)| a.name == name) {
                return err(pos, format!("duplicate attribute `{}`", short(name)));
            }
            self.cur.skip_blank_lines();
            if !self.cur.eat('=') {
                return err(
                    self.cur.pos(),
                    format!(
                        "expected `=` after attribute `{}`{}",
                        short(name),
                        self.found()
                    ),
                );
            }
            self.cur.skip_blank_lines();
            let value_pos = self.cur.pos();
            let value = if self.cur.eat('[') {
                Value::List(self.list()?)
            } else {
                let text = self.cur.scalar();
                if text.is_empty() {
                    return err(value_pos, format!("expected a value{}", self.found()));
                }
                Value::Scalar(text)
            };
            attrs.list.push((
                Attr {
                    name,
                    value,
                    value_pos,
                },
                false,
            ));
            self.cur.skip_blank_lines();
            if self.cur.eat('}') {
                return Ok(());
            }
            if !self.cur.eat(',') {
                return err(
                    self.cur.pos(),
                    format!("expected `,` or `}}` after an attribute{}", self.found()),
                );
            }
        }
    }

    /// The items of a `[...]` list after its `[`: scalars separated by commas.
    fn list(&mut self) -> PResult<Vec<(Pos, &'s str)>> {
        let mut items = Vec::new();
        self.cur.skip_blank_lines();
        if self.cur.eat(']') {
            return Ok(items);
        }
        loop {
            self.cur.skip_blank_lines();
            let pos = self.cur.pos();
            let text = self.cur.scalar();
            if text.is_empty() {
                return err(pos, format!("expected a list element{}", self.found()));
            }
            items.push((pos, text));
            self.cur.skip_blank_lines();
            if self.cur.eat(']') {
                return Ok(items);
            }
            if !self.cur.eat(',') {
                return err(
                    self.cur.pos(),
                    format!("expected `,` or `]` in a list{}", self.found()),
                );
            }
        }
    }

    /// `DTYPE[DIM,...]`, e.g. `f32[128,784]` or `f32[]`.
    fn tensor_type(&mut self) -> PResult<(Pos, TensorType)> {
        self.cur.skip_blank();
        let at = self.cur.pos();
        let word = self.cur.word();
        let Some(dtype) = DType::from_name(word) else {
            let found = if word.is_empty() {
                self.found()
            } else {
                format!(", found `{}`", short(word))
            };
            return err(
                at,
                format!("expected a type like `f32[2,3]` (f32, f64, i32 or bool){found}"),
            );
        };
        self.expect('[', "`[` and the dimensions of the type")?;
        let dims = self
            .list()?
            .into_iter()
            .map(|(pos, text)| uint(pos, text))
            .collect::<PResult<Vec<usize>>>()?;
        Ok((at, TensorType::new(dtype, dims)))
    }

    /// `output NAME = %LABEL (aliases %INPUT)?`; the keyword is read.
    fn output(&mut self) -> PResult<()> {
        self.cur.skip_blank();
        let name_pos = self.cur.pos();
        let name = self.cur.word();
        if name.is_empty() {
            return err(name_pos, format!("expected an output name{}", self.found()));
        }
        self.expect('=', "`=` after the output name")?;
        let (_, _, value) = self.operand("the output value")?;
        self.cur.skip_blank();
        let alias_kw = self.cur.pos();
        let mut aliases = None;
        match self.cur.word() {
            "" => {}
            "aliases" => {
                let (at, label, id) = self.operand("the aliased input")?;
                if !matches!(self.graph.node(id).op, Op::Input { .. }) {
                    return err(at, format!("`%{}` is not a graph input", short(label)));
                }
                aliases = Some((at, label.to_string()));
            }
            word => {
                return err(
                    alias_kw,
                    format!(
                        "expected `aliases` or the end of the line, found `{}`",
                        short(word)
                    ),
                )
            }
        }
        let alias_pos = aliases.as_ref().map_or(name_pos, |a| a.0);
        self.graph
            .add_output_aliasing(name, value, aliases.map(|a| a.1))
            .or_else(|e| match e {
                IrError::BadAlias { output, reason } => err(
                    alias_pos,
                    IrError::BadAlias {
                        output: short(&output).into_owned(),
                        reason,
                    }
                    .to_string(),
                ),
                IrError::Duplicate { what, name } => err(
                    name_pos,
                    IrError::Duplicate {
                        what,
                        name: short(&name).into_owned(),
                    }
                    .to_string(),
                ),
                e => err(name_pos, e.to_string()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(number(0, "0.5").ok(), Some(0.5));
        assert_eq!(number(0, "-1e-5").ok(), Some(-1e-5));
        assert_eq!(number(0, "+3").ok(), Some(3.0));
        assert_eq!(number(0, "-inf").ok(), Some(f64::NEG_INFINITY));
        assert!(number(0, "nan").is_ok_and(f64::is_nan));
        assert_eq!(number(0, "true").ok(), Some(1.0));
        assert!(number(0, "-true").is_err());
        assert!(number(0, "1e999").is_err());
        assert!(number(0, "1.").is_err());
        assert!(number(0, ".5").is_err());
        assert!(number(0, "1e").is_err());
        assert!(number(0, "infinity").is_err());
        assert!(number(0, "0x10").is_err());
    }

    #[test]
    fn integers_overflow_is_an_error() {
        assert!(uint(0, "99999999999999999999999").is_err());
        assert!(uint(0, "-1").is_err());
        assert_eq!(uint(0, "007").ok(), Some(7));
    }
}
