"""Bad input gets a typed error naming the thing, with expected against received."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_helpers import chain_model, single_node_model

from runtime import (
    BackendUnavailableError,
    ExternalDataError,
    GraphError,
    InferenceSession,
    InputFeedError,
    InvalidAttributeError,
    ModelLoadError,
    ModelNotFoundError,
    ShapeError,
    TensorTooLargeError,
    UnsupportedOpError,
    UnsupportedOpsetError,
)

ROOT = Path(__file__).resolve().parents[1]
LENET = ROOT / "exported" / "lenet5.onnx"
F = TensorProto.FLOAT


def _vi(name, shape):
    return helper.make_tensor_value_info(name, F, shape)


# --------------------------------------------------------------------------- files


def test_missing_file(tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"nope\.onnx not found"):
        InferenceSession(tmp_path / "nope.onnx")
    with pytest.raises(FileNotFoundError):  # the broad kind works too
        InferenceSession(tmp_path / "nope.onnx", backend="onnxruntime")


def test_directory_is_not_a_model(tmp_path):
    with pytest.raises(ModelNotFoundError, match="is not a file"):
        InferenceSession(tmp_path)


def test_empty_file(tmp_path):
    (tmp_path / "e.onnx").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="empty file"):
        InferenceSession(tmp_path / "e.onnx")


@pytest.mark.parametrize("backend", ["numba", "onnxruntime"])
def test_truncated_file(tmp_path, backend):
    data = LENET.read_bytes()
    (tmp_path / "t.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="not an ONNX model"):
        InferenceSession(tmp_path / "t.onnx", backend=backend)


def test_not_onnx(tmp_path):
    (tmp_path / "x.onnx").write_text("this is a text file, not a protobuf\n")
    with pytest.raises(ModelLoadError, match="not an ONNX model"):
        InferenceSession(tmp_path / "x.onnx")


# --------------------------------------------------------------------------- graphs


def test_cycle():
    nodes = [
        helper.make_node("Relu", ["x", "b"], ["a"], name="first"),
        helper.make_node("Add", ["a", "x"], ["b"], name="second"),
    ]
    nodes[0] = helper.make_node("Add", ["x", "b"], ["a"], name="first")
    model = chain_model(nodes, [_vi("x", [2])], [_vi("b", [2])])
    with pytest.raises(GraphError, match=r"cycle through node\(s\) \['first', 'second'\]"):
        InferenceSession(model)


def test_undefined_tensor():
    model = chain_model(
        [helper.make_node("Add", ["x", "ghost"], ["y"], name="adder")],
        [_vi("x", [2])], [_vi("y", [2])],
    )  # fmt: skip
    with pytest.raises(GraphError, match=r"Add node 'adder' reads tensor 'ghost'"):
        InferenceSession(model)


def test_unsupported_ops_are_all_listed():
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="ok"),
        helper.make_node("Bernoulli", ["a"], ["b"], name="coin"),
        helper.make_node("RandomUniformLike", ["b"], ["y"], name="dice"),
    ]
    model = chain_model(nodes, [_vi("x", [2])], [_vi("y", [2])])
    with pytest.raises(UnsupportedOpError) as info:
        InferenceSession(model)
    text = str(info.value)
    assert "Bernoulli (domain 'ai.onnx', node 'coin')" in text
    assert "RandomUniformLike (domain 'ai.onnx', node 'dice')" in text
    assert "backend='onnxruntime'" in text and "Conv" in text
    # onnxruntime runs the same graph.
    out = InferenceSession(model, backend="onnxruntime").run(None, {"x": np.ones(2, np.float32)})
    assert out[0].shape == (2,)


def test_foreign_domain_and_opset():
    model = onnx.load_from_string(single_node_model("Relu", {"x": np.ones(2, np.float32)})[0])
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    with pytest.raises(UnsupportedOpsetError, match=r"com\.microsoft v1"):
        InferenceSession(model.SerializeToString())
    old, _ = single_node_model("Relu", {"x": np.ones(2, np.float32)}, opset=6)
    with pytest.raises(UnsupportedOpsetError, match="opset 6: expected 7 to"):
        InferenceSession(old)


@pytest.mark.parametrize(
    ("attrs", "error", "message"),
    [
        ({"strides": [0, 1]}, InvalidAttributeError, r"\[0, 1\]: expected every stride >= 1"),
        ({"pads": [-1, 0, 0, 0]}, InvalidAttributeError, r"expected every pad >= 0"),
        ({"dilations": [1, 0]}, InvalidAttributeError, r"expected every dilation >= 1"),
        ({"auto_pad": "SAME"}, InvalidAttributeError, r"auto_pad 'SAME': expected one of"),
        ({"group": 2}, InvalidAttributeError, r"group 2 must divide the 3 input"),
        ({"bogus": 1}, InvalidAttributeError, r"unknown attribute\(s\) \['bogus'\]"),
    ],
)  # fmt: skip
def test_bad_conv_attributes(attrs, error, message):
    x = np.ones((1, 3, 8, 8), np.float32)
    model, feeds = single_node_model(
        "Conv", {"x": x}, initializers={"w": np.ones((4, 3, 3, 3), np.float32)}, **attrs
    )
    with pytest.raises(error, match=message) as info:
        InferenceSession(model).run(None, feeds)
    if "bogus" not in attrs:
        assert "Conv node 'conv_node'" in str(info.value)


def test_conv_channel_mismatch():
    model, feeds = single_node_model(
        "Conv", {"x": np.ones((1, 3, 8, 8), np.float32)},
        initializers={"w": np.ones((4, 2, 3, 3), np.float32)},
    )  # fmt: skip
    with pytest.raises(ShapeError, match=r"X has 3 channels, W expects 2 per group"):
        InferenceSession(model).run(None, feeds)


def test_too_large_is_refused_before_allocating(monkeypatch):
    monkeypatch.setenv("CNN_RUNTIME_MAX_TENSOR_BYTES", str(1 << 20))
    model, feeds = single_node_model(
        "Conv", {"x": np.ones((1, 1, 300, 300), np.float32)},
        initializers={"w": np.ones((64, 1, 1, 1), np.float32)},
    )  # fmt: skip
    with pytest.raises(TensorTooLargeError, match=r"shape \(1, 64, 300, 300\) float32 needs"):
        InferenceSession(model).run(None, feeds)


def test_external_data_must_stay_inside_the_folder(tmp_path):
    w = numpy_helper.from_array(np.ones(4, np.float32), "w")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", "16")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    w.ClearField("raw_data")
    model = chain_model(
        [helper.make_node("Add", ["x", "w"], ["y"])], [_vi("x", [4])], [_vi("y", [4])], [w]
    )
    (tmp_path / "m.onnx").write_bytes(model)
    with pytest.raises(ExternalDataError, match=r"no absolute path, no '\.\.'"):
        InferenceSession(tmp_path / "m.onnx")


# ----------------------------------------------------------------------------- feeds


@pytest.fixture(scope="module")
def lenet():
    return InferenceSession(LENET)


@pytest.mark.parametrize(
    ("feed", "message"),
    [
        ({"image": np.zeros((1, 1, 28, 28), np.float32)}, r"unknown input name\(s\) \['image'\]"),
        ({}, r"missing input\(s\) \['input'\]"),
        ({"input": np.zeros((1, 1, 28, 28), np.float64)}, r"dtype float32 .* received float64"),
        ({"input": np.zeros((1, 28, 28), np.float32)}, r"expected rank 4 .* received rank 3"),
        ({"input": np.zeros((2, 1, 28, 27), np.float32)}, r"dimension 3 must be 28, received 27"),
        ({"input": [[0.0]]}, r"expected a numpy array, received list"),
    ],
)  # fmt: skip
def test_bad_feeds(lenet, feed, message):
    with pytest.raises(InputFeedError, match=message):
        lenet.run(None, feed)


def test_unknown_output_name(lenet):
    with pytest.raises(InputFeedError, match=r"unknown output name\(s\) \['logits'\]"):
        lenet.run(["logits"], {"input": np.zeros((1, 1, 28, 28), np.float32)})


def test_unknown_backend_and_missing_cuda():
    with pytest.raises(BackendUnavailableError, match="backend 'tpu'"):
        InferenceSession(LENET, backend="tpu")
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(BackendUnavailableError, match="CPUExecutionProvider"):
            InferenceSession(LENET, backend="onnxruntime-cuda")


# ------------------------------------------------------------------- concurrency, memory


def test_a_single_thread_session_does_not_limit_later_ones():
    import numba

    x = np.zeros((4, 1, 28, 28), np.float32)
    InferenceSession(LENET, threads=1).run(None, {"input": x})
    assert numba.get_num_threads() == 1
    InferenceSession(LENET).run(None, {"input": x})  # threads=None: every core
    assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS


@pytest.mark.slow
def test_eight_threads_match_serial(lenet):
    rng = np.random.default_rng(0)
    batches = [rng.random((b, 1, 28, 28), dtype=np.float32) for b in (1, 3, 8, 1, 5, 8, 2, 7)]
    serial = [lenet.run(None, {"input": x})[0] for x in batches]
    results: list = [None] * len(batches)

    def work(i):
        for _ in range(20):
            results[i] = lenet.run(None, {"input": batches[i]})[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, serial, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.slow
def test_repeated_runs_do_not_grow_memory(lenet):
    import resource

    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    for _ in range(200):
        lenet.run(None, {"input": x})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(2000):
        lenet.run(None, {"input": x})
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 20_000, f"peak RSS grew by {grown_kb} KB over 2,000 runs"


def test_plans_are_kept_for_a_bounded_number_of_shapes():
    from runtime.engine import MAX_PLANS, NumbaEngine
    from runtime.graph import load_graph

    engine = NumbaEngine(load_graph(LENET), compile_plans=False)  # steps and their buffers
    for batch in range(1, MAX_PLANS + 5):
        x = np.zeros((batch, 1, 28, 28), np.float32)
        for _ in range(2):  # plan, then run planned (and allocate this thread's buffers)
            assert engine.run({"input": x}, ["probabilities"])[0].shape == (batch, 10)
    assert len(engine._plans) == MAX_PLANS
    assert set(engine._local.arenas) <= set(engine._plans)


def test_an_op_that_breaks_the_contract_is_refused_at_registration():
    from runtime.ops.registry import OPS, register

    with pytest.raises(TypeError, match="private keywords"):

        @register("ContractProbe", since=1)
        def probe(x, *, _secret=0):
            return x

    assert "ContractProbe" not in OPS
