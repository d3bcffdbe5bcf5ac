"""pytest-benchmark runs of the sparse autoencoder cases (``python -m pytest bench/``).

The ratio tables come from ``fastsae bench``; here each implementation of
each case in :mod:`fastsae.benchmarks.cases` is one benchmark, built by the
same :func:`fastsae.benchmarks.sae.sae_impls` (and checked against the
reference by ``tests/test_bench_cases.py``).
"""
import numpy as np
import pytest

from fastsae.benchmarks._util import torch_or_none
from fastsae.benchmarks.cases import SAE_OPTION_SHAPES, SAE_OPTIONS, SAE_SHAPES, sae_flops
from fastsae.benchmarks.sae import FLOOR, NUMBA, REFERENCE, TORCH, sae_impls, sae_problem

IMPLS = {"numpy": REFERENCE, "numba": NUMBA, "gemm-floor": FLOOR, "torch": TORCH}


def _run(benchmark, case, impl, options=None):
    name, v, h, m, dtype = case
    theta, X = sae_problem(v, h, m, dtype)
    torch = torch_or_none() if impl == "torch" else None
    if impl == "torch" and torch is None:
        pytest.skip("PyTorch is not installed (optional benchmark dependency)")
    fn = sae_impls(theta, X, v, h, options, torch)[IMPLS[impl]]
    fn()  # compile / warm up
    benchmark.extra_info["gflop"] = sae_flops(v, h, m) / 1e9
    benchmark(fn)


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("case", SAE_SHAPES, ids=lambda c: f"{c[0]}-{np.dtype(c[4]).name}")
def test_bench_sae_cost_grad(benchmark, case, impl):
    _run(benchmark, case, impl)


@pytest.mark.parametrize("impl", ["numpy", "numba"])
@pytest.mark.parametrize("option", SAE_OPTIONS[1:], ids=lambda o: o[0].replace(" ", "-"))
@pytest.mark.parametrize("case", SAE_OPTION_SHAPES, ids=lambda c: f"{c[0]}-{np.dtype(c[4]).name}")
def test_bench_sae_options(benchmark, case, option, impl):
    _run(benchmark, case, impl, option[1])
