"""The one table of benchmark cases: shapes and options per operation.

``fastsae bench`` (ratio tables) and ``pytest bench/`` (pytest-benchmark)
time every case; ``tests/test_bench_cases.py`` runs every case, with its
sample dimension cut down, through the same implementation builders
(``sae_impls``, ``softmax_impls``, ``stacked_impls``, ``conv_impls``,
``pool_impls``) and checks each implementation against the NumPy reference.
"""
import numpy as np

#: sparse autoencoder cost+grad: (name, n_visible, n_hidden, n_samples, dtype)
SAE_SHAPES = [
    ("ufldl", 64, 25, 10_000, np.float64),
    ("ufldl", 64, 25, 10_000, np.float32),
    ("audio", 512, 256, 50_000, np.float32),
    ("audio", 512, 256, 50_000, np.float64),
]

#: smaller shapes for a quick run (``python -m bench --quick``)
SAE_SHAPES_QUICK = [
    ("ufldl", 64, 25, 10_000, np.float64),
    ("audio/10", 512, 256, 5_000, np.float32),
]

SAE_HYPER = dict(sparsity=0.01, beta=3.0, weight_decay=1e-4)

#: autoencoder options, each benchmarked at the shapes of SAE_OPTION_SHAPES: (name, keywords)
SAE_OPTIONS = [
    ("sigmoid decoder, squared error", {}),
    ("linear decoder", dict(decoder="linear")),
    ("cross-entropy", dict(loss="cross_entropy")),
    ("tied weights", dict(tied=True)),
]
SAE_OPTION_SHAPES = [
    ("ufldl", 64, 25, 10_000, np.float64),
    ("audio", 512, 256, 50_000, np.float32),
]

#: softmax cost+grad: (name, n_samples, n_features, n_classes, dtype)
SOFTMAX_CASES = [
    ("audio", 50_000, 256, 10, np.float32),
    ("audio", 50_000, 256, 10, np.float64),
]
#: stacked cost+grad: (name, n_samples, layer_sizes, n_classes, dtype)
STACKED_CASES = [
    ("fsdd", 2_700, (1280, 200, 200), 10, np.float32),
    ("fsdd", 2_700, (1280, 200, 200), 10, np.float64),
]
QUICK_SOFTMAX = [("audio/10", 5_000, 256, 10, np.float32)]
QUICK_STACKED = [("fsdd/4", 675, (1280, 200, 200), 10, np.float32)]


def sae_flops(v, h, m):
    """Flops of the five GEMMs of one cost+grad evaluation."""
    return 10.0 * m * v * h

#: convolution: (name, n_filters, ph, pw, n_inputs, H, W, dtype)
CONV_SHAPES = [
    ("ufldl 8x8", 400, 8, 8, 100, 64, 64, np.float32),
    ("ufldl 8x8", 400, 8, 8, 100, 64, 64, np.float64),
    ("spectrogram 40x4", 256, 40, 4, 100, 40, 200, np.float32),
    ("spectrogram 40x4", 256, 40, 4, 100, 40, 200, np.float64),
]
CONV_SHAPES_QUICK = [
    ("ufldl 8x8 /10", 400, 8, 8, 10, 64, 64, np.float32),
    ("spectrogram 40x4", 256, 40, 4, 100, 40, 200, np.float32),
]

#: pooling: (name, maps shape (N, K, H, W), pool_shape, dtype)
POOL_SHAPES = [
    ("ufldl maps", (100, 400, 57, 57), (19, 19), np.float32),
    ("spectrogram maps", (100, 256, 1, 197), (1, 8), np.float32),
    ("ufldl maps", (100, 400, 57, 57), (19, 19), np.float64),
]
POOL_SHAPES_QUICK = [
    ("ufldl maps /10", (10, 400, 57, 57), (19, 19), np.float32),
]


def conv_flops(K, ph, pw, N, H, W):
    """Multiply-adds x 2 of a valid correlation (useful work)."""
    return 2.0 * K * ph * pw * (H - ph + 1) * (W - pw + 1) * N

#: bfloat16 cost+grad (``fastsae bench sae``, with the extra fastsae-audio[mkl]):
#: (name, n_visible, n_hidden, n_samples)
SAE_BF16_SHAPES = [
    ("audio", 512, 256, 50_000),
    ("ufldl", 64, 25, 10_000),
]
SAE_BF16_SHAPES_QUICK = [("audio/10", 512, 256, 5_000)]
#: whole training, float32 against the bfloat16 schedule: (name, v, h, m, max_iter)
SAE_BF16_TRAINING = ("audio shape", 512, 256, 50_000, 100)
SAE_BF16_TRAINING_QUICK = ("audio, 2,000 examples", 512, 256, 2_000, 60)

#: the L-BFGS direction (two-loop recursion): (name, n_params, history); the audio
#: shape's autoencoder (512 visible, 256 hidden) has 262,912 parameters
LBFGS_CASES = [("audio", 262_912, 100)]
QUICK_LBFGS = [("audio/10", 26_291, 100)]
