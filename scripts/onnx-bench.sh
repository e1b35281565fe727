#!/usr/bin/env bash
# Times the whole-model ONNX fixtures (tests/fixtures/onnx/models/) on Kiln's CPU backend beside onnxruntime on the
# same files, at batch 1 and 64, and prints a Markdown table (scripts/onnx_bench.py says how each side is timed).
# Uses the venv of scripts/onnx-fixtures.sh (.venv-onnx, with its pinned onnx, numpy and onnxruntime; run that
# script first) and a release build of the `kiln` binary.
#
# Usage: scripts/onnx-bench.sh [--threads 2,1] [--batches 1,64] [--passes 3] [--models mlp,lenet] [--verbose]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="$root/.venv-onnx/bin/python"
if ! "$python" -c 'import onnxruntime' 2>/dev/null; then
    echo "no onnxruntime in $root/.venv-onnx: run scripts/onnx-fixtures.sh first" >&2
    exit 1
fi
(cd "$root" && cargo build --release -p kiln --bin kiln)
exec "$python" "$root/scripts/onnx_bench.py" "$@"
