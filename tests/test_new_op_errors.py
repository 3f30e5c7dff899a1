"""Bad input to the spatial, indexing and quantization ops: typed errors that name
the node and give expected against received, and the size limit before allocating."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_helpers import single_node_model

from runtime import (
    GraphError,
    InferenceSession,
    InvalidAttributeError,
    ShapeError,
    TensorTooLargeError,
)

F32 = np.float32


def _x(*shape):
    return np.ones(shape, F32)


def _i64(*values):
    return np.array(values, np.int64)


NO_SCALES = np.array([], F32)

CASES = [
    (
        "Resize",
        {"x": _x(1, 1, 4, 4)},
        {"roi": NO_SCALES, "s": np.array([1, 1, 2, 2], F32)},
        {"mode": "area"},
        InvalidAttributeError,
        r"mode 'area': expected one of",
    ),
    (
        "Resize",
        {"x": _x(1, 1, 4, 4)},
        {"roi": NO_SCALES, "s": np.array([1, 1, 2, 2], F32)},
        {"coordinate_transformation_mode": "tf_half_pixel_for_nn"},
        InvalidAttributeError,
        r"coordinate_transformation_mode 'tf_half_pixel_for_nn'",
    ),  # removed at opset 18
    (
        "Resize",
        {"x": _x(1, 1, 4, 4)},
        {"roi": NO_SCALES, "s": np.array([2, 2], F32)},
        {},
        ShapeError,
        r"scales has 2 values, expected 4",
    ),
    (
        "Resize",
        {"x": _x(1, 1, 4, 4)},
        {"roi": NO_SCALES, "s": np.array([1, 1, 2, 2], F32), "sz": _i64(1, 1, 8, 8)},
        {},
        ShapeError,
        r"exactly one of scales and sizes",
    ),
    (
        "ConvTranspose",
        {"x": _x(1, 3, 4, 4)},
        {"w": _x(2, 2, 3, 3)},
        {},
        ShapeError,
        r"W \(2, 2, 3, 3\) needs 3 input channels",
    ),
    (
        "ConvTranspose",
        {"x": _x(1, 2, 4, 4)},
        {"w": _x(2, 2, 3, 3)},
        {"strides": [0, 1]},
        InvalidAttributeError,
        r"strides' \[0, 1\]: expected every stride >= 1",  # the schema check, at load
    ),
    (
        "ConvTranspose",
        {"x": _x(1, 2, 4, 4)},
        {"w": _x(2, 2, 3, 3)},
        {"strides": [2, 2], "output_padding": [2, 0]},
        InvalidAttributeError,
        r"output_padding \[2, 0\]: expected below the stride",
    ),
    (
        "DepthToSpace",
        {"x": _x(1, 6, 2, 2)},
        {},
        {"blocksize": 2},
        ShapeError,
        r"6 channels are not divisible by blocksize\^2 = 4",
    ),
    (
        "DepthToSpace",
        {"x": _x(1, 8, 2, 2)},
        {},
        {"blocksize": 2, "mode": "RCD"},
        InvalidAttributeError,
        r"mode 'RCD': expected 'DCR' or 'CRD'",
    ),
    (
        "SpaceToDepth",
        {"x": _x(1, 1, 5, 4)},
        {},
        {"blocksize": 2},
        ShapeError,
        r"H 5 and W 4 must be divisible by blocksize 2",
    ),
    (
        "Expand",
        {"x": _x(2, 3)},
        {"s": _i64(4, 3)},
        {},
        ShapeError,
        r"input shape \(2, 3\) does not broadcast with shape \[4, 3\]",
    ),
    ("Tile", {"x": _x(2, 3)}, {"r": _i64(2)}, {}, ShapeError, r"need one value per axis"),
    (
        "Range",
        {"s": np.array(0, np.int64)},
        {"l": np.array(5, np.int64), "d": np.array(0, np.int64)},
        {},
        ShapeError,
        r"delta 0: expected a non-zero step",
    ),
    (
        "Where",
        {"c": np.ones((2, 2), np.int64), "a": _x(2, 2)},
        {"b": _x(2, 2)},
        {},
        GraphError,  # the schema's type constraint, checked at load
        r"input 0 \(condition\) 'c' is tensor\(int64\): expected one of \['tensor\(bool\)'\]",
    ),
    (
        "GatherElements",
        {"x": _x(2, 3)},
        {"i": _i64(0, 1)},
        {"axis": 0},
        ShapeError,
        r"indices \(2,\) must have the rank of data \(2, 3\)",
    ),
    (
        "GatherElements",
        {"x": _x(2, 3)},
        {"i": np.array([[0, 3]], np.int64)},
        {"axis": 1},
        ShapeError,
        r"indices range 0..3: expected within \[-3, 2\]",
    ),
    (
        "GatherND",
        {"x": _x(2, 3)},
        {"i": np.array([[0, 1, 0]], np.int64)},
        {},
        ShapeError,
        r"last dimension 3 exceeds the rank 2",
    ),
    (
        "ScatterElements",
        {"x": _x(3, 3)},
        {"i": np.zeros((1, 2), np.int64), "u": _x(1, 2)},
        {"reduction": "mean"},
        InvalidAttributeError,
        r"reduction 'mean': expected one of",
    ),
    (
        "ScatterND",
        {"x": _x(3, 3)},
        {"i": np.array([[0]], np.int64), "u": _x(2, 3)},
        {},
        ShapeError,
        r"updates must have shape \(1, 3\), received \(2, 3\)",
    ),
    (
        "OneHot",
        {"i": _i64(0, 1)},
        {"d": np.array(0, np.int64), "v": np.array([0, 1], F32)},
        {},
        ShapeError,
        r"depth 0: expected >= 1",
    ),
    ("Trilu", {"x": _x(3)}, {}, {}, ShapeError, r"expected rank >= 2"),
    (
        "Einsum",
        {"a": _x(2, 3)},
        {"b": _x(4, 5)},
        {"equation": "ij,jk->ik"},
        ShapeError,
        r"equation 'ij,jk->ik' does not fit inputs \(2, 3\), \(4, 5\)",
    ),
    (
        "LpPool",
        {"x": _x(1, 1, 4, 4)},
        {},
        {"kernel_shape": [2]},
        InvalidAttributeError,
        r"'kernel_shape' \[2\] has 1 values: expected 2, one per spatial axis",
    ),
    (
        "GridSample",
        {"x": _x(1, 1, 4, 4)},
        {"g": _x(1, 3, 3, 3)},
        {},
        ShapeError,
        r"grid must be \(N, \*out, 2\)",
    ),
    (
        "RoiAlign",
        {"x": _x(1, 1, 4, 4)},
        {"r": _x(2, 4), "b": _i64(0, 1)},
        {},
        ShapeError,
        r"batch_indices outside 0..0",
    ),
    (
        "NonMaxSuppression",
        {"b": _x(1, 3, 4)},
        {"s": _x(1, 2, 4)},
        {},
        ShapeError,
        r"expected scores \(B, C, 3\)",
    ),
    (
        "QuantizeLinear",
        {"x": _x(2, 3)},
        {"s": np.array([0.1, 0.2], F32)},
        {"axis": 1},
        ShapeError,
        r"y_scale must be a scalar or 1-D of length 3 \(axis 1\)",
    ),
    (
        "DequantizeLinear",
        {"x": np.zeros((2, 4), np.int8)},
        {"s": np.ones((2, 3), F32)},
        {"block_size": 2, "axis": 1, "opset": 21},
        ShapeError,
        r"blocked x_scale must have shape \(2, 2\) for block_size 2",
    ),
    (
        "DequantizeLinear",
        {"x": np.zeros(3, np.uint8)},
        {"s": np.array(1, F32), "z": np.array(0, np.int8)},
        {},
        GraphError,
        r"'z' is tensor\(int8\), but 'x' is tensor\(uint8\): expected one type for both",
    ),
    (
        "MatMulInteger",
        {"a": np.zeros((2, 3), np.uint8)},
        {"b": np.zeros((4, 2), np.uint8)},
        {},
        ShapeError,
        r"inner dimensions differ",
    ),
    (
        "ConvInteger",
        {"x": _x(1, 1, 3, 3)},
        {"w": np.zeros((1, 1, 2, 2), np.uint8)},
        {},
        GraphError,
        r"input 0 \(x\) 'x' is tensor\(float\): expected one of",
    ),
]


@pytest.mark.parametrize(
    ("op", "inputs", "inits", "attrs", "error", "message"),
    CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)],
)
def test_bad_input_is_a_typed_error_naming_the_node(op, inputs, inits, attrs, error, message):
    model, feeds = single_node_model(op, inputs, initializers=inits, **attrs)
    with pytest.raises(error, match=message) as info:
        InferenceSession(model).run(None, feeds)
    assert f"{op} node '{op.lower()}_node'" in str(info.value)


TOO_LARGE = [
    ("Expand", {"x": _x(1, 1)}, {"s": _i64(1000, 1000)}, {}, r"Expand output"),
    ("Tile", {"x": _x(10, 10)}, {"r": _i64(100, 100)}, {}, r"Tile output"),
    (
        "Resize",
        {"x": _x(1, 1, 10, 10)},
        {"roi": NO_SCALES, "s": np.array([1, 1, 100, 100], F32)},
        {},
        r"Resize output",
    ),
    (
        "ConvTranspose",
        {"x": _x(1, 1, 100, 100)},
        {"w": _x(1, 1, 10, 10)},
        {"strides": [10, 10]},
        r"ConvTranspose output",
    ),
    (
        "OneHot",
        {"i": np.zeros(1000, np.int64)},
        {"d": np.array(1000, np.int64), "v": np.array([0, 1], F32)},
        {},
        r"OneHot output",
    ),
    (
        "Range",
        {"s": np.array(0, np.int64)},
        {"l": np.array(10**6, np.int64), "d": np.array(1, np.int64)},
        {},
        r"Range output",
    ),
]


@pytest.mark.parametrize(
    ("op", "inputs", "inits", "attrs", "what"), TOO_LARGE, ids=[c[0] for c in TOO_LARGE]
)
def test_too_large_outputs_are_refused_before_allocating(
    monkeypatch, op, inputs, inits, attrs, what
):
    monkeypatch.setenv("CNN_RUNTIME_MAX_TENSOR_BYTES", str(1 << 20))
    model, feeds = single_node_model(op, inputs, initializers=inits, **attrs)
    with pytest.raises(TensorTooLargeError, match=rf"{what}: shape .* needs"):
        InferenceSession(model).run(None, feeds)
