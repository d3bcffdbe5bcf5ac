"""Whole clips' spectrograms: checked lists of them, silence trimmed, fixed lengths."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..core.bfloat16 import is_bfloat16
from ..core.checks import check_int, check_scalar
from ..core.types import ArrayLike
from ..exceptions import ParameterError


def check_spectra(spectra, name="spectra", *, n_bands=None):
    """A non-empty list of finite 2-D real arrays with one number of bands.

    ``spectra`` may be a list (or any iterable) of ``(n_bands, n_frames_i)``
    arrays, one 3-D stack, or one 2-D array (a single spectrogram).
    """
    if isinstance(spectra, np.ndarray):
        if spectra.ndim not in (2, 3):
            raise ParameterError(f"{name} must be a list of 2-D (n_bands, n_frames) arrays, one "
                                 f"2-D array or a 3-D stack; got an array of shape {spectra.shape}")
        spectra = [spectra] if spectra.ndim == 2 else list(spectra)
    if isinstance(spectra, (str, bytes, dict)) or not hasattr(spectra, "__iter__"):
        raise ParameterError(f"{name} must be a list of 2-D (n_bands, n_frames) arrays; "
                             f"got {type(spectra).__name__}")
    spectra = list(spectra)
    if not spectra:
        raise ParameterError(f"{name} must hold at least one spectrogram; got an empty list")
    out = []
    for i, S in enumerate(spectra):
        try:
            S = np.asarray(S)
        except Exception as exc:   # ragged nested lists and the like
            raise ParameterError(f"{name}[{i}] could not be read as an array: {exc}") from None
        if S.ndim != 2 or S.dtype.kind not in "fiu":
            raise ParameterError(f"{name}[{i}] must be a 2-D real array (n_bands, n_frames); "
                                 f"got shape {S.shape}, dtype {S.dtype}")
        if S.shape[0] < 1 or S.shape[1] < 1:
            raise ParameterError(f"{name}[{i}] must have at least one band and one frame; "
                                 f"got shape {S.shape}")
        if not np.isfinite(S).all():
            raise ParameterError(f"{name}[{i}] contains NaN or infinite values")
        out.append(S)
    bands = n_bands if n_bands is not None else out[0].shape[0]
    for i, S in enumerate(out):
        if S.shape[0] != bands:
            if n_bands is not None:
                raise ParameterError(f"{name}[{i}] must have {bands} bands (as in fit); "
                                     f"got shape {S.shape}")
            raise ParameterError(f"{name} must all have the same number of bands: {name}[0] "
                                 f"has {bands}, {name}[{i}] has shape {S.shape}")
    return out


def _frame_levels(S):
    """Level of each frame of a dB spectrogram: 10 log10 of its mean power, in dB."""
    S = np.asarray(S, dtype=np.float64)
    top = S.max(axis=0)
    return top + 10.0 * np.log10(np.mean(10.0 ** ((S - top) / 10.0), axis=0))


def trim_silence(spectra: Iterable[ArrayLike] | np.ndarray, *, top_db: float = 20.0,
                 min_frames: int = 1) -> list[np.ndarray]:
    """Cut the quiet frames before and after the loudest part of each spectrogram.

    The level of a frame is ``10 log10`` of its mean power over the bands
    (the spectrogram is read as decibels, as :func:`fastsae.audio.spectrum`
    gives with ``log=True``). Each spectrogram keeps the frames from the first
    to the last one whose level is within ``top_db`` of its loudest frame
    (quiet frames *inside* that span stay). A span shorter than ``min_frames``
    is widened around its centre (as far as the spectrogram allows).

    Not meaningful for linear (``log=False``) spectra or cepstra: leave
    those untrimmed.

    Parameters
    ----------
    spectra : list of np.ndarray [shape=(n_bands, n_frames_i)], in dB
    top_db : float > 0
    min_frames : int >= 1

    Returns
    -------
    trimmed : list of np.ndarray [shape=(n_bands, n_kept_i)]
        Views into the inputs (no copies).

    Examples
    --------
    >>> import numpy as np
    >>> S = np.full((3, 10), -80.0); S[:, 4:7] = -10.0
    >>> trim_silence([S], top_db=20.0)[0].shape
    (3, 3)
    >>> trim_silence([S], top_db=20.0, min_frames=5)[0].shape
    (3, 5)
    """
    top_db = check_scalar(top_db, "top_db", low=0.0, low_open=True)
    min_frames = check_int(min_frames, "min_frames", low=1)
    out = []
    for S in check_spectra(spectra):
        level = _frame_levels(S)
        keep = np.flatnonzero(level >= level.max() - top_db)
        start, stop = int(keep[0]), int(keep[-1]) + 1
        T = S.shape[1]
        if stop - start < min_frames:
            want = min(min_frames, T)
            start = max(0, min(start - (want - (stop - start)) // 2, T - want))
            stop = start + want
        out.append(S[:, start:stop])
    return out


def fixed_length(spectra: Iterable[ArrayLike] | np.ndarray, n_frames: int) -> np.ndarray:
    """Resample every spectrogram along time to ``n_frames`` frames (linear interpolation).

    Frame ``k`` of the output is the input read at time ``k (T - 1) / (n_frames - 1)``
    (the first and last frames are kept); a one-frame input is repeated.
    This makes a clip of any length one fixed-size vector (``.reshape(n, -1)``)
    for a softmax or a stacked autoencoder.

    Parameters
    ----------
    spectra : list of np.ndarray [shape=(n_bands, T_i)], or one 3-D stack
    n_frames : int >= 1

    Returns
    -------
    out : np.ndarray [shape=(n_clips, n_bands, n_frames)]
        float32 if every input is float32, float64 otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> fixed_length([np.array([[0.0, 10.0]])], 5)[0]
    array([[ 0. ,  2.5,  5. ,  7.5, 10. ]])
    """
    n_frames = check_int(n_frames, "n_frames", low=1)
    spectra = check_spectra(spectra)
    dtype = np.float32 if all(S.dtype == np.float32 for S in spectra) else np.float64
    out = np.empty((len(spectra), spectra[0].shape[0], n_frames), dtype=dtype)
    for i, S in enumerate(spectra):
        T = S.shape[1]
        t = np.linspace(0.0, T - 1.0, n_frames) if n_frames > 1 else np.zeros(1)
        lo = np.minimum(np.floor(t).astype(np.intp), T - 1)
        hi = np.minimum(lo + 1, T - 1)
        w = (t - lo).astype(dtype)
        out[i] = S[:, lo] * (1 - w) + S[:, hi] * w
    return out


def pad_to(spectra, n_frames):
    """Spectrograms shorter than ``n_frames`` repeat their last frame up to it."""
    return [S if S.shape[1] >= n_frames else np.pad(S, ((0, 0), (0, n_frames - S.shape[1])),
                                                    mode="edge")
            for S in spectra]


def warp_bands(spectrogram: ArrayLike, factor: float) -> np.ndarray:
    """The spectrogram resampled along its band axis: band ``i`` of the result is band
    ``i · factor`` of the input (linear interpolation; the top band repeats past the end).

    On a mel spectrogram a factor near 1 mimics a longer (``factor < 1``: formants
    move up) or shorter (``> 1``: down) vocal tract: vocal-tract-length
    perturbation, the augmentation that makes a classifier trained on a few
    voices meet more of them.

    Examples
    --------
    >>> import numpy as np
    >>> S = np.arange(5.0)[:, None] * np.ones((5, 2))      # band i holds i
    >>> warp_bands(S, 0.5)[:, 0]
    array([0. , 0.5, 1. , 1.5, 2. ])
    """
    S = np.asarray(spectrogram)
    if S.ndim != 2 or S.shape[0] < 1:
        raise ParameterError(f"spectrogram must be 2-D (n_bands, n_frames); got shape {S.shape}")
    factor = check_scalar(factor, "factor", low=0.0, low_open=True)
    H = S.shape[0]
    return _interpolate(S, np.minimum(np.arange(H) * factor, H - 1), axis=0)


def _interpolate(S, src, axis):
    """``S`` read at the fractional positions ``src`` along ``axis`` (0 or 1) of a 2-D
    array, by linear interpolation between neighbours."""
    lo = np.floor(src).astype(np.intp)
    hi = np.minimum(lo + 1, S.shape[axis] - 1)
    w = np.expand_dims((src - lo).astype(S.dtype if S.dtype.kind == "f" else np.float64),
                       1 - axis)
    return np.take(S, lo, axis=axis) * (1 - w) + np.take(S, hi, axis=axis) * w


def smooth_bands(spectrogram: ArrayLike, n_coefficients: int) -> np.ndarray:
    """Each frame smoothed along the band axis: cepstral liftering.

    The frame's orthonormal DCT along its bands (its cepstrum) keeps its first
    ``n_coefficients`` coefficients, the rest set to zero, and is turned back
    into bands. On a log-mel spectrogram this keeps the spectral envelope (the
    formants: what is said) and removes the fine structure across bands — in
    the low bands, the harmonics of the voice's pitch (who says it). The
    result has the input's shape; float16, float32 and float64 input keep
    their dtype, other real input gives float64; ``n_coefficients >= n_bands``
    returns a copy. Values must be finite (a NaN would spread to its whole frame).

    Examples
    --------
    >>> import numpy as np
    >>> S = np.random.default_rng(0).normal(-40.0, 5.0, (40, 10))     # 40 bands, 10 frames
    >>> T = smooth_bands(S, 16)
    >>> bool(np.allclose(T.mean(axis=0), S.mean(axis=0)))             # each frame's mean level stays
    True
    >>> bool(np.abs(np.diff(T, axis=0)).mean() < np.abs(np.diff(S, axis=0)).mean() / 2)
    True
    """
    import scipy.fft

    S = np.asarray(spectrogram)
    if S.ndim != 2 or S.shape[0] < 1:
        raise ParameterError(f"spectrogram must be 2-D (n_bands, n_frames); got shape {S.shape}")
    k = check_int(n_coefficients, "n_coefficients", low=1)
    if S.dtype.kind not in "fiub" and not is_bfloat16(S.dtype):
        raise ParameterError(f"spectrogram must hold real numbers; got dtype {S.dtype}")
    X = S.astype(np.float64)                       # a copy: the DCT below works in place
    if not np.isfinite(X).all():
        raise ParameterError("spectrogram holds NaN or infinite values")
    dtype = S.dtype if S.dtype.kind == "f" else np.dtype(np.float64)
    if k >= S.shape[0]:
        return S.astype(dtype, copy=True)
    C = scipy.fft.dct(X, type=2, norm="ortho", axis=0, overwrite_x=True)
    C[k:] = 0.0
    return scipy.fft.idct(C, type=2, norm="ortho", axis=0).astype(dtype, copy=False)


def stretch_frames(spectrogram: ArrayLike, factor: float) -> np.ndarray:
    """The spectrogram resampled along its frame axis to ``round(n_frames · factor)``
    frames (at least 2; linear interpolation, first and last frames kept).

    ``factor > 1`` mimics slower speech, ``< 1`` faster: tempo perturbation.

    Examples
    --------
    >>> import numpy as np
    >>> stretch_frames(np.array([[0.0, 1.0, 2.0]]), 5 / 3)
    array([[0. , 0.5, 1. , 1.5, 2. ]])
    """
    S = np.asarray(spectrogram)
    if S.ndim != 2 or S.shape[1] < 1:
        raise ParameterError(f"spectrogram must be 2-D (n_bands, n_frames); got shape {S.shape}")
    factor = check_scalar(factor, "factor", low=0.0, low_open=True)
    T = S.shape[1]
    return _interpolate(S, np.linspace(0.0, T - 1, max(2, int(round(T * factor)))), axis=1)


def random_channel(n_bands: int, tilt_db: float, ripple_db: float,
                   rng: np.random.Generator) -> np.ndarray:
    """A random microphone-and-room response across ``n_bands`` bands, in dB, to add
    to a dB spectrogram: a tilt (a line across the bands, ``±tilt_db / 2`` at the
    ends at most) plus three cosine ripples (1, 2 and 3 half-periods over the
    bands, random phases, amplitudes up to ``ripple_db``)."""
    x = np.linspace(-0.5, 0.5, n_bands)
    response = rng.uniform(-tilt_db, tilt_db) * x
    for k in (1, 2, 3):
        amplitude, phase = rng.uniform(-ripple_db, ripple_db), rng.uniform(0.0, 2 * np.pi)
        response += amplitude * np.cos(np.pi * k * (x + 0.5) + phase)
    return response
