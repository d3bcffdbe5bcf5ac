"""Backends: the one table of kernel names, and name -> implementation per backend.

``"numpy"`` is the reference (:mod:`fastsae.reference`), ``"numba"`` the
compiled CPU kernels (:mod:`fastsae.kernels`), ``"cuda"`` the GPU kernels
(:mod:`fastsae.cuda`, whose kernels import ``numba.cuda`` only when first
asked for). A kernel lives in the module of its area, under the same file and
function name in each backend package, with the same signature:
``fastsae/reference/<area>.py``, ``fastsae/kernels/<area>.py``,
``fastsae/cuda/<area>.py``. :data:`KERNELS` lists them; tests and benchmarks
iterate over it. A backend that lacks a kernel says so in :data:`GAPS`.

Examples
--------
>>> from fastsae.backends import KERNELS, get_function, implements
>>> KERNELS["sae_cost_grad"]
'sae'
>>> implements("numba", "conv_net_cost_grad")
True
>>> get_function("numpy", "sae_cost_grad")  # doctest: +ELLIPSIS
<function sae_cost_grad at ...>
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

from .exceptions import BackendUnavailableError, ParameterError

#: name -> package holding that backend's kernels
BACKENDS = {
    "numpy": "fastsae.reference",
    "numba": "fastsae.kernels",
    "cuda": "fastsae.cuda",
}

#: backends that run on any machine (the CUDA one needs a GPU and extra packages)
CPU_BACKENDS = ("numpy", "numba")

#: Every kernel, by name -> its area: the module file that holds it in every
#: backend package (``fastsae/<package>/<area>.py``).
KERNELS = {
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

#: (backend, kernel) pairs that have no implementation yet, with the reason.
#: ``implements`` is False for exactly these; the estimators that need one
#: raise :class:`BackendUnavailableError` naming it when fitted. Empty at present:
#: every backend implements every kernel.
GAPS = {}


def check_backend_name(name: str) -> str:
    if name not in BACKENDS:
        raise ParameterError(
            f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {name!r}"
        )
    return name


def check_kernel_name(name: str) -> str:
    if name not in KERNELS:
        raise ParameterError(
            f"kernel must be one of {', '.join(map(repr, KERNELS))}; got {name!r}")
    return name


def implements(backend: str, name: str) -> bool:
    """Whether ``backend`` has an implementation of kernel ``name``.

    Imports neither ``numba.cuda`` nor CuPy (nor compiles anything), so it
    answers on any machine; whether the backend can *run* here is
    :func:`get_backend`'s question.
    """
    check_backend_name(backend)
    check_kernel_name(name)
    package = importlib.import_module(BACKENDS[backend])
    offered = getattr(package, "KERNEL_MODULES", None)     # a lazy package lists its kernels
    return name in offered if offered is not None else callable(getattr(package, name, None))


def get_backend(name: str) -> ModuleType:
    """The package implementing backend ``name``.

    Raises
    ------
    ParameterError
        ``name`` is not a known backend.
    BackendUnavailableError
        The backend cannot run here (for ``"cuda"``: no GPU, or numba-cuda /
        CuPy missing); the message says what is missing.
    """
    check_backend_name(name)
    module = importlib.import_module(BACKENDS[name])
    check = getattr(module, "ensure_available", None)
    if check is not None:
        check()
    return module


def get_function(backend: str, name: str) -> Callable[..., Any]:
    """Backend ``backend``'s kernel ``name``, with a clear error if it has none."""
    check_backend_name(backend)
    if name in KERNELS and not implements(backend, name):
        reason = GAPS.get((backend, name), "")
        raise BackendUnavailableError(
            f"backend {backend!r} has no implementation of {name}"
            + (f" ({reason}); use backend='numba'" if reason else ""))
    module = get_backend(backend)
    try:
        return getattr(module, name)
    except AttributeError:
        raise BackendUnavailableError(
            f"backend {backend!r} has no implementation of {name}"
        ) from None


def to_device(backend: str, X: Any) -> Any:
    """Move training data where backend ``backend`` computes (a no-op on the CPU)."""
    move = getattr(get_backend(backend), "to_device", None)
    return X if move is None else move(X)


def release(backend: str) -> None:
    """Free buffers a backend keeps between calls (after a ``fit``)."""
    module = get_backend(backend)
    clear = getattr(module, "clear_workspace", None)
    if clear is not None:
        clear()
