"""Scaling and whitening of window rows before the autoencoder (UFLDL's preprocessing).

- :func:`normalize_sigmoid` / :class:`SigmoidNormalizer`: UFLDL's
  ``normalizeData``, rows into [0.1, 0.9] for a sigmoid decoder.
- :class:`PCAWhitening`: PCA or ZCA whitening with UFLDL's epsilon
  regularisation, for a linear decoder.
"""
from __future__ import annotations

from typing import Literal, Self

import numpy as np

from sklearn.base import ClassNamePrefixFeaturesOutMixin, OneToOneFeatureMixin, TransformerMixin

from .base import Estimator
from .core.checks import check_array, check_bool, check_choice, check_dtype, check_int, check_scalar
from .core.types import ArrayLike, DTypeLike
from .exceptions import ParameterError

CENTERS = ("feature", "example", None)

#: Rows per block of the covariance accumulation: a block of float32 rows of
#: a few hundred features stays in cache while BLAS multiplies it.
_BLOCK_BYTES = 16 << 20


def _row_centred(X):
    return X - X.mean(axis=1, keepdims=True, dtype=np.float64).astype(X.dtype)


def _sigmoid_scale(Xc, lim):
    out = np.clip(Xc, -lim, lim, out=Xc)
    out /= lim
    out += 1.0
    out *= 0.4
    out += 0.1
    # the ends may round one ulp outside [0.1, 0.9]
    return np.clip(out, 0.1, 0.9, out=out)


class SigmoidNormalizer(OneToOneFeatureMixin, TransformerMixin, Estimator):
    """UFLDL's ``normalizeData`` as a fit/transform object.

    ``transform`` removes each row's mean, truncates to ``± n_std * std_``
    and maps ``[-n_std*std_, n_std*std_]`` linearly onto ``[0.1, 0.9]``, where
    ``std_`` is the standard deviation of all the row-centred training values
    (one number, ``ddof=1`` like MATLAB's ``std(patches(:))``). Fitting once
    and transforming the test data scales both the same way.

    Parameters
    ----------
    n_std : float > 0
        Truncation in standard deviations (UFLDL: 3).

    Attributes
    ----------
    std_ : float
        Standard deviation of the row-centred training data.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from fastsae import preprocess
    >>> X = np.random.default_rng(0).normal(5.0, 2.0, (100, 8))
    >>> norm = preprocess.SigmoidNormalizer().fit(X)
    >>> Y = norm.transform(X)
    >>> bool(Y.min() >= 0.1 and Y.max() <= 0.9)
    True
    """

    def __init__(self, n_std: float = 3.0) -> None:
        self.n_std = n_std

    def fit(self, X: ArrayLike, y: object = None) -> Self:
        """Learn ``std_`` from ``X`` [shape=(n_samples, n_features)]."""
        check_scalar(self.n_std, "n_std", low=0.0, low_open=True)
        X = check_array(X, "X")
        if X.size < 2:
            raise ParameterError(f"X must hold at least 2 values to estimate a standard "
                                 f"deviation; got shape {X.shape}")
        std = float(np.std(_row_centred(X), ddof=1, dtype=np.float64))
        if not std > 0.0:
            raise ParameterError("X is constant within every row (standard deviation 0 after "
                                 "removing each row's mean); there is nothing to scale")
        self.std_ = std
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Rows of ``X`` mapped into [0.1, 0.9] (same dtype, float32 or float64).

        Returns
        -------
        Y : np.ndarray [shape=(n_samples, n_features)]
        """
        self._check_fitted("std_")
        X = check_array(X, "X")
        if X.shape[1] != self.n_features_in_:
            raise ParameterError(f"X must have {self.n_features_in_} features (as in fit); "
                                 f"got shape {X.shape}")
        return _sigmoid_scale(_row_centred(X), X.dtype.type(self.n_std * self.std_))

    def fit_transform(self, X: ArrayLike, y: object = None) -> np.ndarray:
        return self.fit(X).transform(X)


def normalize_sigmoid(X: ArrayLike, *, n_std: float = 3.0) -> np.ndarray:
    """UFLDL's ``normalizeData``: rows into [0.1, 0.9] for a sigmoid decoder.

    Removes each row's (example's) mean, truncates to ``± n_std`` standard
    deviations of all the row-centred values, rescales ``[-1, 1] -> [0.1, 0.9]``.
    To scale test data like training data use :class:`SigmoidNormalizer`.

    Parameters
    ----------
    X : array-like [shape=(n_samples, n_features)]
    n_std : float > 0

    Returns
    -------
    Y : np.ndarray [shape=(n_samples, n_features)]
        float32 for float32 input, float64 otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> from fastsae import preprocess
    >>> Y = preprocess.normalize_sigmoid(np.random.default_rng(0).normal(size=(50, 10)))
    >>> float(Y.min()) >= 0.1, float(Y.max()) <= 0.9, round(float(Y.mean()), 2)
    (True, True, 0.5)
    """
    return SigmoidNormalizer(n_std=n_std).fit_transform(X)


def _block_rows(n_features, itemsize):
    return max(64, _BLOCK_BYTES // max(1, n_features * itemsize))


def _gram(X, shift):
    """``Σ (x - shift)(x - shift)^T`` and ``Σ (x - shift)`` in float64.

    Blocks of rows are shifted into a buffer with an extra column of ones and
    multiplied by BLAS in X's dtype (``Z.T @ Z`` is one syrk, whose last row
    is the block's column sums); the block results are summed in float64, so
    float32 rounding only accumulates over one block, not over all rows.
    """
    m, n = X.shape
    rows = min(_block_rows(n, X.itemsize), m)
    G = np.zeros((n + 1, n + 1))
    buf = np.empty((rows, n + 1), dtype=X.dtype)
    buf[:, n] = 1.0
    part = np.empty((n + 1, n + 1), dtype=X.dtype)
    shift = shift.astype(X.dtype)
    for i in range(0, m, rows):
        block = X[i:i + rows]
        Z = buf[:len(block)]
        np.subtract(block, shift, out=Z[:, :n])
        np.matmul(Z.T, Z, out=part)
        G += part
    return G[:n, :n], G[n, :n].copy()


class PCAWhitening(ClassNamePrefixFeaturesOutMixin, TransformerMixin, Estimator):
    """PCA or ZCA whitening (UFLDL's ``pca_gen``/``zca`` exercises).

    ``fit`` centres the data (see ``center``), forms the covariance
    ``Σ = Xc.T @ Xc / m`` (note ``1/m``, as UFLDL, not ``1/(m-1)``) and
    diagonalises it with ``numpy.linalg.eigh``. ``transform`` projects onto
    the kept eigenvectors and divides by ``sqrt(λ + epsilon)``; with
    ``zca=True`` it rotates back, ``U diag(1/sqrt(λ+ε)) U.T (x - mean)``, so the
    output stays in the input space and looks like the input.

    Precision: the covariance is summed in float64 over blocks of about 16 MB
    of rows; within a block the products use X's dtype (float32 input: float32
    BLAS, so rounding grows with the block, not with the number of rows; float64
    input: float64 throughout). Output has X's dtype.

    Parameters
    ----------
    n_components : int or None
        Keep this many leading components.
    retain : float in (0, 1] or None
        Keep the fewest leading components whose variance is at least this
        fraction of the total (UFLDL: 0.99). Give at most one of
        ``n_components`` and ``retain``; with neither, keep all.
    epsilon : float >= 0
        Regulariser added to every eigenvalue before the division (UFLDL: 0.1
        for natural images; 0 gives exact whitening). With 0, ``fit`` raises
        ParameterError if a kept eigenvalue is below ``10 eps λ_max`` (``eps``
        of X's dtype: numerically zero at X's precision).
    zca : bool
        ZCA (rotate back to the input space) instead of PCA.
    center : {"feature", "example", None}
        ``"feature"``: remove each feature's (column's) mean, learned in fit
        (the usual PCA). ``"example"``: remove each row's own mean, in fit and
        in transform (UFLDL's choice for natural-image patches; the covariance
        is then the second moment and ``mean_`` is zero). None: no centring.

    Attributes
    ----------
    components_ : np.ndarray [shape=(n_components_, n_features), dtype=float64]
        Eigenvectors (rows), by decreasing eigenvalue, sign fixed so the
        largest-magnitude entry of each is positive.
    explained_variance_ : np.ndarray [shape=(n_components_,)]
        Their eigenvalues.
    explained_variance_ratio_ : np.ndarray [shape=(n_components_,)]
    mean_ : np.ndarray [shape=(n_features,)]
    n_components_ : int
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from fastsae import preprocess
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(2000, 5)) @ rng.normal(size=(5, 5))
    >>> pca = preprocess.PCAWhitening().fit(X)
    >>> np.allclose(np.cov(pca.transform(X).T, bias=True), np.eye(5))
    True
    """

    def __init__(self, n_components: int | None = None, *, retain: float | None = None,
                 epsilon: float = 0.0, zca: bool = False,
                 center: Literal["feature", "example"] | None = "feature") -> None:
        self._store_params(locals())

    def _validate_params(self):
        if self.n_components is not None and self.retain is not None:
            raise ParameterError("give at most one of n_components and retain; got "
                                 f"n_components={self.n_components!r}, retain={self.retain!r}")
        if self.n_components is not None:
            check_int(self.n_components, "n_components", low=1)
        if self.retain is not None:
            check_scalar(self.retain, "retain", low=0.0, high=1.0, low_open=True)
        check_scalar(self.epsilon, "epsilon", low=0.0)
        check_bool(self.zca, "zca")
        check_choice(self.center, "center", CENTERS)

    def _check_X(self, X, *, fitting):
        # Finite values are checked cheaply: NaN/inf in X makes the Gram
        # diagonal (fit) or the output (transform) non-finite.
        X = check_array(X, "X", finite=False)
        if not fitting:
            self._check_fitted("components_")
            if X.shape[1] != self.n_features_in_:
                raise ParameterError(f"X must have {self.n_features_in_} features (as in "
                                     f"fit); got shape {X.shape}")
        if self.center == "example":
            X = _row_centred(X)
        return X

    @staticmethod
    def _raise_not_finite(X):
        bad = int(X.size - np.count_nonzero(np.isfinite(X)))
        raise ParameterError(f"X contains {bad} NaN or infinite value(s)")

    def fit(self, X: ArrayLike, y: object = None) -> Self:
        """Learn the mean and the eigen-decomposition of the covariance of ``X``.

        Parameters
        ----------
        X : array-like [shape=(n_samples, n_features)]
        y : ignored

        Returns
        -------
        self
        """
        self._validate_params()
        X = self._check_X(X, fitting=True)
        m, n = X.shape
        if self.n_components is not None and self.n_components > n:
            raise ParameterError(f"n_components must be <= n_features={n}; "
                                 f"got {self.n_components}")
        if self.center == "feature":
            # Shift by the first rows' mean so that the blocks are nearly centred,
            # then correct exactly: Σ(x-μ)(x-μ)' = Σ(x-c)(x-c)' - m d d', d = μ - c.
            shift = X[:1024].mean(axis=0, dtype=np.float64)
            shift = shift.astype(X.dtype).astype(np.float64)   # exactly what _gram subtracts
            if not np.isfinite(shift).all():
                self._raise_not_finite(X)
            with np.errstate(invalid="ignore"):     # inf in X: raised below
                G, s = _gram(X, shift)
            d = s / m
            cov = G / m - np.outer(d, d)
            mean = shift + d
        else:
            with np.errstate(invalid="ignore"):
                G, _ = _gram(X, np.zeros(n))
            cov = G / m
            mean = np.zeros(n)
        if not np.isfinite(np.diag(G)).all():
            self._raise_not_finite(X)
        return self._fit_moments(mean, cov, X.dtype)

    def fit_covariance(self, covariance: ArrayLike, mean: ArrayLike | None = None, *,
                       dtype: DTypeLike = "float64") -> Self:
        """Learn the whitening from the data's covariance (and mean) instead of the data.

        For data that are not in one place: the mean and covariance are
        ``n_features x n_features`` sums, which a reduction over shards forms
        (:func:`fastsae.distributed.row_moments`). ``fit(X)`` is
        ``fit_covariance(Σ, μ)`` with ``μ = X.mean(0)`` and
        ``Σ = (X - μ).T @ (X - μ) / m`` (``center="feature"``), up to rounding.

        Parameters
        ----------
        covariance : array-like [shape=(n_features, n_features)]
            ``Σ`` as ``fit`` forms it (``1/m``): about the mean for
            ``center="feature"``; for ``center="example"``, the second moment
            of the row-centred data; for ``center=None``, the second moment.
        mean : array-like [shape=(n_features,)] or None
            ``mean_``: the data's mean with ``center="feature"`` (required
            there); None otherwise (zero).
        dtype : {"float64", "float32"}
            The data's dtype: its precision sets the ``epsilon=0`` check.

        Returns
        -------
        self
        """
        self._validate_params()
        dt = check_dtype(dtype)
        cov = np.array(covariance, dtype=np.float64)
        if cov.ndim != 2 or cov.shape[0] != cov.shape[1] or cov.shape[0] < 1:
            raise ParameterError("covariance must be a square 2-D array (n_features x "
                                 f"n_features); got shape {cov.shape}")
        n = cov.shape[0]
        if self.center == "feature":
            if mean is None:
                raise ParameterError("center='feature' needs the mean of the data (mean=)")
        elif mean is not None:
            raise ParameterError(f"center={self.center!r} removes no feature mean: give "
                                 "mean=None")
        mean = np.zeros(n) if mean is None else np.array(mean, dtype=np.float64)
        if mean.shape != (n,):
            raise ParameterError(f"mean must have shape ({n},) like the covariance; got "
                                 f"{mean.shape}")
        if not (np.isfinite(cov).all() and np.isfinite(mean).all()):
            raise ParameterError("covariance and mean must be finite")
        if self.n_components is not None and self.n_components > n:
            raise ParameterError(f"n_components must be <= n_features={n}; "
                                 f"got {self.n_components}")
        return self._fit_moments(mean, cov, dt)

    def _fit_moments(self, mean, cov, dtype):
        n = cov.shape[0]
        cov = 0.5 * (cov + cov.T)
        evals, evecs = np.linalg.eigh(cov)
        evals = np.maximum(evals[::-1], 0.0)
        evecs = evecs[:, ::-1].T.copy()
        signs = np.sign(evecs[np.arange(n), np.argmax(np.abs(evecs), axis=1)])
        evecs *= signs[:, None]
        total = evals.sum()
        if self.n_components is not None:
            k = self.n_components
        elif self.retain is not None:
            frac = np.cumsum(evals) / total if total > 0 else np.ones(n)
            k = int(np.searchsorted(frac, self.retain * (1 - 1e-12)) + 1)
            k = min(k, n)
        else:
            k = n
        lam = evals[:k]
        # Below this a variance is rounding noise at X's precision: whitening
        # it with epsilon=0 would blow that noise up to unit variance (or divide by 0).
        floor = 10.0 * np.finfo(dtype).eps * float(evals[0])
        if self.epsilon == 0.0 and lam[-1] <= floor:
            bad = int(np.count_nonzero(lam <= floor))
            raise ParameterError(
                f"{bad} of the {k} kept components have (numerically) zero variance, which "
                "epsilon=0 cannot whiten; set epsilon > 0, or keep fewer components "
                "(n_components or retain)")
        self.mean_ = mean
        self.components_ = evecs[:k]
        self.explained_variance_ = lam
        self.explained_variance_ratio_ = lam / total if total > 0 else np.zeros(k)
        self.n_components_ = k
        self.n_features_in_ = n
        self._set_matrices()
        return self

    def _set_matrices(self):
        scale = np.sqrt(self.explained_variance_ + self.epsilon)
        W = self.components_.T / scale                       # (n_features, k)
        Winv = self.components_ * scale[:, None]             # (k, n_features)
        if self.zca:
            W = W @ self.components_
            Winv = self.components_.T @ Winv
        self._W, self._Winv = W, Winv
        self._cache = {}
        # A NaN or inf anywhere in a row of X makes every output of that row
        # that it is multiplied into non-finite; a column of W without exact
        # zeros therefore sees all of them (even a BLAS that skips zero
        # multipliers), so transform checks one output column, not all of X.
        full = np.flatnonzero(np.all(W != 0.0, axis=0))
        self._probe = int(full[0]) if full.size else -1

    def affine_map(self) -> tuple[np.ndarray, np.ndarray]:
        """``(A, c)`` with ``transform(x) == A @ x + c`` for one example ``x``.

        Whitening is linear, so a filter ``w`` learned on whitened patches is
        the filter ``w @ A`` on raw patches with bias ``w @ c``
        (:class:`fastsae.conv.ConvolutionalFeatures` folds it in this way).

        Returns
        -------
        A : np.ndarray [shape=(n_out, n_features)], float64
        c : np.ndarray [shape=(n_out,)], float64
        """
        self._check_fitted("components_")
        W = self._ensure_matrices()[0]                       # transform(X) = (X' - mean_) @ W
        A = W.T.copy()
        if self.center == "example":                         # X' = X - row means
            A -= A.sum(axis=1, keepdims=True) / A.shape[1]
        return A, -(self.mean_ @ W)

    def _ensure_matrices(self):
        if "_W" not in vars(self):                           # e.g. after fastsae.load
            self._set_matrices()
        return self._W, self._Winv

    def _matrices(self, dtype):
        self._ensure_matrices()
        if dtype not in self._cache:
            W = self._W.astype(dtype)
            bias = (self.mean_ @ self._W).astype(dtype)
            self._cache[dtype] = (W, bias, self._Winv.astype(dtype), self.mean_.astype(dtype))
        return self._cache[dtype]

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Whitened rows: ``(x - mean_) @ W`` with ``W = components_.T / sqrt(λ + ε)``
        (ZCA: ``@ components_`` once more).

        Parameters
        ----------
        X : array-like [shape=(n_samples, n_features)]

        Returns
        -------
        Y : np.ndarray [shape=(n_samples, n_components_)], or
            [shape=(n_samples, n_features)] for ZCA; X's float dtype.
        """
        X = self._check_X(X, fitting=False)
        W, bias, _, _ = self._matrices(X.dtype)
        with np.errstate(invalid="ignore"):     # inf in X: raised below
            Y = X @ W
            Y -= bias
        probe = Y[:, self._probe] if self._probe >= 0 else np.ones(len(Y), Y.dtype) @ Y
        if not np.isfinite(probe).all() and not np.isfinite(X).all():
            self._raise_not_finite(X)
        return Y

    def fit_transform(self, X: ArrayLike, y: object = None) -> np.ndarray:
        return self.fit(X).transform(X)

    @property
    def _n_features_out(self):
        return self.n_features_in_ if self.zca else self.n_components_

    def _expected_shapes(self):
        if not hasattr(self, "components_"):
            return {}
        n, k = self.n_features_in_, self.n_components_
        return {"mean_": (n,), "components_": (k, n), "explained_variance_": (k,)}

    def inverse_transform(self, Y: ArrayLike) -> np.ndarray:
        """Back to the input space: ``Y @ W⁺ + mean_``.

        Exact (up to rounding) when every component is kept; otherwise the
        projection onto the kept ones. With ``center="example"`` the rows'
        own means are not restored.

        Parameters
        ----------
        Y : array-like [shape=(n_samples, n_components_)] ([..., n_features] for ZCA)

        Returns
        -------
        X : np.ndarray [shape=(n_samples, n_features)]
        """
        self._check_fitted("components_")
        width = self.n_features_in_ if self.zca else self.n_components_
        Y = check_array(Y, "Y", n_cols=width)
        _, _, Winv, mean = self._matrices(Y.dtype)
        X = Y @ Winv
        X += mean
        return X
