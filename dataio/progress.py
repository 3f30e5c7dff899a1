"""Progress of long loops, shared by training and the tools: a bar on a terminal, one
line per stage in a log.

A log that is not a terminal gets no carriage-return updates: a bar's hundreds of
redraws per epoch made the main job's log hundreds of kilobytes. There, a stage
writes one line when it ends (``desc: 430/430 batch in 4.1 s, loss=0.51``), or
nothing at all with ``line=False`` (when the caller prints its own line next).
``bar=True`` (``--progress``) draws the bar anyway; the bar is tqdm's, and without
tqdm a stage writes its one line.

    with progress(len(batches), "epoch 1/15", unit="batch") as bar:
        for ...:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def wants_bar(bar: bool | None, stream: TextIO | None = None) -> bool:
    """Whether to draw a bar: ``bar`` when given, otherwise whether ``stream`` (stderr)
    is a terminal."""
    if bar is not None:
        return bar
    stream = stream if stream is not None else sys.stderr
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


class Progress:
    """One stage: a tqdm bar, or a line at the end, or nothing (``show=False``)."""

    def __init__(
        self,
        total: int,
        desc: str,
        *,
        unit: str = "it",
        bar: bool | None = None,
        line: bool = True,
        leave: bool = True,
        show: bool = True,
        stream: TextIO | None = None,
    ) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = 0
        self.postfix: dict[str, str] = {}
        self._stream = stream
        self._start = time.perf_counter()
        self._closed = False
        self._line = show and line
        self._tqdm = None
        if show and wants_bar(bar, stream):
            try:
                from tqdm.auto import tqdm
            except ImportError:
                return  # no bar to draw: the stage's line, at the end
            self._tqdm = tqdm(
                total=total,
                desc=desc,
                unit=unit,
                leave=leave,
                dynamic_ncols=True,
                file=stream if stream is not None else sys.stderr,
            )
            self._line = False

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._tqdm is not None:
            self._tqdm.update(n)

    def set_postfix(self, **values: object) -> None:
        """Values shown beside the bar, and at the end of the stage's line."""
        self.postfix = {k: str(v) for k, v in values.items()}
        if self._tqdm is not None:
            self._tqdm.set_postfix(self.postfix, refresh=False)

    def line(self) -> str:
        """The stage's one line: ``desc: n/total unit in s s, key=value, ...``."""
        seconds = time.perf_counter() - self._start
        text = f"{self.desc}: {self.n}/{self.total} {self.unit} in {seconds:.1f} s"
        extra = ", ".join(f"{k}={v}" for k, v in self.postfix.items())
        return f"{text}, {extra}" if extra else text

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._tqdm is not None:
            self._tqdm.close()
        elif self._line:
            stream = self._stream if self._stream is not None else sys.stderr
            print(self.line(), file=stream, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(
    total: int,
    desc: str,
    *,
    unit: str = "it",
    bar: bool | None = None,
    line: bool = True,
    leave: bool = True,
    show: bool = True,
    stream: TextIO | None = None,
) -> Progress:
    """A :class:`Progress` for ``total`` steps of stage ``desc``.

    ``bar``: None draws a bar only when ``stream`` (default stderr) is a terminal,
    True always (``--progress``), False never. Without a bar the stage writes one
    line when it closes, unless ``line`` is False. ``leave``: the bar stays on the
    terminal after the stage. ``show=False``: nothing at all (other DDP ranks).
    """
    return Progress(
        total, desc, unit=unit, bar=bar, line=line, leave=leave, show=show, stream=stream
    )
