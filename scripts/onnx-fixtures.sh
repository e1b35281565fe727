#!/usr/bin/env bash
# Regenerates tests/fixtures/onnx/: ONNX's backend node tests for the ops the importer supports, from a pinned
# `onnx` package in a venv (.venv-onnx, git-ignored), then the Rust side's classification of every copied test
# (tests/fixtures/onnx/summary.csv: pass per backend, or the expected failure and its reason). Then the whole-model
# fixtures, tests/fixtures/onnx/models/ (scripts/onnx_models.py), with outputs computed by the pinned onnxruntime.
#
# Usage: scripts/onnx-fixtures.sh        (from anywhere; needs python3 with venv, and cargo)
set -euo pipefail
ONNX_VERSION=1.17.0
NUMPY_VERSION=2.4.6
# onnxruntime 1.32.0 (built against numpy 2; it does not depend on onnx) installs beside onnx 1.17.0 and numpy 2.4.6
# on CPython 3.11 without moving either (`pip check` is clean).
ONNXRUNTIME_VERSION=1.32.0
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv-onnx"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet "onnx==$ONNX_VERSION" "numpy==$NUMPY_VERSION" "onnxruntime==$ONNXRUNTIME_VERSION"
"$venv/bin/python" "$root/scripts/onnx_fixtures.py" "$root"
"$venv/bin/python" "$root/scripts/onnx_models.py" "$root"
# The conformance test writes each test's outcome when asked to: first on the committed fixtures (where it also
# checks its expected-failure list), then on every node test of the package (only classified, nothing asserted).
cd "$root"
KILN_ONNX_SUMMARY="$root/tests/fixtures/onnx/summary.csv" \
    cargo test -j1 -p kiln-tests --test main onnx::node_tests -- --nocapture
node_dir="$("$venv/bin/python" -c 'import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), "backend/test/data/node"))')"
KILN_ONNX_NODE_DIR="$node_dir" KILN_ONNX_SUMMARY="$root/tests/fixtures/onnx/all_node_tests.csv" \
    cargo test -j1 -p kiln-tests --test main onnx::node_tests -- --nocapture
echo "wrote tests/fixtures/onnx/summary.csv (committed fixtures) and all_node_tests.csv (every node test of onnx $ONNX_VERSION)"
echo "wrote tests/fixtures/onnx/models/ (whole models, onnxruntime $ONNXRUNTIME_VERSION outputs)"
