"""Times the whole-model ONNX fixtures on Kiln's CPU backend beside onnxruntime, on the same `.onnx` files.

For each model of tests/fixtures/onnx/models/, batch size and thread count: `kiln bench MODEL --shape N=<b>
--backend cpu --threads <t>` (its last line: the median of whole runs through a `kiln::Session`, inputs generated
by kiln from its seed), then onnxruntime on the same file: CPU execution provider, default graph optimizations
(ORT_ENABLE_ALL), intra-op threads = t, inter-op 1, a standard-normal numpy input of the same shape, the median
of per-run times after a warm-up, measured two ways: `session.run` with numpy in and out (a new output array
each run), and `run_with_iobinding` with the input and output bound once (outputs kept in place, as Kiln's session
keeps them). The ratio is Kiln's median over the faster of the two, so "met" is the strict reading of ≤ 1.0×.

Each configuration is measured `--passes` times, Kiln then onnxruntime, and the medians of the passes are
reported (this VM's numbers move between runs; read ratios within one run).

Usage: scripts/onnx-bench.sh [--threads 2,1] [--batches 1,64] [--passes 3] [--models mlp,lenet,...]
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))
from onnx_models import MODELS, input_shape  # noqa: E402  (the fixture script defines the models' inputs)

# Enough timed runs for a stable median at a few µs a run, capped by wall time for the slow configurations.
MIN_RUNS, MAX_RUNS, BUDGET_S, WARMUP = 50, 2000, 1.0, 20


def kiln_median_us(kiln, model_path, batch, threads, iters):
    out = subprocess.run(
        [kiln, "bench", model_path, "--shape", f"N={batch}", "--backend", "cpu", "--threads", str(threads),
         "--iters", str(iters), "--warmup", str(WARMUP)],
        check=True, capture_output=True, text=True,
    ).stdout
    m = re.search(r"^total: ([0-9.]+) µs per run", out, re.M)
    if not m:
        sys.exit(f"no total in kiln bench's output:\n{out}")
    return float(m.group(1)), out


def timed_median_us(run):
    for _ in range(WARMUP):
        run()
    times = []
    start = time.perf_counter()
    while len(times) < MAX_RUNS and (len(times) < MIN_RUNS or time.perf_counter() - start < BUDGET_S):
        t0 = time.perf_counter_ns()
        run()
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1e3, len(times)


def ort_medians_us(model_path, batch, threads):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(batch).standard_normal(input_shape(onnx.load(model_path), batch)).astype(np.float32)
    plain, n = timed_median_us(lambda: sess.run(None, {"input": x}))
    binding = sess.io_binding()
    binding.bind_cpu_input("input", x)
    out_shape = sess.run(None, {"input": x})[0].shape
    y = ort.OrtValue.ortvalue_from_shape_and_type(out_shape, np.float32, "cpu", 0)
    binding.bind_ortvalue_output("output", y)
    bound, _ = timed_median_us(lambda: sess.run_with_iobinding(binding))
    return plain, bound, n


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kiln", default=os.path.join(ROOT, "target/release/kiln"))
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--batches", default="1,64")
    p.add_argument("--threads", default="2,1")
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--verbose", action="store_true", help="print kiln bench's per-kernel output")
    args = p.parse_args()

    rows = []
    for threads in map(int, args.threads.split(",")):
        for name in args.models.split(","):
            path = os.path.join(ROOT, "tests/fixtures/onnx/models", name, "model.onnx")
            for batch in map(int, args.batches.split(",")):
                kiln_runs, plain_runs, bound_runs = [], [], []
                for _ in range(args.passes):
                    plain, bound, n = ort_medians_us(path, batch, threads)
                    # As many Kiln runs as onnxruntime managed in its budget, so both medians cover similar spans.
                    k, out = kiln_median_us(args.kiln, path, batch, threads, n)
                    kiln_runs.append(k)
                    plain_runs.append(plain)
                    bound_runs.append(bound)
                if args.verbose:
                    print(out)
                k, plain, bound = (statistics.median(r) for r in (kiln_runs, plain_runs, bound_runs))
                ratio = k / min(plain, bound)
                rows.append((name, batch, threads, k, plain, bound, ratio))
                print(f"{name} b={batch} t={threads}: kiln {k:.1f} µs, ort {plain:.1f} / {bound:.1f} µs "
                      f"(passes: kiln {['%.1f' % v for v in kiln_runs]}, ort {['%.1f' % v for v in plain_runs]})",
                      file=sys.stderr)

    print("| model | batch | threads | Kiln median | onnxruntime `run` | onnxruntime I/O binding | ratio | ≤ 1.0× |")
    print("|---|---|---|---|---|---|---|---|")
    for name, batch, threads, k, plain, bound, ratio in rows:
        print(f"| {name} | {batch} | {threads} | {k:.1f} µs | {plain:.1f} µs | {bound:.1f} µs | {ratio:.2f}× | "
              f"{'yes' if ratio <= 1.0 else '**no**'} |")


if __name__ == "__main__":
    main()
