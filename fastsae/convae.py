"""Convolutional sparse autoencoders: filters learned where they are used.

:class:`ConvolutionalAutoencoder` learns ``K`` filters that are convolved
over whole inputs (spectrograms: one channel, ``n_bands × n_frames``), trained
to reconstruct the input by the transposed convolution of its feature maps,
with UFLDL's sparsity penalty (see
:func:`fastsae.reference.convae.conv_ae_cost_grad`). Unlike
:class:`fastsae.ConvolutionalFeatures`, which slides a patch-trained dense
autoencoder, the filters here are learned where they are used: each input
pixel is explained by every filter position that covers it.
:class:`fastsae.StackedConvolutionalAutoencoder` (in :mod:`fastsae.convnet`)
stacks them with pooling and a fine-tuned softmax.

Training inputs must have equal sizes; :func:`crop_spectrograms` cuts
fixed-length crops from spectrograms of any length.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import numpy as np
from scipy.special import expit
from sklearn.base import TransformerMixin

from . import backends
from .audio._clips import check_spectra
from .base import Estimator, unit_range_error
from .conv import convolve, weights_from_filters
from .core.args import check_conv_ae_args
from .core.checks import (DECODERS, check_array, check_bool, check_choice, check_int, check_pair,
                          check_random_state)
from .core.bfloat16 import bfloat16_dtype
from .core.layouts import conv_ae_layout, layout_size, unpack_conv_ae
from .core.threads import numba_threads
from .core.types import ArrayLike, Callback, DTypeLike, RandomState
from .exceptions import ParameterError
from .params import pack
from .reference.convae import conv_transpose


def _as_images(X, name="X", dtype=None):
    """(N, H, W) or (N, C, H, W) array-like -> a C-contiguous 4-D float array."""
    nd = np.ndim(X)
    arr = check_array(X, name, ndim=nd if nd in (3, 4) else 4, dtype=dtype)
    return arr[:, None] if arr.ndim == 3 else arr


def check_channels(X, n_channels, name="X"):
    """Images ``X (N, C, H, W)`` with the ``n_channels`` seen in ``fit``."""
    if X.shape[1] != n_channels:
        raise ParameterError(f"{name} must have {n_channels} channel(s) (as in fit); got shape "
                             f"{X.shape}")


def encode(W: np.ndarray, b: np.ndarray, X: np.ndarray, *, backend: str = "numba") -> np.ndarray:
    """Sigmoid feature maps ``σ(Σ_c corr_valid(X[n, c], W[k, c]) + b[k])``.

    Parameters
    ----------
    W : np.ndarray [shape=(n_filters, n_channels, ph, pw)]
    b : np.ndarray [shape=(n_filters,)]
    X : np.ndarray [shape=(n_images, n_channels, H, W)], float32 or float64
    backend : {"numba", "numpy", "cuda"}

    Returns
    -------
    maps : np.ndarray [shape=(n_images, n_filters, H - ph + 1, W - pw + 1)], ``X.dtype``

    Single-channel input goes straight through :func:`fastsae.conv.convolve`;
    several channels are convolved one by one (linear) and summed.
    """
    dt = X.dtype
    if W.shape[1] == 1:
        return convolve(W[:, 0], b, X[:, 0], activation="sigmoid", backend=backend)
    Z = convolve(W[:, 0], b, X[:, 0], activation="linear", backend=backend)
    zero = np.zeros_like(b)
    for c in range(1, W.shape[1]):
        Z += convolve(W[:, c], zero, X[:, c], activation="linear", backend=backend)
    return expit(Z, out=Z).astype(dt, copy=False)


def conv_ae_cost_grad(theta: ArrayLike, X: ArrayLike, n_filters: int,
                      patch_shape: tuple[int, int], *, sparsity: float, beta: float,
                      weight_decay: float, decoder: str = "sigmoid", tied: bool = False,
                      backend: str = "numba") -> tuple[float, np.ndarray]:
    """Convolutional autoencoder objective and gradient on the chosen backend.

    The public entry point: checks every argument (including NaN/inf in ``X``
    and ``theta``), then calls ``backend``'s ``conv_ae_cost_grad`` (see
    :func:`fastsae.reference.convae.conv_ae_cost_grad` for the objective and
    the layout of ``theta``). ``X`` may be ``(N, H, W)`` (one channel) or
    ``(N, C, H, W)``; bfloat16 (``ml_dtypes.bfloat16``, backends ``"numba"``
    and ``"numpy"``) runs the bfloat16 products (see
    :func:`fastsae.kernels.convae.conv_ae_cost_grad`).

    Returns
    -------
    cost : float
    grad : np.ndarray [shape=theta.shape, dtype=float64]
    """
    X = _as_images(X)
    theta = check_array(theta, "theta", ndim=1, dtype=np.float64)
    check_conv_ae_args(theta, X, n_filters, patch_shape, sparsity, beta, weight_decay,
                       decoder, tied, bfloat16=backend != "cuda")
    fn = backends.get_function(backend, "conv_ae_cost_grad")
    return fn(theta, X, n_filters, patch_shape, sparsity=sparsity, beta=beta,
              weight_decay=weight_decay, decoder=decoder, tied=tied)


def crop_spectrograms(spectrograms: Sequence[ArrayLike] | np.ndarray, n_frames: int, *,
                      n_crops: int | None = None, random_state: RandomState = None,
                      return_index: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Cut fixed-length crops from spectrograms of any length (equal-sized training inputs).

    Parameters
    ----------
    spectrograms : list of array-like [shape=(n_bands, n_frames_i)], or one array
        [shape=(n_clips, n_bands, n_frames)]
        All with the same ``n_bands``; every one at least ``n_frames`` long.
    n_frames : int
        Length of each crop.
    n_crops : int, optional
        ``None`` (default): every spectrogram is cut into
        ``n_frames_i // n_frames`` consecutive, non-overlapping crops from its
        start (the remainder is not used). An int: that many crops at random
        positions, uniform over every possible (spectrogram, start) pair, so
        longer spectrograms give more crops.
    random_state : int, Generator or None
        For ``n_crops``.
    return_index : bool
        Also return, for each crop, the index of its spectrogram (to carry
        labels over) .

    Returns
    -------
    crops : np.ndarray [shape=(n, n_bands, n_frames)]
        In the spectrograms' dtype (float32 stays float32).
    index : np.ndarray [shape=(n,), dtype=intp]
        Only with ``return_index=True``.

    Examples
    --------
    >>> S = [np.zeros((40, 100)), np.ones((40, 64))]
    >>> crop_spectrograms(S, 32).shape
    (5, 40, 32)
    """
    n_frames = check_int(n_frames, "n_frames", low=1)
    check_bool(return_index, "return_index")
    clips = check_spectra(spectrograms, "spectrograms")
    n_bands = clips[0].shape[0]
    for i, S in enumerate(clips):
        if S.shape[1] < n_frames:
            raise ParameterError(
                f"spectrograms[{i}] has {S.shape[1]} frames, fewer than n_frames={n_frames}; "
                f"drop or pad the short spectrograms first")
    dtype = np.result_type(*[S.dtype for S in clips])
    if n_crops is None:
        index = np.repeat(np.arange(len(clips)), [S.shape[1] // n_frames for S in clips])
        starts = np.concatenate([np.arange(S.shape[1] // n_frames) * n_frames for S in clips])
    else:
        n_crops = check_int(n_crops, "n_crops", low=1)
        rng = check_random_state(random_state)
        n_pos = np.array([S.shape[1] - n_frames + 1 for S in clips])
        ends = np.cumsum(n_pos)
        draw = rng.integers(0, ends[-1], n_crops)
        index = np.searchsorted(ends, draw, side="right")
        starts = draw - (ends[index] - n_pos[index])
    out = np.empty((index.size, n_bands, n_frames), dtype)
    for k, (i, s) in enumerate(zip(index, starts)):
        out[k] = clips[i][:, s:s + n_frames]
    return (out, index.astype(np.intp)) if return_index else out


def _init_filters(rng, n_filters, n_channels, patch_shape, n_arrays):
    """UFLDL's uniform ``±sqrt(6 / (fan_in + fan_out + 1))`` for convolution filters.

    ``fan_in = C·ph·pw`` (the inputs of one activation), ``fan_out = K·ph·pw``
    (the activations one input pixel feeds, and the decoder terms one output
    pixel sums).
    """
    ph, pw = patch_shape
    r = np.sqrt(6.0 / (n_channels * ph * pw + n_filters * ph * pw + 1))
    return [rng.uniform(-r, r, (n_filters, n_channels, ph, pw)) for _ in range(n_arrays)]


class ConvolutionalAutoencoder(TransformerMixin, Estimator):
    """Convolutional sparse autoencoder trained with L-BFGS.

    Learns ``n_filters`` filters of ``patch_shape``: the encoder
    ``A[k] = σ(Σ_c corr_valid(X[c], W[k, c]) + b[k])`` is trained to
    reconstruct each input through the transposed convolution
    ``X̂[c] = g(Σ_k full_conv(A[k], V[k, c]) + c[c])``, with the mean
    activation of each map (over inputs and positions) pulled towards
    ``sparsity`` (see :func:`fastsae.reference.convae.conv_ae_cost_grad`).

    Parameters
    ----------
    n_filters : int
        ``K``, the number of filters (feature maps).
    patch_shape : (int, int)
        ``(ph, pw)``: for spectrograms ``(n_bands, n_frames)`` of a filter.
    sparsity : float in (0, 1)
        Target mean activation ρ of each map.
    beta : float >= 0
        Weight of the KL sparsity penalty.
    weight_decay : float >= 0
        λ.
    decoder : {"sigmoid", "linear"}
        ``"linear"`` for input outside [0, 1].
    tied : bool
        Decode with the encoder's filters (``V = W``).
    max_iter : int
        L-BFGS iterations.
    backend : {"numba", "numpy", "cuda"}
    dtype : {"float64", "float32", "bfloat16"}
        Precision of the computation (parameters are kept in float64).
        ``"bfloat16"`` (``backend="numba"`` or ``"numpy"``; the extra
        ``fastsae-audio[mkl]``): the objective's products in bfloat16 with
        float32 accumulation, on the precision schedule of
        :class:`~fastsae.SparseAutoencoder` (bfloat16 while L-BFGS makes
        progress, float32 to finish); ``transform`` and the other methods
        work in float32.
    n_jobs : int or None
        Numba threads (None: all cores). Threads split the inputs.
    random_state : int, Generator or None
        Seed of the initial filters (uniform in
        ``±sqrt(6 / (C·ph·pw + K·ph·pw + 1))``, UFLDL's rule with the fans of
        a convolution).
    verbose : bool
        Show a progress bar with the current cost.

    Attributes
    ----------
    filters_ : np.ndarray [shape=(n_filters, n_channels, ph, pw)]
        The encoder's filters ``W``.
    bias_ : np.ndarray [shape=(n_filters,)]
    decoder_filters_ : np.ndarray [shape=(n_filters, n_channels, ph, pw)]
        ``V`` (equal to ``filters_`` when tied).
    decoder_bias_ : np.ndarray [shape=(n_channels,)]
    weights_ : np.ndarray [shape=(n_filters, n_channels * ph * pw)]
        The filters in the window layout of the dense autoencoder's ``W1_``,
        for the same filter plots (see :attr:`weights_`).
    n_channels_in_ : int
    loss_curve_, n_iter_, n_evaluations_, converged_, interrupted_, fit_time_, objective_time_
        As for :class:`~fastsae.SparseAutoencoder`.
    n_bfloat16_iter_ : int
        Of ``n_iter_``, the iterations in bfloat16 (``dtype="bfloat16"``; else 0).

    Examples
    --------
    >>> import numpy as np, fastsae.convae as ca
    >>> X = np.random.default_rng(0).uniform(0.1, 0.9, (20, 12, 16))
    >>> cae = ca.ConvolutionalAutoencoder(4, (5, 5), max_iter=20, random_state=0).fit(X)
    >>> cae.transform(X).shape
    (20, 4, 8, 12)
    """

    def __init__(self, n_filters: int = 16, patch_shape: tuple[int, int] = (8, 8), *,
                 sparsity: float = 0.05, beta: float = 3.0, weight_decay: float = 1e-4,
                 decoder: str = "sigmoid", tied: bool = False, max_iter: int = 400,
                 backend: str = "numba", dtype: DTypeLike = "float64",
                 n_jobs: int | None = None, random_state: RandomState = None,
                 verbose: bool = False) -> None:
        self._store_params(locals())

    _bfloat16 = True

    # -- checks -------------------------------------------------------------
    def _validate_params(self):
        check_int(self.n_filters, "n_filters", low=1)
        shape = check_pair(self.patch_shape, "patch_shape")
        self._check_sparsity_params()
        check_choice(self.decoder, "decoder", DECODERS)
        check_bool(self.tied, "tied")
        check_int(self.max_iter, "max_iter", low=1)
        self._validate_common()
        return shape

    _takes_images = True

    def _check_X(self, X, *, fitting=False):
        if fitting:
            self._validate_params()
        X = _as_images(X, "X", dtype=self._work_dtype())
        ph, pw = check_pair(self.patch_shape, "patch_shape")
        if not fitting:
            self._check_fitted("filters_")
            check_channels(X, self.n_channels_in_)
        if X.shape[2] < ph or X.shape[3] < pw:
            raise ParameterError(
                f"patch_shape {(ph, pw)} must fit inside the inputs of X; got inputs of "
                f"{X.shape[2]} x {X.shape[3]}")
        if fitting and self.decoder == "sigmoid" and (X.min() < 0.0 or X.max() > 1.0):
            raise unit_range_error("X", float(X.min()), float(X.max()))
        return X

    # -- fitting ------------------------------------------------------------
    def _kw(self):
        return dict(sparsity=self.sparsity, beta=self.beta, weight_decay=self.weight_decay,
                    decoder=self.decoder, tied=self.tied)

    def _objective(self, X, dtype=None):
        """``theta -> (cost, grad)`` on ``X`` (in ``dtype`` when given: a copy)."""
        if dtype is not None:
            X = X.astype(dtype)
        cost_grad = backends.get_function(self.backend, "conv_ae_cost_grad")
        K, shape, kw = self.n_filters, tuple(self.patch_shape), self._kw()
        X = backends.to_device(self.backend, X)
        return lambda theta: cost_grad(theta, X, K, shape, **kw)

    def _expected_shapes(self):
        if not hasattr(self, "filters_"):
            return {}
        ph, pw = check_pair(self.patch_shape, "patch_shape")
        F = (self.n_filters, self.n_channels_in_, ph, pw)
        return {"filters_": F, "decoder_filters_": F, "bias_": (self.n_filters,),
                "decoder_bias_": (self.n_channels_in_,)}

    def _theta(self):
        arrays = [self.filters_] if self.tied else [self.filters_, self.decoder_filters_]
        return pack(arrays + [self.bias_, self.decoder_bias_])[0]

    def _set_theta(self, theta, n_channels):
        W, V, b, c = unpack_conv_ae(np.ascontiguousarray(theta), self.n_filters, n_channels,
                                    tuple(self.patch_shape), self.tied)
        self.filters_ = np.array(W)
        self.decoder_filters_ = np.array(V)
        self.bias_ = np.array(b)
        self.decoder_bias_ = np.array(c)
        self.n_channels_in_ = n_channels

    def _init_theta(self, n_channels):
        rng = check_random_state(self.random_state)
        shape = check_pair(self.patch_shape, "patch_shape")
        filters = _init_filters(rng, self.n_filters, n_channels, shape, 1 if self.tied else 2)
        return pack(filters + [np.zeros(self.n_filters), np.zeros(n_channels)])[0]

    def fit(self, X: ArrayLike, y: object = None, *, callback: Callback | None = None) -> Self:
        """Learn the filters from equal-sized inputs.

        Parameters
        ----------
        X : array-like [shape=(n_images, H, W) or (n_images, n_channels, H, W)]
            Values in [0, 1] unless ``decoder="linear"``; see
            :func:`crop_spectrograms` for spectrograms of varying length.
        y : ignored
        callback : callable ``(iteration, theta, cost)``, optional
            Called after every L-BFGS iteration (:class:`fastsae.base.Estimator`).

        Returns
        -------
        self : fitted; Ctrl-C ends training early with the best filters so far.
        """
        X = self._check_X(X, fitting=True)          # the parameters first, then X
        bf16 = self._require_bfloat16_packages()   # the packages, before any work
        C = X.shape[1]
        ph, pw = check_pair(self.patch_shape, "patch_shape")
        n_maps = X.shape[0] * self.n_filters * (X.shape[2] - ph + 1) * (X.shape[3] - pw + 1)
        self._check_fit_memory(layout_size(conv_ae_layout(self.n_filters, C, (ph, pw), self.tied)),
                               2 * n_maps * X.dtype.itemsize + (X.size * 6 if bf16 else 0),
                               f" with {self.n_filters} filters {(ph, pw)}")
        theta0 = self._init_theta(C)
        if bf16:
            result = self._run_lbfgs(self._objective(X, bfloat16_dtype()), theta0,
                                     exact=self._objective(X), max_iter=self.max_iter,
                                     callback=callback)
        else:
            result = self._run_lbfgs(self._objective(X), theta0, max_iter=self.max_iter,
                                     callback=callback)
        self.n_bfloat16_iter_ = int(getattr(result, "n_fast_iter", 0))
        self._set_theta(result.theta, C)
        return self

    # -- using it -----------------------------------------------------------
    @property
    def weights_(self) -> np.ndarray:
        """Filters as rows ``(n_filters, n_channels·ph·pw)`` in the window layout.

        The layout of :class:`fastsae.SparseAutoencoder`'s ``W1_`` on
        spectrogram windows (column-major over the patch, frame by frame:
        :func:`fastsae.conv.weights_from_filters`), so that the same filter
        plot (``display_network(W, n_bands, n_frames)``) draws both. With
        several channels, each row is the channels' windows one after another.
        """
        self._check_fitted("filters_")
        F = self.filters_
        return np.ascontiguousarray(np.concatenate(
            [weights_from_filters(F[:, c]) for c in range(F.shape[1])], axis=1))

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Feature maps [shape=(n_images, n_filters, H - ph + 1, W - pw + 1)], in ``dtype``.

        ``σ(Σ_c corr_valid(X[n, c], W[k, c]) + b[k])``: the encoder, on inputs
        of any size at least ``patch_shape`` (not only the training size).
        """
        X = self._check_X(X)
        with numba_threads(self.n_jobs):
            return encode(self.filters_.astype(X.dtype), self.bias_.astype(X.dtype), X,
                          backend=self.backend)

    def fit_transform(self, X: ArrayLike, y: object = None) -> np.ndarray:
        return self.fit(X).transform(X)

    def reconstruct(self, X: ArrayLike) -> np.ndarray:
        """The decoder's output ``X̂`` for ``X`` [shape=(n_images, n_channels, H, W)]."""
        A = self.transform(X)
        dt = A.dtype
        X4 = _as_images(X, "X", dtype=dt)
        Y = conv_transpose(A, self.decoder_filters_.astype(dt), X4.shape[2:])
        Y += self.decoder_bias_.astype(dt)[None, :, None, None]
        return expit(Y) if self.decoder == "sigmoid" else Y

    def reconstruction_error(self, X: ArrayLike) -> float:
        """Mean over inputs of ½‖X̂ − X‖²."""
        X4 = self._check_X(X)
        diff = self.reconstruct(X4) - X4
        return float(0.5 * np.sum(diff.astype(np.float64) ** 2) / X4.shape[0])

    def cost(self, X: ArrayLike) -> float:
        """The training objective at the current filters on ``X``."""
        X = self._check_X(X)
        with numba_threads(self.n_jobs):
            return float(self._objective(X)(self._theta())[0])


__all__ = ["ConvolutionalAutoencoder", "crop_spectrograms", "conv_ae_cost_grad", "encode"]
