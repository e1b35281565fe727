#!/usr/bin/env python3
"""The same-run table: the peers, then Kiln's benches, then the peers again, and one table of ratios and targets.

    python3 scripts/bench_table.py                   # W1-W10: about 15 minutes on 2 cores (peers --quick twice)
    python3 scripts/bench_table.py --only w1,w2,w9   # a subset
    python3 scripts/bench_table.py --full-peers      # the peers' full three-pass runs instead of --quick

Hosts differ (AVX-512 or only AVX2, memory bandwidth), so every Kiln figure is compared with the peers measured on
the same machine in the same run, before and after Kiln's benches; a ratio is given as the range over the two peer
runs, and a target counts as met only if it holds against both. The table names the host's CPU flags and the date.

The peers come from ../shared/peers (bench_peers.py; its venv is made by its setup.sh on first use, a few minutes).
Kiln's figures come from `cargo bench -p kiln-benches` (benches workloads, convnets, transformer), which append them
to the file named by KILN_BENCH_RECORD (benches/src/record.rs) as JSON lines. The script writes the peers' JSON, the
records and the table (markdown) under --out (default target/bench-table/).
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALL = ["w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8", "w9", "w10"]
# Which of Kiln's benches measures each workload.
BENCH_OF = {
    "w1": "workloads", "w2": "workloads", "w3": "workloads", "w4": "workloads", "w5": "workloads",
    "w6": "convnets", "w7": "convnets",
    "w8": "transformer", "w9": "transformer", "w10": "transformer",
}


def run(cmd, env=None):
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)


def peers_python(peers_dir, venv):
    python = Path(venv) / "bin" / "python"
    if not python.exists():
        print(f"no peers venv at {venv}: running {peers_dir}/setup.sh (a few minutes, once per machine)", flush=True)
        run(["sh", str(Path(peers_dir) / "setup.sh"), str(venv)])
    return python


def run_peers(python, peers_dir, only, full, out):
    cmd = [str(python), str(Path(peers_dir) / "bench_peers.py"), "--out", str(out), "--only", ",".join(only)]
    if not full:
        cmd += ["--quick"]
    run(cmd)
    with open(out) as f:
        return json.load(f)


def peer_ms(results, workload, system):
    """The peer's median time in ms, or None where it did not run."""
    for row in results.get("rows", []):
        if row.get("workload") == workload and row.get("system") == system and row.get("status") == "ok":
            if "median_ms" in row:
                return row["median_ms"]
            if "median_us" in row:
                return row["median_us"] / 1e3
    return None


def peer_gflops(results, workload, system):
    for row in results.get("rows", []):
        if row.get("workload") == workload and row.get("system") == system and row.get("status") == "ok":
            return row.get("GFLOPs")
    return None


def read_records(path):
    records = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                records[r["key"]] = r["value"]
    return records


def host():
    flags = set()
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    simd = [f for f in ["avx", "avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni",
                        "avx512_bf16", "neon", "asimd"] if f in flags]
    cls = "AVX-512" if "avx512f" in flags else "AVX2+FMA" if {"avx2", "fma"} <= flags else "other"
    return f"{model}, {os.cpu_count()} CPUs, class {cls} (flags: {' '.join(simd) or 'none of the SIMD ones'})"


class Table:
    def __init__(self, before, after, records):
        self.before, self.after, self.records = before, after, records
        self.lines = []

    def kiln(self, key):
        return self.records.get(key)

    def time_row(self, label, kiln_key, workload, system, target, unit="ms"):
        """A time ratio kiln / peer; met when <= target against both peer runs."""
        k = self.kiln(kiln_key)
        p = [peer_ms(r, workload, system) for r in (self.before, self.after)]
        self.row(label, k, p, system, lambda k, p: k / p, f"<= {target}x {system}'s time",
                 lambda r: r <= target, unit)

    def rate_row(self, label, kiln_key, workload, system, target, what="steps/s"):
        """A rate ratio (peer time / kiln time); met when >= target against both peer runs."""
        k = self.kiln(kiln_key)
        p = [peer_ms(r, workload, system) for r in (self.before, self.after)]
        self.row(label, k, p, system, lambda k, p: p / k, f">= {target}x {system}'s {what}",
                 lambda r: r >= target, "ms")

    def gflops_row(self, label, kiln_key, workload, system, target):
        k = self.kiln(kiln_key)
        p = [peer_gflops(r, workload, system) for r in (self.before, self.after)]
        self.row(label, k, p, system, lambda k, p: k / p, f">= {target}x {system}'s GFLOP/s",
                 lambda r: r >= target, "GFLOP/s")

    def row(self, label, k, peers, system, ratio, target_text, met, unit):
        if k is None:
            self.lines.append(f"| {label} | not measured | | | {target_text} | — |")
            return
        shown = " / ".join("—" if p is None else f"{p:.3g}" for p in peers)
        ratios = [ratio(k, p) for p in peers if p]
        if not ratios:
            self.lines.append(f"| {label} | {k:.3g} {unit} | {system}: {shown} | no peer figure | {target_text} | — |")
            return
        lo, hi = min(ratios), max(ratios)
        ok = all(met(r) for r in ratios)
        spread = f"{lo:.2f}x" if abs(hi - lo) < 0.005 else f"{lo:.2f}–{hi:.2f}x"
        self.lines.append(f"| {label} | {k:.3g} {unit} | {system}: {shown} {unit} | {spread} | {target_text} | "
                          f"{'yes' if ok else '**no**'} |")

    def own_row(self, label, value, unit, target_text, ok):
        if value is None:
            self.lines.append(f"| {label} | not measured | | | {target_text} | — |")
            return
        self.lines.append(f"| {label} | {value:.3g} {unit} | (Kiln alone) | | {target_text} | "
                          f"{'yes' if ok(value) else '**no**'} |")


def build_table(only, before, after, records):
    t = Table(before, after, records)
    k = records.get
    if "w1" in only:
        t.time_row("W1 fused chain 16M", "W1.fused_ms", "W1 elementwise", "JAX jit", 0.5)
        if k("W1.fused_ms") and k("W1.unfused_ms"):
            t.own_row("W1 unfused / fused", k("W1.unfused_ms") / k("W1.fused_ms"), "x", ">= 4x", lambda v: v >= 4)
    if "w2" in only:
        t.time_row("W2 row softmax [4096, 1024]", "W2.ms", "W2 softmax", "onnxruntime", 1.0)
    if "w3" in only:
        for size in ["1024x1024x1024", "256x784x256"]:
            t.gflops_row(f"W3 {size}", f"W3.{size}.gflops", f"W3 gemm {size}", "numpy (OpenBLAS)", 0.9)
    if "w4" in only:
        t.rate_row("W4 MLP SGD step", "W4.step_ms", "W4 train step", "JAX jit(value_and_grad)", 1.5)
        t.own_row("W4 compile", k("W4.compile_ms"), "ms", "< 20 ms", lambda v: v < 20)
    if "w5" in only:
        t.time_row("W5 batch 1", "W5.b1_ms", "W5 infer b=1", "onnxruntime", 0.8)
        t.time_row("W5 batch 1024", "W5.b1024_ms", "W5 infer b=1024", "onnxruntime", 1.0)
    if "w6" in only:
        t.time_row("W6 conv 3x3 + bias + ReLU", "W6.ms", "W6 conv3x3 fwd", "onnxruntime", 1.0)
    if "w7" in only:
        t.rate_row("W7 CNN SGD step", "W7.step_ms", "W7 CNN train step", "JAX jit(value_and_grad)", 4.0)
        t.own_row("W7 compile", k("W7.compile_ms"), "ms", "< 30 ms", lambda v: v < 30)
    if "w8" in only:
        t.time_row("W8 layer norm [4096, 1024]", "W8.ms", "W8 layernorm", "onnxruntime", 0.8)
    if "w9" in only:
        t.time_row("W9 exact GELU 16M", "W9.ms", "W9 gelu (erf)", "onnxruntime", 0.5)
        if k("W9.ms") and k("W9.memcpy_ms"):
            t.own_row("W9 / memcpy (one thread)", k("W9.ms") / k("W9.memcpy_ms"), "x", "<= 1.5x memcpy",
                      lambda v: v <= 1.5)
    if "w10" in only:
        t.rate_row("W10 transformer block AdamW step", "W10.step_ms", "W10 transformer step",
                   "JAX jit(value_and_grad)+AdamW", 1.5)
        t.own_row("W10 compile", k("W10.compile_ms"), "ms", "< 50 ms", lambda v: v < 50)
    head = ["| workload | Kiln | peer (before / after) | ratio | target | met? |", "|---|---|---|---|---|---|"]
    return "\n".join(head + t.lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(ALL), help="workloads, e.g. w1,w2,w9 (default: all)")
    ap.add_argument("--peers", default=str(ROOT.parent / "shared" / "peers"), help="bench_peers.py's directory")
    ap.add_argument("--venv", default="/tmp/kiln-peers", help="the peers' venv (made by setup.sh if missing)")
    ap.add_argument("--full-peers", action="store_true", help="the peers' full runs, not --quick")
    ap.add_argument("--out", default=str(ROOT / "target" / "bench-table"), help="where the results go")
    ap.add_argument("--skip-peers", action="store_true", help="Kiln's benches only (no ratios)")
    args = ap.parse_args()
    only = [w.strip().lower() for w in args.only.split(",") if w.strip()]
    unknown = [w for w in only if w not in ALL]
    if unknown:
        sys.exit(f"unknown workloads {unknown}; choose from {','.join(ALL)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    benches = []
    for w in only:
        if BENCH_OF[w] not in benches:
            benches.append(BENCH_OF[w])
    cmd = ["cargo", "bench", "-p", "kiln-benches"]
    for b in benches:
        cmd += ["--bench", b]
    # Build first, so that no compilation runs between the two peer runs (it would heat and load the machine).
    run(cmd + ["--no-run"])
    started = datetime.datetime.now(datetime.timezone.utc)

    if not args.skip_peers:
        if not (Path(args.peers) / "bench_peers.py").exists():
            sys.exit(f"no bench_peers.py in {args.peers} (pass --peers DIR, or --skip-peers)")
        python = peers_python(args.peers, args.venv)
        before = run_peers(python, args.peers, only, args.full_peers, out / "peers-before.json")
    else:
        before = {}

    records = out / "kiln.jsonl"
    records.unlink(missing_ok=True)
    env = dict(os.environ, KILN_BENCH_RECORD=str(records))
    run(cmd, env=env)

    after = {} if args.skip_peers else run_peers(python, args.peers, only, args.full_peers, out / "peers-after.json")
    finished = datetime.datetime.now(datetime.timezone.utc)
    table = build_table(only, before, after, read_records(records))
    title = (f"Same run, {started:%Y-%m-%d %H:%M}–{finished:%H:%M} UTC on {host()}; "
             f"load average at the end {os.getloadavg()[0]:.1f}")
    text = f"{title}\n\n{table}\n"
    (out / "table.md").write_text(text)
    print("\n" + text)
    print(f"wrote {out / 'table.md'}")


if __name__ == "__main__":
    main()
