"""Objectives as sums over row shards that live on a Dask cluster.

The objectives of the autoencoder, the softmax and the fine-tuned stack are
sums over examples, so one L-BFGS evaluation is a map over row shards and a
sum: ``theta`` is scattered once, one task per shard runs the backend's
kernel where the shard lives, the per-shard results are added by a tree of
sums on the workers and finished at the root, so only ``(cost, grad)`` comes
back. The autoencoder's sparsity penalty needs the mean activation over all
examples before its gradient can be formed, so each shard returns sufficient
statistics instead (:func:`fastsae.reference.sae_stats.sae_shard_stats`) and
:func:`sae_combine_stats` forms the exact objective from their sum.
"""
from __future__ import annotations

import time
import warnings

import numpy as np

from .. import backends
from ..core.args import check_sae_options
from ..core.checks import check_int, check_n_jobs, check_scalar
from ..core.layouts import (layout_size, pack_sae_grad, sae_layout, sae_stats_layout,
                            softmax_layout, stacked_layout, unpack_sae, unpack_sae_stats)
from ..core.numerics import kl_sparsity
from ..core.threads import numba_threads
from ..exceptions import ParameterError
from ..kernels._math import sumsq
from .arrays import chunk_futures, persist_rows
from .client import get_client, require

#: Partial results added per task in the tree reduction.
SPLIT_EVERY = 8


def sae_combine_stats(stats, theta, n_visible, n_hidden, *, sparsity, beta, weight_decay,
                      decoder="sigmoid", loss="squared", tied=False, dtype="float64"):
    """The autoencoder objective and gradient from the summed statistics of all shards.

    ``sae_combine_stats(Σ_k sae_shard_stats(theta, X_k, ...), theta, ...)``
    equals ``sae_cost_grad(theta, concatenate(X_k), ...)`` up to rounding.

    Parameters
    ----------
    stats : np.ndarray
        The sum of :func:`sae_shard_stats` over every shard (``with_sparsity``
        is ``beta > 0``).
    theta, n_visible, n_hidden, sparsity, beta, weight_decay, decoder, loss, tied
        As in :func:`fastsae.reference.sae_cost_grad`.
    dtype : {"float64", "float32"}
        The shards' dtype: the weight-decay cost uses the weights rounded to
        it, as the single-machine kernels do.

    Returns
    -------
    cost : float
    grad : np.ndarray [shape=theta.shape, dtype=float64]
    """
    v, h = int(n_visible), int(n_hidden)
    st = unpack_sae_stats(stats, v, h, beta > 0)
    m = st.count[0]
    W1, W2, _, _ = unpack_sae(theta, v, h, tied)
    rho, rho_hat = sparsity, st.rho_sum / m
    kl, dkl = kl_sparsity(rho, rho_hat)
    data = st.data[0] / m
    gW2 = st.gW2 / m + weight_decay * W2
    gb2 = st.gb2 / m
    if beta > 0:
        s = beta * dkl
        gW1 = (st.P + s[:, None] * st.Q) / m + weight_decay * W1
        gb1 = (st.p + s * st.q) / m
    else:
        gW1 = st.P / m + weight_decay * W1
        gb1 = st.p / m
    W1r = W1.astype(dtype).astype(np.float64)
    W2r = W2.astype(dtype).astype(np.float64) if not tied else W1r.T
    cost = data + 0.5 * weight_decay * (np.vdot(W1r, W1r) + np.vdot(W2r, W2r)) + beta * kl
    return float(cost), pack_sae_grad(gW1, gW2, gb1, gb2, tied)


def stats_function(backend):
    """The backend's ``sae_shard_stats`` (BackendUnavailableError where it has none)."""
    return backends.get_function(backend, "sae_shard_stats")


def _with_threads(n_jobs, fn, *args, **kw):
    with numba_threads(n_jobs):
        return fn(*args, **kw)


def _sae_shard(theta, X, n_visible, n_hidden, backend, n_jobs, opts):
    """On a worker: one shard's statistics vector (zeros for an empty shard)."""
    if X.shape[0] == 0:
        return np.zeros(sum(sae_stats_layout(n_visible, n_hidden, opts["with_sparsity"])))
    return _with_threads(n_jobs, stats_function(backend), theta, X, n_visible, n_hidden,
                         **opts)


def _sum_shard(theta, X, y, name, args, backend, n_jobs):
    """On a worker: ``[m, m·cost, m·grad]`` of a plain-sum objective (no decay) on one shard."""
    m = X.shape[0]
    out = np.zeros(2 + theta.size)
    if m == 0:
        return out
    fn = backends.get_function(backend, name)
    cost, grad = _with_threads(n_jobs, fn, theta, X, np.asarray(y), *args, weight_decay=0.0)
    out[0] = m
    out[1] = cost * m
    np.multiply(grad, m, out=out[2:])
    return out


def _add(*parts):
    total = np.array(parts[0], dtype=np.float64, copy=True)
    for p in parts[1:]:
        total += p
    return total


def _add_and_finish(finish, theta, finish_args, *parts):
    """The root of the reduction: the last sum, then ``finish`` -> ``(cost, grad)``."""
    return finish(_add(*parts), theta, *finish_args)


def _no_rows():
    return ParameterError("the data have no rows (every shard is empty)")


def _sae_finish(total, theta, n_visible, n_hidden, kw):
    if total[0] == 0:
        raise _no_rows()
    return sae_combine_stats(total, theta, n_visible, n_hidden, **kw)


def _softmax_finish(total, theta, n_classes, n_features, weight_decay, dtype):
    m = total[0]
    if m == 0:
        raise _no_rows()
    nW = n_classes * n_features
    grad = total[2:] / m
    grad[:nW] += weight_decay * theta[:nW]
    W = theta[:nW].astype(dtype).astype(np.float64)
    return float(total[1] / m + 0.5 * weight_decay * sumsq(W)), grad


def _stacked_finish(total, theta, layer_sizes, n_classes, weight_decay, stack_weight_decay,
                    dtype):
    m = total[0]
    if m == 0:
        raise _no_rows()
    grad = total[2:] / m
    w = theta.astype(dtype).astype(np.float64)
    shapes = stacked_layout(layer_sizes, n_classes)
    pos, cost = 0, total[1] / m
    for i, shape in enumerate(shapes):
        n = int(np.prod(shape))
        decay = weight_decay if i == 0 else stack_weight_decay if i % 2 == 0 else 0.0
        if decay:
            grad[pos:pos + n] += decay * theta[pos:pos + n]
            cost += 0.5 * decay * sumsq(w[pos:pos + n])
        pos += n
    return float(cost), grad


# ---------------------------------------------------------------------------
# The objective
# ---------------------------------------------------------------------------

def _retryable():
    from concurrent.futures import CancelledError

    from distributed.comm import CommClosedError
    return (CancelledError, CommClosedError, TimeoutError)


class DistributedObjective:
    """``theta -> (cost, grad)``: a sum over row shards that live on a Dask cluster.

    One call: ``theta`` is scattered once (each worker then holds one copy,
    fetched from a peer, whatever its number of shards); one task per shard
    runs ``shard_fn(theta, *shard, *shard_args)`` where the shard lives (each
    returns a float64 vector of sums); the vectors are added by a tree of
    ``split_every``-ary sums on the workers, always grouped in shard order
    (so that the result does not depend on which worker ran what); the root
    task applies ``finish(total, theta, *finish_args)`` and only ``(cost,
    grad)`` comes back. If data or ``theta`` were lost with a worker in a way
    Dask could not repair by itself, the evaluation is retried (``retries``).

    Build it with :func:`sae_objective`, :func:`softmax_objective` or
    :func:`stacked_objective`; pass it to :func:`fastsae.lbfgs`.

    Attributes
    ----------
    client : dask.distributed.Client
    shards : list of tuple of Future
        Per shard, the futures of its arrays (``(X,)`` or ``(X, y)``).
    n_params : int
    n_calls : int
        Evaluations so far.
    n_retries : int
        Evaluations that had to be started again.
    """

    def __init__(self, client, shards, shard_fn, shard_args, finish, finish_args, n_params, *,
                 split_every=SPLIT_EVERY, retries=2, data=()):
        self.client = client
        self.shards = [tuple(s) for s in shards]
        if not self.shards:
            raise ParameterError("the data have no chunks")
        self.shard_fn = shard_fn
        self.shard_args = tuple(shard_args)
        self.finish = finish
        self.finish_args = tuple(finish_args)
        self.n_params = int(n_params)
        self.split_every = check_int(split_every, "split_every", low=2)
        self.retries = check_int(retries, "retries", low=0)
        self.data = data       # the persisted collections, kept alive with the objective
        self.n_calls = 0
        self.n_retries = 0

    @property
    def n_shards(self):
        return len(self.shards)

    def _evaluate(self, theta):
        client = self.client
        # To one worker; every other worker fetches it once, from any worker that has it,
        # when its first shard task needs it. (broadcast=True would go through the
        # scheduler's replicate, which can hang when a worker dies during it.)
        theta_f = client.scatter(theta, hash=False)
        level = [client.submit(self.shard_fn, theta_f, *shard, *self.shard_args, pure=False)
                 for shard in self.shards]
        k = self.split_every
        while len(level) > k:
            level = [client.submit(_add, *level[i:i + k], pure=False)
                     for i in range(0, len(level), k)]
        root = client.submit(_add_and_finish, self.finish, theta_f, self.finish_args, *level,
                             pure=False)
        return root.result()

    def __call__(self, theta):
        # a copy: the optimizer may reuse its buffer while a worker still reads this one
        theta = np.array(theta, dtype=np.float64, copy=True)
        if theta.ndim != 1 or theta.size != self.n_params:
            raise ParameterError(f"theta must be a 1-D array of {self.n_params} parameters; "
                                 f"got shape {theta.shape}")
        if not self.shards:
            raise ParameterError("this objective was closed; build a new one")
        retryable = _retryable()
        for attempt in range(self.retries + 1):
            try:
                cost, grad = self._evaluate(theta)
                break
            except retryable as exc:
                if attempt == self.retries:
                    raise
                self.n_retries += 1
                warnings.warn(f"distributed evaluation failed ({type(exc).__name__}: {exc}); "
                              "retrying", RuntimeWarning, stacklevel=2)
                time.sleep(0.5 * (attempt + 1))
        self.n_calls += 1
        return float(cost), grad

    def close(self):
        """Let the cluster forget this objective's data (if nothing else holds them)."""
        self.shards = []
        self.data = ()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _check_split(split_every, retries):
    return check_int(split_every, "split_every", low=2), check_int(retries, "retries", low=0)



def sae_objective(client, X, n_visible, n_hidden, *, sparsity, beta, weight_decay,
                  decoder="sigmoid", loss="squared", tied=False, backend="numba", n_jobs=None,
                  split_every=SPLIT_EVERY, retries=2):
    """The sparse autoencoder objective on a dask array, as a reusable callable.

    Equals :func:`fastsae.reference.sae_cost_grad` on the whole of ``X``
    (up to rounding: about 1e-15 relative in float64), with one round trip
    per evaluation: each shard returns the sufficient statistics of
    :func:`fastsae.reference.sae_stats.sae_shard_stats`, their sum gives
    ``ρ̂`` and the exact gradient.

    Parameters
    ----------
    client : dask.distributed.Client or None
        None: the default client.
    X : dask.array.Array [shape=(n_samples, n_visible), dtype=float32 or float64]
        Persisted here if it is not yet (chunks along the columns are merged).
        Like the kernels, this does not scan ``X`` for NaN
        (:func:`check_dask_array` does).
    n_visible, n_hidden, sparsity, beta, weight_decay, decoder, loss, tied
        As in :func:`fastsae.reference.sae_cost_grad`.
    backend : {"numba", "numpy", "cuda"}
        The per-shard kernel on the workers (``"cuda"``: on each worker's GPU,
        the shard copied there at every evaluation).
    n_jobs : int or None
        Numba threads per shard task on the workers (None: Numba's default).
    split_every : int >= 2
        Fan-in of the tree reduction.
    retries : int >= 0
        Times an evaluation is restarted after losing data with a worker.

    Returns
    -------
    DistributedObjective
        ``theta -> (cost, grad)``.
    """
    client = get_client(client)
    X = persist_rows(X, client=client)
    n_visible = check_int(n_visible, "n_visible", low=1)
    n_hidden = check_int(n_hidden, "n_hidden", low=1)
    # every backend's checks, on a one-row stand-in for X
    n_params = layout_size(sae_layout(n_visible, n_hidden, bool(tied)))
    if X.shape[1] != n_visible:
        raise ParameterError(f"X must have n_visible={n_visible} columns; got shape {X.shape}")
    check_sae_options(np.zeros(n_params), np.zeros((1, n_visible), X.dtype), n_visible,
                      n_hidden, sparsity, beta, weight_decay, decoder, loss, tied)
    stats_function(backend)
    split_every, retries = _check_split(split_every, retries)
    opts = dict(decoder=decoder, loss=loss, tied=bool(tied), with_sparsity=float(beta) > 0)
    kw = dict(sparsity=float(sparsity), beta=float(beta), weight_decay=float(weight_decay),
              decoder=decoder, loss=loss, tied=bool(tied), dtype=X.dtype.name)
    shards = [(f,) for f in chunk_futures(X)]
    return DistributedObjective(client, shards, _sae_shard,
                                (n_visible, n_hidden, backend, check_n_jobs(n_jobs), opts),
                                _sae_finish, (n_visible, n_hidden, kw), n_params,
                                split_every=split_every, retries=retries, data=(X,))


def sae_cost_grad(client, theta, X, n_visible, n_hidden, **kw):
    """One evaluation of :func:`sae_objective` (same arguments): ``(cost, grad)``.

    To evaluate many times (an optimizer), build the objective once with
    :func:`sae_objective`.
    """
    return sae_objective(client, X, n_visible, n_hidden, **kw)(theta)


def _labelled_shards(client, X, y):
    """Persist X (rows) and y chunked alike; futures of each ``(X_i, y_i)``."""
    _, da, _ = require()
    X = persist_rows(X, client=client)
    if not isinstance(y, da.Array):
        y = np.asarray(y)
        if y.ndim != 1:
            raise ParameterError(f"y must be 1-D (one label per row of X); got shape {y.shape}")
    elif y.ndim != 1:
        raise ParameterError(f"y must be 1-D (one label per row of X); got shape {y.shape}")
    if any(np.isnan(c) for c in X.chunks[0]):
        X = client.persist(X.compute_chunk_sizes())
    if y.shape[0] != X.shape[0]:
        raise ParameterError(
            f"y must have one label per row of X ({X.shape[0]}); got {y.shape[0]}")
    y = da.asarray(y).rechunk((X.chunks[0],))
    y = client.persist(y)
    return X, y, list(zip(chunk_futures(X), chunk_futures(y)))


def softmax_objective(client, X, y, n_classes, *, weight_decay, backend="numba", n_jobs=None,
                      split_every=SPLIT_EVERY, retries=2):
    """The softmax regression objective on a dask array, as a reusable callable.

    Each shard returns its summed negative log-likelihood and gradient (the
    backend's ``softmax_cost_grad`` without decay, times its row count); the
    root divides by the total count and adds the decay, which gives
    :func:`fastsae.reference.softmax_cost_grad` on the whole data.

    Parameters
    ----------
    client : dask.distributed.Client or None
    X : dask.array.Array [shape=(n_samples, n_features), dtype=float32 or float64]
    y : dask.array.Array or np.ndarray [shape=(n_samples,), integer]
        Labels in ``0 .. n_classes-1`` (:func:`encode_labels` makes them);
        rechunked like the rows of ``X``.
    n_classes : int >= 2
    weight_decay : float >= 0
    backend : {"numba", "numpy", "cuda"}
        The backend of the per-shard computation on the workers.
    n_jobs, split_every, retries
        As in :func:`sae_objective`.

    Returns
    -------
    DistributedObjective
    """
    client = get_client(client)
    n_classes = check_int(n_classes, "n_classes", low=2)
    weight_decay = check_scalar(weight_decay, "weight_decay", low=0.0)
    backends.check_backend_name(backend)
    split_every, retries = _check_split(split_every, retries)
    X, y, shards = _labelled_shards(client, X, y)
    n_features = X.shape[1]
    n_params = layout_size(softmax_layout(n_classes, n_features))
    return DistributedObjective(
        client, shards, _sum_shard,
        ("softmax_cost_grad", (n_classes,), backend, check_n_jobs(n_jobs)),
        _softmax_finish, (n_classes, n_features, weight_decay, X.dtype.name), n_params,
        split_every=split_every, retries=retries, data=(X, y))


def softmax_cost_grad(client, theta, X, y, n_classes, **kw):
    """One evaluation of :func:`softmax_objective` (same arguments): ``(cost, grad)``."""
    return softmax_objective(client, X, y, n_classes, **kw)(theta)


def stacked_objective(client, X, y, layer_sizes, n_classes, *, weight_decay,
                      stack_weight_decay=0.0, backend="numba", n_jobs=None,
                      split_every=SPLIT_EVERY, retries=2):
    """The stacked autoencoder fine-tuning objective on a dask array, as a reusable callable.

    Like :func:`softmax_objective`, for :func:`fastsae.reference.stacked_cost_grad`
    (``theta``: the softmax first, then ``W1, b1, W2, b2, ...``).
    """
    client = get_client(client)
    n_classes = check_int(n_classes, "n_classes", low=2)
    weight_decay = check_scalar(weight_decay, "weight_decay", low=0.0)
    stack_weight_decay = check_scalar(stack_weight_decay, "stack_weight_decay", low=0.0)
    if isinstance(layer_sizes, (str, bytes)) or not hasattr(layer_sizes, "__len__") \
            or len(layer_sizes) < 1:
        raise ParameterError("layer_sizes must be a sequence (n_features, h_1, ..., h_L) of "
                             f"positive integers; got {layer_sizes!r}")
    sizes = tuple(check_int(s, f"layer_sizes[{i}]", low=1) for i, s in enumerate(layer_sizes))
    backends.check_backend_name(backend)
    split_every, retries = _check_split(split_every, retries)
    X, y, shards = _labelled_shards(client, X, y)
    if sizes[0] != X.shape[1]:
        raise ParameterError(f"layer_sizes[0] must equal the number of columns of X "
                             f"({X.shape[1]}); got layer_sizes={sizes}")
    n_params = layout_size(stacked_layout(sizes, n_classes))
    return DistributedObjective(
        client, shards, _sum_shard,
        ("stacked_cost_grad", (sizes, n_classes), backend, check_n_jobs(n_jobs)),
        _stacked_finish, (sizes, n_classes, weight_decay, stack_weight_decay, X.dtype.name),
        n_params, split_every=split_every, retries=retries, data=(X, y))


def stacked_cost_grad(client, theta, X, y, layer_sizes, n_classes, **kw):
    """One evaluation of :func:`stacked_objective` (same arguments): ``(cost, grad)``."""
    return stacked_objective(client, X, y, layer_sizes, n_classes, **kw)(theta)
