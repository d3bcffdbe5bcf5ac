"""Host-side numerics shared by the compiled backends and the Dask objective.

The NumPy reference (:mod:`fastsae.reference`) writes its own versions of
these: the oracle shares no code with what it checks.
"""
from __future__ import annotations

import numpy as np

from .config import RHO_HAT_EPS


def kl_sparsity(rho: float, rho_hat: np.ndarray):
    """``Σ_j KL(ρ ‖ ρ̂_j)`` and its derivative in ``ρ̂`` (float64, one value per unit).

    ``ρ̂`` is clipped to ``[RHO_HAT_EPS, 1 − RHO_HAT_EPS]`` (see
    :data:`fastsae.core.config.RHO_HAT_EPS`): saturated units give a finite
    term and a finite derivative (the slope at the bound).
    """
    rho_hat = np.clip(np.asarray(rho_hat, dtype=np.float64), RHO_HAT_EPS, 1.0 - RHO_HAT_EPS)
    kl = np.sum(rho * np.log(rho / rho_hat) + (1 - rho) * np.log((1 - rho) / (1 - rho_hat)))
    dkl = -rho / rho_hat + (1 - rho) / (1 - rho_hat)
    return float(kl), dkl
