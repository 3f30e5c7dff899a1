"""How many threads a numba run uses when the session leaves it to us: the cores that
other processes leave idle.

numba's parallel kernels run on GNU OpenMP here (``numba.threading_layer()`` is
``'omp'``: the ``tbb`` layer needs TBB's library on the loader path). Each ``prange``
region ends at a barrier where every thread waits for every other one. When other
processes keep the cores busy, the kernel deschedules one of our threads for a time
slice in many of the hundreds of regions a network runs, and the other threads wait
for it each time: on a 2-core machine with two busy processes, ResNet-18 at batch 1
went from 20 to about 500 ms (onnxruntime, whose calling thread takes the work that
a descheduled worker has not started: 17 to 62 ms).

So a session with ``threads=None`` asks :func:`default_threads` before each run: as
many threads as there are cores (of this process's affinity) that other processes
left idle since the previous decision, at least one. The measure is the busy time of
those cores in ``/proc/stat`` less this process's own CPU time, over at least
``WINDOW_S``: our own threads' work (and their spinning) never counts as load. On a
quiet machine every core is idle and a run uses them all, as before; with one
thread there is no barrier to wait at. Where ``/proc/stat`` cannot be read (not
Linux), every core.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

WINDOW_S = 0.1  # shortest interval to decide on: /proc/stat counts in 10 ms ticks
# Other processes' load (in cores) from which a core counts as taken: a web server's
# or a desktop's background, a few percent of a core, leaves every core to us.
TAKEN_FROM = 0.5


def affinity_cores() -> list[int]:
    """The CPUs this process may run on (every CPU where the OS does not say)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def busy_seconds(cpus: list[int], path: str = "/proc/stat") -> float | None:
    """Seconds the CPUs ``cpus`` have spent busy since boot (user, nice, system, irq,
    softirq and steal: steal is time the hypervisor gave to someone else), or None
    where ``path`` cannot be read."""
    wanted = {f"cpu{c}" for c in cpus}
    ticks = 0
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                if not line.startswith("cpu"):
                    break
                name, *fields = line.split()
                if name in wanted:
                    v = [int(x) for x in fields[:8]]
                    ticks += v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
    except (OSError, ValueError, IndexError):
        return None
    return ticks / _CLOCK_TICKS


try:
    _CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
except (AttributeError, ValueError, OSError):
    _CLOCK_TICKS = 100


class IdleCores:
    """The thread count for the next run: the cores other processes left idle.

    ``busy``: seconds all our cores were busy, ``own``: this process's CPU seconds,
    ``clock``: wall seconds (injected by the tests to simulate a load)."""

    def __init__(
        self,
        cores: int,
        busy: Callable[[], float | None],
        own: Callable[[], float] = time.process_time,
        clock: Callable[[], float] = time.monotonic,
        window_s: float = WINDOW_S,
    ) -> None:
        self.cores, self.window_s = cores, window_s
        self._busy, self._own, self._clock = busy, own, clock
        self._lock = threading.Lock()
        self.others = 0.0  # other processes' load, in cores, over the last window
        self.threads = cores
        self._mark = self._sample()

    def _sample(self) -> tuple[float, float, float] | None:
        busy = self._busy()
        return None if busy is None else (self._clock(), busy, self._own())

    def __call__(self) -> int:
        mark = self._mark  # without the lock first: most calls fall inside a window
        if mark is None or self._clock() - mark[0] < self.window_s:
            return self.threads
        with self._lock:
            if self._mark is None or self._clock() - self._mark[0] < self.window_s:
                return self.threads  # another thread decided meanwhile
            now = self._sample()
            if now is None:
                return self.threads
            wall = now[0] - self._mark[0]
            others = ((now[1] - self._mark[1]) - (now[2] - self._mark[2])) / wall
            self._mark = now
            self.others = min(max(others, 0.0), float(self.cores))
            idle = self.cores - self.others
            self.threads = max(1, min(self.cores, int(idle + (1 - TAKEN_FROM))))
            return self.threads


_policy: IdleCores | None = None
_policy_lock = threading.Lock()


def default_threads(most: int) -> int:
    """The threads the next run of a session without ``threads`` uses, at most ``most``
    (the first call starts the measure: a session calls it when it is made)."""
    global _policy
    if _policy is None:
        with _policy_lock:
            if _policy is None:
                cpus = affinity_cores()
                _policy = IdleCores(len(cpus), lambda: busy_seconds(cpus))
    return min(most, _policy())
