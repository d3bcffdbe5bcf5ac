"""The CUDA backend: every kernel equals the NumPy reference, on a GPU or on Numba's
CUDA simulator; ``import fastsae`` never imports numba.cuda or CuPy; without a GPU
``backend="cuda"`` raises BackendUnavailableError.

The simulator must be on before numba.cuda is first imported, so the kernel tests
run in their own process::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/test_cuda.py

In the normal run they skip unless an NVIDIA GPU is present. The simulator runs
every CUDA thread as a Python thread (fastsae.cuda uses small blocks there), so the
shapes here are tiny; they are chosen not to be multiples of any block or tile.
"""
import ctypes.util
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import fastsae
from fastsae import SparseAutoencoder, reference

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM", "") == "1"


def _real_gpu() -> bool:
    """An NVIDIA GPU that numba.cuda can use (checked without importing numba.cuda
    where no driver is installed)."""
    if SIM or not (os.path.exists("/dev/nvidiactl") or ctypes.util.find_library("cuda")):
        return False
    try:
        from numba import cuda
        return bool(cuda.is_available())
    except Exception:
        return False


GPU = _real_gpu()
needs_cuda = pytest.mark.skipif(
    not (SIM or GPU),
    reason="needs an NVIDIA GPU, or the CUDA simulator in its own process: "
           "NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/test_cuda.py")
gpu_only = [pytest.mark.gpu, pytest.mark.skipif(not GPU, reason="needs a real NVIDIA GPU")]


def _have_cupy():
    try:
        import cupy  # noqa: F401
        return True
    except Exception:
        return False


#: matrix-product engines to test: the Numba kernel always; cuBLAS where it can run
ENGINES = ["numba"] + (["cupy"] if GPU and _have_cupy() else [])


def _locked_shared_array():
    """Numba's simulator gives a block's threads one shared array per source line, but
    creates it without a lock: two threads that reach the line together can get two
    different arrays (and a block reduction then sums garbage). The same logic, locked."""
    import threading
    import traceback

    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    original = kernelapi.FakeCUDAShared.array
    lock = threading.Lock()

    def array(self, shape, dtype):
        if shape == 0:  # dynamic shared memory: no per-line allocation
            return original(self, shape, dtype)
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        caller = traceback.extract_stack(sys._getframe())[-2][0:2]
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                res = self._allocations[caller] = np.empty(shape, dtype)
        return res

    return kernelapi.FakeCUDAShared, original, array


@pytest.fixture(autouse=True, scope="module")
def _simulator_settings():
    if not SIM:
        yield
        return
    cls, original, locked = _locked_shared_array()
    cls.array = locked
    # every simulated CUDA thread is a Python thread that hands the GIL on at each
    # syncthreads barrier; a short switch interval makes the simulator ~10x faster
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(old)
    cls.array = original


@pytest.fixture(params=ENGINES)
def engine(request, monkeypatch):
    monkeypatch.setenv("FASTSAE_CUDA_MATMUL", request.param)
    return request.param


@pytest.fixture
def fresh_workspace():
    yield
    if SIM or GPU:
        import fastsae.cuda
        fastsae.cuda.clear_workspace()


def _cuda():
    import fastsae.cuda
    return fastsae.cuda


def _tol(dtype):
    return 1e-12 if dtype == np.float64 else 2e-5


def _assert_close(got, ref, dtype):
    c, g = got
    c_ref, g_ref = ref
    assert isinstance(c, float) and g.dtype == np.float64 and g.shape == g_ref.shape
    assert c == pytest.approx(c_ref, rel=_tol(dtype))
    np.testing.assert_allclose(g, g_ref, rtol=0, atol=_tol(dtype) * 10 * np.abs(g_ref).max())


# ---------------------------------------------------------------------------
# in the normal run: imports and the error without a GPU (subprocesses, so that
# neither the simulator nor a real GPU in this process changes the answer)
# ---------------------------------------------------------------------------

def _run(code, **env):
    full = dict(os.environ)
    full.pop("NUMBA_ENABLE_CUDASIM", None)
    full.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=full, timeout=120)


def test_import_fastsae_does_not_import_numba_cuda_or_cupy():
    r = _run("""
        import sys
        import fastsae, fastsae.backends, fastsae.cuda
        bad = sorted(m for m in sys.modules
                     if m == 'cupy' or m.startswith(('numba.cuda', 'cupy.', 'numba_cuda')))
        print('LOADED', bad)
    """)
    assert r.returncode == 0, r.stderr
    assert "LOADED []" in r.stdout, r.stdout


def test_cuda_backend_without_gpu_raises_backend_unavailable():
    # CUDA_VISIBLE_DEVICES="" hides any GPU, so this holds on every machine
    r = _run("""
        import sys
        import numpy as np
        import fastsae
        from fastsae import BackendUnavailableError, SparseAutoencoder
        # without numba.cuda at all (an import that fails)
        sys.modules["numba.cuda"] = None
        try:
            fastsae.backends.get_backend("cuda")
        except BackendUnavailableError as exc:
            print("NOPKG", exc)
        del sys.modules["numba.cuda"]
        # with numba.cuda, but no GPU
        X = np.random.default_rng(0).uniform(0.1, 0.9, (20, 6))
        try:
            SparseAutoencoder(n_hidden=3, max_iter=2, backend="cuda").fit(X)
        except BackendUnavailableError as exc:
            print("FIT", exc)
        try:
            fastsae.sae_cost_grad(fastsae.init_params(6, 3), X, 6, 3, sparsity=0.1, beta=3.0,
                                  weight_decay=1e-4, backend="cuda")
        except BackendUnavailableError as exc:
            print("CALL", exc)
    """, CUDA_VISIBLE_DEVICES="", NUMBA_ENABLE_CUDASIM="0")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "FIT backend='cuda' found no usable NVIDIA GPU" in out, out
    assert "CALL backend='cuda'" in out and "NUMBA_ENABLE_CUDASIM=1" in out, out
    assert "NOPKG backend='cuda' needs numba's CUDA target" in out, out
    assert "pip install 'fastsae-audio[gpu]'" in out, out


# ---------------------------------------------------------------------------
# matrix products
# ---------------------------------------------------------------------------

@needs_cuda
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mnk", [(1, 1, 1), (9, 13, 17), (20, 3, 1), (2, 19, 11)], ids=str)
def test_gemm_all_transposes(mnk, dtype, engine):
    from fastsae.cuda import _matmul as mm
    from fastsae.cuda._device import cuda
    c = cuda()
    M, N, K = mnk
    rng = np.random.default_rng(sum(mnk))
    C0 = rng.standard_normal((M, N)).astype(dtype)
    eng = mm.engine()
    assert eng == engine
    for ta in (False, True):
        for tb in (False, True):
            A = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
            B = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
            for alpha, beta in ((1.0, 0.0), (0.5, 2.0)):
                Cd = c.to_device(C0 if beta else np.full_like(C0, np.nan))
                ops = [mm.operand(c.to_device(a), eng) for a in (A, B)]
                with mm.stream_scope(eng):
                    mm.gemm(eng, ta, tb, alpha, ops[0], ops[1], beta, mm.operand(Cd, eng))
                want = alpha * (A.T if ta else A) @ (B.T if tb else B) + beta * C0
                np.testing.assert_allclose(Cd.copy_to_host(), want, rtol=_tol(dtype) * 10,
                                           atol=_tol(dtype) * 10)


@needs_cuda
@pytest.mark.slow
def test_gemm_with_gpu_sized_tiles(monkeypatch):
    # the simulator normally runs small tiles; run once with the GPU's tile shape
    # (there: compiled constants, here: globals read at run time)
    from fastsae.cuda import _matmul as mm
    from fastsae.cuda._device import cuda
    if SIM:
        for name, value in dict(TX=16, TY=16, RM=4, RN=4, BK=16, BM=64, BN=64,
                                N_THREADS=256).items():
            monkeypatch.setattr(mm, name, value)
    c = cuda()
    rng = np.random.default_rng(1)
    A, B = rng.standard_normal((70, 20)), rng.standard_normal((66, 20))
    Cd = c.device_array((70, 66), np.float64)
    mm.gemm("numba", False, True, 1.0, c.to_device(A), c.to_device(B), 0.0, Cd)
    np.testing.assert_allclose(Cd.copy_to_host(), A @ B.T, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# sparse autoencoder
# ---------------------------------------------------------------------------

SAE_OPTIONS = [
    dict(decoder="sigmoid", loss="squared", tied=False),
    dict(decoder="linear", loss="squared", tied=False),
    dict(decoder="sigmoid", loss="cross_entropy", tied=False),
    dict(decoder="sigmoid", loss="squared", tied=True),
    dict(decoder="linear", loss="squared", tied=True),
    dict(decoder="sigmoid", loss="cross_entropy", tied=True),
]
SAE_SHAPES = [  # (n_visible, n_hidden, n_samples)
    (13, 5, 37),      # nothing a multiple of a block or tile
    (7, 1, 20),       # one hidden unit
    (9, 4, 1),        # one sample
    (11, 19, 3),      # more hidden than visible
]


def _sae_problem(v, h, m, dtype, opts, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, v)) if opts["decoder"] == "linear" else rng.uniform(0, 1, (m, v))
    theta = fastsae.init_params(v, h, random_state=seed, tied=opts["tied"])
    theta += 0.3 * rng.standard_normal(theta.size)
    return theta, X.astype(dtype)


def _label(opts):
    return "-".join(str(v) for v in opts.values())


@needs_cuda
@pytest.mark.parametrize("opts", SAE_OPTIONS, ids=_label)
@pytest.mark.parametrize("shape", SAE_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sae_equals_reference(opts, shape, dtype, engine, fresh_workspace):
    v, h, m = shape
    theta, X = _sae_problem(v, h, m, dtype, opts)
    kw = dict(sparsity=0.05, beta=3.0, weight_decay=1e-3, **opts)
    ref = reference.sae_cost_grad(theta, X, v, h, **kw)
    cu = _cuda()
    _assert_close(cu.sae_cost_grad(theta, cu.to_device(X), v, h, **kw), ref, dtype)


@needs_cuda
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sae_host_input_workspace_reuse_and_clear(dtype, fresh_workspace):
    cu = _cuda()
    opts = SAE_OPTIONS[0]
    kw = dict(sparsity=0.1, beta=1.0, weight_decay=1e-4, **opts)
    theta, X = _sae_problem(6, 3, 15, dtype, opts, seed=2)
    Xd = cu.to_device(X)
    for step in range(2):  # the same workspace, new theta each call
        t = theta + 0.1 * step
        _assert_close(cu.sae_cost_grad(t, Xd, 6, 3, **kw),
                      reference.sae_cost_grad(t, X, 6, 3, **kw), dtype)
    # host X is copied; a new shape gets a new workspace; clear_workspace frees it
    _assert_close(cu.sae_cost_grad(theta, X[:7], 6, 3, **kw),
                  reference.sae_cost_grad(theta, X[:7], 6, 3, **kw), dtype)
    cu.clear_workspace()
    _assert_close(cu.sae_cost_grad(theta, Xd, 6, 3, **kw),
                  reference.sae_cost_grad(theta, X, 6, 3, **kw), dtype)


@needs_cuda
@pytest.mark.slow
def test_sae_with_gpu_sized_blocks(monkeypatch, fresh_workspace):
    # the GPU's block shapes (256 threads) through one whole evaluation
    from fastsae.cuda import _elementwise as ew
    from fastsae.cuda import _matmul as mm
    if SIM:
        for name, value in dict(EW_X=32, EW_Y=8, EW_N=256, NT=256).items():
            monkeypatch.setattr(ew, name, value)
        for name, value in dict(TX=16, TY=16, RM=4, RN=4, BK=16, BM=64, BN=64,
                                N_THREADS=256).items():
            monkeypatch.setattr(mm, name, value)
    cu = _cuda()
    cu.clear_workspace()
    opts = SAE_OPTIONS[2]
    theta, X = _sae_problem(5, 3, 9, np.float64, opts, seed=4)
    kw = dict(sparsity=0.1, beta=3.0, weight_decay=1e-3, **opts)
    _assert_close(cu.sae_cost_grad(theta, cu.to_device(X), 5, 3, **kw),
                  reference.sae_cost_grad(theta, X, 5, 3, **kw), np.float64)


@needs_cuda
def test_to_device_and_checks(fresh_workspace):
    from fastsae import ParameterError
    cu = _cuda()
    X = np.arange(12, dtype=np.int32).reshape(3, 4)
    Xd = cu.to_device(X)
    assert Xd.dtype == np.float64 and Xd.shape == (3, 4)
    assert cu.to_device(Xd) is Xd                          # device arrays: zero-copy
    X32 = cu.to_device(Xd, dtype="float32")                 # cast on the device
    np.testing.assert_array_equal(X32.copy_to_host(), X.astype(np.float32))
    assert cu.is_device_array(Xd) and not cu.is_device_array(X)
    assert cu.value_range(Xd) == (0.0, 11.0, 0)
    bad = X.astype(float)
    bad[1, 2] = np.nan
    with pytest.raises(ParameterError, match="1 NaN or infinite"):
        cu.check_device_array(cu.to_device(bad), "X")
    with pytest.raises(ParameterError, match="2-D"):
        cu.check_device_array(cu.to_device(np.ones(3)), "X")
    with pytest.raises(ParameterError, match="n_visible=5"):
        cu.sae_cost_grad(fastsae.init_params(5, 2), Xd, 5, 2, sparsity=0.1, beta=1.0,
                         weight_decay=0.0)


@needs_cuda
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("opts", SAE_OPTIONS[:3], ids=_label)
def test_saturated_units_keep_the_sparsity_term_finite(opts, dtype, fresh_workspace):
    # pre-activations of ±60 round every activation of units 0 and 1 to exactly 1 and 0:
    # without the clip of ρ̂ (the sparsity kernel's), KL(ρ‖ρ̂) would be infinite
    v, h, m = 6, 4, 50
    theta, X = _sae_problem(v, h, m, dtype, opts)
    W1, _, b1, _ = fastsae.params.unpack_sae(theta, v, h)
    b1[0], b1[1] = 60.0, -60.0
    W1[:2] = 0.0
    kw = dict(sparsity=0.05, beta=3.0, weight_decay=1e-3, **opts)
    cost, grad = fastsae.sae_cost_grad(theta, X, v, h, backend="cuda", **kw)
    assert np.isfinite(cost) and np.isfinite(grad).all()
    eps = fastsae.core.config.RHO_HAT_EPS
    kl_bound = 0.05 * np.log(0.05 / (1 - eps)) + 0.95 * np.log(0.95 / eps)
    assert cost >= 3.0 * kl_bound              # unit 0's clipped KL term is in the cost
    _assert_close((cost, grad), reference.sae_cost_grad(theta, X, v, h, **kw), dtype)


# ---------------------------------------------------------------------------
# softmax, stacked
# ---------------------------------------------------------------------------

SOFTMAX_SHAPES = [(37, 13, 3), (1, 4, 2), (20, 1, 5)]  # (n_samples, n_features, n_classes)


@needs_cuda
@pytest.mark.parametrize("shape", SOFTMAX_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_equals_reference(shape, dtype, engine, fresh_workspace):
    m, n, K = shape
    rng = np.random.default_rng(m)
    X = rng.standard_normal((m, n)).astype(dtype)
    y = rng.integers(0, K, m)
    theta = 0.3 * rng.standard_normal(K * n + K)
    cu = _cuda()
    Xd = cu.to_device(X)
    ref = reference.softmax_cost_grad(theta, X, y, K, weight_decay=1e-2)
    _assert_close(cu.softmax_cost_grad(theta, Xd, y, K, weight_decay=1e-2), ref, dtype)
    # new labels, same workspace: they must be copied again
    y2 = (y + 1) % K
    _assert_close(cu.softmax_cost_grad(theta, Xd, y2, K, weight_decay=1e-2),
                  reference.softmax_cost_grad(theta, X, y2, K, weight_decay=1e-2), dtype)
    W, b = theta[:K * n].reshape(K, n), theta[K * n:]
    P = cu.softmax_predict_proba(W, b, X)
    assert P.dtype == dtype and P.shape == (m, K)
    np.testing.assert_allclose(P, reference.softmax_predict_proba(W, b, X),
                               rtol=_tol(dtype) * 10, atol=_tol(dtype))


@needs_cuda
def test_softmax_huge_logits_stay_finite(fresh_workspace):
    rng = np.random.default_rng(5)
    X = 1e4 * rng.standard_normal((9, 3))
    y = rng.integers(0, 4, 9)
    theta = rng.standard_normal(16)
    c, g = _cuda().softmax_cost_grad(theta, X, y, 4, weight_decay=0.0)
    assert np.isfinite(c) and np.isfinite(g).all()
    _assert_close((c, g), reference.softmax_cost_grad(theta, X, y, 4, weight_decay=0.0),
                  np.float64)


STACKED_CASES = [  # (n_samples, layer_sizes, n_classes, stack_weight_decay)
    (23, (13, 7, 5), 3, 0.0),
    (23, (13, 7, 5), 3, 1e-2),
    (1, (5, 1), 2, 0.0),       # one sample, one hidden unit
    (11, (6,), 4, 0.0),        # no hidden layer: softmax regression
    (9, (4, 9, 2, 3), 2, 1e-3),
]


@needs_cuda
@pytest.mark.parametrize("case", STACKED_CASES, ids=str)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_stacked_equals_reference(case, dtype, engine, fresh_workspace):
    from fastsae.params import layout_size
    from fastsae.core.layouts import stacked_layout as _stacked_layout
    m, sizes, K, lam_s = case
    rng = np.random.default_rng(m + len(sizes))
    X = rng.uniform(0, 1, (m, sizes[0])).astype(dtype)
    y = rng.integers(0, K, m)
    theta = 0.5 * rng.standard_normal(layout_size(_stacked_layout(sizes, K)))
    kw = dict(weight_decay=1e-3, stack_weight_decay=lam_s)
    cu = _cuda()
    _assert_close(cu.stacked_cost_grad(theta, cu.to_device(X), y, sizes, K, **kw),
                  reference.stacked_cost_grad(theta, X, y, sizes, K, **kw), dtype)


# ---------------------------------------------------------------------------
# convolution and pooling
# ---------------------------------------------------------------------------

CONV_SHAPES = [  # (K, ph, pw, N, H, W)
    (3, 2, 3, 2, 5, 7),
    (1, 1, 1, 1, 1, 1),          # everything size one
    (2, 4, 4, 1, 4, 4),          # filter as large as the input
    (2, 3, 3, 5, 8, 9),          # several chunks of images (small chunks on the simulator)
]


@needs_cuda
@pytest.mark.parametrize("shape", CONV_SHAPES, ids=str)
@pytest.mark.parametrize("activation", ["sigmoid", "linear", "relu"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_convolve_equals_reference(shape, activation, dtype, fresh_workspace):
    K, ph, pw, N, H, W = shape
    rng = np.random.default_rng(sum(shape))
    F = rng.standard_normal((K, ph, pw)).astype(dtype) / np.sqrt(ph * pw)
    b = rng.standard_normal(K)
    images = rng.standard_normal((N, H, W)).astype(dtype)
    ref = reference.convolve(F, b, images, activation=activation)
    got = _cuda().convolve(F, b, images, activation=activation)
    assert got.shape == ref.shape and got.dtype == dtype
    np.testing.assert_allclose(got, ref, rtol=_tol(dtype), atol=_tol(dtype) / 10)
    out = np.full(ref.shape, np.nan, dtype)
    assert _cuda().convolve(F, b, images, activation=activation, out=out) is out
    np.testing.assert_array_equal(out, got)


@needs_cuda
@pytest.mark.parametrize("mode", ["mean", "max"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pool_regions_equals_reference(mode, dtype):
    rng = np.random.default_rng(3)
    maps = rng.standard_normal((2, 3, 7, 9)).astype(dtype)
    maps[1, 2, 0, 0] = np.nan                    # NaN must reach its region's result
    rs, re = np.array([0, 2, 5]), np.array([2, 5, 7])
    cs, ce = np.array([0, 4]), np.array([4, 9])
    cu = _cuda()
    got = cu.pool_regions(maps, rs, re, cs, ce, mode=mode)
    ref = reference.pool_regions(maps, rs, re, cs, ce, mode=mode)
    assert got.shape == (2, 3, 3, 2) and got.dtype == dtype
    np.testing.assert_allclose(got, ref, rtol=_tol(dtype), atol=_tol(dtype))
    assert np.isnan(got[1, 2, 0, 0])
    # a single map, from the device
    one = cu.pool_regions(cu.to_device(maps[0, 0]), rs, re, cs, ce, mode=mode)
    np.testing.assert_allclose(one, ref[0, 0], rtol=_tol(dtype), atol=_tol(dtype))
    # several modes at once, stacked in their order
    other = "max" if mode == "mean" else "mean"
    both = cu.pool_regions(maps, rs, re, cs, ce, mode=(mode, other))
    assert both.shape == (2, 2, 3, 3, 2)
    np.testing.assert_allclose(both, reference.pool_regions(maps, rs, re, cs, ce, mode=(mode, other)),
                               rtol=_tol(dtype), atol=_tol(dtype))


# ---------------------------------------------------------------------------
# a shard's statistics (Dask training)
# ---------------------------------------------------------------------------

STATS_SHAPES = [(13, 5, 37), (9, 4, 1), (6, 11, 7)]  # (n_visible, n_hidden, n_samples)


@needs_cuda
@pytest.mark.parametrize("with_sparsity", [True, False])
@pytest.mark.parametrize("opts", SAE_OPTIONS, ids=_label)
@pytest.mark.parametrize("shape", STATS_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_shard_stats_equal_reference(opts, shape, dtype, with_sparsity, engine,
                                     fresh_workspace):
    from fastsae.reference.sae_stats import sae_shard_stats as ref_stats
    v, h, m = shape
    theta, X = _sae_problem(v, h, m, dtype, opts, seed=m)
    kw = dict(with_sparsity=with_sparsity, **opts)
    ref = ref_stats(theta, X, v, h, **kw)
    cu = _cuda()
    for X_in in (cu.to_device(X), X):                      # device, then host input
        got = cu.sae_shard_stats(theta, X_in, v, h, **kw)
        assert got.dtype == np.float64 and got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=0, atol=_tol(dtype) * 10 * np.abs(ref).max())


@needs_cuda
@pytest.mark.parametrize("opts", [SAE_OPTIONS[0], SAE_OPTIONS[4]], ids=_label)
def test_combined_cuda_stats_pass_a_gradient_check(opts, fresh_workspace):
    from fastsae.distributed import sae_combine_stats
    v, h = 5, 3
    theta, X = _sae_problem(v, h, 11, np.float64, opts, seed=3)
    Xd = _cuda().to_device(X)
    kw = dict(sparsity=0.1, beta=3.0, weight_decay=1e-3, **opts)

    def fun(t):
        stats = _cuda().sae_shard_stats(t, Xd, v, h, decoder=opts["decoder"], loss=opts["loss"],
                                        tied=opts["tied"])
        return sae_combine_stats(stats, t, v, h, **kw)

    _assert_close(fun(theta), reference.sae_cost_grad(theta, X, v, h, **kw), np.float64)
    assert fastsae.check_gradient(fun, theta, n_checks=12, random_state=0) < 1e-8


@needs_cuda
def test_dask_workers_use_the_cuda_backend(fresh_workspace):
    # The simulator runs one kernel at a time per process, so the cluster is one worker
    # thread in this process (processes=False: the simulator is on there too); the data
    # are still split into shards whose statistics the worker computes with the CUDA
    # kernel and the cluster adds up.
    distributed = pytest.importorskip("distributed")
    import logging

    import dask
    import dask.array as da

    import fastsae.distributed as fd
    v, h = 7, 3
    opts = SAE_OPTIONS[0]
    theta, X = _sae_problem(v, h, 23, np.float64, opts, seed=5)
    kw = dict(sparsity=0.1, beta=3.0, weight_decay=1e-3, **opts)
    # the worker's statistical profiler off: it walks the stacks of the simulator's threads
    # every 10 ms (through linecache, which the shared-array lock above also uses), and
    # with it on about one run in five hung
    with dask.config.set({"distributed.worker.profile.enabled": False}), \
            distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                     dashboard_address=None,
                                     silence_logs=logging.CRITICAL) as cluster, \
            distributed.Client(cluster) as client:
        f = fd.sae_objective(client, da.from_array(X, chunks=(9, v)), v, h, backend="cuda",
                             **kw)
        assert f.n_shards == 3
        _assert_close(f(theta), reference.sae_cost_grad(theta, X, v, h, **kw), np.float64)
        # and a fit on the dask array (the default client), the shards on the CUDA backend
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fastsae.ConvergenceWarning)
            est = dict(n_hidden=h, max_iter=3, random_state=0, sparsity=0.1)
            on_cluster = SparseAutoencoder(backend="cuda", **est).fit(
                da.from_array(X, chunks=(9, v)))
            here = SparseAutoencoder(backend="numpy", **est).fit(X)
    np.testing.assert_allclose(on_cluster.W1_, here.W1_, rtol=1e-9, atol=1e-10)


# ---------------------------------------------------------------------------
# convolutional autoencoder
# ---------------------------------------------------------------------------

CONV_AE_SHAPES = [  # (N, C, H, W, K, ph, pw)
    (3, 2, 5, 7, 3, 2, 3),      # several chunks of images (small chunks on the simulator)
    (1, 1, 4, 4, 2, 4, 4),      # filter as large as the image: one position
    (2, 1, 3, 5, 1, 1, 1),      # one filter, 1x1
]
CONV_AE_OPTIONS = [dict(decoder=d, tied=t, beta=b) for d in ("sigmoid", "linear")
                   for t in (False, True) for b in (3.0, 0.0)]


def _conv_ae_problem(shape, opts, dtype, seed=0):
    from fastsae.core.layouts import conv_ae_layout
    from fastsae.params import layout_size
    N, C, H, W, K, ph, pw = shape
    rng = np.random.default_rng(seed + sum(shape))
    X = rng.uniform(0, 1, (N, C, H, W)) if opts["decoder"] == "sigmoid" else \
        rng.standard_normal((N, C, H, W))
    theta = rng.uniform(-0.5, 0.5, layout_size(conv_ae_layout(K, C, (ph, pw), opts["tied"])))
    return theta, X.astype(dtype), K, (ph, pw)


@needs_cuda
@pytest.mark.parametrize("opts", CONV_AE_OPTIONS, ids=_label)
@pytest.mark.parametrize("shape", CONV_AE_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conv_ae_equals_reference(opts, shape, dtype, engine, fresh_workspace):
    theta, X, K, patch = _conv_ae_problem(shape, opts, dtype)
    kw = dict(sparsity=0.1, weight_decay=1e-3, **opts)
    ref = reference.conv_ae_cost_grad(theta, X, K, patch, **kw)
    cu = _cuda()
    _assert_close(cu.conv_ae_cost_grad(theta, cu.to_device(X), K, patch, **kw), ref, dtype)
    _assert_close(cu.conv_ae_cost_grad(theta, X, K, patch, **kw), ref, dtype)   # host input


@needs_cuda
@pytest.mark.parametrize("opts", [CONV_AE_OPTIONS[0], CONV_AE_OPTIONS[6]], ids=_label)
def test_conv_ae_gradient_check(opts, fresh_workspace):
    from fastsae.convae import conv_ae_cost_grad
    theta, X, K, patch = _conv_ae_problem((2, 2, 4, 5, 2, 2, 3), opts, np.float64)
    Xd = _cuda().to_device(X)
    fun = lambda t: conv_ae_cost_grad(t, Xd, K, patch, sparsity=0.1, weight_decay=1e-3,  # noqa
                                      backend="cuda", **opts)
    assert fastsae.check_gradient(fun, theta, n_checks=10, random_state=0) < 1e-8


# ---------------------------------------------------------------------------
# convolutional network
# ---------------------------------------------------------------------------

CONV_NETS = {  # name -> (input shape (N, C, H, W), layers, n_classes, conv_weight_decay)
    "1-mean": ((5, 1, 7, 9), [dict(n_filters=3, patch_shape=(2, 3), pool_shape=(2, 3))],
               3, 0.0),
    "1-none": ((2, 1, 5, 5), [dict(n_filters=2, patch_shape=(3, 3))], 2, 1e-2),
    "2-max-mean": ((3, 2, 8, 7),
                   [dict(n_filters=3, patch_shape=(3, 2), pool="max", n_pool_regions=(2, 2)),
                    dict(n_filters=2, patch_shape=(2, 2), n_pool_regions=(1, 1))], 2, 1e-2),
    # partial regions, then more regions than positions (regions that share elements)
    "2-max-max": ((4, 1, 6, 6),
                  [dict(n_filters=2, patch_shape=(2, 2), pool="max", pool_shape=(2, 2),
                        remainder="partial"),
                   dict(n_filters=3, patch_shape=(2, 1), pool="max", n_pool_regions=(4, 3))],
                  3, 0.0),
}


def _conv_net_problem(name, dtype, seed=0):
    from fastsae.core.layouts import conv_net_layout, conv_net_plan
    from fastsae.params import layout_size
    shape, layers, K, lam_c = CONV_NETS[name]
    rng = np.random.default_rng(seed + sum(shape))
    X = rng.uniform(0, 1, shape).astype(dtype)
    y = rng.integers(0, K, shape[0])
    plan, n_features = conv_net_plan(layers, shape[1:])
    theta = rng.uniform(-0.5, 0.5, layout_size(conv_net_layout(plan, n_features, K)))
    return theta, X, y, layers, K, dict(weight_decay=1e-3, conv_weight_decay=lam_c)


@needs_cuda
@pytest.mark.parametrize("name", list(CONV_NETS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conv_net_equals_reference(name, dtype, engine, fresh_workspace):
    theta, X, y, layers, K, kw = _conv_net_problem(name, dtype)
    cu = _cuda()
    Xd = cu.to_device(X)
    _assert_close(cu.conv_net_cost_grad(theta, Xd, y, layers, K, **kw),
                  reference.conv_net_cost_grad(theta, X, y, layers, K, **kw), dtype)
    # new labels, the same workspace (they must be copied again); then host input
    y2 = (y + 1) % K
    ref2 = reference.conv_net_cost_grad(theta, X, y2, layers, K, **kw)
    _assert_close(cu.conv_net_cost_grad(theta, Xd, y2, layers, K, **kw), ref2, dtype)
    _assert_close(cu.conv_net_cost_grad(theta, X, y2, layers, K, **kw), ref2, dtype)


@needs_cuda
@pytest.mark.parametrize("name", ["1-mean", "2-max-mean"])
def test_conv_net_gradient_check(name, fresh_workspace):
    from fastsae.convnet import conv_net_cost_grad
    theta, X, y, layers, K, kw = _conv_net_problem(name, np.float64, seed=1)
    kw["conv_weight_decay"] = 1e-3
    X, y = X[:2], y[:2]                        # two images: the simulator is slow
    Xd = _cuda().to_device(X)
    fun = lambda t: conv_net_cost_grad(t, Xd, y, layers, K, backend="cuda", **kw)  # noqa
    assert fastsae.check_gradient(fun, theta, n_checks=10, random_state=0) < 1e-8


# ---------------------------------------------------------------------------
# the estimators
# ---------------------------------------------------------------------------

@needs_cuda
@pytest.mark.parametrize("tied", [False, True])
def test_fit_on_cuda_equals_numba(tied, fresh_workspace):
    X = np.random.default_rng(0).uniform(0.05, 0.95, (40, 13))
    kw = dict(n_hidden=5, max_iter=4, random_state=0, tied=tied, sparsity=0.1)
    on_gpu = SparseAutoencoder(backend="cuda", **kw).fit(X)
    on_cpu = SparseAutoencoder(backend="numba", **kw).fit(X)
    assert on_gpu.n_iter_ == on_cpu.n_iter_
    for name in ("W1_", "W2_", "b1_", "b2_"):
        np.testing.assert_allclose(getattr(on_gpu, name), getattr(on_cpu, name),
                                   rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(on_gpu.loss_curve_, on_cpu.loss_curve_, rtol=1e-10)


@needs_cuda
def test_fit_with_device_input_float32(fresh_workspace):
    cu = _cuda()
    X = np.random.default_rng(1).uniform(0.05, 0.95, (30, 7))
    kw = dict(n_hidden=3, max_iter=3, random_state=0, dtype="float32")
    on_gpu = SparseAutoencoder(backend="cuda", **kw).fit(cu.to_device(X))
    on_cpu = SparseAutoencoder(backend="numba", **kw).fit(X)
    # float32 products in another order (cuBLAS on a GPU): close, not equal
    np.testing.assert_allclose(on_gpu.W1_, on_cpu.W1_, rtol=1e-3, atol=1e-4)
    from fastsae import ParameterError
    with pytest.raises(ParameterError, match=r"\[0, 1\]"):
        SparseAutoencoder(backend="cuda", **kw).fit(cu.to_device(X + 1.0))


@needs_cuda
@pytest.mark.filterwarnings("ignore::fastsae.ConvergenceWarning")
def test_convolutional_autoencoder_on_cuda_equals_numpy(fresh_workspace):
    from fastsae import ConvolutionalAutoencoder
    X = np.random.default_rng(0).uniform(0.05, 0.95, (4, 1, 6, 7))
    kw = dict(n_filters=3, patch_shape=(3, 2), max_iter=3, random_state=0)
    on_gpu = ConvolutionalAutoencoder(backend="cuda", **kw).fit(X)
    on_cpu = ConvolutionalAutoencoder(backend="numpy", **kw).fit(X)
    assert on_gpu.n_iter_ == on_cpu.n_iter_
    for name in ("filters_", "decoder_filters_", "bias_", "decoder_bias_"):
        np.testing.assert_allclose(getattr(on_gpu, name), getattr(on_cpu, name),
                                   rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(on_gpu.loss_curve_, on_cpu.loss_curve_, rtol=1e-10)
    assert on_gpu.cost(X) == pytest.approx(on_cpu.cost(X), rel=1e-10)
    np.testing.assert_allclose(on_gpu.transform(X), on_cpu.transform(X), rtol=1e-10)


@needs_cuda
@pytest.mark.filterwarnings("ignore::fastsae.ConvergenceWarning")
def test_stacked_convolutional_autoencoder_on_cuda_equals_numpy(fresh_workspace):
    from fastsae import StackedConvolutionalAutoencoder
    rng = np.random.default_rng(1)
    X = rng.uniform(0.05, 0.95, (4, 1, 6, 7))
    y = np.array(["a", "b"] * 2)
    layers = [dict(n_filters=2, patch_shape=(2, 2), pool_shape=(2, 2)),
              dict(n_filters=2, patch_shape=(2, 2), pool="max", n_pool_regions=(1, 1))]
    kw = dict(pretrain_iter=2, softmax_iter=2, finetune_iter=3, random_state=0)
    on_gpu = StackedConvolutionalAutoencoder(layers, backend="cuda", **kw).fit(X, y)
    on_cpu = StackedConvolutionalAutoencoder(layers, backend="numpy", **kw).fit(X, y)
    for (Wg, bg), (Wc, bc) in zip(on_gpu.layers_, on_cpu.layers_):
        np.testing.assert_allclose(Wg, Wc, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(bg, bc, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(on_gpu.coef_, on_cpu.coef_, rtol=1e-9, atol=1e-10)
    assert on_gpu.finetune_cost_ == pytest.approx(on_cpu.finetune_cost_, rel=1e-10)
    np.testing.assert_allclose(on_gpu.predict_proba(X), on_cpu.predict_proba(X), rtol=1e-9)


@needs_cuda
@pytest.mark.filterwarnings("ignore::fastsae.ConvergenceWarning")
def test_self_taught_features_on_cuda_equal_numpy(fresh_workspace):
    from fastsae.pipeline import SelfTaughtFeatures
    rng = np.random.default_rng(2)
    spectra = [rng.normal(-40.0, 10.0, (13, int(rng.integers(6, 10)))).astype(np.float32)
               for _ in range(5)]
    kw = dict(n_hidden=3, n_frames=2, n_windows=30, max_iter=3, n_pool_regions=(1, 2),
              random_state=0)
    F_gpu = SelfTaughtFeatures(backend="cuda", **kw).fit_transform(spectra)
    F_cpu = SelfTaughtFeatures(backend="numpy", **kw).fit_transform(spectra)
    np.testing.assert_allclose(F_gpu, F_cpu, rtol=1e-8, atol=1e-9)


# ---------------------------------------------------------------------------
# real GPU only: CuPy input and cuBLAS
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.usefixtures("fresh_workspace")
def test_cupy_input_is_zero_copy_and_fit_works(dtype):
    if not GPU or not _have_cupy():
        pytest.skip("needs a real NVIDIA GPU and CuPy")
    import cupy
    cu = _cuda()
    X = np.random.default_rng(2).uniform(0.05, 0.95, (500, 31)).astype(dtype)
    Xc = cupy.asarray(X)
    Xd = cu.to_device(Xc)
    assert Xd.__cuda_array_interface__["data"][0] == Xc.data.ptr
    kw = dict(n_hidden=9, max_iter=5, random_state=0, dtype=np.dtype(dtype).name)
    on_gpu = SparseAutoencoder(backend="cuda", **kw).fit(Xc)
    on_cpu = SparseAutoencoder(backend="numba", **kw).fit(X)
    assert on_gpu.loss_curve_[0] == pytest.approx(on_cpu.loss_curve_[0], rel=1e-5)
    np.testing.assert_allclose(on_gpu.W1_, on_cpu.W1_, rtol=1e-2 if dtype == np.float32 else 1e-8,
                               atol=1e-3 if dtype == np.float32 else 1e-9)


for _mark in gpu_only:
    test_cupy_input_is_zero_copy_and_fit_works = _mark(test_cupy_input_is_zero_copy_and_fit_works)
