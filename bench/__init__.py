"""fastsae benchmarks: ``python -m bench`` prints the ratio tables; ``python -m pytest bench/``
runs the same cases under pytest-benchmark."""
