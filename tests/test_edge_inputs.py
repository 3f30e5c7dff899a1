"""An empty batch and a 1x1 image on the numba engine (issue 25 item 7): onnxruntime's
answer, or a typed error (runtime/errors.py), never an untyped one."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_helpers import chain_model, run_ort, small_classifier
from wild_models import paddle_classifier, paddle_detector

from runtime import InferenceSession
from runtime.errors import ShapeError

MODELS = {
    "paddle_detector": paddle_detector,
    "paddle_classifier": paddle_classifier,
    "small_classifier": lambda: small_classifier(["N", 3, "H", "W"]),
}


def _input(model: bytes) -> str:
    return InferenceSession(model, backend="onnxruntime").get_inputs()[0].name


@pytest.mark.parametrize("name", sorted(MODELS))
def test_an_empty_batch_gives_onnxruntimes_answer(name):
    model = MODELS[name]()
    feeds = {_input(model): np.zeros((0, 3, 8, 8), np.float32)}
    (want,) = run_ort(model, feeds)
    (got,) = InferenceSession(model, backend="numba").run(None, feeds)
    assert got.shape == want.shape and got.shape[0] == 0 and got.dtype == want.dtype


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("batch", [0, 1, 2])
def test_a_1x1_image_gives_onnxruntimes_answer_or_a_typed_error(name, batch):
    model = MODELS[name]()
    x = np.random.default_rng(0).random((batch, 3, 1, 1)).astype(np.float32)
    feeds = {_input(model): x}
    (want,) = run_ort(model, feeds)
    sess = InferenceSession(model, backend="numba")
    try:
        (got,) = sess.run(None, feeds)
    except ShapeError as exc:  # the 2x2 MaxPool's window is larger than the input
        assert "MaxPool node" in str(exc) and "larger than the padded input 1" in str(exc)
        assert name.startswith("paddle")
        return
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_a_pool_fused_into_a_conv_is_named_when_its_window_does_not_fit():
    """Conv -> Relu -> MaxPool, the pool fused into the conv's epilogue: on a 1x1 image
    the error names the MaxPool node (whose window does not fit), not the conv. (A 3x3
    window at stride 1 over one position leaves -1 outputs: onnxruntime fails too; a
    window that leaves one or none runs, as test_passes checks.)"""
    import onnx
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu1"),
        helper.make_node(
            "MaxPool", ["r"], ["y"], name="pool1", kernel_shape=[3, 3], strides=[1, 1]
        ),
    ]
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    sess = InferenceSession(chain_model(nodes, [x], [y], [w]), backend="numba")
    fits = np.ones((1, 3, 4, 4), np.float32)
    conv = next(s for s in sess.describe({"x": fits}).steps if s.op == "Conv")
    assert conv.fused == ("Relu", "MaxPool")  # the case this test is about
    with pytest.raises(ShapeError) as info:
        sess.run(None, {"x": np.ones((1, 3, 1, 1), np.float32)})
    assert str(info.value) == (
        "MaxPool node 'pool1' (fused into Conv node 'conv1'): "
        "window 3 (dilated) is larger than the padded input 1"
    )


def test_an_unfused_nodes_error_names_its_op_once():
    """A MaxPool step of its own: the message names the node, and the op once (it read
    "MaxPool node 'pool1': MaxPool: window 3 ..."). A 3x3 window of stride 1 over a 1x1
    image: fewer than no outputs, an error in onnxruntime too (a 2x2 window of stride 2
    gives one output there, and here)."""
    import onnx
    from onnx import helper

    node = helper.make_node("MaxPool", ["x"], ["y"], name="pool1", kernel_shape=[3, 3])
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    sess = InferenceSession(chain_model([node], [x], [y], []), backend="numba")
    with pytest.raises(ShapeError) as info:
        sess.run(None, {"x": np.ones((1, 3, 1, 1), np.float32)})
    assert str(info.value) == (
        "MaxPool node 'pool1': window 3 (dilated) is larger than the padded input 1"
    )
