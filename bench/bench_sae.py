"""pytest-benchmark runs of the sparse autoencoder cases (``python -m pytest bench/``).

The ratio tables come from ``python -m bench``; here each implementation of
each case in :mod:`bench.cases` is one benchmark, so pytest-benchmark's
comparison tools can be used on them.
"""
import numpy as np
import pytest

from fastsae.benchmarks.cases import SAE_HYPER, SAE_SHAPES
from fastsae.benchmarks.sae import five_gemms, sae_problem, torch_sae
from fastsae import reference
from fastsae.kernels import sae as numba_sae


def _impl(name, theta, X, v, h):
    if name == "numpy":
        return lambda: reference.sae_cost_grad(theta, X, v, h, **SAE_HYPER)
    if name == "numba":
        return lambda: numba_sae.sae_cost_grad(theta, X, v, h, **SAE_HYPER)
    if name == "gemm-floor":
        return five_gemms(theta, X, v, h)
    torch = pytest.importorskip("torch")
    return torch_sae(theta, X, v, h, torch)


@pytest.mark.parametrize("impl", ["numpy", "numba", "gemm-floor", "torch"])
@pytest.mark.parametrize("case", SAE_SHAPES, ids=lambda c: f"{c[0]}-{np.dtype(c[4]).name}")
def test_bench_sae_cost_grad(benchmark, case, impl):
    name, v, h, m, dtype = case
    theta, X = sae_problem(v, h, m, dtype)
    fn = _impl(impl, theta, X, v, h)
    fn()  # compile / warm up
    benchmark.extra_info["gflop"] = 10.0 * m * v * h / 1e9
    benchmark(fn)
