import os
from pathlib import Path

import numpy as np
import pytest

FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd"
FSDD = Path(os.environ.get("FASTSAE_FSDD", FSDD))


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def fsdd_path():
    """The Free Spoken Digit Dataset, or a clean skip where it is absent."""
    if not (FSDD / "recordings").is_dir():
        pytest.skip(f"FSDD not found at {FSDD} (set FASTSAE_FSDD to its folder)")
    return FSDD


@pytest.fixture(autouse=True)
def _parallel_kernels_even_for_small_shapes(monkeypatch):
    """Tests use small shapes, which the kernels would run serially; run their
    parallel drivers instead (tests/test_parallel.py checks the serial ones)."""
    from fastsae.core import config as _config
    monkeypatch.setattr(_config, "PARALLEL_MIN_FLOPS", 1)
