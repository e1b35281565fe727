//! The golden GPT cases (`tests/data/golden/nets/gpt_*.json`, computed in float64 by an outside autodiff system with
//! PyTorch's conventions; format in that folder's README) rebuilt from the transformer composites: the loss and the
//! gradient of every param, in f64 on the interpreter and in f32 on the interpreter, the CPU backend and Vulkan
//! (skipped without a device unless `KILN_REQUIRE_VULKAN=1`). No optimizer trajectory yet (`conv_nets.rs` has them
//! for the conv family).
//!
//! The embedding lookup `tok_emb[tokens]` is `matmul(one_hot(tokens), tok_emb)` (the IR has no gather yet), which has
//! the same values and the same gradient (exact zeros for rows no token selects).
//!
//! Tolerances: f64 against the oracle's float64 to 1e-9 absolute + 1e-7 relative (the same maths reassociated); f32
//! within the README's: loss 1e-5 relative, gradients `1e-6 + 1e-4·|b|`. Measured: f64 loss to 3.4e-16 relative and
//! gradients within 6e-8 of that tolerance; f32 on the CPU loss to 7.7e-8 relative and gradients within 1.5% of it.

use kiln::ir::{
    interp, AttentionWeights, Builder, DType, GeluApprox, Graph, IrError, Tensor, TensorType, Value,
};
use kiln_tests::golden::{as_usize, cast_float, field, load_with, parse_tensor, str_field};
use serde_json::Value as Json;
use std::collections::HashMap;

const CASES: [&str; 3] = [
    "gpt_1block_2head_gelu_erf_adamw",
    "gpt_2block_2head_gelu_tanh_adam",
    "gpt_2block_1head_short_seq_gelu_erf_adamw",
];

/// A case: its model description and every tensor it names (inputs, params, `expected.grads` as `grad.NAME`).
struct GptCase {
    model: Json,
    tensors: HashMap<String, Tensor>,
    loss: f64,
}

fn load(name: &str) -> GptCase {
    let file = kiln_tests::golden::golden_dir().join(format!("nets/{name}.json"));
    load_with(&file, |json| {
        let mut tensors = HashMap::new();
        for group in ["inputs", "params"] {
            let map = field(json, group)?.as_object().ok_or("not an object")?;
            for (k, v) in map {
                tensors.insert(k.clone(), parse_tensor(v, k)?);
            }
        }
        let expected = field(json, "expected")?;
        let grads = field(expected, "grads")?
            .as_object()
            .ok_or("not an object")?;
        for (k, v) in grads {
            tensors.insert(format!("grad.{k}"), parse_tensor(v, k)?);
        }
        let loss = field(expected, "loss")?.as_f64().ok_or("loss")?;
        Ok(GptCase {
            model: field(json, "model")?.clone(),
            tensors,
            loss,
        })
    })
    .unwrap()
}

fn dim(model: &Json, key: &str) -> usize {
    as_usize(&model[key], key).unwrap()
}

/// The model's loss graph (output `loss`) with its params in `param_shapes` order.
fn gpt_graph(model: &Json, dtype: DType) -> Result<Graph, IrError> {
    let (batch, t, vocab, d) = (
        dim(model, "batch"),
        dim(model, "seq_len"),
        dim(model, "vocab_size"),
        dim(model, "d_model"),
    );
    let (heads, blocks) = (dim(model, "n_heads"), dim(model, "n_blocks"));
    let eps = model["ln_eps"].as_f64().unwrap();
    let gelu = match str_field(model, "gelu").unwrap() {
        "erf" => GeluApprox::None,
        _ => GeluApprox::Tanh,
    };
    let mut b = Builder::new("gpt");
    let tokens = b.data("tokens", TensorType::new(DType::I32, [batch, t]))?;
    let targets = b.data("targets", TensorType::new(DType::I32, [batch, t]))?;
    let mut params = HashMap::new();
    for (name, shape) in model["param_shapes"].as_object().unwrap() {
        let dims: Vec<usize> = shape
            .as_array()
            .unwrap()
            .iter()
            .map(|v| as_usize(v, name).unwrap())
            .collect();
        params.insert(name.clone(), b.param(name, TensorType::new(dtype, dims))?);
    }
    let p = |name: &str| params[name];
    let linear = |b: &mut Builder, x: Value, name: &str| {
        b.linear(
            x,
            p(&format!("{name}.weight")),
            Some(p(&format!("{name}.bias"))),
        )
    };
    let layer_norm = |b: &mut Builder, x: Value, name: &str| {
        let (w, bias) = (p(&format!("{name}.weight")), p(&format!("{name}.bias")));
        b.layer_norm(x, Some(w), Some(bias), eps)
    };

    let one_hot = b.one_hot(tokens, vocab, dtype)?;
    let token_rows = b.matmul(one_hot, p("tok_emb.weight"))?;
    let positions = b.slice(p("pos_emb.weight"), &[0, 0], &[t, d])?;
    let mut x = b.add(token_rows, positions)?;
    for i in 0..blocks {
        let pre = format!("blocks.{i}");
        let h = layer_norm(&mut b, x, &format!("{pre}.ln1"))?;
        let proj = |name: &str| {
            let n = format!("{pre}.attn.{name}");
            (p(&format!("{n}.weight")), Some(p(&format!("{n}.bias"))))
        };
        let weights = AttentionWeights {
            q: proj("q"),
            k: proj("k"),
            v: proj("v"),
            proj: proj("proj"),
        };
        let a = b.multi_head_attention(h, &weights, heads, true)?;
        x = b.add(x, a)?;
        let h = layer_norm(&mut b, x, &format!("{pre}.ln2"))?;
        let h = linear(&mut b, h, &format!("{pre}.mlp.fc1"))?;
        let h = b.gelu(h, gelu)?;
        let h = linear(&mut b, h, &format!("{pre}.mlp.fc2"))?;
        x = b.add(x, h)?;
    }
    let h = layer_norm(&mut b, x, "ln_f")?;
    let logits = linear(&mut b, h, "head")?;
    let loss = b.token_cross_entropy(logits, targets)?;
    b.output("loss", loss)?;
    Ok(b.finish())
}

/// `loss` and every param's gradient of the case's model, as a graph with outputs `loss`, `grad.NAME`.
fn graph_with_gradients(case: &GptCase, dtype: DType) -> Graph {
    let graph = gpt_graph(&case.model, dtype).unwrap();
    let params = kiln::autodiff::param_names(&graph);
    let params: Vec<&str> = params.iter().map(String::as_str).collect();
    kiln::grad(&graph, "loss", &params).unwrap().graph
}

fn inputs_for(graph: &Graph, case: &GptCase, dtype: DType) -> Vec<Tensor> {
    graph
        .inputs()
        .map(|i| cast_float(&case.tensors[i.name], dtype))
        .collect()
}

/// Compares the outputs with the case: the loss within `loss_rtol`, each gradient element within `atol + rtol·|b|`.
fn compare(name: &str, graph: &Graph, out: &[Tensor], case: &GptCase, tol: [f64; 3]) {
    let [loss_rtol, atol, rtol] = tol;
    for (o, t) in graph.outputs().iter().zip(out) {
        let got = t.to_f64_vec();
        if o.name == "loss" {
            let rel = (got[0] - case.loss).abs() / case.loss.abs();
            assert!(
                rel <= loss_rtol,
                "{name}: loss {} vs {} ({rel:e})",
                got[0],
                case.loss
            );
            continue;
        }
        let want = case.tensors[o.name.as_str()].to_f64_vec();
        for (j, (a, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - w).abs() <= atol + rtol * w.abs(),
                "{name}: {}[{j}] = {a:e}, expected {w:e}",
                o.name
            );
        }
    }
}

#[test]
fn gpt_loss_and_gradients_match_the_golden_cases() {
    let f32_tol = [1e-5, 1e-6, 1e-4];
    for name in CASES {
        let case = load(name);
        let graph = graph_with_gradients(&case, DType::F64);
        let out = interp::run(&graph, &inputs_for(&graph, &case, DType::F64)).unwrap();
        compare(name, &graph, &out, &case, [1e-12, 1e-9, 1e-7]);

        let graph = graph_with_gradients(&case, DType::F32);
        let inputs = inputs_for(&graph, &case, DType::F32);
        let out = interp::run(&graph, &inputs).unwrap();
        compare(
            &format!("{name} (interpreter, f32)"),
            &graph,
            &out,
            &case,
            f32_tol,
        );
        let exe = kiln::compile(&graph, &kiln::Options::default()).unwrap();
        let out = exe.run(&inputs).unwrap();
        compare(&format!("{name} (cpu, f32)"), &graph, &out, &case, f32_tol);
        if let Some(device) = kiln_tests::vulkan::device() {
            let exe = kiln::compile_vulkan(device, &graph, &kiln::Options::default()).unwrap();
            let out = exe.run(&inputs).unwrap();
            compare(
                &format!("{name} (vulkan, f32)"),
                &graph,
                &out,
                &case,
                f32_tol,
            );
        }
    }
}
