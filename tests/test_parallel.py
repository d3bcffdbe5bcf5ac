"""Every kernel gives the same result whether its shares run on several threads or serially."""
import numba
import numpy as np
import pytest

import fastsae
from fastsae.core import config as _config
from fastsae.kernels import conv, convae, convnet, sae, softmax, stacked
from fastsae.kernels import _fpenv
from fastsae.kernels._parallel import parallel_kernel, threads_for


def _both(monkeypatch, fn):
    monkeypatch.setattr(_config, "PARALLEL_MIN_FLOPS", 1)
    par = fn()
    monkeypatch.setattr(_config, "PARALLEL_MIN_FLOPS", 1e30)
    ser = fn()
    return par, ser


def test_threads_for(monkeypatch):
    monkeypatch.setattr(_config, "PARALLEL_MIN_FLOPS", 1e7)
    assert threads_for(1e5, 1000) == 1
    assert threads_for(1e12, 1) == 1
    assert threads_for(1e12, 1000) == numba.get_num_threads()


@pytest.mark.skipif(numba.get_num_threads() < 2, reason="needs 2 Numba threads to compare")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_serial_equals_parallel(monkeypatch, dtype):
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (777, 13)).astype(dtype)
    y = rng.integers(0, 3, 777)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    th = fastsae.init_params(13, 5, random_state=0)
    kw = dict(sparsity=0.1, beta=3.0, weight_decay=1e-3)
    (c1, g1), (c2, g2) = _both(monkeypatch, lambda: sae.sae_cost_grad(th, X, 13, 5, **kw))
    assert c1 == pytest.approx(c2, rel=tol)
    np.testing.assert_allclose(g1, g2, rtol=tol * 100, atol=tol)
    ts = 0.01 * rng.standard_normal(3 * 13 + 3)
    (c1, g1), (c2, g2) = _both(monkeypatch, lambda: softmax.softmax_cost_grad(ts, X, y, 3, weight_decay=1e-3))
    np.testing.assert_allclose(g1, g2, rtol=tol * 100, atol=tol)
    sizes = (13, 6, 4)
    tst = 0.1 * rng.standard_normal(3 * 4 + 3 + 6 * 13 + 6 + 4 * 6 + 4)
    (c1, g1), (c2, g2) = _both(monkeypatch, lambda: stacked.stacked_cost_grad(tst, X, y, sizes, 3, weight_decay=1e-3))
    np.testing.assert_allclose(g1, g2, rtol=tol * 100, atol=tol)
    F = rng.standard_normal((4, 3, 5)).astype(dtype)
    imgs = rng.standard_normal((3, 17, 23)).astype(dtype)
    m1, m2 = _both(monkeypatch, lambda: conv.convolve(F, np.zeros(4), imgs))
    np.testing.assert_allclose(m1, m2, rtol=tol, atol=tol)
    p1, p2 = _both(monkeypatch, lambda: conv.pool_regions(m1, np.array([0, 5]), np.array([5, 15]),
                                                          np.array([0, 7]), np.array([7, 19]), mode="max"))
    np.testing.assert_array_equal(p1, p2)
    Xc = rng.uniform(0, 1, (5, 1, 9, 10)).astype(dtype)
    thc = 0.1 * rng.standard_normal(2 * 3 * 9 + 3 + 1)
    (c1, g1), (c2, g2) = _both(monkeypatch, lambda: convae.conv_ae_cost_grad(
        thc, Xc, 3, (3, 3), sparsity=0.1, beta=3.0, weight_decay=1e-3))
    np.testing.assert_allclose(g1, g2, rtol=tol * 100, atol=tol)


def _parallel_kernels():
    from fastsae.kernels._parallel import ParallelKernel
    for mod in (conv, convae, convnet, sae, softmax, stacked):
        for name, obj in vars(mod).items():
            if isinstance(obj, ParallelKernel):
                yield f"{mod.__name__}.{name}", obj


def test_every_driver_is_one_serial_compilation():
    # One compiled driver serves both the calling thread alone and the thread
    # shares; Numba's parallel lowering (which doubled the compile time) is not used.
    kernels = dict(_parallel_kernels())
    assert len(kernels) >= 8
    for name, k in kernels.items():
        assert not k.kernel.targetoptions.get("parallel"), name
        assert k.kernel.targetoptions.get("nogil"), name     # threads run side by side


def test_a_failing_share_raises_in_the_caller_after_all_shares_end():
    import threading
    import time

    from fastsae.kernels._parallel import _run_shares

    ended = []

    def kernel(t0, t1):
        if t0 == 1:
            raise ValueError("share 1 failed")
        time.sleep(0.05)
        ended.append(threading.get_ident())

    with pytest.raises(ValueError, match="share 1"):
        _run_shares(kernel, 3, ())
    assert len(ended) == 2                  # shares 0 and 2 ran to the end first


@parallel_kernel
def _halve(x, out, t0, t1):
    for t in range(t0, t1):                             # share t: row t
        for i in range(x.shape[1]):
            out[t, i] = x[t, i] * np.float32(0.5)


@pytest.mark.skipif(not _fpenv.X86, reason="FTZ and DAZ are bits of x86's MXCSR")
@pytest.mark.parametrize("n_threads", [1, 3])
def test_kernel_shares_flush_denormals_and_leave_the_caller_s_setting_alone(n_threads):
    tiny = np.finfo(np.float32).tiny                    # the smallest normal float32
    assert not _fpenv.flushing()
    # a denormal result, a denormal input, a normal number
    x = np.tile(np.array([1.5 * tiny, tiny / 4, 3.0], np.float32), (n_threads, 1))
    out = np.full_like(x, -1.0)
    _halve(n_threads)(x, out)
    np.testing.assert_array_equal(out, np.tile([0.0, 0.0, 1.5], (n_threads, 1)))
    assert not _fpenv.flushing()                        # the caller's thread as it was
    assert np.float32(1.5 * tiny) * np.float32(0.5) > 0  # and its NumPy keeps denormals
    state = _fpenv.flush_denormals()
    assert _fpenv.flushing()
    _fpenv.restore(state)
    assert not _fpenv.flushing()


def test_variants_are_compiled_and_cached_apart():
    from fastsae.kernels.conv import _CONVOLVE
    from fastsae.kernels.sae import _BACKPROP

    for table in (_BACKPROP, _CONVOLVE):
        index = {k.kernel._cache._cache_file._index_name for k in table.values()}
        assert len(index) == len(table)
        assert len({k.kernel for k in table.values()}) == len(table)


def test_many_callers_with_different_thread_counts_share_the_pool():
    import threading

    from fastsae.kernels._parallel import _run_shares

    errors, done = [], []

    def kernel(out, t0, t1):
        for t in range(t0, t1):
            out[t] += 1

    def caller(n):
        try:
            for _ in range(20):
                out = np.zeros(n)
                _run_shares(kernel, n, (out,))
                assert np.all(out == 1)
            done.append(n)
        except Exception as e:            # noqa: BLE001 - collected and reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(2, 10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert sorted(done) == list(range(2, 10))


def test_the_first_call_of_a_driver_runs_in_the_calling_thread_first():
    import threading

    from fastsae.kernels._parallel import _run_shares

    calls = []

    class Driver:                         # stands for a dispatcher with nothing compiled yet
        overloads = {}

        def __call__(self, t0, t1):
            calls.append((t0, threading.current_thread() is threading.main_thread(), len(calls)))

    _run_shares(Driver(), 3, ())
    assert calls[0][:2] == (0, True)      # share 0, in this thread, before any other share
    assert sorted(c[0] for c in calls) == [0, 1, 2]


def test_a_second_variant_under_one_name_is_refused():
    from fastsae.kernels.conv import _bias_linear, _convolve

    with pytest.raises(ValueError, match="exists already"):
        _convolve.variant("relu", BIAS_ACTIVATION=_bias_linear)
