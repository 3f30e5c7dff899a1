"""Cold start: the time to a first result in a fresh process (issue 27).

    python benchmarks/cold_start.py [--models lenet5,resnet50,mobilenet_v3_small]
        [--repeats 3] [--json cold_start.json] [--warmup [--warmup-repeats 1]]
        [--lock /path/to/timing.lock]

Each measurement is one fresh Python process that imports ``runtime``, creates an
``InferenceSession`` and runs it once on a zero input of batch 1, timing each phase
with ``time.perf_counter`` (the process's own start-up, about 20 ms, is not in the
total; ``cpu`` is the process's CPU time, start-up included, which other processes on
a shared machine disturb less than the wall clock). For the numba backend a process
runs first with an empty JIT cache (a new temporary ``NUMBA_CACHE_DIR``: by default
numba caches beside the sources, in ``__pycache__``, which earlier runs have filled)
and then again with the cache it filled; onnxruntime runs beside it. Each is repeated
``--repeats`` times, every empty-cache run with its own new folder, and the table
shows medians. ``import numba`` alone is timed the same way, and the child counts what
numba compiled (signatures of ``runtime.kernels``' dispatchers) and what it loaded
from the cache.

``--warmup`` also times ``cnn warmup`` from an empty cache, and each model's first
result after it.

Models: LeNet-5 (``exported/lenet5.onnx``), ResNet-50 (ONNX's light model, the
torchvision architecture, with random weights: ``cnn/zoo.py``) and MobileNetV3-Small
(``training/zoo.py``, exported once with torch into ``~/.cache/cnn/cold_start``).
Timings are noisy on a shared machine: say so when quoting them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("lenet5", "resnet50", "mobilenet_v3_small")

# Runs in the child: phases timed in-process, then numba's compile and cache counts.
CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import runtime
t1 = time.perf_counter()
sess = runtime.InferenceSession(sys.argv[1], backend=sys.argv[2])
t2 = time.perf_counter()
import numpy as np
feeds = {}
for i in sess.get_inputs():
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
    feeds[i.name] = np.zeros(shape, np.float32)
sess.run(None, feeds)
t3 = time.perf_counter()
out = {"import": t1 - t0, "session": t2 - t1, "first_run": t3 - t2, "total": t3 - t0,
       "cpu": time.process_time()}
if "numba" in sys.modules:
    from numba.core.registry import CPUDispatcher
    kernels = compiled = hits = misses = 0
    for name, mod in list(sys.modules.items()):
        if not name.startswith("runtime.kernels."):
            continue
        for fn in vars(mod).values():
            if isinstance(fn, CPUDispatcher) and fn.__module__ == name:
                kernels += 1
                compiled += len(fn.signatures)
                hits += sum(fn.stats.cache_hits.values())
                misses += sum(fn.stats.cache_misses.values())
    out.update(kernels_defined=kernels, signatures=compiled, cache_hits=hits,
               cache_misses=misses)
print("COLD_START " + json.dumps(out))
"""

IMPORT_NUMBA = r"""
import json, time
t0 = time.perf_counter()
import numba
print("COLD_START " + json.dumps({"import": time.perf_counter() - t0}))
"""


LOCK: str | None = None  # --lock: a file each measurement holds an exclusive lock on


@contextlib.contextmanager
def _locked():
    """With ``--lock``, one measurement at a time among the processes that share it."""
    if LOCK is None:
        yield
        return
    import fcntl

    with open(LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _child(code: str, args: list[str], cache: str | None, timeout: float = 1800) -> dict:
    with _locked():
        return _run_child(code, args, cache, timeout)


def _run_child(code: str, args: list[str], cache: str | None, timeout: float) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if cache is not None:
        env["NUMBA_CACHE_DIR"] = cache
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("COLD_START ")][-1]
    return {**json.loads(line[len("COLD_START ") :]), "process": wall}


def model_path(name: str) -> Path:
    """The ONNX file of ``name``, made on first use."""
    if name == "lenet5":
        path = ROOT / "exported" / "lenet5.onnx"
        if not path.is_file():
            raise SystemExit(f"{path} is missing: make it with `cnn train lenet5 --out exported`")
        return path
    if name == "resnet50":
        sys.path.insert(0, str(ROOT))
        from cnn.zoo import light_model

        return light_model("resnet50")
    sys.path.insert(0, str(ROOT))
    folder = Path(os.path.expanduser("~")) / ".cache" / "cnn" / "cold_start"
    path = folder / f"{name}.onnx"
    if not path.is_file():
        try:
            from training.zoo import export_zoo_model
        except ImportError as exc:
            raise SystemExit(f"{name} is exported with torch ({exc}): pip install torch") from None
        folder.mkdir(parents=True, exist_ok=True)
        export_zoo_model(name, path)
    return path


def _median(runs: list[dict]) -> dict:
    keys = [k for k in runs[0] if isinstance(runs[0][k], (int, float))]
    med = {k: statistics.median(r[k] for r in runs) for k in keys}
    med["total_min"] = min(r["total"] for r in runs)
    med["total_max"] = max(r["total"] for r in runs)
    med["repeats"] = len(runs)
    return med


def measure(models: list[str], repeats: int, warmup: int) -> dict:
    """Every model's rows; ``warmup`` > 0: `cnn warmup` that many times too."""
    results: dict = {"rows": []}
    numba_runs = [_child(IMPORT_NUMBA, [], None) for _ in range(repeats)]
    results["import_numba"] = statistics.median(r["import"] for r in numba_runs)
    for name in models:
        path = str(model_path(name))
        empty, filled = [], []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory(prefix="numba_cache_") as cache:
                empty.append(_child(CHILD, [path, "numba"], cache))
                filled.append(_child(CHILD, [path, "numba"], cache))
        ort = [_child(CHILD, [path, "onnxruntime"], None) for _ in range(repeats)]
        for backend, cache, runs in (
            ("numba", "empty", empty),
            ("numba", "filled", filled),
            ("onnxruntime", "-", ort),
        ):
            results["rows"].append({"model": name, "backend": backend, "cache": cache,
                                    **_median(runs)})  # fmt: skip
            _print_row(results["rows"][-1])
    if warmup:
        results["warmup"] = _measure_warmup(models, warmup)
    return results


def _measure_warmup(models: list[str], repeats: int) -> dict:
    """``cnn warmup`` from an empty cache, then each model's first result after it."""
    seconds, after = [], {name: [] for name in models}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="numba_cache_") as cache:
            env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": cache}
            with _locked():
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-m", "cnn", "warmup"], cwd=ROOT, env=env,
                               check=True, capture_output=True, timeout=3600)  # fmt: skip
                seconds.append(time.perf_counter() - t0)
            for name in models:
                after[name].append(_child(CHILD, [str(model_path(name)), "numba"], cache))
    out = {"seconds": statistics.median(seconds), "runs": seconds,
           "after": {name: _median(runs) for name, runs in after.items()}}  # fmt: skip
    print(f"cnn warmup from an empty cache: {out['seconds']:.1f} s (median of {len(seconds)})")
    for name, med in out["after"].items():
        print(f"  then {name}: first result in {med['total']:.2f} s, "
              f"{med.get('cache_misses', 0):.0f} compiled")  # fmt: skip
    return out


HEADER = (
    f"{'model':<20}{'backend':<13}{'cache':<8}{'import':>8}{'session':>9}{'1st run':>9}"
    f"{'total':>8}{'(min-max)':>15}{'cpu':>7}{'compiled':>10}{'loaded':>8}"
)


def _print_row(r: dict) -> None:
    if not getattr(_print_row, "started", False):
        print(HEADER)
        _print_row.started = True
    spread = f"{r['total_min']:.2f}-{r['total_max']:.2f}"
    compiled = f"{r['cache_misses']:.0f}" if "cache_misses" in r else "-"
    loaded = f"{r['cache_hits']:.0f}" if "cache_hits" in r else "-"
    print(
        f"{r['model']:<20}{r['backend']:<13}{r['cache']:<8}{r['import']:>8.2f}{r['session']:>9.2f}"
        f"{r['first_run']:>9.2f}{r['total']:>8.2f}{spread:>15}{r['cpu']:>7.2f}{compiled:>10}{loaded:>8}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help="default: %(default)s")
    ap.add_argument("--repeats", type=int, default=3, help="default: %(default)s")
    ap.add_argument("--json", type=Path, help="write the medians and every setting here")
    ap.add_argument("--lock", help="hold an exclusive lock on this file through each measurement")
    ap.add_argument("--warmup", action="store_true", help="also time `cnn warmup`")
    ap.add_argument("--warmup-repeats", type=int, default=1, help="default: %(default)s")
    args = ap.parse_args(argv)
    global LOCK
    LOCK = args.lock
    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        ap.error(f"--models: unknown {unknown}, expected among {list(MODELS)}")
    if args.repeats < 1:
        ap.error(f"--repeats: expected a positive integer, received {args.repeats}")
    results = measure(models, args.repeats, args.warmup and args.warmup_repeats)
    print(f"import numba alone: {results['import_numba']:.2f} s (seconds are medians; "
          "compiled and loaded count kernel signatures)")  # fmt: skip
    if args.json:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip()  # fmt: skip
        command = " ".join(["python benchmarks/cold_start.py", *(argv or sys.argv[1:])])
        results.update(commit=commit, python=sys.version.split()[0], repeats=args.repeats,
                       command=command)  # fmt: skip
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(results, indent=1))
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
