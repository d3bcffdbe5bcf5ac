"""pytest-benchmark runs of the L-BFGS direction case (``python -m pytest bench/``)."""
import pytest

from fastsae.benchmarks.cases import LBFGS_CASES
from fastsae.benchmarks.lbfgs import FLOOR, OURS, REFERENCE, lbfgs_impls, lbfgs_problem


@pytest.mark.parametrize("impl", [OURS, "numba, float64 pairs", REFERENCE, FLOOR])
@pytest.mark.parametrize("case", LBFGS_CASES, ids=lambda c: c[0])
def test_bench_lbfgs_direction(benchmark, case, impl):
    pytest.importorskip("pytest_benchmark")
    name, n, history = case
    fn = lbfgs_impls(*lbfgs_problem(n, history))[impl]
    fn()
    benchmark.pedantic(fn, rounds=5, iterations=1)
