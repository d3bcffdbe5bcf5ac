"""Cutting spectrograms into windows of consecutive frames, or into patches a few bands
high (the autoencoder's input)."""
from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np

from ..core.checks import check_bool, check_int, check_pair, check_random_state
from ..core.types import ArrayLike, RandomState
from ..exceptions import ParameterError
from ._clips import check_spectra


def sample_windows(spectra: Iterable[ArrayLike] | np.ndarray, *, n_frames: int = 4,
                   n_samples: int | None = None, hop: int = 1,
                   random_state: RandomState = None, return_index: bool = False
                   ) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows of ``n_frames`` consecutive frames, one flattened window per row.

    A window starting at frame ``t`` of spectrum ``S`` is
    ``S[:, t:t + n_frames].T.ravel()``: frame-major, ``[frame 0 bands...,
    frame 1 bands..., ...]`` (:func:`windows_to_image` undoes it).

    Parameters
    ----------
    spectra : list of np.ndarray [shape=(n_bands, n_frames_i)]
        Every spectrum must have the same ``n_bands``. One 2-D array or a 3-D
        stack ``(n_spectra, n_bands, n_frames)`` is accepted too.
    n_frames : int >= 1
        Frames per window.
    n_samples : int or None
        None: every window, at stride ``hop`` within each spectrum. An int:
        that many windows drawn uniformly, independently and with replacement
        from those same positions (over all spectra, so a longer spectrum
        gives proportionally more windows).
    hop : int >= 1
        Stride between window starts within a spectrum.
    random_state : int, numpy Generator or None
        Seed of the draw (``n_samples`` given).
    return_index : bool
        Also return, per window, the index of its spectrum and its first frame.

    Returns
    -------
    X : np.ndarray [shape=(n_windows, n_bands * n_frames)]
        float32, or the spectra's float dtype (float64 if they all are).
    source : np.ndarray [shape=(n_windows,), dtype=int64]
        Only with ``return_index=True``: the spectrum of each window.
    start : np.ndarray [shape=(n_windows,), dtype=int64]
        Only with ``return_index=True``: its first frame.

    Warns
    -----
    UserWarning
        When spectra shorter than ``n_frames`` are skipped (with their count);
        if all of them are, ParameterError.

    Examples
    --------
    >>> import numpy as np
    >>> from fastsae import audio
    >>> S = np.arange(12, dtype=np.float32).reshape(3, 4)   # 3 bands, 4 frames
    >>> audio.sample_windows([S], n_frames=2)
    array([[ 0.,  4.,  8.,  1.,  5.,  9.],
           [ 1.,  5.,  9.,  2.,  6., 10.],
           [ 2.,  6., 10.,  3.,  7., 11.]], dtype=float32)
    """
    spectra = check_spectra(spectra)
    n_frames = check_int(n_frames, "n_frames", low=1)
    hop = check_int(hop, "hop", low=1)
    check_bool(return_index, "return_index")
    if n_samples is not None:
        n_samples = check_int(n_samples, "n_samples", low=0)
    n_bands = spectra[0].shape[0]
    dtypes = {s.dtype for s in spectra}
    dtype = np.float64 if dtypes == {np.dtype(np.float64)} else np.float32

    lengths = np.array([s.shape[1] for s in spectra], dtype=np.int64)
    usable = lengths >= n_frames
    n_short = int((~usable).sum())
    if n_short == len(spectra):
        raise ParameterError(
            f"every spectrum is shorter than n_frames={n_frames} frames (longest: "
            f"{int(lengths.max())} frames); lower n_frames or use longer clips")
    if n_short:
        warnings.warn(f"{n_short} of {len(spectra)} spectra are shorter than n_frames="
                      f"{n_frames} frames and were skipped", UserWarning, stacklevel=2)

    # All usable spectra end to end as one (total_frames, n_bands) C array: a
    # window starting at global frame g is the contiguous slice
    # flat[g * n_bands:(g + n_frames) * n_bands], so the windows are rows of a
    # strided view and one fancy-index gather copies all of them.
    used = np.flatnonzero(usable)
    frames = np.concatenate([spectra[i].T for i in used], axis=0).astype(dtype, copy=False)
    frames = np.ascontiguousarray(frames)
    flat = frames.reshape(-1)
    width = n_bands * n_frames
    view = np.lib.stride_tricks.sliding_window_view(flat, width)[::n_bands]

    used_len = lengths[used]
    offsets = np.concatenate(([0], np.cumsum(used_len)[:-1]))
    n_pos = (used_len - n_frames) // hop + 1           # window positions per spectrum
    first = np.concatenate(([0], np.cumsum(n_pos)[:-1]))
    total = int(n_pos.sum())
    if n_samples is None:
        k = np.arange(total, dtype=np.int64)
    else:
        rng = check_random_state(random_state)
        k = rng.integers(0, total, size=n_samples, dtype=np.int64)
    which = np.searchsorted(first, k, side="right") - 1   # index into `used`
    start = (k - first[which]) * hop
    X = view[offsets[which] + start]
    if return_index:
        return X, used[which].astype(np.int64), start.astype(np.int64)
    return X


def sample_patches(spectra: Iterable[ArrayLike] | np.ndarray, patch_shape: tuple[int, int], *,
                   n_samples: int, random_state: RandomState = None) -> np.ndarray:
    """Patches of ``patch_shape = (n_bands, n_frames)`` at random places in the spectra.

    Each patch is ``S[a:a + n_bands, t:t + n_frames]`` of one spectrogram ``S``,
    flattened frame-major like :func:`sample_windows`' windows
    (:func:`windows_to_image` undoes it). Every place in every spectrogram is
    equally likely (a longer clip gives more patches); spectra shorter than
    ``n_frames`` are skipped with a warning. With ``n_bands`` equal to the
    spectra's, this is :func:`sample_windows` with ``n_samples``.

    Parameters
    ----------
    spectra : list of np.ndarray [shape=(n_bands_total, n_frames_i)]
    patch_shape : (int, int)
        ``(n_bands, n_frames)`` of a patch, at most the spectra's band count.
    n_samples : int >= 0
    random_state : int, Generator or None

    Returns
    -------
    X : np.ndarray [shape=(n_samples, n_bands * n_frames)]
        float64 if every spectrum is float64, float32 otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> from fastsae import audio
    >>> S = np.arange(12, dtype=np.float32).reshape(3, 4)   # 3 bands, 4 frames
    >>> X = audio.sample_patches([S], (2, 2), n_samples=5, random_state=0)
    >>> X.shape
    (5, 4)
    >>> audio.windows_to_image(X[0], 2, 2)          # a 2 x 2 piece of S
    array([[ 6.,  7.],
           [10., 11.]], dtype=float32)
    """
    spectra = check_spectra(spectra)
    ph, pw = check_pair(patch_shape, "patch_shape")
    n_samples = check_int(n_samples, "n_samples", low=0)
    H = spectra[0].shape[0]
    if ph > H:
        raise ParameterError(f"patch_shape[0] must be at most the spectra's {H} bands; got {ph}")
    dtypes = {s.dtype for s in spectra}
    dtype = np.float64 if dtypes == {np.dtype(np.float64)} else np.float32
    lengths = np.array([s.shape[1] for s in spectra], dtype=np.int64)
    usable = np.flatnonzero(lengths >= pw)
    if usable.size == 0:
        raise ParameterError(
            f"every spectrum is shorter than patch_shape[1]={pw} frames (longest: "
            f"{int(lengths.max())} frames); lower it or use longer clips")
    if usable.size < len(spectra):
        warnings.warn(f"{len(spectra) - usable.size} of {len(spectra)} spectra are shorter than "
                      f"{pw} frames and were skipped", UserWarning, stacklevel=2)
    rng = check_random_state(random_state)
    places = (lengths[usable] - pw + 1) * (H - ph + 1)       # patch positions per spectrum
    ends = np.cumsum(places)
    k = rng.integers(0, ends[-1], n_samples)                  # one position of all, uniformly
    which = np.searchsorted(ends, k, side="right")
    local = k - (ends[which] - places[which])
    X = np.empty((n_samples, ph * pw), dtype)
    for j, (i, pos) in enumerate(zip(which, local)):
        S = spectra[usable[i]]
        r, c = divmod(int(pos), S.shape[1] - pw + 1)
        X[j] = S[r:r + ph, c:c + pw].T.ravel()
    return X


def windows_to_image(x: ArrayLike, n_bands: int, n_frames: int) -> np.ndarray:
    """Undo :func:`sample_windows`' layout: flat windows back to ``(n_bands, n_frames)``.

    Parameters
    ----------
    x : np.ndarray [shape=(n_bands * n_frames,) or (k, n_bands * n_frames)]
    n_bands, n_frames : int

    Returns
    -------
    image : np.ndarray [shape=(n_bands, n_frames) or (k, n_bands, n_frames)]

    Examples
    --------
    >>> import numpy as np
    >>> from fastsae import audio
    >>> S = np.arange(12.0).reshape(3, 4)
    >>> x = audio.sample_windows([S], n_frames=4)[0]
    >>> np.array_equal(audio.windows_to_image(x, 3, 4), S)
    True
    """
    n_bands = check_int(n_bands, "n_bands", low=1)
    n_frames = check_int(n_frames, "n_frames", low=1)
    x = np.asarray(x)
    if x.ndim not in (1, 2):
        raise ParameterError(f"x must be 1-D or 2-D; got shape {x.shape}")
    if x.shape[-1] != n_bands * n_frames:
        raise ParameterError(
            f"x must have n_bands * n_frames = {n_bands * n_frames} values per window; "
            f"got shape {x.shape}")
    if x.ndim == 1:
        return np.ascontiguousarray(x.reshape(n_frames, n_bands).T)
    return np.ascontiguousarray(x.reshape(len(x), n_frames, n_bands).transpose(0, 2, 1))
