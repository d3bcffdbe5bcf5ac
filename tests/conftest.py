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
