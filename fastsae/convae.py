"""Convolutional sparse autoencoders, stacked with pooling, with a fine-tuned softmax on top.

:class:`ConvolutionalAutoencoder` learns ``K`` filters that are convolved
over whole inputs (spectrograms: one channel, ``n_bands × n_frames``), trained
to reconstruct the input by the transposed convolution of its feature maps,
with UFLDL's sparsity penalty (see
:func:`fastsae.reference.convae.conv_ae_cost_grad`). Unlike
:class:`fastsae.ConvolutionalFeatures`, which slides a patch-trained dense
autoencoder, the filters here are learned where they are used: each input
pixel is explained by every filter position that covers it.

:class:`StackedConvolutionalAutoencoder` trains such layers greedily, each on
the pooled maps of the one below (as a multi-channel input), and, given
labels, puts a softmax on the flattened top maps and fine-tunes the whole
network with L-BFGS (:func:`conv_net_cost_grad`).

Training inputs must have equal sizes; :func:`crop_spectrograms` cuts
fixed-length crops from spectrograms of any length.
"""
from __future__ import annotations

import time
import warnings

import numpy as np

from . import backends
from .core.args import check_conv_ae_args, check_conv_net_args
from .core.checks import check_pair
from .core.layouts import conv_net_layout, conv_net_plan, normalize_layers, unpack_conv_ae
from .core.threads import numba_threads
from .core.checks import DECODERS, check_array, check_bool, check_choice, check_dtype, check_int, check_random_state, check_scalar
from .autoencoder import check_n_jobs
from .base import BaseEstimator
from .conv import convolve, weights_from_filters
from .exceptions import ParameterError
from .optim import lbfgs
from .params import pack, unpack
from .softmax import SoftmaxRegression, _proba_function, encode_known_labels, encode_labels

def _as_images(X, name="X", dtype=None):
    """(N, H, W) or (N, C, H, W) array-like -> a C-contiguous 4-D float array."""
    nd = np.ndim(X)
    arr = check_array(X, name, ndim=nd if nd in (3, 4) else 4, dtype=dtype)
    return arr[:, None] if arr.ndim == 3 else arr


def _check_unit_range(X, name, what):
    lo, hi = float(X.min()), float(X.max())
    if lo < 0.0 or hi > 1.0:
        raise ParameterError(
            f"{name} must lie in [0, 1] for decoder='sigmoid' ({what}); got values in "
            f"[{lo:.4g}, {hi:.4g}]. Scale it (fastsae.preprocess.normalize_sigmoid) or use "
            f"decoder='linear'")


def _say(verbose, message):
    if verbose:
        from tqdm.auto import tqdm
        tqdm.write(message)


def encode(W, b, X, *, backend="numba"):
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
    from scipy.special import expit
    return expit(Z, out=Z).astype(dt, copy=False)


def conv_ae_cost_grad(theta, X, n_filters, patch_shape, *, sparsity, beta, weight_decay,
                      decoder="sigmoid", tied=False, backend="numba"):
    """Convolutional autoencoder objective and gradient on the chosen backend.

    The public entry point: checks every argument (including NaN/inf in ``X``
    and ``theta``), then calls ``backend``'s ``conv_ae_cost_grad`` (see
    :func:`fastsae.reference.convae.conv_ae_cost_grad` for the objective and
    the layout of ``theta``). ``X`` may be ``(N, H, W)`` (one channel) or
    ``(N, C, H, W)``.

    Returns
    -------
    cost : float
    grad : np.ndarray [shape=theta.shape, dtype=float64]
    """
    X = _as_images(X)
    theta = check_array(theta, "theta", ndim=1, dtype=np.float64)
    check_conv_ae_args(theta, X, n_filters, patch_shape, sparsity, beta, weight_decay,
                       decoder, tied)
    fn = backends.get_function(backend, "conv_ae_cost_grad")
    return fn(theta, X, n_filters, patch_shape, sparsity=sparsity, beta=beta,
              weight_decay=weight_decay, decoder=decoder, tied=tied)


def conv_net_cost_grad(theta, X, y, layers, n_classes, *, weight_decay, conv_weight_decay=0.0,
                       backend="numba"):
    """Convolutional network fine-tuning objective and gradient on the chosen backend.

    Checks every argument (including NaN/inf), then calls ``backend``'s
    ``conv_net_cost_grad`` (see
    :func:`fastsae.reference.convnet.conv_net_cost_grad` for the network, the
    objective and the layout of ``theta``: softmax first, then each layer's
    ``W_l, b_l``).
    """
    X = _as_images(X)
    theta = check_array(theta, "theta", ndim=1, dtype=np.float64)
    check_conv_net_args(theta, X, y, layers, n_classes, weight_decay, conv_weight_decay)
    fn = backends.get_function(backend, "conv_net_cost_grad")
    return fn(theta, X, y, layers, n_classes, weight_decay=weight_decay,
              conv_weight_decay=conv_weight_decay)


def crop_spectrograms(spectrograms, n_frames, *, n_crops=None, random_state=None,
                      return_index=False):
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
    if isinstance(spectrograms, np.ndarray) and spectrograms.ndim == 3:
        spectrograms = list(spectrograms)
    if not isinstance(spectrograms, (list, tuple)) or len(spectrograms) == 0:
        raise ParameterError(
            "spectrograms must be a non-empty list of 2-D arrays (n_bands, n_frames); got "
            f"{type(spectrograms).__name__}")
    clips = [check_array(S, f"spectrograms[{i}]", ndim=2) for i, S in enumerate(spectrograms)]
    n_bands = clips[0].shape[0]
    for i, S in enumerate(clips):
        if S.shape[0] != n_bands:
            raise ParameterError(
                f"spectrograms must all have the same number of bands; spectrograms[0] has "
                f"{n_bands}, spectrograms[{i}] has {S.shape[0]}")
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


class ConvolutionalAutoencoder(BaseEstimator):
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
    dtype : {"float64", "float32"}
        Precision of the computation (parameters are kept in float64).
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
    loss_curve_ : list of float
    n_iter_ : int
    converged_, interrupted_ : bool
    fit_time_ : float

    Examples
    --------
    >>> import numpy as np, fastsae.convae as ca
    >>> X = np.random.default_rng(0).uniform(0.1, 0.9, (20, 12, 16))
    >>> cae = ca.ConvolutionalAutoencoder(4, (5, 5), max_iter=20, random_state=0).fit(X)
    >>> cae.transform(X).shape
    (20, 4, 8, 12)
    """

    def __init__(self, n_filters=16, patch_shape=(8, 8), *, sparsity=0.05, beta=3.0,
                 weight_decay=1e-4, decoder="sigmoid", tied=False, max_iter=400,
                 backend="numba", dtype="float64", n_jobs=None, random_state=None,
                 verbose=False):
        self.n_filters = n_filters
        self.patch_shape = patch_shape
        self.sparsity = sparsity
        self.beta = beta
        self.weight_decay = weight_decay
        self.decoder = decoder
        self.tied = tied
        self.max_iter = max_iter
        self.backend = backend
        self.dtype = dtype
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # -- checks -------------------------------------------------------------
    def _validate_params(self):
        check_int(self.n_filters, "n_filters", low=1)
        shape = check_pair(self.patch_shape, "patch_shape")
        check_scalar(self.sparsity, "sparsity", low=0.0, high=1.0, low_open=True, high_open=True)
        check_scalar(self.beta, "beta", low=0.0)
        check_scalar(self.weight_decay, "weight_decay", low=0.0)
        check_choice(self.decoder, "decoder", DECODERS)
        check_bool(self.tied, "tied")
        check_int(self.max_iter, "max_iter", low=1)
        backends.check_backend_name(self.backend)
        check_dtype(self.dtype)
        check_n_jobs(self.n_jobs)
        check_bool(self.verbose, "verbose")
        return shape

    def _check_X(self, X, *, fitting=False):
        X = _as_images(X, "X", dtype=check_dtype(self.dtype))
        ph, pw = check_pair(self.patch_shape, "patch_shape")
        if not fitting:
            self._check_fitted("filters_")
            if X.shape[1] != self.n_channels_in_:
                raise ParameterError(
                    f"X must have {self.n_channels_in_} channel(s) (as in fit); got shape "
                    f"{X.shape}")
        if X.shape[2] < ph or X.shape[3] < pw:
            raise ParameterError(
                f"patch_shape {(ph, pw)} must fit inside the inputs of X; got inputs of "
                f"{X.shape[2]} x {X.shape[3]}")
        if fitting and self.decoder == "sigmoid":
            _check_unit_range(X, "X", "the reconstruction is a sigmoid")
        return X

    # -- fitting ------------------------------------------------------------
    def _kw(self):
        return dict(sparsity=self.sparsity, beta=self.beta, weight_decay=self.weight_decay,
                    decoder=self.decoder, tied=self.tied)

    def _objective(self, X):
        cost_grad = backends.get_function(self.backend, "conv_ae_cost_grad")
        K, shape, kw = self.n_filters, tuple(self.patch_shape), self._kw()
        X = backends.to_device(self.backend, X)
        return lambda theta: cost_grad(theta, X, K, shape, **kw)

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

    def fit(self, X, y=None, *, callback=None):
        """Learn the filters from equal-sized inputs.

        Parameters
        ----------
        X : array-like [shape=(n_images, H, W) or (n_images, n_channels, H, W)]
            Values in [0, 1] unless ``decoder="linear"``; see
            :func:`crop_spectrograms` for spectrograms of varying length.
        y : ignored
        callback : callable ``(iteration, theta, cost)``, optional
            Called after every L-BFGS iteration (raise ``StopIteration`` to stop).

        Returns
        -------
        self

        Notes
        -----
        ``KeyboardInterrupt`` (Ctrl-C) during ``fit`` stops training and keeps
        the best filters found so far, with a warning.
        """
        self._validate_params()
        X = self._check_X(X, fitting=True)
        C = X.shape[1]
        theta0 = self._init_theta(C)
        fun = self._objective(X)
        try:
            with numba_threads(self.n_jobs):
                result = lbfgs(fun, theta0, max_iter=self.max_iter, callback=callback,
                               verbose=self.verbose, desc="ConvolutionalAutoencoder")
        finally:
            backends.release(self.backend)
        self._set_theta(result.theta, C)
        self.loss_curve_ = list(result.loss_curve)
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        self.interrupted_ = result.interrupted
        self.fit_time_ = result.time_total
        self.objective_time_ = result.time_objective
        if result.interrupted:
            warnings.warn(f"ConvolutionalAutoencoder.fit: {result.message} (cost "
                          f"{result.cost:.6g} after {result.n_iter} iterations)",
                          RuntimeWarning, stacklevel=2)
        return self

    # -- using it -----------------------------------------------------------
    @property
    def weights_(self):
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

    def transform(self, X):
        """Feature maps [shape=(n_images, n_filters, H - ph + 1, W - pw + 1)], in ``dtype``.

        ``σ(Σ_c corr_valid(X[n, c], W[k, c]) + b[k])``: the encoder, on inputs
        of any size at least ``patch_shape`` (not only the training size).
        """
        X = self._check_X(X)
        with numba_threads(self.n_jobs):
            return encode(self.filters_.astype(X.dtype), self.bias_.astype(X.dtype), X,
                          backend=self.backend)

    def fit_transform(self, X, y=None):
        return self.fit(X).transform(X)

    def reconstruct(self, X):
        """The decoder's output ``X̂`` for ``X`` [shape=(n_images, n_channels, H, W)]."""
        from .reference.convae import conv_transpose
        from scipy.special import expit

        A = self.transform(X)
        dt = A.dtype
        X4 = _as_images(X, "X", dtype=dt)
        Y = conv_transpose(A, self.decoder_filters_.astype(dt), X4.shape[2:])
        Y += self.decoder_bias_.astype(dt)[None, :, None, None]
        return expit(Y) if self.decoder == "sigmoid" else Y

    def reconstruction_error(self, X):
        """Mean over inputs of ½‖X̂ − X‖²."""
        X4 = self._check_X(X)
        diff = self.reconstruct(X4) - X4
        return float(0.5 * np.sum(diff.astype(np.float64) ** 2) / X4.shape[0])

    def cost(self, X):
        """The training objective at the current filters on ``X``."""
        X = self._check_X(X)
        with numba_threads(self.n_jobs):
            return float(self._objective(X)(self._theta())[0])


class StackedConvolutionalAutoencoder(BaseEstimator):
    """Convolutional autoencoders stacked with pooling; with labels, a fine-tuned classifier.

    ``fit`` trains the layers greedily: layer ``l`` is a
    :class:`ConvolutionalAutoencoder` on the pooled feature maps of layer
    ``l − 1`` (``K_{l−1}`` channels; the first on the input). Given labels
    ``y``, it then trains a :class:`~fastsae.SoftmaxRegression` on the
    flattened pooled maps of the top layer and fine-tunes the whole network
    (filters, biases and softmax) with L-BFGS on
    :func:`conv_net_cost_grad`, backpropagating through the softmax, the
    pooling (mean: spread evenly; max: routed to the maximum) and the sigmoid
    convolutions. The decoders are used only in pretraining.

    Parameters
    ----------
    layers : list of dict, optional
        One dict per layer, input side first: ``n_filters``, ``patch_shape``,
        ``pool`` (``"mean"`` or ``"max"``), and ``pool_shape`` (region size)
        or ``n_pool_regions`` (a fixed number of regions, for any input size);
        neither means no pooling. Optional ``remainder`` (``"drop"``,
        ``"partial"``) as in :func:`fastsae.conv.pool`. Default:
        ``[dict(n_filters=16, patch_shape=(5, 5), pool_shape=(2, 2))]``.
    sparsity, beta, weight_decay : float
        The autoencoders' ρ, β and λ in pretraining.
    decoder : {"sigmoid", "linear"}
        Decoder of the *first* autoencoder; deeper ones see pooled sigmoid
        maps and use a sigmoid decoder.
    tied : bool
        Tied decoders in pretraining.
    softmax_weight_decay : float >= 0
        λ of the softmax, in its training and in fine-tuning.
    conv_weight_decay : float >= 0
        Weight decay on the filters during fine-tuning (default 0, as UFLDL's
        stacked fine-tuning).
    pretrain_iter, softmax_iter, finetune_iter : int
        L-BFGS iterations of each autoencoder, the softmax and fine-tuning.
    backend : {"numba", "numpy", "cuda"}
    dtype : {"float64", "float32"}
    n_jobs : int or None
    random_state : int, Generator or None
    verbose : bool

    Attributes
    ----------
    autoencoders_ : list of ConvolutionalAutoencoder
        The pretrained layers.
    layers_ : list of (W, b)
        The network's filters ``(K_l, C_l, ph_l, pw_l)`` and biases: the
        fine-tuned ones after ``fit(X, y)``, the pretrained ones after ``fit(X)``.
    n_features_ : int
        Length of :meth:`transform`'s rows (``K_L · R_L · S_L``).
    classes_, coef_, intercept_ : np.ndarray
        Labels and the fine-tuned softmax (only after ``fit(X, y)``).
    softmax_ : SoftmaxRegression
        The softmax trained on the pretrained features.
    pretrain_cost_, finetune_cost_ : float
        The fine-tuning objective on the labelled data before and after fine-tuning.
    pretrain_score_, finetune_score_ : float
        Accuracy before and after fine-tuning (on ``validation`` when given).
    loss_curve_ : list of float
    n_iter_ : int
    converged_, interrupted_ : bool
    fit_time_ : float

    Examples
    --------
    >>> net = StackedConvolutionalAutoencoder(
    ...     [dict(n_filters=8, patch_shape=(5, 5), pool_shape=(2, 2)),
    ...      dict(n_filters=8, patch_shape=(3, 3), n_pool_regions=(1, 2), pool="max")])
    >>> net.fit(images, labels).predict(images)      # doctest: +SKIP
    """

    def __init__(self, layers=None, *, sparsity=0.05, beta=3.0, weight_decay=1e-4,
                 decoder="sigmoid", tied=False, softmax_weight_decay=1e-4,
                 conv_weight_decay=0.0, pretrain_iter=200, softmax_iter=400, finetune_iter=200,
                 backend="numba", dtype="float64", n_jobs=None, random_state=None,
                 verbose=False):
        self.layers = layers
        self.sparsity = sparsity
        self.beta = beta
        self.weight_decay = weight_decay
        self.decoder = decoder
        self.tied = tied
        self.softmax_weight_decay = softmax_weight_decay
        self.conv_weight_decay = conv_weight_decay
        self.pretrain_iter = pretrain_iter
        self.softmax_iter = softmax_iter
        self.finetune_iter = finetune_iter
        self.backend = backend
        self.dtype = dtype
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # -- checks -------------------------------------------------------------
    def _layer_specs(self):
        layers = self.layers
        if layers is None:
            layers = [dict(n_filters=16, patch_shape=(5, 5), pool_shape=(2, 2))]
        return normalize_layers(layers)

    def _validate_params(self):
        specs = self._layer_specs()
        check_scalar(self.sparsity, "sparsity", low=0.0, high=1.0, low_open=True, high_open=True)
        check_scalar(self.beta, "beta", low=0.0)
        check_scalar(self.weight_decay, "weight_decay", low=0.0)
        check_choice(self.decoder, "decoder", DECODERS)
        check_bool(self.tied, "tied")
        check_scalar(self.softmax_weight_decay, "softmax_weight_decay", low=0.0)
        check_scalar(self.conv_weight_decay, "conv_weight_decay", low=0.0)
        check_int(self.pretrain_iter, "pretrain_iter", low=1)
        check_int(self.softmax_iter, "softmax_iter", low=1)
        check_int(self.finetune_iter, "finetune_iter", low=1)
        backends.check_backend_name(self.backend)
        check_dtype(self.dtype)
        check_n_jobs(self.n_jobs)
        check_bool(self.verbose, "verbose")
        return specs

    def _check_X(self, X, name="X", *, fitting=False):
        X = _as_images(X, name, dtype=check_dtype(self.dtype))
        if not fitting:
            self._check_fitted("layers_")
            if X.shape[1] != self.n_channels_in_:
                raise ParameterError(
                    f"{name} must have {self.n_channels_in_} channel(s) (as in fit); got shape "
                    f"{X.shape}")
        elif self.decoder == "sigmoid":
            _check_unit_range(X, name, "the first autoencoder's reconstruction is a sigmoid")
        return X

    def _plan(self, X, name="X"):
        try:
            return conv_net_plan(self._layer_specs(), X.shape[1:])
        except ParameterError as exc:
            raise ParameterError(f"{name} of shape {X.shape}: {exc}") from None

    # -- fitting ------------------------------------------------------------
    def fit(self, X, y=None, X_unlabeled=None, validation=None, *, callback=None):
        """Pretrain the layers; with ``y``, train the softmax and fine-tune the network.

        Parameters
        ----------
        X : array-like [shape=(n_images, H, W) or (n_images, n_channels, H, W)]
            Equal-sized inputs (values in [0, 1] unless ``decoder="linear"``).
        y : array-like [shape=(n_images,)], optional
            Any labels; without them only the unsupervised pretraining runs.
        X_unlabeled : array-like, optional
            More inputs of the same shape for the pretraining only.
        validation : tuple (X_val, y_val), optional
            Held-out data for ``pretrain_score_`` and ``finetune_score_``.
        callback : callable ``(iteration, theta, cost)``, optional
            Called after every fine-tuning iteration.

        Returns
        -------
        self

        Notes
        -----
        ``KeyboardInterrupt`` ends the running stage with its best weights
        (with a warning) and ``fit`` goes on with the next one.
        """
        t0 = time.perf_counter()
        specs = self._validate_params()
        for attr in ("classes_", "coef_", "intercept_", "softmax_"):   # from an earlier fit
            self.__dict__.pop(attr, None)
        X = self._check_X(X, "X", fitting=True)
        plan, n_features = self._plan(X)
        codes = None
        if y is not None:
            classes, codes = encode_labels(y, X.shape[0])
        H = X
        if X_unlabeled is not None:
            Xu = self._check_X(X_unlabeled, "X_unlabeled", fitting=True)
            if Xu.shape[1:] != X.shape[1:]:
                raise ParameterError(
                    f"X_unlabeled must hold inputs of shape {X.shape[1:]} (as X); got {Xu.shape}")
            H = np.concatenate([X, Xu])
        val = None
        if validation is not None:
            if y is None:
                raise ParameterError("validation needs labels: pass y to fit")
            if not isinstance(validation, (tuple, list)) or len(validation) != 2:
                raise ParameterError(
                    f"validation must be a pair (X_val, y_val); got {type(validation).__name__}")
            Xv = _as_images(validation[0], "validation[0]", dtype=check_dtype(self.dtype))
            if Xv.shape[1:] != X.shape[1:]:
                raise ParameterError(
                    f"validation[0] must hold inputs of shape {X.shape[1:]} (as X); got {Xv.shape}")
            val = (Xv, validation[1])

        rng = check_random_state(self.random_state)
        common = dict(backend=self.backend, dtype=self.dtype, n_jobs=self.n_jobs,
                      verbose=self.verbose)
        interrupted = False

        # 1. greedy layer-wise pretraining, each layer on the pooled maps below it
        autoencoders = []
        for i, (spec, step) in enumerate(zip(specs, plan)):
            _say(self.verbose, f"StackedConvolutionalAutoencoder: pretraining layer {i + 1}/"
                               f"{len(plan)} ({spec['n_filters']} filters {spec['patch_shape']} "
                               f"on {H.shape[0]} inputs of {H.shape[1:]})")
            cae = ConvolutionalAutoencoder(
                spec["n_filters"], spec["patch_shape"], sparsity=self.sparsity, beta=self.beta,
                weight_decay=self.weight_decay, decoder=self.decoder if i == 0 else "sigmoid",
                tied=self.tied, max_iter=self.pretrain_iter,
                random_state=int(rng.integers(2**31 - 1)), **common)
            cae.fit(H)
            interrupted |= cae.interrupted_
            autoencoders.append(cae)
            H = self._pool(cae.transform(H), step)
        self.autoencoders_ = autoencoders
        self.n_channels_in_ = X.shape[1]
        self.input_shape_ = X.shape[1:]
        self.n_features_ = n_features
        self.layers_ = [(cae.filters_.copy(), cae.bias_.copy()) for cae in autoencoders]
        self.interrupted_ = interrupted
        if codes is None:
            self.fit_time_ = time.perf_counter() - t0
            return self

        # 2. softmax on the labelled inputs' top features (X comes first in H)
        F = H[:X.shape[0]].reshape(X.shape[0], -1)
        _say(self.verbose, f"StackedConvolutionalAutoencoder: softmax on {n_features} features, "
                           f"{classes.size} classes")
        softmax = SoftmaxRegression(weight_decay=self.softmax_weight_decay,
                                    max_iter=self.softmax_iter,
                                    random_state=int(rng.integers(2**31 - 1)), **common)
        softmax.fit(F, codes)
        interrupted |= softmax.interrupted_
        self.softmax_ = softmax
        self.classes_ = classes

        # 3. fine-tuning of the whole network
        theta0 = np.concatenate([softmax.coef_.ravel(), softmax.intercept_]
                                + [a.ravel() for W, b in self.layers_ for a in (W, b)])
        self._set_theta(theta0)
        self.pretrain_score_ = self._accuracy(X, codes, val)
        fun = self._objective(X, codes)
        _say(self.verbose, f"StackedConvolutionalAutoencoder: fine-tuning on {X.shape[0]} "
                           f"labelled inputs")
        try:
            with numba_threads(self.n_jobs):
                self.pretrain_cost_ = float(fun(theta0)[0])
                result = lbfgs(fun, theta0, max_iter=self.finetune_iter, callback=callback,
                               verbose=self.verbose, desc="fine-tuning")
        finally:
            backends.release(self.backend)
        self._set_theta(result.theta)
        self.finetune_cost_ = float(result.cost)
        self.finetune_score_ = self._accuracy(X, codes, val)
        self.loss_curve_ = list(result.loss_curve)
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        self.interrupted_ = interrupted or result.interrupted
        self.fit_time_ = time.perf_counter() - t0
        if result.interrupted:
            warnings.warn(f"StackedConvolutionalAutoencoder.fit: fine-tuning {result.message} "
                          f"(cost {result.cost:.6g} after {result.n_iter} iterations)",
                          RuntimeWarning, stacklevel=2)
        _say(self.verbose, f"StackedConvolutionalAutoencoder: cost {self.pretrain_cost_:.6g} -> "
                           f"{self.finetune_cost_:.6g}, accuracy {self.pretrain_score_:.4f} -> "
                           f"{self.finetune_score_:.4f}")
        return self

    def _pool(self, maps, step):
        pool_fn = backends.get_function(self.backend, "pool_regions")
        with numba_threads(self.n_jobs):
            return pool_fn(maps, *step["bounds"], mode=step["pool"])

    def _objective(self, X, codes):
        cost_grad = backends.get_function(self.backend, "conv_net_cost_grad")
        specs, K = self._layer_specs(), self.classes_.size
        kw = dict(weight_decay=self.softmax_weight_decay,
                  conv_weight_decay=self.conv_weight_decay)
        X = backends.to_device(self.backend, X)
        return lambda theta: cost_grad(theta, X, codes, specs, K, **kw)

    def _theta(self):
        return np.concatenate([self.coef_.ravel(), self.intercept_]
                              + [a.ravel() for W, b in self.layers_ for a in (W, b)])

    def _set_theta(self, theta):
        plan, n_features = conv_net_plan(self._layer_specs(), self.input_shape_)
        views = unpack(np.ascontiguousarray(theta),
                       conv_net_layout(plan, n_features, self.classes_.size))
        self.coef_ = np.array(views[0])
        self.intercept_ = np.array(views[1])
        self.layers_ = [(np.array(views[i]), np.array(views[i + 1]))
                        for i in range(2, len(views), 2)]

    def _accuracy(self, X, codes, val):
        if val is None:
            return float(np.mean(np.argmax(self._logits(self._features(X)), axis=1) == codes))
        return self.score(*val)

    # -- using it -----------------------------------------------------------
    def _features(self, X):
        plan, n_features = self._plan(X)
        if hasattr(self, "coef_") and n_features != self.n_features_:
            raise ParameterError(
                f"X of shape {X.shape} gives {n_features} features but the softmax takes "
                f"{self.n_features_}; use inputs of the training size {self.input_shape_} or "
                "n_pool_regions (a fixed number of regions) in every layer")
        P = X
        for (W, b), step in zip(self.layers_, plan):
            with numba_threads(self.n_jobs):
                maps = encode(W.astype(X.dtype), b.astype(X.dtype), P, backend=self.backend)
            P = self._pool(maps, step)
        return P.reshape(X.shape[0], -1)

    def _logits(self, F):
        return F @ self.coef_.T.astype(F.dtype) + self.intercept_.astype(F.dtype)

    def transform(self, X):
        """Flattened pooled maps of the top layer [shape=(n_images, n_features_)], in ``dtype``.

        Ordered (filter, region row, region column); the features the softmax sees.
        """
        return self._features(self._check_X(X))

    def _check_classifier(self):
        self._check_fitted("coef_")

    def decision_function(self, X):
        """Softmax logits [shape=(n_images, n_classes)]."""
        self._check_classifier()
        return self._logits(self.transform(X))

    def predict_proba(self, X):
        """Class probabilities [shape=(n_images, n_classes)]; rows sum to 1."""
        self._check_classifier()
        return _proba_function(self.backend)(self.coef_, self.intercept_, self.transform(X))

    def predict(self, X):
        """The most probable class of each input, as labels from ``classes_``."""
        best = np.argmax(self.decision_function(X), axis=1)
        return self.classes_[best]

    def score(self, X, y):
        """Accuracy: the fraction of inputs whose predicted label equals ``y``."""
        pred = self.predict(X)
        y = np.asarray(y).reshape(-1)
        if y.shape[0] != pred.shape[0]:
            raise ParameterError(
                f"y must have one label per input of X ({pred.shape[0]}); got {y.shape[0]}")
        return float(np.mean(pred == y))

    def cost(self, X, y):
        """The fine-tuning objective at the current weights on ``X``, ``y``."""
        self._check_classifier()
        X = self._check_X(X)
        codes = encode_known_labels(self.classes_, y, X.shape[0])
        with numba_threads(self.n_jobs):
            return float(self._objective(X, codes)(self._theta())[0])


__all__ = ["ConvolutionalAutoencoder", "StackedConvolutionalAutoencoder", "crop_spectrograms",
           "conv_ae_cost_grad", "conv_net_cost_grad", "encode"]
