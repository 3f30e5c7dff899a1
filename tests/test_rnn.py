"""The recurrent ops (runtime/ops/rnn.py, runtime/kernels/rnn.py): the kernels against
their naive twin (tests/naive.py), single nodes against onnxruntime (directions,
layouts, sequence_lens, initial states, activations, clip, optional outputs), and
typed errors for bad shapes and attributes. The ONNX node suite's RNN, GRU and LSTM
cases run in tests/test_conformance.py."""

from __future__ import annotations

import naive
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from onnx_helpers import run_ort

from runtime import InferenceSession, InvalidAttributeError, ShapeError
from runtime.kernels import rnn as kernels
from runtime.ops import rnn as ops

RNG = np.random.default_rng(7)
GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
CODES = {name: code for code, name in enumerate(kernels.ACTIVATIONS)}


def test_the_twin_knows_every_activation_in_the_kernels_order():
    assert tuple(naive.RNN_ACTIVATIONS) == kernels.ACTIVATIONS


def _r(*shape, scale=0.5, dtype=np.float32):
    return (RNG.standard_normal(shape) * scale).astype(dtype)


# --------------------------------------------------------------- kernel vs twin

# (cell, directions reversed, activations per direction, alpha, beta, clip, options)
KERNEL_CASES = [
    ("RNN", (False,), ["Tanh"], 0.0, 0.0, np.inf, {}),
    ("RNN", (True,), ["Relu"], 0.0, 0.0, 1.5, {}),
    ("RNN", (False, True), ["LeakyRelu"], 0.1, 0.0, np.inf, {}),
    ("RNN", (False,), ["Affine"], 0.7, 0.2, np.inf, {}),
    ("RNN", (True,), ["ThresholdedRelu"], 0.3, 0.0, np.inf, {}),
    ("RNN", (False,), ["ScaledTanh"], 1.5, 0.6, np.inf, {}),
    ("RNN", (False,), ["HardSigmoid"], 0.3, 0.4, np.inf, {}),
    ("RNN", (False, True), ["Elu"], 0.8, 0.0, np.inf, {}),
    ("RNN", (False,), ["Softsign"], 0.0, 0.0, np.inf, {}),
    ("RNN", (True,), ["Softplus"], 0.0, 0.0, 0.9, {}),
    ("RNN", (False,), ["Sigmoid"], 0.0, 0.0, np.inf, {}),
    ("GRU", (False,), ["Sigmoid", "Tanh"], 0.0, 0.0, np.inf, {}),
    ("GRU", (False, True), ["Sigmoid", "Tanh"], 0.0, 0.0, np.inf, {"linear_before_reset": 1}),
    ("GRU", (True,), ["HardSigmoid", "Softsign"], 0.3, 0.45, 0.7, {}),
    ("GRU", (True,), ["Sigmoid", "Relu"], 0.0, 0.0, 1.2, {"linear_before_reset": 1}),
    ("LSTM", (False,), ["Sigmoid", "Tanh", "Tanh"], 0.0, 0.0, np.inf, {}),
    ("LSTM", (False, True), ["Sigmoid", "Tanh", "Tanh"], 0.0, 0.0, np.inf, {"p": True}),
    ("LSTM", (True,), ["Sigmoid", "Tanh", "Tanh"], 0.0, 0.0, 0.6, {"input_forget": 1}),
    (
        "LSTM",
        (True,),
        ["HardSigmoid", "Elu", "Softsign"],
        0.3,
        0.4,
        np.inf,
        {"p": True, "c0": True},
    ),
]


def _kernel_args(cell, reverse, names, alpha, beta, dtype, n=11, t=5, h=4):
    """Arguments for a kernel: more than ``kernels.ROWS`` rows (two blocks), rows of
    length t, 2 and 0 first, the others random."""
    d = len(reverse)
    lengths = np.concatenate([[t, 2, 0], RNG.integers(0, t + 1, n - 3)]).astype(np.int64)
    g = GATES[cell] * h
    per = len(names)
    return dict(
        xw=_r(t, n, d * g, dtype=dtype),
        rt=_r(d, h, g, dtype=dtype),
        bias=_r(d, 2 * g, scale=0.2, dtype=dtype),
        h0=_r(d, n, h, dtype=dtype),
        seq_lens=lengths,
        reverse=np.array(reverse, np.bool_),
        acts=np.array([[CODES[a] for a in names]] * d, np.int64).reshape(d, per),
        alphas=np.full((d, per), alpha),
        betas=np.full((d, per), beta),
    )


@pytest.mark.parametrize(("cell", "reverse", "names", "alpha", "beta", "clip", "opts"),
                         KERNEL_CASES)  # fmt: skip
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_matches_naive(cell, reverse, names, alpha, beta, clip, opts, dtype):
    a = _kernel_args(cell, reverse, names, alpha, beta, dtype)
    t_n, n_n = a["xw"].shape[:2]
    d_n, h_n = a["rt"].shape[:2]
    y = np.full((t_n, d_n, n_n, h_n), np.nan, dtype)
    y_h = np.full((d_n, n_n, h_n), np.nan, dtype)
    y_c = np.full((d_n, n_n, h_n), np.nan, dtype)
    if cell == "RNN":
        kernels.rnn_recurrence(*a.values(), clip, y, y_h)
    elif cell == "GRU":
        lbr = bool(opts.get("linear_before_reset", 0))
        kernels.gru_recurrence(*list(a.values())[:6], lbr, *list(a.values())[6:], clip, y, y_h)
    elif cell == "LSTM":
        opts = dict(opts)
        h_n = a["rt"].shape[1]
        p = _r(d_n, 3 * h_n, dtype=dtype) if opts.pop("p", False) else None
        c0 = _r(d_n, n_n, h_n, dtype=dtype) if opts.pop("c0", False) else None
        opts.update(p=p, c0=c0)
        v = list(a.values())
        kernels.lstm_recurrence(
            *v[:3],
            np.zeros((d_n, 3 * h_n), dtype) if p is None else p,
            v[3],
            np.zeros((d_n, n_n, h_n), dtype) if c0 is None else c0,
            *v[4:6],
            bool(opts.get("input_forget", 0)),
            *v[6:],
            clip,
            y,
            y_h,
            y_c,
        )
    want_y, want_h, want_c = naive.recurrence(cell, *a.values(), clip, **opts)
    tol = 2e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, want_y, rtol=tol, atol=tol)
    np.testing.assert_allclose(y_h, want_h, rtol=tol, atol=tol)
    if cell == "LSTM":
        np.testing.assert_allclose(y_c, want_c, rtol=tol, atol=tol)
    assert np.all(y[2:, :, 1] == 0) and np.all(y[:, :, 2] == 0)  # past each row's length
    assert np.all(y_h[:, 2] == 0)  # an empty row


# ------------------------------------------------------- single node vs onnxruntime


def recurrent_model(cell, feeds, inits, inputs, outputs, opset=14, **attrs) -> bytes:
    """One ``cell`` node; ``inputs`` names its inputs in order ('' for an omitted one),
    each from ``feeds`` (graph inputs) or ``inits`` (initializers)."""
    node = helper.make_node(cell, inputs, outputs, name=f"{cell.lower()}_node", **attrs)
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        [node],
        "recurrent",
        [vi(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for k, v in feeds.items()],
        [onnx.ValueInfoProto(name=o) for o in outputs if o],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString()


def _case(cell, *, direction="forward", layout=0, n=3, t=6, i=5, h=4, bias=True,
          lens=None, init=False, peep=False, outputs=("y", "y_h"), opset=14,
          dtype=np.float32, seed=0, **attrs):  # fmt: skip
    """A model of one ``cell`` node with random weights, and its feeds. The values are
    float16 numbers whatever ``dtype``, so a seed gives one model in every type."""
    rng = np.random.default_rng(seed)

    def r(*shape, scale=0.5):
        return (rng.standard_normal(shape) * scale).astype(np.float16).astype(dtype)

    d = 2 if direction == "bidirectional" else 1
    g = GATES[cell] * h
    x = r(*((n, t, i) if layout else (t, n, i)), scale=1.0)
    inits = {"w": r(d, g, i), "r": r(d, g, h)}
    names = ["x", "w", "r", "", "", "", "", ""]
    if bias:
        inits["b"] = r(d, 2 * g, scale=0.3)
        names[3] = "b"
    if lens is not None:
        inits["lens"] = np.array(lens, np.int32)
        names[4] = "lens"
    state = (n, d, h) if layout else (d, n, h)
    if init:
        inits["h0"] = r(*state)
        names[5] = "h0"
        if cell == "LSTM":
            inits["c0"] = r(*state)
            names[6] = "c0"
    if peep:
        inits["p"] = r(d, 3 * h)
        names[7] = "p"
    while not names[-1]:
        names.pop()
    if layout:
        attrs["layout"] = layout
    model = recurrent_model(cell, {"x": x}, inits, names, list(outputs), opset,
                            hidden_size=h, direction=direction, **attrs)  # fmt: skip
    return model, {"x": x}


PARITY_CASES = {
    "rnn-bidirectional-lens-init": ("RNN", dict(direction="bidirectional", lens=[6, 3, 1],
                                                init=True)),
    "rnn-reverse-batch-first": ("RNN", dict(direction="reverse", layout=1, lens=[2, 6, 4])),
    "rnn-opset7-no-bias": ("RNN", dict(opset=7, bias=False, outputs=("y",))),
    "rnn-only-y_h": ("RNN", dict(direction="bidirectional", outputs=("", "y_h"))),
    "rnn-relu-clip": ("RNN", dict(activations=["Relu"], clip=0.8)),
    "rnn-leakyrelu-both": ("RNN", dict(direction="bidirectional", activations=["LeakyRelu",
                                       "Affine"], activation_alpha=[0.1, 0.6],
                                       activation_beta=[0.0, 0.2])),
    "gru-bidirectional-lens-init": ("GRU", dict(direction="bidirectional", lens=[6, 3, 1],
                                                init=True)),
    "gru-linear-before-reset": ("GRU", dict(direction="bidirectional", lens=[2, 6, 5],
                                            linear_before_reset=1, init=True)),
    "gru-reverse-batch-first": ("GRU", dict(direction="reverse", layout=1, lens=[2, 6, 4],
                                            init=True)),
    "gru-opset7-no-bias": ("GRU", dict(opset=7, bias=False, outputs=("", "y_h"))),
    "gru-clip-activations": ("GRU", dict(direction="bidirectional", clip=0.5,
                                         activations=["HardSigmoid", "Softsign", "Sigmoid",
                                                      "LeakyRelu"],
                                         activation_alpha=[0.25, 0.05],
                                         activation_beta=[0.45])),
    "lstm-bidirectional-lens-init": ("LSTM", dict(direction="bidirectional", lens=[6, 3, 1],
                                                  init=True, outputs=("y", "y_h", "y_c"))),
    "lstm-peepholes-reverse": ("LSTM", dict(direction="reverse", peep=True, init=True,
                                            lens=[4, 6, 2], outputs=("y", "y_h", "y_c"))),
    "lstm-batch-first": ("LSTM", dict(direction="bidirectional", layout=1, lens=[2, 6, 4],
                                      init=True, peep=True, outputs=("y", "y_h", "y_c"))),
    "lstm-opset7-input-forget": ("LSTM", dict(opset=7, input_forget=1, bias=False,
                                              outputs=("y",))),
    "lstm-only-y_c": ("LSTM", dict(direction="bidirectional", outputs=("", "", "y_c"))),
    "lstm-clip-activations": ("LSTM", dict(direction="bidirectional", clip=0.4, peep=True,
                                           activations=["HardSigmoid", "Tanh", "Softsign",
                                                        "Sigmoid", "LeakyRelu", "Relu"],
                                           activation_alpha=[0.25, 0.05],
                                           activation_beta=[0.45])),
}  # fmt: skip


def _numba(model, feeds):
    return InferenceSession(model, backend="numba").run(None, feeds)


def _onnxruntime(model, feeds):
    """onnxruntime's outputs; it has no layout 1 (batch-first), so such a node runs
    as its layout-0 twin on transposed inputs, and the outputs are transposed back."""
    proto = onnx.load_from_string(model)
    node = proto.graph.node[0]
    layout = next((a for a in node.attribute if a.name == "layout"), None)
    if layout is None or layout.i == 0:
        return run_ort(model, feeds)
    node.attribute.remove(layout)
    for init in proto.graph.initializer:
        if init.name in ("h0", "c0"):
            init.CopyFrom(
                numpy_helper.from_array(numpy_helper.to_array(init).transpose(1, 0, 2), init.name)
            )
    x = feeds["x"].transpose(1, 0, 2).copy()
    proto.graph.input[0].CopyFrom(
        helper.make_tensor_value_info("x", helper.np_dtype_to_tensor_dtype(x.dtype), x.shape)
    )
    outs = run_ort(proto.SerializeToString(), {"x": x})
    return [o.transpose(2, 0, 1, 3) if o.ndim == 4 else o.transpose(1, 0, 2) for o in outs]


@pytest.mark.parametrize("name", PARITY_CASES)
def test_single_node_matches_onnxruntime(name):
    cell, kw = PARITY_CASES[name]
    model, feeds = _case(cell, **kw)
    session = InferenceSession(model, backend="numba")
    ours, ref = session.run(None, feeds), _onnxruntime(model, feeds)
    # a second run calls the node's Layer, laid out once for the plan: the same bits
    again = session.run(None, feeds)
    step = session.describe(feeds).steps[0]
    assert step.bound and step.algorithm.endswith(f"{cell.lower()}_recurrence")
    assert f"rnn.{cell.lower()}_recurrence" in step.runs
    for a, b in zip(ours, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(ours) == len(ref)
    for got, want in zip(ours, ref, strict=True):
        assert got.shape == want.shape
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", ["RNN", "GRU", "LSTM"])
def test_float64_and_float16_follow_float32(cell):
    """float64 runs the kernel in float64 (onnxruntime has no double recurrences to
    compare with: the float32 result is the reference); float16 runs in float32 and
    rounds."""
    kw = dict(direction="bidirectional", lens=[6, 2, 0], init=True, seed=3)
    want = _numba(*_case(cell, **kw))
    for dtype, tol in ((np.float64, 1e-5), (np.float16, 1e-3)):
        got = _numba(*_case(cell, dtype=dtype, **kw))
        for g, w in zip(got, want, strict=True):
            assert g.dtype == dtype
            np.testing.assert_allclose(g.astype(np.float32), w, rtol=tol, atol=tol)


@pytest.mark.parametrize("cell", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize(("n", "t"), [(0, 4), (2, 0)], ids=["no-batch", "no-steps"])
def test_zero_batch_and_zero_steps(cell, n, t):
    """Empty outputs of the right shapes, and zero final states for rows that read no
    step (onnxruntime's answer for RNN, and for LSTM without steps; its GRU, and its
    LSTM without a batch, abort the process, so it is not asked here)."""
    outputs = ("y", "y_h", "y_c") if cell == "LSTM" else ("y", "y_h")
    got = _numba(*_case(cell, direction="bidirectional", n=n, t=t, init=True, outputs=outputs))
    assert [a.shape for a in got] == [(t, 2, n, 4)] + [(2, n, 4)] * (len(outputs) - 1)
    assert all(a.dtype == np.float32 and not a.any() for a in got)


# ---------------------------------------------------------------------- errors

ERROR_CASES = [
    ("RNN", dict(direction="sideways"), InvalidAttributeError,
     r"RNN node 'rnn_node': direction 'sideways': expected one of forward, reverse, bidirectional"),
    ("RNN", dict(activations=["Swish"]), InvalidAttributeError,
     r"RNN node 'rnn_node': activation 'Swish': expected one of Relu, Tanh"),
    ("RNN", dict(direction="bidirectional", activations=["Tanh"]), InvalidAttributeError,
     r"expected 2 function\(s\) \(1 per direction, 2 direction\(s\)\), received 1"),
    ("RNN", dict(lens=[6, 7, 1]), ShapeError,
     r"sequence_lens\[1\] is 7: expected 0 to 6"),
    ("RNN", dict(clip=-1.0), InvalidAttributeError, r"clip -1.0: expected a threshold > 0"),
    ("RNN", dict(hidden_size_attr=5), ShapeError,
     r"RNN node 'rnn_node': input W must have shape \(1, 5, 5\), received \(1, 4, 5\)"),
    ("GRU", dict(activations=["Sigmoid", "Tanh", "Tanh"]), InvalidAttributeError,
     r"GRU node 'gru_node': activations \['Sigmoid', 'Tanh', 'Tanh'\]: expected 2 function\(s\)"),
    ("GRU", dict(layout=1, bad_init=(2, 1, 4)), ShapeError,
     r"GRU node 'gru_node': input initial_h must have shape \(3, 1, 4\), received \(2, 1, 4\)"),
    ("LSTM", dict(activations=["Sigmoid", "Tanh", "Tanh"], direction="bidirectional"),
     InvalidAttributeError, r"LSTM node 'lstm_node': activations .*: expected 6 function\(s\)"),
    ("LSTM", dict(layout=2), InvalidAttributeError,
     r"LSTM node 'lstm_node': layout 2: expected 0 or 1"),
    ("LSTM", dict(bad_p=(1, 8)), ShapeError,
     r"LSTM node 'lstm_node': input P must have shape \(1, 12\), received \(1, 8\)"),
]  # fmt: skip


@pytest.mark.parametrize(("cell", "kw", "error", "match"), ERROR_CASES)
def test_bad_input_is_a_typed_error(cell, kw, error, match):
    kw = dict(kw)
    wrong_h = kw.pop("hidden_size_attr", None)
    bad_init = kw.pop("bad_init", None)
    bad_p = kw.pop("bad_p", None)
    model, feeds = _case(cell, **kw)
    if bad_p is not None:
        proto = onnx.load_from_string(model)
        proto.graph.initializer.append(numpy_helper.from_array(np.zeros(bad_p, np.float32), "p"))
        inputs = list(proto.graph.node[0].input) + [""] * 8
        inputs[7] = "p"
        del proto.graph.node[0].input[:]
        proto.graph.node[0].input.extend(inputs[:8])
        model = proto.SerializeToString()
    if bad_init is not None:  # an initial_h of another shape, by name
        proto = onnx.load_from_string(model)
        proto.graph.initializer.append(
            numpy_helper.from_array(np.zeros(bad_init, np.float32), "h0")
        )
        inputs = list(proto.graph.node[0].input) + [""] * 6
        inputs[5] = "h0"
        del proto.graph.node[0].input[:]
        proto.graph.node[0].input.extend(inputs[:6])
        model = proto.SerializeToString()
    if wrong_h is not None:
        proto = onnx.load_from_string(model)
        next(a for a in proto.graph.node[0].attribute if a.name == "hidden_size").i = wrong_h
        model = proto.SerializeToString()
    with pytest.raises(error, match=match) as caught:
        _numba(model, feeds)
    assert f"{cell.lower()}_node" in str(caught.value)  # the node is named


def test_activation_parameters_are_consumed_by_the_functions_that_take_them():
    codes, alphas, betas = ops.activation_table(
        ops.LSTM, ("HardSigmoid", "Tanh", "LeakyRelu"), (0.3,), (0.6,), 1
    )
    assert codes.tolist() == [[CODES["HardSigmoid"], CODES["Tanh"], CODES["LeakyRelu"]]]
    assert alphas.tolist() == [[0.3, 0.0, 0.01]]  # LeakyRelu: none left, its default
    assert betas.tolist() == [[0.6, 0.0, 0.0]]


# ------------------------------------------------------------------ a CRNN


def crnn_model(height: int = 8, channels: int = 6, hidden: int = 5, classes: int = 7) -> bytes:
    """A tiny CRNN as OCR recognisers are built: Conv -> Relu over a text line
    (N, 1, height, W), its columns as the time steps (W, N, C*height), a
    bidirectional LSTM, then per-step class scores (W, N, classes) and LogSoftmax.
    Batch and width are symbolic."""
    rng = np.random.default_rng(5)

    def r(*shape, scale=0.4):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    feat, g = channels * height, 4 * hidden
    node = helper.make_node
    nodes = [
        node("Conv", ["image", "cw", "cb"], ["conv"], pads=[1, 1, 1, 1]),
        node("Relu", ["conv"], ["relu"]),
        node("Transpose", ["relu"], ["cols"], perm=[3, 0, 1, 2]),  # (W, N, C, H)
        node("Reshape", ["cols", "seq_shape"], ["seq"]),  # (W, N, C*H)
        node("LSTM", ["seq", "w", "r", "b"], ["y"], hidden_size=hidden,
             direction="bidirectional"),  # (W, 2, N, hidden)
        node("Transpose", ["y"], ["yt"], perm=[0, 2, 1, 3]),  # (W, N, 2, hidden)
        node("Reshape", ["yt", "seq_shape"], ["both"]),  # (W, N, 2*hidden)
        node("MatMul", ["both", "fc"], ["logits"]),  # (W, N, classes)
        node("LogSoftmax", ["logits"], ["scores"], axis=2),
    ]  # fmt: skip
    inits = {
        "cw": r(channels, 1, 3, 3),
        "cb": r(channels, scale=0.1),
        "seq_shape": np.array([0, 0, -1], np.int64),
        "w": r(2, g, feat),
        "r": r(2, g, hidden),
        "b": r(2, 2 * g, scale=0.1),
        "fc": r(2 * hidden, classes),
    }
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes,
        "crnn",
        [vi("image", onnx.TensorProto.FLOAT, ["N", 1, height, "W"])],
        [vi("scores", onnx.TensorProto.FLOAT, ["W", "N", classes])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


@pytest.mark.parametrize(("batch", "width"), [(1, 24), (3, 17)])
def test_a_crnn_matches_onnxruntime(batch, width):
    model = crnn_model()
    image = np.random.default_rng(batch).random((batch, 1, 8, width), np.float32)
    session = InferenceSession(model, backend="numba")
    (ours,) = session.run(None, {"image": image})
    (lstm,) = [s for s in session.describe({"image": image}).steps if s.op == "LSTM"]
    assert lstm.bound and lstm.algorithm.startswith("gemm_f32_")  # the engine's GEMM
    (ref,) = run_ort(model, {"image": image})
    assert ours.shape == ref.shape == (width, batch, 7)
    assert ours.dtype == ref.dtype
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
