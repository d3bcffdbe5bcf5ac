"""fastsae: sparse autoencoders that learn audio features without labels, fast.

The UFLDL pipeline (sparse autoencoders, softmax regression, self-taught
learning, stacked autoencoders, convolution and pooling) on spectro-temporal
audio input, with Numba CPU kernels, optional CUDA kernels and a NumPy
reference for each.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .exceptions import (BackendUnavailableError, ConvergenceWarning, NumericalError,
                         ParameterError)
from ._version import __version__

#: Where each public name lives. They are imported on first use, so that
#: ``import fastsae`` and the command line start without loading scikit-learn,
#: SciPy and Numba until something needs them (a process that only compiles
#: kernels, as :mod:`fastsae.warmup` starts, loads no scikit-learn at all).
_WHERE = {
    "SparseAutoencoder": ".autoencoder", "sae_cost_grad": ".autoencoder",
    "ConvolutionalFeatures": ".conv", "convolve": ".conv", "pool": ".conv",
    "ConvolutionalAutoencoder": ".convae", "crop_spectrograms": ".convae",
    "StackedConvolutionalAutoencoder": ".convnet",
    "load": ".io", "save": ".io",
    "SelfTaughtFeatures": ".pipeline", "ClipClassifier": ".recipes",
    "PCAWhitening": ".preprocess", "SigmoidNormalizer": ".preprocess",
    "normalize_sigmoid": ".preprocess",
    "SoftmaxRegression": ".softmax", "softmax_cost_grad": ".softmax",
    "StackedAutoencoder": ".stacked", "stacked_cost_grad": ".stacked",
    "check_gradient": ".optim", "lbfgs": ".optim", "init_params": ".params",
    "NotFittedError": ".exceptions", "Pipeline": "sklearn.pipeline",
}
_MODULES = ("audio", "backends", "datasets", "distributed", "optim", "params", "pipeline",
            "preprocess", "recipes", "reference", "viz")


def __getattr__(name):
    if name in _MODULES:
        value = importlib.import_module(f".{name}", __name__)
    elif name in _WHERE:
        where = _WHERE[name]
        module = importlib.import_module(where, __name__ if where.startswith(".") else None)
        value = getattr(module, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:                     # what the names are, for type checkers and editors
    from sklearn.pipeline import Pipeline

    from . import (audio, backends, datasets, distributed, optim, params, pipeline,
                   preprocess, recipes, reference, viz)
    from .autoencoder import SparseAutoencoder, sae_cost_grad
    from .conv import ConvolutionalFeatures, convolve, pool
    from .convae import ConvolutionalAutoencoder, crop_spectrograms
    from .convnet import StackedConvolutionalAutoencoder
    from .exceptions import NotFittedError
    from .io import load, save
    from .optim import check_gradient, lbfgs
    from .params import init_params
    from .pipeline import SelfTaughtFeatures
    from .preprocess import PCAWhitening, SigmoidNormalizer, normalize_sigmoid
    from .recipes import ClipClassifier
    from .softmax import SoftmaxRegression, softmax_cost_grad
    from .stacked import StackedAutoencoder, stacked_cost_grad

__all__ = [
    "SparseAutoencoder", "sae_cost_grad", "SoftmaxRegression", "softmax_cost_grad",
    "StackedAutoencoder", "stacked_cost_grad", "ConvolutionalFeatures", "convolve", "pool",
    "ConvolutionalAutoencoder", "StackedConvolutionalAutoencoder", "crop_spectrograms",
    "ClipClassifier", "save", "load", "viz", "distributed", "pipeline", "Pipeline",
    "SelfTaughtFeatures", "audio", "datasets", "preprocess", "recipes", "PCAWhitening",
    "SigmoidNormalizer", "normalize_sigmoid", "check_gradient", "lbfgs", "init_params",
    "ParameterError", "BackendUnavailableError", "ConvergenceWarning", "NotFittedError",
    "NumericalError", "backends", "optim", "params", "reference", "__version__",
]
