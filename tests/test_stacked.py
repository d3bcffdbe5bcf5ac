"""Stacked autoencoders: the Numba kernel equals the reference for any depth,
gradients are right, and pretraining + fine-tuning classify."""
import numpy as np
import pytest

import fastsae
from fastsae import ParameterError, check_gradient, reference
from fastsae.backends import CPU_BACKENDS, get_backend, get_function
from fastsae.kernels import softmax as numba_softmax
from fastsae.kernels import stacked as numba_stacked
from fastsae.params import layout_size, stack_to_params, stacked_layout
from fastsae.stacked import StackedAutoencoder, stacked_cost_grad

CASES = [  # (n_samples, layer_sizes, n_classes)
    (301, (13, 6, 4), 5),
    (1, (4, 3), 3),               # one sample, one layer
    (50, (1, 5, 2), 2),           # one input feature, two classes
    (7, (9,), 4),                 # no hidden layer: plain softmax
    (40, (6, 1, 3), 3),           # a one-unit bottleneck
    (9_001, (20, 12, 8, 5), 10),  # three layers, many rows, not a multiple of any chunk
]


def _problem(m, sizes, K, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, (m, sizes[0])).astype(dtype)
    y = rng.integers(0, K, m)
    theta = 0.5 * rng.standard_normal(layout_size(stacked_layout(sizes, K)))
    return theta, X, y


def _kw(**extra):
    return dict(weight_decay=1e-2, stack_weight_decay=1e-3, **extra)


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numba_equals_reference(case, dtype):
    m, sizes, K = case
    theta, X, y = _problem(m, sizes, K, dtype)
    c_ref, g_ref = reference.stacked_cost_grad(theta, X, y, sizes, K, **_kw())
    c_nb, g_nb = numba_stacked.stacked_cost_grad(theta, X, y, sizes, K, **_kw())
    assert g_nb.dtype == np.float64 and g_nb.shape == theta.shape
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    assert c_nb == pytest.approx(c_ref, rel=rtol)
    np.testing.assert_allclose(g_nb, g_ref, rtol=0, atol=rtol * 10 * np.abs(g_ref).max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_many_small_chunks(monkeypatch, dtype):
    # force the smallest chunks so that every thread loops over several, the last one short
    monkeypatch.setattr(numba_stacked, "STACKED_CHUNK_BYTES", 1)
    monkeypatch.setattr(numba_softmax, "SOFTMAX_CHUNK_BYTES", 1)
    theta, X, y = _problem(333, (11, 7, 5), 4, dtype, seed=4)
    c_ref, g_ref = reference.stacked_cost_grad(theta, X, y, (11, 7, 5), 4, **_kw())
    c_nb, g_nb = numba_stacked.stacked_cost_grad(theta, X, y, (11, 7, 5), 4, **_kw())
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    assert c_nb == pytest.approx(c_ref, rel=rtol)
    np.testing.assert_allclose(g_nb, g_ref, rtol=0, atol=rtol * 10 * np.abs(g_ref).max())
    ts = 0.3 * np.random.default_rng(1).standard_normal(4 * 11 + 4)
    c_ref, g_ref = reference.softmax_cost_grad(ts, X, y, 4, weight_decay=1e-2)
    c_nb, g_nb = numba_softmax.softmax_cost_grad(ts, X, y, 4, weight_decay=1e-2)
    assert c_nb == pytest.approx(c_ref, rel=rtol)
    np.testing.assert_allclose(g_nb, g_ref, rtol=0, atol=rtol * 10 * np.abs(g_ref).max())


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("stack_decay", [0.0, 1e-2])
def test_gradient_check_float64(backend, stack_decay):
    sizes, K = (7, 5, 4), 3
    theta, X, y = _problem(25, sizes, K, np.float64, seed=7)
    f = get_backend(backend).stacked_cost_grad
    err = check_gradient(
        lambda t: f(t, X, y, sizes, K, weight_decay=1e-2, stack_weight_decay=stack_decay), theta)
    assert err < 1e-7, err


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_no_hidden_layer_is_softmax_regression(backend):
    theta, X, y = _problem(60, (8,), 3, np.float64, seed=2)
    be = get_backend(backend)
    c1, g1 = be.stacked_cost_grad(theta, X, y, (8,), 3, weight_decay=1e-2)
    c2, g2 = be.softmax_cost_grad(theta, X, y, 3, weight_decay=1e-2)
    assert c1 == pytest.approx(c2, rel=1e-13)
    np.testing.assert_allclose(g1, g2, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_layout_and_decay_follow_ufldl(backend):
    # theta = [softmax W, softmax b, W1, b1, W2, b2]; weight_decay touches only the softmax W
    sizes, K = (6, 5, 4), 3
    theta, X, y = _problem(30, sizes, K, np.float64, seed=3)
    f = get_backend(backend).stacked_cost_grad
    c0, g0 = f(theta, X, y, sizes, K, weight_decay=0.0)
    c1, g1 = f(theta, X, y, sizes, K, weight_decay=0.5)
    Ws = theta[:K * 4]
    assert c1 - c0 == pytest.approx(0.25 * np.sum(Ws ** 2), rel=1e-10)
    np.testing.assert_allclose(g1[:K * 4] - g0[:K * 4], 0.5 * Ws, rtol=1e-9)
    np.testing.assert_array_equal(g1[K * 4:], g0[K * 4:])
    # the same network evaluated by hand from the documented layout
    rng = np.random.default_rng(0)
    W1, b1 = rng.standard_normal((5, 6)), rng.standard_normal(5)
    W2, b2 = rng.standard_normal((4, 5)), rng.standard_normal(4)
    Wsm, bsm = rng.standard_normal((K, 4)), rng.standard_normal(K)
    t = np.concatenate([Wsm.ravel(), bsm, stack_to_params([(W1, b1), (W2, b2)])[0]])
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    Z = sig(sig(X @ W1.T + b1) @ W2.T + b2) @ Wsm.T + bsm
    P = np.exp(Z - Z.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    assert f(t, X, y, sizes, K, weight_decay=0.0)[0] == pytest.approx(
        -np.mean(np.log(P[np.arange(30), y])), rel=1e-12)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_kernel_bad_arguments(backend):
    sizes, K = (6, 5, 4), 3
    theta, X, y = _problem(30, sizes, K, np.float64)
    f = get_backend(backend).stacked_cost_grad
    cases = [
        (dict(layer_sizes=(7, 5, 4)), r"layer_sizes\[0\] must equal the number of columns of X"),
        (dict(layer_sizes=(6, 0, 4)), r"layer_sizes\[1\] must be >= 1"),
        (dict(layer_sizes=()), "layer_sizes must be a sequence"),
        (dict(layer_sizes=6), "layer_sizes must be a sequence"),
        (dict(layer_sizes=(6, 5, 3)), "theta must be a 1-D array of"),
        (dict(y=np.r_[y[:-1], 3]), r"y must hold labels in \[0, 2\]"),
        (dict(y=y[:5]), "one label per row"),
        (dict(n_classes=1), "n_classes"),
        (dict(stack_weight_decay=-1.0), "stack_weight_decay"),
        (dict(weight_decay=float("nan")), "weight_decay"),
    ]
    for change, message in cases:
        a = dict(theta=theta, X=X, y=y, layer_sizes=sizes, n_classes=K, weight_decay=1e-3,
                 stack_weight_decay=0.0)
        a.update(change)
        with pytest.raises(ParameterError, match=message):
            f(a["theta"], a["X"], a["y"], a["layer_sizes"], a["n_classes"],
              weight_decay=a["weight_decay"], stack_weight_decay=a["stack_weight_decay"])


def test_public_entry_point():
    sizes, K = (6, 5), 3
    theta, X, y = _problem(30, sizes, K, np.float64)
    c = [stacked_cost_grad(theta, X, y, sizes, K, weight_decay=1e-3, backend=b)[0]
         for b in CPU_BACKENDS]
    assert c[0] == pytest.approx(c[1], rel=1e-12)
    X[0, 0] = np.inf
    with pytest.raises(ParameterError, match="X contains 1 NaN or infinite"):
        stacked_cost_grad(theta, X, y, sizes, K, weight_decay=1e-3)
    assert callable(get_function("numba", "stacked_cost_grad"))


# -- the estimator -----------------------------------------------------------

def _classes_problem(m, n=24, K=4, seed=0, noise=0.08):
    """Rows in [0, 1]: one smooth prototype per class, random strength, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, n)
    protos = np.stack([np.sin(2 * np.pi * (k + 1) * t + k) for k in range(K)])
    y = rng.integers(0, K, m)
    X = 0.5 + 0.3 * rng.uniform(0.5, 1.0, (m, 1)) * protos[y] + noise * rng.standard_normal((m, n))
    return np.clip(X, 0, 1), y


FAST = dict(hidden_sizes=(16, 10), sparsity=0.1, beta=3.0, weight_decay=1e-4,
            pretrain_iter=60, softmax_iter=60, finetune_iter=60, random_state=0)


@pytest.fixture(scope="module")
def fitted():
    X, y = _classes_problem(600)
    Xv, yv = _classes_problem(400, seed=1)
    net = StackedAutoencoder(**FAST).fit(X, y, validation=(Xv, yv))
    return net, X, y, Xv, yv


def test_finetuning_lowers_cost_and_classifies(fitted):
    net, X, y, Xv, yv = fitted
    assert net.finetune_cost_ < net.pretrain_cost_
    assert net.cost(X, y) == pytest.approx(net.finetune_cost_, rel=1e-9)
    # the fine-tuning curve starts at or below the pretrained network's cost
    assert net.loss_curve_[0] <= net.pretrain_cost_ and net.n_iter_ == len(net.loss_curve_)
    assert net.finetune_score_ == pytest.approx(net.score(Xv, yv))
    assert net.pretrain_score_ > 0.6                # pretrained features carry the class
    assert net.finetune_score_ > 0.9                # chance is 0.25
    assert net.finetune_score_ >= net.pretrain_score_ - 0.02
    P = net.predict_proba(Xv)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-10)
    np.testing.assert_array_equal(net.classes_[P.argmax(axis=1)], net.predict(Xv))


def test_fitted_attributes_and_transform(fitted):
    net, X, y, Xv, yv = fitted
    assert [W.shape for W, _ in net.stack_] == [(16, 24), (10, 16)]
    assert net.coef_.shape == (4, 10) and net.intercept_.shape == (4,)
    assert len(net.autoencoders_) == 2 and net.autoencoders_[1].n_hidden == 10
    assert net.n_pretrain_samples_ == 600
    H = net.transform(X)
    assert H.shape == (600, 10) and np.all((H >= 0) & (H <= 1))
    # fine-tuning moved the encoders away from the pretrained weights
    assert not np.allclose(net.stack_[0][0], net.autoencoders_[0].W1_)
    # transform is the documented forward pass
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    (W1, b1), (W2, b2) = net.stack_
    np.testing.assert_allclose(H, sig(sig(X @ W1.T + b1) @ W2.T + b2), rtol=1e-12)


def test_string_labels_unlabeled_data_and_float32():
    X, y = _classes_problem(300, K=3, seed=2)
    Xu, _ = _classes_problem(200, K=3, seed=3)
    names = np.array(["do", "re", "mi"])[y]
    net = StackedAutoencoder(**dict(FAST, hidden_sizes=(12,), dtype="float32"))
    net.fit(X, names, X_unlabeled=Xu)
    assert net.n_pretrain_samples_ == 500
    assert net.transform(X).dtype == np.float32
    pred = net.predict(X)
    assert pred.dtype.kind == "U" and set(pred) <= {"do", "re", "mi"}
    assert net.score(X, names) > 0.8 and net.finetune_score_ == pytest.approx(net.score(X, names))


def test_backends_agree():
    X, y = _classes_problem(200, n=10, K=3, seed=5)
    kw = dict(FAST, hidden_sizes=(6, 5), pretrain_iter=20, softmax_iter=20, finetune_iter=20)
    a = StackedAutoencoder(backend="numba", **kw).fit(X, y)
    b = StackedAutoencoder(backend="numpy", **kw).fit(X, y)
    assert a.pretrain_cost_ == pytest.approx(b.pretrain_cost_, rel=1e-6)
    assert a.finetune_cost_ == pytest.approx(b.finetune_cost_, rel=1e-4)


BAD = [
    (dict(hidden_sizes=()), "hidden_sizes must be a non-empty sequence"),
    (dict(hidden_sizes=5), "hidden_sizes must be a non-empty sequence"),
    (dict(hidden_sizes="200"), "hidden_sizes must be a non-empty sequence"),
    (dict(hidden_sizes=(10, 0)), r"hidden_sizes\[1\] must be >= 1"),
    (dict(hidden_sizes=(10, 2.5)), r"hidden_sizes\[1\] must be an integer"),
    (dict(sparsity=0.0), "sparsity"),
    (dict(softmax_weight_decay=-1.0), "softmax_weight_decay"),
    (dict(stack_weight_decay=-1.0), "stack_weight_decay"),
    (dict(finetune_iter=0), "finetune_iter"),
    (dict(pretrain_iter=0), "pretrain_iter"),
    (dict(backend="tpu"), "backend"),
    (dict(decoder="relu"), "decoder"),
    (dict(dtype="int8"), "dtype"),
]


@pytest.mark.parametrize("bad,message", BAD, ids=[str(b[0]) for b in BAD])
def test_bad_hyperparameters(bad, message):
    X, y = _classes_problem(20)
    with pytest.raises(ParameterError, match=message):
        StackedAutoencoder(**dict(FAST, **bad)).fit(X, y)


def test_bad_data():
    X, y = _classes_problem(40, n=8)
    net = StackedAutoencoder(**dict(FAST, hidden_sizes=(4,), pretrain_iter=2, softmax_iter=2,
                                    finetune_iter=2))
    with pytest.raises(ParameterError, match=r"X must lie in \[0, 1\]"):
        net.fit(X * 2, y)
    with pytest.raises(ParameterError, match=r"X_unlabeled must lie in \[0, 1\]"):
        net.fit(X, y, X_unlabeled=X - 1)
    with pytest.raises(ParameterError, match="X_unlabeled has 5 features, but StackedAutoencoder is expecting 8"):
        net.fit(X, y, X_unlabeled=X[:, :5])
    with pytest.raises(ParameterError, match="at least 2 classes"):
        net.fit(X, np.ones(40, int))
    with pytest.raises(ParameterError, match="one label per row of X"):
        net.fit(X, y[:-3])
    with pytest.raises(ParameterError, match="validation must be a pair"):
        net.fit(X, y, validation=X)
    with pytest.raises(ParameterError, match="validation\\[1\\] must have one label per row"):
        net.fit(X, y, validation=(X, y[:3]))
    with pytest.raises(fastsae.NotFittedError):
        net.predict(X)
    net.fit(X, y)
    with pytest.raises(ParameterError, match="8 features"):
        net.transform(X[:, :7])
    # a linear first decoder accepts input outside [0, 1]
    StackedAutoencoder(**dict(FAST, hidden_sizes=(4,), decoder="linear", pretrain_iter=2,
                              softmax_iter=2, finetune_iter=2)).fit(4 * X - 2, y)
