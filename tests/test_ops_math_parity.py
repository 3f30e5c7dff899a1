"""Single-node graphs of the math, activation, reduction and normalization ops against
onnxruntime on random float32 inputs, in the opset versions registered apart; and the
typed errors of their bad attributes and inputs."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_helpers import run_ort, single_node_model

from runtime import InferenceSession, errors

RNG = np.random.default_rng(5)


def _r(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _i64(*values):
    return np.array(values, np.int64)


def _compare(model: bytes, feeds, rtol=1e-5, atol=1e-5) -> None:
    want = run_ort(model, feeds)
    sess = InferenceSession(model, backend="numba")
    for _ in range(2):  # the first run plans, the second runs the plan with its buffers
        got = sess.run(None, feeds)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape
            assert g.dtype == w.dtype
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


X4 = _r(2, 6, 7, 7, scale=2.0)
CASES = [
    # (op, inputs, initializers, attributes, opset)
    ("Elu", {"x": X4}, {}, {"alpha": 0.8}, 18),
    ("Selu", {"x": X4}, {}, {}, 18),
    ("Celu", {"x": X4}, {}, {"alpha": 1.5}, 18),
    ("HardSigmoid", {"x": X4}, {}, {"alpha": 0.3, "beta": 0.4}, 18),
    ("HardSwish", {"x": X4 * 3}, {}, {}, 18),
    ("Softplus", {"x": X4 * 10}, {}, {}, 18),
    ("Softsign", {"x": X4}, {}, {}, 18),
    ("Mish", {"x": X4 * 5}, {}, {}, 18),
    ("Gelu", {"x": X4}, {}, {}, 20),
    ("Gelu", {"x": X4}, {}, {"approximate": "tanh"}, 20),
    ("Erf", {"x": X4}, {}, {}, 18),
    ("ThresholdedRelu", {"x": X4}, {}, {"alpha": 0.5}, 18),
    ("Shrink", {"x": X4}, {}, {"lambd": 0.7, "bias": 0.2}, 18),
    ("PRelu", {"x": X4}, {"slope": _r(6, 1, 1)}, {}, 18),
    ("Hardmax", {"x": _r(3, 4, 5)}, {}, {"axis": 1}, 13),
    ("Hardmax", {"x": _r(3, 4, 5)}, {}, {"axis": 1}, 11),  # 2-D at axis 1: over 4*5
    # global pooling as ReduceMean, axes as input (18) and attribute (13)
    ("ReduceMean", {"x": X4}, {"axes": _i64(2, 3)}, {}, 18),
    ("ReduceMean", {"x": X4}, {}, {"axes": [2, 3], "keepdims": 0}, 13),
    ("ReduceMean", {"x": X4}, {"axes": _i64(1)}, {"keepdims": 0}, 18),
    ("ReduceSum", {"x": X4}, {"axes": _i64(0, 1)}, {}, 13),
    ("ReduceSum", {"x": X4}, {}, {"axes": [-1]}, 11),
    ("ReduceSum", {"x": X4}, {}, {}, 13),
    ("ReduceMax", {"x": X4}, {"axes": _i64(1)}, {}, 18),
    ("ReduceMin", {"x": X4}, {}, {"axes": [0, 2]}, 13),  # not adjacent: NumPy
    ("ReduceL2", {"x": X4}, {"axes": _i64(2, 3)}, {}, 18),
    ("ReduceL1", {"x": X4}, {"axes": _i64(3)}, {}, 18),
    ("ReduceSumSquare", {"x": X4}, {"axes": _i64(1, 2)}, {}, 18),
    ("ReduceLogSumExp", {"x": X4 * 20}, {"axes": _i64(1)}, {}, 18),
    ("ReduceProd", {"x": _r(3, 4)}, {"axes": _i64(1)}, {}, 18),
    ("ArgMax", {"x": np.round(X4)}, {}, {"axis": 1, "select_last_index": 1}, 13),
    ("ArgMin", {"x": np.round(X4)}, {}, {"axis": -1, "keepdims": 0}, 13),
    ("TopK", {"x": _r(3, 10)}, {"k": _i64(4)}, {"largest": 0}, 11),
    ("TopK", {"x": _r(3, 10)}, {"k": _i64(3)}, {"axis": 0}, 10),
    ("CumSum", {"x": _r(3, 5)}, {"axis": _i64(1)}, {"exclusive": 1, "reverse": 1}, 14),
    # LayerNormalization over channels last (ConvNeXt) and over C, H, W
    ("LayerNormalization", {"x": _r(2, 7, 7, 96)}, {"s": _r(96), "b": _r(96)}, {}, 17),
    ("LayerNormalization", {"x": X4}, {"s": _r(6, 7, 7)}, {"axis": 1, "epsilon": 1e-3}, 17),
    ("GroupNormalization", {"x": X4}, {"s": _r(6), "b": _r(6)}, {"num_groups": 3}, 21),
    ("InstanceNormalization", {"x": X4}, {"s": _r(6), "b": _r(6)}, {}, 18),
    ("RMSNormalization", {"x": _r(2, 5, 16)}, {"s": _r(16)}, {}, 23),
    ("LpNormalization", {"x": X4}, {}, {"axis": 1, "p": 1}, 18),
    ("MeanVarianceNormalization", {"x": X4}, {}, {}, 18),
    ("Max", {"a": _r(2, 3)}, {"b": _r(3), "c": _r(2, 1)}, {}, 13),
    ("Mean", {"a": _r(2, 3)}, {"b": _r(3)}, {}, 13),
    ("Pow", {"x": np.abs(_r(3, 4))}, {"y": _i64(2)}, {}, 15),
    ("Mod", {"a": _r(3, 4) * 5}, {"b": _r(4) + 3}, {"fmod": 1}, 13),
    ("Sqrt", {"x": np.abs(_r(3, 4))}, {}, {}, 13),
    ("Atanh", {"x": _r(3, 4) * 0.3}, {}, {}, 18),
    ("Less", {"a": _r(3, 4)}, {"b": _r(4)}, {}, 13),
    # the oldest versions a model can have here (opset 7 on)
    ("TopK", {"x": _r(3, 10)}, {}, {"k": 3, "axis": 1}, 9),
    ("ArgMax", {"x": _r(3, 10)}, {}, {"axis": 1, "keepdims": 0}, 11),
    ("Pow", {"x": np.abs(_r(3, 4))}, {"y": _r(3, 4)}, {}, 7),
    ("Max", {"a": _r(3, 4)}, {"b": _r(3, 4)}, {}, 7),
    ("Mean", {"a": _r(3, 4)}, {"b": _r(3, 4), "c": _r(3, 4)}, {}, 7),
    ("ReduceLogSumExp", {"x": X4}, {}, {"axes": [1, 2]}, 13),
    ("ReduceL2", {"x": X4}, {}, {"axes": [3], "keepdims": 0}, 7),
    (
        "BitShift",
        {"x": np.arange(12, dtype=np.uint8)},
        {"y": np.full(12, 2, np.uint8)},
        {"direction": "RIGHT"},
        11,
    ),
    ("Mod", {"a": np.arange(-6, 6, dtype=np.int32)}, {"b": np.array([4], np.int32)}, {}, 10),
    ("Elu", {"x": X4}, {}, {}, 7),
    ("HardSigmoid", {"x": X4}, {}, {}, 7),
    ("InstanceNormalization", {"x": X4}, {"s": _r(6), "b": _r(6)}, {"epsilon": 1e-3}, 7),
    ("PRelu", {"x": X4}, {"slope": _r(7)}, {}, 7),
    ("Hardmax", {"x": _r(3, 4, 5)}, {}, {}, 7),  # axis 1 by default
    ("Equal", {"a": np.arange(6, dtype=np.int32)}, {"b": np.array([3], np.int32)}, {}, 7),
]


@pytest.mark.parametrize(
    ("op", "inputs", "inits", "attrs", "opset"),
    CASES,
    ids=[f"{c[0]}-{c[4]}-{i}" for i, c in enumerate(CASES)],
)
def test_single_node_matches_onnxruntime(op, inputs, inits, attrs, opset):
    n_outputs = 2 if op == "TopK" else 1
    model, feeds = single_node_model(
        op, inputs, initializers=inits, n_outputs=n_outputs, opset=opset, **attrs
    )
    _compare(model, feeds)


def test_layer_normalization_mean_and_inv_std_dev():
    x = _r(3, 4, 8)
    model, feeds = single_node_model(
        "LayerNormalization", {"x": x}, initializers={"s": _r(8)}, n_outputs=3, opset=17
    )
    _compare(model, feeds)


def test_group_normalization_18_scales_per_group():
    """Opset 18's scale and bias have one value per group (onnxruntime dropped this
    version, so the check is against the formula)."""
    x, scale, bias = _r(2, 6, 3, 3), _r(3), _r(3)
    model, feeds = single_node_model(
        "GroupNormalization",
        {"x": x},
        initializers={"s": scale, "b": bias},
        num_groups=3,
        epsilon=1e-4,
        opset=18,
    )
    (got,) = InferenceSession(model).run(None, feeds)
    g = x.reshape(2, 3, -1).astype(np.float64)
    norm = (g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + 1e-4)
    want = norm * scale[:, None] + bias[:, None]
    np.testing.assert_allclose(got, want.reshape(x.shape), rtol=1e-5, atol=1e-5)


def test_max_before_opset_8_needs_equal_shapes():
    model, feeds = single_node_model("Max", {"a": _r(2, 3)}, initializers={"b": _r(3)}, opset=7)
    with pytest.raises(errors.ShapeError, match=r"max_node.*one shape.*\(2, 3\), \(3,\)"):
        InferenceSession(model).run(None, feeds)


def test_dropout_in_training_mode_with_ratio_zero_is_identity():
    x = _r(3, 4)
    inits = {"r": np.array(0.0, np.float32), "t": np.array(True)}
    model, feeds = single_node_model("Dropout", {"x": x}, initializers=inits, n_outputs=2)
    y, mask = InferenceSession(model).run(None, feeds)
    np.testing.assert_array_equal(y, x)
    assert mask.dtype == np.bool_ and mask.all()
    inits["r"] = np.array(0.5, np.float32)
    model, feeds = single_node_model("Dropout", {"x": x}, initializers=inits, n_outputs=2)
    with pytest.raises(errors.InvalidAttributeError, match="nonzero ratio"):
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


# The types other than float32 that onnxruntime's CPU provider runs, per op.
_COMMON = "Abs Sign ReduceMax ReduceMin ArgMax ArgMin TopK Max Min Equal Less Greater Mod Shrink"
_SUMS = "Neg ReduceSum ReduceMean ReduceProd ReduceL1 ReduceL2 ReduceSumSquare CumSum Pow"
_FLOATS = (
    "Relu Sigmoid Tanh Exp Log LayerNormalization Floor Round Sqrt Reciprocal Sin "
    "ReduceLogSumExp LpNormalization"
)
DTYPE_OPS = {
    np.uint8: _COMMON,
    np.int8: f"{_COMMON} Neg Relu",
    np.int32: f"{_COMMON} {_SUMS} Relu ReduceLogSumExp",
    np.int64: f"{_COMMON} {_SUMS} ReduceLogSumExp",
    np.float64: f"{_COMMON} {_SUMS} {_FLOATS}",
    np.float16: f"{_COMMON} {_SUMS} {_FLOATS} LeakyRelu Erf Elu Softplus HardSigmoid HardSwish "
    "Gelu InstanceNormalization Hardmax Mean PRelu Mish",
}
DTYPE_CASES = [(op, dt) for dt, ops in DTYPE_OPS.items() for op in ops.split()]


def _typed(dtype, shape, rng):
    if np.dtype(dtype).kind == "f":
        return (rng.standard_normal(shape) * 3).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -50), min(info.max, 50), shape).astype(dtype)


@pytest.mark.parametrize(
    ("op", "dtype"), DTYPE_CASES, ids=[f"{op}-{np.dtype(dt)}" for op, dt in DTYPE_CASES]
)
def test_other_types_match_onnxruntime(op, dtype):
    rng = np.random.default_rng(7)
    x = _typed(dtype, (3, 4), rng)
    inputs, attrs = {"x": x}, {}
    other = _typed(dtype, (4,), rng)
    inits = {
        "CumSum": {"axis": _i64(1)},
        "TopK": {"k": _i64(2)},
        "Pow": {"y": np.abs(other) % 3},
        "Mod": {"y": np.where(other == 0, 3, other).astype(dtype)},
        "LayerNormalization": {"s": other},
        "PRelu": {"s": other},
        "InstanceNormalization": {"s": other, "b": other[::-1].copy()},
    }.get(op, {"y": other} if op in ("Max", "Min", "Equal", "Less", "Greater", "Mean") else {})
    if op.startswith("Reduce"):
        inits = {"axes": _i64(1)}
    if op == "Mod" and x.dtype.kind == "f":
        attrs = {"fmod": 1}
    if op in ("Sqrt", "Log"):
        inputs = {"x": np.abs(x) + dtype(1)}
    if op == "InstanceNormalization":
        inputs = {"x": _typed(dtype, (2, 4, 3), rng)}
    n_outputs = 2 if op == "TopK" else 1
    model, feeds = single_node_model(
        op, inputs, initializers=inits, n_outputs=n_outputs, opset=20, **attrs
    )
    tol = 2e-3 if dtype == np.float16 else 1e-6
    _compare(model, feeds, rtol=tol, atol=tol)
