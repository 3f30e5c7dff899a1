"""`cnn compare` on models this project did not make: random inputs of the input's
shape (symbolic batch, symbolic height and width), image folders, .npy/.npz files;
every backend installed, each in its own process; failing and missing backends."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from onnx_helpers import dft_model, small_classifier, small_segmenter

from cnn import backends as B
from cnn.cli import main
from cnn.compare import agreement, compare, plan_inputs


@pytest.fixture
def classifier(tmp_path):
    path = tmp_path / "classifier.onnx"
    path.write_bytes(small_classifier(["N", 3, 16, 16]))
    return path


@pytest.fixture
def segmenter(tmp_path):
    path = tmp_path / "seg.onnx"
    path.write_bytes(small_segmenter())
    return path


def _quiet(*args) -> None:
    pass


def test_random_inputs_of_the_input_shape(classifier):
    plan = plan_inputs(classifier, [1, 4], log=_quiet)
    x = plan.samples.batch(0, plan.samples.n)["input"]
    assert x.shape == (16, 3, 16, 16) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() < 1.0
    again = plan_inputs(classifier, [1, 4], log=_quiet).samples.batch(0, 16)["input"]
    np.testing.assert_array_equal(x, again)  # seeded
    other = plan_inputs(classifier, [1, 4], seed=1, log=_quiet).samples.batch(0, 16)["input"]
    assert not np.array_equal(x, other)
    assert plan.batch_sizes == (1, 4) and not plan.pad


def test_dims_and_shape_fix_the_batch(segmenter):
    lines = []
    plan = plan_inputs(segmenter, [1, 8], dims={"H": 8, "W": 10, "N": 2}, log=lines.append)
    assert plan.batch_sizes == (2,) and plan.pad and plan.chunk == 2
    assert plan.samples.batch(0, 2)["input"].shape == (2, 3, 8, 10)
    assert any("the batch is fixed at 2" in line for line in lines)
    plan = plan_inputs(segmenter, [1], shape=[3, 3, 6, 7], log=_quiet)
    assert plan.batch_sizes == (3,) and plan.samples.batch(0, 3)["input"].shape == (3, 3, 6, 7)
    with pytest.raises(ValueError, match="fixes axis 1 at 3, received 4"):
        plan_inputs(segmenter, [1], shape=[1, 4, 6, 7], log=_quiet)


def test_symbolic_height_and_width_need_sizes(segmenter, capsys):
    assert main(["compare", str(segmenter), "--backends", "onnxruntime"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "H (axis 2), W (axis 3)" in err and "--dim H=SIZE --dim W=SIZE" in err


def test_agreement_measures():
    ref = [np.array([[0.0, 2.0, 1.0], [3.0, -4.0, 0.5]], np.float32)]
    same = agreement(ref, ref)
    assert same[:3] == (0.0, 0.0, 1.0)
    other = [np.array([[0.0, 2.0, 2.5], [3.0, -4.0, 0.5]], np.float32)]
    abs_d, rel_d, top1, top = agreement(other, ref)
    assert abs_d == pytest.approx(1.5) and rel_d == pytest.approx(1.5 / 4.0)
    assert top1 == 0.5 and list(top) == [2, 0]
    nan = [np.array([[np.nan, 2.0, 1.0], [3.0, -4.0, 0.5]], np.float32)]
    assert agreement(nan, ref)[0] == np.inf
    maps = [np.ones((2, 4, 3, 3), np.float32)]
    assert agreement(maps, maps)[2] is None  # not (N, classes): no top-1
    with pytest.raises(ValueError, match="shape"):
        agreement([np.ones((2, 3), np.float32)], [np.ones((3, 2), np.float32)])


@pytest.mark.slow
def test_every_installed_backend_in_its_own_process(classifier):
    """The default selection, each backend alone in a worker process."""
    lines = []
    result = compare(classifier, None, [1, 3], rounds=3, max_seconds=1, log=lines.append)
    installed = [b.name for b in B.select(None) if b.available() is None]
    assert [r.backend for r in result.rows] == installed * 2
    assert result.reference == "numba" and result.skipped == []
    assert any("onnx-reference" in line and "only when named" in line for line in lines)
    for r in result.rows:
        assert r.top1_agreement is not None and r.accuracy is None  # random data: no labels
        if r.precision == "fp32":
            assert r.max_abs_diff <= 1e-5 and r.max_rel_diff <= 1e-5 and r.top1_agreement == 1.0
        assert 0 < r.p50_ms <= r.p90_ms <= r.p99_ms and r.timed_calls == 3
        assert r.throughput_ips == pytest.approx(r.batch_size / (r.p50_ms / 1e3))
        assert r.cold_start_s > 0 and r.import_s is not None and r.import_s >= 0
    assert result.rows[0].max_abs_diff == 0.0  # the reference against itself


@pytest.mark.slow
def test_symbolic_height_width_model_compares_with_dims(segmenter, tmp_path, capsys):
    out = tmp_path / "cmp.json"
    args = ["compare", str(segmenter), "--backends", "onnxruntime,numba,onnx-reference"]
    args += ["--dim", "H=12", "--dim", "W=9", "--batch-sizes", "1,2", "--rounds", "3"]
    args += ["--max-seconds", "1", "--limit", "4", "--json", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "backend comparison (against onnxruntime)" in text
    payload = json.loads(out.read_text())
    assert payload["reference"] == "onnxruntime" and "[?, 3, 12, 9]" in payload["inputs"]
    rows = payload["rows"]
    assert [(r["backend"], r["batch_size"]) for r in rows] == [
        ("onnxruntime", 1),
        ("numba", 1),
        ("onnx-reference", 1),
        ("onnxruntime", 2),
        ("numba", 2),
        ("onnx-reference", 2),
    ]
    for r in rows:
        assert r["top1_agreement"] is None and r["max_rel_diff"] <= 1e-5


@pytest.mark.slow
def test_a_failing_backend_is_one_line_and_the_others_go_on(tmp_path, capsys):
    """The numba engine has no DFT: its worker fails, the comparison goes on."""
    path = tmp_path / "dft.onnx"
    path.write_bytes(dft_model())
    args = ["compare", str(path), "--backends", "onnxruntime,numba", "--batch-sizes", "2"]
    assert main([*args, "--rounds", "3", "--max-seconds", "1"]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    skipped = [line for line in captured.out.splitlines() if line.startswith("skipped numba:")]
    assert len(skipped) == 1 and "DFT" in skipped[0]
    table = [line for line in captured.out.splitlines() if line.startswith("│")]
    assert len(table) == 2 and "onnxruntime" in table[0] and "did not run" in table[1]
    assert "numba did not run: UnsupportedOpError" in captured.out
    # The first backend failing: the reference is the first that ran, numba a row.
    args = ["compare", str(path), "--backends", "numba,onnxruntime", "--batch-sizes", "2"]
    assert main([*args, "--rounds", "3", "--max-seconds", "1"]) == 0
    out = capsys.readouterr().out
    assert "note: numba did not run: the reference is onnxruntime" in out
    assert "(against onnxruntime)" in out
    table = [line.split("│")[1:5] for line in out.splitlines() if line.startswith("│")]
    cells = [[c.strip() for c in row] for row in table]
    assert cells[0][0] == "onnxruntime" and cells[1] == ["numba", "-", "-", "did not run"]


@pytest.mark.slow
def test_a_backend_not_installed_is_skipped_in_one_line(classifier, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tract", None)
    args = ["compare", str(classifier), "--backends", "numba,tract,onnxruntime"]
    assert main([*args, "--batch-sizes", "1", "--rounds", "3", "--max-seconds", "1"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("skipped tract")]
    assert len(lines) == 1
    assert lines[0].startswith("skipped tract: not installed") and "[compare]" in lines[0]
    table = [line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│")]
    assert table == ["numba", "onnxruntime", "tract"]
    assert "tract did not run: not installed" in out


def _images(folder, count: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir()
    for i in range(count):
        pixels = rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}.{'png' if i % 2 else 'jpg'}")
    (folder / "readme.txt").write_text("not an image")


@pytest.mark.slow
def test_inputs_from_an_image_folder_npy_and_npz(classifier, tmp_path, capsys):
    folder = tmp_path / "images"
    _images(folder, 5)
    common = ["--backends", "onnxruntime,numba", "--batch-sizes", "2", "--rounds", "3"]
    common += ["--max-seconds", "1"]
    assert main(["compare", str(classifier), "--inputs", str(folder), *common]) == 0
    out = capsys.readouterr().out
    assert "readme.txt: not an image" in out
    assert "inputs: 5 images from" in out and "center crop 16x16" in out
    assert "note: no preprocessing metadata" in out

    x = np.random.default_rng(3).random((6, 3, 16, 16), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "x.npz", input=x[:4])
    for name, n in (("x.npy", 6), ("x.npz", 4)):
        plan = plan_inputs(classifier, [2], inputs=tmp_path / name, log=_quiet)
        assert plan.samples.n == n
        np.testing.assert_array_equal(plan.samples.batch(0, n)["input"], x[:n])
    np.save(tmp_path / "bad.npy", x[:, :2])
    with pytest.raises(ValueError, match="axis 1 must be 3, the array has 2"):
        plan_inputs(classifier, [2], inputs=tmp_path / "bad.npy", log=_quiet)
    assert main(["compare", str(classifier), "--inputs", str(tmp_path / "x.npz"), *common]) == 0
    assert "inputs: 4 samples from" in capsys.readouterr().out


@pytest.mark.slow
def test_interleaved_keeps_one_process(classifier):
    result = compare(
        classifier, "numba,onnxruntime", [1, 2], rounds=2, interleaved=True, threads=1, log=_quiet
    )
    assert [(r.backend, r.batch_size) for r in result.rows] == [
        ("numba", 1),
        ("onnxruntime", 1),
        ("numba", 2),
        ("onnxruntime", 2),
    ]
    assert all(r.import_s is None and r.timed_calls == 2 for r in result.rows)
    assert result.rows[1].max_abs_diff <= 1e-5


def _wrong_output_shape_model() -> bytes:
    """Relu whose declared output shape (5, 3) is wrong at any other batch: onnxruntime
    warns VerifyOutputSizes on every call unless its log is quiet."""
    import onnx
    from onnx import helper

    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [5, 3])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_onnxruntime_logs_errors_only_by_default(tmp_path, capfd):
    path = tmp_path / "relu.onnx"
    path.write_bytes(_wrong_output_shape_model())
    args = ["compare", str(path), "--backends", "onnxruntime", "--batch-sizes", "2"]
    args += ["--rounds", "3", "--max-seconds", "0.2"]
    assert main(args) == 0
    assert "VerifyOutputSizes" not in capfd.readouterr().err
    assert main([*args, "--ort-log-level", "1"]) == 0
    assert "VerifyOutputSizes" in capfd.readouterr().err


def test_no_backend_runs_the_model_still_a_table(tmp_path, capsys):
    path = tmp_path / "dft.onnx"
    path.write_bytes(dft_model())
    args = ["compare", str(path), "--backends", "numba", "--batch-sizes", "2", "--rounds", "3"]
    assert main(args) == 2
    captured = capsys.readouterr()
    rows = [line.split("│")[1].strip() for line in captured.out.splitlines() if line[:1] == "│"]
    assert rows == ["numba"] and "numba did not run:" in captured.out
    assert "no backend ran the model" in captured.err
