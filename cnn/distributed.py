"""Batch inference on a Ray cluster: ``cnn predict MODEL SOURCE --ray [ADDRESS]``.

Ray Data reads the images (``read_binary_files`` for a folder or a list of files,
``read_parquet`` for a Parquet file of paths or image bytes), a pool of actors runs
:class:`Predictor` over the batches (one session per worker, created once), and the
driver writes the rows in input order, as ``cnn predict`` does on one machine: text,
CSV, JSON or Parquet, one row per image, through a temp file and a rename.
Preprocessing, the top-k and the error lines are ``cnn predict``'s own code
(cnn/predict.py's ``classify``, cnn/images.py's recipe and reader).

In your own Ray Data pipeline, three lines::

    from cnn.distributed import Predictor
    ds = ray.data.read_binary_files("photos/", include_paths=True, num_cpus=0)  # path, bytes
    ds.map_batches(Predictor, fn_constructor_kwargs={"model": "resnet18.onnx"}, batch_size=32,
                   compute=ray.data.ActorPoolStrategy(size=2), num_cpus=1).write_parquet("out/")

Or all of it: ``predict("resnet18.onnx", "photos/", output="predictions.csv")``.

Nothing lost: a file that is not an image is a row with its ``error``; a worker that
dies is restarted and its batch retried by Ray (``max_restarts``,
``max_task_retries``); the driver checks that every input came back exactly once.

Ray is imported lazily: ``pip install 'cnn-pipeline[ray]'``.
"""

from __future__ import annotations

import io
import os
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from cnn import predict as P
from cnn.images import RecipeFlags, image_files, load_image, resolve_recipe

INSTALL = "pip install 'cnn-pipeline[ray]' (in a clone: pip install '.[ray]')"
# Reading is I/O (decoding runs in the workers): read tasks hold no CPU, else the
# workers holding every core would leave none to read with and the run would stall.
# Without a CPU to wait for, Ray would start them all at once, each in a process of
# its own; one reader per worker keeps up (a task reads a block of ~1,250 small files
# in 0.3 s) and on 2 busy cores halved a 20,000-image run (41 s -> 21 s).
_READ_CPUS = 0
RETRIES = 3  # restarts of a dead worker, and retries of the batch it held
# Test hook, never set in production: "N:MARKER" makes the first worker to reach its
# (N+1)-th batch create the file MARKER and die with os._exit; MARKER keeps it to once.
KILL_HOOK_ENV = "CNN_TEST_KILL_WORKER_AFTER"


class RayNotInstalledError(ImportError):
    """``--ray`` without Ray installed."""


def import_ray() -> Any:
    """The ``ray`` module, or one line saying how to install it."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise RayNotInstalledError(
            f"Ray Data is not installed (--ray needs it): {INSTALL}"
        ) from None
    return ray


def columns(top_k: int) -> list[str]:
    """The output columns: ``cnn predict --csv``'s, then ``error``."""
    cols = ["image"]
    for r in range(1, top_k + 1):
        cols += [f"label_{r}", f"index_{r}", f"probability_{r}"]
    return [*cols, "error"]


class _Named(io.BytesIO):
    """Image bytes that print as their name, so load_image's errors name the image."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self._label = name

    def __str__(self) -> str:
        return self._label


def _assigned_cpus() -> int | None:
    """The CPUs Ray gave this worker, rounded down (None outside Ray)."""
    try:
        import ray

        if not ray.is_initialized():  # outside Ray: never start it from here
            return None
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except Exception:  # no Ray, or not in a Ray worker
        return None
    return max(1, int(cpus)) if cpus else None


class Predictor:
    """A callable class for ``ds.map_batches``: one session per worker, made once.

    Input columns: ``path`` (the image's name; the file read when there is no ``bytes``)
    and optionally ``bytes`` (the encoded image). Output: :func:`columns` ``(top_k)``:
    ``image``, ``label_r``, ``index_r`` and ``probability_r`` for r = 1..top_k
    (``""``, -1 and NaN where the model has fewer classes, or the image failed) and
    ``error`` (``""``, or the line ``cnn predict`` prints for a bad file).

    ``model``: a path or the ONNX bytes. ``threads``: the session's threads (None: the
    CPUs Ray gave the worker, so workers x threads = the cores they hold). ``flags``,
    ``labels``, ``invert``, ``top_k``, ``batch_size``: as ``cnn predict``'s options.
    """

    def __init__(
        self,
        model: str | os.PathLike | bytes,
        *,
        backend: str = "numba",
        threads: int | None = None,
        flags: RecipeFlags | None = None,
        labels: Sequence[str] | None = None,
        invert: bool = False,
        top_k: int = 3,
        batch_size: int = 32,
    ) -> None:
        from runtime import InferenceSession

        self.threads = threads or _assigned_cpus()
        self.session = InferenceSession(model, backend=backend, threads=self.threads)
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs)
            raise ValueError(f"cnn predict feeds one image input; the model has {names}")
        (self.input,) = inputs
        meta = self.session.get_modelmeta().custom_metadata_map
        self.recipe, _ = resolve_recipe(meta, self.input.shape, flags)
        self.labels = list(labels) if labels is not None else P.metadata_labels(meta)
        fixed = self.input.shape[0] if isinstance(self.input.shape[0], int) else None
        self.batch_size, self.fixed = fixed or batch_size, fixed is not None
        self.invert, self.top_k = invert, top_k
        self._batches = 0
        self._kill_after = _kill_hook()

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input.name: x})[0]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._kill_after is not None:
            _maybe_die(self._kill_after, self._batches)
        self._batches += 1
        names = [str(p) for p in batch["path"]]
        data = batch.get("bytes")
        if data is None:
            sources: list[Any] = names
        else:
            sources = [_Named(d, n) for d, n in zip(data, names, strict=True)]
        errors: dict[int, str] = {}
        current = -1

        def numbered() -> Iterator[Any]:
            nonlocal current
            for current, source in enumerate(sources):  # noqa: B007 (read by on_error)
                yield source

        def on_error(line: str) -> None:
            errors[current] = line

        predictions = iter(
            list(
                P.classify(
                    self._run,
                    numbered(),
                    self.recipe,
                    batch_size=self.batch_size,
                    fixed_batch=self.fixed,
                    top_k=self.top_k,
                    labels=self.labels,
                    invert=self.invert,
                    on_error=on_error,
                    on_note=lambda line: None,
                )
            )
        )
        rows = [
            _row(name, None, errors[i], self.top_k)
            if i in errors
            else _row(name, next(predictions), "", self.top_k)
            for i, name in enumerate(names)
        ]
        return {c: np.array([r[c] for r in rows], dtype=_dtype(c)) for c in columns(self.top_k)}


def _dtype(column: str) -> Any:
    if column.startswith("index_"):
        return np.int64
    if column.startswith("probability_"):
        return np.float64
    return object


def _row(name: str, p: P.Prediction | None, error: str, top_k: int) -> dict[str, Any]:
    row: dict[str, Any] = {"image": name, "error": error}
    found = p.predictions if p is not None else []
    for r in range(1, top_k + 1):
        q = found[r - 1] if r <= len(found) else None
        row[f"label_{r}"] = q["label"] if q else ""
        row[f"index_{r}"] = q["index"] if q else -1
        row[f"probability_{r}"] = q["probability"] if q else float("nan")
    return row


def _prediction(row: dict[str, Any], top_k: int) -> P.Prediction:
    """A Predictor row back into cnn predict's Prediction (the top-k it holds)."""
    return P.Prediction(
        str(row["image"]),
        [
            {
                "label": str(row[f"label_{r}"]),
                "index": int(row[f"index_{r}"]),
                "probability": float(row[f"probability_{r}"]),
            }
            for r in range(1, top_k + 1)
            if int(row[f"index_{r}"]) >= 0
        ],
    )


def _kill_hook() -> int | None:
    spec = os.environ.get(KILL_HOOK_ENV)
    if not spec:
        return None
    after, _, marker = spec.partition(":")
    return int(after) if marker else None


def _maybe_die(after: int, done: int) -> None:
    """The test hook: the first worker past ``after`` batches dies, once."""
    if done < after:
        return
    marker = os.environ[KILL_HOOK_ENV].partition(":")[2]
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os._exit(1)


# --- the whole run -----------------------------------------------------------------


@dataclass
class Summary:
    """What a :func:`predict` run did."""

    images: int = 0
    predictions: int = 0
    errors: list[str] = field(default_factory=list)
    workers: int = 0
    threads: int = 0
    nodes: int = 0
    warmup_s: float = 0.0
    seconds: float = 0.0  # the whole run, from Ray up to the output's rename
    first_s: float = 0.0  # to the first result: warm-up, workers' start, first blocks
    busy_s: float = 0.0  # the workers' time in Predictor calls, all workers together

    def rate(self) -> float:
        """Images per second over the whole run."""
        return self.images / self.seconds if self.seconds else 0.0

    def worker_rate(self) -> float:
        """Images per second of one busy worker (decoding and inference, no start-up):
        W workers on N machines approach N x W x this once start-up is amortised."""
        return self.images / self.busy_s if self.busy_s else 0.0


@dataclass(frozen=True)
class _Source:
    """What to read: names in input order, and the Ray dataset that reads them."""

    names: list[str]  # every input, in order; the output has one row for each
    keys: list[str]  # the ``path`` Ray's reader gives each input's row
    missing: dict[int, str]  # input index -> the error line of a file that is not there
    make: Callable[[Any, int], Any]  # (ray, readers) -> Dataset: path (+ bytes)


def _source(source: str | os.PathLike | Sequence[str | os.PathLike], recipe) -> _Source:
    """A folder, a list of paths, or a Parquet file (column ``path``, and ``bytes``)."""
    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    if not items:
        raise ValueError("source: expected a folder, image files or a Parquet file, received none")
    if len(items) == 1 and str(items[0]).endswith(".parquet") and Path(items[0]).is_file():
        return _parquet_source(Path(items[0]))
    names = [str(p) for p in image_files(items)]
    missing = {}
    for i, name in enumerate(names):
        if not os.path.isfile(name):
            missing[i] = _error_line(name, recipe)
    keys = [os.path.abspath(n) for n in names]
    present = [k for i, k in enumerate(keys) if i not in missing]

    def make(ray: Any, readers: int) -> Any:
        return ray.data.read_binary_files(
            present, include_paths=True, num_cpus=_READ_CPUS, concurrency=readers
        )

    return _Source(names, keys, missing, make)


def _error_line(name: str, recipe) -> str:
    """The line cnn predict prints for a file it cannot read (P.classify's wording)."""
    try:
        load_image(name, recipe)
    except (OSError, ValueError) as exc:
        return str(exc) if name in str(exc) else f"{name}: {exc}"
    return f"{name}: not a file"


def _parquet_source(path: Path) -> _Source:
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    if "path" not in schema.names:
        raise ValueError(
            f"{path}: expected a column 'path' (image paths or names, and a column 'bytes' "
            f"with the encoded images), received columns {schema.names}"
        )
    cols = ["path", "bytes"] if "bytes" in schema.names else ["path"]
    names = [str(v) for v in pq.read_table(path, columns=["path"]).column("path").to_pylist()]

    def make(ray: Any, readers: int) -> Any:
        ds = ray.data.read_parquet(str(path.resolve()), num_cpus=_READ_CPUS, concurrency=readers)
        return ds.select_columns(cols)

    return _Source(names, names, {}, make)


def output_format(output: str | os.PathLike | None, fmt: str | None) -> str:
    """text, csv, json or parquet: ``fmt`` if given, else from the output's suffix."""
    if fmt is not None:
        if fmt not in ("text", "csv", "json", "parquet"):
            raise ValueError(f"format {fmt!r}: expected text, csv, json or parquet")
        return fmt
    if output is not None and Path(output).suffix.lower() == ".parquet":
        return "parquet"
    return P.output_format(str(output) if output is not None else None, False, False)


def predict(
    model: str | os.PathLike,
    source: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    backend: str = "numba",
    ray_address: str | None = None,
    workers: int | None = None,
    threads: int = 1,
    output: str | os.PathLike | TextIO | None = None,
    fmt: str | None = None,
    top_k: int = 3,
    batch_size: int = 32,
    labels: Sequence[str] | None = None,
    flags: RecipeFlags | None = None,
    invert: bool = False,
    progress: bool | None = None,
    on_error: Callable[[str], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> Summary:
    """Classify ``source`` on Ray and write what ``cnn predict`` writes.

    ``source``: a folder, a list of image paths (folders expanded as cnn predict does),
    or a ``.parquet`` file with a ``path`` column (and a ``bytes`` column of encoded
    images, else the paths are read). ``ray_address``: an existing cluster (None: a
    local Ray instance, shut down at the end; if Ray is already initialised in this
    process, that one). ``workers`` x ``threads``: actors, each holding ``threads``
    CPUs for its session (default: as many workers as the cluster's CPUs allow).
    ``output``: a .csv, .json, .parquet or text file, written atomically, or a text
    stream (default stdout); ``fmt`` overrides the suffix. Errors (files that are not
    images) go to ``on_error`` a line each, in input order, and are counted.
    """
    ray = import_ray()
    from runtime import InferenceSession

    say = on_note or (lambda line: print(f"cnn predict: {line}", file=sys.stderr))
    report = on_error or (lambda line: print(f"cnn predict: error: {line}", file=sys.stderr))
    fmt = output_format(output if not hasattr(output, "write") else None, fmt)
    if fmt == "parquet" and (output is None or hasattr(output, "write")):
        raise ValueError("parquet output needs a file: give output='predictions.parquet'")
    if threads < 1:
        raise ValueError(f"threads: expected a positive integer, received {threads}")

    model_bytes = Path(model).read_bytes() if not isinstance(model, bytes) else model
    probe = InferenceSession(model_bytes, backend="onnxruntime")  # the recipe, on the driver
    inputs = probe.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise ValueError(f"{model}: cnn predict feeds one image input; it has {names}")
    P.check_classifier(probe.get_outputs()[0].shape)
    meta = probe.get_modelmeta().custom_metadata_map
    recipe, note = resolve_recipe(meta, inputs[0].shape, flags)
    if note:
        say(f"note: {note}")
    src = _source(source, recipe)

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=ray_address or "local",
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    try:
        summary = _run(
            ray,
            model_bytes,
            src,
            {
                "backend": backend,
                "threads": threads,
                "flags": flags,
                "labels": labels,
                "invert": invert,
                "top_k": top_k,
                "batch_size": batch_size,
            },
            workers=workers,
            progress=progress,
            write=lambda rows: _write(rows, fmt, output, top_k),
            say=say,
            report=report,
        )
    except ray.exceptions.RayError as exc:  # a worker failed past its retries
        raise RuntimeError(f"ray: {str(exc).strip().splitlines()[0]}") from exc
    finally:
        if started_here:
            ray.shutdown()
    return summary


def _run(
    ray: Any,
    model: bytes,
    src: _Source,
    kwargs: dict[str, Any],
    *,
    workers: int | None,
    progress: bool | None,
    write: Callable[[Iterator[dict]], None],
    say: Callable[[str], None],
    report: Callable[[str], None],
) -> Summary:
    """Warm the nodes, map the source through a pool of Predictors, write the rows."""
    t0 = time.perf_counter()
    threads = kwargs["threads"]
    cluster_cpus = int(ray.cluster_resources().get("CPU", 1))
    if workers is None:
        workers = max(1, cluster_cpus // threads)
    if workers < 1:
        raise ValueError(f"workers: expected a positive integer, received {workers}")
    if workers * threads > cluster_cpus:
        raise ValueError(
            f"{workers} workers x {threads} threads need {workers * threads} CPUs; "
            f"the cluster has {cluster_cpus}"
        )
    summary = Summary(images=len(src.names), workers=workers, threads=threads)
    model_ref = ray.put(model)
    summary.nodes, summary.warmup_s = _warm_nodes(
        ray, model_ref, kwargs["backend"], kwargs["batch_size"]
    )
    say(
        f"ray: {len(src.names)} images, {workers} workers x {threads} threads on "
        f"{summary.nodes} node(s); JIT warm-up {summary.warmup_s:.1f} s"
    )
    ctx = ray.data.DataContext.get_current()
    saved = ctx.execution_options.preserve_order, ctx.enable_progress_bars
    ctx.execution_options.preserve_order = True  # rows come back in input order
    ctx.enable_progress_bars = sys.stderr.isatty() if progress is None else progress
    # Nothing for Ray to read (no inputs, or none of them there): no dataset, whose
    # readers refuse an empty list; the missing files' error rows still come out.
    results: Iterator[dict] = iter(())
    if len(src.missing) < len(src.names):
        results = _predictions(ray, src, model_ref, kwargs, workers)

    def counted(rows: Iterator[dict]) -> Iterator[dict]:
        for n, row in enumerate(rows, 1):
            if n == 1:
                summary.first_s = time.perf_counter() - t0
            summary.busy_s += float(row.get("busy_s", 0.0))
            if row["error"]:
                summary.errors.append(row["error"])
                report(row["error"])
            else:
                summary.predictions += 1
                yield row

    try:
        write(counted(_in_order(results, src)))
    finally:  # the caller's own Ray session keeps its settings
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved
    summary.seconds = time.perf_counter() - t0
    say(
        f"ray: done, {summary.predictions} predictions, {len(summary.errors)} errors in "
        f"{summary.seconds:.1f} s ({summary.rate():.0f} images/s); the first after "
        f"{summary.first_s:.1f} s; workers busy {summary.busy_s:.1f} s "
        f"({summary.worker_rate():.0f} images/s a worker)"
    )
    return summary


def _predictions(
    ray: Any, src: _Source, model_ref: Any, kwargs: dict[str, Any], workers: int
) -> Iterator[dict]:
    """The Predictors' rows, as Ray returns them: the source mapped by ``workers`` actors."""
    with warnings.catch_warnings():
        # Ray 2.60 has no named parameter for the actor's retries and warns that the
        # remote-args dict is deprecated; its own default retries without a bound.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        ds = src.make(ray, workers).map_batches(
            _RemotePredictor,
            fn_constructor_kwargs={"model_ref": model_ref, **kwargs},
            batch_size=kwargs["batch_size"],
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=kwargs["threads"],
            max_restarts=RETRIES,
            max_task_retries=RETRIES,
        )
    return ds.iter_rows()


def _in_order(results: Iterator[dict], src: _Source) -> Iterator[dict]:
    """Every input's row, in input order, each exactly once (else RuntimeError).

    Ray keeps the order (``preserve_order``), so rows pass straight through; one that
    comes early waits in ``held`` for those before it.
    """
    where: dict[str, deque[int]] = {}
    for i, key in enumerate(src.keys):
        if i not in src.missing:
            where.setdefault(key, deque()).append(i)
    held: dict[int, dict] = {}
    nxt = 0

    def ready() -> Iterator[dict]:
        nonlocal nxt
        while nxt < len(src.names):
            if nxt in src.missing:
                yield {"image": src.names[nxt], "error": src.missing[nxt]}
            elif nxt in held:
                yield held.pop(nxt)
            else:
                return
            nxt += 1

    yield from ready()
    for result in results:
        key = str(result["path"])
        queue = where.get(key)
        if not queue:
            raise RuntimeError(f"ray returned {key} more times than it was given")
        index = queue.popleft()
        row = dict(result)
        row["image"] = src.names[index]
        if row["error"]:
            row["error"] = row["error"].replace(key, src.names[index])
        held[index] = row
        yield from ready()
    lost = [src.names[i] for queue in where.values() for i in queue]
    if lost:
        raise RuntimeError(
            f"ray returned {len(src.names) - len(lost)} of {len(src.names)} images; "
            f"not returned: {', '.join(lost[:5])}"
        )


class _RemotePredictor(Predictor):
    """Predictor built from the model in Ray's object store (one copy per node)."""

    def __init__(self, model_ref: Any, **kwargs: Any) -> None:
        import ray

        super().__init__(ray.get(model_ref), **kwargs)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        out = super().__call__(batch)
        out["path"] = batch["path"]  # the key the driver puts rows back in order by
        # each row's share of the batch's time: summed, the workers' busy time
        share = (time.perf_counter() - t0) / max(1, len(out["path"]))
        out["busy_s"] = np.full(len(out["path"]), share)
        return out


def _warm_nodes(ray: Any, model_ref: Any, backend: str, batch_size: int) -> tuple[int, float]:
    """Compile the model's numba kernels once per node before the workers start, so
    they load them from numba's on-disk cache instead of each compiling them (cold,
    LeNet-5's kernels take tens of seconds; a node of 32 workers would compile 32 times).
    The model itself, not ``cnn warmup``'s every kernel: that compiles for a minute
    cold (2 busy cores), this only what the model runs; warm, it costs one batch.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU")]
    if backend != "numba":
        return len(nodes), 0.0  # onnxruntime has nothing to compile ahead
    t0 = time.perf_counter()
    task = ray.remote(num_cpus=1)(_warm_up)
    ray.get(
        [
            task.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote(model_ref, batch_size)
            for n in nodes
        ]
    )
    return len(nodes), time.perf_counter() - t0


def _warm_up(model: bytes, batch_size: int) -> None:
    """Runs of the model on zeros, a full batch and one image (the last, partial batch
    may take the one-image paths): numba compiles and caches what they need."""
    from runtime import InferenceSession

    sess = InferenceSession(model, backend="numba", threads=1)
    (inp,) = sess.get_inputs()
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    sizes = [shape[0]] if isinstance(inp.shape[0], int) else [batch_size, 1]
    for n in sizes:
        sess.run(None, {inp.name: np.zeros([n, *shape[1:]], np.float32)})


def _write(rows: Iterator[dict], fmt: str, output: Any, top_k: int) -> None:
    """Rows (no errors) in ``fmt`` into ``output``: a path (atomically) or a stream."""
    from dataio.files import atomic_write

    if fmt == "parquet":
        atomic_write(output, lambda tmp: _write_parquet(rows, tmp, top_k))
        return

    def write_text(stream: TextIO) -> None:
        writer = P.Writer(stream, fmt, top_k)
        for row in rows:
            writer.write(_prediction(row, top_k))
        writer.close()

    if output is None or hasattr(output, "write"):
        write_text(output or sys.stdout)
        return

    def write_file(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            write_text(f)

    atomic_write(output, write_file)


def _write_parquet(rows: Iterator[dict], path: Path, top_k: int, chunk: int = 4096) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    fields = [("image", pa.string())]
    for r in range(1, top_k + 1):
        fields += [(f"label_{r}", pa.string()), (f"index_{r}", pa.int64())]
        fields += [(f"probability_{r}", pa.float64())]
    schema = pa.schema(fields)
    names = schema.names
    with pq.ParquetWriter(path, schema) as writer:
        buffer: list[dict] = []

        def flush() -> None:
            table = pa.Table.from_pylist(
                [{c: _parquet_value(c, row[c]) for c in names} for row in buffer], schema
            )
            writer.write_table(table)
            buffer.clear()

        for row in rows:
            buffer.append(row)
            if len(buffer) == chunk:
                flush()
        if buffer:
            flush()


def _parquet_value(column: str, value: Any) -> Any:
    """None where the model has fewer classes than top_k (index -1)."""
    if column.startswith("index_"):
        return int(value) if int(value) >= 0 else None
    if column.startswith("label_"):
        return str(value) if value != "" else None
    if column.startswith("probability_"):
        return None if np.isnan(value) else float(value)
    return str(value)
