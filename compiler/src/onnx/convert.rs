//! The translation of a `ModelProto`'s graph: inputs (with their symbolic dims fixed), initializers, then every
//! node in order through [`super::ops::translate`], then the outputs.
//!
//! Values known at import are kept as [`Constant`]s and become graph constants only when an op uses them as
//! tensors ([`Ctx::value`]): a shape or axes operand never enters the graph, so its int64 values need not fit i32.

use super::attrs::Attrs;
use super::proto::{type_proto, ModelProto, NodeProto, ValueInfoProto};
use super::summary::Summary;
use super::tensor::{dims_of, kiln_dtype, type_name, Constant};
use super::{fold, ops, ImportError, ImportOptions, Imported};
use kiln_ir::{Builder, IrError, Literal, Op, Role, Tensor, TensorType, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

/// An ONNX value: a node of the graph, a constant known at import, or both (once materialized).
#[derive(Clone, Debug, Default)]
struct Slot {
    node: Option<Value>,
    constant: Option<Rc<Constant>>,
}

/// What an op's translation produces for one output.
pub enum Out {
    Node(Value),
    Const(Constant),
}

/// An error inside one op's translation: the dispatcher adds the node's name to an [`IrError`].
pub enum OpError {
    Ir(Box<IrError>),
    Import(ImportError),
}

impl From<IrError> for OpError {
    fn from(e: IrError) -> OpError {
        OpError::Ir(Box::new(e))
    }
}

impl From<ImportError> for OpError {
    fn from(e: ImportError) -> OpError {
        OpError::Import(e)
    }
}

pub type OpResult<T> = Result<T, OpError>;

/// The state of one import: the graph being built and what each ONNX value name stands for.
pub struct Ctx {
    pub b: Builder,
    /// The version of the default (`ai.onnx`) opset the model imports.
    pub opset: i64,
    /// [`ImportOptions::trainable`]: whether gradients through the graph are expected to follow PyTorch's rules.
    pub trainable: bool,
    env: HashMap<String, Slot>,
    labels: HashSet<String>,
}

/// One node being translated, with its attributes.
pub struct NodeCx<'n> {
    pub node: &'n NodeProto,
    pub attrs: Attrs<'n>,
    pub opset: i64,
}

impl<'n> NodeCx<'n> {
    pub fn op_type(&self) -> &str {
        self.node.op_type()
    }

    /// Input `i`'s value name, or `None` if absent (past the end, or the empty name ONNX uses for "omitted").
    pub fn input_name(&self, i: usize) -> Option<&'n str> {
        self.node
            .input
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    pub fn input_count(&self) -> usize {
        self.node.input.len()
    }

    pub fn output_count(&self) -> usize {
        self.node.output.len()
    }

    /// A node-level error (bad attribute, missing static operand).
    pub fn error(&self, message: impl Into<String>) -> OpError {
        OpError::Import(ImportError::Node {
            node: self.display_name(),
            op_type: self.op_type().to_string(),
            message: message.into(),
        })
    }

    /// The op (or one of its forms, `detail`) has no Kiln translation.
    pub fn unsupported(&self, detail: impl Into<String>) -> OpError {
        OpError::Import(self.unsupported_error(detail.into()))
    }

    fn unsupported_error(&self, detail: String) -> ImportError {
        ImportError::Unsupported {
            node: self.display_name(),
            op_type: self.op_type().to_string(),
            domain: self.node.domain().to_string(),
            opset: self.opset,
            detail,
        }
    }

    /// The node's name, or its first output's when it has none (exporters often leave names empty).
    fn display_name(&self) -> String {
        if self.node.name().is_empty() {
            self.node.output.first().cloned().unwrap_or_default()
        } else {
            self.node.name().to_string()
        }
    }
}

impl Ctx {
    /// Input `i` of the node as a graph value; a missing required input is an error.
    pub fn input(&mut self, n: &NodeCx, i: usize) -> OpResult<Value> {
        let name = n
            .input_name(i)
            .ok_or_else(|| n.error(format!("input {i} is required")))?;
        self.value(name).map_err(OpError::Import)
    }

    /// Input `i` as a graph value, or `None` when omitted.
    pub fn opt_input(&mut self, n: &NodeCx, i: usize) -> OpResult<Option<Value>> {
        match n.input_name(i) {
            None => Ok(None),
            Some(name) => Ok(Some(self.value(name)?)),
        }
    }

    /// Every input, in order (variadic ops).
    pub fn inputs(&mut self, n: &NodeCx) -> OpResult<Vec<Value>> {
        (0..n.input_count()).map(|i| self.input(n, i)).collect()
    }

    /// Input `i`'s value known at import, or `None` when omitted; `what` names the operand in the error when it
    /// is present but computed at run time.
    pub fn static_input(&self, n: &NodeCx, i: usize, what: &str) -> OpResult<Option<Rc<Constant>>> {
        let Some(name) = n.input_name(i) else {
            return Ok(None);
        };
        match self.env.get(name).and_then(|s| s.constant.clone()) {
            Some(c) => Ok(Some(c)),
            None => Err(n.error(format!(
                "{what} (input `{name}`) must be known at import: an initializer, a Constant, or computed from \
                 them and static shapes"
            ))),
        }
    }

    /// The constant of value `name`, if known at import.
    pub fn constant_of(&self, name: &str) -> Option<Rc<Constant>> {
        self.env.get(name).and_then(|s| s.constant.clone())
    }

    /// The dims of value `name`, whether a node or a constant.
    pub fn shape_of(&self, name: &str) -> Option<Vec<usize>> {
        let slot = self.env.get(name)?;
        match (slot.node, &slot.constant) {
            (Some(v), _) => Some(self.b.shape(v).to_vec()),
            (None, Some(c)) => Some(c.dims.clone()),
            (None, None) => None,
        }
    }

    /// The dtype of value `name`, whether a node or a constant.
    pub fn dtype_of(&self, name: &str) -> Option<kiln_ir::DType> {
        let slot = self.env.get(name)?;
        match (slot.node, &slot.constant) {
            (Some(v), _) => Some(self.b.dtype(v)),
            (None, Some(c)) => Some(c.dtype),
            (None, None) => None,
        }
    }

    /// The graph value of ONNX value `name`, materializing a constant on first use.
    pub fn value(&mut self, name: &str) -> Result<Value, ImportError> {
        let slot = self.env.get(name).ok_or_else(|| {
            ImportError::Invalid(format!("value `{name}` is used before it is defined"))
        })?;
        if let Some(v) = slot.node {
            return Ok(v);
        }
        let constant = slot
            .constant
            .clone()
            .expect("a slot holds a node or a constant");
        let v = self.materialize(&constant, name)?;
        self.env.get_mut(name).expect("looked up above").node = Some(v);
        Ok(v)
    }

    fn materialize(&mut self, c: &Constant, name: &str) -> Result<Value, ImportError> {
        let t = c.to_tensor(name)?;
        let (ty, values) = (t.ty().clone(), t.to_f64_vec());
        let build = |source| ImportError::Build {
            node: name.to_string(),
            op_type: "initializer".into(),
            source: Box::new(source),
        };
        let v = self
            .b
            .op(
                Op::Constant {
                    ty,
                    value: Literal::Dense(values),
                },
                &[],
            )
            .map_err(build)?;
        self.label(v, name).map_err(build)?;
        Ok(v)
    }

    /// Labels `v` with `name` (made a valid, unused Kiln name) for readable `.kir`, unless it already has a label.
    fn label(&mut self, v: Value, name: &str) -> Result<(), IrError> {
        let node = self.b.graph().node(v);
        if node.name.is_some() || matches!(node.op, Op::Input { .. }) {
            return Ok(());
        }
        let label = self.unique(name);
        self.b.name(v, &label).map(|_| ())
    }

    /// `name` with every character Kiln names cannot hold replaced by `_`, made distinct from earlier labels.
    fn unique(&mut self, name: &str) -> String {
        let mut base: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if base.is_empty() || base.bytes().all(|b| b.is_ascii_digit()) {
            base = format!("v{base}");
        }
        let mut label = base.clone();
        let mut k = 1;
        while !self.labels.insert(label.clone()) {
            label = format!("{base}_{k}");
            k += 1;
        }
        label
    }

    fn define(&mut self, name: &str, out: Out) -> Result<(), IrError> {
        let slot = match out {
            Out::Node(v) => {
                self.label(v, name)?;
                Slot {
                    node: Some(v),
                    constant: None,
                }
            }
            Out::Const(c) => Slot {
                node: None,
                constant: Some(Rc::new(c)),
            },
        };
        self.env.insert(name.to_string(), slot);
        Ok(())
    }
}

/// The type of a graph input or output, with symbolic dims taken from `dims` (missing ones collected).
fn value_type(
    info: &ValueInfoProto,
    options: &ImportOptions,
    missing: &mut Vec<String>,
) -> Result<Option<TensorType>, ImportError> {
    let dims = &options.dims;
    let name = info.name();
    let Some(type_proto::Value::TensorType(t)) =
        info.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(ImportError::Invalid(format!(
            "graph value `{name}` is not a tensor"
        )));
    };
    let dtype = kiln_dtype(t.elem_type()).ok_or_else(|| {
        ImportError::Invalid(format!(
            "graph value `{name}`: element type {} has no Kiln dtype",
            type_name(t.elem_type())
        ))
    })?;
    let Some(shape) = &t.shape else {
        return Err(ImportError::Invalid(format!(
            "graph input `{name}` has no shape; Kiln needs static shapes"
        )));
    };
    if let Some(given) = options.input_shapes.get(name) {
        let fits = given.len() == shape.dim.len()
            && shape.dim.iter().zip(given).all(|(d, &g)| {
                use super::proto::tensor_shape_proto::dimension::Value as Dim;
                !matches!(d.value, Some(Dim::DimValue(v)) if v != g as i64)
            });
        if !fits {
            return Err(ImportError::Invalid(format!(
                "the shape {given:?} given for input `{name}` does not fit its ONNX shape"
            )));
        }
        return Ok(Some(TensorType::new(dtype, given.as_slice())));
    }
    let mut out = Vec::with_capacity(shape.dim.len());
    let mut complete = true;
    for d in &shape.dim {
        use super::proto::tensor_shape_proto::dimension::Value as Dim;
        match &d.value {
            Some(Dim::DimValue(v)) => out.push(*v),
            Some(Dim::DimParam(p)) => match dims.get(p) {
                Some(&size) => out.push(size as i64),
                None => {
                    if !missing.contains(p) {
                        missing.push(p.clone());
                    }
                    complete = false;
                }
            },
            None => {
                let p = format!("{name}[{}]", out.len());
                missing.push(p);
                complete = false;
            }
        }
    }
    if !complete {
        return Ok(None);
    }
    let dims = dims_of(&out, &format!("graph input `{name}`"))?;
    Ok(Some(TensorType::new(dtype, dims.as_slice())))
}

/// The version of the default domain's opset (`""` or `ai.onnx`) the model imports. A model of other domains
/// only gets 0: its nodes are then refused one by one as `Unsupported`, naming their domain.
fn default_opset(model: &ModelProto) -> Result<i64, ImportError> {
    let default = |d: &str| d.is_empty() || d == "ai.onnx";
    if let Some(o) = model.opset_import.iter().find(|o| default(o.domain())) {
        return Ok(o.version());
    }
    let mut nodes = model.graph.iter().flat_map(|g| &g.node);
    if nodes.any(|n| default(n.domain())) {
        return Err(ImportError::Invalid(
            "the model imports no version of the default ONNX opset but uses its ops".into(),
        ));
    }
    Ok(0)
}

pub fn convert(model: &ModelProto, options: &ImportOptions) -> Result<Imported, ImportError> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| ImportError::Invalid("the model has no graph".into()))?;
    let opset = default_opset(model)?;
    let name = if graph.name().is_empty() {
        "onnx"
    } else {
        graph.name()
    };
    let mut cx = Ctx {
        b: Builder::new(sanitize_graph_name(name)),
        opset,
        trainable: options.trainable,
        env: HashMap::new(),
        labels: HashSet::new(),
    };
    let mut params = Vec::new();
    let mut parameter_count = 0usize;
    let initializers: HashSet<&str> = graph.initializer.iter().map(|t| t.name()).collect();

    // Inputs first (every symbolic dim reported at once), then initializers.
    let mut missing = Vec::new();
    let mut input_types = Vec::new();
    for info in graph
        .input
        .iter()
        .filter(|i| !initializers.contains(i.name()))
    {
        if let Some(t) = options.input_values.get(info.name()) {
            let c = Constant::from_proto(t)?;
            cx.env.insert(
                info.name().to_string(),
                Slot {
                    node: None,
                    constant: Some(Rc::new(c)),
                },
            );
            continue;
        }
        if let Some(ty) = value_type(info, options, &mut missing)? {
            input_types.push((info.name().to_string(), ty));
        }
    }
    if !missing.is_empty() {
        return Err(ImportError::SymbolicDims(missing));
    }
    for (name, ty) in &input_types {
        let label = cx.unique(name);
        let v =
            cx.b.input(&label, Role::Data, ty.clone())
                .map_err(|source| ImportError::Build {
                    node: name.clone(),
                    op_type: "input".into(),
                    source: Box::new(source),
                })?;
        cx.env.insert(
            name.clone(),
            Slot {
                node: Some(v),
                constant: None,
            },
        );
    }
    for t in &graph.initializer {
        let c = Constant::from_proto(t)?;
        parameter_count += c.numel();
        if options.trainable && c.dtype.is_float() {
            let value: Tensor = c.to_tensor(t.name())?;
            let label = cx.unique(t.name());
            let v =
                cx.b.input(&label, Role::Param, value.ty().clone())
                    .map_err(|source| ImportError::Build {
                        node: t.name().into(),
                        op_type: "initializer".into(),
                        source: Box::new(source),
                    })?;
            params.push((label, value));
            cx.env.insert(
                t.name().to_string(),
                Slot {
                    node: Some(v),
                    constant: None,
                },
            );
        } else {
            cx.env.insert(
                t.name().to_string(),
                Slot {
                    node: None,
                    constant: Some(Rc::new(c)),
                },
            );
        }
    }

    let mut op_counts: BTreeMap<String, usize> = BTreeMap::new();
    for node in &graph.node {
        *op_counts.entry(node.op_type().to_string()).or_default() += 1;
        translate_node(&mut cx, node)?;
    }

    let mut output_types = Vec::new();
    let mut output_values = Vec::new();
    for out in &graph.output {
        let v = cx.value(out.name())?;
        let label = sanitize_output(out.name());
        output_types.push((out.name().to_string(), cx.b.ty(v).clone()));
        output_values.push((out.name().to_string(), v));
        cx.b.output(&label, v)
            .map_err(|source| ImportError::Build {
                node: out.name().into(),
                op_type: "output".into(),
                source: Box::new(source),
            })?;
    }
    let loss = match &options.loss {
        Some(spec) => Some(super::loss::append(&mut cx.b, spec, &output_values)?),
        None => None,
    };
    let graph_out = cx.b.finish();
    kiln_ir::verify(&graph_out).map_err(|source| ImportError::Build {
        node: graph_out.name.clone(),
        op_type: "graph".into(),
        source: Box::new(source),
    })?;
    Ok(Imported {
        graph: graph_out,
        params,
        summary: Summary {
            opset,
            producer: model.producer_name().to_string(),
            inputs: input_types,
            outputs: output_types,
            parameter_count,
            ops: op_counts,
            loss,
        },
    })
}

fn translate_node(cx: &mut Ctx, node: &NodeProto) -> Result<(), ImportError> {
    let n = NodeCx {
        node,
        attrs: Attrs::new(node),
        opset: cx.opset,
    };
    let domain = node.domain();
    if !(domain.is_empty() || domain == "ai.onnx") {
        return Err(n.unsupported_error(String::new()));
    }
    let name = || n.display_name();
    let outs = match fold::fold(cx, &n) {
        Some(consts) => consts.into_iter().map(Out::Const).collect(),
        None => ops::translate(cx, &n).map_err(|e| match e {
            OpError::Ir(source) => ImportError::Build {
                node: name(),
                op_type: node.op_type().to_string(),
                source,
            },
            OpError::Import(e) => e,
        })?,
    };
    for (out_name, out) in node.output.iter().zip(outs) {
        if out_name.is_empty() {
            continue;
        }
        cx.define(out_name, out)
            .map_err(|source| ImportError::Build {
                node: name(),
                op_type: node.op_type().to_string(),
                source: Box::new(source),
            })?;
    }
    if let Some(missing) = node
        .output
        .iter()
        .find(|o| !o.is_empty() && !cx.env.contains_key(o.as_str()))
    {
        return Err(n.unsupported_error(format!(
            "output `{missing}` is not produced by the importer"
        )));
    }
    Ok(())
}

/// A graph name Kiln accepts.
fn sanitize_graph_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "onnx".into()
    } else {
        s
    }
}

fn sanitize_output(name: &str) -> String {
    sanitize_graph_name(name)
}
