"""The sparse autoencoder estimator, and the checked entry point to its objective."""
from __future__ import annotations

from typing import Self

import numpy as np
from scipy.special import expit
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin

from . import _dask, backends
from .base import Estimator, unit_range_error
from .core.args import check_sae_options
from .core.bfloat16 import bfloat16_dtype, is_bfloat16
from .core.checks import (DECODERS, LOSSES, check_array, check_bool, check_choice, check_int)
from .core.types import ArrayLike, Callback, DTypeLike, RandomState
from .exceptions import ParameterError
from .params import init_params, layout_size, pack, sae_layout, unpack_sae


def _n_threads() -> int:
    """The most threads a Numba kernel may use (each has its own buffers)."""
    import numba
    return int(numba.config.NUMBA_NUM_THREADS)


def sae_cost_grad(theta: ArrayLike, X: ArrayLike, n_visible: int, n_hidden: int, *,
                  sparsity: float, beta: float, weight_decay: float, decoder: str = "sigmoid",
                  loss: str = "squared", tied: bool = False,
                  backend: str = "numba") -> tuple[float, np.ndarray]:
    """Sparse autoencoder objective and gradient on the chosen backend.

    The public entry point: checks every argument (including NaN/inf in ``X``
    and ``theta``), then calls ``backend``'s ``sae_cost_grad`` (see
    :func:`fastsae.reference.sae.sae_cost_grad` for the objective). A bfloat16
    ``X`` (``ml_dtypes.bfloat16``) runs oneMKL's bfloat16 GEMMs on
    ``backend="numba"`` (the extra ``fastsae-audio[mkl]``) and the NumPy twin of that
    arithmetic on ``backend="numpy"``.

    Returns
    -------
    cost : float
    grad : np.ndarray [shape=theta.shape, dtype=float64]
    """
    X = check_array(X, "X")
    theta = check_array(theta, "theta", ndim=1, dtype=np.float64)
    check_sae_options(theta, X, n_visible, n_hidden, sparsity, beta, weight_decay,
                      decoder, loss, tied, bfloat16=True)
    fn = backends.get_function(backend, "sae_cost_grad")
    return fn(theta, X, n_visible, n_hidden, sparsity=sparsity, beta=beta,
              weight_decay=weight_decay, decoder=decoder, loss=loss, tied=tied)


class SparseAutoencoder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, Estimator):
    """Sparse autoencoder trained with L-BFGS (UFLDL's ``sparseAutoencoderCost``).

    Learns ``n_hidden`` features of the rows of ``X``: the encoder
    ``a2 = σ(W1 x + b1)`` is trained to reconstruct ``x`` through the decoder
    ``a3 = σ(W2 a2 + b2)`` while the mean activation of each hidden unit is
    pulled towards ``sparsity`` (see :func:`fastsae.reference.sae.sae_cost_grad`).

    Parameters
    ----------
    n_hidden : int
        Number of hidden units (features).
    sparsity : float in (0, 1)
        Target mean activation ρ of each hidden unit.
    beta : float >= 0
        Weight of the KL sparsity penalty.
    weight_decay : float >= 0
        λ, the weight-decay coefficient.
    decoder : {"sigmoid", "linear"}
        ``"linear"`` for real-valued (e.g. whitened) input.
    loss : {"squared", "cross_entropy"}
        Cross-entropy needs ``decoder="sigmoid"`` and input in [0, 1].
    tied : bool
        Use ``W2 = W1.T`` (half the parameters).
    max_iter : int
        L-BFGS iterations.
    backend : {"numba", "numpy", "cuda"}
    dtype : {"float64", "float32", "bfloat16"}
        Precision of the computation (parameters are kept in float64).
        ``"bfloat16"`` (``backend="numba"`` or ``"numpy"``, NumPy input; needs
        ``pip install "fastsae-audio[mkl]"``, else ``fit`` raises
        :class:`fastsae.BackendUnavailableError`) trains with the matrix
        products in bfloat16 (oneMKL's bfloat16 GEMM, float32 accumulation; the
        elementwise work in float32; the encoder's weights as two bfloat16
        parts, both in one GEMM), faster than float32 on CPUs with
        AMX, on a precision schedule: L-BFGS runs on the bfloat16 objective
        while it makes progress, then switches to float32 (keeping its
        curvature pairs) when a line search fails or stops converged, when
        10 iterations gain less than 1e-4 of the objective, when the bfloat16
        gradient is more than 25 % off the float32 one (checked every 10
        iterations and whenever its norm halves), or for the last tenth of
        ``max_iter`` at the latest, so that the weights and the final cost
        are float32 ones (:func:`fastsae.base.lbfgs_two_precisions`).
        ``transform`` and the other methods compute in float32. The training
        data is held in float32 and in bfloat16 during ``fit``.
    n_jobs : int or None
        Numba threads during ``fit`` (None: Numba's default, all cores).
    random_state : int, Generator or None
        Seed of the initial weights.
    verbose : bool
        Show a progress bar with the current cost.
    warm_start : bool
        Start ``fit`` from the current weights when the model is fitted; when
        it also holds ``optimizer_state_`` (a checkpoint taken during a fit,
        see :meth:`fastsae.pipeline.SelfTaughtFeatures.set_training_state`),
        continue that L-BFGS run exactly, to ``max_iter`` iterations in all.

    Attributes
    ----------
    W1_ : np.ndarray [shape=(n_hidden, n_features)]
    b1_ : np.ndarray [shape=(n_hidden,)]
    W2_ : np.ndarray [shape=(n_features, n_hidden)]
    b2_ : np.ndarray [shape=(n_features,)]
    n_features_in_ : int
    loss_curve_ : list of float
        The objective after each L-BFGS iteration.
    n_iter_ : int
        L-BFGS iterations.
    n_evaluations_ : int
        Objective evaluations (line-search steps included).
    n_bfloat16_iter_ : int
        Of ``n_iter_``, the iterations in bfloat16 (``dtype="bfloat16"``; else 0).
    converged_, interrupted_ : bool
    fit_time_, objective_time_ : float
        Seconds spent in ``fit``, and in the objective during it.

    Notes
    -----
    A scikit-learn transformer: ``clone``, pipelines, grid search and
    ``get_feature_names_out`` work. With ``decoder="sigmoid"`` (or
    ``loss="cross_entropy"``) the input must lie in [0, 1]; the estimator's
    tags say it takes non-negative input only.

    Examples
    --------
    >>> import numpy as np, fastsae
    >>> X = np.random.default_rng(0).uniform(0.1, 0.9, (500, 16))
    >>> sae = fastsae.SparseAutoencoder(n_hidden=4, max_iter=30, random_state=0).fit(X)
    >>> sae.transform(X).shape
    (500, 4)
    """

    _bfloat16 = True

    def __init__(self, n_hidden: int = 25, *, sparsity: float = 0.01, beta: float = 3.0,
                 weight_decay: float = 1e-4, decoder: str = "sigmoid", loss: str = "squared",
                 tied: bool = False, max_iter: int = 400, backend: str = "numba",
                 dtype: DTypeLike = "float64", n_jobs: int | None = None,
                 random_state: RandomState = None, verbose: bool = False,
                 warm_start: bool = False) -> None:
        self._store_params(locals())

    # -- checks -------------------------------------------------------------
    def _validate_params(self):
        check_int(self.n_hidden, "n_hidden", low=1)
        self._check_sparsity_params()
        check_choice(self.decoder, "decoder", DECODERS)
        check_choice(self.loss, "loss", LOSSES)
        check_bool(self.tied, "tied")
        check_int(self.max_iter, "max_iter", low=1)
        check_bool(self.warm_start, "warm_start")
        self._validate_common()
        if self.loss == "cross_entropy" and self.decoder != "sigmoid":
            raise ParameterError(
                f"loss='cross_entropy' needs decoder='sigmoid'; got decoder={self.decoder!r}")

    def _takes_unit_input(self):
        return self.decoder == "sigmoid" or self.loss == "cross_entropy"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = [np.dtype(self.dtype).name] \
            if self.dtype in ("float32", "float64", np.float32, np.float64) else \
            ["float32"] if is_bfloat16(self.dtype) else ["float64"]
        return tags

    def _check_X(self, X, *, fitting=False):
        if not fitting:
            self._check_fitted("W1_")
            return self._check_rows(X, dtype=self._work_dtype(),
                                    n_features=self.n_features_in_)[0]
        self._validate_params()
        bf16 = is_bfloat16(self.dtype)
        self._refuse_bfloat16_on_cluster(_dask.is_dask_collection(X))
        X, lo_hi = self._check_rows(X, dtype=self._work_dtype(), dask=not bf16,
                                    device=not bf16, value_range=self._takes_unit_input())
        if lo_hi is not None and (lo_hi[0] < 0.0 or lo_hi[1] > 1.0):
            raise unit_range_error("X", *lo_hi, "the output is a sigmoid")
        return X

    # -- fitting ------------------------------------------------------------
    def _theta(self):
        arrays = [self.W1_] if self.tied else [self.W1_, self.W2_]
        return pack(arrays + [self.b1_, self.b2_])[0]

    def _objective(self, X, dtype=None):
        """``theta -> (cost, grad)`` on ``X`` (in ``dtype`` when given: a copy)."""
        if dtype is not None:
            X = X.astype(dtype)
        kw = dict(sparsity=self.sparsity, beta=self.beta, weight_decay=self.weight_decay,
                  decoder=self.decoder, loss=self.loss, tied=self.tied)
        if _dask.is_dask_collection(X):
            return _dask.sae_objective(None, X, X.shape[1], self.n_hidden, backend=self.backend,
                                       n_jobs=self.n_jobs, **kw)
        cost_grad = backends.get_function(self.backend, "sae_cost_grad")
        n_visible, n_hidden = X.shape[1], self.n_hidden
        X = backends.to_device(self.backend, X)
        return lambda theta: cost_grad(theta, X, n_visible, n_hidden, **kw)

    def fit(self, X: ArrayLike, y: object = None, *, callback: Callback | None = None) -> Self:
        """Learn the weights from the rows of ``X``.

        Parameters
        ----------
        X : array-like, dask array or device array [shape=(n_samples, n_features)]
            Values in [0, 1] unless ``decoder="linear"``. A dask array trains
            on the cluster, its shards staying on the workers; a CuPy or Numba
            device array (with ``backend="cuda"``) stays on the GPU.
        y : ignored
        callback : callable ``(iteration, theta, cost)``, optional
            Called after every L-BFGS iteration (:class:`fastsae.base.Estimator`).

        Returns
        -------
        self : fitted; Ctrl-C ends training early with the best weights so far.
        """
        X = self._check_X(X, fitting=True)          # the parameters first, then X
        n_visible = X.shape[1]
        bf16 = self._require_bfloat16_packages()   # the packages, before any work
        # activations and deltas, each thread's chunk buffers and gradient copies; rows
        # of a dask array live on the workers (each checks its own shards' work)
        rows = 0 if _dask.is_dask_collection(X) else X.shape[0]
        self._check_fit_memory(layout_size(sae_layout(n_visible, self.n_hidden, self.tied)),
                               (3 * rows * self.n_hidden + rows * n_visible
                                + 2 * _n_threads() * self.n_hidden * n_visible)
                               * X.dtype.itemsize + (rows * n_visible * 2 if bf16 else 0),
                               f" with n_hidden={self.n_hidden} on {n_visible} features")
        state = None
        if self.warm_start and hasattr(self, "W1_") and self.n_features_in_ == n_visible:
            theta0 = self._theta()
            state = getattr(self, "optimizer_state_", None)     # an exact resume
        else:
            theta0 = init_params(n_visible, self.n_hidden, random_state=self.random_state,
                                 tied=self.tied)
        if bf16:
            result = self._run_lbfgs(self._objective(X, bfloat16_dtype()), theta0,
                                     exact=self._objective(X), max_iter=self.max_iter,
                                     callback=callback, state=state)
        else:
            result = self._run_lbfgs(self._objective(X), theta0, max_iter=self.max_iter,
                                     callback=callback, state=state)
        self.n_bfloat16_iter_ = int(getattr(result, "n_fast_iter", 0))
        self._set_theta(result.theta, n_visible)
        return self

    def _set_theta(self, theta, n_visible):
        W1, W2, b1, b2 = unpack_sae(theta, n_visible, self.n_hidden, self.tied)
        self.W1_ = np.array(W1)
        self.W2_ = np.array(W2)
        self.b1_ = np.array(b1)
        self.b2_ = np.array(b2)
        self.n_features_in_ = n_visible

    @property
    def _n_features_out(self):
        return self.W1_.shape[0]

    def _expected_shapes(self):
        if not hasattr(self, "W1_"):
            return {}
        v, h = self.n_features_in_, self.n_hidden
        return {"W1_": (h, v), "W2_": (v, h), "b1_": (h,), "b2_": (v,)}

    # -- using it -----------------------------------------------------------
    def transform(self, X: ArrayLike) -> np.ndarray:
        """Hidden activations ``σ(X W1ᵀ + b1)`` [shape=(n_samples, n_hidden)], in ``dtype``."""
        X = self._check_X(X)
        dt = X.dtype
        return expit(X @ self.W1_.T.astype(dt) + self.b1_.astype(dt))

    def reconstruct(self, X: ArrayLike) -> np.ndarray:
        """The decoder's output for ``X`` [shape=(n_samples, n_features)]."""
        H = self.transform(X)
        dt = H.dtype
        Z = H @ self.W2_.T.astype(dt) + self.b2_.astype(dt)
        return expit(Z) if self.decoder == "sigmoid" else Z

    def reconstruction_error(self, X: ArrayLike) -> float:
        """Mean over rows of ½‖reconstruction − x‖²."""
        X = self._check_X(X)
        diff = self.reconstruct(X) - X
        return float(0.5 * np.mean(np.sum(diff.astype(np.float64) ** 2, axis=1)))

    def cost(self, X: ArrayLike) -> float:
        """The training objective at the current weights on ``X``."""
        X = self._check_X(X)
        return float(self._objective(X)(self._theta())[0])
