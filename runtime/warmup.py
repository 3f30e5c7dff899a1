"""Compile every numba kernel ahead of time: ``cnn warmup``.

The kernels see few type signatures whatever the model (float32, C-contiguous,
fixed ranks; numba types a read-only array apart from a writable one), so running
two small graphs that reach every kernel with each signature fills numba's cache,
and the first real call of any model in any later process loads compiled code
instead of compiling:

* ``steps``: convolutions by im2col, direct, as patches (kernel = stride), by pixels
  tiles and by Winograd (3x3, 5x5 and strided through space-to-depth, with a bias
  from the initializers, which is read-only, and without one), pooling with and without
  indices, a Gemm split over the cores and a small-batch fully connected layer, an
  activation, an Erf, a Layer- and an InstanceNormalization and a ReduceMean (the kernels of
  ``kernels.unary``,
  ``normalize`` and ``reduce``), depthwise convs (channels in lanes, and phased
  planes for two filters a channel), ConvTranspose (with and without a bias) and a
  Resize. Several outputs keep it from compiling into one program, so it
  runs step by step.
* ``recurrent``: RNN, GRU and LSTM (``kernels.rnn``).
* ``chain``: a LeNet-like chain that compiles into one op-table program (see
  ``runtime/compiled.py``), run for one image and for a batch.
* the small ops' kernels (max and average pooling in vectors, BatchNormalization's
  scale and shift, the global pools, the matrix-vector product, squeeze-and-excitation),
  serial and parallel, called directly.
"""

from __future__ import annotations

import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from runtime.engine import NumbaEngine
from runtime.graph import load_graph


def _model(nodes, inputs, outputs, weights) -> bytes:
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.1, name)
        for name, shape in weights.items()
    ]
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes,
        "warmup",
        [vi(n, TensorProto.FLOAT, s) for n, s in inputs],
        [vi(n, TensorProto.FLOAT, s) for n, s in outputs],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _steps_model() -> bytes:
    node = helper.make_node
    nodes = [
        node("Conv", ["x", "w3", "b"], ["c3"], pads=[1, 1, 1, 1]),  # 32 x 32: direct, AVX2 Winograd
        node("Relu", ["c3"], ["r3"]),
        node("Conv", ["r3", "w5"], ["c5"], pads=[2, 2, 2, 2]),  # Winograd F(4, 5), no bias
        node("Conv", ["r3", "w6"], ["cs"], strides=[2, 2], pads=[2, 2, 2, 2]),  # space-to-depth
        node("GlobalAveragePool", ["cs"], ["gs"]),
        node("HardSwish", ["cs"], ["hs"]),  # the activations' kernel
        node("Erf", ["hs"], ["er"]),  # erf (and GELU) in vectors
        node("LayerNormalization", ["er", "ln"], ["lns0"]),  # LayerNormalization's kernel
        node("InstanceNormalization", ["lns0", "is", "ib"], ["lns"]),  # the others' kernel
        node("Constant", [], ["axes"], value=numpy_helper.from_array(np.array([2, 3]))),
        node("Constant", [], ["ax1"], value=numpy_helper.from_array(np.array([1]))),
        node("ReduceSum", ["lns", "ax1"], ["rs1"]),  # the reductions' kernel
        node("ReduceMean", ["rs1", "axes"], ["rm"]),  # over the last axes: the global pool's
        node("ReduceMax", ["rs1", "axes"], ["rx"]),  # over the last axes: rows
        node("MaxPool", ["c5"], ["m"], kernel_shape=[2, 2], strides=[2, 2]),  # no indices
        node("MaxPool", ["m"], ["m2", "idx"], kernel_shape=[2, 2], pads=[1, 1, 1, 1]),
        node("Conv", ["m2", "w", "b4"], ["c0"], pads=[1, 1, 1, 1]),  # im2col in the GEMM
        node("Conv", ["x", "wg"], ["cg"], group=4, pads=[4, 4, 4, 4]),  # direct: rows of 14
        node("Conv", ["x", "wpx"], ["cpx"], strides=[2, 2], pads=[1, 1, 1, 1]),  # pixels tiles
        node("GlobalMaxPool", ["cpx"], ["gpx"]),
        node("GlobalMaxPool", ["cg"], ["gg"]),
        node("Conv", ["m2", "wf"], ["cf"], pads=[1, 1, 1, 1]),  # 2 rows: im2col, then GEMM
        node("GlobalMaxPool", ["cf"], ["gf"]),
        node("Conv", ["m2", "wq"], ["cq"]),  # 1x1, 2 rows: packed planes, then the GEMM
        node("GlobalMaxPool", ["cq"], ["gq"]),
        node("Conv", ["x", "wpt"], ["cpt"], strides=[2, 2]),  # patchify: gather, pointwise GEMM
        node("GlobalMaxPool", ["cpt"], ["gpt"]),
        node("MaxPool", ["r3"], ["mr"], kernel_shape=[2, 2], strides=[2, 2]),  # dense, alone
        node("MaxPool", ["mr"], ["mp"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),  # padded
        node("GlobalMaxPool", ["mp"], ["gm"]),
        node("ConvTranspose", ["m2", "wt", "bt"], ["ct"], strides=[2, 2]),  # GEMM + col2im
        node("ConvTranspose", ["ct", "wt2"], ["ct2"]),  # no bias
        node(
            "Constant",
            [],
            ["sc"],
            value=numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32)),
        ),
        node("Resize", ["ct2", "", "sc"], ["rs"], mode="linear"),  # the separable kernel
        node("GlobalMaxPool", ["rs"], ["gr"]),
        node("Conv", ["c0", "wd"], ["cd"], group=4, pads=[1, 1, 1, 1]),  # depthwise, lanes
        node("GlobalMaxPool", ["cd"], ["gd"]),
        node("Transpose", ["cd"], ["cdt"], perm=[0, 2, 3, 1]),  # LayerNorm over channels:
        node("LayerNormalization", ["cdt", "ln"], ["cdl"]),  # one step, the NCHW kernel
        node("Transpose", ["cdl"], ["cdn"], perm=[0, 3, 1, 2]),
        node("GlobalMaxPool", ["cdn"], ["gl"]),
        node("Conv", ["c0", "wd2"], ["cd2"], group=4, pads=[1, 1, 1, 1]),  # 2 a channel: phased
        node("GlobalMaxPool", ["cd2"], ["gd2"]),
        node("Conv", ["c0", "w2"], ["c"]),  # im2col, no bias
        node("Tanh", ["c"], ["t"]),  # fused: the conv epilogue
        node("AveragePool", ["t"], ["a"], kernel_shape=[2, 2]),  # windows inside: rows
        node("GlobalMaxPool", ["a"], ["g"]),
        node("AveragePool", ["t"], ["ap"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),  # padded
        node("GlobalMaxPool", ["ap"], ["gap"]),
        node("Flatten", ["m"], ["f"]),
        node("Gemm", ["f", "fc", "fcb"], ["y"], transB=1),  # small batch: streams fc
        node("Relu", ["y"], ["ry"]),
        node("Gemm", ["ry", "big"], ["z0"]),  # split over the cores
        node("Softmax", ["z0"], ["z"]),  # over each row: the bound kernel
    ]
    weights = {"w3": (32, 32, 3, 3), "b": (32,), "w5": (32, 32, 5, 5), "w6": (32, 32, 6, 6),
               "w": (4, 32, 3, 3),
               "b4": (4,), "w2": (4, 4, 1, 1), "fc": (64, 512), "fcb": (64,),
               "big": (64, 16384), "ln": (4,), "is": (32,), "ib": (32,), "wf": (2, 32, 3, 3),
               "wq": (2, 32, 1, 1), "wg": (12, 8, 3, 3), "wpx": (32, 32, 3, 3)}  # fmt: skip
    weights.update({"wt": (32, 4, 2, 2), "bt": (4,), "wt2": (4, 4, 3, 3), "wd": (4, 1, 3, 3)})
    weights["wd2"] = (8, 1, 3, 3)
    weights["wpt"] = (8, 32, 2, 2)
    outputs = [("g", [1, 4, 1, 1]), ("z", [1, 16384]), ("gs", [1, 32, 1, 1]),
               ("rm", [1, 1, 1, 1]), ("gr", [1, 4, 1, 1]), ("gd", [1, 4, 1, 1]),
               ("gd2", [1, 8, 1, 1]), ("gf", [1, 2, 1, 1]), ("gq", [1, 2, 1, 1]),
               ("gm", [1, 32, 1, 1]), ("gg", [1, 12, 1, 1]), ("gl", [1, 4, 1, 1]),
               ("gpt", [1, 8, 1, 1]), ("gpx", [1, 32, 1, 1]), ("rx", [1, 1, 1, 1]),
               ("gap", [1, 4, 1, 1])]  # fmt: skip
    return _model(nodes, [("x", [1, 32, 8, 8])], outputs, weights)


def _recurrent_model() -> bytes:
    """RNN, GRU and LSTM over one sequence: the input projection and each recurrence."""
    node = helper.make_node
    hidden, size = 4, 3
    nodes = [
        node("RNN", ["x", "wr", "rr"], ["yr"], hidden_size=hidden),
        node("GRU", ["x", "wg", "rg"], ["yg"], hidden_size=hidden),
        node("LSTM", ["x", "wl", "rl"], ["yl"], hidden_size=hidden),
    ]
    weights = {
        "wr": (1, hidden, size), "rr": (1, hidden, hidden),
        "wg": (1, 3 * hidden, size), "rg": (1, 3 * hidden, hidden),
        "wl": (1, 4 * hidden, size), "rl": (1, 4 * hidden, hidden),
    }  # fmt: skip
    outputs = [(y, [2, 1, 1, hidden]) for y in ("yr", "yg", "yl")]
    return _model(nodes, [("x", [2, 1, size])], outputs, weights)


def _chain_model() -> bytes:
    node = helper.make_node
    nodes = [
        node("Conv", ["x", "w1", "b1"], ["c1"], pads=[2, 2, 2, 2]),
        node("Tanh", ["c1"], ["t1"]),
        node("AveragePool", ["t1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        node("Conv", ["p1", "w2", "b2"], ["c2"], strides=[2, 2]),  # im2col columns
        node("Relu", ["c2"], ["r2"]),
        node("MaxPool", ["r2"], ["p2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        node("Flatten", ["p2"], ["f"]),
        node("Gemm", ["f", "fc", "fcb"], ["y"], transB=1),
        node("Sigmoid", ["y"], ["s"]),
        node("Softmax", ["s"], ["out"]),
    ]
    weights = {"w1": (6, 1, 5, 5), "b1": (6,), "w2": (8, 6, 3, 3), "b2": (8,),
               "fc": (10, 8 * 2 * 2), "fcb": (10,)}  # fmt: skip
    return _model(nodes, [("x", ["n", 1, 12, 12])], [("out", ["n", 10])], weights)


def _small_op_kernels() -> None:
    """The small ops' kernels, serial and parallel, called directly with the types their
    ops pass: which of the two an op runs depends on the work's size and the threads
    (``nn.SERIAL_FLOATS``), which the graphs above do not pin down."""
    import numba

    from runtime.kernels import matvec, normalize, pool

    f32 = np.float32
    threads = numba.get_num_threads()
    x, y = np.zeros((2, 7, 9), f32), np.zeros((2, 4, 5), f32)
    rw = pool.max_pool_row_floats(9, 5, 1, 3, 2, 1)
    tmp = np.zeros((threads, pool.MAX_POOL_ROWS * rw + pool.WIDTH), f32)
    # and a max pool fused into a conv that does not fuse it (kernel_table._then_max_pool)
    for run in (pool.max_pool_rows, pool.max_pool_rows_planes):
        run(x, y, tmp, 1, 1, 3, 3, 2, 2, 1, 1)
    x3, y3 = np.zeros((2, 4, 4), f32), np.zeros((2, 2, 2), f32)  # AveragePool, windows inside
    pool.avg_pool_rows(x3, y3, 2, 2, 2, 2)
    pool.avg_pool_rows_planes(x3, y3, 2, 2, 2, 2, 2)
    xs, ys, sc = np.zeros(10, f32), np.zeros(10, f32), np.zeros(2, f32)  # BatchNormalization
    normalize.scale_shift_planes(xs, ys, sc, sc.copy(), 5, 0, 2, 1, 0.0, 0.0)
    normalize.scale_shift_planes_parallel(xs, ys, sc, sc.copy(), 5, 2, 1, 0.0, 0.0)
    planes, out = np.zeros((3, 5), f32), np.zeros(3, f32)
    for use_max in (False, True):
        pool.global_pool_rows(planes, out, use_max)
        pool._global_pool(planes, out, use_max, np.zeros(threads * pool.POOL_BUF, f32))
    a, c = np.zeros((1, 3), f32), np.zeros((1, 4), f32)
    wp, bias = matvec.pack_panels(np.zeros((3, 4), f32)), matvec.pad_bias(None, 4)
    for run in (matvec.matvec_rows, matvec.matvec_rows_panels):
        run(a, wp, bias, c, 1, 0.0, 0.0)
    se = np.zeros((1, 4, 5), f32)
    w1, w2 = matvec.pack_panels(np.zeros((4, 2), f32)), matvec.pack_panels(np.zeros((2, 4), f32))
    work = np.zeros((threads, matvec.excite_work(4, 2)), f32)
    for run in (matvec.squeeze_excite, matvec.squeeze_excite_images):
        run(se, se.copy(), w1, matvec.pad_bias(None, 2), 2, w2, matvec.pad_bias(None, 4),
            1, 0.0, 0.0, 6, 0.2, 0.5, work)  # fmt: skip


def _pixels_conv() -> None:
    """The pixels conv, which the steps model reaches on AVX-512 alone (``kernel_table``
    chooses it there only), called through its entry as the table calls it."""
    from runtime import kernel_table
    from runtime.kernels.isa import has_avx512

    if has_avx512():
        return
    x, w = np.zeros((1, 8, 8, 8), np.float32), np.zeros((32, 8, 3, 3), np.float32)
    spec = kernel_table.ConvSpec(w, 1, (2, 2), (1, 1), (1, 1), x_shape=x.shape, out_sp=(4, 4),
                                 bias=np.zeros(32, np.float32))  # fmt: skip
    kernel_table._pixels_prepare(spec)(x, np.zeros((1, 32, 4, 4), np.float32))


def warmup() -> float:
    """Compile (or load from the cache) every kernel; returns the seconds it took."""
    t0 = time.perf_counter()
    engine = NumbaEngine(load_graph(_steps_model()))
    x = np.zeros((1, 32, 8, 8), np.float32)
    engine.run({"x": x}, engine.output_names)  # traced
    engine.run({"x": x}, engine.output_names)  # planned: the buffer-writing paths
    rec = NumbaEngine(load_graph(_recurrent_model()))
    for _ in range(2):  # traced, then planned
        rec.run({"x": np.zeros((2, 1, 3), np.float32)}, rec.output_names)
    chain = NumbaEngine(load_graph(_chain_model()))
    for n in (1, 2):  # one image runs on the calling thread, a batch on all cores
        chain.run({"x": np.zeros((n, 1, 12, 12), np.float32)}, chain.output_names)
    _small_op_kernels()
    _pixels_conv()
    return time.perf_counter() - t0
