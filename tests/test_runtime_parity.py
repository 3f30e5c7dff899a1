"""Whole models and the session: the numba backend against onnxruntime (LeNet-5, a random
AlexNet, a legacy-export shape subgraph), the session API, threads, no torch import."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
from parity import allocated_per_run, compare

import runtime
from runtime import InferenceSession

ROOT = Path(__file__).resolve().parents[1]
LENET = ROOT / "exported" / "lenet5.onnx"
RNG = np.random.default_rng(1)


def _r(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


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
    compare(model.SerializeToString(), {"input": x}, atol=1e-5)


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
    assert allocated_per_run(sess, {"input": x}) < a.nbytes + 64 * 1024


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
    compare(model, {"x": _r(2, 4, 3)})
    got = InferenceSession(model, backend="numba").run(None, {"x": _r(2, 4, 3)})
    assert [g.shape for g in got] == [(12, 2), ()]
