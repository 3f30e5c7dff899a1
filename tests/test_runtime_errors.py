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
    # imported by habit, used by no node: runs, as onnxruntime runs it
    x = np.array([-1.0, 2.0], np.float32)
    (y,) = InferenceSession(model.SerializeToString()).run(None, {"x": x})
    np.testing.assert_array_equal(y, [0.0, 2.0])
    model.graph.node[0].domain = "com.microsoft"  # now a node uses it
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


# ----------------------------------------------- the schema check every node goes through
# (runtime/validate.py), and the size check before every allocation. The cases are the
# untyped exceptions that mutated models found (issue 12) and what tests/fuzz.py found.


def _conv32(**attrs):
    """A conv the planner gives Winograd weights (32 channels, constant 3x3 weights)."""
    return single_node_model(
        "Conv",
        {"x": np.ones((1, 32, 8, 8), np.float32)},
        initializers={"w": np.ones((32, 32, 3, 3), np.float32)},
        **attrs,
    )


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        (
            {"strides": [0, 0]},
            r"'strides' \[0, 0\]: expected every stride >= 1",
        ),  # was ZeroDivision
        ({"strides": 2}, r"'strides' must be INTS, received INT 2"),  # was TypeError
        ({"dilations": 2}, r"'dilations' must be INTS, received INT 2"),
        ({"strides": [1.5, 1.0]}, r"'strides' must be INTS, received FLOATS \(1\.5, 1\.0\)"),
        ({"group": 1.0}, r"'group' must be INT, received FLOAT 1\.0"),
        ({"kernel_shape": [0, 3]}, r"'kernel_shape' \[0, 3\]: expected every size >= 1"),
        ({"kernel_shape": [3, 3, 3]}, r"has 3 values: expected 2, one per spatial axis of input"),
        ({"strides": [1, 1, 1]}, r"'strides' \[1, 1, 1\]: expected 2 values"),
        ({"pads": [1, 1, 1]}, r"expected an even number of values"),
        ({"pads": [0, 0, -1, 0]}, r"expected every pad >= 0"),
    ],
)
def test_conv_attributes_are_held_against_the_schema_at_load(attrs, message):
    model, _ = _conv32(**attrs)
    with pytest.raises(InvalidAttributeError, match=message) as info:
        InferenceSession(model)  # before anything runs
    assert "Conv node 'conv_node' (Conv-11, model opset 18)" in str(info.value)


def test_a_node_with_fewer_inputs_than_its_op_needs():
    model, _ = single_node_model("Conv", {"x": np.ones((1, 3, 8, 8), np.float32)})
    with pytest.raises(GraphError, match=r"expected 2 to 3 inputs \(X, W, B\), received 1"):
        InferenceSession(model)  # was IndexError: tuple index out of range


def test_required_inputs_and_attributes():
    x = np.ones((2, 3), np.float32)
    add = chain_model(
        [helper.make_node("Add", ["x", ""], ["y"], name="add")],
        [_vi("x", [2, 3])],
        [_vi("y", [2, 3])],
    )
    with pytest.raises(GraphError, match=r"input 1 \(B\) is required, received an empty name"):
        InferenceSession(add)
    cast = chain_model(
        [helper.make_node("Cast", ["x"], ["y"], name="cast")],
        [_vi("x", [2, 3])],
        [_vi("y", [2, 3])],
    )
    with pytest.raises(InvalidAttributeError, match=r"missing required attribute\(s\) \['to'\]"):
        InferenceSession(cast)
    concat = chain_model(
        [helper.make_node("Concat", ["x", "x"], ["y", "z"], axis=0)],
        [_vi("x", [2, 3])],
        [_vi("y", [4, 3])],
    )
    with pytest.raises(GraphError, match=r"expected 1 outputs \(concat_result\), received 2"):
        InferenceSession(concat)
    del x


def test_input_types_are_held_against_the_type_constraints():
    """Found by tests/fuzz.py: models onnxruntime refuses as invalid that the engine ran."""
    a = _vi("a", [3, 5])
    int8_weights = {"b": np.ones((5, 4), np.int8)}
    model, _ = single_node_model(
        "Gemm", {"a": np.ones((3, 5), np.float32)}, initializers=int8_weights
    )
    with pytest.raises(GraphError, match=r"input 1 \(B\) 'b' is tensor\(int8\): expected one of"):
        InferenceSession(model)
    inits = [
        numpy_helper.from_array(np.ones((5, 4), np.float32), "b"),
        numpy_helper.from_array(np.ones(4, np.int32), "c"),
    ]
    nodes = [
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("Gemm", ["r", "b", "c"], ["y"]),
    ]
    model = chain_model(nodes, [a], [_vi("y", [3, 4])], inits)
    with pytest.raises(
        GraphError,
        match=r"input 2 \(C\) 'c' is tensor\(int32\), but 'r' is "
        r"tensor\(float\): expected one type for both \(T\)",
    ):
        InferenceSession(model)  # r's type is Relu's T, bound by a


def test_types_that_cast_gives_and_graph_outputs_declare():
    nodes = [helper.make_node("Cast", ["x"], ["c"], to=TensorProto.INT64),
             helper.make_node("Relu", ["c"], ["y"])]  # fmt: skip
    model = chain_model(nodes, [_vi("x", [2])], [_vi("y", [2])])
    with pytest.raises(GraphError, match=r"graph output 'y' is declared tensor\(float\), its "
                       r"node gives tensor\(int64\)"):  # fmt: skip
        InferenceSession(model)
    conv = chain_model(
        [helper.make_node("Cast", ["b"], ["bi"], to=TensorProto.INT64),
         helper.make_node("Conv", ["x", "w", "bi"], ["y"], name="conv")],
        [_vi("x", [1, 3, 8, 8])], [_vi("y", None)],
        [numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w"),
         numpy_helper.from_array(np.ones(4, np.float32), "b")],
    )  # fmt: skip
    with pytest.raises(GraphError, match=r"input 2 \(B\) 'bi' is tensor\(int64\)"):
        InferenceSession(conv)


def test_pads_beside_auto_pad():
    model, _ = _conv32(auto_pad="SAME_LOWER", pads=[1, 1, 1, 1])
    with pytest.raises(
        InvalidAttributeError,
        match=r"'pads' \[1, 1, 1, 1\] beside auto_pad "
        r"'SAME_LOWER': expected one of the two",
    ):
        InferenceSession(model)


def test_an_op_registered_later_is_checked_without_doing_anything(monkeypatch):
    from runtime.ops import registry

    monkeypatch.setitem(registry.OPS, "Erf", [registry.OpVersion("Erf", 9, lambda x: x)])
    model = chain_model(
        [helper.make_node("Erf", ["x", "x"], ["y"], name="erf", alpha=1.0)],
        [_vi("x", [2])],
        [_vi("y", [2])],
    )
    with pytest.raises(GraphError, match=r"Erf node 'erf' \(Erf-13, model opset 18\): expected 1"):
        InferenceSession(model)


def test_every_node_test_model_of_onnx_passes_the_schema_check():
    """Valid models: the check accepts every node of ONNX's own node tests."""
    from node_suite import node_cases

    from runtime.graph import load_graph
    from runtime.validate import Known, check_node

    checked = 0
    for case in node_cases():  # built once a process: test_conformance reads them too
        try:
            graph = load_graph(case.model.SerializeToString())
        except (ModelLoadError, UnsupportedOpsetError):
            continue  # a type or opset the engine does not read: not the schema's business
        known = Known.of(graph.initializers, graph.inputs)
        for node in graph.nodes:
            check_node(node, graph.opset, known)
            checked += 1
    assert checked > 1000


def _conv_bn(channels: int, vector: int) -> bytes:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((channels, 3, 3, 3), np.float32), "w")]
    inits += [
        numpy_helper.from_array(rng.random(vector, np.float32) + 0.5, n)
        for n in ("s", "b", "m", "v")
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"], name="bn"),
    ]
    return chain_model(nodes, [_vi("x", [1, 3, 8, 8])], [_vi("y", None)], inits)


@pytest.mark.parametrize("vector", [1, 7])
def test_a_batchnorm_vector_of_the_wrong_length_is_a_shape_error(vector):
    """Not folded into the conv (a length-1 vector would broadcast), nor a broadcast."""
    x = np.ones((1, 3, 8, 8), np.float32)
    with pytest.raises(
        ShapeError, match=rf"input scale must have shape \(4,\), received \({vector},\)"
    ):
        InferenceSession(_conv_bn(4, vector)).run(None, {"x": x})
    y = InferenceSession(_conv_bn(4, 4)).run(None, {"x": x})[0]  # the right length folds
    assert y.shape == (1, 4, 6, 6)


def test_a_bias_that_broadcasts_into_hundreds_of_gib_is_refused(monkeypatch):
    monkeypatch.setenv("CNN_RUNTIME_MAX_TENSOR_BYTES", str(1 << 30))
    b = np.ones((4096, 4096, 1, 1, 1), np.float32)
    model, feeds = single_node_model(
        "Add", {"x": np.ones((1, 6, 28, 28), np.float32)}, initializers={"b": b}
    )
    with pytest.raises(
        TensorTooLargeError,
        match=r"Add output \(inputs broadcast\): shape "
        r"\(4096, 4096, 6, 28, 28\) float32 needs 294\.00 GiB",
    ):
        InferenceSession(model).run(None, feeds)  # was MemoryError


@pytest.mark.parametrize("as_feed", [False, True])
def test_constant_of_shape_too_large(as_feed):
    shape = np.array([1 << 20, 1 << 20, 1 << 10], np.int64)
    node = helper.make_node("ConstantOfShape", ["s"], ["y"], name="cos")
    if as_feed:
        inputs, inits, feeds = (
            [helper.make_tensor_value_info("s", TensorProto.INT64, [3])],
            [],
            {"s": shape},
        )
    else:  # folded as a constant when the session loads
        inputs, inits, feeds = [], [numpy_helper.from_array(shape, "s")], {}
    model = chain_model([node], inputs, [_vi("y", None)], inits)
    with pytest.raises(
        TensorTooLargeError,
        match=r"ConstantOfShape output: shape "
        r"\(1048576, 1048576, 1024\) float32 needs 4194304\.00 GiB",
    ):
        InferenceSession(model).run(None, feeds)  # was MemoryError: 4.00 PiB


@pytest.mark.parametrize(
    ("op", "inputs", "initializers", "attrs", "what"),
    [
        (
            "Pad",
            {"x": np.ones((1, 4), np.float32)},
            {"p": np.array([0, 0, 0, 1 << 20], np.int64)},
            {},
            "Pad output",
        ),
        (
            "Concat",
            {"x": np.ones((400, 400), np.float32)},
            {"y": np.ones((400, 400), np.float32)},
            {"axis": 0},
            "Concat output",
        ),
        (
            "Gather",
            {"x": np.ones((300, 300), np.float32)},
            {"i": np.zeros(1000, np.int64)},
            {"axis": 0},
            "Gather output",
        ),
        (
            "MatMul",
            {"a": np.ones((600, 1), np.float32)},
            {"b": np.ones((1, 600), np.float32)},
            {},
            "MatMul output",
        ),
        (
            "Cast",
            {"x": np.ones((400, 400), np.float32)},
            {},
            {"to": TensorProto.DOUBLE},
            "Cast output",
        ),
        (
            "Conv",
            {"x": np.ones((1, 64, 32, 32), np.float32)},
            {"w": np.ones((1, 64, 7, 7), np.float32)},
            {"pads": [3, 3, 3, 3]},
            "im2col columns",
        ),
        (
            "Conv",
            {"x": np.ones((1, 64, 48, 48), np.float32)},  # 4096 channel pairs: Winograd
            {"w": np.ones((64, 64, 3, 3), np.float32)},
            {"pads": [1, 1, 1, 1]},
            "Winograd input tiles",
        ),
    ],
)
def test_sizes_are_checked_before_allocating(monkeypatch, op, inputs, initializers, attrs, what):
    """Each result (or work array) below is over the limit; the inputs are not."""
    limit = 1 << 20 if op != "Conv" else 600 << 10
    monkeypatch.setenv("CNN_RUNTIME_MAX_TENSOR_BYTES", str(limit))
    model, feeds = single_node_model(op, inputs, initializers=initializers, **attrs)
    with pytest.raises(TensorTooLargeError, match=rf"{what}: shape .* needs"):
        InferenceSession(model).run(None, feeds)


def test_an_initializer_whose_bytes_do_not_fit_its_dims():
    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    w.raw_data = w.raw_data[:-4]
    model = chain_model(
        [helper.make_node("Add", ["x", "w"], ["y"])], [_vi("x", [4, 3])], [_vi("y", [4, 3])], [w]
    )
    with pytest.raises(
        ModelLoadError,
        match=r"tensor 'w': dims \[4, 3\] of FLOAT need 48 bytes, "
        r"raw_data has 44",
    ):
        InferenceSession(model)


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
        ({"input": [[0.0]]}, r"expected rank 4 .* received rank 2"),
        ({"input": [[[[0.0]]], [[[0.0, 1.0]]]]}, r"a list that is not a rectangular array"),
        ({"input": ((0.0,),)}, r"expected a numpy array \(or a list\), received tuple"),
    ],
)  # fmt: skip
def test_bad_feeds(lenet, feed, message):
    with pytest.raises(InputFeedError, match=message):
        lenet.run(None, feed)


@pytest.mark.parametrize("backend", ["numba", "onnxruntime"])
def test_a_list_feed_is_an_array_of_the_inputs_dtype(backend):
    """As onnxruntime's: a (nested) list is converted to the input's dtype."""
    x = np.random.default_rng(0).random((2, 1, 28, 28)).astype(np.float32)
    sess = InferenceSession(LENET, backend=backend)
    (want,) = sess.run(None, {"input": x})
    (got,) = sess.run(None, {"input": x.tolist()})
    np.testing.assert_array_equal(got, want)


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


def test_a_single_thread_session_does_not_limit_later_ones(monkeypatch):
    import numba

    import runtime.session

    # threads=None: the cores other processes leave idle; a quiet machine here, so all
    monkeypatch.setattr(runtime.session, "default_threads", lambda most: most)
    x = np.zeros((4, 1, 28, 28), np.float32)
    InferenceSession(LENET, threads=1).run(None, {"input": x})
    assert numba.get_num_threads() == 1
    InferenceSession(LENET).run(None, {"input": x})
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


def test_an_op_that_breaks_the_contract_is_refused_at_registration():
    from runtime.ops.registry import OPS, register

    with pytest.raises(TypeError, match="private keywords"):

        @register("ContractProbe", since=1)
        def probe(x, *, _secret=0):
            return x

    assert "ContractProbe" not in OPS
