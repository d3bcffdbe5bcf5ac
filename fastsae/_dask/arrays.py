"""Dask arrays of training rows on the cluster: checked, persisted, mapped by chunk; their labels."""
from __future__ import annotations

import numpy as np

from ..core.checks import check_dtype, check_int
from ..core.labels import encode_known_labels as encode_block
from ..exceptions import ParameterError
from .client import get_client, require


def check_dask_2d(X, name):
    _, da, _ = require()
    if not isinstance(X, da.Array):
        raise ParameterError(f"{name} must be a dask array; got {type(X).__name__}")
    if X.ndim != 2:
        raise ParameterError(f"{name} must be 2-D (rows are examples); got shape {X.shape}")
    return X


def rows_chunked(X):
    """X with each chunk holding whole rows (one chunk across the columns)."""
    return X.rechunk({1: -1}) if X.numblocks[1] != 1 else X


def chunk_futures(X):
    """The futures of a persisted dask array's chunks, in row order."""
    from dask.core import flatten
    from distributed import futures_of

    by_key = {f.key: f for f in futures_of(X)}
    try:
        return [by_key[k] for k in flatten(X.__dask_keys__())]
    except KeyError:
        raise ParameterError("the dask array is not persisted on the cluster") from None


def persist_rows(X, *, client=None, dtype=None, name="X"):
    """``X`` cast to ``dtype``, split by rows only, and persisted on the cluster.

    Returns the persisted dask array (already persisted input is not recomputed).
    """
    client = get_client(client)
    X = check_dask_2d(X, name)
    if dtype is not None:
        X = X.astype(check_dtype(dtype))
    if X.dtype not in (np.float32, np.float64):
        raise ParameterError(f"{name} must be float32 or float64; got dtype {X.dtype}")
    X = client.persist(rows_chunked(X))
    return X


def scatter_rows(X, *, client=None, n_shards=None, name="X"):
    """Send a NumPy array to the workers in row shards: a persisted dask array.

    For data that fits this machine but whose training should run on the
    cluster (``fastsae train-sae --scheduler``): each shard is scattered once
    and stays on a worker.

    Parameters
    ----------
    X : np.ndarray [shape=(n_samples, n_features)]
    n_shards : int, optional
        Default: two per worker thread.
    """
    _, da, _ = require()
    client = get_client(client)
    X = np.ascontiguousarray(X)
    if X.ndim != 2 or X.shape[0] < 1:
        raise ParameterError(f"{name} must be a 2-D array with rows; got shape {X.shape}")
    if n_shards is None:
        n_shards = 2 * max(1, sum(client.nthreads().values()))
    n_shards = check_int(n_shards, "n_shards", low=1)
    bounds = np.linspace(0, X.shape[0], min(n_shards, X.shape[0]) + 1).astype(int)
    parts = [X[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    futures = client.scatter(parts)
    blocks = [da.from_delayed(f, shape=p.shape, dtype=p.dtype) for f, p in zip(futures, parts)]
    return client.persist(da.concatenate(blocks, axis=0))


def concatenate_rows(arrays, *, client=None):
    """The rows of dask and NumPy arrays, in order, as one persisted dask array.

    NumPy arrays are sent to the workers with :func:`scatter_rows`; dask
    arrays are used as they are (their chunks stay where they live).
    """
    _, da, _ = require()
    client = get_client(client)
    parts = [a if isinstance(a, da.Array) else scatter_rows(a, client=client) for a in arrays]
    if not parts:
        raise ParameterError("arrays must hold at least one array")
    return persist_rows(da.concatenate(parts, axis=0) if len(parts) > 1 else parts[0],
                        client=client)


def check_dask_array(X, name="X", *, dtype=None, client=None):
    """Validate a dask array of training rows; persist it; return it with its value range.

    The estimators' checks, done on the cluster in one pass: 2-D, float32 or
    float64 (cast to ``dtype`` when given), at least one row, no NaN or
    infinite value.

    Returns
    -------
    X : dask.array.Array
        Persisted, one chunk across the columns.
    lo, hi : float
        Its smallest and largest values (for a sigmoid decoder's [0, 1] check).
    """
    dask, da, _ = require()
    X = persist_rows(X, client=client, dtype=dtype, name=name)
    if any(np.isnan(c) for c in X.chunks[0]):
        X = X.compute_chunk_sizes()
    if X.shape[0] < 1:
        raise ParameterError(f"{name} must have at least one row; got shape {X.shape}")
    n_bad, lo, hi = dask.compute((~da.isfinite(X)).sum(), X.min(), X.max())
    if int(n_bad):
        raise ParameterError(f"{name} contains {int(n_bad)} NaN or infinite value(s)")
    return X, float(lo), float(hi)


def check_dask_labels(y, n_samples, name):
    """``y`` as a 1-D dask array (a column is accepted), with ``n_samples`` labels if given."""
    _, da, _ = require()
    if not isinstance(y, da.Array):
        raise ParameterError(f"{name} must be a dask array; got {type(y).__name__}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ParameterError(f"{name} must be 1-D (one label per row of X); got shape {y.shape}")
    if n_samples is not None:
        if any(np.isnan(c) for c in y.chunks[0]):
            y = y.compute_chunk_sizes()
        if y.shape[0] != n_samples:
            raise ParameterError(
                f"{name} must have one label per row of X ({n_samples}); got {y.shape[0]}")
    return y


def encode_labels(y, *, client=None, n_samples=None, name="y"):
    """Labels of a dask array -> ``(classes, codes)``, like :func:`fastsae.core.labels.encode_labels`.

    ``classes`` (sorted, a NumPy array) comes from a distributed ``unique``;
    ``codes`` is a dask array of ``intp`` codes, chunked like ``y``. With
    ``n_samples``, ``y`` must hold that many labels (one per row of X).
    Raises ParameterError, naming ``name``, for a wrong shape or length, NaN
    labels, labels that cannot be sorted or a single class.
    """
    _, da, _ = require()
    get_client(client)
    y = check_dask_labels(y, n_samples, name)
    try:
        classes = np.asarray(da.unique(y).compute())
    except TypeError as exc:   # mixed, unorderable label types
        raise ParameterError(f"{name} labels could not be sorted: {exc}") from None
    if classes.dtype.kind == "f" and not np.isfinite(classes).all():
        raise ParameterError(f"{name} contains NaN or infinite labels")
    if classes.size < 2:
        raise ParameterError(
            f"{name} must contain at least 2 classes; got only {classes.tolist()!r}")
    codes = y.map_blocks(lambda b: np.searchsorted(classes, b).astype(np.intp), dtype=np.intp)
    return classes, codes


def encode_known_labels(classes, y, *, n_samples=None, name="y"):
    """Labels of a dask array -> their codes in ``classes`` (sorted), lazily, chunked like ``y``.

    A label not in ``classes`` raises ParameterError when the codes are computed.
    """
    y = check_dask_labels(y, n_samples, name)
    return y.map_blocks(lambda b: encode_block(classes, b, b.shape[0], name), dtype=np.intp)


def map_rows(fn, X, n_columns=None, *, dtype, args=(), n_features=None, name="X"):
    """``fn(block, *args)`` on each row chunk of a dask array, lazily: a dask array.

    What the estimators' ``predict``, ``transform``, ... do with a dask
    array: each chunk of whole rows is handed to the single-machine method
    where it lives, and the results stay chunked like the rows of ``X``
    (nothing is computed here).

    Parameters
    ----------
    fn : callable ``(np.ndarray, *args) -> np.ndarray``
        Row-wise: ``k`` rows in, ``k`` rows (or ``k`` values) out.
    X : dask.array.Array [shape=(n_samples, n_features)]
    n_columns : int or None
        Columns of ``fn``'s output; None for a 1-D output (one value per row).
    dtype : numpy dtype
        That of ``fn``'s output.
    n_features : int, optional
        The number of columns ``X`` must have.
    """
    require()
    X = rows_chunked(check_dask_2d(X, name))
    if n_features is not None and X.shape[1] != n_features:
        raise ParameterError(
            f"{name} must have {n_features} features (as in fit); got shape {X.shape}")
    dtype = np.dtype(dtype)
    if n_columns is None:
        return X.map_blocks(fn, *args, drop_axis=1, dtype=dtype, meta=np.empty((0,), dtype))
    return X.map_blocks(fn, *args, chunks=(X.chunks[0], (int(n_columns),)), dtype=dtype,
                        meta=np.empty((0, 0), dtype))


def fraction_equal(a, b, *, name="y"):
    """The fraction of the rows where the 1-D dask array ``a`` equals ``b``
    (a dask or NumPy array of the same length), computed on the cluster."""
    _, da, _ = require()
    if any(np.isnan(c) for c in a.chunks[0]):
        a = a.compute_chunk_sizes()
    if isinstance(b, da.Array):
        b = check_dask_labels(b, a.shape[0], name).rechunk(a.chunks)
    else:
        b = np.asarray(b).reshape(-1)
        if b.shape[0] != a.shape[0]:
            raise ParameterError(
                f"{name} must have one label per row of X ({a.shape[0]}); got {b.shape[0]}")
        b = da.from_array(b, chunks=a.chunks)
    return float((a == b).mean().compute())
