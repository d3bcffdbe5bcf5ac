"""Moved to :mod:`fastsae.benchmarks._util` (kept so that old imports work)."""
from fastsae.benchmarks._util import *  # noqa: F401,F403
from fastsae.benchmarks._util import machine_summary, timeit  # noqa: F401
