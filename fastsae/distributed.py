"""Full-batch training on a Dask cluster: the data stay on the workers.

The objectives of the autoencoder, the softmax and the fine-tuned stack are
sums over examples, so one L-BFGS evaluation is a map over row shards and a
sum. This module builds that on :mod:`dask.distributed` (no scheduler, wire
protocol or worker management of its own):

- the training windows are computed *on the workers* (:func:`windows_from_files`)
  or taken from any dask array, and persisted there, rows split into shards;
- each evaluation scatters ``theta`` once (every worker then fetches one copy
  from a peer, not one per task), runs one task per shard where the shard lives (the
  Numba kernels), adds the per-shard results with a tree of sums on the
  workers and finishes at the root, so only ``(cost, grad)`` comes back;
- the autoencoder's sparsity penalty needs the mean activation over *all*
  examples before its gradient can be formed; each shard therefore returns
  sufficient statistics instead of a gradient (one round trip per evaluation,
  see :mod:`fastsae._reference_distributed`), and the result is the
  single-machine objective up to rounding;
- a worker lost during training costs a recomputation, not the run: its
  shards are rebuilt by Dask from their lineage (the tasks that made them),
  its tasks rerun elsewhere, and the sums are taken in a fixed order, so the
  result does not change.

Install with ``pip install fastsae[dist]``; without Dask every function here
raises :class:`fastsae.BackendUnavailableError` saying so, at call time
(``import fastsae`` never imports Dask).

Run one Dask thread per worker process (``dask worker --nthreads 1``) and let
the Numba kernels use the process's cores (``n_jobs``): Numba's own thread
pool does the parallel work inside each shard.

Examples
--------
>>> from fastsae import distributed                                    # doctest: +SKIP
>>> client = distributed.connect("tcp://scheduler:8786")                # doctest: +SKIP
>>> X = distributed.windows_from_files(client, paths, kind="mel", n_frames=4)  # doctest: +SKIP
>>> f = distributed.sae_objective(client, X, X.shape[1], 256, sparsity=0.01, beta=3.0,
...                               weight_decay=1e-4)                     # doctest: +SKIP
>>> result = fastsae.lbfgs(f, fastsae.init_params(X.shape[1], 256))     # doctest: +SKIP
"""
from __future__ import annotations

import operator
import os
import sys
import time
import warnings

import numpy as np

from . import backends
from ._reference_distributed import sae_combine_stats, sae_stats_layout
from ._validation import (DECODERS, LOSSES, check_bool, check_choice, check_dtype, check_int,
                          check_random_state, check_scalar)
from .exceptions import BackendUnavailableError, ParameterError
from .kernels._math import sumsq
from .params import layout_size, sae_layout, softmax_layout, stacked_layout

#: What to install for this module.
INSTALL_HINT = "pip install fastsae[dist]"

#: Partial results added per task in the tree reduction.
SPLIT_EVERY = 8

#: Audio files per shard in :func:`windows_from_files` (a few tens of MB of windows).
FILES_PER_SHARD = 32


# ---------------------------------------------------------------------------
# Dask, lazily
# ---------------------------------------------------------------------------

def _require():
    """``(dask, dask.array, distributed)``, or BackendUnavailableError naming the install."""
    try:
        import dask
        import dask.array as da
        import distributed
    except ImportError as exc:
        raise BackendUnavailableError(
            f"fastsae.distributed needs Dask's distributed scheduler, which is not installed "
            f"({exc}); install it with: {INSTALL_HINT}") from None
    return dask, da, distributed


def is_dask_collection(x) -> bool:
    """Whether ``x`` is a dask collection (False, without importing Dask, when Dask is not loaded)."""
    dask = sys.modules.get("dask")
    if dask is None:
        return False
    return bool(dask.is_dask_collection(x))


def connect(address=None, *, timeout=10.0, **local_cluster_kw):
    """A :class:`dask.distributed.Client` for the scheduler at ``address``.

    Parameters
    ----------
    address : str, a Dask cluster object, or None
        ``"tcp://host:8786"``, a cluster (``LocalCluster``, ...), or None for a
        new local cluster on this machine (its options in ``local_cluster_kw``,
        e.g. ``n_workers=2, threads_per_worker=1``; the dashboard is off unless
        ``dashboard_address`` is given).
    timeout : float > 0
        Seconds to wait for the scheduler.

    Returns
    -------
    dask.distributed.Client
        Also made the default client (what the estimators use).

    Raises
    ------
    BackendUnavailableError
        Dask is not installed, or the scheduler did not answer in ``timeout`` seconds.
    """
    _, _, distributed = _require()
    timeout = check_scalar(timeout, "timeout", low=0.0, low_open=True)
    if address is not None and local_cluster_kw:
        raise ParameterError("local cluster options (" + ", ".join(sorted(local_cluster_kw))
                             + f") need address=None; got address={address!r}")
    if address is None:
        local_cluster_kw.setdefault("dashboard_address", None)
    elif not isinstance(address, (str, distributed.deploy.Cluster)):
        raise ParameterError("address must be a scheduler address such as 'tcp://host:8786', "
                             f"a Dask cluster object or None; got {address!r}")
    try:
        return distributed.Client(address, timeout=timeout, **local_cluster_kw)
    except (OSError, TimeoutError) as exc:
        where = "a local cluster" if address is None else f"the Dask scheduler at {address!r}"
        raise BackendUnavailableError(f"could not reach {where} within {timeout:g} s: {exc}") \
            from None


def _get_client(client):
    _, _, distributed = _require()
    if client is None:
        try:
            return distributed.default_client()
        except ValueError:
            raise ParameterError(
                "no Dask client: connect first with fastsae.distributed.connect(address) "
                "(or dask.distributed.Client(...)), or pass client=") from None
    if not isinstance(client, distributed.Client):
        raise ParameterError(f"client must be a dask.distributed.Client or None; got {client!r}")
    return client


# ---------------------------------------------------------------------------
# Data on the cluster
# ---------------------------------------------------------------------------

def _check_dask_2d(X, name):
    _, da, _ = _require()
    if not isinstance(X, da.Array):
        raise ParameterError(f"{name} must be a dask array; got {type(X).__name__}")
    if X.ndim != 2:
        raise ParameterError(f"{name} must be 2-D (rows are examples); got shape {X.shape}")
    return X


def _rows_chunked(X):
    """X with each chunk holding whole rows (one chunk across the columns)."""
    return X.rechunk({1: -1}) if X.numblocks[1] != 1 else X


def _chunk_futures(X):
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
    client = _get_client(client)
    X = _check_dask_2d(X, name)
    if dtype is not None:
        X = X.astype(check_dtype(dtype))
    if X.dtype not in (np.float32, np.float64):
        raise ParameterError(f"{name} must be float32 or float64; got dtype {X.dtype}")
    X = client.persist(_rows_chunked(X))
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
    _, da, _ = _require()
    client = _get_client(client)
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
    _, da, _ = _require()
    client = _get_client(client)
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
    dask, da, _ = _require()
    X = persist_rows(X, client=client, dtype=dtype, name=name)
    if any(np.isnan(c) for c in X.chunks[0]):
        X = X.compute_chunk_sizes()
    if X.shape[0] < 1:
        raise ParameterError(f"{name} must have at least one row; got shape {X.shape}")
    n_bad, lo, hi = dask.compute((~da.isfinite(X)).sum(), X.min(), X.max())
    if int(n_bad):
        raise ParameterError(f"{name} contains {int(n_bad)} NaN or infinite value(s)")
    return X, float(lo), float(hi)


def normalize_sigmoid(X, *, n_std=3.0, client=None):
    """UFLDL's ``normalizeData`` on a dask array of rows, with one global scale.

    Each row's mean is removed, values are truncated to ``± n_std`` standard
    deviations and mapped onto [0.1, 0.9], exactly as
    :class:`fastsae.preprocess.SigmoidNormalizer` does — whose standard
    deviation is that of *all* the row-centred values. On shards that is a
    global statistic: a first Dask reduction (Dask's ``std``: per-chunk
    count, sum and centred second moment, combined in float64) computes it on
    the persisted input, then every shard is transformed where it lives with
    that one number.

    Returns
    -------
    Y : dask.array.Array
        Persisted, same shape and dtype.
    normalizer : fastsae.preprocess.SigmoidNormalizer
        Fitted with the global ``std_``: use it on test data.
    """
    from .preprocess import SigmoidNormalizer

    client = _get_client(client)
    n_std = check_scalar(n_std, "n_std", low=0.0, low_open=True)
    X = _rows_chunked(_check_dask_2d(X, "X"))
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    X = client.persist(X)       # read twice below: computed once
    Xc = X - X.mean(axis=1, keepdims=True, dtype=np.float64).astype(X.dtype)
    std = float(client.compute(Xc.std(ddof=1, dtype=np.float64)).result())
    if not std > 0.0:
        raise ParameterError("X is constant within every row (standard deviation 0 after "
                             "removing each row's mean), or has fewer than 2 values; there is "
                             f"nothing to scale (std={std})")
    norm = SigmoidNormalizer(n_std=n_std)
    norm.std_ = std
    norm.n_features_in_ = X.shape[1]
    Y = client.persist(X.map_blocks(norm.transform, dtype=X.dtype))
    return Y, norm


def file_seeds(random_state, n_files):
    """Per-file seeds of :func:`windows_from_files`: file ``i``'s windows are
    ``audio.sample_windows([S_i], ..., random_state=int(seeds[i]))``."""
    rng = check_random_state(random_state)
    return rng.integers(0, 2**63 - 1, size=check_int(n_files, "n_files", low=0), dtype=np.int64)


def _windows_shard(paths, seeds, kind, n_bands, sr, spectrum_kw, n_frames, hop,
                   n_windows_per_file, dtype, cache_dir, on_error):
    """On a worker: spectra of some files, then their windows. Returns (X or None, n_short)."""
    from .audio import sample_windows, spectra_from_files

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)    # skipped files are counted below
        spectra, kept = spectra_from_files(paths, kind=kind, n_bands=n_bands, sr=sr, n_jobs=1,
                                           cache_dir=cache_dir, on_error=on_error,
                                           return_paths=True, **spectrum_kw)
    seed_of = dict(zip(paths, seeds))
    rows, n_short = [], len(paths) - len(kept)
    for S, path in zip(spectra, kept):
        if S.shape[1] < n_frames:
            n_short += 1
            continue
        rows.append(sample_windows([S], n_frames=n_frames, hop=hop,
                                   n_samples=n_windows_per_file,
                                   random_state=int(seed_of[path])).astype(dtype, copy=False))
    X = np.concatenate(rows) if rows else None
    return X, n_short


def _shard_meta(part):
    X, n_short = part
    return (0, 0, n_short) if X is None else (X.shape[0], X.shape[1], n_short)


def windows_from_files(client, files, *, kind="mel", n_bands=None, sr=None, n_frames=4,
                       hop=1, n_windows_per_file=None, normalize="sigmoid", n_std=3.0,
                       files_per_shard=FILES_PER_SHARD, dtype="float64", random_state=None,
                       cache_dir=False, on_error="fail", return_normalizer=False,
                       **spectrum_kw):
    """Training windows of many audio files, computed and persisted on the workers.

    The files are split into shards of ``files_per_shard``; for each shard one
    task, on a worker, computes the spectra
    (:func:`fastsae.audio.spectra_from_files`) and cuts them into windows
    (:func:`fastsae.audio.sample_windows`, one file at a time). The windows
    never pass through this process. Every worker must be able to read the
    paths (a shared file system, or the same copy on each machine).

    The result equals the single-machine path: with ``n_windows_per_file=None``,
    ``sample_windows(spectra_from_files(files, ...), n_frames=n_frames, hop=hop)``
    row for row; with ``n_windows_per_file=k``, the concatenation over files of
    ``sample_windows([S_i], n_frames=n_frames, hop=hop, n_samples=k,
    random_state=int(file_seeds(random_state, len(files))[i]))`` — then, with
    ``normalize="sigmoid"``, :func:`normalize_sigmoid` of that.

    Parameters
    ----------
    client : dask.distributed.Client or None
        None: the default client.
    files : sequence of str or os.PathLike
    kind, n_bands, sr, **spectrum_kw
        As in :func:`fastsae.audio.spectra_from_files` (``n_bands=None``: the
        kind's default, 40 bands; leave it None for ``"fft"``).
    n_frames, hop : int >= 1
        As in :func:`fastsae.audio.sample_windows`.
    n_windows_per_file : int or None
        None: every window of every file. An int: that many windows drawn from
        each file (uniformly, with replacement), seeded per file.
    normalize : {"sigmoid", None}
        ``"sigmoid"``: UFLDL's normalisation with one global scale (see
        :func:`normalize_sigmoid`), for a sigmoid decoder.
    n_std : float > 0
        Truncation of the sigmoid normalisation.
    files_per_shard : int >= 1
        Files per task and per chunk of the result.
    dtype : {"float64", "float32"}
    random_state : int, numpy Generator or None
        Seed of the per-file seeds (:func:`file_seeds`).
    cache_dir : str, None or False
        The workers' spectrum cache (False: none); see ``spectra_from_files``.
    on_error : {"fail", "skip"}
        A file that cannot be read: raise, or leave it out.
    return_normalizer : bool
        Also return the fitted :class:`~fastsae.preprocess.SigmoidNormalizer`
        (None without normalisation).

    Returns
    -------
    X : dask.array.Array [shape=(n_windows, n_bands * n_frames)]
        Persisted on the workers, one chunk per non-empty shard.
    normalizer : SigmoidNormalizer or None
        Only with ``return_normalizer=True``.

    Warns
    -----
    UserWarning
        Files shorter than ``n_frames`` frames (or unreadable, with
        ``on_error="skip"``) were left out; all of them: ParameterError.
    """
    _, da, _ = _require()
    from .audio import spectrum

    client = _get_client(client)
    if isinstance(files, (str, bytes, os.PathLike)):
        raise ParameterError(f"files must be a sequence of paths; got a single path {files!r}")
    files = [os.fspath(f) for f in files]
    if not files:
        raise ParameterError("files must hold at least one path; got an empty list")
    n_frames = check_int(n_frames, "n_frames", low=1)
    hop = check_int(hop, "hop", low=1)
    if n_windows_per_file is not None:
        n_windows_per_file = check_int(n_windows_per_file, "n_windows_per_file", low=1)
    check_choice(normalize, "normalize", ("sigmoid", None))
    files_per_shard = check_int(files_per_shard, "files_per_shard", low=1)
    dt = check_dtype(dtype)
    check_choice(on_error, "on_error", ("fail", "skip"))
    check_bool(return_normalizer, "return_normalizer")
    # the spectrum options, checked once here rather than in every task
    spectrum(np.ones(64, dtype=np.float32), sr or 48000, kind=kind, n_bands=n_bands,
             **spectrum_kw)
    seeds = file_seeds(random_state, len(files))

    starts = range(0, len(files), files_per_shard)
    parts = [client.submit(_windows_shard, files[s:s + files_per_shard],
                           seeds[s:s + files_per_shard], kind, n_bands, sr, spectrum_kw,
                           n_frames, hop, n_windows_per_file, dt, cache_dir, on_error,
                           pure=False)
             for s in starts]
    meta = client.gather(client.map(_shard_meta, parts, pure=False))
    n_left_out = sum(k for _, _, k in meta)
    kept = [(p, n, w) for p, (n, w, _) in zip(parts, meta) if n > 0]
    if not kept:
        raise ParameterError(
            f"none of the {len(files)} file(s) gave a window of n_frames={n_frames} frames "
            "(too short, or unreadable with on_error='skip')")
    if n_left_out:
        warnings.warn(f"{n_left_out} of {len(files)} file(s) were left out (shorter than "
                      f"n_frames={n_frames} frames, or unreadable)", UserWarning, stacklevel=2)
    width = kept[0][2]
    chunks = [da.from_delayed(client.submit(operator.getitem, p, 0, pure=False), (n, width),
                              dtype=dt) for p, n, _ in kept]
    X = da.concatenate(chunks, axis=0)
    norm = None
    if normalize == "sigmoid":
        X, norm = normalize_sigmoid(X, n_std=n_std, client=client)
    else:
        X = client.persist(X)
    return (X, norm) if return_normalizer else X


def _check_dask_labels(y, n_samples, name):
    """``y`` as a 1-D dask array (a column is accepted), with ``n_samples`` labels if given."""
    _, da, _ = _require()
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
    """Labels of a dask array -> ``(classes, codes)``, like :func:`fastsae.softmax.encode_labels`.

    ``classes`` (sorted, a NumPy array) comes from a distributed ``unique``;
    ``codes`` is a dask array of ``intp`` codes, chunked like ``y``. With
    ``n_samples``, ``y`` must hold that many labels (one per row of X).
    Raises ParameterError, naming ``name``, for a wrong shape or length, NaN
    labels, labels that cannot be sorted or a single class.
    """
    _, da, _ = _require()
    _get_client(client)
    y = _check_dask_labels(y, n_samples, name)
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
    from .softmax import encode_known_labels as encode_block

    y = _check_dask_labels(y, n_samples, name)
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
    _require()
    X = _rows_chunked(_check_dask_2d(X, name))
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
    _, da, _ = _require()
    if any(np.isnan(c) for c in a.chunks[0]):
        a = a.compute_chunk_sizes()
    if isinstance(b, da.Array):
        b = _check_dask_labels(b, a.shape[0], name).rechunk(a.chunks)
    else:
        b = np.asarray(b).reshape(-1)
        if b.shape[0] != a.shape[0]:
            raise ParameterError(
                f"{name} must have one label per row of X ({a.shape[0]}); got {b.shape[0]}")
        b = da.from_array(b, chunks=a.chunks)
    return float((a == b).mean().compute())


# ---------------------------------------------------------------------------
# Work on the workers
# ---------------------------------------------------------------------------

def _stats_function(backend):
    if backend not in ("numba", "numpy"):
        backends.check_backend_name(backend)
        raise BackendUnavailableError(
            f"backend {backend!r} has no distributed autoencoder statistics; use 'numba' "
            "(or 'numpy')")
    return backends.get_function(backend, "sae_shard_stats")


def _with_threads(n_jobs, fn, *args, **kw):
    from ._threads import numba_threads

    with numba_threads(n_jobs):
        return fn(*args, **kw)


def _sae_shard(theta, X, n_visible, n_hidden, backend, n_jobs, opts):
    """On a worker: one shard's statistics vector (zeros for an empty shard)."""
    if X.shape[0] == 0:
        return np.zeros(sum(sae_stats_layout(n_visible, n_hidden, opts["with_sparsity"])))
    return _with_threads(n_jobs, _stats_function(backend), theta, X, n_visible, n_hidden,
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


def _check_n_jobs(n_jobs):
    if n_jobs is None:
        return None
    n_jobs = check_int(n_jobs, "n_jobs")
    if n_jobs == 0:
        raise ParameterError("n_jobs must be a positive number of threads, -1 for all, or None; "
                             "got 0")
    return n_jobs


def sae_objective(client, X, n_visible, n_hidden, *, sparsity, beta, weight_decay,
                  decoder="sigmoid", loss="squared", tied=False, backend="numba", n_jobs=None,
                  split_every=SPLIT_EVERY, retries=2):
    """The sparse autoencoder objective on a dask array, as a reusable callable.

    Equals :func:`fastsae.reference.sae_cost_grad` on the whole of ``X``
    (up to rounding: about 1e-15 relative in float64), with one round trip
    per evaluation: each shard returns the sufficient statistics of
    :func:`fastsae._reference_distributed.sae_shard_stats`, their sum gives
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
    backend : {"numba", "numpy"}
        The per-shard kernel on the workers.
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
    from ._validation import check_sae_options

    client = _get_client(client)
    X = persist_rows(X, client=client)
    n_visible = check_int(n_visible, "n_visible", low=1)
    n_hidden = check_int(n_hidden, "n_hidden", low=1)
    # every backend's checks, on a one-row stand-in for X
    n_params = layout_size(sae_layout(n_visible, n_hidden, bool(tied)))
    if X.shape[1] != n_visible:
        raise ParameterError(f"X must have n_visible={n_visible} columns; got shape {X.shape}")
    check_sae_options(np.zeros(n_params), np.zeros((1, n_visible), X.dtype), n_visible,
                      n_hidden, sparsity, beta, weight_decay, decoder, loss, tied)
    _stats_function(backend)
    split_every, retries = _check_split(split_every, retries)
    opts = dict(decoder=decoder, loss=loss, tied=bool(tied), with_sparsity=float(beta) > 0)
    kw = dict(sparsity=float(sparsity), beta=float(beta), weight_decay=float(weight_decay),
              decoder=decoder, loss=loss, tied=bool(tied), dtype=X.dtype.name)
    shards = [(f,) for f in _chunk_futures(X)]
    return DistributedObjective(client, shards, _sae_shard,
                                (n_visible, n_hidden, backend, _check_n_jobs(n_jobs), opts),
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
    _, da, _ = _require()
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
    return X, y, list(zip(_chunk_futures(X), _chunk_futures(y)))


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
    client = _get_client(client)
    n_classes = check_int(n_classes, "n_classes", low=2)
    weight_decay = check_scalar(weight_decay, "weight_decay", low=0.0)
    backends.check_backend_name(backend)
    split_every, retries = _check_split(split_every, retries)
    X, y, shards = _labelled_shards(client, X, y)
    n_features = X.shape[1]
    n_params = layout_size(softmax_layout(n_classes, n_features))
    return DistributedObjective(
        client, shards, _sum_shard,
        ("softmax_cost_grad", (n_classes,), backend, _check_n_jobs(n_jobs)),
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
    client = _get_client(client)
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
        ("stacked_cost_grad", (sizes, n_classes), backend, _check_n_jobs(n_jobs)),
        _stacked_finish, (sizes, n_classes, weight_decay, stack_weight_decay, X.dtype.name),
        n_params, split_every=split_every, retries=retries, data=(X, y))


def stacked_cost_grad(client, theta, X, y, layer_sizes, n_classes, **kw):
    """One evaluation of :func:`stacked_objective` (same arguments): ``(cost, grad)``."""
    return stacked_objective(client, X, y, layer_sizes, n_classes, **kw)(theta)


__all__ = [
    "connect", "is_dask_collection", "windows_from_files", "file_seeds", "normalize_sigmoid",
    "persist_rows", "concatenate_rows", "check_dask_array", "encode_labels",
    "encode_known_labels", "map_rows", "fraction_equal", "DistributedObjective",
    "sae_objective", "sae_cost_grad", "softmax_objective", "softmax_cost_grad",
    "stacked_objective", "stacked_cost_grad", "INSTALL_HINT",
]
