"""Checks of single values: numbers, choices, dtypes, arrays, seeds.

Every check raises :class:`fastsae.ParameterError` whose message names the
argument, states the constraint and shows the value received. The
estimators, the kernels' argument checks (:mod:`fastsae.core.args`) and the
audio front end all use these.
"""
from __future__ import annotations

import numbers
import sys
from typing import Iterable

import numpy as np

from ..exceptions import ParameterError, ParameterTypeError
from .bfloat16 import bfloat16_dtype, is_bfloat16

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


def check_dtype(dtype, name: str = "dtype", *, bfloat16: bool = False) -> np.dtype:
    """float32 or float64 as a NumPy dtype; with ``bfloat16=True`` also ``"bfloat16"``.

    bfloat16 (the dtype of ml-dtypes, see :mod:`fastsae.core.bfloat16`) is
    refused with a ParameterError where it is not supported, and raises
    :class:`fastsae.BackendUnavailableError` naming the extra to install
    where it is supported but ml-dtypes is missing.
    """
    if is_bfloat16(dtype):
        if not bfloat16:
            raise ParameterError(
                f"{name} must be 'float32' or 'float64' here; got 'bfloat16' (bfloat16 is "
                "available for the autoencoders, SoftmaxRegression, the stacked and "
                "convolutional models, SelfTaughtFeatures, ClipClassifier, their cost functions "
                "and convolve; preprocessing runs in float32 or float64)")
        return bfloat16_dtype()
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
    min_cols: int = 1,
    n_cols: int | None = None,
    finite: bool = True,
    copy: bool = False,
) -> np.ndarray:
    """Return X as a C-contiguous float array, or raise ParameterError.

    ``dtype=None`` keeps float32/float64 (and bfloat16) input as it is and turns anything
    else (integers, booleans, object arrays of numbers) into float64. The
    messages follow scikit-learn's wording where its estimator checks expect
    it (sparse input, complex data, 1-D input, no features). Read-only
    input (a read-only memmap, a broadcast view) is copied: the compiled
    kernels take writeable arrays.
    """
    if X is None:
        raise ParameterError(f"{name} must be an array; got None")
    if _is_sparse(X):
        raise ParameterError(f"{name} is a sparse matrix; sparse input is not supported: "
                             f"convert it with {name}.toarray()")
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise ParameterError(f"{name} could not be read as an array: {exc}") from None
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ParameterError(f"{name}: Complex data not supported (dtype {arr.dtype})")
    if arr.dtype == object:
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ParameterTypeError(f"{name} must hold real numbers: {exc}") from None
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_
            or is_bfloat16(arr.dtype)):
        raise ParameterError(f"{name} must hold real numbers; got dtype {arr.dtype}")
    if arr.ndim != ndim:
        hint = ""
        if ndim == 2 and arr.ndim == 1:
            hint = (f". Reshape your data: {name}.reshape(-1, 1) if it has a single feature, "
                    f"{name}.reshape(1, -1) if it is a single sample")
        raise ParameterError(f"{name} must be {ndim}-D; got shape {arr.shape}{hint}")
    if dtype is None:
        keep = arr.dtype in (np.float32, np.float64) or is_bfloat16(arr.dtype)
        target = arr.dtype if keep else np.dtype(np.float64)
    else:
        target = check_dtype(dtype, bfloat16=True)
    arr = np.ascontiguousarray(arr, dtype=target)
    if not arr.flags.writeable or (copy and np.shares_memory(
            arr, X if isinstance(X, np.ndarray) else arr[:0])):
        arr = arr.copy()      # read-only input (a memmap, a broadcast view) is copied once
    if arr.shape[0] < min_rows:
        raise ParameterError(
            f"{name} must have at least {min_rows} row(s); got shape {arr.shape}"
        )
    if ndim >= 2 and arr.shape[1] < min_cols:
        raise ParameterError(
            f"{name}: found array with {arr.shape[1]} feature(s) (shape={arr.shape}) while a "
            f"minimum of {min_cols} is required.")
    if n_cols is not None and ndim >= 2 and arr.shape[1] != n_cols:
        raise ParameterError(
            f"{name} must have {n_cols} columns; got shape {arr.shape}"
        )
    if finite and not np.isfinite(arr).all():
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise ParameterError(f"{name} contains {bad} NaN or infinite value(s)")
    return arr


def _is_sparse(X) -> bool:
    scipy_sparse = sys.modules.get("scipy.sparse")
    return scipy_sparse is not None and scipy_sparse.issparse(X)


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



def check_n_jobs(n_jobs):
    """Numba threads: None (all), a positive count, or -k (all but k - 1)."""
    if n_jobs is None:
        return None
    n_jobs = check_int(n_jobs, "n_jobs")
    if n_jobs == 0:
        raise ParameterError("n_jobs must be a positive number of threads, -1 for all, or None; got 0")
    return n_jobs


def check_pair(value, name: str):
    """``(rows, columns)`` as two positive ints, or ParameterError naming ``name``."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ParameterError(f"{name} must be a pair (rows, columns); got {_short(value)}")
    return (check_int(value[0], f"{name}[0]", low=1), check_int(value[1], f"{name}[1]", low=1))


# Option names shared by the kernels, their argument checks and the estimators.
DECODERS = ("sigmoid", "linear")
LOSSES = ("squared", "cross_entropy")
ACTIVATIONS = ("sigmoid", "linear", "relu")
POOL_MODES = ("mean", "max")
REMAINDER_RULES = ("drop", "partial")


def npz_problem(path) -> str | None:
    """Why ``path`` cannot be a .npz archive from its first bytes (``"empty"``, ``"not a
    .npz archive"``), or None. np.load would take any other file for a pickle. OSError
    where it cannot be read."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] == b"PK":                 # .npz files are zip archives
        return None
    return "empty" if not magic else "not a .npz archive"


def check_output_path(path, name="path", *, suffix=None):
    """A file path to write: a str or path-like whose folder exists or can be made.

    Makes the folder; raises ParameterError (naming ``name``) when it cannot be
    made (a file in the way, no permission), when ``path`` is a folder, or when
    it does not end in ``suffix``. Returns the path as a str.
    """
    import os

    try:
        path = os.fspath(path)
    except TypeError:
        raise ParameterError(f"{name} must be a file path; got {type(path).__name__}") from None
    if suffix is not None and not path.endswith(suffix):
        raise ParameterError(f"{name} must end in {suffix}; got {path!r}")
    if os.path.isdir(path):
        raise ParameterError(f"{name} {path!r} is a folder, not a file")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise ParameterError(f"{name} {path!r}: cannot make its folder ({exc.strerror})") from None
    if not os.access(folder, os.W_OK):
        raise ParameterError(f"{name} {path!r}: cannot write in {folder!r}")
    return path


def check_regions(value, full_height):
    """``n_pool_regions`` -> a tuple of ``(frequency, time)`` region counts, one per resolution.

    An int ``r`` is ``r`` time regions over all frequencies, ``(1, r)``; a pair
    ``(f, r)`` is ``f`` frequency by ``r`` time regions. Full-height filters
    give maps one band high, so there ``f`` counts as 1.
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)) or not value:
        raise ParameterError("n_pool_regions must be a positive int, or a non-empty tuple of "
                             "ints (time regions) and (frequency, time) pairs, e.g. 4, (1, 4) "
                             f"or ((6, 4),); got {value!r}")
    out = []
    for i, r in enumerate(value):
        if isinstance(r, (tuple, list)):
            f, t = check_pair(r, f"n_pool_regions[{i}]")
            out.append((1 if full_height else f, t))
        else:
            out.append((1, check_int(r, f"n_pool_regions[{i}]", low=1)))
    return tuple(out)
