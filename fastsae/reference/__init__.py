"""NumPy reference implementations: readable, vectorised, the oracle.

Every kernel in :mod:`fastsae.kernels` (Numba) and :mod:`fastsae.cuda` has a
twin here with the same module name, function name and signature, and is
tested against it (the table of names is :data:`fastsae.backends.KERNELS`).
These functions favour clarity over speed; they allocate freely. They import
no backend, and no backend imports them.

Conventions: examples are rows (``X`` is ``(n_samples, n_features)``); the
computation runs in ``X.dtype``; ``theta`` and the returned gradient are
float64 (what L-BFGS sees).

=============  =========================================================
module         functions
=============  =========================================================
``sae``        :func:`sae_cost_grad`
``sae_stats``  :func:`sae_shard_stats` (a shard's sufficient statistics)
``softmax``    :func:`softmax_cost_grad`, :func:`softmax_predict_proba`
``stacked``    :func:`stacked_cost_grad`
``conv``       :func:`convolve`, :func:`pool_regions`
``convae``     :func:`conv_ae_cost_grad`
``convnet``    :func:`conv_net_cost_grad`
=============  =========================================================
"""
from .conv import convolve, pool_regions
from .convae import conv_ae_cost_grad
from .convnet import conv_net_cost_grad
from .sae import sae_cost_grad
from .sae_stats import sae_shard_stats
from .softmax import softmax_cost_grad, softmax_predict_proba
from .stacked import stacked_cost_grad

__all__ = ["sae_cost_grad", "sae_shard_stats", "softmax_cost_grad", "softmax_predict_proba",
           "stacked_cost_grad", "convolve", "pool_regions", "conv_ae_cost_grad",
           "conv_net_cost_grad"]
