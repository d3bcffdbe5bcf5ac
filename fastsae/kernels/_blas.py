"""BLAS GEMM callable from jitted code, on row-major (C-contiguous) arrays.

The fused kernels call GEMM from inside their thread shares, each thread
on its own block of examples, so that one thread pool (the kernels') does all the
work of a cost evaluation. While a kernel runs, the BLAS behind these calls is
kept to one thread (see :mod:`fastsae.core.threads`), so it never starts a
second pool that would spin against the kernels' threads.

Which BLAS: the environment variable ``FASTSAE_BLAS``, read at each call:

- ``auto`` (the default): oneMKL's ``sgemm``/``dgemm`` on an Intel CPU (as
  Linux's ``/proc/cpuinfo`` names the vendor) where the optional extra
  ``fastsae-audio[mkl]`` is installed (on a 2-core Xeon its small and
  skinny products, the kernels' everyday shapes, made the kernels
  1.05-2.2x faster than with OpenBLAS), unless ``MKL_THREADING_LAYER`` is
  ``TBB`` (whose threads the per-thread setting below does not hold); else
  the BLAS that SciPy ships (OpenBLAS in its wheels);
- ``scipy``: SciPy's BLAS (``scipy.linalg.cython_blas``) always;
- ``mkl``: oneMKL on any CPU (:class:`~fastsae.BackendUnavailableError`
  naming the extra where it is missing).

oneMKL is called through its Fortran interface with 32-bit sizes, the ABI of
SciPy's routines, and only where its interface layer is LP64: the check asks
``MKL_Set_Interface_Layer``, which returns the layer in force once any other
oneMKL function has run (:func:`fastsae.kernels._mkl.library` calls one on
opening it), so an ``ILP64`` ``MKL_INTERFACE_LAYER`` falls back to SciPy's
BLAS. Inside the kernels oneMKL runs on one thread per kernel thread
(per-thread settings: the calling thread's is given back after each call,
the kernel pool's threads keep theirs). Results agree with SciPy's BLAS to
rounding.

The address of the Fortran routine is passed to the kernels at run time (see
:func:`gemm_address`) rather than baked in as a constant, so that compiled
kernels can be cached on disk and reused by a later process.
"""
import ctypes
import functools
import os
import re
import threading

import numpy as np
from ..core.config import CACHE
from ..core.threads import register_single_thread_hold
from ..exceptions import BackendUnavailableError, ParameterError
import scipy.linalg.cython_blas  # noqa: F401  (loads the symbols)
from llvmlite import ir
from numba import njit, types
from numba.extending import get_cython_function_address, intrinsic, overload

_ADDRESSES = {
    np.dtype(np.float64): get_cython_function_address("scipy.linalg.cython_blas", "dgemm"),
    np.dtype(np.float32): get_cython_function_address("scipy.linalg.cython_blas", "sgemm"),
}

#: The environment variable that chooses the float kernels' BLAS, and its values.
ENV = "FASTSAE_BLAS"
CHOICES = ("auto", "scipy", "mkl")

_mkl_state: dict = {}
_held = threading.local()


@functools.lru_cache(maxsize=None)
def _intel_cpu() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return "GenuineIntel" in line
    except OSError:
        pass
    return False


def _tbb_layer() -> bool:
    """oneMKL asked to thread with TBB, where its per-thread thread count does not hold."""
    return os.environ.get("MKL_THREADING_LAYER", "").strip().upper() == "TBB"


def _mkl_addresses():
    """{dtype: address} of oneMKL's LP64 ``sgemm_``/``dgemm_``, or a str saying why not."""
    if "addresses" not in _mkl_state:
        from . import _mkl
        try:
            lib = _mkl.library().lib
            lib.MKL_Get_Max_Threads()      # any call fixes the layer: the next one reports it
            layer = int(lib.MKL_Set_Interface_Layer(ctypes.c_int(0)))     # 0: LP64
            if layer & 1:
                raise OSError("its interface layer is ILP64 (MKL_INTERFACE_LAYER)")
            found = {np.dtype(np.float32): ctypes.cast(lib.sgemm_, ctypes.c_void_p).value,
                     np.dtype(np.float64): ctypes.cast(lib.dgemm_, ctypes.c_void_p).value}
            _mkl_state["local"] = lib.MKL_Set_Num_Threads_Local
            _mkl_state["local"].restype = ctypes.c_int
            _mkl_state["local"].argtypes = [ctypes.c_int]
        except (BackendUnavailableError, OSError, AttributeError) as exc:
            found = str(exc)
        _mkl_state["addresses"] = found
    return _mkl_state["addresses"]


def float_blas() -> str:
    """``"mkl"`` or ``"scipy"``: the BLAS the next float kernel calls (see the module notes)."""
    choice = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise ParameterError(f"{ENV} must be one of {', '.join(map(repr, CHOICES))}; "
                             f"got {choice!r}")
    if choice == "scipy" or (choice == "auto" and (not _intel_cpu() or _tbb_layer())):
        return "scipy"
    found = _mkl_addresses()
    if isinstance(found, str):
        if choice == "mkl":
            raise BackendUnavailableError(
                f"{ENV}=mkl but oneMKL's libmkl_rt cannot be used for the float kernels "
                f"({found}); pip install 'fastsae-audio[mkl]' (the package mkl), or set "
                f"{ENV} to 'scipy' or 'auto'")
        return "scipy"
    return "mkl"


def describe() -> str:
    """The float kernels' BLAS in words (for benchmark headers)."""
    if float_blas() == "mkl":
        from . import _mkl
        found = re.search(r"Version ([0-9][0-9.]*)", _mkl.library().version)
        return f"oneMKL {found.group(1)}" if found else "oneMKL"
    return "SciPy's BLAS (OpenBLAS in SciPy's wheels)"


def gemm_address(dtype) -> int:
    """Address of the chosen BLAS's ``dgemm``/``sgemm`` for arrays of ``dtype`` (inside
    ``scipy_blas_single_thread``, the BLAS chosen on entering it: the one held to one
    thread)."""
    if (getattr(_held, "choice", None) or float_blas()) == "mkl":
        return _mkl_addresses()[np.dtype(dtype)]
    return _ADDRESSES[np.dtype(dtype)]


def _hold_mkl():
    """At the outermost entry of ``scipy_blas_single_thread``: fix the calling thread's
    BLAS for the block and, where it is oneMKL, hold oneMKL to one thread for this
    thread; returns the callable that undoes both. A bad choice is not raised here
    (code that calls no kernel, a NumPy or CUDA fit, runs on) but where a kernel asks
    for its GEMM (:func:`gemm_address`)."""
    try:
        choice = float_blas()
    except (ParameterError, BackendUnavailableError):
        return None
    _held.choice = choice
    previous = mkl_thread_local(1) if choice == "mkl" else None

    def restore():
        _held.choice = None
        if previous is not None:
            mkl_thread_local(previous)
    return restore


register_single_thread_hold(_hold_mkl)


def mkl_thread_local(n: int) -> int | None:
    """Set oneMKL's thread count for the calling thread, where oneMKL is the float BLAS in
    use; returns the previous setting (None where there is nothing to set)."""
    local = _mkl_state.get("local")
    if local is None or not isinstance(_mkl_state.get("addresses"), dict):
        return None
    return int(local(int(n)))


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
    share (``GEMM_THREADS(fn_threads, n)``, returning the previous setting): the float
    BLAS is held to one thread around the whole call (``scipy_blas_single_thread``, and
    per pool thread, :func:`mkl_thread_local`), so there is nothing to set."""
    return 0
