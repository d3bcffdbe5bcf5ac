"""Numba kernels for the convolutional sparse autoencoder and the convolutional
network (twins of :func:`fastsae._reference_convae.conv_ae_cost_grad` and
:func:`fastsae._reference_convae.conv_net_cost_grad`; the network's kernel is
described at its section below).

**conv_ae_cost_grad.** Threads take disjoint, contiguous sets of images (``prange`` over threads,
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
threads are merged once. GEMMs are SciPy's BLAS called from inside the Numba
threads (:mod:`fastsae.kernels._blas`), with that BLAS kept to one thread.

Buffers are per image (``(CK+1) × P`` for im2col), so very long single
inputs use memory in proportion to their length; crop spectrograms into
equal pieces (:func:`fastsae.convae.crop_spectrograms`) for training.
"""
from __future__ import annotations

import threading

import numpy as np
from numba import njit, prange

from .._config import JIT_OPTIONS
from .._reference_convae import (_kl_sparsity, check_conv_ae_args, check_conv_net_args,
                                 unpack_conv_ae)
from .._threads import scipy_blas_single_thread
from ._blas import gemm, gemm_address
from ._parallel import parallel_kernel, threads_for
from ._math import one, sigmoid, sumsq


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


@parallel_kernel
def _conv_ae_pass(fn, X, Wext, Vmat, cb, ph, pw, oh, ow, sigmoid_out,
                  Q, R, A, D, Y, T1, T2, gW, gV, cost, gc):
    N = X.shape[0]
    n_threads = Q.shape[0]
    K, CK = Vmat.shape
    for t in prange(n_threads):
        lo = t * N // n_threads
        hi = (t + 1) * N // n_threads
        Qt = Q[t]
        Rt = R[t]
        At = A[t]
        Dt = D[t]
        Yt = Y[t]
        T1t = T1[t]
        T2t = T2[t]
        ones_q = Qt[CK]
        ones_r = Rt[CK]
        for p in range(ones_q.shape[0]):
            ones_q[p] = 1
            ones_r[p] = 1
        gW[t] = 0.0
        gV[t] = 0.0
        cost[t] = 0.0
        gc[t] = 0.0
        for n in range(lo, hi):
            Xn = X[n]
            _im2col(Xn, ph, pw, oh, ow, Qt)
            gemm(fn, False, False, 1.0, Wext, Qt, 0.0, At)              # Z = [W | b] [Q; 1]
            _activate_hidden(At, Dt, K)
            gemm(fn, True, False, 1.0, Vmat, At, 0.0, Rt[:CK])         # Vᵀ A
            _col2im(Rt, ph, pw, oh, ow, Yt)                              # + transposed conv
            _output_delta(Yt, Xn, cb, sigmoid_out, cost[t], gc[t])       # Y <- E
            _im2col(Yt, ph, pw, oh, ow, Rt)                              # R = [im2col(E); 1]
            gemm(fn, False, True, 1.0, At, Rt, 0.0, T2t)                # [A Rᵀ | Σ_p A]
            _accumulate(gV[t], T2t)
            gemm(fn, False, False, 1.0, Vmat, Rt[:CK], 0.0, Dt[:K])     # dA = V R
            _hidden_delta(Dt, K)
            gemm(fn, False, True, 1.0, Dt, Qt, 0.0, T1t)                # [dA⊙A'; A'] [Q; 1]ᵀ
            _accumulate(gW[t], T1t)


class _Workspace:
    """Per-thread buffers reused across calls with the same shapes."""

    def __init__(self, key):
        N, C, H, Wd, K, ph, pw, dtype, n_threads = key
        self.key = key
        oh, ow = H - ph + 1, Wd - pw + 1
        P, CK = oh * ow, C * ph * pw
        self.Q = np.empty((n_threads, CK + 1, P), dtype)
        self.R = np.empty((n_threads, CK + 1, P), dtype)
        self.A = np.empty((n_threads, K, P), dtype)
        self.D = np.empty((n_threads, 2 * K, P), dtype)
        self.Y = np.empty((n_threads, C, H * Wd), dtype)
        self.T1 = np.empty((n_threads, 2 * K, CK + 1), dtype)
        self.T2 = np.empty((n_threads, K, CK + 1), dtype)
        self.gW = np.empty((n_threads, 2 * K, CK + 1))
        self.gV = np.empty((n_threads, K, CK + 1))
        self.cost = np.empty((n_threads, C, H * Wd))
        self.gc = np.empty((n_threads, C, H * Wd))


_local = threading.local()


def _workspace(key) -> _Workspace:
    ws = getattr(_local, "convae", None)
    if ws is None or ws.key != key:
        ws = _local.convae = _Workspace(key)
    return ws


def clear_workspace():
    """Free the buffers kept between calls (done by the estimators after ``fit``)."""
    _local.convae = None
    _local.convnet = None


def conv_ae_cost_grad(theta, X, n_filters, patch_shape, *, sparsity, beta, weight_decay,
                      decoder="sigmoid", tied=False):
    """Convolutional sparse autoencoder cost and gradient, Numba backend.

    Same signature, objective and results as
    :func:`fastsae._reference_convae.conv_ae_cost_grad` (see there; ``theta``
    packs ``W (K, C, ph, pw)``, ``V`` (absent when tied), ``b (K,)``,
    ``c (C,)``). Computes in ``X.dtype``; returns ``(float, float64 gradient)``.
    Threads split the images, so a call on fewer images than threads uses
    fewer threads.
    """
    K, (ph, pw) = check_conv_ae_args(theta, X, n_filters, patch_shape, sparsity, beta,
                                     weight_decay, decoder, tied)
    dt = X.dtype
    N, C, H, Wd = X.shape
    oh, ow = H - ph + 1, Wd - pw + 1
    P, CK = oh * ow, C * ph * pw
    W, V, b, c = unpack_conv_ae(theta, K, C, (ph, pw), tied)
    Wext = np.empty((K, CK + 1), dt)
    Wext[:, :CK] = W.reshape(K, CK)
    Wext[:, CK] = b
    Vmat = np.ascontiguousarray(V.reshape(K, CK), dtype=dt)
    Xf = np.ascontiguousarray(X).reshape(N, C, H * Wd)

    n_threads = threads_for(12.0 * N * oh * ow * K * (CK + 1), N)
    ws = _workspace((N, C, H, Wd, K, ph, pw, dt, n_threads))
    with scipy_blas_single_thread():
        _conv_ae_pass(n_threads)(gemm_address(dt), Xf, Wext, Vmat, c.astype(dt), ph, pw, oh, ow,
                      decoder == "sigmoid", ws.Q, ws.R, ws.A, ws.D, ws.Y, ws.T1, ws.T2,
                      ws.gW, ws.gV, ws.cost, ws.gc)

    G = ws.gW.sum(axis=0)                      # [[G1 | g1], [G2 | g2]]
    GV = ws.gV.sum(axis=0)                     # [gV·N | Σ A]
    rho_hat = GV[:, CK] / (N * P)
    kl, dkl = _kl_sparsity(sparsity, rho_hat)
    s = beta * dkl / P
    gWb = (G[:K] + s[:, None] * G[K:]) / N     # δ = (dA + s) ⊙ A'
    # the same rounding to X.dtype as the reference applies to the weights
    W_dt = W.astype(dt).astype(np.float64)
    V_dt = V.astype(dt).astype(np.float64)
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


# ---------------------------------------------------------------------------
# Convolutional network (fine-tuning): sigmoid conv layers, pooling, softmax
# ---------------------------------------------------------------------------
#
# No term couples the images (no sparsity penalty), so one parallel pass does
# everything: each thread takes a contiguous share of the images and runs each
# image forward through every layer (im2col, GEMM, bias and sigmoid, pooling),
# through the softmax on top (a few hundred flops per class, plain loops), and
# back (pooling backward, δ = dA ⊙ A', [gW | gb] += δ [Q; 1]ᵀ by GEMM, and
# for the layers above the first Wᵀδ by GEMM then col2im, which is the
# gradient with respect to the pooled maps below). The layers have different
# shapes, so every per-thread buffer is one flat array and the kernel takes
# views at offsets computed once on the host (as the stacked kernel does).

# columns of the per-layer metadata table
(_K, _C, _PH, _PW, _HIN, _WIN, _OH, _OW, _R, _S, _MODE, _WOFF, _BOFF, _QOFF, _AOFF, _POFF,
 _DPOFF, _TOFF, _IOFF, _ROFF, _COFF) = range(21)
_N_META = 21
MEAN, MAX = 0, 1


@njit(**JIT_OPTIONS)
def _bias_sigmoid_rows(A, b):
    """A <- σ(A + b[:, None]) in place."""
    for k in range(A.shape[0]):
        a = A[k]
        bk = b[k]
        for p in range(a.shape[0]):
            a[p] = sigmoid(a[p] + bk)


@njit(**JIT_OPTIONS)
def _pool_forward(A, ow, rs, re, cs, ce, mode, out, arg):
    """``out[k, r·S + s]`` = mean or max of ``A[k]`` (an ``oh × ow`` map, flat) over
    region ``(r, s)``; ``arg`` gets the flat index of each maximum (the first one)."""
    R = rs.shape[0]
    S = cs.shape[0]
    for k in range(A.shape[0]):
        a = A[k]
        o = out[k]
        g = arg[k]
        for r in range(R):
            for s in range(S):
                if mode == MEAN:
                    v = a[0] * 0
                    for i in range(rs[r], re[r]):
                        for j in range(cs[s], ce[s]):
                            v += a[i * ow + j]
                    o[r * S + s] = v / ((re[r] - rs[r]) * (ce[s] - cs[s]))
                else:
                    best = rs[r] * ow + cs[s]
                    v = a[best]
                    for i in range(rs[r], re[r]):
                        for j in range(cs[s], ce[s]):
                            q = i * ow + j
                            if a[q] > v:
                                v = a[q]
                                best = q
                    o[r * S + s] = v
                    g[r * S + s] = best


@njit(**JIT_OPTIONS)
def _pool_sigmoid_backward(dP, A, ow, rs, re, cs, ce, mode, arg, dA):
    """``A <- δ = pool_backward(dP) ⊙ A(1 − A)`` in place (``dA`` is scratch)."""
    R = rs.shape[0]
    S = cs.shape[0]
    for k in range(A.shape[0]):
        d = dA[k]
        for p in range(d.shape[0]):
            d[p] = 0
        g = dP[k]
        if mode == MEAN:
            for r in range(R):
                for s in range(S):
                    v = g[r * S + s] / ((re[r] - rs[r]) * (ce[s] - cs[s]))
                    for i in range(rs[r], re[r]):
                        for j in range(cs[s], ce[s]):
                            d[i * ow + j] += v
        else:
            idx = arg[k]
            for q in range(R * S):
                d[idx[q]] += g[q]
        a = A[k]
        for p in range(a.shape[0]):
            a[p] = d[p] * a[p] * (one(a[p]) - a[p])


@njit(**JIT_OPTIONS)
def _accumulate_wb(gw, woff, boff, T):
    """``gw[W_l] += T[:, :-1]``, ``gw[b_l] += T[:, -1]`` (gw float64, flat)."""
    K, n = T.shape
    CK = n - 1
    for k in range(K):
        t = T[k]
        base = woff + k * CK
        for q in range(CK):
            gw[base + q] += t[q]
        gw[boff + k] += t[CK]


@njit(**JIT_OPTIONS)
def _softmax_top(w, F, y, n_classes, z, gw, dF):
    """Softmax on one image's features ``F``: returns ``−log p(y | F)``; accumulates
    ``gWs += (p − e_y) Fᵀ``, ``gbs += p − e_y``; writes ``dF = Wsᵀ (p − e_y)``."""
    nf = F.shape[0]
    for c in range(n_classes):
        row = w[c * nf:(c + 1) * nf]
        acc = 0.0
        for j in range(nf):
            acc += row[j] * F[j]
        z[c] = acc + w[n_classes * nf + c]
    mx = z[0]
    for c in range(n_classes):
        mx = max(mx, z[c])
    tot = 0.0
    for c in range(n_classes):
        tot += np.exp(z[c] - mx)
    nll = np.log(tot) - (z[y] - mx)
    for j in range(nf):
        dF[j] = 0
    for c in range(n_classes):
        d = np.exp(z[c] - mx) / tot - (1.0 if c == y else 0.0)
        gw[n_classes * nf + c] += d
        row = w[c * nf:(c + 1) * nf]
        grow = gw[c * nf:(c + 1) * nf]
        for j in range(nf):
            grow[j] += d * F[j]
            dF[j] += d * row[j]
    return nll


@njit(**JIT_OPTIONS)
def _net_image(fn, Xn, yn, w, meta, bounds, n_classes, da_off, dcol_off, buf, ibuf, z, gw):
    """Forward and backward for one image; returns its −log p(y | x).

    ``meta[l]`` holds layer ``l``'s shapes and its offsets into ``w`` (the
    weights, in theta's layout), ``buf`` (the image's per-layer buffers),
    ``ibuf`` (argmax of max pooling) and ``bounds`` (pooling regions).
    """
    L = meta.shape[0]
    for l in range(L):
        m = meta[l]
        K, C, ph, pw = m[_K], m[_C], m[_PH], m[_PW]
        oh, ow, R, S = m[_OH], m[_OW], m[_R], m[_S]
        P, CK = oh * ow, C * ph * pw
        if l == 0:
            src = Xn
        else:
            q0 = meta[l - 1, _POFF]
            src = buf[q0:q0 + C * m[_HIN] * m[_WIN]].reshape((C, m[_HIN] * m[_WIN]))
        Q = buf[m[_QOFF]:m[_QOFF] + (CK + 1) * P].reshape((CK + 1, P))
        _im2col(src, ph, pw, oh, ow, Q)
        ones = Q[CK]
        for p in range(P):
            ones[p] = 1
        A = buf[m[_AOFF]:m[_AOFF] + K * P].reshape((K, P))
        W = w[m[_WOFF]:m[_WOFF] + K * CK].reshape((K, CK))
        Qtop = buf[m[_QOFF]:m[_QOFF] + CK * P].reshape((CK, P))
        gemm(fn, False, False, 1.0, W, Qtop, 0.0, A)                 # Z = W Q
        _bias_sigmoid_rows(A, w[m[_BOFF]:m[_BOFF] + K])
        r0, c0 = m[_ROFF], m[_COFF]
        _pool_forward(A, ow, bounds[r0:r0 + R], bounds[r0 + R:r0 + 2 * R],
                      bounds[c0:c0 + S], bounds[c0 + S:c0 + 2 * S], m[_MODE],
                      buf[m[_POFF]:m[_POFF] + K * R * S].reshape((K, R * S)),
                      ibuf[m[_IOFF]:m[_IOFF] + K * R * S].reshape((K, R * S)))

    top = meta[L - 1]
    nf = top[_K] * top[_R] * top[_S]
    nll = _softmax_top(w, buf[top[_POFF]:top[_POFF] + nf], yn, n_classes, z, gw,
                       buf[top[_DPOFF]:top[_DPOFF] + nf])

    for l in range(L - 1, -1, -1):
        m = meta[l]
        K, C, ph, pw = m[_K], m[_C], m[_PH], m[_PW]
        oh, ow, R, S = m[_OH], m[_OW], m[_R], m[_S]
        P, CK = oh * ow, C * ph * pw
        A = buf[m[_AOFF]:m[_AOFF] + K * P].reshape((K, P))
        r0, c0 = m[_ROFF], m[_COFF]
        _pool_sigmoid_backward(buf[m[_DPOFF]:m[_DPOFF] + K * R * S].reshape((K, R * S)), A, ow,
                               bounds[r0:r0 + R], bounds[r0 + R:r0 + 2 * R],
                               bounds[c0:c0 + S], bounds[c0 + S:c0 + 2 * S], m[_MODE],
                               ibuf[m[_IOFF]:m[_IOFF] + K * R * S].reshape((K, R * S)),
                               buf[da_off:da_off + K * P].reshape((K, P)))   # A <- δ
        Q = buf[m[_QOFF]:m[_QOFF] + (CK + 1) * P].reshape((CK + 1, P))
        T = buf[m[_TOFF]:m[_TOFF] + K * (CK + 1)].reshape((K, CK + 1))
        gemm(fn, False, True, 1.0, A, Q, 0.0, T)                     # [δ Qᵀ | Σ δ]
        _accumulate_wb(gw, m[_WOFF], m[_BOFF], T)
        if l > 0:
            W = w[m[_WOFF]:m[_WOFF] + K * CK].reshape((K, CK))
            dcol = buf[dcol_off:dcol_off + CK * P].reshape((CK, P))
            gemm(fn, True, False, 1.0, W, A, 0.0, dcol)              # Wᵀ δ
            d0 = meta[l - 1, _DPOFF]
            _col2im(dcol, ph, pw, oh, ow,
                    buf[d0:d0 + C * m[_HIN] * m[_WIN]].reshape((C, m[_HIN] * m[_WIN])))
    return nll


@parallel_kernel
def _conv_net_pass(fn, X, y, w, meta, bounds, n_classes, da_off, dcol_off, buf, ibuf, z, gw,
                   nll):
    N = X.shape[0]
    n_threads = buf.shape[0]
    for t in prange(n_threads):
        lo = t * N // n_threads
        hi = (t + 1) * N // n_threads
        g = gw[t]
        g[:] = 0.0
        acc = 0.0
        for n in range(lo, hi):
            acc += _net_image(fn, X[n], y[n], w, meta, bounds, n_classes, da_off, dcol_off,
                              buf[t], ibuf[t], z[t], g)
        nll[t] = acc


def _net_tables(plan, n_features, n_classes):
    """Metadata table, region bounds and buffer sizes for :func:`_conv_net_pass`."""
    meta = np.zeros((len(plan), _N_META), np.int64)
    bounds = []
    pos_w = n_classes * n_features + n_classes          # the softmax comes first in theta
    pos_buf = pos_i = 0
    da = dcol = 0
    for l, step in enumerate(plan):
        K, C = step["n_filters"], step["n_channels"]
        ph, pw = step["patch_shape"]
        (H, W), (oh, ow), (R, S) = step["in_shape"], step["map_shape"], step["out_shape"]
        P, CK = oh * ow, C * ph * pw
        m = meta[l]
        m[[_K, _C, _PH, _PW, _HIN, _WIN, _OH, _OW, _R, _S]] = K, C, ph, pw, H, W, oh, ow, R, S
        m[_MODE] = MEAN if step["pool"] == "mean" else MAX
        m[_WOFF] = pos_w
        m[_BOFF] = pos_w + K * CK
        pos_w += K * CK + K
        for col, size in ((_QOFF, (CK + 1) * P), (_AOFF, K * P), (_POFF, K * R * S),
                          (_DPOFF, K * R * S), (_TOFF, K * (CK + 1))):
            m[col] = pos_buf
            pos_buf += size
        m[_IOFF] = pos_i
        pos_i += K * R * S
        m[_ROFF] = sum(len(b) for b in bounds)
        bounds += [step["bounds"][0], step["bounds"][1]]
        m[_COFF] = sum(len(b) for b in bounds)
        bounds += [step["bounds"][2], step["bounds"][3]]
        da = max(da, K * P)
        dcol = max(dcol, CK * P)
    da_off, dcol_off = pos_buf, pos_buf + da
    return (meta, np.concatenate(bounds).astype(np.int64), da_off, dcol_off,
            pos_buf + da + dcol, max(pos_i, 1), pos_w)


class _NetWorkspace:
    def __init__(self, key, n_buf, n_ibuf, n_params):
        n_threads, n_classes, dtype = key[-3:]
        self.key = key
        self.buf = np.empty((n_threads, n_buf), dtype)
        self.ibuf = np.zeros((n_threads, n_ibuf), np.int64)
        self.z = np.empty((n_threads, n_classes))
        self.gw = np.empty((n_threads, n_params))
        self.nll = np.empty(n_threads)


def conv_net_cost_grad(theta, X, y, layers, n_classes, *, weight_decay, conv_weight_decay=0.0):
    """Convolutional network fine-tuning cost and gradient, Numba backend.

    Same signature, layout (softmax first, then each layer's ``W_l, b_l``),
    objective and results as
    :func:`fastsae._reference_convae.conv_net_cost_grad` (see there). One
    parallel pass over the images (threads take disjoint shares); computes
    in ``X.dtype`` (the softmax's logits in float64), partial gradients are
    summed in float64. Returns ``(float, float64 gradient)``.
    """
    plan, n_features, y, layout = check_conv_net_args(theta, X, y, layers, n_classes,
                                                      weight_decay, conv_weight_decay)
    n_classes = int(n_classes)
    dt = X.dtype
    N, C, H, Wd = X.shape
    meta, bounds, da_off, dcol_off, n_buf, n_ibuf, n_params = _net_tables(plan, n_features,
                                                                          n_classes)
    w = theta.astype(dt)
    Xf = np.ascontiguousarray(X).reshape(N, C, H * Wd)
    n_threads = threads_for(6.0 * N * H * Wd * n_params, N)
    key = (meta.tobytes(), N, n_threads, n_classes, dt)
    ws = getattr(_local, "convnet", None)
    if ws is None or ws.key != key:
        ws = _local.convnet = _NetWorkspace(key, n_buf, n_ibuf, n_params)
    with scipy_blas_single_thread():
        _conv_net_pass(n_threads)(gemm_address(dt), Xf, y, w, meta, bounds, n_classes, da_off, dcol_off,
                       ws.buf, ws.ibuf, ws.z, ws.gw, ws.nll)

    grad = ws.gw.sum(axis=0) / N
    w64 = w.astype(np.float64)
    n_soft = n_classes * n_features
    grad[:n_soft] += weight_decay * w64[:n_soft]
    cost = ws.nll.sum() / N + 0.5 * weight_decay * sumsq(w64[:n_soft])
    if conv_weight_decay:
        for m in meta:
            sl = slice(m[_WOFF], m[_BOFF])
            grad[sl] += conv_weight_decay * w64[sl]
            cost += 0.5 * conv_weight_decay * sumsq(w64[sl])
    return float(cost), grad


__all__ = ["conv_ae_cost_grad", "conv_net_cost_grad", "clear_workspace"]
