"""dtype="bfloat16": the oneMKL kernel against its NumPy twin and the float64 objective,
the refusal without the extra, and the checks that learn the dtype.

Tests that need the extra (``pip install "fastsae-audio[mkl]"``) skip without it; the
error a user gets without it is tested everywhere.
"""
import subprocess
import warnings
import sys

import numpy as np
import pytest

import fastsae
from fastsae import check_gradient, reference
from fastsae.core.args import check_sae_options
from fastsae.core.bfloat16 import bfloat16_dtype, is_bfloat16
from fastsae.core.checks import check_array, check_dtype
from fastsae.kernels import _mkl
from fastsae.kernels import sae as numba_sae

from test_sae_kernels import OPTIONS, SHAPES, _label, _problem

HAVE_EXTRA = _mkl.available()
needs_mkl = pytest.mark.skipif(
    not HAVE_EXTRA, reason='needs the mkl extra (pip install "fastsae-audio[mkl]")')
KW = dict(sparsity=0.05, beta=3.0, weight_decay=1e-3)


def _bf16(X):
    return X.astype(bfloat16_dtype())


@pytest.fixture
def no_extra(monkeypatch):
    """As on a machine without the extra: no ml_dtypes to import, no libmkl_rt to find."""
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)
    monkeypatch.setattr(_mkl, "_candidates", lambda: [])
    monkeypatch.setattr(_mkl, "_loaded", None)


# -- the kernel and its twin ------------------------------------------------------

@needs_mkl
@pytest.mark.parametrize("opts", OPTIONS, ids=_label)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_numba_bfloat16_equals_the_reference_twin(opts, shape):
    v, h, m = shape
    theta, X = _problem(v, h, m, np.float64, opts)
    X16 = _bf16(X)
    kw = dict(KW, **opts)
    c_ref, g_ref = reference.sae_cost_grad(theta, X16, v, h, **kw)
    c_nb, g_nb = numba_sae.sae_cost_grad(theta, X16, v, h, **kw)
    assert g_nb.dtype == np.float64 and g_nb.shape == theta.shape
    # the same roundings; only the order of the float32 sums (and an ulp of the
    # sigmoid, which may move a value to the next bfloat16) differ
    assert c_nb == pytest.approx(c_ref, rel=5e-6)
    np.testing.assert_allclose(g_nb, g_ref, rtol=0, atol=4e-5 * np.abs(g_ref).max())


@needs_mkl
def test_the_comparison_sees_a_wrong_bfloat16_kernel():
    # the tolerance above is below what products without the bfloat16 roundings give
    for v, h, m in SHAPES:
        theta, X = _problem(v, h, m, np.float64, OPTIONS[0])
        g_ref = reference.sae_cost_grad(theta, _bf16(X), v, h, **KW)[1]
        g32 = reference.sae_cost_grad(theta, _bf16(X).astype(np.float32), v, h, **KW)[1]
        assert np.abs(g32 - g_ref).max() > 6e-5 * np.abs(g_ref).max()


@pytest.mark.parametrize("opts", OPTIONS, ids=_label)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_reference_twin_is_close_to_float64(opts, shape):
    pytest.importorskip("ml_dtypes", reason="the bfloat16 twin needs ml-dtypes")
    v, h, m = shape
    theta, X = _problem(v, h, m, np.float64, opts)
    kw = dict(KW, **opts)
    c64, g64 = reference.sae_cost_grad(theta, X, v, h, **kw)
    c16, g16 = reference.sae_cost_grad(theta, _bf16(X), v, h, **kw)
    assert c16 == pytest.approx(c64, rel=1e-2)
    np.testing.assert_allclose(g16, g64, rtol=0, atol=2e-2 * np.abs(g64).max())
    assert np.linalg.norm(g16 - g64) <= 2e-2 * np.linalg.norm(g64)


@needs_mkl
@pytest.mark.parametrize("opts", OPTIONS, ids=_label)
def test_bfloat16_gradient_checks_against_the_float64_objective(opts):
    # the bfloat16 gradient against central differences of the float64 objective
    v, h, m = 16, 6, 400
    theta, X = _problem(v, h, m, np.float64, opts, seed=4)
    X16 = _bf16(X)
    kw = dict(KW, **opts)

    def fun(t):
        return (reference.sae_cost_grad(t, X, v, h, **kw)[0],
                numba_sae.sae_cost_grad(t, X16, v, h, **kw)[1])

    assert check_gradient(fun, theta) < 1e-2

    def wrong(t):
        c, g = fun(t)
        return c, 1.05 * g

    assert check_gradient(wrong, theta) > 1e-2          # the check can fail


@needs_mkl
def test_bfloat16_kernel_sees_every_sample():
    rng = np.random.default_rng(3)
    v, h, m = 6, 4, 1300                          # several chunks and threads
    X = _bf16(rng.uniform(0, 1, (m, v)))
    theta = fastsae.init_params(v, h, random_state=1)
    kw = dict(sparsity=0.1, beta=0.0, weight_decay=0.0)
    total, g = numba_sae.sae_cost_grad(theta, X, v, h, **kw)
    parts = [numba_sae.sae_cost_grad(theta, X[i:i + 100], v, h, **kw) for i in range(0, m, 100)]
    assert total == pytest.approx(np.mean([p[0] for p in parts]), rel=1e-5)
    np.testing.assert_allclose(g, np.mean([p[1] for p in parts], axis=0), rtol=1e-3, atol=1e-6)


@needs_mkl
@pytest.mark.parametrize("tied", [False, True])
def test_bfloat16_gradient_stays_close_to_float32_after_training(tied):
    # Part way through a fit, rounding the encoder's weights to one bfloat16 each
    # moved this gradient by 3.6 % (22-126 % at the audio shape); carried as two
    # parts they move it by about 0.1 %, so the fast phase can go on steering.
    rng = np.random.default_rng(0)
    v, h, m = 96, 48, 3000
    patterns = rng.uniform(0, 1, (12, v))
    X = np.clip(rng.dirichlet(np.full(12, 0.3), m) @ patterns
                + 0.05 * rng.standard_normal((m, v)), 0, 1).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastsae.ConvergenceWarning)
        sae = fastsae.SparseAutoencoder(n_hidden=h, max_iter=40, dtype="float32", tied=tied,
                                        random_state=0, **KW).fit(X)
    theta = sae._theta()
    g32 = numba_sae.sae_cost_grad(theta, X, v, h, tied=tied, **KW)[1]
    g16 = numba_sae.sae_cost_grad(theta, _bf16(X), v, h, tied=tied, **KW)[1]
    assert np.linalg.norm(g16 - g32) < 5e-3 * np.linalg.norm(g32)


@needs_mkl
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_public_entry_point_takes_bfloat16(backend):
    theta, X = _problem(10, 4, 30, np.float64, OPTIONS[0])
    X16 = _bf16(X)
    c, g = fastsae.sae_cost_grad(theta, X16, 10, 4, backend=backend, **KW)
    assert c == pytest.approx(reference.sae_cost_grad(theta, X, 10, 4, **KW)[0], rel=1e-2)
    X16[3, 2] = np.nan
    with pytest.raises(fastsae.ParameterError, match="X contains 1 NaN"):
        fastsae.sae_cost_grad(theta, X16, 10, 4, backend=backend, **KW)


@needs_mkl
def test_the_kernel_restores_mkl_threads_of_the_calling_thread():
    import ctypes
    lib = _mkl.library().lib
    lib.MKL_Set_Num_Threads_Local.restype = ctypes.c_int
    lib.MKL_Set_Num_Threads_Local(ctypes.c_int(3))
    try:
        theta, X = _problem(64, 25, 1001, np.float64, OPTIONS[0])
        numba_sae.sae_cost_grad(theta, _bf16(X), 64, 25, **KW)
    finally:
        assert lib.MKL_Set_Num_Threads_Local(ctypes.c_int(0)) == 3


# -- without the extra, and the checks ------------------------------------------------

def test_without_the_extra_bfloat16_names_it(no_extra):
    with pytest.raises(fastsae.BackendUnavailableError, match=r"fastsae-audio\[mkl\]"):
        bfloat16_dtype()
    with pytest.raises(fastsae.BackendUnavailableError, match=r"fastsae-audio\[mkl\].*mkl ml-dtypes"):
        _mkl.library()
    assert not _mkl.available()
    with pytest.raises(fastsae.BackendUnavailableError, match=r"fastsae-audio\[mkl\]"):
        check_dtype("bfloat16", bfloat16=True)


def test_without_mkl_the_kernel_names_the_extra(monkeypatch):
    monkeypatch.setattr(_mkl, "_candidates", lambda: [])
    monkeypatch.setattr(_mkl, "_loaded", None)
    ml_dtypes = pytest.importorskip("ml_dtypes")
    theta, X = _problem(10, 4, 30, np.float64, OPTIONS[0])
    with pytest.raises(fastsae.BackendUnavailableError, match=r"fastsae-audio\[mkl\]"):
        numba_sae.sae_cost_grad(theta, X.astype(ml_dtypes.bfloat16), 10, 4, **KW)


def test_import_loads_neither_ml_dtypes_nor_mkl():
    code = ("import sys, fastsae, fastsae.kernels; "
            "assert 'ml_dtypes' not in sys.modules, 'ml_dtypes imported'; "
            "maps = open('/proc/self/maps').read() if sys.platform.startswith('linux') else ''; "
            "assert 'libmkl_rt' not in maps, 'libmkl_rt loaded'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_check_dtype_learns_bfloat16():
    assert is_bfloat16("bfloat16") and not is_bfloat16("float32")
    assert not is_bfloat16(np.float32) and not is_bfloat16(np.dtype(np.float64))
    with pytest.raises(fastsae.ParameterError, match="dtype must be 'float32' or 'float64'"):
        check_dtype("bfloat16")
    with pytest.raises(fastsae.ParameterError, match="float16"):
        check_dtype("float16", bfloat16=True)
    if HAVE_EXTRA:
        dt = check_dtype("bfloat16", bfloat16=True)
        assert is_bfloat16(dt) and dt.itemsize == 2
        assert check_dtype(dt, bfloat16=True) == dt


@needs_mkl
def test_argument_checks_accept_bfloat16_only_where_asked():
    theta, X = _problem(10, 4, 30, np.float64, OPTIONS[0])
    X16 = _bf16(X)
    check_sae_options(theta, X16, 10, 4, 0.05, 3.0, 1e-3, "sigmoid", "squared", False,
                      bfloat16=True)
    with pytest.raises(fastsae.ParameterError, match="X must be float32 or float64; got dtype bfloat16"):
        check_sae_options(theta, X16, 10, 4, 0.05, 3.0, 1e-3, "sigmoid", "squared", False)
    with pytest.raises(fastsae.ParameterError, match="or bfloat16"):
        numba_sae.sae_cost_grad(theta, X.astype(np.int64), 10, 4, **KW)
    assert check_array(X16).dtype == X16.dtype              # kept as it is
    assert is_bfloat16(check_array(X, dtype="bfloat16").dtype)
    with pytest.raises(fastsae.ParameterError, match="X must be float32 or float64; got dtype bfloat16"):
        fastsae.stacked_cost_grad(np.zeros(2 * 4 + 2 + 4 * 10 + 4), X16, np.zeros(30, int),
                                  (10, 4), 2, weight_decay=1e-4, backend="cuda")
    with pytest.raises(fastsae.ParameterError, match="X must be float32 or float64; got dtype bfloat16"):
        fastsae.softmax_cost_grad(np.zeros(2 * 10 + 2), X16, np.zeros(30, int), 2,
                                  weight_decay=1e-4, backend="cuda")


# -- the estimator and its precision schedule ----------------------------------------

def _unit_data(m=2000, v=64, seed=0):
    rng = np.random.default_rng(seed)
    patterns = rng.uniform(0, 1, (30, v))
    mix = rng.dirichlet(np.full(30, 0.3), m)
    return np.clip(mix @ patterns + 0.05 * rng.standard_normal((m, v)), 0, 1)


@needs_mkl
def test_bfloat16_fit_reaches_the_float32_cost_at_equal_iterations():
    X = _unit_data()
    kw = dict(n_hidden=25, max_iter=80, random_state=0)
    f32 = fastsae.SparseAutoencoder(dtype="float32", **kw).fit(X)
    b16 = fastsae.SparseAutoencoder(dtype="bfloat16", **kw).fit(X)
    assert 0 < b16.n_bfloat16_iter_ < b16.n_iter_ <= 80 and f32.n_bfloat16_iter_ == 0
    assert len(b16.loss_curve_) == b16.n_iter_
    # both weights judged by the float64 objective
    hyper = dict(sparsity=b16.sparsity, beta=b16.beta, weight_decay=b16.weight_decay)
    c32 = reference.sae_cost_grad(f32._theta(), X, 64, 25, **hyper)[0]
    c16 = reference.sae_cost_grad(b16._theta(), X, 64, 25, **hyper)[0]
    assert c16 <= 1.01 * c32, (c16, c32)
    assert b16.transform(X).dtype == np.float32
    assert b16.cost(X) == pytest.approx(c16, rel=1e-4)          # float32 methods


def test_bfloat16_fit_without_the_extra_names_it(no_extra):
    sae = fastsae.SparseAutoencoder(n_hidden=4, dtype="bfloat16", max_iter=5)
    from sklearn.base import clone
    assert clone(sae).get_params()["dtype"] == "bfloat16"        # nothing happens before fit
    with pytest.raises(fastsae.BackendUnavailableError, match=r'pip install "fastsae-audio\[mkl\]"'):
        sae.fit(_unit_data(100, 8))


def test_bfloat16_refused_clearly_where_it_is_not_offered():
    X = _unit_data(60, 8)
    with pytest.raises(fastsae.ParameterError, match="backend='numba' or 'numpy'"):
        fastsae.SparseAutoencoder(n_hidden=4, dtype="bfloat16", backend="cuda").fit(X)
    y = np.arange(60) % 2
    with pytest.raises(fastsae.ParameterError, match="backend='numba' or 'numpy'"):
        fastsae.SoftmaxRegression(dtype="bfloat16", backend="cuda").fit(X, y)
    with pytest.raises(fastsae.ParameterError, match="backend='numba' or 'numpy'"):
        fastsae.StackedAutoencoder(hidden_sizes=(4,), dtype="bfloat16", backend="cuda").fit(X, y)
    with pytest.raises(fastsae.ParameterError,
                       match="bfloat16 is available for the autoencoders, SoftmaxRegression"):
        fastsae.PCAWhitening().fit_covariance(np.eye(3), dtype="bfloat16")
    if HAVE_EXTRA:                        # convolve has no CUDA bfloat16 path: a clear refusal
        images = np.zeros((1, 8, 8)).astype(bfloat16_dtype())
        with pytest.raises(fastsae.ParameterError, match="backend='numba' or 'numpy'"):
            fastsae.convolve(np.ones((2, 3, 3)), np.zeros(2), images, backend="cuda")


def _fast_and_exact(n=20, seed=0):
    """A quadratic, and the same with a gradient off by 1 % (a coarse arithmetic's)."""
    rng = np.random.default_rng(seed)
    Q = rng.standard_normal((n, n))
    A = Q @ Q.T / n + np.eye(n)
    b = rng.standard_normal(n)
    exact = lambda x: (0.5 * x @ A @ x - b @ x + 10.0, A @ x - b)      # noqa: E731
    noise = 1 + 0.01 * rng.standard_normal(n)
    fast = lambda x: (exact(x)[0], exact(x)[1] * noise)                 # noqa: E731
    return fast, exact


def test_the_precision_schedule_ends_exact_and_counts_both_phases():
    from fastsae.base import lbfgs_two_precisions
    fast, exact = _fast_and_exact()
    seen = []
    r = lbfgs_two_precisions(fast, exact, np.zeros(20), max_iter=40,
                             callback=lambda it, x, c: seen.append(it), gtol=1e-8)
    assert 0 < r.n_fast_iter <= r.n_iter <= 40 and len(r.loss_curve) == r.n_iter
    assert seen == list(range(1, r.n_iter + 1))
    ref = fastsae.lbfgs(exact, np.zeros(20), max_iter=200, gtol=1e-10)
    assert r.cost == pytest.approx(ref.cost, rel=1e-8) and r.converged
    assert r.cost == pytest.approx(exact(r.theta)[0], rel=1e-15)


def test_the_precision_schedule_leaves_a_fast_gradient_that_stops_steering(monkeypatch):
    # rounded weights: the fast gradient is the exact one at a slightly moved point, an
    # error that stays while the gradient shrinks; the schedule must see it and switch
    import fastsae.base as base
    _, exact = _fast_and_exact()
    offset = 1e-3 * np.random.default_rng(1).standard_normal(20)
    fast = lambda x: (exact(x)[0], exact(x)[1] + offset)                 # noqa: E731
    calls = []

    def counted(x):
        calls.append(1)
        return exact(x)

    r = base.lbfgs_two_precisions(fast, counted, np.zeros(20), max_iter=100, gtol=1e-9)
    assert r.converged and r.cost == pytest.approx(exact(r.theta)[0], rel=1e-15)
    assert r.n_evals >= len(calls) > 0            # the checks count as evaluations
    monkeypatch.setattr(base, "GRADIENT_AGREEMENT", np.inf)          # no check: a stall ends it
    later = base.lbfgs_two_precisions(fast, exact, np.zeros(20), max_iter=100, gtol=1e-9)
    assert 0 < r.n_fast_iter < later.n_fast_iter


def test_the_precision_schedule_spaces_its_gradient_checks(monkeypatch):
    # each check is one exact evaluation: on halvings of the gradient norm too, never
    # two within CHECK_MIN_GAP iterations (early on, the norm halves every iteration)
    import fastsae.base as base
    gap = base.CHECK_MIN_GAP
    assert gap > 1
    fast, exact = _fast_and_exact()
    monkeypatch.setattr(base, "GRADIENT_AGREEMENT", np.inf)          # checks never switch
    monkeypatch.setattr(base, "STALL_DECREASE", 0.0)

    def checked_at(min_gap):
        monkeypatch.setattr(base, "CHECK_MIN_GAP", min_gap)
        now, at = [0], []

        def exact_seen(x):
            at.append(now[0])
            return exact(x)

        r = base.lbfgs_two_precisions(fast, exact_seen, np.zeros(20), max_iter=60, gtol=0.0,
                                      tol=0.0, callback=lambda it, x, c: now.__setitem__(0, it))
        return [it for it in at if it < r.n_fast_iter]                # the fast phase's checks

    dense, spaced = checked_at(1), checked_at(gap)
    assert len(spaced) >= 2 and min(np.diff(spaced)) >= gap
    assert min(np.diff(dense)) < gap and len(dense) > len(spaced)


def test_the_precision_schedule_stops_on_the_callback():
    from fastsae.base import lbfgs_two_precisions
    fast, exact = _fast_and_exact()

    def stop(it, x, c):
        if it == 3:
            raise StopIteration

    r = lbfgs_two_precisions(fast, exact, np.zeros(20), max_iter=40, callback=stop)
    assert r.interrupted and r.n_iter == 3 and r.n_fast_iter == 3


# -- softmax regression in bfloat16 ---------------------------------------------------

SOFTMAX_SHAPES = [(37, 13, 3), (1000, 129, 10), (5, 1, 2), (211, 64, 7)]   # (m, n, classes)


def _softmax_problem(m, n, K, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((K, n))
    y = rng.integers(0, K, m)
    X = centres[y] + 1.5 * rng.standard_normal((m, n))
    theta = 0.1 * rng.standard_normal(K * n + K)
    return theta, X, y


@needs_mkl
@pytest.mark.parametrize("shape", SOFTMAX_SHAPES, ids=str)
def test_numba_softmax_bfloat16_equals_the_reference_twin(shape):
    from fastsae.kernels import softmax as numba_softmax

    m, n, K = shape
    theta, X, y = _softmax_problem(m, n, K)
    X16 = _bf16(X)
    c_ref, g_ref = reference.softmax_cost_grad(theta, X16, y, K, weight_decay=1e-3)
    c_nb, g_nb = numba_softmax.softmax_cost_grad(theta, X16, y, K, weight_decay=1e-3)
    assert g_nb.dtype == np.float64 and g_nb.shape == theta.shape
    assert c_nb == pytest.approx(c_ref, rel=5e-6)
    np.testing.assert_allclose(g_nb, g_ref, rtol=0, atol=1e-5 * np.abs(g_ref).max())
    # and the tolerance is below what products without the bfloat16 roundings give
    g32 = reference.softmax_cost_grad(theta, X16.astype(np.float32), y, K, weight_decay=1e-3)[1]
    assert np.abs(g32 - g_ref).max() > 1e-4 * np.abs(g_ref).max()


@pytest.mark.parametrize("shape", SOFTMAX_SHAPES, ids=str)
def test_softmax_reference_twin_is_close_to_float64(shape):
    pytest.importorskip("ml_dtypes", reason="the bfloat16 twin needs ml-dtypes")
    m, n, K = shape
    theta, X, y = _softmax_problem(m, n, K, seed=1)
    c64, g64 = reference.softmax_cost_grad(theta, X, y, K, weight_decay=1e-3)
    c16, g16 = reference.softmax_cost_grad(theta, _bf16(X), y, K, weight_decay=1e-3)
    assert c16 == pytest.approx(c64, rel=1e-2)
    assert np.linalg.norm(g16 - g64) <= 2e-2 * np.linalg.norm(g64)


@needs_mkl
def test_softmax_bfloat16_gradient_checks_against_the_float64_objective():
    from fastsae.kernels import softmax as numba_softmax

    theta, X, y = _softmax_problem(400, 16, 4, seed=2)
    X16 = _bf16(X)

    def fun(t):
        return (reference.softmax_cost_grad(t, X, y, 4, weight_decay=1e-3)[0],
                numba_softmax.softmax_cost_grad(t, X16, y, 4, weight_decay=1e-3)[1])

    assert check_gradient(fun, theta) < 1e-2
    assert check_gradient(lambda t: (fun(t)[0], 1.05 * fun(t)[1]), theta) > 1e-2


@needs_mkl
def test_softmax_bfloat16_kernel_sees_every_sample():
    from fastsae.kernels import softmax as numba_softmax

    theta, X, y = _softmax_problem(1300, 6, 3, seed=3)          # several chunks and threads
    X16 = _bf16(X)
    total, g = numba_softmax.softmax_cost_grad(theta, X16, y, 3, weight_decay=0.0)
    parts = [numba_softmax.softmax_cost_grad(theta, X16[i:i + 100], y[i:i + 100], 3,
                                             weight_decay=0.0) for i in range(0, 1300, 100)]
    assert total == pytest.approx(np.mean([p[0] for p in parts]), rel=1e-5)
    np.testing.assert_allclose(g, np.mean([p[1] for p in parts], axis=0), rtol=1e-3, atol=1e-6)


@needs_mkl
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_softmax_regression_bfloat16_reaches_the_float32_cost(backend):
    _, X, y = _softmax_problem(3000, 40, 6, seed=5)
    X += 3.0 * np.random.default_rng(6).standard_normal(X.shape)    # overlapping classes
    kw = dict(weight_decay=1e-3, max_iter=60, backend=backend, random_state=0)
    f32 = fastsae.SoftmaxRegression(dtype="float32", **kw).fit(X, y)
    b16 = fastsae.SoftmaxRegression(dtype="bfloat16", **kw).fit(X, y)
    assert 0 < b16.n_bfloat16_iter_ < b16.n_iter_ and f32.n_bfloat16_iter_ == 0
    c32 = reference.softmax_cost_grad(f32._theta(), X, y, 6, weight_decay=1e-3)[0]
    c16 = reference.softmax_cost_grad(b16._theta(), X, y, 6, weight_decay=1e-3)[0]
    assert c16 <= 1.01 * c32, (c16, c32)
    assert abs(b16.score(X, y) - f32.score(X, y)) <= 0.01
    assert b16.predict_proba(X[:5]).dtype == np.float32
    assert b16.cost(X, y) == pytest.approx(c16, rel=1e-4)        # float32 methods


def test_softmax_regression_bfloat16_without_the_extra_names_it(no_extra):
    X, y = _unit_data(100, 8), np.arange(100) % 3
    with pytest.raises(fastsae.BackendUnavailableError, match=r'pip install "fastsae-audio\[mkl\]"'):
        fastsae.SoftmaxRegression(dtype="bfloat16", max_iter=5).fit(X, y)


def test_softmax_regression_bfloat16_refuses_a_dask_array():
    da = pytest.importorskip("dask.array")
    X = da.from_array(_unit_data(40, 4), chunks=(20, 4))
    with pytest.raises(fastsae.ParameterError, match="dask array"):
        fastsae.SoftmaxRegression(dtype="bfloat16").fit(X, np.arange(40) % 2)


@needs_mkl
def test_self_taught_features_train_their_autoencoder_in_bfloat16(tmp_path):
    from fastsae import audio, datasets
    from fastsae.pipeline import SelfTaughtFeatures

    clips, labels = datasets.synthetic(n_per_class=12, random_state=0)
    spectra = audio.Spectrogram("mel", 40, sr=8000).transform(clips)
    kw = dict(n_hidden=12, n_windows=3000, max_iter=40, random_state=0)
    f32 = SelfTaughtFeatures(dtype="float32", **kw)
    b16 = SelfTaughtFeatures(dtype="bfloat16", **kw)
    F32, F16 = f32.fit_transform(spectra), b16.fit_transform(spectra)
    assert F16.dtype == np.float32 and F16.shape == F32.shape
    assert b16.sae_.dtype == "bfloat16" and 0 < b16.sae_.n_bfloat16_iter_ < b16.sae_.n_iter_
    assert b16.sae_.loss_curve_[-1] <= 1.01 * f32.sae_.loss_curve_[-1]
    fastsae.save(b16, tmp_path / "features.npz")
    again = fastsae.load(tmp_path / "features.npz")
    np.testing.assert_array_equal(again.transform(spectra[:4]), b16.transform(spectra[:4]))


# -- the stacked autoencoder in bfloat16 ----------------------------------------------

STACKED_SHAPES = [((13, 6, 4), 200, 3), ((20,), 77, 2), ((9, 5), 1500, 4),
                  ((31, 7, 5, 3), 333, 3)]             # (layer sizes, m, classes)


def _stacked_problem(sizes, m, K, seed=0):
    from fastsae.params import layout_size, stacked_layout

    rng = np.random.default_rng(seed)
    theta = 0.2 * rng.standard_normal(layout_size(stacked_layout(sizes, K)))
    return theta, rng.random((m, sizes[0])), rng.integers(0, K, m)


STACKED_KW = dict(weight_decay=1e-3, stack_weight_decay=1e-3)


@needs_mkl
@pytest.mark.parametrize("shape", STACKED_SHAPES, ids=str)
def test_numba_stacked_bfloat16_equals_the_reference_twin(shape):
    from fastsae.kernels import stacked as numba_stacked

    sizes, m, K = shape
    theta, X, y = _stacked_problem(sizes, m, K)
    X16 = _bf16(X)
    c_ref, g_ref = reference.stacked_cost_grad(theta, X16, y, sizes, K, **STACKED_KW)
    c_nb, g_nb = numba_stacked.stacked_cost_grad(theta, X16, y, sizes, K, **STACKED_KW)
    assert g_nb.dtype == np.float64 and g_nb.shape == theta.shape
    assert c_nb == pytest.approx(c_ref, rel=5e-6)
    np.testing.assert_allclose(g_nb, g_ref, rtol=0, atol=1e-5 * np.abs(g_ref).max())
    g32 = reference.stacked_cost_grad(theta, X16.astype(np.float32), y, sizes, K,
                                      **STACKED_KW)[1]
    assert np.abs(g32 - g_ref).max() > 1e-4 * np.abs(g_ref).max()   # the tolerance can fail


@pytest.mark.parametrize("shape", STACKED_SHAPES, ids=str)
def test_stacked_reference_twin_is_close_to_float64(shape):
    pytest.importorskip("ml_dtypes", reason="the bfloat16 twin needs ml-dtypes")
    sizes, m, K = shape
    theta, X, y = _stacked_problem(sizes, m, K, seed=1)
    c64, g64 = reference.stacked_cost_grad(theta, X, y, sizes, K, **STACKED_KW)
    c16, g16 = reference.stacked_cost_grad(theta, _bf16(X), y, sizes, K, **STACKED_KW)
    assert c16 == pytest.approx(c64, rel=1e-2)
    assert np.linalg.norm(g16 - g64) <= 2e-2 * np.linalg.norm(g64)


@needs_mkl
def test_stacked_bfloat16_gradient_checks_against_the_float64_objective():
    from fastsae.kernels import stacked as numba_stacked

    sizes, K = (12, 6, 5), 3
    theta, X, y = _stacked_problem(sizes, 400, K, seed=2)
    X16 = _bf16(X)

    def fun(t):
        return (reference.stacked_cost_grad(t, X, y, sizes, K, **STACKED_KW)[0],
                numba_stacked.stacked_cost_grad(t, X16, y, sizes, K, **STACKED_KW)[1])

    assert check_gradient(fun, theta) < 1e-2
    assert check_gradient(lambda t: (fun(t)[0], 1.05 * fun(t)[1]), theta) > 1e-2


@needs_mkl
def test_stacked_bfloat16_kernel_sees_every_sample():
    from fastsae.kernels import stacked as numba_stacked

    sizes, K = (6, 5, 4), 3
    theta, X, y = _stacked_problem(sizes, 1300, K, seed=3)      # several chunks and threads
    X16 = _bf16(X)
    kw = dict(weight_decay=0.0)
    total, g = numba_stacked.stacked_cost_grad(theta, X16, y, sizes, K, **kw)
    parts = [numba_stacked.stacked_cost_grad(theta, X16[i:i + 100], y[i:i + 100], sizes, K,
                                             **kw) for i in range(0, 1300, 100)]
    assert total == pytest.approx(np.mean([p[0] for p in parts]), rel=1e-5)
    np.testing.assert_allclose(g, np.mean([p[1] for p in parts], axis=0), rtol=1e-3, atol=1e-6)


@needs_mkl
def test_stacked_autoencoder_bfloat16_trains_every_stage_in_bfloat16():
    # the fine-tuning leaves a plateau (cost log 4) at an iteration that float32 and
    # float64 runs already disagree on, so equal-iteration costs are not compared here
    # (the autoencoders' tests do that); every stage must run in bfloat16 and learn
    rng = np.random.default_rng(7)
    y = rng.integers(0, 4, 1500)
    X = np.clip(rng.uniform(0.2, 0.8, (4, 24))[y] + 0.15 * rng.standard_normal((1500, 24)), 0, 1)
    kw = dict(hidden_sizes=(16, 8), pretrain_iter=30, softmax_iter=30, finetune_iter=40,
              random_state=0)
    f32 = fastsae.StackedAutoencoder(dtype="float32", **kw).fit(X, y)
    b16 = fastsae.StackedAutoencoder(dtype="bfloat16", **kw).fit(X, y)
    assert 0 < b16.n_bfloat16_iter_ <= b16.n_iter_ <= 40 and f32.n_bfloat16_iter_ == 0
    assert all(s.dtype == "bfloat16" and s.n_bfloat16_iter_ > 0 for s in b16.autoencoders_)
    assert b16.softmax_.dtype == "bfloat16"
    sizes = (24, 16, 8)
    c16 = reference.stacked_cost_grad(b16._theta(), X, np.searchsorted(b16.classes_, y), sizes,
                                      4, weight_decay=b16.softmax_weight_decay)[0]
    assert c16 < 0.5 * b16.pretrain_cost_
    assert b16.finetune_cost_ == pytest.approx(c16, rel=1e-4)        # an exact final cost
    assert b16.score(X, y) >= 0.95 and f32.score(X, y) >= 0.95       # chance: 0.25
    assert b16.transform(X[:5]).dtype == np.float32


def test_stacked_autoencoder_bfloat16_without_the_extra_names_it(no_extra):
    with pytest.raises(fastsae.BackendUnavailableError, match=r'pip install "fastsae-audio\[mkl\]"'):
        fastsae.StackedAutoencoder(hidden_sizes=(4,), dtype="bfloat16").fit(
            _unit_data(60, 8), np.arange(60) % 2)


def test_stacked_autoencoder_bfloat16_refuses_a_dask_array():
    da = pytest.importorskip("dask.array")
    X = da.from_array(_unit_data(40, 4), chunks=(20, 4))
    with pytest.raises(fastsae.ParameterError, match="dask arrays"):
        fastsae.StackedAutoencoder(hidden_sizes=(3,), dtype="bfloat16").fit(X, np.arange(40) % 2)


# -- convolution in bfloat16 ----------------------------------------------------------

@needs_mkl
@pytest.mark.parametrize("activation", ["sigmoid", "relu", "linear"])
@pytest.mark.parametrize("shape", [(4, 3, 5, 3, 17, 23), (40, 8, 8, 2, 30, 31), (1, 1, 1, 1, 1, 1),
                                   (7, 12, 8, 2, 40, 33)], ids=str)
def test_numba_convolve_bfloat16_equals_the_reference_twin(shape, activation):
    from fastsae.kernels import conv as numba_conv

    K, ph, pw, N, H, W = shape
    rng = np.random.default_rng(K)
    F, b = rng.standard_normal((K, ph, pw)), rng.standard_normal(K)
    images = _bf16(rng.standard_normal((N, H, W)))
    ref = reference.convolve(F, b, images, activation=activation)
    ours = numba_conv.convolve(F, b, images, activation=activation)
    assert ours.dtype == ref.dtype == np.float32 and ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-6 * max(np.abs(ref).max(), 1.0))
    # the filters really are rounded: float32 filters give other maps
    exact = reference.convolve(F, b, images.astype(np.float32), activation=activation)
    if activation == "linear" and K * ph * pw > 4:
        assert np.abs(exact - ref).max() > 1e-4 * np.abs(ref).max()
    out = np.empty_like(ours)
    assert numba_conv.convolve(F, b, images, activation=activation, out=out) is out
    np.testing.assert_array_equal(out, ours)


def test_convolve_bfloat16_twin_is_close_to_float64():
    pytest.importorskip("ml_dtypes", reason="the bfloat16 twin needs ml-dtypes")
    rng = np.random.default_rng(0)
    F, b = rng.standard_normal((6, 5, 4)), rng.standard_normal(6)
    images = rng.standard_normal((3, 20, 18))
    m64 = reference.convolve(F, b, images, activation="linear")
    m16 = reference.convolve(F, b, _bf16(images), activation="linear")
    assert np.linalg.norm(m16 - m64) <= 2e-2 * np.linalg.norm(m64)
    with pytest.raises(fastsae.ParameterError, match="dtype float32"):
        reference.convolve(F, b, _bf16(images), out=np.empty(m64.shape, np.float64))


def test_a_bfloat16_dtype_object_saves_by_name(tmp_path):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    for dtype in (np.dtype(ml_dtypes.bfloat16), ml_dtypes.bfloat16):
        clf = fastsae.SoftmaxRegression(dtype=dtype)
        fastsae.save(clf, tmp_path / "m.npz")
        assert fastsae.load(tmp_path / "m.npz").dtype == "bfloat16"


# -- the convolutional autoencoder and network in bfloat16 -----------------------------

from test_convae import NETS, net_problem, problem as conv_problem  # noqa: E402
from test_convae import OPTIONS as CONV_OPTIONS, SHAPES as CONV_SHAPES  # noqa: E402
from fastsae.kernels import convae as numba_convae, convnet as numba_convnet  # noqa: E402
from fastsae.reference import convae as ref_convae, convnet as ref_convnet  # noqa: E402

CONV_KW = dict(sparsity=0.1, beta=3.0, weight_decay=1e-3)


@needs_mkl
@pytest.mark.parametrize("shape", CONV_SHAPES + [(9, 2, 13, 11, 5, 4, 3)], ids=str)
@pytest.mark.parametrize("tied,decoder", CONV_OPTIONS)
def test_numba_conv_ae_bfloat16_equals_the_reference_twin(shape, tied, decoder):
    theta, X, K, patch = conv_problem(shape, tied)
    X16 = _bf16(X)
    kw = dict(CONV_KW, decoder=decoder, tied=tied)
    c_ref, g_ref = ref_convae.conv_ae_cost_grad(theta, X16, K, patch, **kw)
    c_nb, g_nb = numba_convae.conv_ae_cost_grad(theta, X16, K, patch, **kw)
    assert g_nb.dtype == np.float64 and g_nb.shape == theta.shape
    assert c_nb == pytest.approx(c_ref, rel=5e-6)
    np.testing.assert_allclose(g_nb, g_ref, rtol=0, atol=1e-5 * np.abs(g_ref).max())
    # the tolerance is below what the same products without the roundings give
    g32 = ref_convae.conv_ae_cost_grad(theta, X16.astype(np.float32), K, patch, **kw)[1]
    if K * np.prod(patch) > 4:
        assert np.abs(g32 - g_ref).max() > 5e-5 * np.abs(g_ref).max()


@pytest.mark.parametrize("tied,decoder", CONV_OPTIONS)
def test_conv_ae_reference_twin_is_close_to_float64(tied, decoder):
    pytest.importorskip("ml_dtypes", reason="the bfloat16 twin needs ml-dtypes")
    theta, X, K, patch = conv_problem((6, 2, 12, 10, 4, 3, 4), tied)
    kw = dict(CONV_KW, decoder=decoder, tied=tied)
    c64, g64 = ref_convae.conv_ae_cost_grad(theta, X, K, patch, **kw)
    c16, g16 = ref_convae.conv_ae_cost_grad(theta, _bf16(X), K, patch, **kw)
    assert c16 == pytest.approx(c64, rel=1e-2)
    assert np.linalg.norm(g16 - g64) <= 2e-2 * np.linalg.norm(g64)


@needs_mkl
@pytest.mark.parametrize("tied,decoder", CONV_OPTIONS)
def test_conv_ae_bfloat16_gradient_checks_against_the_float64_objective(tied, decoder):
    theta, X, K, patch = conv_problem((30, 1, 9, 8, 3, 3, 3), tied, scale=0.3)
    X16 = _bf16(X)
    kw = dict(CONV_KW, decoder=decoder, tied=tied)

    def fun(t):
        return (ref_convae.conv_ae_cost_grad(t, X, K, patch, **kw)[0],
                numba_convae.conv_ae_cost_grad(t, X16, K, patch, **kw)[1])

    assert check_gradient(fun, theta) < 1e-2
    assert check_gradient(lambda t: (fun(t)[0], 1.05 * fun(t)[1]), theta) > 1e-2


@needs_mkl
def test_conv_ae_bfloat16_kernel_sees_every_image():
    theta, X, K, patch = conv_problem((13, 1, 10, 9, 3, 3, 2), False)
    X16 = _bf16(X)
    kw = dict(CONV_KW, beta=0.0, decoder="linear")          # no coupling term: a plain mean
    c, g = numba_convae.conv_ae_cost_grad(theta, X16, K, patch, **kw)
    parts = [numba_convae.conv_ae_cost_grad(theta, X16[i:i + 1], K, patch, **kw)
             for i in range(13)]
    assert c == pytest.approx(np.mean([p[0] for p in parts]), rel=1e-5)
    np.testing.assert_allclose(g, np.mean([p[1] for p in parts], axis=0), rtol=1e-3, atol=1e-6)


@needs_mkl
@pytest.mark.parametrize("name", list(NETS))
def test_numba_conv_net_bfloat16_equals_the_reference_twin(name):
    theta, X, y, n_classes = net_problem(NETS[name], seed=3)
    X16 = _bf16(X)
    kw = dict(weight_decay=1e-3, conv_weight_decay=1e-2)
    c_ref, g_ref = ref_convnet.conv_net_cost_grad(theta, X16, y, NETS[name], n_classes, **kw)
    c_nb, g_nb = numba_convnet.conv_net_cost_grad(theta, X16, y, NETS[name], n_classes, **kw)
    assert c_nb == pytest.approx(c_ref, rel=5e-6)
    np.testing.assert_allclose(g_nb, g_ref, rtol=0, atol=1e-5 * np.abs(g_ref).max())
    g32 = ref_convnet.conv_net_cost_grad(theta, X16.astype(np.float32), y, NETS[name],
                                         n_classes, **kw)[1]
    assert np.abs(g32 - g_ref).max() > 5e-5 * np.abs(g_ref).max()


@pytest.mark.parametrize("name", list(NETS))
def test_conv_net_reference_twin_is_close_to_float64(name):
    pytest.importorskip("ml_dtypes", reason="the bfloat16 twin needs ml-dtypes")
    theta, X, y, n_classes = net_problem(NETS[name], seed=3)
    c64, g64 = ref_convnet.conv_net_cost_grad(theta, X, y, NETS[name], n_classes,
                                              weight_decay=1e-3)
    c16, g16 = ref_convnet.conv_net_cost_grad(theta, _bf16(X), y, NETS[name], n_classes,
                                              weight_decay=1e-3)
    assert c16 == pytest.approx(c64, rel=1e-2)
    assert np.linalg.norm(g16 - g64) <= 2e-2 * np.linalg.norm(g64)


@needs_mkl
@pytest.mark.parametrize("name", ["1-max", "2-mean-max"])
def test_conv_net_bfloat16_gradient_checks_against_the_float64_objective(name):
    theta, X, y, n_classes = net_problem(NETS[name])
    X16 = _bf16(X)
    kw = dict(weight_decay=1e-3, conv_weight_decay=1e-3)

    def fun(t):
        return (ref_convnet.conv_net_cost_grad(t, X, y, NETS[name], n_classes, **kw)[0],
                numba_convnet.conv_net_cost_grad(t, X16, y, NETS[name], n_classes, **kw)[1])

    assert check_gradient(fun, theta) < 2e-2
    assert check_gradient(lambda t: (fun(t)[0], 1.1 * fun(t)[1]), theta) > 2e-2


@needs_mkl
def test_conv_net_bfloat16_kernel_sees_every_image():
    rng = np.random.default_rng(5)
    layers = NETS["2-mean-max"]
    X = _bf16(rng.uniform(0, 1, (11, 2, 12, 11)))
    y = np.arange(11) % 3
    plan, nf = fastsae.core.layouts.conv_net_plan(layers, X.shape[1:])
    theta = rng.uniform(-0.5, 0.5, fastsae.params.layout_size(
        fastsae.core.layouts.conv_net_layout(plan, nf, 3)))
    c, g = numba_convnet.conv_net_cost_grad(theta, X, y, layers, 3, weight_decay=0.0)
    parts = [numba_convnet.conv_net_cost_grad(theta, X[i:i + 1], y[i:i + 1], layers, 3,
                                              weight_decay=0.0) for i in range(11)]
    assert c == pytest.approx(np.mean([p[0] for p in parts]), rel=1e-5)
    np.testing.assert_allclose(g, np.mean([p[1] for p in parts], axis=0), rtol=1e-3, atol=1e-6)


def _images(n=80, seed=0):
    """Smooth images mixed from a few patterns (standardised), and a label of each."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    base = np.array([gaussian_filter(b, 1.5) for b in rng.standard_normal((8, 14, 12))])
    mix = rng.dirichlet(np.full(8, 0.3), n)
    X = np.einsum("nk,khw->nhw", mix, base)
    return (X - X.mean()) / X.std(), np.argmax(mix[:, :2], axis=1)


@needs_mkl
def test_conv_autoencoder_bfloat16_reaches_the_float32_cost_at_equal_iterations():
    """At 80 iterations the cost still falls by about 1 % an iteration, and one run's
    bfloat16/float32 ratio wanders by ±0.4 % with the path (0.4-1.2 % over 60-100
    iterations, with float32 or float64 correction pairs alike; seed 0 alone is 1.0103
    with float32 pairs, 1.0067 with float64 ones); the median of three starting
    points is what is held to 1 %."""
    X, _ = _images(120)
    X4 = X[:, None]
    ratios = []
    for seed in range(3):
        kw = dict(n_filters=6, patch_shape=(5, 4), max_iter=80, decoder="linear",
                  weight_decay=1e-3, random_state=seed)
        with pytest.warns(fastsae.ConvergenceWarning):
            f32 = fastsae.ConvolutionalAutoencoder(dtype="float32", **kw).fit(X)
        with pytest.warns(fastsae.ConvergenceWarning):
            b16 = fastsae.ConvolutionalAutoencoder(dtype="bfloat16", **kw).fit(X)
        assert 0 < b16.n_bfloat16_iter_ < b16.n_iter_ <= 80 and f32.n_bfloat16_iter_ == 0
        hyper = dict(sparsity=b16.sparsity, beta=b16.beta, weight_decay=b16.weight_decay,
                     decoder="linear")
        c32 = ref_convae.conv_ae_cost_grad(f32._theta(), X4, 6, (5, 4), **hyper)[0]
        c16 = ref_convae.conv_ae_cost_grad(b16._theta(), X4, 6, (5, 4), **hyper)[0]
        ratios.append(c16 / c32)
        assert c16 <= 1.02 * c32, (seed, c16, c32)
    assert np.median(ratios) <= 1.01, ratios
    assert b16.transform(X).dtype == np.float32
    assert b16.cost(X) == pytest.approx(c16, rel=1e-4)


@needs_mkl
def test_stacked_conv_autoencoder_bfloat16_trains_every_stage_in_bfloat16(tmp_path):
    X, y = _images(160)
    kw = dict(layers=[dict(n_filters=6, patch_shape=(5, 4), n_pool_regions=(2, 2), pool="max")],
              decoder="linear", pretrain_iter=30, softmax_iter=50, finetune_iter=40,
              random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastsae.ConvergenceWarning)
        f32 = fastsae.StackedConvolutionalAutoencoder(dtype="float32", **kw).fit(X, y)
        b16 = fastsae.StackedConvolutionalAutoencoder(dtype="bfloat16", **kw).fit(X, y)
    assert b16.autoencoders_[0].n_bfloat16_iter_ > 0 and b16.softmax_.n_bfloat16_iter_ > 0
    assert 0 < b16.n_bfloat16_iter_ < 40
    assert b16.finetune_cost_ < b16.pretrain_cost_
    assert b16.score(X, y) >= f32.score(X, y) - 0.05
    assert b16.transform(X).dtype == np.float32
    fastsae.save(b16, tmp_path / "net.npz")
    back = fastsae.load(tmp_path / "net.npz")
    assert back.dtype == "bfloat16"
    np.testing.assert_array_equal(back.predict(X), b16.predict(X))


def test_conv_models_bfloat16_without_the_extra_name_it(no_extra):
    X, y = _images(20)
    with pytest.raises(fastsae.BackendUnavailableError, match=r"fastsae-audio\[mkl\]"):
        fastsae.ConvolutionalAutoencoder(2, (3, 3), dtype="bfloat16", max_iter=3).fit(X)
    with pytest.raises(fastsae.BackendUnavailableError, match=r"fastsae-audio\[mkl\]"):
        fastsae.StackedConvolutionalAutoencoder(
            [dict(n_filters=2, patch_shape=(3, 3), n_pool_regions=(2, 2))],
            dtype="bfloat16", pretrain_iter=3).fit(X, y)


def test_conv_models_refuse_bfloat16_on_cuda():
    X, y = _images(20)
    with pytest.raises(fastsae.ParameterError, match="backend='numba' or 'numpy'"):
        fastsae.ConvolutionalAutoencoder(2, (3, 3), dtype="bfloat16", backend="cuda").fit(X)
    with pytest.raises(fastsae.ParameterError, match="backend='numba' or 'numpy'"):
        fastsae.StackedConvolutionalAutoencoder(dtype="bfloat16", backend="cuda").fit(X, y)
