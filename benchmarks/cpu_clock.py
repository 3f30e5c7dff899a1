"""One-thread speed by CPU clock: numba against onnxruntime, robust to a busy machine.

On one thread both engines run every kernel on the calling thread, so that thread's
CPU time (``time.thread_time``) is a call's work without the time other processes
took the core. On a shared 2-core machine wall medians swung 2-5 times with the load
while CPU medians stayed within a few percent (``runtime/profile.py``). Each side
runs alone in its own process, sides alternate within a round, and the report gives
the median over rounds of each side's median call, and onnxruntime's time over each
numba side's (above 1: numba faster).

    python benchmarks/cpu_clock.py MODEL.onnx [MODEL.onnx ...] --rounds 3 --runs 50
    python benchmarks/cpu_clock.py zoo/*.onnx --tree old=/path/to/old/checkout --tree new=.

``--tree NAME=PATH`` (repeatable) times the numba engine of each checkout (its
``runtime`` first on the path), to compare commits; without it, this checkout's.
Free dimensions are 1 (batch 1); the input is seeded random data. ``--lock FILE``
holds an exclusive lock on FILE around each timed process, so that timing jobs of
several people do not overlap. ``--json FILE`` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def child(backend: str, model: str, runs: int, warmup: int) -> float:
    """The median of ``runs`` calls' CPU time on one thread, in seconds."""
    import time

    import numpy as np

    import runtime

    so = runtime.SessionOptions()
    so.intra_op_num_threads = 1
    provider = "NumbaExecutionProvider" if backend == "numba" else "CPUExecutionProvider"
    sess = runtime.InferenceSession(model, sess_options=so, providers=[provider])
    feed = {}
    for i, info in enumerate(sess.get_inputs()):
        shape = [d if isinstance(d, int) else 1 for d in info.shape]
        rng = np.random.default_rng(i)
        feed[info.name] = rng.standard_normal(shape).astype(np.float32)
    for _ in range(warmup):
        sess.run(None, feed)
    times = []
    for _ in range(runs):
        t0 = time.thread_time()
        sess.run(None, feed)
        times.append(time.thread_time() - t0)
    return statistics.median(times)


def run_side(tree: Path, backend: str, model: str, args: argparse.Namespace) -> float:
    cmd = [sys.executable, __file__, "--child", backend, model]
    cmd += ["--runs", str(args.runs), "--warmup", str(args.warmup)]
    if args.lock:
        cmd = ["flock", args.lock, *cmd]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"{backend} on {model} ({tree}): {last}")
    return float(done.stdout.strip().splitlines()[-1])


def parse_trees(values: list[str] | None) -> dict[str, Path]:
    if not values:
        return {"numba": HERE}
    trees = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not Path(path, "runtime").is_dir():
            raise SystemExit(f"--tree {v!r}: expected NAME=PATH of a checkout with runtime/")
        trees[f"numba@{name}"] = Path(path).resolve()
    return trees


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="*", help="ONNX files")
    p.add_argument("--tree", action="append", help="NAME=PATH: a checkout's numba engine")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--timeout", type=float, default=1800.0, help="per process, seconds")
    p.add_argument("--lock", default=None, help="a file to flock around each timed process")
    p.add_argument("--json", default=None)
    p.add_argument("--child", nargs=2, metavar=("BACKEND", "MODEL"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(child(args.child[0], args.child[1], args.runs, args.warmup))
        return 0
    if not args.models:
        p.error("give at least one ONNX file")
    trees = parse_trees(args.tree)
    sides = [*trees, "onnxruntime"]
    results: dict[str, dict[str, float]] = {}
    for model in args.models:
        times: dict[str, list[float]] = {s: [] for s in sides}
        for _ in range(args.rounds):
            for side in sides:
                tree = trees.get(side, HERE)
                backend = "onnxruntime" if side == "onnxruntime" else "numba"
                times[side].append(run_side(tree, backend, model, args))
        med = {s: statistics.median(v) for s, v in times.items()}
        results[Path(model).stem] = med
        cells = [f"{s} {med[s] * 1e3:.3f} ms" for s in sides]
        ratios = [f"ort/{s} {med['onnxruntime'] / med[s]:.2f}" for s in trees]
        print(f"{Path(model).stem}: " + ", ".join(cells + ratios), flush=True)
    if args.json:
        target = Path(args.json)
        fd, tmp = tempfile.mkstemp(dir=target.parent or ".", prefix=target.name + ".")
        with os.fdopen(fd, "w") as f:
            json.dump({"clock": "thread_time, one thread", "median_s": results}, f, indent=1)
        os.replace(tmp, target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
