"""``gather_patches`` and ``PatchConv``: a "patchify" conv as a gather, then a 1x1 conv.

A 2-D conv whose kernel equals its stride (kh x kw at stride kh, kw), without padding
or dilation, reads every input value at most once: output (i, j) sees the patch of
rows i*kh .. i*kh + kh - 1 and columns j*kw .. j*kw + kw - 1, and no two patches
overlap (ConvNeXt's 4x4/4 stem and 2x2/2 downsampling, ViT's 16x16/16 patch
embedding). Laid out as planes,

    g[n, (c*kh + a)*kw + e, i, j] = x[n, c, i*kh + a, j*kw + e]     (N, C*kh*kw, OH, OW)

the conv is the 1x1 conv of g with the weights w (M, C/G, kh, kw) read as (M,
C/G*kh*kw): its sums run over (c, a, e) in im2col's order. A group's channels c stay
contiguous in g (rows g*C/G*kh*kw onwards), so a grouped conv stays grouped. Rows and
columns past OH*kh and OW*kw (a size the stride does not divide) are never read.
``PatchConv`` (``kernel_table``'s patch entry) runs this, then the pointwise GEMM
(``gemm._conv_nchw_pointwise_gemm``) with the conv's epilogue.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from runtime.kernels.conv import ConvGemm
from runtime.kernels.gemm import NO_RESIDUAL
from runtime.kernels.jit import kernel
from runtime.memory import check_size, scratch


@kernel(parallel=True)
def gather_patches(x, g, kh, kw):  # pragma: no cover
    """x (N, C, H, W) -> g (N, C*kh*kw, OH, OW) as above. A job is one (image,
    channel, row a of the patch): it writes the kw planes (c*kh + a)*kw + e of its
    image, which no other job writes."""
    N, C = x.shape[0], x.shape[1]
    OH, OW = g.shape[2], g.shape[3]
    for job in prange(N * C * kh):
        n = job // (C * kh)
        r = job % (C * kh)  # c*kh + a
        a = r % kh
        c = r // kh
        for i in range(OH):
            src = x[n, c, i * kh + a]
            for e in range(kw):
                dst = g[n, r * kw + e, i]
                for j in range(OW):
                    dst[j] = src[j * kw + e]


class PatchConv:
    """A patchify conv laid out once for one input shape: x's patches gathered into
    planes (``gather_patches``: (N, C, H, W) -> (N, C*kh*kw, OH, OW), each input value
    copied once), then the pointwise GEMM on them (``conv.ConvGemm.pointwise_gemm``)
    with the conv's epilogue and, fused, a residual. ``packed``: ``conv.pack_weights``
    of the weights as (M, C/G*kh*kw, 1, 1, 1); ``epilogue``: (act, alpha, beta, scale,
    shift); ``panel_width``: the pointwise GEMM's tile width."""

    def __init__(
        self,
        x_shape: tuple[int, ...],
        w_shape: tuple[int, ...],
        packed: np.ndarray,
        bias: np.ndarray,
        group: int,
        *,
        out_sp: tuple[int, int],
        epilogue: tuple,
        panel_width: int,
    ) -> None:
        n, c = x_shape[:2]
        m, _, kh, kw = w_shape
        (oh, ow), k = out_sp, c * kh * kw
        self.x_shape, self.kh, self.kw = tuple(x_shape), kh, kw
        self.g_shape = (n, k, oh, ow)  # (N, C*kh*kw, OH, OW)
        check_size(self.g_shape, np.float32, "patchify conv patches")
        self.gemm = ConvGemm(
            (n, k, 1, oh, ow), (m, k // group, 1, 1, 1), packed, bias, group,
            strides=(1, 1, 1), pads=(0, 0, 0), dilations=(1, 1, 1), out_sp=(1, oh, ow),
            epilogue=epilogue, panel_width=panel_width,
        )  # fmt: skip

    def __call__(self, x: np.ndarray, out: np.ndarray, res: np.ndarray = NO_RESIDUAL) -> None:
        """``res``: a residual shaped as out, flat, added before the activation (or none)."""
        g = scratch("patch.planes", self.g_shape, np.float32)
        gather_patches(np.ascontiguousarray(x).reshape(self.x_shape), g, self.kh, self.kw)
        self.gemm.pointwise_gemm(g, out, res)
