"""NumPy reference: the stacked autoencoder's fine-tuning objective and gradient."""
from __future__ import annotations

from scipy.special import expit

import numpy as np

from ..core.args import check_softmax_args
from ..core.bfloat16 import bf16_rounded, is_bfloat16
from ..core.layouts import stacked_layout, unpack
from .softmax import network_cost_grad, softmax_loss_delta


def stacked_cost_grad(theta, X, y, layer_sizes, n_classes, *, weight_decay,
                      stack_weight_decay=0.0):
    """Stacked autoencoder fine-tuning objective (UFLDL ``stackedAECost``) and its gradient.

    The network is ``a_0 = x``, ``a_l = σ(W_l a_{l-1} + b_l)`` for
    ``l = 1..L``, and a softmax (with bias) on ``a_L``:

    ``J = −(1/m) Σ_i log p(y_i | a_L(x_i)) + (λ/2) ‖W_softmax‖² + (λ_s/2) Σ_l ‖W_l‖²``.

    As in UFLDL, ``weight_decay`` (λ) applies to the softmax weights only;
    ``stack_weight_decay`` (λ_s, default 0 = UFLDL) optionally decays the
    sigmoid layers' weights. Biases are never decayed.

    Parameters
    ----------
    theta : np.ndarray [shape=(n_params,), dtype=float64]
        The softmax first — ``W (n_classes, h_L)``, ``b (n_classes,)`` — then
        the stack ``W1 (h_1, n_features), b1, W2 (h_2, h_1), b2, ...`` as
        :func:`fastsae.params.stack_to_params` packs it (UFLDL's order:
        ``[softmaxTheta; stackparams]``).
    X : np.ndarray [shape=(n_samples, n_features), dtype=float32 or float64]
    y : np.ndarray [shape=(n_samples,), integer]
        Labels in ``0 .. n_classes-1``.
    layer_sizes : sequence of int
        ``(n_features, h_1, ..., h_L)``: the input size then each sigmoid
        layer's size. ``(n_features,)`` alone is plain softmax regression.
    n_classes : int >= 2
    weight_decay, stack_weight_decay : float >= 0

    Returns
    -------
    cost : float
    grad : np.ndarray [shape=theta.shape, dtype=float64]
    """
    n_classes, y, sizes = check_softmax_args(theta, X, y, n_classes, weight_decay,
                                              layer_sizes, stack_weight_decay, bfloat16=True)
    if is_bfloat16(X.dtype):
        return _stacked_cost_grad_bfloat16(theta, X, y, sizes, n_classes, weight_decay,
                                           stack_weight_decay)
    dt = X.dtype
    m = X.shape[0]
    views = unpack(theta, stacked_layout(sizes, n_classes))
    Ws, bs = (p.astype(dt) for p in views[:2])
    stack = [(views[i].astype(dt), views[i + 1].astype(dt)) for i in range(2, len(views), 2)]

    acts = [X]
    for W, b in stack:
        acts.append(expit(acts[-1] @ W.T + b))
    data, D = softmax_loss_delta(acts[-1] @ Ws.T + bs, y)
    D /= m
    grads = [D.T @ acts[-1] + weight_decay * Ws, D.sum(axis=0)]
    delta = (D @ Ws) * acts[-1] * (1 - acts[-1])
    layer_grads = []
    for layer in range(len(stack), 0, -1):
        W, _ = stack[layer - 1]
        layer_grads.append((delta.T @ acts[layer - 1] + stack_weight_decay * W,
                            delta.sum(axis=0)))
        if layer > 1:
            a = acts[layer - 1]
            delta = (delta @ W) * a * (1 - a)
    return network_cost_grad(data, Ws, weight_decay, [W for W, _ in stack], stack_weight_decay, grads,
                             layer_grads)


def _stacked_cost_grad_bfloat16(theta, X, y, sizes, n_classes, weight_decay, stack_weight_decay):
    """The same objective with bfloat16 matrix products (the arithmetic of the compiled
    bfloat16 kernel, written plainly).

    Every product takes bfloat16 operands and accumulates in float32: the
    weights are rounded to bfloat16 (through float32), each layer's float32
    activations are rounded before they feed the next layer and the weight
    gradients, and each ``δ`` (float32, the softmax's ``P − onehot(y)`` and
    the layers' deltas) is rounded before its products. The biases, sigmoids,
    softmax and the derivatives ``a (1 − a)`` (of the float32 activations)
    are float32; the bias gradients sum the unrounded ``δ`` in float64; the
    sums are divided by ``m`` at the end; weight decay and the returned
    gradient use the float64 parameters.
    """
    f32 = np.float32

    m = X.shape[0]
    views = unpack(theta, stacked_layout(sizes, n_classes))
    Ws, bs = views[:2]
    stack = [(views[i], views[i + 1]) for i in range(2, len(views), 2)]
    acts, inputs = [], [X.astype(f32)]            # float32 activations; bfloat16 inputs
    for W, b in stack:
        A = expit(inputs[-1] @ bf16_rounded(W).T + b.astype(f32))
        acts.append(A)
        inputs.append(bf16_rounded(A))
    data, D = softmax_loss_delta(inputs[-1] @ bf16_rounded(Ws).T + bs.astype(f32), y)
    D16 = bf16_rounded(D)
    grads = [(D16.T @ inputs[-1]) / m + weight_decay * Ws, D.sum(axis=0, dtype=np.float64) / m]
    layer_grads = []
    if stack:
        delta = (D16 @ bf16_rounded(Ws)) * acts[-1] * (1 - acts[-1])
    for layer in range(len(stack), 0, -1):
        W, _ = stack[layer - 1]
        d16 = bf16_rounded(delta)
        layer_grads.append(((d16.T @ inputs[layer - 1]) / m + stack_weight_decay * W,
                            delta.sum(axis=0, dtype=np.float64) / m))
        if layer > 1:
            a = acts[layer - 2]
            delta = (d16 @ bf16_rounded(W)) * a * (1 - a)
    return network_cost_grad(data, Ws, weight_decay, [W for W, _ in stack], stack_weight_decay,
                             grads, layer_grads)
