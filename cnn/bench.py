"""The backend benchmark behind ``cnn bench`` (issue 5's yardstick).

Per configuration (model, batch size, thread count), in one process, after a
warm-up, the backends run interleaved in rounds so that machine noise hits them
alike. Reported: median, p90 and p99 time per call, images per second, achieved
GFLOP/s (2 x MACs counted from the graph) and the numba/onnxruntime throughput
ratio. The same run measures numpy's float32 GEMM (the practical roof) and, in
fresh processes, cold start (import, session, first result; numba with a warm and
with a cold JIT cache) and peak RSS.

Timings on shared machines are noisy: compare ratios from one run, never absolute
numbers across runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from cnn.summary import summarize
from runtime.session import InferenceSession

BACKENDS = ("numba", "onnxruntime")
SETTLE_S = 0.2  # untimed running per backend per round, before its timed call


@dataclass(frozen=True)
class BenchRow:
    model: str
    batch_size: int
    threads: int
    backend: str
    p50_ms: float
    p90_ms: float
    p99_ms: float
    throughput_ips: float
    gflops: float
    roof_fraction: float
    ratio: float  # numba throughput / onnxruntime throughput, on the numba row


def time_interleaved(
    sessions: dict[str, InferenceSession],
    feed: dict[str, np.ndarray],
    rounds: int,
    warmup: int,
    settle_s: float = SETTLE_S,
) -> dict[str, list[float]]:
    """Seconds per call for each session, measured in alternating rounds.

    In each round every backend first runs untimed for at least ``settle_s`` (one
    call at least), then makes one timed call. Both backends' thread pools spin
    after a call (onnxruntime's intra-op threads for about 40 ms here, libgomp's
    for less): without the settling, each backend's timed call would share the
    cores with the other's spinning threads (LeNet-5 at batch 64 measured 4.3 ms
    that way, 0.9 ms alone). 50 ms was not enough after onnxruntime: AlexNet at
    batch 1 on two threads took numba 20.4 and 19.8 ms with 50 ms of settling,
    17.8 and 18.1 ms with 200 ms (17.1 to 18.7 ms with no onnxruntime session in
    the process), while onnxruntime's own time stayed within 16.2 to 16.8 ms.
    """
    for _ in range(warmup):
        for sess in sessions.values():
            sess.run(None, feed)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, sess in sessions.items():
            start = time.perf_counter()
            sess.run(None, feed)
            while time.perf_counter() - start < settle_s:
                sess.run(None, feed)
            t0 = time.perf_counter()
            sess.run(None, feed)
            times[name].append(time.perf_counter() - t0)
    return times


def gemm_roof_gflops(n: int = 1024, repeats: int = 5) -> float:
    """numpy's float32 matmul, n x n, all BLAS threads: the practical roof."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = np.random.default_rng(1).random((n, n), dtype=np.float32)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_model(
    path: str | os.PathLike,
    batch_sizes: Sequence[int],
    *,
    threads: Sequence[int | None] = (None, 1),
    rounds: int = 20,
    warmup: int = 3,
    roof: float,
    name: str | None = None,
) -> list[BenchRow]:
    macs = summarize(path).total_macs  # per image
    name = name or os.path.splitext(os.path.basename(str(path)))[0]
    rows = []
    for t in threads:
        sessions = {b: InferenceSession(path, backend=b, threads=t) for b in BACKENDS}
        (inp,) = sessions["numba"].get_inputs()
        dims = [d for d in inp.shape[1:]]
        for bs in batch_sizes:
            x = np.random.default_rng(bs).random((bs, *dims), dtype=np.float32)
            times = time_interleaved(sessions, {inp.name: x}, rounds, warmup)
            ips = {b: bs / float(np.median(v)) for b, v in times.items()}
            for b, v in times.items():
                ms = np.asarray(v) * 1e3
                gflops = 2 * macs * ips[b] / 1e9
                rows.append(
                    BenchRow(
                        model=name,
                        batch_size=bs,
                        threads=t or os.cpu_count() or 1,
                        backend=b,
                        p50_ms=float(np.median(ms)),
                        p90_ms=float(np.percentile(ms, 90)),
                        p99_ms=float(np.percentile(ms, 99)),
                        throughput_ips=ips[b],
                        gflops=gflops,
                        roof_fraction=gflops / roof,
                        ratio=ips["numba"] / ips["onnxruntime"] if b == "numba" else 1.0,
                    )
                )
    return rows


_COLD_PROBE = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import runtime
sess = runtime.InferenceSession(sys.argv[1], backend=sys.argv[2])
(inp,) = sess.get_inputs()
shape = [1] + [d for d in inp.shape[1:]]
sess.run(None, {inp.name: np.zeros(shape, np.float32)})
first = time.perf_counter() - t0
big = [int(sys.argv[3])] + shape[1:]
sess.run(None, {inp.name: np.zeros(big, np.float32)})
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec.
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"cold_start_s": first, "peak_rss_mb": int(hwm.split()[1]) / 1024}))
"""


def cold_start(path: str | os.PathLike, backend: str, batch: int, cache_dir: str | None) -> dict:
    """A fresh process: import, session, first result; then one run at ``batch``."""
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    out = subprocess.run(
        [sys.executable, "-c", _COLD_PROBE, str(path), backend, str(batch)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"cold-start probe failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cold_starts(path: str | os.PathLike, batch: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="cnn-bench-jit-") as cache:
        cold = cold_start(path, "numba", batch, cache)  # empty cache: compiles everything
        warm = cold_start(path, "numba", batch, cache)  # the same cache, now filled
    rows.append({"backend": "numba (cold JIT cache)", **cold})
    rows.append({"backend": "numba (warm JIT cache)", **warm})
    rows.append({"backend": "onnxruntime", **cold_start(path, "onnxruntime", batch, None)})
    return rows


def render(rows: Sequence[BenchRow], roof: float, starts: dict[str, list[dict]]) -> str:
    lines = [f"numpy float32 GEMM roof: {roof:.1f} GFLOP/s", ""]
    header = (
        f"{'model':<8} {'batch':>5} {'thr':>3} {'backend':<12} {'p50 ms':>9} "
        f"{'p90 ms':>9} {'p99 ms':>9} {'images/s':>10} {'GFLOP/s':>8} {'roof':>5} "
        f"{'numba/ort':>9}"
    )
    lines.append(header)
    for r in rows:
        ratio = f"{r.ratio:.2f}" if r.backend == "numba" else ""
        lines.append(
            f"{r.model:<8} {r.batch_size:>5} {r.threads:>3} {r.backend:<12} {r.p50_ms:>9.3f} "
            f"{r.p90_ms:>9.3f} {r.p99_ms:>9.3f} {r.throughput_ips:>10,.0f} {r.gflops:>8.1f} "
            f"{r.roof_fraction:>5.2f} {ratio:>9}"
        )
    for model, items in starts.items():
        lines += ["", f"cold start, {model} (fresh process: import, session, first result)"]
        for c in items:
            secs, rss = c["cold_start_s"], c["peak_rss_mb"]
            lines.append(f"  {c['backend']:<24} {secs:.2f} s, peak RSS {rss:.0f} MB")
    return "\n".join(lines)


def to_json(rows: Sequence[BenchRow], roof: float, starts: dict[str, list[dict]]) -> dict:
    import platform

    return {
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor(),
            "platform": platform.platform(),
        },
        "gemm_roof_gflops": roof,
        "rows": [asdict(r) for r in rows],
        "cold_start": starts,
    }


def plot(rows: Sequence[BenchRow], path: str | os.PathLike) -> None:
    """Throughput per configuration, numba next to onnxruntime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dataio.files import atomic_write

    configs = list(dict.fromkeys((r.model, r.batch_size, r.threads) for r in rows))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(configs)), 4))
    for i, backend in enumerate(BACKENDS):
        values = [
            next(
                r.throughput_ips
                for r in rows
                if (r.model, r.batch_size, r.threads) == c and r.backend == backend
            )
            for c in configs
        ]
        ax.bar([j + 0.4 * i for j in range(len(configs))], values, 0.4, label=backend)
    ax.set_xticks([j + 0.2 for j in range(len(configs))])
    ax.set_xticklabels([f"{m}\nb{b} t{t}" for m, b, t in configs], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("images / s (median, log scale)")
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
