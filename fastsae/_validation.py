"""Host-side argument checks shared by every public entry point.

Each check raises :class:`fastsae.ParameterError` whose message names the
argument, states the constraint and shows the value received.
"""
from __future__ import annotations

import numbers
from typing import Iterable

import numpy as np

from .exceptions import ParameterError

FLOAT_DTYPES = (np.float32, np.float64)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_choice(value, name: str, choices: Iterable):
    choices = tuple(choices)
    if value not in choices:
        raise ParameterError(
            f"{name} must be one of {', '.join(map(repr, choices))}; got {_short(value)}"
        )
    return value


def check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ParameterError(f"{name} must be True or False; got {_short(value)}")
    return bool(value)


def check_int(value, name: str, *, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ParameterError(f"{name} must be an integer; got {_short(value)}")
    value = int(value)
    if low is not None and value < low:
        raise ParameterError(f"{name} must be >= {low}; got {value}")
    if high is not None and value > high:
        raise ParameterError(f"{name} must be <= {high}; got {value}")
    return value


def check_scalar(value, name: str, *, low=None, high=None, low_open=False, high_open=False) -> float:
    """A finite real number in [low, high] (either end open if asked)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ParameterError(f"{name} must be a real number; got {_short(value)}")
    value = float(value)
    if not np.isfinite(value):
        raise ParameterError(f"{name} must be finite; got {value}")
    lo_bad = low is not None and (value <= low if low_open else value < low)
    hi_bad = high is not None and (value >= high if high_open else value > high)
    if lo_bad or hi_bad:
        lb = "(" if low_open else "["
        hb = ")" if high_open else "]"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ParameterError(f"{name} must be in {lb}{lo}, {hi}{hb}; got {value:g}")
    return value


def check_dtype(dtype, name: str = "dtype") -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ParameterError(f"{name} must be 'float32' or 'float64'; got {_short(dtype)}") from None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ParameterError(f"{name} must be 'float32' or 'float64'; got {_short(dtype)}")
    return dt


def check_array(
    X,
    name: str = "X",
    *,
    ndim: int = 2,
    dtype=None,
    min_rows: int = 1,
    n_cols: int | None = None,
    finite: bool = True,
    copy: bool = False,
) -> np.ndarray:
    """Return X as a C-contiguous float array, or raise ParameterError.

    ``dtype=None`` keeps float32/float64 input as it is and turns anything
    else (integers, booleans) into float64.
    """
    if X is None:
        raise ParameterError(f"{name} must be an array; got None")
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise ParameterError(f"{name} could not be read as an array: {exc}") from None
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_
    ):
        raise ParameterError(f"{name} must hold real numbers; got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ParameterError(f"{name} must be real; got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ParameterError(f"{name} must be {ndim}-D; got shape {arr.shape}")
    if dtype is None:
        target = arr.dtype if arr.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    else:
        target = check_dtype(dtype)
    arr = np.ascontiguousarray(arr, dtype=target)
    if copy and np.shares_memory(arr, X if isinstance(X, np.ndarray) else arr[:0]):
        arr = arr.copy()
    if arr.shape[0] < min_rows:
        raise ParameterError(
            f"{name} must have at least {min_rows} row(s); got shape {arr.shape}"
        )
    if n_cols is not None and ndim >= 2 and arr.shape[1] != n_cols:
        raise ParameterError(
            f"{name} must have {n_cols} columns; got shape {arr.shape}"
        )
    if finite and not np.isfinite(arr).all():
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise ParameterError(f"{name} contains {bad} NaN or infinite value(s)")
    return arr


def check_random_state(seed) -> np.random.Generator:
    """None, an int, or a Generator -> a numpy Generator."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)):
        if seed is not None and seed < 0:
            raise ParameterError(f"random_state must be >= 0; got {seed}")
        return np.random.default_rng(seed)
    if isinstance(seed, np.random.RandomState):
        return np.random.default_rng(seed.randint(0, 2**31 - 1))
    raise ParameterError(
        f"random_state must be None, an int or a numpy Generator; got {_short(seed)}"
    )


DECODERS = ("sigmoid", "linear")
LOSSES = ("squared", "cross_entropy")


def check_sae_options(theta, X, n_visible, n_hidden, sparsity, beta, weight_decay,
                      decoder, loss, tied):
    """Cheap checks shared by every ``sae_cost_grad`` implementation.

    Shapes, option names and hyper-parameter ranges; not the O(n) scan of X for
    NaN (the public entry point and the estimators do that once).
    """
    from .params import layout_size, sae_layout

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
    if X.dtype not in FLOAT_DTYPES:
        raise ParameterError(f"X must be float32 or float64; got dtype {X.dtype}")
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


ACTIVATIONS = ("sigmoid", "linear", "relu")
POOL_MODES = ("mean", "max")


def check_conv_args(W, b, images, activation):
    """Cheap checks shared by every ``convolve`` implementation."""
    check_choice(activation, "activation", ACTIVATIONS)
    for name, arr, nd in (("W", W, 3), ("b", b, 1), ("images", images, 3)):
        if not isinstance(arr, np.ndarray) or arr.ndim != nd:
            raise ParameterError(f"{name} must be a {nd}-D array; got {getattr(arr, 'shape', type(arr))}")
    if images.dtype not in FLOAT_DTYPES:
        raise ParameterError(f"images must be float32 or float64; got dtype {images.dtype}")
    K, ph, pw = W.shape
    if b.shape != (K,):
        raise ParameterError(f"b must have shape ({K},) for {K} filters; got {b.shape}")
    if K < 1 or ph < 1 or pw < 1:
        raise ParameterError(f"W must hold at least one non-empty filter; got shape {W.shape}")
    if images.shape[1] < ph or images.shape[2] < pw:
        raise ParameterError(
            f"images of shape {images.shape[1:]} are smaller than the filters {W.shape[1:]}")


def check_conv_out(out, W, images):
    """``out`` of ``convolve``: None, or a C-contiguous array of the maps' shape and dtype."""
    if out is None:
        return None
    N, H, Wd = images.shape
    K, ph, pw = W.shape
    shape = (N, K, H - ph + 1, Wd - pw + 1)
    if not isinstance(out, np.ndarray):
        raise ParameterError(f"out must be a NumPy array of shape {shape}; got {type(out).__name__}")
    if out.shape != shape or out.dtype != images.dtype:
        raise ParameterError(f"out must have shape {shape} and dtype {np.dtype(images.dtype)}; "
                             f"got shape {out.shape}, dtype {out.dtype}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ParameterError("out must be a writeable, C-contiguous array")
    if isinstance(images, np.ndarray) and np.may_share_memory(out, images):
        raise ParameterError("out must not overlap images")
    return out


def check_pool_args(maps, row_starts, row_ends, col_starts, col_ends, mode):
    check_choice(mode, "mode", POOL_MODES)
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
                        stack_weight_decay=0.0):
    """Cheap checks shared by every softmax / stacked cost implementation.

    Shapes, label range and hyper-parameters; not the O(n) NaN scan of ``X``
    (the public entry points and the estimators do that once). The label
    range *is* checked on every call: a kernel indexing with an out-of-range
    label would read outside its buffers.

    Returns ``(n_classes, y as intp, layer_sizes as a tuple or None)``.
    """
    from .params import layout_size, softmax_layout, stacked_layout

    n_classes = check_int(n_classes, "n_classes", low=2)
    check_scalar(weight_decay, "weight_decay", low=0.0)
    check_scalar(stack_weight_decay, "stack_weight_decay", low=0.0)
    if not isinstance(X, np.ndarray) or X.ndim != 2:
        raise ParameterError(f"X must be a 2-D array; got {getattr(X, 'shape', type(X))}")
    if X.dtype not in FLOAT_DTYPES:
        raise ParameterError(f"X must be float32 or float64; got dtype {X.dtype}")
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
    from ._validation import FLOAT_DTYPES
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
