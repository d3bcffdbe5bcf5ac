"""BLAS GEMM callable from jitted code, on row-major (C-contiguous) arrays.

The fused kernels call GEMM from inside their thread shares, each thread
on its own block of examples, so that one thread pool (the kernels') does all the
work of a cost evaluation. The BLAS behind these calls is the one SciPy ships
(``scipy.linalg.cython_blas``); while a kernel runs, that library is kept to
one thread (see :mod:`fastsae.core.threads`), so it never starts a second pool that
would spin against the kernels' threads.

The address of the Fortran routine is passed to the kernels at run time (see
:func:`gemm_address`) rather than baked in as a constant, so that compiled
kernels can be cached on disk and reused by a later process.
"""
import numpy as np
from ..core.config import CACHE
import scipy.linalg.cython_blas  # noqa: F401  (loads the symbols)
from llvmlite import ir
from numba import njit, types
from numba.extending import get_cython_function_address, intrinsic, overload

_ADDRESSES = {
    np.dtype(np.float64): get_cython_function_address("scipy.linalg.cython_blas", "dgemm"),
    np.dtype(np.float32): get_cython_function_address("scipy.linalg.cython_blas", "sgemm"),
}


def gemm_address(dtype) -> int:
    """Address of SciPy's ``dgemm``/``sgemm`` for arrays of ``dtype``."""
    return _ADDRESSES[np.dtype(dtype)]


@intrinsic
def _call13(typingctx, fn, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12):
    """Call ``void fn(void*, ... 13 times)`` at the integer address ``fn``."""
    sig = types.void(types.uintp, *([types.uintp] * 13))

    def codegen(context, builder, signature, args):
        i8p = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [i8p] * 13)
        callee = builder.inttoptr(args[0], fnty.as_pointer())
        builder.call(callee, [builder.inttoptr(a, i8p) for a in args[1:]])
        return context.get_dummy_value()

    return sig, codegen


def gemm(fn, trans_a, trans_b, alpha, A, B, beta, C):
    """``C = alpha op(A) op(B) + beta C`` on row-major 2-D arrays (jitted code).

    ``fn`` is :func:`gemm_address` of the arrays' dtype. Each array needs unit
    stride along its last axis; rows may be further apart (a column block
    ``out[:, j0:j1]`` or a row block ``X[i0:i1]`` of a larger array works
    without a copy).
    """
    raise NotImplementedError("only callable from jitted code")


@overload(gemm, prefer_literal=False)
def _ol_gemm(fn, trans_a, trans_b, alpha, A, B, beta, C):
    # The flags are constants at every call site, which Numba would type as
    # literals and compile _gemm once per combination; the overload is typed
    # with plain booleans first, so one compilation serves them all.
    def impl(fn, trans_a, trans_b, alpha, A, B, beta, C):
        _gemm(fn, trans_a, trans_b, alpha, A, B, beta, C)
    return impl


@njit(nogil=True, cache=CACHE)
def _gemm(fn, trans_a, trans_b, alpha, A, B, beta, C):
    # Row-major C = alpha op(A) op(B) + beta C is column-major
    # C^T = alpha op(B)^T op(A)^T: swap the operands, keep the flags.
    M, N = C.shape
    K = A.shape[0] if trans_a else A.shape[1]
    if M == 0 or N == 0:
        return
    isz = C.itemsize
    ints = np.empty(6, np.int32)
    ints[0] = N
    ints[1] = M
    ints[2] = K
    ints[3] = max(B.strides[0] // isz, B.shape[1], 1) if B.shape[0] > 1 else max(B.shape[1], 1)
    ints[4] = max(A.strides[0] // isz, A.shape[1], 1) if A.shape[0] > 1 else max(A.shape[1], 1)
    ints[5] = max(C.strides[0] // isz, N, 1) if M > 1 else max(N, 1)
    flags = np.empty(2, np.uint8)
    flags[0] = 84 if trans_b else 78   # 'T' / 'N'
    flags[1] = 84 if trans_a else 78
    scal = np.empty(2, C.dtype)
    scal[0] = alpha
    scal[1] = beta
    i = ints.ctypes.data
    f = flags.ctypes.data
    s = scal.ctypes.data
    _call13(fn, f, f + 1, i, i + 4, i + 8, s, B.ctypes.data, i + 12,
            A.ctypes.data, i + 16, s + isz, C.ctypes.data, i + 20)


@njit(nogil=True, cache=CACHE)
def keep_threads(fn, n):
    """What the float kernels bind where the bfloat16 ones set oneMKL's thread count per
    share (``GEMM_THREADS(fn_threads, n)``, returning the previous setting): SciPy's BLAS
    is held to one thread around the whole call (``scipy_blas_single_thread``), so there
    is nothing to set."""
    return 0
