"""Convolution of learned filters over whole spectrograms, and pooling.

An autoencoder trained on ``ph × pw`` patches (``n_bands × n_frames`` windows
of a spectrogram, flattened frame-major as :func:`fastsae.audio.sample_windows`
does) computes, for the patch at ``(i, j)`` of an input ``S``::

    a_k(i, j) = σ( Σ_{a, c} F_k[a, c] · S[i + a, j + c] + b_k )

where ``F_k`` is row ``k`` of ``W1`` laid out as a patch
(:func:`filters_from_weights`). That is a valid 2-D *cross-correlation* (the
filter is not flipped), PyTorch's ``conv2d`` convention; UFLDL's
``cnnConvolve`` flips the filter before MATLAB's ``conv2`` to get the same
thing. :func:`convolve` computes it for every position at once, and
:class:`ConvolutionalFeatures` turns clips of any length into fixed-size
feature vectors by pooling the maps.

Linear preprocessing of the patches (PCA/ZCA whitening, mean removal) is folded
into the filters: if the autoencoder saw ``A x + c`` instead of ``x``, the
equivalent filter on raw patches is ``W1 A`` with bias ``b1 + W1 c``
(UFLDL's ``WT = W * ZCAWhite``, ``b - WT * meanPatch``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import numpy as np

from . import backends
from .core.args import check_pool_mode
from .core.bfloat16 import is_bfloat16
from .core.threads import numba_threads
from .core.checks import ACTIVATIONS, POOL_MODES, check_array, check_choice, check_int
from .core.layouts import region_bounds
from sklearn.base import TransformerMixin

from .autoencoder import SparseAutoencoder
from .base import Estimator
from .core.types import ArrayLike, DTypeLike
from .exceptions import ParameterError

def filters_from_weights(W: ArrayLike, patch_shape: tuple[int, int]) -> np.ndarray:
    """Weight rows (K, ph·pw) in the window layout -> filters (K, ph, pw).

    The window layout is frame-major (column-major over the patch, as MATLAB
    and UFLDL flatten patches): element ``c * ph + a`` of a row is the filter
    value at ``(a, c)``.

    Examples
    --------
    >>> patch = np.arange(6.0).reshape(2, 3)        # 2 bands x 3 frames
    >>> w = patch.T.ravel()[None]                   # the window layout
    >>> np.array_equal(filters_from_weights(w, (2, 3))[0], patch)
    True
    """
    ph, pw = _check_patch_shape(patch_shape)
    W = np.asarray(W)
    if W.ndim != 2 or W.shape[1] != ph * pw:
        raise ParameterError(
            f"W must have shape (n_filters, {ph * pw}) for patch_shape {(ph, pw)}; got {W.shape}")
    return np.ascontiguousarray(W.reshape(W.shape[0], pw, ph).transpose(0, 2, 1))


def weights_from_filters(F: ArrayLike) -> np.ndarray:
    """Inverse of :func:`filters_from_weights`: (K, ph, pw) -> (K, ph·pw)."""
    F = np.asarray(F)
    return np.ascontiguousarray(F.transpose(0, 2, 1).reshape(F.shape[0], -1))


def _check_patch_shape(patch_shape):
    try:
        ph, pw = patch_shape
    except (TypeError, ValueError):
        raise ParameterError(f"patch_shape must be a pair (rows, columns); got {patch_shape!r}") from None
    return check_int(ph, "patch_shape[0]", low=1), check_int(pw, "patch_shape[1]", low=1)


def _as_images(images, name="images"):
    arr = check_array(images, name, ndim=np.ndim(images) if np.ndim(images) in (2, 3) else 3)
    return arr[None] if arr.ndim == 2 else arr


def convolve(W: ArrayLike, b: ArrayLike, images: ArrayLike, *, activation: str = "sigmoid",
             backend: str = "numba", out: np.ndarray | None = None) -> np.ndarray:
    """Valid 2-D cross-correlation of ``K`` filters over ``N`` inputs, plus bias and activation.

    Parameters
    ----------
    W : array-like [shape=(n_filters, ph, pw)]
    b : array-like [shape=(n_filters,)]
    images : array-like [shape=(n_images, H, W) or (H, W)]
    activation : {"sigmoid", "linear", "relu"}
    backend : {"numba", "numpy", "cuda"}
    out : np.ndarray, optional
        A C-contiguous array of the result's shape and dtype to write into
        (e.g. one buffer reused for every batch: no page faults from fresh
        output memory); returned. With 2-D ``images``, of shape
        ``(1, n_filters, ...)``.

    Returns
    -------
    maps : np.ndarray [shape=(n_images, n_filters, H - ph + 1, W - pw + 1)]
        In the dtype of ``images`` (float32 stays float32); float32 for
        bfloat16 images (``ml_dtypes.bfloat16``: the products in oneMKL's
        bfloat16 GEMM with float32 accumulation, the extra ``fastsae-audio[mkl]``).

    Examples
    --------
    >>> W = np.ones((1, 2, 2)); b = np.zeros(1)
    >>> convolve(W, b, np.arange(9.0).reshape(3, 3), activation="linear")[0, 0]
    array([[ 8., 12.],
           [20., 24.]])
    """
    images = _as_images(images)
    W = check_array(W, "W", ndim=3)
    b = check_array(b, "b", ndim=1)
    check_choice(activation, "activation", ACTIVATIONS)
    if is_bfloat16(images.dtype) and backend == "cuda":
        raise ParameterError("bfloat16 images need backend='numba' or 'numpy'; got "
                             "backend='cuda'")
    fn = backends.get_function(backend, "convolve")
    if out is None:
        return fn(W, b, images, activation=activation)
    return fn(W, b, images, activation=activation, out=out)


def _pair(value, name):
    if value is None:
        return None
    if np.isscalar(value):
        value = (value, value)
    try:
        a, c = value
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a pair (rows, columns); got {value!r}") from None
    return a, c


def pool(maps: ArrayLike, pool_shape: tuple[int, int] | None = None, *,
         n_regions: tuple[int, int] | None = None, mode: str = "mean", remainder: str = "drop",
         backend: str = "numba") -> np.ndarray:
    """Mean or max pooling of feature maps over non-overlapping regions.

    Parameters
    ----------
    maps : array-like [shape=(..., H, W)]
        E.g. the ``(n_images, n_filters, H, W)`` output of :func:`convolve`.
    pool_shape : (int, int), optional
        Region size; see :func:`region_bounds` for the remainder rule.
    n_regions : (int, int), optional
        A fixed number of regions along each axis instead (for inputs of
        varying length).
    mode : {"mean", "max"} or tuple of them
        A tuple pools by each mode, in that order, in one read of the maps.
    remainder : {"drop", "partial"}
        What to do with a remainder that does not fill a region of ``pool_shape``.
    backend : {"numba", "numpy", "cuda"}

    Returns
    -------
    pooled : np.ndarray [shape=(..., R, C)]
        With a tuple ``mode``, of shape ``(len(mode), ..., R, C)``.

    Examples
    --------
    >>> m = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> pool(m, (2, 2), mode="max")[0, 0]
    array([[ 5.,  7.],
           [13., 15.]])
    """
    maps = check_array(maps, "maps", ndim=max(np.ndim(maps), 2))
    check_pool_mode(mode)
    return _pool_checked(maps, pool_shape, n_regions, mode, remainder, backend)


def _pool_checked(maps, pool_shape, n_regions, mode, remainder, backend):
    """:func:`pool` of maps already checked (or made here: no second scan for NaN)."""
    shape, regions = _pair(pool_shape, "pool_shape"), _pair(n_regions, "n_regions")
    if (shape is None) == (regions is None):
        raise ParameterError("give exactly one of pool_shape and n_regions")
    H, W = maps.shape[-2:]
    if shape is not None:
        rs, re = region_bounds(H, size=shape[0], remainder=remainder)
        cs, ce = region_bounds(W, size=shape[1], remainder=remainder)
    else:
        rs, re = region_bounds(H, n_regions=regions[0])
        cs, ce = region_bounds(W, n_regions=regions[1])
    fn = backends.get_function(backend, "pool_regions")
    return fn(maps, rs, re, cs, ce, mode=mode)


def _affine_of(preprocessing, n_inputs):
    """(A, c) with ``preprocessing.transform(x) == A @ x + c``, or None if it is not affine."""
    if preprocessing is None:
        return None
    affine = getattr(preprocessing, "affine_map", None)
    if affine is None:
        return False
    A, c = affine()
    A, c = np.asarray(A, dtype=np.float64), np.asarray(c, dtype=np.float64)
    if A.ndim != 2 or A.shape[1] != n_inputs or c.shape != (A.shape[0],):
        raise ParameterError(
            f"preprocessing maps {A.shape[1] if A.ndim == 2 else '?'} inputs, but patches of "
            f"this patch_shape have {n_inputs}")
    return A, c


def _work_dtype(sae):
    """The dtype the features are computed in: the autoencoder's (float32 for a bfloat16 one)."""
    return "float32" if is_bfloat16(sae.dtype) else sae.dtype


class ConvolutionalFeatures(TransformerMixin, Estimator):
    """Clip-level features: a fitted autoencoder's filters slid over whole
    spectrograms, then pooled.

    Parameters
    ----------
    sae : fitted :class:`fastsae.SparseAutoencoder`
        Trained on patches of ``patch_shape`` in the window layout (after
        ``preprocessing``, if any).
    patch_shape : (int, int)
        ``(n_bands, n_frames)`` of the training patches. Full-height patches
        (``n_bands`` equal to the spectrogram's) mean convolution along time.
    preprocessing : object with ``transform``, optional
        What was applied to the patches before the autoencoder saw them. If it
        offers ``affine_map()`` (PCA/ZCA whitening does) it is folded into the
        filters; otherwise every patch is extracted, preprocessed and encoded
        (exact, slower).
    pool : {"mean", "max"} or tuple of them
        Several modes are concatenated.
    pool_shape : (int, int), optional
        Pooling region size on the feature maps (see :func:`pool`).
    n_pool_regions : (int, int), optional
        A fixed number of regions instead: clips of any length give the same
        number of features. Default ``(1, 4)`` if neither is given.
    batch_size : int
        Clips per call of the convolution kernel (each call takes clips of one
        shape): memory stays bounded by one batch of feature maps.
    backend : {"numba", "numpy", "cuda"}
    n_jobs : int, optional
        Numba threads.

    Examples
    --------
    >>> conv = ConvolutionalFeatures(sae, patch_shape=(40, 4), pool=("mean", "max"),
    ...                              n_pool_regions=(1, 4))            # doctest: +SKIP
    >>> F = conv.transform(spectrograms)   # (n_clips, 2 * n_hidden * 4)  # doctest: +SKIP
    """

    def __init__(self, sae: SparseAutoencoder, patch_shape: tuple[int, int], *,
                 preprocessing: object | None = None, pool: str | tuple[str, ...] = "mean",
                 pool_shape: tuple[int, int] | None = None,
                 n_pool_regions: tuple[int, int] | None = None, remainder: str = "drop",
                 activation: str = "sigmoid", batch_size: int = 64, backend: str = "numba",
                 n_jobs: int | None = None) -> None:
        self._store_params(locals())

    def _modes(self):
        modes = (self.pool,) if isinstance(self.pool, str) else tuple(self.pool)
        if not modes:
            raise ParameterError("pool must name at least one mode ('mean', 'max')")
        for m in modes:
            check_choice(m, "pool", POOL_MODES)
        return modes

    def _prepare(self):
        """Validate, and fold the preprocessing into (filters, bias) when it is affine."""
        ph, pw = _check_patch_shape(self.patch_shape)
        if not hasattr(self.sae, "W1_"):
            raise ParameterError("sae must be a fitted SparseAutoencoder (call its fit first)")
        check_int(self.batch_size, "batch_size", low=1)
        check_choice(self.activation, "activation", ACTIVATIONS)
        backends.check_backend_name(self.backend)
        self._modes()
        if (self.pool_shape is None) + (self.n_pool_regions is None) == 0:
            raise ParameterError("give at most one of pool_shape and n_pool_regions")
        W1, b1 = self.sae.W1_, self.sae.b1_
        affine = _affine_of(self.preprocessing, ph * pw)
        if affine is None:
            if W1.shape[1] != ph * pw:
                raise ParameterError(
                    f"the autoencoder has {W1.shape[1]} inputs but patch_shape {(ph, pw)} "
                    f"makes {ph * pw}; pass the preprocessing it was trained after")
            return filters_from_weights(W1, (ph, pw)), b1.copy(), None
        if affine is False:
            return None, None, "patches"
        A, c = affine
        if A.shape[0] != W1.shape[1]:
            raise ParameterError(
                f"preprocessing outputs {A.shape[0]} values but the autoencoder takes {W1.shape[1]}")
        return filters_from_weights(W1 @ A, (ph, pw)), b1 + W1 @ c, None

    @property
    def n_features_per_region(self) -> int:
        return self.sae.W1_.shape[0] * len(self._modes())

    def feature_maps(self, spectrogram: ArrayLike,
                     dtype: DTypeLike | None = None) -> np.ndarray:
        """The maps of one input [shape=(n_filters, H - ph + 1, W - pw + 1)]."""
        F, b, path = self._prepare()
        S = check_array(spectrogram, "spectrogram", dtype=dtype or _work_dtype(self.sae))
        return self._maps(S[None], F, b, path)[0]

    def _maps(self, images, F, b, path, buffers=None):
        if path is None:
            out = None
            if buffers is not None and self.backend != "cuda":
                # one flat output buffer, grown when needed and reused from batch to
                # batch (clips of any length): the maps are pooled before the next batch
                K, ph, pw = F.shape
                n, H, W = images.shape
                shape = (n, K, H - ph + 1, W - pw + 1)
                size = int(np.prod(shape))
                flat = buffers.get(images.dtype.str)
                if flat is None or flat.size < size:
                    flat = buffers[images.dtype.str] = np.empty(size, images.dtype)
                out = flat[:size].reshape(shape)
            return convolve(F, b.astype(images.dtype), images, activation=self.activation,
                            backend=self.backend, out=out)
        from numpy.lib.stride_tricks import sliding_window_view
        ph, pw = self.patch_shape
        n, H, W = images.shape
        oh, ow = H - ph + 1, W - pw + 1
        # (n, oh, ow, ph, pw) -> rows in the window layout (frame-major)
        win = sliding_window_view(images, (ph, pw), axis=(1, 2)).transpose(0, 1, 2, 4, 3)
        X = np.ascontiguousarray(win).reshape(n * oh * ow, ph * pw)
        H_act = self.sae.transform(self.preprocessing.transform(X))
        return np.ascontiguousarray(H_act.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2))

    def _n_regions(self, shape):
        """Pooling regions (rows, columns) of the maps of a clip of ``shape`` with pool_shape."""
        ph, pw = self.patch_shape
        size = _pair(self.pool_shape, "pool_shape")
        return tuple(len(region_bounds(n - p + 1, size=k, remainder=self.remainder)[0])
                     for n, p, k in zip(shape, (ph, pw), size))

    def transform(self, spectrograms: Sequence[ArrayLike] | np.ndarray) -> np.ndarray:
        """Pooled features of every input.

        Parameters
        ----------
        spectrograms : list of array-like [shape=(n_bands, n_frames)], any lengths,
            or one array [shape=(n_clips, n_bands, n_frames)]

        Returns
        -------
        F : np.ndarray [shape=(n_clips, n_features)]
            Ordered as (mode, filter, region row, region column), flattened.
        """
        F, b, path = self._prepare()
        ph, pw = self.patch_shape
        modes = self._modes()
        regions = self.n_pool_regions if self.pool_shape is None else None
        if regions is None and self.pool_shape is None:
            regions = (1, 4)
        if isinstance(spectrograms, np.ndarray) and spectrograms.ndim == 3:
            spectrograms = list(spectrograms)
        if not isinstance(spectrograms, (list, tuple)) or not spectrograms:
            raise ParameterError("spectrograms must be a non-empty list of 2-D arrays")
        dtype = np.dtype(_work_dtype(self.sae))
        clips = []
        for i, S in enumerate(spectrograms):
            S = check_array(S, f"spectrograms[{i}]", dtype=dtype)
            if S.shape[0] < ph or S.shape[1] < pw:
                raise ParameterError(
                    f"spectrograms[{i}] has shape {S.shape}, smaller than patch_shape {(ph, pw)}")
            clips.append(S)
        if len({S.shape[0] for S in clips}) > 1 and ph == clips[0].shape[0]:
            raise ParameterError("spectrograms must all have the same number of bands")
        # same-shaped clips go through the kernel together, in batches of at most
        # batch_size (clips of a few lengths: few large calls rather than many small ones)
        by_shape = {}
        for i, S in enumerate(clips):
            by_shape.setdefault(S.shape, []).append(i)
        if self.pool_shape is not None and len(by_shape) > 1:
            counts = {self._n_regions(shape) for shape in by_shape}
            if len(counts) > 1:                # before any work, not after the first shape
                raise ParameterError(
                    "clips of different lengths give different numbers of features "
                    "with pool_shape; use n_pool_regions for clips of varying length")
        out = None
        buffers = {}
        with numba_threads(self.n_jobs):
            for shape, members in by_shape.items():
                for start in range(0, len(members), self.batch_size):
                    idx = members[start:start + self.batch_size]
                    maps = self._maps(np.stack([clips[j] for j in idx]), F, b, path, buffers)
                    # every mode in one read of the maps (made from checked clips)
                    pooled = _pool_checked(maps, self.pool_shape, regions, modes,
                                           self.remainder, self.backend)
                    feats = np.concatenate([f.reshape(len(idx), -1) for f in pooled], axis=1)
                    if out is None:
                        out = np.empty((len(clips), feats.shape[1]), dtype)
                    elif feats.shape[1] != out.shape[1]:
                        raise ParameterError(
                            "clips of different lengths give different numbers of features "
                            "with pool_shape; use n_pool_regions for clips of varying length")
                    out[idx] = feats
        return out

    def fit(self, spectrograms: Sequence[ArrayLike] | np.ndarray | None = None,
            y: object = None) -> Self:
        """Nothing to learn (the autoencoder is already fitted); checks the settings."""
        self._prepare()
        return self

    def fit_transform(self, spectrograms: Sequence[ArrayLike] | np.ndarray,
                      y: object = None) -> np.ndarray:
        return self.fit().transform(spectrograms)
