"""Numba kernel for the sparse autoencoder objective (twin of
:func:`fastsae.reference.sae_cost_grad`).

One evaluation is two parallel passes over the examples, each thread working
through its own contiguous share of rows in cache-sized chunks:

1. encode: ``A2 = σ(X W1ᵀ + b1)`` chunk by chunk (GEMM, then the bias and the
   sigmoid in place), summing the activations for ``ρ̂``. ``A2`` is the only
   ``(n_samples × n_hidden)`` array written.
2. backprop: once ``ρ̂`` and the sparsity term are known, each chunk computes
   ``Z3 = A2 W2ᵀ``, turns it in place into the output delta (and its share of
   the data cost), accumulates ``gW2 += δ3ᵀ A2``, computes ``δ3 W2`` into a
   small per-thread buffer, turns that into ``δ2`` and accumulates
   ``gW1 += δ2ᵀ X``.

The five GEMMs are BLAS calls (:mod:`fastsae.kernels._blas`) on one thread
per kernel thread; partial gradients live in per-thread buffers and are
summed once at the end (in float64). Every elementwise loop is written to vectorise (see ``_math``).
The KL term needs ``ρ̂`` before any ``δ2`` can be formed, which is why there
are two passes rather than one.

bfloat16 (``X`` an ml-dtypes bfloat16 array): the same two passes, the
GEMMs in oneMKL's ``cblas_gemm_bf16bf16f32`` (bfloat16 operands, float32
accumulation and results, see ``_mkl``). The elementwise work and every
reduction are float32 (sums of costs, biases and ``ρ̂`` in float64); what
feeds a GEMM is rounded to bfloat16 on the way out of the elementwise loop:
the weights, ``δ3`` and ``δ2``, and each chunk of ``A2`` (stored in float32,
so that the hidden units' derivative ``A2 (1 − A2)`` is exact near
saturation, where ``1 − A2`` rounded to bfloat16 would lose every digit).
The encoder's weights ``W1`` are carried as two bfloat16 parts (high and low,
about 16 significant bits), and ``X W1ᵀ`` is one GEMM against the two parts
stacked (``2h`` columns, the halves summed in the sigmoid's loop): at the
audio shape oneMKL's time goes mostly on handling ``X``'s rows, and the
stacked product took 0.9-1.15 x as long as one part's alone, where two
products took 2 x (one thread, chunks of 512 rows). With
``W1`` rounded to one bfloat16 each, the gradient after a few L-BFGS
iterations on FSDD-like data was 22-126 % off the float32 one, almost all of
it from that one product (rounding ``W2``, ``X``, ``A2`` and the deltas moved
it by under 3 %), which made the precision schedule leave bfloat16 within
~16 iterations; with the two parts it is 0.3-3 % off. With tied weights the
decoder's ``W1ᵀ`` is still one bfloat16 each (as ``W2`` is).
bfloat16 arrays travel as uint16 views.
The NumPy twin of this arithmetic is
:func:`fastsae.reference.sae.sae_cost_grad` on a bfloat16 ``X``.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..core.config import JIT_OPTIONS, SAE_CHUNK_BYTES
from ..core.threads import scipy_blas_single_thread
from ..core.args import check_sae_options
from ..core.bfloat16 import is_bfloat16
from ..core.layouts import pack_sae_grad, unpack_sae
from ..core.numerics import kl_sparsity
from . import _mkl
from ._blas import gemm, gemm_address
from ._math import (fexp, from_bf16, log1p_unit, one, round_to_bf16, rows_to_bf16, sigmoid,
                    softplus, split_to_bf16, sumsq, to_bf16)
from ._mkl import gemm_bf16, mkl_threads_local
from ._parallel import parallel_kernel, threads_for, workspace

# output-layer variants (decoder, loss)
SIGMOID_SQUARED, LINEAR_SQUARED, SIGMOID_CROSS_ENTROPY = 0, 1, 2


@njit(**JIT_OPTIONS)
def _bias_sigmoid_colsum(A, b, colsum):
    """A <- σ(A + b) in place; colsum += column sums of the result."""
    n, k = A.shape
    for r in range(n):
        row = A[r]
        for j in range(k):
            row[j] = sigmoid(row[j] + b[j])
        for j in range(k):          # apart: a float64 sum in the loop above unvectorises it
            colsum[j] += row[j]


@njit(**JIT_OPTIONS)
def _delta_out_sigmoid_squared(Z, X, b, cost, gb):
    n, k = Z.shape
    for r in range(n):
        z = Z[r]
        x = X[r]
        for j in range(k):
            z[j] = sigmoid(z[j] + b[j])
        for j in range(k):          # apart, as in _bias_sigmoid_colsum
            a = z[j]
            d = a - x[j]
            cost[j] += d * d
            d = d * a * (one(a) - a)
            z[j] = d
            gb[j] += d


@njit(**JIT_OPTIONS)
def _delta_out_linear_squared(Z, X, b, cost, gb):
    n, k = Z.shape
    for r in range(n):
        z = Z[r]
        x = X[r]
        for j in range(k):
            d = z[j] + b[j] - x[j]
            cost[j] += d * d
            z[j] = d
            gb[j] += d


@njit(**JIT_OPTIONS)
def _delta_out_sigmoid_cross_entropy(Z, X, b, cost, gb):
    n, k = Z.shape
    terms = np.empty(k, Z.dtype)
    for r in range(n):
        z = Z[r]
        x = X[r]
        for j in range(k):
            zz = z[j] + b[j]
            # -[x log σ(z) + (1-x) log(1-σ(z))] = softplus(z) - x z; both from e^-|z|
            e = fexp(-abs(zz))
            inv = one(e) / (one(e) + e)
            terms[j] = max(zz, zz * 0) + log1p_unit(e) - x[j] * zz
            z[j] = (inv if zz >= 0 else e * inv) - x[j]
        for j in range(k):          # apart, as in _bias_sigmoid_colsum
            cost[j] += terms[j]
            gb[j] += z[j]


@njit(**JIT_OPTIONS)
def output_delta(kind, Z, X, b, cost, gb):
    """Z <- δ3 in place for the decoder and loss ``kind``; cost += data terms, gb += Σ δ3."""
    if kind == SIGMOID_SQUARED:
        _delta_out_sigmoid_squared(Z, X, b, cost, gb)
    elif kind == LINEAR_SQUARED:
        _delta_out_linear_squared(Z, X, b, cost, gb)
    else:
        _delta_out_sigmoid_cross_entropy(Z, X, b, cost, gb)


@njit(**JIT_OPTIONS)
def _delta_hidden(D, A, s, gb):
    """D <- (D + s) * A (1 - A) in place; gb += column sums."""
    n, k = D.shape
    for r in range(n):
        d = D[r]
        a = A[r]
        for j in range(k):
            d[j] = (d[j] + s[j]) * a[j] * (one(a[j]) - a[j])
        for j in range(k):          # apart, as in _bias_sigmoid_colsum
            gb[j] += d[j]


@parallel_kernel
def _encode(fn, X, W1, b1, A2, chunk, rho_parts, t0, t1):
    m = X.shape[0]
    n_threads = rho_parts.shape[0]
    for t in range(t0, t1):
        lo = t * m // n_threads
        hi = (t + 1) * m // n_threads
        acc = rho_parts[t]
        acc[:] = 0.0
        for c0 in range(lo, hi, chunk):
            c1 = min(c0 + chunk, hi)
            Ac = A2[c0:c1]
            gemm(fn, False, True, 1.0, X[c0:c1], W1, 0.0, Ac)
            _bias_sigmoid_colsum(Ac, b1, acc)


#: The output delta that :func:`_backprop` calls; each variant binds its own.
OUTPUT_DELTA = _delta_out_sigmoid_squared


@parallel_kernel
def _backprop(fn, X, A2, W2, b2, s, chunk, bufZ, bufD, gW1, gW2, gb1, gb2, cost, t0, t1):
    m = X.shape[0]
    n_threads = gW1.shape[0]
    for t in range(t0, t1):
        lo = t * m // n_threads
        hi = (t + 1) * m // n_threads
        g1 = gW1[t]
        g2 = gW2[t]
        g1[:] = 0.0
        g2[:] = 0.0
        gb1[t, :] = 0.0
        gb2[t, :] = 0.0
        cost[t, :] = 0.0
        for c0 in range(lo, hi, chunk):
            c1 = min(c0 + chunk, hi)
            n = c1 - c0
            Z = bufZ[t, :n]
            D = bufD[t, :n]
            Ac = A2[c0:c1]
            Xc = X[c0:c1]
            gemm(fn, False, True, 1.0, Ac, W2, 0.0, Z)          # Z3 = A2 W2ᵀ
            OUTPUT_DELTA(Z, Xc, b2, cost[t], gb2[t])
            gemm(fn, True, False, 1.0, Z, Ac, 1.0, g2)          # gW2 += δ3ᵀ A2
            gemm(fn, False, False, 1.0, Z, W2, 0.0, D)          # δ3 W2
            _delta_hidden(D, Ac, s, gb1[t])
            gemm(fn, True, False, 1.0, D, Xc, 1.0, g1)          # gW1 += δ2ᵀ X


#: One compiled driver per output layer, so that a run compiles only its own.
_BACKPROP = {
    SIGMOID_SQUARED: _backprop,
    LINEAR_SQUARED: _backprop.variant("linear_squared", OUTPUT_DELTA=_delta_out_linear_squared),
    SIGMOID_CROSS_ENTROPY: _backprop.variant("sigmoid_cross_entropy",
                                             OUTPUT_DELTA=_delta_out_sigmoid_cross_entropy),
}


class _Workspace:
    """Buffers of one call shape (see :func:`fastsae.kernels._parallel.workspace`)."""

    def __init__(self, key):
        m, v, h, dtype, n_threads, chunk = key
        self.A2 = np.empty((m, h), dtype)
        self.rho = np.empty((n_threads, h))
        self.Z = np.empty((n_threads, chunk, v), dtype)
        self.D = np.empty((n_threads, chunk, h), dtype)
        self.gW1 = np.empty((n_threads, h, v), dtype)
        self.gW2 = np.empty((n_threads, v, h), dtype)
        self.gb1 = np.empty((n_threads, h))
        self.gb2 = np.empty((n_threads, v))
        self.cost = np.empty((n_threads, v))


# -- bfloat16 -----------------------------------------------------------------------

#: Rows per chunk in the bfloat16 kernel (the float32 GEMM outputs of a chunk stay in L2).
BF16_CHUNK_ROWS = 512


@njit(**JIT_OPTIONS)
def _delta_out_bf16(kind, Z, X, b, cost, gb, O):
    """O (bfloat16 bits) <- δ3 from Z3 (float32) and X (bfloat16 bits); cost += data terms,
    gb += Σ δ3 (float32 sums of the unrounded values)."""
    n, k = Z.shape
    for r in range(n):
        z = Z[r]
        x = X[r]
        o = O[r]
        if kind == SIGMOID_SQUARED:
            for j in range(k):      # the sigmoids apart, as in _bias_sigmoid_colsum
                z[j] = sigmoid(z[j] + b[j])
            for j in range(k):
                a = z[j]
                d = a - from_bf16(x[j])
                cost[j] += d * d
                d = d * a * (np.float32(1.0) - a)
                o[j] = to_bf16(d)
                gb[j] += d
        elif kind == LINEAR_SQUARED:
            for j in range(k):
                d = z[j] + b[j] - from_bf16(x[j])
                cost[j] += d * d
                o[j] = to_bf16(d)
                gb[j] += d
        else:
            for j in range(k):
                zz = z[j] + b[j]
                xv = from_bf16(x[j])
                cost[j] += softplus(zz) - xv * zz
                d = sigmoid(zz) - xv
                o[j] = to_bf16(d)
                gb[j] += d


@njit(**JIT_OPTIONS)
def _delta_hidden_bf16(D, A, s, gb, O):
    """O (bfloat16 bits) <- (D + s) * A (1 - A), all float32; gb += column sums (unrounded)."""
    n, k = D.shape
    for r in range(n):
        d = D[r]
        a = A[r]
        o = O[r]
        for j in range(k):
            dd = (d[j] + s[j]) * a[j] * (np.float32(1.0) - a[j])
            o[j] = to_bf16(dd)
            gb[j] += dd


@njit(**JIT_OPTIONS)
def _flush(acc, part):
    """acc (float64) += part (float32, a chunk's sums); part <- 0."""
    for j in range(part.shape[0]):
        acc[j] += part[j]
        part[j] = 0.0


@njit(**JIT_OPTIONS)
def _sum_bias_sigmoid_colsum(P, b, A, colsum):
    """A <- σ(P[:, :h] + P[:, h:] + b) (the high and low parts' products summed);
    colsum += column sums of the result."""
    n, h = A.shape
    for r in range(n):
        p = P[r]
        a = A[r]
        for j in range(h):
            a[j] = sigmoid(p[j] + p[h + j] + b[j])
        for j in range(h):
            colsum[j] += a[j]


@parallel_kernel
def _encode_bf16(fn, fn_threads, X, W1hl, b1, A2, bufP, chunk, rho_parts, sums, t0, t1):
    m = X.shape[0]
    n_threads = rho_parts.shape[0]
    h = A2.shape[1]
    for t in range(t0, t1):
        previous = mkl_threads_local(fn_threads, 1)
        lo = t * m // n_threads
        hi = (t + 1) * m // n_threads
        acc = rho_parts[t]
        acc[:] = 0.0
        part = sums[t, 0, :h]
        part[:] = 0.0
        for c0 in range(lo, hi, chunk):
            c1 = min(c0 + chunk, hi)
            P = bufP[t, :c1 - c0]
            # X [W1hi; W1lo]ᵀ in one product: oneMKL's cost at this shape is mostly in
            # handling X's rows, so the low part's columns come almost free
            gemm_bf16(fn, False, True, 1.0, X[c0:c1], W1hl, 0.0, P)
            _sum_bias_sigmoid_colsum(P, b1, A2[c0:c1], part)
            _flush(acc, part)
        mkl_threads_local(fn_threads, previous)


@parallel_kernel
def _backprop_bf16(fn, fn_threads, X, A2, W2, b2, s, kind, chunk, bufA16, bufZ, bufZ16, bufD,
                   bufD16, gW1, gW2, gb1, gb2, cost, sums, t0, t1):
    m, v = X.shape
    h = A2.shape[1]
    n_threads = gW1.shape[0]
    for t in range(t0, t1):
        previous = mkl_threads_local(fn_threads, 1)
        lo = t * m // n_threads
        hi = (t + 1) * m // n_threads
        g1 = gW1[t]
        g2 = gW2[t]
        g1[:] = 0.0
        g2[:] = 0.0
        gb1[t, :] = 0.0
        gb2[t, :] = 0.0
        cost[t, :] = 0.0
        part_cost, part_gb2, part_gb1 = sums[t, 0, :v], sums[t, 1, :v], sums[t, 2, :h]
        part_cost[:] = 0.0
        part_gb2[:] = 0.0
        part_gb1[:] = 0.0
        for c0 in range(lo, hi, chunk):
            c1 = min(c0 + chunk, hi)
            n = c1 - c0
            Z = bufZ[t, :n]
            Z16 = bufZ16[t, :n]
            D = bufD[t, :n]
            D16 = bufD16[t, :n]
            A16 = bufA16[t, :n]
            Ac = A2[c0:c1]
            Xc = X[c0:c1]
            rows_to_bf16(Ac, A16)
            gemm_bf16(fn, False, True, 1.0, A16, W2, 0.0, Z)         # Z3 = A2 W2ᵀ
            _delta_out_bf16(kind, Z, Xc, b2, part_cost, part_gb2, Z16)
            gemm_bf16(fn, True, False, 1.0, Z16, A16, 1.0, g2)       # gW2 += δ3ᵀ A2
            gemm_bf16(fn, False, False, 1.0, Z16, W2, 0.0, D)        # δ3 W2
            _delta_hidden_bf16(D, Ac, s, part_gb1, D16)
            gemm_bf16(fn, True, False, 1.0, D16, Xc, 1.0, g1)        # gW1 += δ2ᵀ X
            _flush(cost[t], part_cost)
            _flush(gb2[t], part_gb2)
            _flush(gb1[t], part_gb1)
        mkl_threads_local(fn_threads, previous)


class _WorkspaceBF16:
    """Buffers of one bfloat16 call shape: bfloat16 arrays as uint16, GEMM outputs float32."""

    def __init__(self, key):
        m, v, h, _, n_threads, chunk = key
        self.A2 = np.empty((m, h), np.float32)
        self.A16 = np.empty((n_threads, chunk, h), np.uint16)
        self.W1 = np.empty((2 * h, v), np.uint16)      # high parts, then low parts
        self.P = np.empty((n_threads, chunk, 2 * h), np.float32)
        self.W2 = np.empty((v, h), np.uint16)
        self.rho = np.empty((n_threads, h))
        self.Z = np.empty((n_threads, chunk, v), np.float32)
        self.Z16 = np.empty((n_threads, chunk, v), np.uint16)
        self.D = np.empty((n_threads, chunk, h), np.float32)
        self.D16 = np.empty((n_threads, chunk, h), np.uint16)
        self.gW1 = np.empty((n_threads, h, v), np.float32)
        self.gW2 = np.empty((n_threads, v, h), np.float32)
        self.gb1 = np.empty((n_threads, h))
        self.gb2 = np.empty((n_threads, v))
        self.cost = np.empty((n_threads, v))
        self.sums = np.empty((n_threads, 3, max(v, h)), np.float32)   # a chunk's sums


def _passes_bf16(theta, X, v, h, sparsity, beta, kind, tied):
    """The two passes in bfloat16; returns (workspace, KL term)."""
    mkl = _mkl.library()
    X16 = np.ascontiguousarray(X).view(np.uint16)
    m = X16.shape[0]
    W1, W2, b1, b2 = unpack_sae(theta, v, h, tied)
    n_threads = threads_for(10.0 * m * v * h, m)
    chunk = min(BF16_CHUNK_ROWS, -(-m // n_threads))
    ws = workspace("sae bfloat16", (m, v, h, "bfloat16", n_threads, chunk), _WorkspaceBF16)
    split_to_bf16(W1, ws.W1[:h], ws.W1[h:])
    round_to_bf16(W2, ws.W2)
    b1c = b1.astype(np.float32)
    b2c = b2.astype(np.float32)
    _encode_bf16(n_threads)(mkl.gemm, mkl.threads_local, X16, ws.W1, b1c, ws.A2, ws.P, chunk,
                            ws.rho, ws.sums)
    kl, dkl = kl_sparsity(sparsity, ws.rho.sum(axis=0) / m)
    s = (beta * dkl).astype(np.float32)
    _backprop_bf16(n_threads)(mkl.gemm, mkl.threads_local, X16, ws.A2, ws.W2, b2c, s, kind,
                              chunk, ws.A16, ws.Z, ws.Z16, ws.D, ws.D16, ws.gW1, ws.gW2, ws.gb1,
                              ws.gb2, ws.cost, ws.sums)
    return ws, kl


#: At least this many rows per chunk while a buffer of them stays within
#: MIN_CHUNK_BUFFER_BYTES (else 128): the chunk's GEMMs need a few hundred rows
#: to run near the BLAS rate. Measured on 2 Zen 5 cores, 256 rows against 128 was
#: 1-5 % faster at every shape tried ((64, 25, 10,000) float64; (512, 256, 5,000
#: and 50,000), (1280, 200, 2,700) and (1024, 1024, 4,000) float32); 512 was
#: faster on some and slower on others.
MIN_CHUNK_ROWS = 256
MIN_CHUNK_BUFFER_BYTES = 2 * 1024 * 1024


def chunk_rows(n_visible, itemsize, n_hidden=0):
    """Rows per chunk: enough for efficient GEMMs, small enough for cache (the per-thread
    buffers hold ``rows x max(n_visible, n_hidden)``)."""
    row_bytes = max(n_visible, n_hidden) * itemsize
    floor = MIN_CHUNK_ROWS if MIN_CHUNK_ROWS * row_bytes <= MIN_CHUNK_BUFFER_BYTES else 128
    return int(min(max(SAE_CHUNK_BYTES // row_bytes, floor), 2048))


def sae_cost_grad(theta, X, n_visible, n_hidden, *, sparsity, beta, weight_decay,
                  decoder="sigmoid", loss="squared", tied=False):
    """Sparse autoencoder cost and gradient, Numba backend.

    Same signature, objective and results as
    :func:`fastsae.reference.sae_cost_grad` (see there); computes in
    ``X.dtype`` (bfloat16: oneMKL's bfloat16 GEMM with float32 accumulation,
    float32 elementwise work; needs the extra ``fastsae-audio[mkl]``), returns
    ``(float, float64 gradient)``.
    """
    check_sae_options(theta, X, n_visible, n_hidden, sparsity, beta, weight_decay,
                      decoder, loss, tied, bfloat16=True)
    m, v, h = X.shape[0], n_visible, n_hidden
    kind = (SIGMOID_CROSS_ENTROPY if loss == "cross_entropy"
            else LINEAR_SQUARED if decoder == "linear" else SIGMOID_SQUARED)
    if is_bfloat16(X.dtype):
        W1, W2, _, _ = unpack_sae(theta, v, h, tied)
        ws, kl = _passes_bf16(theta, X, v, h, sparsity, beta, kind, tied)
        decay = sumsq(W1) + sumsq(W2)              # of the float64 parameters
        return _finish(ws, theta, W1, W2, m, kind, weight_decay, decay, beta * kl, tied)

    dt = X.dtype
    X = np.ascontiguousarray(X)
    W1, W2, b1, b2 = unpack_sae(theta, v, h, tied)
    W1c = np.ascontiguousarray(W1, dtype=dt)
    W2c = np.ascontiguousarray(W2, dtype=dt)
    b1c = b1.astype(dt)
    b2c = b2.astype(dt)

    n_threads = threads_for(10.0 * m * v * h, m)
    chunk = min(chunk_rows(v, dt.itemsize, h), -(-m // n_threads))     # as in stacked.py
    ws = workspace("sae", (m, v, h, dt, n_threads, chunk), _Workspace)
    fn = gemm_address(dt)
    with scipy_blas_single_thread():
        _encode(n_threads)(fn, X, W1c, b1c, ws.A2, chunk, ws.rho)
        rho_hat = ws.rho.sum(axis=0) / m
        kl, dkl = kl_sparsity(sparsity, rho_hat)
        s = (beta * dkl).astype(dt)
        _BACKPROP[kind](n_threads)(fn, X, ws.A2, W2c, b2c, s, chunk, ws.Z, ws.D,
                                   ws.gW1, ws.gW2, ws.gb1, ws.gb2, ws.cost)
    return _finish(ws, theta, W1, W2, m, kind, weight_decay, sumsq(W1c) + sumsq(W2c),
                   beta * kl, tied)


def _finish(ws, theta, W1, W2, m, kind, weight_decay, decay, sparsity_term, tied):
    """Cost and packed float64 gradient from the per-thread partial sums in ``ws``."""
    h, v = W1.shape
    data = ws.cost.sum()
    data = data / m if kind == SIGMOID_CROSS_ENTROPY else 0.5 * data / m
    gW1 = ws.gW1.sum(axis=0, dtype=np.float64) / m + weight_decay * W1
    gW2 = ws.gW2.sum(axis=0, dtype=np.float64) / m + weight_decay * W2
    gb1 = ws.gb1.sum(axis=0) / m
    gb2 = ws.gb2.sum(axis=0) / m
    cost = data + 0.5 * weight_decay * decay + sparsity_term
    return float(cost), pack_sae_grad(gW1, gW2, gb1, gb2, tied)
