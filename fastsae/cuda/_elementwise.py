"""Fused elementwise CUDA kernels: everything in a cost evaluation that is not a GEMM
(the convolutional models' patch and pooling kernels are in :mod:`fastsae.cuda._patches`).

Each kernel makes one pass over its matrix and does all the work that pass
allows: the bias and the sigmoid together with the column sums that give
``ρ̂``; the output delta together with its share of the data cost and the
column sums that give the output bias gradient; the hidden delta together with
the hidden bias gradient (or, where ρ̂ is not known yet, the hidden
statistics from which the gradient is formed once it is:
:mod:`fastsae.cuda.sae_stats`, :mod:`fastsae.cuda.convae`). Sums follow one
pattern: each thread accumulates in float64 over the rows it visits, the
block reduces those partial sums in shared memory, and one thread per column
(or per block, for a scalar) adds the block's total to the result with one
atomic operation. Atomics therefore number ``columns × row-blocks``, never
one per element.

Matrices are row-major ``(rows, columns)``; a 2-D block is ``EW_X`` threads
along the columns (consecutive threads read consecutive addresses) by
``EW_Y`` along the rows, and a block covers ``EW_X`` columns of a band of
rows. Kernels are built per dtype (:func:`kernels`) so that float32 code uses
float32 constants and stays in float32; only the accumulators are float64.

Under Numba's CUDA simulator every thread is a Python thread and every
``syncthreads`` a barrier across them, so the simulator runs the same code
with smaller blocks (see :data:`SIM_SHAPES`).
"""
from __future__ import annotations

import functools
import math
import types as _pytypes

import numpy as np

from ..core.config import RHO_HAT_EPS
from ._device import blocks, cuda, is_simulator, launcher

_SIM = is_simulator()
#: (threads along columns, along rows) of the 2-D elementwise blocks
EW_X, EW_Y = (4, 2) if _SIM else (32, 8)
EW_N = EW_X * EW_Y  # a named constant: shared-array shapes must be literals
#: threads of the 1-D blocks (one thread per row, or per element)
NT = 8 if _SIM else 256
#: blocks a 2-D elementwise launch aims at (enough to fill every SM a few times)
TARGET_BLOCKS = 4 if _SIM else 1024
#: most blocks of a 1-D launch; its kernels loop over the elements with the grid's stride
#: (on the simulator each thread costs a Python thread, so few threads do many elements)
MAX_BLOCKS_1D = 2 if _SIM else 4096

# output-layer variants (decoder, loss)
SIGMOID_SQUARED, LINEAR_SQUARED, SIGMOID_CROSS_ENTROPY = 0, 1, 2
# activations of the convolution
SIGMOID, LINEAR, RELU = 0, 1, 2
MEAN, MAX = 0, 1

_cuda = cuda()
_f64 = np.float64
RHO_LO, RHO_HI = RHO_HAT_EPS, 1.0 - RHO_HAT_EPS


def grid2d(rows: int, cols: int):
    """(grid, block, rows per block) for a 2-D elementwise kernel over a (rows, cols) matrix."""
    col_blocks = blocks(cols, EW_X)
    row_blocks = min(blocks(rows, EW_Y), max(1, TARGET_BLOCKS // col_blocks))
    rows_per_block = blocks(blocks(rows, row_blocks), EW_Y) * EW_Y
    return (col_blocks, blocks(rows, rows_per_block)), (EW_X, EW_Y), rows_per_block


def grid1d(n: int):
    """(grid, block) for a 1-D grid-stride kernel over n elements."""
    return min(blocks(n, NT), MAX_BLOCKS_1D), NT


# ---------------------------------------------------------------------------
# block reductions (every thread of the block must call them)
# ---------------------------------------------------------------------------

@_cuda.jit(device=True)
def _reduce_columns(sh, tx, ty):
    """sh is (EW_N,) float64 holding one value per thread at ty*EW_X + tx;
    on return sh[tx] (row 0) holds the sum over ty of column tx."""
    _cuda.syncthreads()
    stride = EW_Y // 2
    while stride > 0:
        if ty < stride:
            sh[ty * EW_X + tx] += sh[(ty + stride) * EW_X + tx]
        _cuda.syncthreads()
        stride //= 2


@_cuda.jit(device=True)
def _reduce_row0(sh, tx, ty):
    """After :func:`_reduce_columns`: sh[0] <- sum of sh[0:EW_X]."""
    stride = EW_X // 2
    while stride > 0:
        if ty == 0 and tx < stride:
            sh[tx] += sh[tx + stride]
        _cuda.syncthreads()
        stride //= 2


@_cuda.jit(device=True)
def _block_sum(sh, val, tid):
    """Sum of ``val`` over the NT threads of a 1-D block (returned to every thread)."""
    sh[tid] = val
    _cuda.syncthreads()
    stride = NT // 2
    while stride > 0:
        if tid < stride:
            sh[tid] += sh[tid + stride]
        _cuda.syncthreads()
        stride //= 2
    total = sh[0]
    _cuda.syncthreads()
    return total


@_cuda.jit(device=True)
def _block_max(sh, val, tid):
    """Maximum of ``val`` over the NT threads of a 1-D block (returned to every thread)."""
    sh[tid] = val
    _cuda.syncthreads()
    stride = NT // 2
    while stride > 0:
        if tid < stride:
            sh[tid] = max(sh[tid], sh[tid + stride])
        _cuda.syncthreads()
        stride //= 2
    top = sh[0]
    _cuda.syncthreads()
    return top


# ---------------------------------------------------------------------------
# dtype-independent kernels
# ---------------------------------------------------------------------------

@_cuda.jit
def _copy_cast(src, dst):
    j, i = _cuda.grid(2)
    if i < dst.shape[0] and j < dst.shape[1]:
        dst[i, j] = src[i, j]


def copy_cast(src, dtype):
    """A C-contiguous copy of 2-D device array ``src`` in ``dtype`` (on the device)."""
    if src.ndim != 2:
        from ..exceptions import ParameterError
        raise ParameterError(f"X must be 2-D; got shape {tuple(src.shape)}")
    dst = _cuda.device_array(tuple(src.shape), np.dtype(dtype))
    if dst.size:
        grid = (blocks(dst.shape[1], EW_X), blocks(dst.shape[0], EW_Y))
        launcher(_copy_cast, grid, (EW_X, EW_Y))(src, dst)
    return dst


@_cuda.jit
def _cast_into(src, dst):
    for i in range(_cuda.grid(1), dst.shape[0], _cuda.gridsize(1)):
        dst[i] = src[i]


def cast_into(src, dst):
    """``dst[:] <- src`` for 1-D device arrays of the same length (casting to dst's dtype)."""
    if dst.size:
        launcher(_cast_into, *grid1d(dst.size))(src, dst)


@_cuda.jit
def _minmax_count(x, out):
    """out[0] <- min, out[1] <- max over the finite values, out[2] += number of others."""
    tid = _cuda.threadIdx.x
    sh = _cuda.shared.array(NT, _f64)
    lo = math.inf
    hi = -math.inf
    bad = 0.0
    for i in range(_cuda.grid(1), x.shape[0], _cuda.gridsize(1)):
        v = _f64(x[i])
        if math.isfinite(v):
            lo = min(lo, v)
            hi = max(hi, v)
        else:
            bad += 1.0
    lo = -_block_max(sh, -lo, tid)             # the minimum as the maximum of the negatives
    hi = _block_max(sh, hi, tid)
    if tid == 0:
        _cuda.atomic.min(out, 0, lo)
        _cuda.atomic.max(out, 1, hi)
    total = _block_sum(sh, bad, tid)
    if tid == 0:
        _cuda.atomic.add(out, 2, total)


def minmax_count(X):
    """``(min, max, n_nonfinite)`` of a device array over its finite values."""
    flat = X.reshape(X.size) if X.ndim != 1 else X
    out = _cuda.to_device(np.array([np.inf, -np.inf, 0.0]))
    if flat.size:
        launcher(_minmax_count, *grid1d(flat.size))(flat, out)
    lo, hi, bad = out.copy_to_host()
    return float(lo), float(hi), int(bad)


@_cuda.jit
def _pool(planes, rs, re, cs, ce, mode, out):
    """out[p, r, c] <- mean or max of planes[p, rs[r]:re[r], cs[c]:ce[c]] (one thread each)."""
    R = rs.shape[0]
    C = cs.shape[0]
    total = planes.shape[0] * R * C
    for idx in range(_cuda.grid(1), total, _cuda.gridsize(1)):
        p = idx // (R * C)
        r = (idx // C) % R
        c = idx % C
        if mode == MEAN:
            acc = 0.0
            for i in range(rs[r], re[r]):
                for j in range(cs[c], ce[c]):
                    acc += planes[p, i, j]
            out[p, r, c] = acc / ((re[r] - rs[r]) * (ce[c] - cs[c]))
        else:
            v = planes[p, rs[r], cs[c]]
            for i in range(rs[r], re[r]):
                for j in range(cs[c], ce[c]):
                    x = planes[p, i, j]
                    if x > v or x != x:  # NaN propagates, as in np.max
                        v = x
            out[p, r, c] = v


def pool(planes, rs, re, cs, ce, mode, out):
    launcher(_pool, *grid1d(out.size))(planes, rs, re, cs, ce, mode, out)


@_cuda.jit
def _im2col(images, n0, ph, pw, ow, n_pos, col):
    """col[a*pw + c, n*n_pos + p] <- images[n0 + n, i + a, j + c] for p = i*ow + j."""
    t, r = _cuda.grid(2)
    if t < col.shape[1] and r < col.shape[0]:
        n = t // n_pos
        p = t - n * n_pos
        i = p // ow
        j = p - i * ow
        a = r // pw
        c = r - a * pw
        col[r, t] = images[n0 + n, i + a, j + c]


def im2col(images, n0, ph, pw, ow, n_pos, col):
    grid = (blocks(col.shape[1], EW_X), blocks(col.shape[0], EW_Y))
    launcher(_im2col, grid, (EW_X, EW_Y))(images, n0, ph, pw, ow, n_pos, col)


# ---------------------------------------------------------------------------
# kernels built per dtype
# ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def kernels(dtype):
    """The elementwise kernels for arrays of ``dtype`` (float32 or float64)."""
    dt = np.dtype(dtype).type
    ONE = dt(1.0)
    ZERO = dt(0.0)

    @_cuda.jit(device=True)
    def sigmoid(x):
        return ONE / (ONE + math.exp(-x))

    @_cuda.jit(device=True)
    def softplus(x):
        return (x if x > ZERO else ZERO) + math.log1p(math.exp(-abs(x)))

    @_cuda.jit
    def cast_params(theta, w, acc, norm):
        """w <- theta in dtype; acc <- 0 (the bias and scalar accumulators); norm <- 0."""
        start = _cuda.grid(1)
        stride = _cuda.gridsize(1)
        for i in range(start, w.shape[0], stride):
            w[i] = dt(theta[i])
        for i in range(start, acc.shape[0], stride):
            acc[i] = 0.0
        if start == 0:
            norm[0] = 0.0

    @_cuda.jit
    def bias_sigmoid(A, b, colsum, rows_per_block, with_sum):
        """A <- σ(A + b); colsum += column sums of the result (if with_sum)."""
        sh = _cuda.shared.array(EW_N, _f64)
        tx = _cuda.threadIdx.x
        ty = _cuda.threadIdx.y
        j = _cuda.blockIdx.x * EW_X + tx
        r0 = _cuda.blockIdx.y * rows_per_block
        r1 = min(r0 + rows_per_block, A.shape[0])
        acc = 0.0
        if j < A.shape[1]:
            bj = b[j]
            for r in range(r0 + ty, r1, EW_Y):
                a = sigmoid(A[r, j] + bj)
                A[r, j] = a
                acc += a
        if with_sum:
            sh[ty * EW_X + tx] = acc
            _reduce_columns(sh, tx, ty)
            if ty == 0 and j < A.shape[1]:
                _cuda.atomic.add(colsum, j, sh[tx])

    @_cuda.jit
    def output_delta(Z, X, b, kind, cost, gb, rows_per_block):
        """Z (= A2 W2ᵀ) <- output delta δ3; cost[0] += data-cost terms; gb += column sums of δ3.

        Squared loss: the terms are (a3 − x)² (halved on the host); cross-entropy:
        softplus(z) − x z (the Bernoulli cross-entropy written on z, finite for any z).
        """
        sh = _cuda.shared.array(EW_N, _f64)
        shc = _cuda.shared.array(EW_N, _f64)
        tx = _cuda.threadIdx.x
        ty = _cuda.threadIdx.y
        j = _cuda.blockIdx.x * EW_X + tx
        r0 = _cuda.blockIdx.y * rows_per_block
        r1 = min(r0 + rows_per_block, Z.shape[0])
        g = 0.0
        s = 0.0
        if j < Z.shape[1]:
            bj = b[j]
            for r in range(r0 + ty, r1, EW_Y):
                z = Z[r, j] + bj
                x = X[r, j]
                if kind == SIGMOID_SQUARED:
                    a = sigmoid(z)
                    d = a - x
                    s += _f64(d) * _f64(d)
                    d = d * (a * (ONE - a))
                elif kind == LINEAR_SQUARED:
                    d = z - x
                    s += _f64(d) * _f64(d)
                else:
                    s += _f64(softplus(z)) - _f64(x * z)
                    d = sigmoid(z) - x
                Z[r, j] = d
                g += d
        sh[ty * EW_X + tx] = g
        shc[ty * EW_X + tx] = s
        _reduce_columns(sh, tx, ty)
        if ty == 0 and j < Z.shape[1]:
            _cuda.atomic.add(gb, j, sh[tx])
        _reduce_columns(shc, tx, ty)
        _reduce_row0(shc, tx, ty)
        if tx == 0 and ty == 0:
            _cuda.atomic.add(cost, 0, shc[0])

    @_cuda.jit
    def sigmoid_delta(D, A, s, out, gb, rows_per_block):
        """out <- (D + s) ⊙ A(1 − A) (out may be D or A); gb += column sums of out."""
        sh = _cuda.shared.array(EW_N, _f64)
        tx = _cuda.threadIdx.x
        ty = _cuda.threadIdx.y
        j = _cuda.blockIdx.x * EW_X + tx
        r0 = _cuda.blockIdx.y * rows_per_block
        r1 = min(r0 + rows_per_block, D.shape[0])
        g = 0.0
        if j < D.shape[1]:
            sj = s[j]
            for r in range(r0 + ty, r1, EW_Y):
                a = A[r, j]
                d = (D[r, j] + sj) * (a * (ONE - a))
                out[r, j] = d
                g += d
        sh[ty * EW_X + tx] = g
        _reduce_columns(sh, tx, ty)
        if ty == 0 and j < D.shape[1]:
            _cuda.atomic.add(gb, j, sh[tx])

    @_cuda.jit
    def hidden_stats(D, A, out, p, q, rows_per_block, with_q):
        """The hidden layer's sufficient statistics, for when ρ̂ is not known yet:
        out[:, :h] <- D ⊙ A(1 − A) (out may be D) and, with_q, out[:, h:2h] <- A(1 − A);
        p += column sums of D ⊙ A(1 − A), q += column sums of A(1 − A)."""
        sh = _cuda.shared.array(EW_N, _f64)
        shq = _cuda.shared.array(EW_N, _f64)
        tx = _cuda.threadIdx.x
        ty = _cuda.threadIdx.y
        h = D.shape[1]
        j = _cuda.blockIdx.x * EW_X + tx
        r0 = _cuda.blockIdx.y * rows_per_block
        r1 = min(r0 + rows_per_block, D.shape[0])
        gp = 0.0
        gq = 0.0
        if j < h:
            for r in range(r0 + ty, r1, EW_Y):
                a = A[r, j]
                da = a * (ONE - a)
                d = D[r, j] * da
                out[r, j] = d
                if with_q:
                    out[r, h + j] = da
                gp += d
                gq += da
        sh[ty * EW_X + tx] = gp
        shq[ty * EW_X + tx] = gq
        _reduce_columns(sh, tx, ty)
        _reduce_columns(shq, tx, ty)
        if ty == 0 and j < h:
            _cuda.atomic.add(p, j, sh[tx])
            _cuda.atomic.add(q, j, shq[tx])

    @_cuda.jit
    def sparsity(rho_sum, inv_m, rho, beta, s, kl):
        """ρ̂ = rho_sum / m, clipped to [RHO_HAT_EPS, 1 − RHO_HAT_EPS];
        s <- β (−ρ/ρ̂ + (1−ρ)/(1−ρ̂)) in dtype; kl[0] += Σ KL(ρ‖ρ̂)."""
        sh = _cuda.shared.array(NT, _f64)
        tid = _cuda.threadIdx.x
        term = 0.0
        for j in range(_cuda.grid(1), s.shape[0], _cuda.gridsize(1)):
            rh = min(max(rho_sum[j] * inv_m, RHO_LO), RHO_HI)
            term += rho * math.log(rho / rh) + (1.0 - rho) * math.log((1.0 - rho) / (1.0 - rh))
            s[j] = dt(beta * (-rho / rh + (1.0 - rho) / (1.0 - rh)))
        total = _block_sum(sh, term, tid)
        if tid == 0:
            _cuda.atomic.add(kl, 0, total)

    @_cuda.jit
    def assemble(g, acc, theta, w, code, lam1, lam2, inv_m, out, norm):
        """The float64 gradient: out[i] <- g[i]/m + λ θ[i] for weights (code 1: λ1,
        code 2: λ2), acc[i]/m for biases (code 0); norm[0] += Σ λ w², in float64."""
        sh = _cuda.shared.array(NT, _f64)
        tid = _cuda.threadIdx.x
        sq = 0.0
        for i in range(_cuda.grid(1), theta.shape[0], _cuda.gridsize(1)):
            k = code[i]
            if k == 0:
                out[i] = acc[i] * inv_m
            else:
                lam = lam1 if k == 1 else lam2
                out[i] = _f64(g[i]) * inv_m + lam * theta[i]
                wi = _f64(w[i])
                sq += lam * wi * wi
        total = _block_sum(sh, sq, tid)
        if tid == 0:
            _cuda.atomic.add(norm, 0, total)

    @_cuda.jit
    def copy_scalars(acc, out, n, n_scalars):
        for i in range(_cuda.grid(1), n_scalars, _cuda.gridsize(1)):
            out[n + i] = acc[n + i]

    @_cuda.jit
    def softmax_delta(Z, b, y, gb, nll):
        """Z (logits without bias, one row per example) <- P − onehot(y), row by row
        (a thread per row, overflow-safe); nll[0] += Σ −log p(y | x); gb += Σ rows."""
        sh = _cuda.shared.array(NT, _f64)
        tid = _cuda.threadIdx.x
        start = _cuda.grid(1)
        stride = _cuda.gridsize(1)
        K = Z.shape[1]
        loss = 0.0
        for i in range(start, Z.shape[0], stride):
            yi = y[i]
            mx = Z[i, 0] + b[0]
            zy = ZERO
            for k in range(K):
                v = Z[i, k] + b[k]
                Z[i, k] = v
                if v > mx or v != v:  # a NaN logit must reach the cost
                    mx = v
                if k == yi:
                    zy = v
            ssum = ZERO
            for k in range(K):
                e = math.exp(Z[i, k] - mx)
                Z[i, k] = e
                ssum += e
            loss += _f64(math.log(ssum)) - _f64(zy - mx)
            inv = ONE / ssum
            for k in range(K):
                d = Z[i, k] * inv
                if k == yi:
                    d -= ONE
                Z[i, k] = d
        # bias gradient: this thread's rows, class by class (Z is hot in cache)
        for k in range(K):
            part = 0.0
            for i in range(start, Z.shape[0], stride):
                part += Z[i, k]
            total = _block_sum(sh, part, tid)
            if tid == 0:
                _cuda.atomic.add(gb, k, total)
        total = _block_sum(sh, loss, tid)
        if tid == 0:
            _cuda.atomic.add(nll, 0, total)

    @_cuda.jit
    def softmax_rows(Z, b):
        """Z <- softmax of each row of Z + b (a thread per row)."""
        K = Z.shape[1]
        for i in range(_cuda.grid(1), Z.shape[0], _cuda.gridsize(1)):
            mx = Z[i, 0] + b[0]
            for k in range(K):
                v = Z[i, k] + b[k]
                Z[i, k] = v
                if v > mx or v != v:
                    mx = v
            ssum = ZERO
            for k in range(K):
                e = math.exp(Z[i, k] - mx)
                Z[i, k] = e
                ssum += e
            inv = ONE / ssum
            for k in range(K):
                Z[i, k] *= inv

    @_cuda.jit
    def bias_act_permute(T, b, act, n_pos, out):
        """out[n, k, p] <- act(T[k, n*n_pos + p] + b[k]): the GEMM's (filters, positions)
        result, biased, activated and laid out as (images, filters, positions)."""
        K = out.shape[1]
        total = out.shape[0] * K * n_pos
        for idx in range(_cuda.grid(1), total, _cuda.gridsize(1)):
            n = idx // (K * n_pos)
            k = (idx // n_pos) % K
            p = idx % n_pos
            z = T[k, n * n_pos + p] + b[k]
            if act == SIGMOID:
                z = sigmoid(z)
            elif act == RELU:
                if not (z > ZERO or z != z):
                    z = ZERO
            out[n, k, p] = z

    @_cuda.jit
    def scale(C, beta):
        """C <- beta C (0 when beta is 0, whatever C held)."""
        j, i = _cuda.grid(2)
        if i < C.shape[0] and j < C.shape[1]:
            C[i, j] = ZERO if beta == ZERO else beta * C[i, j]

    return _pytypes.SimpleNamespace(
        cast_params=cast_params, bias_sigmoid=bias_sigmoid, output_delta=output_delta,
        sigmoid_delta=sigmoid_delta, hidden_stats=hidden_stats, sparsity=sparsity,
        assemble=assemble, copy_scalars=copy_scalars, softmax_delta=softmax_delta,
        softmax_rows=softmax_rows, bias_act_permute=bias_act_permute, scale=scale)
