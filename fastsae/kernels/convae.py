"""Numba kernel for the convolutional sparse autoencoder (twin of
:func:`fastsae.reference.convae.conv_ae_cost_grad`).

Threads take disjoint, contiguous sets of images (thread shares,
each with its own buffers); per image, with ``P = oh·ow`` output positions
and ``CK = C·ph·pw`` filter offsets:

1. ``Q = im2col(X_n)`` (CK+1 × P): one row per offset ``(c, a, b)``, one
   column per position, and a last row of ones;
2. ``A = σ([W | b] Q)`` (K × P, one GEMM: the bias rides on the row of ones),
   and ``A' = A(1 − A)``;
3. ``X̂ = g(col2im(Vᵀ A) + c)`` (GEMM, then the scatter-add of the
   transposed convolution), turned in place into the output delta
   ``E = (X̂ − X) g'``, with the data cost and ``Σ E`` per channel;
4. ``R = im2col(E)`` (CK+1 × P, last row ones);
   ``[gV | ΣA] += A Rᵀ`` (GEMM: the decoder-filter gradient, and the sums of
   ``A`` that give ``ρ̂`` in its last column);
   ``dA = V R`` (GEMM, the adjoint of the decoder);
5. ``[[G1 | g1], [G2 | g2]] += [dA ⊙ A' ; A'] Qᵀ`` (one GEMM, 2K × CK+1).

**The sparsity term in one pass.** The hidden delta is
``δ = (dA + s) ⊙ A'`` with ``s_k = β KL'(ρ̂_k) / P``, but ``ρ̂`` is only known
after every image is encoded. Rather than two passes (encode everything
first, then backpropagate: either ``N·K·P`` stored activations or the
encoder GEMM and im2col done twice), the pass accumulates the sufficient
statistics ``G1 = Σ (dA ⊙ A') Qᵀ`` and ``G2 = Σ A' Qᵀ`` (and the bias
column of each), and the encoder gradient is assembled at the end as
``gW = G1 + diag(s) G2``. The cost is ``K·CK·P`` more multiply-adds per image
(the extra rows of step 5), the same as the second encoder GEMM of the
two-pass scheme, with no ``(N × K × P)`` storage and one im2col of ``X``.

Each per-image GEMM result is added into float64 per-thread accumulators
(``O(K·CK)`` per image, negligible next to the ``O(K·CK·P)`` GEMMs), so
float32 runs sum over images in float64; the partial gradients of the
threads are merged once. GEMMs are BLAS called from inside the Numba
threads (:mod:`fastsae.kernels._blas`), with that BLAS kept to one thread.

Buffers are per image (``(CK+1) × P`` for im2col), so very long single
inputs use memory in proportion to their length; crop spectrograms into
equal pieces (:func:`fastsae.convae.crop_spectrograms`) for training.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..core.config import JIT_OPTIONS
from ..core.args import check_conv_ae_args
from ..core.bfloat16 import is_bfloat16
from ..core.layouts import unpack_conv_ae
from ..core.numerics import kl_sparsity
from ..core.threads import scipy_blas_single_thread
from ._blas import gemm, gemm_address, keep_threads
from ._parallel import parallel_kernel, threads_for, workspace
from ._math import BF16_ONE, one, rows_to_bf16, sigmoid, split_to_bf16, sumsq
from ._mkl import gemm_bf16, mkl_threads_local
from . import _mkl


@njit(**JIT_OPTIONS)
def _im2col(img, ph, pw, oh, ow, Q):
    """``Q[(c·ph + a)·pw + b, i·ow + j] = img[c, (i + a)·W + j + b]`` for one image.

    ``img`` is ``(C, H·W)`` (rows of the image laid end to end); only the
    first ``C·ph·pw`` rows of ``Q`` are written.
    """
    C = img.shape[0]
    Wd = ow + pw - 1
    for c in range(C):
        src = img[c]
        for a in range(ph):
            for b in range(pw):
                dst = Q[(c * ph + a) * pw + b]
                for i in range(oh):
                    s0 = (i + a) * Wd + b
                    d0 = i * ow
                    for j in range(ow):
                        dst[d0 + j] = src[s0 + j]


@njit(**JIT_OPTIONS)
def _col2im(Qc, ph, pw, oh, ow, Y):
    """The adjoint of im2col: ``Y = 0``, then
    ``Y[c, (i + a)·W + j + b] += Qc[(c·ph + a)·pw + b, i·ow + j]``."""
    C = Y.shape[0]
    Wd = ow + pw - 1
    for c in range(C):
        dst = Y[c]
        for q in range(dst.shape[0]):
            dst[q] = 0
        for a in range(ph):
            for b in range(pw):
                src = Qc[(c * ph + a) * pw + b]
                for i in range(oh):
                    d0 = (i + a) * Wd + b
                    s0 = i * ow
                    for j in range(ow):
                        dst[d0 + j] += src[s0 + j]


@njit(**JIT_OPTIONS)
def _activate_hidden(A, D, K):
    """``A <- σ(A)`` in place and ``D[K:2K] <- A(1 − A)``."""
    for k in range(K):
        a = A[k]
        d = D[K + k]
        for p in range(a.shape[0]):
            v = sigmoid(a[p])
            a[p] = v
            d[p] = v * (one(v) - v)


@njit(**JIT_OPTIONS)
def _output_delta(Y, X, cb, sigmoid_out, cost, gc):
    """``Y <- E = (g(Y + c) − X) g'`` in place; ``cost += (g − X)²`` and ``gc += E``
    elementwise (vector accumulators, summed once at the end)."""
    for ch in range(Y.shape[0]):
        y = Y[ch]
        x = X[ch]
        cc = cb[ch]
        cv = cost[ch]
        gv = gc[ch]
        if sigmoid_out:
            for q in range(y.shape[0]):
                h = sigmoid(y[q] + cc)
                d = h - x[q]
                cv[q] += d * d
                e = d * h * (one(h) - h)
                y[q] = e
                gv[q] += e
        else:
            for q in range(y.shape[0]):
                d = y[q] + cc - x[q]
                cv[q] += d * d
                y[q] = d
                gv[q] += d


@njit(**JIT_OPTIONS)
def _hidden_delta(D, K):
    """``D[:K] <- dA ⊙ A'`` (``A'`` in ``D[K:2K]``)."""
    for k in range(K):
        d = D[k]
        ap = D[K + k]
        for p in range(d.shape[0]):
            d[p] = d[p] * ap[p]


@njit(**JIT_OPTIONS)
def _accumulate(acc, T):
    """``acc += T`` (acc float64)."""
    for r in range(T.shape[0]):
        a = acc[r]
        t = T[r]
        for q in range(t.shape[0]):
            a[q] += t[q]


@njit(**JIT_OPTIONS)
def _same(src, dst):
    """What the float driver binds for ROUND: its GEMM operands are the buffers themselves."""


@njit(**JIT_OPTIONS)
def _no_gemm(fn, trans_a, trans_b, alpha, A, B, beta, C):
    """What the float driver binds for GEMM_LO: its weights are whole in one operand."""


#: How :func:`_conv_ae_pass` makes a GEMM operand of a float buffer (``ROUND(src, dst)``),
#: which GEMM it calls, the GEMM that adds the weights' low parts (``GEMM_LO``) and how
#: it holds the GEMMs to one thread per share; the bfloat16 variant binds rounding to
#: bfloat16 bits and oneMKL's bfloat16 GEMM for both.
ROUND = _same
GEMM = gemm
GEMM_LO = _no_gemm
GEMM_THREADS = keep_threads


@parallel_kernel
def _conv_ae_pass(fn, fn_threads, X, X16, Wext, Vmat, Wlo, Vlo, cb, ph, pw, oh, ow,
                  sigmoid_out, Q, R, Rf, A, A16, D, D16, Y, Y16, T1, T2, gW, gV, cost, gc,
                  t0, t1):
    # Q, R, A16, D16, Y16: GEMM operands (the float buffers themselves in the float
    # driver; bfloat16 bits in the bfloat16 one); Rf receives Vᵀ A (R itself in the
    # float driver); the last rows of Q and R hold ones, set by the caller. Wlo, Vlo:
    # the weights' low parts in the bfloat16 driver (weights = Wext + Wlo), unused in
    # the float one.
    N = X.shape[0]
    n_threads = Q.shape[0]
    K, CK = Vmat.shape
    for t in range(t0, t1):
        previous = GEMM_THREADS(fn_threads, 1)
        lo = t * N // n_threads
        hi = (t + 1) * N // n_threads
        Qt = Q[t]
        Rt = R[t]
        Rft = Rf[t]
        At = A[t]
        A16t = A16[t]
        Dt = D[t]
        D16t = D16[t]
        Yt = Y[t]
        Y16t = Y16[t]
        T1t = T1[t]
        T2t = T2[t]
        gW[t] = 0.0
        gV[t] = 0.0
        cost[t] = 0.0
        gc[t] = 0.0
        for n in range(lo, hi):
            _im2col(X16[n], ph, pw, oh, ow, Qt)
            GEMM(fn, False, False, 1.0, Wext, Qt, 0.0, At)              # Z = [W | b] [Q; 1]
            GEMM_LO(fn, False, False, 1.0, Wlo, Qt, 1.0, At)
            _activate_hidden(At, Dt, K)
            ROUND(At, A16t)
            GEMM(fn, True, False, 1.0, Vmat, A16t, 0.0, Rft[:CK])      # Vᵀ A
            GEMM_LO(fn, True, False, 1.0, Vlo, A16t, 1.0, Rft[:CK])
            _col2im(Rft, ph, pw, oh, ow, Yt)                             # + transposed conv
            _output_delta(Yt, X[n], cb, sigmoid_out, cost[t], gc[t])     # Y <- E
            ROUND(Yt, Y16t)
            _im2col(Y16t, ph, pw, oh, ow, Rt)                            # R = [im2col(E); 1]
            GEMM(fn, False, True, 1.0, A16t, Rt, 0.0, T2t)             # [A Rᵀ | Σ_p A]
            _accumulate(gV[t], T2t)
            GEMM(fn, False, False, 1.0, Vmat, Rt[:CK], 0.0, Dt[:K])    # dA = V R
            GEMM_LO(fn, False, False, 1.0, Vlo, Rt[:CK], 1.0, Dt[:K])
            _hidden_delta(Dt, K)
            ROUND(Dt, D16t)
            GEMM(fn, False, True, 1.0, D16t, Qt, 0.0, T1t)             # [dA⊙A'; A'] [Q; 1]ᵀ
            _accumulate(gW[t], T1t)
        GEMM_THREADS(fn_threads, previous)


#: bfloat16: the GEMM operands as bfloat16 bits (uint16), rounded from the float32
#: activations and deltas, the weights as two bfloat16 parts (high and low: about 16
#: significant bits, so three of the five products take two GEMMs); float32 GEMM
#: outputs and elementwise work.
_conv_ae_pass_bf16 = _conv_ae_pass.variant("bf16", ROUND=rows_to_bf16, GEMM=gemm_bf16,
                                           GEMM_LO=gemm_bf16, GEMM_THREADS=mkl_threads_local)


def split_bf16(M):
    """float32 ``M`` (2-D) as two bfloat16 arrays (uint16 bits) ``hi + lo``: ``hi`` is ``M``
    rounded, ``lo`` the rest rounded (their float32 sum has about 16 significant bits)."""
    M = np.ascontiguousarray(M, dtype=np.float32)
    hi = np.empty(M.shape, np.uint16)
    lo = np.empty(M.shape, np.uint16)
    split_to_bf16(M, hi, lo)
    return hi, lo


class _Workspace:
    """Per-thread buffers reused across calls with the same shapes (bfloat16: the GEMM
    operands as uint16 bits beside the float32 buffers)."""

    def __init__(self, key):
        N, C, H, Wd, K, ph, pw, dtype, n_threads = key
        oh, ow = H - ph + 1, Wd - pw + 1
        P, CK = oh * ow, C * ph * pw
        bf16 = dtype == "bfloat16"
        dt = np.dtype(np.float32 if bf16 else dtype)
        op = np.uint16 if bf16 else dt             # the dtype of GEMM operands
        one = BF16_ONE if bf16 else 1
        self.Q = np.empty((n_threads, CK + 1, P), op)
        self.R = np.empty((n_threads, CK + 1, P), op)
        self.Q[:, CK] = one                        # the rows of ones (never overwritten)
        self.R[:, CK] = one
        self.A = np.empty((n_threads, K, P), dt)
        self.D = np.empty((n_threads, 2 * K, P), dt)
        self.Y = np.empty((n_threads, C, H * Wd), dt)
        if bf16:
            self.Rf = np.empty((n_threads, CK, P), dt)
            self.A16 = np.empty((n_threads, K, P), op)
            self.D16 = np.empty((n_threads, 2 * K, P), op)
            self.Y16 = np.empty((n_threads, C, H * Wd), op)
        else:
            self.Rf, self.A16, self.D16, self.Y16 = self.R, self.A, self.D, self.Y
        self.T1 = np.empty((n_threads, 2 * K, CK + 1), dt)
        self.T2 = np.empty((n_threads, K, CK + 1), dt)
        self.gW = np.empty((n_threads, 2 * K, CK + 1))
        self.gV = np.empty((n_threads, K, CK + 1))
        self.cost = np.empty((n_threads, C, H * Wd))
        self.gc = np.empty((n_threads, C, H * Wd))


def conv_ae_cost_grad(theta, X, n_filters, patch_shape, *, sparsity, beta, weight_decay,
                      decoder="sigmoid", tied=False):
    """Convolutional sparse autoencoder cost and gradient, Numba backend.

    Same signature, objective and results as
    :func:`fastsae.reference.convae.conv_ae_cost_grad` (see there; ``theta``
    packs ``W (K, C, ph, pw)``, ``V`` (absent when tied), ``b (K,)``,
    ``c (C,)``). Computes in ``X.dtype``; returns ``(float, float64 gradient)``.
    Threads split the images, so a call on fewer images than threads uses
    fewer threads.

    A bfloat16 ``X`` (``ml_dtypes.bfloat16``; the extra ``fastsae-audio[mkl]``)
    runs the GEMMs in oneMKL's bfloat16 GEMM: the activations ``A``, the
    output delta ``E`` and the rows ``[dA ⊙ A'; A']`` are rounded to
    bfloat16 as they become GEMM operands, and the weights (with the
    encoder's bias) are split into two bfloat16 parts, high and low, each
    product with them taking two GEMMs (one bfloat16 part alone moves the
    gradient by the Hessian times a 2⁻⁹ relative shift of every weight,
    which near an optimum outgrows the gradient: weights shared by every
    position make it large); everything else is float32 (the reference's
    bfloat16 twin computes the same).
    """
    K, (ph, pw) = check_conv_ae_args(theta, X, n_filters, patch_shape, sparsity, beta,
                                     weight_decay, decoder, tied, bfloat16=True)
    bf16 = is_bfloat16(X.dtype)
    dt = np.dtype(np.float32) if bf16 else X.dtype       # of the elementwise work
    N, C, H, Wd = X.shape
    oh, ow = H - ph + 1, Wd - pw + 1
    P, CK = oh * ow, C * ph * pw
    W, V, b, c = unpack_conv_ae(theta, K, C, (ph, pw), tied)
    Wext = np.empty((K, CK + 1), dt)
    Wext[:, :CK] = W.reshape(K, CK)
    Wext[:, CK] = b
    Vmat = np.ascontiguousarray(V.reshape(K, CK), dtype=dt)
    X = np.ascontiguousarray(X).reshape(N, C, H * Wd)

    n_threads = threads_for(12.0 * N * oh * ow * K * (CK + 1), N)
    ws = workspace("convae bfloat16" if bf16 else "convae",
                   (N, C, H, Wd, K, ph, pw, "bfloat16" if bf16 else dt, n_threads), _Workspace)
    if bf16:
        mkl = _mkl.library()
        W16, W16lo = split_bf16(Wext)
        V16, V16lo = split_bf16(Vmat)
        _conv_ae_pass_bf16(n_threads)(
            mkl.gemm, mkl.threads_local, X.astype(dt), X.view(np.uint16), W16, V16, W16lo, V16lo,
            c.astype(dt),
            ph, pw, oh, ow, decoder == "sigmoid", ws.Q, ws.R, ws.Rf, ws.A, ws.A16, ws.D, ws.D16,
            ws.Y, ws.Y16, ws.T1, ws.T2, ws.gW, ws.gV, ws.cost, ws.gc)
    else:
        with scipy_blas_single_thread():
            _conv_ae_pass(n_threads)(
                gemm_address(dt), 0, X, X, Wext, Vmat, Wext, Vmat, c.astype(dt), ph, pw, oh, ow,
                decoder == "sigmoid", ws.Q, ws.R, ws.Rf, ws.A, ws.A16, ws.D, ws.D16, ws.Y, ws.Y16,
                ws.T1, ws.T2, ws.gW, ws.gV, ws.cost, ws.gc)

    G = ws.gW.sum(axis=0)                      # [[G1 | g1], [G2 | g2]]
    GV = ws.gV.sum(axis=0)                     # [gV·N | Σ A]
    rho_hat = GV[:, CK] / (N * P)
    kl, dkl = kl_sparsity(sparsity, rho_hat)
    s = beta * dkl / P
    gWb = (G[:K] + s[:, None] * G[K:]) / N     # δ = (dA + s) ⊙ A'
    # the same rounding to X.dtype as the reference applies to the weights (bfloat16:
    # the decay uses the float64 parameters)
    W_dt = W if bf16 else W.astype(dt).astype(np.float64)
    V_dt = V if bf16 else V.astype(dt).astype(np.float64)
    gW = gWb[:, :CK] + weight_decay * W_dt.reshape(K, CK)
    gV = GV[:, :CK] / N + weight_decay * V_dt.reshape(K, CK)
    gb = gWb[:, CK]
    gc = ws.gc.sum(axis=(0, 2)) / N
    data = 0.5 * ws.cost.sum() / N
    cost = data + 0.5 * weight_decay * (sumsq(W_dt) + sumsq(V_dt)) + beta * kl

    grad = np.empty(theta.size)
    nW = K * CK
    if tied:
        grad[:nW] = (gW + gV).ravel()
        off = nW
    else:
        grad[:nW] = gW.ravel()
        grad[nW:2 * nW] = gV.ravel()
        off = 2 * nW
    grad[off:off + K] = gb
    grad[off + K:] = gc
    return float(cost), grad


__all__ = ["conv_ae_cost_grad"]
