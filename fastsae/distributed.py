"""Full-batch training on a Dask cluster: the data stay on the workers.

The objectives of the autoencoder, the softmax and the fine-tuned stack are
sums over examples, so one L-BFGS evaluation is a map over row shards and a
sum. This module builds that on :mod:`dask.distributed` (no scheduler, wire
protocol or worker management of its own):

- the training windows are computed *on the workers* (:func:`windows_from_files`)
  or taken from any dask array, and persisted there, rows split into shards;
- a whole :class:`~fastsae.pipeline.SelfTaughtFeatures` fits from audio files
  the same way (:func:`fit_features_from_files`, its ``fit_files`` method,
  ``fastsae train-sae AUDIO_DIR --scheduler``): spectra, clips and patches are
  made by the workers from the paths, the whitening comes from a tree
  reduction of the patches' mean and covariance (:func:`row_moments`), the
  standardizer from per-shard moments of the pooled features, so the data
  never pass through (nor need to fit) the client;
- each evaluation scatters ``theta`` once (every worker then fetches one copy
  from a peer, not one per task), runs one task per shard where the shard lives (the
  Numba kernels), adds the per-shard results with a tree of sums on the
  workers and finishes at the root, so only ``(cost, grad)`` comes back;
- the autoencoder's sparsity penalty needs the mean activation over *all*
  examples before its gradient can be formed; each shard therefore returns
  sufficient statistics instead of a gradient (one round trip per evaluation,
  see :mod:`fastsae.reference.sae_stats`), and the result is the
  single-machine objective up to rounding;
- a worker lost during training costs a recomputation, not the run: its
  shards are rebuilt by Dask from their lineage (the tasks that made them),
  its tasks rerun elsewhere, and the sums are taken in a fixed order, so the
  result does not change.

Install with ``pip install "fastsae-audio[dist]"``; without Dask every function here
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
import warnings

import numpy as np

from ._dask.arrays import (check_dask_array, concatenate_rows, encode_known_labels, encode_labels,
                           fraction_equal, map_rows, persist_rows, rows_chunked, check_dask_2d,
                           scatter_rows)
from ._dask.client import INSTALL_HINT, connect, get_client, is_dask_collection, require
from ._dask.moments import combine_moments, row_moments, shard_moments, tree_reduce
from ._dask.objective import (SPLIT_EVERY, DistributedObjective, sae_combine_stats,
                              sae_cost_grad, sae_objective, softmax_cost_grad, softmax_objective,
                              stacked_cost_grad, stacked_objective)
from .core.checks import check_bool, check_choice, check_dtype, check_int, check_random_state, check_scalar
from .exceptions import ParameterError

#: Audio files per shard in :func:`windows_from_files` (a few tens of MB of windows).
FILES_PER_SHARD = 32


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

    client = get_client(client)
    n_std = check_scalar(n_std, "n_std", low=0.0, low_open=True)
    X = rows_chunked(check_dask_2d(X, "X"))
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
    _, da, _ = require()
    from .audio import spectrum

    client = get_client(client)
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


# -- SelfTaughtFeatures fitted from files, on the workers ----------------------------

def _clips_shard(paths, features, sr, spectrum_kw, cache_dir, on_error):
    """On a worker: ``(clips, where)``, the clips of some files with ``features._clips``'
    preprocessing and the positions in ``paths`` of the files that gave them."""
    from .audio import spectra_from_files

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)    # unreadable files are counted later
        spectra, kept = spectra_from_files(paths, sr=sr, n_jobs=1, cache_dir=cache_dir,
                                           on_error=on_error, return_paths=True, **spectrum_kw)
    where, j = [], 0
    for p in kept:                     # kept is a subsequence of paths, in order
        while os.fspath(paths[j]) != os.fspath(p):
            j += 1
        where.append(j)
        j += 1
    return (features._clips(spectra) if spectra else []), where


def _clips_meta(part):
    clips, where = part
    return [S.shape for S in clips], where


def _patches_shard(part, counts, seeds, patch_bands, n_frames, dtype):
    """On a worker: the patches of one shard's clips, clip ``i``'s ``counts[i]`` of them
    drawn with ``seeds[i]`` (``counts=None``: every full-height window)."""
    from .audio import sample_patches, sample_windows

    rows = []
    for i, S in enumerate(part[0]):
        if counts is None:
            rows.append(sample_windows([S], n_frames=n_frames))
        elif counts[i] == 0:
            continue
        elif patch_bands is None:
            rows.append(sample_windows([S], n_frames=n_frames, n_samples=int(counts[i]),
                                       random_state=int(seeds[i])))
        else:
            rows.append(sample_patches([S], (patch_bands, n_frames), n_samples=int(counts[i]),
                                       random_state=int(seeds[i])))
    return np.ascontiguousarray(np.concatenate(rows), dtype=dtype)


def _pooled_moments(part, convs, n_out):
    """On a worker: ``(m, mean, Σ(F - mean)²)`` of one shard's pooled features, float64."""
    clips = part[0]
    if not clips:
        return 0, np.zeros(n_out), np.zeros(n_out)
    F = np.concatenate([conv.transform(clips) for conv in convs], axis=1)
    return shard_moments(F, full=False)


def _unit_profiles(part, conv, local):
    """On a worker: each unit's mean activation per band offset, for the clips ``local``."""
    return [conv.feature_maps(part[0][i]).mean(axis=2, dtype=np.float64) for i in local]


def _standard_scaler(m, mean, var):
    """A fitted StandardScaler from a count, the means and the (1/m) variances."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler()
    scaler.mean_, scaler.var_ = mean, var
    scaler.n_samples_seen_ = np.int64(m)
    scaler.n_features_in_ = int(mean.size)
    try:                                   # scikit-learn's own rule for constant features
        from sklearn.preprocessing._data import _handle_zeros_in_scale, _is_constant_feature
        scaler.scale_ = _handle_zeros_in_scale(np.sqrt(var), copy=False,
                                               constant_mask=_is_constant_feature(var, mean, m))
    except ImportError:                    # pragma: no cover - other scikit-learn versions
        scale = np.sqrt(var)
        scale[scale < 10 * np.finfo(scale.dtype).eps] = 1.0
        scaler.scale_ = scale
    return scaler


def _check_files(files, on_error):
    if isinstance(files, (str, bytes, os.PathLike)):
        raise ParameterError(f"files must be a sequence of paths; got a single path {files!r}")
    try:
        files = [os.fspath(f) for f in files]
    except TypeError as exc:
        raise ParameterError(f"files must be a sequence of paths: {exc}") from None
    if not files:
        raise ParameterError("files must hold at least one path; got an empty list")
    if on_error == "fail":
        missing = [f for f in files if not os.path.isfile(f)]
        if missing:
            raise ParameterError(f"{len(missing)} of the {len(files)} file(s) do not exist "
                                 f"(or are not files), e.g. {missing[0]!r}; fix the list, or "
                                 "pass on_error='skip' to leave unreadable files out")
    return files


def fit_features_from_files(client, files, spectrogram, features, *, callback=None,
                            resume=False, files_per_shard=None, cache_dir=False,
                            on_error="fail"):
    """Fit a :class:`~fastsae.pipeline.SelfTaughtFeatures` on audio files, on the workers.

    What :meth:`SelfTaughtFeatures.fit_files <fastsae.pipeline.SelfTaughtFeatures.fit_files>`
    does (see there): spectra, clips and patches computed on the workers
    from the paths and persisted there (recomputed from their lineage when a
    worker is lost), the whitening fitted from a tree reduction of the
    patches' mean and covariance (:func:`row_moments`) and applied on the
    workers, the autoencoder trained with :func:`sae_objective`, the
    standardizer from per-shard moments of the pooled features.

    Returns
    -------
    features : SelfTaughtFeatures
        Fitted (the same object).
    """
    import time

    from .audio import Spectrogram, spectrum

    _, da, _ = require()
    t0 = time.perf_counter()
    features._validate_params()
    if not isinstance(spectrogram, Spectrogram):
        raise ParameterError("spectrogram must be a fastsae.audio.Spectrogram; got "
                             f"{type(spectrogram).__name__}")
    spectrogram.fit()
    spectrum_kw = spectrogram._spectrum_kw()
    spectrum(np.ones(64, dtype=np.float32), spectrogram.sr or 48000, **spectrum_kw)
    check_choice(on_error, "on_error", ("fail", "skip"))
    check_bool(resume, "resume")
    if not (cache_dir is None or cache_dir is False or isinstance(cache_dir, (str, os.PathLike))):
        raise ParameterError(f"cache_dir must be a folder, None or False; got {cache_dir!r}")
    fps = FILES_PER_SHARD if files_per_shard is None else \
        check_int(files_per_shard, "files_per_shard", low=1)
    files = _check_files(files, on_error)
    pb, n_frames = features.patch_bands, features.n_frames
    if pb is not None and spectrogram.n_bands is not None and pb > spectrogram.n_bands:
        raise ParameterError(f"patch_bands={pb} is more than the spectrogram's "
                             f"{spectrogram.n_bands} bands")
    client = get_client(client)
    dt = check_dtype(features.dtype)
    rng = check_random_state(features.random_state)
    seeds = rng.integers(0, 2**63 - 1, size=len(files), dtype=np.int64)

    # 1. clips, one task per shard of files, kept on the workers
    recipe = type(features)(**features.get_params(deep=False))
    starts = list(range(0, len(files), fps))
    parts = [client.submit(_clips_shard, files[s:s + fps], recipe, spectrogram.sr, spectrum_kw,
                           cache_dir, on_error, pure=False) for s in starts]
    meta = client.gather(client.map(_clips_meta, parts, pure=False))
    shapes = [sh for sh, _ in meta]
    index = [np.asarray(w, dtype=np.intp) + s for s, (_, w) in zip(starts, meta)]
    n_clips = sum(len(sh) for sh in shapes)
    if not n_clips:
        raise ParameterError(f"none of the {len(files)} file(s) could be read")
    if n_clips < len(files):
        warnings.warn(f"{len(files) - n_clips} of {len(files)} file(s) could not be read and "
                      "were left out", UserWarning, stacklevel=3)
    heights = {h for sh in shapes for h, _ in sh}
    if len(heights) != 1:
        raise ParameterError(f"the spectra have different numbers of bands: {sorted(heights)}")
    H = heights.pop()

    # 2. patches: counts per clip (one multinomial draw), each clip's with its own seed
    places = np.array([(H - (pb or H) + 1) * (T - n_frames + 1) for sh in shapes
                       for _, T in sh], dtype=np.float64)
    if features.n_windows is None:
        counts, rows = None, places.astype(np.int64)
    else:
        counts = rows = rng.multinomial(features.n_windows, places / places.sum())
    width = (pb or H) * n_frames
    chunks, off = [], 0
    for part, sh, idx in zip(parts, shapes, index):
        k = len(sh)
        n = int(rows[off:off + k].sum())
        if n:
            fut = client.submit(_patches_shard, part, None if counts is None else
                                counts[off:off + k], seeds[idx], pb, n_frames, dt, pure=False)
            chunks.append(da.from_delayed(fut, (n, width), dtype=dt))
        off += k
    X = client.persist(da.concatenate(chunks, axis=0))

    # 3. the preprocessing, fitted from reductions and applied where the patches live
    prep, decoder = features._preprocessor()
    if decoder == "sigmoid":
        Xp, prep = normalize_sigmoid(X, n_std=prep.n_std, client=client)
    else:
        _, mean, cov = row_moments(X, client=client)
        prep.fit_covariance(cov, mean, dtype=dt)
        Xp = client.persist(X.map_blocks(prep.transform, dtype=dt,
                                         chunks=(X.chunks[0], (prep._n_features_out,))))
    del X

    # 4. the autoencoder, on the cluster
    seed = int(rng.integers(2**31 - 1))
    sae, previous, done = features._autoencoder(decoder, seed, int(Xp.shape[1]), resume)
    with client.as_current():
        features._train(sae, prep, Xp, callback, previous, done)
    del Xp
    features._set_up_convolution(H)

    # 5. the standardizer from per-shard moments of the pooled features; the profile
    features.standardizer_ = None
    if features.standardize:
        n_out = features.n_features_out_
        moments = [client.submit(_pooled_moments, p, features.convs_, n_out, pure=False)
                   for p in parts]
        m, mean, M2 = tree_reduce(client, moments, combine_moments, SPLIT_EVERY).result()
        features.standardizer_ = _standard_scaler(m, mean, M2 / m)
    pick = rng.choice(n_clips, size=min(200, n_clips), replace=False)
    bounds = np.cumsum([0] + [len(sh) for sh in shapes])
    profile = {}
    for s, part in enumerate(parts):
        mine = [int(i) for i in pick if bounds[s] <= i < bounds[s + 1]]
        if mine:
            got = client.submit(_unit_profiles, part, features.conv_,
                                [i - int(bounds[s]) for i in mine], pure=False).result()
            profile.update(zip(mine, got))
    total = 0.0
    for i in pick:                         # in the order of the single-machine sum
        total = total + profile[int(i)]
    features.frequency_profile_ = total / len(pick)
    features.n_files_ = int(n_clips)
    features.fitted_on_workers_ = True
    features.fit_time_ = time.perf_counter() - t0
    return features


__all__ = [
    "connect", "is_dask_collection", "windows_from_files", "file_seeds", "normalize_sigmoid",
    "persist_rows", "concatenate_rows", "check_dask_array", "encode_labels",
    "encode_known_labels", "map_rows", "fraction_equal", "DistributedObjective",
    "sae_objective", "sae_cost_grad", "softmax_objective", "softmax_cost_grad",
    "stacked_objective", "stacked_cost_grad", "sae_combine_stats", "scatter_rows", "INSTALL_HINT",
    "SPLIT_EVERY", "FILES_PER_SHARD", "row_moments", "fit_features_from_files",
]
