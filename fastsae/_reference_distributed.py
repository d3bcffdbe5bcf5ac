"""NumPy reference for the sparse autoencoder's per-shard sufficient statistics.

Training on a cluster splits the examples into shards. Every term of the
autoencoder objective is a sum over examples except the sparsity penalty,
whose gradient needs ``ρ̂`` — the mean activation over *all* examples —
before any hidden delta can be formed:

``δ2 = (W2ᵀδ3 + s) ⊙ a2(1 − a2)``, ``s = β(−ρ/ρ̂ + (1 − ρ)/(1 − ρ̂))``.

``s`` is one number per hidden unit, so it factors out of the sums:

``gW1·m = Σ [(W2ᵀδ3) ⊙ a2'] xᵀ + diag(s) Σ a2' xᵀ = P + diag(s) Q``
``gb1·m = Σ (W2ᵀδ3) ⊙ a2' + s ⊙ Σ a2' = p + s ⊙ q``

with ``a2' = a2(1 − a2)``. Each shard therefore returns, in one round trip,
the statistics below (all plain sums, so any tree of additions combines them)
and the driver forms ``s`` from the summed ``Σ a2`` and the exact gradient.
The price is one extra GEMM per shard (``Q``: six instead of five); with
``β = 0`` it is skipped.

The statistics travel as one flat float64 vector (cheap to add, one buffer to
send); :func:`sae_stats_layout` names its parts, :func:`unpack_sae_stats`
gives views of them. The Numba twin is
:func:`fastsae.kernels.sae_stats.sae_shard_stats`.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np
from scipy.special import expit

from ._validation import check_bool, check_sae_options
from .params import unpack_sae

#: Views into a statistics vector (see :func:`sae_stats_layout`).
SAEStats = namedtuple("SAEStats", "count data rho_sum gb2 p q gW2 P Q")


def sae_stats_layout(n_visible, n_hidden, with_sparsity=True):
    """Sizes of the parts of a statistics vector, in order (``SAEStats`` fields).

    ``count`` (rows), ``data`` (data-term sum: ``½Σ‖a3 − x‖²`` or the summed
    cross-entropy), ``rho_sum = Σ a2`` (h), ``gb2 = Σ δ3`` (v),
    ``p = Σ (W2ᵀδ3) ⊙ a2'`` (h), ``q = Σ a2'`` (h), ``gW2 = Σ δ3 a2ᵀ``
    (v × h), ``P = Σ [(W2ᵀδ3) ⊙ a2'] xᵀ`` (h × v) and, with
    ``with_sparsity``, ``Q = Σ a2' xᵀ`` (h × v; size 0 without).
    """
    v, h = int(n_visible), int(n_hidden)
    return (1, 1, h, v, h, h, v * h, h * v, h * v if with_sparsity else 0)


def unpack_sae_stats(stats, n_visible, n_hidden, with_sparsity=True) -> SAEStats:
    """Views of the parts of a statistics vector (matrices shaped, ``Q`` None without sparsity)."""
    v, h = int(n_visible), int(n_hidden)
    sizes = sae_stats_layout(v, h, with_sparsity)
    if stats.ndim != 1 or stats.size != sum(sizes):
        from .exceptions import ParameterError
        raise ParameterError(
            f"stats must be a 1-D vector of {sum(sizes)} values for n_visible={v}, "
            f"n_hidden={h}, with_sparsity={with_sparsity}; got shape {stats.shape}")
    parts = []
    pos = 0
    for n in sizes:
        parts.append(stats[pos:pos + n])
        pos += n
    count, data, rho_sum, gb2, p, q, gW2, P, Q = parts
    return SAEStats(count, data, rho_sum, gb2, p, q, gW2.reshape(v, h), P.reshape(h, v),
                    Q.reshape(h, v) if with_sparsity else None)


def check_stats_options(theta, X, n_visible, n_hidden, decoder, loss, tied, with_sparsity):
    """The checks of :func:`~fastsae._validation.check_sae_options` that concern a shard.

    The sparsity target, β and λ are applied by :func:`sae_combine_stats`, not
    per shard; valid placeholders stand in for them here.
    """
    check_bool(with_sparsity, "with_sparsity")
    return check_sae_options(theta, X, n_visible, n_hidden, 0.5, 0.0, 0.0, decoder, loss, tied)


def sae_shard_stats(theta, X, n_visible, n_hidden, *, decoder="sigmoid", loss="squared",
                    tied=False, with_sparsity=True):
    """Sufficient statistics of one shard of examples for :func:`sae_combine_stats`.

    Parameters
    ----------
    theta : np.ndarray [shape=(n_params,), dtype=float64]
        Packed parameters, as for :func:`fastsae.reference.sae_cost_grad`.
    X : np.ndarray [shape=(n_samples, n_visible), dtype=float32 or float64]
        The shard's examples (rows).
    n_visible, n_hidden : int
    decoder, loss, tied
        As in :func:`fastsae.reference.sae_cost_grad`.
    with_sparsity : bool
        Compute ``Q`` (needed when ``β > 0``).

    Returns
    -------
    stats : np.ndarray [shape=(sum(sae_stats_layout(...)),), dtype=float64]
        See :func:`sae_stats_layout`; the statistics of several shards add up.
    """
    check_stats_options(theta, X, n_visible, n_hidden, decoder, loss, tied, with_sparsity)
    dt = X.dtype
    v, h = n_visible, n_hidden
    W1, W2, b1, b2 = (a.astype(dt) for a in unpack_sae(theta, v, h, tied))

    A2 = expit(X @ W1.T + b1)
    Z3 = A2 @ W2.T + b2
    A3 = expit(Z3) if decoder == "sigmoid" else Z3
    if loss == "squared":
        diff = A3 - X
        data = 0.5 * np.sum(diff.astype(np.float64) ** 2)
        delta3 = diff * (A3 * (1 - A3)) if decoder == "sigmoid" else diff
    else:
        data = np.sum(np.logaddexp(0, Z3).astype(np.float64) - X * Z3)
        delta3 = A3 - X
    dA = A2 * (1 - A2)
    D = (delta3 @ W2) * dA

    out = np.zeros(sum(sae_stats_layout(v, h, with_sparsity)))
    st = unpack_sae_stats(out, v, h, with_sparsity)
    st.count[0] = X.shape[0]
    st.data[0] = data
    st.rho_sum[:] = A2.sum(axis=0, dtype=np.float64)
    st.gb2[:] = delta3.sum(axis=0, dtype=np.float64)
    st.p[:] = D.sum(axis=0, dtype=np.float64)
    st.q[:] = dA.sum(axis=0, dtype=np.float64)
    st.gW2[:] = delta3.T @ A2
    st.P[:] = D.T @ X
    if with_sparsity:
        st.Q[:] = dA.T @ X
    return out


def sae_combine_stats(stats, theta, n_visible, n_hidden, *, sparsity, beta, weight_decay,
                      decoder="sigmoid", loss="squared", tied=False, dtype="float64"):
    """The autoencoder objective and gradient from the summed statistics of all shards.

    ``sae_combine_stats(Σ_k sae_shard_stats(theta, X_k, ...), theta, ...)``
    equals ``sae_cost_grad(theta, concatenate(X_k), ...)`` up to rounding.

    Parameters
    ----------
    stats : np.ndarray
        The sum of :func:`sae_shard_stats` over every shard (``with_sparsity``
        is ``beta > 0``).
    theta, n_visible, n_hidden, sparsity, beta, weight_decay, decoder, loss, tied
        As in :func:`fastsae.reference.sae_cost_grad`.
    dtype : {"float64", "float32"}
        The shards' dtype: the weight-decay cost uses the weights rounded to
        it, as the single-machine kernels do.

    Returns
    -------
    cost : float
    grad : np.ndarray [shape=theta.shape, dtype=float64]
    """
    v, h = int(n_visible), int(n_hidden)
    st = unpack_sae_stats(stats, v, h, beta > 0)
    m = st.count[0]
    W1, W2, _, _ = unpack_sae(theta, v, h, tied)
    rho, rho_hat = sparsity, st.rho_sum / m
    kl = np.sum(rho * np.log(rho / rho_hat) + (1 - rho) * np.log((1 - rho) / (1 - rho_hat)))
    data = st.data[0] / m
    gW2 = st.gW2 / m + weight_decay * W2
    gb2 = st.gb2 / m
    if beta > 0:
        s = beta * (-rho / rho_hat + (1 - rho) / (1 - rho_hat))
        gW1 = (st.P + s[:, None] * st.Q) / m + weight_decay * W1
        gb1 = (st.p + s * st.q) / m
    else:
        gW1 = st.P / m + weight_decay * W1
        gb1 = st.p / m
    W1r = W1.astype(dtype).astype(np.float64)
    W2r = W2.astype(dtype).astype(np.float64) if not tied else W1r.T
    cost = data + 0.5 * weight_decay * (np.vdot(W1r, W1r) + np.vdot(W2r, W2r)) + beta * kl
    n1 = h * v
    grad = np.empty(theta.size)
    if tied:
        grad[:n1] = (gW1 + gW2.T).ravel()
        grad[n1:n1 + h] = gb1
        grad[n1 + h:] = gb2
    else:
        grad[:n1] = gW1.ravel()
        grad[n1:2 * n1] = gW2.ravel()
        grad[2 * n1:2 * n1 + h] = gb1
        grad[2 * n1 + h:] = gb2
    return float(cost), grad


__all__ = ["SAEStats", "sae_stats_layout", "unpack_sae_stats", "sae_shard_stats",
           "sae_combine_stats"]
