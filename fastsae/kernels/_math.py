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
from numba.extending import intrinsic

from ..core.config import FASTMATH


# Each function is a Numba intrinsic that writes its LLVM instructions straight
# into the caller (no call, nothing for Numba to type or inline: an inlined
# jitted helper cost about a second of compile time per kernel that used it),
# with the kernels' fast-math flags, so that LLVM vectorises the caller's loop.

_FLAGS = tuple(sorted(FASTMATH))
_F32, _F64, _I16, _I32, _I64 = (ir.FloatType(), ir.DoubleType(), ir.IntType(16),
                                ir.IntType(32), ir.IntType(64))

_LOG2E = 1.4426950408889634
_LN2 = 0.6931471805599453
_LN2_HI64 = 6.93147180369123816490e-01
_LN2_LO64 = 1.90821492927058770002e-10
_LN2_HI32 = 0.693359375
_LN2_LO32 = -2.12194440e-4
#: e^r: Taylor coefficients, highest degree first
_EXP64 = (2.08767569878680989792e-09, 2.50521083854417187751e-08, 2.75573192239858906526e-07,
          2.75573192239858906526e-06, 2.48015873015873015873e-05, 1.98412698412698412698e-04,
          1.38888888888888888889e-03, 8.33333333333333333333e-03, 4.16666666666666666667e-02,
          1.66666666666666666667e-01, 0.5, 1.0, 1.0)
_EXP32 = (1.98412698e-04, 1.38888889e-03, 8.33333333e-03, 4.16666667e-02, 1.66666667e-01,
          0.5, 1.0, 1.0)
#: atanh(s) / s as a series in s^2, highest power first
_ATANH64 = tuple(1.0 / n for n in range(21, 2, -2)) + (1.0,)
_ATANH32 = tuple(1.0 / n for n in range(9, 2, -2)) + (1.0,)


class _Emit:
    """Floating-point instructions of one type (float or double), fast-math flags on."""

    def __init__(self, builder, ty):
        self.b, self.ty = builder, ty
        self.wide = ty == _F64

    def c(self, value):
        return ir.Constant(self.ty, value)     # a float constant is rounded to float32 here

    def add(self, x, y):
        return self.b.fadd(x, y, flags=_FLAGS)

    def sub(self, x, y):
        return self.b.fsub(x, y, flags=_FLAGS)

    def mul(self, x, y):
        return self.b.fmul(x, y, flags=_FLAGS)

    def div(self, x, y):
        return self.b.fdiv(x, y, flags=_FLAGS)

    def gt(self, x, y):
        return self.b.fcmp_ordered(">", x, y)

    def max(self, x, y):
        """Python's ``max(x, y)`` (``y if y > x else x``: a NaN ``x`` stays)."""
        return self.b.select(self.gt(y, x), y, x)

    def min(self, x, y):
        """Python's ``min(x, y)`` (``y if y < x else x``)."""
        return self.b.select(self.gt(x, y), y, x)

    def unary(self, name, x):
        fn = self.b.module.declare_intrinsic(name, [self.ty])
        return self.b.call(fn, [x])

    def poly(self, r, coefficients):
        p = self.c(coefficients[0])
        for a in coefficients[1:]:
            p = self.add(self.mul(p, r), self.c(a))
        return p

    def exp(self, x):
        """Cody-Waite reduction, Taylor polynomial, 2^k from its exponent bits."""
        if self.wide:
            lo, hi, ln2_hi, ln2_lo, coef, ity, bias, shift = (
                -708.0, 709.0, _LN2_HI64, _LN2_LO64, _EXP64, _I64, 1023, 52)
        else:
            lo, hi, ln2_hi, ln2_lo, coef, ity, bias, shift = (
                -87.0, 88.0, _LN2_HI32, _LN2_LO32, _EXP32, _I32, 127, 23)
        x = self.min(self.max(x, self.c(lo)), self.c(hi))
        k = self.unary("llvm.floor", self.add(self.mul(x, self.c(_LOG2E)), self.c(0.5)))
        r = self.sub(self.sub(x, self.mul(k, self.c(ln2_hi))), self.mul(k, self.c(ln2_lo)))
        p = self.poly(r, coef)
        bits = self.b.shl(self.b.add(self.b.fptosi(k, ity), ir.Constant(ity, bias)),
                          ir.Constant(ity, shift))
        return self.mul(p, self.b.bitcast(bits, self.ty))

    def log1p_unit(self, u):
        """log(1 + u), u in [0, 1]: 2 atanh(s) with |s| <= 0.1716."""
        one = self.c(1.0)
        hi = self.gt(u, self.c(0.41421356237309503 if self.wide else 0.41421356))
        s = self.b.select(hi, self.div(self.sub(u, one), self.add(u, self.c(3.0))),
                          self.div(u, self.add(self.c(2.0), u)))
        off = self.b.select(hi, self.c(_LN2), self.c(0.0))
        p = self.poly(self.mul(s, s), _ATANH64 if self.wide else _ATANH32)
        return self.add(off, self.mul(self.c(2.0), self.mul(p, s)))

    def sigmoid(self, x):
        one = self.c(1.0)
        return self.div(one, self.add(one, self.exp(self.b.fneg(x, flags=_FLAGS))))

    def softplus(self, x):
        """max(x, 0) + log(1 + e^-|x|)."""
        t = self.exp(self.b.fneg(self.unary("llvm.fabs", x), flags=_FLAGS))
        return self.add(self.max(x, self.mul(x, self.c(0.0))), self.log1p_unit(t))


def _float_intrinsic(method):
    """An intrinsic ``f(x)`` for float32 and float64 ``x`` (same type back)."""
    def typer(typingctx, x):
        if not isinstance(x, types.Float):
            return None

        def codegen(context, builder, sig, args):
            return getattr(_Emit(builder, args[0].type), method)(args[0])
        return x(x), codegen
    typer.__name__ = method
    return intrinsic(typer)


fexp = _float_intrinsic("exp")
fexp.__doc__ = "Vectorisable exp (see module docstring)."
log1p_unit = _float_intrinsic("log1p_unit")
log1p_unit.__doc__ = "Vectorisable log(1 + u) for u in [0, 1]."
sigmoid = _float_intrinsic("sigmoid")
sigmoid.__doc__ = "Logistic function 1 / (1 + exp(-x))."
softplus = _float_intrinsic("softplus")
softplus.__doc__ = "log(1 + exp(x)), without overflow."


@intrinsic
def one(typingctx, x):
    """1 in the type of x (a bare literal 1 would promote float32 to float64)."""
    if not isinstance(x, types.Float):
        return None

    def codegen(context, builder, sig, args):
        return ir.Constant(args[0].type, 1.0)
    return x(x), codegen


@intrinsic
def from_bf16(typingctx, u):
    """The float32 value of bfloat16 bits ``u`` (an integer, e.g. a uint16): exact."""
    if not isinstance(u, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        bits = context.cast(builder, args[0], sig.args[0], types.int32)
        return builder.bitcast(builder.shl(bits, ir.Constant(_I32, 16)), _F32)
    return types.float32(u), codegen


@intrinsic
def to_bf16(typingctx, x):
    """float32 ``x`` rounded to bfloat16 (to nearest, ties to even), as uint16 bits.

    NaN stays NaN (a quiet one); overflow rounds to infinity, as ml-dtypes does.
    """
    if not isinstance(x, types.Float):
        return None

    def codegen(context, builder, sig, args):
        v = context.cast(builder, args[0], sig.args[0], types.float32)
        b = builder.bitcast(v, _I32)
        c16 = ir.Constant(_I32, 16)
        odd = builder.and_(builder.ashr(b, c16), ir.Constant(_I32, 1))
        r = builder.ashr(builder.add(b, builder.add(ir.Constant(_I32, 0x7FFF), odd)), c16)
        nan = builder.fcmp_unordered("uno", v, v)
        return builder.select(nan, ir.Constant(_I16, 0x7FC0), builder.trunc(r, _I16))
    return types.uint16(x), codegen


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
