"""NumPy reference: the sparse autoencoder's per-shard sufficient statistics.

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
send); :func:`fastsae.core.layouts.sae_stats_layout` names its parts,
:func:`fastsae.core.layouts.unpack_sae_stats` gives views of them, and
:func:`fastsae.distributed.sae_combine_stats` turns their sum into the
objective and its gradient.
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit

from ..core.args import check_stats_options
from ..core.layouts import sae_stats_layout, unpack_sae, unpack_sae_stats


def sae_shard_stats(theta, X, n_visible, n_hidden, *, decoder="sigmoid", loss="squared",
                    tied=False, with_sparsity=True):
    """Sufficient statistics of one shard of examples for :func:`fastsae.distributed.sae_combine_stats`.

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
        See :func:`fastsae.core.layouts.sae_stats_layout`; the statistics of several shards add up.
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
