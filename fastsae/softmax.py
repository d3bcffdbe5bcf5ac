"""Softmax regression: the classifier on top of learned features."""
from __future__ import annotations

from typing import Self

import numpy as np
from sklearn.base import ClassifierMixin

from . import _dask, backends
from .base import Estimator, say
from .core.args import check_softmax_args
from .core.bfloat16 import bfloat16_dtype
from .core.checks import check_array, check_dtype, check_int, check_random_state, check_scalar
from .core.labels import encode_known_labels, encode_labels
from .core.threads import numba_threads
from .core.types import ArrayLike, Callback, DTypeLike, RandomState
from .exceptions import ParameterError
from .params import softmax_layout, unpack


def encode_labels_for(X: ArrayLike, y: ArrayLike,
                      name: str = "y") -> tuple[np.ndarray, np.ndarray]:
    """:func:`~fastsae.core.labels.encode_labels` of the labels of the rows of ``X``.

    With a dask ``X`` and a dask ``y`` the labels are encoded on the cluster
    (:func:`fastsae.distributed.encode_labels`: the codes are a dask array);
    otherwise here (a dask ``y`` with a NumPy ``X`` is computed).
    """
    if _dask.is_dask_collection(X) and _dask.is_dask_collection(y):
        return _dask.encode_labels(y, n_samples=X.shape[0], name=name)
    return encode_labels(y, X.shape[0], name)


def encode_known_labels_for(classes: np.ndarray, X: ArrayLike, y: ArrayLike,
                            name: str = "y") -> np.ndarray:
    """:func:`~fastsae.core.labels.encode_known_labels` of the labels of the rows of
    ``X`` (on the cluster, lazily, when both are dask arrays)."""
    if _dask.is_dask_collection(X) and _dask.is_dask_collection(y):
        return _dask.encode_known_labels(classes, y, n_samples=X.shape[0], name=name)
    return encode_known_labels(classes, y, X.shape[0], name)


def accuracy(pred: np.ndarray, y: ArrayLike) -> float:
    """Fraction of ``pred`` equal to ``y`` (on the cluster when ``pred`` is a dask array)."""
    if _dask.is_dask_collection(pred):
        return _dask.fraction_equal(pred, y)
    y = np.asarray(y).reshape(-1)
    if y.shape[0] != pred.shape[0]:
        raise ParameterError(
            f"y must have one label per row of X ({pred.shape[0]}); got {y.shape[0]}")
    return float(np.mean(pred == y))


def softmax_cost_grad(theta: ArrayLike, X: ArrayLike, y: ArrayLike, n_classes: int, *,
                      weight_decay: float, backend: str = "numba") -> tuple[float, np.ndarray]:
    """Softmax regression objective and gradient on the chosen backend.

    The public entry point: checks every argument (including NaN/inf in ``X``
    and ``theta``), then calls ``backend``'s ``softmax_cost_grad`` (see
    :func:`fastsae.reference.softmax.softmax_cost_grad` for the objective and
    the layout of ``theta``).
    """
    X = check_array(X, "X")
    theta = check_array(theta, "theta", ndim=1, dtype=np.float64)
    check_softmax_args(theta, X, y, n_classes, weight_decay, bfloat16=backend != "cuda")
    fn = backends.get_function(backend, "softmax_cost_grad")
    return fn(theta, X, y, n_classes, weight_decay=weight_decay)


class SoftmaxOutputMixin(ClassifierMixin):
    """The methods of a classifier whose last layer is a softmax.

    A subclass has ``classes_``, ``coef_`` (n_classes, n_top) and
    ``intercept_``, checks its input with ``_check_X(X)`` and computes the
    softmax's inputs with ``_features(X)`` (the identity for a plain softmax).
    With ``_dask_rows = True``, a dask ``X`` is mapped chunk by chunk on the
    workers: every method then returns a dask array (``score``: a number).
    """

    _dask_rows = False

    def _check_classifier(self):
        self._check_fitted("coef_")

    def _on_chunks(self, method, X, n_columns, dtype):
        """A dask ``X``: ``method`` on each chunk, on the workers, as a dask array."""
        self._check_classifier()
        return _dask.map_rows(method, X, n_columns, n_features=self.n_features_in_, dtype=dtype)

    def _is_rows_on_cluster(self, X):
        """Whether ``X`` is a dask array to map chunk by chunk (after checking the fit)."""
        self._check_classifier()
        return self._dask_rows and _dask.is_dask_collection(X)

    def _top(self, X):
        self._check_classifier()
        return self._features(self._check_X(X))

    def _logits(self, F):
        return F @ self.coef_.T.astype(F.dtype) + self.intercept_.astype(F.dtype)

    def decision_function(self, X: ArrayLike) -> np.ndarray:
        """Softmax logits [shape=(n_samples, n_classes)], in ``dtype``.

        Two classes: one score per row [shape=(n_samples,)], the logit of
        ``classes_[1]`` minus that of ``classes_[0]`` (positive: ``classes_[1]``).
        """
        binary = self.classes_.size == 2 if hasattr(self, "classes_") else False
        if self._is_rows_on_cluster(X):
            return self._on_chunks(self.decision_function, X, None if binary else
                                   self.classes_.size, check_dtype(self._work_dtype()))
        Z = self._logits(self._top(X))
        return Z[:, 1] - Z[:, 0] if binary else Z

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Class probabilities [shape=(n_samples, n_classes)]; rows sum to 1.

        Column ``k`` is the probability of ``classes_[k]``.
        """
        if self._is_rows_on_cluster(X):
            return self._on_chunks(self.predict_proba, X, self.classes_.size,
                                   check_dtype(self._work_dtype()))
        proba = backends.get_function(self.backend, "softmax_predict_proba")
        return proba(self.coef_, self.intercept_, self._top(X))

    def predict_log_proba(self, X: ArrayLike) -> np.ndarray:
        """Log-probabilities, computed stably from the logits."""
        if self._is_rows_on_cluster(X):
            return self._on_chunks(self.predict_log_proba, X, self.classes_.size,
                                   check_dtype(self._work_dtype()))
        Z = self._logits(self._top(X))
        Z = Z - Z.max(axis=1, keepdims=True)
        return Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))

    def predict(self, X: ArrayLike) -> np.ndarray:
        """The most probable class of each row, as labels from ``classes_``."""
        if self._is_rows_on_cluster(X):
            return self._on_chunks(self.predict, X, None, self.classes_.dtype)
        best = np.argmax(self._logits(self._top(X)), axis=1)
        return self.classes_[best]

    def _fine_tune(self, fun, theta0, X, codes, val, *, callback, interrupted, elapsed,
                   exact=None):
        """The last stage of a stacked model's ``fit``: the whole network trained from
        ``theta0`` (its pretrained weights) on ``fun``, the fine-tuning objective (with
        ``exact``, ``fun`` is its bfloat16 form and the run follows the precision schedule)."""
        with numba_threads(self.n_jobs):
            self.pretrain_cost_ = float((exact or fun)(theta0)[0])
        result = self._run_lbfgs(fun, theta0, max_iter=self.finetune_iter, callback=callback,
                                 desc="fine-tuning", exact=exact)
        self.n_bfloat16_iter_ = int(getattr(result, "n_fast_iter", 0))
        self._set_theta(result.theta)
        self.finetune_cost_ = float(result.cost)
        self.finetune_score_ = self._accuracy(X, codes, val)
        self.interrupted_ = interrupted or result.interrupted
        self.fit_time_ = elapsed()
        say(self.verbose, f"{type(self).__name__}: cost {self.pretrain_cost_:.6g} -> "
                          f"{self.finetune_cost_:.6g}, accuracy {self.pretrain_score_:.4f} -> "
                          f"{self.finetune_score_:.4f} "
                          f"({'validation' if val is not None else 'training'} data)")

    def score(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
        """Accuracy: the fraction of rows whose predicted label equals ``y``.

        With a dask ``X`` (``y`` a dask or NumPy array) it is computed on the
        cluster. ``sample_weight`` weights the rows (NumPy input only).
        """
        pred = self.predict(X)
        if sample_weight is None:
            return accuracy(pred, y)
        y = np.asarray(y).reshape(-1)
        w = check_array(sample_weight, "sample_weight", ndim=1)
        if not (y.shape[0] == pred.shape[0] == w.shape[0]):
            raise ParameterError(f"y and sample_weight must have one value per row of X "
                                 f"({pred.shape[0]}); got {y.shape[0]} and {w.shape[0]}")
        return float(np.sum(w * (pred == y)) / np.sum(w))


class SoftmaxRegression(SoftmaxOutputMixin, Estimator):
    """Multinomial logistic regression trained with L-BFGS (UFLDL ``softmaxTrain``).

    Minimises ``−(1/m) Σ log p(y_i | x_i) + (λ/2)‖W‖²`` with
    ``p(k | x) ∝ exp(W_k x + b_k)`` (see :func:`fastsae.reference.softmax.softmax_cost_grad`).
    Unlike UFLDL's softmax it has a bias ``b``, which is not weight-decayed.

    Parameters
    ----------
    weight_decay : float >= 0
        λ.
    max_iter : int
        L-BFGS iterations.
    random_state : int, Generator or None
        Seed of the initial weights (UFLDL: ``0.005 * randn``).
    backend, dtype, n_jobs, verbose
        As for :class:`~fastsae.SparseAutoencoder`: ``"numba"``, ``"numpy"`` or
        ``"cuda"``; the precision of the computation, ``"float64"``,
        ``"float32"`` or ``"bfloat16"`` (parameters stay float64); Numba
        threads (None: all cores); a progress bar with the current cost.
        ``"bfloat16"`` (``backend="numba"`` or ``"numpy"``, NumPy input; needs
        the extra ``fastsae-audio[mkl]``, else ``fit`` raises
        :class:`~fastsae.BackendUnavailableError`): the two matrix products of
        each evaluation take bfloat16 operands with float32 accumulation, and
        ``fit`` follows the autoencoder's precision schedule (L-BFGS on the
        bfloat16 objective while it makes progress, float32 for the last
        iterations; :func:`fastsae.base.lbfgs_two_precisions`). Input,
        predictions and :meth:`cost` are float32.

    Attributes
    ----------
    classes_ : np.ndarray [shape=(n_classes,)]
        The labels seen in ``fit``, sorted; column ``k`` of ``predict_proba``
        is ``classes_[k]``.
    coef_ : np.ndarray [shape=(n_classes, n_features)]
    intercept_ : np.ndarray [shape=(n_classes,)]
    n_features_in_ : int
    loss_curve_, n_iter_, n_evaluations_, converged_, interrupted_, fit_time_, objective_time_
        As for :class:`~fastsae.SparseAutoencoder`.
    n_bfloat16_iter_ : int
        Of ``n_iter_``, the iterations in bfloat16 (``dtype="bfloat16"``; else 0).

    Notes
    -----
    A scikit-learn classifier. As in scikit-learn, ``decision_function`` of a
    two-class model gives one score per row (the logit of ``classes_[1]``
    minus that of ``classes_[0]``).

    ``fit`` accepts a dask array ``X`` (rows split into chunks) and trains on
    a Dask cluster, the chunks staying on the workers (see
    :mod:`fastsae.distributed`): the client is the default one
    (:func:`fastsae.distributed.connect` makes it), every L-BFGS evaluation
    is :func:`fastsae.distributed.softmax_objective` — the same objective,
    summed over the chunks. ``decision_function``, ``predict_proba``,
    ``predict_log_proba`` and ``predict`` of a dask array return a dask array
    (each chunk computed on the workers with the single-machine method);
    ``score`` and ``cost`` of a dask array are computed on the cluster.

    Examples
    --------
    >>> import numpy as np, fastsae
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(-2, 1, (50, 2)), rng.normal(2, 1, (50, 2))]
    >>> y = np.repeat(["low", "high"], 50)
    >>> clf = fastsae.SoftmaxRegression(max_iter=100).fit(X, y)
    >>> clf.predict([[-3.0, -3.0], [3.0, 3.0]]).tolist()
    ['low', 'high']

    The same on a Dask cluster:

    >>> import dask.array as da                                          # doctest: +SKIP
    >>> client = fastsae.distributed.connect("tcp://scheduler:8786")    # doctest: +SKIP
    >>> Xd = da.from_array(X, chunks=(25, 2))                           # doctest: +SKIP
    >>> clf = fastsae.SoftmaxRegression(max_iter=100).fit(Xd, y)        # doctest: +SKIP
    >>> clf.predict(Xd).compute()[[0, -1]].tolist()                     # doctest: +SKIP
    ['low', 'high']
    """

    def __init__(self, weight_decay: float = 1e-4, *, max_iter: int = 400,
                 backend: str = "numba", dtype: DTypeLike = "float64",
                 n_jobs: int | None = None, random_state: RandomState = None,
                 verbose: bool = False) -> None:
        self._store_params(locals())

    _bfloat16 = True

    def _validate_params(self):
        check_scalar(self.weight_decay, "weight_decay", low=0.0)
        check_int(self.max_iter, "max_iter", low=1)
        self._validate_common()

    _dask_rows = True

    def _check_X(self, X, *, fitting=False):
        if fitting:
            self._validate_params()
            self._refuse_bfloat16_on_cluster(_dask.is_dask_collection(X))
            return self._check_rows(X, dask=True)[0]
        self._check_fitted("coef_")
        return self._check_rows(X, dask=True, n_features=self.n_features_in_)[0]

    def _features(self, X):
        return X

    def _objective(self, X, codes):
        K, lam = self.classes_.size, self.weight_decay
        if _dask.is_dask_collection(X):
            return _dask.softmax_objective(None, X, codes, K, weight_decay=lam,
                                           backend=self.backend, n_jobs=self.n_jobs)
        cost_grad = backends.get_function(self.backend, "softmax_cost_grad")
        X = backends.to_device(self.backend, X)
        return lambda theta: cost_grad(theta, X, codes, K, weight_decay=lam)

    def fit(self, X: ArrayLike, y: ArrayLike, *, callback: Callback | None = None) -> Self:
        """Learn ``coef_`` and ``intercept_`` from ``X`` and the labels ``y``.

        Parameters
        ----------
        X : array-like or dask array [shape=(n_samples, n_features)]
            A dask array is checked and persisted on the cluster, and
            training runs there (see the class notes).
        y : array-like or dask array [shape=(n_samples,)]
            Any labels (integers, strings, ...); at least two distinct values.
            A dask ``y`` (with a dask ``X``) is encoded on the cluster.
        callback : callable ``(iteration, theta, cost)``, optional
            Called after every L-BFGS iteration (:class:`fastsae.base.Estimator`).

        Returns
        -------
        self : fitted; Ctrl-C ends training early with the best weights so far.
        """
        X = self._check_X(X, fitting=True)          # the parameters first, then X
        bf16 = self._require_bfloat16_packages()   # the packages, before any work
        classes, codes = encode_labels_for(X, y)
        K, n = classes.size, X.shape[1]
        self._check_fit_memory(K * n + K, 3 * X.shape[0] * K * X.dtype.itemsize
                               + (X.shape[0] * n * 2 if bf16 else 0),
                               f" with {K} classes on {n} features")
        self.classes_ = classes
        rng = check_random_state(self.random_state)
        theta0 = np.zeros(K * n + K)
        theta0[:K * n] = 0.005 * rng.standard_normal(K * n)
        if bf16:
            result = self._run_lbfgs(self._objective(X.astype(bfloat16_dtype()), codes), theta0,
                                     exact=self._objective(X, codes), max_iter=self.max_iter,
                                     callback=callback)
        else:
            result = self._run_lbfgs(self._objective(X, codes), theta0, max_iter=self.max_iter,
                                     callback=callback)
        self.n_bfloat16_iter_ = int(getattr(result, "n_fast_iter", 0))
        self._set_theta(result.theta, n)
        return self

    def _set_theta(self, theta, n_features):
        W, b = unpack(np.ascontiguousarray(theta), softmax_layout(self.classes_.size, n_features))
        self.coef_ = np.array(W)
        self.intercept_ = np.array(b)
        self.n_features_in_ = n_features

    def _theta(self):
        return np.concatenate([self.coef_.ravel(), self.intercept_])

    def _expected_shapes(self):
        if not hasattr(self, "coef_"):
            return {}
        K = len(self.classes_)
        return {"coef_": (K, self.n_features_in_), "intercept_": (K,)}

    def cost(self, X: ArrayLike, y: ArrayLike) -> float:
        """The training objective at the current weights on ``X``, ``y``
        (on the cluster for a dask ``X``)."""
        X = self._check_X(X)
        codes = encode_known_labels_for(self.classes_, X, y)
        return float(self._objective(X, codes)(self._theta())[0])
