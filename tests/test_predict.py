"""`cnn predict` on real Fashion-MNIST test images written as PNG and JPEG files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnn.cli import main

ROOT = Path(__file__).resolve().parents[1]
LENET = ROOT / "exported" / "lenet5.onnx"


@pytest.fixture(scope="module")
def test_images(tmp_path_factory, fashion_dir):
    from PIL import Image

    from dataio.datasets import load_dataset

    data = load_dataset("fashion-mnist", fashion_dir, download=False)
    folder = tmp_path_factory.mktemp("images")
    paths, labels = [], []
    for i in range(20):
        ext = "png" if i % 2 == 0 else "jpg"
        path = folder / f"test_{i}.{ext}"
        Image.fromarray(data.test.images[i]).save(path, quality=95)
        paths.append(path)
        labels.append(int(data.test.labels[i]))
    return paths, labels, data.spec.labels


def test_predict_json_on_real_images(test_images, capsys):
    paths, labels, names = test_images
    assert main(["predict", str(LENET), *map(str, paths), "--json", "--top-k", "2"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in results] == list(map(str, paths))
    for r in results:
        assert len(r["predictions"]) == 2
        p = r["predictions"]
        assert set(p[0]) == {"label", "index", "probability"}
        assert p[0]["probability"] >= p[1]["probability"]
        assert p[0]["label"] == names[p[0]["index"]]
    correct = sum(r["predictions"][0]["index"] == y for r, y in zip(results, labels, strict=True))
    assert correct >= 16  # the model is right on ~89% of test images


def test_png_prediction_equals_the_dataset_pixels(test_images, capsys):
    """A lossless PNG of a test image gives exactly what the raw pixels give."""
    from runtime import InferenceSession

    paths, _, _ = test_images
    from PIL import Image

    pixels = np.asarray(Image.open(paths[0]), dtype=np.float32)[None, None] / 255.0
    (probs,) = InferenceSession(LENET).run(None, {"input": pixels})
    assert main(["predict", str(LENET), str(paths[0]), "--json", "--top-k", "1"]) == 0
    (r,) = json.loads(capsys.readouterr().out)
    assert r["predictions"][0]["index"] == int(probs.argmax())
    assert r["predictions"][0]["probability"] == pytest.approx(float(probs.max()), abs=1e-6)


def test_bad_file_is_reported_and_the_rest_still_predicted(test_images, tmp_path, capsys):
    paths, _, _ = test_images
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    code = main(["predict", str(LENET), str(paths[0]), str(bad), str(paths[1])])
    captured = capsys.readouterr()
    assert code == 1
    assert "notes.png: not an image" in captured.err and captured.err.count("\n") == 1
    assert len(captured.out.strip().splitlines()) == 2


def test_invert_changes_the_input(test_images, capsys):
    paths, _, _ = test_images
    main(["predict", str(LENET), str(paths[0]), "--json", "--top-k", "10"])
    plain = json.loads(capsys.readouterr().out)[0]["predictions"]
    main(["predict", str(LENET), str(paths[0]), "--json", "--top-k", "10", "--invert"])
    inverted = json.loads(capsys.readouterr().out)[0]["predictions"]
    assert plain != inverted


@pytest.mark.slow
def test_console_script_predict_with_onnxruntime(test_images):
    """The installed `cnn` script, end to end, on real test images saved as PNG."""
    paths, _, names = test_images
    script = Path(sys.executable).parent / "cnn"
    assert script.is_file(), f"the console script is not installed beside {sys.executable}"
    cmd = [
        str(script),
        "predict",
        str(LENET),
        str(paths[0]),
        "--backend",
        "onnxruntime",
        "--top-k",
        "1",
    ]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(str(paths[0])) and any(n in run.stdout for n in names)
