"""The kernel table (``runtime/kernel_table.py``): ``describe()`` names the kernel that runs.

Every @njit kernel that an entry of the table runs is wrapped here, in the test only,
to record its calls. Each step of a plan then runs alone, and the kernels that ran
must be exactly those of the entry ``describe()`` named for it: a Conv or Gemm step
that ran another path than the one described fails, and so does a step of another
op that ran a conv kernel. A model that covers every conv entry of the table, and the
zoo's SqueezeNet and ShuffleNet (grouped convs), are checked this way. Every declared
kernel also has its twin named in ``TWINS``: a tests/naive.py function or a NumPy test.
"""

from __future__ import annotations

import importlib
import sys

import naive
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_helpers import chain_model

from runtime import kernel_table
from runtime.engine import NumbaEngine
from runtime.graph import load_graph
from runtime.kernels.isa import has_avx512
from runtime.ops.registry import OPS
from runtime.steps import call_step, store

RNG = np.random.default_rng(3)
CONV_ONLY = {
    name
    for entry in kernel_table.CONV_KERNELS
    for name in entry.runs
    if not name.startswith("gemm._gemm_f32_rows")
}


def _declared() -> set[str]:
    """Every @njit kernel the table's entries and the registered ops say they run."""
    names = set(kernel_table.every_kernel())
    for versions in OPS.values():
        for version in versions:
            names.update(version.kernels)
    return names


@pytest.fixture
def calls(monkeypatch) -> list[str]:
    """The names of the declared kernels as they are called, in order: each is
    replaced by a recording wrapper in its module and wherever runtime imported it."""
    seen: list[str] = []
    modules = [m for n, m in list(sys.modules.items()) if n.startswith("runtime") and m]
    for name in sorted(_declared()):
        module_name, fn_name = name.split(".")
        module = importlib.import_module(f"runtime.kernels.{module_name}")
        real = getattr(module, fn_name)

        def recorded(*args, _real=real, _name=name, **kwargs):
            seen.append(_name)
            return _real(*args, **kwargs)

        for m in modules:
            for attr, value in list(vars(m).items()):
                if value is real:
                    monkeypatch.setattr(m, attr, recorded)
    return seen


def _what_ran(engine: NumbaEngine, feeds: dict, seen: list[str]):
    """(StepInfo, kernels that ran) for each step of the plan for ``feeds``, run alone."""
    description = engine.describe(feeds)
    assert not description.compiled
    plan = engine.plan(feeds)
    env = {**plan.constants, **feeds}
    assert len(plan.steps) == len(description.steps)
    for step, info in zip(plan.steps, description.steps, strict=True):
        assert step.node.name == info.node
        seen.clear()
        store(step, call_step(step, env), env)
        yield info, list(seen)


def _check(engine: NumbaEngine, feeds: dict, seen: list[str]) -> set[str]:
    """Each step ran what describe() named: a Conv or Gemm exactly its entry's kernels,
    another op only kernels its registration declares, and some where it declares
    any; returns the algorithms named."""
    named = set()
    for info, ran in _what_ran(engine, feeds, seen):
        named.add(info.algorithm)
        if info.op in ("Conv", "Gemm"):
            assert info.runs, f"{info.node}: {info.algorithm} names no kernel"
            assert set(ran) == set(info.runs), (info.node, info.algorithm, ran)
        else:
            assert not CONV_ONLY & set(ran), (info.node, info.op, ran)
            assert set(ran) <= set(info.runs), (info.node, info.algorithm, ran)
            assert bool(ran) == bool(info.runs), (info.node, info.algorithm, ran)
    return named


def _w(*shape: int) -> np.ndarray:
    fan_in = int(np.prod(shape[1:]))
    return (RNG.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)


def _every_entry_model() -> bytes:
    """A chain whose convs reach each conv entry of the table, then a Gemm."""
    node = helper.make_node
    nodes = [
        node("Conv", ["x", "wg"], ["g"], strides=[2, 2], name="gathered_pointwise"),
        node("Conv", ["x", "wp"], ["pt"], strides=[2, 2], name="patch"),  # 2x2 at stride 2
        node("Add", ["g", "pt"], ["gp"]),
        # a 6x6 output of 32 channels: the pixels tiles (AVX-512; the direct kernel on AVX2)
        node("Conv", ["g", "wpx"], ["px"], strides=[2, 2], pads=[1, 1, 1, 1], name="pixels"),
        node("Conv", ["gp", "wd"], ["d"], group=4, pads=[1, 1, 1, 1], name="direct"),
        node("Conv", ["d", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="winograd"),
        node("Conv", ["c1", "w2"], ["c2"], pads=[1, 1, 1, 1], name="winograd_pool"),
        node("Relu", ["c2"], ["r2"]),
        node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        node("Conv", ["p2", "w3", "b3"], ["c3"], name="pointwise"),
        node("Conv", ["c3", "w4"], ["c4"], group=16, pads=[1, 1, 1, 1], name="depthwise"),
        node("Conv", ["c4", "w4m"], ["c4m"], group=16, pads=[1, 1, 1, 1], name="depthwise_x2"),
        # dilated 7 on a 6x6 plane: the direct kernel's lanes would be twice im2col's
        node("Conv", ["c4m", "w5"], ["c5"], pads=[7] * 4, dilations=[7, 7], name="im2col"),
        node("Conv", ["c5", "w6"], ["c6"], pads=[1, 1, 1, 1], name="im2col_rows"),
        node("Conv", ["c6", "w7"], ["c7"], name="pointwise_rows"),
        node("Conv", ["c7", "w8"], ["c8"], pads=[1, 1, 1, 1], name="im2col_rows_pool"),
        node("MaxPool", ["c8"], ["p8"], kernel_shape=[2, 2], strides=[2, 2]),
        node("Flatten", ["p8"], ["f"]),
        node("Gemm", ["f", "fc", "fcb"], ["y"], transB=1, name="fc"),
    ]
    # Winograd's convs have more than DIRECT_3X3_MAX_PAIRS channel pairs: 64 x 80, 80 x 48
    weights = {
        "wg": _w(32, 32, 1, 1), "wp": _w(32, 32, 2, 2), "wd": _w(64, 8, 3, 3),
        "wpx": _w(32, 32, 3, 3),
        "w1": _w(80, 64, 3, 3), "b1": _w(80), "w2": _w(48, 80, 3, 3), "w3": _w(16, 48, 1, 1),
        "b3": _w(16), "w4": _w(16, 1, 3, 3),
        "w4m": _w(32, 1, 3, 3), "w5": _w(8, 32, 3, 3), "w6": _w(2, 8, 3, 3),
        "w7": _w(2, 2, 1, 1), "w8": _w(2, 2, 3, 3), "fc": _w(10, 18), "fcb": _w(10),
    }  # fmt: skip
    vi = helper.make_tensor_value_info
    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    x = vi("x", TensorProto.FLOAT, ["n", 32, 24, 24])
    outputs = [vi("y", TensorProto.FLOAT, None), vi("px", TensorProto.FLOAT, None)]
    return chain_model(nodes, [x], outputs, inits)


def test_every_conv_entry_runs_what_describe_names(calls):
    engine = NumbaEngine(load_graph(_every_entry_model()), compile_plans=False)
    named = set()
    for n in (1, 4):  # a Gemm of one row runs the matrix-vector kernel, of four in tiles
        x = RNG.standard_normal((n, 32, 24, 24)).astype(np.float32)
        named |= _check(engine, {"x": x}, calls)
    families = {
        entry.family: [a for a in named if f"_{entry.family}_" in a]
        for entry in kernel_table.CONV_KERNELS
    }
    entries = len(kernel_table.CONV_KERNELS)
    if not has_avx512():  # the pixels entry is AVX-512's alone
        families.pop("pixels")
        entries -= 1
    assert all(families.values()), families  # every conv entry ran somewhere
    assert len([a for a in named if a.startswith("conv")]) == entries
    gemms = {e.name for e in kernel_table.gemm_entries() if not e.few_rows}
    assert gemms | {f"gemm_f32_matvec_{kernel_table.isa()}"} <= named, named


@pytest.mark.parametrize(
    ("x_shape", "filters", "k", "strides", "lanes"),
    [
        ((1, 24, 16, 16), 24, 3, (1, 1), True),  # 256 output pixels
        ((1, 24, 32, 32), 24, 3, (2, 2), True),  # 16x16 out
        ((1, 24, 34, 34), 24, 3, (2, 2), False),  # 17x17 out: too many at 3x3...
        ((1, 24, 40, 40), 24, 7, (1, 1), True),  # ... but any size at 7x7
        ((1, 24, 40, 40), 24, 5, (1, 1), False),
        ((1, 12, 8, 8), 24, 3, (1, 1), False),  # two filters a channel: phased planes only
    ],
)
def test_depthwise_kernel_by_plane_and_filter_size(x_shape, filters, k, strides, lanes):
    from runtime.ops.nn import conv_call

    w = np.ones((filters, 1, k, k), np.float32)
    call = conv_call(x_shape, w, group=x_shape[1], pads=[k // 2] * 4, strides=strides)
    algorithm = call.choice.algorithm
    assert ("_depthwise_lanes16_" if lanes else "_depthwise_direct_") in algorithm, algorithm


@pytest.mark.parametrize(
    ("c", "m", "strides", "winograd"),
    [
        (32, 96, (1, 1), False),  # 3072 pairs: the direct kernel
        (32, 97, (1, 1), True),  # 3104: Winograd
        (48, 64, (1, 1), False),
        (64, 64, (1, 1), True),
        (16, 192, (1, 1), False),  # 16 channels: never Winograd
    ],
)
def test_3x3_conv_with_few_channel_pairs_runs_direct(c, m, strides, winograd):
    """A 3x3 conv at stride 1 runs the direct kernel, not Winograd, up to
    DIRECT_3X3_MAX_PAIRS channel pairs (C x M), with AVX-512's direct tiles and AVX2's,
    at load and per shape, and says why."""
    from runtime.ops.nn import conv_call

    w = _w(m, c, 3, 3)
    attrs = {"pads": [1, 1, 1, 1], "strides": list(strides)}
    choice, weights = kernel_table.conv_at_load(w, attrs)
    assert (weights is not None) == winograd, choice
    assert ("_winograd_" in choice.algorithm) == winograd, choice
    few = not winograd and min(c, m) >= 32
    assert (f"{c} x {m} channels, {c * m} pairs, at most 3072" in choice.reason) == few, choice
    call = conv_call((2, c, 16, 16), w, winograd=weights, **attrs)
    algorithm, reason = call.choice.algorithm, call.choice.reason
    assert ("_winograd_" in algorithm) == winograd, algorithm
    assert ("_direct_gemm_" in algorithm) != winograd, algorithm
    assert ("not Winograd: " in reason) == few, reason
    x = RNG.standard_normal((2, c, 16, 16)).astype(np.float32)
    out = np.empty(call.out_shape, np.float32)
    call(x, out)
    expected = naive.conv2d(x, w, np.zeros(m, np.float32), strides=strides,
                            pads=(1, 1, 1, 1), dilations=(1, 1), group=1)  # fmt: skip
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("group", [1, 46])
def test_a_grouped_conv_on_a_small_plane_runs_direct(group):
    """RegNet's grouped 3x3 convs at stride 2 onto 4x4 outputs run the direct kernel,
    whatever lanes its tiles waste (im2col would run a tiny GEMM a group); a conv of one
    group keeps the lanes rule and im2col."""
    from runtime.ops.nn import conv_call

    c = 368
    w = _w(c, c // group, 3, 3)
    attrs = {"pads": [1, 1, 1, 1], "strides": [2, 2], "group": group}
    call = conv_call((1, c, 8, 8), w, **attrs)
    algorithm = call.choice.algorithm
    assert ("_direct_gemm_" in algorithm) == (group > 1), call.choice
    assert ("_im2col_gemm_" in algorithm) == (group == 1), call.choice
    x = RNG.standard_normal((1, c, 8, 8)).astype(np.float32)
    out = np.empty(call.out_shape, np.float32)
    call(x, out)
    expected = naive.conv2d(x, w, np.zeros(c, np.float32), strides=(2, 2), pads=(1, 1, 1, 1),
                            dilations=(1, 1), group=group)  # fmt: skip
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_describe_names_a_kernel_per_shape_and_at_load():
    engine = NumbaEngine(load_graph(_every_entry_model()), compile_plans=False)
    at_load = {s.node: s.algorithm for s in engine.describe().steps}
    assert "_winograd_" in at_load["winograd"]
    assert "depthwise" in at_load["depthwise"]
    x = np.zeros((1, 32, 24, 24), np.float32)
    shaped = {s.node: s for s in engine.describe({"x": x}).steps}
    isa = kernel_table.isa()
    assert shaped["winograd"].algorithm.endswith(f"_3x3_{isa}")
    assert "fewer than" in shaped["fc"].reason  # batch 1: the row kernel, and why
    assert "ReLU" not in shaped["fc"].reason  # no ReLU fused into this Gemm


def _ops_model() -> bytes:
    """One node of each op that declares kernels outside the table, in float32."""
    node = helper.make_node
    const = numpy_helper.from_array
    nodes = [
        node("Elu", ["x"], ["e"]),
        node("LayerNormalization", ["e", "ln"], ["n"]),
        node("Constant", [], ["axes"], value=const(np.array([3]))),
        node("ReduceMean", ["n", "axes"], ["r"]),
        node("Constant", [], ["sc"], value=const(np.array([1, 1, 2, 2], np.float32))),
        node("Resize", ["r", "", "sc"], ["z"], mode="linear"),
        node("ConvTranspose", ["z", "wt", "bt"], ["t"], strides=[2, 2]),
        node("MaxPool", ["t"], ["m"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        node("AveragePool", ["m"], ["a"], kernel_shape=[2, 2]),
        node("GlobalAveragePool", ["a"], ["g"]),
        node("Flatten", ["g"], ["f"]),
        node("MatMul", ["f", "mm"], ["y0"]),
        node("Softmax", ["y0"], ["y"]),
    ]
    weights = {"ln": _w(4), "wt": _w(4, 6, 3, 3), "bt": _w(6), "mm": _w(6, 5)}
    vi = helper.make_tensor_value_info
    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    x = vi("x", TensorProto.FLOAT, ["n", 4, 6, 4])
    return chain_model(nodes, [x], [vi("y", TensorProto.FLOAT, None)], inits)


def test_ops_outside_the_table_run_the_kernels_they_declare(calls):
    engine = NumbaEngine(load_graph(_ops_model()), compile_plans=False)
    x = RNG.standard_normal((2, 4, 6, 4)).astype(np.float32)
    _check(engine, {"x": x}, calls)
    steps = engine.describe({"x": x}).steps
    numpy = [s.op for s in steps if s.algorithm == "numpy"]
    assert numpy == ["Flatten"], numpy  # every other op of this model runs a numba kernel


def _squeeze_excite_model() -> bytes:
    """A squeeze-and-excitation block (the engine fuses it into one step)."""
    node = helper.make_node
    nodes = [
        node("GlobalAveragePool", ["x"], ["p"], name="se"),
        node("Conv", ["p", "w1", "b1"], ["h0"]),
        node("Relu", ["h0"], ["h"]),
        node("Conv", ["h", "w2", "b2"], ["s0"]),
        node("HardSigmoid", ["s0"], ["s"]),
        node("Mul", ["x", "s"], ["y"]),
    ]
    weights = {"w1": _w(4, 12, 1, 1), "b1": _w(4), "w2": _w(12, 4, 1, 1), "b2": _w(12)}
    vi = helper.make_tensor_value_info
    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    x = vi("x", TensorProto.FLOAT, ["n", 12, 5, 6])
    return chain_model(nodes, [x], [vi("y", TensorProto.FLOAT, None)], inits)


def test_squeeze_excitation_runs_what_describe_names(calls):
    """The fused block runs the kernel its describe() names: serially for one image, an
    image a job for four."""
    engine = NumbaEngine(load_graph(_squeeze_excite_model()), compile_plans=False)
    for n, entry in ((1, "serial"), (4, "images")):
        x = RNG.standard_normal((n, 12, 5, 6)).astype(np.float32)
        (info,) = engine.describe({"x": x}).steps
        assert info.algorithm.startswith(f"squeeze_excite_nchw_{entry}_")
        assert "Mul" in info.fused
        (ran,) = [r for _, r in _what_ran(engine, {"x": x}, calls)]
        assert set(ran) == set(info.runs), (info.algorithm, ran)


def test_residual_convs_run_what_describe_names(calls):
    """Convs with a residual Add in their store (pointwise, direct or im2col) run their
    entries."""
    node = helper.make_node
    nodes = [
        node("Conv", ["x", "w1"], ["a"], name="pointwise"),
        node("Add", ["a", "x"], ["r1"]),
        node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], name="im2col"),
        node("Add", ["r1", "c2"], ["y"]),
    ]
    weights = {"w1": _w(12, 12, 1, 1), "w2": _w(12, 12, 3, 3), "b2": _w(12)}
    vi = helper.make_tensor_value_info
    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    x = vi("x", TensorProto.FLOAT, ["n", 12, 5, 6])
    model = chain_model(nodes, [x], [vi("y", TensorProto.FLOAT, None)], inits)
    engine = NumbaEngine(load_graph(model), compile_plans=False)
    feeds = {"x": RNG.standard_normal((2, 12, 5, 6)).astype(np.float32)}
    named = _check(engine, feeds, calls)
    assert any("_pointwise_gemm_" in a for a in named)
    assert any("_im2col_gemm_" in a or "_direct_gemm_" in a for a in named)  # by ISA
    assert [s.fused for s in engine.describe(feeds).steps] == [("Add (residual)",)] * 2


def test_winograd_residual_conv_runs_what_describe_names(calls):
    """A Winograd conv with a residual Add (and the Relu after it) in its output
    stage runs its entry alone; with a max pool after the Add, the pool after it."""
    node = helper.make_node
    for pool in (False, True):
        nodes = [
            node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="winograd"),
            node("Add", ["c", "x"], ["s"]),
            node("Relu", ["s"], ["r" if pool else "y"]),
        ]
        if pool:
            nodes.append(node("MaxPool", ["r"], ["y"], kernel_shape=[2, 2], strides=[2, 2]))
        weights = {"w": _w(64, 64, 3, 3), "b": _w(64)}  # 4096 pairs: Winograd
        vi = helper.make_tensor_value_info
        inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
        x = vi("x", TensorProto.FLOAT, ["n", 64, 6, 6])
        model = chain_model(nodes, [x], [vi("y", TensorProto.FLOAT, None)], inits)
        engine = NumbaEngine(load_graph(model), compile_plans=False)
        feeds = {"x": RNG.standard_normal((2, 64, 6, 6)).astype(np.float32)}
        (named,) = _check(engine, feeds, calls)
        assert "_winograd_" in named
        (info,) = engine.describe(feeds).steps
        assert info.fused == ("Add (residual)", "Relu", *(("MaxPool",) if pool else ()))
        assert bool({"pool.max_pool_rows", "pool.max_pool_rows_planes"} & set(info.runs)) == pool


@pytest.mark.parametrize(("batch", "threads"), [(1, 1), (3, 2)])
def test_max_pool_after_a_conv_that_does_not_pool_runs_the_vector_pool(calls, batch, threads):
    """A 7x7 stride-2 conv (no Winograd) with a 3x3 stride-2 MaxPool fused after it: the
    conv's entry, then the MaxPool step's kernel (serial, or a plane per job on two
    threads for 3 images), on odd-sized planes; as onnxruntime, twice (into buffers)."""
    import numba
    from onnx_helpers import run_ort

    node = helper.make_node
    nodes = [
        node("Conv", ["x", "w", "b"], ["c"], strides=[2, 2], pads=[3, 3, 3, 3]),
        node("Relu", ["c"], ["r"]),
        node("MaxPool", ["r"], ["y"], kernel_shape=[3, 3], strides=[2, 2]),
    ]
    inits = [numpy_helper.from_array(v, k) for k, v in {"w": _w(24, 3, 7, 7), "b": _w(24)}.items()]
    vi = helper.make_tensor_value_info
    model = chain_model(nodes, [vi("x", TensorProto.FLOAT, ["n", 3, 57, 65])],
                        [vi("y", TensorProto.FLOAT, None)], inits)  # fmt: skip
    feeds = {"x": RNG.standard_normal((batch, 3, 57, 65)).astype(np.float32)}
    want = run_ort(model, feeds)[0]
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        engine = NumbaEngine(load_graph(model), compile_plans=False)
        _check(engine, feeds, calls)
        (info,) = engine.describe(feeds).steps
        assert info.fused == ("Relu", "MaxPool")
        pooled = [k for k in info.runs if k.startswith("pool.")]
        parallel = numba.get_num_threads() > 1 and batch > 1
        assert pooled == ["pool.max_pool_rows_planes" if parallel else "pool.max_pool_rows"]
        for _ in range(2):
            (got,) = engine.run(feeds, engine.output_names)
            assert got.shape == want.shape == (batch, 24, 14, 16)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    finally:
        numba.set_num_threads(before)


def test_every_kernel_lists_real_kernels():
    for name in sorted(_declared()):
        module, fn = name.split(".")
        assert callable(getattr(importlib.import_module(f"runtime.kernels.{module}"), fn))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["squeezenet", "shufflenet"])
def test_zoo_steps_run_what_describe_names(name, calls, tmp_path):
    from cnn.zoo import light_model

    graph = load_graph(str(light_model(name, folder=tmp_path)))
    engine = NumbaEngine(graph, compile_plans=False)
    feed = graph.inputs[0].name
    x = RNG.standard_normal((1, 3, 224, 224)).astype(np.float32)
    assert _check(engine, {feed: x}, calls)


# Every declared kernel's twin: "naive.<function>" (tests/naive.py, run against the kernel
# in tests/test_kernels*.py or tests/test_rnn.py) or "<test file>::<test>" (a test that
# compares the kernel with a NumPy formula). A new kernel without an entry fails below.
_GEMM_TEST = "test_kernels.py::test_gemm_tiles_and_rows_with_bias_and_relu_match_numpy"
TWINS = {
    "activation.softmax_rows": "test_kernel_table.py::test_softmax_rows_matches_numpy",
    "col2im.col2im_planes": "naive.conv_transpose2d",
    "conv._conv_nchw_direct_gemm": "naive.conv2d",
    "conv._conv_nchw_im2col_gemm": "naive.conv2d",
    "conv._conv_nchw_pixels_gemm": "naive.conv2d",
    "conv._epilogue": "naive.conv2d",  # with naive.activation: the few-rows convs
    "conv._im2col": "naive.conv2d",
    "conv._pack_pointwise": "naive.conv2d",
    "conv._pad_phases": "naive.conv2d",
    "depthwise.depthwise2d": "naive.conv2d",
    "depthwise.depthwise2d_lanes": "naive.conv2d",
    "gemm._conv_nchw_pointwise_gemm": "naive.conv2d",
    "gemm._gemm_f32_rows": _GEMM_TEST,
    "gemm._gemm_f32_tiles": _GEMM_TEST,
    "gemm._pack_a": "test_kernels.py::test_gemm_packing_kernels_match_numpy_packing",
    "gemm._pack_b": "test_kernels.py::test_gemm_packing_kernels_match_numpy_packing",
    "normalize.normalize_rows": "naive.normalize_rows",
    "normalize.scale_shift_planes": "naive.scale_shift",
    "normalize.scale_shift_planes_parallel": "naive.scale_shift",
    "normalize.standardize_channels": "naive.normalize_rows",
    "normalize.standardize_rows": "naive.normalize_rows",
    "pool._avg_pool3d": "naive.pool2d",
    "patch.gather_patches": "naive.patches",
    "pool.avg_pool_rows": "naive.pool2d",
    "pool.avg_pool_rows_planes": "naive.pool2d",
    "matvec.matvec_rows": "naive.matvec",
    "matvec.matvec_rows_panels": "naive.matvec",
    "matvec.squeeze_excite": "naive.squeeze_excite",
    "matvec.squeeze_excite_images": "naive.squeeze_excite",
    "pool._global_pool": "naive.global_pool",
    "pool._max_pool3d": "naive.pool2d",
    "pool.global_pool_rows": "naive.global_pool",
    "pool.max_pool_rows": "naive.pool2d",
    "pool.max_pool_rows_planes": "naive.pool2d",
    "reduce.reduce_middle": "naive.reduce_middle",
    "reduce.reduce_rows": "naive.reduce_middle",
    "resize.resize_planes": "naive.resize2d",
    "rnn.gru_recurrence": "naive.recurrence",
    "rnn.lstm_recurrence": "naive.recurrence",
    "rnn.rnn_recurrence": "naive.recurrence",
    "unary.unary": "naive.unary",
    "unary.unary_vector": "naive.unary",
    "winograd._winograd_conv_chunk": "naive.conv2d",
}  # fmt: skip


def _test_names(path) -> set[str]:
    import ast

    return {f.name for f in ast.parse(path.read_text()).body if isinstance(f, ast.FunctionDef)}


def test_every_declared_kernel_has_a_twin():
    """Every kernel of the table and of the ops' declarations has an entry in ``TWINS``
    (no stale ones), and the twin is real: a tests/naive.py function that a kernel test
    calls, or a test of that name in that file."""
    from pathlib import Path

    import naive

    declared = _declared()
    missing, stale = declared - TWINS.keys(), TWINS.keys() - declared
    assert not missing, f"kernels without a twin in TWINS: {sorted(missing)}"
    assert not stale, f"TWINS names kernels that nothing declares: {sorted(stale)}"
    here = Path(__file__).parent
    kernel_tests = "".join(
        p.read_text() for p in [*here.glob("test_kernels*.py"), here / "test_rnn.py"]
    )
    for kernel, twin in TWINS.items():
        if twin.startswith("naive."):
            fn = twin.split(".", 1)[1]
            assert callable(getattr(naive, fn, None)), (kernel, twin)
            assert f"{twin}(" in kernel_tests, f"{kernel}: no kernel test calls {twin}"
        else:
            file, test = twin.split("::")
            assert test in _test_names(here / file), (kernel, twin)


def test_softmax_rows_matches_numpy():
    from runtime.kernels.activation import softmax_rows

    x = RNG.standard_normal((5, 37)).astype(np.float32) * 10
    e = np.exp(x.astype(np.float64) - x.max(1, keepdims=True))
    for log, want in ((False, e / e.sum(1, keepdims=True)), (True, None)):
        y = np.full_like(x, np.nan)
        softmax_rows(x, y, log)
        if log:
            want = x - x.max(1, keepdims=True) - np.log(e.sum(1, keepdims=True))
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
