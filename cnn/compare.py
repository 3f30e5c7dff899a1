"""Compare backends on one model: agreement on a test set, and speed.

Agreement: each backend's outputs on the dataset's test images against the first
backend's (max abs difference, top-1 agreement) and against the labels (accuracy).
Speed: per batch size, the backends run interleaved in rounds after a warm-up, in
one process, so machine noise hits them alike; p50/p90/p99 latency per call and
images per second at the median. Cold start: session creation plus the first run.

    cnn compare exported/lenet5.onnx --backends numba,onnxruntime --batch-sizes 1,64
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from cnn.bench import time_interleaved
from cnn.images import Recipe
from runtime.session import InferenceSession


@dataclass(frozen=True)
class CompareRow:
    backend: str
    batch_size: int
    max_abs_diff: float
    top1_agreement: float
    accuracy: float | None
    p50_ms: float
    p90_ms: float
    p99_ms: float
    throughput_ips: float
    cold_start_s: float

    def as_dict(self) -> dict:
        return asdict(self)


def dataset_batches(
    recipe: Recipe, dataset: str, data_dir: str | None, limit: int | None, log=print
) -> tuple[Callable[[int, int], np.ndarray], np.ndarray]:
    """(batch maker, labels) for the dataset's test split, shaped for the model."""
    from dataio.datasets import load_dataset  # numpy-only: no torch

    data = load_dataset(dataset, data_dir, log=log)
    images = data.test.images[:limit]
    labels = data.test.labels[:limit]

    def batch(start: int, stop: int) -> np.ndarray:
        x = images[start:stop].astype(np.float32) / 255.0  # (n, 28, 28)
        if tuple(x.shape[1:]) != recipe.size:
            from PIL import Image

            size = recipe.size[::-1]  # PIL takes (W, H)
            resized = [
                np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BILINEAR))
                for img in images[start:stop]
            ]
            x = np.stack(resized).astype(np.float32) / 255.0  # (n, H, W)
        return np.ascontiguousarray(np.repeat(x[:, None], recipe.channels, axis=1))

    return batch, labels


def _percentile_ms(times: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(times) * 1e3, q))


def compare_backends(
    model: str | os.PathLike,
    backends: Sequence[str] = ("numba", "onnxruntime"),
    batch_sizes: Sequence[int] = (1, 64),
    *,
    dataset: str = "fashion-mnist",
    data_dir: str | None = None,
    limit: int | None = None,
    rounds: int = 30,
    warmup: int = 3,
    progress: bool = True,
    log=print,
) -> list[CompareRow]:
    """One row per (backend, batch size); the first backend is the reference."""
    cold: dict[str, float] = {}
    sessions: dict[str, InferenceSession] = {}
    for b in backends:
        t0 = time.perf_counter()
        sess = InferenceSession(model, backend=b)
        (inp,) = sess.get_inputs()
        shape = [1 if not isinstance(d, int) else d for d in inp.shape]
        sess.run(None, {inp.name: np.zeros(shape, np.float32)})
        cold[b] = time.perf_counter() - t0
        sessions[b] = sess
    ref = sessions[backends[0]]
    (inp,) = ref.get_inputs()
    recipe = Recipe.from_metadata(ref.get_modelmeta().custom_metadata_map, inp.shape)
    batch, labels = dataset_batches(recipe, dataset, data_dir, limit, log=log)

    # Agreement on the whole (limited) test set, in chunks.
    outputs: dict[str, list[np.ndarray]] = {b: [] for b in backends}
    chunk = 256
    steps = range(0, len(labels), chunk)
    bar = _bar(len(steps) * len(backends), "agreement", progress)
    for start in steps:
        x = batch(start, start + chunk)
        for b in backends:
            outputs[b].append(sessions[b].run(None, {inp.name: x})[0])
            bar.update(1)
    bar.close()
    full = {b: np.concatenate(v) for b, v in outputs.items()}
    reference = full[backends[0]]

    # Speed: interleaved rounds per batch size.
    rows = []
    for bs in batch_sizes:
        x = batch(0, bs)
        if len(x) < bs:
            x = np.concatenate([x] * (-(-bs // len(x))))[:bs]
        times = time_interleaved(sessions, {inp.name: x}, rounds, warmup)
        for b in backends:
            out = full[b]
            p50 = _percentile_ms(times[b], 50)
            rows.append(
                CompareRow(
                    backend=b,
                    batch_size=bs,
                    max_abs_diff=float(np.max(np.abs(out - reference))) if out.size else 0.0,
                    top1_agreement=float(np.mean(out.argmax(1) == reference.argmax(1))),
                    accuracy=float(np.mean(out.argmax(1) == labels)),
                    p50_ms=p50,
                    p90_ms=_percentile_ms(times[b], 90),
                    p99_ms=_percentile_ms(times[b], 99),
                    throughput_ips=bs / (p50 / 1e3),
                    cold_start_s=cold[b],
                )
            )
    return rows


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


def render_table(rows: Sequence[CompareRow]) -> str:
    """The rows as a rich table (plain text when rich is missing)."""
    headers = [
        "backend",
        "batch",
        "max |diff|",
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
            str(r.batch_size),
            f"{r.max_abs_diff:.2e}",
            f"{r.top1_agreement:.4f}",
            "-" if r.accuracy is None else f"{r.accuracy:.4f}",
            f"{r.p50_ms:.3f}",
            f"{r.p90_ms:.3f}",
            f"{r.p99_ms:.3f}",
            f"{r.throughput_ips:,.0f}",
            f"{r.cold_start_s:.2f}",
        ]
        for r in rows
    ]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(x) for x in col) for col in zip(headers, *cells, strict=True)]
        lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
        lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
        return "\n".join(lines)
    table = Table(title="backend comparison")
    for h in headers:
        table.add_column(h, justify="left" if h == "backend" else "right")
    for row in cells:
        table.add_row(*row)
    console = Console(width=140, record=True, force_terminal=False)
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
    width = 0.8 / len(backends)
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, b in enumerate(backends):
        values = [
            next(r.throughput_ips for r in rows if r.backend == b and r.batch_size == s)
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
