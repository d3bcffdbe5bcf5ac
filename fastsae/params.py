"""Parameter vectors: initialisation, and packing layers into one flat vector.

L-BFGS sees one flat float64 vector ``theta``. The sparse autoencoder packs, in
this order and C-contiguous, ``W1 (n_hidden, n_visible)``, ``W2 (n_visible,
n_hidden)``, ``b1 (n_hidden,)``, ``b2 (n_visible,)`` (UFLDL's order); with tied
weights ``W2`` is ``W1.T`` and is not stored.

:func:`pack` / :func:`unpack` are UFLDL's ``stack2params`` / ``params2stack``
for any list of arrays; :func:`unpack` returns views into ``theta``, so that
writing to them writes to ``theta``. The layouts themselves are defined once,
below the backends, in :mod:`fastsae.core.layouts`; this module adds the
random initialisation and the ``(W, b)`` stack helpers.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .core.checks import check_int, check_random_state
from .core.layouts import (Layout, layout_size, pack, sae_layout, softmax_layout, stacked_layout,
                           unpack, unpack_sae)
from .core.types import RandomState
from .exceptions import ParameterError


def stack_to_params(stack: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, Layout]:
    """UFLDL ``stack2params``: layers ``[(W, b), ...]`` -> (theta, layout)."""
    arrays = []
    for i, layer in enumerate(stack):
        if len(layer) != 2:
            raise ParameterError(f"stack[{i}] must be a (W, b) pair")
        W, b = (np.asarray(a) for a in layer)
        if W.ndim != 2 or b.shape != (W.shape[0],):
            raise ParameterError(
                f"stack[{i}] must be W (n_out, n_in) and b (n_out,); got {W.shape} and {b.shape}"
            )
        if i and W.shape[1] != stack[i - 1][0].shape[0]:
            raise ParameterError(
                f"stack[{i}] takes {W.shape[1]} inputs but layer {i - 1} has "
                f"{stack[i - 1][0].shape[0]} outputs"
            )
        arrays += [W, b]
    return pack(arrays)


def params_to_stack(theta: np.ndarray, layout: Layout) -> list[tuple[np.ndarray, np.ndarray]]:
    """UFLDL ``params2stack``: views ``[(W, b), ...]`` into theta."""
    views = unpack(theta, layout)
    return [(views[i], views[i + 1]) for i in range(0, len(views), 2)]


def init_params(n_visible: int, n_hidden: int, *, random_state: RandomState = None,
                tied: bool = False) -> np.ndarray:
    """Random starting point for a sparse autoencoder (UFLDL ``initializeParameters``).

    Weights are uniform in ``±sqrt(6 / (n_visible + n_hidden + 1))``, biases zero.

    Returns
    -------
    theta : np.ndarray [shape=(n_params,), dtype=float64]

    Examples
    --------
    >>> theta = init_params(64, 25, random_state=0)
    >>> theta.shape
    (3289,)
    """
    n_visible = check_int(n_visible, "n_visible", low=1)
    n_hidden = check_int(n_hidden, "n_hidden", low=1)
    rng = check_random_state(random_state)
    r = np.sqrt(6.0 / (n_visible + n_hidden + 1))
    layout = sae_layout(n_visible, n_hidden, tied)
    theta = np.zeros(layout_size(layout))
    n_weights = n_hidden * n_visible * (1 if tied else 2)
    theta[:n_weights] = rng.uniform(-r, r, n_weights)
    return theta


__all__ = [
    "pack", "unpack", "stack_to_params", "params_to_stack", "sae_layout",
    "unpack_sae", "init_params", "layout_size", "softmax_layout", "stacked_layout",
]
