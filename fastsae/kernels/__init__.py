"""Numba CPU kernels: the ``"numba"`` backend.

Each module here has a twin with the same file name in :mod:`fastsae.reference`
(NumPy) and :mod:`fastsae.cuda`, and each function a twin there with the same
name and signature, tested against the reference (the table of names is
:data:`fastsae.backends.KERNELS`). The private modules hold what the kernels
share: :mod:`~fastsae.kernels._blas` (BLAS called from inside the kernels' threads),
:mod:`~fastsae.kernels._math` (vectorisable exp, sigmoid, softplus, sums) and
:mod:`~fastsae.kernels._parallel` (serial or parallel drivers, buffers kept
between calls).
"""
from ._parallel import clear_workspace
from .conv import convolve, pool_regions
from .convae import conv_ae_cost_grad
from .convnet import conv_net_cost_grad
from .sae import sae_cost_grad
from .sae_stats import sae_shard_stats
from .softmax import softmax_cost_grad, softmax_predict_proba
from .stacked import stacked_cost_grad

__all__ = ["sae_cost_grad", "sae_shard_stats", "softmax_cost_grad", "softmax_predict_proba",
           "stacked_cost_grad", "convolve", "pool_regions", "conv_ae_cost_grad",
           "conv_net_cost_grad", "clear_workspace"]
