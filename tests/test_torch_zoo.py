"""The torch zoo (training/zoo.py) through both torch exporters: numba against onnxruntime.

Each model is exported by the legacy TorchScript exporter (opset 17) and by the
dynamo one (opset 18), with a dynamic batch axis, then run by the numba backend and
by onnxruntime on the same seeded input at batch 1 and 3. The outputs must have the
same shape, differ by at most 1e-4 of the output's scale (max |output|, at least 1),
and agree on the top-1 class (for the segmentation head, per pixel; a pixel whose top
two classes onnxruntime puts within the tolerance of each other is a tie, not counted).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from runtime import InferenceSession
from training.zoo import INPUT_NAME, ZOO, export_zoo_model

pytestmark = pytest.mark.slow

EXPORTERS = {"legacy": (False, 17), "dynamo": (True, 18)}
TOLERANCE = 1e-4


def _check(got: np.ndarray, want: np.ndarray, label: str) -> None:
    assert got.shape == want.shape, f"{label}: shape {got.shape}, onnxruntime {want.shape}"
    assert got.dtype == want.dtype
    scale = max(1.0, float(np.max(np.abs(want))))
    diff = float(np.max(np.abs(got - want)))
    assert diff <= TOLERANCE * scale, f"{label}: max |numba - ort| = {diff:.3g}, scale {scale:.3g}"
    # Top-1 over axis 1 (classes; per pixel for the head) wherever onnxruntime's top two
    # differ by more than twice what the values may: closer, either class is right.
    top2 = np.sort(want, axis=1)
    decided = top2.take(-1, axis=1) - top2.take(-2, axis=1) > 2 * TOLERANCE * scale
    assert decided.mean() >= 0.99, f"{label}: {decided.mean():.1%} of top-1 decided"
    np.testing.assert_array_equal(
        got.argmax(1)[decided], want.argmax(1)[decided], err_msg=f"{label}: top-1"
    )


@pytest.mark.parametrize("exporter", list(EXPORTERS))
@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_model_matches_onnxruntime(name, exporter, tmp_path):
    dynamo, opset = EXPORTERS[exporter]
    path = export_zoo_model(name, tmp_path / f"{name}.onnx", opset=opset, dynamo=dynamo)
    numba = InferenceSession(path, backend="numba")
    reference = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in numba.get_inputs()] == [INPUT_NAME]
    rng = np.random.default_rng(0)
    for batch in (1, 3):
        x = rng.random((batch, *ZOO[name].input_shape), dtype=np.float32)
        (want,) = reference.run(None, {INPUT_NAME: x})
        (got,) = numba.run(None, {INPUT_NAME: x})
        assert want.shape[0] == batch
        _check(got, want, f"{name} ({exporter}) batch {batch}")
