import warnings

import numpy as np
import pytest

from fastsae import ConvergenceWarning, NumericalError, ParameterError, check_gradient, lbfgs


def rosenbrock(x):
    a, b = x[:-1], x[1:]
    f = np.sum(100.0 * (b - a ** 2) ** 2 + (1 - a) ** 2)
    g = np.zeros_like(x)
    g[:-1] = -400.0 * a * (b - a ** 2) - 2 * (1 - a)
    g[1:] += 200.0 * (b - a ** 2)
    return float(f), g


def test_lbfgs_solves_rosenbrock_with_monotone_history():
    r = lbfgs(rosenbrock, np.full(10, -1.0), max_iter=500, tol=1e-14, gtol=1e-9)
    assert r.converged and not r.interrupted
    np.testing.assert_allclose(r.theta, 1.0, atol=1e-4)
    assert r.cost < 1e-8
    assert len(r.loss_curve) == r.n_iter
    assert np.all(np.diff(r.loss_curve) <= 0)
    assert r.n_evals >= r.n_iter and r.time_objective <= r.time_total


def test_lbfgs_warns_when_out_of_iterations():
    with pytest.warns(ConvergenceWarning, match="3 iterations"):
        r = lbfgs(rosenbrock, np.full(10, -1.0), max_iter=3)
    assert r.n_iter == 3 and not r.converged


def test_lbfgs_raises_on_non_finite_objective():
    def nan_at_start(x):
        return float("nan"), 2 * x

    for method in ("minfunc", "scipy"):
        with pytest.raises(NumericalError, match="non-finite"):
            lbfgs(nan_at_start, np.ones(3), max_iter=50, method=method)

    def bad(x):
        return (float("nan") if x[0] < 0.5 else float(x @ x)), 2 * x

    with pytest.raises(NumericalError, match="non-finite"):
        lbfgs(bad, np.ones(3), max_iter=50, method="scipy")
    # minFunc's engine shortens steps that land on NaN; here every step from
    # x = (0.5, 0.5, 0.5) does, and it says so
    with pytest.raises(NumericalError, match="no step with a finite objective"):
        lbfgs(bad, np.ones(3), max_iter=50)


def test_line_search_shortens_a_step_that_lands_on_nan():
    from fastsae.optim import _wolfe_line_search

    def phi(t):                     # f(t) = (t - 0.2)^2 along the line, NaN beyond t = 0.3
        if t > 0.3:
            return np.inf, np.inf, None
        return (t - 0.2) ** 2, 2 * (t - 0.2), ("point", t)

    t, f, payload = _wolfe_line_search(phi, 0.04, -0.4, 1.0)
    assert payload == ("point", t) and 0 < t <= 0.3 and f < 0.04
    assert abs(2 * (t - 0.2)) <= 0.9 * 0.4          # strong Wolfe curvature condition


@pytest.mark.parametrize("method", ["minfunc", "scipy"])
def test_both_engines_solve_the_same_problem(method):
    r = lbfgs(rosenbrock, np.full(20, -1.0), max_iter=1000, tol=1e-15, gtol=1e-8, method=method)
    assert r.converged, r.message
    np.testing.assert_allclose(r.theta, 1.0, atol=1e-5)


def test_lbfgs_keeps_best_after_keyboard_interrupt():
    calls = {"n": 0}

    def f(x):
        calls["n"] += 1
        if calls["n"] == 25:
            raise KeyboardInterrupt
        return rosenbrock(x)

    x0 = np.full(6, -1.0)
    r = lbfgs(f, x0, max_iter=200)
    assert r.interrupted and np.isfinite(r.theta).all()
    assert r.cost < rosenbrock(x0)[0]
    assert rosenbrock(r.theta)[0] == pytest.approx(r.cost)


def test_lbfgs_callback_can_stop_early():
    seen = []

    def cb(it, theta, cost):
        seen.append(cost)
        if it == 5:
            raise StopIteration

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = lbfgs(rosenbrock, np.full(4, -1.0), callback=cb)
    assert r.interrupted and r.n_iter == 5 and seen == r.loss_curve


def test_lbfgs_rejects_bad_arguments():
    with pytest.raises(ParameterError, match="max_iter"):
        lbfgs(rosenbrock, np.ones(3), max_iter=0)
    with pytest.raises(ParameterError, match="theta0"):
        lbfgs(rosenbrock, np.array([1.0, np.inf]))


def test_check_gradient_subset_and_error():
    r = check_gradient(rosenbrock, np.linspace(-1, 1, 30), n_checks=8, random_state=0)
    assert r < 1e-8
    with pytest.raises(ParameterError, match="eps"):
        check_gradient(rosenbrock, np.ones(3), eps=0)
