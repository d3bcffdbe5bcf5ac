"""CUDA kernel for the stacked autoencoder fine-tuning objective (twin of
:func:`fastsae.reference.stacked_cost_grad`).

The network pass (forward through the sigmoid layers, the softmax delta on
top, back through the layers) is shared with softmax regression, which is the
same network without sigmoid layers: see
:func:`fastsae.cuda.softmax.network_cost_grad` for its structure.
"""
from __future__ import annotations

from ..core.args import check_softmax_args
from ._arrays import shape_proxy
from ._device import ensure_available
from .softmax import network_cost_grad


def stacked_cost_grad(theta, X, y, layer_sizes, n_classes, *, weight_decay,
                      stack_weight_decay=0.0):
    """Stacked autoencoder cost and gradient, CUDA backend.

    Same signature, layout (softmax first, then ``W1, b1, W2, b2, ...``),
    objective and results as :func:`fastsae.reference.stacked_cost_grad` (see
    there). ``X`` may be a device array (used in place) or a NumPy array
    (copied). Computes in ``X.dtype``; returns ``(float, float64 gradient)``.
    """
    ensure_available()
    K, y, sizes = check_softmax_args(theta, shape_proxy(X), y, n_classes, weight_decay,
                                      layer_sizes, stack_weight_decay)
    return network_cost_grad(theta, X, y, sizes, K, weight_decay, stack_weight_decay)


__all__ = ["stacked_cost_grad"]
