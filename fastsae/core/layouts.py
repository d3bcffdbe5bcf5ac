"""Parameter layouts: pure shape arithmetic, packing and unpacking.

L-BFGS sees one flat float64 vector ``theta``; a layout is the tuple of the
shapes packed in it, in order. :func:`pack` / :func:`unpack` are UFLDL's
``stack2params`` / ``params2stack`` for any list of arrays; :func:`unpack`
returns views into ``theta``, so that writing to them writes to ``theta``.

The layouts of every model live here, below the three backends, so that the
NumPy reference, the Numba kernels and the CUDA kernels read one definition:

* sparse autoencoder (:func:`sae_layout`): ``W1 (h, v)``, ``W2 (v, h)``
  (absent when tied: ``W2 = W1.T``), ``b1 (h,)``, ``b2 (v,)`` — UFLDL's order;
* softmax (:func:`softmax_layout`): ``W (K, n)``, ``b (K,)``;
* stacked network (:func:`stacked_layout`): the softmax first, then
  ``W1, b1, W2, b2, ...`` (UFLDL's ``[softmaxTheta; stackparams]``);
* convolutional autoencoder (:func:`conv_ae_layout`): ``W (K, C, ph, pw)``,
  ``V`` (absent when tied), ``b (K,)``, ``c (C,)``;
* convolutional network (:func:`conv_net_layout`): the softmax, then each
  layer's ``W_l (K_l, C_l, ph_l, pw_l)``, ``b_l (K_l,)``; its shapes come
  from :func:`conv_net_plan`;
* a shard's sufficient statistics (:func:`sae_stats_layout`).

Pooling regions along one axis are :func:`region_bounds`.
"""
from __future__ import annotations

import math
import numbers
from collections import namedtuple
from typing import Sequence

import numpy as np

from ..exceptions import ParameterError
from .types import DTypeLike
from .checks import POOL_MODES, REMAINDER_RULES, check_choice, check_int, check_pair

Layout = tuple  # tuple of shapes


def layout_size(layout: Layout) -> int:
    return sum(math.prod(s) for s in layout)


def pack(arrays: Sequence[np.ndarray],
         dtype: DTypeLike = np.float64) -> tuple[np.ndarray, Layout]:
    """Concatenate arrays (C order) into one flat vector.

    Returns
    -------
    theta : np.ndarray [shape=(n_params,)]
    layout : tuple of shapes, for :func:`unpack`

    Examples
    --------
    >>> W, b = np.ones((2, 3)), np.zeros(2)
    >>> theta, layout = pack([W, b])
    >>> theta.shape, layout
    ((8,), ((2, 3), (2,)))
    """
    arrays = [np.asarray(a) for a in arrays]
    layout = tuple(a.shape for a in arrays)
    theta = np.empty(layout_size(layout), dtype=dtype)
    offset = 0
    for a in arrays:
        theta[offset:offset + a.size] = a.ravel()
        offset += a.size
    return theta, layout


def unpack(theta: np.ndarray, layout: Layout) -> list[np.ndarray]:
    """Split a flat vector into views of the shapes in ``layout``."""
    theta = np.asarray(theta)
    if theta.ndim != 1:
        raise ParameterError(f"theta must be 1-D; got shape {theta.shape}")
    if not theta.flags.c_contiguous:
        raise ParameterError("theta must be contiguous")
    need = layout_size(layout)
    if theta.size != need:
        raise ParameterError(
            f"theta must have {need} elements for layout {layout}; got {theta.size}"
        )
    out = []
    offset = 0
    for shape in layout:
        n = math.prod(shape)
        out.append(theta[offset:offset + n].reshape(shape))
        offset += n
    return out


def sae_layout(n_visible: int, n_hidden: int, tied: bool = False) -> Layout:
    """Shapes packed in a sparse autoencoder's theta, in order."""
    if tied:
        return ((n_hidden, n_visible), (n_hidden,), (n_visible,))
    return ((n_hidden, n_visible), (n_visible, n_hidden), (n_hidden,), (n_visible,))


def unpack_sae(theta: np.ndarray, n_visible: int, n_hidden: int,
               tied: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Views (W1, W2, b1, b2) into an autoencoder's theta (W2 = W1.T if tied)."""
    if tied:
        W1, b1, b2 = unpack(theta, sae_layout(n_visible, n_hidden, True))
        return W1, W1.T, b1, b2
    return tuple(unpack(theta, sae_layout(n_visible, n_hidden, False)))


def pack_sae_grad(gW1: np.ndarray, gW2: np.ndarray, gb1: np.ndarray, gb2: np.ndarray,
                  tied: bool = False) -> np.ndarray:
    """The autoencoder's gradient as one float64 vector in :func:`sae_layout` order; with
    ``tied`` the decoder's ``gW2`` (shape ``(n_visible, n_hidden)``) adds to ``gW1``."""
    h, v = gW1.shape
    n1 = h * v
    grad = np.empty(n1 * (1 if tied else 2) + h + v)
    grad[:n1] = ((gW1 + gW2.T) if tied else gW1).ravel()
    if not tied:
        grad[n1:2 * n1] = gW2.ravel()
    grad[-(h + v):-v] = gb1
    grad[-v:] = gb2
    return grad


def softmax_layout(n_classes: int, n_features: int) -> Layout:
    """Shapes packed in a softmax theta: ``W (n_classes, n_features)``, then ``b (n_classes,)``."""
    return ((n_classes, n_features), (n_classes,))


def stacked_layout(layer_sizes: Sequence[int], n_classes: int) -> Layout:
    """Shapes packed in a stacked network's theta, in order.

    The softmax first (``W (n_classes, h_L)``, ``b (n_classes,)``), as in
    UFLDL's ``stackedAECost`` where ``softmaxTheta`` leads, then the sigmoid
    layers ``W1 (h_1, n_features), b1 (h_1,), W2 (h_2, h_1), b2, ...`` in
    :func:`fastsae.params.stack_to_params` order.
    """
    shapes = list(softmax_layout(n_classes, layer_sizes[-1]))
    for n_in, n_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        shapes += [(n_out, n_in), (n_out,)]
    return tuple(shapes)



# -- convolutional models ----------------------------------------------------

def conv_ae_layout(n_filters: int, n_channels: int, patch_shape, tied: bool = False):
    """Shapes packed in a convolutional autoencoder's theta, in order.

    ``W (K, C, ph, pw)``, ``V (K, C, ph, pw)`` (not stored when ``tied``:
    then ``V = W``), ``b (K,)``, ``c (C,)``.
    """
    ph, pw = patch_shape
    F = (n_filters, n_channels, ph, pw)
    if tied:
        return (F, (n_filters,), (n_channels,))
    return (F, F, (n_filters,), (n_channels,))


def unpack_conv_ae(theta, n_filters: int, n_channels: int, patch_shape, tied: bool = False):
    """Views ``(W, V, b, c)`` into a convolutional autoencoder's theta (``V is W`` if tied)."""
    if tied:
        W, b, c = unpack(theta, conv_ae_layout(n_filters, n_channels, patch_shape, True))
        return W, W, b, c
    return tuple(unpack(theta, conv_ae_layout(n_filters, n_channels, patch_shape, False)))


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


_LAYER_KEYS = ("n_filters", "patch_shape", "pool", "pool_shape", "n_pool_regions", "remainder")


def _pair_or_none(value, name):
    if value is None:
        return None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    return check_pair(value, name)


def normalize_layers(layers):
    """Validate a list of layer specifications; return them as complete dicts.

    Each layer is a dict with ``n_filters`` (int), ``patch_shape`` (pair),
    ``pool`` (``"mean"`` or ``"max"``, default ``"mean"``), at most one of
    ``pool_shape`` (pair) and ``n_pool_regions`` (pair) — neither means no
    pooling — and ``remainder`` (``"drop"`` or ``"partial"``, default
    ``"drop"``, used with ``pool_shape``; see :func:`region_bounds`).
    """
    if isinstance(layers, (dict, str, bytes)) or not hasattr(layers, "__len__") \
            or len(layers) == 0:
        raise ParameterError(
            "layers must be a non-empty list of dicts, e.g. [dict(n_filters=16, "
            f"patch_shape=(5, 5), pool_shape=(2, 2))]; got {layers!r}")
    out = []
    for i, spec in enumerate(layers):
        name = f"layers[{i}]"
        if not isinstance(spec, dict):
            raise ParameterError(f"{name} must be a dict; got {type(spec).__name__}")
        unknown = sorted(set(spec) - set(_LAYER_KEYS))
        if unknown:
            raise ParameterError(
                f"{name} has unknown key(s) {unknown}; valid keys: {', '.join(_LAYER_KEYS)}")
        for key in ("n_filters", "patch_shape"):
            if key not in spec:
                raise ParameterError(f"{name} must give {key!r}; got {spec!r}")
        shape = _pair_or_none(spec.get("pool_shape"), f"{name}['pool_shape']")
        regions = _pair_or_none(spec.get("n_pool_regions"), f"{name}['n_pool_regions']")
        if shape is not None and regions is not None:
            raise ParameterError(f"{name} must give at most one of 'pool_shape' and "
                                 f"'n_pool_regions'; got both")
        out.append(dict(
            n_filters=check_int(spec["n_filters"], f"{name}['n_filters']", low=1),
            patch_shape=check_pair(spec["patch_shape"], f"{name}['patch_shape']"),
            pool=check_choice(spec.get("pool", "mean"), f"{name}['pool']", POOL_MODES),
            # neither given: regions of one element, i.e. no pooling
            pool_shape=(1, 1) if shape is None and regions is None else shape,
            n_pool_regions=regions,
            remainder=check_choice(spec.get("remainder", "drop"), f"{name}['remainder']",
                                   REMAINDER_RULES),
        ))
    return out


def conv_net_plan(layers, input_shape):
    """Shapes of every layer of a convolutional network on inputs of ``input_shape``.

    Parameters
    ----------
    layers : list of dict
        See :func:`normalize_layers`.
    input_shape : (C, H, W)

    Returns
    -------
    plan : list of dict
        Per layer: the normalised spec plus ``n_channels`` (input channels),
        ``in_shape`` ``(H, W)``, ``map_shape`` ``(oh, ow)``, ``bounds``
        (row starts, row ends, column starts, column ends of the pooling
        regions) and ``out_shape`` ``(R, S)`` of the pooled maps.
    n_features : int
        ``K_L · R_L · S_L``, the inputs of the softmax.
    """

    layers = normalize_layers(layers)
    C, H, W = (int(s) for s in input_shape)
    plan = []
    for i, spec in enumerate(layers):
        ph, pw = spec["patch_shape"]
        if ph > H or pw > W:
            what = "the input" if i == 0 else f"the pooled maps of layers[{i - 1}]"
            raise ParameterError(
                f"layers[{i}]['patch_shape'] {(ph, pw)} must fit inside {what} ({H} x {W})")
        oh, ow = H - ph + 1, W - pw + 1
        if spec["n_pool_regions"] is not None:
            R, S = spec["n_pool_regions"]
            rows = region_bounds(oh, n_regions=R)
            cols = region_bounds(ow, n_regions=S)
        else:
            rs, cs = spec["pool_shape"]
            rows = region_bounds(oh, size=rs, remainder=spec["remainder"])
            cols = region_bounds(ow, size=cs, remainder=spec["remainder"])
        step = dict(spec, n_channels=C, in_shape=(H, W), map_shape=(oh, ow),
                    bounds=rows + cols, out_shape=(len(rows[0]), len(cols[0])))
        plan.append(step)
        C, (H, W) = spec["n_filters"], step["out_shape"]
    return plan, C * H * W


def conv_net_layout(plan, n_features, n_classes):
    """Shapes packed in a convolutional network's theta: softmax, then each layer's W, b."""
    shapes = [(n_classes, n_features), (n_classes,)]
    for step in plan:
        ph, pw = step["patch_shape"]
        shapes += [(step["n_filters"], step["n_channels"], ph, pw), (step["n_filters"],)]
    return tuple(shapes)


# -- a shard's sufficient statistics (training on a cluster) ----------------

#: Views into a statistics vector (see :func:`sae_stats_layout`).
SAEStats = namedtuple("SAEStats", "count data rho_sum gb2 p q gW2 P Q")


def sae_stats_layout(n_visible, n_hidden, with_sparsity=True):
    """Sizes of the parts of a statistics vector, in order (``SAEStats`` fields).

    ``count`` (rows), ``data`` (data-term sum: ``½Σ‖a3 − x‖²`` or the summed
    cross-entropy), ``rho_sum = Σ a2`` (h), ``gb2 = Σ δ3`` (v),
    ``p = Σ (W2ᵀδ3) ⊙ a2'`` (h), ``q = Σ a2'`` (h), ``gW2 = Σ δ3 a2ᵀ``
    (v × h), ``P = Σ [(W2ᵀδ3) ⊙ a2'] xᵀ`` (h × v) and, with
    ``with_sparsity``, ``Q = Σ a2' xᵀ`` (h × v; size 0 without).
    """
    v, h = int(n_visible), int(n_hidden)
    return (1, 1, h, v, h, h, v * h, h * v, h * v if with_sparsity else 0)


def unpack_sae_stats(stats, n_visible, n_hidden, with_sparsity=True) -> SAEStats:
    """Views of the parts of a statistics vector (matrices shaped, ``Q`` None without sparsity)."""
    v, h = int(n_visible), int(n_hidden)
    sizes = sae_stats_layout(v, h, with_sparsity)
    if stats.ndim != 1 or stats.size != sum(sizes):
        raise ParameterError(
            f"stats must be a 1-D vector of {sum(sizes)} values for n_visible={v}, "
            f"n_hidden={h}, with_sparsity={with_sparsity}; got shape {stats.shape}")
    parts = []
    pos = 0
    for n in sizes:
        parts.append(stats[pos:pos + n])
        pos += n
    count, data, rho_sum, gb2, p, q, gW2, P, Q = parts
    return SAEStats(count, data, rho_sum, gb2, p, q, gW2.reshape(v, h), P.reshape(h, v),
                    Q.reshape(h, v) if with_sparsity else None)
