"""Backend registry: one name per implementation of the kernels.

``"numpy"`` is the reference (:mod:`fastsae.reference`), ``"numba"`` the
compiled CPU kernels (:mod:`fastsae.kernels`), ``"cuda"`` the GPU kernels
(:mod:`fastsae.cuda`, imported only when asked for). Every backend offers the
same functions with the same signatures; tests and benchmarks iterate over
:data:`BACKENDS`.

Examples
--------
>>> from fastsae.backends import get_backend
>>> get_backend("numpy").sae_cost_grad  # doctest: +ELLIPSIS
<function sae_cost_grad at ...>
"""
from __future__ import annotations

import importlib

from .exceptions import BackendUnavailableError, ParameterError

#: name -> module holding that backend's functions
BACKENDS = {
    "numpy": "fastsae.reference",
    "numba": "fastsae.kernels",
    "cuda": "fastsae.cuda",
}

#: backends that run on any machine (the CUDA one needs a GPU and extra packages)
CPU_BACKENDS = ("numpy", "numba")


def check_backend_name(name) -> str:
    if name not in BACKENDS:
        raise ParameterError(
            f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {name!r}"
        )
    return name


def get_backend(name: str):
    """The module implementing backend ``name``.

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


def get_function(backend: str, name: str):
    """``get_backend(backend).<name>``, with a clear error if it lacks it."""
    module = get_backend(backend)
    try:
        return getattr(module, name)
    except AttributeError:
        raise BackendUnavailableError(
            f"backend {backend!r} has no implementation of {name}"
        ) from None


def to_device(backend: str, X):
    """Move training data where backend ``backend`` computes (a no-op on the CPU)."""
    move = getattr(get_backend(backend), "to_device", None)
    return X if move is None else move(X)


def release(backend: str):
    """Free buffers a backend keeps between calls (after a ``fit``)."""
    module = get_backend(backend)
    clear = getattr(module, "clear_workspace", None)
    if clear is not None:
        clear()
