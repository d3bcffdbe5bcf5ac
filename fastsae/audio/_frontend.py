"""The spectral front end as a saveable estimator, and spectra on disk."""
from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterable, Sequence
from typing import Any, Literal, Self

import numpy as np

from sklearn.base import TransformerMixin

from ..base import Estimator
from ..core.checks import check_int, check_output_path, npz_problem
from ..core.types import ArrayLike, PathLike
from ..exceptions import ParameterError
from ._extract import spectra_from_files
from ._spectrum import KINDS, spectrum


class Spectrogram(TransformerMixin, Estimator):
    """Audio clips or files -> spectra, with the settings kept for later.

    A pipeline that learned features from spectra must compute the spectra of
    new audio the same way; this object holds those settings (and is saved
    with the model by :func:`fastsae.save`).

    Parameters
    ----------
    kind, n_bands, n_fft, hop_length, log
        As in :func:`fastsae.audio.spectrum`.
    sr : int or None
        Sample rate every clip is resampled to (None: each file's own rate).

    Examples
    --------
    >>> import numpy as np
    >>> spec = Spectrogram(kind="mel", n_bands=20, sr=8000)
    >>> [S] = spec.transform([np.random.default_rng(0).standard_normal(4000).astype("float32")])
    >>> S.shape
    (20, 51)
    """

    def __init__(self, kind: str = "mel", n_bands: int | None = 40, *, sr: int | None = None,
                 n_fft: int | None = None, hop_length: int | None = None,
                 log: bool = True) -> None:
        self._store_params(locals())

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.two_d_array = False
        return tags

    def _spectrum_kw(self):
        return dict(kind=self.kind, n_bands=self.n_bands, n_fft=self.n_fft,
                    hop_length=self.hop_length, log=self.log)

    def fit(self, X: object = None, y: object = None) -> Self:
        """Nothing to learn; checks the settings."""
        if self.kind not in KINDS:
            raise ParameterError(f"kind must be one of {', '.join(map(repr, KINDS))}; got {self.kind!r}")
        if self.n_bands is not None:
            check_int(self.n_bands, "n_bands", low=1)
        return self

    def transform(self, X: Iterable[ArrayLike | PathLike], *, n_jobs: int | None = None,
                  cache_dir: PathLike | Literal[False] | None = None, progress: bool = False,
                  on_error: Literal["fail", "skip"] = "fail") -> list[np.ndarray]:
        """Spectra of clips (1-D arrays at ``sr``) or of audio files (paths).

        Returns
        -------
        spectra : list of np.ndarray [shape=(n_bands, n_frames_i), dtype=float32]
        """
        self.fit()
        items = list(X)
        if not items:
            raise ParameterError("X must hold at least one clip or file")
        if all(isinstance(x, (str, os.PathLike)) for x in items):
            return spectra_from_files(items, sr=self.sr, n_jobs=n_jobs, cache_dir=cache_dir,
                                      progress=progress, on_error=on_error, **self._spectrum_kw())
        if self.sr is None:
            raise ParameterError("sr must be set to compute spectra of clips given as arrays")
        return [spectrum(np.asarray(y), self.sr, **self._spectrum_kw()) for y in items]

    def fit_transform(self, X: Iterable[ArrayLike | PathLike], y: object = None,
                      **kw: Any) -> list[np.ndarray]:
        return self.transform(X, **kw)


def save_spectra(path: PathLike, spectra: Sequence[ArrayLike], *,
                 paths: Sequence[PathLike] | None = None, labels: Sequence[Any] | None = None,
                 params: dict[str, Any] | None = None) -> None:
    """Write spectra of any lengths to one ``.npz`` (no pickle).

    The spectra are concatenated along time with their offsets; ``paths``,
    ``labels`` and ``params`` (a JSON-able dict of the settings that made
    them) are stored beside them. :func:`load_spectra` reads it back.
    """
    spectra = [np.asarray(S) for S in spectra]
    if not spectra or any(S.ndim != 2 for S in spectra):
        raise ParameterError("spectra must be a non-empty list of 2-D arrays")
    n_bands = spectra[0].shape[0]
    if any(S.shape[0] != n_bands for S in spectra):
        raise ParameterError("spectra must all have the same number of bands")
    offsets = np.cumsum([0] + [S.shape[1] for S in spectra]).astype(np.int64)
    arrays = {"data": np.concatenate(spectra, axis=1), "offsets": offsets,
              "params": np.array(json.dumps(params or {}))}
    for name, values in (("paths", paths), ("labels", labels)):
        if values is not None:
            if len(values) != len(spectra):
                raise ParameterError(f"{name} must have one entry per spectrum")
            arrays[name] = np.asarray([str(v) for v in values])
    path = check_output_path(path, "path", suffix=".npz")
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as out:            # a file object: numpy adds no suffix
            np.savez(out, **arrays)
        os.replace(tmp, path)                    # never a half-written file under path
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_spectra(path: PathLike) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Read a file written by :func:`save_spectra` (or ``fastsae features``).

    Returns
    -------
    spectra : list of np.ndarray [shape=(n_bands, n_frames_i)]
    info : dict
        ``"paths"`` and ``"labels"`` (lists of str, or None) and ``"params"`` (dict).
    """
    name = os.fspath(path)
    try:
        problem = npz_problem(path)
    except FileNotFoundError:
        raise ParameterError(f"spectra file {name!r} does not exist") from None
    except OSError as exc:
        raise ParameterError(f"spectra file {name!r} cannot be read: {exc.strerror}") from None
    if problem:
        raise ParameterError(f"{name!r} is not a spectra file written by fastsae ({problem})")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("data", "offsets", "params") if k not in npz.files]
            if missing:
                what = ("a fastsae model file" if "__fastsae__" in npz.files
                        else f"a .npz without {', '.join(repr(k) for k in missing)}")
                raise ParameterError(f"{name!r} is not a spectra file written by fastsae "
                                     f"('fastsae features'): it is {what}")
            data, offsets = npz["data"], npz["offsets"]
            info = {"params": json.loads(str(npz["params"])),
                    "paths": npz["paths"].tolist() if "paths" in npz.files else None,
                    "labels": npz["labels"].tolist() if "labels" in npz.files else None}
    except ParameterError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ParameterError(f"{name!r} is not a spectra file written by "
                             f"fastsae, or is damaged ({type(exc).__name__}: {exc})") from None
    spectra = [data[:, a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    return spectra, info
