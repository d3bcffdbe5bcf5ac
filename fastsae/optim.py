"""Optimisation: L-BFGS with minFunc-like defaults, and gradient checking."""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy.optimize import minimize

from ._threads import scipy_blas_single_thread
from ._validation import check_int, check_random_state, check_scalar
from .exceptions import ConvergenceWarning, NumericalError, ParameterError


@dataclass
class LBFGSResult:
    """What :func:`lbfgs` returns."""

    theta: np.ndarray            #: best parameters found (float64)
    cost: float                  #: objective at ``theta``
    n_iter: int                  #: iterations completed
    n_evals: int                 #: objective evaluations
    loss_curve: list = field(default_factory=list)  #: objective after each iteration
    converged: bool = False      #: a convergence criterion was met
    interrupted: bool = False    #: stopped by KeyboardInterrupt or by the callback
    message: str = ""
    time_objective: float = 0.0  #: seconds spent inside ``fun``
    time_total: float = 0.0      #: seconds for the whole run


class _StopRequested(Exception):
    pass


def lbfgs(fun: Callable, theta0, *, max_iter: int = 400, history: int = 100,
          tol: float = 1e-9, gtol: float = 1e-5, max_evals: int | None = None,
          callback: Callable | None = None, verbose: bool = False,
          desc: str = "L-BFGS") -> LBFGSResult:
    """Minimise ``fun`` with L-BFGS (SciPy's L-BFGS-B without bounds).

    Defaults follow minFunc as UFLDL used it: 100 corrections kept, stop after
    ``max_iter`` iterations, when the relative decrease of the objective falls
    below ``tol`` or when the largest gradient component falls below ``gtol``.

    Parameters
    ----------
    fun : callable ``theta -> (cost, grad)``
        ``grad`` must be a float64 array shaped like ``theta``.
    theta0 : np.ndarray [shape=(n,)]
    max_iter : int > 0
    history : int > 0
        Number of correction pairs (minFunc's ``Corr``).
    tol, gtol : float > 0
    max_evals : int, optional
        Limit on objective evaluations (default ``2 * max_iter + 20``).
    callback : callable ``(iteration, theta, cost) -> None``, optional
        Called after every iteration; raising :class:`StopIteration` ends the
        run early (and keeps the best parameters).
    verbose : bool
        Show a progress bar with the current cost.

    Returns
    -------
    LBFGSResult
        ``theta`` is the best point evaluated, also after a ``KeyboardInterrupt``
        (which sets ``interrupted``) or when stopped by the callback.

    Raises
    ------
    NumericalError
        ``fun`` returned a non-finite cost or gradient.

    Examples
    --------
    >>> def quad(x):
    ...     return float(x @ x), 2 * x
    >>> r = lbfgs(quad, np.ones(3))
    >>> round(r.cost, 12), r.converged
    (0.0, True)
    """
    max_iter = check_int(max_iter, "max_iter", low=1)
    history = check_int(history, "history", low=1)
    check_scalar(tol, "tol", low=0.0)
    check_scalar(gtol, "gtol", low=0.0)
    max_evals = 2 * max_iter + 20 if max_evals is None else check_int(max_evals, "max_evals", low=1)
    theta0 = np.array(theta0, dtype=np.float64).ravel()
    if not np.isfinite(theta0).all():
        raise ParameterError("theta0 contains NaN or infinite values")

    best = {"cost": np.inf, "theta": theta0.copy()}
    state = {"n_evals": 0, "t_fun": 0.0, "n_iter": 0}
    curve: list[float] = []

    def objective(theta):
        t = time.perf_counter()
        cost, grad = fun(theta)
        state["t_fun"] += time.perf_counter() - t
        state["n_evals"] += 1
        cost = float(cost)
        if not np.isfinite(cost) or not np.all(np.isfinite(grad)):
            what = "cost" if not np.isfinite(cost) else "gradient"
            raise NumericalError(
                f"the objective's {what} became non-finite at iteration {state['n_iter']} "
                f"(cost={cost}); the input may be badly scaled or the weights have diverged"
            )
        if cost < best["cost"]:
            best["cost"] = cost
            best["theta"][:] = theta
        return cost, np.asarray(grad, dtype=np.float64)

    bar = None
    if verbose:
        from tqdm.auto import tqdm
        bar = tqdm(total=max_iter, desc=desc, unit="it", leave=True)

    def on_iteration(intermediate_result):
        state["n_iter"] += 1
        cost = float(intermediate_result.fun)
        curve.append(cost)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(cost=f"{cost:.6g}", refresh=False)
        if callback is not None:
            try:
                callback(state["n_iter"], intermediate_result.x, cost)
            except StopIteration:
                raise _StopRequested() from None

    t0 = time.perf_counter()
    converged = interrupted = False
    message = ""
    try:
        with scipy_blas_single_thread():
            res = minimize(objective, theta0, jac=True, method="L-BFGS-B", callback=on_iteration,
                           options=dict(maxiter=max_iter, maxcor=history, ftol=tol, gtol=gtol,
                                        maxfun=max_evals, maxls=40))
        message = str(res.message)
        converged = bool(res.success)
        if res.fun <= best["cost"]:
            best["cost"] = float(res.fun)
            best["theta"][:] = res.x
    except KeyboardInterrupt:
        interrupted = True
        message = "interrupted by the user (KeyboardInterrupt); keeping the best parameters"
    except _StopRequested:
        interrupted = True
        message = "stopped by the callback; keeping the best parameters"
    finally:
        if bar is not None:
            bar.close()
    result = LBFGSResult(theta=best["theta"], cost=float(best["cost"]), n_iter=state["n_iter"],
                         n_evals=state["n_evals"], loss_curve=curve, converged=converged,
                         interrupted=interrupted, message=message,
                         time_objective=state["t_fun"], time_total=time.perf_counter() - t0)
    if not converged and not interrupted:
        warnings.warn(f"{desc} stopped after {result.n_iter} iterations without converging "
                      f"({message}); raise max_iter for a better optimum", ConvergenceWarning,
                      stacklevel=2)
    return result


def check_gradient(fun: Callable, theta, eps: float = 1e-4, *, n_checks: int | None = None,
                   random_state=None) -> float:
    """Relative error between ``fun``'s analytic gradient and central differences.

    Returns UFLDL's measure ``‖g_num − g‖ / ‖g_num + g‖`` over the checked
    coordinates: below about 1e-9 for a correct float64 gradient with
    ``eps=1e-4``.

    Parameters
    ----------
    fun : callable ``theta -> (cost, grad)``
    theta : np.ndarray [shape=(n,)]
    eps : float > 0
        Step of the central difference ``(f(θ+ε e_i) − f(θ−ε e_i)) / 2ε``.
    n_checks : int, optional
        Check only this many coordinates, drawn at random (for large ``theta``).

    Examples
    --------
    >>> f = lambda x: (float(np.sum(x ** 3)), 3 * x ** 2)
    >>> check_gradient(f, np.array([1.0, -2.0, 0.5])) < 1e-9
    True
    """
    check_scalar(eps, "eps", low=0.0, low_open=True)
    theta = np.array(theta, dtype=np.float64).ravel()
    _, grad = fun(theta)
    grad = np.asarray(grad, dtype=np.float64).ravel()
    if grad.shape != theta.shape:
        raise ParameterError(f"fun returned a gradient of shape {grad.shape} for theta of shape {theta.shape}")
    if n_checks is None or n_checks >= theta.size:
        idx = np.arange(theta.size)
    else:
        check_int(n_checks, "n_checks", low=1)
        idx = np.sort(check_random_state(random_state).choice(theta.size, n_checks, replace=False))
    num = np.empty(idx.size)
    work = theta.copy()
    for k, i in enumerate(idx):
        work[i] = theta[i] + eps
        fp, _ = fun(work)
        work[i] = theta[i] - eps
        fm, _ = fun(work)
        work[i] = theta[i]
        num[k] = (fp - fm) / (2 * eps)
    g = grad[idx]
    denom = np.linalg.norm(num + g)
    if denom == 0.0:
        return float(np.linalg.norm(num - g))
    return float(np.linalg.norm(num - g) / denom)
