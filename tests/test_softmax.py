"""Softmax regression: the Numba kernel equals the NumPy reference, gradients are
right, huge logits stay finite, and the estimator classifies and keeps labels."""
import numpy as np
import pytest
from scipy.special import logsumexp

import fastsae
from fastsae import ParameterError, check_gradient, reference
from fastsae.backends import CPU_BACKENDS, get_backend, get_function
from fastsae.kernels import softmax as numba_softmax
from fastsae.softmax import SoftmaxRegression, softmax_cost_grad

SHAPES = [  # (n_samples, n_features, n_classes)
    (301, 13, 5),
    (1, 4, 3),        # one sample
    (50, 1, 2),       # one feature, two classes
    (3, 17, 2),       # fewer samples than threads x chunks
    (9_001, 20, 10),  # many rows, not a multiple of any chunk
]


def _problem(m, n, K, dtype, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    X = (scale * rng.standard_normal((m, n))).astype(dtype)
    y = rng.integers(0, K, m)
    theta = 0.3 * rng.standard_normal(K * n + K)   # non-zero bias too
    return theta, X, y


def _nll_float64(theta, X, y, K):
    """−mean log p(y|x) by log-sum-exp, all in float64 (the oracle for huge logits)."""
    n = X.shape[1]
    W, b = theta[:K * n].reshape(K, n), theta[K * n:]
    Z = X.astype(np.float64) @ W.T + b
    return float(np.mean(logsumexp(Z, axis=1) - Z[np.arange(len(y)), y]))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numba_equals_reference(shape, dtype):
    m, n, K = shape
    theta, X, y = _problem(m, n, K, dtype)
    c_ref, g_ref = reference.softmax_cost_grad(theta, X, y, K, weight_decay=1e-2)
    c_nb, g_nb = numba_softmax.softmax_cost_grad(theta, X, y, K, weight_decay=1e-2)
    assert g_nb.dtype == np.float64 and g_nb.shape == theta.shape
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    assert c_nb == pytest.approx(c_ref, rel=rtol)
    np.testing.assert_allclose(g_nb, g_ref, rtol=0, atol=rtol * 10 * np.abs(g_ref).max())
    # and both agree with the plain float64 definition
    W = theta[:K * n].reshape(K, n)
    expected = _nll_float64(theta, X, y, K) + 0.5e-2 * np.sum(W.astype(dtype).astype(float) ** 2)
    assert c_ref == pytest.approx(expected, rel=1e-12 if dtype == np.float64 else 1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numba_sees_every_sample(dtype):
    # without decay the cost and gradient over m rows are the means of per-row ones
    theta, X, y = _problem(37, 6, 4, dtype, seed=3)
    total, g = numba_softmax.softmax_cost_grad(theta, X, y, 4, weight_decay=0.0)
    parts = [numba_softmax.softmax_cost_grad(theta, X[i:i + 1], y[i:i + 1], 4, weight_decay=0.0)
             for i in range(len(y))]
    assert total == pytest.approx(np.mean([p[0] for p in parts]), rel=1e-5)
    np.testing.assert_allclose(g, np.mean([p[1] for p in parts], axis=0), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_gradient_check_float64(backend):
    theta, X, y = _problem(40, 7, 4, np.float64, seed=7)
    f = get_backend(backend).softmax_cost_grad
    err = check_gradient(lambda t: f(t, X, y, 4, weight_decay=1e-3), theta)
    assert err < 1e-7, err


def test_bias_is_not_weight_decayed():
    theta, X, y = _problem(30, 5, 3, np.float64)
    for f in (reference.softmax_cost_grad, numba_softmax.softmax_cost_grad):
        c0, g0 = f(theta, X, y, 3, weight_decay=0.0)
        c1, g1 = f(theta, X, y, 3, weight_decay=0.5)
        W = theta[:15]
        assert c1 - c0 == pytest.approx(0.25 * np.sum(W ** 2), rel=1e-12)
        np.testing.assert_allclose(g1[:15] - g0[:15], 0.5 * W, rtol=1e-10)
        np.testing.assert_array_equal(g1[15:], g0[15:])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_huge_logits_stay_finite_and_exact(backend, dtype):
    theta, X, y = _problem(500, 8, 6, dtype, seed=5, scale=1e4)   # logits ~ 1e4
    f = get_backend(backend).softmax_cost_grad
    cost, grad = f(theta, X, y, 6, weight_decay=0.0)
    assert np.isfinite(cost) and np.isfinite(grad).all()
    assert cost > 1e3                           # it really is a huge loss
    expected = _nll_float64(theta, X, y, 6)
    assert cost == pytest.approx(expected, rel=1e-12 if dtype == np.float64 else 1e-5)
    # every row's delta is one-hot minus one-hot at this scale: entries in [-1, 1]
    assert np.abs(grad[-6:]).max() <= 1.0 + 1e-6
    W, b = theta[:48].reshape(6, 8), theta[48:]
    P = get_function(backend, "softmax_predict_proba")(W, b, X)
    assert np.isfinite(P).all()
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_predict_proba_backends_agree_and_sum_to_one(dtype):
    theta, X, y = _problem(1001, 9, 7, dtype, seed=1)
    W, b = theta[:63].reshape(7, 9), theta[63:]
    P_ref = reference.softmax_predict_proba(W, b, X)
    P_nb = numba_softmax.softmax_predict_proba(W, b, X)
    assert P_nb.dtype == dtype and P_nb.shape == (1001, 7)
    np.testing.assert_allclose(P_nb, P_ref, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-7 if dtype == np.float32 else 1e-15)
    np.testing.assert_allclose(P_nb.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("where", [0, 4, 8, 12, 14])
def test_nan_in_theta_gives_nan_cost(where, dtype):
    # the optimizer must see a diverged objective, not a silently clipped one; no row
    # has label 2 here, so only the normaliser can carry a NaN in class 2's parameters
    theta, X, y = _problem(20, 4, 3, dtype)
    y = y % 2
    theta[where] = np.nan
    cost, grad = numba_softmax.softmax_cost_grad(theta, X, y, 3, weight_decay=1e-3)
    assert np.isnan(cost) and np.isnan(grad).any()
    assert np.isnan(reference.softmax_cost_grad(theta, X, y, 3, weight_decay=1e-3)[0])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_predict_proba_checks_shapes(backend):
    f = get_function(backend, "softmax_predict_proba")
    W, b, X = np.ones((3, 4)), np.zeros(3), np.ones((5, 4))
    with pytest.raises(ParameterError, match="X must have 4 columns"):
        f(W, b, X[:, :3])
    with pytest.raises(ParameterError, match=r"b must have shape \(3,\)"):
        f(W, b[:2], X)
    with pytest.raises(ParameterError, match="W must be a 2-D"):
        f(W[0], b, X)
    with pytest.raises(ParameterError, match="X must be a 2-D float32 or float64"):
        f(W, b, X.astype(int))


def test_registered_in_both_backends():
    for backend in CPU_BACKENDS:
        for name in ("softmax_cost_grad", "softmax_predict_proba"):
            assert callable(get_function(backend, name))


# -- the estimator -----------------------------------------------------------

def _blobs(m_per_class=60, n=5, K=4, sep=3.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = sep * rng.standard_normal((K, n))
    y = np.repeat(np.arange(K), m_per_class)
    X = centres[y] + 0.3 * rng.standard_normal((y.size, n))
    return X, y


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_separable_problem_reaches_full_training_accuracy(backend):
    X, y = _blobs()
    clf = SoftmaxRegression(weight_decay=1e-4, max_iter=200, backend=backend, random_state=0)
    clf.fit(X, y)
    assert clf.score(X, y) == 1.0
    curve = np.array(clf.loss_curve_)
    assert clf.n_iter_ == len(curve) > 3 and curve[-1] < 0.1 * curve[0]
    assert np.all(np.diff(curve) <= 1e-12)
    P = clf.predict_proba(X)
    assert P.shape == (len(y), 4)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-10)
    np.testing.assert_array_equal(np.argmax(P, axis=1), y)
    np.testing.assert_array_equal(np.argmax(clf.decision_function(X), axis=1), y)
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), P, rtol=1e-8, atol=1e-300)
    assert clf.coef_.shape == (4, 5) and clf.intercept_.shape == (4,)
    assert clf.cost(X, y) == pytest.approx(curve[-1], rel=1e-9)


def test_string_labels_come_back_as_strings():
    X, y = _blobs(K=3)
    names = np.array(["cat", "dog", "bird"])[y]
    clf = SoftmaxRegression(max_iter=100, random_state=0).fit(X, names.tolist())
    assert clf.classes_.tolist() == ["bird", "cat", "dog"]    # sorted, like scikit-learn
    pred = clf.predict(X)
    assert pred.dtype.kind == "U"
    np.testing.assert_array_equal(pred, names)
    assert clf.score(X, names) == 1.0
    # predict_proba's columns follow classes_
    P = clf.predict_proba(X)
    np.testing.assert_array_equal(clf.classes_[np.argmax(P, axis=1)], names)


def test_non_contiguous_labels_map_back():
    X, y = _blobs(K=3)
    labels = np.array([-7, 3, 100])[y]
    clf = SoftmaxRegression(max_iter=100, random_state=0).fit(X, labels)
    np.testing.assert_array_equal(clf.classes_, [-7, 3, 100])
    np.testing.assert_array_equal(clf.predict(X), labels)


def test_backends_and_dtypes_train_alike():
    X, y = _blobs(m_per_class=100, n=6, K=3, sep=1.0, seed=2)
    kw = dict(weight_decay=1e-3, max_iter=50, random_state=0)
    a = SoftmaxRegression(backend="numba", **kw).fit(X, y)
    b = SoftmaxRegression(backend="numpy", **kw).fit(X, y)
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-6, atol=1e-8)
    c = SoftmaxRegression(dtype="float32", **kw).fit(X, y)
    assert c.loss_curve_[-1] == pytest.approx(a.loss_curve_[-1], rel=1e-3)


def test_public_entry_point_checks_and_dispatches():
    theta, X, y = _problem(30, 5, 3, np.float64)
    costs = [softmax_cost_grad(theta, X, y, 3, weight_decay=1e-3, backend=b)[0]
             for b in CPU_BACKENDS]
    assert costs[0] == pytest.approx(costs[1], rel=1e-12)
    X_bad = X.copy()
    X_bad[2, 1] = np.nan
    with pytest.raises(ParameterError, match="X contains 1 NaN"):
        softmax_cost_grad(theta, X_bad, y, 3, weight_decay=1e-3)
    with pytest.raises(ParameterError, match="backend"):
        softmax_cost_grad(theta, X, y, 3, weight_decay=1e-3, backend="fortran")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_kernel_bad_arguments(backend):
    theta, X, y = _problem(30, 5, 3, np.float64)
    f = get_backend(backend).softmax_cost_grad
    cases = [
        (dict(y=np.r_[y[:-1], 3]), r"y must hold labels in \[0, 2\].*\[0, 3\]"),
        (dict(y=np.r_[y[:-1], -1]), r"y must hold labels in \[0, 2\]"),
        (dict(y=y[:-1]), "one label per row of X"),
        (dict(y=y.astype(float)), "integer class labels"),
        (dict(y=y.reshape(-1, 1)), "y must be 1-D"),
        (dict(n_classes=1), "n_classes must be >= 2"),
        (dict(n_classes=4), "theta must be a 1-D array of 24"),
        (dict(theta=theta[:-1]), "theta"),
        (dict(X=X[:, :4]), "theta must be"),
        (dict(X=X[0]), "X must be a 2-D"),
        (dict(X=X.astype(np.int64)), "X must be float32 or float64"),
        (dict(X=X[:0], y=y[:0]), "at least one row"),
        (dict(X=X[:, :0], theta=theta[-3:]), "one column"),
        (dict(weight_decay=-1.0), "weight_decay"),
    ]
    for change, message in cases:
        args = dict(theta=theta, X=X, y=y, n_classes=3, weight_decay=1e-3)
        args.update(change)
        with pytest.raises(ParameterError, match=message):
            f(args["theta"], args["X"], args["y"], args["n_classes"],
              weight_decay=args["weight_decay"])


BAD = [
    (dict(weight_decay=-1.0), "weight_decay"),
    (dict(max_iter=0), "max_iter"),
    (dict(backend="gpu"), "backend"),
    (dict(dtype="float16"), "dtype"),
    (dict(n_jobs=0), "n_jobs"),
    (dict(verbose="yes"), "verbose"),
]


@pytest.mark.parametrize("bad,name", BAD, ids=[b[1] for b in BAD])
def test_estimator_bad_hyperparameters(bad, name):
    X, y = _blobs(m_per_class=5)
    with pytest.raises(ParameterError, match=name):
        SoftmaxRegression(**bad).fit(X, y)


def test_estimator_bad_data():
    X, y = _blobs(m_per_class=5)
    clf = SoftmaxRegression(max_iter=5)
    with pytest.raises(ParameterError, match="at least 2 classes"):
        clf.fit(X, np.zeros(len(y)))
    with pytest.raises(ParameterError, match=r"one label per row of X \(20\); got 19"):
        clf.fit(X, y[:-1])
    with pytest.raises(ParameterError, match="NaN or infinite labels"):
        clf.fit(X, np.r_[y[:-1], np.nan])
    Xn = X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(ParameterError, match="X contains 1 NaN"):
        clf.fit(Xn, y)
    with pytest.raises(fastsae.NotFittedError):
        clf.predict(X)
    clf.fit(X, y)
    with pytest.raises(ParameterError, match="5 features"):
        clf.predict(X[:, :3])
    with pytest.raises(ParameterError, match="not seen in fit"):
        clf.cost(X, np.r_[y[:-1], 9])


def test_sklearn_conventions_and_interrupt():
    clf = SoftmaxRegression(weight_decay=1e-2)
    assert clf.get_params()["weight_decay"] == 1e-2
    assert "weight_decay=0.01" in repr(clf)
    assert not hasattr(clf, "coef_")
    X, y = _blobs(m_per_class=100, n=8, K=5, sep=0.5)

    def interrupt(it, theta, cost):
        if it == 3:
            raise KeyboardInterrupt

    with pytest.warns(RuntimeWarning, match="interrupted"):
        clf.set_params(max_iter=100).fit(X, y, callback=interrupt)
    assert clf.interrupted_ and clf.n_iter_ == 3 and np.isfinite(clf.coef_).all()


def test_any_thread_count_gives_the_same_result():
    import numba

    from fastsae.core.threads import numba_threads
    from fastsae.kernels import stacked as numba_stacked

    theta, X, y = _problem(997, 11, 6, np.float64, seed=9)
    sizes = (11, 7)
    ts = 0.3 * np.random.default_rng(0).standard_normal(6 * 7 + 6 + 7 * 11 + 7)
    ref = (numba_softmax.softmax_cost_grad(theta, X, y, 6, weight_decay=1e-3),
           numba_stacked.stacked_cost_grad(ts, X, y, sizes, 6, weight_decay=1e-3))
    for n in range(1, numba.config.NUMBA_NUM_THREADS + 1):
        with numba_threads(n):
            got = (numba_softmax.softmax_cost_grad(theta, X, y, 6, weight_decay=1e-3),
                   numba_stacked.stacked_cost_grad(ts, X, y, sizes, 6, weight_decay=1e-3))
        for (c0, g0), (c1, g1) in zip(ref, got):
            assert c1 == pytest.approx(c0, rel=1e-12)
            np.testing.assert_allclose(g1, g0, rtol=1e-10, atol=1e-14)
