"""Moved to :mod:`fastsae.benchmarks.cases` (kept so that old imports work)."""
from fastsae.benchmarks.cases import *  # noqa: F401,F403
