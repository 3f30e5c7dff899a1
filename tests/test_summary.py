"""`cnn summary`: a Keras-style table read from the ONNX graph alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from wild_models import (
    fixed_reshape,
    named_square,
    paddle_detector,
    quantized_weights,
    reshaped_by_shape,
    upsampler,
)

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


def test_weights_in_constant_nodes_and_folded_constants_count(tmp_path, capsys):
    """Paddle2ONNX writes weights as Constant nodes; one here is a Reshape of two."""
    s = summarize(paddle_detector(), shape=[1, 3, 64, 48])
    assert s.total_params == 8 * 3 * 9 + 8 + 8  # w1, b1, the folded w2 (its int shape not)
    assert [r.op_type for r in s.shown] == ["Conv", "Relu", "MaxPool", "Conv", "Sigmoid"]
    assert [r.params for r in s.shown] == [224, 0, 0, 8, 0]
    assert s.total_macs == 64 * 48 * 8 * 27 + 32 * 24 * 8
    assert s.shown[3].output_shape == ("N", 1, 32, 24)
    assert len(summarize(paddle_detector(), constants=True).shown) == len(s.rows) == 10
    path = tmp_path / "det.onnx"
    path.write_bytes(paddle_detector())
    assert main(["summary", str(path), "--shape", "1,3,64,48"]) == 0
    captured = capsys.readouterr()
    assert "Constant" not in captured.out and "5 constant-producing nodes hidden" in captured.out
    assert f"Total MACs per image: {s.total_macs:,} (input x [1, 3, 64, 48])" in captured.out
    assert "cnn summary: input shape: x [1, 3, 64, 48] (from --shape)" in captured.err
    assert main(["summary", str(path), "--shape", "1,3,64,48", "--constants"]) == 0
    assert captured.out.count("\n") + 4 == capsys.readouterr().out.count("\n")


def test_macs_at_a_concrete_size_or_an_assumed_one_said(tmp_path, capsys):
    per_pixel = 4 * 27  # 4 output channels x 3 x 3 x 3
    assert summarize(named_square(), dims={"size": 40}).total_macs == 40 * 40 * per_pixel
    assumed = summarize(named_square())
    assert assumed.total_macs == 224 * 224 * per_pixel
    assert any("assumed 224 for size" in n for n in assumed.notes)
    assert "assumed 224" in assumed.table()
    path = tmp_path / "sq.onnx"
    path.write_bytes(named_square())
    assert main(["summary", str(path), "--dim", "sise=40"]) == 2
    assert "no dimension named 'sise'" in capsys.readouterr().err


def test_shapes_are_numbers_even_through_a_computed_reshape():
    s = summarize(reshaped_by_shape(), dims={"H": 32, "W": 16})
    shown = {r.name: r.output_shape for r in s.shown}
    assert shown == {
        "conv": ("N", 4, 32, 16),
        "flatten": ("N", 4, 512),
        "transpose": ("N", 512, 4),
        "mix": ("N", 512, 4),
    }  # Shape, Slice, Concat: shape computations, hidden
    assert s.total_macs == 32 * 16 * 4 * 27 + 512 * 4 * 4
    for row in s.rows:
        assert all(isinstance(d, int) or d in ("N", "?") for d in row.output_shape)


def test_quantized_weights_count():
    s = summarize(quantized_weights())
    assert s.total_params == 8 * 4 + 1  # the int8 weights and the scale
    assert s.total_macs == 8 * 4


def test_settings_are_not_parameters_and_formulas_never_shown():
    s = summarize(upsampler().SerializeToString(), dims={"H": 5, "W": 7})
    assert s.total_params == 4 * 27 + 4  # Resize's float scales are a setting
    assert s.rows[-1].output_shape == ("N", 4, 10, 14)  # not the declared "2*H"


def test_a_model_that_runs_only_at_its_size_says_so():
    wrong = summarize(fixed_reshape())  # assumed 224 x 224: the Reshape cannot take it
    assert any("give the model's real size" in n and "Reshape" in n for n in wrong.notes)
    right = summarize(fixed_reshape(), dims={"H": 8, "W": 8})
    assert not right.notes and right.total_macs == 4 * 64 * 27
    assert right.rows[-1].output_shape == (1, 4, 64)


def test_integer_conv_and_matmul_count_their_macs():
    """ConvInteger and MatMulInteger (onnxruntime's dynamic quantization writes them, as
    in ddddocr's common_old.onnx) count as Conv and MatMul do."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 2, 3, 3), np.int8), "w")
    m = numpy_helper.from_array(np.ones((36, 5), np.int8), "m")
    nodes = [
        helper.make_node("ConvInteger", ["x", "w"], ["c"]),  # (1, 4, 3, 3) int32
        helper.make_node("Cast", ["c"], ["f"], to=onnx.TensorProto.INT8),
        helper.make_node("Reshape", ["f", "flat"], ["r"]),
        helper.make_node("MatMulInteger", ["r", "m"], ["y"]),  # (1, 5)
    ]
    flat = numpy_helper.from_array(np.array([1, 36], np.int64), "flat")
    graph = helper.make_graph(
        nodes,
        "integer",
        [helper.make_tensor_value_info("x", onnx.TensorProto.INT8, [1, 2, 5, 5])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.INT32, [1, 5])],
        [w, m, flat],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    # ConvInteger: 36 outputs x 2 x 3 x 3; MatMulInteger: 5 outputs x 36
    assert summarize(model.SerializeToString()).total_macs == 36 * 18 + 5 * 36
