"""The thread count of a session without ``threads`` (runtime/threads.py): every core
on a quiet machine, the cores other processes leave idle on a busy one; and the
busy-loop processes behind ``cnn bench --busy`` always stop."""

from __future__ import annotations

import time
from pathlib import Path

import numba
import numpy as np
import pytest

from cnn.bench import busy_processes
from runtime import InferenceSession
from runtime.threads import IdleCores, affinity_cores, busy_seconds

LENET = Path(__file__).resolve().parents[1] / "exported" / "lenet5.onnx"


class _Machine:
    """Simulated counters: ``others`` cores of other processes' load and ``ours`` of
    this process's, for ``step`` seconds per tick."""

    def __init__(self) -> None:
        self.t = self.busy = self.own = 0.0

    def tick(self, seconds: float, others: float, ours: float) -> None:
        self.t += seconds
        self.busy += seconds * (others + ours)
        self.own += seconds * ours

    def policy(self, cores: int) -> IdleCores:
        return IdleCores(cores, lambda: self.busy, lambda: self.own, lambda: self.t)


@pytest.mark.parametrize(
    ("cores", "others", "ours", "want"),
    [
        (2, 0.0, 2.0, 2),  # quiet: our own two threads are not load
        (2, 0.05, 2.0, 2),  # a background of a few percent leaves every core
        (2, 2.0, 1.0, 1),  # every core busy: one thread, no barrier to wait at
        (2, 1.0, 1.0, 1),  # one of two busy
        (2, 0.4, 1.6, 2),  # less than half a core taken: still ours
        (8, 3.0, 5.0, 5),
        (8, 8.0, 0.0, 1),  # never fewer than one
    ],
)
def test_threads_follow_the_idle_cores(cores, others, ours, want):
    m = _Machine()
    policy = m.policy(cores)
    m.tick(0.2, others, ours)
    assert policy() == want
    assert policy.others == pytest.approx(others)


def test_the_decision_waits_for_a_window_and_follows_the_load():
    m = _Machine()
    policy = m.policy(4)
    m.tick(0.2, 4.0, 0.0)
    assert policy() == 1
    m.tick(0.01, 0.0, 4.0)  # too short to measure: the last decision holds
    assert policy() == 1
    m.tick(0.3, 0.0, 1.0)  # the load went away
    assert policy() == 4


def test_no_proc_stat_means_every_core(tmp_path):
    assert busy_seconds([0], str(tmp_path / "missing")) is None
    policy = IdleCores(4, lambda: None)
    time.sleep(0.15)
    assert policy() == 4


def test_busy_seconds_reads_the_cpus_asked_for(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text(
        "cpu  1000 0 0 9000 0 0 0 0 0 0\n"
        "cpu0 100 10 20 900 50 1 2 3 0 0\n"
        "cpu1 400 0 100 500 0 0 0 7 0 0\n"
        "intr 1 2 3\n"
    )
    ticks = busy_seconds([0], str(stat)), busy_seconds([0, 1], str(stat))
    assert ticks[0] is not None and ticks[1] is not None
    from runtime.threads import _CLOCK_TICKS

    assert ticks[0] * _CLOCK_TICKS == pytest.approx(136)  # idle and iowait left out
    assert ticks[1] * _CLOCK_TICKS == pytest.approx(136 + 507)


def test_a_session_uses_fewer_threads_with_every_core_busy():
    """Real processes: with a busy loop on each of our cores, a session left to choose
    runs on fewer threads than cores (one, on two cores); told, it keeps its count."""
    cores = min(len(affinity_cores()), numba.config.NUMBA_NUM_THREADS)
    if cores < 2:
        pytest.skip("one core: one thread whatever the load")
    x = np.zeros((2, 1, 28, 28), np.float32)
    chosen, told = InferenceSession(LENET), InferenceSession(LENET, threads=cores)
    chosen.run(None, {"input": x})
    with busy_processes(len(affinity_cores())):
        for _ in range(3):  # over windows of 0.5 s with the loops running
            time.sleep(0.5)
            chosen.run(None, {"input": x})
            assert numba.get_num_threads() < cores
            told.run(None, {"input": x})
            assert numba.get_num_threads() == cores


def test_busy_processes_stop_even_after_an_error():
    with pytest.raises(KeyError), busy_processes(2) as procs:
        assert all(p.poll() is None for p in procs)  # running
        raise KeyError("inside")
    assert all(p.poll() is not None for p in procs)
