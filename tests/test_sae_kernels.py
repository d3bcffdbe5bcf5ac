"""The Numba kernel equals the NumPy reference, for every option and odd sizes."""
import os

import numpy as np
import pytest

import fastsae
from fastsae import check_gradient, reference
from fastsae.backends import CPU_BACKENDS, get_backend
from fastsae.kernels import sae as numba_sae

OPTIONS = [
    dict(decoder="sigmoid", loss="squared", tied=False),
    dict(decoder="linear", loss="squared", tied=False),
    dict(decoder="sigmoid", loss="cross_entropy", tied=False),
    dict(decoder="sigmoid", loss="squared", tied=True),
    dict(decoder="linear", loss="squared", tied=True),
    dict(decoder="sigmoid", loss="cross_entropy", tied=True),
]
SHAPES = [  # (n_visible, n_hidden, n_samples)
    (13, 5, 301),
    (7, 1, 50),       # one hidden unit
    (9, 4, 1),        # one sample
    (64, 25, 1001),   # not a multiple of any block
    (17, 33, 3),      # more hidden than visible, fewer samples than threads x chunks
]


def _problem(v, h, m, dtype, opts, seed=0):
    rng = np.random.default_rng(seed)
    if opts["decoder"] == "linear":
        X = rng.standard_normal((m, v))
    else:
        X = rng.uniform(0, 1, (m, v))
    theta = fastsae.init_params(v, h, random_state=seed, tied=opts["tied"])
    theta += 0.3 * rng.standard_normal(theta.size)  # non-zero biases, broken symmetry
    return theta, X.astype(dtype)


def _label(opts):
    return "-".join(f"{v}" for v in opts.values())


@pytest.mark.parametrize("opts", OPTIONS, ids=_label)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numba_equals_reference(opts, shape, dtype):
    v, h, m = shape
    theta, X = _problem(v, h, m, dtype, opts)
    kw = dict(sparsity=0.05, beta=3.0, weight_decay=1e-3, **opts)
    c_ref, g_ref = reference.sae_cost_grad(theta, X, v, h, **kw)
    c_nb, g_nb = numba_sae.sae_cost_grad(theta, X, v, h, **kw)
    assert g_nb.dtype == np.float64 and g_nb.shape == theta.shape
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    assert c_nb == pytest.approx(c_ref, rel=rtol)
    scale = np.abs(g_ref).max()
    np.testing.assert_allclose(g_nb, g_ref, rtol=0, atol=rtol * 10 * scale)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kernel_sees_every_sample(dtype):
    # a cost over m rows must equal the mean of costs over single rows, up to
    # the sparsity term: check with beta=0 and no decay, many thread splits
    rng = np.random.default_rng(3)
    v, h, m = 6, 4, 37
    X = rng.uniform(0, 1, (m, v)).astype(dtype)
    theta = fastsae.init_params(v, h, random_state=1)
    kw = dict(sparsity=0.1, beta=0.0, weight_decay=0.0)
    total, g = numba_sae.sae_cost_grad(theta, X, v, h, **kw)
    parts = [numba_sae.sae_cost_grad(theta, X[i:i + 1], v, h, **kw) for i in range(m)]
    assert total == pytest.approx(np.mean([p[0] for p in parts]), rel=1e-5)
    np.testing.assert_allclose(g, np.mean([p[1] for p in parts], axis=0), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("opts", OPTIONS, ids=_label)
def test_gradient_check_float64(backend, opts):
    v, h, m = 8, 3, 20
    theta, X = _problem(v, h, m, np.float64, opts, seed=7)
    f = get_backend(backend).sae_cost_grad
    kw = dict(sparsity=0.1, beta=3.0, weight_decay=1e-3, **opts)
    err = check_gradient(lambda t: f(t, X, v, h, **kw), theta)
    assert err < 1e-7, err


def test_gradient_check_detects_a_wrong_gradient():
    v, h, m = 8, 3, 20
    theta, X = _problem(v, h, m, np.float64, OPTIONS[0], seed=7)
    kw = dict(sparsity=0.1, beta=3.0, weight_decay=1e-3)

    def wrong(t):
        c, g = reference.sae_cost_grad(t, X, v, h, **kw)
        g = g.copy()
        g[5] *= 1.01
        return c, g

    assert check_gradient(wrong, theta) > 1e-5


def test_float32_gradient_check_at_float32_tolerance():
    v, h, m = 8, 3, 200
    theta, X = _problem(v, h, m, np.float32, OPTIONS[0], seed=2)
    kw = dict(sparsity=0.1, beta=3.0, weight_decay=1e-3)
    err = check_gradient(lambda t: numba_sae.sae_cost_grad(t, X, v, h, **kw), theta, eps=1e-2)
    assert err < 1e-3, err


def test_public_entry_point_dispatches_and_checks():
    theta, X = _problem(10, 4, 30, np.float64, OPTIONS[0])
    kw = dict(sparsity=0.05, beta=3.0, weight_decay=1e-3)
    results = {b: fastsae.sae_cost_grad(theta, X, 10, 4, backend=b, **kw) for b in CPU_BACKENDS}
    assert results["numba"][0] == pytest.approx(results["numpy"][0], rel=1e-12)
    X_bad = X.copy()
    X_bad[3, 2] = np.nan
    with pytest.raises(fastsae.ParameterError, match="X contains 1 NaN"):
        fastsae.sae_cost_grad(theta, X_bad, 10, 4, **kw)
    with pytest.raises(fastsae.ParameterError, match="backend"):
        fastsae.sae_cost_grad(theta, X, 10, 4, backend="fortran", **kw)


BAD_ARGS = [
    (dict(sparsity=0.0), "sparsity"),
    (dict(sparsity=1.0), "sparsity"),
    (dict(sparsity=float("nan")), "sparsity"),
    (dict(beta=-1.0), "beta"),
    (dict(weight_decay=-1e-4), "weight_decay"),
    (dict(decoder="relu"), "decoder"),
    (dict(loss="hinge"), "loss"),
    (dict(decoder="linear", loss="cross_entropy"), "cross_entropy"),
    (dict(tied="yes"), "tied"),
]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("bad,name", BAD_ARGS, ids=[b[1] + str(i) for i, b in enumerate(BAD_ARGS)])
def test_bad_options_raise_parameter_error(backend, bad, name):
    theta, X = _problem(10, 4, 30, np.float64, OPTIONS[0])
    kw = dict(sparsity=0.05, beta=3.0, weight_decay=1e-3)
    kw.update(bad)
    with pytest.raises(fastsae.ParameterError, match=name):
        get_backend(backend).sae_cost_grad(theta, X, 10, 4, **kw)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_bad_shapes_raise_parameter_error(backend):
    theta, X = _problem(10, 4, 30, np.float64, OPTIONS[0])
    kw = dict(sparsity=0.05, beta=3.0, weight_decay=1e-3)
    f = get_backend(backend).sae_cost_grad
    with pytest.raises(fastsae.ParameterError, match="n_visible=11"):
        f(theta, X, 11, 4, **kw)
    with pytest.raises(fastsae.ParameterError, match="theta"):
        f(theta[:-2], X, 10, 4, **kw)
    with pytest.raises(fastsae.ParameterError, match="X must be"):
        f(theta, X[0], 10, 4, **kw)
    with pytest.raises(fastsae.ParameterError, match="X must be float32 or float64"):
        f(theta, X.astype(np.int64), 10, 4, **kw)
    with pytest.raises(fastsae.ParameterError, match="at least one row"):
        f(theta, X[:0], 10, 4, **kw)


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"),
                    reason="peak RSS reset needs Linux's /proc/self/clear_refs")
def test_peak_memory_of_one_call_is_two_activation_buffers_at_most():
    # a fresh process: the extra resident memory at the peak of one cost+grad call,
    # the input already loaded, stays within two (n_hidden x n_samples) buffers + 10%
    from fastsae.benchmarks.scaling import measure_peak_memory
    r = measure_peak_memory(256, 128, 40_000, np.float32)
    if r is None:
        pytest.skip("this system does not let a process reset its peak RSS")
    assert 0 < r["extra"] <= r["budget"], r


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("opts", OPTIONS[:3], ids=_label)
def test_saturated_units_keep_the_sparsity_term_finite(backend, dtype, opts):
    # pre-activations of ±60 round every activation of units 0 and 1 to exactly 1 and 0
    # (float32 and float64): without the clip of ρ̂, KL(ρ‖ρ̂) would be infinite
    v, h, m = 6, 4, 50
    theta, X = _problem(v, h, m, dtype, opts)
    W1, _, b1, _ = fastsae.params.unpack_sae(theta, v, h)
    b1[0], b1[1] = 60.0, -60.0
    W1[:2] = 0.0
    kw = dict(sparsity=0.05, beta=3.0, weight_decay=1e-3, **opts)
    cost, grad = fastsae.sae_cost_grad(theta, X, v, h, backend=backend, **kw)
    assert np.isfinite(cost) and np.isfinite(grad).all()
    eps = fastsae.core.config.RHO_HAT_EPS
    rho = 0.05
    kl_bound = rho * np.log(rho / (1 - eps)) + (1 - rho) * np.log((1 - rho) / eps)
    assert cost >= 3.0 * kl_bound              # unit 0's clipped KL term is in the cost
    c_ref, g_ref = reference.sae_cost_grad(theta, X, v, h, **kw)
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    assert cost == pytest.approx(c_ref, rel=rtol)
    np.testing.assert_allclose(grad, g_ref, rtol=0, atol=rtol * np.abs(g_ref).max())


def test_chunk_rows_bounded_by_the_rows_and_the_widest_layer():
    from fastsae.kernels.sae import chunk_rows

    assert chunk_rows(512, 4) == chunk_rows(512, 4, 256) == 256       # the audio shape
    assert chunk_rows(64, 8, 25) == 512
    assert chunk_rows(4096, 4) == 128              # 256 rows would be 4 MB per buffer
    # 10**6 hidden units on 5 features: buffers of 128 rows, not 2048 (16 GB per thread)
    assert chunk_rows(5, 8, 10**6) == 128
    # and the kernel's buffers never hold more rows than X has (here 20, not 128)
    from fastsae.kernels import _parallel
    from fastsae.kernels.sae import sae_cost_grad as numba_sae_cost_grad
    theta = np.zeros(2 * 5 * 1000 + 1000 + 5)
    numba_sae_cost_grad(theta, np.full((20, 5), 0.5), 5, 1000, sparsity=0.1, beta=3.0,
                        weight_decay=1e-3)
    key, ws = _parallel._local.__dict__["sae"]
    assert key[:3] == (20, 5, 1000) and ws.D.shape[1] <= 20 and ws.Z.shape[1] <= 20
    _parallel.clear_workspace()
