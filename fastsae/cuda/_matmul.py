"""Matrix products on the GPU: cuBLAS through CuPy, or a tiled numba.cuda kernel.

``gemm(engine, trans_a, trans_b, alpha, A, B, beta, C)`` computes
``C <- alpha op(A) op(B) + beta C`` on row-major (C-contiguous) device
matrices, ``op`` transposing where asked: the same contract as the CPU side's
:func:`fastsae.kernels._blas.gemm`.

Two engines:

* ``"cupy"``: cuBLAS's ``sgemm``/``dgemm`` through :func:`cupy.cublas.gemm`.
  Numba device arrays are shared with CuPy without a copy through
  ``__cuda_array_interface__`` (``cupy.asarray(device_array)``); the
  workspaces make those views once (:func:`operand`), not per call. The
  products run on CuPy's null stream, which is the legacy default stream the
  Numba kernels run on, so the two keep their order.
* ``"numba"``: a shared-memory tiled kernel with register blocking (each
  thread computes ``RM × RN`` outputs of a ``BM × BN`` tile) that reads either
  operand transposed in place. It is the fallback without CuPy and what the
  simulator runs.

The engine is CuPy when it is importable, the Numba kernel otherwise;
the environment variable ``FASTSAE_CUDA_MATMUL`` (``auto``, ``cupy`` or
``numba``) overrides that, at each call (a workspace remembers the engine it
was built for).
"""
from __future__ import annotations

import contextlib
import functools
import os

import numpy as np

from ..exceptions import BackendUnavailableError, ParameterError
from ._device import blocks, cuda, is_simulator, launcher

ENV = "FASTSAE_CUDA_MATMUL"
ENGINES = ("auto", "cupy", "numba")

_SIM = is_simulator()
# threads (TX along columns, TY along rows), outputs per thread (RM x RN) and the k-depth
# of a tile; the simulator runs the same kernel with fewer, busier threads.
TX, TY, RM, RN, BK = (2, 2, 4, 4, 8) if _SIM else (16, 16, 4, 4, 16)
BM, BN = TY * RM, TX * RN
N_THREADS = TX * TY
#: most blocks of a launch; each block loops over output tiles with the grid's stride
MAX_BLOCKS = 2 if _SIM else 1 << 20

_cuda = cuda()
_cupy_state = {}


def _cupy():
    """The cupy module, or None (the import error is kept for the message)."""
    if "module" not in _cupy_state:
        try:
            import cupy
            import cupy.cublas  # noqa: F401
            _cupy_state["module"] = cupy
        except Exception as exc:  # ImportError, or a CuPy built for another CUDA
            _cupy_state["module"] = None
            _cupy_state["error"] = f"{type(exc).__name__}: {exc}"
    return _cupy_state["module"]


def engine() -> str:
    """``"cupy"`` or ``"numba"``: which engine the next products use (see module docstring)."""
    choice = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if choice not in ENGINES:
        raise ParameterError(
            f"{ENV} must be one of {', '.join(map(repr, ENGINES))}; got {choice!r}")
    if choice == "numba":
        return "numba"
    if _SIM:
        if choice == "cupy":
            raise BackendUnavailableError(
                f"{ENV}=cupy: CuPy cannot run on numba's CUDA simulator; use 'numba' or 'auto'")
        return "numba"
    if _cupy() is None:
        if choice == "cupy":
            raise BackendUnavailableError(
                f"{ENV}=cupy but CuPy cannot be imported ({_cupy_state['error']}); "
                "pip install cupy-cuda12x, or set it to 'numba'")
        return "numba"
    return "cupy"


def operand(arr, eng: str):
    """``arr`` (a numba device array) as the given engine takes it: a zero-copy CuPy view
    for ``"cupy"``, the array itself for ``"numba"``."""
    if eng == "cupy":
        return _cupy().asarray(arr)
    return arr


def stream_scope(eng: str):
    """Context in which a sequence of products and Numba kernels keeps its order."""
    if eng == "cupy":
        return _cupy().cuda.Stream.null
    return contextlib.nullcontext()


def gemm(eng, trans_a, trans_b, alpha, A, B, beta, C):
    """``C <- alpha op(A) op(B) + beta C`` (operands from :func:`operand`)."""
    if eng == "cupy":
        k = A.shape[0] if trans_a else A.shape[1]
        if k == 0:  # cuBLAS would not touch C
            if beta == 0:
                C.fill(0)
            else:
                C *= beta
            return
        _cupy().cublas.gemm("T" if trans_a else "N", "T" if trans_b else "N", A, B,
                            out=C, alpha=alpha, beta=beta)
        return
    M, N = C.shape
    if M == 0 or N == 0:
        return
    dt = np.dtype(C.dtype).type
    grid = min(blocks(N, BN) * blocks(M, BM), MAX_BLOCKS)
    launcher(_kernel(np.dtype(C.dtype)), grid, (TX, TY))(int(bool(trans_a)), int(bool(trans_b)),
                                                         dt(alpha), A, B, dt(beta), C)


@functools.lru_cache(maxsize=None)
def _kernel(dtype):
    dt = dtype.type
    ZERO = dt(0.0)

    @_cuda.jit(device=True)
    def _stage(S, src, k_major, k0, r0, K, R, tid):
        """Stage a tile of op(src) as ``S[k, r]`` (BK × the tile's rows), zeros outside.

        ``k_major``: src is ``(K, R)`` (``S[k, r] = src[k0 + k, r0 + r]``), else
        ``(R, K)``. Consecutive threads read consecutive addresses of src either way.
        """
        nk = S.shape[0]
        nr = S.shape[1]
        for e in range(tid, nk * nr, N_THREADS):
            if k_major:
                kk = e // nr
                rr = e - kk * nr
            else:
                rr = e // nk
                kk = e - rr * nk
            gk = k0 + kk
            gr = r0 + rr
            if gk < K and gr < R:
                S[kk, rr] = src[gk, gr] if k_major else src[gr, gk]
            else:
                S[kk, rr] = ZERO

    @_cuda.jit
    def gemm_tiled(ta, tb, alpha, A, B, beta, C):
        As = _cuda.shared.array((BK, BM), dt)
        Bs = _cuda.shared.array((BK, BN), dt)
        acc = _cuda.local.array((RM, RN), dt)
        ar = _cuda.local.array(RM, dt)
        br = _cuda.local.array(RN, dt)
        tx = _cuda.threadIdx.x
        ty = _cuda.threadIdx.y
        tid = ty * TX + tx
        M = C.shape[0]
        N = C.shape[1]
        K = A.shape[0] if ta else A.shape[1]
        n_tiles_n = (N + BN - 1) // BN
        n_tiles = n_tiles_n * ((M + BM - 1) // BM)
        for tile in range(_cuda.blockIdx.x, n_tiles, _cuda.gridDim.x):
            # consecutive blocks take consecutive column tiles of one row band (A stays in L2)
            mb = tile // n_tiles_n
            m0 = mb * BM
            n0 = (tile - mb * n_tiles_n) * BN
            for i in range(RM):
                for j in range(RN):
                    acc[i, j] = ZERO
            for k0 in range(0, K, BK):
                # stage op(A)[m0:m0+BM, k0:k0+BK] as As[k, m]; consecutive threads read
                # consecutive addresses of A whichever way it is stored
                _stage(As, A, ta, k0, m0, K, M, tid)
                _stage(Bs, B, not tb, k0, n0, K, N, tid)
                _cuda.syncthreads()
                for kk in range(BK):
                    for i in range(RM):
                        ar[i] = As[kk, ty + i * TY]
                    for j in range(RN):
                        br[j] = Bs[kk, tx + j * TX]
                    for i in range(RM):
                        for j in range(RN):
                            acc[i, j] += ar[i] * br[j]
                _cuda.syncthreads()
            for i in range(RM):
                r = m0 + ty + i * TY
                if r < M:
                    for j in range(RN):
                        col = n0 + tx + j * TX
                        if col < N:
                            v = alpha * acc[i, j]
                            if beta != ZERO:  # C may hold garbage when beta is 0
                                v += beta * C[r, col]
                            C[r, col] = v

    return gemm_tiled
