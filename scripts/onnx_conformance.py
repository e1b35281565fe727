"""Prints README's ONNX conformance tables (Markdown) from the Rust side's outcome files:

- tests/fixtures/onnx/summary.csv: each committed node test (the supported ops'), passed per backend or failed
  with its reason;
- tests/fixtures/onnx/all_node_tests.csv: every single-op node test of the pinned onnx package, classified.

The op of a test is the op its failure names, else (for an `_expanded` test) the op of the test it expands, else
its model's first node that is not a Constant (the node tests build one op, sometimes after Constant inputs). Needs the pinned `onnx` package (scripts/onnx-fixtures.sh makes .venv-onnx).

Usage: .venv-onnx/bin/python scripts/onnx_conformance.py [ROOT]
"""

import collections
import csv
import os
import sys

import onnx


def read_outcomes(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def op_of(model_path):
    # Only the graph's structure is needed: skip loading external data.
    model = onnx.load(model_path, load_external_data=False)
    for node in model.graph.node:
        if node.op_type != "Constant":
            return node.op_type
    return "Constant"


def op_of_test(row, test_dir):
    """The op a node test is for: the one its failure names; for an `_expanded` test (the op's function body
    spelled out in other ops), the op of the test it expands; else its model's first op."""
    detail = row["detail"]
    if " (domain " in detail:
        return detail.split(" (domain ", 1)[0].rsplit(" ", 1)[-1]
    name = row["test"]
    if "_expanded" in name:
        base = os.path.join(test_dir, name.split("_expanded", 1)[0], "model.onnx")
        if os.path.exists(base):
            return op_of(base)
    return op_of(os.path.join(test_dir, name, "model.onnx"))


def reason_class(row):
    """The reason class of a test that does not pass: missing op, dtype, sequence/optional, or an unsupported form
    (an attribute value or an input bound at run time where Kiln needs it at import)."""
    outcome, detail = row["outcome"], row["detail"]
    if outcome == "unsupported":
        return "form" if ": " in detail.split("is not supported by the importer", 1)[-1] else "op"
    if "has no Kiln dtype" in detail:
        return "dtype"
    if "is not a tensor" in detail:
        return "sequence/optional"
    if "must be known at import" in detail or "static" in detail:
        return "dynamic shape"
    return "other"


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    fixtures = os.path.join(root, "tests/fixtures/onnx")
    node_dir = os.path.join(os.path.dirname(onnx.__file__), "backend/test/data/node")

    committed = read_outcomes(os.path.join(fixtures, "summary.csv"))
    per_op = collections.OrderedDict()
    for row in committed:
        op = op_of_test(row, os.path.join(fixtures, "node"))
        entry = per_op.setdefault(op, {"tests": 0, "pass": 0, "bound": 0, "fail": []})
        entry["tests"] += 1
        if row["outcome"].startswith("pass (interpreter, cpu, vulkan)"):
            entry["pass"] += 1
            # ONNX's tests feed a Reshape's shape, a Slice's starts or a scalar as run-time inputs; Kiln's shapes
            # are static, so the runner binds those inputs as constants at import (ImportOptions::input_values).
            entry["bound"] += "bound at import" in row["outcome"]
        else:
            entry["fail"].append(row["detail"].split("importer: ", 1)[-1])

    print("| op | node tests | pass on interp / cpu / vulkan | of them with static operands (shapes, axes, scales) fed as inputs, bound at import | not passing (why) |")
    print("|---|---|---|---|---|")
    for op in sorted(per_op):
        e = per_op[op]
        why = "; ".join(sorted(set(e["fail"])))
        fails = f"{len(e['fail'])}: {why}" if e["fail"] else ""
        bound = e["bound"] or ""
        print(f"| {op} | {e['tests']} | {e['pass']} / {e['pass']} / {e['pass']} | {bound} | {fails} |")

    every = read_outcomes(os.path.join(fixtures, "all_node_tests.csv"))
    classes = collections.Counter()
    missing_ops = collections.Counter()
    for row in every:
        if row["outcome"].startswith("pass"):
            classes["pass"] += 1
            continue
        cls = reason_class(row)
        classes[cls] += 1
        if cls == "op":
            missing_ops[op_of_test(row, node_dir)] += 1
    print()
    print(f"All {len(every)} single-op node tests of onnx {onnx.__version__}:")
    print()
    print("| outcome | tests |")
    print("|---|---|")
    names = {
        "pass": "pass on interp, cpu and vulkan",
        "op": "not supported: op missing",
        "form": "not supported: an attribute value or form of a supported op",
        "dtype": "not supported: element type without a Kiln dtype (float16, 8-bit floats, strings, 4-bit ints, ...)",
        "sequence/optional": "not supported: sequence or optional values",
        "dynamic shape": "not supported: a shape or operand known only at run time",
        "other": "other import error",
    }
    for key in ["pass", "op", "form", "dtype", "sequence/optional", "dynamic shape", "other"]:
        if classes[key]:
            print(f"| {names[key]} | {classes[key]} |")
    print()
    top = ", ".join(f"{op} ({n})" for op, n in missing_ops.most_common())
    print(f"Missing ops, by node tests: {top}")


if __name__ == "__main__":
    main()
