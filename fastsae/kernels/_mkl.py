"""oneMKL's bfloat16 GEMM, callable from jitted code (the ``dtype="bfloat16"`` path).

``cblas_gemm_bf16bf16f32`` multiplies bfloat16 matrices with float32
accumulation and a float32 result; on CPUs with AVX512-BF16 or AMX-BF16 it
runs several times faster than float32 GEMM. It comes from ``libmkl_rt`` in
the PyPI package ``mkl`` (the optional extra ``fastsae-audio[mkl]``, with
``ml-dtypes`` for the bfloat16 arrays). Nothing here is loaded at import:
:func:`library` finds and opens the library on first use, and raises
:class:`fastsae.BackendUnavailableError` naming the extra where it is missing.

As with the float BLAS in :mod:`fastsae.kernels._blas`, the fused kernels call
the GEMM from inside their own threads, each on its block of rows, so
one thread pool does all the work. Each thread first sets MKL to one thread
for itself (``MKL_Set_Num_Threads_Local``, a per-thread setting, restored
afterwards): MKL never starts its own OpenMP team inside the kernels, and a
user's MKL settings elsewhere in the process are left alone. The addresses
of the two routines are passed to the kernels at run time, so that compiled
kernels can be cached on disk and reused by a later process.

The ILP64 entry point (``cblas_gemm_bf16bf16f32_64``, 64-bit sizes) is used:
it works whichever integer interface ``libmkl_rt`` was set to.
"""
from __future__ import annotations

import ctypes
import os
import sys
import threading
from dataclasses import dataclass

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from ..core.bfloat16 import MKL_EXTRA_HINT, bfloat16_dtype
from ..core.config import CACHE
from ..exceptions import BackendUnavailableError

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_GEMM = "cblas_gemm_bf16bf16f32_64"
_THREADS_LOCAL = "MKL_Set_Num_Threads_Local"

_lock = threading.Lock()
_loaded = None


@dataclass(frozen=True)
class MKL:
    """The opened ``libmkl_rt`` and the addresses the kernels call."""
    path: str
    version: str
    gemm: int            # cblas_gemm_bf16bf16f32_64
    threads_local: int   # MKL_Set_Num_Threads_Local
    lib: object


def _candidates():
    """Paths of ``libmkl_rt`` in the installed ``mkl`` distribution (its wheel's file list)."""
    from importlib import metadata
    try:
        files = metadata.distribution("mkl").files or []
    except metadata.PackageNotFoundError:
        return []
    names = ("libmkl_rt.so", "mkl_rt", "libmkl_rt.")
    found = [str(metadata.distribution("mkl").locate_file(f)) for f in files
             if os.path.basename(str(f)).startswith(names)
             and not str(f).endswith((".a", ".lib", ".pc", ".h"))]
    return sorted((os.path.realpath(p) for p in found if os.path.exists(p)),
                  key=lambda p: (".so" not in p and ".dll" not in p and ".dylib" not in p, p))


def library() -> MKL:
    """The opened oneMKL runtime library (cached), or BackendUnavailableError naming the extra."""
    global _loaded
    if _loaded is not None:
        return _loaded
    with _lock:
        if _loaded is None:
            _loaded = _open()
    return _loaded


def _open() -> MKL:
    paths = _candidates()
    if not paths:
        raise BackendUnavailableError(
            "dtype='bfloat16' needs oneMKL's bfloat16 GEMM (the package mkl) and ml-dtypes: "
            f"{MKL_EXTRA_HINT}")
    errors = []
    for path in paths:
        try:
            mode = getattr(os, "RTLD_LOCAL", 0) if sys.platform != "win32" else 0
            lib = ctypes.CDLL(path, mode=mode)
            gemm = ctypes.cast(getattr(lib, _GEMM), ctypes.c_void_p).value
            local = ctypes.cast(getattr(lib, _THREADS_LOCAL), ctypes.c_void_p).value
        except (OSError, AttributeError) as exc:
            errors.append(f"{path}: {exc}")
            continue
        buf = ctypes.create_string_buffer(256)
        try:
            lib.MKL_Get_Version_String(buf, ctypes.c_int(len(buf)))
            version = buf.value.decode(errors="replace").strip()
        except AttributeError:
            version = "oneMKL"
        return MKL(path=path, version=version, gemm=int(gemm), threads_local=int(local), lib=lib)
    raise BackendUnavailableError(
        "oneMKL was found but its bfloat16 GEMM could not be loaded ("
        + "; ".join(errors) + f"); reinstall it: {MKL_EXTRA_HINT}")


def ensure_available():
    """Raise BackendUnavailableError (naming the extra) unless ml-dtypes and oneMKL both load."""
    bfloat16_dtype()
    return library()


def available() -> bool:
    """Whether ``dtype="bfloat16"`` can run here (never raises)."""
    try:
        ensure_available()
    except BackendUnavailableError:
        return False
    return True


# -- calls from jitted code --------------------------------------------------------

@intrinsic
def _call_gemm(typingctx, fn, layout, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """``cblas_gemm_bf16bf16f32_64`` at address ``fn``: C enums as int32, sizes int64,
    alpha and beta float32, the matrices as addresses."""
    sig = types.void(types.uintp, types.int32, types.int32, types.int32,
                     types.int64, types.int64, types.int64, types.float32,
                     types.uintp, types.int64, types.uintp, types.int64, types.float32,
                     types.uintp, types.int64)

    def codegen(context, builder, signature, args):
        i8p = ir.IntType(8).as_pointer()
        i32, i64, f32 = ir.IntType(32), ir.IntType(64), ir.FloatType()
        fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, i64, i64, i64, f32, i8p, i64,
                                               i8p, i64, f32, i8p, i64])
        callee = builder.inttoptr(args[0], fnty.as_pointer())
        vals = list(args[1:])
        for i in (7, 9, 12):              # a, b, c: addresses -> pointers
            vals[i] = builder.inttoptr(vals[i], i8p)
        builder.call(callee, vals)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _call_int_int(typingctx, fn, x):
    """``int fn(int)`` at address ``fn``."""
    sig = types.int32(types.uintp, types.int32)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        callee = builder.inttoptr(args[0], ir.FunctionType(i32, [i32]).as_pointer())
        return builder.call(callee, [args[1]])

    return sig, codegen


@njit(nogil=True, cache=CACHE)
def mkl_threads_local(fn, n):
    """Set MKL's thread count for the calling thread only; returns the previous setting
    (0: the global one). ``fn`` is :attr:`MKL.threads_local`."""
    return _call_int_int(fn, np.int32(n))


def gemm_bf16(fn, trans_a, trans_b, alpha, A, B, beta, C):
    """``C = alpha op(A) op(B) + beta C``: A and B bfloat16 (their bits, as uint16 arrays),
    C float32, all row-major 2-D with unit stride along the last axis (jitted code).

    ``fn`` is :attr:`MKL.gemm`. Row blocks of a larger array work without a copy.
    """
    raise NotImplementedError("only callable from jitted code")


@overload(gemm_bf16, prefer_literal=False)
def _ol_gemm_bf16(fn, trans_a, trans_b, alpha, A, B, beta, C):
    # plain booleans, not literals: one compilation for every flag combination
    def impl(fn, trans_a, trans_b, alpha, A, B, beta, C):
        _gemm_bf16(fn, trans_a, trans_b, alpha, A, B, beta, C)
    return impl


@njit(nogil=True, cache=CACHE)
def _gemm_bf16(fn, trans_a, trans_b, alpha, A, B, beta, C):
    M, N = C.shape
    K = A.shape[0] if trans_a else A.shape[1]
    if M == 0 or N == 0:
        return
    lda = max(A.strides[0] // 2, A.shape[1], 1) if A.shape[0] > 1 else max(A.shape[1], 1)
    ldb = max(B.strides[0] // 2, B.shape[1], 1) if B.shape[0] > 1 else max(B.shape[1], 1)
    ldc = max(C.strides[0] // 4, N, 1) if M > 1 else max(N, 1)
    _call_gemm(fn, np.int32(_ROW_MAJOR), np.int32(_TRANS if trans_a else _NO_TRANS),
               np.int32(_TRANS if trans_b else _NO_TRANS), np.int64(M), np.int64(N),
               np.int64(K), np.float32(alpha), A.ctypes.data, np.int64(lda), B.ctypes.data,
               np.int64(ldb), np.float32(beta), C.ctypes.data, np.int64(ldc))
