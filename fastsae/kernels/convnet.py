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
from ..core.bfloat16 import is_bfloat16
from ..core.config import JIT_OPTIONS, SHARE_OPTIONS
from ..core.threads import scipy_blas_single_thread
from . import _mkl
from ._blas import gemm, gemm_address, keep_threads
from ._math import BF16_ONE, one, rows_to_bf16, sigmoid, sumsq
from ._mkl import gemm_bf16, mkl_threads_local
from ._parallel import jit_variant, parallel_kernel, threads_for, workspace
from .convae import _col2im, _im2col, _no_gemm, _same, split_bf16

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


#: How :func:`_net_image` makes a GEMM operand of a float buffer (``ROUND(src, dst)``),
#: the GEMM it calls, the GEMM that adds the filters' low parts (``GEMM_LO``) and the
#: value of a row of ones in an operand; the bfloat16 variant binds rounding to
#: bfloat16 bits, oneMKL's bfloat16 GEMM for both and 1.0's bits.
ROUND = _same
GEMM = gemm
GEMM_LO = _no_gemm
ONE = 1


@njit(**SHARE_OPTIONS)
def _net_image(fn, X16n, yn, w, wg, wlo, meta, bounds, n_classes, da_off, dcol_off, buf, buf16,
               ibuf, z, gw):
    """Forward and backward for one image; returns its −log p(y | x).

    ``meta[l]`` holds layer ``l``'s shapes and its offsets into ``w`` (the
    weights, in theta's layout), ``buf`` (the image's per-layer buffers),
    ``ibuf`` (argmax of max pooling) and ``bounds`` (pooling regions).
    ``wg``, ``buf16`` and ``X16n`` are what the GEMMs read: in the float
    driver ``w``, ``buf`` and the image themselves; in the bfloat16 one their
    bfloat16 bits (the patch matrices and the rounded deltas live in
    ``buf16`` at the same offsets as in ``buf``), with ``wlo`` the low
    bfloat16 parts of the weights (``w ≈ wg + wlo``; unused by the float driver).
    """
    L = meta.shape[0]
    for l in range(L):
        m = meta[l]
        K, C, ph, pw = m[_K], m[_C], m[_PH], m[_PW]
        oh, ow, R, S = m[_OH], m[_OW], m[_R], m[_S]
        P, CK = oh * ow, C * ph * pw
        if l == 0:
            src = X16n
        else:
            q0 = meta[l - 1, _POFF]
            n_in = C * m[_HIN] * m[_WIN]
            src = buf16[q0:q0 + n_in].reshape((C, m[_HIN] * m[_WIN]))
            ROUND(buf[q0:q0 + n_in].reshape((C, m[_HIN] * m[_WIN])), src)
        Q = buf16[m[_QOFF]:m[_QOFF] + (CK + 1) * P].reshape((CK + 1, P))
        _im2col(src, ph, pw, oh, ow, Q)
        ones = Q[CK]
        for p in range(P):
            ones[p] = ONE
        A = buf[m[_AOFF]:m[_AOFF] + K * P].reshape((K, P))
        W = wg[m[_WOFF]:m[_WOFF] + K * CK].reshape((K, CK))
        Qtop = buf16[m[_QOFF]:m[_QOFF] + CK * P].reshape((CK, P))
        GEMM(fn, False, False, 1.0, W, Qtop, 0.0, A)                 # Z = W Q
        GEMM_LO(fn, False, False, 1.0, wlo[m[_WOFF]:m[_WOFF] + K * CK].reshape((K, CK)), Qtop,
                1.0, A)
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
        D = buf16[m[_AOFF]:m[_AOFF] + K * P].reshape((K, P))
        ROUND(A, D)
        Q = buf16[m[_QOFF]:m[_QOFF] + (CK + 1) * P].reshape((CK + 1, P))
        T = buf[m[_TOFF]:m[_TOFF] + K * (CK + 1)].reshape((K, CK + 1))
        GEMM(fn, False, True, 1.0, D, Q, 0.0, T)                     # [δ Qᵀ | Σ δ]
        _accumulate_wb(gw, m[_WOFF], m[_BOFF], T)
        if l > 0:
            W = wg[m[_WOFF]:m[_WOFF] + K * CK].reshape((K, CK))
            dcol = buf[dcol_off:dcol_off + CK * P].reshape((CK, P))
            GEMM(fn, True, False, 1.0, W, D, 0.0, dcol)              # Wᵀ δ
            GEMM_LO(fn, True, False, 1.0, wlo[m[_WOFF]:m[_WOFF] + K * CK].reshape((K, CK)), D,
                    1.0, dcol)
            d0 = meta[l - 1, _DPOFF]
            _col2im(dcol, ph, pw, oh, ow,
                    buf[d0:d0 + C * m[_HIN] * m[_WIN]].reshape((C, m[_HIN] * m[_WIN])))
    return nll


#: The per-image step each driver calls (the bfloat16 driver binds the bfloat16 one), and
#: how the driver holds its GEMM to one thread per share.
NET_IMAGE = _net_image
GEMM_THREADS = keep_threads


@parallel_kernel
def _conv_net_pass(fn, fn_threads, X16, y, w, wg, wlo, meta, bounds, n_classes, da_off,
                   dcol_off, buf, buf16, ibuf, z, gw, nll, t0, t1):
    N = X16.shape[0]
    n_threads = buf.shape[0]
    for t in range(t0, t1):
        previous = GEMM_THREADS(fn_threads, 1)
        lo = t * N // n_threads
        hi = (t + 1) * N // n_threads
        g = gw[t]
        g[:] = 0.0
        acc = 0.0
        for n in range(lo, hi):
            acc += NET_IMAGE(fn, X16[n], y[n], w, wg, wlo, meta, bounds, n_classes, da_off,
                             dcol_off, buf[t], buf16[t], ibuf[t], z[t], g)
        nll[t] = acc
        GEMM_THREADS(fn_threads, previous)


#: bfloat16: the GEMMs read bfloat16 bits (the filters in two parts, high and low; the
#: patch matrices of the input and of the rounded pooled maps; the rounded deltas);
#: float32 everywhere else.
_net_image_bf16 = jit_variant(_net_image, "bf16", ROUND=rows_to_bf16, GEMM=gemm_bf16,
                              GEMM_LO=gemm_bf16, ONE=BF16_ONE)
_conv_net_pass_bf16 = _conv_net_pass.variant("bf16", NET_IMAGE=_net_image_bf16,
                                             GEMM_THREADS=mkl_threads_local)


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
        bf16 = dtype == "bfloat16"
        self.buf = np.empty((n_threads, n_buf), np.float32 if bf16 else dtype)
        self.buf16 = np.empty((n_threads, n_buf), np.uint16) if bf16 else self.buf
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

    A bfloat16 ``X`` (``ml_dtypes.bfloat16``; the extra ``fastsae-audio[mkl]``)
    runs the layers' GEMMs in oneMKL's bfloat16 GEMM: the patches (of the
    input, and of each layer's pooled maps) and the deltas are rounded to
    bfloat16 as they become GEMM operands, the filters are split into two
    bfloat16 parts (as in :func:`fastsae.kernels.convae.conv_ae_cost_grad`);
    the activations, pooling and softmax are float32.
    """
    plan, n_features, y, layout = check_conv_net_args(theta, X, y, layers, n_classes,
                                                      weight_decay, conv_weight_decay,
                                                      bfloat16=True)
    n_classes = int(n_classes)
    bf16 = is_bfloat16(X.dtype)
    dt = np.dtype(np.float32) if bf16 else X.dtype
    N, C, H, Wd = X.shape
    meta, bounds, da_off, dcol_off, n_buf, n_ibuf, n_params = _net_tables(plan, n_features,
                                                                          n_classes)
    w = theta.astype(dt)
    X = np.ascontiguousarray(X).reshape(N, C, H * Wd)
    n_threads = threads_for(6.0 * N * H * Wd * n_params, N)
    key = (meta.tobytes(), N, n_threads, n_classes, "bfloat16" if bf16 else dt, n_buf, n_ibuf,
           n_params)
    ws = workspace("convnet bfloat16" if bf16 else "convnet", key, _Workspace)
    if bf16:
        mkl = _mkl.library()
        wg, wlo = split_bf16(w.reshape(1, -1))
        _conv_net_pass_bf16(n_threads)(mkl.gemm, mkl.threads_local, X.view(np.uint16), y, w,
                                       wg[0], wlo[0], meta, bounds, n_classes, da_off, dcol_off,
                                       ws.buf, ws.buf16, ws.ibuf, ws.z, ws.gw, ws.nll)
    else:
        with scipy_blas_single_thread():
            _conv_net_pass(n_threads)(gemm_address(dt), 0, X, y, w, w, w, meta, bounds, n_classes,
                                      da_off, dcol_off, ws.buf, ws.buf16, ws.ibuf, ws.z, ws.gw,
                                      ws.nll)

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
