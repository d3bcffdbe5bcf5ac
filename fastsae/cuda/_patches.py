"""Elementwise CUDA kernels of the convolutional models: patches, their adjoint, pooling.

The convolutional autoencoder (:mod:`fastsae.cuda.convae`) and network
(:mod:`fastsae.cuda.convnet`) lay a chunk of ``nc`` images out as a *patch
matrix*: one row per (image, output position) ``n·P + i·ow + j`` (``P = oh·ow``),
one column per filter offset ``(c·ph + a)·pw + b``. A convolution is then a GEMM
``A = Xp Wᵀ`` with the filters ``W (K, C·ph·pw)``, and its result is the
``(rows, K)`` matrix of the dense autoencoder's hidden layer (one bias per
column), so the fused kernels of :mod:`fastsae.cuda._elementwise` (bias and
sigmoid with the column sums, output delta, hidden statistics) apply unchanged.

Here are the steps that are not GEMMs and not already there, each a plain
grid-stride loop with one thread per output value, so that no two threads
write the same element (no atomics, results independent of the launch):

* :func:`im2col`: images ``(N, C, H, W)`` -> patch matrix;
* :func:`col2im`: its adjoint, a patch matrix -> images, each pixel gathering
  the ``≤ ph·pw`` entries that came from it (the scatter-add of the
  transposed convolution, written as a gather and summed in float64);
* :func:`pool_forward`: mean or max over each pooling region of each map,
  read from the patch-major ``(rows, K)`` activations, written as
  ``(nc, K, R, S)`` (the layout of the next layer's input and of the
  softmax's features), with the position of each maximum;
* :func:`expand_channels`: a per-channel bias as one value per pixel;
* ``pool_sigmoid_backward`` (per dtype, :func:`kernels`): the gradient of the
  pooling with respect to each activation, times the sigmoid's derivative, in
  place, with the column sums that give the bias gradient. Each activation
  gathers from the regions that contain it: the regions are intervals with
  non-decreasing starts and ends along each axis (see
  :func:`fastsae.core.layouts.region_bounds`), so those holding row ``i`` are
  a contiguous range ``[lo[i], hi[i])`` (:func:`containing_regions`).
"""
from __future__ import annotations

import functools
import types as _pytypes

import numpy as np

from ._device import cuda, launcher
from ._elementwise import EW_N, EW_X, EW_Y, MEAN, _reduce_columns, grid1d

_cuda = cuda()
_f64 = np.float64


def containing_regions(starts, ends, length):
    """``(lo, hi)`` int64 arrays: index ``i`` of an axis of ``length`` lies in exactly the
    regions ``lo[i] <= r < hi[i]`` (none when ``lo[i] == hi[i]``)."""
    starts, ends = np.asarray(starts), np.asarray(ends)
    lo = np.zeros(length, np.int64)
    hi = np.zeros(length, np.int64)
    for i in range(length):
        inside = np.flatnonzero((starts <= i) & (i < ends))
        if inside.size:
            # region_bounds gives non-decreasing starts and ends: the regions are contiguous
            assert inside[-1] - inside[0] + 1 == inside.size, "pooling regions out of order"
            lo[i], hi[i] = inside[0], inside[-1] + 1
    return lo, hi


@_cuda.jit
def _im2col(images, n0, ph, pw, oh, ow, out):
    """out[n·P + i·ow + j, (c·ph + a)·pw + b] <- images[n0 + n, c, i + a, j + b]."""
    CK = out.shape[1]
    P = oh * ow
    q_per_c = ph * pw
    for idx in range(_cuda.grid(1), out.shape[0] * CK, _cuda.gridsize(1)):
        row = idx // CK
        q = idx - row * CK
        n = row // P
        p = row - n * P
        i = p // ow
        j = p - i * ow
        c = q // q_per_c
        rem = q - c * q_per_c
        a = rem // pw
        b = rem - a * pw
        out[row, q] = images[n0 + n, c, i + a, j + b]


def im2col(images, n0, ph, pw, oh, ow, out):
    """The patch matrix ``out (nc·oh·ow, C·ph·pw)`` of images ``n0 .. n0 + nc - 1``."""
    launcher(_im2col, *grid1d(out.size))(images, n0, ph, pw, oh, ow, out)


@_cuda.jit
def _col2im(cols, ph, pw, oh, ow, out):
    """out[n, c, y, x] <- Σ_{a, b} cols[n·P + (y − a)·ow + (x − b), (c·ph + a)·pw + b]
    over the offsets whose position ``(y − a, x − b)`` is inside the map."""
    C = out.shape[1]
    H = out.shape[2]
    W = out.shape[3]
    P = oh * ow
    total = out.shape[0] * C * H * W
    for idx in range(_cuda.grid(1), total, _cuda.gridsize(1)):
        n = idx // (C * H * W)
        c = (idx // (H * W)) % C
        y = (idx // W) % H
        x = idx % W
        acc = 0.0
        for a in range(max(0, y - oh + 1), min(ph, y + 1)):
            row = n * P + (y - a) * ow + x
            col = (c * ph + a) * pw
            for b in range(max(0, x - ow + 1), min(pw, x + 1)):
                acc += cols[row - b, col + b]
        out[n, c, y, x] = acc


def col2im(cols, ph, pw, oh, ow, out):
    """Images ``out (nc, C, H, W)`` from a patch matrix: the adjoint of :func:`im2col`."""
    launcher(_col2im, *grid1d(out.size))(cols, ph, pw, oh, ow, out)


@_cuda.jit
def _pool_forward(A, n_pos, ow, rs, re, cs, ce, mode, out, arg):
    """out[n, k, r, s] <- mean or max of map k of image n (A[n·P + i·ow + j, k]) over
    region (r, s); arg[n, k, r, s] <- the position i·ow + j of the (first) maximum."""
    K = out.shape[1]
    R = out.shape[2]
    S = out.shape[3]
    total = out.shape[0] * K * R * S
    for idx in range(_cuda.grid(1), total, _cuda.gridsize(1)):
        n = idx // (K * R * S)
        k = (idx // (R * S)) % K
        r = (idx // S) % R
        s = idx % S
        base = n * n_pos
        if mode == MEAN:
            acc = 0.0
            for i in range(rs[r], re[r]):
                for j in range(cs[s], ce[s]):
                    acc += A[base + i * ow + j, k]
            out[n, k, r, s] = acc / ((re[r] - rs[r]) * (ce[s] - cs[s]))
        else:
            best = rs[r] * ow + cs[s]
            v = A[base + best, k]
            for i in range(rs[r], re[r]):
                for j in range(cs[s], ce[s]):
                    x = A[base + i * ow + j, k]
                    if x > v:  # strictly: the first maximum wins ties, as np.argmax
                        v = x
                        best = i * ow + j
            out[n, k, r, s] = v
            arg[n, k, r, s] = best


def pool_forward(A, n_pos, ow, bounds, mode, out, arg):
    """Pool the patch-major activations ``A (nc·n_pos, K)`` into ``out (nc, K, R, S)``;
    ``bounds`` is ``(rs, re, cs, ce)`` on the device."""
    launcher(_pool_forward, *grid1d(out.size))(A, n_pos, ow, *bounds, mode, out, arg)


@_cuda.jit
def _expand_channels(c, per_channel, out):
    for i in range(_cuda.grid(1), out.shape[0], _cuda.gridsize(1)):
        out[i] = c[i // per_channel]


def expand_channels(c, per_channel, out):
    """``out[i] <- c[i // per_channel]``: one value per channel, repeated over its pixels."""
    launcher(_expand_channels, *grid1d(out.size))(c, per_channel, out)


@functools.lru_cache(maxsize=None)
def kernels(dtype):
    """The kernels of this module that compute in ``dtype`` (float32 or float64)."""
    dt = np.dtype(dtype).type
    ONE = dt(1.0)
    ZERO = dt(0.0)

    @_cuda.jit
    def pool_sigmoid_backward(dP, arg, A, n_pos, ow, rs, re, cs, ce, rlo, rhi, clo, chi,
                              mode, gb, rows_per_block):
        """A (activations, patch-major) <- δ = (∂J/∂A) ⊙ A(1 − A), where ∂J/∂A at
        (n, i, j, k) gathers dP[n, k, r, s] from every region (r, s) holding (i, j):
        divided by the region's size (mean), or where (i, j) is its maximum (max);
        gb += column sums of δ."""
        sh = _cuda.shared.array(EW_N, _f64)
        tx = _cuda.threadIdx.x
        ty = _cuda.threadIdx.y
        k = _cuda.blockIdx.x * EW_X + tx
        r0 = _cuda.blockIdx.y * rows_per_block
        r1 = min(r0 + rows_per_block, A.shape[0])
        part = 0.0
        if k < A.shape[1]:
            for row in range(r0 + ty, r1, EW_Y):
                n = row // n_pos
                p = row - n * n_pos
                i = p // ow
                j = p - i * ow
                g = ZERO
                for r in range(rlo[i], rhi[i]):
                    for s in range(clo[j], chi[j]):
                        if mode == MEAN:
                            g += dP[n, k, r, s] / dt((re[r] - rs[r]) * (ce[s] - cs[s]))
                        elif arg[n, k, r, s] == p:
                            g += dP[n, k, r, s]
                a = A[row, k]
                d = g * (a * (ONE - a))
                A[row, k] = d
                part += d
        sh[ty * EW_X + tx] = part
        _reduce_columns(sh, tx, ty)
        if ty == 0 and k < A.shape[1]:
            _cuda.atomic.add(gb, k, sh[tx])

    return _pytypes.SimpleNamespace(pool_sigmoid_backward=pool_sigmoid_backward)
