"""Numba CPU kernels: the ``"numba"`` backend.

Each function here has a twin with the same name and signature in
:mod:`fastsae.reference` (NumPy) and is tested against it.
"""
from .sae import clear_workspace, sae_cost_grad

__all__ = ["sae_cost_grad", "clear_workspace"]
