"""Optimisation: L-BFGS with minFunc-like defaults, and gradient checking."""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from .core.config import CACHE
from numba import njit
from scipy.optimize import minimize

from .core.threads import scipy_blas_single_thread
from .kernels._math import dot
from .core.checks import check_choice, check_int, check_random_state, check_scalar
from .core.types import ArrayLike, RandomState
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


METHODS = ("minfunc", "scipy")


def lbfgs(fun: Callable, theta0: ArrayLike, *, max_iter: int = 400, history: int = 100,
          tol: float = 1e-9, gtol: float = 1e-5, max_evals: int | None = None,
          callback: Callable | None = None, verbose: bool = False,
          desc: str = "L-BFGS", method: str = "minfunc", state: dict | None = None,
          live: dict | None = None, pair_dtype: str = "float64") -> LBFGSResult:
    """Minimise ``fun`` with L-BFGS.

    Defaults follow minFunc as UFLDL used it: 100 corrections kept, stop after
    ``max_iter`` iterations, when the largest gradient component falls below
    ``gtol``, or when the objective or the step stop changing (``tol``).

    Two engines compute the same algorithm:

    * ``method="minfunc"`` (default): fastsae's own L-BFGS, as minFunc does it:
      the two-loop recursion (compiled with Numba) with the initial Hessian
      scaled by ``yᵀs / yᵀy``, and a strong-Wolfe line search with cubic
      interpolation (c1 = 1e-4, c2 = 0.9; first step ``min(1, 1/‖g‖₁)``, then
      1). A trial step whose objective is NaN/inf is shortened rather than
      fatal. Its own work per iteration is two passes over the
      ``2 × history × n`` correction pairs.
    * ``method="scipy"``: SciPy's L-BFGS-B without bounds (its compact
      representation costs more per iteration with 100 corrections).

    Parameters
    ----------
    fun : callable ``theta -> (cost, grad)``
        ``grad`` must be a float64 array shaped like ``theta``.
    theta0 : np.ndarray [shape=(n,)]
    max_iter : int > 0
    history : int > 0
        Number of correction pairs (minFunc's ``Corr``).
    tol : float >= 0
        Stop when the objective changes by less than this (minFunc's
        ``progTol``; for ``"scipy"``, the relative decrease ``ftol``).
    gtol : float >= 0
        Stop when ``max |grad|`` falls below this (minFunc's ``optTol``).
    max_evals : int, optional
        Limit on objective evaluations (default ``2 * max_iter + 20``).
    callback : callable ``(iteration, theta, cost) -> None``, optional
        Called after every iteration; raising :class:`StopIteration` ends the
        run early (and keeps the best parameters).
    verbose : bool
        Show a progress bar with the current cost.
    method : {"minfunc", "scipy"}
    state : dict, optional
        Resume the ``"minfunc"`` engine exactly where a run left off: a dict
        made by :func:`checkpoint_state` (parameters, gradient, correction
        pairs, iteration and evaluation counts, loss curve). The run then
        continues to ``max_iter`` iterations in all and ends at the same
        parameters as one uninterrupted run (bit for bit with the same
        objective). ``theta0`` is ignored.
    live : dict, optional
        Kept up to date with the engine's state after every iteration (the
        arrays themselves, not copies), for :func:`checkpoint_state`.
    pair_dtype : {"float64", "float32"}
        How the ``"minfunc"`` engine stores its correction pairs. ``"float32"``
        halves their memory and the time of its own work per iteration (the
        products with them still accumulate in float64, and the curvature
        test, ``ρ = 1 / yᵀs`` and the initial scaling come from the pair as
        stored, so the secant equation holds exactly for it); the estimators
        use it when their objective is float32 or bfloat16, whose gradients
        carry no more digits. Rounding
        makes two runs whose gradients differ in the last float64 digits
        drift apart sooner.

    Returns
    -------
    LBFGSResult
        ``theta`` is the best point evaluated, also after a ``KeyboardInterrupt``
        (which sets ``interrupted``) or when stopped by the callback.

    Raises
    ------
    NumericalError
        ``fun`` returned a non-finite cost or gradient at the starting point,
        or (``"scipy"``) anywhere.

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
    check_choice(method, "method", METHODS)
    if pair_dtype is not None:                              # np.dtype(None) is float64
        try:
            pair_dtype = np.dtype(pair_dtype).name         # np.float32, "f4" and the like
        except (TypeError, ValueError):
            pass
    check_choice(pair_dtype, "pair_dtype", PAIR_DTYPES)
    max_evals = 2 * max_iter + 20 if max_evals is None else check_int(max_evals, "max_evals", low=1)
    theta0 = np.array(theta0, dtype=np.float64).ravel()
    if not np.isfinite(theta0).all():
        raise ParameterError("theta0 contains NaN or infinite values")

    best = {"cost": np.inf, "theta": theta0.copy()}
    counts = {"n_evals": 0, "t_fun": 0.0, "n_iter": 0}
    curve: list[float] = []
    if state is not None:
        if method != "minfunc":
            raise ParameterError("state (resuming) needs method='minfunc'")
        state = _check_state(state, theta0.size if theta0.size else None, history, pair_dtype)
        best["cost"], best["theta"] = float(state["best_cost"]), state["best_theta"].copy()
        counts["n_evals"], counts["n_iter"] = int(state["n_evals"]), int(state["n_iter"])
        curve = [float(c) for c in state["loss_curve"]]

    def objective(theta):
        t = time.perf_counter()
        cost, grad = fun(theta)
        counts["t_fun"] += time.perf_counter() - t
        counts["n_evals"] += 1
        cost = float(cost)
        if not np.isfinite(cost) or not np.all(np.isfinite(grad)):
            what = "cost" if not np.isfinite(cost) else "gradient"
            raise NumericalError(
                f"the objective's {what} became non-finite at iteration {counts['n_iter']} "
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

    def on_iteration(x, cost):
        counts["n_iter"] += 1
        curve.append(float(cost))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(cost=f"{cost:.6g}", refresh=False)
        if callback is not None:
            try:
                callback(counts["n_iter"], x, float(cost))
            except StopIteration:
                raise _StopRequested() from None

    t0 = time.perf_counter()
    converged = interrupted = False
    message = ""
    try:
        with scipy_blas_single_thread():
            if method == "scipy":
                res = minimize(objective, theta0, jac=True, method="L-BFGS-B",
                               callback=lambda intermediate_result: on_iteration(
                                   intermediate_result.x, intermediate_result.fun),
                               options=dict(maxiter=max_iter, maxcor=history, ftol=tol,
                                            gtol=gtol, maxfun=max_evals, maxls=40))
                message, converged = str(res.message), bool(res.success)
            else:
                message, converged = _minfunc_lbfgs(
                    objective, theta0, max_iter=max_iter, history=history, tol=tol,
                    gtol=gtol, max_evals=max_evals, on_iteration=on_iteration, counts=counts,
                    resume=state, live=live, best=best, curve=curve,
                    pair_dtype=np.dtype(pair_dtype))
    except KeyboardInterrupt:
        interrupted = True
        message = "interrupted by the user (KeyboardInterrupt); keeping the best parameters"
    except _StopRequested:
        interrupted = True
        message = "stopped by the callback; keeping the best parameters"
    finally:
        if bar is not None:
            bar.close()
    result = LBFGSResult(theta=best["theta"], cost=float(best["cost"]), n_iter=counts["n_iter"],
                         n_evals=counts["n_evals"], loss_curve=curve, converged=converged,
                         interrupted=interrupted, message=message,
                         time_objective=counts["t_fun"], time_total=time.perf_counter() - t0)
    if not converged and not interrupted:
        warnings.warn(f"{desc} stopped after {result.n_iter} iterations without converging "
                      f"({message}); raise max_iter for a better optimum", ConvergenceWarning,
                      stacklevel=2)
    return result


#: How the correction pairs can be stored (``lbfgs(pair_dtype=...)``): float32 halves
#: their memory (2 x history x n values: 210 MB instead of 420 for 262,912 parameters
#: and 100 pairs) and the bytes that every iteration streams through.
PAIR_DTYPES = ("float64", "float32")

#: A pair is kept only with a curvature ``yᵀs`` above this (and finite products).
MIN_CURVATURE = 1e-10


def _keeps_pair(ys, yy):
    """Whether pairs with these products (scalars or arrays) enter the history."""
    return np.isfinite(ys) & np.isfinite(yy) & (ys > MIN_CURVATURE)


#: Elements of ``d`` updated, then summed, together (in L1 between the two loops).
CHUNK = 512


@njit(cache=CACHE, nogil=True, fastmath={"reassoc", "contract"})
def _axpy_dot(d, a, x, scale, z):
    """``d = (d + a x) * scale``, returning ``zᵀd`` of the new ``d`` (float64): one pass
    over ``d``, a chunk at a time, the update of a chunk and then its product. A single
    loop that both stores and sums would sum in another order whenever LLVM's runtime
    check that ``d`` and ``x`` do not overlap sends it down its scalar path (arrays
    close together in memory), and two runs would differ in the last bits."""
    n = d.shape[0]
    acc = 0.0
    for c0 in range(0, n, CHUNK):
        dc = d[c0:c0 + CHUNK]
        xc = x[c0:c0 + CHUNK]
        zc = z[c0:c0 + CHUNK]
        for j in range(dc.shape[0]):
            dc[j] = (dc[j] + a * xc[j]) * scale
        s = 0.0
        for j in range(dc.shape[0]):
            s += zc[j] * dc[j]
        acc += s
    return acc


@njit(cache=CACHE, nogil=True, fastmath={"reassoc", "contract"})
def _two_loop(g, S, Y, rho, newest, count, gamma, d):
    """d = -H g by the L-BFGS two-loop recursion over the ``count`` stored pairs.

    Pairs live in rows of S, Y (float32 or float64) as a ring ending at row
    ``newest``; ``gamma`` scales the initial Hessian; ``d`` and every sum are
    float64. Each update of ``d`` and the next pair's product with it share one
    pass over ``d`` (two rows and ``d`` per pair, not four). Plain loops (no BLAS
    call: a BLAS dot product would wake a thread pool that then competes with the
    objective's). Twin of :func:`fastsae.reference._lbfgs.two_loop`.
    """
    m = S.shape[0]
    n = g.shape[0]
    # two loops, not one: a loop that both stores and sums may sum in another order
    # (see _axpy_dot), here whenever d lies just after g in memory
    for j in range(n):
        d[j] = -g[j]
    if count == 0:
        return
    alpha = np.empty(count)
    s0 = S[newest % m]
    a = 0.0
    for j in range(n):
        a += s0[j] * d[j]
    for k in range(count):                      # newest to oldest
        i = (newest - k) % m
        a *= rho[i]
        alpha[k] = a
        if k + 1 < count:
            a = _axpy_dot(d, -a, Y[i], 1.0, S[(newest - k - 1) % m])
        else:                                   # scale by gamma; then the oldest y's product
            b = _axpy_dot(d, -a, Y[i], gamma, Y[(newest - count + 1) % m])
    for k in range(count - 1, -1, -1):          # oldest to newest
        i = (newest - k) % m
        c = alpha[k] - rho[i] * b
        if k > 0:
            b = _axpy_dot(d, c, S[i], 1.0, Y[(newest - k + 1) % m])
        else:
            si = S[i]
            for j in range(n):
                d[j] += c * si[j]


@njit(cache=CACHE, nogil=True)
def _pair_products(x_new, x, g_new, g, rounded):
    """``(yᵀs, yᵀy, max |s|)`` for ``s = x_new − x``, ``y = g_new − g``, in float64: the
    products of the pair as stored (with ``rounded``, each component rounded to
    float32 first)."""
    ys = yy = smax = 0.0
    for j in range(x.shape[0]):
        s = x_new[j] - x[j]
        y = g_new[j] - g[j]
        sr = np.float64(np.float32(s)) if rounded else s
        yr = np.float64(np.float32(y)) if rounded else y
        ys += yr * sr
        yy += yr * yr
        smax = max(smax, abs(s))
    return ys, yy, smax


@njit(cache=CACHE, nogil=True)
def _store_pair(x_new, x, g_new, g, s_row, y_row):
    for j in range(x.shape[0]):
        s_row[j] = x_new[j] - x[j]
        y_row[j] = g_new[j] - g[j]


def _cubic_min(t0, f0, g0, t1, f1, g1, lo, hi):
    """Minimiser of the cubic through (t0, f0, g0), (t1, f1, g1), clipped to [lo, hi]
    (the midpoint when the cubic is unusable)."""
    if np.isfinite(f0) and np.isfinite(f1) and np.isfinite(g0) and np.isfinite(g1) and t0 != t1:
        d1 = g0 + g1 - 3.0 * (f0 - f1) / (t0 - t1)
        disc = d1 * d1 - g0 * g1
        if disc >= 0.0:
            d2 = np.sign(t1 - t0) * np.sqrt(disc)
            denom = g1 - g0 + 2.0 * d2
            if denom != 0.0:
                t = t1 - (t1 - t0) * (g1 + d2 - d1) / denom
                if np.isfinite(t):
                    return min(max(t, lo), hi)
    return 0.5 * (lo + hi)


def _wolfe_line_search(phi, f0, gtd0, t, *, c1=1e-4, c2=0.9, max_evals=25):
    """Strong-Wolfe step along a descent direction (Nocedal & Wright, Alg. 3.5/3.6).

    ``phi(t) -> (f, gtd, payload)``; returns ``(t, f, payload)`` of the
    accepted step, or of the best finite trial when the search runs out of
    evaluations (``payload`` None if no trial was finite).
    """
    best = (0.0, f0, None)
    t_prev, f_prev, g_prev = 0.0, f0, gtd0
    bracket = None
    for i in range(max_evals):
        f, gtd, payload = phi(t)
        if payload is not None and f < best[1]:
            best = (t, f, payload)
        if not np.isfinite(f) or f > f0 + c1 * t * gtd0 or (i > 0 and f >= f_prev):
            bracket = (t_prev, f_prev, g_prev, t, f, gtd)
            break
        if abs(gtd) <= -c2 * gtd0:
            return t, f, payload
        if gtd >= 0:
            bracket = (t, f, gtd, t_prev, f_prev, g_prev)
            break
        t_next = _cubic_min(t_prev, f_prev, g_prev, t, f, gtd, t + 0.01 * (t - t_prev), 10.0 * t)
        t_prev, f_prev, g_prev = t, f, gtd
        t = t_next
    else:
        return best
    lo_t, lo_f, lo_g, hi_t, hi_f, hi_g = bracket
    for _ in range(max_evals - i - 1):
        a, b = min(lo_t, hi_t), max(lo_t, hi_t)
        width = b - a
        if width <= 1e-16 * max(b, 1.0):
            break
        t = _cubic_min(lo_t, lo_f, lo_g, hi_t, hi_f, hi_g, a + 0.1 * width, b - 0.1 * width)
        f, gtd, payload = phi(t)
        if payload is not None and f < best[1]:
            best = (t, f, payload)
        if not np.isfinite(f) or f > f0 + c1 * t * gtd0 or f >= lo_f:
            hi_t, hi_f, hi_g = t, f, gtd
        else:
            if abs(gtd) <= -c2 * gtd0:
                return t, f, payload
            if gtd * (hi_t - lo_t) >= 0:
                hi_t, hi_f, hi_g = lo_t, lo_f, lo_g
            lo_t, lo_f, lo_g = t, f, gtd
    return best


def _minfunc_lbfgs(objective, x0, *, max_iter, history, tol, gtol, max_evals, on_iteration,
                   counts, resume=None, live=None, best=None, curve=None,
                   pair_dtype=np.dtype(np.float64)):
    """minFunc's L-BFGS loop; returns (message, converged)."""
    if resume is None:
        n = x0.size
        x = x0.copy()
        f, g = objective(x)
        if np.max(np.abs(g)) <= gtol:
            return "first-order optimality at the starting point", True
        S = np.empty((history, n), pair_dtype)
        Y = np.empty((history, n), pair_dtype)
        rho = np.empty(history)
        newest, count, gamma = -1, 0, 1.0
        start = 0
    else:
        x, f, g = resume["x"].copy(), float(resume["f"]), resume["g"].copy()
        n, count = x.size, int(resume["count"])
        S, Y = np.empty((history, n), pair_dtype), np.empty((history, n), pair_dtype)
        rho = np.empty(history)
        # the pairs were saved oldest first: put them back as the ring's first rows
        S[:count], Y[:count], rho[:count] = resume["S"], resume["Y"], resume["rho"]
        newest, gamma = count - 1, float(resume["gamma"])
        start = int(resume["n_iter"])
    d = np.empty(n)
    x_trial = np.empty(n)
    rounded = pair_dtype != np.float64
    if live is not None:
        live.update(history=history, S=S, Y=Y, rho=rho, best=best, curve=curve, counts=counts)

    def phi(t):
        np.multiply(d, t, out=x_trial)
        np.add(x_trial, x, out=x_trial)
        try:
            ft, gt = objective(x_trial)
        except NumericalError:
            return np.inf, np.inf, None            # shorten the step
        counts["finite_trials"] += 1
        return ft, dot(gt, d), (x_trial.copy(), gt)

    for it in range(start, max_iter):
        if live is not None:
            live.update(x=x, f=f, g=g, newest=newest, count=count, gamma=gamma)
        if count:
            _two_loop(g, S, Y, rho, newest, count, gamma, d)
        else:
            np.negative(g, out=d)
        gtd = dot(g, d)
        if not gtd < 0:                            # not a descent direction: restart
            np.negative(g, out=d)
            gtd = dot(g, d)
            count = 0
        if gtd > -tol:
            return "directional derivative below the tolerance", True
        t0 = min(1.0, 1.0 / np.sum(np.abs(g))) if it == 0 else 1.0
        counts["finite_trials"] = 0
        t, f_new, payload = _wolfe_line_search(phi, f, gtd, t0,
                                               max_evals=max(1, min(25, max_evals - counts["n_evals"])))
        if payload is None:
            if counts["n_evals"] >= max_evals:
                return "too many objective evaluations", False
            if counts["finite_trials"]:
                return "the line search found no lower objective along the search direction", False
            raise NumericalError(
                f"the line search found no step with a finite objective at iteration {it}; "
                "the input may be badly scaled or the weights have diverged")
        x_new, g_new = payload
        ys, yy, step = _pair_products(x_new, x, g_new, g, rounded)
        # keep the pair only with positive curvature (and finite once stored)
        if _keeps_pair(ys, yy):
            newest = (newest + 1) % history
            _store_pair(x_new, x, g_new, g, S[newest], Y[newest])
            rho[newest] = 1.0 / ys
            count = min(count + 1, history)
            gamma = ys / yy if np.isfinite(ys / yy) else gamma
        f_old, x, f, g = f, x_new, f_new, g_new
        if live is not None:
            live.update(x=x, f=f, g=g, newest=newest, count=count, gamma=gamma)
        on_iteration(x, f)
        if np.max(np.abs(g)) <= gtol:
            return "first-order optimality below gtol", True
        if step <= tol:
            return "step size below the tolerance", True
        if abs(f - f_old) < tol:
            return "objective changing by less than the tolerance", True
        if counts["n_evals"] >= max_evals:
            return "too many objective evaluations", False
    return "reached max_iter", False


def checkpoint_state(live: dict[str, Any]) -> dict[str, Any]:
    """A copy of a running L-BFGS's state (from ``lbfgs(..., live=...)``), for ``state=``.

    A dict of arrays and numbers (what :func:`fastsae.save` writes): the
    current parameters ``x``, objective ``f`` and gradient ``g``, the
    ``count`` correction pairs ``S``, ``Y``, ``rho`` oldest first, ``gamma``,
    the iteration and evaluation counts, the loss curve and the best point.
    """
    if not live or "x" not in live:
        raise ParameterError("no L-BFGS state yet: checkpoint after an iteration")
    count, newest, history = int(live["count"]), int(live["newest"]), int(live["history"])
    order = [(newest - count + 1 + k) % history for k in range(count)]
    counts = live["counts"]
    return {"x": live["x"].copy(), "f": float(live["f"]), "g": live["g"].copy(),
            "S": live["S"][order].copy(), "Y": live["Y"][order].copy(),
            "rho": live["rho"][order].copy(), "count": count, "gamma": float(live["gamma"]),
            "n_iter": int(counts["n_iter"]), "n_evals": int(counts["n_evals"]),
            "loss_curve": np.array(live["curve"], dtype=np.float64),
            "best_cost": float(live["best"]["cost"]),
            "best_theta": live["best"]["theta"].copy(), "history": history,
            # a precision schedule's phase (fastsae.base.lbfgs_two_precisions)
            **{k: live[k] for k in ("stage", "n_fast_iter") if k in live}}


def _check_state(state, n, history, pair_dtype="float64"):
    """A state dict from :func:`checkpoint_state`, checked (ParameterError otherwise)."""
    need = ("x", "f", "g", "S", "Y", "rho", "count", "gamma", "n_iter", "n_evals", "loss_curve",
            "best_cost", "best_theta", "history")
    if not isinstance(state, dict) or any(k not in state for k in need):
        raise ParameterError(f"state must be a dict from checkpoint_state with {', '.join(need)}")
    x = np.asarray(state["x"], dtype=np.float64)
    count = int(state["count"])
    if (n is not None and x.size != n) or np.shape(state["S"]) != (count, x.size) \
            or np.shape(state["Y"]) != (count, x.size) or np.shape(state["rho"]) != (count,):
        raise ParameterError("state's arrays do not match each other or theta0")
    if int(state["history"]) != history or count > history:
        raise ParameterError(f"state was saved with history={state['history']}; resume with "
                             f"the same history (got {history})")
    rho, gamma = np.asarray(state["rho"], np.float64), float(state["gamma"])
    if not np.isfinite(gamma):
        raise ParameterError(f"state's gamma is {gamma!r}, not finite")
    bad = np.flatnonzero(~np.isfinite(rho))
    if bad.size:
        raise ParameterError(f"state's rho is not finite at pairs {bad.tolist()}")
    if not (np.isfinite(state["S"]).all() and np.isfinite(state["Y"]).all()):
        raise ParameterError("state's correction pairs S, Y hold NaN or infinite values")
    with np.errstate(over="ignore"):
        S, Y = np.asarray(state["S"], pair_dtype), np.asarray(state["Y"], pair_dtype)
    if not (np.array_equal(S, state["S"]) and np.array_equal(Y, state["Y"])):
        # pairs rounded here (a float64 state resumed with float32 pairs): their curvature
        # taken again from the stored values; those that overflow or lose it are dropped
        S64, Y64 = S.astype(np.float64), Y.astype(np.float64)
        with np.errstate(all="ignore"):
            ys, yy = np.einsum("ij,ij->i", Y64, S64), np.einsum("ij,ij->i", Y64, Y64)
        keep = _keeps_pair(ys, yy)
        S, Y, rho, count = S[keep], Y[keep], 1.0 / ys[keep], int(keep.sum())
        if count:
            gamma = float(ys[keep][-1] / yy[keep][-1])
    return dict(state, x=x, g=np.asarray(state["g"], dtype=np.float64),
                # saved pairs are kept in (or rounded to) the precision the run stores
                S=S, Y=Y, rho=rho, count=count, gamma=gamma,
                best_theta=np.asarray(state["best_theta"], np.float64))


def check_gradient(fun: Callable, theta: ArrayLike, eps: float = 1e-4, *,
                   n_checks: int | None = None, random_state: RandomState = None) -> float:
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
