"""The one table of benchmark cases: shapes and implementations per operation.

Both ``python -m bench`` and ``pytest bench/`` iterate over these; the tests
in ``tests/`` check the same implementations against the reference on small
shapes.
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
