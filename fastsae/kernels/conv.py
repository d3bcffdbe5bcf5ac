"""Numba kernels for convolution and pooling (twins of ``fastsae.reference.convolve``
and ``fastsae.reference.pool_regions``).

Convolution is im2col + GEMM, blocked so that everything stays in cache: the
output positions of every input are cut into blocks; a thread takes a block,
copies the patches it needs into a small column matrix (one row per filter
offset, one column per output position: contiguous row segments of the input),
multiplies the filter matrix by it straight into its place in the output
(``K × block``, a column block of the ``(K, oh·ow)`` plane) and applies the
bias and activation while the block is still in cache. Blocks of all inputs
are spread over the threads, so one long input or many short ones both use
every core.

Pooling reads each map once, for the mean and the max together: for every
band of rows it combines the rows elementwise (vectorised across columns), then
reduces each column region.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..core.config import JIT_OPTIONS
from ..core.threads import scipy_blas_single_thread
from ..core.args import check_conv_args, check_conv_out, check_pool_args
from ..core.bfloat16 import is_bfloat16
from . import _mkl
from ._blas import gemm, gemm_address, keep_threads
from ._mkl import gemm_bf16, mkl_threads_local
from ._parallel import parallel_kernel, threads_for
from ._math import one, round_to_bf16, sigmoid

SIGMOID, LINEAR, RELU = 0, 1, 2
_ACT = {"sigmoid": SIGMOID, "linear": LINEAR, "relu": RELU}
MEAN, MAX = 0, 1

#: output positions per block (K x block of output stays in L2)
CONV_BLOCK_BYTES = 384 * 1024


# Each loop below works on C[:, q0:q1]: slice first, then index from 0 (Numba
# cannot prove that q0 + q >= 0, and the negative-index check it would insert
# stops vectorisation). C is contiguous, so the loops vectorise.

@njit(**JIT_OPTIONS)
def _bias_sigmoid(C, b, q0, q1):
    """C[:, q0:q1] <- σ(C[:, q0:q1] + b[:, None])."""
    n = q1 - q0
    for k in range(C.shape[0]):
        row = C[k][q0:q1]
        bk = b[k]
        for q in range(n):
            row[q] = sigmoid(row[q] + bk)


@njit(**JIT_OPTIONS)
def _bias_relu(C, b, q0, q1):
    """C[:, q0:q1] <- max(C[:, q0:q1] + b[:, None], 0)."""
    n = q1 - q0
    for k in range(C.shape[0]):
        row = C[k][q0:q1]
        bk = b[k]
        for q in range(n):
            row[q] = max(row[q] + bk, row[q] * 0)


@njit(**JIT_OPTIONS)
def _bias_linear(C, b, q0, q1):
    """C[:, q0:q1] += b[:, None]."""
    n = q1 - q0
    for k in range(C.shape[0]):
        row = C[k][q0:q1]
        bk = b[k]
        for q in range(n):
            row[q] = row[q] + bk


#: The bias and activation that :func:`_convolve` applies; each variant binds its own.
BIAS_ACTIVATION = _bias_sigmoid


@njit(**JIT_OPTIONS)
def _im2col_block(img, ph, pw, ow, p0, p1, col):
    """col[a*pw + c, q] = img[i + a, j + c] for positions p0 <= p = i*ow + j < p1."""
    p = p0
    while p < p1:
        i = p // ow
        j0 = p - i * ow
        j1 = min(ow, j0 + (p1 - p))
        q0 = p - p0
        n = j1 - j0
        for a in range(ph):
            src = img[i + a]
            for c in range(pw):
                dst = col[a * pw + c][q0:q0 + n]
                seg = src[j0 + c:j0 + c + n]
                for q in range(n):
                    dst[q] = seg[q]
        p += n


#: The GEMM :func:`_convolve` calls, and how it holds that GEMM to one thread per share
#: (``GEMM_THREADS(fn_threads, n)`` returns the previous setting); the bfloat16 variants
#: bind oneMKL's bfloat16 GEMM and its thread-local setting.
GEMM = gemm
GEMM_THREADS = keep_threads


@parallel_kernel
def _convolve(fn, fn_threads, Wmat, b, images, out, ph, pw, block, n_threads, t0, t1):
    N, H, Wd = images.shape
    ow = Wd - pw + 1
    n_pos = out.shape[2]
    n_blocks = (n_pos + block - 1) // block
    total = N * n_blocks
    for t in range(t0, t1):
        previous = GEMM_THREADS(fn_threads, 1)
        col = np.empty((ph * pw, block), images.dtype)
        for task in range(t * total // n_threads, (t + 1) * total // n_threads):
            n = task // n_blocks
            p0 = (task - n * n_blocks) * block
            p1 = min(p0 + block, n_pos)
            _im2col_block(images[n], ph, pw, ow, p0, p1, col)
            GEMM(fn, False, False, 1.0, Wmat, col[:, :p1 - p0], 0.0, out[n, :, p0:p1])
            BIAS_ACTIVATION(out[n], b, p0, p1)
        GEMM_THREADS(fn_threads, previous)


#: One compiled driver per activation and precision, so that a run compiles only its
#: own. bfloat16: filters and images as uint16 bits (the column blocks are bfloat16
#: copies), float32 maps.
_BF16 = dict(GEMM=gemm_bf16, GEMM_THREADS=mkl_threads_local)
_CONVOLVE = {
    (SIGMOID, False): _convolve,
    (RELU, False): _convolve.variant("relu", BIAS_ACTIVATION=_bias_relu),
    (LINEAR, False): _convolve.variant("linear", BIAS_ACTIVATION=_bias_linear),
    (SIGMOID, True): _convolve.variant("bf16", **_BF16),
    (RELU, True): _convolve.variant("relu_bf16", BIAS_ACTIVATION=_bias_relu, **_BF16),
    (LINEAR, True): _convolve.variant("linear_bf16", BIAS_ACTIVATION=_bias_linear, **_BF16),
}


#: Output positions per block from this many filters on, and how many: a tile of
#: K x 128 maps. On 2 cores of a Xeon (AVX-512, oneMKL as the BLAS), 200 and 400 filters
#: 8 x 8 and 12 x 8, float32, float64 and bfloat16, 128 positions ran 1.1-1.5x faster
#: than the 245-491 that the byte budget gives, and than 64 or 256. With fewer filters
#: (24 over FSDD-sized clips), or inputs of up to two such blocks (256 filters over
#: 197 positions: one block of 197 ran 1.3x faster than 128 + 69), the budget stays.
WIDE_FILTERS, WIDE_BLOCK = 128, 128


def conv_block(n_filters, itemsize, n_pos):
    """Output positions per GEMM block of :func:`convolve`."""
    if n_filters >= WIDE_FILTERS and n_pos > 2 * WIDE_BLOCK:
        return WIDE_BLOCK
    return int(max(16, min(n_pos, CONV_BLOCK_BYTES // (n_filters * itemsize))))


def convolve(W, b, images, *, activation="sigmoid", out=None):
    """Valid 2-D correlation of filters over inputs, plus bias and activation (Numba).

    Same signature and results as :func:`fastsae.reference.convolve` (bfloat16
    images: oneMKL's bfloat16 GEMM, float32 maps; the extra ``fastsae-audio[mkl]``). A
    reused ``out`` saves the page faults of fresh output memory (about 15 %
    of the time at the UFLDL shape).
    """
    check_conv_args(W, b, images, activation, bfloat16=True)
    maps = check_conv_out(out, W, images)
    dt = images.dtype
    images = np.ascontiguousarray(images)
    K, ph, pw = W.shape
    N, H, Wd = images.shape
    oh, ow = H - ph + 1, Wd - pw + 1
    if is_bfloat16(dt):
        mkl = _mkl.library()
        W16 = np.empty((K, ph * pw), np.uint16)
        round_to_bf16(np.ascontiguousarray(W).reshape(K, ph * pw), W16)
        out = (np.empty((N, K, oh * ow), np.float32) if maps is None
               else maps.reshape(N, K, oh * ow))
        block = conv_block(K, 4, oh * ow)
        n_threads = threads_for(2.0 * K * ph * pw * N * oh * ow, N * oh * ow)
        _CONVOLVE[_ACT[activation], True](n_threads)(
            mkl.gemm, mkl.threads_local, W16, b.astype(np.float32), images.view(np.uint16), out,
            ph, pw, block, n_threads)
        return out.reshape(N, K, oh, ow) if maps is None else maps
    Wmat = np.ascontiguousarray(W.reshape(K, ph * pw), dtype=dt)
    out = np.empty((N, K, oh * ow), dt) if maps is None else maps.reshape(N, K, oh * ow)
    block = conv_block(K, dt.itemsize, oh * ow)
    n_threads = threads_for(2.0 * K * ph * pw * N * oh * ow, N * oh * ow)
    with scipy_blas_single_thread():
        _CONVOLVE[_ACT[activation], False](n_threads)(gemm_address(dt), 0, Wmat, b.astype(dt),
                                                      images, out, ph, pw, block, n_threads)
    return out.reshape(N, K, oh, ow) if maps is None else maps


@njit(**JIT_OPTIONS)
def _pool_band(plane, r0, r1, cs, ce, acc, kind, out_row):
    """``out_row[c]`` <- the mean (``kind`` MEAN) or max of ``plane[r0:r1, cs[c]:ce[c]]``:
    the band's rows combined elementwise into ``acc`` (vectorised across columns), then
    each column region reduced."""
    W = acc.shape[0]
    first = plane[r0]
    for j in range(W):                           # a loop, not acc[:] = ...: a slice copy
        acc[j] = first[j]                        # compiles a shape-error message
    if kind == MEAN:
        for i in range(r0 + 1, r1):
            row = plane[i]
            for j in range(W):
                acc[j] += row[j]
        for c in range(cs.shape[0]):
            a, b = cs[c], ce[c]
            s = one(acc[a]) - one(acc[a])        # a zero of the dtype (acc[a] * 0: NaN for inf)
            for j in range(a, b):
                s += acc[j]
            out_row[c] = s / ((r1 - r0) * (b - a))
    else:
        for i in range(r0 + 1, r1):
            row = plane[i]
            for j in range(W):
                acc[j] = max(acc[j], row[j])
        for c in range(cs.shape[0]):
            a, b = cs[c], ce[c]
            v = acc[a]
            for j in range(a + 1, b):
                v = max(v, acc[j])
            out_row[c] = v


@njit(**JIT_OPTIONS)
def _pool_band_both(plane, r0, r1, cs, ce, acc, acc_max, mean_row, max_row):
    """:func:`_pool_band` for the mean and the max at once, the band read once."""
    W = acc.shape[0]
    first = plane[r0]
    for j in range(W):
        acc[j] = first[j]
        acc_max[j] = first[j]
    for i in range(r0 + 1, r1):
        row = plane[i]
        for j in range(W):
            v = row[j]
            acc[j] += v
            acc_max[j] = max(acc_max[j], v)
    for c in range(cs.shape[0]):
        a, b = cs[c], ce[c]
        s = one(acc[a]) - one(acc[a])
        v = acc_max[a]
        for j in range(a, b):
            s += acc[j]
            v = max(v, acc_max[j])
        mean_row[c] = s / ((r1 - r0) * (b - a))
        max_row[c] = v


@parallel_kernel
def _pool(planes, rs, re, cs, ce, modes, out, n_threads, t0, t1):
    """``out[k, p]`` <- plane ``p`` pooled by ``modes[k]`` (MEAN or MAX); a mean and a max
    together read each plane once."""
    P, H, W = planes.shape
    both = modes.shape[0] == 2                   # a mean and a max (check_pool_mode: no repeats)
    i_mean = 0 if modes[0] == MEAN else 1
    for t in range(t0, t1):
        acc = np.empty(W, planes.dtype)          # row buffers, one set per thread
        acc_max = np.empty(W, planes.dtype)
        for p in range(t * P // n_threads, (t + 1) * P // n_threads):
            plane = planes[p]
            for r in range(rs.shape[0]):
                if both:
                    _pool_band_both(plane, rs[r], re[r], cs, ce, acc, acc_max,
                                    out[i_mean, p, r], out[1 - i_mean, p, r])
                else:
                    for k in range(modes.shape[0]):
                        _pool_band(plane, rs[r], re[r], cs, ce, acc, modes[k], out[k, p, r])


def pool_regions(maps, row_starts, row_ends, col_starts, col_ends, *, mode="mean"):
    """Mean or max over rectangular regions (Numba); same as
    :func:`fastsae.reference.pool_regions`. Several modes (a tuple) are pooled in one
    read of the maps."""
    check_pool_args(maps, row_starts, row_ends, col_starts, col_ends, mode)
    lead = maps.shape[:-2]
    H, W = maps.shape[-2:]
    planes = np.ascontiguousarray(maps).reshape(-1, H, W)
    idx = [np.ascontiguousarray(a, dtype=np.int64)
           for a in (row_starts, row_ends, col_starts, col_ends)]
    modes = (mode,) if isinstance(mode, str) else tuple(mode)
    codes = np.array([MEAN if m == "mean" else MAX for m in modes], np.int64)
    out = np.empty((len(modes), planes.shape[0], len(idx[0]), len(idx[2])), maps.dtype)
    n_threads = threads_for(30.0 * planes.size, planes.shape[0])   # memory-bound: a few flops per byte
    _pool(n_threads)(planes, *idx, codes, out, n_threads)
    shape = lead + out.shape[2:]
    return out[0].reshape(shape) if isinstance(mode, str) else out.reshape((len(modes),) + shape)
