"""CUDA kernels: the ``"cuda"`` backend (numba.cuda, with cuBLAS through CuPy when installed).

Each module here has a twin with the same file name in
:mod:`fastsae.reference` (NumPy) and :mod:`fastsae.kernels` (Numba CPU), each
function a twin there with the same name and signature (the table of names
is :data:`fastsae.backends.KERNELS`; this backend implements all of them), and
is tested against the reference (also on Numba's CUDA simulator, so without a GPU).

Importing this package is cheap and works anywhere: ``numba.cuda`` (and
CuPy) are imported only when a kernel is first asked for, after
:func:`ensure_available` has checked that they can run, so a missing GPU or
package raises :class:`fastsae.BackendUnavailableError` saying what is
missing. ``import fastsae`` never imports this package.

For training, move the data once with :func:`to_device` (NumPy, numba or
CuPy input) and pass the device array to the cost functions at every
iteration: only theta goes to the device and the gradient comes back.
Buffers are kept between calls with the same shapes; :func:`clear_workspace`
frees them.

``FASTSAE_CUDA_MATMUL=numba|cupy|auto`` chooses what does the matrix products
(see :mod:`fastsae.cuda._matmul`).
"""
from __future__ import annotations

import importlib

from ._arrays import check_device_array, is_device_array, to_device, value_range
from ._device import ensure_available, is_simulator

#: The kernels this backend offers -> their module (imported on first use).
KERNEL_MODULES = {
    "sae_cost_grad": "sae",
    "sae_shard_stats": "sae_stats",
    "softmax_cost_grad": "softmax",
    "softmax_predict_proba": "softmax",
    "stacked_cost_grad": "stacked",
    "convolve": "conv",
    "pool_regions": "conv",
    "conv_ae_cost_grad": "convae",
    "conv_net_cost_grad": "convnet",
}

__all__ = list(KERNEL_MODULES) + [
    "clear_workspace", "ensure_available", "to_device", "is_device_array", "check_device_array",
    "value_range", "is_simulator", "matmul_engine"]


def __getattr__(name):
    # The kernels import numba.cuda; load them on first use, once it is known to work.
    if name in KERNEL_MODULES:
        ensure_available()
        module = importlib.import_module(f".{KERNEL_MODULES[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


def clear_workspace():
    """Free the device buffers every CUDA kernel keeps between calls (after a ``fit``)."""
    from . import _device
    _device.clear_workspace()


def matmul_engine() -> str:
    """``"cupy"`` (cuBLAS) or ``"numba"``: what does the matrix products now."""
    ensure_available()
    from ._matmul import engine
    return engine()
