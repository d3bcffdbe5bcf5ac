"""Class labels of any kind (ints, strings, ...) <-> codes 0..K-1."""
from __future__ import annotations

import warnings

import numpy as np

from ..exceptions import ParameterError


def encode_labels(y, n_samples: int, name: str = "y"):
    """Any labels (ints, strings, ...) -> ``(classes, codes)`` with codes in 0..K-1.

    ``classes`` is sorted (``np.unique``); ``classes[codes]`` gives ``y`` back.
    Raises ParameterError for no labels, a wrong length, missing values,
    continuous values (a regression target) or a single class. A column
    vector is accepted with scikit-learn's ``DataConversionWarning``.
    """
    if y is None:
        raise ParameterError(f"this classifier requires y to be passed, but the target {name} "
                             "is None")
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        from sklearn.exceptions import DataConversionWarning
        warnings.warn(f"A column-vector {name} was passed when a 1d array was expected; "
                      "it is used as a 1d array", DataConversionWarning, stacklevel=3)
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ParameterError(f"{name} must be 1-D (one label per row of X); got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ParameterError(
            f"{name} must have one label per row of X ({n_samples}); got {arr.shape[0]}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ParameterError(f"{name} contains NaN or infinite labels")
    if arr.dtype == object and any(v is None for v in arr):
        raise ParameterError(f"{name} contains None labels")
    if arr.dtype.kind == "f" and arr.size and not np.array_equal(arr, np.round(arr)):
        raise ParameterError(f"Unknown label type: continuous. {name} must hold class labels "
                             "(integers, strings, ...), not real values to regress")
    try:
        classes, codes = np.unique(arr, return_inverse=True)
    except TypeError as exc:   # mixed, unorderable label types
        raise ParameterError(f"{name} labels could not be sorted: {exc}") from None
    if classes.size < 2:
        raise ParameterError(
            f"{name} must contain at least 2 classes; got one class: {classes.tolist()!r}")
    return classes, codes.reshape(-1).astype(np.intp)


def encode_known_labels(classes, y, n_samples: int, name: str = "y"):
    """Labels -> their codes in ``classes`` (sorted); unknown labels raise ParameterError."""
    arr = np.asarray(y).reshape(-1)
    if arr.shape[0] != n_samples:
        raise ParameterError(
            f"{name} must have one label per row of X ({n_samples}); got {arr.shape[0]}")
    codes = np.clip(np.searchsorted(classes, arr), 0, classes.size - 1)
    bad = classes[codes] != arr
    if bad.any():
        raise ParameterError(
            f"{name} contains labels not seen in fit: {np.unique(arr[bad])[:5].tolist()!r}")
    return codes.astype(np.intp)
