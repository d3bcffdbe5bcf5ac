"""Parameter vectors: initialisation, and packing layers into one flat vector.

L-BFGS sees one flat float64 vector ``theta``. The sparse autoencoder packs, in
this order and C-contiguous, ``W1 (n_hidden, n_visible)``, ``W2 (n_visible,
n_hidden)``, ``b1 (n_hidden,)``, ``b2 (n_visible,)`` (UFLDL's order); with tied
weights ``W2`` is ``W1.T`` and is not stored.

:func:`pack` / :func:`unpack` are UFLDL's ``stack2params`` / ``params2stack``
for any list of arrays; :func:`unpack` returns views into ``theta``, so that
writing to them writes to ``theta``.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ._validation import check_int, check_random_state
from .exceptions import ParameterError

Layout = tuple  # tuple of shapes


def layout_size(layout: Layout) -> int:
    return sum(math.prod(s) for s in layout)


def pack(arrays: Sequence[np.ndarray], dtype=np.float64) -> tuple[np.ndarray, Layout]:
    """Concatenate arrays (C order) into one flat vector.

    Returns
    -------
    theta : np.ndarray [shape=(n_params,)]
    layout : tuple of shapes, for :func:`unpack`

    Examples
    --------
    >>> W, b = np.ones((2, 3)), np.zeros(2)
    >>> theta, layout = pack([W, b])
    >>> theta.shape, layout
    ((8,), ((2, 3), (2,)))
    """
    arrays = [np.asarray(a) for a in arrays]
    layout = tuple(a.shape for a in arrays)
    theta = np.empty(layout_size(layout), dtype=dtype)
    offset = 0
    for a in arrays:
        theta[offset:offset + a.size] = a.ravel()
        offset += a.size
    return theta, layout


def unpack(theta: np.ndarray, layout: Layout) -> list[np.ndarray]:
    """Split a flat vector into views of the shapes in ``layout``."""
    theta = np.asarray(theta)
    if theta.ndim != 1:
        raise ParameterError(f"theta must be 1-D; got shape {theta.shape}")
    if not theta.flags.c_contiguous:
        raise ParameterError("theta must be contiguous")
    need = layout_size(layout)
    if theta.size != need:
        raise ParameterError(
            f"theta must have {need} elements for layout {layout}; got {theta.size}"
        )
    out = []
    offset = 0
    for shape in layout:
        n = math.prod(shape)
        out.append(theta[offset:offset + n].reshape(shape))
        offset += n
    return out


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


def sae_layout(n_visible: int, n_hidden: int, tied: bool = False) -> Layout:
    """Shapes packed in a sparse autoencoder's theta, in order."""
    if tied:
        return ((n_hidden, n_visible), (n_hidden,), (n_visible,))
    return ((n_hidden, n_visible), (n_visible, n_hidden), (n_hidden,), (n_visible,))


def unpack_sae(theta, n_visible: int, n_hidden: int, tied: bool = False):
    """Views (W1, W2, b1, b2) into an autoencoder's theta (W2 = W1.T if tied)."""
    if tied:
        W1, b1, b2 = unpack(theta, sae_layout(n_visible, n_hidden, True))
        return W1, W1.T, b1, b2
    return tuple(unpack(theta, sae_layout(n_visible, n_hidden, False)))


def init_params(n_visible: int, n_hidden: int, *, random_state=None, tied: bool = False) -> np.ndarray:
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


def softmax_layout(n_classes: int, n_features: int):
    """Shapes packed in a softmax theta: ``W (n_classes, n_features)``, then ``b (n_classes,)``."""
    return ((n_classes, n_features), (n_classes,))


def stacked_layout(layer_sizes, n_classes: int):
    """Shapes packed in a stacked network's theta, in order.

    The softmax first (``W (n_classes, h_L)``, ``b (n_classes,)``), as in
    UFLDL's ``stackedAECost`` where ``softmaxTheta`` leads, then the sigmoid
    layers ``W1 (h_1, n_features), b1 (h_1,), W2 (h_2, h_1), b2, ...`` in
    :func:`fastsae.params.stack_to_params` order.
    """
    shapes = list(softmax_layout(n_classes, layer_sizes[-1]))
    for n_in, n_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        shapes += [(n_out, n_in), (n_out,)]
    return tuple(shapes)


__all__ = [
    "pack", "unpack", "stack_to_params", "params_to_stack", "sae_layout",
    "unpack_sae", "init_params", "layout_size", "softmax_layout", "stacked_layout",
]
