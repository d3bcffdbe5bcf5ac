"""Vectorisable elementwise functions for Numba kernels.

Numba has no vector math library here (no SVML), so ``math.exp`` in a jitted
loop is a scalar libm call and stops LLVM from vectorising the loop. The
functions below are written with only arithmetic, ``floor``, integer shifts and
bit casts, which LLVM turns into AVX-512 / AVX2 code:

* ``exp``: Cody-Waite range reduction ``x = k ln2 + r``, ``|r| <= ln2/2``, a
  Taylor polynomial for ``e^r`` (degree 12 in float64, 7 in float32: below 1
  ulp of truncation error), and ``2^k`` built from its exponent bits. Inputs
  are clamped to the range where ``2^k`` is a normal number, so ``exp(-1000)``
  gives about 1e-308 (float64) instead of 0 and ``exp(1000)`` about 8e307
  instead of inf; every caller here only feeds it ``-|z|`` or a sigmoid
  argument, where that clamp is invisible after rounding.
* ``log1p_unit(u)`` for ``u`` in [0, 1]: ``log(1+u) = 2 atanh(s)`` with
  ``s = u / (2 + u)`` or, above ``sqrt(2) - 1``, ``ln 2 + 2 atanh((u-1)/(u+3))``,
  so ``|s| <= 0.1716`` and an odd series of 11 (float64) or 5 (float32) terms.

Each function is generic over float32/float64 and returns the argument's type;
the constants are typed so that float32 code stays float32. ``from_bf16`` and
``to_bf16`` convert between float32 and bfloat16 bits (uint16), so that the
bfloat16 kernels keep bfloat16 arrays as uint16 views.
"""
import numpy as np
from ..core.config import CACHE
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from ..core.config import FASTMATH


@intrinsic
def _bits_to_float64(typingctx, x):
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@intrinsic
def _bits_to_float32(typingctx, x):
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@intrinsic
def _float32_to_bits(typingctx, x):
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.int32(types.float32), codegen


@njit(inline="always", fastmath=set(FASTMATH), error_model="numpy")
def from_bf16(u):
    """The float32 value of bfloat16 bits ``u`` (a uint16): exact."""
    return _bits_to_float32(np.int32(u) << np.int32(16))


@njit(inline="always", fastmath=set(FASTMATH), error_model="numpy")
def to_bf16(x):
    """float32 ``x`` rounded to bfloat16 (to nearest, ties to even), as uint16 bits.

    NaN stays NaN (a quiet one); overflow rounds to infinity, as ml-dtypes does.
    """
    b = _float32_to_bits(x)
    r = (b + (np.int32(0x7FFF) + ((b >> np.int32(16)) & np.int32(1)))) >> np.int32(16)
    return np.uint16(0x7FC0) if x != x else np.uint16(r & np.int32(0xFFFF))


_LOG2E = 1.4426950408889634
_LN2 = 0.6931471805599453
_LN2_HI64 = 6.93147180369123816490e-01
_LN2_LO64 = 1.90821492927058770002e-10
_LN2_HI32 = 0.693359375
_LN2_LO32 = -2.12194440e-4


@njit(inline="always", fastmath=set(FASTMATH), error_model="numpy")
def _exp64(x):
    x = min(max(x, -708.0), 709.0)
    k = np.floor(x * _LOG2E + 0.5)
    r = x - k * _LN2_HI64 - k * _LN2_LO64
    p = 2.08767569878680989792e-09
    p = p * r + 2.50521083854417187751e-08
    p = p * r + 2.75573192239858906526e-07
    p = p * r + 2.75573192239858906526e-06
    p = p * r + 2.48015873015873015873e-05
    p = p * r + 1.98412698412698412698e-04
    p = p * r + 1.38888888888888888889e-03
    p = p * r + 8.33333333333333333333e-03
    p = p * r + 4.16666666666666666667e-02
    p = p * r + 1.66666666666666666667e-01
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    return p * _bits_to_float64((np.int64(k) + 1023) << 52)


@njit(inline="always", fastmath=set(FASTMATH), error_model="numpy")
def _exp32(x):
    x = min(max(x, np.float32(-87.0)), np.float32(88.0))
    k = np.floor(x * np.float32(_LOG2E) + np.float32(0.5))
    r = x - k * np.float32(_LN2_HI32) - k * np.float32(_LN2_LO32)
    p = np.float32(1.98412698e-04)
    p = p * r + np.float32(1.38888889e-03)
    p = p * r + np.float32(8.33333333e-03)
    p = p * r + np.float32(4.16666667e-02)
    p = p * r + np.float32(1.66666667e-01)
    p = p * r + np.float32(0.5)
    p = p * r + np.float32(1.0)
    p = p * r + np.float32(1.0)
    return p * _bits_to_float32((np.int32(k) + np.int32(127)) << np.int32(23))


@njit(inline="always", fastmath=set(FASTMATH), error_model="numpy")
def _atanh_series64(s):
    s2 = s * s
    p = 1.0 / 21.0
    p = p * s2 + 1.0 / 19.0
    p = p * s2 + 1.0 / 17.0
    p = p * s2 + 1.0 / 15.0
    p = p * s2 + 1.0 / 13.0
    p = p * s2 + 1.0 / 11.0
    p = p * s2 + 1.0 / 9.0
    p = p * s2 + 1.0 / 7.0
    p = p * s2 + 1.0 / 5.0
    p = p * s2 + 1.0 / 3.0
    p = p * s2 + 1.0
    return p * s


@njit(inline="always", fastmath=set(FASTMATH), error_model="numpy")
def _log1p_unit64(u):
    hi = u > 0.41421356237309503
    s = (u - 1.0) / (u + 3.0) if hi else u / (2.0 + u)
    off = _LN2 if hi else 0.0
    return off + 2.0 * _atanh_series64(s)


@njit(inline="always", fastmath=set(FASTMATH), error_model="numpy")
def _log1p_unit32(u):
    hi = u > np.float32(0.41421356)
    s = (u - np.float32(1.0)) / (u + np.float32(3.0)) if hi else u / (np.float32(2.0) + u)
    off = np.float32(_LN2) if hi else np.float32(0.0)
    s2 = s * s
    p = np.float32(1.0 / 9.0)
    p = p * s2 + np.float32(1.0 / 7.0)
    p = p * s2 + np.float32(1.0 / 5.0)
    p = p * s2 + np.float32(1.0 / 3.0)
    p = p * s2 + np.float32(1.0)
    return off + np.float32(2.0) * (p * s)


def fexp(x):
    """Vectorisable exp (see module docstring)."""
    raise NotImplementedError("only callable from jitted code")


def log1p_unit(u):
    """Vectorisable log(1 + u) for u in [0, 1]."""
    raise NotImplementedError("only callable from jitted code")


def sigmoid(x):
    """Logistic function 1 / (1 + exp(-x))."""
    raise NotImplementedError("only callable from jitted code")


def softplus(x):
    """log(1 + exp(x)), without overflow."""
    raise NotImplementedError("only callable from jitted code")


def one(x):
    """1 in the type of x (a bare literal 1 would promote float32 to float64)."""
    raise NotImplementedError("only callable from jitted code")


@overload(fexp, inline="always")
def _ol_fexp(x):
    if x == types.float32:
        return lambda x: _exp32(x)
    if x == types.float64:
        return lambda x: _exp64(x)


@overload(log1p_unit, inline="always")
def _ol_log1p_unit(u):
    if u == types.float32:
        return lambda u: _log1p_unit32(u)
    if u == types.float64:
        return lambda u: _log1p_unit64(u)


@overload(one, inline="always")
def _ol_one(x):
    if x == types.float32:
        return lambda x: np.float32(1.0)
    if x == types.float64:
        return lambda x: 1.0


@overload(sigmoid, inline="always")
def _ol_sigmoid(x):
    if isinstance(x, types.Float):
        def impl(x):
            return one(x) / (one(x) + fexp(-x))
        return impl


@overload(softplus, inline="always")
def _ol_softplus(x):
    if isinstance(x, types.Float):
        def impl(x):
            return max(x, x * 0) + log1p_unit(fexp(-abs(x)))
        return impl


# -- reductions that stay off NumPy's BLAS -------------------------------------
# np.dot / np.vdot of long vectors wake the thread pool of NumPy's own OpenBLAS,
# whose threads then spin for milliseconds after the call and take the cores
# from the Numba team in the next kernel call (2x slower kernels at 6,000
# samples of the audio shape). These serial loops cost microseconds.

# reassoc: lets LLVM keep vector accumulators (fine for a plain sum)
_REDUCE_MATH = set(FASTMATH) | {"reassoc"}


@njit(cache=CACHE, nogil=True, fastmath=_REDUCE_MATH, error_model="numpy")
def _sumsq_flat(a):
    s = 0.0
    for i in range(a.shape[0]):
        v = np.float64(a[i])
        s += v * v
    return s


@njit(cache=CACHE, nogil=True, fastmath=_REDUCE_MATH, error_model="numpy")
def _dot_flat(a, b):
    s = 0.0
    for i in range(a.shape[0]):
        s += np.float64(a[i]) * np.float64(b[i])
    return s


def sumsq(a):
    """``Σ a²`` in float64 (any shape; NumPy's BLAS is not used)."""
    return float(_sumsq_flat(np.ravel(a)))


def dot(a, b):
    """``Σ a·b`` of two equally long vectors in float64 (NumPy's BLAS is not used)."""
    a, b = np.ravel(a), np.ravel(b)
    if a.shape != b.shape:
        raise ValueError(f"dot: lengths differ ({a.size} and {b.size})")
    return float(_dot_flat(a, b))


#: 1.0 as bfloat16 bits (the rows of ones that carry biases through bfloat16 GEMMs).
BF16_ONE = 0x3F80


@njit(cache=CACHE, nogil=True, error_model="numpy")
def round_to_bf16(src, dst):
    """``dst`` (uint16, bfloat16 bits) <- ``src`` rounded to float32, then to bfloat16 (2-D)."""
    for r in range(src.shape[0]):
        for j in range(src.shape[1]):
            dst[r, j] = to_bf16(np.float32(src[r, j]))


@njit(cache=CACHE, nogil=True, error_model="numpy")
def split_to_bf16(src, hi, lo):
    """``hi`` and ``lo`` (uint16, bfloat16 bits) <- ``src`` (2-D) as two bfloat16 parts:
    ``hi`` its float32 value rounded, ``lo`` the rest rounded (``hi + lo`` holds about 16
    significant bits; a product with ``src`` is then two bfloat16 GEMMs)."""
    for r in range(src.shape[0]):
        for j in range(src.shape[1]):
            x = np.float32(src[r, j])
            h = to_bf16(x)
            hi[r, j] = h
            lo[r, j] = to_bf16(x - from_bf16(h))


@njit(cache=CACHE, nogil=True, fastmath=set(FASTMATH), error_model="numpy")
def rows_to_bf16(A, O):
    """``O`` (uint16, bfloat16 bits) <- float32 ``A`` rounded, row by row (2-D; jitted
    code: the loop vectorises)."""
    n, k = A.shape
    for r in range(n):
        a = A[r]
        o = O[r]
        for j in range(k):
            o[j] = to_bf16(a[j])
