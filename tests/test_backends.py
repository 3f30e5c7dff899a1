"""cnn/backends.py: every comparison backend on models made here, against onnxruntime;
what a missing one says; which ones a --backends value selects."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from onnx_helpers import run_ort, small_classifier, small_segmenter

from cnn import backends as B


def _write(tmp_path, name: str, model: bytes):
    path = tmp_path / name
    path.write_bytes(model)
    return path


def _need(backend: B.Backend) -> None:
    why = backend.available()
    if why is not None:  # CI installs the [compare] extra: there, every one runs
        pytest.skip(why)


@pytest.mark.parametrize("name", list(B.BACKENDS))
def test_backend_agrees_with_onnxruntime_at_two_batch_sizes(name, tmp_path):
    """A symbolic batch and a fixed size, at batch 1 and 3 (two shapes: tract plans each)."""
    backend = B.get_backend(name)
    _need(backend)
    model = small_classifier(["N", 3, 16, 16])
    run = backend.load(_write(tmp_path, "m.onnx", model))
    rng = np.random.default_rng(0)
    for n in (1, 3):
        x = rng.random((n, 3, 16, 16), dtype=np.float32)
        (got,) = run({"input": x})
        (want,) = run_ort(model, {"input": x})
        assert got.shape == want.shape == (n, 5)
        tol = 5e-2 if run.precision in ("bf16", "fp16") else 1e-5
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    assert run.precision in ("fp32", "bf16", "fp16")


@pytest.mark.parametrize("name", list(B.BACKENDS))
def test_backend_runs_symbolic_height_and_width(name, tmp_path):
    backend = B.get_backend(name)
    _need(backend)
    model = small_segmenter()
    run = backend.load(_write(tmp_path, "seg.onnx", model))
    rng = np.random.default_rng(1)
    for shape in ((1, 3, 8, 12), (2, 3, 10, 6)):
        x = rng.random(shape, dtype=np.float32)
        (got,) = run({"input": x})
        (want,) = run_ort(model, {"input": x})
        assert got.shape == (shape[0], 4, *shape[2:])
        tol = 5e-2 if run.precision in ("bf16", "fp16") else 1e-5
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_openvino_f32_is_forced_and_the_default_is_labelled(tmp_path):
    f32, default = B.get_backend("openvino-f32"), B.get_backend("openvino-default")
    _need(f32)
    path = _write(tmp_path, "m.onnx", small_classifier(["N", 3, 16, 16]))
    assert f32.load(path).precision == "fp32"
    import openvino as ov

    hint = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    assert default.load(path).precision == {"f32": "fp32", "f16": "fp16"}.get(hint, hint)


@pytest.mark.parametrize("name", ["tract", "openvino-f32", "openvino-default"])
def test_a_missing_backend_is_one_line_with_the_install(name, monkeypatch):
    backend = B.get_backend(name)
    monkeypatch.setitem(sys.modules, backend.module, None)  # the import now fails
    why = backend.available()
    assert why is not None and "\n" not in why
    assert why.startswith(f"{name}: not installed")
    assert "pip install 'cnn-pipeline[compare]'" in why and f"pip install {backend.module}" in why


def test_select():
    assert [b.name for b in B.select(None)] == [
        "numba",
        "onnxruntime",
        "openvino-f32",
        "openvino-default",
        "tract",
    ]
    assert [b.name for b in B.select("all")] == list(B.BACKENDS)
    assert [b.name for b in B.select("tract, numba")] == ["tract", "numba"]
    with pytest.raises(ValueError, match="unknown backend 'tvm': expected one of numba"):
        B.select("numba,tvm")
    with pytest.raises(ValueError, match="numba is named twice"):
        B.select("numba,onnxruntime,numba")
