"""pytest-benchmark runs of the convolutional autoencoder cases (``python -m pytest bench/``)."""
import numpy as np
import pytest

from fastsae.benchmarks.convae import (CONVAE_CASES, IMPLS, NET_CASES, NET_IMPLS, _net_runner, _runner,
                                      convae_flops, convae_problem, net_problem)


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("case", CONVAE_CASES, ids=lambda c: f"{c[0]}-{np.dtype(c[-1]).name}")
def test_bench_conv_ae_cost_grad(benchmark, case, impl):
    name, K, ph, pw, N, C, H, W, dtype = case
    theta, X = convae_problem(K, ph, pw, N, C, H, W, dtype)
    fn = _runner(impl, theta, X, K, ph, pw)
    fn()  # compile / warm up
    benchmark.extra_info["gflop"] = convae_flops(K, ph, pw, N, C, H, W) / 1e9
    benchmark(fn)


@pytest.mark.parametrize("impl", list(NET_IMPLS))
@pytest.mark.parametrize("case", NET_CASES, ids=lambda c: f"{c[0]}-{np.dtype(c[-1]).name}")
def test_bench_conv_net_cost_grad(benchmark, case, impl):
    name, layers, N, shape, n_classes, dtype = case
    theta, X, y = net_problem(layers, N, shape, n_classes, dtype)
    fn = _net_runner(impl, layers, theta, X, y, n_classes)
    fn()  # compile / warm up
    benchmark(fn)
