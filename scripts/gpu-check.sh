#!/usr/bin/env bash
# Runs the GPU backend's tests (compiler/tests/vulkan/spirv_backend.rs) on this machine's Vulkan GPU, prints the device,
# then benchmarks W1–W4 (benches/workloads/*.kir, kept equal to the criterion benches' graphs by
# benches/tests/workloads_kir.rs) with `kiln bench --backend vulkan`: per-dispatch device time from timestamp
# queries, GB/s or GFLOP/s per kernel, compile time and whole-run time. W4 is the whole SGD step of the MLP.
#
#   scripts/gpu-check.sh               builds the tests and the release `kiln` with cargo, then runs them
#   scripts/gpu-check.sh --bundle DIR  builds here and copies the test binary, the release `kiln`, the workload
#                                      files, this script (and this machine's Vulkan loader) to DIR, for a GPU
#                                      machine without a Rust toolchain or a loader
#   DIR/gpu-check.sh DIR/spirv_backend runs such a bundle (a libvulkan.so.1 beside it is used if the system has
#                                      none; the `kiln` and `workloads/` beside the test binary are used)
#
# Fails if no device is found or if the device used is a CPU implementation (lavapipe) rather than a GPU — unless
# KILN_GPU_CHECK_ALLOW_CPU=1 (to try the script itself on lavapipe). KILN_BENCH_ITERS sets the timed runs per
# workload (default 20). NVIDIA's driver manifest is passed in VK_DRIVER_FILES when it lies outside the loader's
# search path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

build_tests() {
  cargo test --release -p kiln --test main --no-run --message-format=json 2>/dev/null \
    | sed -n 's/.*"executable":"\([^"]*\/main-[^"]*\)".*/\1/p' | tail -1
}

build_kiln() {
  cargo build --release -p kiln --bin kiln >&2
  echo "$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/kiln"
}

if [ "${1:-}" = "--bundle" ]; then
  dir="${2:?--bundle needs a directory}"
  cd "$here/.."
  mkdir -p "$dir/workloads"
  cp "$(build_tests)" "$dir/spirv_backend"
  cp "$(build_kiln)" "$dir/kiln"
  cp benches/workloads/*.kir "$dir/workloads/"
  cp "$here/gpu-check.sh" "$dir/"
  lib=$(ldconfig -p | sed -n 's/.*libvulkan.so.1 .*=> //p' | head -1)
  [ -n "$lib" ] && cp -L "$lib" "$dir/"
  ls -l "$dir" "$dir/workloads"
  exit 0
fi

if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]; then
  for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json; do
    if [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd"; break; fi
  done
fi
echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-<loader default>}"

if [ -n "${1:-}" ]; then
  bin="$1"
  bindir="$(cd "$(dirname "$bin")" && pwd)"
  kiln="$bindir/kiln"
  workloads="$bindir/workloads"
else
  cd "$here/.."
  bin="$(build_tests)"
  kiln="$(build_kiln)"
  workloads="$here/../benches/workloads"
  bindir="$(cd "$(dirname "$bin")" && pwd)"
fi
[ -x "$bin" ] || { echo "no test binary ($bin)"; exit 1; }
[ -x "$kiln" ] || { echo "no kiln binary ($kiln)"; exit 1; }
if ! ldconfig -p | grep -q 'libvulkan.so.1 ' && [ -f "$bindir/libvulkan.so.1" ]; then
  export LD_LIBRARY_PATH="$bindir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "using the bundled Vulkan loader"
fi

"$kiln" devices
log=$(mktemp)
start=$(date +%s%N)
# The crate's one test binary, its `vulkan::spirv_backend` module only. The snapshot tests pin the code generator's
# text, not the device; they run with the rest of the workspace.
"$bin" vulkan::spirv_backend:: --nocapture --test-threads 1 --skip snapshot_ 2>&1 | tee "$log"
echo "tests took $(( ($(date +%s%N) - start) / 1000000 )) ms"
device=$(sed -n 's/.*Vulkan device: //p' "$log" | head -1)
[ -n "$device" ] || { echo "FAIL: no Vulkan device was opened"; exit 1; }
cpu=0
case "$device" in
  *"(Cpu,"*) cpu=1 ;;
esac
if [ "$cpu" = 1 ] && [ "${KILN_GPU_CHECK_ALLOW_CPU:-0}" != 1 ]; then
  echo "FAIL: the device is a CPU implementation: $device"
  exit 1
fi

iters="${KILN_BENCH_ITERS:-20}"
for w in w1 w2 w3_1024x1024x1024 w3_256x784x256 w4; do
  file="$workloads/$w.kir"
  [ -f "$file" ] || { echo "FAIL: no workload file $file"; exit 1; }
  echo
  echo "== $w: kiln bench --backend vulkan --iters $iters"
  "$kiln" bench "$file" --backend vulkan --iters "$iters" --warmup 3
done
echo
if [ "$cpu" = 1 ]; then
  echo "OK (on a CPU implementation, as KILN_GPU_CHECK_ALLOW_CPU=1 allows): $device"
else
  echo "OK on: $device"
fi
