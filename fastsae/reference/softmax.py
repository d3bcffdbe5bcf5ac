"""NumPy reference: softmax regression's objective, gradient and probabilities."""
from __future__ import annotations

import numpy as np

from ..core.args import check_proba_args, check_softmax_args
from ..core.bfloat16 import bf16_rounded, is_bfloat16
from ..core.layouts import softmax_layout, unpack


def softmax_loss_delta(Z, y):
    """Mean negative log-likelihood of the rows of logits ``Z`` and ``P − onehot(y)``.

    Subtracts each row's maximum before exponentiating, so any finite logits
    give a finite result; the log-likelihood is taken from the shifted logits
    themselves (``z_y − max − log Σ e^(z − max)``), not from a probability that
    may have underflowed to zero.
    """
    m = Z.shape[0]
    rows = np.arange(m)
    Z = Z - Z.max(axis=1, keepdims=True)
    E = np.exp(Z)
    S = E.sum(axis=1)
    loglik = Z[rows, y] - np.log(S)
    data = -np.sum(loglik.astype(np.float64)) / m
    D = E / S[:, None]
    D[rows, y] -= 1
    return data, D


def softmax_cost_grad(theta, X, y, n_classes, *, weight_decay):
    """Softmax regression objective (UFLDL ``softmaxCost``, plus a bias) and its gradient.

    ``J = −(1/m) Σ_i log p(y_i | x_i) + (λ/2) ‖W‖²`` with
    ``p(k | x) = exp(W_k x + b_k) / Σ_j exp(W_j x + b_j)``.

    Unlike UFLDL's softmax this model has a bias ``b`` (it helps on features
    that are not centred, such as sigmoid activations); the bias is not
    weight-decayed. The computation is overflow-safe: each row's largest logit
    is subtracted before exponentiating.

    Parameters
    ----------
    theta : np.ndarray [shape=(n_classes * n_features + n_classes,), dtype=float64]
        ``W (n_classes, n_features)`` then ``b (n_classes,)``, C order.
    X : np.ndarray [shape=(n_samples, n_features), dtype=float32, float64 or bfloat16]
        bfloat16 (``ml_dtypes.bfloat16``): see :func:`_softmax_cost_grad_bfloat16`.
    y : np.ndarray [shape=(n_samples,), integer]
        Labels in ``0 .. n_classes-1``.
    n_classes : int >= 2
    weight_decay : float >= 0
        λ.

    Returns
    -------
    cost : float
    grad : np.ndarray [shape=theta.shape, dtype=float64]
    """
    n_classes, y, _ = check_softmax_args(theta, X, y, n_classes, weight_decay, bfloat16=True)
    if is_bfloat16(X.dtype):
        return _softmax_cost_grad_bfloat16(theta, X, y, n_classes, weight_decay)
    dt = X.dtype
    m, n = X.shape
    W, b = (p.astype(dt) for p in unpack(theta, softmax_layout(n_classes, n)))
    data, D = softmax_loss_delta(X @ W.T + b, y)     # (m, K)
    gW = (D.T @ X) / m + weight_decay * W
    gb = D.sum(axis=0) / m
    W64 = W.astype(np.float64)
    cost = data + 0.5 * weight_decay * np.sum(W64 * W64)
    return float(cost), np.concatenate([gW.ravel(), gb]).astype(np.float64)


def _softmax_cost_grad_bfloat16(theta, X, y, n_classes, weight_decay):
    """The same objective with bfloat16 matrix products (the arithmetic of the compiled
    bfloat16 kernel, written plainly).

    Both products take bfloat16 operands and accumulate in float32: the logits
    ``X Wᵀ`` (``W`` rounded to bfloat16 through float32) and ``δᵀ X`` (``δ =
    P − onehot(y)`` computed in float32, then rounded). The bias, the
    softmax and its log-likelihood are float32 (summed in float64); the bias
    gradient sums the unrounded ``δ`` in float64; weight decay and the
    returned gradient use the float64 parameters.
    """
    f32 = np.float32

    m, n = X.shape
    W, b = unpack(theta, softmax_layout(n_classes, n))
    Xf = X.astype(f32)                    # exact
    data, D = softmax_loss_delta(Xf @ bf16_rounded(W).T + b.astype(f32), y)
    gW = (bf16_rounded(D).T @ Xf) / m + weight_decay * W
    gb = D.sum(axis=0, dtype=np.float64) / m
    cost = data + 0.5 * weight_decay * np.sum(W * W)
    return float(cost), np.concatenate([gW.ravel(), gb]).astype(np.float64)


def softmax_predict_proba(W, b, X):
    """Class probabilities ``softmax(X Wᵀ + b)`` [shape=(n_samples, n_classes)], in ``X.dtype``.

    ``W`` is ``(n_classes, n_features)``, ``b`` is ``(n_classes,)``. Rows sum
    to 1; overflow-safe for any finite logits.
    """
    W, b = check_proba_args(W, b, X)
    dt = X.dtype
    Z = X @ W.T.astype(dt) + b.astype(dt)
    Z -= Z.max(axis=1, keepdims=True)
    np.exp(Z, out=Z)
    Z /= Z.sum(axis=1, keepdims=True)
    return Z


def network_cost_grad(data, Ws, weight_decay, layer_weights, layer_decay, grads, layer_grads):
    """A softmax-topped network's cost and flat gradient, from its parts.

    ``data`` is the mean negative log-likelihood; the softmax weights ``Ws``
    are decayed by ``weight_decay``, the layers' weights by ``layer_decay``;
    ``grads`` holds the softmax's ``[gW, gb]`` and ``layer_grads`` each
    layer's ``(gW, gb)``, top layer first (the order backpropagation finds
    them). Returns ``(cost, grad)`` with the gradient in theta's order.
    """
    cost = data + 0.5 * weight_decay * np.sum(Ws.astype(np.float64) ** 2)
    if layer_decay:
        cost += 0.5 * layer_decay * sum(np.sum(W.astype(np.float64) ** 2) for W in layer_weights)
    for gW, gb in reversed(layer_grads):
        grads = grads + [gW, gb]
    return float(cost), np.concatenate([g.ravel() for g in grads]).astype(np.float64)
