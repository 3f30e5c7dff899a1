"""`cnn summary`: a Keras-style table read from the ONNX graph alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnn.cli import main
from cnn.summary import summarize

LENET = Path(__file__).resolve().parents[1] / "exported" / "lenet5.onnx"


def test_lenet5_summary_counts():
    s = summarize(LENET)
    assert s.total_params == 61_706
    shapes = [r.output_shape for r in s.rows if r.op_type in ("Conv", "AveragePool")]
    assert shapes == [("N", 6, 28, 28), ("N", 6, 14, 14), ("N", 16, 10, 10), ("N", 16, 5, 5)]
    # conv1: 28*28*6 outputs x 25 taps; conv2: 10*10*16 x 150; dense: 400*120 + 120*84 + 84*10
    assert s.total_macs == 117_600 + 240_000 + 48_000 + 10_080 + 840


def test_summary_command_prints_table_and_metadata(capsys):
    assert main(["summary", str(LENET)]) == 0
    out = capsys.readouterr().out
    assert "Total params: 61,706" in out
    assert (
        "dataset: fashion-mnist" in out and "Ankle boot" in out and "test_accuracy: 0.8919" in out
    )


@pytest.mark.slow
def test_alexnet_summary_counts_bn_statistics_like_keras(tmp_path):
    torch = pytest.importorskip("torch")
    from conftest import random_alexnet

    from training.export import export_onnx

    path = tmp_path / "a.onnx"
    export_onnx(
        random_alexnet(), path, sample=torch.rand(2, 3, 227, 227), metadata={}, log=lambda *a: None
    )
    s = summarize(path)
    assert s.total_params == 58_327_818
    assert s.rows[0].output_shape == ("N", 96, 55, 55)


def test_summary_of_a_missing_file(tmp_path, capsys):
    assert main(["summary", str(tmp_path / "x.onnx")]) == 2
    assert "not found" in capsys.readouterr().err
