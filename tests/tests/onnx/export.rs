//! ONNX export round trips: `kiln::onnx::export`, then `kiln::onnx::import`, then the interpreter, against the
//! original graph on the interpreter, for the shipped examples, the MLP, the CNN in evaluation mode, convolutions and
//! pooling with strides, padding and dilation, the GPT, and the ops whose ONNX form spells out Kiln's edge cases.
//!
//! The comparison is bit for bit (NaN equal to NaN): every exported node imports back to the same primitive ops
//! (or, for the guarded forms, to ops that select the same values), evaluated by the same interpreter in the same
//! order, so no rounding differs.

use kiln::ir::{interp, text, BinaryOp, Builder, DType, Graph, Tensor, TensorType, UnaryOp};
use kiln::nn::{self, Activation, Loss, ModelKind, ModelSpec, Module};
use kiln::onnx::{self, ExportError, ExportOptions, ImportOptions};
use kiln_tests::fd::{random_tensor, rng};
use std::collections::HashMap;
use std::path::PathBuf;

/// Exports `graph` with `values` as initializers, imports it back, runs both on the interpreter with the same inputs
/// (seeded random for those not given, or `inputs` by name) and asserts every output is bit-identical.
fn round_trip(graph: &Graph, values: &[(String, Tensor)], inputs: &[(&str, Tensor)]) {
    let bytes = onnx::export(graph, values, &ExportOptions::default())
        .unwrap_or_else(|e| panic!("graph {}: {e}", graph.name));
    let imported = onnx::import(&bytes, &ImportOptions::default())
        .unwrap_or_else(|e| panic!("graph {}: import of the export: {e}", graph.name));
    let mut r = rng(7);
    let mut feed: HashMap<String, Tensor> = HashMap::new();
    for input in graph.inputs() {
        let given = values.iter().find(|(n, _)| n == input.name).map(|(_, t)| t);
        let fed = inputs
            .iter()
            .find(|(n, _)| *n == input.name)
            .map(|(_, t)| t);
        let value = given
            .or(fed)
            .cloned()
            .unwrap_or_else(|| random_tensor(input.ty, &mut r));
        feed.insert(input.name.to_string(), value);
    }
    let expected = interp::run_named(graph, &feed).unwrap();
    let feed_imported: HashMap<String, Tensor> = imported
        .inputs()
        .map(|i| (i.name.to_string(), feed[i.name].clone()))
        .collect();
    assert!(
        imported
            .inputs()
            .all(|i| values.iter().all(|(n, _)| n != i.name)),
        "given values are initializers, not inputs"
    );
    let actual = interp::run_named(&imported, &feed_imported).unwrap();
    assert_eq!(expected.len(), actual.len());
    for (name, want) in &expected {
        let got = actual.get(name).unwrap_or_else(|| {
            panic!("graph {}: output `{name}` missing after import", graph.name)
        });
        assert_eq!(got.ty(), want.ty(), "output `{name}`");
        let same = want
            .to_f64_vec()
            .iter()
            .zip(got.to_f64_vec())
            .all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
        assert!(same, "graph {}: output `{name}` differs", graph.name);
    }
}

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ir-spec/examples")
}

#[test]
fn shipped_examples_round_trip() {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "kir") {
            let graph = text::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
            round_trip(&graph, &[], &[]);
            seen += 1;
        }
    }
    assert!(seen >= 4, "the examples are found");
}

/// The params (and buffers) of `model`, from `seed`, with the running variances moved off 1 so that batch norm's
/// evaluation form is exercised.
fn trained_values(model: &dyn Module, seed: u64) -> Vec<(String, Tensor)> {
    let mut values = nn::init_parameters(model, seed).unwrap();
    let mut r = rng(seed + 1);
    for (name, t) in nn::init_buffers(model).unwrap() {
        let noise = random_tensor(t.ty(), &mut r).to_f64_vec();
        let moved: Vec<f64> = if name.ends_with("var") {
            noise.iter().map(|z| 0.5 + z.abs()).collect()
        } else {
            noise
        };
        values.push((
            name,
            Tensor::from_f64_values(t.ty().clone(), &moved).unwrap(),
        ));
    }
    values
}

fn model_round_trip(kind: ModelKind, inputs: usize, hidden: Option<Vec<usize>>) {
    let spec = ModelSpec::new(
        kind,
        inputs,
        hidden,
        10,
        Some(Activation::Relu),
        Loss::CrossEntropy,
    )
    .unwrap();
    let model = spec.build();
    let graph = nn::inference_graph(&*model, 3, inputs).unwrap();
    round_trip(&graph, &trained_values(&*model, 1), &[]);
}

#[test]
fn mlp_round_trips_with_its_weights_as_initializers() {
    model_round_trip(ModelKind::Mlp, 64, Some(vec![32, 16]));
}

#[test]
fn cnn_in_evaluation_mode_round_trips() {
    model_round_trip(ModelKind::Cnn, 64, Some(vec![4, 8]));
}

#[test]
fn convolutions_and_pooling_with_strides_padding_and_dilation_round_trip() {
    let mut conv = nn::Conv2d::new("c1", 2, 3, 3);
    conv.stride = [2, 1];
    conv.padding = [1, 2];
    conv.dilation = [1, 2];
    let mut grouped = nn::Conv2d::new("c2", 3, 3, 2);
    grouped.groups = 3;
    let mut max = nn::MaxPool2d::new(2);
    max.padding = [1, 1];
    let model = nn::Sequential::new()
        .append(nn::Reshape {
            dims: vec![2, 7, 7],
        })
        .append(conv)
        .append(grouped)
        .append(max)
        .append(nn::AvgPool2d::new(2))
        .append(nn::Flatten);
    let graph = nn::inference_graph(&model, 2, 98).unwrap();
    round_trip(&graph, &trained_values(&model, 3), &[]);
}

#[test]
fn gpt_forward_graph_round_trips() {
    let gpt = nn::Gpt::new(nn::GptConfig::new(7, 5, 8, 2, 2));
    let graph = nn::gpt_forward_graph(&gpt, 2, 5).unwrap();
    // One token out of the vocabulary: Kiln's gather reads zeros there, and the export must keep that.
    let tokens = Tensor::from_i32(&[2, 5], vec![0, 1, 2, 3, 4, 5, 6, 6, 7, -1]).unwrap();
    round_trip(
        &graph,
        &nn::init_parameters(&gpt, 2).unwrap(),
        &[("tokens", tokens)],
    );
}

/// The ops whose ONNX form is guarded or special-cased: i32 division by 0 and `MIN / -1`, float → i32 casts of
/// NaN, infinities and out-of-range values, `gather` out of range (on f32 and bool), `ne`, `select` of bools, empty
/// reduction axes, full-range slices, `iota`, splat and dense constants, `windows` on one dim, and outputs that are
/// inputs or share a node.
#[test]
fn edge_case_forms_round_trip() {
    let mut b = Builder::new("edges");
    let a = b.data("a", TensorType::new(DType::I32, [6])).unwrap();
    let d = b.data("d", TensorType::new(DType::I32, [6])).unwrap();
    let q = b.div(a, d).unwrap();
    b.output("quotient", q).unwrap();
    let f = b.data("f", TensorType::f32(&[6])).unwrap();
    let i = b.cast(f, DType::I32).unwrap();
    b.output("truncated", i).unwrap();
    let g = b.data("g", TensorType::f64(&[6])).unwrap();
    let gi = b.cast(g, DType::I32).unwrap();
    b.output("truncated64", gi).unwrap();
    let x = b.data("x", TensorType::f32(&[2, 3])).unwrap();
    let idx = b.data("idx", TensorType::new(DType::I32, [2, 3])).unwrap();
    let picked = b.gather(x, idx, 1).unwrap();
    b.output("picked", picked).unwrap();
    let ne = b.compare(kiln::ir::CmpDir::Ne, a, d).unwrap();
    let chosen = b.select(ne, a, d).unwrap();
    b.output("chosen", chosen).unwrap();
    // Bool branches: `Where` is written in logical ops there (onnxruntime has no bool `Where`).
    let lt = b.compare(kiln::ir::CmpDir::Lt, a, d).unwrap();
    let gt = b.compare(kiln::ir::CmpDir::Gt, a, d).unwrap();
    let bools = b.select(ne, lt, gt).unwrap();
    b.output("bool_chosen", bools).unwrap();
    let flags = b.reshape(bools, &[2, 3]).unwrap();
    let picked_flags = b.gather(flags, idx, 1).unwrap();
    b.output("picked_flags", picked_flags).unwrap();
    let same = b.reduce_sum(x, &[], false).unwrap();
    b.output("same", same).unwrap();
    let whole = b.slice(x, &[0, 0], &[2, 3]).unwrap();
    let part = b.slice(x, &[1, 0], &[2, 2]).unwrap();
    b.output("whole", whole).unwrap();
    b.output("part", part).unwrap();
    let iota = b.iota(TensorType::f32(&[2, 3]), 1).unwrap();
    let dense = b
        .literal(
            TensorType::f32(&[2, 3]),
            vec![1.0, -2.0, 0.5, 0.0, 3.0, -0.0],
        )
        .unwrap();
    let sum = b.add(iota, dense).unwrap();
    let padded = b.pad(sum, &[1, 0], &[0, 2], -1.5).unwrap();
    let win = b.windows(padded, &[2], &[2], &[1]).unwrap();
    let max = b.reduce_max(win, &[-1], true).unwrap();
    b.output("pooled", max).unwrap();
    b.output("again", max).unwrap();
    b.output("x_itself", x).unwrap();
    // The rounding ops on f64 edge values (trunc is written as Where(x < 0, Ceil, Floor)).
    for (name, op) in [
        ("floored", UnaryOp::Floor),
        ("ceiled", UnaryOp::Ceil),
        ("rounded", UnaryOp::Round),
        ("trunced", UnaryOp::Trunc),
    ] {
        let y = b.unary(op, g).unwrap();
        b.output(name, y).unwrap();
    }
    let graph = b.finish();
    let inputs = [
        (
            "a",
            Tensor::from_i32(&[6], vec![7, -7, i32::MIN, 5, 0, i32::MIN]).unwrap(),
        ),
        (
            "d",
            Tensor::from_i32(&[6], vec![2, 2, -1, 0, 0, 1]).unwrap(),
        ),
        (
            "f",
            Tensor::from_f32(
                &[6],
                vec![f32::NAN, f32::INFINITY, -3e9, 2.7, -2.7, 2_147_483_520.0],
            )
            .unwrap(),
        ),
        (
            "g",
            Tensor::from_f64(
                &[6],
                vec![
                    f64::NAN,
                    f64::NEG_INFINITY,
                    3e9,
                    2_147_483_647.9,
                    -0.5,
                    1e300,
                ],
            )
            .unwrap(),
        ),
        (
            "idx",
            Tensor::from_i32(&[2, 3], vec![0, 2, 3, -1, 1, 1]).unwrap(),
        ),
    ];
    round_trip(&graph, &[], &inputs);
}

#[test]
fn an_op_without_an_onnx_equivalent_is_an_error_naming_the_node() {
    let mut b = Builder::new("bits");
    let a = b.data("a", TensorType::new(DType::I32, [4])).unwrap();
    let s = b.binary(BinaryOp::Shl, a, a).unwrap();
    let s = b.name(s, "shifted").unwrap();
    b.output("y", s).unwrap();
    let graph = b.finish();
    let err = onnx::export(&graph, &[], &ExportOptions::default()).unwrap_err();
    assert!(matches!(err, ExportError::Unsupported { .. }));
    let message = err.to_string();
    assert!(
        message.contains("`%shifted`") && message.contains("shl") && message.contains("i32[4]"),
        "{message}"
    );
}

#[test]
fn a_value_for_an_unknown_input_or_of_the_wrong_type_is_an_error() {
    let mut b = Builder::new("g");
    let x = b.param("w", TensorType::f32(&[2])).unwrap();
    b.output("y", x).unwrap();
    let graph = b.finish();
    // (name, dims of the value, what the message names)
    let cases: [(&str, usize, &[&str]); 2] = [
        ("w", 3, &["f32[3]", "f32[2]"]),
        ("v", 2, &["no such input", "w"]),
    ];
    for (name, n, expected) in cases {
        let value = [(
            name.to_string(),
            Tensor::from_f32(&[n], vec![0.0; n]).unwrap(),
        )];
        let message = onnx::export(&graph, &value, &ExportOptions::default())
            .unwrap_err()
            .to_string();
        assert!(expected.iter().all(|e| message.contains(e)), "{message}");
    }
}
