"""One backend alone in a process of its own: the one worker behind ``cnn compare``
(each backend in its own process), ``cnn bench`` (fresh-process timings, ``--busy``)
and bench's cold-start probe, and the launcher the parent starts it with.

    python -m cnn.worker SPEC.json

SPEC.json, written by :func:`launch` (run to the end) or :func:`serving` (kept
answering), says:

- ``backend``, ``model``, ``threads``: the session (cnn/backends.py);
- ``samples``: the inputs, as :meth:`cnn.samples.Samples.spec` describes them (arrays
  in a file, a dataset made again, or seeded random data from cnn/shapes.py's
  ``random_feeds``); ``first``: how many samples the first call takes;
- ``agreement`` (optional): ``chunk``, ``pad``, ``outputs``: every output over every
  sample, saved to the ``outputs`` .npz for the parent to compare;
- ``timing`` (optional): per batch size in ``sizes``, a warm-up (``warmup`` calls and
  ``warmup_s`` seconds at least, ``max_seconds``/2 at most), then ``rounds`` timed
  calls, fewer when they pass ``max_seconds`` (null: no limit; three at least);
- ``then`` (optional): one untimed call of that many samples before the peak memory
  is read (the cold-start probe's batch);
- ``serve`` (optional): after a warm-up at ``size`` samples, the worker prints
  ``ready`` and answers each stdin line ``run SETTLE`` with a JSON list: the seconds
  of ``calls`` timed calls after SETTLE seconds of untimed ones, until stdin closes
  (``cnn bench --busy``);
- ``result``, ``error`` (filled in by the launcher): the result JSON it writes, or its
  failure as one line (``Type: message``; no traceback reaches the user).

The result: ``precision``, ``import_s`` (the backend library's import),
``cold_start_s`` (session creation and the first result), ``first_result_s`` (from the
worker's start, before numpy is imported, to the first result, the making of the
inputs left out), ``times`` (seconds per timed call, per batch size), ``outputs`` (how
many the agreement saved) and ``peak_rss_mb`` (VmHWM). A worker never imports torch.

    python -S -m cnn.worker --spin PARENT_PID SECONDS

is a busy loop (``cnn bench --busy``'s load on one core), not a backend.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    import numpy as np

    from cnn.backends import Backend, Loaded
    from cnn.samples import Samples

ROOT = Path(__file__).resolve().parents[1]


# -- the worker's side ------------------------------------------------------------------


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
    import numpy as np

    from dataio.progress import progress

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


def warm_up(
    loaded: Loaded,
    feeds: dict[str, np.ndarray],
    calls: int,
    seconds: float,
    cap_s: float = math.inf,
) -> int:
    """Untimed calls: one at least, then until ``calls`` calls and ``seconds`` have both
    passed, or ``cap_s`` seconds have (compile, plan, caches). Returns the count."""
    t0 = time.perf_counter()
    n = 0
    while n < 1 or (
        (n < calls or time.perf_counter() - t0 < seconds) and time.perf_counter() - t0 < cap_s
    ):
        loaded(feeds)
        n += 1
    return n


def timed_calls(
    loaded: Loaded,
    feeds: dict[str, np.ndarray],
    rounds: int,
    max_seconds: float = math.inf,
    *,
    bar: bool = False,
    desc: str = "timing",
) -> list[float]:
    """Seconds per call: up to ``rounds`` calls while within ``max_seconds`` (three
    calls at least, when ``rounds`` allows)."""
    from dataio.progress import progress

    times: list[float] = []
    t0 = time.perf_counter()
    with progress(rounds, desc, unit="call", bar=bar, line=False, leave=False) as p:
        while len(times) < rounds and (len(times) < 3 or time.perf_counter() - t0 < max_seconds):
            t = time.perf_counter()
            loaded(feeds)
            times.append(time.perf_counter() - t)
            p.update(1)
    return times


def time_alone(
    loaded: Loaded,
    feeds: dict[str, np.ndarray],
    rounds: int,
    warmup: int,
    max_seconds: float = math.inf,
    *,
    warmup_s: float = 0.5,
    bar: bool = False,
    desc: str = "timing",
) -> list[float]:
    """Seconds per call: the warm-up (``warmup`` calls and ``warmup_s`` at least,
    ``max_seconds``/2 at most), then :func:`timed_calls`."""
    warm_up(loaded, feeds, warmup, warmup_s, max_seconds / 2)
    return timed_calls(loaded, feeds, rounds, max_seconds, bar=bar, desc=desc)


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB: VmHWM, not ru_maxrss (Linux carries
    ru_maxrss over from the parent across exec)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _seconds(value: float | None) -> float:
    return math.inf if value is None else float(value)


def serve(
    loaded: Loaded,
    feeds: dict[str, np.ndarray],
    calls: int,
    stdin: TextIO,
    stdout: TextIO,
    *,
    warmup: int = 3,
    warmup_s: float = 1.0,
) -> None:
    """The busy-measurement protocol: warm up, print ``ready``, then answer each line
    ``run SETTLE`` with the seconds of ``calls`` timed calls, after SETTLE seconds of
    untimed ones (so that a load started in between has taken its cores)."""
    warm_up(loaded, feeds, warmup, warmup_s)
    print("ready", file=stdout, flush=True)
    for line in stdin:
        words = line.split()
        if len(words) != 2 or words[0] != "run":
            raise ValueError(f"expected a line 'run SETTLE_SECONDS', received {line.strip()!r}")
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < float(words[1]):
            loaded(feeds)
        print(json.dumps(timed_calls(loaded, feeds, calls)), file=stdout, flush=True)


def run(
    spec: Mapping,
    t0: float | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
) -> dict:
    """Everything the spec asks (module docstring); the result. ``t0``: when the
    process started (the reference of ``first_result_s``)."""
    t0 = time.perf_counter() if t0 is None else t0
    import numpy as np

    from cnn.backends import get_backend
    from cnn.samples import from_spec

    backend = get_backend(spec["backend"])
    t_inputs = time.perf_counter()
    samples = from_spec(spec["samples"])
    first = samples.head(int(spec.get("first", 1)))
    inputs_s = time.perf_counter() - t_inputs
    started = start(backend, spec["model"], first, spec.get("threads"))
    result: dict = {
        "precision": started.loaded.precision,
        "import_s": started.import_s,
        "cold_start_s": started.cold_start_s,
        "first_result_s": time.perf_counter() - t0 - inputs_s,
        "times": {},
        "outputs": 0,
    }
    bar = bool(spec.get("bar", False))
    agreement = spec.get("agreement")
    if agreement:
        outputs = agreement_outputs(
            started.loaded,
            samples,
            int(agreement["chunk"]),
            bool(agreement["pad"]),
            bar=bar,
            desc=f"{backend.name}: agreement",
        )
        np.savez(agreement["outputs"], **{f"output{i}": o for i, o in enumerate(outputs)})
        result["outputs"] = len(outputs)
    timing = spec.get("timing")
    for size in timing["sizes"] if timing else ():
        result["times"][str(size)] = time_alone(
            started.loaded,
            samples.head(int(size)),
            int(timing["rounds"]),
            int(timing["warmup"]),
            _seconds(timing.get("max_seconds")),
            warmup_s=float(timing.get("warmup_s", 0.5)),
            bar=bar,
            desc=f"{backend.name}: batch {size}",
        )
    if spec.get("then"):
        started.loaded(samples.head(int(spec["then"])))
    result["peak_rss_mb"] = peak_rss_mb()
    served = spec.get("serve")
    if served:
        serve(
            started.loaded,
            samples.head(int(served["size"])),
            int(served["calls"]),
            stdin if stdin is not None else sys.stdin,
            stdout if stdout is not None else sys.stdout,
            warmup=int(served.get("warmup", 3)),
            warmup_s=float(served.get("warmup_s", 1.0)),
        )
    return result


def one_line(exc: BaseException) -> str:
    """An exception as one line: its type and its message, lines folded with '; '."""
    message = str(exc).split("Stack backtrace:")[0]  # tract's errors carry Rust's
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    text = "; ".join(lines) or "(no message)"
    if len(text) > 400:
        text = text[:400] + " ..."
    return f"{type(exc).__name__}: {text}"


def spin(parent: int, limit_s: float) -> int:
    """Busy-looping, one core's worth of pure-Python work (``cnn bench --busy``'s load),
    until the process ``parent`` is no longer this one's parent (even one killed with
    no chance to clean up) or ``limit_s`` seconds have passed."""
    deadline = time.monotonic() + limit_s
    while os.getppid() == parent and time.monotonic() < deadline:
        for _ in range(200000):
            pass
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    t0 = time.perf_counter()
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) == 3 and argv[0] == "--spin":
        return spin(int(argv[1]), float(argv[2]))
    if len(argv) != 1:
        print("usage: python -m cnn.worker SPEC.json | --spin PARENT_PID SECONDS", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    try:
        result = run(spec, t0)
    except BaseException as exc:  # everything, as one line for the parent: no traceback
        Path(spec["error"]).write_text(one_line(exc) + "\n")
        return 1
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


# -- the parent's side ------------------------------------------------------------------


class WorkerError(RuntimeError):
    """A worker that gave no result, as one line."""


def worker_error(stderr: str) -> str:
    """A worker's failure in one line from its stderr: the exception's own line
    (``Type: message``), the last one of a traceback, not the traceback squashed."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1].strip()[:500] if lines else "(no message)"


def spin_command(parent: int, limit_s: float) -> list[str]:
    """The command of one busy loop (:func:`spin`); ``-S``: no site packages, nothing
    but the loop (run it with :func:`environment`)."""
    return [sys.executable, "-S", "-m", "cnn.worker", "--spin", str(parent), str(limit_s)]


def environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment, ``env`` on top, and the project on PYTHONPATH."""
    out = {**os.environ, **(env or {})}
    out["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), out.get("PYTHONPATH")) if p)
    return out


def _write_spec(spec: Mapping, folder: Path) -> dict:
    full = {**spec, "result": str(folder / "result.json"), "error": str(folder / "error.txt")}
    (folder / "spec.json").write_text(json.dumps(full))
    return full


def _failure(full: Mapping, returncode: int | None, stderr: str | None) -> str:
    """Why a worker gave no result: its error line, else its stderr's last line."""
    error = Path(full["error"])
    if error.is_file():
        return error.read_text().strip()
    if stderr and stderr.strip():
        return worker_error(stderr)
    if returncode is not None and returncode < 0:
        return f"its process ended with signal {-returncode} and no result"
    return f"its process ended with exit {returncode} and no result"


def launch(
    spec: Mapping,
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    show_stderr: bool = False,
) -> dict:
    """Run ``python -m cnn.worker`` on ``spec`` to its end; its result. ``env``: extra
    environment (NUMBA_CACHE_DIR, onnxruntime's log level); ``show_stderr``: the
    worker's stderr (progress bars) goes to this process's, else it is kept for the
    error. WorkerError (one line) when it fails, ends without a result, or passes
    ``timeout`` seconds (then it is killed)."""
    with tempfile.TemporaryDirectory(prefix="cnn-worker-") as tmp:
        full = _write_spec(spec, Path(tmp))
        with tempfile.TemporaryFile("w+") as err:
            try:
                proc = subprocess.run(
                    [sys.executable, "-m", "cnn.worker", str(Path(tmp) / "spec.json")],
                    env=environment(env),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=None if show_stderr else err,
                    timeout=timeout,
                )
            except subprocess.TimeoutExpired:
                raise WorkerError(f"no result within {timeout:.0f} s") from None
            err.seek(0)
            stderr = None if show_stderr else err.read()
        result = Path(full["result"])
        if proc.returncode != 0 or not result.is_file():
            raise WorkerError(_failure(full, proc.returncode, stderr))
        return json.loads(result.read_text())


class Served:
    """A serving worker (``serve`` in its spec): :meth:`ask` for one round of timings."""

    def __init__(self, proc: subprocess.Popen, full: Mapping, err: TextIO) -> None:
        self.proc, self.full, self.err = proc, full, err

    def _stopped(self) -> WorkerError:
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.err.seek(0)
        return WorkerError(_failure(self.full, self.proc.returncode, self.err.read()))

    def ask(self, settle_s: float) -> list[float]:
        """Seconds of the spec's ``calls`` timed calls after ``settle_s`` untimed."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(f"run {settle_s}\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise self._stopped() from None
        line = self.proc.stdout.readline()
        if not line:
            raise self._stopped()
        return json.loads(line)


@contextmanager
def serving(spec: Mapping, *, env: Mapping[str, str] | None = None) -> Iterator[Served]:
    """A worker started on ``spec`` (with ``serve``) and warmed up, killed and reaped on
    exit whatever happens inside the block. WorkerError (one line) when it does not
    get ready."""
    with tempfile.TemporaryDirectory(prefix="cnn-worker-") as tmp:
        full = _write_spec(spec, Path(tmp))
        # stderr to a file: a pipe nobody reads while the worker runs could fill and stall it
        with tempfile.TemporaryFile("w+") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cnn.worker", str(Path(tmp) / "spec.json")],
                env=environment(env),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
            try:
                served = Served(proc, full, err)
                assert proc.stdout is not None
                if proc.stdout.readline().strip() != "ready":
                    raise served._stopped()
                yield served
            finally:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    sys.exit(main())
