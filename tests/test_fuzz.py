"""The fuzzer (``tests/fuzz.py``): its fixed-seed slice has no failures, and its
driver tells each kind of failure apart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fuzz
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SLICE = 80


# Run as a script: under tox (PYTHONSAFEPATH) `-m tests.fuzz` would not find the checkout.
FUZZ = ROOT / "tests" / "fuzz.py"


@pytest.mark.slow
def test_fixed_seed_slice_has_no_failures(tmp_path):
    """CI's slice: a crash, hang, untyped exception or a result that differs from
    onnxruntime's fails it. A fresh interpreter runs it: the driver forks, which
    GNU OpenMP refuses once this process has run a parallel kernel."""
    out = tmp_path / "summary.json"
    cmd = [sys.executable, str(FUZZ), "--cases", str(SLICE), "--seed", "0"]
    proc = subprocess.run(
        [*cmd, "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=1200
    )
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["cases"] == SLICE
    assert summary["failures"] == 0, proc.stdout[-6000:]
    outcomes = summary["outcomes"]
    # The slice reaches both ends: models refused with typed errors, and results
    # compared with onnxruntime's.
    assert outcomes["typed"] > SLICE // 4 and outcomes["match"] > SLICE // 10, outcomes


def test_edge_cases_give_onnxruntimes_answer_or_a_typed_error(tmp_path):
    """Each base fed an empty batch (onnxruntime answers: so must we) and a 1x1 image."""
    out = tmp_path / "edges.json"
    cmd = [sys.executable, str(FUZZ), "--cases", "0", "--edges", "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["cases"] == 4 and summary["failures"] == 0, proc.stdout[-6000:]
    assert summary["outcomes"]["match"] >= 2, summary["outcomes"]  # both empty batches


def test_cases_are_reproducible():
    bases = [fuzz.lenet(), fuzz.squeezenet()]
    one = fuzz.make_case(bases, 0, 7)
    two = fuzz.make_case(bases, 0, 7)
    assert one[0] == two[0] and one[2:] == two[2:]
    assert fuzz.make_case(bases, 1, 7)[0] != one[0]


def test_compare_checks_shape_dtype_and_values():
    a = np.ones((2, 3), np.float32)
    assert fuzz.compare([a], [a.copy()]) == ""
    assert "shape" in fuzz.compare([a], [a.reshape(3, 2)])
    assert "dtype" in fuzz.compare([a], [a.astype(np.float64)])
    assert "output 0" in fuzz.compare([a], [a + 1e-3])
    assert fuzz.compare([a * 1000], [a * 1000 + 1e-3]) == ""  # 1e-4 of the scale
    assert "outputs" in fuzz.compare([a], [a, a])


def _fake(behaviour):
    def ours(model, feeds):
        if behaviour == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        if behaviour == "hang":
            time.sleep(60)
        if behaviour == "untyped":
            return {"kind": "untyped", "error": "KeyError", "message": "k"}, None
        return {"kind": "ran"}, [np.ones(2, np.float32)]

    return ours


@pytest.mark.parametrize("behaviour", ["crash", "hang", "untyped", "ran"])
def test_the_driver_tells_failures_apart(monkeypatch, behaviour):
    """The child that these cases fork runs no numba kernel, so forking here is safe."""
    monkeypatch.setattr(fuzz, "make_case", lambda *a: (b"", {}, "fake", ["none"]))
    monkeypatch.setattr(fuzz, "_ours", _fake(behaviour))
    monkeypatch.setattr(fuzz, "_theirs", lambda m, f: ("", [np.ones(2, np.float32)]))
    result = fuzz.run_case([], 0, 0, timeout=2.0, mem_bytes=1 << 34)
    expected = {"crash": "crash", "hang": "hang", "untyped": "untyped", "ran": "match"}
    assert result["outcome"] == expected[behaviour], result
    if behaviour == "crash":
        assert result["signal"] == signal.SIGSEGV
