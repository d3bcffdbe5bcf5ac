"""fastsae: sparse autoencoders that learn audio features without labels, fast.

The UFLDL pipeline (sparse autoencoders, softmax regression, self-taught
learning, stacked autoencoders, convolution and pooling) on spectro-temporal
audio input, with Numba CPU kernels, optional CUDA kernels and a NumPy
reference for each.
"""
from __future__ import annotations

from sklearn.pipeline import Pipeline

from . import (audio, backends, datasets, distributed, optim, params, pipeline, preprocess,
               recipes, reference, viz)
from .autoencoder import SparseAutoencoder, sae_cost_grad
from .conv import ConvolutionalFeatures, convolve, pool
from .convae import ConvolutionalAutoencoder, crop_spectrograms
from .convnet import StackedConvolutionalAutoencoder
from .io import load, save
from .pipeline import SelfTaughtFeatures
from .recipes import ClipClassifier
from .preprocess import PCAWhitening, SigmoidNormalizer, normalize_sigmoid
from .softmax import SoftmaxRegression, softmax_cost_grad
from .stacked import StackedAutoencoder, stacked_cost_grad
from .exceptions import (BackendUnavailableError, ConvergenceWarning, NotFittedError,
                         NumericalError, ParameterError)
from .optim import check_gradient, lbfgs
from .params import init_params
from ._version import __version__

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
