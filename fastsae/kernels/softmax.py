"""Numba kernel for softmax regression (twin of
:func:`fastsae.reference.softmax_cost_grad`).

One parallel pass over the examples; each thread works through its own
contiguous share of rows in cache-sized chunks and, per chunk,

1. computes the logits transposed, ``Z = W Xcᵀ`` (n_classes × rows), with one
   GEMM;
2. turns ``Z`` in place into ``δ = P − onehot(y)`` and its share of the
   negative log-likelihood (:func:`softmax_delta_t`): bias, row maximum,
   exponentials, normaliser and ``log Σ e`` in loops that run along the rows
   of the chunk, so that they vectorise even with 10 classes;
3. accumulates ``gW += δ Xc`` (second GEMM) while ``Xc`` is still in cache.

``X`` is thus read from memory once per evaluation (the reference reads it
twice and writes three ``(n_samples × n_classes)`` temporaries). Partial
gradients live in per-thread buffers and are summed once, in float64.

bfloat16 (``X`` an ml-dtypes bfloat16 array): the same pass, both GEMMs in
oneMKL's ``cblas_gemm_bf16bf16f32`` (bfloat16 operands, float32 accumulation);
the logits and ``δ`` are float32, ``δ`` is rounded to bfloat16 for the second
GEMM. The NumPy twin of this arithmetic is
:func:`fastsae.reference.softmax.softmax_cost_grad` on a bfloat16 ``X``.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..core.config import JIT_OPTIONS, SHARE_OPTIONS
from ..core.threads import scipy_blas_single_thread
from ..core.layouts import unpack
from ..core.args import check_proba_args, check_softmax_args
from ..core.bfloat16 import is_bfloat16
from ..core.layouts import softmax_layout
from . import _mkl
from ._blas import gemm, gemm_address
from ._mkl import gemm_bf16, mkl_threads_local
from ._parallel import parallel_kernel, threads_for, workspace
from ._math import fexp, one, round_to_bf16, rows_to_bf16, sumsq

#: Rows per chunk. The pass is bound by reading X from memory; short chunks
#: keep each one in L1/L2 between the two GEMMs that read it. Measured at
#: 50,000 x 256, 10 classes (2 Zen 4 cores): 64-96 rows beat 16-32 (call
#: overhead) and 128-2048 (1.5-2x slower), in float32 and float64 alike.
SOFTMAX_CHUNK_ROWS = 96
#: ...unless the rows are long: then at most this many bytes of X per chunk.
SOFTMAX_CHUNK_BYTES = 256 * 1024


@njit(**JIT_OPTIONS)
def softmax_delta_t(Z, b, y, mx, zy, s, G):
    """Logits to ``P − onehot(y)`` in place, for one chunk stored class-major.

    Parameters
    ----------
    Z : (n_classes, n) logits without the bias; on return ``P − onehot(y)``.
    b : (n_classes,) bias.
    y : (n,) labels.
    mx, zy, s : (n,) scratch vectors in Z's dtype.
    G : (n_classes, >= n) float64; ``G[k, j] += δ[k, j]`` (a vector accumulator
        for the bias gradient, summed once at the end).

    Returns
    -------
    float64 : ``Σ_j −log p(y_j | x_j)`` over the chunk.
    """
    K, n = Z.shape
    z0 = Z[0]
    b0 = b[0]
    for j in range(n):
        v = z0[j] + b0
        z0[j] = v
        mx[j] = v
    for k in range(1, K):
        zk = Z[k]
        bk = b[k]
        for j in range(n):
            v = zk[j] + bk
            zk[j] = v
            # a NaN logit must reach mx (and so the cost), not be skipped
            mx[j] = v if (v > mx[j] or v != v) else mx[j]
    # the true class's shifted logit, read before exponentiation: exact even
    # when its probability underflows
    for j in range(n):
        zy[j] = Z[y[j], j] - mx[j]
    s[:n] = 0
    for k in range(K):
        zk = Z[k]
        for j in range(n):
            e = fexp(zk[j] - mx[j])
            zk[j] = e
            s[j] += e
    nll = 0.0
    for j in range(n):
        nll += np.log(s[j]) - zy[j]
        Z[y[j], j] -= s[j]          # (e_y - s) / s = p_y - 1 after the scaling below
    for j in range(n):
        s[j] = one(s[j]) / s[j]
    for k in range(K):
        zk = Z[k]
        gk = G[k]
        for j in range(n):
            d = zk[j] * s[j]
            zk[j] = d
            gk[j] += d
    return nll


@njit(**SHARE_OPTIONS)
def _softmax_share(fn, X, y, W, b, chunk, lo, hi, bufZ, bufV, G, gW):
    """One thread's rows ``lo:hi``, chunk by chunk; accumulates into its own
    ``G`` and ``gW`` and returns its share of the negative log-likelihood."""
    K = W.shape[0]
    gW[:, :] = 0.0
    G[:, :] = 0.0
    nll = 0.0
    for c0 in range(lo, hi, chunk):
        c1 = min(c0 + chunk, hi)
        n = c1 - c0
        Xc = X[c0:c1]
        Z = bufZ[:K * n].reshape((K, n))
        gemm(fn, False, True, 1.0, W, Xc, 0.0, Z)                  # Z = W Xcᵀ
        nll += softmax_delta_t(Z, b, y[c0:c1], bufV[0], bufV[1], bufV[2], G)
        gemm(fn, False, False, 1.0, Z, Xc, 1.0, gW)                # gW += δ Xc
    return nll


@parallel_kernel
def _softmax_pass(fn, X, y, W, b, chunk, bufZ, bufV, G, gW, nll, t0, t1):
    m = X.shape[0]
    n_threads = gW.shape[0]
    for t in range(t0, t1):
        nll[t] = _softmax_share(fn, X, y, W, b, chunk, t * m // n_threads,
                                (t + 1) * m // n_threads, bufZ[t], bufV[t], G[t], gW[t])


@parallel_kernel
def _predict_proba(fn, X, W, b, chunk, out, n_threads, t0, t1):
    m = X.shape[0]
    n_chunks = (m + chunk - 1) // chunk
    for t in range(t0, t1):
        _proba_chunks(fn, X, W, b, chunk, out, t * n_chunks // n_threads,
                      (t + 1) * n_chunks // n_threads)


@njit(**SHARE_OPTIONS)
def _proba_chunks(fn, X, W, b, chunk, out, first, last):
    """Probabilities of the rows of chunks ``first .. last - 1``."""
    m = X.shape[0]
    K = W.shape[0]
    for c in range(first, last):
        c0 = c * chunk
        c1 = min(c0 + chunk, m)
        P = out[c0:c1]
        gemm(fn, False, True, 1.0, X[c0:c1], W, 0.0, P)
        for r in range(c1 - c0):
            p = P[r]
            mx = p[0] + b[0]
            for k in range(K):
                v = p[k] + b[k]
                p[k] = v
                mx = v if (v > mx or v != v) else mx
            s = p[0] * 0
            for k in range(K):
                e = fexp(p[k] - mx)
                p[k] = e
                s += e
            inv = one(s) / s
            for k in range(K):
                p[k] *= inv


@njit(**SHARE_OPTIONS)
def _softmax_share_bf16(fn, X, y, W, b, chunk, lo, hi, bufZ, bufZ16, bufV, G, gW):
    """:func:`_softmax_share` with bfloat16 ``X`` and ``W`` (uint16 bits): float32 logits
    and ``gW``, ``δ`` rounded to bfloat16 (``bufZ16``) for the second GEMM."""
    K = W.shape[0]
    gW[:, :] = 0.0
    G[:, :] = 0.0
    nll = 0.0
    for c0 in range(lo, hi, chunk):
        c1 = min(c0 + chunk, hi)
        n = c1 - c0
        Xc = X[c0:c1]
        Z = bufZ[:K * n].reshape((K, n))
        Z16 = bufZ16[:K * n].reshape((K, n))
        gemm_bf16(fn, False, True, 1.0, W, Xc, 0.0, Z)             # Z = W Xcᵀ
        nll += softmax_delta_t(Z, b, y[c0:c1], bufV[0], bufV[1], bufV[2], G)
        rows_to_bf16(Z, Z16)
        gemm_bf16(fn, False, False, 1.0, Z16, Xc, 1.0, gW)         # gW += δ Xc
    return nll


@parallel_kernel
def _softmax_pass_bf16(fn, fn_threads, X, y, W, b, chunk, bufZ, bufZ16, bufV, G, gW, nll, t0,
                       t1):
    m = X.shape[0]
    n_threads = gW.shape[0]
    for t in range(t0, t1):
        previous = mkl_threads_local(fn_threads, 1)
        nll[t] = _softmax_share_bf16(fn, X, y, W, b, chunk, t * m // n_threads,
                                     (t + 1) * m // n_threads, bufZ[t], bufZ16[t], bufV[t],
                                     G[t], gW[t])
        mkl_threads_local(fn_threads, previous)


class _Workspace:
    """Buffers reused across calls with the same shapes."""

    def __init__(self, key):
        m, n, K, dtype, n_threads, chunk = key
        self.Z = np.empty((n_threads, K * chunk), dtype)
        self.V = np.empty((n_threads, 3, chunk), dtype)
        self.G = np.empty((n_threads, K, chunk))
        self.gW = np.empty((n_threads, K, n), dtype)
        self.nll = np.empty(n_threads)




class _WorkspaceBF16:
    """Buffers of one bfloat16 call shape: bfloat16 arrays as uint16, GEMM outputs float32."""

    def __init__(self, key):
        m, n, K, _, n_threads, chunk = key
        self.W = np.empty((K, n), np.uint16)
        self.Z = np.empty((n_threads, K * chunk), np.float32)
        self.Z16 = np.empty((n_threads, K * chunk), np.uint16)
        self.V = np.empty((n_threads, 3, chunk), np.float32)
        self.G = np.empty((n_threads, K, chunk))
        self.gW = np.empty((n_threads, K, n), np.float32)
        self.nll = np.empty(n_threads)


def chunk_rows(n_features, itemsize):
    """Rows per chunk for the softmax pass."""
    return int(max(min(SOFTMAX_CHUNK_ROWS, SOFTMAX_CHUNK_BYTES // (n_features * itemsize)), 16))


def softmax_cost_grad(theta, X, y, n_classes, *, weight_decay):
    """Softmax regression cost and gradient, Numba backend.

    Same signature, objective and results as
    :func:`fastsae.reference.softmax_cost_grad` (see there): ``theta`` packs
    ``W (n_classes, n_features)`` then the bias ``b (n_classes,)``, which is
    not weight-decayed. Computes in ``X.dtype`` (bfloat16: oneMKL's bfloat16
    GEMM with float32 accumulation, float32 elementwise work; needs the extra
    ``fastsae-audio[mkl]``); returns ``(float, float64 gradient)``.
    """
    n_classes, y, _ = check_softmax_args(theta, X, y, n_classes, weight_decay, bfloat16=True)
    dt = X.dtype
    X = np.ascontiguousarray(X)
    m, n = X.shape
    K = n_classes
    W, b = unpack(theta, softmax_layout(K, n))
    n_threads = threads_for(4.0 * m * n * K, m)
    if is_bfloat16(dt):
        mkl = _mkl.library()
        chunk = min(chunk_rows(n, 2), -(-m // n_threads))
        ws = workspace("softmax bfloat16", (m, n, K, "bfloat16", n_threads, chunk), _WorkspaceBF16)
        round_to_bf16(W, ws.W)
        _softmax_pass_bf16(n_threads)(mkl.gemm, mkl.threads_local, X.view(np.uint16), y, ws.W,
                                      b.astype(np.float32), chunk, ws.Z, ws.Z16, ws.V, ws.G,
                                      ws.gW, ws.nll)
        decay = sumsq(W)                           # of the float64 parameters
    else:
        Wc = np.ascontiguousarray(W, dtype=dt)
        chunk = min(chunk_rows(n, dt.itemsize), -(-m // n_threads))
        ws = workspace("softmax", (m, n, K, dt, n_threads, chunk), _Workspace)
        with scipy_blas_single_thread():
            _softmax_pass(n_threads)(gemm_address(dt), X, y, Wc, b.astype(dt), chunk, ws.Z, ws.V,
                                     ws.G, ws.gW, ws.nll)
        decay = sumsq(Wc)

    grad = np.empty(theta.size)
    grad[:K * n] = (ws.gW.sum(axis=0, dtype=np.float64) / m + weight_decay * W).ravel()
    grad[K * n:] = ws.G.sum(axis=(0, 2)) / m
    cost = ws.nll.sum() / m + 0.5 * weight_decay * decay
    return float(cost), grad


def softmax_predict_proba(W, b, X):
    """Class probabilities ``softmax(X Wᵀ + b)``, Numba backend (twin of
    :func:`fastsae.reference.softmax_predict_proba`)."""
    W, b = check_proba_args(W, b, X)
    dt = X.dtype
    X = np.ascontiguousarray(X)
    Wc = np.ascontiguousarray(W, dtype=dt)
    bc = np.ascontiguousarray(b, dtype=dt)
    out = np.empty((X.shape[0], Wc.shape[0]), dt)
    chunk = chunk_rows(max(X.shape[1], 1), dt.itemsize)   # a (m, 0) X: logits = b
    with scipy_blas_single_thread():
        n_threads = threads_for(2.0 * X.shape[0] * max(X.shape[1], 1) * Wc.shape[0], X.shape[0])
        _predict_proba(n_threads)(gemm_address(dt), X, Wc, bc, chunk, out, n_threads)
    return out
