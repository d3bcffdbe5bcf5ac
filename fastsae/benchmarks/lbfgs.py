"""The L-BFGS direction: the two-loop recursion over the correction pairs.

Between two evaluations of the objective, L-BFGS computes ``d = -H g`` from its
``history`` pairs ``(s, y)``: two passes over ``2 × history × n`` stored values,
limited by how fast memory streams them. Rows: fastsae's kernel on its float32
pairs, the same kernel on float64 pairs, the NumPy reference, PyTorch's two-loop
as ``torch.optim.LBFGS`` writes it (float32 tensors), and the floor: the same
bytes read by four BLAS matrix-vector products (``Sv``, ``Yv``, ``Sᵀw``, ``Yᵀw``).
"""
from __future__ import annotations

import numpy as np

from . import cases
from ._util import print_table, time_side_by_side, torch_or_none
from ..optim import _two_loop
from ..reference._lbfgs import two_loop as _two_loop_reference

OURS = "numba, float32 pairs (fastsae)"
REFERENCE = "NumPy reference"
FLOOR = "floor: 4 BLAS GEMVs over the pairs"


def lbfgs_problem(n, history, seed=0):
    """Pairs of a random convex quadratic, a gradient, and the ring's newest row."""
    rng = np.random.default_rng(seed)
    S = rng.standard_normal((history, n))
    Y = S * rng.uniform(0.5, 2.0, n) + 0.01 * rng.standard_normal((history, n))
    rho = 1.0 / np.einsum("ij,ij->i", S, Y)
    return S, Y, rho, rng.standard_normal(n), history // 3


def lbfgs_impls(S, Y, rho, g, newest, torch=None):
    """name -> ``fn() -> d`` (the floor returns its last product, not a direction)."""
    history, n = S.shape
    S32, Y32 = S.astype(np.float32), Y.astype(np.float32)
    gamma = 0.8
    out = {k: np.empty(n) for k in ("ours", "f64", "ref")}

    def ours():
        _two_loop(g, S32, Y32, rho, newest, history, gamma, out["ours"])
        return out["ours"]

    def f64():
        _two_loop(g, S, Y, rho, newest, history, gamma, out["f64"])
        return out["f64"]

    def ref():
        _two_loop_reference(g, S32, Y32, rho, newest, history, gamma, out["ref"])
        return out["ref"]

    v, w = np.ones(n, np.float32), np.ones(history, np.float32)

    def floor():
        S32 @ v, Y32 @ v, w @ S32
        return w @ Y32

    impls = {OURS: ours, "numba, float64 pairs": f64, REFERENCE: ref}
    if torch is not None:
        tS, tY = torch.from_numpy(S32), torch.from_numpy(Y32)
        tg = torch.from_numpy(g.astype(np.float32))
        order = [(newest - k) % history for k in range(history)]

        def torch_two_loop():                       # torch.optim.LBFGS's loops
            with torch.no_grad():
                q = tg.neg()
                al = [None] * history
                for k, i in enumerate(order):
                    al[k] = float(tS[i].dot(q)) * rho[i]
                    q.add_(tY[i], alpha=-al[k])
                q.mul_(gamma)
                for k in range(history - 1, -1, -1):
                    i = order[k]
                    be = float(tY[i].dot(q)) * rho[i]
                    q.add_(tS[i], alpha=al[k] - be)
                return q.numpy().astype(np.float64)
        impls["PyTorch (torch.optim.LBFGS's two-loop, float32)"] = torch_two_loop
    impls[FLOOR] = floor
    return impls


def _bytes_per_value(name):
    """Bytes per stored pair value of a row (float64 pairs only in the float64 row)."""
    return 8 if "float64" in name else 4


def run(quick=False):
    torch = torch_or_none()
    for name, n, history in (cases.QUICK_LBFGS if quick else cases.LBFGS_CASES):
        impls = lbfgs_impls(*lbfgs_problem(n, history), torch=torch)
        times = time_side_by_side(impls, rounds=2 if quick else 3, per_block=3)
        floor = times[FLOOR][0]
        rows = []
        for k, (med, _) in times.items():
            nbytes = 4 * _bytes_per_value(k) * history * n   # S and Y, read twice
            rows.append([k, f"{med * 1e3:.1f}", f"{nbytes / med / 1e9:.1f}",
                         f"{med / times[OURS][0]:.2f}", f"{med / floor:.2f}"])
        print_table(f"L-BFGS direction (two-loop recursion), {name}: {n:,} parameters, "
                    f"{history} pairs", ["implementation", "median ms", "GB/s of pairs read",
                                         "time / fastsae", "time / floor"], rows)
    return times
