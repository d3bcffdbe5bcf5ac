"""Property-based tests: random shapes, dtypes, NaN/inf placements and option values.

Whatever goes in, a public function either returns finite numbers or raises
one of fastsae's documented errors (ParameterError, whose message names the
argument; NotFittedError) — never another exception, never a silent NaN.
"""
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastsae
from fastsae import ParameterError, audio

DOCUMENTED = (ParameterError, fastsae.NotFittedError)
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

# valid values come up most often, each kind of invalid one now and then
DTYPES = [np.float64] * 4 + [np.float32] * 3 + [np.float16, np.int32, np.int64, np.bool_,
                                                  np.complex64, object]


def mostly(valid, *invalid, weight=5):
    """A strategy that draws ``valid`` ``weight`` times as often as each invalid value."""
    return st.sampled_from([valid] * weight + list(invalid))


@st.composite
def arrays(draw, ndim=2, max_side=9, min_side=0):
    shape = tuple(draw(st.one_of(st.integers(max(min_side, 1), max_side),
                                 st.integers(min_side, max_side))) for _ in range(ndim))
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    a = rng.uniform(0.05, 0.95, shape)
    if a.size and draw(mostly(False, True, weight=3)):  # a NaN or an infinity somewhere
        a.flat[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    if dtype is object:
        return a.astype(object)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return a.astype(dtype)


def _finite(value):
    if isinstance(value, tuple):
        return all(_finite(v) for v in value)
    if isinstance(value, (float, np.floating)):
        return np.isfinite(value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "fc":
        return bool(np.isfinite(value).all())
    return True


def _call(fn, *args, **kw):
    """``fn`` must return finite numbers or raise a documented error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = fn(*args, **kw)
        except DOCUMENTED as exc:
            assert str(exc), "errors name what went wrong"
            return None
    assert _finite(out), f"{getattr(fn, '__name__', fn)} returned non-finite numbers"
    return out


options = st.fixed_dictionaries({
    "sparsity": mostly(0.05, 0.0, 1.0, -0.1, np.nan, weight=12),
    "beta": mostly(3.0, 0.0, -1.0, np.inf, weight=12),
    "weight_decay": mostly(1e-4, 0.0, -1e-3, weight=12),
    "decoder": mostly("sigmoid", "linear", "linear", "tanh", None, weight=10),
    "loss": mostly("squared", "cross_entropy", "l1", weight=12),
    "tied": mostly(False, True, True, "no", 1, weight=10),
})


@SETTINGS
@given(X=arrays(), n_hidden=st.integers(-1, 5), opts=options,
       backend=mostly("numba", "numpy", "numpy", "numpy", "fortran", weight=3))
def test_sae_cost_grad(X, n_hidden, opts, backend):
    v = X.shape[1] if X.ndim == 2 else 1
    theta = fastsae.init_params(max(v, 1), max(n_hidden, 1), random_state=0,
                                tied=opts["tied"] is True)
    _call(fastsae.sae_cost_grad, theta, X, v, n_hidden, backend=backend, **opts)


@SETTINGS
@given(X=arrays(), y=st.lists(st.integers(0, 2), min_size=0, max_size=10) | st.lists(
    st.integers(-1, 3), max_size=10), n_classes=mostly(3, 0, 1, 4, weight=8),
       wd=mostly(1e-3, -1.0, np.nan, weight=10))
def test_softmax_and_stacked_cost_grad(X, y, n_classes, wd):
    n = X.shape[1] if X.ndim == 2 else 1
    K = max(n_classes, 2)
    y = (y * X.shape[0])[:X.shape[0]] if y and X.shape[0] and len(y) < X.shape[0] else y
    theta = np.zeros(K * n + K)
    _call(fastsae.softmax_cost_grad, theta, X, np.array(y, dtype=np.intp), n_classes,
          weight_decay=wd)
    sizes = (n, 3)
    theta = np.zeros(fastsae.params.layout_size(fastsae.params.stacked_layout(sizes, K)))
    _call(fastsae.stacked_cost_grad, theta, X, np.array(y, dtype=np.intp), sizes, n_classes,
          weight_decay=wd)


@SETTINGS
@given(images=arrays(ndim=3, max_side=8), W=arrays(ndim=3, max_side=4),
       activation=mostly("sigmoid", "relu", "linear", "softmax", weight=3),
       mode=mostly("mean", "max", "max", "median", weight=4), regions=st.integers(-1, 4))
def test_convolve_and_pool(images, W, activation, mode, regions):
    b = np.zeros(W.shape[0])
    maps = _call(fastsae.convolve, W, b, images, activation=activation)
    if maps is not None:
        _call(fastsae.pool, maps, n_regions=(regions, regions), mode=mode)


@SETTINGS
@given(X=arrays(max_side=12), n_hidden=st.integers(-1, 4),
       decoder=mostly("sigmoid", "linear", "linear", "x", weight=4),
       max_iter=mostly(3, 0, -2, 2.5, weight=10), warm_start=mostly(False, True, "no"))
def test_sparse_autoencoder_fit_transform(X, n_hidden, decoder, max_iter, warm_start):
    sae = fastsae.SparseAutoencoder(n_hidden=n_hidden, decoder=decoder, max_iter=max_iter,
                                    warm_start=warm_start, random_state=0)
    if _call(sae.fit, X) is not None:
        _call(sae.transform, X)
        _call(sae.transform, X[:, :-1] if X.shape[1] > 1 else X.T)


@SETTINGS
@given(X=arrays(max_side=12), y=st.lists(mostly(0, 1, 2, "a", None, 1.5, weight=3),
                                         min_size=0, max_size=12))
def test_softmax_regression_fit_predict(X, y):
    clf = fastsae.SoftmaxRegression(max_iter=5)
    y = (y * X.shape[0])[:X.shape[0]] if y and X.shape[0] and len(y) < X.shape[0] else y
    if _call(clf.fit, X, np.array(y, dtype=object)) is not None:
        _call(clf.predict_proba, X)


@SETTINGS
@given(X=arrays(max_side=10), n_components=st.integers(-1, 5),
       epsilon=mostly(0.1, 0.0, -1.0, weight=6), zca=st.booleans())
def test_whitening(X, n_components, epsilon, zca):
    pca = fastsae.PCAWhitening(n_components=n_components or None, epsilon=epsilon, zca=zca)
    if _call(pca.fit, X) is not None:
        _call(pca.transform, X)


@SETTINGS
@given(y=arrays(ndim=1, max_side=400, min_side=1), sr=mostly(8000, 0, -5, 16000, weight=6),
       kind=mostly("mel", "fft", "bark", "cepstrum", "cqt", "wavelet", weight=3),
       n_bands=mostly(None, 20, 0, -3, weight=3), scale=mostly(1.0, 1e20, 0.0, weight=6))
def test_spectrum(y, sr, kind, n_bands, scale):
    if y.dtype.kind == "f":
        with np.errstate(all="ignore"):
            y = y * scale
    if kind == "fft" and n_bands == 20:
        n_bands = None
    _call(audio.spectrum, y, sr, kind=kind, n_bands=n_bands)


@SETTINGS
@given(spectra=st.lists(arrays(max_side=12, min_side=1), min_size=0, max_size=4),
       patch=st.tuples(st.integers(-1, 6), st.integers(-1, 6)), n=st.integers(-1, 20))
def test_windows_patches_and_trimming(spectra, patch, n):
    _call(audio.sample_patches, spectra, patch, n_samples=n, random_state=0)
    _call(audio.sample_windows, spectra, n_frames=patch[1], n_samples=n, random_state=0)
    _call(audio.trim_silence, spectra, min_frames=max(patch[1], 1))


def test_the_fuzzer_sees_what_it_should():
    # the strategies reach the failure modes the properties are about
    with pytest.raises(ParameterError, match="NaN"):
        fastsae.SparseAutoencoder().fit(np.array([[0.5, np.nan]]))
    with pytest.raises(ParameterError, match="Complex"):
        fastsae.SparseAutoencoder().fit(np.zeros((3, 2), complex))
    with pytest.raises(AssertionError, match="non-finite"):
        _call(lambda: np.array([np.nan]))
