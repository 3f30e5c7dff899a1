"""``cnn predict``: classify image files with any image classifier.

Each image is prepared as cnn/images.py says (the model's metadata, else the flags,
else a default read from the input's shape, with a note), run in batches of
``batch_size`` (the model's own batch if it fixes one), and written out as each
batch finishes: text lines, CSV or a JSON array, on stdout or into a file (through
a temp file and a rename). A file that is not an image gets its own error line and
the others go on. Outputs that are not probabilities (logits) are shown as their
softmax, said once in a note.

    cnn predict exported/lenet5.onnx shirt.png boot.jpg
    cnn predict resnet18.onnx photos/ --labels imagenet.txt --out predictions.csv
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnn.images import Recipe, load_image


@dataclass(frozen=True)
class Prediction:
    image: str
    predictions: list[dict]  # {"label", "index", "probability"}, best first

    def as_dict(self) -> dict:
        return {"image": self.image, "predictions": self.predictions}


def read_labels(path: str | os.PathLike) -> list[str]:
    """A labels file: a JSON list, or one label per line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise OSError(f"--labels {path}: {exc.strerror or exc}") from None
    if path.suffix == ".json":
        try:
            labels = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"--labels {path}: not JSON ({exc})") from None
        if not isinstance(labels, list):
            raise ValueError(f"--labels {path}: expected a JSON list of labels")
        return [str(v) for v in labels]
    return [line.strip() for line in text.splitlines() if line.strip()]


def metadata_labels(metadata: dict[str, str]) -> list[str] | None:
    try:
        labels = json.loads(metadata["labels"])
    except (KeyError, ValueError):
        return None
    return [str(v) for v in labels] if isinstance(labels, list) else None


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x.astype(np.float64) - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def is_distribution(scores: np.ndarray) -> bool:
    """Rows of non-negative values that sum to 1: already probabilities."""
    if not np.isfinite(scores).all() or (scores < 0).any() or (scores > 1 + 1e-6).any():
        return False
    return bool(np.allclose(scores.sum(axis=1), 1.0, atol=1e-3))


def classify(
    run: Callable[[np.ndarray], np.ndarray],
    files: Iterable[str | os.PathLike],
    recipe: Recipe,
    *,
    batch_size: int,
    fixed_batch: bool = False,
    top_k: int = 3,
    labels: Sequence[str] | None = None,
    invert: bool = False,
    on_error: Callable[[str], None] = print,
    on_note: Callable[[str], None] = print,
    on_batch: Callable[[int], None] | None = None,
) -> Iterator[Prediction]:
    """Predictions for ``files``, streamed a batch at a time. ``run`` maps a batch
    (N, ...) to scores (N, classes). A file that is not an image goes to
    ``on_error`` and is left out; ``on_batch(n)`` is told of every file handled."""
    softmax: bool | None = None
    pending: list[tuple[str, np.ndarray]] = []

    def flush() -> Iterator[Prediction]:
        nonlocal softmax
        x = np.stack([a for _, a in pending])
        real = len(x)
        if fixed_batch and real < batch_size:
            x = np.resize(x, (batch_size, *x.shape[1:]))  # fill the fixed batch
        scores = np.asarray(run(x))
        scores = _as_classes(scores)[:real]
        if softmax is None:
            softmax = not is_distribution(scores)
            if softmax:
                on_note("the model's outputs are not probabilities: shown are their softmax")
            if labels is not None and len(labels) != scores.shape[1]:
                raise ValueError(f"{len(labels)} labels for an output of {scores.shape[1]} classes")
        probs = _softmax(scores) if softmax else scores
        k = min(top_k, probs.shape[1])
        for (path, _), p in zip(pending, probs, strict=True):
            top = np.argsort(-p, kind="stable")[:k]
            yield Prediction(
                path,
                [
                    {
                        "label": labels[i] if labels is not None else str(int(i)),
                        "index": int(i),
                        "probability": float(p[i]),
                    }
                    for i in top
                ],
            )
        pending.clear()

    for path in files:
        try:
            pending.append((str(path), load_image(path, recipe, invert=invert)))
        except (OSError, ValueError) as exc:
            on_error(str(exc) if str(path) in str(exc) else f"{path}: {exc}")
        if on_batch is not None:
            on_batch(1)
        if len(pending) == batch_size:
            yield from flush()
    if pending:
        yield from flush()


def check_classifier(shape: Sequence | None) -> None:
    """Refuse, before any run, an output the model declares other than (N, classes) or
    (N, classes, 1, 1) (symbolic sizes past the classes: a segmentation map); an
    undeclared shape is left to the run."""
    if not shape:
        return
    if len(shape) >= 2 and all(d == 1 for d in shape[2:]):
        return
    shown = "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
    raise ValueError(
        f"the model's output has shape {shown}: cnn predict expects (N, classes) scores "
        "from an image classifier"
    )


def _as_classes(scores: np.ndarray) -> np.ndarray:
    """(N, classes), from (N, classes) or (N, classes, 1, 1)."""
    if scores.ndim > 2 and all(d == 1 for d in scores.shape[2:]):
        scores = scores.reshape(scores.shape[:2])
    if scores.ndim != 2:
        raise ValueError(
            f"the model's output has shape {list(scores.shape)}: cnn predict expects "
            "(N, classes) scores from an image classifier"
        )
    return scores


class Writer:
    """Predictions in one format onto a text stream, as they come."""

    def __init__(self, stream: io.TextIOBase, fmt: str, top_k: int) -> None:
        self.stream, self.fmt, self.top_k = stream, fmt, top_k
        self.count = 0
        if fmt == "csv":
            self._csv = csv.writer(stream, lineterminator="\n")
            header = ["image"]
            for r in range(1, top_k + 1):
                header += [f"label_{r}", f"index_{r}", f"probability_{r}"]
            self._csv.writerow(header)
        elif fmt == "json":
            stream.write("[")

    def write(self, p: Prediction) -> None:
        if self.fmt == "text":
            best = ", ".join(f"{q['label']} {q['probability']:.3f}" for q in p.predictions)
            self.stream.write(f"{p.image}: {best}\n")
        elif self.fmt == "csv":
            row = [p.image]
            for q in p.predictions:
                row += [q["label"], q["index"], f"{q['probability']:.6g}"]
            self._csv.writerow(row)
        else:
            body = json.dumps(p.as_dict(), indent=2).replace("\n", "\n  ")
            self.stream.write(("," if self.count else "") + "\n  " + body)
        self.count += 1
        self.stream.flush()

    def close(self) -> None:
        if self.fmt == "json":
            self.stream.write("\n]\n" if self.count else "]\n")
        self.stream.flush()


def output_format(out: str | None, json_flag: bool, csv_flag: bool) -> str:
    """text, json or csv: from --json/--csv, else from --out's suffix."""
    if json_flag and csv_flag:
        raise ValueError("--json and --csv: choose one")
    if json_flag:
        return "json"
    if csv_flag:
        return "csv"
    if out:
        suffix = Path(out).suffix.lower()
        if suffix in (".json", ".csv"):
            return suffix[1:]
        raise ValueError(f"--out {out}: expected a .csv or .json file (or give --json / --csv)")
    return "text"
