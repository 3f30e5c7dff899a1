"""Single-node graphs and whole models: the numba backend against onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
from onnx_helpers import run_ort, single_node_model

import runtime
from runtime import InferenceSession

ROOT = Path(__file__).resolve().parents[1]
LENET = ROOT / "exported" / "lenet5.onnx"
RNG = np.random.default_rng(1)


def _r(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _compare(model: bytes, feeds, rtol=1e-5, atol=1e-5):
    want = run_ort(model, feeds)
    sess = InferenceSession(model, backend="numba")
    # The first run traces and plans; the second runs the cached plan with its buffers.
    for _ in range(2):
        got = sess.run(None, feeds)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape
            assert g.dtype == w.dtype
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


SINGLE_NODE = [
    (
        "Conv",
        {"x": _r(2, 3, 10, 10)},
        {"w": _r(4, 3, 3, 3), "b": _r(4)},
        {"pads": [1, 1, 1, 1], "strides": [2, 2]},
    ),
    ("Conv", {"x": _r(1, 4, 9, 9)}, {"w": _r(4, 1, 3, 3)}, {"group": 4, "auto_pad": "SAME_UPPER"}),
    (
        "Conv",
        {"x": _r(1, 2, 12, 12)},
        {"w": _r(3, 2, 3, 3)},
        {"dilations": [2, 2], "pads": [2, 1, 0, 2]},
    ),
    ("Conv", {"x": _r(2, 3, 15)}, {"w": _r(5, 3, 4)}, {"strides": [3], "pads": [2, 1]}),
    ("MaxPool", {"x": _r(2, 3, 13, 13)}, {}, {"kernel_shape": [3, 3], "strides": [2, 2]}),
    (
        "MaxPool",
        {"x": _r(1, 2, 10, 10)},
        {},
        {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1, "pads": [1, 1, 0, 0]},
    ),
    (
        "AveragePool",
        {"x": _r(2, 3, 11, 11)},
        {},
        {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1},
    ),
    (
        "AveragePool",
        {"x": _r(2, 3, 11, 11)},
        {},
        {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1},
    ),
    ("GlobalAveragePool", {"x": _r(2, 5, 7, 7)}, {}, {}),
    ("GlobalMaxPool", {"x": _r(2, 5, 7, 7)}, {}, {}),
    ("LRN", {"x": _r(2, 8, 5, 5)}, {}, {"size": 5, "alpha": 1e-3, "beta": 0.75, "bias": 2.0}),
    (
        "BatchNormalization",
        {"x": _r(2, 4, 5, 5)},
        {"s": _r(4), "b": _r(4), "m": _r(4), "v": np.abs(_r(4)) + 0.5},
        {"epsilon": 1e-3},
    ),
    (
        "Gemm",
        {"a": _r(3, 5)},
        {"b": _r(4, 5), "c": _r(4)},
        {"transB": 1, "alpha": 0.5, "beta": 2.0},
    ),
    ("Gemm", {"a": _r(5, 3)}, {"b": _r(5, 4)}, {"transA": 1}),
    # a small batch with W row-major (transB): bias and all in the kernel, for a bias
    # per column (C of (N,), (1, N) or a scalar) or none; a full C is added after it
    ("Gemm", {"a": _r(3, 5)}, {"b": _r(4, 5), "c": _r(4)}, {"transB": 1}),
    ("Gemm", {"a": _r(6, 5)}, {"b": _r(7, 5), "c": _r(1, 7)}, {"transB": 1, "beta": 0.5}),
    ("Gemm", {"a": _r(2, 5)}, {"b": _r(4, 5), "c": np.float32(0.7)}, {"transB": 1}),
    ("Gemm", {"a": _r(3, 5)}, {"b": _r(4, 5)}, {"transB": 1}),
    ("Gemm", {"a": _r(3, 5)}, {"b": _r(4, 5), "c": _r(3, 4)}, {"transB": 1}),
    ("MatMul", {"a": _r(2, 3, 4, 5)}, {"b": _r(5, 6)}, {}),
    ("Add", {"a": _r(2, 3, 4)}, {"b": _r(3, 1)}, {}),
    ("Mul", {"a": _r(2, 3, 4)}, {"b": _r(4)}, {}),
    ("Sub", {"a": _r(4, 1)}, {"b": _r(1, 5)}, {}),
    ("Div", {"a": _r(3, 4)}, {"b": np.abs(_r(3, 4)) + 1}, {}),
    ("Sum", {"a": _r(2, 3)}, {"b": _r(3), "c": _r(2, 1)}, {}),
    ("Relu", {"x": _r(3, 4)}, {}, {}),
    ("LeakyRelu", {"x": _r(3, 4)}, {}, {"alpha": 0.3}),
    ("Tanh", {"x": _r(3, 4)}, {}, {}),
    ("Sigmoid", {"x": _r(3, 4) * 30}, {}, {}),
    ("Clip", {"x": _r(3, 4)}, {"lo": np.float32(-0.5), "hi": np.float32(0.5)}, {}),
    ("Softmax", {"x": _r(2, 3, 4)}, {}, {"axis": 1}),
    ("LogSoftmax", {"x": _r(2, 3, 4)}, {}, {}),
    ("Flatten", {"x": _r(2, 3, 4)}, {}, {"axis": 2}),
    ("Transpose", {"x": _r(2, 3, 4)}, {}, {"perm": [2, 0, 1]}),
    ("Reshape", {"x": _r(2, 3, 4)}, {"s": np.array([0, -1], np.int64)}, {}),
    ("Concat", {"a": _r(2, 3)}, {"b": _r(2, 5)}, {"axis": -1}),
    ("Squeeze", {"x": _r(2, 1, 4)}, {"axes": np.array([1], np.int64)}, {}),
    ("Unsqueeze", {"x": _r(2, 4)}, {"axes": np.array([0, -1], np.int64)}, {}),
    ("Gather", {"x": _r(5, 4)}, {"i": np.array([[0, -1], [2, 3]], np.int64)}, {"axis": 0}),
    (
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
    (
        "Pad",
        {"x": _r(2, 3, 4)},
        {"p": np.array([0, 1, 2, 0, 2, 1], np.int64), "v": np.float32(1.5)},
        {"mode": "constant"},
    ),
    ("Pad", {"x": _r(1, 3, 4)}, {"p": np.array([0, 0, 1, 0, 0, 2], np.int64)}, {"mode": "reflect"}),
    ("Shape", {"x": _r(2, 3, 4)}, {}, {"start": 1}),
    ("Cast", {"x": _r(3, 4) * 10}, {}, {"to": 7}),
    ("Identity", {"x": _r(3)}, {}, {}),
]


@pytest.mark.parametrize(
    ("op", "inputs", "inits", "attrs"),
    SINGLE_NODE,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(SINGLE_NODE)],
)
def test_single_node_matches_onnxruntime(op, inputs, inits, attrs):
    model, feeds = single_node_model(op, inputs, initializers=inits, **attrs)
    _compare(model, feeds)


def test_lenet_with_a_batchnorm_after_its_last_gemm():
    """A BatchNormalization inside LeNet-5's compiled chain (tests/fuzz.py found the
    program builder calling the BN check with the engine's old signature)."""
    model = onnx.load(LENET)
    g = model.graph
    n = 10
    for name, value in (("s", _r(n) + 2), ("b", _r(n)), ("m", _r(n)), ("v", np.abs(_r(n)) + 0.5)):
        g.initializer.append(onnx.numpy_helper.from_array(value, f"bn_{name}"))
    g.node.insert(
        len(g.node) - 1,
        onnx.helper.make_node(
            "BatchNormalization", ["linear_2", "bn_s", "bn_b", "bn_m", "bn_v"], ["bn_out"]
        ),
    )
    g.node[-1].input[0] = "bn_out"  # the Softmax reads it
    x = RNG.random((4, 1, 28, 28), dtype=np.float32)
    _compare(model.SerializeToString(), {"input": x}, atol=1e-5)


@pytest.mark.parametrize(("op", "opset"), [("GlobalAveragePool", 18), ("Softmax", 9)])
def test_an_empty_batch(op, opset):
    """SqueezeNet at batch 0 (tests/fuzz.py): onnxruntime gives empty outputs."""
    model, feeds = single_node_model(op, {"x": np.ones((0, 3, 4, 4), np.float32)}, opset=opset)
    _compare(model, feeds)


@pytest.mark.parametrize("opset", [7, 10, 12, 13])
def test_dropout_mask_matches_onnxruntime(opset):
    """The mask as a graph output (tests/fuzz.py exposed it): X's type before opset 10,
    bool from 10; zeros at inference before 12, ones from 12, as onnxruntime gives."""
    model, feeds = single_node_model("Dropout", {"x": _r(2, 3)}, n_outputs=2, opset=opset)
    _compare(model, feeds)


@pytest.mark.parametrize("opset", [11, 12])
def test_softmax_before_opset_13_flattens(opset):
    x = _r(2, 3, 4)
    model, feeds = single_node_model("Softmax", {"x": x}, axis=1, opset=opset)
    (got,) = InferenceSession(model).run(None, feeds)
    flat = x.reshape(2, 12)
    want = (np.exp(flat) / np.exp(flat).sum(1, keepdims=True)).reshape(x.shape)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    _compare(model, feeds)


def test_split_attribute_then_input(tmp_path):
    x = _r(6, 2)
    m11, feeds = single_node_model("Split", {"x": x}, n_outputs=2, opset=11, split=[2, 4])
    m13, _ = single_node_model(
        "Split", {"x": x}, initializers={"s": np.array([2, 4], np.int64)}, n_outputs=2, opset=13
    )
    for m in (m11, m13):
        _compare(m, feeds)


@pytest.mark.slow
def test_lenet5_full_test_set_matches_onnxruntime(fashion_dir):
    from dataio.datasets import load_dataset

    data = load_dataset("fashion-mnist", fashion_dir, download=False)
    x = (data.test.images.astype(np.float32) / 255.0)[:, None]  # (10000, 1, 28, 28)
    numba_sess = InferenceSession(LENET, backend="numba")
    ort_sess = InferenceSession(LENET, backend="onnxruntime")
    (a,) = numba_sess.run(None, {"input": x})
    (b,) = ort_sess.run(None, {"input": x})
    diff = float(np.abs(a - b).max())
    assert diff <= 1e-4, diff
    np.testing.assert_array_equal(a.argmax(1), b.argmax(1))
    accuracy = float((a.argmax(1) == data.test.labels).mean())
    meta = numba_sess.get_modelmeta().custom_metadata_map
    assert accuracy == pytest.approx(float(meta["test_accuracy"]), abs=1e-4)


@pytest.fixture(scope="module")
def alexnet_model(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from conftest import random_alexnet

    from training.models import WithSoftmax

    model = random_alexnet()
    path = tmp_path_factory.mktemp("alex") / "alexnet.onnx"
    wrapped = WithSoftmax(model).eval()
    torch.onnx.export(
        wrapped,
        (torch.rand(2, 3, 227, 227),),
        str(path),
        dynamo=True,
        input_names=["input"],
        output_names=["probabilities"],
        dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=64)}},
        external_data=False,
        opset_version=18,
    )
    return path


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 5])
def test_alexnet_random_weights_matches_onnxruntime(alexnet_model, batch):
    x = np.random.default_rng(batch).random((batch, 3, 227, 227), dtype=np.float32)
    sess = InferenceSession(alexnet_model, backend="numba")
    plan = sess.describe({"input": x})
    # ReLU and the BN after it are in the conv epilogue
    assert ("Relu", "BatchNormalization") in [s.fused[:2] for s in plan.steps if s.op == "Conv"]
    assert "BatchNormalization" not in [s.op for s in plan.steps]
    # Every conv runs as Winograd: conv1 (11x11, stride 4) as 3x3 over its
    # space-to-depth input, conv2 (5x5) and conv3-5 (3x3) directly.
    convs = plan.algorithms("Conv")
    assert len(convs) == 5 and all("_winograd_f" in a for a in convs), convs
    assert "_5x5_" in convs[1], convs
    (b,) = InferenceSession(alexnet_model, backend="onnxruntime").run(None, {"input": x})
    for _ in range(2):  # traced, then planned
        (a,) = sess.run(None, {"input": x})
        assert a.shape == b.shape == (batch, 10)
        assert float(np.abs(a - b).max()) <= 1e-4
    assert _allocated_per_run(sess, {"input": x}) < a.nbytes + 64 * 1024


def _allocated_per_run(sess, feeds) -> int:
    """Peak bytes allocated by one warm run (numpy reports its buffers to tracemalloc)."""
    import tracemalloc

    sess.run(None, feeds)  # traces and plans
    sess.run(None, feeds)  # allocates this thread's buffers for the plan
    tracemalloc.start()
    try:
        sess.run(None, feeds)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_repeated_run_allocates_only_its_outputs():
    """LeNet-5 runs as a compiled program; step by step, it uses planned buffers."""
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    out_bytes = 4 * 10 * 4
    compiled = InferenceSession(LENET)
    peak = _allocated_per_run(compiled, {"input": x})
    assert peak < out_bytes + 64 * 1024, peak
    assert compiled.describe().compiled
    # Step by step, planned buffers and per-thread scratch hold the intermediates (conv
    # outputs, im2col).
    steps = InferenceSession(LENET, compile_plans=False)
    peak = _allocated_per_run(steps, {"input": x})
    assert peak < out_bytes + 64 * 1024, peak
    assert not steps.describe().compiled


def test_runtime_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, runtime\n"
        f"s = runtime.InferenceSession({str(LENET)!r})\n"
        "s.run(None, {'input': np.zeros((1, 1, 28, 28), np.float32)})\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'onnxruntime' not in sys.modules, 'onnxruntime imported'\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr


def test_session_api_mirrors_onnxruntime():
    s = InferenceSession(LENET)
    (inp,) = s.get_inputs()
    (out,) = s.get_outputs()
    assert (inp.name, inp.shape[1:], inp.type) == ("input", [1, 28, 28], "tensor(float)")
    assert isinstance(inp.shape[0], str)
    assert (out.name, out.shape[1:]) == ("probabilities", [10])
    assert s.get_modelmeta().custom_metadata_map["dataset"] == "fashion-mnist"
    assert runtime.BACKENDS == ("numba", "onnxruntime", "onnxruntime-cuda")


def test_thread_count_does_not_change_results():
    x = np.random.default_rng(3).random((16, 1, 28, 28), dtype=np.float32)
    one = InferenceSession(LENET, threads=1).run(None, {"input": x})[0]
    two = InferenceSession(LENET, threads=2).run(None, {"input": x})[0]
    np.testing.assert_allclose(one, two, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="threads: expected a positive integer"):
        InferenceSession(LENET, threads=0)


def test_compile_plans_is_a_numba_option():
    """compile_plans=False runs step by step, with the same results; other backends
    compile nothing and refuse it."""
    x = np.random.default_rng(8).random((3, 1, 28, 28), dtype=np.float32)
    compiled, steps = InferenceSession(LENET), InferenceSession(LENET, compile_plans=False)
    np.testing.assert_allclose(
        compiled.run(None, {"input": x})[0], steps.run(None, {"input": x})[0], rtol=1e-5, atol=1e-6
    )
    assert compiled.describe().compiled and not steps.describe().compiled
    with pytest.raises(ValueError, match="only the numba backend"):
        InferenceSession(LENET, backend="onnxruntime", compile_plans=False)
    with pytest.raises(ValueError, match="compile_plans: expected True or False"):
        InferenceSession(LENET, compile_plans="no")


def test_conv_then_batchnorm_folds_into_the_weights():
    from onnx import TensorProto, helper, numpy_helper
    from onnx_helpers import chain_model

    rng = np.random.default_rng(4)
    inits = {
        "w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "b": rng.standard_normal(4).astype(np.float32),
        "s": rng.uniform(0.5, 1.5, 4).astype(np.float32),
        "t": rng.standard_normal(4).astype(np.float32),
        "m": rng.standard_normal(4).astype(np.float32),
        "v": rng.uniform(0.5, 2.0, 4).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "t", "m", "v"], ["y"], epsilon=1e-3),
    ]
    model = chain_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 8, 8])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    plan = InferenceSession(model).describe()
    assert [(s.op, s.fused) for s in plan.steps] == [
        ("Conv", ("BatchNormalization (in the weights)",))
    ]
    _compare(model, {"x": rng.standard_normal((2, 3, 8, 8)).astype(np.float32)}, atol=1e-4)


def test_rewrite_passes_run_in_their_listed_order():
    """Identity removed; Conv, BN, ReLU, BN, MaxPool fused into one conv step; Gemm
    and Relu into one: ``describe().passes`` names the passes that did it, in the
    order of ``passes.PASSES``. Without optimisation, none ran."""
    from onnx import TensorProto, helper, numpy_helper
    from onnx_helpers import chain_model

    from runtime.engine import NumbaEngine
    from runtime.graph import load_graph
    from runtime.passes import PASSES

    rng = np.random.default_rng(9)
    m = 4
    bn = {f"{p}{i}": rng.uniform(0.5, 1.5, m).astype(np.float32) for p in "stmv" for i in (1, 2)}
    inits = {
        "w": rng.standard_normal((m, 3, 3, 3)).astype(np.float32),
        "b": rng.standard_normal(m).astype(np.float32),
        "fc": rng.standard_normal((m * 3 * 3, 5)).astype(np.float32),
        **bn,
    }
    node = helper.make_node
    nodes = [
        node("Identity", ["x"], ["xi"]),
        node("Conv", ["xi", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        node("BatchNormalization", ["c", "s1", "t1", "m1", "v1"], ["n1"]),
        node("Relu", ["n1"], ["r"]),
        node("BatchNormalization", ["r", "s2", "t2", "m2", "v2"], ["n2"]),
        node("MaxPool", ["n2"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        node("Flatten", ["p"], ["f"]),
        node("Gemm", ["f", "fc"], ["g"]),
        node("Relu", ["g"], ["y"]),
    ]
    model = chain_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    plan = InferenceSession(model).describe()
    names = [p.name for p in PASSES]
    assert len(set(names)) == len(names)
    assert list(plan.passes) == [n for n in names if n in plan.passes]  # in PASSES order
    fusions = ("bn", "activation", "activation_bn", "max_pool")
    want = {"remove_identities", "fuse_gemm_relu", *(f"fuse_conv_{f}" for f in fusions)}
    assert want <= set(plan.passes), plan.passes
    assert [(s.op, s.fused) for s in plan.steps] == [
        ("Conv", ("BatchNormalization (in the weights)", "Relu", "BatchNormalization", "MaxPool")),
        ("Flatten", ()),
        ("Gemm", ("Relu",)),
    ]
    assert NumbaEngine(load_graph(model), optimize=False).describe().passes == ()
    _compare(model, {"x": rng.standard_normal((2, 3, 6, 6)).astype(np.float32)}, atol=1e-4)


@pytest.mark.parametrize(
    ("pool_attrs", "fused"),
    [
        ({"kernel_shape": [3, 3], "strides": [2, 2]}, True),
        ({"kernel_shape": [2, 2], "strides": [2, 2]}, True),
        ({"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, False),
        ({"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}, False),
    ],
)
def test_max_pool_fuses_into_the_conv_before_it(pool_attrs, fused):
    """The article's AlexNet block, Conv, ReLU, BN, MaxPool, with Winograd-sized
    channels: one step when the pool has no padding or ceil mode, two otherwise."""
    from onnx import TensorProto, helper, numpy_helper
    from onnx_helpers import chain_model

    rng = np.random.default_rng(5)
    c, m = 32, 40
    inits = {
        "w": (rng.standard_normal((m, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32),
        "b": rng.standard_normal(m).astype(np.float32),
        "s": rng.uniform(-1.5, 1.5, m).astype(np.float32),  # negative scales too
        "t": rng.standard_normal(m).astype(np.float32),
        "mu": rng.standard_normal(m).astype(np.float32),
        "v": rng.uniform(0.5, 2.0, m).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("BatchNormalization", ["r", "s", "t", "mu", "v"], ["n"]),
        helper.make_node("MaxPool", ["n"], ["y"], **pool_attrs),
    ]
    model = chain_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, 13, 13])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    steps = [(s.op, s.fused) for s in InferenceSession(model).describe().steps]
    epilogue = ("Relu", "BatchNormalization")
    assert steps == (
        [("Conv", (*epilogue, "MaxPool"))] if fused else [("Conv", epilogue), ("MaxPool", ())]
    )
    for n in (1, 3):
        _compare(model, {"x": rng.standard_normal((n, c, 13, 13)).astype(np.float32)}, atol=1e-4)


def _activation_nodes(act: str, src: str, dst: str) -> list:
    from onnx import helper

    if act == "SiLU":  # as torch exports nn.SiLU
        return [
            helper.make_node("Sigmoid", [src], [f"{dst}_sig"]),
            helper.make_node("Mul", [src, f"{dst}_sig"], [dst]),
        ]
    if act == "Relu6":  # Clip with constant bounds as inputs (opset 11 on)
        return [helper.make_node("Clip", [src, "lo", "hi"], [dst])]
    if act == "ClipMin":  # only a lower bound
        return [helper.make_node("Clip", [src, "lo"], [dst])]
    if act == "HardSigmoid":
        return [helper.make_node("HardSigmoid", [src], [dst], alpha=0.3, beta=0.4)]
    return [helper.make_node(act, [src], [dst])]


CONV_SHAPES = {  # (C, M, kernel, group): Winograd-sized 3x3, a 1x1, a depthwise 3x3
    "3x3": (32, 40, 3, 1),
    "1x1": (24, 48, 1, 1),
    "depthwise": (24, 24, 3, 24),
}


@pytest.mark.parametrize("shape", list(CONV_SHAPES))
@pytest.mark.parametrize("act", ["Relu6", "ClipMin", "HardSigmoid", "HardSwish", "SiLU"])
def test_mobile_activations_fuse_into_the_conv(act, shape):
    """MobileNet's Relu6 (Clip) and HardSwish, EfficientNet's SiLU (Sigmoid, Mul): after
    a Conv and its BatchNormalization, one step, on every conv path; as onnxruntime."""
    from onnx import TensorProto, helper, numpy_helper
    from onnx_helpers import chain_model

    rng = np.random.default_rng(7)
    c, m, k, group = CONV_SHAPES[shape]
    inits = {
        "w": (rng.standard_normal((m, c // group, k, k)) / np.sqrt(k * k * c / group)),
        "s": rng.uniform(0.5, 1.5, m),
        "t": rng.standard_normal(m),
        "mu": rng.standard_normal(m) * 0.1,
        "v": rng.uniform(0.5, 2.0, m),
        "lo": np.array(-0.25),
        "hi": np.array(0.75),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[k // 2] * 4, group=group),
        helper.make_node("BatchNormalization", ["c", "s", "t", "mu", "v"], ["n"]),
        *_activation_nodes(act, "n", "y"),
    ]
    model = chain_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, 14, 14])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v.astype(np.float32), n) for n, v in inits.items()],
    )
    (step,) = InferenceSession(model).describe().steps
    assert step.op == "Conv" and step.fused[0] == "BatchNormalization (in the weights)"
    assert step.fused[1:] == (("Sigmoid", "Mul") if act == "SiLU" else (nodes[-1].op_type,))
    for n in (1, 3):
        _compare(model, {"x": rng.standard_normal((n, c, 14, 14)).astype(np.float32)}, atol=1e-4)


def test_silu_is_not_fused_when_the_conv_output_has_another_reader():
    """Sigmoid and Mul fuse as SiLU only when they are the conv output's only readers."""
    from onnx import TensorProto, helper, numpy_helper
    from onnx_helpers import chain_model

    rng = np.random.default_rng(8)
    w = rng.standard_normal((8, 4, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        *_activation_nodes("SiLU", "c", "y"),
        helper.make_node("Add", ["y", "c"], ["z"]),
    ]
    model = chain_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 5, 5])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w")],
    )
    steps = [(s.op, s.fused) for s in InferenceSession(model).describe().steps]
    assert steps == [("Conv", ()), ("Sigmoid", ()), ("Mul", ()), ("Add", ())]
    _compare(model, {"x": rng.standard_normal((2, 4, 5, 5)).astype(np.float32)}, atol=1e-5)


def test_plans_bind_each_op_to_its_shapes():
    """A plan's Conv, Gemm, Softmax and reshapes run as calls laid out for its input
    shape; a second batch size gets a plan of its own. Results match onnxruntime."""
    from onnx import TensorProto, helper, numpy_helper
    from onnx_helpers import chain_model

    rng = np.random.default_rng(6)
    inits = {
        "w": (rng.standard_normal((4, 3, 3, 3)) / 5).astype(np.float32),
        "shape": np.array([0, -1], np.int64),
        "fc": (rng.standard_normal((6, 4 * 4 * 4)) / 8).astype(np.float32),
        "fcb": rng.standard_normal(6).astype(np.float32),
        "mm": rng.standard_normal((6, 5)).astype(np.float32),
        "k": np.float32(1.5),
    }
    node = helper.make_node
    nodes = [
        node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        node("Relu", ["c"], ["r"]),
        node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        node("Reshape", ["p", "shape"], ["f"]),
        node("Gemm", ["f", "fc", "fcb"], ["g"], transB=1),
        node("Relu", ["g"], ["gr"]),
        node("Mul", ["gr", "k"], ["gk"]),  # no compiled form: the plan runs step by step
        node("MatMul", ["gk", "mm"], ["z"]),  # no prepare: runs as it is
        node("Softmax", ["z"], ["y"]),
    ]
    model = chain_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    for n in (2, 3):
        _compare(model, {"x": rng.standard_normal((n, 3, 8, 8)).astype(np.float32)})
    sess = InferenceSession(model, backend="numba")
    for n in (2, 3):
        plan = sess.describe({"x": rng.standard_normal((n, 3, 8, 8)).astype(np.float32)})
        assert plan.input_shapes == {"x": (n, 3, 8, 8)}  # a plan of its own
        assert not plan.compiled
        assert [s.op for s in plan.steps if s.bound] == ["Conv", "Reshape", "Gemm", "Softmax"]


def test_blas_is_single_threaded_inside_numba_runs(monkeypatch):
    """One thread pool: BLAS threads beside numba's would oversubscribe the cores."""
    from threadpoolctl import threadpool_info

    from runtime.ops import registry

    seen = []
    real = registry.resolve("Gemm", 18).fn

    def spying_gemm(*args, **kwargs):
        seen.extend(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
        return real(*args, **kwargs)

    monkeypatch.setitem(registry.OPS, "Gemm", [registry.OpVersion("Gemm", 7, spying_gemm)])
    sess = InferenceSession(LENET, compile_plans=False)  # a compiled program calls no BLAS
    sess.run(None, {"input": np.zeros((2, 1, 28, 28), np.float32)})
    assert seen and set(seen) == {1}


def test_scalar_constants_and_initializers_stay_scalars():
    """torch's legacy exporter's channel shuffle: Shape -> Gather(scalar index) ->
    Div(scalar) -> Unsqueeze -> Concat. A scalar turned 1-d at load made the Concat fail."""
    from onnx import TensorProto, helper, numpy_helper
    from onnx_helpers import chain_model

    nodes = [
        helper.make_node(
            "Constant", [], ["i1"], value=numpy_helper.from_array(np.array(1, np.int64))
        ),
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "i1"], ["c"], axis=0),  # () channels
        helper.make_node("Div", ["c", "two"], ["half"]),  # () scalar initializer
        helper.make_node("Unsqueeze", ["half", "zero"], ["half1"]),  # (1,)
        helper.make_node("Concat", ["minus1", "half1"], ["shape"], axis=0),  # (2,)
        helper.make_node("Reshape", ["x", "shape"], ["r"]),
        helper.make_node("Transpose", ["c"], ["ct"]),  # () stays ()
    ]
    inits = [
        numpy_helper.from_array(np.array(2, np.int64), "two"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 3])
    outs = [
        helper.make_tensor_value_info("r", TensorProto.FLOAT, None),
        helper.make_tensor_value_info("ct", TensorProto.INT64, None),
    ]
    model = chain_model(nodes, [x], outs, inits, opset=13)
    _compare(model, {"x": _r(2, 4, 3)})
    got = InferenceSession(model, backend="numba").run(None, {"x": _r(2, 4, 3)})
    assert [g.shape for g in got] == [(12, 2), ()]
