"""Writes the whole-model ONNX fixtures, tests/fixtures/onnx/models/<name>/, with outputs computed by onnxruntime.

Four small models are built with `onnx.helper` in the op forms PyTorch's exporter emits (Gemm with transB = 1,
Conv without bias before a BatchNormalization, Flatten before the classifier, Shape → Gather → Unsqueeze → Concat
for a Reshape's target under a dynamic batch, GELU written out with Erf, a causal mask applied with Where):

- `mlp`: [N, 64] → Gemm 128 → Relu → Gemm 10 (the shape of Kiln's MLP on 8×8 digits), logits out;
- `lenet`: [N, 1, 28, 28] → Conv 6@5×5 → Relu → MaxPool 2 → Conv 16@5×5 → Relu → MaxPool 2 → Flatten →
  Gemm 120 → Relu → Gemm 84 → Relu → Gemm 10;
- `resnet_block`: [N, 16, 16, 16] → Conv 3×3 → BatchNormalization → Relu → Conv 3×3 → BatchNormalization →
  + identity → Relu (inference-mode batch norm with nonzero running mean and non-unit variance);
- `gpt_block`: [N, 16, 32] → pre-LN causal self-attention (4 heads of 8) + residual → LayerNormalization → MLP
  32 → 128 → 32 with erf GELU + residual.

The batch dim is the symbolic `N`. Weights are initializers drawn from one numpy seed per model (PyTorch's default
uniform ±1/√fan_in), so rerunning writes the same files. For batch 1 and batch 4, `batch_<b>/input_0.pb` and
`batch_<b>/output_0.pb` hold a random input and onnxruntime's output for it (the node tests' `test_data_set_*`
layout): onnxruntime's CPU execution provider with its default graph optimizations (ORT_ENABLE_ALL), one thread,
which is how it runs in scripts/onnx-bench.py too.

`python onnx_models.py REPO_ROOT` writes the fixtures; `models(rng_seed)` and `MODELS` are also imported by the
benchmark script. scripts/onnx-fixtures.sh pins onnx, numpy and onnxruntime and runs this file.
"""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17  # LayerNormalization's first opset; PyTorch's exporter default is 17 too
BATCHES = (1, 4)  # fixture batch sizes; kept small so the committed files stay a few hundred KB


class Graph:
    """Collects nodes and initializers; each op method returns its output's name."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes = []
        self.inits = []
        self.count = 0

    def name(self, base):
        self.count += 1
        return f"{base}_{self.count}"

    def const(self, base, value, dtype=np.float32):
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def uniform(self, base, shape, fan_in):
        bound = 1.0 / np.sqrt(fan_in)
        return self.const(base, self.rng.uniform(-bound, bound, shape))

    def op(self, op_type, inputs, n_out=1, **attrs):
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=outs[0], **attrs))
        return outs[0] if n_out == 1 else outs

    def linear(self, x, n_in, n_out):
        """nn.Linear on a 2-D input as PyTorch exports it: Gemm with the [out, in] weight and transB = 1."""
        w = self.uniform("weight", (n_out, n_in), n_in)
        b = self.uniform("bias", (n_out,), n_in)
        return self.op("Gemm", [x, w, b], alpha=1.0, beta=1.0, transB=1)

    def matmul_linear(self, x, n_in, n_out):
        """nn.Linear on a 3-D input as PyTorch exports it: MatMul with the transposed [in, out] weight, then Add."""
        w = self.uniform("weight", (n_in, n_out), n_in)
        b = self.uniform("bias", (n_out,), n_in)
        return self.op("Add", [self.op("MatMul", [x, w]), b])

    def conv(self, x, c_in, c_out, k, pad, bias=True):
        fan_in = c_in * k * k
        inputs = [x, self.uniform("weight", (c_out, c_in, k, k), fan_in)]
        if bias:
            inputs.append(self.uniform("bias", (c_out,), fan_in))
        return self.op(
            "Conv", inputs, dilations=[1, 1], group=1, kernel_shape=[k, k], pads=[pad] * 4, strides=[1, 1]
        )

    def batch_norm(self, x, c):
        # Trained-looking statistics: a nonzero mean and a variance away from 1, so a wrong formula shows.
        scale = self.const("bn_scale", self.rng.uniform(0.5, 1.5, c))
        bias = self.const("bn_bias", self.rng.normal(0.0, 0.1, c))
        mean = self.const("bn_mean", self.rng.normal(0.0, 0.2, c))
        var = self.const("bn_var", self.rng.uniform(0.5, 2.0, c))
        return self.op("BatchNormalization", [x, scale, bias, mean, var], epsilon=1e-5, momentum=0.9)

    def layer_norm(self, x, c):
        scale = self.const("ln_scale", self.rng.uniform(0.8, 1.2, c))
        bias = self.const("ln_bias", self.rng.normal(0.0, 0.05, c))
        return self.op("LayerNormalization", [x, scale, bias], axis=-1, epsilon=1e-5)

    def model(self, name, x_shape, y_shape, y):
        inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, x_shape)
        out = helper.make_tensor_value_info("output", TensorProto.FLOAT, y_shape)
        self.nodes.append(helper.make_node("Identity", [y], ["output"], name="output"))
        graph = helper.make_graph(self.nodes, name, [inp], [out], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="kiln")
        onnx.checker.check_model(model, full_check=True)
        return model


def mlp():
    g = Graph(seed=1)
    h = g.op("Relu", [g.linear("input", 64, 128)])
    return g.model("mlp", ["N", 64], ["N", 10], g.linear(h, 128, 10))


def lenet():
    g = Graph(seed=2)
    pool = {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [0, 0, 0, 0], "ceil_mode": 0}
    h = g.op("MaxPool", [g.op("Relu", [g.conv("input", 1, 6, 5, 0)])], **pool)  # [N, 6, 12, 12]
    h = g.op("MaxPool", [g.op("Relu", [g.conv(h, 6, 16, 5, 0)])], **pool)  # [N, 16, 4, 4]
    h = g.op("Flatten", [h], axis=1)
    h = g.op("Relu", [g.linear(h, 256, 120)])
    h = g.op("Relu", [g.linear(h, 120, 84)])
    return g.model("lenet", ["N", 1, 28, 28], ["N", 10], g.linear(h, 84, 10))


def resnet_block():
    g = Graph(seed=3)
    c = 16
    h = g.op("Relu", [g.batch_norm(g.conv("input", c, c, 3, 1, bias=False), c)])
    h = g.batch_norm(g.conv(h, c, c, 3, 1, bias=False), c)
    y = g.op("Relu", [g.op("Add", [h, "input"])])
    return g.model("resnet_block", ["N", c, 16, 16], ["N", c, 16, 16], y)


def gpt_block():
    g = Graph(seed=4)
    t, c, heads = 16, 32, 4
    d = c // heads
    i64 = np.int64
    # The batch size from the input's shape, as the exporter writes a view under a dynamic axis.
    batch = g.op("Unsqueeze", [g.op("Gather", [g.op("Shape", ["input"]), g.const("zero", 0, i64)], axis=0),
                               g.const("axes", [0], i64)])
    split_shape = g.op("Concat", [batch, g.const("t_h_d", [t, heads, d], i64)], axis=0)
    merge_shape = g.op("Concat", [batch, g.const("t_c", [t, c], i64)], axis=0)

    h = g.layer_norm("input", c)
    qkv = g.matmul_linear(h, c, 3 * c)  # [N, T, 3C]
    q, k, v = g.op("Split", [qkv, g.const("split", [c, c, c], i64)], n_out=3, axis=-1)
    q = g.op("Transpose", [g.op("Reshape", [q, split_shape])], perm=[0, 2, 1, 3])  # [N, H, T, D]
    k = g.op("Transpose", [g.op("Reshape", [k, split_shape])], perm=[0, 2, 3, 1])  # [N, H, D, T]
    v = g.op("Transpose", [g.op("Reshape", [v, split_shape])], perm=[0, 2, 1, 3])  # [N, H, T, D]
    scores = g.op("Div", [g.op("MatMul", [q, k]), g.const("sqrt_d", np.sqrt(d))])  # [N, H, T, T]
    # masked_fill(mask == 0, -inf) of nanoGPT: a constant lower-triangular bool mask, -inf above the diagonal.
    causal = g.const("causal", np.tril(np.ones((t, t), dtype=bool)), dtype=bool)
    scores = g.op("Where", [causal, scores, g.const("neg_inf", -np.inf)])
    att = g.op("Softmax", [scores], axis=-1)
    y = g.op("Transpose", [g.op("MatMul", [att, v])], perm=[0, 2, 1, 3])  # [N, T, H, D]
    y = g.matmul_linear(g.op("Reshape", [y, merge_shape]), c, c)
    x = g.op("Add", ["input", y])

    h = g.matmul_linear(g.layer_norm(x, c), c, 4 * c)
    # GELU as torch.onnx exports nn.GELU() before opset 20: x * 0.5 * (1 + erf(x / √2)).
    erf = g.op("Erf", [g.op("Div", [h, g.const("sqrt2", np.sqrt(2.0))])])
    h = g.op("Mul", [g.op("Mul", [h, g.op("Add", [erf, g.const("one", 1.0)])]), g.const("half", 0.5)])
    y = g.matmul_linear(h, 4 * c, c)
    return g.model("gpt_block", ["N", t, c], ["N", t, c], g.op("Add", [x, y]))


MODELS = {"mlp": mlp, "lenet": lenet, "resnet_block": resnet_block, "gpt_block": gpt_block}


def input_shape(model, batch):
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return [batch if d.dim_param == "N" else d.dim_value for d in dims]


def random_input(model, batch, seed):
    """Standard-normal input of the model at `batch` (the same for a given seed)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal(input_shape(model, batch)).astype(np.float32)


def session(model, threads):
    """onnxruntime on the CPU EP with its default graph optimizations (ORT_ENABLE_ALL)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def main():
    root = os.path.abspath(sys.argv[1])
    out_root = os.path.join(root, "tests/fixtures/onnx/models")
    names = sys.argv[2:] or list(MODELS)
    for name in names:
        model = MODELS[name]()
        model_dir = os.path.join(out_root, name)
        os.makedirs(model_dir, exist_ok=True)
        onnx.save(model, os.path.join(model_dir, "model.onnx"))
        sess = session(model, threads=1)
        for batch in BATCHES:
            x = random_input(model, batch, seed=1000 + batch)
            (y,) = sess.run(None, {"input": x})
            data = os.path.join(model_dir, f"batch_{batch}")
            os.makedirs(data, exist_ok=True)
            for file, value, tensor_name in (("input_0.pb", x, "input"), ("output_0.pb", y, "output")):
                proto = numpy_helper.from_array(value, tensor_name)
                with open(os.path.join(data, file), "wb") as f:
                    f.write(proto.SerializeToString())
        print(f"{name}: {model_dir}")


if __name__ == "__main__":
    main()
