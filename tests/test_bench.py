"""`cnn bench` as a smoke test at tiny sizes (speed targets live in the benchmark, not here)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
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
    assert "alexnet skipped: model file" in text and "GEMM roof" in text
    payload = json.loads(out_json.read_text())
    rows = payload["rows"]
    # 2 batch sizes x (all cores, 1 thread) x 2 backends
    assert len(rows) == 8
    assert {r["threads"] for r in rows} == {1, payload["machine"]["cpu_count"]}
    m = payload["machine"]  # figures name their CPU: model, ISA, what the kernels use
    assert m["cpu"] and m["kernels_isa"] in ("AVX-512", "AVX2 (256-bit)")
    if not os.environ.get("NUMBA_CPU_NAME"):  # compiled for the host: its own ISA
        assert ("avx512f" in m["isa"]) == (m["kernels_isa"] == "AVX-512")
    assert f"machine: {m['cpu']}" in text
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


def test_bench_any_model_each_backend_alone(tmp_path, capsys):
    """``cnn bench MODEL``: each backend in fresh processes (two of each here)."""
    out_json = tmp_path / "b.json"
    argv = [
        "bench",
        str(LENET),
        "--batches",
        "1,3",
        "--rounds",
        "2",
        "--gemm-size",
        "64",
        "--no-single-thread",
        "--no-cold-start",
        "--json",
        str(out_json),
    ]
    assert main(argv) == 0
    rows = json.loads(out_json.read_text())["rows"]
    assert [(r["batch_size"], r["backend"]) for r in rows] == [
        (1, "numba"),
        (1, "onnxruntime"),
        (3, "numba"),
        (3, "onnxruntime"),
    ]
    assert all(r["p50_ms"] > 0 for r in rows)


def test_isolated_times_reports_a_failing_backend(tmp_path):
    with pytest.raises(RuntimeError, match="numba on"):
        bench.isolated_times(tmp_path / "missing.onnx", "numba", 1, {"input": (1, 1, 28, 28)}, 1)


def test_zoo_models_get_seeded_random_weights(tmp_path):
    import onnx
    from onnx import numpy_helper

    from cnn import zoo

    path = zoo.light_model("squeezenet", seed=3, folder=tmp_path)
    assert zoo.light_model("squeezenet", seed=3, folder=tmp_path) == path  # made once
    shipped = onnx.load(str(zoo.light_dir() / "light_squeezenet.onnx"))
    ours = onnx.load(str(path))
    made = {n.output[0] for n in shipped.graph.node if n.op_type == "ConstantOfShape"}
    weights = {i.name: numpy_helper.to_array(i) for i in ours.graph.initializer}
    assert made and made <= set(weights)  # the constant weights became random initializers
    assert not any(n.op_type == "ConstantOfShape" for n in ours.graph.node)
    w = next(k for k in made if weights[k].ndim == 4)
    assert np.unique(weights[w]).size > 100
    with pytest.raises(ValueError, match="expected one of"):
        zoo.light_model("lenet")


def test_zoo_models_have_one_real_input(tmp_path):
    """The IR-3 light models list every weight (and the *_SHAPE tensors their
    ConstantOfShape nodes read) among the graph's inputs: none of those is left."""
    import onnx

    from cnn import zoo
    from runtime import InferenceSession

    for name in ("squeezenet", "shufflenet"):
        path = zoo.light_model(name, folder=tmp_path)
        onnx.checker.check_model(str(path))
        shipped = onnx.load(str(zoo.light_dir() / f"light_{name}.onnx"))
        assert len(shipped.graph.input) > 10  # the problem this fixes
        for backend in ("numba", "onnxruntime"):
            (inp,) = InferenceSession(path, backend=backend).get_inputs()
            assert inp.shape == [1, 3, 224, 224]
    sess = InferenceSession(zoo.light_model("squeezenet", folder=tmp_path), backend="onnxruntime")
    x = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
    (y,) = sess.run(None, {sess.get_inputs()[0].name: x})  # one feed is all it takes
    assert y.shape[0] == 1 and np.isfinite(y).all()


@pytest.mark.slow
def test_bench_busy_rows_and_json(tmp_path, capsys):
    """`cnn bench --busy 1`: each backend quiet then busy, in its own process, and the
    busy loops are gone afterwards."""
    import subprocess

    out_json = tmp_path / "busy.json"
    argv = ["bench", str(LENET), "--busy", "1", "--batches", "2", "--repeats", "1"]
    assert main([*argv, "--rounds", "2", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "slowdown" in text and "busy/ort" in text
    rows = json.loads(out_json.read_text())["rows"]
    assert [(r["backend"], r["busy"], r["batch_size"]) for r in rows] == [
        ("numba", 1, 2),
        ("onnxruntime", 1, 2),
    ]
    for r in rows:
        assert len(r["quiet_s"]) == len(r["busy_s"]) == 1 and min(r["quiet_s"] + r["busy_s"]) > 0
        assert r["slowdown"] == pytest.approx(r["busy_s"][0] / r["quiet_s"][0])
    loops = subprocess.run(["ps", "-eo", "ppid,args"], capture_output=True, text=True).stdout
    assert not [
        line for line in loops.splitlines() if line.split()[0] == str(os.getpid()) and "-S" in line
    ]


def test_bench_busy_needs_a_model_file(tmp_path, capsys):
    assert main(["bench", str(tmp_path / "none.onnx"), "--busy", "1"]) != 0
    assert "not found" in capsys.readouterr().err


def _contrib_gelu(path: Path) -> Path:
    """x [1, 8] -> com.microsoft Gelu: onnxruntime runs it, numba refuses the domain."""
    import onnx
    from onnx import helper

    node = helper.make_node("Gelu", ["x"], ["y"], domain="com.microsoft")
    graph = helper.make_graph(
        [node],
        "gelu",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 8])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_failed_worker_is_one_line_and_the_other_models_still_run(tmp_path, capsys):
    """A model the numba worker cannot load: its exception's line, not a traceback
    squashed onto one line; with several models the others still run."""
    gelu = _contrib_gelu(tmp_path / "gelu.onnx")
    with pytest.raises(RuntimeError) as info:
        bench.isolated_times(gelu, "numba", 1, {"x": (1, 8)}, calls=1)
    message = str(info.value)
    assert "com.microsoft" in message and "File " not in message and "\n" not in message
    argv = ["bench", str(gelu), str(LENET), "--batches", "1", "--rounds", "2", "--interleaved"]
    assert main([*argv, "--no-single-thread", "--no-cold-start", "--gemm-size", "64"]) == 0
    out = capsys.readouterr().out
    backends = {w.split()[3] for w in out.splitlines() if w.startswith("lenet5 ")}
    assert backends == {"numba", "onnxruntime"}, out
    (line,) = [w for w in out.splitlines() if w.startswith("not run: ")]
    assert line.startswith("not run: gelu: ") and "com.microsoft" in line, line


def test_render_keeps_columns_aligned_for_long_model_names():
    rows = [
        bench.BenchRow(name, 1, 2, b, 1.0, 2.0, 3.0, 1000.0, 1.0, 0.1, 0.5)
        for name in ("lenet5", "oww_melspectrogram")
        for b in ("numba", "onnxruntime")
    ]
    lines = bench.render(rows, 10.0, {}).splitlines()
    table = [line for line in lines if line.startswith(("model", "lenet5", "oww_"))]
    assert len(table) == 5
    starts = {line.index(next(w for w in ("backend", "numba", "onnxruntime") if w in line))
              for line in table}  # fmt: skip
    assert len(starts) == 1, "\n".join(table)


def test_cold_start_inputs_come_from_the_resolver(tmp_path):
    """The cold-start probe's first call takes one sample, or the batch the model
    fixes; its later call the batch asked for, unless the model fixes it."""
    from onnx_helpers import single_node_model

    assert bench.cold_shapes(LENET, 3) == ({"input": (3, 1, 28, 28)}, 1)
    fixed = tmp_path / "fixed.onnx"
    fixed.write_bytes(single_node_model("Relu", {"x": np.zeros((2, 5), np.float32)})[0])
    assert bench.cold_shapes(fixed, 8) == ({"x": (2, 5)}, 2)
    row = bench.cold_start(fixed, "onnxruntime", 8, None)
    assert row["cold_start_s"] > 0 and row["peak_rss_mb"] > 10
