"""NumPy twin of the L-BFGS direction's Numba kernel (``fastsae.optim._two_loop``)."""
from __future__ import annotations

import numpy as np


def two_loop(g, S, Y, rho, newest, count, gamma, d):
    """NumPy twin of :func:`fastsae.optim._two_loop`: the textbook recursion (Nocedal & Wright,
    Algorithm 7.4), one pair at a time, in float64."""
    m = S.shape[0]
    q = -np.asarray(g, dtype=np.float64)
    order = [(newest - k) % m for k in range(count)]          # newest first
    alpha = []
    for i in order:
        a = rho[i] * (S[i].astype(np.float64) @ q)
        q -= a * Y[i].astype(np.float64)          # float64 on any NumPy's casting rules
        alpha.append(a)
    if count:
        q *= gamma
    for i, a in zip(reversed(order), reversed(alpha)):
        b = rho[i] * (Y[i].astype(np.float64) @ q)
        q += (a - b) * S[i].astype(np.float64)
    d[:] = q
