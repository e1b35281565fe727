#!/usr/bin/env python3
"""Checks a model written by `kiln export` / `kiln train --onnx` with ONNX's own tools.

1. `onnx.checker.check_model(model, full_check=True)` (structure, opset, types and shape inference);
2. runs it in onnxruntime on the given inputs and compares every output with Kiln's (`kiln run ... --out DIR`
   writes DIR/<output>.npy), printing the max absolute and relative differences; an output passes when every
   |onnxruntime - Kiln| <= atol + rtol * max |Kiln| over that output (summation order differs between the two).

Usage:
    # inputs for every graph input (floats ~ N(0, 1), integers uniform in [0, --int-high)), as DIR/<name>.npy:
    onnx_check_export.py MODEL.onnx --make-inputs DIR [--seed 0] [--int-high 10]
    # then: kiln run MODEL.onnx --input NAME=DIR/NAME.npy ... --out KILN_DIR
    onnx_check_export.py MODEL.onnx --inputs DIR --expected KILN_DIR [--rtol 1e-4] [--atol 1e-5]

Needs numpy, onnx and onnxruntime (e.g. the venv at /tmp/kiln-peers). Exits 1 when a check fails.
"""

import argparse
import pathlib
import sys

import numpy as np
import onnx
import onnxruntime as ort

NUMPY_OF_ONNX = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.BOOL: np.bool_,
}


def graph_inputs(model):
    """(name, numpy dtype, dims) of each graph input that is not an initializer."""
    initializers = {t.name for t in model.graph.initializer}
    out = []
    for vi in model.graph.input:
        if vi.name in initializers:
            continue
        t = vi.type.tensor_type
        dims = [d.dim_value for d in t.shape.dim]
        out.append((vi.name, NUMPY_OF_ONNX[t.elem_type], dims))
    return out


def make_inputs(model, directory, seed, int_high):
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    args = []
    for name, dtype, dims in graph_inputs(model):
        if dtype in (np.float32, np.float64):
            value = rng.standard_normal(dims).astype(dtype)
        elif dtype == np.int32:
            value = rng.integers(0, int_high, size=dims).astype(np.int32)
        else:
            value = rng.integers(0, 2, size=dims).astype(np.bool_)
        path = directory / f"{name}.npy"
        np.save(path, value)
        args.append(f"--input {name}={path}")
    print(" ".join(args))


def compare(model_path, model, inputs_dir, expected_dir, rtol, atol):
    feeds = {name: np.load(inputs_dir / f"{name}.npy") for name, _, _ in graph_inputs(model)}
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    results = session.run(names, feeds)
    ok = True
    for name, got in zip(names, results):
        want = np.load(expected_dir / f"{name}.npy")
        if got.shape != want.shape or got.dtype != want.dtype:
            print(f"{name}: onnxruntime gives {got.dtype}{list(got.shape)}, Kiln {want.dtype}{list(want.shape)}")
            ok = False
            continue
        if got.dtype == np.bool_ or np.issubdtype(got.dtype, np.integer):
            mismatches = int(np.sum(got != want))
            print(f"{name}: {mismatches} of {got.size} elements differ")
            ok &= mismatches == 0
            continue
        g, w = got.astype(np.float64), want.astype(np.float64)
        same_nan = np.isnan(g) == np.isnan(w)
        diff = np.where(np.isnan(w), 0.0, np.abs(g - w))
        rel = diff / np.maximum(np.abs(w), np.finfo(got.dtype).tiny)
        # Relative to the output's largest magnitude, not each element's: onnxruntime sums matmuls in another order
        # than Kiln, and a float32 sum's rounding error scales with the sum of |terms|, not with its (cancelled) value.
        scale = np.abs(np.nan_to_num(w)).max(initial=0.0)
        close = bool(np.all(same_nan) and np.all(diff <= atol + rtol * scale))
        print(
            f"{name}: {got.dtype}{list(got.shape)} max abs diff {diff.max(initial=0.0):.3e}, "
            f"max rel diff {rel.max(initial=0.0):.3e} (|w| > 1e-3: "
            f"{np.where(np.abs(w) > 1e-3, rel, 0.0).max(initial=0.0):.3e}), max abs diff / max |kiln| "
            f"{diff.max(initial=0.0) / max(np.abs(np.nan_to_num(w)).max(initial=0.0), 1e-30):.3e} "
            f"-> {'ok' if close else 'FAIL'}"
        )
        ok &= close
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=pathlib.Path)
    parser.add_argument("--make-inputs", type=pathlib.Path, metavar="DIR")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--int-high", type=int, default=10)
    parser.add_argument("--inputs", type=pathlib.Path, metavar="DIR")
    parser.add_argument("--expected", type=pathlib.Path, metavar="DIR")
    parser.add_argument("--rtol", type=float, default=1e-4)
    parser.add_argument("--atol", type=float, default=1e-5)
    args = parser.parse_args()

    model = onnx.load(str(args.model))
    onnx.checker.check_model(model, full_check=True)
    print(f"{args.model}: onnx.checker (full_check) ok; opset {model.opset_import[0].version}, "
          f"ir_version {model.ir_version}, {len(model.graph.node)} nodes")
    if args.make_inputs:
        make_inputs(model, args.make_inputs, args.seed, args.int_high)
        return 0
    if not (args.inputs and args.expected):
        parser.error("give --make-inputs DIR, or --inputs DIR and --expected DIR")
    return 0 if compare(args.model, model, args.inputs, args.expected, args.rtol, args.atol) else 1


if __name__ == "__main__":
    sys.exit(main())
