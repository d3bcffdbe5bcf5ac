"""NumPy reference: convolution of filters over images, and pooling over regions."""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import expit

from ..core.args import check_conv_args, check_conv_out, check_pool_args
from ..core.bfloat16 import bf16_rounded, is_bfloat16


def _activate(Z, activation):
    if activation == "sigmoid":
        return expit(Z)
    if activation == "relu":
        return np.maximum(Z, 0)
    return Z


def convolve(W, b, images, *, activation="sigmoid", out=None):
    """Valid 2-D cross-correlation of K filters over N single-channel inputs, plus bias and activation.

    ``maps[n, k, i, j] = act(Σ_{a,c} W[k, a, c] · images[n, i + a, j + c] + b[k])``:
    correlation, not convolution (the filter is not flipped; PyTorch's
    ``conv2d`` convention). It is what the autoencoder's encoder computes on
    the patch at ``(i, j)`` when the filter is the weight row laid out as the
    patch (see :func:`fastsae.conv.filters_from_weights`).

    Parameters
    ----------
    W : np.ndarray [shape=(n_filters, ph, pw)]
    b : np.ndarray [shape=(n_filters,)]
    images : np.ndarray [shape=(n_images, H, W)], float32, float64 or bfloat16
        bfloat16 (``ml_dtypes.bfloat16``): the filters are rounded to bfloat16
        too, the sums accumulate in float32 and the maps are float32 (the
        arithmetic of the compiled kernel's bfloat16 GEMM).
    activation : {"sigmoid", "linear", "relu"}
    out : np.ndarray, optional
        Where to write the maps (C-contiguous, their shape and dtype), e.g. a
        buffer reused from batch to batch; returned.

    Returns
    -------
    maps : np.ndarray [shape=(n_images, n_filters, H - ph + 1, W - pw + 1)], ``images.dtype``
        (float32 for bfloat16)
    """
    check_conv_args(W, b, images, activation, bfloat16=True)
    check_conv_out(out, W, images)
    dt = images.dtype
    ph, pw = W.shape[1:]
    if is_bfloat16(dt):           # bfloat16 operands (W rounded through float32), float32 sums
        Wd = bf16_rounded(W)
        dt = np.dtype(np.float32)
        images = images.astype(dt)
    else:
        Wd = W.astype(dt)
    patches = sliding_window_view(images, (ph, pw), axis=(1, 2))      # (N, oh, ow, ph, pw)
    Z = np.tensordot(patches, Wd, axes=([3, 4], [1, 2]))              # (N, oh, ow, K)
    Z = Z.transpose(0, 3, 1, 2) + b.astype(dt)[None, :, None, None]
    maps = _activate(Z, activation)
    if out is not None:
        out[...] = maps
        return out
    return np.ascontiguousarray(maps, dtype=dt)


def pool_regions(maps, row_starts, row_ends, col_starts, col_ends, *, mode="mean"):
    """Mean or max of ``maps`` over rectangular regions given by their bounds.

    Region ``(r, c)`` covers rows ``row_starts[r]:row_ends[r]`` and columns
    ``col_starts[c]:col_ends[c]`` of the last two axes.

    Parameters
    ----------
    maps : np.ndarray [shape=(..., H, W)]
    row_starts, row_ends : np.ndarray [shape=(R,)], int
    col_starts, col_ends : np.ndarray [shape=(C,)], int
    mode : {"mean", "max"} or tuple of them
        A tuple pools by each mode, in that order.

    Returns
    -------
    pooled : np.ndarray [shape=(..., R, C)], ``maps.dtype``
        With a tuple ``mode``, of shape ``(len(mode), ..., R, C)``.
    """
    check_pool_args(maps, row_starts, row_ends, col_starts, col_ends, mode)
    if not isinstance(mode, str):
        return np.stack([pool_regions(maps, row_starts, row_ends, col_starts, col_ends, mode=m)
                         for m in mode])
    reduce = np.mean if mode == "mean" else np.max
    out = np.empty(maps.shape[:-2] + (len(row_starts), len(col_starts)), maps.dtype)
    for r, (r0, r1) in enumerate(zip(row_starts, row_ends)):
        for c, (c0, c1) in enumerate(zip(col_starts, col_ends)):
            out[..., r, c] = reduce(maps[..., r0:r1, c0:c1], axis=(-2, -1))
    return out
