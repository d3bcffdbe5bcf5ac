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


# -- the two-loop recursion against its NumPy twin ------------------------------------------

@pytest.mark.parametrize("pair_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, m, count, newest", [(1, 3, 1, 0), (7, 5, 5, 2), (1001, 8, 3, 6),
                                                 (257, 4, 4, 3), (33, 6, 6, 0), (9, 2, 0, 1),
                                                 (50, 8, 3, 1)])     # fewer than m, wrapped
def test_two_loop_matches_its_reference(pair_dtype, n, m, count, newest):
    from fastsae.optim import _two_loop
    from fastsae.reference._lbfgs import two_loop as _two_loop_reference
    rng = np.random.default_rng(n + m + count)
    S = rng.standard_normal((m, n)).astype(pair_dtype)
    Y = (S + 0.3 * rng.standard_normal((m, n))).astype(pair_dtype)
    rho = 1.0 / np.abs(np.einsum("ij,ij->i", S.astype(float), Y.astype(float)))
    g = rng.standard_normal(n)
    d, ref = np.full(n, np.nan), np.full(n, np.nan)
    _two_loop(g, S, Y, rho, newest, count, 0.7, d)
    _two_loop_reference(g, S, Y, rho, newest, count, 0.7, ref)
    np.testing.assert_allclose(d, ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())
    if count == 0:
        np.testing.assert_array_equal(d, -g)
    else:                                      # the pairs matter: not just -gamma g
        assert np.abs(d + 0.7 * g).max() > 1e-3


def test_two_loop_satisfies_the_secant_equation_of_its_newest_pair():
    """The BFGS matrix H built from the pairs maps the newest y to the newest s
    (H y = s): with g = y the direction is -s, whatever the older pairs."""
    from fastsae.optim import _two_loop
    from fastsae.reference._lbfgs import two_loop as _two_loop_reference
    rng = np.random.default_rng(0)
    n, m = 40, 7
    A = np.diag(rng.uniform(1.0, 10.0, n))
    S = rng.standard_normal((m, n))
    Y = S @ A
    rho = 1.0 / np.einsum("ij,ij->i", S, Y)
    newest = 4
    for fn in (_two_loop, _two_loop_reference):
        d = np.empty(n)
        fn(Y[newest].copy(), S, Y, rho, newest, m, 0.3, d)
        np.testing.assert_allclose(d, -S[newest], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("pair_dtype", ["float32", np.float64])
def test_lbfgs_stores_its_pairs_as_asked_and_resumes_either_kind(pair_dtype):
    from fastsae.optim import checkpoint_state
    kw = dict(pair_dtype=pair_dtype, max_iter=400)
    live = {}
    lbfgs(rosenbrock, np.full(12, -1.0), max_iter=15, live=live, pair_dtype=pair_dtype)
    assert live["S"].dtype == live["Y"].dtype == np.dtype(pair_dtype)
    state = checkpoint_state(live)
    full = lbfgs(rosenbrock, np.full(12, -1.0), **kw)
    assert full.converged and full.cost < 1e-8
    for extra in ({}, {"live": {}}, {"callback": lambda *a: None}, {}):
        resumed = lbfgs(rosenbrock, np.zeros(12), state=state, **kw, **extra)
        np.testing.assert_array_equal(resumed.theta, full.theta)   # bit for bit, every time
    other = "float64" if np.dtype(pair_dtype) == np.float32 else "float32"
    live_other = {}
    lbfgs(rosenbrock, np.full(12, -1.0), max_iter=15, live=live_other, pair_dtype=other)
    # a state with the other kind of pairs (fastsae 0.1 saved float64 ones) resumes
    again = lbfgs(rosenbrock, np.zeros(12), state=checkpoint_state(live_other), **kw)
    assert again.converged and again.cost < 1e-8


def test_float32_pairs_are_rounded_before_their_curvature_is_taken():
    """rho and gamma describe the pair as stored (float32), not the float64 step."""
    live = {}
    lbfgs(rosenbrock, np.full(9, -1.2), max_iter=6, live=live, pair_dtype="float32")
    i = live["newest"]
    s, y = live["S"][i].astype(np.float64), live["Y"][i].astype(np.float64)
    assert live["rho"][i] == pytest.approx(1.0 / (y @ s), rel=1e-13)
    assert live["gamma"] == pytest.approx((y @ s) / (y @ y), rel=1e-13)


def test_a_state_whose_pairs_overflow_float32_resumes_without_those_pairs():
    from fastsae.optim import _check_state, checkpoint_state
    live = {}
    lbfgs(rosenbrock, np.full(6, -1.0), max_iter=5, live=live)
    state = checkpoint_state(live)
    count = state["count"]
    state["S"] = state["S"].copy()
    state["S"][0, 0] = 1e300                    # fine in float64, inf in float32
    assert _check_state(state, 6, 100, "float64")["count"] == count
    kept = _check_state(state, 6, 100, "float32")
    assert kept["count"] == count - 1 and np.isfinite(kept["S"]).all()
    s, y = kept["S"][-1].astype(np.float64), kept["Y"][-1].astype(np.float64)
    assert kept["rho"][-1] == pytest.approx(1.0 / (y @ s), rel=1e-12)   # from the rounded pair
    assert kept["gamma"] == pytest.approx((y @ s) / (y @ y), rel=1e-12)
    r = lbfgs(rosenbrock, np.zeros(6), max_iter=400, state=state, pair_dtype="float32")
    assert r.cost < 1e-8


@pytest.mark.parametrize("key, value, what", [("gamma", np.nan, "gamma"), ("rho", "nan", "rho"),
                                              ("S", "inf", "S, Y")])
def test_a_state_with_non_finite_numbers_is_refused_by_name(key, value, what):
    from fastsae.optim import checkpoint_state
    live = {}
    lbfgs(rosenbrock, np.full(6, -1.0), max_iter=5, live=live)
    state = checkpoint_state(live)
    if isinstance(value, str):
        arr = state[key].copy()
        arr.flat[0] = float(value)
        value = arr
    with pytest.raises(ParameterError, match=what):
        lbfgs(rosenbrock, np.zeros(6), state=dict(state, **{key: value}))


def _pairs(n, m, pair_dtype, seed):
    rng = np.random.default_rng(seed)
    S = rng.standard_normal((m, n)).astype(pair_dtype)
    Y = (S + 0.3 * rng.standard_normal((m, n))).astype(pair_dtype)
    rho = 1.0 / np.abs(np.einsum("ij,ij->i", S.astype(float), Y.astype(float)))
    return S, Y, rho, rng.standard_normal(n)


@pytest.mark.parametrize("pair_dtype", [np.float32, np.float64])
def test_two_loop_gives_the_same_bits_wherever_its_arrays_lie(pair_dtype):
    """``d`` just after ``g`` (or anywhere): one result, bit for bit."""
    from fastsae.optim import _two_loop
    for n, count in ((5, 1), (8, 2), (12, 15), (600, 3)):
        S, Y, rho, g0 = _pairs(n, 16, pair_dtype, n)
        seen = set()
        for gap in range(40):
            buf = np.empty(2 * n + gap)
            g = buf[:n]
            g[:] = g0
            d = buf[n + gap:]
            _two_loop(g, S, Y, rho, count - 1, count, 0.7, d)
            seen.add(d.tobytes())
        assert len(seen) == 1, (n, count, len(seen))


def test_the_estimators_keep_float32_pairs_for_float32_objectives():
    from fastsae import SparseAutoencoder
    from fastsae.core.memory import lbfgs_bytes
    X = np.random.default_rng(0).uniform(0.1, 0.9, (60, 8))
    seen = {}
    for dtype in ("float32", "float64"):
        sae = SparseAutoencoder(n_hidden=3, max_iter=3, dtype=dtype, random_state=0)

        def note(it, theta, cost, sae=sae, dtype=dtype):
            seen[dtype] = sae._live["S"].dtype
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            sae.fit(X, callback=note)
    assert seen == {"float32": np.float32, "float64": np.float64}
    assert lbfgs_bytes(1000, history=10, pair_bytes=4) == 1000 * (2 * 10 * 4 + 64)
    assert lbfgs_bytes(1000, history=10) == 1000 * (2 * 10 * 8 + 64)


def test_float32_pairs_reach_the_float64_pairs_optimum():
    r32 = lbfgs(rosenbrock, np.full(30, -1.0), max_iter=1000, tol=1e-15, gtol=1e-8,
                pair_dtype="float32")
    r64 = lbfgs(rosenbrock, np.full(30, -1.0), max_iter=1000, tol=1e-15, gtol=1e-8)
    assert r32.converged and r64.converged
    np.testing.assert_allclose(r32.theta, 1.0, atol=1e-6)
    assert r32.n_iter <= 1.2 * r64.n_iter


@pytest.mark.parametrize("bad", ["float16", None, 3, True, "bfloat16",
                                 {"names": ["a"], "formats": ["f8", "f8"]}])
def test_lbfgs_rejects_an_unknown_pair_dtype(bad):
    with pytest.raises(ParameterError, match="pair_dtype"):
        lbfgs(rosenbrock, np.ones(3), pair_dtype=bad)


@pytest.mark.parametrize("ok", ["f4", np.float32, np.dtype("float64")])
def test_lbfgs_takes_any_spelling_of_a_pair_dtype(ok):
    live = {}
    lbfgs(rosenbrock, np.ones(3) * 0.5, max_iter=3, live=live, pair_dtype=ok)
    assert live["S"].dtype == np.dtype(ok)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 7, 1001, 262_913])
def test_vector_norm_matches_numpy(dtype, n):
    from fastsae.base import vector_norm
    x = np.random.default_rng(n).standard_normal(n).astype(dtype)
    expect = float(np.linalg.norm(x.astype(np.float64)))
    assert vector_norm(x) == pytest.approx(expect, rel=1e-12, abs=0.0)
    assert vector_norm(x[::3]) == pytest.approx(float(np.linalg.norm(x[::3].astype(np.float64))),
                                                rel=1e-12, abs=0.0)
