"""Device plumbing shared by the CUDA kernels: availability, moving data, workspaces.

Nothing here imports ``numba.cuda`` (or CuPy) at module import: the first
function that needs it does, so that ``import fastsae.cuda`` works on any
machine and a missing GPU or package is reported by :func:`ensure_available`
as :class:`fastsae.BackendUnavailableError`.

Either CUDA target is used, whichever ``numba.cuda`` is importable: the
NVIDIA-maintained ``numba-cuda`` package (which replaces ``numba.cuda`` when
installed) or the deprecated target built into Numba. With
``NUMBA_ENABLE_CUDASIM=1`` set before Numba is imported, ``numba.cuda`` is
Numba's simulator, which runs every kernel on the CPU (each CUDA thread a
Python thread): that is how the tests check these kernels without a GPU.
"""
from __future__ import annotations

import importlib.util
import threading
import warnings

import numpy as np

from ..exceptions import BackendUnavailableError

_cuda = None
_checked = False
_lock = threading.Lock()

INSTALL_HINT = ("install the GPU extra: pip install 'fastsae-audio[gpu]' "
                "(numba-cuda[cu12] and cupy-cuda12x)")


def cuda():
    """The ``numba.cuda`` module, imported on first use."""
    global _cuda, _simulated
    if _cuda is None:
        from numba import cuda as module
        _cuda = module
        _simulated = is_simulator()
    return _cuda


def is_simulator() -> bool:
    """True when ``numba.cuda`` is Numba's CPU simulator (``NUMBA_ENABLE_CUDASIM=1``)."""
    import numba

    if getattr(numba.config, "ENABLE_CUDASIM", 0):
        return True
    return _cuda is not None and hasattr(_cuda, "FakeCUDAKernel")


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def package_status() -> str:
    """One line saying which of the optional GPU packages are installed."""
    nc = "installed" if _installed("numba_cuda") else \
        "not installed (Numba's deprecated built-in numba.cuda would be used)"
    cp = "installed" if _installed("cupy") else \
        "not installed (optional: cuBLAS matrix products; without it a Numba kernel does them)"
    return f"numba-cuda {nc}; CuPy {cp}"


def ensure_available():
    """Raise :class:`fastsae.BackendUnavailableError` unless the CUDA kernels can run here.

    They can with an NVIDIA GPU, its driver and ``numba.cuda`` (the
    ``numba-cuda`` package or Numba's built-in target), or on Numba's CUDA
    simulator. The message says what is missing. Cheap after the first
    successful call.
    """
    global _checked
    if _checked:
        return
    with _lock:
        if _checked:
            return
        try:
            module = cuda()
        except Exception as exc:  # ImportError, or a broken CUDA install
            raise BackendUnavailableError(
                "backend='cuda' needs numba's CUDA target, which could not be imported "
                f"({type(exc).__name__}: {exc}); {INSTALL_HINT}") from None
        if not is_simulator():
            try:
                ok = bool(module.is_available())
                reason = ""
            except Exception as exc:  # some driver errors escape is_available
                ok, reason = False, f"{type(exc).__name__}: {exc}"
            if not ok:
                if not reason:
                    reason = _unavailable_reason(module)
                raise BackendUnavailableError(
                    f"backend='cuda' found no usable NVIDIA GPU ({reason}). It needs an "
                    f"NVIDIA GPU with its driver; {package_status()}. To run the CUDA "
                    "kernels without a GPU (slowly, for tests) set NUMBA_ENABLE_CUDASIM=1 "
                    "before numba is imported; otherwise use backend='numba'.")
        _checked = True


def _unavailable_reason(module) -> str:
    """Why numba.cuda.is_available() is False: the driver's error, or no NVVM."""
    try:
        err = module.cuda_error()
    except Exception as exc:
        err = exc
    if err:
        return " ".join(str(err).split())
    try:
        from numba.cuda.cudadrv import nvvm
        if not nvvm.is_available():
            return ("the driver works but NVVM, the CUDA compiler library, was not found: "
                    "install numba-cuda[cu12] (it brings the CUDA toolkit wheels) or a CUDA "
                    "toolkit")
    except Exception:
        pass
    return "numba.cuda.is_available() is False"


# ---------------------------------------------------------------------------
# launch helpers and workspaces
# ---------------------------------------------------------------------------

def blocks(n: int, per_block: int) -> int:
    return max(1, -(-int(n) // int(per_block)))


_launchers = {}
_simulated = None


def launcher(kernel, grid, block):
    """``kernel[grid, block]``, made once per (kernel, grid, block) and reused: it saves
    the launch configuration's cost at every call, and Numba's low-occupancy warning
    (small problems use small grids on purpose) is given at most once, here, silenced."""
    if _simulated:
        # the simulator's kernel[grid, block] configures the kernel itself and returns
        # it (no separate configuration object), so configure it just before each call
        return kernel[grid, block]
    key = (id(kernel), grid, block)
    cfg = _launchers.get(key)
    if cfg is None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Grid size")
            cfg = _launchers[key] = kernel[grid, block]
    return cfg


def theta_to_device(theta, dev):
    """Copy the optimizer's float64 theta into its device buffer (the one copy in per call)."""
    dev.copy_to_device(np.ascontiguousarray(theta, dtype=np.float64))


_local = threading.local()


def workspace(kind: str, key, build):
    """The workspace of ``kind`` for ``key`` in this thread, built by ``build()`` when
    the key changed (one per kind: a new shape frees the old buffers)."""
    cache = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = {}
    ws = cache.get(kind)
    if ws is None or ws[0] != key:
        cache.pop(kind, None)  # free the old buffers before allocating new ones
        ws = cache[kind] = (key, build())
    return ws[1]


def clear_workspace():
    """Free every buffer the CUDA kernels keep between calls (this thread's)."""
    _local.cache = {}
