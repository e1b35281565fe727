#!/usr/bin/env bash
# Runs the GPU backend's tests (compiler/tests/spirv_backend.rs) on this machine's Vulkan GPU and prints the device.
#
#   scripts/gpu-check.sh              builds the tests with cargo, then runs them
#   scripts/gpu-check.sh BINARY       runs a test binary built elsewhere (`cargo test -p kiln --test spirv_backend
#                                     --no-run` prints its path), for a GPU machine without a Rust toolchain
#
# Fails if no device is found or if the device used is a CPU implementation (lavapipe) rather than a GPU. NVIDIA's
# driver is often installed outside the loader's search path; its manifest is then passed in VK_DRIVER_FILES.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]; then
  for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
             /etc/vulkan/icd.d/nvidia_icd.json; do
    if [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd"; break; fi
  done
fi
echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-<loader default>}"

bin="${1:-}"
if [ -z "$bin" ]; then
  bin=$(cargo test --release -p kiln --test spirv_backend --no-run --message-format=json 2>/dev/null \
    | sed -n 's/.*"executable":"\([^"]*spirv_backend[^"]*\)".*/\1/p' | tail -1)
fi
[ -x "$bin" ] || { echo "no test binary ($bin)"; exit 1; }

log=$(mktemp)
start=$(date +%s%N)
# The snapshot tests pin the code generator's text, not the device; they run with the rest of the workspace.
"$bin" --nocapture --test-threads 1 --skip snapshot_ 2>&1 | tee "$log"
echo "tests took $(( ($(date +%s%N) - start) / 1000000 )) ms"
device=$(sed -n 's/^Vulkan device: //p' "$log" | head -1)
[ -n "$device" ] || { echo "FAIL: no Vulkan device was opened"; exit 1; }
case "$device" in
  *"(Cpu,"*) echo "FAIL: the device is a CPU implementation: $device"; exit 1 ;;
esac
echo "OK on: $device"
