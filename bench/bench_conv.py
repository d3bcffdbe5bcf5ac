"""pytest-benchmark runs of the convolution and pooling cases (``python -m pytest bench/``)."""
import numpy as np
import pytest

from fastsae.benchmarks.cases import CONV_SHAPES, POOL_SHAPES
from fastsae.benchmarks.conv import conv_impls, conv_problem
from fastsae.conv import region_bounds
from fastsae.kernels import conv as numba_conv
from fastsae import reference


@pytest.mark.parametrize("impl", ["numba", "numpy reference", "pytorch conv2d + sigmoid"])
@pytest.mark.parametrize("case", CONV_SHAPES, ids=lambda c: f"{c[0]}-{np.dtype(c[7]).name}")
def test_bench_convolve(benchmark, case, impl):
    name, K, ph, pw, N, H, W, dtype = case
    impls = conv_impls(*conv_problem(K, ph, pw, N, H, W, dtype))
    if impl not in impls:
        pytest.skip("PyTorch is not installed (optional benchmark dependency)")
    impls[impl]()
    benchmark.pedantic(impls[impl], rounds=3, iterations=1)


@pytest.mark.parametrize("impl", ["numba", "numpy"])
@pytest.mark.parametrize("mode", ["mean", "max"])
@pytest.mark.parametrize("case", POOL_SHAPES, ids=lambda c: f"{c[0]}-{np.dtype(c[3]).name}")
def test_bench_pool(benchmark, case, mode, impl):
    name, shape, (ph, pw), dtype = case
    maps = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    rs, re = region_bounds(shape[2], size=ph)
    cs, ce = region_bounds(shape[3], size=pw)
    f = numba_conv.pool_regions if impl == "numba" else reference.pool_regions
    f(maps, rs, re, cs, ce, mode=mode)
    benchmark(lambda: f(maps, rs, re, cs, ce, mode=mode))
