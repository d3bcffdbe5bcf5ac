"""Compiling kernels ahead in a second process (fastsae.warmup)."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastsae import ParameterError, warmup
from fastsae.kernels import _parallel, stacked


def test_compile_ahead_refuses_unknown_areas_and_dtypes():
    with pytest.raises(ParameterError, match="areas"):
        warmup.compile_ahead(["convnet", "nonsense"])
    with pytest.raises(ParameterError, match="areas"):
        warmup.compile_ahead("convnet")
    with pytest.raises(ParameterError, match="dtype"):
        warmup.compile_ahead(["convnet"], dtype="float16")
    with pytest.raises(ParameterError, match="areas"):
        warmup.compile_ahead(None)


def test_compile_ahead_takes_numpy_dtypes_and_survives_a_failed_start(monkeypatch):
    monkeypatch.setattr(warmup, "_cached", lambda area: False)

    def no_interpreter(*args, **kwargs):
        raise OSError("no such file")

    monkeypatch.setattr(warmup.subprocess, "Popen", no_interpreter)
    for dtype in (np.float32, np.dtype("float64"), "float32"):
        with warmup.compile_ahead(["stacked"], dtype=dtype) as ahead:   # compiles here instead
            assert ahead.areas == [] and not _parallel.AHEAD


def test_cache_index_updates_are_locked():
    from numba.core import caching

    assert warmup._lock_cache_saves() and warmup._lock_cache_saves()    # installed once
    assert caching.IndexDataCacheFile.save._fastsae_locked


def test_nothing_starts_when_the_kernels_are_cached(monkeypatch):
    monkeypatch.setattr(warmup, "_cached", lambda area: True)
    with warmup.compile_ahead(["convae", "convnet", "stacked"]) as ahead:
        assert ahead.areas == [] and not _parallel.AHEAD


def test_a_kernel_waits_for_its_module_compiling_elsewhere(monkeypatch):
    calls = []
    monkeypatch.setitem(_parallel.AHEAD, "fastsae.kernels.stacked", lambda: calls.append(1))
    X = np.full((3, 4), 0.5)
    theta = np.full(3 * 2 + 2 + 3 * 4 + 3, 0.01)
    stacked.stacked_cost_grad(theta, X, np.array([0, 1, 0]), (4, 3), 2, weight_decay=1e-3)
    assert calls == [1]
    monkeypatch.setitem(_parallel.AHEAD, "fastsae.kernels.convnet", lambda: calls.append(2))
    stacked.stacked_cost_grad(theta, X, np.array([0, 1, 0]), (4, 3), 2, weight_decay=1e-3)
    assert calls == [1, 1]                      # another module's compilation: no wait


def test_the_child_compiles_and_the_waiters_are_released(monkeypatch):
    monkeypatch.setattr(warmup, "_cached", lambda area: False)
    ahead = warmup.compile_ahead(["stacked"], dtype="float64")
    try:
        assert isinstance(ahead, warmup.CompileAhead)
        assert set(_parallel.AHEAD) == {"fastsae.kernels.stacked"}
        assert ahead.wait() == 0
        assert not _parallel.AHEAD
    finally:
        ahead.close()
    assert not _parallel.AHEAD


def test_close_stops_a_running_child(monkeypatch):
    monkeypatch.setattr(warmup, "_cached", lambda area: False)
    real = subprocess.Popen
    monkeypatch.setattr(warmup.subprocess, "Popen", lambda cmd, **kw: real(
        [sys.executable, "-c", "import time; time.sleep(60)"], **kw))
    ahead = warmup.compile_ahead(["convnet"])
    assert ahead._proc.poll() is None
    ahead.close()
    assert ahead._proc.poll() is not None and not _parallel.AHEAD


def test_the_rehearsals_give_the_signatures_of_real_fits(tmp_path):
    # In a fresh process and cache: after the child's rehearsals, fitting the
    # recipe's convolutional networks and stacked autoencoder (float32) compiles
    # no new signature of those kernels, so they all come from the cache.
    script = textwrap.dedent("""
        import numpy as np
        from fastsae import StackedAutoencoder, warmup
        from fastsae.recipes import default_conv_net
        for area in ("convae", "convnet", "stacked"):
            warmup.AREAS[area][1](np.dtype("float32"))
        drivers = [k for area in warmup.AREAS for k in warmup._drivers(area)]
        before = {k.__name__: len(k.kernel.signatures) for k in drivers}
        rng = np.random.default_rng(0)
        X = rng.random((12, 1, 20, 14)).astype(np.float32)
        y = np.arange(12) % 3
        default_conv_net(random_state=0, n_layers=1).set_params(
            pretrain_iter=2, softmax_iter=2, finetune_iter=2).fit(X, y)
        default_conv_net(random_state=0).set_params(         # the recipe's two layers
            pretrain_iter=2, softmax_iter=2, finetune_iter=2).fit(
            rng.random((12, 1, 24, 20)).astype(np.float32), y)
        StackedAutoencoder(hidden_sizes=(6, 4), pretrain_iter=2, softmax_iter=2,
                           finetune_iter=2, dtype="float32", random_state=0).fit(
            rng.random((12, 9)).astype(np.float32), y)
        after = {k.__name__: len(k.kernel.signatures) for k in drivers}
        assert after == before, (before, after)
        assert all(before.values()), before
        print("ok")
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), PYTHONWARNINGS="ignore")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=600)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]


def test_the_areas_name_compiled_drivers():
    for area in warmup.AREAS:
        drivers = warmup._drivers(area)
        assert drivers and all(isinstance(k, _parallel.ParallelKernel) for k in drivers), area
