"""``python -m bench`` is ``fastsae bench``: the benchmark ratio tables."""
from fastsae.benchmarks import main

main()
