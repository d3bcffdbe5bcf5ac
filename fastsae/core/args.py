"""Argument checks of the kernels, shared by every backend.

One check per kernel signature: the NumPy reference, the Numba kernels and
the CUDA kernels call the same function first, so the three refuse the same
arguments with the same :class:`fastsae.ParameterError`. These are the cheap
checks (shapes, option names, hyper-parameter ranges, label range); the O(n)
scan of the data for NaN and infinity is done once by the public entry
points and the estimators (:func:`fastsae.core.checks.check_array`).
"""
from __future__ import annotations

import numpy as np

from ..exceptions import ParameterError
from .bfloat16 import is_bfloat16
from .checks import (ACTIVATIONS, DECODERS, FLOAT_DTYPES, LOSSES, POOL_MODES, check_bool,
                     check_choice, check_int, check_pair, check_scalar)
from .layouts import (conv_ae_layout, conv_net_layout, conv_net_plan, layout_size, sae_layout,
                      softmax_layout, stacked_layout)


def check_sae_options(theta, X, n_visible, n_hidden, sparsity, beta, weight_decay,
                      decoder, loss, tied, *, bfloat16=False):
    """Cheap checks shared by every ``sae_cost_grad`` implementation.

    Shapes, option names and hyper-parameter ranges; not the O(n) scan of X for
    NaN (the public entry point and the estimators do that once). With
    ``bfloat16=True`` (the implementations that have a bfloat16 path), X may
    also be an ml-dtypes bfloat16 array.
    """
    n_visible = check_int(n_visible, "n_visible", low=1)
    n_hidden = check_int(n_hidden, "n_hidden", low=1)
    check_scalar(sparsity, "sparsity", low=0.0, high=1.0, low_open=True, high_open=True)
    check_scalar(beta, "beta", low=0.0)
    check_scalar(weight_decay, "weight_decay", low=0.0)
    check_choice(decoder, "decoder", DECODERS)
    check_choice(loss, "loss", LOSSES)
    check_bool(tied, "tied")
    if loss == "cross_entropy" and decoder != "sigmoid":
        raise ParameterError(
            "loss='cross_entropy' needs decoder='sigmoid' (outputs in (0, 1)); "
            f"got decoder={decoder!r}"
        )
    if not isinstance(X, np.ndarray) or X.ndim != 2:
        raise ParameterError(f"X must be a 2-D array; got {getattr(X, 'shape', type(X))}")
    if X.dtype not in FLOAT_DTYPES and not (bfloat16 and is_bfloat16(X.dtype)):
        also = ", or bfloat16 (ml_dtypes.bfloat16)" if bfloat16 else ""
        raise ParameterError(f"X must be float32 or float64{also}; got dtype {X.dtype}")
    if X.shape[1] != n_visible:
        raise ParameterError(
            f"X must have n_visible={n_visible} columns; got shape {X.shape}"
        )
    if X.shape[0] < 1:
        raise ParameterError(f"X must have at least one row; got shape {X.shape}")
    need = layout_size(sae_layout(n_visible, n_hidden, tied))
    if not isinstance(theta, np.ndarray) or theta.ndim != 1 or theta.size != need:
        raise ParameterError(
            f"theta must be a 1-D array of {need} parameters for n_visible={n_visible}, "
            f"n_hidden={n_hidden}, tied={tied}; got shape {getattr(theta, 'shape', None)}"
        )
    return n_visible, n_hidden


def check_conv_args(W, b, images, activation, *, bfloat16=False):
    """Cheap checks shared by every ``convolve`` implementation (with ``bfloat16=True``,
    the ones that have a bfloat16 path, images may also be ml-dtypes bfloat16)."""
    check_choice(activation, "activation", ACTIVATIONS)
    for name, arr, nd in (("W", W, 3), ("b", b, 1), ("images", images, 3)):
        if not isinstance(arr, np.ndarray) or arr.ndim != nd:
            raise ParameterError(f"{name} must be a {nd}-D array; got {getattr(arr, 'shape', type(arr))}")
    if images.dtype not in FLOAT_DTYPES and not (bfloat16 and is_bfloat16(images.dtype)):
        also = ", or bfloat16 (ml_dtypes.bfloat16)" if bfloat16 else ""
        raise ParameterError(f"images must be float32 or float64{also}; got dtype {images.dtype}")
    K, ph, pw = W.shape
    if b.shape != (K,):
        raise ParameterError(f"b must have shape ({K},) for {K} filters; got {b.shape}")
    if K < 1 or ph < 1 or pw < 1:
        raise ParameterError(f"W must hold at least one non-empty filter; got shape {W.shape}")
    if images.shape[1] < ph or images.shape[2] < pw:
        raise ParameterError(
            f"images of shape {images.shape[1:]} are smaller than the filters {W.shape[1:]}")


def check_conv_out(out, W, images):
    """``out`` of ``convolve``: None, or a C-contiguous array of the maps' shape and dtype
    (the images' dtype; float32 for bfloat16 images)."""
    if out is None:
        return None
    N, H, Wd = images.shape
    K, ph, pw = W.shape
    shape = (N, K, H - ph + 1, Wd - pw + 1)
    dtype = np.dtype(np.float32) if is_bfloat16(images.dtype) else np.dtype(images.dtype)
    if not isinstance(out, np.ndarray):
        raise ParameterError(f"out must be a NumPy array of shape {shape}; got {type(out).__name__}")
    if out.shape != shape or out.dtype != dtype:
        raise ParameterError(f"out must have shape {shape} and dtype {dtype}; "
                             f"got shape {out.shape}, dtype {out.dtype}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ParameterError("out must be a writeable, C-contiguous array")
    if isinstance(images, np.ndarray) and np.may_share_memory(out, images):
        raise ParameterError("out must not overlap images")
    return out


def check_pool_mode(mode):
    """``mode``: "mean", "max", or a non-empty tuple of them without repeats."""
    if isinstance(mode, str):
        check_choice(mode, "mode", POOL_MODES)
        return
    if not isinstance(mode, (tuple, list)) or not mode:
        raise ParameterError(f"mode must be 'mean', 'max' or a non-empty tuple of them; "
                             f"got {mode!r}")
    for m in mode:
        check_choice(m, "mode", POOL_MODES)
    if len(set(mode)) != len(mode):
        raise ParameterError(f"mode must not repeat a mode; got {mode!r}")


def check_pool_args(maps, row_starts, row_ends, col_starts, col_ends, mode):
    check_pool_mode(mode)
    if not isinstance(maps, np.ndarray) or maps.ndim < 2:
        raise ParameterError(f"maps must be an array of at least 2 dimensions; got {getattr(maps, 'shape', None)}")
    if maps.dtype not in FLOAT_DTYPES:
        raise ParameterError(f"maps must be float32 or float64; got dtype {maps.dtype}")
    H, W = maps.shape[-2:]
    for name, starts, ends, n in (("row", row_starts, row_ends, H), ("col", col_starts, col_ends, W)):
        starts, ends = np.asarray(starts), np.asarray(ends)
        if starts.shape != ends.shape or starts.ndim != 1 or starts.size == 0:
            raise ParameterError(f"{name} region bounds must be two 1-D arrays of the same length")
        if (starts < 0).any() or (ends > n).any() or (ends <= starts).any():
            raise ParameterError(
                f"{name} regions must be non-empty and inside [0, {n}]; got starts {starts} ends {ends}")


def check_labels(y, n_samples: int, n_classes: int) -> np.ndarray:
    """``y`` as a contiguous intp vector of labels in [0, n_classes), or ParameterError."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ParameterError(f"y must be 1-D; got shape {arr.shape}")
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise ParameterError(
            f"y must hold integer class labels 0..n_classes-1; got dtype {arr.dtype} "
            "(the estimators accept any labels and encode them)")
    if arr.shape[0] != n_samples:
        raise ParameterError(
            f"y must have one label per row of X ({n_samples}); got {arr.shape[0]}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= n_classes:
        raise ParameterError(
            f"y must hold labels in [0, {n_classes - 1}] for n_classes={n_classes}; "
            f"got values in [{lo}, {hi}]")
    return np.ascontiguousarray(arr, dtype=np.intp)


def check_softmax_args(theta, X, y, n_classes, weight_decay, layer_sizes=None,
                        stack_weight_decay=0.0, *, bfloat16=False):
    """Cheap checks shared by every softmax / stacked cost implementation.

    Shapes, label range and hyper-parameters; not the O(n) NaN scan of ``X``
    (the public entry points and the estimators do that once). The label
    range *is* checked on every call: a kernel indexing with an out-of-range
    label would read outside its buffers.

    With ``bfloat16=True`` (the implementations that have a bfloat16 path), X
    may also be an ml-dtypes bfloat16 array.

    Returns ``(n_classes, y as intp, layer_sizes as a tuple or None)``.
    """
    n_classes = check_int(n_classes, "n_classes", low=2)
    check_scalar(weight_decay, "weight_decay", low=0.0)
    check_scalar(stack_weight_decay, "stack_weight_decay", low=0.0)
    if not isinstance(X, np.ndarray) or X.ndim != 2:
        raise ParameterError(f"X must be a 2-D array; got {getattr(X, 'shape', type(X))}")
    if X.dtype not in FLOAT_DTYPES and not (bfloat16 and is_bfloat16(X.dtype)):
        also = ", or bfloat16 (ml_dtypes.bfloat16)" if bfloat16 else ""
        raise ParameterError(f"X must be float32 or float64{also}; got dtype {X.dtype}")
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ParameterError(f"X must have at least one row and one column; got shape {X.shape}")
    if layer_sizes is None:
        sizes = (X.shape[1],)
        layout = softmax_layout(n_classes, X.shape[1])
        what = f"n_classes={n_classes}, n_features={X.shape[1]}"
    else:
        if isinstance(layer_sizes, (str, bytes)) or not hasattr(layer_sizes, "__len__") \
                or len(layer_sizes) < 1:
            raise ParameterError(
                "layer_sizes must be a sequence (n_features, h_1, ..., h_L) of positive "
                f"integers; got {layer_sizes!r}")
        sizes = tuple(check_int(s, f"layer_sizes[{i}]", low=1) for i, s in enumerate(layer_sizes))
        if sizes[0] != X.shape[1]:
            raise ParameterError(
                f"layer_sizes[0] must equal the number of columns of X ({X.shape[1]}); "
                f"got layer_sizes={sizes}")
        layout = stacked_layout(sizes, n_classes)
        what = f"layer_sizes={sizes}, n_classes={n_classes}"
    need = layout_size(layout)
    if not isinstance(theta, np.ndarray) or theta.ndim != 1 or theta.size != need:
        raise ParameterError(
            f"theta must be a 1-D array of {need} parameters for {what}; "
            f"got shape {getattr(theta, 'shape', None)}")
    y = check_labels(y, X.shape[0], n_classes)
    return n_classes, y, (sizes if layer_sizes is not None else None)


def check_proba_args(W, b, X):
    W, b = np.asarray(W), np.asarray(b)
    if W.ndim != 2 or W.shape[0] < 1:
        raise ParameterError(f"W must be a 2-D array (n_classes, n_features); got shape {W.shape}")
    if b.shape != (W.shape[0],):
        raise ParameterError(f"b must have shape ({W.shape[0]},) to match W; got {b.shape}")
    if not isinstance(X, np.ndarray) or X.ndim != 2 or X.dtype not in FLOAT_DTYPES:
        raise ParameterError("X must be a 2-D float32 or float64 array; got "
                             f"{getattr(X, 'shape', type(X))} {getattr(X, 'dtype', '')}")
    if X.shape[1] != W.shape[1]:
        raise ParameterError(f"X must have {W.shape[1]} columns to match W; got shape {X.shape}")
    return W, b


def _check_images(X, name="X", bfloat16=False):
    if not isinstance(X, np.ndarray) or X.ndim != 4:
        raise ParameterError(
            f"{name} must be a 4-D array (n_images, n_channels, H, W); "
            f"got {getattr(X, 'shape', type(X))}")
    if X.dtype not in FLOAT_DTYPES and not (bfloat16 and is_bfloat16(X.dtype)):
        also = ", or bfloat16 (ml_dtypes.bfloat16)" if bfloat16 else ""
        raise ParameterError(f"{name} must be float32 or float64{also}; got dtype {X.dtype}")
    if min(X.shape) < 1:
        raise ParameterError(f"{name} must have no empty axis; got shape {X.shape}")


def _check_theta(theta, need, what):
    if not isinstance(theta, np.ndarray) or theta.ndim != 1 or theta.size != need:
        raise ParameterError(
            f"theta must be a 1-D array of {need} parameters for {what}; "
            f"got shape {getattr(theta, 'shape', None)}")


def check_conv_ae_args(theta, X, n_filters, patch_shape, sparsity, beta, weight_decay,
                       decoder, tied, *, bfloat16=False):
    """Cheap checks shared by every ``conv_ae_cost_grad`` implementation.

    Shapes, options and hyper-parameter ranges; not the O(n) scan of ``X`` for
    NaN (the estimators do that once). With ``bfloat16=True`` (the
    implementations that have a bfloat16 path), X may also be an ml-dtypes
    bfloat16 array. Returns ``(n_filters, (ph, pw))``.
    """
    K = check_int(n_filters, "n_filters", low=1)
    ph, pw = check_pair(patch_shape, "patch_shape")
    check_scalar(sparsity, "sparsity", low=0.0, high=1.0, low_open=True, high_open=True)
    check_scalar(beta, "beta", low=0.0)
    check_scalar(weight_decay, "weight_decay", low=0.0)
    check_choice(decoder, "decoder", DECODERS)
    check_bool(tied, "tied")
    _check_images(X, bfloat16=bfloat16)
    H, W = X.shape[2:]
    if ph > H or pw > W:
        raise ParameterError(
            f"patch_shape {(ph, pw)} must fit inside the images of X ({H} x {W})")
    C = X.shape[1]
    _check_theta(theta, layout_size(conv_ae_layout(K, C, (ph, pw), tied)),
                 f"n_filters={K}, n_channels={C}, patch_shape={(ph, pw)}, tied={tied}")
    return K, (ph, pw)




def check_conv_net_args(theta, X, y, layers, n_classes, weight_decay, conv_weight_decay, *,
                        bfloat16=False):
    """Checks shared by every ``conv_net_cost_grad`` (``bfloat16=True``: X may also be
    ml-dtypes bfloat16); returns ``(plan, n_features, y, layout)``."""
    n_classes = check_int(n_classes, "n_classes", low=2)
    check_scalar(weight_decay, "weight_decay", low=0.0)
    check_scalar(conv_weight_decay, "conv_weight_decay", low=0.0)
    _check_images(X, bfloat16=bfloat16)
    plan, n_features = conv_net_plan(layers, X.shape[1:])
    layout = conv_net_layout(plan, n_features, n_classes)
    _check_theta(theta, layout_size(layout),
                 f"{len(plan)} layer(s) on inputs {X.shape[1:]} and n_classes={n_classes}")
    y = check_labels(y, X.shape[0], n_classes)
    return plan, n_features, y, layout


def check_stats_options(theta, X, n_visible, n_hidden, decoder, loss, tied, with_sparsity):
    """The checks of :func:`check_sae_options` that concern a shard.

    The sparsity target, β and λ are applied by ``sae_combine_stats``, not
    per shard; valid placeholders stand in for them here.
    """
    check_bool(with_sparsity, "with_sparsity")
    return check_sae_options(theta, X, n_visible, n_hidden, 0.5, 0.0, 0.0, decoder, loss, tied)
