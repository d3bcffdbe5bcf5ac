"""Convolutional autoencoders stacked with pooling; with labels, a fine-tuned classifier.

:class:`StackedConvolutionalAutoencoder` trains :class:`~fastsae.ConvolutionalAutoencoder`
layers greedily, each on the pooled maps of the one below (as a multi-channel
input), and, given labels, puts a softmax on the flattened top maps and
fine-tunes the whole network with L-BFGS (:func:`conv_net_cost_grad`).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin

from . import backends
from .base import Estimator, Timer, check_validation, say, unit_range_error
from .convae import ConvolutionalAutoencoder, _as_images, check_channels, encode
from .core.args import check_conv_net_args
from .core.bfloat16 import bfloat16_dtype
from .core.checks import (DECODERS, check_array, check_bool, check_choice, check_int,
                          check_random_state, check_scalar)
from .core.labels import encode_known_labels, encode_labels
from .core.layouts import conv_net_layout, conv_net_plan, normalize_layers
from .core.threads import numba_threads
from .core.types import ArrayLike, Callback, DTypeLike, RandomState
from .exceptions import ParameterError
from .params import unpack
from .softmax import SoftmaxOutputMixin, SoftmaxRegression


def conv_net_cost_grad(theta: ArrayLike, X: ArrayLike, y: ArrayLike,
                       layers: Sequence[dict[str, Any]], n_classes: int, *, weight_decay: float,
                       conv_weight_decay: float = 0.0,
                       backend: str = "numba") -> tuple[float, np.ndarray]:
    """Convolutional network fine-tuning objective and gradient on the chosen backend.

    Checks every argument (including NaN/inf), then calls ``backend``'s
    ``conv_net_cost_grad`` (see
    :func:`fastsae.reference.convnet.conv_net_cost_grad` for the network, the
    objective and the layout of ``theta``: softmax first, then each layer's
    ``W_l, b_l``). A bfloat16 ``X`` (``ml_dtypes.bfloat16``, backends
    ``"numba"`` and ``"numpy"``) runs the layers' products in bfloat16 (see
    :func:`fastsae.kernels.convnet.conv_net_cost_grad`).
    """
    X = _as_images(X)
    theta = check_array(theta, "theta", ndim=1, dtype=np.float64)
    check_conv_net_args(theta, X, y, layers, n_classes, weight_decay, conv_weight_decay,
                        bfloat16=backend != "cuda")
    fn = backends.get_function(backend, "conv_net_cost_grad")
    return fn(theta, X, y, layers, n_classes, weight_decay=weight_decay,
              conv_weight_decay=conv_weight_decay)


class StackedConvolutionalAutoencoder(ClassNamePrefixFeaturesOutMixin, TransformerMixin,
                                      SoftmaxOutputMixin, Estimator):
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
    dtype : {"float64", "float32", "bfloat16"}
        ``"bfloat16"`` (``backend="numba"`` or ``"numpy"``; the extra
        ``fastsae-audio[mkl]``): every stage trains with bfloat16 products on
        the precision schedule (the autoencoders' and the softmax's
        ``dtype="bfloat16"``, and the fine-tuning objective's bfloat16 kernel,
        :func:`fastsae.base.lbfgs_two_precisions`); ``transform``, ``predict``
        and the other methods work in float32.
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

    def __init__(self, layers: Sequence[dict[str, Any]] | None = None, *,
                 sparsity: float = 0.05, beta: float = 3.0, weight_decay: float = 1e-4,
                 decoder: str = "sigmoid", tied: bool = False,
                 softmax_weight_decay: float = 1e-4, conv_weight_decay: float = 0.0,
                 pretrain_iter: int = 200, softmax_iter: int = 400, finetune_iter: int = 200,
                 backend: str = "numba", dtype: DTypeLike = "float64",
                 n_jobs: int | None = None, random_state: RandomState = None,
                 verbose: bool = False) -> None:
        self._store_params(locals())

    _bfloat16 = True

    # -- checks -------------------------------------------------------------
    def _layer_specs(self):
        layers = self.layers
        if layers is None:
            layers = [dict(n_filters=16, patch_shape=(5, 5), pool_shape=(2, 2))]
        return normalize_layers(layers)

    def _validate_params(self):
        specs = self._layer_specs()
        self._check_sparsity_params()
        check_choice(self.decoder, "decoder", DECODERS)
        check_bool(self.tied, "tied")
        check_scalar(self.softmax_weight_decay, "softmax_weight_decay", low=0.0)
        check_scalar(self.conv_weight_decay, "conv_weight_decay", low=0.0)
        check_int(self.pretrain_iter, "pretrain_iter", low=1)
        check_int(self.softmax_iter, "softmax_iter", low=1)
        check_int(self.finetune_iter, "finetune_iter", low=1)
        self._validate_common()
        return specs

    _takes_images = True

    def _check_X(self, X, name="X", *, fitting=False):
        X = _as_images(X, name, dtype=self._work_dtype())
        if not fitting:
            self._check_fitted("layers_")
            check_channels(X, self.n_channels_in_, name)
        elif self.decoder == "sigmoid" and (X.min() < 0.0 or X.max() > 1.0):
            raise unit_range_error(name, float(X.min()), float(X.max()),
                                   "the first autoencoder's reconstruction is a sigmoid")
        return X

    def _plan(self, X, name="X"):
        try:
            return conv_net_plan(self._layer_specs(), X.shape[1:])
        except ParameterError as exc:
            raise ParameterError(f"{name} of shape {X.shape}: {exc}") from None

    # -- fitting ------------------------------------------------------------
    def fit(self, X: ArrayLike, y: ArrayLike | None = None, X_unlabeled: ArrayLike | None = None,
            validation: tuple[ArrayLike, ArrayLike] | None = None, *,
            callback: Callback | None = None) -> Self:
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
        elapsed = Timer()
        specs = self._validate_params()
        bf16 = self._require_bfloat16_packages()      # the packages, before any work
        for attr in ("classes_", "coef_", "intercept_", "softmax_"):   # from an earlier fit
            self.__dict__.pop(attr, None)
        X = self._check_X(X, "X", fitting=True)
        plan, n_features = self._plan(X)
        codes = None
        if y is not None:
            classes, codes = encode_labels(y, X.shape[0])
        H = X
        if X_unlabeled is not None:
            Xu = self._check_same_inputs(self._check_X(X_unlabeled, "X_unlabeled", fitting=True),
                                         X, "X_unlabeled")
            H = np.concatenate([X, Xu])
        if validation is not None and y is None:
            raise ParameterError("validation needs labels: pass y to fit")
        val = check_validation(validation, lambda V: self._check_same_inputs(
            _as_images(V, "validation[0]", dtype=self._work_dtype()), X, "validation[0]"))

        rng = check_random_state(self.random_state)
        common = dict(backend=self.backend, dtype=self.dtype, n_jobs=self.n_jobs,
                      verbose=self.verbose)
        interrupted = False

        # 1. greedy layer-wise pretraining, each layer on the pooled maps below it
        autoencoders = []
        for i, (spec, step) in enumerate(zip(specs, plan)):
            say(self.verbose, f"StackedConvolutionalAutoencoder: pretraining layer {i + 1}/"
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
            self.fit_time_ = elapsed()
            return self

        # 2. softmax on the labelled inputs' top features (X comes first in H)
        F = H[:X.shape[0]].reshape(X.shape[0], -1)
        say(self.verbose, f"StackedConvolutionalAutoencoder: softmax on {n_features} features, "
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
        fast = self._objective(X.astype(bfloat16_dtype()), codes) if bf16 else None
        say(self.verbose, f"StackedConvolutionalAutoencoder: fine-tuning on {X.shape[0]} "
                          f"labelled inputs")
        self._fine_tune(fast or fun, theta0, X, codes, val, callback=callback,
                        interrupted=interrupted, elapsed=elapsed, exact=fun if bf16 else None)
        return self

    @staticmethod
    def _check_same_inputs(V, X, name):
        if V.shape[1:] != X.shape[1:]:
            raise ParameterError(f"{name} must hold inputs of shape {X.shape[1:]} (as X); "
                                 f"got {V.shape}")
        return V

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

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Flattened pooled maps of the top layer [shape=(n_images, n_features_)], in ``dtype``.

        Ordered (filter, region row, region column); the features the softmax sees.
        """
        return self._features(self._check_X(X))

    @property
    def _n_features_out(self):
        return self.n_features_

    def cost(self, X: ArrayLike, y: ArrayLike) -> float:
        """The fine-tuning objective at the current weights on ``X``, ``y``."""
        self._check_classifier()
        X = self._check_X(X)
        codes = encode_known_labels(self.classes_, y, X.shape[0])
        with numba_threads(self.n_jobs):
            return float(self._objective(X, codes)(self._theta())[0])


__all__ = ["StackedConvolutionalAutoencoder", "conv_net_cost_grad"]
