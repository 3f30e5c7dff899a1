"""Where a run's time goes: the numba engine's plan timed step by step, onnxruntime's
profiler on the same feeds, and the machine's GEMM peak to hold them against.

    from runtime.profile import profile, ort_profile, peak_gflops
    prof = profile("model.onnx", feeds, threads=1, runs=10)
    for r in prof.steps:
        print(r.node, r.algorithm, r.median_s, r.gflops)
    ort = ort_profile("model.onnx", feeds, threads=1, runs=10)   # ort.by_op: s per op type

The plan runs step by step (``NumbaEngine.step_calls``), each step timed on its own;
a step's time is the median over the timed runs, after the warm-up runs. A plan that
runs as one compiled program (LeNet-5's chain program) has no steps to time inside
it: its steps are timed on a second session built with ``compile_plans=False``, and
``Profile.compiled`` and ``Profile.whole_call_s`` say that the real run is one program
and how long it takes.

``clock``: ``"wall"`` (``time.perf_counter``, the default) or ``"cpu"``, the calling
thread's CPU time (``time.thread_time``). On one thread both engines run every kernel
on the calling thread, so its CPU time is the run's work without the time other
processes took the core: on a busy machine wall times swing with the load (a 1.9 ms
RegNet call read 4.3 ms median, a 3.6 ms MobileNetV3-Small 16 ms) while CPU times
stay within a few percent. With more threads the workers' time is not the calling
thread's, so ``"cpu"`` takes ``threads=1`` only. onnxruntime's kernels are still its
profiler's wall times; its whole call is then timed by the same CPU clock.

FLOPs per step (its main op; fused activations and scale/shift are not counted):
Conv ``2*N*M*OH*OW*C/G*kh*kw``, ConvTranspose ``2*N*C*H*W*M/G*kh*kw``, Gemm and
MatMul ``2*M*N*K``, pools the output's elements times the window, global pools and
reductions their input's elements, data movement (Reshape, Transpose, Concat, ...)
none, any other op one per element of its largest tensor.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from runtime.errors import BackendUnavailableError
from runtime.session import InferenceSession, check_feeds

# ops that move or relabel data and compute nothing: no FLOPs, no GFLOP/s
DATA_OPS = frozenset(
    {
        "Cast",
        "Concat",
        "DepthToSpace",
        "Expand",
        "Flatten",
        "Gather",
        "Identity",
        "Pad",
        "Reshape",
        "Shape",
        "Slice",
        "SpaceToDepth",
        "Split",
        "Squeeze",
        "Tile",
        "Transpose",
        "Unsqueeze",
    }
)
WINDOW_OPS = frozenset({"MaxPool", "AveragePool", "LpPool"})
REDUCING_OPS = frozenset({"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"})


@dataclass(frozen=True)
class StepRecord:
    """One step of the plan: what it runs, and how long it took."""

    index: int
    node: str  # the (first) node's name
    op: str
    fused: tuple[str, ...]  # ops the rewrite passes fused into it
    algorithm: str  # as ``InferenceSession.describe()`` says
    reason: str
    median_s: float  # over the timed runs
    times_s: tuple[float, ...]  # each timed run's
    flops: int  # per call (the whole batch); 0: a step that moves data
    output_shape: tuple[int, ...]

    @property
    def gflops(self) -> float | None:
        """Achieved GFLOP/s at the median time (None for a step without FLOPs)."""
        if not self.flops or self.median_s <= 0:
            return None
        return self.flops / self.median_s / 1e9

    def as_dict(self) -> dict:
        return {
            "index": self.index,
            "node": self.node,
            "op": self.op,
            "fused": list(self.fused),
            "algorithm": self.algorithm,
            "reason": self.reason,
            "median_ms": self.median_s * 1e3,
            "times_ms": [t * 1e3 for t in self.times_s],
            "flops": self.flops,
            "gflops": self.gflops,
            "output_shape": list(self.output_shape),
        }


@dataclass(frozen=True)
class Total:
    """The steps of one op type or one algorithm, together."""

    name: str
    steps: int
    seconds: float  # sum of the steps' medians
    flops: int

    @property
    def gflops(self) -> float | None:
        return self.flops / self.seconds / 1e9 if self.flops and self.seconds > 0 else None


@dataclass(frozen=True)
class Profile:
    """``profile``'s answer: every step of the plan for one set of input shapes."""

    input_shapes: dict[str, tuple[int, ...]]
    threads: int  # numba's threads during the runs
    runs: int  # timed runs (after ``warmup`` untimed ones)
    warmup: int
    compiled: bool  # the real run is one compiled program; the steps ran without it
    not_compiled: str  # why the plan is not one program, when it is not
    whole_call_s: float  # the real ``InferenceSession.run``, median over ``runs``
    steps: tuple[StepRecord, ...]
    clock: str = "wall"  # what timed them (module docstring)

    @property
    def steps_s(self) -> float:
        """The steps' medians added up (Python between steps not included)."""
        return sum(r.median_s for r in self.steps)

    @property
    def steps_run_s(self) -> float:
        """The median over the runs of each run's steps added up: above ``steps_s`` by
        what the runs' slow moments cost (a busy machine's preemptions fall on some
        step in most runs, but on no one step in most runs)."""
        if not self.steps:
            return 0.0
        return statistics.median(
            sum(run) for run in zip(*(r.times_s for r in self.steps), strict=True)
        )

    def totals(self, by: str) -> list[Total]:
        """Per ``"op"`` (the step's first op) or per ``"algorithm"``, slowest first."""
        if by not in ("op", "algorithm"):
            raise ValueError(f"totals by {by!r}: expected 'op' or 'algorithm'")
        groups: dict[str, list[StepRecord]] = {}
        for r in self.steps:
            groups.setdefault(r.op if by == "op" else r.algorithm, []).append(r)
        totals = [
            Total(k, len(v), sum(r.median_s for r in v), sum(r.flops for r in v))
            for k, v in groups.items()
        ]
        return sorted(totals, key=lambda t: -t.seconds)


@dataclass(frozen=True)
class OrtProfile:
    """onnxruntime's profiler over the timed runs: its kernels' time per op type."""

    threads: int | None  # intra-op threads asked for (None: onnxruntime's default)
    runs: int
    whole_call_s: float  # median of its ``model_run`` events
    by_op: dict[str, float]  # op type -> median over runs of its kernels' summed time, s
    nodes: dict[str, int]  # op type -> kernels per run (after onnxruntime's own fusions)


def step_flops(op: str, inputs: list[Any], outputs: Iterable[Any], attrs: Mapping) -> int:
    """FLOPs of one call of a step (module docstring), from its tensors' shapes."""
    outs = [o for o in outputs if isinstance(o, np.ndarray)]
    ins = [i for i in inputs if isinstance(i, np.ndarray)]
    if op in DATA_OPS or not outs:
        return 0
    y = outs[0]
    if op == "Conv" and len(ins) >= 2:  # w (M, C/G, kh, kw); y (N, M, OH, OW)
        return 2 * y.size * int(np.prod(ins[1].shape[1:], dtype=np.int64))
    if op == "ConvTranspose" and len(ins) >= 2:  # x (N, C, H, W); w (C, M/G, kh, kw)
        return 2 * ins[0].size * int(np.prod(ins[1].shape[1:], dtype=np.int64))
    if op == "Gemm" and ins and y.ndim == 2 and y.shape[0]:  # A (M, K) or (K, M)
        return 2 * y.size * (ins[0].size // y.shape[0])
    if op == "MatMul" and ins and ins[0].ndim:
        return 2 * y.size * ins[0].shape[-1]
    if op in WINDOW_OPS and attrs.get("kernel_shape"):
        return y.size * int(np.prod(attrs["kernel_shape"], dtype=np.int64))
    if op in REDUCING_OPS or op.startswith("Reduce"):
        return ins[0].size if ins else y.size
    return max(t.size for t in ins + outs)


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


def clock_of(clock: str, threads: int | None) -> Callable[[], float]:
    """The timer ``clock`` names (module docstring), checked against ``threads``."""
    if clock not in CLOCKS:
        raise ValueError(
            f"clock: expected one of {', '.join(map(repr, CLOCKS))}, received {clock!r}"
        )
    if clock == "cpu" and threads != 1:
        raise ValueError(
            "clock 'cpu' counts the calling thread's CPU time, which holds a run's whole "
            f"work on one thread only: it needs threads=1 (received {threads!r})"
        )
    return CLOCKS[clock]


def _median_run(
    sess: Any,
    feeds: Mapping[str, np.ndarray],
    runs: int,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    times = []
    for _ in range(runs):
        t0 = clock()
        sess.run(None, feeds)
        times.append(clock() - t0)
    return statistics.median(times)


def _check_runs(runs: int, warmup: int) -> None:
    if not isinstance(runs, int) or runs < 1:
        raise ValueError(f"runs: expected a positive integer, received {runs!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup: expected an integer >= 0, received {warmup!r}")


def time_steps(
    sess: InferenceSession,
    input_feed: Mapping[str, Any],
    *,
    runs: int = 10,
    warmup: int = 2,
    clock: str = "wall",
) -> tuple[StepRecord, ...]:
    """Each step of ``sess``'s plan for the feeds, timed on its own in ``runs`` runs of
    the whole plan after ``warmup`` ones, by ``clock`` (module docstring). The session
    must run the numba backend step by step: a plan that is one compiled program raises
    ValueError (build the session with ``compile_plans=False``; ``profile`` does)."""
    _check_runs(runs, warmup)
    if sess.backend != "numba":
        raise BackendUnavailableError(
            f"time_steps times the numba engine's steps; this session runs {sess.backend!r}"
        )
    timer = clock_of(clock, sess._impl.threads)
    feeds = check_feeds(sess.graph.inputs, input_feed)
    desc = sess.describe(feeds)  # runs once: the plan is built and its kernels compiled
    if desc.compiled:
        raise ValueError(
            "the plan runs as one compiled program: its steps cannot be timed one by one; "
            "build the session with compile_plans=False"
        )
    times: list[list[float]] = [[] for _ in desc.steps]
    flops: list[int] = [0] * len(desc.steps)
    shapes: list[tuple[int, ...]] = [()] * len(desc.steps)
    for r in range(warmup + runs):
        seen = 0
        for i, (step, env, call) in enumerate(sess._impl.step_calls(feeds)):
            info = desc.steps[i] if i < len(desc.steps) else None
            if info is None or info.node != step.node.name:
                raise RuntimeError(  # an internal invariant: describe() lists the plan's steps
                    f"step {i} ({step.node.name!r}) is not describe()'s step {i} "
                    f"({None if info is None else info.node!r})"
                )
            inputs = [env.get(n) if n else None for n in step.inputs] if r == 0 else []
            t0 = timer()
            results = call()
            t = timer() - t0
            if r == 0:
                flops[i] = step_flops(step.op_type, inputs, results, step.attrs)
                first = results[0] if results else None
                shapes[i] = tuple(first.shape) if isinstance(first, np.ndarray) else ()
            if r >= warmup:
                times[i].append(t)
            seen += 1
        if seen != len(desc.steps):
            raise RuntimeError(f"the plan ran {seen} steps; describe() lists {len(desc.steps)}")
    return tuple(
        StepRecord(
            i,
            s.node,
            s.op,
            s.fused,
            s.algorithm,
            s.reason,
            statistics.median(times[i]),
            tuple(times[i]),
            flops[i],
            shapes[i],
        )
        for i, s in enumerate(desc.steps)
    )


def profile(
    model: str | os.PathLike | bytes,
    input_feed: Mapping[str, Any],
    *,
    threads: int | None = None,
    runs: int = 10,
    warmup: int = 2,
    clock: str = "wall",
) -> Profile:
    """The numba engine's plan for the feeds, step by step (module docstring), and the
    real run's whole-call time, both by ``clock``."""
    import numba

    _check_runs(runs, warmup)
    timer = clock_of(clock, threads)
    sess = InferenceSession(model, backend="numba", threads=threads)
    feeds = check_feeds(sess.graph.inputs, input_feed)
    desc = sess.describe(feeds)
    for _ in range(warmup):
        sess.run(None, feeds)
    whole = _median_run(sess, feeds, runs, timer)
    stepper = sess
    if desc.compiled:
        stepper = InferenceSession(model, backend="numba", threads=threads, compile_plans=False)
    steps = time_steps(stepper, feeds, runs=runs, warmup=warmup, clock=clock)
    cores = numba.config.NUMBA_NUM_THREADS
    return Profile(
        {k: tuple(v.shape) for k, v in feeds.items()},
        min(threads or cores, cores),
        runs,
        warmup,
        desc.compiled,
        desc.not_compiled,
        whole,
        steps,
        clock,
    )


def peak_gflops(
    threads: int | None = None, n: int = 1024, repeats: int = 5, clock: str = "wall"
) -> tuple[float, str]:
    """The engine's own GEMM on an n x n x n float32 MatMul (a one-node model run by a
    numba session with ``threads``), best of ``repeats`` by ``clock``: (GFLOP/s, what was
    measured)."""
    timer = clock_of(clock, threads)
    import onnx
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    b = rng.random((n, n), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "b"], ["y"], name="peak")],
        "peak",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [n, n])],
        [numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess = InferenceSession(model.SerializeToString(), threads=threads, compile_plans=False)
    feed = {"x": rng.random((n, n), dtype=np.float32)}
    (algorithm,) = sess.describe(feed).algorithms()
    sess.run(None, feed)
    best = min(_median_run(sess, feed, 1, timer) for _ in range(repeats))
    return 2 * n**3 / best / 1e9, (
        f"the engine's own GEMM (a {n}x{n}x{n} float32 MatMul step, describe: {algorithm})"
    )


def ort_profile(
    model: str | os.PathLike | bytes,
    input_feed: Mapping[str, Any],
    *,
    threads: int | None = None,
    runs: int = 10,
    warmup: int = 2,
    clock: str = "wall",
) -> OrtProfile:
    """onnxruntime (CPU) with ``SessionOptions.enable_profiling`` on the feeds: its
    trace's kernel times (``*_kernel_time`` events) summed per op type in each timed
    run, the median over the runs; the warm-up runs are left out. The whole call is its
    trace's ``model_run``, or with ``clock="cpu"`` a second session's run without the
    profiler, timed by the calling thread's CPU clock."""
    _check_runs(runs, warmup)
    timer = clock_of(clock, threads)
    try:
        import onnxruntime as ort
    except ImportError:
        raise BackendUnavailableError(
            "the onnxruntime profile needs the onnxruntime package: pip install onnxruntime"
        ) from None
    feeds = dict(input_feed)
    with tempfile.TemporaryDirectory(prefix="cnn-profile-") as folder:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(folder, "ort")
        if threads:
            options.intra_op_num_threads = threads
        data = (
            bytes(model) if isinstance(model, (bytes, bytearray, memoryview)) else os.fspath(model)
        )
        sess = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        for _ in range(warmup + runs):
            sess.run(None, feeds)
        path = sess.end_profiling()
        with open(path, encoding="utf-8") as f:
            events = json.load(f)
    parsed = parse_ort_trace(events, warmup=warmup, threads=threads)
    if clock == "wall":
        return parsed
    # the whole call without the profiler, whose events cost a fifth of a small
    # network's call (MobileNetV3-Small: 2.26 against 1.83 ms)
    options.enable_profiling = False
    plain = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    for _ in range(warmup):
        plain.run(None, feeds)
    return replace(parsed, whole_call_s=_median_run(plain, feeds, runs, timer))


def parse_ort_trace(events: list[dict], *, warmup: int, threads: int | None) -> OrtProfile:
    """onnxruntime's trace (a list of Chrome trace events) as an ``OrtProfile``: each
    ``model_run`` after the first ``warmup`` is a timed run; each ``*_kernel_time``
    node event inside one counts for its ``args.op_name``."""
    model_runs = sorted(
        (e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
        key=lambda e: e["ts"],
    )[warmup:]
    if not model_runs:
        raise ValueError(f"onnxruntime's trace has no model_run after the {warmup} warm-up runs")
    kernels = sorted(
        (
            e
            for e in events
            if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")
        ),
        key=lambda e: e["ts"],
    )
    per_run: list[dict[str, float]] = []
    counts: dict[str, int] = {}
    for i, run in enumerate(model_runs):
        start, stop = run["ts"], run["ts"] + run["dur"]
        sums: dict[str, float] = {}
        for e in kernels:
            if start <= e["ts"] <= stop:
                op = e.get("args", {}).get("op_name", "?")
                sums[op] = sums.get(op, 0.0) + e["dur"] * 1e-6
                if i == 0:
                    counts[op] = counts.get(op, 0) + 1
        per_run.append(sums)
    ops = sorted({op for sums in per_run for op in sums})
    by_op = {op: statistics.median(sums.get(op, 0.0) for sums in per_run) for op in ops}
    whole = statistics.median(e["dur"] * 1e-6 for e in model_runs)
    return OrtProfile(threads, len(model_runs), whole, by_op, counts)
