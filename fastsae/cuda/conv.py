"""CUDA kernels for convolution and pooling (twins of :func:`fastsae.reference.convolve`
and :func:`fastsae.reference.pool_regions`).

Convolution is im2col + one GEMM per chunk of inputs, as on the CPU: a kernel
copies the patches of a chunk of images into a column matrix (one row per
filter offset, one column per (image, output position)), one GEMM multiplies
the ``(n_filters, ph·pw)`` filter matrix by it, and one kernel adds the bias,
applies the activation and lays the result out as ``(images, filters,
positions)``. Chunks are sized so that the column matrix and the GEMM output
stay within :data:`CHUNK_BYTES`; the buffers are kept in a workspace.

Pooling runs one thread per output value (a region of one map), reducing the
region in float64 for the mean; NaN propagates through the maximum as in
``np.max``. Both functions take host or device input and return NumPy arrays,
as the other backends do.
"""
from __future__ import annotations

import numpy as np

from ..core.args import check_conv_args, check_conv_out, check_pool_args
from . import _matmul as mm
from ._arrays import device_input, shape_proxy
from ._device import cuda, ensure_available, is_simulator, launcher, workspace
from ._elementwise import (LINEAR, MAX, MEAN, RELU, SIGMOID, grid1d, im2col, kernels,
                           pool as _pool)

_ACT = {"sigmoid": SIGMOID, "linear": LINEAR, "relu": RELU}

#: device bytes for one chunk's column matrix, GEMM output and laid-out output
#: (tiny on the simulator, so that the tests go through several chunks)
CHUNK_BYTES = 4096 if is_simulator() else 256 * 1024 * 1024


class _ConvWorkspace:
    def __init__(self, q, K, n_pos, chunk, dtype):
        c = cuda()
        self.col = c.device_array(q * chunk * n_pos, dtype)
        self.T = c.device_array(K * chunk * n_pos, dtype)
        self.out = c.device_array(chunk * K * n_pos, dtype)


def convolve(W, b, images, *, activation="sigmoid", out=None):
    """Valid 2-D correlation of filters over inputs, plus bias and activation (CUDA).

    Same signature and results as :func:`fastsae.reference.convolve`;
    ``images`` may be on the host or the device, the result is a NumPy array.
    """
    ensure_available()
    check_conv_args(W, b, shape_proxy(images), activation)
    maps = check_conv_out(out, W, shape_proxy(images))
    c = cuda()
    imgs = device_input(images)
    dt = np.dtype(imgs.dtype)
    K, ph, pw = W.shape
    N, H, Wd = imgs.shape
    oh, ow = H - ph + 1, Wd - pw + 1
    q, n_pos = ph * pw, oh * ow
    per_image = (q + 2 * K) * n_pos * dt.itemsize
    chunk = int(max(1, min(N, CHUNK_BYTES // per_image)))
    eng = mm.engine()
    ws = workspace("conv", (q, K, n_pos, chunk, dt),
                   lambda: _ConvWorkspace(q, K, n_pos, chunk, dt))
    E = kernels(dt)
    Wmat = c.to_device(np.ascontiguousarray(W.reshape(K, q), dtype=dt))
    bd = c.to_device(np.ascontiguousarray(b, dtype=dt))
    out = np.empty((N, K, n_pos), dt) if maps is None else maps.reshape(N, K, n_pos)
    act = _ACT[activation]
    with mm.stream_scope(eng):
        Wop = mm.operand(Wmat, eng)
        for n0 in range(0, N, chunk):
            nc = min(chunk, N - n0)
            col = ws.col[:q * nc * n_pos].reshape(q, nc * n_pos)
            T = ws.T[:K * nc * n_pos].reshape(K, nc * n_pos)
            oc = ws.out[:nc * K * n_pos].reshape(nc, K, n_pos)
            im2col(imgs, n0, ph, pw, ow, n_pos, col)
            mm.gemm(eng, False, False, 1.0, Wop, mm.operand(col, eng), 0.0, mm.operand(T, eng))
            launcher(E.bias_act_permute, *grid1d(nc * K * n_pos))(T, bd, act, n_pos, oc)
            oc.copy_to_host(out[n0:n0 + nc])
    return out.reshape(N, K, oh, ow) if maps is None else maps


def pool_regions(maps, row_starts, row_ends, col_starts, col_ends, *, mode="mean"):
    """Mean or max over rectangular regions (CUDA); same as
    :func:`fastsae.reference.pool_regions`. ``maps`` may be on the host or the device;
    the result is a NumPy array."""
    ensure_available()
    check_pool_args(shape_proxy(maps), row_starts, row_ends, col_starts, col_ends, mode)
    if not isinstance(mode, str):
        maps = device_input(maps)               # copied to the device once for every mode
        return np.stack([pool_regions(maps, row_starts, row_ends, col_starts, col_ends, mode=m)
                         for m in mode])
    c = cuda()
    lead = tuple(maps.shape[:-2])
    H, W = maps.shape[-2:]
    dt = np.dtype(maps.dtype)
    idx = [c.to_device(np.ascontiguousarray(a, dtype=np.int64))
           for a in (row_starts, row_ends, col_starts, col_ends)]
    R, C = len(row_starts), len(col_starts)
    n_planes = int(np.prod(lead, dtype=np.int64))
    if n_planes == 0:
        return np.empty(lead + (R, C), dt)
    planes = device_input(maps).reshape(n_planes, H, W)
    out = c.device_array((n_planes, R, C), dt)
    _pool(planes, *idx, MEAN if mode == "mean" else MAX, out)
    return out.copy_to_host().reshape(lead + (R, C))


__all__ = ["convolve", "pool_regions"]
