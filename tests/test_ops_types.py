"""Element types other than float32, op by op, against onnxruntime: the types its CPU
provider runs for each op (uint8, int8, int32, int64, float64, float16)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_helpers import single_node_model
from parity import compare


def _i64(*values):
    return np.array(values, np.int64)


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
    compare(model, feeds, rtol=tol, atol=tol)
