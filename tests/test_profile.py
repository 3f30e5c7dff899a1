"""``runtime/profile.py`` (the numba plan timed step by step, onnxruntime's profiler)
and ``cnn profile`` (cnn/profile.py) on LeNet-5 and on a tiny grouped-conv model."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from cnn.cli import main
from runtime import InferenceSession
from runtime.profile import (
    _median_run,
    clock_of,
    parse_ort_trace,
    profile,
    step_flops,
    time_steps,
)

LENET = str(pathlib.Path(__file__).resolve().parents[1] / "exported" / "lenet5.onnx")
RUNS = 3
SMALL_PEAK = ["--gemm-size", "192"]  # the peak's GEMM: quick, also with NUMBA_DISABLE_JIT


def tiny_conv() -> bytes:
    """(N, 4, 9, 9) -> grouped 3x3 conv, stride 2 (group 2, 6 filters) -> Relu ->
    GlobalAveragePool -> Flatten -> Gemm (3 classes): a plan that runs step by step."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    fc = rng.standard_normal((3, 6)).astype(np.float32)
    nodes = [
        helper.make_node(
            "Conv", ["x", "w"], ["c"], name="conv", group=2, strides=[2, 2], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["g"], name="pool"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_conv",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4, 9, 9])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(fc, "fc")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("profile") / "tiny.onnx"
    path.write_bytes(tiny_conv())
    return str(path)


def lenet_feed(batch: int = 1) -> dict[str, np.ndarray]:
    return {"input": np.random.default_rng(0).random((batch, 1, 28, 28), dtype=np.float32)}


def check_records(prof, desc) -> None:
    assert [r.node for r in prof.steps] == [s.node for s in desc.steps]
    assert [r.algorithm for r in prof.steps] == desc.algorithms()
    assert [r.reason for r in prof.steps] == [s.reason for s in desc.steps]
    assert [(r.op, r.fused) for r in prof.steps] == [(s.op, s.fused) for s in desc.steps]
    assert [r.index for r in prof.steps] == list(range(len(desc.steps)))
    for r in prof.steps:
        assert len(r.times_s) == RUNS
        assert all(t > 0 for t in r.times_s)
        assert min(r.times_s) <= r.median_s <= max(r.times_s)
    assert prof.whole_call_s > 0


def test_lenet_compiled_program_profiled_step_by_step():
    feed = lenet_feed()
    prof = profile(LENET, feed, threads=1, runs=RUNS, warmup=1)
    # the real run is one chain program; the records are the step-by-step plan's steps
    assert prof.compiled
    assert InferenceSession(LENET).describe(feed).compiled
    steps = InferenceSession(LENET, compile_plans=False).describe(feed)
    assert not steps.compiled
    check_records(prof, steps)
    by_node = {r.node: r for r in prof.steps}
    conv, fc = by_node["node_conv2d"], by_node["node_linear"]
    assert conv.output_shape == (1, 6, 28, 28)
    assert conv.flops == 2 * 1 * 6 * 28 * 28 * 1 * 5 * 5  # w (6, 1, 5, 5)
    assert fc.flops == 2 * 1 * 120 * 400
    assert by_node["node_Reshape_7"].flops == 0
    assert {t.name for t in prof.totals("op")} == {r.op for r in prof.steps}
    assert sum(t.steps for t in prof.totals("algorithm")) == len(prof.steps)
    assert sum(t.seconds for t in prof.totals("op")) == pytest.approx(prof.steps_s)
    runs = [sum(r.times_s[k] for r in prof.steps) for k in range(RUNS)]
    assert prof.steps_run_s == pytest.approx(sorted(runs)[RUNS // 2])


def test_tiny_conv_step_by_step(tiny):
    feed = {"x": np.random.default_rng(1).random((2, 4, 9, 9), dtype=np.float32)}
    prof = profile(tiny, feed, threads=1, runs=RUNS, warmup=1)
    desc = InferenceSession(tiny).describe(feed)
    assert not prof.compiled and not desc.compiled
    check_records(prof, desc)
    conv = next(r for r in prof.steps if r.op == "Conv")
    assert conv.output_shape == (2, 6, 5, 5)
    assert conv.flops == 2 * 2 * 6 * 5 * 5 * (4 // 2) * 3 * 3  # 2*N*M*OH*OW*C/G*kh*kw
    gemm = next(r for r in prof.steps if r.op == "Gemm")
    assert gemm.flops == 2 * 2 * 3 * 6
    assert conv.gflops == pytest.approx(conv.flops / conv.median_s / 1e9)


def test_cpu_clock_profile_on_one_thread(tiny):
    feed = {"x": np.random.default_rng(1).random((2, 4, 9, 9), dtype=np.float32)}
    prof = profile(tiny, feed, threads=1, runs=RUNS, warmup=1, clock="cpu")
    assert prof.clock == "cpu"
    check_records(prof, InferenceSession(tiny).describe(feed))


class _Sleeper:
    """A session whose run waits without working, as a run descheduled by a busy
    machine does."""

    def run(self, names, feeds):
        import time

        time.sleep(0.05)


def test_cpu_clock_leaves_out_time_off_the_core():
    wall = _median_run(_Sleeper(), {}, 3, clock_of("wall", 1))
    cpu = _median_run(_Sleeper(), {}, 3, clock_of("cpu", 1))
    assert wall >= 0.05
    assert cpu < 0.01


@pytest.mark.parametrize("threads", [None, 2])
def test_cpu_clock_needs_one_thread(tiny, threads):
    feed = {"x": np.zeros((1, 4, 9, 9), np.float32)}
    with pytest.raises(ValueError, match="needs threads=1"):
        profile(tiny, feed, threads=threads, runs=1, clock="cpu")
    with pytest.raises(ValueError, match="needs threads=1"):
        time_steps(InferenceSession(tiny, threads=threads), feed, runs=1, clock="cpu")
    with pytest.raises(ValueError, match="clock: expected one of 'wall', 'cpu', received 'gpu'"):
        clock_of("gpu", 1)


def test_time_steps_refuses_a_compiled_program():
    sess = InferenceSession(LENET)
    with pytest.raises(ValueError, match="compile_plans=False"):
        time_steps(sess, lenet_feed(), runs=1)


def test_step_flops_of_the_other_ops():
    x = np.zeros((1, 3, 8, 8), np.float32)
    y = np.zeros((1, 3, 4, 4), np.float32)
    assert step_flops("MaxPool", [x], [y], {"kernel_shape": [2, 2]}) == y.size * 4
    assert step_flops("GlobalAveragePool", [x], [y[:, :, :1, :1]], {}) == x.size
    assert step_flops("Add", [x, np.zeros(3, np.float32)], [x], {}) == x.size
    assert step_flops("Transpose", [x], [x], {}) == 0
    a, b = np.zeros((5, 7), np.float32), np.zeros((7, 2), np.float32)
    assert step_flops("MatMul", [a, b], [a @ b], {}) == 2 * 5 * 2 * 7


def _event(name, ts, dur, op=None):
    if op is None:
        return {"cat": "Session", "name": name, "ts": ts, "dur": dur}
    return {"cat": "Node", "name": name, "ts": ts, "dur": dur, "args": {"op_name": op}}


def test_ort_trace_per_op_type_leaves_the_warmup_out():
    events = [_event("model_run", 0, 1000), _event("c_kernel_time", 10, 900, "Conv")]
    for start, conv, relu in ((2000, 300, 20), (3000, 100, 40), (4000, 200, 30)):
        events += [
            _event("model_run", start, 500),
            _event("c_fence_before", start + 1, 0, "Conv"),
            _event("c_kernel_time", start + 1, conv, "Conv"),
            _event("c2_kernel_time", start + 2, conv, "FusedConv"),
            _event("r_kernel_time", start + 400, relu, "Relu"),
        ]
    prof = parse_ort_trace(events, warmup=1, threads=1)
    assert prof.runs == 3
    assert prof.by_op["Conv"] == pytest.approx(200e-6)  # the median; 900 was warm-up
    assert prof.by_op["FusedConv"] == pytest.approx(200e-6)
    assert prof.by_op["Relu"] == pytest.approx(30e-6)
    assert prof.nodes == {"Conv": 1, "FusedConv": 1, "Relu": 1}
    assert prof.whole_call_s == pytest.approx(500e-6)
    with pytest.raises(ValueError, match="no model_run"):
        parse_ort_trace(events, warmup=4, threads=1)


def test_cli_profile_table_json_and_plot(tiny, tmp_path, capsys):
    out, png = tmp_path / "prof.json", tmp_path / "prof.png"
    args = ["profile", tiny, "--dim", "N=2", "--threads", "1", "--runs", str(RUNS), *SMALL_PEAK]
    rc = main([*args, "--warmup", "1", "--json", str(out), "--plot", str(png)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "per step (numba)" in text and "per op class" in text and "per algorithm" in text
    assert "peak:" in text and "the engine's own GEMM" in text
    data = json.loads(out.read_text())
    assert data["input_shapes"] == {"x": [2, 4, 9, 9]}
    assert not data["numba"]["compiled"]
    desc = InferenceSession(tiny).describe({"x": np.zeros((2, 4, 9, 9), np.float32)})
    assert [s["algorithm"] for s in data["numba"]["steps"]] == desc.algorithms()
    assert [s["reason"] for s in data["numba"]["steps"]] == [s.reason for s in desc.steps]
    conv_reason = next(s.reason for s in desc.steps if s.op == "Conv")
    assert conv_reason and conv_reason in text  # the table's "why" column
    assert all(s["median_ms"] > 0 for s in data["numba"]["steps"])
    assert data["peak"]["gflops"] > 0
    ort = data["onnxruntime"]["by_op_ms"]
    assert any(op.endswith("Conv") for op in ort)
    assert "Gemm" in ort or "FusedGemm" in ort
    assert all(v >= 0 for v in ort.values())
    conv = next(c for c in data["by_op_class"] if c["op"] == "Conv")
    assert conv["numba_steps"] == 1 and conv["ort_ms"] is not None
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prof.json", "prof.png"]


def test_cli_profile_cpu_clock(tiny, tmp_path, capsys):
    out = tmp_path / "prof.json"
    args = ["profile", tiny, "--runs", "2", "--warmup", "0", "--clock", "cpu", *SMALL_PEAK]
    rc = main([*args, "--threads", "1", "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "by the calling thread's CPU time" in text
    assert "onnxruntime: whole call" in text and "by the same CPU clock" in text
    data = json.loads(out.read_text())
    assert data["clock"] == "cpu"
    assert data["onnxruntime"]["whole_call_ms"] > 0
    rc = main([*args, "--no-ort"])  # threads left to the engine: not one thread
    err = capsys.readouterr().err
    assert rc == 2
    assert "cnn profile: error: clock 'cpu'" in err and "needs threads=1" in err
    assert "Traceback" not in err


def test_cli_profile_lenet_says_the_real_run_is_one_program(tmp_path, capsys):
    out = tmp_path / "lenet.json"
    args = ["profile", LENET, "--batch", "2", "--runs", "2", "--warmup", "0", *SMALL_PEAK]
    rc = main([*args, "--json", str(out), "--no-ort"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "the real run is one compiled program" in text
    data = json.loads(out.read_text())
    assert data["numba"]["compiled"] and data["input_shapes"] == {"input": [2, 1, 28, 28]}
    assert data["onnxruntime"] is None


def test_json_written_atomically(tiny, tmp_path, monkeypatch, capsys):
    out = tmp_path / "prof.json"
    out.write_text("old\n")

    def half_then_fail(self, data, *a, **k):
        pathlib.Path.write_bytes(self, data[: len(data) // 2].encode())
        raise OSError("disk full")

    monkeypatch.setattr(pathlib.Path, "write_text", half_then_fail)
    rc = main(
        [
            "profile",
            tiny,
            "--runs",
            "1",
            "--warmup",
            "0",
            "--no-ort",
            *SMALL_PEAK,
            "--json",
            str(out),
        ]
    )
    assert rc == 2
    assert "disk full" in capsys.readouterr().err
    assert out.read_text() == "old\n"  # the target is untouched, no temp file left
    assert [p.name for p in tmp_path.iterdir()] == ["prof.json"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dim", "N"], "expected NAME=SIZE"),
        (["--dim", "N=two"], "expected NAME=SIZE"),
        (
            ["--dim", "Q=3"],
            "--dim Q=3: the model has no dimension named 'Q'; its symbolic dimensions are N",
        ),
        (["--dim", "N=0"], "--dim 'N=0': expected a size of 1 or more"),
        (
            ["--dim", "N=2", "--batch", "4"],
            "cannot take --batch 4: the inputs' first axis is fixed at 2",
        ),
        (["--shape", "1,4,9"], "input 'x' has 4 dims"),
    ],
)
def test_cli_profile_bad_input_options(tiny, extra, message, capsys):
    rc = main(["profile", tiny, *extra, "--runs", "1", "--no-ort", *SMALL_PEAK])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("cnn profile: error: ")
    assert message in err
    assert "Traceback" not in err


def test_cli_profile_help_has_examples(capsys):
    with pytest.raises(SystemExit) as info:
        main(["profile", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "--dim" in text and "--gemm-size" in text
