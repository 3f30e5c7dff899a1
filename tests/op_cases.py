"""The shared single-node case tables, one row per graph of one node.

* ``CASES``: ``parity.Case`` rows, run against onnxruntime (``parity.compare``);
* ``ERRORS``: ``Bad`` rows, refused with a typed error that names the node;
* ``TOO_LARGE``: ``TooLarge`` rows, whose result is over the size limit and is refused
  before anything is allocated.

Rows are grouped by the module of ``runtime/ops`` that implements the op. Each
``tests/test_ops_<family>.py`` runs its family's rows (``cases_of``, ``errors_of``,
``too_large_of``); the family is read from the registry, so a row added here runs in
its family's file. ``tests/test_op_coverage.py`` checks that every registered (op,
since) has a ``CASES`` row or a node test of ONNX's suite, and that every family with
rows has its file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from parity import Case

from runtime import (
    GraphError,
    InferenceSession,
    InvalidAttributeError,
    ShapeError,
    TensorTooLargeError,
)

RNG = np.random.default_rng(5)
_F = np.float32


def _r(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _i64(*values):
    return np.array(values, np.int64)


def _x(*shape):
    return np.ones(shape, np.float32)


X4 = _r(2, 6, 7, 7, scale=2.0)
_OWN = np.random.default_rng(24)  # the membound cases' draws: the others' stay as they were


def _var(c):
    return np.abs(_own(c)) + 0.5


def _own(*shape, specials=False):
    """Random float32 from ``_OWN``; ``specials``: a NaN, an inf and a -inf in it."""
    x = _OWN.standard_normal(shape).astype(np.float32)
    if specials:
        flat = x.reshape(-1)
        flat[0], flat[flat.size // 2], flat[-1] = np.nan, np.inf, -np.inf
    return x


NO_ROI = np.array([], np.float32)
# integer inputs of the quantized ops; int8 weights in 7 bits: onnxruntime's
# uint8 x int8 kernels add product pairs in saturating int16 above that
_QX = (np.random.default_rng(4).standard_normal((2, 4, 6)) * 5).astype(np.float32)
_A8 = np.random.default_rng(5).integers(0, 255, (2, 3, 5)).astype(np.uint8)
_W7 = np.random.default_rng(6).integers(-64, 63, (5, 4)).astype(np.int8)
_X8 = np.random.default_rng(7).integers(0, 255, (2, 4, 7, 7)).astype(np.uint8)
_CW7 = np.random.default_rng(8).integers(-64, 63, (6, 4, 3, 3)).astype(np.int8)

_CORNER = RNG.uniform(0, 10, (2, 20, 2)).astype(np.float32)
_BOXES = np.concatenate([_CORNER, _CORNER + RNG.uniform(1, 5, (2, 20, 2)).astype(_F)], axis=2)

# a 2-D MaxPool whose every window has no tap inside a (N, C, 2, 5) input
_EMPTY_WINDOW = {"kernel_shape": [2, 2], "pads": [1, 1, 1, 1], "dilations": [3, 3]}

CASES = [
    # runtime/ops/nn.py
    Case(
        "Conv",
        {"x": _r(2, 3, 10, 10)},
        {"w": _r(4, 3, 3, 3), "b": _r(4)},
        {"pads": [1, 1, 1, 1], "strides": [2, 2]},
    ),
    Case(
        "Conv", {"x": _r(1, 4, 9, 9)}, {"w": _r(4, 1, 3, 3)}, {"group": 4, "auto_pad": "SAME_UPPER"}
    ),
    Case(
        "Conv",
        {"x": _r(1, 2, 12, 12)},
        {"w": _r(3, 2, 3, 3)},
        {"dilations": [2, 2], "pads": [2, 1, 0, 2]},
    ),
    Case("Conv", {"x": _r(2, 3, 15)}, {"w": _r(5, 3, 4)}, {"strides": [3], "pads": [2, 1]}),
    Case("MaxPool", {"x": _r(2, 3, 13, 13)}, {}, {"kernel_shape": [3, 3], "strides": [2, 2]}),
    Case(
        "MaxPool",
        {"x": _r(1, 2, 10, 10)},
        {},
        {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1, "pads": [1, 1, 0, 0]},
    ),
    Case(
        "AveragePool",
        {"x": _r(2, 3, 11, 11)},
        {},
        {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1},
    ),
    Case(
        "AveragePool",
        {"x": _r(2, 3, 11, 11)},
        {},
        {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1},
    ),
    Case(  # a window larger than the input: ceil_mode still gives one output
        "MaxPool",
        {"x": _r(1, 3, 1, 1)},
        {},
        {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1},
    ),
    Case(
        "AveragePool",
        {"x": _r(1, 3, 3, 3)},
        {},
        {"kernel_shape": [4, 4], "strides": [2, 2], "ceil_mode": 1},
    ),
    # dilated windows whose taps straddle a 2-high input: none inside, so onnxruntime's
    # lowest float (not -inf), and its index (the plane's offset, every coordinate -1)
    *(
        Case(
            "MaxPool",
            {"x": _r(2, 3, 2, 5)},
            {},
            {**_EMPTY_WINDOW, "storage_order": order},
            outputs=n,
        )
        for n, order in ((1, 0), (2, 0), (2, 1))
    ),
    Case(
        "MaxPool", {"x": _r(2, 3, 2)}, {}, {"kernel_shape": [2], "pads": [1, 1], "dilations": [3]}
    ),
    Case(
        "MaxPool",
        {"x": _r(1, 2, 1, 2, 2)},
        {},
        {"kernel_shape": [1, 2, 2], "pads": [0, 1, 1, 0, 1, 1], "dilations": [1, 3, 3]},
        outputs=2,
    ),
    # a window larger than the padded input: onnxruntime's pools give no output (with
    # ceil_mode or without), or one window past the end (without, the span rounded to 0)
    *(
        Case(op, {"x": _r(*shape)}, {}, attrs, outputs=n)
        for op, shape, attrs, n in (
            ("MaxPool", (2, 3, 1, 1), {"kernel_shape": [2, 2], "ceil_mode": 1}, 1),
            ("MaxPool", (2, 3, 2, 5), {"kernel_shape": [3, 3], "ceil_mode": 1}, 2),
            ("MaxPool", (2, 3, 2, 5), {"kernel_shape": [3, 3], "auto_pad": "VALID"}, 1),
            ("MaxPool", (1, 2, 2), {"kernel_shape": [3], "ceil_mode": 1}, 1),
            ("MaxPool", (1, 2, 2, 5, 5), {"kernel_shape": [3, 3, 3], "ceil_mode": 1}, 1),
            ("AveragePool", (1, 2, 2, 5), {"kernel_shape": [3, 3], "ceil_mode": 1}, 1),
            ("AveragePool", (1, 2, 1, 1), {"kernel_shape": [2, 2]}, 1),
            ("MaxPool", (1, 3, 1, 1), {"kernel_shape": [2, 2], "strides": [2, 2]}, 1),
        )
    ),
    Case("GlobalAveragePool", {"x": _r(2, 5, 7, 7)}, {}, {}),
    Case("GlobalMaxPool", {"x": _r(2, 5, 7, 7)}, {}, {}),
    Case("LRN", {"x": _r(2, 8, 5, 5)}, {}, {"size": 5, "alpha": 1e-3, "beta": 0.75, "bias": 2.0}),
    Case(
        "BatchNormalization",
        {"x": _r(2, 4, 5, 5)},
        {"s": _r(4), "b": _r(4), "m": _r(4), "v": np.abs(_r(4)) + 0.5},
        {"epsilon": 1e-3},
    ),
    # the vector kernel (normalize.scale_shift_planes): odd planes, batch 3, NaN and
    # infinities; planes of one value; a large tensor (jobs over the threads)
    *(
        Case(
            "BatchNormalization",
            {"x": _own(*shape, specials=True)},
            {"s": _own(shape[1]), "b": _own(shape[1]), "m": _own(shape[1]), "v": _var(shape[1])},
            {"epsilon": 1e-3},
            15,
        )
        for shape in ((3, 5, 7, 9), (2, 6), (1, 24, 61, 67))
    ),
    # every window inside the plane: the vector kernel (pool.avg_pool_rows); DenseNet's
    # 2x2/2, odd sizes, stride 1 and 3, NaN and infinities, a large one (jobs)
    *(
        Case(
            "AveragePool",
            {"x": _own(*shape, specials=True)},
            {},
            {"kernel_shape": k, "strides": st, "ceil_mode": ceil},
        )
        for shape, k, st, ceil in (
            ((2, 3, 16, 16), [2, 2], [2, 2], 0),
            ((1, 2, 33, 35), [3, 3], [2, 2], 0),
            ((1, 2, 32, 32), [2, 2], [2, 2], 1),  # ceil_mode, no partial window
            ((2, 2, 9, 37), [3, 3], [1, 1], 0),
            ((1, 2, 13, 35), [3, 2], [2, 3], 0),
            ((1, 24, 64, 66), [2, 2], [2, 2], 0),
        )
    ),
    Case(
        "Gemm",
        {"a": _r(3, 5)},
        {"b": _r(4, 5), "c": _r(4)},
        {"transB": 1, "alpha": 0.5, "beta": 2.0},
    ),
    Case("Gemm", {"a": _r(5, 3)}, {"b": _r(5, 4)}, {"transA": 1}),
    # a small batch with W row-major (transB): bias and all in the kernel, for a bias
    # per column (C of (N,), (1, N) or a scalar) or none; a full C is added after it
    Case("Gemm", {"a": _r(3, 5)}, {"b": _r(4, 5), "c": _r(4)}, {"transB": 1}),
    Case("Gemm", {"a": _r(6, 5)}, {"b": _r(7, 5), "c": _r(1, 7)}, {"transB": 1, "beta": 0.5}),
    Case("Gemm", {"a": _r(2, 5)}, {"b": _r(4, 5), "c": np.float32(0.7)}, {"transB": 1}),
    Case("Gemm", {"a": _r(3, 5)}, {"b": _r(4, 5)}, {"transB": 1}),
    Case("Gemm", {"a": _r(3, 5)}, {"b": _r(4, 5), "c": _r(3, 4)}, {"transB": 1}),
    Case("MatMul", {"a": _r(2, 3, 4, 5)}, {"b": _r(5, 6)}, {}),
    Case("Softmax", {"x": _r(2, 3, 4)}, {}, {"axis": 1}),
    Case("LogSoftmax", {"x": _r(2, 3, 4)}, {}, {}),
    # an empty batch (SqueezeNet at batch 0, tests/fuzz.py): onnxruntime gives empty outputs
    Case("GlobalAveragePool", {"x": np.ones((0, 3, 4, 4), np.float32)}),
    Case("Softmax", {"x": np.ones((0, 3, 4, 4), np.float32)}, opset=9),
    Case("LogSoftmax", {"x": _r(2, 3, 4)}, {}, {"axis": 1}, 11),  # 2-D at axis 1: over 3*4
    # runtime/ops/elementwise.py
    Case("Add", {"a": _r(2, 3, 4)}, {"b": _r(3, 1)}, {}),
    Case("Mul", {"a": _r(2, 3, 4)}, {"b": _r(4)}, {}),
    Case("Sub", {"a": _r(4, 1)}, {"b": _r(1, 5)}, {}),
    Case("Div", {"a": _r(3, 4)}, {"b": np.abs(_r(3, 4)) + 1}, {}),
    Case("Sum", {"a": _r(2, 3)}, {"b": _r(3), "c": _r(2, 1)}, {}),
    Case("Relu", {"x": _r(3, 4)}, {}, {}),
    Case("LeakyRelu", {"x": _r(3, 4)}, {}, {"alpha": 0.3}),
    Case("Tanh", {"x": _r(3, 4)}, {}, {}),
    Case("Sigmoid", {"x": _r(3, 4) * 30}, {}, {}),
    Case("Clip", {"x": _r(3, 4)}, {"lo": np.float32(-0.5), "hi": np.float32(0.5)}, {}),
    Case("Cast", {"x": _r(3, 4) * 10}, {}, {"to": 7}),
    Case("Clip", {"x": _r(3, 4)}, {}, {"min": -0.5, "max": 0.5}, 7),  # bounds as attributes
    # runtime/ops/activations.py
    Case("Elu", {"x": X4}, {}, {"alpha": 0.8}, 18),
    Case("Selu", {"x": X4}, {}, {}, 18),
    Case("Celu", {"x": X4}, {}, {"alpha": 1.5}, 18),
    Case("HardSigmoid", {"x": X4}, {}, {"alpha": 0.3, "beta": 0.4}, 18),
    Case("HardSwish", {"x": X4 * 3}, {}, {}, 18),
    Case("Softplus", {"x": X4 * 10}, {}, {}, 18),
    Case("Softsign", {"x": X4}, {}, {}, 18),
    Case("Mish", {"x": X4 * 5}, {}, {}, 18),
    Case("Gelu", {"x": X4}, {}, {}, 20),
    Case("Gelu", {"x": X4}, {}, {"approximate": "tanh"}, 20),
    Case("ThresholdedRelu", {"x": X4}, {}, {"alpha": 0.5}, 18),
    Case("Shrink", {"x": X4}, {}, {"lambd": 0.7, "bias": 0.2}, 18),
    Case("PRelu", {"x": X4}, {"slope": _r(6, 1, 1)}, {}, 18),
    Case("Hardmax", {"x": _r(3, 4, 5)}, {}, {"axis": 1}, 13),
    Case("Hardmax", {"x": _r(3, 4, 5)}, {}, {"axis": 1}, 11),  # 2-D at axis 1: over 4*5
    Case("Elu", {"x": X4}, {}, {}, 7),
    Case("HardSigmoid", {"x": X4}, {}, {}, 7),
    Case("PRelu", {"x": X4}, {"slope": _r(7)}, {}, 7),
    Case("Hardmax", {"x": _r(3, 4, 5)}, {}, {}, 7),  # axis 1 by default
    # runtime/ops/math.py
    Case("Erf", {"x": X4}, {}, {}, 18),
    Case("Max", {"a": _r(2, 3)}, {"b": _r(3), "c": _r(2, 1)}, {}, 13),
    Case("Mean", {"a": _r(2, 3)}, {"b": _r(3)}, {}, 13),
    Case("Pow", {"x": np.abs(_r(3, 4))}, {"y": _i64(2)}, {}, 15),
    Case("Mod", {"a": _r(3, 4) * 5}, {"b": _r(4) + 3}, {"fmod": 1}, 13),
    Case("Sqrt", {"x": np.abs(_r(3, 4))}, {}, {}, 13),
    Case("Atanh", {"x": _r(3, 4) * 0.3}, {}, {}, 18),
    Case("Pow", {"x": np.abs(_r(3, 4))}, {"y": _r(3, 4)}, {}, 7),
    Case("Max", {"a": _r(3, 4)}, {"b": _r(3, 4)}, {}, 7),
    Case("Mean", {"a": _r(3, 4)}, {"b": _r(3, 4), "c": _r(3, 4)}, {}, 7),
    Case(
        "BitShift",
        {"x": np.arange(12, dtype=np.uint8)},
        {"y": np.full(12, 2, np.uint8)},
        {"direction": "RIGHT"},
        11,
    ),
    Case("Mod", {"a": np.arange(-6, 6, dtype=np.int32)}, {"b": np.array([4], np.int32)}, {}, 10),
    Case("Min", {"a": _r(3, 4)}, {"b": _r(3, 4)}, {}, 7),
    # runtime/ops/logic.py
    Case("Less", {"a": _r(3, 4)}, {"b": _r(4)}, {}, 13),
    Case("Equal", {"a": np.arange(6, dtype=np.int32)}, {"b": np.array([3], np.int32)}, {}, 7),
    # runtime/ops/reduce.py
    # global pooling as ReduceMean, axes as input (18) and attribute (13)
    Case("ReduceMean", {"x": X4}, {"axes": _i64(2, 3)}, {}, 18),
    Case("ReduceMean", {"x": X4}, {}, {"axes": [2, 3], "keepdims": 0}, 13),
    Case("ReduceMean", {"x": X4}, {"axes": _i64(1)}, {"keepdims": 0}, 18),
    # the global average pool's kernel (nn.global_pool_into): the last axes, axes as a
    # fed input (no call laid out at load), NaN and infinities, a large one (jobs)
    Case("ReduceMean", {"x": _own(2, 5, 7, 9, specials=True)}, {}, {"axes": [-2, -1]}, 13),
    Case("ReduceMean", {"x": _own(3, 4, 5, 6)}, {"axes": _i64(1, 2, 3)}, {"keepdims": 0}, 18),
    Case("ReduceMean", {"x": _own(2, 5, 7, 9), "axes": _i64(2, 3)}, {}, {}, 18),
    Case("ReduceMean", {"x": _own(2, 80, 40, 40)}, {"axes": _i64(2, 3)}, {}, 18),
    Case("ReduceSum", {"x": X4}, {"axes": _i64(0, 1)}, {}, 13),
    Case("ReduceSum", {"x": X4}, {}, {"axes": [-1]}, 11),
    Case("ReduceSum", {"x": X4}, {}, {}, 13),
    Case("ReduceMax", {"x": X4}, {"axes": _i64(1)}, {}, 18),
    Case("ReduceMin", {"x": X4}, {}, {"axes": [0, 2]}, 13),  # not adjacent: NumPy
    Case("ReduceL2", {"x": X4}, {"axes": _i64(2, 3)}, {}, 18),
    Case("ReduceL1", {"x": X4}, {"axes": _i64(3)}, {}, 18),
    Case("ReduceSumSquare", {"x": X4}, {"axes": _i64(1, 2)}, {}, 18),
    Case("ReduceLogSumExp", {"x": X4 * 20}, {"axes": _i64(1)}, {}, 18),
    Case("ReduceProd", {"x": _r(3, 4)}, {"axes": _i64(1)}, {}, 18),
    Case("ArgMax", {"x": np.round(X4)}, {}, {"axis": 1, "select_last_index": 1}, 13),
    Case("ArgMin", {"x": np.round(X4)}, {}, {"axis": -1, "keepdims": 0}, 13),
    Case("TopK", {"x": _r(3, 10)}, {"k": _i64(4)}, {"largest": 0}, 11, outputs=2),
    Case("TopK", {"x": _r(3, 10)}, {"k": _i64(3)}, {"axis": 0}, 10, outputs=2),
    Case("CumSum", {"x": _r(3, 5)}, {"axis": _i64(1)}, {"exclusive": 1, "reverse": 1}, 14),
    # the oldest versions a model can have here (opset 7 on)
    Case("TopK", {"x": _r(3, 10)}, {}, {"k": 3, "axis": 1}, 9, outputs=2),
    Case("ArgMax", {"x": _r(3, 10)}, {}, {"axis": 1, "keepdims": 0}, 11),
    Case("ReduceLogSumExp", {"x": X4}, {}, {"axes": [1, 2]}, 13),
    Case("ReduceL2", {"x": X4}, {}, {"axes": [3], "keepdims": 0}, 7),
    Case("ArgMin", {"x": _r(3, 10)}, {}, {"axis": 1}, 11),
    Case("ReduceL1", {"x": X4}, {}, {"axes": [1, 3]}, 13),
    Case("ReduceLogSum", {"x": np.abs(X4) + 0.1}, {}, {"axes": [2]}, 13),
    Case("ReduceProd", {"x": _r(3, 4)}, {}, {"axes": [0], "keepdims": 0}, 13),
    Case("ReduceSumSquare", {"x": X4}, {}, {"axes": [1, 2]}, 13),
    # runtime/ops/normalization.py
    # LayerNormalization over channels last (ConvNeXt) and over C, H, W
    Case("LayerNormalization", {"x": _r(2, 7, 7, 96)}, {"s": _r(96), "b": _r(96)}, {}, 17),
    Case("LayerNormalization", {"x": X4}, {"s": _r(6, 7, 7)}, {"axis": 1, "epsilon": 1e-3}, 17),
    Case("GroupNormalization", {"x": X4}, {"s": _r(6), "b": _r(6)}, {"num_groups": 3}, 21),
    Case("InstanceNormalization", {"x": X4}, {"s": _r(6), "b": _r(6)}, {}, 18),
    Case("RMSNormalization", {"x": _r(2, 5, 16)}, {"s": _r(16)}, {}, 23),
    Case("LpNormalization", {"x": X4}, {}, {"axis": 1, "p": 1}, 18),
    Case("MeanVarianceNormalization", {"x": X4}, {}, {}, 18),
    Case("InstanceNormalization", {"x": X4}, {"s": _r(6), "b": _r(6)}, {"epsilon": 1e-3}, 7),
    Case("LayerNormalization", {"x": _r(3, 4, 8)}, {"s": _r(8)}, opset=17, outputs=3),
    # runtime/ops/tensor.py
    Case("Flatten", {"x": _r(2, 3, 4)}, {}, {"axis": 2}),
    Case("Transpose", {"x": _r(2, 3, 4)}, {}, {"perm": [2, 0, 1]}),
    Case("Reshape", {"x": _r(2, 3, 4)}, {"s": np.array([0, -1], np.int64)}, {}),
    Case("Concat", {"a": _r(2, 3)}, {"b": _r(2, 5)}, {"axis": -1}),
    Case("Squeeze", {"x": _r(2, 1, 4)}, {"axes": np.array([1], np.int64)}, {}),
    Case("Unsqueeze", {"x": _r(2, 4)}, {"axes": np.array([0, -1], np.int64)}, {}),
    Case("Gather", {"x": _r(5, 4)}, {"i": np.array([[0, -1], [2, 3]], np.int64)}, {"axis": 0}),
    Case(
        "Slice",
        {"x": _r(6, 8)},
        {
            "st": np.array([1, -1], np.int64),
            "en": np.array([5, -9], np.int64),
            "ax": np.array([0, 1], np.int64),
            "sp": np.array([2, -2], np.int64),
        },
        {},
    ),
    Case(
        "Pad",
        {"x": _r(2, 3, 4)},
        {"p": np.array([0, 1, 2, 0, 2, 1], np.int64), "v": np.float32(1.5)},
        {"mode": "constant"},
    ),
    Case(
        "Pad",
        {"x": _r(1, 3, 4)},
        {"p": np.array([0, 0, 1, 0, 0, 2], np.int64)},
        {"mode": "reflect"},
    ),
    Case("Shape", {"x": _r(2, 3, 4)}, {}, {"start": 1}),
    Case("Identity", {"x": _r(3)}, {}, {}),
    # the mask as a graph output (tests/fuzz.py exposed it): X's type before opset 10,
    # bool from 10; zeros at inference before 12, ones from 12, as onnxruntime gives
    *[Case("Dropout", {"x": _r(2, 3)}, opset=opset, outputs=2) for opset in (7, 10, 12, 13)],
    # split as an attribute, then as an input
    Case("Split", {"x": _r(6, 2)}, {}, {"split": [2, 4]}, opset=11, outputs=2),
    Case("Split", {"x": _r(6, 2)}, {"s": _i64(2, 4)}, opset=13, outputs=2),
    # the attribute forms before the inputs took them over
    Case("Pad", {"x": _r(2, 3, 4)}, {}, {"pads": [0, 1, 2, 0, 2, 1], "value": 1.5}, 10),
    Case("Slice", {"x": _r(6, 8)}, {}, {"starts": [1, 2], "ends": [5, 100], "axes": [0, 1]}, 9),
    Case("Squeeze", {"x": _r(2, 1, 4, 1)}, {}, {"axes": [1, -1]}, 11),
    Case("Unsqueeze", {"x": _r(2, 4)}, {}, {"axes": [0, 3]}, 11),
    # runtime/ops/indexing.py
    Case("Expand", {"x": _r(3, 1)}, {"s": np.array([2, 1, 4], np.int64)}, {}),
    Case("Tile", {"x": _r(2, 3)}, {"r": np.array([2, 2], np.int64)}, {}),
    Case("Where", {"c": RNG.random((3, 4)) > 0.5, "a": _r(3, 4)}, {"b": _r(4)}, {}),
    Case(
        "GatherElements",
        {"x": _r(3, 4)},
        {"i": np.array([[0, 2], [1, -1], [3, 0]], np.int64)},
        {"axis": 1},
    ),
    Case(
        "GatherND",
        {"x": _r(2, 3, 4)},
        {"i": np.array([[[1], [0]], [[2], [1]]], np.int64)},
        {"batch_dims": 1},
    ),
    Case(
        "ScatterElements",
        {"x": _r(3, 4)},
        {"i": np.array([[1, 1], [0, 2]], np.int64), "u": _r(2, 2)},
        {"axis": 1, "reduction": "add"},
    ),
    Case(
        "ScatterND",
        {"x": _r(4, 3)},
        {"i": np.array([[2], [0]], np.int64), "u": _r(2, 3)},
        {"reduction": "max"},
    ),
    Case(
        "OneHot",
        {"i": np.array([[0, 3], [-1, 2]], np.int64)},
        {"d": np.array(4, np.int64), "v": np.array([0.5, 2.0], np.float32)},
        {"axis": 1},
    ),
    Case(
        "Range",
        {"s": np.array(1.5, np.float32)},
        {"l": np.array(7.0, np.float32), "d": np.array(0.75, np.float32)},
        {},
    ),
    Case("Trilu", {"x": _r(2, 4, 5)}, {"k": np.array(1, np.int64)}, {"upper": 0}),
    Case("Einsum", {"a": _r(2, 3, 4)}, {"b": _r(2, 4, 5)}, {"equation": "bij,bjk->bik"}),
    Case("Compress", {"x": _r(3, 4)}, {"c": np.array([True, False, True])}, {"axis": 0}, 10),
    Case("GatherND", {"x": _r(2, 3, 4)}, {"i": np.array([[1, 2], [0, 1]], np.int64)}, {}, 11),
    Case(
        "OneHot",
        {"i": np.array([[0, 3], [1, 2]], np.int64)},
        {"d": np.array(4, np.int64), "v": np.array([0.5, 2.0], np.float32)},
        {"axis": 1},
        10,
    ),
    Case(
        "ScatterElements",
        {"x": _r(3, 4)},
        {"i": np.array([[1, 0], [0, 2]], np.int64), "u": _r(2, 2)},
        {"axis": 1},
        13,
    ),
    Case(
        "ScatterElements",
        {"x": _r(3, 4)},
        {"i": np.array([[1, 1], [0, 2]], np.int64), "u": _r(2, 2)},
        {"axis": 1, "reduction": "mul"},
        16,
    ),
    Case(
        "ScatterND", {"x": _r(4, 3)}, {"i": np.array([[2], [0]], np.int64), "u": _r(2, 3)}, {}, 13
    ),
    Case(
        "ScatterND",
        {"x": _r(4, 3)},
        {"i": np.array([[2], [2]], np.int64), "u": _r(2, 3)},
        {"reduction": "add"},
        16,
    ),
    # runtime/ops/spatial.py
    Case(
        "Resize",
        {"x": _r(1, 2, 5, 6)},
        {"roi": np.array([], np.float32), "s": np.array([1, 1, 2.5, 1.5], np.float32)},
        {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
    ),
    Case(
        "Resize",
        {"x": _r(2, 3, 4, 4)},
        {
            "roi": np.array([], np.float32),
            "s": np.array([], np.float32),
            "sz": np.array([2, 3, 9, 7], np.int64),
        },
        {"mode": "nearest", "nearest_mode": "round_prefer_ceil"},
    ),
    Case(
        "Resize",
        {"x": _r(1, 1, 8, 8)},
        {"roi": np.array([], np.float32), "s": np.array([1, 1, 0.5, 0.5], np.float32)},
        {"mode": "cubic", "cubic_coeff_a": -0.5, "exclude_outside": 1},
    ),
    Case(
        "ConvTranspose",
        {"x": _r(2, 4, 5, 5)},
        {"w": _r(4, 3, 3, 3), "b": _r(3)},
        {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]},
    ),
    Case("ConvTranspose", {"x": _r(1, 4, 6)}, {"w": _r(4, 1, 4)}, {"group": 4, "strides": [2]}),
    Case(
        "ConvTranspose",
        {"x": _r(1, 2, 4, 4)},
        {"w": _r(2, 2, 3, 3)},
        {"strides": [2, 2], "auto_pad": "SAME_UPPER"},
    ),
    Case(  # an output_shape one longer than the full result: zeros at the end
        "ConvTranspose",
        {"x": _r(1, 2, 4, 4)},
        {"w": _r(2, 2, 3, 3)},
        {"strides": [2, 2], "output_shape": [10, 10], "auto_pad": "SAME_UPPER"},
    ),
    Case("DepthToSpace", {"x": _r(1, 8, 3, 3)}, {}, {"blocksize": 2, "mode": "CRD"}),
    Case("SpaceToDepth", {"x": _r(2, 2, 4, 6)}, {}, {"blocksize": 2}),
    # before opset 11: asymmetric coordinates; nearest floors (rounds up when downsampling)
    *[
        Case(op, {"x": _r(1, 2, 6, 7)}, {"s": np.array(s, _F)}, {"mode": mode}, opset=opset)
        for op, opset in (("Resize", 10), ("Upsample", 9))
        for mode in ("nearest", "linear")
        for s in ([1, 1, 2, 3], [1, 1, 1.5, 2.5])
    ],
    # scale 2.3 puts output 11 on source 4.5 exactly, in float32 as onnxruntime computes
    # (float64 of the float32 scale says 4.5000001): ties round as onnxruntime's, exactly
    *[
        Case(
            "Resize",
            {"x": (np.random.default_rng(3).random((1, 2, 5, 6)) * 255).astype(dtype)},
            {"roi": NO_ROI, "s": np.array([1, 1, 1.7, 2.3], _F)},
            {"mode": "nearest", "nearest_mode": nearest_mode},
            rtol=0,
            atol=0,
        )
        for dtype in (np.float32, np.uint8)
        for nearest_mode in ("round_prefer_floor", "round_prefer_ceil", "ceil")
    ],
    Case("DepthToSpace", {"x": _r(1, 8, 3, 3)}, {}, {"blocksize": 2}, 10),  # DCR only
    Case(
        "Resize",
        {"x": _r(1, 2, 5, 6)},
        {"roi": NO_ROI, "s": np.array([1, 1, 2, 1.5], _F)},
        {"mode": "linear"},
        11,
    ),
    Case(
        "Resize",
        {"x": _r(2, 3, 4, 4)},
        {"roi": NO_ROI, "s": NO_ROI, "sz": _i64(2, 3, 9, 7)},
        {"mode": "cubic"},
        13,
    ),
    Case("Upsample", {"x": _r(1, 2, 3, 4)}, {}, {"scales": [1.0, 1.0, 2.0, 3.0]}, 8),
    # runtime/ops/windows.py
    Case("LpPool", {"x": _r(1, 2, 7, 7)}, {}, {"kernel_shape": [3, 3], "p": 3, "strides": [2, 2]}),
    Case("LpPool", {"x": _r(1, 2, 7, 7)}, {}, {"kernel_shape": [3, 3], "strides": [2, 2]}, 11),
    Case(
        "LpPool", {"x": _r(1, 2, 2, 5)}, {}, {"kernel_shape": [3, 3], "ceil_mode": 1}
    ),  # no output
    # runtime/ops/detection.py
    Case(
        "GridSample",
        {"x": _r(1, 2, 5, 6)},
        {"g": RNG.uniform(-1.1, 1.1, (1, 4, 3, 2)).astype(np.float32)},
        {"mode": "bilinear", "padding_mode": "border"},
    ),
    Case(
        "RoiAlign",
        {"x": _r(2, 3, 10, 10)},
        {
            "rois": np.array([[0, 0, 6, 6], [2.5, 1.0, 9.0, 7.5]], np.float32),
            "bi": np.array([0, 1], np.int64),
        },
        {"output_height": 3, "output_width": 2, "sampling_ratio": 2},
    ),
    Case(
        "NonMaxSuppression",
        {"boxes": _BOXES, "scores": RNG.random((2, 3, 20), dtype=np.float32)},
        {"m": _i64(4), "iou": np.array([0.3], _F), "st": np.array([0.2], _F)},
        rtol=1e-4,
        atol=1e-4,
    ),
    *[
        Case(
            "GridSample",
            {"x": _r(2, 3, 5, 6)},
            {"g": RNG.uniform(-1.3, 1.3, (2, 4, 7, 2)).astype(np.float32)},  # some outside
            {"mode": mode, "padding_mode": padding_mode, "align_corners": align_corners},
            opset=16,
        )
        for mode in ("bilinear", "nearest", "bicubic")
        for padding_mode in ("zeros", "border", "reflection")
        for align_corners in (0, 1)
    ],
    Case(
        "RoiAlign",
        {"x": _r(2, 3, 10, 10)},
        {
            "rois": np.array([[0, 0, 6, 6], [2.5, 1.0, 9.0, 7.5]], np.float32),
            "bi": np.array([0, 1], np.int64),
        },
        {"output_height": 3, "output_width": 2, "sampling_ratio": 2},
        13,  # output_half_pixel coordinates
    ),
    # runtime/ops/quantization.py
    Case(
        "QuantizeLinear",
        {"x": _r(2, 3, 4)},
        {"s": np.array([0.02, 0.05, 0.1], np.float32), "z": np.array([120, 128, 130], np.uint8)},
        {"axis": 1},
    ),
    Case(
        "DequantizeLinear",
        {"x": RNG.integers(-128, 128, (3, 4), dtype=np.int8)},
        {"s": np.array(0.03, np.float32), "z": np.array(-5, np.int8)},
        {},
    ),
    Case(
        "QuantizeLinear",
        {"x": _QX},
        {"s": np.array([0.02, 0.05, 0.1, 0.2], _F), "z": np.array([0, 1, 2, 3], np.int16)},
        {"axis": 1},
        opset=21,
        rtol=1e-6,
        atol=1e-6,
    ),
    Case(
        "QuantizeLinear",
        {"x": _QX},
        {"s": np.full((2, 4, 3), 0.07, _F), "z": np.ones((2, 4, 3), np.uint16)},
        {"axis": 2, "block_size": 2},
        opset=21,
        rtol=1e-6,
        atol=1e-6,
    ),
    Case(
        "DequantizeLinear",
        {"x": _A8},
        {"s": np.array([0.1, 0.2, 0.3], _F), "z": np.array([0, 9, 200], np.uint8)},
        {"axis": 1},
        opset=21,
        rtol=1e-6,
        atol=1e-6,
    ),
    Case(
        "DequantizeLinear",
        {"x": _A8.astype(np.int32) * 1000},
        {"s": np.array(1e-3, _F)},
        {},
        opset=21,
        rtol=1e-6,
        atol=1e-6,
    ),
    Case(
        "MatMulInteger",
        {"a": _A8},
        {"b": _W7, "az": np.array(7, np.uint8), "bz": np.array([1, 2, 3, 4], np.int8)},
        {},
        opset=21,
        rtol=1e-6,
        atol=1e-6,
    ),
    Case(
        "ConvInteger",
        {"x": _X8},
        {
            "w": _X8[:6, :2, :3, :3].copy(),
            "xz": np.array(9, np.uint8),
            "wz": np.array(100, np.uint8),
        },
        {"group": 2, "pads": [1, 1, 1, 1], "strides": [2, 1]},
        opset=21,
        rtol=1e-6,
        atol=1e-6,
    ),
    Case(
        "QLinearMatMul",
        {"a": _A8},
        {
            "as": np.array(0.02, _F),
            "az": np.array(7, np.uint8),
            "b": _W7,
            "bs": np.array(0.01, _F),
            "bz": np.array(0, np.int8),
            "ys": np.array(0.05, _F),
            "yz": np.array(100, np.uint8),
        },
        {},
        opset=21,
        rtol=1e-6,
        atol=1e-6,
    ),
    Case(
        "QLinearConv",
        {"x": _X8},
        {
            "xs": np.array(0.02, _F),
            "xz": np.array(7, np.uint8),
            "w": _CW7,
            "ws": np.linspace(0.01, 0.03, 6).astype(_F),
            "wz": np.zeros(6, np.int8),
            "ys": np.array(0.1, _F),
            "yz": np.array(120, np.uint8),
            "b": np.arange(-300, 300, 100).astype(np.int32),
        },
        {"pads": [1, 1, 1, 1]},
        opset=21,
        rtol=1e-6,
        atol=1e-6,
    ),
    Case("DynamicQuantizeLinear", {"x": _QX}, outputs=3, rtol=0, atol=0),
    Case(
        "DequantizeLinear",
        {"x": _A8},
        {"s": np.array(0.1, _F), "z": np.array(9, np.uint8)},
        opset=10,
    ),
    Case(
        "QuantizeLinear",
        {"x": _QX},
        {"s": np.array(0.05, _F), "z": np.array(3, np.uint8)},
        opset=19,
    ),
    # runtime/ops/rnn.py
    # opset 7 to 13 (tests/test_rnn.py holds the cells' other settings)
    Case(
        "RNN",
        {"x": _r(4, 2, 3)},
        {"w": _r(1, 5, 3, scale=0.5), "r": _r(1, 5, 5, scale=0.5), "b": _r(1, 10)},
        {"hidden_size": 5},
        13,
        outputs=2,
    ),
    Case(
        "GRU",
        {"x": _r(4, 2, 3)},
        {"w": _r(1, 15, 3, scale=0.5), "r": _r(1, 15, 5, scale=0.5), "b": _r(1, 30)},
        {"hidden_size": 5},
        13,
        outputs=2,
    ),
    Case(
        "LSTM",
        {"x": _r(4, 2, 3)},
        {"w": _r(1, 20, 3, scale=0.5), "r": _r(1, 20, 5, scale=0.5), "b": _r(1, 40)},
        {"hidden_size": 5},
        13,
        outputs=3,
    ),
]


@dataclass(frozen=True)
class Bad:
    """A case the engine refuses, before or while running, with a typed ``error`` that
    names the node and then says ``message`` (a regex): expected against received."""

    case: Case
    error: type[Exception]
    message: str

    def check(self) -> None:
        model, feeds = self.case.model()
        node = f"{self.case.op.lower()}_node"
        with pytest.raises(self.error, match=f"{node}.*{self.message}") as info:
            InferenceSession(model).run(None, feeds)
        assert f"{self.case.op} node '{node}'" in str(info.value)

    def family(self) -> str:
        return self.case.family()


@dataclass(frozen=True)
class TooLarge:
    """A case whose result (or work array) is over the size limit ``limit`` while its
    inputs are not: refused with ``message`` before anything is allocated."""

    case: Case
    message: str
    limit: int = 1 << 20

    def check(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CNN_RUNTIME_MAX_TENSOR_BYTES", str(self.limit))
        model, feeds = self.case.model()
        with pytest.raises(TensorTooLargeError, match=self.message):
            InferenceSession(model).run(None, feeds)

    def family(self) -> str:
        return self.case.family()


ERRORS = [
    Bad(
        Case("Gelu", {"x": _r(3)}, {}, {"approximate": "erf"}, 20),
        InvalidAttributeError,
        r"approximate 'erf': expected one of \['none', 'tanh'\]",
    ),
    Bad(
        Case("ReduceMean", {"x": _r(2, 3)}, {"axes": _i64(2)}, {}),
        InvalidAttributeError,
        r"axes entry 2 is out of range for rank 2",
    ),
    Bad(
        Case("ReduceSum", {"x": _r(2, 3)}, {}, {"axes": [0, -2]}, 11),
        InvalidAttributeError,
        r"name an axis twice",
    ),
    Bad(
        Case("ReduceMax", {"x": _r(2, 3)}, {"axes": _i64(0)}, {"keepdims": 2}),
        InvalidAttributeError,
        r"keepdims 2: expected 0 or 1",
    ),
    Bad(
        Case(
            "GroupNormalization",
            {"x": _r(2, 6, 3)},
            {"s": _r(6), "b": _r(6)},
            {"num_groups": 4},
            21,
        ),
        InvalidAttributeError,
        r"num_groups 4 must be >= 1 and divide the 6 channels",
    ),
    Bad(
        Case(
            "GroupNormalization",
            {"x": _r(2, 6, 3)},
            {"s": _r(3), "b": _r(6)},
            {"num_groups": 3},
            21,
        ),
        ShapeError,
        r"scale must have shape \(6,\), received \(3,\)",
    ),
    Bad(
        Case("LayerNormalization", {"x": _r(2, 5)}, {"s": _r(4)}, {}, 17),
        ShapeError,
        r"Scale \(4,\) does not broadcast to \(5,\)",
    ),
    Bad(
        Case("InstanceNormalization", {"x": _r(2, 3, 4)}, {"s": _r(4), "b": _r(3)}, {}),
        ShapeError,
        r"scale must have shape \(3,\), received \(4,\)",
    ),
    Bad(
        Case("TopK", {"x": _r(2, 5)}, {"k": _i64(6)}, {}, 11, outputs=2),
        ShapeError,
        r"k 6: expected 0\.\.5",
    ),
    Bad(
        Case("ArgMax", {"x": _r(2, 5)}, {}, {"axis": 2}, 13),
        InvalidAttributeError,
        r"axis 2 is out of range for rank 2",
    ),
    Bad(
        Case("Hardmax", {"x": _r(2, 5)}, {}, {"axis": -3}, 13),
        InvalidAttributeError,
        r"axis -3 is out of range",
    ),
    Bad(
        Case("Mod", {"a": _r(3)}, {"b": _r(3)}, {}, 13),
        InvalidAttributeError,
        r"fmod=0 on float32 inputs: before opset 28 floats need fmod=1",
    ),
    Bad(
        Case(
            "BitShift",
            {"x": np.array([1, 2], np.int8)},
            {"y": np.array([1, 1], np.int8)},
            {"direction": "LEFT"},
            11,
        ),
        GraphError,  # the schema's type constraint, checked at load
        r"'x' is tensor\(int8\): expected one of \['tensor\(uint16\)'",
    ),
    Bad(
        Case(
            "BitShift",
            {"x": np.array([1], np.uint8)},
            {"y": np.array([1], np.uint8)},
            {"direction": "UP"},
        ),
        InvalidAttributeError,
        r"direction 'UP'",
    ),
    Bad(
        Case("Celu", {"x": _r(3)}, {}, {"alpha": 0.0}),
        InvalidAttributeError,
        r"alpha 0\.0: expected a nonzero alpha",
    ),
    Bad(
        Case("PRelu", {"x": _r(2, 3)}, {"slope": _r(4, 1, 3)}, {}),
        ShapeError,
        r"slope \(4, 1, 3\) must broadcast to X \(2, 3\)",
    ),
    Bad(
        Case("Exp", {"x": np.array([1, 2], np.int32)}, {}, {}, 13),
        GraphError,
        r"'x' is tensor\(int32\): expected one of",
    ),
    Bad(
        Case("And", {"a": np.array([1], np.int32)}, {"b": np.array([1], np.int32)}, {}, 13),
        GraphError,
        r"'a' is tensor\(int32\): expected one of \['tensor\(bool\)'\]",
    ),
    Bad(Case("Less", {"a": _r(2, 3)}, {"b": _r(4)}, {}, 13), ShapeError, r"do not broadcast"),
    Bad(
        Case("LpNormalization", {"x": _r(2, 3)}, {}, {"p": 3}),
        InvalidAttributeError,
        r"p 3: expected 1 or 2",
    ),
    Bad(
        Case(
            "Resize",
            {"x": _x(1, 1, 4, 4)},
            {"roi": NO_ROI, "s": np.array([1, 1, 2, 2], _F)},
            {"mode": "area"},
        ),
        InvalidAttributeError,
        r"mode 'area': expected one of",
    ),
    Bad(
        Case(
            "Resize",
            {"x": _x(1, 1, 4, 4)},
            {"roi": NO_ROI, "s": np.array([1, 1, 2, 2], _F)},
            {"coordinate_transformation_mode": "tf_half_pixel_for_nn"},
        ),
        InvalidAttributeError,
        r"coordinate_transformation_mode 'tf_half_pixel_for_nn'",
    ),  # removed at opset 18
    Bad(
        Case("Resize", {"x": _x(1, 1, 4, 4)}, {"roi": NO_ROI, "s": np.array([2, 2], _F)}, {}),
        ShapeError,
        r"scales has 2 values, expected 4",
    ),
    Bad(
        Case(
            "Resize",
            {"x": _x(1, 1, 4, 4)},
            {"roi": NO_ROI, "s": np.array([1, 1, 2, 2], _F), "sz": _i64(1, 1, 8, 8)},
            {},
        ),
        ShapeError,
        r"exactly one of scales and sizes",
    ),
    Bad(
        Case("ConvTranspose", {"x": _x(1, 3, 4, 4)}, {"w": _x(2, 2, 3, 3)}, {}),
        ShapeError,
        r"W \(2, 2, 3, 3\) needs 3 input channels",
    ),
    Bad(
        Case("ConvTranspose", {"x": _x(1, 2, 4, 4)}, {"w": _x(2, 2, 3, 3)}, {"strides": [0, 1]}),
        InvalidAttributeError,
        r"strides' \[0, 1\]: expected every stride >= 1",  # the schema check, at load
    ),
    Bad(
        Case(
            "ConvTranspose",
            {"x": _x(1, 2, 4, 4)},
            {"w": _x(2, 2, 3, 3)},
            {"strides": [2, 2], "output_padding": [2, 0]},
        ),
        InvalidAttributeError,
        r"output_padding \[2, 0\]: expected below the stride",
    ),
    Bad(
        Case("DepthToSpace", {"x": _x(1, 6, 2, 2)}, {}, {"blocksize": 2}),
        ShapeError,
        r"6 channels are not divisible by blocksize\^2 = 4",
    ),
    Bad(
        Case("DepthToSpace", {"x": _x(1, 8, 2, 2)}, {}, {"blocksize": 2, "mode": "RCD"}),
        InvalidAttributeError,
        r"mode 'RCD': expected 'DCR' or 'CRD'",
    ),
    Bad(
        Case("SpaceToDepth", {"x": _x(1, 1, 5, 4)}, {}, {"blocksize": 2}),
        ShapeError,
        r"H 5 and W 4 must be divisible by blocksize 2",
    ),
    Bad(
        Case("Expand", {"x": _x(2, 3)}, {"s": _i64(4, 3)}, {}),
        ShapeError,
        r"input shape \(2, 3\) does not broadcast with shape \[4, 3\]",
    ),
    Bad(Case("Tile", {"x": _x(2, 3)}, {"r": _i64(2)}, {}), ShapeError, r"need one value per axis"),
    Bad(
        Case(
            "Range",
            {"s": np.array(0, np.int64)},
            {"l": np.array(5, np.int64), "d": np.array(0, np.int64)},
            {},
        ),
        ShapeError,
        r"delta 0: expected a non-zero step",
    ),
    Bad(
        Case("Where", {"c": np.ones((2, 2), np.int64), "a": _x(2, 2)}, {"b": _x(2, 2)}, {}),
        GraphError,  # the schema's type constraint, checked at load
        r"input 0 \(condition\) 'c' is tensor\(int64\): expected one of \['tensor\(bool\)'\]",
    ),
    Bad(
        Case("GatherElements", {"x": _x(2, 3)}, {"i": _i64(0, 1)}, {"axis": 0}),
        ShapeError,
        r"indices \(2,\) must have the rank of data \(2, 3\)",
    ),
    Bad(
        Case("GatherElements", {"x": _x(2, 3)}, {"i": np.array([[0, 3]], np.int64)}, {"axis": 1}),
        ShapeError,
        r"indices range 0..3: expected within \[-3, 2\]",
    ),
    Bad(
        Case("GatherND", {"x": _x(2, 3)}, {"i": np.array([[0, 1, 0]], np.int64)}, {}),
        ShapeError,
        r"last dimension 3 exceeds the rank 2",
    ),
    Bad(
        Case(
            "ScatterElements",
            {"x": _x(3, 3)},
            {"i": np.zeros((1, 2), np.int64), "u": _x(1, 2)},
            {"reduction": "mean"},
        ),
        InvalidAttributeError,
        r"reduction 'mean': expected one of",
    ),
    Bad(
        Case("ScatterND", {"x": _x(3, 3)}, {"i": np.array([[0]], np.int64), "u": _x(2, 3)}, {}),
        ShapeError,
        r"updates must have shape \(1, 3\), received \(2, 3\)",
    ),
    Bad(
        Case(
            "OneHot", {"i": _i64(0, 1)}, {"d": np.array(0, np.int64), "v": np.array([0, 1], _F)}, {}
        ),
        ShapeError,
        r"depth 0: expected >= 1",
    ),
    Bad(Case("Trilu", {"x": _x(3)}, {}, {}), ShapeError, r"expected rank >= 2"),
    Bad(
        Case("Einsum", {"a": _x(2, 3)}, {"b": _x(4, 5)}, {"equation": "ij,jk->ik"}),
        ShapeError,
        r"equation 'ij,jk->ik' does not fit inputs \(2, 3\), \(4, 5\)",
    ),
    Bad(
        Case("LpPool", {"x": _x(1, 1, 4, 4)}, {}, {"kernel_shape": [2]}),
        InvalidAttributeError,
        r"'kernel_shape' \[2\] has 1 values: expected 2, one per spatial axis",
    ),
    Bad(
        Case("GridSample", {"x": _x(1, 1, 4, 4)}, {"g": _x(1, 3, 3, 3)}, {}),
        ShapeError,
        r"grid must be \(N, \*out, 2\)",
    ),
    Bad(
        Case("RoiAlign", {"x": _x(1, 1, 4, 4)}, {"r": _x(2, 4), "b": _i64(0, 1)}, {}),
        ShapeError,
        r"batch_indices outside 0..0",
    ),
    Bad(
        Case("NonMaxSuppression", {"b": _x(1, 3, 4)}, {"s": _x(1, 2, 4)}, {}),
        ShapeError,
        r"expected scores \(B, C, 3\)",
    ),
    Bad(
        Case("QuantizeLinear", {"x": _x(2, 3)}, {"s": np.array([0.1, 0.2], _F)}, {"axis": 1}),
        ShapeError,
        r"y_scale must be a scalar or 1-D of length 3 \(axis 1\)",
    ),
    Bad(
        Case(
            "DequantizeLinear",
            {"x": np.zeros((2, 4), np.int8)},
            {"s": np.ones((2, 3), _F)},
            {"block_size": 2, "axis": 1},
            21,
        ),
        ShapeError,
        r"blocked x_scale must have shape \(2, 2\) for block_size 2",
    ),
    Bad(
        Case(
            "DequantizeLinear",
            {"x": np.zeros(3, np.uint8)},
            {"s": np.array(1, _F), "z": np.array(0, np.int8)},
            {},
        ),
        GraphError,
        r"'z' is tensor\(int8\), but 'x' is tensor\(uint8\): expected one type for both",
    ),
    Bad(
        Case(
            "MatMulInteger",
            {"a": np.zeros((2, 3), np.uint8)},
            {"b": np.zeros((4, 2), np.uint8)},
            {},
        ),
        ShapeError,
        r"inner dimensions differ",
    ),
    Bad(
        Case("ConvInteger", {"x": _x(1, 1, 3, 3)}, {"w": np.zeros((1, 1, 2, 2), np.uint8)}, {}),
        GraphError,
        r"input 0 \(x\) 'x' is tensor\(float\): expected one of",
    ),
    Bad(
        Case("Max", {"a": _r(2, 3)}, {"b": _r(3)}, opset=7),
        ShapeError,
        r"one shape.*\(2, 3\), \(3,\)",
    ),
]

TOO_LARGE = [
    TooLarge(
        Case("Expand", {"x": _x(1, 1)}, {"s": _i64(1000, 1000)}, {}),
        r"Expand output: shape .* needs",
    ),
    TooLarge(
        Case("Tile", {"x": _x(10, 10)}, {"r": _i64(100, 100)}, {}), r"Tile output: shape .* needs"
    ),
    TooLarge(
        Case(
            "Resize",
            {"x": _x(1, 1, 10, 10)},
            {"roi": NO_ROI, "s": np.array([1, 1, 100, 100], _F)},
            {},
        ),
        r"Resize output: shape .* needs",
    ),
    TooLarge(
        Case(
            "ConvTranspose",
            {"x": _x(1, 1, 100, 100)},
            {"w": _x(1, 1, 10, 10)},
            {"strides": [10, 10]},
        ),
        r"ConvTranspose output: shape .* needs",
    ),
    TooLarge(
        Case(
            "OneHot",
            {"i": np.zeros(1000, np.int64)},
            {"d": np.array(1000, np.int64), "v": np.array([0, 1], _F)},
            {},
        ),
        r"OneHot output: shape .* needs",
    ),
    TooLarge(
        Case(
            "Range",
            {"s": np.array(0, np.int64)},
            {"l": np.array(10**6, np.int64), "d": np.array(1, np.int64)},
            {},
        ),
        r"Range output: shape .* needs",
    ),
    # a broadcast output
    *[
        TooLarge(
            Case(op, {"a": np.ones((100, 1), dtype), "b": np.ones((1, 100), dtype)}),
            rf"{op} output( \(inputs broadcast\))?: shape \(100, 100\)",
            limit=4096,
        )
        for op, dtype in (("Max", _F), ("Less", _F), ("Pow", _F), ("BitwiseAnd", np.int32))
    ],
]


def _of(table: list, family: str) -> list:
    """The rows of ``table`` whose op lives in ``runtime/ops/<family>.py``, as pytest
    parameters named op-opset-n."""
    seen: dict[str, int] = {}
    params = []
    for row in table:
        case = row if isinstance(row, Case) else row.case
        if case.family() != family:
            continue
        name = f"{case.op}-{case.opset}"
        seen[name] = seen.get(name, 0) + 1
        params.append(pytest.param(row, id=f"{name}-{seen[name]}"))
    return params


def cases_of(family: str) -> list:
    """The family's single-node cases (``CASES``), to run against onnxruntime."""
    return _of(CASES, family)


def errors_of(family: str) -> list:
    """The family's typed-error cases (``ERRORS``)."""
    return _of(ERRORS, family)


def too_large_of(family: str) -> list:
    """The family's size-limit cases (``TOO_LARGE``)."""
    return _of(TOO_LARGE, family)
