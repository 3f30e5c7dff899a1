"""The ONNX round trip: checker, graph contract, metadata, parity, atomic replacement."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import random_alexnet

from training.catalog import MODELS
from training.export import ExportError, export_onnx
from training.models import WithSoftmax
from training.train import TrainConfig, export_checkpoint, train

pytestmark = pytest.mark.slow
quiet = lambda *a, **k: None  # noqa: E731


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fashion_dir):
    """A LeNet-5 trained for one short epoch through the real entry point."""
    out = tmp_path_factory.mktemp("trained")
    cfg = TrainConfig(
        model="lenet5",
        data_dir=str(fashion_dir),
        subset=3000,
        epochs=1,
        out=str(out),
        command="cnn train lenet5 --subset 3000 --epochs 1",
    )
    metrics = train(cfg, log=quiet)
    return out, metrics


def test_graph_contract_and_metadata(trained):
    out, metrics = trained
    path = out / "lenet5.onnx"
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    assert not list(out.glob("*.data"))  # one self-contained file
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 18
    (inp,) = model.graph.input
    (outp,) = model.graph.output
    assert inp.name == "input" and outp.name == "probabilities"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 28, 28]
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["labels"])[0] == "T-shirt/top" and len(json.loads(meta["labels"])) == 10
    assert meta["dataset"] == "fashion-mnist"
    assert float(meta["test_accuracy"]) == pytest.approx(metrics["test_accuracy"], abs=1e-4)
    assert json.loads(meta["input_shape"]) == [dims[0].dim_param, 1, 28, 28]  # the axis name
    assert json.loads(meta["preprocessing"])["size"] == [28, 28]
    assert meta["training_command"] == "cnn train lenet5 --subset 3000 --epochs 1"
    assert meta["torch_version"] == torch.__version__
    assert metrics["onnx_max_abs_diff"] <= 1e-5


@pytest.mark.parametrize("batch", [1, 37])
def test_dynamic_batch_parity_with_torch(trained, batch):
    out, _ = trained
    from training.train import read_checkpoint

    model = MODELS["lenet5"].build()
    model.load_state_dict(read_checkpoint(out / "lenet5.pt")["model"])
    x = torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        expected = WithSoftmax(model).eval()(x).numpy()
    session = ort.InferenceSession(str(out / "lenet5.onnx"), providers=["CPUExecutionProvider"])
    (received,) = session.run(["probabilities"], {"input": x.numpy()})
    assert received.shape == (batch, 10)
    np.testing.assert_allclose(received, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(received.sum(1), 1.0, atol=1e-5)


def test_failed_export_keeps_the_previous_file(trained, tmp_path):
    out, _ = trained
    target = tmp_path / "model.onnx"
    target.write_bytes((out / "lenet5.onnx").read_bytes())
    before = target.read_bytes()
    model = MODELS["lenet5"].build()
    with pytest.raises(ExportError, match="differ by"):
        # A negative tolerance fails the parity check after the file was fully written.
        export_onnx(
            model, target, sample=torch.rand(4, 1, 28, 28), metadata={}, tolerance=-1.0, log=quiet
        )
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temp file left


def test_export_rejects_a_sample_that_is_not_a_batch(tmp_path):
    with pytest.raises(ValueError, match=r"expected a batch .* received \(1, 28, 28\)"):
        export_onnx(
            MODELS["lenet5"].build(), tmp_path / "m.onnx", sample=torch.rand(1, 28, 28), metadata={}
        )
    assert not list(tmp_path.iterdir())


def test_export_checkpoint_command_path(trained, tmp_path, fashion_dir):
    out, metrics = trained
    report = export_checkpoint(
        out / "lenet5.pt", tmp_path / "again.onnx", data_dir=fashion_dir, log=quiet
    )
    assert report.max_abs_diff <= 1e-5
    meta = {p.key: p.value for p in onnx.load(str(report.path)).metadata_props}
    assert float(meta["test_accuracy"]) == pytest.approx(metrics["test_accuracy"], abs=1e-4)


def test_alexnet_export_with_batchnorm(tmp_path):
    """AlexNet with randomised BN statistics exports, checks, and matches torch to 1e-5."""
    model = random_alexnet()
    report = export_onnx(
        model,
        tmp_path / "alexnet.onnx",
        sample=torch.rand(2, 3, 227, 227),
        metadata={"model": "alexnet"},
        log=quiet,
    )
    assert report.max_abs_diff <= 1e-5
    assert 230e6 < report.size_bytes < 236e6  # ~58.3 M float32 values, in one file
    assert not list(tmp_path.glob("*.data"))
