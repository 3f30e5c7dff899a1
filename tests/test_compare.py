"""`cnn compare` and `cnn pipeline`: agreement and speed tables, JSON and chart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnn.cli import main
from cnn.compare import compare_backends

LENET = Path(__file__).resolve().parents[1] / "exported" / "lenet5.onnx"
FIELDS = {
    "max_abs_diff",
    "top1_agreement",
    "accuracy",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "throughput_ips",
    "cold_start_s",
}


def test_compare_rows(fashion_dir):
    rows = compare_backends(
        LENET,
        ["numba", "onnxruntime"],
        [1, 4],
        data_dir=str(fashion_dir),
        limit=120,
        rounds=3,
        progress=False,
        log=lambda *a: None,
    )
    assert [(r.backend, r.batch_size) for r in rows] == [
        ("numba", 1),
        ("onnxruntime", 1),
        ("numba", 4),
        ("onnxruntime", 4),
    ]
    for r in rows:
        assert r.max_abs_diff <= 1e-4 and r.top1_agreement == 1.0
        assert 0.8 < r.accuracy <= 1.0
        assert 0 < r.p50_ms <= r.p90_ms <= r.p99_ms
        assert r.throughput_ips == pytest.approx(r.batch_size / (r.p50_ms / 1e3))
        assert r.cold_start_s > 0
    assert rows[0].max_abs_diff == 0.0  # the reference against itself


def test_compare_command_json_and_plot(fashion_dir, tmp_path, capsys):
    out_json, out_png = tmp_path / "c.json", tmp_path / "c.png"
    code = main(
        [
            "compare",
            str(LENET),
            "--backends",
            "numba,onnxruntime",
            "--batch-sizes",
            "1,2",
            "--limit",
            "64",
            "--rounds",
            "2",
            "--data-dir",
            str(fashion_dir),
            "--json",
            str(out_json),
            "--plot",
            str(out_png),
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "backend comparison" in text and "onnxruntime" in text
    payload = json.loads(out_json.read_text())
    assert len(payload["rows"]) == 4 and set(payload["rows"][0]) >= FIELDS
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_bad_batch_sizes(capsys):
    with pytest.raises(SystemExit):
        main(["compare", str(LENET), "--batch-sizes", "0,x"])
    assert "expected numbers like 1,64" in capsys.readouterr().err


@pytest.mark.slow
def test_pipeline_end_to_end(fashion_dir, tmp_path, capsys):
    code = main(
        [
            "pipeline",
            "--out",
            str(tmp_path),
            "--data-dir",
            str(fashion_dir),
            "--lenet-epochs",
            "1",
            "--lenet-subset",
            "1000",
            "--alexnet-steps",
            "2",
            "--alexnet-subset",
            "64",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "pipeline done" in out and "LeNet-5: test accuracy" in out and "AlexNet" in out
    for name in ("lenet5", "alexnet"):
        assert (tmp_path / f"{name}.onnx").is_file()
        rows = json.loads((tmp_path / f"{name}.compare.json").read_text())["rows"]
        assert all(r["max_abs_diff"] <= 1e-4 for r in rows)
        assert (tmp_path / f"{name}.compare.png").is_file()
