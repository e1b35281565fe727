#!/usr/bin/env bash
# Runs the GPU backend's tests (compiler/tests/spirv_backend.rs) on this machine's Vulkan GPU and prints the device.
#
#   scripts/gpu-check.sh               builds the tests with cargo, then runs them
#   scripts/gpu-check.sh --bundle DIR  builds here and copies the test binary (and this machine's Vulkan loader) to
#                                      DIR, for a GPU machine without a Rust toolchain or a loader
#   scripts/gpu-check.sh DIR/spirv_backend   runs such a bundle (a libvulkan.so.1 beside it is used if the
#                                      system has none)
#
# Fails if no device is found or if the device used is a CPU implementation (lavapipe) rather than a GPU. NVIDIA's
# driver manifest is passed in VK_DRIVER_FILES when it lies outside the loader's search path.
set -euo pipefail
cd "$(dirname "$0")/.."

build() {
  cargo test --release -p kiln --test spirv_backend --no-run --message-format=json 2>/dev/null \
    | sed -n 's/.*"executable":"\([^"]*spirv_backend[^"]*\)".*/\1/p' | tail -1
}

if [ "${1:-}" = "--bundle" ]; then
  dir="${2:?--bundle needs a directory}"
  mkdir -p "$dir"
  cp "$(build)" "$dir/spirv_backend"
  lib=$(ldconfig -p | sed -n 's/.*libvulkan.so.1 .*=> //p' | head -1)
  [ -n "$lib" ] && cp -L "$lib" "$dir/"
  ls -l "$dir"
  exit 0
fi

if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]; then
  for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json; do
    if [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd"; break; fi
  done
fi
echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-<loader default>}"

bin="${1:-$(build)}"
[ -x "$bin" ] || { echo "no test binary ($bin)"; exit 1; }
if ! ldconfig -p | grep -q 'libvulkan.so.1 ' && [ -f "$(dirname "$bin")/libvulkan.so.1" ]; then
  export LD_LIBRARY_PATH="$(cd "$(dirname "$bin")" && pwd)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "using the bundled Vulkan loader"
fi

log=$(mktemp)
start=$(date +%s%N)
# The snapshot tests pin the code generator's text, not the device; they run with the rest of the workspace.
"$bin" --nocapture --test-threads 1 --skip snapshot_ 2>&1 | tee "$log"
echo "tests took $(( ($(date +%s%N) - start) / 1000000 )) ms"
device=$(sed -n 's/.*Vulkan device: //p' "$log" | head -1)
[ -n "$device" ] || { echo "FAIL: no Vulkan device was opened"; exit 1; }
case "$device" in
  *"(Cpu,"*) echo "FAIL: the device is a CPU implementation: $device"; exit 1 ;;
esac
echo "OK on: $device"
