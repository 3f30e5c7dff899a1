"""Vectors of ``WIDTH`` float32 for numba kernels: a register-blocked micro-kernel.

LLVM vectorises simple loops on its own, but not a micro-kernel that keeps a block
of sums in registers across a loop (accumulators in a local array, or in 64 named
scalars, ran at 1 to 28 GMAC/s). Here a vector is a numba type whose LLVM type is
``<WIDTH x float>``: local variables of that type stay in registers, and each call
below is one instruction.

    vzero()              -> 0 in every lane
    vload(a, i)          -> a[i : i + WIDTH]        (a 1-D contiguous float32 array)
    vstore(a, i, v)         a[i : i + WIDTH] = v
    vfma(acc, v, s)      -> acc + v * s, fused     (s a float32 scalar, broadcast)
    vmax(a, b)           -> b where b > a, else a, lane by lane
    vmin(a, b)           -> b where a > b, else a, lane by lane
    vrelu(v)             -> 0 where v <= 0, else v (a NaN stays NaN)
    vsplat(s)            -> s in every lane
    vadd(a, b)           -> a + b, lane by lane
    vmul(a, b)           -> a * b, lane by lane
    vdiv(a, b)           -> a / b, lane by lane
    vround(v)            -> v rounded to the nearest integer, ties to even, lane by lane
    vexp2(n)             -> 2 ** n for integral n in [-250, 250], lane by lane (0 or inf
                            where it underflows or overflows float32)
    vwhere_lt(a, b, x, y) -> x where a < b, else y, lane by lane (a NaN in a or b: y)
    veven(a, b)          -> lanes 0, 2, 4, ... of a then b (a and b: 2 WIDTH values in a row)
    vload_first(a, i, n) -> a[i : i + n], then zeros (0 <= n <= WIDTH; nothing past n is read)
    vstore_first(a, i, v, n)  a[i : i + n] = v[:n] (nothing past n is written)
    vload_lanes(a, i, v, lo, hi) -> v with its lanes lo <= l < hi read from a[i + l]
                            (0 <= lo <= hi <= WIDTH; only those are read: i may be
                            negative where lo is not 0)
    vstore_lanes(a, i, v, lo, hi)  a[i + l] = v[l] for lo <= l < hi (only those written)
    vfmav(acc, v, w)     -> acc + v * w, fused, lane by lane (w a vector)
    transpose(a, i, s, rows, n, b, j, t, cols, m)
                            reads rows vectors a[i + r s : + n] (the rest zeros) as the
                            rows of a WIDTH x WIDTH matrix and writes the first m lanes of
                            its first cols columns to b[j + c t : + m]: a transposition
                            in registers (shuffles, no gather or scatter)
    prefetch(a, i)          a hint to fetch a[i]'s cache line into L1

None checks its bounds: the caller keeps i + WIDTH within the array (``prefetch``
never faults). With ``NUMBA_DISABLE_JIT=1`` they are NumPy functions of the same
meaning, so kernels that use them run, slowly, as plain Python.
"""

from __future__ import annotations

import numba
import numpy as np

WIDTH = 16  # 512 bits: one AVX-512 register; LLVM splits it in two on AVX2

if numba.config.DISABLE_JIT:

    def vzero() -> np.ndarray:
        return np.zeros(WIDTH, np.float32)

    def vload(a: np.ndarray, i: int) -> np.ndarray:
        return a[i : i + WIDTH].copy()

    def vstore(a: np.ndarray, i: int, v: np.ndarray) -> None:
        a[i : i + WIDTH] = v

    def vfma(acc: np.ndarray, v: np.ndarray, s: float) -> np.ndarray:
        return acc + v * np.float32(s)

    def vmax(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.where(b > a, b, a)

    def vmin(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.where(a > b, b, a)

    def vrelu(v: np.ndarray) -> np.ndarray:
        return np.where(v <= 0, np.float32(0), v)

    def vsplat(s: float) -> np.ndarray:
        return np.full(WIDTH, s, np.float32)

    def vadd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b

    def vmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a * b

    def vdiv(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a / b

    def vround(v: np.ndarray) -> np.ndarray:
        return np.rint(v).astype(np.float32)

    def vexp2(n: np.ndarray) -> np.ndarray:
        half = np.floor(n / 2)
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):  # NaN lanes
            return (
                np.ldexp(np.float32(1), half.astype(np.int32))
                * np.ldexp(np.float32(1), (n - half).astype(np.int32))
            ).astype(np.float32)

    def vwhere_lt(a: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.where(a < b, x, y)

    def veven(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.concatenate([a, b])[0::2].copy()

    def vload_first(a: np.ndarray, i: int, n: int) -> np.ndarray:
        v = np.zeros(WIDTH, np.float32)
        v[:n] = a[i : i + n]
        return v

    def vstore_first(a: np.ndarray, i: int, v: np.ndarray, n: int) -> None:
        a[i : i + n] = v[:n]

    def vload_lanes(a: np.ndarray, i: int, v: np.ndarray, lo: int, hi: int) -> np.ndarray:
        v = v.copy()
        v[lo:hi] = a[i + lo : i + hi]
        return v

    def vstore_lanes(a: np.ndarray, i: int, v: np.ndarray, lo: int, hi: int) -> None:
        a[i + lo : i + hi] = v[lo:hi]

    def vfmav(acc: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        return (acc.astype(np.float64) + v.astype(np.float64) * w).astype(np.float32)

    def transpose(a, i, s, rows, n, b, j, t, cols, m) -> None:
        tile = np.zeros((WIDTH, WIDTH), np.float32)
        for r in range(rows):
            tile[r, :n] = a[i + r * s : i + r * s + n]
        for c in range(cols):
            b[j + c * t : j + c * t + m] = tile[:m, c]

    def prefetch(a: np.ndarray, i: int) -> None:
        return None

else:
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.extending import intrinsic, models, register_model

    _VEC = ir.VectorType(ir.FloatType(), WIDTH)
    _I32 = ir.IntType(32)

    class Float32xW(types.Type):
        def __init__(self) -> None:
            super().__init__(name=f"float32x{WIDTH}")

    float32xw = Float32xW()

    @register_model(Float32xW)
    class _VectorModel(models.PrimitiveModel):
        def __init__(self, dmm, fe_type) -> None:
            super().__init__(dmm, fe_type, _VEC)

    def _address(context, builder, aryty, ary, idxty, idx):
        data = context.make_array(aryty)(context, builder, ary).data
        return builder.gep(data, [context.cast(builder, idx, idxty, types.intp)])

    def _check_array(arr) -> None:
        if not (
            isinstance(arr, types.Array)
            and arr.dtype == types.float32
            and arr.ndim == 1
            and arr.layout == "C"
        ):
            raise numba.core.errors.TypingError(
                f"expected a contiguous 1-D float32 array, received {arr}"
            )

    @intrinsic
    def vzero(typingctx):
        def codegen(context, builder, sig, args):
            return ir.Constant(_VEC, [0.0] * WIDTH)

        return float32xw(), codegen

    @intrinsic
    def vload(typingctx, arr, idx):
        _check_array(arr)

        def codegen(context, builder, sig, args):
            p = _address(context, builder, sig.args[0], args[0], sig.args[1], args[1])
            return builder.load(builder.bitcast(p, _VEC.as_pointer()), align=4)

        return float32xw(arr, idx), codegen

    @intrinsic
    def vstore(typingctx, arr, idx, vec):
        _check_array(arr)

        def codegen(context, builder, sig, args):
            p = _address(context, builder, sig.args[0], args[0], sig.args[1], args[1])
            builder.store(args[2], builder.bitcast(p, _VEC.as_pointer()), align=4)
            return context.get_dummy_value()

        return types.none(arr, idx, vec), codegen

    @intrinsic
    def vfma(typingctx, acc, vec, s):
        def codegen(context, builder, sig, args):
            scalar = context.cast(builder, args[2], sig.args[2], types.float32)
            one = builder.insert_element(ir.Constant(_VEC, ir.Undefined), scalar, _I32(0))
            mask = ir.Constant(ir.VectorType(_I32, WIDTH), [0] * WIDTH)
            broadcast = builder.shuffle_vector(one, ir.Constant(_VEC, ir.Undefined), mask)
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(_VEC, [_VEC] * 3), f"llvm.fma.v{WIDTH}f32"
            )
            return builder.call(fma, [args[1], broadcast, args[0]])

        return float32xw(acc, vec, s), codegen

    @intrinsic
    def vmax(typingctx, a, b):
        def codegen(context, builder, sig, args):
            greater = builder.fcmp_ordered(">", args[1], args[0])
            return builder.select(greater, args[1], args[0])

        return float32xw(a, b), codegen

    @intrinsic
    def vmin(typingctx, a, b):
        def codegen(context, builder, sig, args):
            greater = builder.fcmp_ordered(">", args[0], args[1])
            return builder.select(greater, args[1], args[0])

        return float32xw(a, b), codegen

    @intrinsic
    def vrelu(typingctx, v):
        def codegen(context, builder, sig, args):
            zero = ir.Constant(_VEC, [0.0] * WIDTH)
            at_most_zero = builder.fcmp_ordered("<=", args[0], zero)
            return builder.select(at_most_zero, zero, args[0])

        return float32xw(v), codegen

    def _splat(context, builder, value, fromty):
        scalar = context.cast(builder, value, fromty, types.float32)
        one = builder.insert_element(ir.Constant(_VEC, ir.Undefined), scalar, _I32(0))
        mask = ir.Constant(ir.VectorType(_I32, WIDTH), [0] * WIDTH)
        return builder.shuffle_vector(one, ir.Constant(_VEC, ir.Undefined), mask)

    @intrinsic
    def vsplat(typingctx, s):
        def codegen(context, builder, sig, args):
            return _splat(context, builder, args[0], sig.args[0])

        return float32xw(s), codegen

    @intrinsic
    def vadd(typingctx, a, b):
        def codegen(context, builder, sig, args):
            return builder.fadd(args[0], args[1])

        return float32xw(a, b), codegen

    @intrinsic
    def vmul(typingctx, a, b):
        def codegen(context, builder, sig, args):
            return builder.fmul(args[0], args[1])

        return float32xw(a, b), codegen

    @intrinsic
    def vdiv(typingctx, a, b):
        def codegen(context, builder, sig, args):
            return builder.fdiv(args[0], args[1])

        return float32xw(a, b), codegen

    @intrinsic
    def vround(typingctx, v):
        def codegen(context, builder, sig, args):
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(_VEC, [_VEC]), f"llvm.roundeven.v{WIDTH}f32"
            )
            return builder.call(fn, [args[0]])

        return float32xw(v), codegen

    @intrinsic
    def vexp2(typingctx, n):
        def codegen(context, builder, sig, args):
            # 2^n as 2^h * 2^(n - h), h = n >> 1: each factor's exponent field
            # (e + 127) << 23 stays within a normal float's for |n| <= 250.
            ivec = ir.VectorType(_I32, WIDTH)
            i = builder.fptosi(args[0], ivec)
            h = builder.ashr(i, ir.Constant(ivec, [1] * WIDTH))
            bias = ir.Constant(ivec, [127] * WIDTH)
            shift = ir.Constant(ivec, [23] * WIDTH)
            a = builder.bitcast(builder.shl(builder.add(h, bias), shift), _VEC)
            b = builder.bitcast(builder.shl(builder.add(builder.sub(i, h), bias), shift), _VEC)
            return builder.fmul(a, b)

        return float32xw(n), codegen

    @intrinsic
    def vwhere_lt(typingctx, a, b, x, y):
        def codegen(context, builder, sig, args):
            less = builder.fcmp_ordered("<", args[0], args[1])
            return builder.select(less, args[2], args[3])

        return float32xw(a, b, x, y), codegen

    @intrinsic
    def veven(typingctx, a, b):
        def codegen(context, builder, sig, args):
            mask = ir.Constant(ir.VectorType(_I32, WIDTH), list(range(0, 2 * WIDTH, 2)))
            return builder.shuffle_vector(args[0], args[1], mask)

        return float32xw(a, b), codegen

    def _first(context, builder, n, nty):
        """The mask of lanes below n."""
        count = context.cast(builder, n, nty, types.int32)
        one = builder.insert_element(
            ir.Constant(ir.VectorType(_I32, WIDTH), ir.Undefined), count, _I32(0)
        )
        mask = ir.Constant(ir.VectorType(_I32, WIDTH), [0] * WIDTH)
        counts = builder.shuffle_vector(
            one, ir.Constant(ir.VectorType(_I32, WIDTH), ir.Undefined), mask
        )
        lanes = ir.Constant(ir.VectorType(_I32, WIDTH), list(range(WIDTH)))
        return builder.icmp_signed("<", lanes, counts)

    @intrinsic
    def vload_first(typingctx, arr, idx, n):
        _check_array(arr)

        def codegen(context, builder, sig, args):
            p = _address(context, builder, sig.args[0], args[0], sig.args[1], args[1])
            vp = builder.bitcast(p, _VEC.as_pointer())
            mask = _first(context, builder, args[2], sig.args[2])
            fn = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(_VEC, [vp.type, _I32, mask.type, _VEC]),
                f"llvm.masked.load.v{WIDTH}f32.p0",
            )
            return builder.call(fn, [vp, _I32(4), mask, ir.Constant(_VEC, [0.0] * WIDTH)])

        return float32xw(arr, idx, n), codegen

    @intrinsic
    def vstore_first(typingctx, arr, idx, vec, n):
        _check_array(arr)

        def codegen(context, builder, sig, args):
            p = _address(context, builder, sig.args[0], args[0], sig.args[1], args[1])
            vp = builder.bitcast(p, _VEC.as_pointer())
            mask = _first(context, builder, args[3], sig.args[3])
            fn = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(ir.VoidType(), [_VEC, vp.type, _I32, mask.type]),
                f"llvm.masked.store.v{WIDTH}f32.p0",
            )
            builder.call(fn, [args[2], vp, _I32(4), mask])
            return context.get_dummy_value()

        return types.none(arr, idx, vec, n), codegen

    def _lanes(context, builder, lo, loty, hi, hity):
        """The mask of lanes lo <= l < hi."""
        return builder.and_(
            builder.not_(_first(context, builder, lo, loty)), _first(context, builder, hi, hity)
        )

    @intrinsic
    def vload_lanes(typingctx, arr, idx, vec, lo, hi):
        _check_array(arr)

        def codegen(context, builder, sig, args):
            p = _address(context, builder, sig.args[0], args[0], sig.args[1], args[1])
            vp = builder.bitcast(p, _VEC.as_pointer())
            mask = _lanes(context, builder, args[3], sig.args[3], args[4], sig.args[4])
            fn = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(_VEC, [vp.type, _I32, mask.type, _VEC]),
                f"llvm.masked.load.v{WIDTH}f32.p0",
            )
            return builder.call(fn, [vp, _I32(4), mask, args[2]])

        return float32xw(arr, idx, vec, lo, hi), codegen

    @intrinsic
    def vstore_lanes(typingctx, arr, idx, vec, lo, hi):
        _check_array(arr)

        def codegen(context, builder, sig, args):
            p = _address(context, builder, sig.args[0], args[0], sig.args[1], args[1])
            vp = builder.bitcast(p, _VEC.as_pointer())
            mask = _lanes(context, builder, args[3], sig.args[3], args[4], sig.args[4])
            fn = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(ir.VoidType(), [_VEC, vp.type, _I32, mask.type]),
                f"llvm.masked.store.v{WIDTH}f32.p0",
            )
            builder.call(fn, [args[2], vp, _I32(4), mask])
            return context.get_dummy_value()

        return types.none(arr, idx, vec, lo, hi), codegen

    @intrinsic
    def vfmav(typingctx, acc, vec, w):
        def codegen(context, builder, sig, args):
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(_VEC, [_VEC] * 3), f"llvm.fma.v{WIDTH}f32"
            )
            return builder.call(fma, [args[1], args[2], args[0]])

        return float32xw(acc, vec, w), codegen

    def _masked(context, builder, count, rows, r):
        """The mask of lanes below count in row r, none from row rows on."""
        inside = builder.icmp_signed("<", _I32(r), rows)
        return _first(context, builder, builder.select(inside, count, _I32(0)), types.int32)

    @intrinsic
    def transpose(typingctx, a, i, s, rows, n, b, j, t, cols, m):
        _check_array(a)
        _check_array(b)

        def codegen(context, builder, sig, args):
            def i32(k):
                return context.cast(builder, args[k], sig.args[k], types.int32)

            def i64(k):
                return context.cast(builder, args[k], sig.args[k], types.intp)

            load = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(
                    _VEC, [_VEC.as_pointer(), _I32, ir.VectorType(ir.IntType(1), WIDTH), _VEC]
                ),
                f"llvm.masked.load.v{WIDTH}f32.p0",
            )
            store = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(
                    ir.VoidType(),
                    [_VEC, _VEC.as_pointer(), _I32, ir.VectorType(ir.IntType(1), WIDTH)],
                ),
                f"llvm.masked.store.v{WIDTH}f32.p0",
            )
            zero = ir.Constant(_VEC, [0.0] * WIDTH)
            pa = _address(context, builder, sig.args[0], args[0], sig.args[1], args[1])
            pb = _address(context, builder, sig.args[5], args[5], sig.args[6], args[6])
            s64, t64 = i64(2), i64(7)
            vecs = []
            for r in range(WIDTH):
                p = builder.gep(pa, [builder.mul(s64, ir.Constant(s64.type, r))])
                mask = _masked(context, builder, i32(4), i32(3), r)
                vp = builder.bitcast(p, _VEC.as_pointer())
                vecs.append(builder.call(load, [vp, _I32(4), mask, zero]))
            # Four stages: at stage k rows r and r + 2^k (bit k of r clear) swap their
            # off-diagonal blocks of 2^k lanes.
            step = 1
            while step < WIDTH:
                lo = [k if not k & step else WIDTH + k - step for k in range(WIDTH)]
                hi = [k + step if not k & step else WIDTH + k for k in range(WIDTH)]
                out = list(vecs)
                for r in range(WIDTH):
                    if r & step:
                        continue
                    x, y = vecs[r], vecs[r + step]
                    out[r] = builder.shuffle_vector(
                        x, y, ir.Constant(ir.VectorType(_I32, WIDTH), lo)
                    )
                    out[r + step] = builder.shuffle_vector(
                        x, y, ir.Constant(ir.VectorType(_I32, WIDTH), hi)
                    )
                vecs = out
                step *= 2
            for c in range(WIDTH):
                p = builder.gep(pb, [builder.mul(t64, ir.Constant(t64.type, c))])
                mask = _masked(context, builder, i32(9), i32(8), c)
                builder.call(store, [vecs[c], builder.bitcast(p, _VEC.as_pointer()), _I32(4), mask])
            return context.get_dummy_value()

        return types.none(a, i, s, rows, n, b, j, t, cols, m), codegen

    @intrinsic
    def prefetch(typingctx, arr, idx):
        _check_array(arr)

        def codegen(context, builder, sig, args):
            p = _address(context, builder, sig.args[0], args[0], sig.args[1], args[1])
            i8p = ir.IntType(8).as_pointer()
            fn = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(ir.VoidType(), [i8p, _I32, _I32, _I32]),
                "llvm.prefetch.p0i8",
            )
            # read, locality 3 (keep in every level), data cache
            builder.call(fn, [builder.bitcast(p, i8p), _I32(0), _I32(3), _I32(1)])
            return context.get_dummy_value()

        return types.none(arr, idx), codegen
