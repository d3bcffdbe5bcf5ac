"""pytest-benchmark run of the whitening case (``python -m pytest bench/``)."""
import numpy as np

from fastsae.benchmarks.whitening import fastsae_whiten, make_data


def test_bench_whitening(benchmark):
    import pytest

    pytest.importorskip("pytest_benchmark")
    pytest.importorskip("sklearn")
    X = make_data()
    Y = benchmark(fastsae_whiten, X)
    assert Y.shape == X.shape and Y.dtype == np.float32
