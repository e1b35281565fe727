//! The importer on small models written here with the protobuf types: the summary, symbolic dims, int64 range
//! checks, static operands computed at import, opset-dependent forms, unsupported ops, and malformed bytes.

use kiln::ir::{interp, DType, Tensor, TensorType};
use kiln::onnx::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use kiln::onnx::{import, import_model, ImportError, ImportOptions, LossKind, LossSpec};
use prost::Message;

/// A tensor value info; a dim is a size or a symbolic name.
fn info(name: &str, elem: DataType, dims: &[&str]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d.parse::<i64>() {
                Ok(v) => tensor_shape_proto::dimension::Value::DimValue(v),
                Err(_) => tensor_shape_proto::dimension::Value::DimParam(d.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(format!("{op}_{}", outputs[0])),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn i64_tensor(name: &str, dims: &[i64], v: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        data_type: Some(DataType::Int64 as i32),
        dims: dims.to_vec(),
        int64_data: v.to_vec(),
        ..Default::default()
    }
}

fn f32_tensor(name: &str, dims: &[i64], v: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        data_type: Some(DataType::Float as i32),
        dims: dims.to_vec(),
        raw_data: Some(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        ..Default::default()
    }
}

fn model(opset: i64, graph: GraphProto) -> Vec<u8> {
    ModelProto {
        ir_version: Some(8),
        producer_name: Some("kiln-tests".into()),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(opset),
        }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

/// `y = Relu(x · W + b)` reshaped to `[batch, 2, 2]` by a shape computed from `Shape(x)` at import.
fn mlp(opset: i64) -> Vec<u8> {
    model(
        opset,
        GraphProto {
            name: Some("mlp".into()),
            node: vec![
                node("MatMul", &["x", "W"], &["xw"], vec![]),
                node("Add", &["xw", "b"], &["z"], vec![]),
                node("Relu", &["z"], &["h"], vec![]),
                node("Shape", &["x"], &["sx"], vec![]),
                node("Gather", &["sx", "zero"], &["n"], vec![]),
                node("Unsqueeze", &["n", "axes0"], &["n1"], vec![]),
                node(
                    "Concat",
                    &["n1", "two_two"],
                    &["shape"],
                    vec![int_attr("axis", 0)],
                ),
                node("Reshape", &["h", "shape"], &["y"], vec![]),
            ],
            initializer: vec![
                f32_tensor("W", &[3, 4], &[0.5; 12]),
                f32_tensor("b", &[4], &[-1.0, 0.0, 1.0, 2.0]),
                i64_tensor("zero", &[], &[0]),
                i64_tensor("axes0", &[1], &[0]),
                i64_tensor("two_two", &[2], &[2, 2]),
            ],
            input: vec![info("x", DataType::Float, &["batch", "3"])],
            output: vec![info("y", DataType::Float, &["batch", "2", "2"])],
            ..Default::default()
        },
    )
}

#[test]
fn an_mlp_imports_with_its_dynamic_reshape_folded_and_runs() {
    let options = ImportOptions::default().dim("batch", 2);
    let imported = import_model(&mlp(13), &options).unwrap();
    let s = &imported.summary;
    assert_eq!(s.opset, 13);
    assert_eq!(s.parameter_count, 12 + 4 + 1 + 1 + 2);
    assert_eq!(
        s.inputs,
        vec![(
            "x".to_string(),
            TensorType::new(DType::F32, [2, 3].as_slice())
        )]
    );
    assert_eq!(
        s.outputs,
        vec![(
            "y".to_string(),
            TensorType::new(DType::F32, [2, 2, 2].as_slice())
        )]
    );
    assert_eq!(s.ops.get("Reshape"), Some(&1));
    let text = s.to_string();
    assert!(
        text.starts_with(
            "opset 13 (producer kiln-tests)\ninput x: f32[2,3]\noutput y: f32[2,2,2]\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("parameters: 20\nops: Add x1, Concat x1, Gather x1, MatMul x1"),
        "{text}"
    );

    let x = Tensor::from_f32(&[2, 3], vec![1.0, 1.0, 1.0, -1.0, 0.0, 0.0]).unwrap();
    let y = interp::run(&imported.graph, &[x]).unwrap();
    // Row 0: 1.5 + b = [0.5, 1.5, 2.5, 3.5]; row 1: -0.5 + b, relu'd.
    assert_eq!(
        y[0].as_f32().unwrap(),
        &[0.5, 1.5, 2.5, 3.5, 0.0, 0.0, 0.5, 1.5]
    );
    // The shape computation never reached the graph: no i32 shape constants, no gather.
    let printed = kiln::ir::text::print(&imported.graph);
    assert!(!printed.contains("gather"), "{printed}");
}

/// With `trainable`, float initializers are `param` inputs whose values come back beside the graph; integer ones
/// (the shape computation's) stay constants.
#[test]
fn trainable_initializers_become_params() {
    let options = ImportOptions {
        trainable: true,
        ..ImportOptions::default().dim("batch", 2)
    };
    let imported = import_model(&mlp(13), &options).unwrap();
    let params: Vec<(&str, String)> = imported
        .params
        .iter()
        .map(|(name, t)| (name.as_str(), t.ty().to_string()))
        .collect();
    assert_eq!(
        params,
        [("W", "f32[3,4]".to_string()), ("b", "f32[4]".to_string())]
    );
    let roles: Vec<(&str, kiln::ir::Role)> =
        imported.graph.inputs().map(|i| (i.name, i.role)).collect();
    assert_eq!(
        roles,
        [
            ("x", kiln::ir::Role::Data),
            ("W", kiln::ir::Role::Param),
            ("b", kiln::ir::Role::Param)
        ]
    );
    let x = Tensor::from_f32(&[2, 3], vec![1.0, 1.0, 1.0, -1.0, 0.0, 0.0]).unwrap();
    let mut inputs = vec![x];
    inputs.extend(imported.params.iter().map(|(_, t)| t.clone()));
    let y = interp::run(&imported.graph, &inputs).unwrap();
    assert_eq!(
        y[0].as_f32().unwrap(),
        &[0.5, 1.5, 2.5, 3.5, 0.0, 0.0, 0.5, 1.5]
    );
}

/// `loss` appends a `target` input typed for the loss and a scalar `loss` output beside the model's own; what does
/// not fit (a missing output, class targets for logits of rank 1, a clashing input name) is an error saying so.
#[test]
fn a_loss_appends_a_target_input_and_a_scalar_output() {
    let with_loss = |kind, of: Option<&str>| ImportOptions {
        loss: Some(LossSpec {
            kind,
            of: of.map(str::to_string),
        }),
        ..ImportOptions::default().dim("batch", 2)
    };
    let types = |g: &kiln::ir::Graph| -> Vec<String> {
        g.inputs()
            .map(|i| format!("{}: {}", i.name, i.ty))
            .chain(g.outputs().iter().map(|o| format!("out {}", o.name)))
            .collect()
    };
    let mse = import(&mlp(13), &with_loss(LossKind::Mse, None)).unwrap();
    assert_eq!(
        types(&mse),
        ["x: f32[2,3]", "target: f32[2,2,2]", "out y", "out loss"]
    );
    // Logits [2, 2, 2] against class indices [2, 2] (classes last, as token cross-entropy).
    let ce = import(&mlp(13), &with_loss(LossKind::CrossEntropy, Some("y"))).unwrap();
    assert_eq!(
        types(&ce),
        ["x: f32[2,3]", "target: i32[2,2]", "out y", "out loss"]
    );
    let x = Tensor::from_f32(&[2, 3], vec![1.0, 1.0, 1.0, -1.0, 0.0, 0.0]).unwrap();
    let target =
        Tensor::from_f32(&[2, 2, 2], vec![0.5, 1.5, 2.5, 3.5, 0.0, 0.0, 0.5, 2.5]).unwrap();
    let out = interp::run(&mse, &[x, target]).unwrap();
    // y = [0.5, 1.5, 2.5, 3.5, 0, 0, 0.5, 1.5]: one element off by 1, so the mean of squares is 1/8.
    assert_eq!(out[1].scalar_value().unwrap(), 0.125);

    let err = |options| import(&mlp(13), &options).unwrap_err().to_string();
    let e = err(with_loss(LossKind::Bce, Some("z")));
    assert!(
        e.contains("--loss bce: the model has no output `z` (its outputs: `y`)"),
        "{e}"
    );
    let bytes = model(
        13,
        GraphProto {
            name: Some("relu".into()),
            node: vec![node("Relu", &["target"], &["y"], vec![])],
            input: vec![info("target", DataType::Float, &["3"])],
            output: vec![info("y", DataType::Float, &["3"])],
            ..Default::default()
        },
    );
    let e = import(&bytes, &with_loss(LossKind::Mse, None))
        .unwrap_err()
        .to_string();
    assert!(e.contains("already has an input named `target`"), "{e}");
    let e = import(&bytes, &with_loss(LossKind::CrossEntropy, None))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cross_entropy needs logits with classes last"),
        "{e}"
    );
}

#[test]
fn missing_symbolic_dims_are_listed_together() {
    let bytes = model(
        13,
        GraphProto {
            node: vec![node("Add", &["a", "b"], &["c"], vec![])],
            input: vec![
                info("a", DataType::Float, &["batch", "seq"]),
                info("b", DataType::Float, &["batch", "seq"]),
            ],
            output: vec![info("c", DataType::Float, &["batch", "seq"])],
            ..Default::default()
        },
    );
    let e = import(&bytes, &ImportOptions::default()).unwrap_err();
    assert!(
        matches!(&e, ImportError::SymbolicDims(d) if d == &["batch", "seq"]),
        "{e}"
    );
    assert!(e.to_string().contains("batch, seq"), "{e}");
    let g = import(
        &bytes,
        &ImportOptions::default().dim("batch", 2).dim("seq", 5),
    )
    .unwrap();
    assert_eq!(g.inputs().next().unwrap().ty.to_string(), "f32[2,5]");
}

#[test]
fn an_int64_tensor_outside_i32_is_an_error_naming_it() {
    let bytes = model(
        13,
        GraphProto {
            node: vec![node("Add", &["a", "big"], &["c"], vec![])],
            initializer: vec![i64_tensor("big", &[2], &[1, 1 << 40])],
            input: vec![info("a", DataType::Int64, &["2"])],
            output: vec![info("c", DataType::Int64, &["2"])],
            ..Default::default()
        },
    );
    let e = import(&bytes, &ImportOptions::default()).unwrap_err();
    assert!(
        matches!(&e, ImportError::IntRange { tensor, .. } if tensor == "big"),
        "{e}"
    );
}

/// Squeeze's axes: an attribute before opset 13, an input from 13.
#[test]
fn squeeze_axes_follow_the_opset() {
    let graph = |attr: bool| GraphProto {
        node: vec![if attr {
            node("Squeeze", &["x"], &["y"], vec![ints_attr("axes", &[0])])
        } else {
            node("Squeeze", &["x", "axes"], &["y"], vec![])
        }],
        initializer: if attr {
            vec![]
        } else {
            vec![i64_tensor("axes", &[1], &[0])]
        },
        input: vec![info("x", DataType::Float, &["1", "3", "1"])],
        output: vec![info("y", DataType::Float, &["3", "1"])],
        ..Default::default()
    };
    for (opset, attr) in [(11, true), (13, false)] {
        let g = import(&model(opset, graph(attr)), &ImportOptions::default()).unwrap();
        assert_eq!(
            g.ty(g.outputs()[0].value).to_string(),
            "f32[3,1]",
            "opset {opset}"
        );
    }
    // The opset-13 form at opset 11 ignores the input and squeezes every 1.
    let g = import(&model(11, graph(false)), &ImportOptions::default()).unwrap();
    assert_eq!(g.ty(g.outputs()[0].value).to_string(), "f32[3]");
}

#[test]
fn a_runtime_shape_operand_is_an_error_naming_the_node() {
    let bytes = model(
        13,
        GraphProto {
            node: vec![node("Reshape", &["x", "s"], &["y"], vec![])],
            input: vec![
                info("x", DataType::Float, &["4"]),
                info("s", DataType::Int64, &["2"]),
            ],
            output: vec![info("y", DataType::Float, &["2", "2"])],
            ..Default::default()
        },
    );
    let e = import(&bytes, &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Reshape_y") && e.contains("must be known at import"),
        "{e}"
    );
}

#[test]
fn an_unsupported_op_names_the_node_and_lists_the_supported_ones() {
    let bytes = model(
        17,
        GraphProto {
            node: vec![node("Det", &["x"], &["y"], vec![])],
            input: vec![info("x", DataType::Float, &["2", "2"])],
            output: vec![info("y", DataType::Float, &[])],
            ..Default::default()
        },
    );
    let e = import(&bytes, &ImportOptions::default()).unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, ImportError::Unsupported { .. }));
    assert!(
        m.contains("node `Det_y`: Det (domain ``, opset 17) is not supported"),
        "{m}"
    );
    assert!(
        m.contains("supported ops: Abs ") && m.contains(" MatMul "),
        "{m}"
    );
}

/// Every prefix and many single-bit flips of a valid model are errors or graphs, never panics.
#[test]
fn truncated_or_corrupted_models_are_errors_not_panics() {
    let bytes = mlp(13);
    let options = ImportOptions::default().dim("batch", 2);
    assert!(import(&bytes, &options).is_ok());
    for len in 0..bytes.len() {
        let _ = import(&bytes[..len], &options);
    }
    for i in 0..bytes.len() {
        for bit in [0, 3, 7] {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            let _ = import(&b, &options);
        }
    }
    assert!(matches!(
        import(&bytes[..bytes.len() / 2], &options),
        Err(ImportError::Decode(_))
    ));
}

fn float_attr(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(v),
        ..Default::default()
    }
}

/// One node `op(x)` on `x: f32[dims]` at `opset`, run on the interpreter at `values`.
fn run_one(
    opset: i64,
    op: NodeProto,
    dims: &[&str],
    init: Vec<TensorProto>,
    values: Vec<f32>,
) -> Vec<f32> {
    let bytes = model(
        opset,
        GraphProto {
            node: vec![op],
            initializer: init,
            input: vec![info("x", DataType::Float, dims)],
            output: vec![info("y", DataType::Float, &[])],
            ..Default::default()
        },
    );
    let g = import(&bytes, &ImportOptions::default()).unwrap();
    let shape: Vec<usize> = dims.iter().map(|d| d.parse().unwrap()).collect();
    let x = Tensor::from_f32(&shape, values).unwrap();
    interp::run(&g, &[x]).unwrap()[0].as_f32().unwrap().to_vec()
}

/// Before opset 13 Softmax normalizes everything from `axis` on (the input coerced to 2-D); from 13, one axis.
#[test]
fn softmax_before_opset_13_coerces_to_2d() {
    let node = || node("Softmax", &["x"], &["y"], vec![int_attr("axis", 1)]);
    let ones = vec![0.0; 2 * 2 * 2];
    let old = run_one(11, node(), &["2", "2", "2"], vec![], ones.clone());
    let new = run_one(13, node(), &["2", "2", "2"], vec![], ones);
    assert!(old.iter().all(|&v| (v - 0.25).abs() < 1e-6), "{old:?}");
    assert!(new.iter().all(|&v| (v - 0.5).abs() < 1e-6), "{new:?}");
}

/// Clip's bounds are attributes before opset 11 and inputs from 11; Slice's starts/ends attributes before 10.
#[test]
fn clip_and_slice_read_their_operands_where_the_opset_puts_them() {
    let x = vec![-2.0, -0.5, 0.5, 2.0];
    let attrs = node(
        "Clip",
        &["x"],
        &["y"],
        vec![float_attr("min", -1.0), float_attr("max", 1.0)],
    );
    assert_eq!(
        run_one(6, attrs, &["4"], vec![], x.clone()),
        [-1.0, -0.5, 0.5, 1.0]
    );
    let inputs = node("Clip", &["x", "lo", "hi"], &["y"], vec![]);
    let bounds = vec![
        f32_tensor("lo", &[], &[-1.0]),
        f32_tensor("hi", &[], &[1.0]),
    ];
    assert_eq!(
        run_one(11, inputs, &["4"], bounds, x.clone()),
        [-1.0, -0.5, 0.5, 1.0]
    );
    // An omitted min ("" input) leaves that side open.
    let max_only = node("Clip", &["x", "", "hi"], &["y"], vec![]);
    let bound = vec![f32_tensor("hi", &[], &[1.0])];
    assert_eq!(
        run_one(13, max_only, &["4"], bound, x.clone()),
        [-2.0, -0.5, 0.5, 1.0]
    );

    let attrs = node(
        "Slice",
        &["x"],
        &["y"],
        vec![ints_attr("starts", &[1]), ints_attr("ends", &[i64::MAX])],
    );
    assert_eq!(
        run_one(9, attrs, &["4"], vec![], x.clone()),
        [-0.5, 0.5, 2.0]
    );
    // From opset 10: inputs, with a negative step reading backwards from the end.
    let stepped = node("Slice", &["x", "s", "e", "a", "st"], &["y"], vec![]);
    let operands = vec![
        i64_tensor("s", &[1], &[-1]),
        i64_tensor("e", &[1], &[i64::MIN]),
        i64_tensor("a", &[1], &[0]),
        i64_tensor("st", &[1], &[-2]),
    ];
    assert_eq!(run_one(13, stepped, &["4"], operands, x), [2.0, -0.5]);
}

/// MaxPool is a plain window maximum (one `reduce_max`) unless the import is trainable, where the builder's
/// `max_pool` keeps PyTorch's gradient to each window's first maximum; both give the same values, padding included.
#[test]
fn max_pool_is_a_window_maximum_unless_trainable() {
    let pool = node(
        "MaxPool",
        &["x"],
        &["y"],
        vec![
            ints_attr("kernel_shape", &[2, 2]),
            ints_attr("strides", &[2, 2]),
            ints_attr("pads", &[1, 1, 1, 1]),
        ],
    );
    let bytes = model(
        13,
        GraphProto {
            node: vec![pool],
            input: vec![info("x", DataType::Float, &["1", "1", "3", "3"])],
            output: vec![info("y", DataType::Float, &[])],
            ..Default::default()
        },
    );
    let x = Tensor::from_f32(&[1, 1, 3, 3], vec![1., -2., 3., -4., 5., -6., 7., -8., 9.]).unwrap();
    let mut results = Vec::new();
    for trainable in [false, true] {
        let options = ImportOptions {
            trainable,
            ..ImportOptions::default()
        };
        let g = import(&bytes, &options).unwrap();
        let has_iota = g
            .ids()
            .any(|id| matches!(g.node(id).op, kiln::ir::Op::Iota { .. }));
        assert_eq!(
            has_iota, trainable,
            "the first-maximum form only when trainable"
        );
        results.push(
            interp::run(&g, std::slice::from_ref(&x)).unwrap()[0]
                .as_f32()
                .unwrap()
                .to_vec(),
        );
    }
    assert_eq!(results[0], [1., 3., 7., 9.]);
    assert_eq!(results[0], results[1]);
}
