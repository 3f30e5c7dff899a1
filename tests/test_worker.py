"""cnn/worker.py: the one worker process behind compare, bench, bench --busy and the
cold-start probe, and its launcher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cnn import shapes, worker
from cnn.samples import RandomSamples, random_spec

LENET = Path(__file__).resolve().parents[1] / "exported" / "lenet5.onnx"


def _spec(backend: str = "onnxruntime", count: int = 5, **more) -> dict:
    """LeNet-5 on ``backend``, ``count`` random samples (seed 7), and ``more``."""
    inputs, sizes = _inputs_and_sizes(count)
    base = {"backend": backend, "model": str(LENET), "threads": 1, "first": 1}
    return {**base, "samples": random_spec(inputs, sizes, seed=7), **more}


def test_a_worker_runs_agreement_timing_and_reports_memory(tmp_path):
    outputs = tmp_path / "out.npz"
    spec = _spec(
        agreement={"chunk": 2, "pad": False, "outputs": str(outputs)},
        timing={"sizes": [1, 2], "rounds": 3, "warmup": 1, "max_seconds": 5.0},
        then=5,
    )
    result = worker.launch(spec, timeout=300)
    assert result["precision"] == "fp32" and result["outputs"] == 1
    assert {k: len(v) for k, v in result["times"].items()} == {"1": 3, "2": 3}
    assert min(result["times"]["1"]) > 0
    assert 0 < result["cold_start_s"] <= result["first_result_s"]
    assert result["peak_rss_mb"] > 10
    # the same seed made the same inputs in the worker as here
    from runtime import InferenceSession

    (x,) = RandomSamples(*_inputs_and_sizes(5), seed=7).arrays.values()
    sess = InferenceSession(LENET, backend="onnxruntime")
    (want,) = sess.run(None, {sess.get_inputs()[0].name: x})
    with np.load(outputs) as data:
        np.testing.assert_allclose(data["output0"], want, rtol=1e-5, atol=1e-6)


def _inputs_and_sizes(count: int):
    inputs = shapes.model_inputs(LENET)
    return inputs, {inputs[0].name: (count, 1, 28, 28)}


def test_a_worker_never_imports_torch(capfd):
    """Python's import log (PYTHONPROFILEIMPORTTIME) of a numba worker that loads,
    runs and times: numpy and numba are in it, torch is not."""
    spec = _spec("numba", count=2, timing={"sizes": [2], "rounds": 1, "warmup": 1})
    worker.launch(spec, timeout=600, env={"PYTHONPROFILEIMPORTTIME": "1"}, show_stderr=True)
    err = capfd.readouterr().err
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in err.splitlines()
        if line.startswith("import time")
    }
    packages = {m.split(".")[0] for m in imported}
    assert {"numpy", "numba", "onnx", "runtime", "cnn"} <= packages
    assert "torch" not in packages


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"backend": "tensorflow"}, "ValueError: unknown backend 'tensorflow'"),
        ({"model": "missing.onnx"}, "missing.onnx"),
    ],
)
def test_a_failed_worker_is_one_line(change, message):
    with pytest.raises(worker.WorkerError) as info:
        worker.launch({**_spec(), **change}, timeout=300)
    text = str(info.value)
    assert message in text and "\n" not in text and "Traceback" not in text


def test_a_worker_past_its_timeout_is_stopped():
    spec = _spec(timing={"sizes": [1], "rounds": 10**9, "warmup": 1})  # no time limit
    with pytest.raises(worker.WorkerError, match="no result within 2 s"):
        worker.launch(spec, timeout=2)


def test_a_serving_worker_answers_each_round():
    spec = _spec(count=2, first=2, serve={"size": 2, "calls": 4, "warmup": 1, "warmup_s": 0})
    with worker.serving(spec) as served:
        first, second = served.ask(0.0), served.ask(0.01)
    assert len(first) == len(second) == 4 and min(first + second) > 0
    assert served.proc.poll() is not None  # killed and reaped on exit
    with (
        pytest.raises(worker.WorkerError, match=r"missing\.onnx"),
        worker.serving({**spec, "model": "missing.onnx"}),
    ):
        pass
