"""Arrays for the CUDA backend: recognising device arrays, moving data to the
device, and the device twin of :func:`fastsae.core.checks.check_array`.

:func:`is_device_array` and :func:`shape_proxy` never import ``numba.cuda``
or CuPy; the rest do, on first use.
"""
from __future__ import annotations

import numpy as np

from ..exceptions import ParameterError
from ._device import cuda, ensure_available


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
    """Device twin of :func:`fastsae.core.checks.check_array` for arrays in GPU memory.

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
