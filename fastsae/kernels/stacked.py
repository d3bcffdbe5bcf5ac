"""Numba kernel for the stacked autoencoder fine-tuning objective (twin of
:func:`fastsae.reference.stacked_cost_grad`).

There is no term coupling the examples (no sparsity penalty), so one parallel
pass does everything: each thread takes a contiguous share of rows and, chunk
by chunk,

1. runs the chunk forward through every sigmoid layer (GEMM, then bias and
   sigmoid in place), keeping each layer's activations in its own per-thread
   buffer;
2. computes the softmax delta on top, class-major, with the softmax kernel's
   :func:`~fastsae.kernels.softmax.softmax_delta_t`, and accumulates
   ``gW_softmax += δ A_L``;
3. back-propagates: ``δ_L = (δᵀ W_softmax) ⊙ A_L(1 − A_L)``, then for each
   layer ``gW_l += δ_lᵀ A_{l−1}`` and ``δ_{l−1} = (δ_l W_l) ⊙ A_{l−1}(1 − A_{l−1})``.
   Each ``δ_l`` overwrites ``A_l``, which is no longer needed by then.

The layers have different sizes, so the weights are one flat vector (a copy of
``theta`` in ``X.dtype``) and every buffer is flat; the kernel takes views of
the right shapes at offsets computed once on the host, which lets one compiled
kernel serve networks of any depth.

bfloat16 (``X`` an ml-dtypes bfloat16 array): the same pass with every GEMM in
oneMKL's ``cblas_gemm_bf16bf16f32`` (bfloat16 operands, float32 accumulation
and results). The weights are a bfloat16 copy; each layer's float32
activations are rounded into a bfloat16 twin buffer (the input of the next
layer and of the weight gradients), and so is every ``δ`` before its
products; the biases, sigmoids, softmax and derivatives stay float32. The
NumPy twin of this arithmetic is :func:`fastsae.reference.stacked_cost_grad`
on a bfloat16 ``X``.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..core.config import JIT_OPTIONS, SHARE_OPTIONS
from ..core.threads import scipy_blas_single_thread
from ..core.args import check_softmax_args
from ..core.bfloat16 import is_bfloat16
from . import _mkl
from ._blas import gemm, gemm_address
from ._mkl import gemm_bf16, mkl_threads_local
from ._parallel import parallel_kernel, threads_for, workspace
from ._math import one, round_to_bf16, rows_to_bf16, sigmoid, sumsq
from .softmax import softmax_delta_t

#: Bytes per chunk of all of one thread's per-row buffers (input row,
#: activations of every layer, scratch). The GEMMs against the layers'
#: weights dominate here, and they need a few hundred rows to run near the
#: BLAS peak: at 1280-200-200-10, 32-64-row chunks were up to 1.8x slower
#: in float64 than 256-1024-row ones.
STACKED_CHUNK_BYTES = 4 * 1024 * 1024


@njit(**JIT_OPTIONS)
def _bias_sigmoid(A, b):
    """A <- σ(A + b) in place."""
    n, k = A.shape
    for r in range(n):
        row = A[r]
        for j in range(k):
            row[j] = sigmoid(row[j] + b[j])


@njit(**JIT_OPTIONS)
def _sigmoid_backprop(B, A, gb):
    """A <- B ⊙ A(1 − A) in place (A turns from activations into deltas); gb += column sums."""
    n, k = A.shape
    for r in range(n):
        a = A[r]
        d = B[r]
        for j in range(k):
            dd = d[j] * a[j] * (one(a[j]) - a[j])
            a[j] = dd
            gb[j] += dd


@njit(**SHARE_OPTIONS)
def _stacked_share(fn, X, y, w, sizes, woff, boff, hoff, K, chunk, lo, hi,
                   bufA, bufB, bufZ, bufV, G, gw, gb):
    """One thread's rows ``lo:hi``, chunk by chunk; accumulates into its own
    ``G``, ``gw``, ``gb`` and returns its share of the negative log-likelihood."""
    L = sizes.shape[0] - 1
    hL = sizes[L]
    gw[:] = 0.0
    gb[:] = 0.0
    G[:, :] = 0.0
    nll = 0.0
    Ws = w[:K * hL].reshape((K, hL))
    bs = w[K * hL:K * hL + K]
    gWs = gw[:K * hL].reshape((K, hL))
    for c0 in range(lo, hi, chunk):
        c1 = min(c0 + chunk, hi)
        n = c1 - c0
        Xc = X[c0:c1]
        # forward
        prev = Xc
        for l in range(L):
            h = sizes[l + 1]
            W = w[woff[l]:woff[l] + h * sizes[l]].reshape((h, sizes[l]))
            A = bufA[hoff[l] * chunk:hoff[l] * chunk + n * h].reshape((n, h))
            gemm(fn, False, True, 1.0, prev, W, 0.0, A)            # A_l = A_{l-1} W_lᵀ
            _bias_sigmoid(A, w[boff[l]:boff[l] + h])
            prev = A
        # softmax on top
        Z = bufZ[:K * n].reshape((K, n))
        gemm(fn, False, True, 1.0, Ws, prev, 0.0, Z)               # Z = Ws A_Lᵀ
        nll += softmax_delta_t(Z, bs, y[c0:c1], bufV[0], bufV[1], bufV[2], G)
        gemm(fn, False, False, 1.0, Z, prev, 1.0, gWs)             # gWs += δ A_L
        if L == 0:
            continue
        B = bufB[:n * hL].reshape((n, hL))
        gemm(fn, True, False, 1.0, Z, Ws, 0.0, B)                  # δᵀ Ws
        _sigmoid_backprop(B, prev, gb[hoff[L - 1]:hoff[L - 1] + hL])
        # backward through the stack; bufA's layer l now holds δ_l
        for l in range(L - 1, -1, -1):
            h = sizes[l + 1]
            hin = sizes[l]
            D = bufA[hoff[l] * chunk:hoff[l] * chunk + n * h].reshape((n, h))
            gWl = gw[woff[l]:woff[l] + h * hin].reshape((h, hin))
            if l == 0:
                gemm(fn, True, False, 1.0, D, Xc, 1.0, gWl)        # gW_1 += δ_1ᵀ X
            else:
                a0 = hoff[l - 1] * chunk
                Ain = bufA[a0:a0 + n * hin].reshape((n, hin))
                gemm(fn, True, False, 1.0, D, Ain, 1.0, gWl)       # gW_l += δ_lᵀ A_{l-1}
                W = w[woff[l]:woff[l] + h * hin].reshape((h, hin))
                Bl = bufB[:n * hin].reshape((n, hin))
                gemm(fn, False, False, 1.0, D, W, 0.0, Bl)         # δ_l W_l
                _sigmoid_backprop(Bl, Ain, gb[hoff[l - 1]:hoff[l - 1] + hin])
    return nll


@parallel_kernel
def _stacked_pass(fn, X, y, w, sizes, woff, boff, hoff, K, chunk,
                  bufA, bufB, bufZ, bufV, G, gw, gb, nll, t0, t1):
    m = X.shape[0]
    n_threads = gw.shape[0]
    for t in range(t0, t1):
        nll[t] = _stacked_share(fn, X, y, w, sizes, woff, boff, hoff, K, chunk,
                                t * m // n_threads, (t + 1) * m // n_threads,
                                bufA[t], bufB[t], bufZ[t], bufV[t], G[t], gw[t], gb[t])


@njit(**SHARE_OPTIONS)
def _stacked_share_bf16(fn, X, y, w16, wf, sizes, woff, boff, hoff, K, chunk, lo, hi,
                        bufA, bufA16, bufB, bufZ, bufZ16, bufV, G, gw, gb):
    """:func:`_stacked_share` in bfloat16: ``X`` and the weights ``w16`` as bfloat16
    bits, the biases read from the float32 ``wf``; each activation and each ``δ`` is
    rounded into ``bufA16`` (the same offsets as ``bufA``) or ``bufZ16`` for its GEMMs."""
    L = sizes.shape[0] - 1
    hL = sizes[L]
    gw[:] = 0.0
    gb[:] = 0.0
    G[:, :] = 0.0
    nll = 0.0
    Ws = w16[:K * hL].reshape((K, hL))
    bs = wf[K * hL:K * hL + K]
    gWs = gw[:K * hL].reshape((K, hL))
    for c0 in range(lo, hi, chunk):
        c1 = min(c0 + chunk, hi)
        n = c1 - c0
        Xc = X[c0:c1]
        prev = Xc
        for l in range(L):
            h = sizes[l + 1]
            W = w16[woff[l]:woff[l] + h * sizes[l]].reshape((h, sizes[l]))
            o = hoff[l] * chunk
            A = bufA[o:o + n * h].reshape((n, h))
            A16 = bufA16[o:o + n * h].reshape((n, h))
            gemm_bf16(fn, False, True, 1.0, prev, W, 0.0, A)       # A_l = A_{l-1} W_lᵀ
            _bias_sigmoid(A, wf[boff[l]:boff[l] + h])
            rows_to_bf16(A, A16)
            prev = A16
        Z = bufZ[:K * n].reshape((K, n))
        Z16 = bufZ16[:K * n].reshape((K, n))
        gemm_bf16(fn, False, True, 1.0, Ws, prev, 0.0, Z)          # Z = Ws A_Lᵀ
        nll += softmax_delta_t(Z, bs, y[c0:c1], bufV[0], bufV[1], bufV[2], G)
        rows_to_bf16(Z, Z16)
        gemm_bf16(fn, False, False, 1.0, Z16, prev, 1.0, gWs)      # gWs += δ A_L
        if L == 0:
            continue
        o = hoff[L - 1] * chunk
        AL = bufA[o:o + n * hL].reshape((n, hL))
        B = bufB[:n * hL].reshape((n, hL))
        gemm_bf16(fn, True, False, 1.0, Z16, Ws, 0.0, B)           # δᵀ Ws
        _sigmoid_backprop(B, AL, gb[hoff[L - 1]:hoff[L - 1] + hL])
        rows_to_bf16(AL, bufA16[o:o + n * hL].reshape((n, hL)))
        # backward; bufA's and bufA16's layer l now hold δ_l
        for l in range(L - 1, -1, -1):
            h = sizes[l + 1]
            hin = sizes[l]
            o = hoff[l] * chunk
            D16 = bufA16[o:o + n * h].reshape((n, h))
            gWl = gw[woff[l]:woff[l] + h * hin].reshape((h, hin))
            if l == 0:
                gemm_bf16(fn, True, False, 1.0, D16, Xc, 1.0, gWl)  # gW_1 += δ_1ᵀ X
            else:
                a0 = hoff[l - 1] * chunk
                Ain = bufA[a0:a0 + n * hin].reshape((n, hin))
                Ain16 = bufA16[a0:a0 + n * hin].reshape((n, hin))
                gemm_bf16(fn, True, False, 1.0, D16, Ain16, 1.0, gWl)   # gW_l += δ_lᵀ A_{l-1}
                W = w16[woff[l]:woff[l] + h * hin].reshape((h, hin))
                Bl = bufB[:n * hin].reshape((n, hin))
                gemm_bf16(fn, False, False, 1.0, D16, W, 0.0, Bl)      # δ_l W_l
                _sigmoid_backprop(Bl, Ain, gb[hoff[l - 1]:hoff[l - 1] + hin])
                rows_to_bf16(Ain, Ain16)
    return nll


@parallel_kernel
def _stacked_pass_bf16(fn, fn_threads, X, y, w16, wf, sizes, woff, boff, hoff, K, chunk,
                       bufA, bufA16, bufB, bufZ, bufZ16, bufV, G, gw, gb, nll, t0, t1):
    m = X.shape[0]
    n_threads = gw.shape[0]
    for t in range(t0, t1):
        previous = mkl_threads_local(fn_threads, 1)
        nll[t] = _stacked_share_bf16(fn, X, y, w16, wf, sizes, woff, boff, hoff, K, chunk,
                                     t * m // n_threads, (t + 1) * m // n_threads, bufA[t],
                                     bufA16[t], bufB[t], bufZ[t], bufZ16[t], bufV[t], G[t],
                                     gw[t], gb[t])
        mkl_threads_local(fn_threads, previous)


class _Workspace:
    """Buffers reused across calls with the same shapes."""

    def __init__(self, key):
        m, sizes, K, dtype, n_threads, chunk, n_params = key
        hidden = sizes[1:]
        self.A = np.empty((n_threads, chunk * max(sum(hidden), 1)), dtype)
        self.B = np.empty((n_threads, chunk * max(hidden, default=1)), dtype)
        self.Z = np.empty((n_threads, K * chunk), dtype)
        self.V = np.empty((n_threads, 3, chunk), dtype)
        self.G = np.empty((n_threads, K, chunk))
        self.gw = np.empty((n_threads, n_params), dtype)
        self.gb = np.empty((n_threads, max(sum(hidden), 1)))
        self.nll = np.empty(n_threads)




class _WorkspaceBF16(_Workspace):
    """:class:`_Workspace` in float32, with the bfloat16 twins (uint16) of the activations,
    of the softmax's ``δ`` and of the weights."""

    def __init__(self, key):
        m, sizes, K, _, n_threads, chunk, n_params = key
        super().__init__((m, sizes, K, np.float32, n_threads, chunk, n_params))
        self.A16 = np.empty(self.A.shape, np.uint16)
        self.Z16 = np.empty(self.Z.shape, np.uint16)
        self.w16 = np.empty((1, n_params), np.uint16)


def chunk_rows(sizes, n_classes, itemsize):
    """Rows per chunk: every per-row buffer of a chunk together fits the chunk budget."""
    row_bytes = (sum(sizes) + max(sizes[1:], default=0) + n_classes + 3) * itemsize
    return int(min(max(STACKED_CHUNK_BYTES // row_bytes, 32), 1024))


def _offsets(sizes, n_classes):
    """Offsets into theta of each layer's W and b, and of each layer's rows in the buffers."""
    L = len(sizes) - 1
    woff = np.empty(max(L, 1), np.int64)
    boff = np.empty(max(L, 1), np.int64)
    hoff = np.zeros(max(L, 1), np.int64)
    pos = n_classes * sizes[-1] + n_classes
    for l in range(L):
        woff[l] = pos
        pos += sizes[l + 1] * sizes[l]
        boff[l] = pos
        pos += sizes[l + 1]
        if l:
            hoff[l] = hoff[l - 1] + sizes[l]
    return woff, boff, hoff


def stacked_cost_grad(theta, X, y, layer_sizes, n_classes, *, weight_decay,
                      stack_weight_decay=0.0):
    """Stacked autoencoder cost and gradient, Numba backend.

    Same signature, layout (softmax first, then ``W1, b1, W2, b2, ...``),
    objective and results as :func:`fastsae.reference.stacked_cost_grad` (see
    there). Computes in ``X.dtype``; returns ``(float, float64 gradient)``.
    """
    K, y, sizes = check_softmax_args(theta, X, y, n_classes, weight_decay, layer_sizes,
                                      stack_weight_decay, bfloat16=True)
    dt = X.dtype
    X = np.ascontiguousarray(X)
    m = X.shape[0]
    L = len(sizes) - 1
    woff, boff, hoff = _offsets(sizes, K)
    n_threads = threads_for(6.0 * m * theta.size, m)
    sizes_arr = np.asarray(sizes, np.int64)
    if is_bfloat16(dt):
        mkl = _mkl.library()
        w = theta.astype(np.float32)
        chunk = min(chunk_rows(sizes, K, 4), -(-m // n_threads))
        ws = workspace("stacked bfloat16", (m, sizes, K, "bfloat16", n_threads, chunk, theta.size),
                       _WorkspaceBF16)
        round_to_bf16(theta[None], ws.w16)
        _stacked_pass_bf16(n_threads)(mkl.gemm, mkl.threads_local, X.view(np.uint16), y,
                                      ws.w16[0], w, sizes_arr, woff, boff, hoff, K, chunk, ws.A,
                                      ws.A16, ws.B, ws.Z, ws.Z16, ws.V, ws.G, ws.gw, ws.gb,
                                      ws.nll)
    else:
        w = theta.astype(dt)
        chunk = min(chunk_rows(sizes, K, dt.itemsize), -(-m // n_threads))
        ws = workspace("stacked", (m, sizes, K, dt, n_threads, chunk, theta.size), _Workspace)
        with scipy_blas_single_thread():
            _stacked_pass(n_threads)(gemm_address(dt), X, y, w, sizes_arr, woff, boff, hoff,
                                     K, chunk, ws.A, ws.B, ws.Z, ws.V, ws.G, ws.gw, ws.gb, ws.nll)

    grad = ws.gw.sum(axis=0, dtype=np.float64)
    grad /= m
    hL = sizes[-1]
    nWs = K * hL
    grad[nWs:nWs + K] = ws.G.sum(axis=(0, 2)) / m
    gb = ws.gb.sum(axis=0) / m
    w64 = theta if is_bfloat16(dt) else w.astype(np.float64)   # bfloat16: decay of the parameters
    cost = ws.nll.sum() / m + 0.5 * weight_decay * sumsq(w64[:nWs])
    grad[:nWs] += weight_decay * theta[:nWs]
    for l in range(L):
        h = sizes[l + 1]
        grad[boff[l]:boff[l] + h] = gb[hoff[l]:hoff[l] + h]
        if stack_weight_decay:
            Wl = slice(woff[l], boff[l])
            grad[Wl] += stack_weight_decay * theta[Wl]
            cost += 0.5 * stack_weight_decay * sumsq(w64[Wl])
    return float(cost), grad
