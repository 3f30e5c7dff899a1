"""An empty batch and a 1x1 image on the numba engine (issue 25 item 7): onnxruntime's
answer, or a typed error (runtime/errors.py), never an untyped one."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_helpers import run_ort, small_classifier
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
        assert "MaxPool" in str(exc) and "larger than the padded input 1" in str(exc)
        assert name.startswith("paddle")
        return
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
