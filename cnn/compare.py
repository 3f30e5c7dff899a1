"""Compare runtimes on one model: agreement with a reference, and speed.

Inputs (cnn/samples.py): the test set the metadata names, else ``--inputs`` (a folder
of images, a .npy or .npz file), else seeded random data of the input's shape.

Backends (cnn/backends.py): numba and onnxruntime, and OpenVINO (fp32 forced, and its
default precision), tract and onnx's reference evaluator where installed. The
reference is the first backend, in the order given, that runs the model; one that
is not installed or fails is a row of the table saying why. By default each backend
runs alone in its own process (``python -m cnn.worker``, cnn/worker.py), as a user
runs one; ``interleaved`` keeps them in this process, in alternating timed rounds. A
backend that fails is one line and the others go on. onnxruntime logs errors only
(``ort_log_level``).

Agreement, against the reference's outputs on every sample: max abs difference,
that difference over the reference output's scale (its largest magnitude), and, for
(N, classes) outputs, top-1 agreement (and accuracy, with labels). Speed, per batch
size: p50/p90/p99 per call and images per second at the median; cold start is
session creation plus the first result (``import_s``, in the JSON, the library's
import before it, in the process of its own).

    cnn compare exported/lenet5.onnx --backends numba,onnxruntime --batch-sizes 1,64
    cnn compare resnet18.onnx --batch-sizes 1,8     # random inputs, every backend installed
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cnn import samples as S
from cnn import shapes as shp
from cnn.backends import ORT_LOG_DEFAULT, ORT_LOG_ENV, Backend, quiet_onnxruntime, select
from cnn.images import Recipe, RecipeFlags, resolve_recipe
from dataio.progress import wants_bar


@dataclass(frozen=True)
class CompareRow:
    backend: str
    batch_size: int
    max_abs_diff: float
    top1_agreement: float | None
    accuracy: float | None
    p50_ms: float
    p90_ms: float
    p99_ms: float
    throughput_ips: float
    cold_start_s: float
    precision: str = "fp32"
    max_rel_diff: float = 0.0  # max abs difference / the reference output's largest |value|
    import_s: float | None = None
    timed_calls: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Comparison:
    model: str
    inputs: str  # where the samples came from
    reference: str
    rows: list[CompareRow]
    skipped: list[str] = field(default_factory=list)  # one line per backend left out
    dataset: str | None = None

    def as_dict(self) -> dict:
        return {
            "model": self.model,
            "inputs": self.inputs,
            "dataset": self.dataset,
            "reference": self.reference,
            "skipped": self.skipped,
            "rows": [r.as_dict() for r in self.rows],
        }


@dataclass(frozen=True)
class Plan:
    """The samples and call sizes, decided once for every backend."""

    samples: S.Samples
    chunk: int  # samples per agreement call
    pad: bool  # a fixed batch: the last call filled up
    first: int  # samples in the cold-start call
    batch_sizes: tuple[int, ...]
    dataset: str | None
    shapes: str = ""  # the resolved input shapes, one line (cnn/shapes.py)


def plan_inputs(
    model: str | os.PathLike,
    batch_sizes: Sequence[int],
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    limit: int | None = None,
    inputs: str | os.PathLike | None = None,
    shape: Sequence[int] | None = None,
    dims: Mapping[str, int] | None = None,
    seed: int = 0,
    flags: RecipeFlags | None = None,
    log: Callable[[str], None] = print,
) -> Plan:
    """Where the samples come from (module docstring) and the sizes of the calls."""
    from dataio.datasets import DATASETS

    info = shp.model_info(model)
    if not info.inputs:
        raise ValueError(f"{model}: the graph has no inputs to feed")
    named = info.metadata.get("dataset")
    if dataset is None and inputs is None and named in DATASETS:
        dataset = named
    if dataset is not None or (inputs is not None and Path(inputs).is_dir()):
        if len(info.inputs) != 1:
            raise ValueError(
                f"{model}: images feed a model with one input; this one has "
                f"{len(info.inputs)} ({', '.join(i.name for i in info.inputs)})"
            )
        (spec,) = info.inputs
        recipe, note = resolve_recipe(info.metadata, spec.dims, flags)
        if note:
            log(f"note: {note}")
        shp.resolve(info.inputs, dims, required=False)  # refuses unknown --dim names
        dims_ = _image_dims(spec, recipe, dims or {})
        if dataset is not None:
            samples: S.Samples = S.DatasetSamples(
                spec.name, recipe, dataset, data_dir, limit, log=log
            )
        else:
            samples = S.image_samples(inputs, spec.name, recipe, limit, error=log)
        resolved = shp.Resolved(info.inputs, {spec.name: dims_}, [recipe.describe()])
    elif inputs is not None:
        resolved = shp.resolve(info.inputs, dims, shape, required=False)
        samples = S.file_samples(inputs, info.inputs, resolved.shapes, limit)
    else:
        resolved = shp.resolve(info.inputs, dims, shape)
        fixed, _ = S.call_batch(info.inputs, resolved)
        count = limit or max(S.DEFAULT_RANDOM_SAMPLES, fixed or 1)
        samples = S.random_samples(info.inputs, resolved, count, seed)
    if samples.n == 0:
        raise ValueError("no samples to compare on (--limit 0?)")
    sample_dims = {k: [None, *v.shape[1:]] for k, v in samples.batch(0, 1).items()}
    for name, d in resolved.shapes.items():
        sample_dims[name][0] = d[0]
    fixed, per_sample = S.call_batch(info.inputs, sample_dims)
    chunk = S.chunk_size(fixed, per_sample)
    sizes = tuple(dict.fromkeys(batch_sizes)) if fixed is None else (fixed,)
    if fixed is not None and tuple(batch_sizes) != (fixed,):
        log(
            f"note: the batch is fixed at {fixed} (by the model, --dim or --shape): "
            f"timed at {fixed}"
        )
    shown = shp.Resolved(info.inputs, sample_dims, resolved.notes)
    return Plan(samples, chunk, fixed is not None, fixed or 1, sizes, dataset, shown.line())


def _image_dims(spec: shp.InputSpec, recipe: Recipe, dims: Mapping[str, int]) -> list:
    """The input's dims once images of ``recipe`` fill it (the batch None unless the
    model or ``--dim`` fixes it)."""
    from cnn.images import check_input

    want = check_input(spec.name, spec.dims, recipe)
    first = spec.dims[0] if isinstance(spec.dims[0], int) else dims.get(str(spec.dims[0]))
    return [first, *want]


# -- running the backends ---------------------------------------------------------------


@dataclass
class _Result:
    outputs: list[np.ndarray]
    precision: str
    import_s: float | None
    cold_start_s: float
    times: dict[int, list[float]]


def _run_isolated(
    backend: Backend,
    model: str,
    plan: Plan,
    folder: Path,
    *,
    rounds: int,
    warmup: int,
    max_seconds: float,
    bar: bool,
    threads: int | None,
    timeout: float,
    ort_log_level: int = 3,
) -> _Result:
    """One backend in a fresh worker process (cnn/worker.py); RuntimeError: one line."""
    from cnn import worker

    outputs_path = folder / f"{backend.name}.outputs.npz"
    spec = {
        "backend": backend.name,
        "model": str(model),
        "threads": threads,
        "samples": plan.samples.spec(folder),
        "first": plan.first,
        "agreement": {"chunk": plan.chunk, "pad": plan.pad, "outputs": str(outputs_path)},
        "timing": {
            "sizes": list(plan.batch_sizes),
            "rounds": rounds,
            "warmup": warmup,
            "warmup_s": 0.5,
            "max_seconds": max_seconds,
        },
        "bar": bar,
    }
    # stderr shown: the worker's progress bars are the user's
    result = worker.launch(
        spec, timeout=timeout, env={ORT_LOG_ENV: str(ort_log_level)}, show_stderr=True
    )
    with np.load(outputs_path) as data:
        outputs = [data[f"output{i}"] for i in range(result["outputs"])]
    return _Result(
        outputs,
        result["precision"],
        result["import_s"],
        result["cold_start_s"],
        {int(k): v for k, v in result["times"].items()},
    )


class _AsSession:
    """A loaded runner with InferenceSession's ``run`` (for bench.time_interleaved)."""

    def __init__(self, loaded) -> None:
        self.loaded = loaded

    def run(self, names, feeds):
        return self.loaded(feeds)


def _run_interleaved(
    backends: Sequence[Backend],
    model: str,
    plan: Plan,
    *,
    rounds: int,
    warmup: int,
    bar: bool,
    threads: int | None,
    skip: Callable[[Backend, str], None],
    log: Callable[[str], None],
) -> dict[str, _Result]:
    """Every backend in this process; timed in alternating rounds (bench.time_interleaved)."""
    from cnn.bench import time_interleaved
    from cnn.worker import agreement_outputs, one_line, start

    first = plan.samples.head(plan.first)
    results: dict[str, _Result] = {}
    loaded = {}
    for b in backends:
        try:
            started = start(b, model, first, threads)
            outputs = agreement_outputs(
                started.loaded, plan.samples, plan.chunk, plan.pad, bar=bar, desc=b.name
            )
        except Exception as exc:
            skip(b, one_line(exc))
            continue
        loaded[b.name] = started.loaded
        results[b.name] = _Result(outputs, started.loaded.precision, None, started.cold_start_s, {})
        log(f"{b.name}: cold start {started.cold_start_s:.2f} s, {plan.samples.n} samples run")
    sessions = {name: _AsSession(run) for name, run in loaded.items()}
    for size in plan.batch_sizes:
        times = time_interleaved(sessions, plan.samples.head(size), rounds, warmup)
        for name, t in times.items():
            results[name].times[size] = t
    return results


# -- agreement --------------------------------------------------------------------------


def agreement(
    outputs: Sequence[np.ndarray], reference: Sequence[np.ndarray]
) -> tuple[float, float, float | None, np.ndarray | None]:
    """(max abs diff, max diff / output scale, top-1 agreement, top-1 indices) over
    every output; top-1 from the first output when it is (N, classes)."""
    if len(outputs) != len(reference):
        raise ValueError(f"{len(outputs)} outputs, the reference has {len(reference)}")
    worst_abs = worst_rel = 0.0
    for i, (o, r) in enumerate(zip(outputs, reference, strict=True)):
        if o.shape != r.shape:
            raise ValueError(f"output {i} has shape {o.shape}, the reference's is {r.shape}")
        if o.size == 0:
            continue
        a, b = o.astype(np.float64), r.astype(np.float64)
        with np.errstate(invalid="ignore"):  # inf - inf: handled below
            diff = np.abs(a - b)
        diff[np.isnan(diff)] = np.inf  # NaN on one side, or opposite infinities
        diff[(a == b) | (np.isnan(a) & np.isnan(b))] = 0.0  # equal infinities, NaN on both
        finite = np.abs(b[np.isfinite(b)])
        scale = float(finite.max()) if finite.size else 0.0
        d = float(diff.max())
        worst_abs = max(worst_abs, d)
        worst_rel = max(worst_rel, d / scale if scale > 0 else d)
    first, ref = outputs[0], reference[0]
    if first.ndim == 2 and first.shape[1] > 1 and len(first):
        top = first.argmax(1)
        return worst_abs, worst_rel, float(np.mean(top == ref.argmax(1))), top
    return worst_abs, worst_rel, None, None


def _percentile_ms(times: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(times) * 1e3, q))


def compare(
    model: str | os.PathLike,
    backends: Sequence[str] | str | None = None,
    batch_sizes: Sequence[int] = (1, 64),
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    limit: int | None = None,
    inputs: str | os.PathLike | None = None,
    shape: Sequence[int] | None = None,
    dims: Mapping[str, int] | None = None,
    seed: int = 0,
    flags: RecipeFlags | None = None,
    rounds: int = 30,
    warmup: int = 3,
    max_seconds: float = 10.0,
    interleaved: bool = False,
    threads: int | None = None,
    progress: bool | None = None,
    timeout: float = 3600.0,
    ort_log_level: int = ORT_LOG_DEFAULT,
    log: Callable[[str], None] = print,
) -> Comparison:
    """One row per (backend, batch size) that ran, each compared with the reference:
    the first backend, in the order given, that ran. A backend that is not installed
    or fails is one line in ``skipped`` (and a row of :func:`render_table`); when none
    runs, the rows are empty."""
    chosen = select(
        backends if isinstance(backends, str) or backends is None else ",".join(backends)
    )
    model = str(model)
    skipped: list[str] = []

    def skip(b: Backend, why: str) -> None:
        line = why if why.startswith(f"{b.name}:") else f"{b.name}: {why}"
        skipped.append(line)
        log(f"skipped {line}")

    runnable = []
    for b in chosen:
        why = b.available()
        if why is None:
            runnable.append(b)
        else:
            skip(b, why)
    if backends is None:
        log("note: onnx-reference (onnx's NumPy reference evaluator: slow) runs only when named")
    plan = plan_inputs(
        model,
        batch_sizes,
        dataset=dataset,
        data_dir=data_dir,
        limit=limit,
        inputs=inputs,
        shape=shape,
        dims=dims,
        seed=seed,
        flags=flags,
        log=log,
    )
    log(f"inputs: {plan.samples.description}")
    shp.print_line("compare", plan.shapes)
    bar = wants_bar(progress)
    results: dict[str, _Result] = {}
    if interleaved:
        quiet_onnxruntime(ort_log_level)
        results = _run_interleaved(
            runnable,
            model,
            plan,
            rounds=rounds,
            warmup=warmup,
            bar=bar,
            threads=threads,
            skip=skip,
            log=log,
        )
    else:
        with tempfile.TemporaryDirectory(prefix="cnn-compare-") as tmp:
            for b in runnable:
                t0 = time.perf_counter()
                try:
                    results[b.name] = _run_isolated(
                        b,
                        model,
                        plan,
                        Path(tmp),
                        rounds=rounds,
                        warmup=warmup,
                        max_seconds=max_seconds,
                        bar=bar,
                        threads=threads,
                        timeout=timeout,
                        ort_log_level=ort_log_level,
                    )
                except RuntimeError as exc:
                    skip(b, str(exc))
                    continue
                r = results[b.name]
                calls = ", ".join(f"batch {s}: {len(t)}" for s, t in r.times.items())
                log(
                    f"{b.name}: cold start {r.cold_start_s:.2f} s, timed calls ({calls}), "
                    f"{time.perf_counter() - t0:.1f} s in all"
                )
    ran = [b.name for b in chosen if b.name in results]
    if not ran:
        return Comparison(model, plan.samples.description, "", [], skipped, plan.dataset)
    reference = ran[0]  # the first backend that ran
    if reference != chosen[0].name:
        log(f"note: {chosen[0].name} did not run: the reference is {reference}")
    ref = results[reference]
    rows = []
    labels = plan.samples.labels
    agreements = {}
    for name, r in results.items():
        try:
            agreements[name] = agreement(r.outputs, ref.outputs)
        except ValueError as exc:
            skip(next(b for b in runnable if b.name == name), f"outputs differ in form: {exc}")
    for size in plan.batch_sizes:
        for name, r in results.items():
            if name not in agreements:
                continue
            abs_d, rel_d, top1, top = agreements[name]
            accuracy = None
            if labels is not None and top is not None and len(top) == len(labels):
                accuracy = float(np.mean(top == labels))
            t = r.times[size]
            p50 = _percentile_ms(t, 50)
            rows.append(
                CompareRow(
                    backend=name,
                    batch_size=size,
                    max_abs_diff=abs_d,
                    top1_agreement=top1,
                    accuracy=accuracy,
                    p50_ms=p50,
                    p90_ms=_percentile_ms(t, 90),
                    p99_ms=_percentile_ms(t, 99),
                    throughput_ips=size / (p50 / 1e3),
                    cold_start_s=r.cold_start_s,
                    precision=r.precision,
                    max_rel_diff=rel_d,
                    import_s=r.import_s,
                    timed_calls=len(t),
                )
            )
    return Comparison(model, plan.samples.description, reference, rows, skipped, plan.dataset)


def compare_backends(
    model: str | os.PathLike,
    backends: Sequence[str] | str | None = ("numba", "onnxruntime"),
    batch_sizes: Sequence[int] = (1, 64),
    **options,
) -> list[CompareRow]:
    """The rows of :func:`compare`."""
    return compare(model, backends, batch_sizes, **options).rows


# -- output -----------------------------------------------------------------------------


def render_table(
    rows: Sequence[CompareRow], reference: str | None = None, failed: Sequence[str] = ()
) -> str:
    """The rows as a rich table (plain text when rich is missing); ``failed``: a row per
    backend that did not run (``name: why`` lines, as in ``Comparison.skipped``)."""
    headers = [
        "backend",
        "precision",
        "batch",
        "max |diff|",
        "max rel",
        "top-1 agree",
        "accuracy",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "images/s",
        "cold start s",
    ]
    cells = [
        [
            r.backend,
            r.precision,
            str(r.batch_size),
            f"{r.max_abs_diff:.2e}",
            f"{r.max_rel_diff:.2e}",
            "-" if r.top1_agreement is None else f"{r.top1_agreement:.4f}",
            "-" if r.accuracy is None else f"{r.accuracy:.4f}",
            f"{r.p50_ms:.3f}",
            f"{r.p90_ms:.3f}",
            f"{r.p99_ms:.3f}",
            f"{r.throughput_ips:,.0f}",
            f"{r.cold_start_s:.2f}",
        ]
        for r in rows
    ]
    reasons = []
    for line in failed:
        name, _, why = line.partition(": ")
        cells.append([name, "-", "-", "did not run", *(["-"] * 8)])
        reasons.append(f"{name} did not run: {why}")
    title = "backend comparison" + (f" (against {reference})" if reference else "")
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(x) for x in col) for col in zip(headers, *cells, strict=True)]
        lines = [title]
        lines += ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
        lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
        return "\n".join(lines + reasons)
    table = Table(title=title, caption="\n".join(reasons) or None, caption_justify="left")
    for h in headers:
        table.add_column(h, justify="left" if h in ("backend", "precision") else "right")
    for row in cells:
        table.add_row(*row)
    console = Console(width=160, record=True, force_terminal=False)
    with console.capture() as cap:
        console.print(table)
    return cap.get()


def plot_throughput(rows: Sequence[CompareRow], path: str | os.PathLike) -> None:
    """A bar chart: images per second per backend, grouped by batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dataio.files import atomic_write

    backends = list(dict.fromkeys(r.backend for r in rows))
    sizes = list(dict.fromkeys(r.batch_size for r in rows))
    width = 0.8 / max(1, len(backends))
    fig, ax = plt.subplots(figsize=(max(7, 1.5 * len(backends)), 4))
    for i, b in enumerate(backends):
        values = [
            next((r.throughput_ips for r in rows if r.backend == b and r.batch_size == s), 0.0)
            for s in sizes
        ]
        ax.bar([j + i * width for j in range(len(sizes))], values, width, label=b)
    ax.set_xticks([j + width * (len(backends) - 1) / 2 for j in range(len(sizes))])
    ax.set_xticklabels([f"batch {s}" for s in sizes])
    ax.set_ylabel("images / s (median)")
    ax.set_title("throughput per backend")
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
