"""NumPy reference: the sparse autoencoder's objective and gradient."""
from __future__ import annotations

import numpy as np
from scipy.special import expit

from ..core.args import check_sae_options
from ..core.bfloat16 import bf16_rounded, bf16_two_parts, is_bfloat16
from ..core.config import RHO_HAT_EPS
from ..core.layouts import unpack_sae


def kl_sparsity(rho: float, rho_hat: np.ndarray):
    """KL(rho || rho_hat) summed over hidden units, and its derivative in rho_hat.

    ``rho_hat`` is clipped to ``[RHO_HAT_EPS, 1 − RHO_HAT_EPS]`` first (a
    saturated unit's activations round to exactly 0 or 1, and KL would be
    infinite; see :data:`fastsae.core.config.RHO_HAT_EPS`); the derivative at
    a clipped unit is the (finite) slope at the bound.
    """
    rho_hat = np.clip(rho_hat, RHO_HAT_EPS, 1.0 - RHO_HAT_EPS)
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
        Packed parameters (see :func:`fastsae.core.layouts.sae_layout`).
    X : np.ndarray [shape=(n_samples, n_visible), dtype=float32, float64 or bfloat16]
        bfloat16 (``ml_dtypes.bfloat16``): see :func:`_sae_cost_grad_bfloat16`.
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
                      decoder, loss, tied, bfloat16=True)
    if is_bfloat16(X.dtype):
        return _sae_cost_grad_bfloat16(theta, X, n_visible, n_hidden, sparsity, beta,
                                       weight_decay, decoder, loss, tied)
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
    kl, dkl = kl_sparsity(sparsity, rho_hat)

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


def _sae_cost_grad_bfloat16(theta, X, n_visible, n_hidden, sparsity, beta, weight_decay,
                            decoder, loss, tied):
    """The same objective with bfloat16 matrix products (the arithmetic of the compiled
    bfloat16 kernels, written plainly).

    Every operand of the five products is rounded to bfloat16 (the weights
    through float32, the encoder's ``W1`` as two bfloat16 parts, high and low
    (:func:`fastsae.core.bfloat16.bf16_two_parts`: the compiled kernel's two
    GEMMs); the hidden activations, ``δ3`` and ``δ2`` after they are
    computed in float32) and the products accumulate in float32 (a float32
    product of bfloat16 values is exactly that). Everything else is float32,
    with the sums of costs, biases and ``ρ̂`` in float64 (the derivative
    ``a2 (1 − a2)`` reads the float32 activations: ``1 − a2`` of a rounded
    ``a2`` near 1 would lose every digit); weight decay and the returned
    gradient use the float64 parameters.
    """
    f32 = np.float32

    W1, W2, b1, b2 = unpack_sae(theta, n_visible, n_hidden, tied)
    W1r, W2r = bf16_two_parts(W1), bf16_rounded(W2)
    b1f, b2f = b1.astype(f32), b2.astype(f32)
    Xf = X.astype(f32)                    # exact
    m = X.shape[0]

    A2 = expit(Xf @ W1r.T + b1f)                   # float32
    rho_hat = A2.astype(np.float64).mean(axis=0)
    A2r = bf16_rounded(A2)
    Z3 = A2r @ W2r.T + b2f
    if loss == "squared":
        A3 = expit(Z3) if decoder == "sigmoid" else Z3
        diff = A3 - Xf
        data = 0.5 * np.sum(diff.astype(np.float64) ** 2) / m
        delta3 = diff * (A3 * (1 - A3)) if decoder == "sigmoid" else diff
    else:
        data = np.sum(np.logaddexp(f32(0), Z3).astype(np.float64) - Xf * Z3) / m
        delta3 = expit(Z3) - Xf

    kl, dkl = kl_sparsity(sparsity, rho_hat)
    delta3r = bf16_rounded(delta3)
    delta2 = (delta3r @ W2r + (beta * dkl).astype(f32)) * (A2 * (1 - A2))
    gW1 = (bf16_rounded(delta2).T @ Xf) / m + weight_decay * W1
    gW2 = (delta3r.T @ A2r) / m + weight_decay * W2
    gb1 = delta2.sum(axis=0, dtype=np.float64) / m
    gb2 = delta3.sum(axis=0, dtype=np.float64) / m

    cost = data + 0.5 * weight_decay * (np.sum(W1 ** 2) + np.sum(W2 ** 2)) + beta * kl
    if tied:
        grad = np.concatenate([(gW1 + gW2.T).ravel(), gb1, gb2])
    else:
        grad = np.concatenate([gW1.ravel(), gW2.ravel(), gb1, gb2])
    return float(cost), grad.astype(np.float64)
