"""`cnn bench` as a smoke test at tiny sizes (speed targets live in the benchmark, not here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnn import bench
from cnn.cli import main

LENET = Path(__file__).resolve().parents[1] / "exported" / "lenet5.onnx"


def test_bench_rows_json_and_plot(tmp_path, capsys):
    out_json, out_png = tmp_path / "b.json", tmp_path / "b.png"
    code = main(
        [
            "bench",
            "--lenet",
            str(LENET),
            "--alexnet",
            str(tmp_path / "none.onnx"),
            "--lenet-batches",
            "1,2",
            "--rounds",
            "2",
            "--gemm-size",
            "64",
            "--no-cold-start",
            "--json",
            str(out_json),
            "--plot",
            str(out_png),
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "alexnet skipped: no file" in text and "GEMM roof" in text
    payload = json.loads(out_json.read_text())
    rows = payload["rows"]
    # 2 batch sizes x (all cores, 1 thread) x 2 backends
    assert len(rows) == 8
    assert {r["threads"] for r in rows} == {1, payload["machine"]["cpu_count"]}
    numba = [r for r in rows if r["backend"] == "numba"]
    for r in numba:
        ort = next(
            o
            for o in rows
            if o["backend"] == "onnxruntime"
            and (o["batch_size"], o["threads"]) == (r["batch_size"], r["threads"])
        )
        assert r["ratio"] == pytest.approx(r["throughput_ips"] / ort["throughput_ips"])
        # 416,520 MACs per LeNet-5 image: GFLOP/s follows from images per second.
        assert r["gflops"] == pytest.approx(2 * 416_520 * r["throughput_ips"] / 1e9)
    assert payload["gemm_roof_gflops"] > 0
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_cold_start_in_fresh_processes():
    rows = bench.cold_starts(LENET, 2)
    names = [r["backend"] for r in rows]
    assert names == ["numba (cold JIT cache)", "numba (warm JIT cache)", "onnxruntime"]
    cold, warm = rows[0]["cold_start_s"], rows[1]["cold_start_s"]
    assert warm < cold  # the cache saved the compilation
    assert all(r["peak_rss_mb"] > 10 for r in rows)


def test_bench_needs_a_model(tmp_path, capsys):
    code = main(["bench", "--lenet", str(tmp_path / "a.onnx"), "--alexnet", "", "--no-cold-start"])
    assert code == 2
    assert "no model to benchmark" in capsys.readouterr().err
