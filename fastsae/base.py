"""What every fastsae estimator shares: scikit-learn's base class, one fit path, one input check.

Every estimator is a scikit-learn estimator (:class:`sklearn.base.BaseEstimator`
and the mixins that fit it), so ``clone``, ``Pipeline``, ``GridSearchCV``,
``cross_val_score`` and ``check_estimator`` work. :class:`Estimator` adds:

- :meth:`Estimator._check_rows`: the one input check for NumPy, dask and
  device (CUDA) arrays of rows;
- :meth:`Estimator._run_lbfgs`: the one fit path. It runs L-BFGS with the
  estimator's Numba threads, turns Ctrl-C (``KeyboardInterrupt``) or a
  ``StopIteration`` raised by the ``fit`` callback into "stop and keep the
  best parameters so far" (with a warning), runs a precision schedule when
  given a fast and an exact objective (bfloat16, then float32: see
  :func:`lbfgs_two_precisions`), frees the backend's buffers and
  records the fitted attributes every estimator has: ``loss_curve_``,
  ``n_iter_``, ``n_evaluations_`` (objective calls, line-search steps
  included), ``converged_``, ``interrupted_``, ``fit_time_`` and
  ``objective_time_``.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any, Self

import numpy as np
from sklearn.base import BaseEstimator

from . import _dask, backends
from .core.bfloat16 import bfloat16_dtype, is_bfloat16
from .core.checks import check_array, check_bool, check_dtype, check_n_jobs, check_scalar
from .core.memory import check_memory, lbfgs_bytes
from .core.threads import numba_threads
from .core.types import ArrayLike, Callback, Objective
from .exceptions import ConvergenceWarning, NotFittedError, ParameterError
from .optim import LBFGSResult, checkpoint_state, lbfgs


def unit_range_error(name: str, lo: float, hi: float,
                     what: str = "the reconstruction is a sigmoid") -> ParameterError:
    """The ParameterError for data outside [0, 1] given to a sigmoid decoder."""
    negative = "Negative values in data passed to fit: " if lo < 0 else ""
    return ParameterError(
        f"{negative}{name} must lie in [0, 1] for decoder='sigmoid' ({what}); got values in "
        f"[{lo:.4g}, {hi:.4g}]. Scale it (fastsae.preprocess.normalize_sigmoid) or use "
        f"decoder='linear'")


class Estimator(BaseEstimator):
    """scikit-learn's ``BaseEstimator`` with fastsae's input check and fit path.

    ``__init__`` only stores its arguments; validation happens in ``fit``.
    Fitted attributes end in ``_``.
    """

    #: The input is images ``(n, H, W)`` or ``(n, C, H, W)``, not rows (the tags say so).
    _takes_images = False
    #: ``dtype="bfloat16"`` is accepted (else refused with a ParameterError).
    _bfloat16 = False

    def _takes_unit_input(self):
        """Whether the input must lie in [0, 1] (a sigmoid decoder): tagged positive_only."""
        return getattr(self, "decoder", None) == "sigmoid"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = self._takes_unit_input()
        if self._takes_images:
            tags.input_tags.two_d_array = False
            tags.input_tags.three_d_array = True
        return tags

    def _store_params(self, params):
        """``__init__``'s one statement: keep every argument as an attribute, unchanged.

        ``params`` is ``__init__``'s ``locals()``; the signature stays the one
        place the parameters are written (what ``get_params`` reads).
        """
        for name in self._get_param_names():
            setattr(self, name, params[name])

    def _check_sparsity_params(self):
        """The sparse autoencoder's ρ, β and λ: sparsity in (0, 1), beta and weight_decay >= 0."""
        check_scalar(self.sparsity, "sparsity", low=0.0, high=1.0, low_open=True, high_open=True)
        check_scalar(self.beta, "beta", low=0.0)
        check_scalar(self.weight_decay, "weight_decay", low=0.0)

    def set_params(self, **params: Any) -> Self:
        valid = self._get_param_names()
        for key in params:
            if key.partition("__")[0] not in valid:
                raise ParameterError(f"{type(self).__name__} has no parameter {key!r}; valid: "
                                     f"{', '.join(valid)}")
        return super().set_params(**params)

    def _validate_common(self):
        """The options every estimator has: backend, dtype, n_jobs, verbose."""
        backends.check_backend_name(self.backend)
        check_dtype(self.dtype, bfloat16=self._bfloat16)
        if is_bfloat16(self.dtype) and self.backend not in ("numba", "numpy"):
            raise ParameterError(f"dtype='bfloat16' needs backend='numba' or 'numpy'; got "
                                 f"backend={self.backend!r}")
        check_n_jobs(self.n_jobs)
        check_bool(self.verbose, "verbose")

    def _refuse_bfloat16_on_cluster(self, on_cluster):
        """dtype='bfloat16' trains on NumPy arrays only: a ParameterError for dask input."""
        if on_cluster and is_bfloat16(self.dtype):
            raise ParameterError("dtype='bfloat16' trains on NumPy arrays, not dask arrays; "
                                 "use dtype='float32' on a cluster")

    def _require_bfloat16_packages(self):
        """With dtype='bfloat16', before any work: oneMKL (the Numba backend's GEMM) and
        ml-dtypes, else BackendUnavailableError naming the extra. Returns whether bfloat16."""
        if not is_bfloat16(self.dtype):
            return False
        if self.backend == "numba":
            from .kernels import _mkl
            _mkl.ensure_available()
        bfloat16_dtype()
        return True

    def _work_dtype(self):
        """The dtype of checked input and of the results: the estimator's, float32
        for bfloat16 (which only the fit's matrix products use)."""
        return "float32" if is_bfloat16(self.dtype) else self.dtype

    def _pair_dtype(self):
        """How L-BFGS stores its correction pairs for this estimator: float32 when the
        objective is float32 or bfloat16 (half the memory and time of the optimizer's
        own work), float64 otherwise."""
        return "float64" if np.dtype(self._work_dtype()) == np.float64 else "float32"

    def _check_fit_memory(self, n_params, work_bytes=0, what=""):
        """Refuse a fit whose L-BFGS state (``n_params`` float64 parameters, 100
        correction pairs) and working arrays (``work_bytes``) would not fit in memory."""
        pair_bytes = np.dtype(self._pair_dtype()).itemsize
        check_memory(lbfgs_bytes(n_params, pair_bytes=pair_bytes) + int(work_bytes),
                     f"{type(self).__name__}.fit{what} ({n_params:,} parameters)",
                     hint="use fewer units or filters, or fewer examples")

    def _expected_shapes(self):
        """{fitted attribute: the shape its parameters imply}, for checking loaded model files
        (:func:`fastsae.load`); empty for an unfitted estimator. Estimators with weights
        override it."""
        return {}

    def _check_fitted(self, attr):
        if not hasattr(self, attr):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit first")

    def _check_n_features(self, X, n_features, name="X"):
        if X.shape[1] != n_features:
            raise ParameterError(
                f"{name} has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{n_features} features as input")

    def _check_rows(self, X, name="X", *, dtype=None, dask=False, device=False,
                    value_range=False, n_features=None):
        """``(X, (lo, hi) or None)``: rows of examples, checked once, where they live.

        A dask array (``dask=True``) is checked on the cluster and persisted
        there; a device array (``device=True`` and ``backend="cuda"``) is
        checked on the GPU; anything else becomes a C-contiguous NumPy array
        of ``dtype`` (default: the estimator's). Every kind: 2-D, at least one
        row and one column, no NaN or infinity. With ``value_range``, also its
        smallest and largest values (found in the same pass on a cluster or
        GPU); with ``n_features``, that many columns.
        """
        dtype = check_dtype(self._work_dtype() if dtype is None else dtype)
        lo_hi = None
        if dask and _dask.is_dask_collection(X):
            X, lo, hi = _dask.check_dask_array(X, name, dtype=dtype)
            lo_hi = (lo, hi) if value_range else None
        elif device and getattr(self, "backend", None) == "cuda" and _is_device_array(X):
            from . import cuda
            X = cuda.check_device_array(X, name, dtype=dtype)
            if value_range:
                lo, hi, _ = cuda.value_range(X)
                lo_hi = (lo, hi)
        else:
            X = check_array(X, name, dtype=dtype)
            if value_range:
                lo_hi = (float(X.min()), float(X.max()))
        if n_features is not None:
            self._check_n_features(X, n_features, name)
        return X, lo_hi

    def _run_lbfgs(self, fun, theta0, *, max_iter, callback=None, desc=None, record=True,
                   state=None, exact=None):
        """L-BFGS on ``fun`` from ``theta0`` (or resumed from ``state``): the one fit path.

        With ``exact`` (the same objective in a slower, more precise arithmetic),
        ``fun`` is the fast one and the run follows :func:`lbfgs_two_precisions`.
        With ``record``, sets the fitted attributes from the run. While it runs,
        ``self._live`` holds the optimizer's state (for checkpoints); a run that
        finishes drops any ``optimizer_state_`` it resumed from. Returns the
        :class:`fastsae.optim.LBFGSResult`.
        """
        desc = desc or type(self).__name__
        self._live = {}
        kw = dict(max_iter=max_iter, callback=callback, desc=desc, state=state, live=self._live,
                  verbose=bool(getattr(self, "verbose", False)), pair_dtype=self._pair_dtype())
        try:
            with numba_threads(getattr(self, "n_jobs", None)):
                result = (lbfgs(fun, theta0, **kw) if exact is None
                          else lbfgs_two_precisions(fun, exact, theta0, **kw))
        finally:
            backends.release(getattr(self, "backend", "numba"))
            self._live = None
        if not result.interrupted:
            self.__dict__.pop("optimizer_state_", None)
        if record:
            self.loss_curve_ = list(result.loss_curve)
            self.n_iter_ = result.n_iter
            self.n_evaluations_ = result.n_evals
            self.converged_ = result.converged
            self.interrupted_ = result.interrupted
            self.fit_time_ = result.time_total
            self.objective_time_ = result.time_objective
        if result.interrupted:
            warnings.warn(f"{type(self).__name__}.fit: {desc} {result.message} (cost "
                          f"{result.cost:.6g} after {result.n_iter} iterations)",
                          RuntimeWarning, stacklevel=3)
        return result


#: The precision schedule: the last tenth of the iterations run in the exact arithmetic,
#: and the fast one ends sooner when 10 iterations gain less than 1e-4 of the objective.
EXACT_FRACTION = 0.1
STALL_ITERATIONS = 10
STALL_DECREASE = 1e-4
#: ... and when, checked every CHECK_EVERY iterations and each time the fast gradient's
#: norm has halved, the fast gradient is off the exact one by more than this fraction of
#: the exact one's norm; never twice within CHECK_MIN_GAP iterations (each check is one
#: exact evaluation: early on, the norm halves every few iterations).
GRADIENT_AGREEMENT = 0.25
CHECK_EVERY = 10
CHECK_MIN_GAP = 5


def vector_norm(x: np.ndarray) -> float:
    """Euclidean norm of a float array, in a Numba loop (:func:`fastsae.kernels._math.sumsq`).

    ``np.linalg.norm`` of a long vector is a BLAS call that wakes NumPy's
    OpenBLAS threads, which then spin for a while and take the cores from the
    next kernel call: one such norm per L-BFGS iteration made the bfloat16
    evaluations of the audio-shape autoencoder 1.45 x slower (2 cores).
    """
    from .kernels._math import sumsq             # loaded by the fit's kernels anyway
    return float(np.sqrt(sumsq(x)))


def lbfgs_two_precisions(fast: Objective, exact: Objective, theta0: ArrayLike, *,
                         max_iter: int, callback: Callback | None = None,
                         state: dict[str, Any] | None = None, live: dict[str, Any] | None = None,
                         **kw: Any) -> LBFGSResult:
    """L-BFGS on ``fast`` while it makes progress, then on ``exact`` to ``max_iter``.

    ``fast`` and ``exact`` compute the same objective, ``fast`` in a coarser
    arithmetic (bfloat16 products) whose rounding errors stop L-BFGS short of
    the optimum: its gradient is not quite the slope of its own cost, so line
    searches start to fail. The run therefore switches to ``exact`` (float32)
    when the first of these happens:

    * the fast phase's line search finds no lower objective, or it stops
      converged (its own gradient or steps below the tolerances);
    * it stalls: the last :data:`STALL_ITERATIONS` iterations lowered the
      objective by less than :data:`STALL_DECREASE` of its value;
    * its gradient has become too inexact to steer: every
      :data:`CHECK_EVERY` iterations, and each time the fast gradient's norm
      has halved (but never twice within :data:`CHECK_MIN_GAP` iterations),
      the exact gradient is computed at the same point (one
      exact evaluation), and the run switches when they differ by more than
      :data:`GRADIENT_AGREEMENT` of the exact one's norm. Rounding a
      weight to one bfloat16 moves the point the fast gradient is taken at
      by about ``2⁻⁹`` of it; near an optimum that shift's effect (the
      Hessian times it) outgrows the gradient itself, most of all for
      weights shared by many positions or feeding every unit (which is why
      the convolutional filters and the autoencoder's encoder are carried as
      two bfloat16 parts, about ``2⁻¹⁷``; the other weights are not);
    * only the last :data:`EXACT_FRACTION` of ``max_iter`` remains (at least
      one iteration: the returned point and cost are always exact ones).

    The switch keeps the L-BFGS correction pairs (the curvature learnt so
    far) and re-evaluates the objective and gradient at the current point in
    the exact arithmetic; the iteration count runs on, so ``max_iter`` counts
    both phases. ``loss_curve`` holds each iteration's objective in the
    arithmetic of its phase. A ``state`` to resume is re-evaluated the same
    way in the arithmetic of the phase it resumes (``state["stage"]``).
    Returns the :class:`fastsae.optim.LBFGSResult` of the whole run, with
    ``n_fast_iter`` (iterations in the fast phase) added.
    """
    live = {} if live is None else live
    n_exact = max(1, int(round(EXACT_FRACTION * max_iter)))
    fast_budget = max_iter - n_exact
    stage = state.get("stage", "fast") if state is not None else "fast"
    done = int(state["n_iter"]) if state is not None else 0
    extra = {"n_evals": 0, "t_fun": 0.0, "n_checks": 0, "t_check": 0.0}

    def resumed(fun, st):
        """``st`` with the objective and gradient at its point computed by ``fun``."""
        x = np.asarray(st["x"], dtype=np.float64)
        t = time.perf_counter()
        f, g = fun(x)
        extra["t_fun"] += time.perf_counter() - t
        extra["n_evals"] += 1
        return dict(st, x=x, f=float(f), g=np.asarray(g, dtype=np.float64), best_cost=float(f),
                    best_theta=x.copy(), n_evals=int(st["n_evals"]) + 1)

    first = None
    if stage == "fast" and done < fast_budget:
        stalled = []
        check_below = []          # the fast gradient norm at which to compare them next
        checked = []              # the iterations at which they were compared

        def inexact(it, x):
            """Whether the fast gradient at ``x`` is off the exact one (checked every
            CHECK_EVERY iterations and on halvings of its norm)."""
            if live.get("x") is not x:
                return False
            norm = vector_norm(live["g"])
            if not check_below:
                check_below.append(norm / 2)
                return False
            if norm > check_below[0] and it % CHECK_EVERY:
                return False
            if checked and it - checked[-1] < CHECK_MIN_GAP:
                return False
            checked.append(it)
            check_below[0] = min(check_below[0], norm / 2)
            t = time.perf_counter()
            g_exact = np.asarray(exact(x)[1], dtype=np.float64)
            extra["t_check"] += time.perf_counter() - t      # inside the fast run's time
            extra["n_checks"] += 1
            return vector_norm(live["g"] - g_exact) > GRADIENT_AGREEMENT * vector_norm(g_exact)

        def watch(it, x, cost):
            if callback is not None:
                callback(it, x, cost)
            curve = live.get("curve", [])
            if len(curve) > STALL_ITERATIONS and \
                    curve[-STALL_ITERATIONS - 1] - cost < STALL_DECREASE * abs(cost):
                stalled.append(it)
                raise StopIteration
            if inexact(it, x):
                stalled.append(it)
                raise StopIteration

        live["stage"] = "fast"
        state_fast = None if state is None else resumed(fast, state)
        max_evals = (int(state_fast["n_evals"]) if state_fast else 0) + 2 * (fast_budget - done) + 20
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            first = lbfgs(fast, theta0, max_iter=fast_budget, callback=watch, state=state_fast,
                          live=live, max_evals=max_evals, **kw)
        if first.interrupted and not stalled:            # Ctrl-C or the user's callback
            first.n_fast_iter = first.n_iter
            return first
        state = checkpoint_state(live)
    n_fast = int(state["n_iter"]) if first is not None else \
        int(state.get("n_fast_iter", done) if state is not None else 0)
    if state is None:
        state_exact = None
    else:
        state_exact = resumed(exact, dict(state, n_fast_iter=n_fast))
    live["stage"], live["n_fast_iter"] = "exact", n_fast
    remaining = max_iter - (int(state_exact["n_iter"]) if state_exact else 0)
    max_evals = (int(state_exact["n_evals"]) if state_exact else 0) + 2 * remaining + 20
    second = lbfgs(exact, theta0, max_iter=max_iter, callback=callback, state=state_exact,
                   live=live, max_evals=max_evals, **kw)
    t_first = (first.time_total, first.time_objective) if first is not None else (0.0, 0.0)
    result = LBFGSResult(
        theta=second.theta, cost=second.cost, n_iter=second.n_iter,
        n_evals=second.n_evals + extra["n_checks"],
        loss_curve=second.loss_curve, converged=second.converged,
        interrupted=second.interrupted, message=second.message,
        time_objective=t_first[1] + extra["t_fun"] + extra["t_check"] + second.time_objective,
        time_total=t_first[0] + extra["t_fun"] + second.time_total)
    result.n_fast_iter = n_fast
    return result


def _is_device_array(X) -> bool:
    # cheap: fastsae.cuda imports neither numba.cuda nor CuPy until a kernel is asked for
    from .cuda import is_device_array
    return is_device_array(X)


def say(verbose: bool, message: str) -> None:
    """Print one progress line (through tqdm, so that progress bars stay intact)."""
    if verbose:
        from tqdm.auto import tqdm
        tqdm.write(message)


class Timer:
    """Seconds since construction (for the multi-stage fits' ``fit_time_``)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t0


def check_validation(validation: tuple[ArrayLike, ArrayLike] | None,
                     check: Callable[[ArrayLike], np.ndarray]
                     ) -> tuple[np.ndarray, np.ndarray] | None:
    """``validation=(X_val, y_val)`` of a multi-stage fit: ``(X_val, y_val)`` checked, or None."""
    if validation is None:
        return None
    if not isinstance(validation, (tuple, list)) or len(validation) != 2:
        raise ParameterError(
            f"validation must be a pair (X_val, y_val); got {type(validation).__name__}")
    Xv = check(validation[0])
    yv = np.asarray(validation[1]).reshape(-1)
    if yv.shape[0] != Xv.shape[0]:
        raise ParameterError(
            f"validation[1] must have one label per row of validation[0] ({Xv.shape[0]}); "
            f"got {yv.shape[0]}")
    return Xv, yv
