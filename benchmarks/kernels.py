"""Kernel classes against onnxruntime: single Conv nodes at the shapes CNNs use.

    python benchmarks/kernels.py [--threads 1] [--runs 30] [--classes pointwise,im2col,...]

For each shape, the numba engine's prepared call (``ops.nn.conv_call``: the kernel
the table chooses, laid out once) and onnxruntime's session on the same one-node
model, each timed as the median of ``--runs`` calls in this process; a ReLU is fused
into both. Prints the time, GFLOP/s and the ratio (onnxruntime / numba: above 1,
numba is faster), and the total per class. Timings are noisy on a shared machine:
run it alone, twice, and compare medians.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numba
import numpy as np

# (C in, C out, H = W, kernel, stride, group): MobileNet/EfficientNet/ResNet layers
SHAPES = {
    "pointwise": [
        (16, 96, 64, 1, 1, 1), (96, 24, 32, 1, 1, 1), (24, 144, 32, 1, 1, 1),
        (144, 24, 32, 1, 1, 1), (144, 32, 16, 1, 1, 1), (192, 64, 8, 1, 1, 1),
        (384, 64, 8, 1, 1, 1), (64, 384, 8, 1, 1, 1), (576, 160, 4, 1, 1, 1),
        (960, 320, 4, 1, 1, 1), (32, 16, 64, 1, 1, 1),
    ],
    "depthwise": [
        (48, 48, 64, 3, 1, 48), (96, 96, 64, 3, 2, 96), (72, 72, 32, 3, 1, 72),
        (144, 144, 32, 3, 2, 144), (96, 96, 16, 3, 1, 96), (192, 192, 16, 3, 2, 192),
        (384, 384, 8, 3, 1, 384), (576, 576, 8, 3, 1, 576), (960, 960, 4, 3, 1, 960),
        # MobileNetV2/EfficientNet-B0 at 224 (14x14, 7x7; 5x5), ConvNeXt-Tiny's last 7x7
        (576, 576, 14, 3, 2, 576), (960, 960, 7, 3, 1, 960), (240, 240, 28, 5, 2, 240),
        (672, 672, 14, 5, 1, 672), (1152, 1152, 7, 5, 1, 1152), (768, 768, 7, 7, 1, 768),
    ],
    "im2col": [
        (3, 16, 128, 3, 2, 1), (3, 32, 224, 3, 2, 1), (16, 16, 32, 3, 1, 1),
        (24, 24, 28, 3, 1, 1), (64, 128, 28, 3, 2, 1), (48, 48, 28, 3, 1, 6),
        (3, 64, 224, 7, 2, 1), (96, 96, 14, 3, 2, 4),
    ],
    # RegNetY's grouped 3x3s (group width 8) on small planes and its strided 1x1s
    "grouped": [
        (56, 56, 32, 3, 2, 7), (152, 152, 8, 3, 1, 19), (368, 368, 8, 3, 2, 46),
        (368, 368, 4, 3, 1, 46), (32, 56, 64, 1, 2, 1), (152, 368, 8, 1, 2, 1),
    ],
}  # fmt: skip


def _median_s(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="default: %(default)s")
    ap.add_argument("--runs", type=int, default=30, help="default: %(default)s")
    ap.add_argument("--classes", default=",".join(SHAPES), help="default: %(default)s")
    args = ap.parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(root), str(root / "tests")]
    import onnxruntime as ort
    from onnx_helpers import single_node_model
    from threadpoolctl import threadpool_limits

    from runtime.ops.nn import conv_call

    numba.set_num_threads(args.threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    rng = np.random.default_rng(0)
    for cls in args.classes.split(","):
        total_numba = total_ort = 0.0
        print(f"{cls} ({args.threads} thread(s), median of {args.runs})")
        for c, m, hw, k, s, g in SHAPES[cls]:
            x = rng.standard_normal((1, c, hw, hw)).astype(np.float32)
            w = (rng.standard_normal((m, c // g, k, k)) / np.sqrt(c // g * k * k)).astype(
                np.float32
            )
            b = rng.standard_normal(m).astype(np.float32)
            attrs = {"group": g, "pads": [k // 2] * 4, "strides": [s, s]}
            call = conv_call(x.shape, w, b, activation="Relu", **attrs)
            out = np.empty(call.out_shape, np.float32)
            with threadpool_limits(1):
                t_numba = _median_s(lambda: call(x, out), args.runs)  # noqa: B023
            nodes = single_node_model("Conv", {"x": x}, initializers={"w": w, "b": b}, **attrs)
            model, feeds = nodes
            sess = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
            want = np.maximum(sess.run(None, feeds)[0], 0)
            np.testing.assert_allclose(out, want, rtol=1e-3, atol=1e-3)
            t_ort = _median_s(lambda: sess.run(None, feeds), args.runs)  # noqa: B023
            flops = 2 * (c // g) * k * k * m * call.out_shape[2] * call.out_shape[3]
            total_numba, total_ort = total_numba + t_numba, total_ort + t_ort
            print(
                f"  {c:4d}->{m:4d} {hw:3d}x{hw:<3d} k{k} s{s} g{g:<4d}"
                f" numba {t_numba * 1e6:8.1f} us {flops / t_numba / 1e9:6.1f} GFLOP/s"
                f"  onnxruntime {t_ort * 1e6:8.1f} us"
                f"  ratio {t_ort / t_numba:5.2f}  {call.choice.algorithm}"
            )
        print(
            f"  total: numba {total_numba * 1e3:.3f} ms, onnxruntime {total_ort * 1e3:.3f} ms,"
            f" ratio {total_ort / total_numba:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
