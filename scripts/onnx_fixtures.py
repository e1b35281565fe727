"""Copies ONNX's backend node tests for the ops Kiln's importer supports into tests/fixtures/onnx/node/.

The node tests (`onnx/backend/test/data/node/<test>/model.onnx` and `test_data_set_0/{input,output}_*.pb`) ship
inside the `onnx` pip package; scripts/onnx-fixtures.sh installs a pinned version in a venv and runs this file.

A test is copied when every op in its model (default domain) is in `SUPPORTED_OPS` of
compiler/src/onnx/ops/mod.rs and it is no larger than MAX_BYTES; `skipped.csv` lists the tests not copied and why
(the Rust conformance test classifies every copied one as passing or expected to fail, with a reason).

Usage: python onnx_fixtures.py REPO_ROOT
"""

import csv
import os
import re
import shutil
import sys

import onnx

MAX_BYTES = 1 << 20  # one fixture (model + data set 0) at most 1 MB, so the committed set stays small


def supported_ops(root):
    src = open(os.path.join(root, "compiler/src/onnx/ops/mod.rs"), encoding="utf-8").read()
    block = re.search(r"SUPPORTED_OPS: &\[&str\] = &\[(.*?)\];", src, re.S).group(1)
    return set(re.findall(r'"([A-Za-z0-9]+)"', block))


def ops_of(model_path):
    model = onnx.load(model_path)
    ops = set()
    for node in model.graph.node:
        domain = node.domain or "ai.onnx"
        ops.add(node.op_type if domain == "ai.onnx" else f"{domain}.{node.op_type}")
    return ops


# Element types with a Kiln dtype (float → f32, double → f64, bool, integers → i32); models using others (float16,
# bfloat16, strings, complex, 8-bit floats, 4-bit ints) are skipped as "no Kiln dtype" rather than committed.
KILN_TYPES = {
    onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.BOOL, onnx.TensorProto.INT8,
    onnx.TensorProto.UINT8, onnx.TensorProto.INT16, onnx.TensorProto.UINT16, onnx.TensorProto.INT32,
    onnx.TensorProto.INT64, onnx.TensorProto.UINT32, onnx.TensorProto.UINT64,
}


def foreign_types(model_path):
    """The element types of the model's graph values, initializers and Cast targets that Kiln lacks."""
    model = onnx.load(model_path)
    g = model.graph
    types = set()
    for v in list(g.input) + list(g.output):
        if v.type.HasField("tensor_type"):
            types.add(v.type.tensor_type.elem_type)
        else:
            types.add(-1)
    types.update(t.data_type for t in g.initializer)
    for node in g.node:
        for a in node.attribute:
            if a.name == "to" and node.op_type in ("Cast", "CastLike"):
                types.add(a.i)
            if a.type == onnx.AttributeProto.TENSOR:
                types.add(a.t.data_type)
    return sorted(
        "non-tensor" if t == -1 else onnx.TensorProto.DataType.Name(t) for t in types if t not in KILN_TYPES
    )


def size_of(test_dir):
    total = os.path.getsize(os.path.join(test_dir, "model.onnx"))
    data = os.path.join(test_dir, "test_data_set_0")
    for name in os.listdir(data):
        total += os.path.getsize(os.path.join(data, name))
    return total


def main():
    root = os.path.abspath(sys.argv[1])
    node_dir = os.path.join(os.path.dirname(onnx.__file__), "backend/test/data/node")
    out_dir = os.path.join(root, "tests/fixtures/onnx/node")
    supported = supported_ops(root)
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    skipped = []
    copied = 0
    for test in sorted(os.listdir(node_dir)):
        src = os.path.join(node_dir, test)
        if not os.path.isfile(os.path.join(src, "model.onnx")):
            continue
        try:
            ops = ops_of(os.path.join(src, "model.onnx"))
        except Exception as e:  # a model the Python package itself cannot load
            skipped.append((test, f"onnx cannot load it: {e}"))
            continue
        missing = sorted(ops - supported)
        if missing:
            skipped.append((test, "unsupported ops: " + " ".join(missing)))
            continue
        foreign = foreign_types(os.path.join(src, "model.onnx"))
        if foreign:
            skipped.append((test, "no Kiln dtype: " + " ".join(foreign)))
            continue
        size = size_of(src)
        if size > MAX_BYTES:
            skipped.append((test, f"larger than 1 MB ({size} bytes)"))
            continue
        dst = os.path.join(out_dir, test)
        os.makedirs(os.path.join(dst, "test_data_set_0"))
        shutil.copy(os.path.join(src, "model.onnx"), dst)
        data = os.path.join(src, "test_data_set_0")
        for name in sorted(os.listdir(data)):
            shutil.copy(os.path.join(data, name), os.path.join(dst, "test_data_set_0"))
        copied += 1
    with open(os.path.join(root, "tests/fixtures/onnx/skipped.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["test", "reason"])
        w.writerows(skipped)
    print(f"onnx {onnx.__version__}: copied {copied} node tests, skipped {len(skipped)} (skipped.csv)")


if __name__ == "__main__":
    main()
