"""The float kernels' BLAS: SciPy's OpenBLAS or oneMKL (FASTSAE_BLAS), same results."""
import numpy as np
import pytest

import fastsae
from fastsae import reference
from fastsae.core.threads import scipy_blas_single_thread
from fastsae.kernels import _blas, _mkl
from fastsae.kernels import conv as numba_conv, convae as numba_convae
from fastsae.kernels import convnet as numba_convnet, sae as numba_sae
from fastsae.kernels import softmax as numba_softmax, stacked as numba_stacked
from fastsae.params import layout_size, stacked_layout

from fastsae.kernels import _parallel
from test_convae import NETS, net_problem, problem as conv_problem
from test_sae_kernels import OPTIONS, _problem

HAVE_MKL = isinstance(_blas._mkl_addresses(), dict)        # libmkl_rt alone (no ml-dtypes)
needs_mkl = pytest.mark.skipif(
    not HAVE_MKL, reason='needs oneMKL (pip install "fastsae-audio[mkl]")')
DTYPES = [np.float32, np.float64]


def _both(monkeypatch, call):
    """``call()`` with SciPy's BLAS, then with oneMKL's."""
    out = []
    for name in ("scipy", "mkl"):
        monkeypatch.setenv(_blas.ENV, name)
        assert _blas.float_blas() == name
        out.append(call())
    return out


def _close(a, b, dtype):
    rtol, atol = (2e-4, 1e-5) if dtype == np.float32 else (1e-10, 1e-12)
    if isinstance(a, tuple):
        assert a[0] == pytest.approx(b[0], rel=rtol)
        a, b = a[1], b[1]
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def test_an_unknown_choice_is_a_parameter_error_at_the_first_fit(monkeypatch):
    monkeypatch.setenv(_blas.ENV, "openblas")
    with pytest.raises(fastsae.ParameterError, match="FASTSAE_BLAS"):
        fastsae.SparseAutoencoder(n_hidden=3, max_iter=2).fit(np.random.rand(40, 6))


def test_scipy_is_scipys_routines(monkeypatch):
    monkeypatch.setenv(_blas.ENV, "scipy")
    assert _blas.float_blas() == "scipy"
    assert _blas.gemm_address(np.float32) == _blas._ADDRESSES[np.dtype(np.float32)]
    assert _blas.describe().startswith("SciPy's BLAS")


def test_auto_takes_scipy_without_mkl_or_off_intel(monkeypatch):
    monkeypatch.setenv(_blas.ENV, "auto")
    monkeypatch.setitem(_blas._mkl_state, "addresses", "no libmkl_rt here")
    assert _blas.float_blas() == "scipy"
    monkeypatch.setenv(_blas.ENV, "mkl")
    with pytest.raises(fastsae.BackendUnavailableError, match="fastsae-audio\\[mkl\\]"):
        _blas.float_blas()
    monkeypatch.setitem(_blas._mkl_state, "addresses", {})
    monkeypatch.setattr(_blas, "_intel_cpu", lambda: False)
    monkeypatch.setenv(_blas.ENV, "auto")
    assert _blas.float_blas() == "scipy"
    monkeypatch.setenv(_blas.ENV, "mkl")           # asked for: any CPU
    assert _blas.float_blas() == "mkl"
    monkeypatch.setattr(_blas, "_intel_cpu", lambda: True)
    monkeypatch.setenv(_blas.ENV, "auto")          # the default on an Intel CPU with it
    assert _blas.float_blas() == "mkl"
    monkeypatch.delenv(_blas.ENV)
    assert _blas.float_blas() == "mkl"
    monkeypatch.setenv("MKL_THREADING_LAYER", "tbb")   # one thread per kernel thread not held
    assert _blas.float_blas() == "scipy"


@needs_mkl
def test_mkl_address_is_onemkl_and_described(monkeypatch):
    monkeypatch.setenv(_blas.ENV, "mkl")
    for dt in DTYPES:
        assert _blas.gemm_address(dt) != _blas._ADDRESSES[np.dtype(dt)]
    assert _blas.describe().startswith("oneMKL")


@needs_mkl
def test_calling_threads_mkl_setting_is_restored(monkeypatch):
    monkeypatch.setenv(_blas.ENV, "mkl")
    previous = _blas.mkl_thread_local(3)
    try:
        with scipy_blas_single_thread():
            assert _blas.mkl_thread_local(1) == 1        # held to one thread inside
        X = np.random.default_rng(0).uniform(0, 1, (300, 13))
        numba_sae.sae_cost_grad(fastsae.init_params(13, 5, random_state=0), X, 13, 5,
                                sparsity=0.1, beta=3.0, weight_decay=1e-3)
        assert _blas.mkl_thread_local(3) == 3            # and given back after the call
    finally:
        _blas.mkl_thread_local(previous)


@needs_mkl
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts", OPTIONS[:3])
def test_sae_kernel_same_with_either_blas(monkeypatch, dtype, opts):
    theta, X = _problem(64, 25, 1001, dtype, opts)
    a, b = _both(monkeypatch, lambda: numba_sae.sae_cost_grad(
        theta, X, 64, 25, sparsity=0.05, beta=3.0, weight_decay=1e-3, **opts))
    _close(a, b, dtype)
    ref = reference.sae_cost_grad(theta, X.astype(np.float64), 64, 25, sparsity=0.05,
                                  beta=3.0, weight_decay=1e-3, **opts)
    _close(b, ref, np.float32)


@needs_mkl
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_kernel_same_with_either_blas(monkeypatch, dtype):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((517, 333)).astype(dtype)
    y = rng.integers(0, 7, 517)
    theta = 0.01 * rng.standard_normal(7 * 333 + 7)
    a, b = _both(monkeypatch, lambda: numba_softmax.softmax_cost_grad(theta, X, y, 7,
                                                                       weight_decay=1e-3))
    _close(a, b, dtype)
    W, bias = theta[:7 * 333].reshape(7, 333), theta[7 * 333:]
    p, q = _both(monkeypatch, lambda: numba_softmax.softmax_predict_proba(W, bias, X))
    _close(p, q, dtype)


@needs_mkl
@pytest.mark.parametrize("dtype", DTYPES)
def test_stacked_kernel_same_with_either_blas(monkeypatch, dtype):
    rng = np.random.default_rng(2)
    sizes, K = [11, 6, 4], 3
    X = rng.uniform(0, 1, (203, 11)).astype(dtype)
    y = rng.integers(0, K, 203)
    theta = 0.2 * rng.standard_normal(layout_size(stacked_layout(sizes, K)))
    a, b = _both(monkeypatch, lambda: numba_stacked.stacked_cost_grad(
        theta, X, y, sizes, K, weight_decay=1e-3, stack_weight_decay=1e-3))
    _close(a, b, dtype)


@needs_mkl
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_kernels_same_with_either_blas(monkeypatch, dtype):
    theta, X, K, patch = conv_problem((5, 2, 9, 11, 3, 3, 2), False, dtype=dtype)
    a, b = _both(monkeypatch, lambda: numba_convae.conv_ae_cost_grad(
        theta, X, K, patch, sparsity=0.1, beta=3.0, weight_decay=1e-3, decoder="linear"))
    _close(a, b, dtype)
    theta, Xn, y, n_classes = net_problem(NETS["2-mean-max"], seed=4)
    Xn = Xn.astype(dtype)
    a, b = _both(monkeypatch, lambda: numba_convnet.conv_net_cost_grad(
        theta, Xn, y, NETS["2-mean-max"], n_classes, weight_decay=1e-3))
    _close(a, b, dtype)
    rng = np.random.default_rng(5)
    F = rng.standard_normal((7, 3, 4)).astype(dtype)
    images = rng.standard_normal((3, 13, 10)).astype(dtype)
    m1, m2 = _both(monkeypatch, lambda: numba_conv.convolve(F, np.zeros(7, dtype), images))
    _close(m1, m2, dtype)


@needs_mkl
def test_mkl_gives_the_same_fit_twice_to_rounding(monkeypatch):
    monkeypatch.setenv(_blas.ENV, "mkl")
    X = np.random.default_rng(3).uniform(0, 1, (2000, 30)).astype(np.float32)
    fits = [fastsae.SparseAutoencoder(n_hidden=12, max_iter=30, random_state=0).fit(X).W1_
            for _ in range(2)]
    np.testing.assert_allclose(fits[0], fits[1], rtol=1e-5, atol=1e-7)


def test_a_hold_that_fails_leaves_scipys_thread_count_as_it_was(monkeypatch):
    from fastsae.core import threads
    ctrls = threads._scipy_blas_controllers()
    saved = [c.get_num_threads() for c in ctrls]

    def failing():
        raise RuntimeError("hold failed")
    monkeypatch.setattr(threads, "_HOLDS", [failing])
    try:
        for c in ctrls:
            c.set_num_threads(2)
        with pytest.raises(RuntimeError, match="hold failed"):
            with scipy_blas_single_thread():
                pass
        assert [c.get_num_threads() for c in ctrls] == [2] * len(ctrls)
        assert getattr(threads._state, "depth", 0) == 0
    finally:
        for c, n in zip(ctrls, saved):
            c.set_num_threads(n)


def test_a_bad_choice_reaches_only_code_that_calls_a_kernel(monkeypatch):
    # a NumPy-backend fit runs; the Numba one says what is wrong
    monkeypatch.setenv(_blas.ENV, "bogus")
    X = np.random.default_rng(0).uniform(0, 1, (60, 6))
    fastsae.SparseAutoencoder(n_hidden=3, max_iter=3, backend="numpy").fit(X)
    with pytest.raises(fastsae.ParameterError, match="FASTSAE_BLAS"):
        fastsae.SparseAutoencoder(n_hidden=3, max_iter=3).fit(X)


@needs_mkl
def test_kernel_shares_hold_mkl_to_one_thread(monkeypatch):
    monkeypatch.setenv(_blas.ENV, "mkl")
    lib = _mkl.library().lib
    seen = {}

    def share(t0, t1):                     # a plain function: runs like a compiled driver
        seen[t0] = lib.MKL_Get_Max_Threads()
    with scipy_blas_single_thread():
        _blas.gemm_address(np.float32)
        _parallel._run_shares(share, 3, ())
    assert seen == {0: 1, 1: 1, 2: 1}


@needs_mkl
def test_the_blas_held_is_the_one_the_kernels_call(monkeypatch):
    monkeypatch.setenv(_blas.ENV, "scipy")
    with scipy_blas_single_thread():
        monkeypatch.setenv(_blas.ENV, "mkl")       # switched mid-call: the held one stays
        assert _blas.gemm_address(np.float32) == _blas._ADDRESSES[np.dtype(np.float32)]
    assert _blas.gemm_address(np.float32) != _blas._ADDRESSES[np.dtype(np.float32)]
