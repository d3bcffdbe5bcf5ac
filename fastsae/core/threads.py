"""Thread pools: keep one pool busy at a time.

On a machine with few cores, NumPy's OpenBLAS, SciPy's OpenBLAS and Numba's
OpenMP team each keep threads spinning after their work; when a computation
alternates between them, the pools steal each other's cores and every switch
costs milliseconds. fastsae's Numba kernels therefore call BLAS (SciPy's, or
oneMKL: :mod:`fastsae.kernels._blas`) from inside their own threads with that
BLAS set to one thread, and L-BFGS-B (whose linear algebra also uses SciPy's
BLAS) runs with it set to one thread too. The limits are set and restored
around each call (oneMKL's per calling thread; the kernel pool's own threads
keep one oneMKL thread for good), so a user's own SciPy code keeps its
settings; this works whatever was imported first.
"""
from __future__ import annotations

import contextlib
import os
import threading

_state = threading.local()
_scipy_blas = None
_lock = threading.Lock()


def _scipy_blas_controllers():
    """threadpoolctl controllers of the BLAS that scipy.linalg uses."""
    global _scipy_blas
    if _scipy_blas is None:
        with _lock:
            if _scipy_blas is None:
                import scipy
                import scipy.linalg.cython_blas  # noqa: F401
                from threadpoolctl import ThreadpoolController

                blas = [c for c in ThreadpoolController().lib_controllers
                        if c.user_api == "blas"]
                root = os.path.dirname(os.path.dirname(os.path.abspath(scipy.__file__)))
                scipy_dirs = (os.path.join(root, "scipy.libs"), os.path.join(root, "scipy"))
                own = [c for c in blas
                       if os.path.abspath(c.filepath).startswith(scipy_dirs)]
                # A SciPy linked against a shared system BLAS: that library is it.
                _scipy_blas = own if own else blas
    return _scipy_blas


#: Functions called on entering :func:`scipy_blas_single_thread` (outermost level) that
#: hold another BLAS to one thread and return a callable undoing it, or None; the
#: kernels register oneMKL's per-thread setting here (:mod:`fastsae.kernels._blas`).
_HOLDS: list = []


def register_single_thread_hold(hold):
    """Add ``hold`` to what :func:`scipy_blas_single_thread` does (once per function)."""
    if hold not in _HOLDS:
        _HOLDS.append(hold)


@contextlib.contextmanager
def scipy_blas_single_thread():
    """Run the block with SciPy's BLAS on one thread, and oneMKL too (for the calling
    thread) where it is the kernels' BLAS (re-entrant, cheap when nested)."""
    depth = getattr(_state, "depth", 0)
    if depth:
        _state.depth = depth + 1
        try:
            yield
        finally:
            _state.depth -= 1
        return
    ctrls = _scipy_blas_controllers()
    saved = [c.get_num_threads() for c in ctrls]
    restores = []
    _state.depth = 1
    try:
        for c in ctrls:
            c.set_num_threads(1)
        for hold in _HOLDS:                    # oneMKL's, for this thread only
            restores.append(hold())
        yield
    finally:
        _state.depth = 0
        for c, n in zip(ctrls, saved):
            c.set_num_threads(n)
        for restore in restores:
            if restore is not None:
                restore()


@contextlib.contextmanager
def numba_threads(n_jobs):
    """Run the block with ``n_jobs`` Numba threads (None: all; -1: all; -k: all but k-1)."""
    import numba

    if n_jobs is None:
        yield
        return
    avail = numba.config.NUMBA_NUM_THREADS
    n = n_jobs if n_jobs > 0 else max(1, avail + 1 + n_jobs)
    n = min(n, avail)
    old = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(old)
