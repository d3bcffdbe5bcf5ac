"""Means and (co)variances of rows that live on a Dask cluster: per-shard moments, a tree.

Each shard reduces its rows to ``(count, mean, M2)`` in float64 (``M2`` the
sum of squared deviations from the shard's own mean: the outer products, or
only their diagonal); the shards' moments are merged pairwise with Chan et
al.'s update (exact in exact arithmetic, and free of the cancellation of raw
sums of squares), by a tree of tasks grouped in shard order, so the result
does not depend on which worker computed what.
"""
from __future__ import annotations

import numpy as np

from ..core.checks import check_int
from ..exceptions import ParameterError
from .arrays import chunk_futures, persist_rows
from .client import get_client

#: Rows per block of a shard's covariance product (float64 rows of a few hundred columns).
_BLOCK_ROWS = 8192


def shard_moments(X, *, full=True):
    """``(m, mean, M2)`` of the rows of ``X`` in float64; ``full=False``: M2's diagonal only."""
    X = np.asarray(X)
    m, n = X.shape
    if m == 0:
        return 0, np.zeros(n), np.zeros((n, n) if full else n)
    mean = X.mean(axis=0, dtype=np.float64)
    M2 = np.zeros((n, n) if full else n)
    for i in range(0, m, _BLOCK_ROWS):
        D = X[i:i + _BLOCK_ROWS].astype(np.float64) - mean
        M2 += D.T @ D if full else np.einsum("ij,ij->j", D, D)
    return m, mean, M2


def combine_moments(*parts):
    """Merge ``(m, mean, M2)`` triples, in the order given (Chan, Golub & LeVeque)."""
    m, mean, M2 = parts[0]
    mean, M2 = np.array(mean, dtype=np.float64), np.array(M2, dtype=np.float64)
    for mb, mean_b, M2_b in parts[1:]:
        if mb == 0:
            continue
        if m == 0:
            m, mean, M2 = mb, np.array(mean_b, dtype=np.float64), np.array(M2_b, dtype=np.float64)
            continue
        total = m + mb
        delta = mean_b - mean
        mean = mean + delta * (mb / total)
        M2 = M2 + M2_b + (np.outer(delta, delta) if M2.ndim == 2 else delta * delta) \
            * (m * mb / total)
        m = total
    return m, mean, M2


def tree_reduce(client, futures, fn, split_every):
    """``fn(*group)`` level by level over ``split_every`` futures at a time, in order: one future."""
    level = list(futures)
    while len(level) > 1:
        level = [client.submit(fn, *level[i:i + split_every], pure=False)
                 for i in range(0, len(level), split_every)]
    return level[0]


def reduce_moments(client, futures, *, full=True, split_every=8):
    """``(m, mean, M2)`` of the shards that ``futures`` hold (arrays of rows), reduced on the
    workers; only the result comes back."""
    parts = [client.submit(shard_moments, f, full=full, pure=False) for f in futures]
    if not parts:
        raise ParameterError("the data have no chunks")
    return tree_reduce(client, parts, combine_moments, split_every).result()


def row_moments(X, *, client=None, split_every=8):
    """Mean and covariance of the rows of a dask array, computed on the workers.

    Each chunk of rows is reduced where it lives to its count, mean and
    centred second moment (float64), and the chunks' results are merged by a
    tree of ``split_every``-ary tasks in row order; only ``n_features`` and
    ``n_features x n_features`` numbers come back.

    Parameters
    ----------
    X : dask.array.Array [shape=(n_samples, n_features)]
        float32 or float64 rows (persisted here if they are not already).
    client : dask.distributed.Client or None
    split_every : int >= 2

    Returns
    -------
    n_samples : int
    mean : np.ndarray [shape=(n_features,), dtype=float64]
    covariance : np.ndarray [shape=(n_features, n_features), dtype=float64]
        ``(X - mean).T @ (X - mean) / n_samples`` (``1/m``, as
        :class:`fastsae.preprocess.PCAWhitening` forms it).
    """
    client = get_client(client)
    split_every = check_int(split_every, "split_every", low=2)
    X = persist_rows(X, client=client)
    m, mean, M2 = reduce_moments(client, chunk_futures(X), split_every=split_every)
    if m == 0:
        raise ParameterError("X has no rows")
    return int(m), mean, M2 / m
