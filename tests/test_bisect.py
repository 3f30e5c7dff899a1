"""Bisection finds the first node where the numba backend and onnxruntime disagree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cnn.bisect import bisect_backends
from cnn.cli import main
from runtime.ops.registry import OPS, OpVersion

LENET = Path(__file__).resolve().parents[1] / "exported" / "lenet5.onnx"


def test_agreeing_backends(capsys):
    report = bisect_backends(LENET, batch=2)
    assert report.first_bad is None
    assert [d.op_type for d in report.nodes][:3] == ["Conv", "Tanh", "AveragePool"]
    assert len(report.nodes) == 13 and all(d.max_abs_diff <= 1e-4 for d in report.nodes)
    assert main(["bisect", str(LENET)]) == 0
    assert "agree on all 13 node outputs" in capsys.readouterr().out


def test_a_broken_op_is_found(monkeypatch, capsys):
    # AveragePool off by 0.01: the first two Convs and Tanh still agree; the pool does not.
    real = OPS["AveragePool"][0].fn
    broken = OpVersion("AveragePool", 1, lambda x, **kw: real(x, **kw) + np.float32(0.01))
    monkeypatch.setitem(OPS, "AveragePool", [broken])
    report = bisect_backends(LENET)
    bad = report.first_bad
    assert bad is not None and bad.index == 2 and bad.op_type == "AveragePool"
    assert bad.max_abs_diff == pytest.approx(0.01, rel=1e-3)
    assert main(["bisect", str(LENET), "--backends", "numba,onnxruntime"]) == 1
    assert "first difference: node 'node_avg_pool2d' (AveragePool)" in capsys.readouterr().out


def test_bad_backend_list(capsys):
    assert main(["bisect", str(LENET), "--backends", "numba"]) == 2
    assert "bisect compares two of" in capsys.readouterr().err


def test_the_tolerance_grows_with_the_outputs_scale():
    """float32 rounding on activations of thousands (PP-OCRv4's detector: 0.0098 on a
    conv output of 4,849) is no difference; the same diff on outputs near 1 is."""
    from cnn.bisect import BisectReport, NodeDiff

    big = NodeDiff(0, "conv", "Conv", "y", (1, 8), 0.0098, scale=4849.0)
    small = NodeDiff(1, "relu", "Relu", "z", (1, 8), 0.0098, scale=1.0)
    assert BisectReport(("numba", "onnxruntime"), 1e-4, [big], rtol=1e-5).first_bad is None
    assert BisectReport(("numba", "onnxruntime"), 1e-4, [big], rtol=0.0).first_bad is big
    assert BisectReport(("numba", "onnxruntime"), 1e-4, [big, small], rtol=1e-5).first_bad is small
    report = bisect_backends(LENET)
    assert all(0 < d.scale < 100 for d in report.nodes if d.op_type == "Conv")
