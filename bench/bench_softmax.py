"""pytest-benchmark runs of the softmax and stacked cases (``python -m pytest bench/``)."""
import numpy as np
import pytest

from fastsae.benchmarks.softmax import (SOFTMAX_CASES, STACKED_CASES, softmax_impls, softmax_problem,
                                       stacked_impls, stacked_problem)


@pytest.mark.parametrize("impl", ["numpy", "numba", "gemm-floor", "torch"])
@pytest.mark.parametrize("case", SOFTMAX_CASES, ids=lambda c: f"{c[0]}-{np.dtype(c[4]).name}")
def test_bench_softmax_cost_grad(benchmark, case, impl):
    name, m, n, K, dtype = case
    theta, X, y = softmax_problem(m, n, K, dtype)
    torch = pytest.importorskip("torch") if impl == "torch" else None
    key = {"numpy": "numpy reference", "numba": "numba", "gemm-floor": "2 GEMMs alone (NumPy BLAS)",
           "torch": "pytorch CPU, hand-written grad"}[impl]
    fn = softmax_impls(theta, X, y, K, torch)[key]
    fn()  # compile / warm up
    benchmark.extra_info["gflop"] = 4.0 * m * n * K / 1e9
    benchmark(fn)


@pytest.mark.parametrize("impl", ["numpy", "numba", "torch"])
@pytest.mark.parametrize("case", STACKED_CASES, ids=lambda c: f"{c[0]}-{np.dtype(c[4]).name}")
def test_bench_stacked_cost_grad(benchmark, case, impl):
    name, m, sizes, K, dtype = case
    theta, X, y = stacked_problem(m, sizes, K, dtype)
    torch = pytest.importorskip("torch") if impl == "torch" else None
    key = {"numpy": "numpy reference", "numba": "numba",
           "torch": "pytorch CPU, hand-written grad"}[impl]
    fn = stacked_impls(theta, X, y, sizes, K, torch)[key]
    fn()  # compile / warm up
    benchmark(fn)
