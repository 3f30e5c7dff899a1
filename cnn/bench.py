"""The backend benchmark behind ``cnn bench`` (issue 5's yardstick).

Per configuration (model, batch size, thread count), each backend runs alone in
fresh processes (cnn/worker.py), as a user runs it, the processes of the two
backends alternated (``isolated_times``); or, with ``interleaved``, in one process,
the backends in alternating rounds (which penalises whichever runs after
onnxruntime's spinning threads). Reported: median, p90 and p99 time per call,
images per second, achieved GFLOP/s (2 x MACs counted from the graph) and the
numba/onnxruntime throughput ratio. The same run measures numpy's float32 GEMM (the
practical roof) and, in fresh processes, cold start (import, session, first result;
numba with a warm and with a cold JIT cache) and peak RSS.

Timings on shared machines are noisy: compare ratios from one run, never absolute
numbers across runs.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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


def feed_shapes(
    path: str | os.PathLike,
    batch: int,
    dims: dict[str, int] | None = None,
    shape: Sequence[int] | None = None,
) -> dict[str, tuple[int, ...]]:
    """Each input's shape at ``batch``, from cnn/shapes.py's resolver: a symbolic first
    axis is the batch, other symbolic axes come from ``dims`` (by name) or ``shape``."""
    from cnn.shapes import model_inputs, resolve

    return resolve(model_inputs(path), dims, shape, batch=batch).concrete(batch)


def _random_spec(path: str | os.PathLike, shapes: dict[str, tuple[int, ...]], seed: int) -> dict:
    """The worker's samples: cnn/shapes.py's seeded random inputs of ``shapes``."""
    from cnn.samples import random_spec
    from cnn.shapes import model_inputs

    return random_spec(model_inputs(path), shapes, seed)


def _first(shapes: dict[str, tuple[int, ...]], batch: int) -> int:
    """The samples in one call at ``shapes``: their first axis."""
    return next((s[0] for s in shapes.values() if s), batch)


def _worker_spec(
    backend: str,
    path: str | os.PathLike,
    threads: int | None,
    shapes: dict[str, tuple[int, ...]],
    seed: int,
) -> dict:
    """What every timing worker is told (cnn/worker.py): the backend, the model, its
    threads and seeded random samples at ``shapes``; the caller adds "timing" or "serve"."""
    return {
        "backend": backend,
        "model": str(path),
        "threads": threads,
        "samples": _random_spec(path, shapes, seed),
        "first": _first(shapes, 1),
    }


def isolated_times(
    path: str | os.PathLike,
    backend: str,
    threads: int | None,
    shapes: dict[str, tuple[int, ...]],
    calls: int,
    seed: int = 0,
) -> list[float]:
    """Seconds per call of one backend alone in a fresh process (cnn/worker.py), as a
    user runs it: a warm-up (3 calls and 1 s at least: compile, plan, caches), then
    ``calls`` timed calls."""
    from cnn import worker

    n = _first(shapes, 1)
    try:
        spec = _worker_spec(backend, path, threads, shapes, seed)
        spec["timing"] = {"sizes": [n], "rounds": calls, "warmup": 3, "warmup_s": 1.0}
        result = worker.launch(spec, timeout=1800)
    except (worker.WorkerError, OSError, ValueError) as exc:
        raise RuntimeError(f"{backend} on {path}: {' '.join(str(exc).split())}") from None
    return result["times"][str(n)]


def bench_model(
    path: str | os.PathLike,
    batch_sizes: Sequence[int],
    *,
    threads: Sequence[int | None] = (None, 1),
    rounds: int = 20,
    warmup: int = 3,
    roof: float,
    name: str | None = None,
    interleaved: bool = True,
    processes: int = 3,
    dims: dict[str, int] | None = None,
    shape: Sequence[int] | None = None,
) -> list[BenchRow]:
    """Rows per (threads, batch, backend). ``interleaved``: both backends in this
    process, alternating rounds (``time_interleaved``); otherwise each backend alone
    in fresh processes, ``processes`` of each, alternated, ``rounds`` timed calls each."""
    from cnn.shapes import model_inputs, random_feeds

    macs = summarize(path, dims=dims, shape=shape).total_macs  # per image
    name = name or os.path.splitext(os.path.basename(str(path)))[0]
    rows = []
    for t in threads:
        sessions = (
            {b: InferenceSession(path, backend=b, threads=t) for b in BACKENDS}
            if interleaved
            else {}
        )
        done = set()
        for bs in batch_sizes:
            shapes = feed_shapes(path, bs, dims, shape)
            n = next(iter(shapes.values()))[0] if shapes else bs
            if n in done:  # a fixed batch axis: one row whatever was asked
                continue
            done.add(n)
            if interleaved:
                feed = random_feeds(model_inputs(path), shapes, bs)
                times = time_interleaved(sessions, feed, rounds, warmup)
            else:
                times = {b: [] for b in BACKENDS}
                for _ in range(processes):
                    for b in BACKENDS:
                        times[b] += isolated_times(path, b, t, shapes, rounds, seed=bs)
            ips = {b: n / float(np.median(v)) for b, v in times.items()}
            for b, v in times.items():
                ms = np.asarray(v) * 1e3
                gflops = 2 * macs * ips[b] / 1e9
                rows.append(
                    BenchRow(
                        model=name,
                        batch_size=n,
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


def cold_shapes(
    path: str | os.PathLike, batch: int, sample: Sequence[int] | None = None
) -> tuple[dict[str, tuple[int, ...]], int]:
    """The cold-start probe's inputs at ``batch`` and the samples of its first call: 1,
    or the batch the model fixes (which then stays). ``sample``: the one input's shape
    past the batch when the model leaves it symbolic, else the model's own sizes
    (cnn/shapes.py's resolver)."""
    from cnn.shapes import model_inputs, resolve

    inputs = model_inputs(path)
    fixed = next((s.dims[0] for s in inputs if s.dims and isinstance(s.dims[0], int)), None)
    if sample is not None and len(inputs) == 1 and inputs[0].dims:
        shapes = resolve(inputs, shape=[fixed or batch, *sample]).concrete()
    else:
        shapes = resolve(inputs, batch=batch).concrete(batch)
    return shapes, fixed or 1


def cold_start(
    path: str | os.PathLike,
    backend: str,
    batch: int,
    cache_dir: str | None,
    sample: Sequence[int] | None = None,
) -> dict:
    """A fresh process (cnn/worker.py): import, session, first result at batch 1 (the
    ``cold_start_s`` here is the worker's ``first_result_s``); then one call at
    ``batch`` before its peak RSS is read (``sample``: see :func:`cold_shapes`)."""
    from cnn import worker

    try:
        shapes, first = cold_shapes(path, batch, sample)
        spec = {
            "backend": backend,
            "model": str(path),
            "threads": None,
            "samples": _random_spec(path, shapes, 0),
            "first": first,
            "then": _first(shapes, batch),
        }
        env = {} if cache_dir is None else {"NUMBA_CACHE_DIR": cache_dir}
        result = worker.launch(spec, timeout=600, env=env)
    except (worker.WorkerError, OSError, ValueError) as exc:
        raise RuntimeError(f"cold-start probe failed: {' '.join(str(exc).split())}") from None
    return {"cold_start_s": result["first_result_s"], "peak_rss_mb": result["peak_rss_mb"]}


def cold_starts(
    path: str | os.PathLike, batch: int, sample: Sequence[int] | None = None
) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="cnn-bench-jit-") as cache:
        cold = cold_start(path, "numba", batch, cache, sample)  # empty cache: compiles all
        warm = cold_start(path, "numba", batch, cache, sample)  # the same cache, now filled
    rows.append({"backend": "numba (cold JIT cache)", **cold})
    rows.append({"backend": "numba (warm JIT cache)", **warm})
    ort = cold_start(path, "onnxruntime", batch, None, sample)
    rows.append({"backend": "onnxruntime", **ort})
    return rows


def render(rows: Sequence[BenchRow], roof: float, starts: dict[str, list[dict]]) -> str:
    lines = [machine_line(machine()), f"numpy float32 GEMM roof: {roof:.1f} GFLOP/s", ""]
    w = max([14, *(len(r.model) for r in rows)])  # the model column fits every name
    header = (
        f"{'model':<{w}} {'batch':>5} {'thr':>3} {'backend':<12} {'p50 ms':>9} "
        f"{'p90 ms':>9} {'p99 ms':>9} {'images/s':>10} {'GFLOP/s':>8} {'roof':>5} "
        f"{'numba/ort':>9}"
    )
    lines.append(header)
    for r in rows:
        ratio = f"{r.ratio:.2f}" if r.backend == "numba" else ""
        lines.append(
            f"{r.model:<{w}} {r.batch_size:>5} {r.threads:>3} {r.backend:<12} {r.p50_ms:>9.3f} "
            f"{r.p90_ms:>9.3f} {r.p99_ms:>9.3f} {r.throughput_ips:>10,.0f} {r.gflops:>8.1f} "
            f"{r.roof_fraction:>5.2f} {ratio:>9}"
        )
    for model, items in starts.items():
        lines += ["", f"cold start, {model} (fresh process: import, session, first result)"]
        for c in items:
            secs, rss = c["cold_start_s"], c["peak_rss_mb"]
            lines.append(f"  {c['backend']:<24} {secs:.2f} s, peak RSS {rss:.0f} MB")
    return "\n".join(lines)


def machine() -> dict:
    """The CPU the figures come from: model, family/model numbers, ISA, cores."""
    import platform

    from runtime.kernels import isa

    info: dict = {"cpu_count": os.cpu_count(), "platform": platform.platform()}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            fields = dict(
                (k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in f) if v
            )
    except OSError:
        fields = {}
    flags = set(fields.get("flags", "").split())
    info["cpu"] = fields.get("model name") or platform.processor() or "unknown"
    info["vendor"] = fields.get("vendor_id", "")
    info["family_model"] = f"{fields.get('cpu family', '?')}/{fields.get('model', '?')}"
    info["isa"] = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    info["kernels_isa"] = isa.describe()
    return info


def machine_line(m: dict) -> str:
    isa = ", ".join(m.get("isa", [])) or "no AVX2"
    return (
        f"machine: {m['cpu']} ({m['vendor']} family/model {m['family_model']}), {isa}; "
        f"{m['cpu_count']} cores; numba kernels built for {m['kernels_isa']}"
    )


def to_json(rows: Sequence[BenchRow], roof: float, starts: dict[str, list[dict]]) -> dict:
    return {
        "machine": machine(),
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


# --- cnn bench --busy: each backend's slowdown with every core (or N) already busy ---


@contextmanager
def busy_processes(n: int, limit_s: float = 600.0) -> Iterator[list[subprocess.Popen]]:
    """``n`` busy-loop processes, each taking one core, stopped (and reaped) on exit,
    whatever happens inside the block; each also stops by itself after ``limit_s``
    (cnn/worker.py's :func:`~cnn.worker.spin`)."""
    from cnn import worker

    procs: list[subprocess.Popen] = []
    try:
        for _ in range(n):
            procs.append(
                subprocess.Popen(
                    worker.spin_command(os.getpid(), limit_s),
                    stdin=subprocess.DEVNULL,
                    env=worker.environment(),
                )
            )
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


@dataclass(frozen=True)
class BusyRow:
    """One backend on one model under ``busy`` busy-loop processes: per repeat (a fresh
    process each), the median seconds per call quiet and busy, and their ratio."""

    model: str
    batch_size: int
    backend: str
    busy: int
    quiet_s: list[float]
    busy_s: list[float]

    @property
    def slowdowns(self) -> list[float]:
        return [b / q for q, b in zip(self.quiet_s, self.busy_s, strict=True)]

    @property
    def slowdown(self) -> float:
        return float(np.median(self.slowdowns))


def busy_times(
    path: str | os.PathLike,
    backend: str,
    shapes: dict[str, tuple[int, ...]],
    busy: int,
    calls: int,
    threads: int | None = None,
    env: dict[str, str] | None = None,
    seed: int = 0,
) -> tuple[float, float]:
    """(median seconds per call quiet, then with ``busy`` busy-loop processes running)
    of one backend alone in a fresh process (cnn/worker.py, serving), which warms up
    (and compiles) quiet."""
    from cnn import worker

    n = _first(shapes, 1)
    try:
        spec = _worker_spec(backend, path, threads, shapes, seed)
        spec["serve"] = {"size": n, "calls": calls, "warmup": 3, "warmup_s": 1.0}
        with worker.serving(spec, env=env) as served:
            quiet = float(np.median(served.ask(SETTLE_S)))
            with busy_processes(busy):
                loaded = float(np.median(served.ask(2 * SETTLE_S)))
    except (worker.WorkerError, OSError, ValueError) as exc:
        raise RuntimeError(f"{backend} on {path}: {' '.join(str(exc).split())}") from None
    return quiet, loaded


def bench_busy(
    path: str | os.PathLike,
    batch: int,
    busy: int,
    *,
    repeats: int = 3,
    calls: int = 10,
    name: str | None = None,
    backends: Sequence[str] = BACKENDS,
    threads: int | None = None,
    env: dict[str, str] | None = None,
    dims: dict[str, int] | None = None,
    shape: Sequence[int] | None = None,
) -> list[BusyRow]:
    """Each backend at ``threads`` (None: its default), alone in a fresh process per
    repeat (the backends alternated), quiet and then with ``busy`` busy-loop processes."""
    name = name or os.path.splitext(os.path.basename(str(path)))[0]
    shapes = feed_shapes(path, batch, dims, shape)
    n = next(iter(shapes.values()))[0] if shapes else batch
    quiet: dict[str, list[float]] = {b: [] for b in backends}
    loaded: dict[str, list[float]] = {b: [] for b in backends}
    for _ in range(repeats):
        for b in backends:
            q, t = busy_times(path, b, shapes, busy, calls, threads, env, seed=batch)
            quiet[b].append(q)
            loaded[b].append(t)
    return [BusyRow(name, n, b, busy, quiet[b], loaded[b]) for b in backends]


def render_busy(rows: Sequence[BusyRow]) -> str:
    """Per backend: quiet and busy medians, the slowdown's median and range over the
    repeats; on other backends' rows, their slowdown over onnxruntime's ("slower") and
    their busy time over onnxruntime's ("busy/ort": a slowdown from a quiet time that
    was already slow hides nothing here)."""
    lines = [
        machine_line(machine()),
        f"load before the run: {os.getloadavg()[0]:.2f} (1-minute average)",
        "",
        f"{'model':<18} {'batch':>5} {'busy':>4} {'backend':<12} {'quiet ms':>9} "
        f"{'busy ms':>9} {'slowdown':>9} {'range':>11} {'slower':>6} {'busy/ort':>8}",
    ]
    for r in rows:
        ort = next(
            (
                o
                for o in rows
                if o.backend == "onnxruntime" and (o.model, o.batch_size) == (r.model, r.batch_size)
            ),
            None,
        )
        slower = busier = ""
        if ort is not None and r.backend != "onnxruntime":
            slower = f"{r.slowdown / ort.slowdown:.2f}"
            busier = f"{np.median(r.busy_s) / np.median(ort.busy_s):.2f}"
        spread = f"{min(r.slowdowns):.2f}-{max(r.slowdowns):.2f}"
        lines.append(
            f"{r.model:<18} {r.batch_size:>5} {r.busy:>4} {r.backend:<12} "
            f"{np.median(r.quiet_s) * 1e3:>9.2f} {np.median(r.busy_s) * 1e3:>9.2f} "
            f"{'x' + format(r.slowdown, '.2f'):>9} {spread:>11} {slower:>6} {busier:>8}"
        )
    return "\n".join(lines)


def busy_json(rows: Sequence[BusyRow]) -> dict:
    return {
        "machine": machine(),
        "rows": [{**asdict(r), "slowdowns": r.slowdowns, "slowdown": r.slowdown} for r in rows],
    }
