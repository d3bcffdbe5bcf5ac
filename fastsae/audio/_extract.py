"""Spectra of many files: parallel over processes, cached on disk by content hash."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import partial
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..core.types import PathLike
from ..exceptions import ParameterError
from ._io import _check_sr, check_path, check_paths, decode
from ._parallel import map_files
from ._spectrum import spectrum

#: Bump when the meaning of a cached spectrum changes.
CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """``$FASTSAE_CACHE_DIR``, else ``~/.cache/fastsae``."""
    env = os.environ.get("FASTSAE_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fastsae"


def _resolve_cache_dir(cache_dir):
    if cache_dir is False:
        return None
    if cache_dir is None:
        base = default_cache_dir()
    elif isinstance(cache_dir, (str, os.PathLike)):
        base = Path(cache_dir).expanduser()
    else:
        raise ParameterError("cache_dir must be a folder path, None (the default folder) or "
                             f"False (no cache); got {cache_dir!r}")
    return str(base / "spectra")


def _params_key(params) -> str:
    import librosa

    def plain(v):
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, (list, tuple)):
            return [plain(u) for u in v]
        return v

    spec = {"version": CACHE_VERSION, "librosa": librosa.__version__,
            **{k: plain(v) for k, v in sorted(params.items())}}
    try:
        return json.dumps(spec, sort_keys=True)
    except TypeError:
        raise ParameterError("spectrum options must be plain values (numbers, strings) to "
                             f"key the cache; got {params!r} (or pass cache_dir=False)") from None


def _save_atomic(path, S):
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".npy")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, S, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _cache_file(data, key, cache):
    digest = hashlib.blake2b(key.encode(), digest_size=20)
    digest.update(data)
    name = digest.hexdigest()
    return os.path.join(cache, name[:2], name + ".npy")


def _read_bytes(path):
    path = check_path(path)
    with open(path, "rb") as f:
        return path, f.read()


def _cached(path, key, cache):
    """The cached spectrum of ``path``, or None (a miss, or any problem: the
    file is then handled, and its error reported, by the computing pass)."""
    try:
        _, data = _read_bytes(path)
        return np.load(_cache_file(data, key, cache), allow_pickle=False)
    except (ParameterError, OSError, ValueError, EOFError):
        return None


def _spectrum_of_file(path, *, sr, params, key, cache):
    path, data = _read_bytes(path)
    y, file_sr = decode(data, path, sr=sr, mono=True)
    try:
        S = spectrum(y, file_sr, **params)
    except ParameterError as exc:               # the options were checked: it is this file
        raise ParameterError(f"audio file {path!r}: {exc}") from None
    if cache is not None:
        _save_atomic(_cache_file(data, key, cache), S)
    return S


def spectra_from_files(paths: Sequence[PathLike], *, kind: str = "mel",
                       n_bands: int | None = None, sr: int | None = None,
                       n_jobs: int | None = None,
                       cache_dir: PathLike | Literal[False] | None = None,
                       progress: bool = False, on_error: Literal["fail", "skip"] = "fail",
                       return_paths: bool = False, **spectrum_kw: Any
                       ) -> list[np.ndarray] | tuple[list[np.ndarray], list[str]]:
    """:func:`spectrum` of every file, in parallel, cached on disk.

    Each file is read (:func:`load` with ``mono=True``), resampled to ``sr``
    and turned into a spectrum by ``spectrum(y, sr, kind=kind,
    n_bands=n_bands, **spectrum_kw)``. The work is split into a few chunks
    per worker process. Results are cached as ``.npy`` files named by a hash
    of the file's bytes and of the parameters (and the cache format and
    librosa versions), so a second run over the same files only reads the
    cache, and changing a file or a parameter misses it. Cache writes are
    atomic (a temporary file, then ``os.replace``): concurrent runs and
    interrupted runs never leave a partial entry.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
    kind, n_bands, **spectrum_kw
        As in :func:`spectrum`.
    sr : int or None
        Resample every file to this rate; None: each file's own rate.
    n_jobs : int or None
        Worker processes; None: every available core; 1: this process.
    cache_dir : str, os.PathLike, None or False
        Cache folder (entries go to its ``spectra/`` sub-folder). None:
        ``$FASTSAE_CACHE_DIR``, else ``~/.cache/fastsae``. False: no cache.
    progress : bool
        Show a progress bar (tqdm).
    on_error : {"fail", "skip"}
        As in :func:`load_many`: skip bad files with one warning counting them.
    return_paths : bool
        Also return the paths of the spectra (those not skipped).

    Returns
    -------
    spectra : list of np.ndarray [shape=(n_bands, n_frames_i), dtype=float32]
    paths : list of str
        Only with ``return_paths=True``.

    Examples
    --------
    >>> import numpy as np, soundfile as sf, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> sf.write(path, 0.1 * np.sin(np.arange(8000) / 3), 8000)
    >>> from fastsae import audio
    >>> [S] = audio.spectra_from_files([path], kind="mel", n_jobs=1, cache_dir=False)
    >>> S.shape
    (40, 101)
    """
    sr = _check_sr(sr)
    paths = check_paths(paths)
    params = dict(spectrum_kw, kind=kind, n_bands=n_bands)
    # Check the options once here, not once per file in every worker.
    spectrum(np.ones(64, dtype=np.float32), sr or 48000, **params)
    cache = _resolve_cache_dir(cache_dir)
    key = _params_key(dict(params, sr=sr)) if cache is not None else ""
    results = [None] * len(paths)
    if cache is not None:
        # Hits are read here: a worker pool would cost more than np.load.
        for i, path in enumerate(_progress(paths, progress, "reading cache")):
            results[i] = _cached(path, key, cache)
    todo = [i for i, S in enumerate(results) if S is None]
    func = partial(_spectrum_of_file, sr=sr, params=params, key=key, cache=cache)
    computed, kept = map_files(func, [paths[i] for i in todo], n_jobs=n_jobs,
                               progress=progress, desc=f"{kind} spectra", on_error=on_error,
                               n_total=len(paths))
    for j, S in zip(kept, computed):
        results[todo[j]] = S
    keep = [i for i, S in enumerate(results) if S is not None]
    spectra = [results[i] for i in keep]
    if return_paths:
        return spectra, [paths[i] for i in keep]
    return spectra


def _progress(items, enabled, desc):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="file", leave=False)
