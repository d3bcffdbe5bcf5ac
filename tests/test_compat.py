"""Model files written by fastsae 0.1.0 load and give the outputs they gave then.

The files and the outputs were written by ``tests/data/v0_1_0/make_models.py``
under 0.1.0, before the estimators moved between modules.
"""
from pathlib import Path

import numpy as np
import pytest

import fastsae

DATA = Path(__file__).resolve().parent / "data" / "v0_1_0"


@pytest.fixture(scope="module")
def expected():
    with np.load(DATA / "expected.npz") as npz:
        return dict(npz)


def _spectra(expected, prefix):
    keys = sorted((k for k in expected if k.startswith(prefix + ".")),
                  key=lambda k: int(k.split(".")[1]))
    return [expected[k] for k in keys]


def _close(actual, wanted):
    actual = np.asarray(actual)
    assert actual.shape == wanted.shape and actual.dtype == wanted.dtype
    if wanted.dtype.kind in "fc":
        tol = 1e-5 if wanted.dtype == np.float32 else 1e-9
        np.testing.assert_allclose(actual, wanted, rtol=tol, atol=tol)
    else:
        np.testing.assert_array_equal(actual, wanted)


CASES = [
    ("sparse_autoencoder", "X", ["transform", "reconstruct"]),
    ("sparse_autoencoder_tied_f32", "X", ["transform"]),
    ("softmax_regression", "X", ["predict_proba", "predict"]),
    ("stacked_autoencoder", "X", ["predict_proba", "transform"]),
    ("pca_whitening", "X", ["transform"]),
    ("sigmoid_normalizer", "X", ["transform"]),
    ("standardizer", "X", ["transform"]),
    ("convolutional_autoencoder", "images", ["transform"]),
    ("stacked_convolutional_autoencoder", "images", ["predict_proba"]),
    ("self_taught_features", "spectra", ["transform"]),
    ("convolutional_features", "spectra", ["transform"]),
    ("pipeline", "clips", ["predict_proba"]),
]


@pytest.mark.parametrize("name, data, methods", CASES, ids=[c[0] for c in CASES])
def test_a_0_1_0_model_file_loads_and_gives_the_same_outputs(expected, name, data, methods):
    model = fastsae.load(DATA / f"{name}.npz")
    X = expected[data] if data in expected else _spectra(expected, data)
    for method in methods:
        _close(getattr(model, method)(X), expected[f"{name}.{method}"])


def test_every_0_1_0_file_is_covered():
    files = {p.stem for p in DATA.glob("*.npz")} - {"expected"}
    assert files == {c[0] for c in CASES}
