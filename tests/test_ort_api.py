"""onnxruntime's session API on ours (runtime/options.py, runtime/session.py): a script
written for onnxruntime runs unchanged with ``runtime`` in its place and gives
onnxruntime's outputs; providers, session and run options map onto our backends or
are refused with a typed error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import helper
from onnx_helpers import dft_model

import runtime
from runtime import InferenceSession
from runtime.errors import (
    BackendUnavailableError,
    InputFeedError,
    SessionOptionError,
    UnsupportedOpError,
)

ROOT = Path(__file__).resolve().parents[1]
LENET = str(ROOT / "exported" / "lenet5.onnx")
NUMBA, CPU = "NumbaExecutionProvider", "CPUExecutionProvider"


def onnxruntime_script(ort, model_path: str, providers: list, x: np.ndarray) -> dict:
    """A user's onnxruntime script, written against ``ort``'s API only."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(model_path, sess_options=so, providers=providers)
    inp, out = sess.get_inputs()[0], sess.get_outputs()[0]
    meta = sess.get_modelmeta()
    ro = ort.RunOptions()
    ro.log_severity_level = 3
    (probs,) = sess.run(None, {inp.name: x}, ro)
    (again,) = sess.run([out.name], {inp.name: x})
    return {
        "providers": sess.get_providers(),
        "available": ort.get_available_providers(),
        "threads": sess.get_session_options().intra_op_num_threads,
        "inputs": [(a.name, a.shape, a.type) for a in sess.get_inputs()],
        "outputs": [(a.name, a.shape, a.type) for a in sess.get_outputs()],
        "meta": (
            meta.producer_name,
            meta.graph_name,
            meta.domain,
            meta.description,
            meta.graph_description,
            meta.version,
            meta.custom_metadata_map,
        ),
        "probs": probs,
        "again": again,
    }


def test_an_onnxruntime_script_runs_unchanged_and_agrees():
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    want = onnxruntime_script(onnxruntime, LENET, [CPU], x)
    ours = onnxruntime_script(runtime, LENET, [NUMBA], x)
    assert ours["providers"] == [NUMBA] and want["providers"] == [CPU]
    assert NUMBA in ours["available"] and CPU in ours["available"]
    assert runtime.get_device() == "CPU"
    assert ours["threads"] == want["threads"] == 1
    for key in ("inputs", "outputs", "meta"):
        assert ours[key] == want[key], key
    for key in ("probs", "again"):
        assert ours[key].shape == want[key].shape and ours[key].dtype == want[key].dtype
        np.testing.assert_allclose(ours[key], want[key], rtol=1e-5, atol=1e-6)
    # CPUExecutionProvider on ours is onnxruntime: the same bits
    via_ort = onnxruntime_script(runtime, LENET, [CPU], x)
    assert via_ort["providers"] == [CPU]
    np.testing.assert_array_equal(via_ort["probs"], want["probs"])


def iobinding_script(ort, model_path: str, providers: list, x: np.ndarray) -> list:
    sess = ort.InferenceSession(model_path, providers=providers)
    binding = sess.io_binding()
    binding.bind_cpu_input(sess.get_inputs()[0].name, x)
    binding.bind_output(sess.get_outputs()[0].name)
    sess.run_with_iobinding(binding)
    (value,) = binding.get_outputs()
    (copied,) = binding.copy_outputs_to_cpu()
    return [value.shape(), value.data_type(), value.device_name(), value.numpy(), copied]


def test_an_onnxruntime_iobinding_script_runs_unchanged_and_agrees():
    x = np.random.default_rng(5).random((2, 1, 28, 28), dtype=np.float32)
    want = iobinding_script(onnxruntime, LENET, [CPU], x)
    for providers in ([NUMBA], [CPU]):
        got = iobinding_script(runtime, LENET, providers, x)
        assert got[:3] == want[:3] == [[2, 10], "tensor(float)", "cpu"]
        for a, b in zip(got[3:], want[3:], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    sess = InferenceSession(LENET)
    binding = sess.io_binding()
    binding.bind_cpu_input("input", x)
    with pytest.raises(InputFeedError, match=r"no output is bound"):
        sess.run_with_iobinding(binding)
    with pytest.raises(InputFeedError, match=r"unknown output 'nope': expected one of"):
        binding.bind_output("nope")
    with pytest.raises(BackendUnavailableError, match=r"returns outputs as new numpy arrays"):
        binding.bind_output("probabilities", "cuda")
    with pytest.raises(BackendUnavailableError, match=r"binds numpy arrays only"):
        binding.bind_input("input", "cpu", 0, np.float32, [2, 1, 28, 28], x.ctypes.data)
    with pytest.raises(InputFeedError, match=r"expected this session's io_binding"):
        InferenceSession(LENET).run_with_iobinding(binding)


def _described_model() -> bytes:
    """Doc strings, a model version, an unnamed and a named dimension, an unknown rank."""
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("Relu", ["a"], ["y"]), helper.make_node("Neg", ["b"], ["z"])],
        "described",
        [vi("a", onnx.TensorProto.FLOAT, None), vi("b", onnx.TensorProto.FLOAT, ["", "n", 3])],
        [vi("y", onnx.TensorProto.FLOAT, None), vi("z", onnx.TensorProto.FLOAT, ["", "n", 3])],
        doc_string="the graph's doc",
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 18)],
        doc_string="the model's doc",
        domain="org.example",
        model_version=7,
        producer_name="a test",
    )
    model.ir_version = 8
    return model.SerializeToString()


@pytest.mark.parametrize("model", [LENET, _described_model()], ids=["lenet5", "described"])
def test_node_args_and_model_metadata_are_onnxruntimes(model):
    ours = InferenceSession(model)
    want = onnxruntime.InferenceSession(model, providers=[CPU])
    for got, ref in (
        (ours.get_inputs(), want.get_inputs()),
        (ours.get_outputs(), want.get_outputs()),
    ):
        assert [(a.name, a.shape, a.type) for a in got] == [(a.name, a.shape, a.type) for a in ref]
    fields = ("producer_name", "graph_name", "domain", "description", "graph_description")
    fields += ("version", "custom_metadata_map")
    m, r = ours.get_modelmeta(), want.get_modelmeta()
    assert {f: getattr(m, f) for f in fields} == {f: getattr(r, f) for f in fields}


def test_run_takes_onnxruntimes_forms_of_output_names_and_run_options():
    sess = InferenceSession(_described_model())
    feeds = {"a": np.array([-1.0, 2.0], np.float32), "b": np.ones((1, 2, 3), np.float32)}
    every = sess.run(None, feeds)
    assert [o.shape for o in every] == [(2,), (1, 2, 3)]
    for names in ([], ()):  # empty: every output, as onnxruntime
        assert [o.shape for o in sess.run(names, feeds)] == [(2,), (1, 2, 3)]
    (z,) = sess.run(["z"], feeds, runtime.RunOptions())
    np.testing.assert_array_equal(z, -feeds["b"])
    (z,) = sess.run(output_names=["z"], input_feed=feeds, run_options=onnxruntime.RunOptions())
    np.testing.assert_array_equal(z, -feeds["b"])
    with pytest.raises(InputFeedError, match=r"output_names: expected a list .* received 'z'"):
        sess.run("z", feeds)
    with pytest.raises(SessionOptionError, match=r"run_options: expected runtime\.RunOptions"):
        sess.run(None, feeds, {"terminate": True})
    for options in (runtime.RunOptions(), onnxruntime.RunOptions()):
        options.terminate = True
        with pytest.raises(SessionOptionError, match="terminate is set: the run was not started"):
            sess.run(None, feeds, options)


@pytest.mark.parametrize(
    ("kwargs", "backend", "providers"),
    [
        ({}, "numba", [NUMBA]),
        ({"providers": [NUMBA]}, "numba", [NUMBA]),
        ({"providers": [(NUMBA, {"compile_plans": "0"})]}, "numba", [NUMBA]),
        ({"providers": [CPU]}, "onnxruntime", [CPU]),
        ({"providers": [CPU], "provider_options": [{}]}, "onnxruntime", [CPU]),
        ({"providers": [CPU, NUMBA]}, "onnxruntime", [CPU]),  # the first that runs it
        ({"providers": runtime.get_available_providers()}, "numba", [NUMBA]),
        ({"providers": []}, "numba", [NUMBA]),  # onnxruntime's default too
        ({"backend": "onnxruntime"}, "onnxruntime", [CPU]),
        ({"backend": "numba", "threads": 1}, "numba", [NUMBA]),
    ],
)
def test_providers_and_backend_pick_the_same_backends(kwargs, backend, providers):
    sess = InferenceSession(LENET, **kwargs)
    assert sess.backend == backend and sess.get_providers() == providers


def test_the_older_positional_form_still_works():
    sess = InferenceSession(LENET, "onnxruntime", 2)
    assert sess.get_providers() == [CPU]
    assert sess.get_session_options().intra_op_num_threads == 2


def test_numba_provider_options_and_optimization_level_reach_the_engine():
    sess = InferenceSession(LENET, providers=[(NUMBA, {"compile_plans": False})])
    assert not sess._impl.engine.compile_plans
    assert sess.get_provider_options() == {NUMBA: {"compile_plans": "0"}}
    so = onnxruntime.SessionOptions()  # onnxruntime's own object, read field by field
    so.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 2
    plain = InferenceSession(LENET, so, providers=[NUMBA])
    assert not plain._impl.engine.optimize and plain._impl.threads == 2
    assert plain.describe().passes == ()
    assert so.intra_op_num_threads == 2  # the caller's object is not changed
    x = np.random.default_rng(1).random((2, 1, 28, 28), dtype=np.float32)
    (a,) = plain.run(None, {"input": x})
    (b,) = InferenceSession(LENET, providers=[CPU]).run(None, {"input": x})
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_deterministic_compute_fixes_the_thread_count():
    import numba

    so = runtime.SessionOptions()
    so.use_deterministic_compute = True
    assert InferenceSession(LENET, so)._impl.threads == numba.config.NUMBA_NUM_THREADS
    assert InferenceSession(LENET)._impl.threads is None  # chosen per run


def test_numba_then_cpu_falls_back_for_a_model_the_engine_refuses():
    model = dft_model()
    with pytest.raises(UnsupportedOpError, match="DFT"):
        InferenceSession(model, providers=[NUMBA])
    sess = InferenceSession(model, providers=[NUMBA, CPU])
    assert sess.get_providers() == [CPU] and sess.backend == "onnxruntime"
    x = np.random.default_rng(2).random((2, 16, 1), dtype=np.float32)
    (got,) = sess.run(None, {"input": x})
    assert got.shape == (2, 16, 2)
    lenet = InferenceSession(LENET, providers=[NUMBA, CPU])  # one the engine runs
    assert lenet.get_providers() == [NUMBA]


@pytest.mark.parametrize("compile_plans", [True, False])
def test_numba_profiling_writes_onnxruntimes_format(tmp_path, compile_plans):
    so = runtime.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp_path / "lenet")
    sess = InferenceSession(LENET, so, providers=[(NUMBA, {"compile_plans": compile_plans})])
    assert sess.get_profiling_start_time_ns() > 0
    x = np.random.default_rng(3).random((2, 1, 28, 28), dtype=np.float32)
    (got,) = sess.run(None, {"input": x})
    (want,) = InferenceSession(LENET, providers=[CPU]).run(None, {"input": x})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    sess.run(None, {"input": x})
    path = Path(sess.end_profiling())
    assert path.parent == tmp_path and path.name.startswith("lenet_") and path.suffix == ".json"
    events = json.loads(path.read_text())
    runs = [e for e in events if e["cat"] == "Session"]
    nodes = [e for e in events if e["cat"] == "Node"]
    assert [e["name"] for e in runs] == ["model_run", "model_run"]
    assert all(
        e["ph"] == "X" and e["dur"] >= 0 and e["name"].endswith("_kernel_time") for e in nodes
    )
    ops = [e["args"]["op_name"] for e in nodes]
    if compile_plans:  # LeNet-5 runs as one compiled program: one event per run
        assert ops == ["CompiledProgram"] * 2
    else:
        steps = [s.op for s in sess.describe().steps]
        assert ops == steps * 2 and "Conv" in steps
    sess.run(None, {"input": x})  # profiling stopped at end_profiling(), as onnxruntime
    assert sess.end_profiling() == "" and len(list(tmp_path.iterdir())) == 1
    assert InferenceSession(LENET).end_profiling() == ""  # not profiling: as onnxruntime


def test_onnxruntime_profiles_with_our_options(tmp_path):
    so = runtime.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp_path / "ort")
    sess = InferenceSession(LENET, so, providers=[CPU])
    sess.run(None, {"input": np.zeros((1, 1, 28, 28), np.float32)})
    events = json.loads(Path(sess.end_profiling()).read_text())
    assert any(e["cat"] == "Node" and e["args"]["op_name"] == "Conv" for e in events)


def test_session_options_refuse_what_onnxruntime_lacks_or_a_wrong_kind():
    so = runtime.SessionOptions()
    with pytest.raises(SessionOptionError, match="no option 'intra_op_threads'"):
        so.intra_op_threads = 2
    with pytest.raises(SessionOptionError, match="intra_op_num_threads: expected an integer"):
        so.intra_op_num_threads = "2"
    with pytest.raises(SessionOptionError, match=r"expected 0 .* or more, received -1"):
        so.intra_op_num_threads = -1
    with pytest.raises(SessionOptionError, match="graph_optimization_level: expected one of"):
        so.graph_optimization_level = 5
    with pytest.raises(SessionOptionError, match="enable_profiling: expected True or False"):
        so.enable_profiling = 1
    with pytest.raises(SessionOptionError, match="RunOptions has no option 'timeout'"):
        runtime.RunOptions().timeout = 1
    so.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert so.graph_optimization_level is runtime.GraphOptimizationLevel.ORT_ENABLE_BASIC


def test_options_the_numba_engine_cannot_honour_are_refused():
    so = runtime.SessionOptions()
    so.optimized_model_filepath = "optimized.onnx"
    with pytest.raises(SessionOptionError, match="writes no optimized ONNX model"):
        InferenceSession(LENET, so)
    so = runtime.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # a no-op
    assert InferenceSession(LENET, so).get_providers() == [NUMBA]
    so.add_session_config_entry("session.set_denormal_as_zero", "1")
    with pytest.raises(SessionOptionError, match=r"'session.set_denormal_as_zero'\]: the numba"):
        InferenceSession(LENET, so)
    sess = InferenceSession(LENET, so, providers=[CPU])  # onnxruntime takes every entry
    assert (
        sess.get_session_options().get_session_config_entry("session.set_denormal_as_zero") == "1"
    )
    with pytest.raises(
        SessionOptionError, match=r"threads=2 and sess_options\.intra_op_num_threads=1"
    ):
        so = runtime.SessionOptions()
        so.intra_op_num_threads = 1
        InferenceSession(LENET, so, threads=2)
    with pytest.raises(SessionOptionError, match=r"sess_options: expected runtime\.SessionOptions"):
        InferenceSession(LENET, {"intra_op_num_threads": 1})


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"providers": ["TensorrtExecutionProvider"]},
            BackendUnavailableError,
            r"provider 'TensorrtExecutionProvider' is not one this runtime runs: expected "
            r"'NumbaExecutionProvider' \(our numba engine\), 'CPUExecutionProvider'",
        ),
        ({"providers": CPU}, SessionOptionError, r"providers: expected a list"),
        ({"providers": [(CPU,)]}, SessionOptionError, r"or a \(name, options dict\) pair"),
        ({"providers": [NUMBA, NUMBA]}, SessionOptionError, r"listed twice"),
        ({"providers": [(NUMBA, {"threads": 2})]}, SessionOptionError, r"options \['threads'\]"),
        ({"providers": [(NUMBA, {"compile_plans": "maybe"})]}, SessionOptionError, "'1' or '0'"),
        ({"providers": [CPU], "provider_options": [{}, {}]}, SessionOptionError, "one options"),
        ({"providers": [CPU], "backend": "numba"}, SessionOptionError, "give one"),
        ({"backend": "tvm"}, BackendUnavailableError, r"backend 'tvm': expected one of"),
        ({"providers": [CPU], "compile_plans": False}, ValueError, "only the numba backend"),
    ],
)
def test_bad_providers_are_typed_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        InferenceSession(LENET, **kwargs)


def test_the_numba_path_does_not_import_onnxruntime():
    code = (
        "import sys, numpy as np, runtime\n"
        "so = runtime.SessionOptions()\n"
        "so.intra_op_num_threads = 1\n"
        "so.graph_optimization_level = runtime.GraphOptimizationLevel.ORT_ENABLE_ALL\n"
        f"s = runtime.InferenceSession({LENET!r}, sess_options=so,\n"
        "                              providers=['NumbaExecutionProvider'])\n"
        "s.run(None, {'input': np.zeros((1, 1, 28, 28), np.float32)}, runtime.RunOptions())\n"
        "assert 'onnxruntime' not in sys.modules, 'onnxruntime imported'\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
