"""Plans (``runtime/plan.py``, ``bind.py``, ``buffers.py``): a plan per input shape,
kept in a bounded cache; compiled into one program or run step by step; each step
bound to its shapes; planned buffers, so a warm run allocates only its outputs."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_helpers import chain_model
from parity import allocated_per_run, compare

from runtime import GraphError, InferenceSession, InvalidAttributeError, ShapeError

ROOT = Path(__file__).resolve().parents[1]
LENET = ROOT / "exported" / "lenet5.onnx"


def test_repeated_run_allocates_only_its_outputs():
    """LeNet-5 runs as a compiled program; step by step, it uses planned buffers."""
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    out_bytes = 4 * 10 * 4
    compiled = InferenceSession(LENET)
    peak = allocated_per_run(compiled, {"input": x})
    assert peak < out_bytes + 64 * 1024, peak
    assert compiled.describe().compiled
    # Step by step, planned buffers and per-thread scratch hold the intermediates (conv
    # outputs, im2col).
    steps = InferenceSession(LENET, compile_plans=False)
    peak = allocated_per_run(steps, {"input": x})
    assert peak < out_bytes + 64 * 1024, peak
    assert not steps.describe().compiled


def test_compile_plans_is_a_numba_option():
    """compile_plans=False runs step by step, with the same results; other backends
    compile nothing and refuse it."""
    x = np.random.default_rng(8).random((3, 1, 28, 28), dtype=np.float32)
    compiled, steps = InferenceSession(LENET), InferenceSession(LENET, compile_plans=False)
    np.testing.assert_allclose(
        compiled.run(None, {"input": x})[0], steps.run(None, {"input": x})[0], rtol=1e-5, atol=1e-6
    )
    assert compiled.describe().compiled and not steps.describe().compiled
    with pytest.raises(ValueError, match="only the numba backend"):
        InferenceSession(LENET, backend="onnxruntime", compile_plans=False)
    with pytest.raises(ValueError, match="compile_plans: expected True or False"):
        InferenceSession(LENET, compile_plans="no")


def test_plans_bind_each_op_to_its_shapes():
    """A plan's Conv, Gemm, Softmax and reshapes run as calls laid out for its input
    shape; a second batch size gets a plan of its own. Results match onnxruntime."""
    rng = np.random.default_rng(6)
    inits = {
        "w": (rng.standard_normal((4, 3, 3, 3)) / 5).astype(np.float32),
        "shape": np.array([0, -1], np.int64),
        "fc": (rng.standard_normal((6, 4 * 4 * 4)) / 8).astype(np.float32),
        "fcb": rng.standard_normal(6).astype(np.float32),
        "mm": rng.standard_normal((6, 5)).astype(np.float32),
        "k": np.float32(1.5),
    }
    node = helper.make_node
    nodes = [
        node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        node("Relu", ["c"], ["r"]),
        node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        node("Reshape", ["p", "shape"], ["f"]),
        node("Gemm", ["f", "fc", "fcb"], ["g"], transB=1),
        node("Relu", ["g"], ["gr"]),
        node("Mul", ["gr", "k"], ["gk"]),  # no compiled form: the plan runs step by step
        node("MatMul", ["gk", "mm"], ["z"]),  # constant weights: bound, packed once
        node("Softmax", ["z"], ["y"]),
    ]
    model = chain_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    for n in (2, 3):
        compare(model, {"x": rng.standard_normal((n, 3, 8, 8)).astype(np.float32)})
    sess = InferenceSession(model, backend="numba")
    for n in (2, 3):
        plan = sess.describe({"x": rng.standard_normal((n, 3, 8, 8)).astype(np.float32)})
        assert plan.input_shapes == {"x": (n, 3, 8, 8)}  # a plan of its own
        assert not plan.compiled
        bound = [s.op for s in plan.steps if s.bound]
        assert bound == ["Conv", "Reshape", "Gemm", "MatMul", "Softmax"]


def test_plans_are_kept_for_a_bounded_number_of_shapes():
    from runtime.config import MAX_PLANS
    from runtime.engine import NumbaEngine
    from runtime.graph import load_graph

    engine = NumbaEngine(load_graph(LENET), compile_plans=False)  # steps and their buffers
    for batch in range(1, MAX_PLANS + 5):
        x = np.zeros((batch, 1, 28, 28), np.float32)
        for _ in range(2):  # plan, then run planned (and allocate this thread's buffers)
            assert engine.run({"input": x}, ["probabilities"])[0].shape == (batch, 10)
    info = engine.cache_info()
    assert info.plans == info.max_plans == MAX_PLANS
    assert info.buffers == info.plans  # the evicted plans' buffers went with them


@pytest.mark.parametrize(
    ("name", "shape"),
    [("model.classifier.3.weight", (84 * 120,)), ("model.classifier.5.weight", (1, 10, 84))],
)
def test_a_chain_with_a_misshapen_gemm_weight_is_a_typed_error(name, shape):
    """Fuzz cases 632 and 922: the compiled program is built from shapes, so the Gemm's
    weights must be checked there as the step would check them."""
    model = onnx.load(str(LENET))
    init = next(i for i in model.graph.initializer if i.name == name)
    w = numpy_helper.to_array(init).reshape(shape)
    init.CopyFrom(numpy_helper.from_array(w, name))
    x = np.zeros((2, 1, 28, 28), np.float32)
    with pytest.raises((ShapeError, GraphError, InvalidAttributeError), match="Gemm"):
        InferenceSession(model.SerializeToString()).run(None, {"input": x})


def test_a_compiled_plan_is_built_from_shapes_alone(monkeypatch):
    """plan.shapes_only: building LeNet-5's program runs only the views (Reshape), each
    heavy op getting an empty output of its shape; a step-by-step plan runs them all."""
    from runtime import plan as plan_module
    from runtime.engine import NumbaEngine
    from runtime.graph import load_graph

    ran: list[str] = []
    real = plan_module.call_step

    def spying_call_step(step, env, *args, **kwargs):
        ran.append(step.op_type)
        return real(step, env, *args, **kwargs)

    monkeypatch.setattr(plan_module, "call_step", spying_call_step)
    feeds = {"input": np.zeros((2, 1, 28, 28), np.float32)}
    compiled = NumbaEngine(load_graph(LENET)).plan(feeds)
    assert compiled.program is not None
    assert ran == ["Reshape"], ran
    ran.clear()
    steps = NumbaEngine(load_graph(LENET), compile_plans=False).plan(feeds)
    assert steps.program is None
    assert ran == [s.op_type for s in steps.steps] and "Conv" in ran


def test_buffers_are_released_and_reused_by_liveness():
    """buffers.release_after and plan_buffers on a chain of Relus: each intermediate is
    dropped after its one reader, two slots take turns, the graph output is fresh."""
    from runtime.engine import NumbaEngine
    from runtime.graph import load_graph

    names = ["x", "t0", "t1", "t2", "t3", "t4", "y"]
    nodes = [helper.make_node("Relu", [a], [b]) for a, b in pairwise(names)]
    vi = helper.make_tensor_value_info
    model = chain_model(
        nodes, [vi("x", TensorProto.FLOAT, ["N", 8])], [vi("y", TensorProto.FLOAT, None)]
    )
    engine = NumbaEngine(load_graph(model), compile_plans=False)
    x = np.random.default_rng(2).standard_normal((3, 8)).astype(np.float32)
    plan = engine.plan({"x": x})
    assert plan.release == [(), ("t0",), ("t1",), ("t2",), ("t3",), ("t4",)]
    assert plan.out_slots == [(0,), (1,), (0,), (1,), (0,), None]
    assert plan.slot_specs == [((3, 8), np.dtype(np.float32))] * 2
    first = engine.run({"x": x}, ["y"])[0]
    second = engine.run({"x": x}, ["y"])[0]  # the planned buffers, reused
    assert first is not second
    np.testing.assert_array_equal(first, np.maximum(x, 0))
    np.testing.assert_array_equal(second, np.maximum(x, 0))


def test_the_arena_hands_out_the_range_freed_last():
    """buffers.Arena: a request takes the fitting free range given back last (its bytes
    likeliest still in cache), not the first that fits; neighbours merge on release;
    a free range at the end grows rather than leaving a hole."""
    from runtime.buffers import Arena

    arena = Arena()
    a, b, c, d = (arena.take(n) for n in (128, 64, 128, 64))
    assert (a, b, c, d, arena.top) == (0, 128, 192, 320, 384)
    arena.give_back(a, 128)
    arena.give_back(c, 128)
    assert arena.take(64) == c  # freed last, though a fits first
    assert arena.take(64) == c + 64
    arena.give_back(c, 128)
    arena.give_back(b, 64)  # merges with a's and c's ranges: 0..320
    assert [r[:2] for r in arena.free] == [[0, 320]]
    assert arena.take(320) == 0 and arena.free == []
    arena.give_back(d, 64)  # the end is free: a larger request grows it in place
    assert arena.take(256) == d and arena.top == d + 256


def test_tensors_of_other_shapes_reuse_freed_bytes():
    """plan_buffers packs tensors of any shape into one arena by liveness: a MaxPool's
    output lands in the bytes freed last, whatever their shape; the user's output is
    fresh on every run."""
    from runtime.engine import NumbaEngine
    from runtime.graph import load_graph

    node = helper.make_node
    nodes = [
        node("Relu", ["x"], ["a"]),  # (1, 4, 8, 8)
        node("Relu", ["a"], ["b"]),
        node("MaxPool", ["b"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),  # (1, 4, 4, 4)
        node("Relu", ["p"], ["q"]),
        node("Relu", ["q"], ["y"]),
    ]
    vi = helper.make_tensor_value_info
    model = chain_model(
        nodes, [vi("x", TensorProto.FLOAT, [1, 4, 8, 8])], [vi("y", TensorProto.FLOAT, None)]
    )
    engine = NumbaEngine(load_graph(model), compile_plans=False)
    x = np.random.default_rng(5).standard_normal((1, 4, 8, 8)).astype(np.float32)
    plan = engine.plan({"x": x})
    at = [None if s is None else plan.slot_offsets[s[0]] for s in plan.out_slots]
    # p in a's bytes (freed last); q next to it, in what is left of a's merged with b's
    assert at == [0, 1024, 0, 256, None]
    shapes = [plan.slot_specs[s[0]][0] for s in plan.out_slots[:4]]
    assert shapes == [(1, 4, 8, 8), (1, 4, 8, 8), (1, 4, 4, 4), (1, 4, 4, 4)]
    want = np.maximum(x, 0).reshape(1, 4, 4, 2, 4, 2).max(axis=(3, 5))
    first = engine.run({"x": x}, ["y"])[0]
    second = engine.run({"x": -x}, ["y"])[0]
    np.testing.assert_array_equal(first, want)  # the second run wrote elsewhere
    np.testing.assert_array_equal(second, np.maximum(-x, 0).reshape(1, 4, 4, 2, 4, 2).max((3, 5)))


def test_concat_writes_into_its_planned_buffer():
    """Concat takes ``_out``: its output is planned like a conv's (SqueezeNet's, DenseNet's
    and GoogLeNet's concats made a new array the output's size every run)."""
    from runtime.engine import NumbaEngine
    from runtime.graph import load_graph

    node = helper.make_node
    nodes = [
        node("Relu", ["x"], ["a"]),
        node("Neg", ["x"], ["b"]),
        node("Concat", ["a", "b", "a"], ["c"], axis=1),
        node("Relu", ["c"], ["y"]),
    ]
    vi = helper.make_tensor_value_info
    model = chain_model(
        nodes, [vi("x", TensorProto.FLOAT, [2, 3, 4])], [vi("y", TensorProto.FLOAT, None)]
    )
    engine = NumbaEngine(load_graph(model), compile_plans=False)
    x = np.random.default_rng(7).standard_normal((2, 3, 4)).astype(np.float32)
    plan = engine.plan({"x": x})
    (slot,) = plan.out_slots[[s.op_type for s in plan.steps].index("Concat")]
    assert plan.slot_specs[slot] == ((2, 9, 4), np.dtype(np.float32))
    for feed in (x, -x):  # the second run writes the planned buffer
        a = np.maximum(feed, 0)
        want = np.maximum(np.concatenate([a, -feed, a], axis=1), 0)
        np.testing.assert_array_equal(engine.run({"x": feed}, ["y"])[0], want)


def test_buffers_handed_to_kernels_start_on_a_cache_line():
    """A step-by-step plan's buffers (one arena, each slot at a multiple of 64 bytes:
    ``memory.ALIGN``), ``scratch`` arrays, and ``allocate``'s new arrays from
    ``ALIGNED_FROM`` bytes up start on a cache line: NumPy's own start on 16, and a
    vector load across two cache lines cost depthwise steps 25 to 30%."""
    from runtime.engine import NumbaEngine
    from runtime.graph import load_graph
    from runtime.memory import ALIGN, ALIGNED_FROM, aligned_empty, allocate, scratch

    assert ALIGN == 64
    x = np.random.default_rng(3).random((2, 1, 28, 28), dtype=np.float32)
    engine = NumbaEngine(load_graph(LENET), compile_plans=False)
    engine.run({"input": x}, ["probabilities"])  # plans
    plan = engine.plan({"input": x})
    assert len(plan.slot_specs) >= 3 and all(o % ALIGN == 0 for o in plan.slot_offsets)
    planned = 0
    for step, _, call in engine.step_calls({"input": x}):
        results = call()
        if step.outputs[0] == "probabilities":  # the user's: fresh, 80 bytes
            continue
        for name, result in zip(step.outputs, results, strict=False):
            assert result.ctypes.data % ALIGN == 0, (step.op_type, name, result.ctypes.data % 64)
            planned += 1
    assert planned == len(plan.steps) - 1
    for shape in [(3, 5), (1,), (7, 13, 2), (0, 4), (ALIGNED_FROM // 4 + 3,)]:
        for dtype in (np.float32, np.int64, np.uint8):
            a = aligned_empty(shape, dtype)
            assert (a.shape, a.dtype, a.flags.c_contiguous) == (shape, np.dtype(dtype), True)
            if a.size:  # an empty array's address is NumPy's choice
                assert a.ctypes.data % ALIGN == 0
                assert scratch("test.align", shape, dtype).ctypes.data % ALIGN == 0
            if a.nbytes >= ALIGNED_FROM:
                assert allocate(shape, dtype, "test").ctypes.data % ALIGN == 0


def test_scratch_views_are_kept_until_their_buffer_grows():
    """``memory.scratch`` hands out the same view for a key and shape while the key's
    buffer stands; a larger request regrows it, and the old views are not handed out
    again; another thread has buffers of its own."""
    import threading

    from runtime.memory import scratch

    a = scratch("test.scratch", (4, 8), np.float32)
    assert scratch("test.scratch", (4, 8), np.float32) is a
    assert scratch("test.scratch", [4, 8], np.float32).shape == (4, 8)  # a list shape
    small = scratch("test.scratch", (2, 3), np.float32)
    assert np.shares_memory(small, a)
    big = scratch("test.scratch", (64, 64), np.float32)  # grows the key's buffer
    again = scratch("test.scratch", (4, 8), np.float32)
    assert again is not a and np.shares_memory(again, big) and not np.shares_memory(again, a)
    other = []
    thread = threading.Thread(
        target=lambda: other.append(scratch("test.scratch", (4, 8), np.float32))
    )
    thread.start()
    thread.join()
    assert not np.shares_memory(other[0], again)
