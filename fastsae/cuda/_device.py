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

from ..exceptions import BackendUnavailableError, ParameterError

_cuda = None
_checked = False
_lock = threading.Lock()

INSTALL_HINT = ("install the GPU extra: pip install 'fastsae[gpu]' "
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
# arrays
# ---------------------------------------------------------------------------

def is_device_array(X) -> bool:
    """True for arrays in GPU memory: numba device arrays (also the simulator's),
    CuPy arrays and anything else exporting ``__cuda_array_interface__``.

    Never imports numba.cuda or CuPy.
    """
    if isinstance(X, np.ndarray):
        return False
    return bool(getattr(X, "__cuda_ndarray__", False)) or hasattr(X, "__cuda_array_interface__")


def as_numba(X):
    """A numba device array viewing device array ``X`` (zero-copy)."""
    if getattr(X, "__cuda_ndarray__", False):
        return X
    return cuda().as_cuda_array(X)


def _float_dtype(dtype, requested):
    if requested is not None:
        return np.dtype(requested)
    dtype = np.dtype(dtype)
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)


def to_device(X, dtype=None):
    """Training data as a C-contiguous float32/float64 numba device array.

    Parameters
    ----------
    X : np.ndarray, numba device array, or CuPy (any ``__cuda_array_interface__``) array
        Device arrays are used in place (zero-copy, via
        ``numba.cuda.as_cuda_array``) when already C-contiguous in the wanted
        dtype; otherwise they are copied (and cast) on the device. Host
        arrays are copied to the device.
    dtype : None, "float32" or "float64"
        None keeps float32/float64 and turns other dtypes into float64.

    Returns
    -------
    numba device array [shape=X.shape]
    """
    ensure_available()
    if not is_device_array(X):
        arr = np.asarray(X)
        arr = np.ascontiguousarray(arr, dtype=_float_dtype(arr.dtype, dtype))
        return cuda().to_device(arr)
    dev = as_numba(X)
    want = _float_dtype(dev.dtype, dtype)
    if dev.dtype == want and dev.is_c_contiguous():
        return dev
    if dev.ndim == 2:
        from ._elementwise import copy_cast
        return copy_cast(dev, want)
    # other ranks (images, maps): rare; through the host
    return cuda().to_device(np.ascontiguousarray(dev.copy_to_host(), dtype=want))


def device_input(X):
    """``X`` for a kernel: device arrays as numba views, host arrays copied (C order, own dtype)."""
    if is_device_array(X):
        dev = as_numba(X)
        if not dev.is_c_contiguous() or dev.dtype not in (np.float32, np.float64):
            return to_device(dev)
        return dev
    if not isinstance(X, np.ndarray):
        return X  # let the shared checks report it
    return cuda().to_device(np.ascontiguousarray(X))


def shape_proxy(X):
    """A zero-memory NumPy array with ``X``'s shape and dtype, for the host-side checks
    shared with the other backends (they look only at type, shape and dtype)."""
    if isinstance(X, np.ndarray) or not hasattr(X, "shape") or not hasattr(X, "dtype"):
        return X
    return np.broadcast_to(np.zeros((), np.dtype(X.dtype)), tuple(X.shape))


def check_device_array(X, name="X", *, dtype=None, ndim=2, min_rows=1, n_cols=None,
                       finite=True):
    """Device twin of :func:`fastsae._validation.check_array` for arrays in GPU memory.

    Returns ``X`` as a C-contiguous numba device array in ``dtype`` (see
    :func:`to_device`), or raises :class:`fastsae.ParameterError` naming the
    constraint. The NaN/inf scan runs on the device.
    """
    dev = as_numba(X) if is_device_array(X) else None
    if dev is None:
        raise ParameterError(f"{name} must be a device array; got {type(X).__name__}")
    if np.dtype(dev.dtype).kind not in "biuf":
        raise ParameterError(f"{name} must hold real numbers; got dtype {dev.dtype}")
    if dev.ndim != ndim:
        raise ParameterError(f"{name} must be {ndim}-D; got shape {tuple(dev.shape)}")
    if dev.shape[0] < min_rows:
        raise ParameterError(f"{name} must have at least {min_rows} row(s); got shape "
                             f"{tuple(dev.shape)}")
    if n_cols is not None and dev.shape[1] != n_cols:
        raise ParameterError(f"{name} must have {n_cols} columns; got shape {tuple(dev.shape)}")
    dev = to_device(dev, dtype)
    if finite:
        lo, hi, bad = value_range(dev)
        if bad:
            raise ParameterError(f"{name} contains {bad} NaN or infinite value(s)")
    return dev


def value_range(X):
    """``(min, max, number of NaN/inf values)`` of a float device array, over its finite values."""
    from ._elementwise import minmax_count
    return minmax_count(to_device(X))


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
