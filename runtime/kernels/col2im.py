"""col2im for ConvTranspose: scatter-add the columns of a GEMM into output planes.

ConvTranspose is, per image and group, cols = W_g^T @ X_g (``kernel_table.matmul``),
then every column entry lands on one output position. Shapes are normalised to
3-D spatial (1-D and 2-D have D=1, H=1). With cols (P, KD, KH, KW, ID, IH, IW) for
P = N*M output planes:

    out[p, od, oh, ow] = bias[p % M] + sum cols[p, a, b, e, i, j, k]
        over od = i*sd + a*dd - pd, oh = j*sh + b*dh - ph, ow = k*sw + e*dw - pw

Each prange iteration owns one output plane (disjoint).
"""

from __future__ import annotations

from numba import prange

from runtime.kernels.jit import kernel


@kernel(parallel=True)
def col2im_planes(cols, bias, out, sd, sh, sw, dd, dh, dw, pd, ph, pw):  # pragma: no cover
    P, KD, KH, KW, ID, IH, IW = cols.shape
    OD, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    M = bias.shape[0]
    for p in prange(P):
        plane = out[p]
        plane[:] = bias[p % M]
        for a in range(KD):
            for i in range(ID):
                od = i * sd + a * dd - pd
                if od < 0 or od >= OD:
                    continue
                for b in range(KH):
                    for j in range(IH):
                        oh = j * sh + b * dh - ph
                        if oh < 0 or oh >= OH:
                            continue
                        dst = plane[od, oh]
                        for e in range(KW):
                            src = cols[p, a, b, e, i, j]
                            # ow = k*sw + e*dw - pw in [0, OW)
                            k0 = max(0, (pw - e * dw + sw - 1) // sw)
                            k1 = min(IW, (OW - 1 + pw - e * dw) // sw + 1)
                            for k in range(k0, k1):
                                dst[k * sw + e * dw - pw] += src[k]
