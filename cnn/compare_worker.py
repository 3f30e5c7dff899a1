"""One backend of ``cnn compare``, alone in its own process (the default mode), and the
steps it takes, which the one-process ``--interleaved`` mode shares:

1. import the backend's library (``import_s``), load the model and run the first
   call (``cold_start_s``: session creation plus first result);
2. the agreement calls over every sample (outputs saved for the parent to compare);
3. per batch size, warm-up calls, then timed calls: ``rounds`` of them, or fewer
   when they pass ``max_seconds`` (three at least).

    python -m cnn.compare_worker SPEC.json

SPEC.json says the model, backend, samples (cnn/samples.py), call sizes and the
files to write: outputs (.npz), result (.json) and, on failure, the error as one
line (the parent shows it; no traceback reaches the user).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnn.backends import Backend, Loaded, get_backend
from cnn.samples import Samples, from_spec
from dataio.progress import progress


@dataclass
class Started:
    loaded: Loaded
    import_s: float
    cold_start_s: float


def start(
    backend: Backend, model: str, first: dict[str, np.ndarray], threads: int | None
) -> Started:
    """Import, load, first call: each timed."""
    t0 = time.perf_counter()
    why = backend.available()
    if why is not None:
        raise RuntimeError(why)
    t1 = time.perf_counter()
    loaded = backend.load(model, threads=threads)
    loaded(first)
    return Started(loaded, t1 - t0, time.perf_counter() - t1)


def agreement_outputs(
    loaded: Loaded, samples: Samples, chunk: int, pad: bool, *, bar: bool, desc: str
) -> list[np.ndarray]:
    """Every output over every sample, concatenated along the first axis."""
    parts: list[list[np.ndarray]] = []
    calls = -(-samples.n // chunk)
    with progress(calls, desc, unit="call", bar=bar, line=False, leave=False) as p:
        for feeds, real in samples.calls(chunk, pad):
            outs = loaded(feeds)
            if not parts:
                parts = [[] for _ in outs]
            for store, out in zip(parts, outs, strict=True):
                out = np.asarray(out)
                store.append(out[:real] if out.ndim and len(out) == chunk else out)
            p.update(1)
    return [np.concatenate(store) if store[0].ndim else store[0] for store in parts]


def time_alone(
    loaded: Loaded,
    feeds: dict[str, np.ndarray],
    rounds: int,
    warmup: int,
    max_seconds: float,
    *,
    bar: bool = False,
    desc: str = "timing",
) -> list[float]:
    """Seconds per call: warm-up (``warmup`` calls and 0.5 s at least, ``max_seconds``/2
    at most), then up to ``rounds`` timed calls while within ``max_seconds``."""
    t0 = time.perf_counter()
    n = 0
    while n < 1 or (
        (n < warmup or time.perf_counter() - t0 < 0.5)
        and time.perf_counter() - t0 < max_seconds / 2
    ):
        loaded(feeds)
        n += 1
    times: list[float] = []
    t0 = time.perf_counter()
    with progress(rounds, desc, unit="call", bar=bar, line=False, leave=False) as p:
        while len(times) < rounds and (len(times) < 3 or time.perf_counter() - t0 < max_seconds):
            t = time.perf_counter()
            loaded(feeds)
            times.append(time.perf_counter() - t)
            p.update(1)
    return times


def run(spec: dict) -> dict:
    """The whole of one backend's part: writes the outputs, returns the result."""
    backend = get_backend(spec["backend"])
    samples = from_spec(spec["samples"])
    chunk, pad = int(spec["chunk"]), bool(spec["pad"])
    first = samples.head(int(spec["first"]))
    started = start(backend, spec["model"], first, spec.get("threads"))
    outputs = agreement_outputs(
        started.loaded, samples, chunk, pad, bar=spec["bar"], desc=f"{backend.name}: agreement"
    )
    np.savez(spec["outputs"], **{f"output{i}": o for i, o in enumerate(outputs)})
    times = {}
    for size in spec["batch_sizes"]:
        times[str(size)] = time_alone(
            started.loaded,
            samples.head(size),
            spec["rounds"],
            spec["warmup"],
            spec["max_seconds"],
            bar=spec["bar"],
            desc=f"{backend.name}: batch {size}",
        )
    return {
        "precision": started.loaded.precision,
        "import_s": started.import_s,
        "cold_start_s": started.cold_start_s,
        "times": times,
        "outputs": len(outputs),
    }


def one_line(exc: BaseException) -> str:
    """An exception as one line: its type and its message, lines folded with '; '."""
    message = str(exc).split("Stack backtrace:")[0]  # tract's errors carry Rust's
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    text = "; ".join(lines) or "(no message)"
    if len(text) > 400:
        text = text[:400] + " ..."
    return f"{type(exc).__name__}: {text}"


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) != 1:
        print("usage: python -m cnn.compare_worker SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    try:
        result = run(spec)
    except BaseException as exc:  # everything, as one line for the parent: no traceback
        Path(spec["error"]).write_text(one_line(exc) + "\n")
        return 1
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
