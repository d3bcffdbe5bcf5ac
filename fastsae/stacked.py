"""Stacked autoencoders: greedy layer-wise pretraining, a softmax on top, then
fine-tuning of the whole network (UFLDL's ``stackedAEExercise``)."""
from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Self

import numpy as np
from scipy.special import expit
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin

from . import _dask, backends
from .autoencoder import SparseAutoencoder
from .base import Estimator, Timer, check_validation, say, unit_range_error
from .core.args import check_softmax_args
from .core.bfloat16 import bfloat16_dtype
from .core.checks import (DECODERS, check_array, check_choice, check_dtype, check_int,
                          check_random_state, check_scalar)
from .core.types import ArrayLike, Callback, DTypeLike, RandomState
from .exceptions import ParameterError
from .params import layout_size, stack_to_params, stacked_layout, unpack
from .softmax import SoftmaxOutputMixin, SoftmaxRegression, encode_known_labels_for, encode_labels_for


def stacked_cost_grad(theta: ArrayLike, X: ArrayLike, y: ArrayLike,
                      layer_sizes: Sequence[int], n_classes: int, *, weight_decay: float,
                      stack_weight_decay: float = 0.0,
                      backend: str = "numba") -> tuple[float, np.ndarray]:
    """Stacked autoencoder fine-tuning objective and gradient on the chosen backend.

    The public entry point: checks every argument (including NaN/inf in ``X``
    and ``theta``), then calls ``backend``'s ``stacked_cost_grad`` (see
    :func:`fastsae.reference.stacked.stacked_cost_grad` for the objective and the
    layout of ``theta``: softmax first, then ``W1, b1, W2, b2, ...``).
    """
    X = check_array(X, "X")
    theta = check_array(theta, "theta", ndim=1, dtype=np.float64)
    check_softmax_args(theta, X, y, n_classes, weight_decay, layer_sizes, stack_weight_decay,
                       bfloat16=backend != "cuda")
    fn = backends.get_function(backend, "stacked_cost_grad")
    return fn(theta, X, y, layer_sizes, n_classes, weight_decay=weight_decay,
              stack_weight_decay=stack_weight_decay)


def _check_hidden_sizes(hidden_sizes):
    if isinstance(hidden_sizes, (str, bytes, numbers.Number)) \
            or not hasattr(hidden_sizes, "__len__") or len(hidden_sizes) == 0:
        raise ParameterError(
            "hidden_sizes must be a non-empty sequence of positive integers, e.g. (200, 200); "
            f"got {hidden_sizes!r}")
    return tuple(check_int(h, f"hidden_sizes[{i}]", low=1) for i, h in enumerate(hidden_sizes))


def _encode(X, W, b):
    """One sigmoid layer ``σ(X Wᵀ + b)``, in ``X.dtype`` (also run on the workers, per chunk)."""
    return expit(X @ W.T.astype(X.dtype) + b.astype(X.dtype))


class StackedAutoencoder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, SoftmaxOutputMixin,
                         Estimator):
    """A deep classifier built from sparse autoencoders (UFLDL's stacked autoencoder).

    ``fit`` runs the three stages of UFLDL's exercise:

    1. greedy layer-wise pretraining: layer ``l`` is a
       :class:`~fastsae.SparseAutoencoder` with ``hidden_sizes[l]`` units
       trained on the previous layer's activations (the first on the input);
    2. a :class:`~fastsae.SoftmaxRegression` trained on the top layer's
       activations of the labelled examples;
    3. fine-tuning: the whole network (every encoder and the softmax) trained
       together with L-BFGS on :func:`fastsae.reference.stacked.stacked_cost_grad`,
       starting from the pretrained weights.

    Parameters
    ----------
    hidden_sizes : sequence of int
        Units of each sigmoid layer, input side first.
    sparsity, beta, weight_decay : float
        The autoencoders' ρ, β and λ during pretraining.
    softmax_weight_decay : float >= 0
        λ of the softmax, in stage 2 and in fine-tuning.
    stack_weight_decay : float >= 0
        Weight decay on the encoders' weights during fine-tuning. UFLDL's
        ``stackedAECost`` has none (the default, 0).
    decoder : {"sigmoid", "linear"}
        Decoder of the *first* autoencoder (``"linear"`` for input outside
        [0, 1], e.g. whitened); the deeper ones see sigmoid activations and
        use a sigmoid decoder.
    pretrain_iter, softmax_iter, finetune_iter : int
        L-BFGS iterations for each autoencoder, the softmax and fine-tuning.
    backend : {"numba", "numpy", "cuda"}
    dtype : {"float64", "float32", "bfloat16"}
        ``"bfloat16"`` (``backend="numba"`` or ``"numpy"``, NumPy input; the
        extra ``fastsae-audio[mkl]``): every stage trains with bfloat16 matrix
        products and float32 for its last iterations (the autoencoders' and
        the softmax's ``dtype="bfloat16"``, and the fine-tuning objective's
        bfloat16 kernel, :func:`fastsae.base.lbfgs_two_precisions`); inputs,
        predictions and :meth:`cost` are float32.
    n_jobs : int or None
        Numba threads (None: all cores).
    random_state : int, Generator or None
    verbose : bool
        Print each stage and show L-BFGS progress bars.

    Attributes
    ----------
    classes_ : np.ndarray [shape=(n_classes,)]
    stack_ : list of (W, b)
        The fine-tuned encoders, ``W`` of shape ``(h_l, h_{l-1})``.
    coef_, intercept_ : np.ndarray
        The fine-tuned softmax, ``(n_classes, h_L)`` and ``(n_classes,)``.
    autoencoders_ : list of SparseAutoencoder
        The pretrained layers (before fine-tuning).
    n_pretrain_samples_ : int
        Rows the autoencoders were trained on (``X`` plus ``X_unlabeled``).
    softmax_ : SoftmaxRegression
        The softmax trained on the pretrained features.
    pretrain_cost_, finetune_cost_ : float
        The fine-tuning objective on the labelled training data before and
        after fine-tuning.
    pretrain_score_, finetune_score_ : float
        Accuracy before and after fine-tuning, on ``validation`` when given to
        ``fit``, else on the training data.
    loss_curve_, n_iter_, n_evaluations_, converged_, objective_time_
        Of the fine-tuning, as for :class:`~fastsae.SparseAutoencoder`.
    interrupted_ : bool
        Some stage was interrupted (Ctrl-C) and kept its best weights.
    fit_time_ : float
        Seconds for the whole ``fit``.

    Notes
    -----
    A scikit-learn classifier and transformer (``transform`` gives the top
    layer's activations); a two-class ``decision_function`` gives one score
    per row, as in scikit-learn.

    ``fit`` accepts a dask array ``X`` (and ``y``, ``X_unlabeled``) and trains
    on a Dask cluster, the data staying on the workers (see
    :mod:`fastsae.distributed`; the client is the default one): each
    autoencoder is a :class:`~fastsae.SparseAutoencoder` fitted on the dask
    array of the previous layer's activations (computed chunk by chunk on the
    workers and persisted there), the softmax a
    :class:`~fastsae.SoftmaxRegression` fitted on the dask array of the top
    activations, and fine-tuning evaluates
    :func:`fastsae.distributed.stacked_objective`: the same objectives as on
    one machine, summed over the chunks. With a NumPy ``X`` and a dask
    ``X_unlabeled`` the pretraining runs on the cluster (``X`` is scattered
    there), the softmax too, and the fine-tuning here. ``transform``,
    ``decision_function``, ``predict_proba`` and ``predict`` of a dask array
    return a dask array (chunk by chunk, on the workers); ``score`` and
    ``cost`` of a dask array are computed on the cluster.

    Examples
    --------
    >>> import numpy as np, fastsae
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, 300)
    >>> X = np.clip(0.5 + 0.3 * np.eye(3)[y] @ rng.uniform(-1, 1, (3, 20))
    ...             + 0.05 * rng.standard_normal((300, 20)), 0, 1)
    >>> net = fastsae.StackedAutoencoder((8, 6), weight_decay=1e-4, pretrain_iter=50,
    ...                                  softmax_iter=50, finetune_iter=50,
    ...                                  random_state=0).fit(X, y)
    >>> net.score(X, y) > 0.9
    True

    The same on a Dask cluster (chunks of whole rows):

    >>> import dask.array as da                                          # doctest: +SKIP
    >>> client = fastsae.distributed.connect("tcp://scheduler:8786")    # doctest: +SKIP
    >>> Xd, yd = da.from_array(X, chunks=(100, 20)), da.from_array(y, chunks=100)  # doctest: +SKIP
    >>> net = fastsae.StackedAutoencoder((8, 6), weight_decay=1e-4, pretrain_iter=50,
    ...                                  softmax_iter=50, finetune_iter=50,
    ...                                  random_state=0).fit(Xd, yd)   # doctest: +SKIP
    >>> net.score(Xd, yd) > 0.9                                         # doctest: +SKIP
    True
    """

    def __init__(self, hidden_sizes: Sequence[int] = (200, 200), *, sparsity: float = 0.1,
                 beta: float = 3.0, weight_decay: float = 3e-3,
                 softmax_weight_decay: float = 1e-4, stack_weight_decay: float = 0.0,
                 decoder: str = "sigmoid", pretrain_iter: int = 400, softmax_iter: int = 400,
                 finetune_iter: int = 400, backend: str = "numba",
                 dtype: DTypeLike = "float64", n_jobs: int | None = None,
                 random_state: RandomState = None, verbose: bool = False) -> None:
        self._store_params(locals())

    _dask_rows = True

    # -- checks -------------------------------------------------------------
    def _validate_params(self):
        sizes = _check_hidden_sizes(self.hidden_sizes)
        self._check_sparsity_params()
        check_scalar(self.softmax_weight_decay, "softmax_weight_decay", low=0.0)
        check_scalar(self.stack_weight_decay, "stack_weight_decay", low=0.0)
        check_choice(self.decoder, "decoder", DECODERS)
        check_int(self.pretrain_iter, "pretrain_iter", low=1)
        check_int(self.softmax_iter, "softmax_iter", low=1)
        check_int(self.finetune_iter, "finetune_iter", low=1)
        self._validate_common()
        return sizes

    _bfloat16 = True

    def _check_X(self, X, name="X"):
        """Rows to predict from: fitted, and as many features as in ``fit``."""
        self._check_fitted("stack_")
        return self._check_rows(X, name, dask=True, n_features=self.n_features_in_)[0]

    def _check_training(self, X, name, n_features=None):
        """``(X, value range)`` of training rows (dask arrays persisted on the cluster)."""
        return self._check_rows(X, name, dask=True, value_range=self.decoder == "sigmoid",
                                n_features=n_features)

    @staticmethod
    def _require_unit_range(lo_hi, name):
        if lo_hi is not None and (lo_hi[0] < 0.0 or lo_hi[1] > 1.0):
            raise unit_range_error(name, *lo_hi, "the first autoencoder's output is a sigmoid")

    # -- fitting ------------------------------------------------------------
    def fit(self, X: ArrayLike, y: ArrayLike, X_unlabeled: ArrayLike | None = None,
            validation: tuple[ArrayLike, ArrayLike] | None = None, *,
            callback: Callback | None = None) -> Self:
        """Pretrain layer by layer, train the softmax, then fine-tune the whole network.

        Parameters
        ----------
        X : array-like or dask array [shape=(n_samples, n_features)]
            Labelled examples (values in [0, 1] unless ``decoder="linear"``).
            A dask array is checked and persisted on the cluster, and
            training runs there (see the class notes).
        y : array-like or dask array [shape=(n_samples,)]
            Any labels (integers, strings, ...); at least two distinct values.
            A dask ``y`` (with a dask ``X``) is encoded on the cluster.
        X_unlabeled : array-like or dask array [shape=(n_unlabeled, n_features)], optional
            More examples for the unsupervised pretraining. The autoencoders
            are trained on ``X`` and ``X_unlabeled`` together (labelled
            examples are valid unlabelled ones too); the softmax and the
            fine-tuning use only ``X`` and ``y``. If either is a dask array
            the pretraining runs on the cluster.
        validation : tuple (X_val, y_val), optional
            Held-out data for ``pretrain_score_`` and ``finetune_score_``
            (NumPy arrays, evaluated here); without it both are measured on
            the training data (on the cluster for a dask ``X``).
        callback : callable ``(iteration, theta, cost)``, optional
            Called after every fine-tuning iteration (raise ``StopIteration``
            to stop).

        Returns
        -------
        self

        Notes
        -----
        ``KeyboardInterrupt`` (Ctrl-C) ends the stage that is running, keeping
        its best weights (with a warning), and ``fit`` goes on with the next
        stage, so the network is always complete; ``interrupted_`` records it.
        """
        elapsed = Timer()
        sizes = self._validate_params()
        # fail now, not after pretraining, if the backend cannot fine-tune
        backends.get_function(self.backend, "stacked_cost_grad")
        on_cluster = _dask.is_dask_collection(X) or _dask.is_dask_collection(X_unlabeled)
        self._refuse_bfloat16_on_cluster(on_cluster)
        bf16 = self._require_bfloat16_packages()       # the packages, before any work
        if on_cluster:      # nor if it has no distributed autoencoder
            _dask.stats_function(self.backend)
        X, lo_hi = self._check_training(X, "X")
        n_features = X.shape[1]
        classes, codes = encode_labels_for(X, y)
        self._require_unit_range(lo_hi, "X")
        H = X
        if X_unlabeled is not None:
            Xu, lo_hi = self._check_training(X_unlabeled, "X_unlabeled", n_features)
            self._require_unit_range(lo_hi, "X_unlabeled")
            H = _dask.concatenate_rows([X, Xu]) if on_cluster else np.concatenate([X, Xu])
        val = check_validation(validation, lambda V: self._check_rows(
            V, "validation[0]", n_features=n_features)[0])

        sizes_all = (n_features,) + sizes
        self._check_fit_memory(
            layout_size(stacked_layout(sizes_all, classes.size)),
            2 * X.shape[0] * sum(sizes_all) * X.dtype.itemsize + (X.nbytes // 2 if bf16 else 0),
            f" with hidden_sizes={sizes} on {n_features} features")
        rng = check_random_state(self.random_state)
        common = dict(backend=self.backend, dtype=self.dtype, n_jobs=self.n_jobs,
                      verbose=self.verbose)
        interrupted = False

        # 1. greedy layer-wise pretraining
        autoencoders = []
        n_in = n_features
        for i, h in enumerate(sizes):
            say(self.verbose, f"StackedAutoencoder: pretraining layer {i + 1}/{len(sizes)} "
                              f"({n_in} -> {h}) on {H.shape[0]} examples")
            sae = SparseAutoencoder(n_hidden=h, sparsity=self.sparsity, beta=self.beta,
                                    weight_decay=self.weight_decay,
                                    decoder=self.decoder if i == 0 else "sigmoid",
                                    max_iter=self.pretrain_iter,
                                    random_state=int(rng.integers(2**31 - 1)), **common)
            sae.fit(H)
            interrupted |= sae.interrupted_
            if _dask.is_dask_collection(H):   # computed and kept on the workers
                H = _dask.persist_rows(_dask.map_rows(
                    _encode, H, h, dtype=H.dtype, args=(sae.W1_, sae.b1_)))
            else:
                H = sae.transform(H)
            autoencoders.append(sae)
            n_in = h
        # 2. softmax on the labelled examples' top features (X comes first in H)
        say(self.verbose, f"StackedAutoencoder: softmax on {sizes[-1]} features, "
                          f"{classes.size} classes")
        softmax = SoftmaxRegression(weight_decay=self.softmax_weight_decay,
                                    max_iter=self.softmax_iter,
                                    random_state=int(rng.integers(2**31 - 1)), **common)
        softmax.fit(H[:X.shape[0]], codes)
        interrupted |= softmax.interrupted_

        # 3. fine-tuning
        self.classes_ = classes
        self.n_features_in_ = n_features
        self.autoencoders_ = autoencoders
        self.softmax_ = softmax
        self.n_pretrain_samples_ = int(H.shape[0])
        layer_sizes = (n_features,) + sizes
        theta0 = np.concatenate([softmax.coef_.ravel(), softmax.intercept_,
                                 stack_to_params([(s.W1_, s.b1_) for s in autoencoders])[0]])
        self._set_theta(theta0)
        self.pretrain_score_ = self._accuracy(X, codes, val)
        fun = self._objective(X, codes, layer_sizes)
        fast = self._objective(X.astype(bfloat16_dtype()), codes, layer_sizes) if bf16 else None
        say(self.verbose, f"StackedAutoencoder: fine-tuning {'-'.join(map(str, layer_sizes))}-"
                          f"{classes.size} on {X.shape[0]} labelled examples")
        self._fine_tune(fast or fun, theta0, X, codes, val, callback=callback,
                        interrupted=interrupted, elapsed=elapsed, exact=fun if bf16 else None)
        return self

    def _objective(self, X, codes, layer_sizes):
        K = self.classes_.size
        kw = dict(weight_decay=self.softmax_weight_decay,
                  stack_weight_decay=self.stack_weight_decay)
        if _dask.is_dask_collection(X):
            return _dask.stacked_objective(None, X, codes, layer_sizes, K, backend=self.backend,
                                           n_jobs=self.n_jobs, **kw)
        cost_grad = backends.get_function(self.backend, "stacked_cost_grad")
        X = backends.to_device(self.backend, X)
        return lambda theta: cost_grad(theta, X, codes, layer_sizes, K, **kw)

    def _expected_shapes(self):
        if not hasattr(self, "stack_"):
            return {}
        sizes = (self.n_features_in_,) + tuple(check_int(h, "hidden_sizes", low=1)
                                               for h in self.hidden_sizes)
        out = {"coef_": (len(self.classes_), sizes[-1]), "intercept_": (len(self.classes_),)}
        if len(self.stack_) != len(sizes) - 1:
            out["stack_"] = (len(sizes) - 1,)
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            out[f"stack_[{i}][0]"] = (n_out, n_in)
            out[f"stack_[{i}][1]"] = (n_out,)
        return out

    def _layer_sizes(self):
        return (self.n_features_in_,) + tuple(W.shape[0] for W, _ in self.stack_)

    def _theta(self):
        return np.concatenate([self.coef_.ravel(), self.intercept_]
                              + [a.ravel() for W, b in self.stack_ for a in (W, b)])

    def _set_theta(self, theta):
        sizes = (self.n_features_in_,) + tuple(s.n_hidden for s in self.autoencoders_)
        views = unpack(np.ascontiguousarray(theta), stacked_layout(sizes, self.classes_.size))
        self.coef_ = np.array(views[0])
        self.intercept_ = np.array(views[1])
        self.stack_ = [(np.array(views[i]), np.array(views[i + 1]))
                       for i in range(2, len(views), 2)]

    def _accuracy(self, X, codes, val):
        if val is not None:
            return self.score(*val)
        if _dask.is_dask_collection(X):
            pred = _dask.map_rows(self._predict_codes, X, dtype=np.intp)
            return _dask.fraction_equal(pred, codes)
        return float(np.mean(self._predict_codes(X) == codes))

    def _predict_codes(self, X):
        return np.argmax(self._logits(self._features(X)), axis=1)

    # -- using it -----------------------------------------------------------
    def _check_classifier(self):
        self._check_fitted("stack_")

    def _features(self, X):
        A = X
        for W, b in self.stack_:
            A = _encode(A, W, b)
        return A

    @property
    def _n_features_out(self):
        return self.stack_[-1][0].shape[0]

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Top-layer activations of the fine-tuned network [shape=(n_samples, h_L)], in dtype.

        A dask ``X`` gives a dask array, chunk by chunk (so do the methods below).
        """
        if self._is_rows_on_cluster(X):
            return self._on_chunks(self.transform, X, self._n_features_out,
                                   check_dtype(self._work_dtype()))
        return self._top(X)

    def cost(self, X: ArrayLike, y: ArrayLike) -> float:
        """The fine-tuning objective at the current weights on ``X``, ``y``
        (on the cluster for a dask ``X``)."""
        X = self._check_X(X)
        codes = encode_known_labels_for(self.classes_, X, y)
        return float(self._objective(X, codes, self._layer_sizes())(self._theta())[0])
