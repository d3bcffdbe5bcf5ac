"""NumPy references for convolution and pooling (re-exported by :mod:`fastsae.reference`)."""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import expit

from ._validation import check_choice, check_conv_args, check_conv_out, check_int, check_pool_args
from .exceptions import ParameterError

REMAINDER_RULES = ("drop", "partial")


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
    images : np.ndarray [shape=(n_images, H, W)], float32 or float64
    activation : {"sigmoid", "linear", "relu"}
    out : np.ndarray, optional
        Where to write the maps (C-contiguous, their shape and dtype), e.g. a
        buffer reused from batch to batch; returned.

    Returns
    -------
    maps : np.ndarray [shape=(n_images, n_filters, H - ph + 1, W - pw + 1)], ``images.dtype``
    """
    check_conv_args(W, b, images, activation)
    check_conv_out(out, W, images)
    dt = images.dtype
    ph, pw = W.shape[1:]
    patches = sliding_window_view(images, (ph, pw), axis=(1, 2))      # (N, oh, ow, ph, pw)
    Z = np.tensordot(patches, W.astype(dt), axes=([3, 4], [1, 2]))    # (N, oh, ow, K)
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
    mode : {"mean", "max"}

    Returns
    -------
    pooled : np.ndarray [shape=(..., R, C)], ``maps.dtype``
    """
    check_pool_args(maps, row_starts, row_ends, col_starts, col_ends, mode)
    reduce = np.mean if mode == "mean" else np.max
    out = np.empty(maps.shape[:-2] + (len(row_starts), len(col_starts)), maps.dtype)
    for r, (r0, r1) in enumerate(zip(row_starts, row_ends)):
        for c, (c0, c1) in enumerate(zip(col_starts, col_ends)):
            out[..., r, c] = reduce(maps[..., r0:r1, c0:c1], axis=(-2, -1))
    return out


def region_bounds(length, *, size=None, n_regions=None, remainder="drop"):
    """Start and end indices of pooling regions along one axis of ``length``.

    Exactly one of ``size`` (regions of that many elements) and ``n_regions``
    (that many regions, whatever the length) is given.

    Remainder rules:

    * ``size``, ``remainder="drop"``: ``length // size`` regions; the last
      ``length % size`` elements belong to no region (UFLDL's cnnPool, which
      needs ``length`` to be a multiple of ``size``). A ``length`` below
      ``size`` gives one region of everything.
    * ``size``, ``remainder="partial"``: the trailing elements form one more,
      smaller region.
    * ``n_regions``: region ``r`` is ``[floor(r L / R), floor((r + 1) L / R))``:
      non-overlapping, covering everything, sizes differing by at most one.
      If ``L < R`` some regions would be empty; region ``r`` is then the single
      element ``floor(r L / R)`` (elements repeat, no region is empty).

    Returns
    -------
    starts, ends : np.ndarray [shape=(n_regions,), dtype=int64]

    Examples
    --------
    >>> region_bounds(10, n_regions=4)
    (array([0, 2, 5, 7]), array([ 2,  5,  7, 10]))
    >>> region_bounds(10, size=4)
    (array([0, 4]), array([4, 8]))
    """
    length = check_int(length, "length", low=1)
    if (size is None) == (n_regions is None):
        raise ParameterError("give exactly one of pool_shape/size and n_regions")
    if size is not None:
        size = check_int(size, "pool size", low=1)
        check_choice(remainder, "remainder", REMAINDER_RULES)
        n_full = length // size
        if n_full == 0:
            return np.array([0]), np.array([length])
        starts = np.arange(n_full) * size
        ends = starts + size
        if remainder == "partial" and length % size:
            starts = np.append(starts, n_full * size)
            ends = np.append(ends, length)
        return starts.astype(np.int64), ends.astype(np.int64)
    n_regions = check_int(n_regions, "n_regions", low=1)
    r = np.arange(n_regions)
    starts = (r * length) // n_regions
    ends = ((r + 1) * length) // n_regions
    ends = np.maximum(ends, starts + 1)
    return starts.astype(np.int64), ends.astype(np.int64)
