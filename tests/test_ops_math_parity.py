"""Typed errors of the math, activation, reduction and normalization ops: bad
attributes and inputs, and broadcasts over the size limit."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_helpers import single_node_model

from runtime import InferenceSession, errors

RNG = np.random.default_rng(5)


def _r(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _i64(*values):
    return np.array(values, np.int64)


def test_max_before_opset_8_needs_equal_shapes():
    model, feeds = single_node_model("Max", {"a": _r(2, 3)}, initializers={"b": _r(3)}, opset=7)
    with pytest.raises(errors.ShapeError, match=r"max_node.*one shape.*\(2, 3\), \(3,\)"):
        InferenceSession(model).run(None, feeds)


ERRORS = [
    # (op, inputs, initializers, attributes, opset, error, message)
    (
        "Gelu",
        {"x": _r(3)},
        {},
        {"approximate": "erf"},
        20,
        errors.InvalidAttributeError,
        r"approximate 'erf': expected one of \['none', 'tanh'\]",
    ),
    (
        "ReduceMean",
        {"x": _r(2, 3)},
        {"axes": _i64(2)},
        {},
        18,
        errors.InvalidAttributeError,
        r"axes entry 2 is out of range for rank 2",
    ),
    (
        "ReduceSum",
        {"x": _r(2, 3)},
        {},
        {"axes": [0, -2]},
        11,
        errors.InvalidAttributeError,
        r"name an axis twice",
    ),
    (
        "ReduceMax",
        {"x": _r(2, 3)},
        {"axes": _i64(0)},
        {"keepdims": 2},
        18,
        errors.InvalidAttributeError,
        r"keepdims 2: expected 0 or 1",
    ),
    (
        "GroupNormalization",
        {"x": _r(2, 6, 3)},
        {"s": _r(6), "b": _r(6)},
        {"num_groups": 4},
        21,
        errors.InvalidAttributeError,
        r"num_groups 4 must be >= 1 and divide the 6 channels",
    ),
    (
        "GroupNormalization",
        {"x": _r(2, 6, 3)},
        {"s": _r(3), "b": _r(6)},
        {"num_groups": 3},
        21,
        errors.ShapeError,
        r"scale must have shape \(6,\), received \(3,\)",
    ),
    (
        "LayerNormalization",
        {"x": _r(2, 5)},
        {"s": _r(4)},
        {},
        17,
        errors.ShapeError,
        r"Scale \(4,\) does not broadcast to \(5,\)",
    ),
    (
        "InstanceNormalization",
        {"x": _r(2, 3, 4)},
        {"s": _r(4), "b": _r(3)},
        {},
        18,
        errors.ShapeError,
        r"scale must have shape \(3,\), received \(4,\)",
    ),
    ("TopK", {"x": _r(2, 5)}, {"k": _i64(6)}, {}, 11, errors.ShapeError, r"k 6: expected 0\.\.5"),
    (
        "ArgMax",
        {"x": _r(2, 5)},
        {},
        {"axis": 2},
        13,
        errors.InvalidAttributeError,
        r"axis 2 is out of range for rank 2",
    ),
    (
        "Hardmax",
        {"x": _r(2, 5)},
        {},
        {"axis": -3},
        13,
        errors.InvalidAttributeError,
        r"axis -3 is out of range",
    ),
    (
        "Mod",
        {"a": _r(3)},
        {"b": _r(3)},
        {},
        13,
        errors.InvalidAttributeError,
        r"fmod=0 on float32 inputs: before opset 28 floats need fmod=1",
    ),
    (
        "BitShift",
        {"x": np.array([1, 2], np.int8)},
        {"y": np.array([1, 1], np.int8)},
        {"direction": "LEFT"},
        11,
        errors.GraphError,  # the schema's type constraint, checked at load
        r"'x' is tensor\(int8\): expected one of \['tensor\(uint16\)'",
    ),
    (
        "BitShift",
        {"x": np.array([1], np.uint8)},
        {"y": np.array([1], np.uint8)},
        {"direction": "UP"},
        18,
        errors.InvalidAttributeError,
        r"direction 'UP'",
    ),
    (
        "Celu",
        {"x": _r(3)},
        {},
        {"alpha": 0.0},
        18,
        errors.InvalidAttributeError,
        r"alpha 0\.0: expected a nonzero alpha",
    ),
    (
        "PRelu",
        {"x": _r(2, 3)},
        {"slope": _r(4, 1, 3)},
        {},
        18,
        errors.ShapeError,
        r"slope \(4, 1, 3\) must broadcast to X \(2, 3\)",
    ),
    (
        "Exp",
        {"x": np.array([1, 2], np.int32)},
        {},
        {},
        13,
        errors.GraphError,
        r"'x' is tensor\(int32\): expected one of",
    ),
    (
        "And",
        {"a": np.array([1], np.int32)},
        {"b": np.array([1], np.int32)},
        {},
        13,
        errors.GraphError,
        r"'a' is tensor\(int32\): expected one of \['tensor\(bool\)'\]",
    ),
    ("Less", {"a": _r(2, 3)}, {"b": _r(4)}, {}, 13, errors.ShapeError, r"do not broadcast"),
    (
        "LpNormalization",
        {"x": _r(2, 3)},
        {},
        {"p": 3},
        18,
        errors.InvalidAttributeError,
        r"p 3: expected 1 or 2",
    ),
]


@pytest.mark.parametrize(
    ("op", "inputs", "inits", "attrs", "opset", "error", "message"),
    ERRORS,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(ERRORS)],
)
def test_bad_input_is_a_typed_error(op, inputs, inits, attrs, opset, error, message):
    n_outputs = 2 if op == "TopK" else 1
    model, feeds = single_node_model(
        op, inputs, initializers=inits, opset=opset, n_outputs=n_outputs, **attrs
    )
    with pytest.raises(error, match=f"{op.lower()}_node.*{message}"):
        InferenceSession(model).run(None, feeds)


@pytest.mark.parametrize("op", ["Max", "Less", "Pow", "BitwiseAnd"])
def test_broadcast_output_over_the_size_limit_is_refused(op, monkeypatch):
    monkeypatch.setenv("CNN_RUNTIME_MAX_TENSOR_BYTES", "4096")
    dtype = np.int32 if op == "BitwiseAnd" else np.float32
    a, b = np.ones((100, 1), dtype), np.ones((1, 100), dtype)
    model, feeds = single_node_model(op, {"a": a, "b": b})
    with pytest.raises(
        errors.TensorTooLargeError,
        match=rf"{op} output( \(inputs broadcast\))?: shape \(100, 100\)",
    ):
        InferenceSession(model).run(None, feeds)
