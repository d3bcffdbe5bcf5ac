"""Numba CPU kernels: the ``"numba"`` backend.

Each function here has a twin with the same name and signature in
:mod:`fastsae.reference` (NumPy) and is tested against it.
"""
from . import convae as _convae
from . import sae as _sae
from . import sae_stats as _sae_stats
from . import softmax as _softmax
from . import stacked as _stacked
from .conv import convolve, pool_regions
from .convae import conv_ae_cost_grad, conv_net_cost_grad
from .sae import sae_cost_grad
from .sae_stats import sae_shard_stats
from .softmax import softmax_cost_grad, softmax_predict_proba
from .stacked import stacked_cost_grad


def clear_workspace():
    """Free the buffers every Numba kernel keeps between calls (after a ``fit``)."""
    _sae.clear_workspace()
    _softmax.clear_workspace()
    _stacked.clear_workspace()
    _convae.clear_workspace()
    _sae_stats.clear_workspace()


__all__ = ["sae_cost_grad", "softmax_cost_grad", "softmax_predict_proba", "stacked_cost_grad",
           "convolve", "pool_regions", "conv_ae_cost_grad", "conv_net_cost_grad",
           "sae_shard_stats", "clear_workspace"]
