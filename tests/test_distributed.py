"""Training on a Dask cluster equals training on one machine.

The per-shard statistics kernel is checked against its NumPy reference and,
combined over shards, against ``sae_cost_grad`` on the whole data; the
cluster tests run a 2-worker ``LocalCluster`` (processes, one thread each)
and are skipped when ``distributed`` is not installed.
"""
import logging
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import soundfile as sf

import fastsae
from fastsae import reference
from fastsae.distributed import sae_combine_stats
from fastsae.reference.sae_stats import sae_shard_stats as ref_shard_stats
from fastsae.exceptions import BackendUnavailableError, ParameterError
from fastsae.kernels import sae as numba_sae
from fastsae.kernels.sae_stats import sae_shard_stats as numba_shard_stats

OPTIONS = [
    dict(decoder="sigmoid", loss="squared", tied=False),
    dict(decoder="linear", loss="squared", tied=False),
    dict(decoder="sigmoid", loss="cross_entropy", tied=False),
    dict(decoder="sigmoid", loss="squared", tied=True),
    dict(decoder="linear", loss="squared", tied=True),
    dict(decoder="sigmoid", loss="cross_entropy", tied=True),
]
HYPER = dict(sparsity=0.05, beta=3.0, weight_decay=1e-3)


def _label(opts):
    return "-".join(str(v) for v in opts.values())


def _problem(v, h, m, opts, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    if opts["decoder"] == "linear":
        X = rng.standard_normal((m, v))
    else:
        X = rng.uniform(0.05, 0.95, (m, v))
    theta = fastsae.init_params(v, h, random_state=seed, tied=opts["tied"])
    theta += 0.3 * rng.standard_normal(theta.size)
    return theta, X.astype(dtype)


def _rel(a, b):
    return np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b))


# ---------------------------------------------------------------------------
# Shard statistics: kernel == reference, and combined == the whole-data objective
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("with_sparsity", [True, False])
@pytest.mark.parametrize("opts", OPTIONS, ids=_label)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_shard_stats_kernel_equals_reference(opts, dtype, with_sparsity):
    v, h = 13, 5
    theta, X = _problem(v, h, 301, opts, dtype)
    ref = ref_shard_stats(theta, X, v, h, with_sparsity=with_sparsity, **opts)
    got = numba_shard_stats(theta, X, v, h, with_sparsity=with_sparsity, **opts)
    assert got.dtype == np.float64 and got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0,
                               atol=(1e-12 if dtype == np.float64 else 1e-5) * np.abs(ref).max())


@pytest.mark.parametrize("beta", [3.0, 0.0])
@pytest.mark.parametrize("opts", OPTIONS, ids=_label)
@pytest.mark.parametrize("stats", [ref_shard_stats, numba_shard_stats], ids=["numpy", "numba"])
def test_combined_shards_equal_whole_objective(stats, opts, beta):
    v, h = 17, 6
    theta, X = _problem(v, h, 400, opts)
    kw = dict(HYPER, beta=beta, **opts)
    cost, grad = reference.sae_cost_grad(theta, X, v, h, **kw)
    bounds = [0, 1, 150, 151, 333, 400]            # uneven shards, some of one row
    total = sum(stats(theta, X[a:b], v, h, with_sparsity=beta > 0, **opts)
                for a, b in zip(bounds[:-1], bounds[1:]))
    c, g = sae_combine_stats(total, theta, v, h, **kw)
    assert abs(c - cost) <= 1e-10 * abs(cost)
    assert _rel(g, grad) <= 1e-10


# ---------------------------------------------------------------------------
# Without Dask
# ---------------------------------------------------------------------------

def test_without_dask_import_works_and_calls_say_what_to_install():
    # a fresh interpreter in which importing dask or distributed fails
    code = textwrap.dedent("""
        import sys
        for name in ("dask", "dask.array", "distributed"):
            sys.modules[name] = None
        import fastsae, fastsae.distributed as fd
        assert not fd.is_dask_collection([1.0])
        for call in (lambda: fd.connect("tcp://127.0.0.1:8786"),
                     lambda: fd.sae_objective(None, None, 4, 2, sparsity=0.1, beta=3.0,
                                              weight_decay=0.0),
                     lambda: fd.windows_from_files(None, ["a.wav"])):
            try:
                call()
            except fastsae.BackendUnavailableError as exc:
                assert 'pip install "fastsae-audio[dist]"' in str(exc), exc
            else:
                raise AssertionError("no error")
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_missing_dask_in_this_process(monkeypatch):
    import fastsae.distributed as fd

    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(BackendUnavailableError, match=r'pip install "fastsae-audio\[dist\]"'):
        fd.connect()


def test_import_fastsae_does_not_import_dask():
    code = "import sys, fastsae; print(any(m.split('.')[0] in ('dask', 'distributed') " \
           "for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------
# On a LocalCluster
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])   # workers cannot import tests/
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.CRITICAL)
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def _dask(X, rows):
    import dask.array as da
    return da.from_array(X, chunks=(rows, X.shape[1]))


@pytest.mark.parametrize("opts", OPTIONS, ids=_label)
def test_distributed_sae_equals_single_machine(client, opts):
    import fastsae.distributed as fd

    v, h = 17, 6
    theta, X = _problem(v, h, 301, opts)
    cost, grad = numba_sae.sae_cost_grad(theta, X, v, h, **HYPER, **opts)
    f = fd.sae_objective(client, _dask(X, 70), v, h, **HYPER, **opts, n_jobs=1, split_every=2)
    assert f.n_shards == 5
    c, g = f(theta)
    assert abs(c - cost) <= 1e-10 * abs(cost)
    assert g.dtype == np.float64 and _rel(g, grad) <= 1e-10
    c2, g2 = f(theta)                  # reusable, and the fixed summation order is repeatable
    assert c2 == c and np.array_equal(g2, g)


def test_distributed_sae_numpy_backend_float32_and_no_sparsity(client):
    import fastsae.distributed as fd

    v, h = 12, 4
    opts = OPTIONS[0]
    theta, X = _problem(v, h, 250, opts, np.float32)
    for beta, backend in ((3.0, "numpy"), (0.0, "numba")):
        kw = dict(HYPER, beta=beta, **opts)
        cost, grad = reference.sae_cost_grad(theta, X, v, h, **kw)
        c, g = fd.sae_cost_grad(client, theta, _dask(X, 100), v, h, **kw, backend=backend,
                                n_jobs=1)
        assert c == pytest.approx(cost, rel=1e-5)
        assert _rel(g, grad) <= 1e-4


def test_distributed_softmax_and_stacked_equal_single_machine(client):
    import fastsae.distributed as fd
    from fastsae.kernels import softmax as nb_softmax, stacked as nb_stacked

    rng = np.random.default_rng(1)
    m, n, K = 257, 11, 4
    X = rng.uniform(0, 1, (m, n))
    y = rng.integers(0, K, m)
    Xd, yd = _dask(X, 60), _dask(y[:, None], 100)[:, 0]     # y chunked unlike X
    theta = 0.1 * rng.standard_normal(K * n + K)
    cost, grad = nb_softmax.softmax_cost_grad(theta, X, y, K, weight_decay=1e-3)
    c, g = fd.softmax_cost_grad(client, theta, Xd, yd, K, weight_decay=1e-3, n_jobs=1)
    assert abs(c - cost) <= 1e-10 * abs(cost) and _rel(g, grad) <= 1e-10
    # any labels, encoded on the cluster as SoftmaxRegression.fit encodes them
    import dask.array as da
    names = np.array(["eel", "cat", "fox", "dog"])
    classes, codes = fd.encode_labels(da.from_array(names[y], chunks=90))
    assert classes.tolist() == ["cat", "dog", "eel", "fox"]
    np.testing.assert_array_equal(classes[codes.compute()], names[y])
    c2, g2 = fd.softmax_cost_grad(client, theta, Xd, codes, K, weight_decay=1e-3, n_jobs=1,
                                  backend="numpy")
    cost2, grad2 = reference.softmax_cost_grad(theta, X, np.searchsorted(classes, names[y]), K,
                                               weight_decay=1e-3)
    assert abs(c2 - cost2) <= 1e-10 * abs(cost2) and _rel(g2, grad2) <= 1e-10

    sizes = (n, 7, 5)
    theta = 0.1 * rng.standard_normal(fastsae.params.layout_size(
        fastsae.params.stacked_layout(sizes, K)))
    kw = dict(weight_decay=1e-3, stack_weight_decay=1e-2)
    cost, grad = nb_stacked.stacked_cost_grad(theta, X, y, sizes, K, **kw)
    ref_cost, ref_grad = reference.stacked_cost_grad(theta, X, y, sizes, K, **kw)
    c, g = fd.stacked_cost_grad(client, theta, Xd, y, sizes, K, **kw, n_jobs=1)
    assert abs(c - cost) <= 1e-10 * abs(cost) and _rel(g, grad) <= 1e-10
    assert abs(c - ref_cost) <= 1e-10 * abs(ref_cost) and _rel(g, ref_grad) <= 1e-10


def test_bad_input_is_reported(client):
    import fastsae.distributed as fd

    X = np.random.default_rng(0).uniform(size=(50, 6))
    with pytest.raises(ParameterError, match="n_visible=7"):
        fd.sae_objective(client, _dask(X, 20), 7, 3, **HYPER)
    with pytest.raises(ParameterError, match="sparsity"):
        fd.sae_objective(client, _dask(X, 20), 6, 3, sparsity=1.5, beta=3.0, weight_decay=0.0)
    f = fd.sae_objective(client, _dask(X, 20), 6, 3, **HYPER)
    with pytest.raises(ParameterError, match="theta must be a 1-D array of 45"):
        f(np.zeros(5))
    X[3, 2] = np.nan
    with pytest.raises(ParameterError, match="1 NaN"):
        fd.check_dask_array(_dask(X, 20))
    with pytest.raises(ParameterError, match="one label per row"):
        fd.softmax_objective(client, _dask(X, 20), np.zeros(49, int), 2, weight_decay=0.0)


def test_connect_to_nowhere_is_a_clear_error():
    pytest.importorskip("distributed")
    import socket

    import fastsae.distributed as fd

    with socket.socket() as s:             # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BackendUnavailableError, match="could not reach the Dask scheduler"):
        fd.connect(f"tcp://127.0.0.1:{port}", timeout=1)
    with pytest.raises(ParameterError, match="not a scheduler address"):
        fd.connect("garbage", timeout=1)                 # no port


def _same_shards_here(X, bounds, v, h, kw):
    """The distributed objective's arithmetic in this process: the same per-shard kernel
    (one thread, as on the workers) and the same order of additions."""
    from fastsae._dask.objective import _add
    from fastsae.core.threads import numba_threads

    def f(theta):
        with numba_threads(1):
            parts = [numba_shard_stats(theta, X[a:b], v, h, with_sparsity=kw["beta"] > 0)
                     for a, b in zip(bounds[:-1], bounds[1:])]
        return sae_combine_stats(_add(*parts), theta, v, h, **kw)
    return f


def test_fit_on_dask_array_ends_where_single_machine_fit_ends(client):
    v, h, m = 16, 6, 600
    _, X = _problem(v, h, m, OPTIONS[0], seed=3)
    # well conditioned (strong decay): rounding differences do not grow along the path
    kw = dict(n_hidden=h, sparsity=0.1, weight_decay=1e-2, max_iter=50, random_state=0,
              n_jobs=1)
    local = fastsae.SparseAutoencoder(**kw).fit(X)
    dist = fastsae.SparseAutoencoder(**kw).fit(_dask(X, 150))
    assert dist.n_iter_ == local.n_iter_ >= 40
    for name in ("W1_", "W2_", "b1_", "b2_"):
        np.testing.assert_allclose(getattr(dist, name), getattr(local, name), rtol=1e-8,
                                   atol=1e-10)
    with pytest.raises(ParameterError, match=r"\[0, 1\]"):
        fastsae.SparseAutoencoder(**kw).fit(_dask(X * 2, 150))


def test_the_client_memory_check_leaves_the_workers_rows_out(client, monkeypatch):
    # the rows of a dask array are on the workers: the client needs only the optimizer's state
    v, h, m = 16, 6, 6000
    _, X = _problem(v, h, m, OPTIONS[0], seed=3)
    monkeypatch.setenv("FASTSAE_MEMORY_LIMIT", "400K")     # > L-BFGS state, < the rows' work
    kw = dict(n_hidden=h, max_iter=2, random_state=0, n_jobs=1)
    with pytest.raises(ParameterError, match="FASTSAE_MEMORY_LIMIT"):
        fastsae.SparseAutoencoder(**kw).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastsae.ConvergenceWarning)
        assert fastsae.SparseAutoencoder(**kw).fit(_dask(X, 1500)).n_iter_ == 2


def _blobs(m, n, K, rng, P):
    """``m`` rows in [0, 1] around ``K`` prototypes ``P`` [shape=(K, n)]; and their class."""
    k = rng.integers(0, K, m)
    return np.clip(0.5 + 0.3 * P[k] + 0.05 * rng.standard_normal((m, n)), 0, 1), k


def test_softmax_fit_on_dask_array_ends_where_single_machine_fit_ends(client):
    import dask.array as da

    rng = np.random.default_rng(1)
    m, n, K = 400, 10, 3
    k = rng.integers(0, K, m)
    X = rng.standard_normal((m, n)) + rng.standard_normal((K, n))[k]
    y = np.array(["eel", "cat", "dog"])[k]            # any labels, mapped to codes as here
    kw = dict(weight_decay=1e-4, max_iter=50, random_state=0, n_jobs=1)
    local = fastsae.SoftmaxRegression(**kw).fit(X, y)
    Xd = _dask(X, 100)
    for yd in (da.from_array(y, chunks=130), y):    # labels on the cluster, or here
        dist = fastsae.SoftmaxRegression(**kw).fit(Xd, yd)
        assert dist.classes_.tolist() == local.classes_.tolist() == ["cat", "dog", "eel"]
        assert dist.n_iter_ == local.n_iter_ >= 20 and dist.converged_ == local.converged_
        # convex and well conditioned: the ~1e-16 differences of the sums stay ~1e-15
        np.testing.assert_allclose(dist.coef_, local.coef_, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(dist.intercept_, local.intercept_, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(dist.loss_curve_, local.loss_curve_, rtol=1e-12)
    # a dask X in, a dask array out, chunk by chunk with the single-machine method
    pred = dist.predict(Xd)
    assert isinstance(pred, da.Array) and pred.chunks == ((100,) * 4,)
    np.testing.assert_array_equal(pred.compute(), dist.predict(X))
    np.testing.assert_array_equal(pred.compute(), local.predict(X))
    proba = dist.predict_proba(Xd)
    assert isinstance(proba, da.Array) and proba.shape == (m, K)
    np.testing.assert_array_equal(proba.compute(), dist.predict_proba(X))
    np.testing.assert_array_equal(dist.predict_log_proba(Xd).compute(), dist.predict_log_proba(X))
    np.testing.assert_array_equal(dist.decision_function(Xd).compute(), dist.decision_function(X))
    assert dist.score(Xd, y) == dist.score(Xd, da.from_array(y, chunks=77)) == dist.score(X, y)
    assert dist.cost(Xd, da.from_array(y, chunks=77)) == pytest.approx(dist.cost(X, y), rel=1e-12)
    with pytest.raises(ParameterError, match="X must have 10 features"):
        dist.predict(_dask(X[:, :4], 100))


def test_stacked_fit_on_dask_array_ends_where_single_machine_fit_ends(client):
    import dask.array as da

    rng = np.random.default_rng(0)
    P = rng.uniform(-1, 1, (3, 20))
    X, k = _blobs(300, 20, 3, rng, P)
    Xu, _ = _blobs(150, 20, 3, rng, P)
    y = np.array(["a", "b", "c"])[k]
    # features learned (pretraining accuracy > 0.95) and the softmax and fine-tuning decayed
    # enough that the 1e-16 differences of the sums, carried through the four L-BFGS runs
    # in a row, stay ~1e-10 (as for the autoencoder alone, weaker decay makes them grow)
    kw = dict(hidden_sizes=(8, 6), sparsity=0.2, weight_decay=1e-4, softmax_weight_decay=1e-2,
              stack_weight_decay=1e-2, pretrain_iter=20, softmax_iter=20, finetune_iter=20,
              random_state=0, n_jobs=1)
    tol = dict(rtol=1e-8, atol=1e-10)
    local = fastsae.StackedAutoencoder(**kw).fit(X, y, X_unlabeled=Xu)
    Xd = _dask(X, 100)
    dist = fastsae.StackedAutoencoder(**kw).fit(Xd, da.from_array(y, chunks=120),
                                                X_unlabeled=_dask(Xu, 80))
    assert local.pretrain_score_ > 0.95 and local.finetune_score_ == 1.0
    assert dist.classes_.tolist() == ["a", "b", "c"] and dist.n_pretrain_samples_ == 450
    for a, b in zip(dist.autoencoders_, local.autoencoders_):          # 1. pretraining
        assert a.n_iter_ == b.n_iter_
        np.testing.assert_allclose(a.W1_, b.W1_, **tol)
        np.testing.assert_allclose(a.b1_, b.b1_, **tol)
    assert dist.softmax_.n_iter_ == local.softmax_.n_iter_                # 2. softmax
    np.testing.assert_allclose(dist.softmax_.coef_, local.softmax_.coef_, **tol)
    assert dist.n_iter_ == local.n_iter_ == 20                            # 3. fine-tuning
    for (W, b), (W0, b0) in zip(dist.stack_, local.stack_):
        np.testing.assert_allclose(W, W0, **tol)
        np.testing.assert_allclose(b, b0, **tol)
    np.testing.assert_allclose(dist.coef_, local.coef_, **tol)
    np.testing.assert_allclose(dist.intercept_, local.intercept_, **tol)
    assert dist.pretrain_cost_ == pytest.approx(local.pretrain_cost_, rel=1e-10)
    assert dist.finetune_cost_ == pytest.approx(local.finetune_cost_, rel=1e-10)
    assert (dist.pretrain_score_, dist.finetune_score_) == (local.pretrain_score_,
                                                           local.finetune_score_)
    pred = dist.predict(Xd)
    assert isinstance(pred, da.Array)
    np.testing.assert_array_equal(pred.compute(), local.predict(X))
    np.testing.assert_array_equal(dist.transform(Xd).compute(), dist.transform(X))
    np.testing.assert_array_equal(dist.predict_proba(Xd).compute(), dist.predict_proba(X))
    assert dist.score(Xd, y) == 1.0
    assert dist.cost(Xd, y) == pytest.approx(dist.cost(X, y), rel=1e-12)

    # labelled data here, the many unlabelled rows on the cluster; a local validation set
    val = (X[:60], y[:60])
    local = fastsae.StackedAutoencoder(**kw).fit(X, y, X_unlabeled=Xu, validation=val)
    mixed = fastsae.StackedAutoencoder(**kw).fit(X, y, X_unlabeled=_dask(Xu, 80), validation=val)
    np.testing.assert_allclose(mixed._theta(), local._theta(), **tol)
    assert (mixed.pretrain_score_, mixed.finetune_score_) == (local.pretrain_score_,
                                                             local.finetune_score_)


def test_estimators_report_bad_dask_input(client):
    import dask.array as da

    rng = np.random.default_rng(0)
    X = rng.uniform(0.1, 0.9, (60, 5))
    y = np.repeat([0, 1, 2], 20)
    net = fastsae.StackedAutoencoder((3,), pretrain_iter=2, softmax_iter=2, finetune_iter=2)
    for est in (fastsae.SoftmaxRegression(max_iter=2), net):
        with pytest.raises(ParameterError, match=r"y must have one label per row of X \(60\)"):
            est.fit(_dask(X, 25), y[:59])
        with pytest.raises(ParameterError, match=r"y must have one label per row of X \(60\)"):
            est.fit(_dask(X, 25), da.from_array(y[:59], chunks=20))
        with pytest.raises(ParameterError, match="y must contain at least 2 classes"):
            est.fit(_dask(X, 25), da.from_array(np.zeros(60), chunks=20))
        with pytest.raises(ParameterError, match="y contains NaN"):
            est.fit(_dask(X, 25), da.from_array(np.r_[y[:-1], np.nan], chunks=20))
        Xn = X.copy()
        Xn[7, 3] = np.nan
        with pytest.raises(ParameterError, match=r"X contains 1 NaN"):
            est.fit(_dask(Xn, 25), y)
    with pytest.raises(ParameterError, match=r"X must lie in \[0, 1\]"):
        net.fit(_dask(X * 2, 25), y)
    with pytest.raises(ParameterError, match=r"X_unlabeled has 4 features, but StackedAutoencoder is expecting 5"):
        net.fit(_dask(X, 25), y, X_unlabeled=_dask(X[:, :4], 25))
    with pytest.raises(ParameterError, match=r"X_unlabeled must lie in \[0, 1\]"):
        net.fit(X, y, X_unlabeled=_dask(X - 0.5, 25))
    with pytest.raises(fastsae.NotFittedError):
        fastsae.SoftmaxRegression().predict(_dask(X, 25))
    with pytest.raises(fastsae.NotFittedError):
        net.transform(_dask(X, 25))
    clf = fastsae.SoftmaxRegression(max_iter=5).fit(_dask(X, 25), y)
    with pytest.raises(ParameterError, match=r"y contains labels not seen in fit: \[7\]"):
        clf.cost(_dask(X, 25), da.from_array(np.r_[y[:-1], 7], chunks=20))
    with pytest.raises(ParameterError, match=r"y must have one label per row of X \(60\)"):
        clf.score(_dask(X, 25), y[:50])


def test_fit_is_bitwise_the_same_arithmetic_as_here(client):
    """On an ill-conditioned problem 50 L-BFGS iterations turn 1e-16 differences into
    1e-7 (two single-machine fits with 1 and 2 Numba threads differ as much); what the
    cluster adds is nothing: the same shard arithmetic here gives the same bits."""
    import fastsae.distributed as fd

    v, h, m = 16, 6, 600
    _, X = _problem(v, h, m, OPTIONS[0], seed=3)
    kw = dict(sparsity=0.1, beta=3.0, weight_decay=1e-4)
    theta0 = fastsae.init_params(v, h, random_state=0)
    here = fastsae.lbfgs(_same_shards_here(X, [0, 150, 300, 450, 600], v, h, kw), theta0,
                         max_iter=50)
    f = fd.sae_objective(client, _dask(X, 150), v, h, **kw, n_jobs=1)
    there = fastsae.lbfgs(f, theta0, max_iter=50)
    assert there.n_iter == 50
    np.testing.assert_array_equal(there.theta, here.theta)


def _kill_worker_holding(client, future):
    """SIGKILL the worker process that holds ``future`` (its nanny starts a new one)."""
    addr = client.who_has([future])[future.key][0]
    pid = client.run(os.getpid, workers=[addr])[addr]
    os.kill(pid, 9)
    return addr


# -- audio ------------------------------------------------------------------

SR = 8000


def _wav_files(folder):
    rng = np.random.default_rng(0)
    paths = []
    for i, n in enumerate([4000, 2400, 6100, 100, 3300]):     # 100 samples: too few frames
        y = (0.2 * np.sin(2 * np.pi * (200 + 150 * i) * np.arange(n) / SR)
             + 0.02 * rng.standard_normal(n)).astype(np.float32)
        path = folder / f"clip{i}.wav"
        sf.write(str(path), y, SR, subtype="PCM_16")
        paths.append(str(path))
    return paths


def test_windows_from_files_equal_single_machine_windows(client, tmp_path):
    import fastsae.distributed as fd
    from fastsae import audio, preprocess

    files = _wav_files(tmp_path)
    n_frames = 6
    spectra = audio.spectra_from_files(files, kind="mel", n_bands=20, n_jobs=1, cache_dir=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        every = audio.sample_windows(spectra, n_frames=n_frames).astype(np.float64)
    common = dict(kind="mel", n_bands=20, n_frames=n_frames, files_per_shard=2)

    with pytest.warns(UserWarning, match="1 of 5 file"):
        X = fd.windows_from_files(client, files, normalize=None, **common)
    assert X.numblocks[0] == 3 and X.dtype == np.float64     # 2 + 2 + 1 files
    np.testing.assert_array_equal(X.compute(), every)

    with pytest.warns(UserWarning):
        Xn, norm = fd.windows_from_files(client, files, return_normalizer=True, **common)
    single = preprocess.SigmoidNormalizer().fit(every)
    assert norm.std_ == pytest.approx(single.std_, rel=1e-12)
    np.testing.assert_allclose(Xn.compute(), single.transform(every), rtol=1e-12)
    # the shards are rebuilt from their lineage (files -> spectra -> windows -> scaled)
    # when the worker holding one dies, although the intermediate futures are gone
    from fastsae._dask.arrays import chunk_futures
    _kill_worker_holding(client, chunk_futures(Xn)[0])
    np.testing.assert_allclose(Xn.compute(), single.transform(every), rtol=1e-12)
    client.wait_for_workers(2, timeout=60)

    k = 9
    with pytest.warns(UserWarning):
        Xs = fd.windows_from_files(client, files, normalize=None, n_windows_per_file=k,
                                   random_state=7, **common).compute()
    seeds = fd.file_seeds(7, len(files))
    expect = np.concatenate([audio.sample_windows([S], n_frames=n_frames, n_samples=k,
                                                  random_state=int(seed))
                             for S, seed in zip(spectra, seeds) if S.shape[1] >= n_frames])
    np.testing.assert_array_equal(Xs, expect.astype(np.float64))
    assert set(map(bytes, Xs)) <= set(map(bytes, every))     # drawn from the same windows


# -- a worker dies in the middle of a fit -----------------------------------

def _make_shard(i, rows, cols):
    return np.random.default_rng(100 + i).uniform(0.1, 0.9, (rows, cols))


@pytest.mark.filterwarnings("ignore:distributed evaluation failed:RuntimeWarning")
def test_worker_lost_during_fit_changes_nothing(client):
    import dask
    import dask.array as da

    import fastsae.distributed as fd

    v, h, rows, n_shards = 16, 6, 150, 4
    X = da.concatenate([da.from_delayed(dask.delayed(_make_shard)(i, rows, v), (rows, v),
                                        dtype=np.float64) for i in range(n_shards)])
    X = client.persist(X)
    X_local = X.compute()
    kw = dict(sparsity=0.1, beta=3.0, weight_decay=1e-4)
    theta0 = fastsae.init_params(v, h, random_state=0)
    f = fd.sae_objective(client, X, v, h, **kw, n_jobs=1)
    plain = fastsae.lbfgs(f, theta0, max_iter=30)

    killed = []

    def kill_a_worker(iteration, theta, cost):
        if iteration == 10:
            killed.append(_kill_worker_holding(client, f2.shards[0][0]))

    f2 = fd.sae_objective(client, X, v, h, **kw, n_jobs=1)
    survived = fastsae.lbfgs(f2, theta0, max_iter=30, callback=kill_a_worker)
    assert killed and killed[0] not in client.scheduler_info()["workers"]
    np.testing.assert_array_equal(survived.theta, plain.theta)
    assert survived.loss_curve == plain.loss_curve
    here = fastsae.lbfgs(_same_shards_here(X_local, [0, 150, 300, 450, 600], v, h, kw),
                         theta0, max_iter=30)
    np.testing.assert_array_equal(survived.theta, here.theta)
    client.wait_for_workers(2, timeout=60)


# -- SelfTaughtFeatures fitted from audio files on the workers ---------------

def test_pca_whitening_from_the_covariance_equals_the_fit():
    from fastsae.preprocess import PCAWhitening
    from fastsae._dask.moments import combine_moments, shard_moments

    rng = np.random.default_rng(0)
    X = rng.normal(3.0, 1.0, (700, 6)) @ rng.normal(size=(6, 6))
    parts = [shard_moments(X[a:b]) for a, b in ((0, 1), (1, 250), (250, 250), (250, 700))]
    m, mean, M2 = combine_moments(*parts)
    assert m == 700
    np.testing.assert_allclose(mean, X.mean(0), rtol=1e-13)
    np.testing.assert_allclose(M2 / m, np.cov(X.T, bias=True), rtol=1e-12)
    for kw in (dict(retain=0.9, epsilon=0.1), dict(zca=True, epsilon=0.0), dict(n_components=3)):
        ref = PCAWhitening(**kw).fit(X)
        got = PCAWhitening(**kw).fit_covariance(M2 / m, mean)
        assert got.n_components_ == ref.n_components_
        for name in ("mean_", "components_", "explained_variance_", "explained_variance_ratio_"):
            np.testing.assert_allclose(getattr(got, name), getattr(ref, name), rtol=1e-10,
                                       atol=1e-12)
        np.testing.assert_allclose(got.transform(X), ref.transform(X), rtol=1e-9, atol=1e-10)
    Xe = X - X.mean(axis=1, keepdims=True)
    ref = PCAWhitening(center="example", epsilon=0.1).fit(X)
    got = PCAWhitening(center="example", epsilon=0.1).fit_covariance(Xe.T @ Xe / len(X))
    np.testing.assert_allclose(got.components_, ref.components_, rtol=1e-10, atol=1e-12)
    with pytest.raises(ParameterError, match="needs the mean"):
        PCAWhitening().fit_covariance(M2 / m)
    with pytest.raises(ParameterError, match="mean=None"):
        PCAWhitening(center=None).fit_covariance(M2 / m, mean)
    with pytest.raises(ParameterError, match="square"):
        PCAWhitening().fit_covariance(np.ones((3, 4)), np.zeros(3))


def _feature_wavs(folder, n=7):
    """Tiny clips of chirps in noise, of different lengths, and one of silence around a tone."""
    rng = np.random.default_rng(1)
    paths = []
    for i in range(n):
        size = int(rng.integers(2000, 5000))
        t = np.arange(size) / SR
        y = 0.2 * np.sin(2 * np.pi * (250 + 120 * i) * t * (1 + 0.5 * t)) * np.hanning(size)
        y = (y + 0.01 * rng.standard_normal(size)).astype(np.float32)
        path = folder / f"f{i}.wav"
        sf.write(str(path), y, SR, subtype="PCM_16")
        paths.append(str(path))
    return paths


FEATURES = dict(n_hidden=5, n_frames=4, patch_bands=8, n_windows=400, max_iter=25,
                weight_decay=1e-2, n_pool_regions=((2, 2),), random_state=3, n_jobs=1)


def _features_here(files, spec, **kw):
    """The files procedure in this process: the same clips, per-clip draws and whitening."""
    from fastsae import audio
    from fastsae.core.checks import check_random_state
    from fastsae.pipeline import SelfTaughtFeatures
    from fastsae.preprocess import PCAWhitening

    stf = SelfTaughtFeatures(**kw)
    spectra = audio.spectra_from_files(files, sr=spec.sr, n_jobs=1, cache_dir=False,
                                       **spec._spectrum_kw())
    clips = stf._clips(spectra)
    rng = check_random_state(stf.random_state)
    seeds = rng.integers(0, 2**63 - 1, size=len(files), dtype=np.int64)
    H, (ph, pw) = clips[0].shape[0], (stf.patch_bands, stf.n_frames)
    places = np.array([(H - ph + 1) * (S.shape[1] - pw + 1) for S in clips], dtype=float)
    counts = rng.multinomial(stf.n_windows, places / places.sum())
    X = np.concatenate([audio.sample_patches([S], (ph, pw), n_samples=int(k),
                                             random_state=int(seed))
                        for S, k, seed in zip(clips, counts, seeds) if k])
    pca = PCAWhitening(retain=stf.retain, epsilon=stf.epsilon).fit(X)
    sae = fastsae.SparseAutoencoder(n_hidden=stf.n_hidden, sparsity=stf.sparsity, beta=stf.beta,
                                    weight_decay=stf.weight_decay, decoder="linear",
                                    max_iter=stf.max_iter, n_jobs=1,
                                    random_state=int(rng.integers(2**31 - 1)))
    sae.fit(pca.transform(X))
    return clips, X, pca, sae, rng


def _same_model(a, b):
    for name in ("W1_", "W2_", "b1_", "b2_"):
        np.testing.assert_array_equal(getattr(a.sae_, name), getattr(b.sae_, name))
    np.testing.assert_array_equal(a.preprocessing_.components_, b.preprocessing_.components_)
    np.testing.assert_array_equal(a.standardizer_.mean_, b.standardizer_.mean_)
    np.testing.assert_array_equal(a.standardizer_.scale_, b.standardizer_.scale_)
    np.testing.assert_array_equal(a.frequency_profile_, b.frequency_profile_)
    assert a.sae_.loss_curve_ == b.sae_.loss_curve_


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_features_fitted_on_the_workers_equal_the_same_procedure_here(client, tmp_path):
    from sklearn.preprocessing import StandardScaler

    from fastsae.audio import Spectrogram
    from fastsae.pipeline import SelfTaughtFeatures

    files = _feature_wavs(tmp_path)
    spec = Spectrogram("mel", 20, sr=SR)
    dist = SelfTaughtFeatures(**FEATURES).fit_files(files, spec, client=client,
                                                    files_per_shard=2)
    assert dist.fitted_on_workers_ and dist.n_files_ == 7 and dist.n_windows_ == 400
    clips, X, pca, sae, rng = _features_here(files, spec, **FEATURES)
    # the whitening from the workers' moments is the in-memory fit of the same patches
    assert dist.preprocessing_.n_components_ == pca.n_components_
    for name in ("mean_", "components_", "explained_variance_"):
        np.testing.assert_allclose(getattr(dist.preprocessing_, name), getattr(pca, name),
                                   rtol=1e-9, atol=1e-11)
    assert dist.sae_.n_iter_ == sae.n_iter_
    for name in ("W1_", "W2_", "b1_", "b2_"):
        np.testing.assert_allclose(getattr(dist.sae_, name), getattr(sae, name), rtol=1e-6,
                                   atol=1e-8)
    # the standardizer and the profile of the fitted filters, as fit computes them
    F = dist._pooled(clips)
    ref = StandardScaler().fit(F)
    np.testing.assert_allclose(dist.standardizer_.mean_, ref.mean_, rtol=1e-10)
    np.testing.assert_allclose(dist.standardizer_.var_, ref.var_, rtol=1e-9)
    np.testing.assert_allclose(dist.standardizer_.scale_, ref.scale_, rtol=1e-9)
    assert dist.standardizer_.n_samples_seen_ == ref.n_samples_seen_ == 7
    np.testing.assert_array_equal(dist.frequency_profile_, dist._frequency_profile(clips, rng))
    assert dist.transform(clips).shape == (7, dist.n_features_out_)
    # the shards do not matter
    again = SelfTaughtFeatures(**FEATURES).fit_files(files, spec, client=client,
                                                     files_per_shard=3)
    np.testing.assert_allclose(again.sae_.W1_, dist.sae_.W1_, rtol=1e-8, atol=1e-10)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore:distributed evaluation failed:RuntimeWarning")
def test_features_from_files_survive_a_lost_worker(client, tmp_path):
    from fastsae.audio import Spectrogram
    from fastsae.pipeline import SelfTaughtFeatures

    files = _feature_wavs(tmp_path)
    spec = Spectrogram("mel", 20, sr=SR)
    plain = SelfTaughtFeatures(**FEATURES).fit_files(files, spec, client=client,
                                                     files_per_shard=2)
    killed = []

    def kill_a_worker(iteration, theta, cost):
        if iteration == 8 and not killed:
            held = client.has_what()          # the worker holding the most shards
            addr = max(held, key=lambda a: len(held[a]))
            assert held[addr]
            os.kill(client.run(os.getpid, workers=[addr])[addr], 9)
            killed.append(addr)

    survived = SelfTaughtFeatures(**FEATURES).fit_files(files, spec, client=client,
                                                        files_per_shard=2,
                                                        callback=kill_a_worker)
    assert killed and killed[0] not in client.scheduler_info()["workers"]
    _same_model(survived, plain)
    client.wait_for_workers(2, timeout=60)


def test_features_from_files_report_bad_input_before_any_work(client, tmp_path):
    from fastsae.audio import Spectrogram
    from fastsae.pipeline import SelfTaughtFeatures

    files = _feature_wavs(tmp_path, n=2)
    spec = Spectrogram("mel", 20, sr=SR)
    stf = SelfTaughtFeatures(**FEATURES)
    with pytest.raises(ParameterError, match="at least one path"):
        stf.fit_files([], spec, client=client)
    with pytest.raises(ParameterError, match="single path"):
        stf.fit_files(files[0], spec, client=client)
    with pytest.raises(ParameterError, match="1 of the 3 file"):
        stf.fit_files(files + [str(tmp_path / "nope.wav")], spec, client=client)
    with pytest.raises(ParameterError, match="Spectrogram"):
        stf.fit_files(files, "mel", client=client)
    with pytest.raises(ParameterError, match="on_error"):
        stf.fit_files(files, spec, client=client, on_error="ignore")
    with pytest.raises(ParameterError, match="files_per_shard"):
        stf.fit_files(files, spec, client=client, files_per_shard=0)
    with pytest.raises(ParameterError, match="patch_bands=30"):
        SelfTaughtFeatures(**dict(FEATURES, patch_bands=30)).fit_files(files, spec,
                                                                       client=client)
    with pytest.raises(ParameterError, match="n_hidden"):
        SelfTaughtFeatures(**dict(FEATURES, n_hidden=0)).fit_files(files, spec, client=client)
    with pytest.raises(TypeError):
        stf.fit_files(files, spec, client=client, shards=2)
    assert not hasattr(stf, "sae_")


@pytest.mark.filterwarnings("ignore:ignored 7 file:UserWarning")
def test_train_sae_with_a_scheduler_computes_on_the_workers(client, tmp_path, capsys):
    import json

    from fastsae.cli import main

    folder = tmp_path / "sounds"
    folder.mkdir()
    files = _feature_wavs(folder)
    out, doc = tmp_path / "model.npz", tmp_path / "train.json"
    address = client.scheduler.address
    code = main(["train-sae", str(folder), "--scheduler", address, "-o", str(out),
                 "--n-bands", "20", "--hidden", "5", "--n-frames", "4", "--patch-bands", "8",
                 "--n-windows", "300", "--max-iter", "10", "--quiet", "--no-cache",
                 "--n-jobs", "1", "--json", str(doc)])
    assert code == 0, capsys.readouterr().err
    model = fastsae.load(out)
    feats = model["features"]
    assert feats.fitted_on_workers_ and feats.n_files_ == 7 and feats.n_windows_ == 300
    report = json.loads(doc.read_text())
    assert report["data"]["n_spectra"] == 7 and report["data"]["n_windows"] == 300
    assert report["settings"]["scheduler"] == address
    assert report["timings"]["spectra_seconds"] is None
    F = feats.transform(model["spectrogram"].transform(files, n_jobs=1, cache_dir=False))
    assert F.shape == (7, feats.n_features_out_) and np.isfinite(F).all()
    np.testing.assert_allclose(F.mean(axis=0), 0.0, atol=1e-8)    # standardised on these clips
    assert fastsae.distributed.get_client(None) is client          # the CLI closed its own


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_features_from_files_resume_from_a_checkpoint(client, tmp_path):
    from fastsae.audio import Spectrogram
    from fastsae.pipeline import SelfTaughtFeatures

    files = _feature_wavs(tmp_path)
    spec = Spectrogram("mel", 20, sr=SR)
    checkpoint = tmp_path / "checkpoint.npz"
    stf = SelfTaughtFeatures(**FEATURES)

    def save(iteration, theta, cost):
        if iteration == 10:
            stf.set_training_state(theta, iteration)
            fastsae.save(stf, checkpoint)

    plain = stf.fit_files(files, spec, client=client, files_per_shard=3, callback=save)
    resumed = fastsae.load(checkpoint)
    assert resumed.sae_.n_iter_ == 10
    resumed.fit_files(files, spec, client=client, files_per_shard=3, resume=True)
    _same_model(resumed, plain)
