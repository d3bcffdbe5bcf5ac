"""NumPy reference implementations: readable, vectorised, the oracle.

Every kernel in :mod:`fastsae.kernels` (Numba) and :mod:`fastsae.cuda` has a
twin here with the same name and signature, and is tested against it. These
functions favour clarity over speed; they allocate freely.

Conventions: examples are rows (``X`` is ``(n_samples, n_features)``); the
computation runs in ``X.dtype``; ``theta`` and the returned gradient are
float64 (what L-BFGS sees).
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit

from ._validation import check_proba_args, check_sae_options, check_softmax_args
from .params import softmax_layout, stacked_layout, unpack_sae


def _kl_sparsity(rho: float, rho_hat: np.ndarray):
    """KL(rho || rho_hat) summed over hidden units, and its derivative in rho_hat."""
    kl = np.sum(rho * np.log(rho / rho_hat) + (1 - rho) * np.log((1 - rho) / (1 - rho_hat)))
    dkl = -rho / rho_hat + (1 - rho) / (1 - rho_hat)
    return kl, dkl


def sae_cost_grad(theta, X, n_visible, n_hidden, *, sparsity, beta, weight_decay,
                  decoder="sigmoid", loss="squared", tied=False):
    """Sparse autoencoder objective (UFLDL ``sparseAutoencoderCost``) and its gradient.

    ``J = data + (λ/2)(‖W1‖² + ‖W2‖²) + β Σ_j KL(ρ ‖ ρ̂_j)`` with
    ``a2 = σ(W1 x + b1)``, ``a3 = σ(W2 a2 + b2)`` (``decoder="linear"``:
    ``a3 = W2 a2 + b2``) and ``ρ̂ = mean over examples of a2``. The data term is
    ``(1/m) Σ ½‖a3 − x‖²`` (``loss="squared"``) or the mean Bernoulli
    cross-entropy ``−(1/m) Σ [x log a3 + (1−x) log(1−a3)]``
    (``loss="cross_entropy"``). With ``tied=True``, ``W2 = W1.T`` and theta
    holds only ``W1, b1, b2``; the decay term then counts W1 twice.

    Parameters
    ----------
    theta : np.ndarray [shape=(n_params,)]
        Packed parameters (see :mod:`fastsae.params`).
    X : np.ndarray [shape=(n_samples, n_visible), dtype=float32 or float64]
    n_visible, n_hidden : int
    sparsity : float in (0, 1)
        The target mean activation ρ.
    beta : float >= 0
        Weight of the sparsity penalty.
    weight_decay : float >= 0
        λ.

    Returns
    -------
    cost : float
    grad : np.ndarray [shape=(n_params,), dtype=float64]
    """
    check_sae_options(theta, X, n_visible, n_hidden, sparsity, beta, weight_decay,
                      decoder, loss, tied)
    dt = X.dtype
    W1, W2, b1, b2 = (p.astype(dt) for p in unpack_sae(theta, n_visible, n_hidden, tied))
    m = X.shape[0]

    # forward
    A2 = expit(X @ W1.T + b1)                      # (m, h)
    Z3 = A2 @ W2.T + b2                            # (m, v)
    A3 = expit(Z3) if decoder == "sigmoid" else Z3

    # data term and output deltas
    if loss == "squared":
        diff = A3 - X
        data = 0.5 * np.sum(diff.astype(np.float64) ** 2) / m
        delta3 = diff * (A3 * (1 - A3)) if decoder == "sigmoid" else diff
    else:  # cross-entropy with a sigmoid decoder, written on z3 to stay finite
        data = np.sum(np.logaddexp(0, Z3).astype(np.float64) - X * Z3) / m
        delta3 = A3 - X

    # sparsity
    rho_hat = A2.astype(np.float64).mean(axis=0)
    kl, dkl = _kl_sparsity(sparsity, rho_hat)

    # backward
    delta2 = (delta3 @ W2 + (beta * dkl).astype(dt)) * (A2 * (1 - A2))   # (m, h)
    gW1 = (delta2.T @ X) / m + weight_decay * W1
    gW2 = (delta3.T @ A2) / m + weight_decay * W2
    gb1 = delta2.sum(axis=0) / m
    gb2 = delta3.sum(axis=0) / m

    cost = data + 0.5 * weight_decay * (np.sum(W1.astype(np.float64) ** 2)
                                        + np.sum(W2.astype(np.float64) ** 2)) + beta * kl
    if tied:
        grad = np.concatenate([(gW1 + gW2.T).ravel(), gb1, gb2])
    else:
        grad = np.concatenate([gW1.ravel(), gW2.ravel(), gb1, gb2])
    return float(cost), grad.astype(np.float64)


# ---------------------------------------------------------------------------
# Softmax regression and stacked autoencoders
# ---------------------------------------------------------------------------

def _softmax_loss_delta(Z, y):
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
    X : np.ndarray [shape=(n_samples, n_features), dtype=float32 or float64]
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
    n_classes, y, _ = check_softmax_args(theta, X, y, n_classes, weight_decay)
    from .params import unpack

    dt = X.dtype
    m, n = X.shape
    W, b = (p.astype(dt) for p in unpack(theta, softmax_layout(n_classes, n)))
    data, D = _softmax_loss_delta(X @ W.T + b, y)     # (m, K)
    gW = (D.T @ X) / m + weight_decay * W
    gb = D.sum(axis=0) / m
    W64 = W.astype(np.float64)
    cost = data + 0.5 * weight_decay * np.sum(W64 * W64)
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
                                              layer_sizes, stack_weight_decay)
    from .params import unpack

    dt = X.dtype
    m = X.shape[0]
    views = unpack(theta, stacked_layout(sizes, n_classes))
    Ws, bs = (p.astype(dt) for p in views[:2])
    stack = [(views[i].astype(dt), views[i + 1].astype(dt)) for i in range(2, len(views), 2)]

    acts = [X]
    for W, b in stack:
        acts.append(expit(acts[-1] @ W.T + b))
    data, D = _softmax_loss_delta(acts[-1] @ Ws.T + bs, y)
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
    for gW, gb in reversed(layer_grads):
        grads += [gW, gb]

    cost = data + 0.5 * weight_decay * np.sum(Ws.astype(np.float64) ** 2)
    if stack_weight_decay:
        cost += 0.5 * stack_weight_decay * sum(np.sum(W.astype(np.float64) ** 2)
                                               for W, _ in stack)
    return float(cost), np.concatenate([g.ravel() for g in grads]).astype(np.float64)


from ._reference_conv import convolve, pool_regions, region_bounds  # noqa: E402,F401
from ._reference_convae import conv_ae_cost_grad, conv_net_cost_grad  # noqa: E402,F401
from ._reference_distributed import sae_combine_stats, sae_shard_stats  # noqa: E402,F401

# old private names, kept for modules that imported them from here
_check_softmax_args, _check_proba_args = check_softmax_args, check_proba_args
_softmax_layout, _stacked_layout = softmax_layout, stacked_layout
