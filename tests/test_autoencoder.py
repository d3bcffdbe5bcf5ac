import numpy as np
import pytest

import fastsae
from fastsae import ParameterError, SparseAutoencoder


def structured_data(m=3000, v=36, seed=0):
    """Rows mixed from a few smooth prototypes: something an autoencoder can learn."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, v)
    protos = np.stack([0.5 + 0.4 * np.sin(2 * np.pi * (k + 1) * t + k) for k in range(4)])
    w = rng.dirichlet(np.full(4, 0.3), m)
    X = w @ protos + 0.02 * rng.standard_normal((m, v))
    return np.clip(X, 0.0, 1.0)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_training_lowers_cost_and_reaches_sparsity(backend):
    X = structured_data()
    sae = SparseAutoencoder(n_hidden=16, sparsity=0.05, beta=3.0, weight_decay=1e-4,
                            max_iter=300, backend=backend, random_state=0)
    sae.fit(X)
    curve = np.array(sae.loss_curve_)
    assert sae.n_iter_ == len(curve) > 50
    assert np.all(np.diff(curve) <= 1e-12 * abs(curve[0]))   # monotone
    assert curve[-1] < 0.5 * curve[0]
    H = sae.transform(X)
    assert H.shape == (X.shape[0], 16)
    rho_hat = H.mean(axis=0)
    assert np.all(np.abs(rho_hat - 0.05) < 0.02), rho_hat
    # it learned to reconstruct: far better than predicting the mean row
    baseline = 0.5 * np.mean(np.sum((X - X.mean(0)) ** 2, axis=1))
    assert sae.reconstruction_error(X) < 0.3 * baseline
    assert sae.cost(X) == pytest.approx(curve[-1], rel=1e-9)


def test_backends_train_to_the_same_weights():
    X = structured_data(m=500, v=12)
    kw = dict(n_hidden=5, sparsity=0.1, max_iter=40, random_state=3)
    a = SparseAutoencoder(backend="numba", **kw).fit(X)
    b = SparseAutoencoder(backend="numpy", **kw).fit(X)
    # the kernels agree to ~1e-15 per call; 40 L-BFGS iterations amplify that a little
    np.testing.assert_allclose(a.W1_, b.W1_, rtol=1e-5, atol=1e-7)
    assert a.loss_curve_[-1] == pytest.approx(b.loss_curve_[-1], rel=1e-8)


def test_float32_training_matches_float64():
    X = structured_data(m=2000, v=20)
    kw = dict(n_hidden=8, sparsity=0.05, max_iter=150, random_state=0)
    a = SparseAutoencoder(dtype="float64", **kw).fit(X)
    b = SparseAutoencoder(dtype="float32", **kw).fit(X)
    assert b.transform(X).dtype == np.float32
    assert b.loss_curve_[-1] == pytest.approx(a.loss_curve_[-1], rel=0.05)


@pytest.mark.parametrize("opts", [dict(tied=True), dict(loss="cross_entropy"),
                                  dict(decoder="linear")])
def test_options_train(opts):
    X = structured_data(m=800, v=16)
    if opts.get("decoder") == "linear":
        X = (X - X.mean(0)) / X.std(0)
    sae = SparseAutoencoder(n_hidden=6, sparsity=0.1, max_iter=60, random_state=0, **opts).fit(X)
    assert sae.loss_curve_[-1] < sae.loss_curve_[0]
    if opts.get("tied"):
        np.testing.assert_array_equal(sae.W2_, sae.W1_.T)


def test_sklearn_conventions():
    sae = SparseAutoencoder(n_hidden=7, beta=2.0)
    params = sae.get_params()
    assert params["n_hidden"] == 7 and params["beta"] == 2.0 and params["backend"] == "numba"
    assert sae.set_params(n_hidden=9) is sae and sae.n_hidden == 9
    assert "n_hidden=9" in repr(sae)
    with pytest.raises(ParameterError, match="no parameter 'hidden'"):
        sae.set_params(hidden=3)
    X = structured_data(m=200, v=8)
    assert sae.set_params(max_iter=5).fit(X) is sae
    assert not hasattr(SparseAutoencoder(), "W1_")
    with pytest.raises(fastsae.NotFittedError):
        SparseAutoencoder().transform(X)


def test_warm_start_continues():
    X = structured_data(m=400, v=10)
    sae = SparseAutoencoder(n_hidden=4, max_iter=20, random_state=0, warm_start=True).fit(X)
    first = sae.loss_curve_[-1]
    sae.fit(X)
    assert sae.loss_curve_[0] <= first + 1e-12


def test_keyboard_interrupt_keeps_better_than_initial_weights():
    X = structured_data(m=400, v=10)

    def interrupt(it, theta, cost):
        if it == 10:
            raise KeyboardInterrupt

    sae = SparseAutoencoder(n_hidden=4, max_iter=100, random_state=0)
    with pytest.warns(RuntimeWarning, match="interrupted"):
        sae.fit(X, callback=interrupt)
    assert sae.interrupted_ and sae.n_iter_ == 10
    init = SparseAutoencoder(n_hidden=4, max_iter=1, random_state=0)
    theta0 = fastsae.init_params(10, 4, random_state=0)
    init._set_theta(theta0, 10)
    assert np.isfinite(sae.W1_).all() and sae.cost(X) < init.cost(X)


BAD = [
    (dict(n_hidden=0), "n_hidden"),
    (dict(sparsity=1.5), "sparsity"),
    (dict(beta=-1), "beta"),
    (dict(weight_decay=-1), "weight_decay"),
    (dict(backend="gpu"), "backend"),
    (dict(dtype="float16"), "dtype"),
    (dict(decoder="tanh"), "decoder"),
    (dict(loss="l1"), "loss"),
    (dict(max_iter=0), "max_iter"),
    (dict(n_jobs=0), "n_jobs"),
]


@pytest.mark.parametrize("bad,name", BAD, ids=[b[1] for b in BAD])
def test_bad_hyperparameters(bad, name):
    X = structured_data(m=50, v=8)
    with pytest.raises(ParameterError, match=name):
        SparseAutoencoder(**bad).fit(X)


def test_bad_data():
    X = structured_data(m=50, v=8)
    sae = SparseAutoencoder(n_hidden=3, max_iter=5)
    Xn = X.copy()
    Xn[0, 0] = np.inf
    with pytest.raises(ParameterError, match="NaN or infinite"):
        sae.fit(Xn)
    with pytest.raises(ParameterError, match=r"\[0, 1\]"):
        sae.fit(X * 3)
    with pytest.raises(ParameterError, match="2-D"):
        sae.fit(X[0])
    with pytest.raises(ParameterError, match="at least 1 row"):
        sae.fit(X[:0])
    with pytest.raises(ParameterError, match="real numbers"):
        sae.fit(np.array([["a", "b"]]))
    sae.fit(X)
    with pytest.raises(ParameterError, match="8 features"):
        sae.transform(X[:, :5])
