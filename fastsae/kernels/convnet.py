"""Numba kernel for the convolutional network's fine-tuning (twin of
:func:`fastsae.reference.convnet.conv_net_cost_grad`): sigmoid convolution
layers with pooling, and a softmax on top.

No term couples the images (no sparsity penalty), so one parallel pass does
everything: each thread takes a contiguous share of the images and runs each
image forward through every layer (im2col, GEMM, bias and sigmoid, pooling),
through the softmax on top (a few hundred flops per class, plain loops), and
back (pooling backward, δ = dA ⊙ A', [gW | gb] += δ [Q; 1]ᵀ by GEMM, and
for the layers above the first Wᵀδ by GEMM then col2im, which is the
gradient with respect to the pooled maps below). The layers have different
shapes, so every per-thread buffer is one flat array and the kernel takes
views at offsets computed once on the host (as the stacked kernel does).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..core.args import check_conv_net_args
from ..core.config import JIT_OPTIONS
from ..core.threads import scipy_blas_single_thread
from ._blas import gemm, gemm_address
from ._math import one, sigmoid, sumsq
from ._parallel import parallel_kernel, threads_for, workspace
from .convae import _col2im, _im2col

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
                   nll, t0, t1):
    N = X.shape[0]
    n_threads = buf.shape[0]
    for t in range(t0, t1):
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


class _Workspace:
    def __init__(self, key):
        _, _, n_threads, n_classes, dtype, n_buf, n_ibuf, n_params = key
        self.buf = np.empty((n_threads, n_buf), dtype)
        self.ibuf = np.zeros((n_threads, n_ibuf), np.int64)
        self.z = np.empty((n_threads, n_classes))
        self.gw = np.empty((n_threads, n_params))
        self.nll = np.empty(n_threads)


def conv_net_cost_grad(theta, X, y, layers, n_classes, *, weight_decay, conv_weight_decay=0.0):
    """Convolutional network fine-tuning cost and gradient, Numba backend.

    Same signature, layout (softmax first, then each layer's ``W_l, b_l``),
    objective and results as
    :func:`fastsae.reference.convnet.conv_net_cost_grad` (see there). One
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
    key = (meta.tobytes(), N, n_threads, n_classes, dt, n_buf, n_ibuf, n_params)
    ws = workspace("convnet", key, _Workspace)
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


__all__ = ["conv_net_cost_grad"]
