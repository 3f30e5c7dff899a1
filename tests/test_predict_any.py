"""`cnn predict` on image classifiers this project did not make (no metadata, logits,
symbolic sizes, NHWC, a fixed batch), on real PNG and JPEG files written here."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from onnx_helpers import run_ort, small_classifier, small_segmenter
from PIL import Image

from cnn.cli import main
from cnn.images import RecipeFlags, resolve_recipe

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def _model(tmp_path, dims, name="m.onnx", **kw):
    path = tmp_path / name
    path.write_bytes(small_classifier(dims, **kw))
    return path


def _photos(folder, count: int, mode: str = "RGB"):
    """Photos of several sizes and aspect ratios, PNG and JPEG."""
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        h, w = (40 + 3 * i, 60) if i % 2 else (70, 45 + i)
        channels = (h, w, 3) if mode == "RGB" else (h, w)
        pixels = rng.integers(0, 256, channels, dtype=np.uint8)
        path = folder / f"photo{i:03d}.{'png' if i % 3 else 'jpg'}"
        Image.fromarray(pixels).save(path, quality=95)
        paths.append(path)
    return paths


def _imagenet_twin(path, size: int) -> np.ndarray:
    """The documented default, written out: shorter side to round(size * 256 / 224),
    center crop, pixel / 255, ImageNet mean and std, (3, H, W)."""
    img = Image.open(path).convert("RGB")
    short = round(size * 256 / 224)
    scale = short / min(img.size)
    img = img.resize(
        (max(size, round(img.width * scale)), max(size, round(img.height * scale))),
        Image.Resampling.BILINEAR,
    )
    left, top = (img.width - size) // 2, (img.height - size) // 2
    img = img.crop((left, top, left + size, top + size))
    x = (np.asarray(img, np.float32) / 255.0 - MEAN) / STD
    return x.transpose(2, 0, 1)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_foreign_classifier_gets_the_imagenet_default(tmp_path, capsys):
    model = _model(tmp_path, ["N", 3, 16, 16])
    paths = _photos(tmp_path / "photos", 4)
    assert main(["predict", str(model), *map(str, paths), "--json", "--top-k", "5"]) == 0
    captured = capsys.readouterr()
    notes = captured.err.strip().splitlines()
    assert len(notes) == 2
    assert "no preprocessing metadata" in notes[0] and "center crop 16x16" in notes[0]
    assert "mean (0.485, 0.456, 0.406)" in notes[0]
    assert "not probabilities: shown are their softmax" in notes[1]
    results = json.loads(captured.out)
    x = np.stack([_imagenet_twin(p, 16) for p in paths])
    (logits,) = run_ort(model.read_bytes(), {"input": x})
    want = _softmax(logits.astype(np.float64))
    for r, p in zip(results, want, strict=True):
        top = [q["index"] for q in r["predictions"]]
        assert top == list(np.argsort(-p, kind="stable")[:5])
        got = [q["probability"] for q in r["predictions"]]
        np.testing.assert_allclose(got, p[top], rtol=1e-4, atol=1e-6)


def test_flags_over_the_default_and_labels_file(tmp_path, capsys):
    """Symbolic height and width: --size picks them; --resize, --mean, --std, --labels."""
    model = _model(tmp_path, ["N", 3, "H", "W"], classes=3)
    (photo,) = _photos(tmp_path / "photos", 1)
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nboat\n")
    args = ["predict", str(model), str(photo), "--size", "24,20", "--resize", "stretch"]
    args += ["--mean", "0.5", "--std", "0.25", "--labels", str(labels), "--json"]
    assert main([*args, "--top-k", "3"]) == 0
    captured = capsys.readouterr()
    assert "no preprocessing metadata" not in captured.err  # every field was given
    (r,) = json.loads(captured.out)
    img = Image.open(photo).convert("RGB").resize((20, 24), Image.Resampling.BILINEAR)
    x = ((np.asarray(img, np.float32) / 255.0 - 0.5) / 0.25).transpose(2, 0, 1)[None]
    (logits,) = run_ort(model.read_bytes(), {"input": x})
    p = _softmax(logits.astype(np.float64))[0]
    assert [q["label"] for q in r["predictions"]] == [
        ["cat", "dog", "boat"][i] for i in np.argsort(-p, kind="stable")
    ]
    assert r["predictions"][0]["probability"] == pytest.approx(p.max(), rel=1e-4)
    labels.write_text("cat\ndog\n")
    assert main(args) == 2
    assert "2 labels for an output of 3 classes" in capsys.readouterr().err


def test_default_size_for_symbolic_height_and_width(tmp_path):
    recipe, note = resolve_recipe({}, ["N", 3, "H", "W"])
    assert recipe.size == (224, 224) and recipe.crop_from == 256 and "size" in note
    grey, note = resolve_recipe({}, ["N", 1, 28, 28])
    assert grey.color == "grayscale" and grey.resize == "stretch" and grey.mean == (0.0,)
    nhwc, _ = resolve_recipe({}, ["N", 32, 32, 3])
    assert nhwc.layout == "NHWC" and nhwc.channels == 3 and nhwc.size == (32, 32)
    _, none = resolve_recipe(
        {}, ["N", 3, 8, 8], RecipeFlags(mean=(0.5,), std=(0.5,), layout="NCHW", resize="crop")
    )
    assert none is None
    with pytest.raises(ValueError, match="4 channels"):
        resolve_recipe({}, ["N", 4, 8, 8])
    with pytest.raises(ValueError, match="--std: expected 1 or 3 values, received 2"):
        resolve_recipe({}, ["N", 3, 8, 8], RecipeFlags(std=(0.2, 0.3)))


def test_nhwc_and_grey_inputs(tmp_path, capsys):
    nhwc = _model(tmp_path, ["N", 12, 12, 3], name="nhwc.onnx", layout="NHWC")
    (photo,) = _photos(tmp_path / "rgb", 1)
    assert main(["predict", str(nhwc), str(photo), "--json", "--top-k", "1"]) == 0
    (r,) = json.loads(capsys.readouterr().out)
    x = _imagenet_twin(photo, 12).transpose(1, 2, 0)[None]  # (1, H, W, C)
    (logits,) = run_ort(nhwc.read_bytes(), {"input": x})
    assert r["predictions"][0]["index"] == int(logits.argmax())

    grey = _model(tmp_path, ["N", 1, 10, 10], name="grey.onnx")
    (photo,) = _photos(tmp_path / "grey", 1, mode="L")
    assert main(["predict", str(grey), str(photo), "--json", "--top-k", "1"]) == 0
    (r,) = json.loads(capsys.readouterr().out)
    img = Image.open(photo).convert("L").resize((10, 10), Image.Resampling.BILINEAR)
    x = (np.asarray(img, np.float32) / 255.0)[None, None]
    (logits,) = run_ort(grey.read_bytes(), {"input": x})
    assert r["predictions"][0]["index"] == int(logits.argmax())


def test_a_folder_streams_in_batches_to_csv_with_a_bad_file(tmp_path, capsys):
    model = _model(tmp_path, ["N", 3, 16, 16])
    folder = tmp_path / "photos"
    paths = _photos(folder, 37)
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_text("left out: hidden")
    out = tmp_path / "predictions.csv"
    args = ["predict", str(model), str(folder), "--batch-size", "8", "--out", str(out)]
    assert main([*args, "--top-k", "2", "--backend", "onnxruntime"]) == 1
    captured = capsys.readouterr()
    assert "\r" not in captured.err  # not a terminal: no bar
    errors = [line for line in captured.err.splitlines() if "error" in line]
    assert errors == [f"cnn predict: error: {folder / 'notes.txt'}: not an image Pillow can read"]
    assert captured.err.splitlines()[-1].startswith("cnn predict: 38/38 images in ")
    assert f"wrote {out} (37 predictions)" in captured.out
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == [str(p) for p in paths]
    assert set(rows[0]) == {
        "image",
        "label_1",
        "index_1",
        "probability_1",
        "label_2",
        "index_2",
        "probability_2",
    }
    # The same files one by one give the same predictions as the batches of 8.
    assert main(["predict", str(model), str(paths[20]), "--json", "--top-k", "2"]) == 0
    (single,) = json.loads(capsys.readouterr().out)
    assert [q["index"] for q in single["predictions"]] == [
        int(rows[20]["index_1"]),
        int(rows[20]["index_2"]),
    ]
    assert single["predictions"][0]["probability"] == pytest.approx(
        float(rows[20]["probability_1"]), rel=1e-4
    )


def test_json_out_file_and_a_fixed_batch(tmp_path, capsys):
    """A model that fixes its batch at 4: 6 images run as 4 + 4 (the second filled up)."""
    model = _model(tmp_path, [4, 3, 16, 16])
    paths = _photos(tmp_path / "photos", 6)
    out = tmp_path / "p.json"
    assert main(["predict", str(model), *map(str, paths), "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert [r["image"] for r in results] == list(map(str, paths))
    capsys.readouterr()
    free = _model(tmp_path, ["N", 3, 16, 16], name="free.onnx")
    assert main(["predict", str(free), *map(str, paths), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == results
    assert not list(tmp_path.glob(".p.json.*"))  # the temp file was renamed


def test_not_a_classifier_is_refused_before_running(tmp_path, capsys, monkeypatch):
    from runtime import InferenceSession

    seg = tmp_path / "seg.onnx"
    seg.write_bytes(small_segmenter())
    (photo,) = _photos(tmp_path / "photos", 1)
    ran = []
    real_run = InferenceSession.run
    monkeypatch.setattr(InferenceSession, "run", lambda *a, **k: ran.append(1) or real_run(*a, **k))
    assert main(["predict", str(seg), str(photo), "--size", "8", "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and not ran  # refused from the declared output, unrun
    assert "output has shape [N, 4, H, W]: cnn predict expects (N, classes)" in err


def test_a_layout_the_model_cannot_take_is_refused_before_reading(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    model.write_bytes(small_classifier(["N", 3, "H", "W"]))
    photos = _photos(tmp_path / "photos", 3)
    assert main(["predict", str(model), *map(str, photos), "--layout", "NHWC"]) == 2
    err = capsys.readouterr().err
    assert "input 'input' fixes axis 1 at 3; the preprocessing makes 224" in err
    assert "images in" not in err  # no image was read


def test_a_batch_written_as_minus_one_is_open(tmp_path, capsys, monkeypatch):
    from wild_models import paddle_classifier

    from runtime import InferenceSession

    model = tmp_path / "cls.onnx"
    model.write_bytes(paddle_classifier())
    photos = _photos(tmp_path / "photos", 5)
    sizes = []
    real_run = InferenceSession.run

    def run(self, names, feeds, *rest):
        sizes.append(len(next(iter(feeds.values()))))
        return real_run(self, names, feeds, *rest)

    monkeypatch.setattr(InferenceSession, "run", run)
    args = ["predict", str(model), *map(str, photos), "--size", "16", "--batch-size", "2"]
    assert main([*args, "--top-k", "1"]) == 0
    assert sizes == [2, 2, 1]  # batches of --batch-size, the last not padded
    assert len(capsys.readouterr().out.splitlines()) == 5
    model.write_bytes(paddle_classifier(dims=[-1, 3, -1, -1]))  # every size written -1
    sizes.clear()
    assert main(["predict", str(model), *map(str, photos), "--batch-size", "4"]) == 0
    captured = capsys.readouterr()
    assert sizes == [4, 1] and "center crop 224x224" in captured.err  # the default size
