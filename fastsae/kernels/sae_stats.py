"""Numba kernel for one shard's sparse-autoencoder statistics (twin of
:func:`fastsae.reference.sae_stats.sae_shard_stats`).

A shard does not know ``ρ̂`` (it is a mean over every shard), so instead of
the hidden deltas it accumulates the sums from which the driver forms them
(see :mod:`fastsae.reference.sae_stats`). Nothing here waits for ``ρ̂``,
so unlike :mod:`fastsae.kernels.sae` this is *one* parallel pass, and no
``(n_samples × n_hidden)`` array is written: each thread runs through its own
contiguous share of rows in cache-sized chunks and, per chunk,

1. ``A = σ(Xc W1ᵀ + b1)`` (GEMM, then bias, sigmoid and ``Σ a2`` in place);
2. ``Z = A W2ᵀ`` turned in place into ``δ3`` and its share of the data cost,
   ``gW2 += δ3ᵀ A``;
3. ``D = δ3 W2`` into the left half of a ``(rows × 2h)`` buffer, then
   ``D ⊙ a2'`` in place and ``a2'`` into the right half, so that a single
   GEMM ``[P; Q] += [D ⊙ a2' | a2']ᵀ Xc`` accumulates both ``P`` and ``Q``
   (without sparsity the buffer is ``rows × h`` and only ``P`` is formed).

The building blocks — GEMM through the kernels' BLAS, the bias/sigmoid and
output-delta loops, the chunk size — are those of the single-machine kernel;
partial sums live in per-thread buffers and are added once, in float64.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..core.config import JIT_OPTIONS
from ..core.args import check_stats_options
from ..core.layouts import sae_stats_layout, unpack_sae_stats
from ..core.threads import scipy_blas_single_thread
from ..core.layouts import unpack_sae
from ._blas import gemm, gemm_address
from ._math import one
from ._parallel import parallel_kernel, threads_for, workspace
from .sae import (LINEAR_SQUARED, SIGMOID_CROSS_ENTROPY, SIGMOID_SQUARED,
                  _bias_sigmoid_colsum, chunk_rows, output_delta)


@njit(**JIT_OPTIONS)
def _hidden_stats_pq(D2, A, p, q):
    """Left half of D2 <- D ⊙ A(1 − A), right half <- A(1 − A); p, q += their column sums."""
    n, h = A.shape
    for r in range(n):
        d = D2[r]
        a = A[r]
        for j in range(h):
            da = a[j] * (one(a[j]) - a[j])
            dd = d[j] * da
            d[j] = dd
            d[h + j] = da
            p[j] += dd
            q[j] += da


@parallel_kernel
def _stats_pass(fn, X, W1, b1, W2, b2, kind, with_q, chunk, bufA, bufZ, bufD,
                gW2, PQ, hsum, gb2, cost, t0, t1):
    m = X.shape[0]
    h = W1.shape[0]
    n_threads = gW2.shape[0]
    for t in range(t0, t1):
        lo = t * m // n_threads
        hi = (t + 1) * m // n_threads
        g2 = gW2[t]
        pq = PQ[t]
        rho = hsum[t, 0]
        p = hsum[t, 1]
        q = hsum[t, 2]
        g2[:] = 0.0
        pq[:] = 0.0
        hsum[t, :, :] = 0.0
        gb2[t, :] = 0.0
        cost[t, :] = 0.0
        for c0 in range(lo, hi, chunk):
            c1 = min(c0 + chunk, hi)
            n = c1 - c0
            Xc = X[c0:c1]
            A = bufA[t, :n]
            Z = bufZ[t, :n]
            D2 = bufD[t, :n]
            gemm(fn, False, True, 1.0, Xc, W1, 0.0, A)          # A = Xc W1ᵀ
            _bias_sigmoid_colsum(A, b1, rho)
            gemm(fn, False, True, 1.0, A, W2, 0.0, Z)           # Z3 = A W2ᵀ
            output_delta(kind, Z, Xc, b2, cost[t], gb2[t])
            gemm(fn, True, False, 1.0, Z, A, 1.0, g2)           # gW2 += δ3ᵀ A
            gemm(fn, False, False, 1.0, Z, W2, 0.0, D2[:, :h])  # D = δ3 W2
            _hidden_stats_pq(D2, A, p, q)
            # [P; Q] += D2ᵀ Xc (P alone without the sparsity term: Q's GEMM is the extra one)
            gemm(fn, True, False, 1.0, D2 if with_q else D2[:, :h], Xc, 1.0, pq)


class _Workspace:
    """Per-thread buffers reused across calls (they do not depend on the shard's length)."""

    def __init__(self, key):
        v, h, dtype, n_threads, chunk, with_q = key
        w = 2 * h if with_q else h
        self.A = np.empty((n_threads, chunk, h), dtype)
        self.Z = np.empty((n_threads, chunk, v), dtype)
        self.D = np.empty((n_threads, chunk, 2 * h), dtype)      # [D ⊙ A' | A']
        self.gW2 = np.empty((n_threads, v, h), dtype)
        self.PQ = np.empty((n_threads, w, v), dtype)
        self.hsum = np.empty((n_threads, 3, h))
        self.gb2 = np.empty((n_threads, v))
        self.cost = np.empty((n_threads, v))




def sae_shard_stats(theta, X, n_visible, n_hidden, *, decoder="sigmoid", loss="squared",
                    tied=False, with_sparsity=True):
    """One shard's sufficient statistics, Numba backend.

    Same signature and results as
    :func:`fastsae.reference.sae_stats.sae_shard_stats` (see there):
    computes in ``X.dtype`` and returns the float64 statistics vector laid
    out by :func:`~fastsae.core.layouts.sae_stats_layout`.
    """
    check_stats_options(theta, X, n_visible, n_hidden, decoder, loss, tied, with_sparsity)
    dt = X.dtype
    X = np.ascontiguousarray(X)
    m, v, h = X.shape[0], n_visible, n_hidden
    W1, W2, b1, b2 = unpack_sae(theta, v, h, tied)
    W1c = np.ascontiguousarray(W1, dtype=dt)
    W2c = np.ascontiguousarray(W2, dtype=dt)
    kind = (SIGMOID_CROSS_ENTROPY if loss == "cross_entropy"
            else LINEAR_SQUARED if decoder == "linear" else SIGMOID_SQUARED)
    with_q = bool(with_sparsity)
    n_threads = threads_for((12.0 if with_q else 10.0) * m * v * h, m)
    chunk = chunk_rows(v, dt.itemsize, h)
    ws = workspace("sae_stats", (v, h, dt, n_threads, chunk, with_q), _Workspace)
    with scipy_blas_single_thread():
        _stats_pass(n_threads)(gemm_address(dt), X, W1c, b1.astype(dt), W2c, b2.astype(dt), kind, with_q,
                    chunk, ws.A, ws.Z, ws.D, ws.gW2, ws.PQ, ws.hsum, ws.gb2, ws.cost)

    out = np.empty(sum(sae_stats_layout(v, h, with_q)))
    st = unpack_sae_stats(out, v, h, with_q)
    st.count[0] = m
    total = ws.cost.sum()
    st.data[0] = total if kind == SIGMOID_CROSS_ENTROPY else 0.5 * total
    hsum = ws.hsum.sum(axis=0)
    st.rho_sum[:] = hsum[0]
    st.p[:] = hsum[1]
    st.q[:] = hsum[2]
    st.gb2[:] = ws.gb2.sum(axis=0)
    st.gW2[:] = ws.gW2.sum(axis=0, dtype=np.float64)
    PQ = ws.PQ.sum(axis=0, dtype=np.float64)
    st.P[:] = PQ[:h]
    if with_q:
        st.Q[:] = PQ[h:]
    return out


__all__ = ["sae_shard_stats"]
