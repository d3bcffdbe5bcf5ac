"""Convolution and pooling: kernels equal the reference, convolution equals
encoding every patch, pooling equals a hand loop."""
import numpy as np
import pytest

import fastsae
from fastsae import ParameterError, SparseAutoencoder
from fastsae.reference import conv as reference
from fastsae.conv import (ConvolutionalFeatures, convolve, filters_from_weights, pool,
                          region_bounds, weights_from_filters)
from fastsae.kernels import conv as numba_conv

DTYPES = [np.float64, np.float32]
CONV_SHAPES = [  # (K, ph, pw, N, H, W)
    (7, 3, 5, 4, 11, 23),
    (1, 1, 1, 1, 1, 1),          # everything size one
    (5, 6, 6, 2, 6, 6),          # filter as large as the input: one position
    (3, 40, 4, 3, 40, 57),       # full-height filters: convolution along time
    (400, 8, 8, 2, 20, 19),      # many filters, positions not a multiple of the block
    (2, 2, 3, 1, 300, 200),      # one long input, many blocks
]


def tol(dtype):
    return dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("shape", CONV_SHAPES, ids=str)
@pytest.mark.parametrize("activation", ["sigmoid", "linear", "relu"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_numba_convolve_equals_reference(shape, activation, dtype):
    K, ph, pw, N, H, W = shape
    rng = np.random.default_rng(sum(shape))
    F = rng.standard_normal((K, ph, pw)).astype(dtype) / np.sqrt(ph * pw)
    b = rng.standard_normal(K)
    images = rng.standard_normal((N, H, W)).astype(dtype)
    ref = reference.convolve(F, b, images, activation=activation)
    got = numba_conv.convolve(F, b, images, activation=activation)
    assert got.shape == (N, K, H - ph + 1, W - pw + 1) and got.dtype == dtype
    np.testing.assert_allclose(got, ref, **tol(dtype))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_convolve_into_out(backend, dtype):
    rng = np.random.default_rng(5)
    F = rng.standard_normal((6, 3, 4)).astype(dtype)
    b = rng.standard_normal(6)
    images = rng.standard_normal((3, 9, 17)).astype(dtype)
    expected = convolve(F, b, images, backend=backend)
    out = np.full((3, 6, 7, 14), np.nan, dtype)
    got = convolve(F, b, images, backend=backend, out=out)
    assert got is out
    np.testing.assert_array_equal(out, expected)
    again = convolve(F, b, 2 * images, backend=backend, out=out)     # reused
    np.testing.assert_array_equal(again, convolve(F, b, 2 * images, backend=backend))
    overlapping = np.zeros((3, 6, 7, 14), dtype)
    with pytest.raises(ParameterError, match="overlap"):
        convolve(F, b, overlapping.reshape(-1)[:3 * 9 * 17].reshape(3, 9, 17),
                 backend=backend, out=overlapping)
    for bad, message in [(np.empty((3, 6, 7, 13), dtype), "shape"),
                         (np.empty((3, 6, 7, 14), np.float16), "dtype"),
                         (np.empty((3, 6, 7, 28), dtype)[..., ::2], "contiguous"),
                         ([[0.0]], "NumPy array")]:
        with pytest.raises(ParameterError, match=message):
            convolve(F, b, images, backend=backend, out=bad)


@pytest.mark.parametrize("mode", ["mean", "max"])
def test_pool_kernel_keeps_infinities(mode):
    # the public pool() rejects non-finite maps; the kernels still agree on them
    maps = np.array([[[np.inf, 1.0, 2.0, 3.0]], [[-np.inf, 1.0, 2.0, 3.0]]])[:, None]  # (2,1,1,4)
    bounds = (np.array([0]), np.array([1]), np.array([0, 2]), np.array([2, 4]))
    got = numba_conv.pool_regions(maps, *bounds, mode=mode)
    np.testing.assert_array_equal(got, reference.pool_regions(maps, *bounds, mode=mode))
    assert not np.isnan(got).any()


def _spy_convolve(monkeypatch, record):
    """The Numba backend's convolve, calling ``record(images, out)`` first."""
    from fastsae import backends
    real = numba_conv.convolve

    def spy(F, b, images, *args, out=None, **kw):
        record(images, out)
        return real(F, b, images, *args, out=out, **kw)
    monkeypatch.setattr(backends.get_backend("numba"), "convolve", spy)


def test_convolutional_features_reuse_one_buffer_and_match(monkeypatch):
    rng = np.random.default_rng(0)
    sae = SparseAutoencoder(n_hidden=5, max_iter=3, random_state=0).fit(rng.uniform(0, 1, (200, 12)))
    clips = [rng.uniform(0, 1, (4, n)) for n in (30, 30, 30, 30, 25, 25, 30)]
    seen = []
    _spy_convolve(monkeypatch, lambda images, out: seen.append(out))
    conv = ConvolutionalFeatures(sae, patch_shape=(4, 3), pool="max", n_pool_regions=(1, 2),
                                 batch_size=2)
    F = conv.transform(clips)                  # length 30 in calls of 2, 2, 1; 25 in one
    assert len(seen) == 4 and all(o is not None for o in seen)
    assert all(np.shares_memory(seen[0], o) for o in seen[1:])   # one buffer for all of them
    F1 = np.concatenate([conv.transform([c]) for c in clips])
    np.testing.assert_allclose(F, F1, rtol=1e-12)


def test_convolutional_features_group_clips_of_one_shape_across_batches(monkeypatch):
    # interleaved lengths: one kernel call per length (batch_size allowing), rows in input order
    rng = np.random.default_rng(1)
    sae = SparseAutoencoder(n_hidden=4, max_iter=3, random_state=0).fit(rng.uniform(0, 1, (200, 6)))
    clips = [rng.uniform(0, 1, (5, n)) for n in (20, 17, 20, 17, 20, 17, 23)]
    sizes = []
    _spy_convolve(monkeypatch, lambda images, out: sizes.append(images.shape))
    conv = ConvolutionalFeatures(sae, patch_shape=(3, 2), pool=("mean", "max"),
                                 n_pool_regions=(2, 2), batch_size=3)
    F = conv.transform(clips)
    assert sizes == [(3, 5, 20), (3, 5, 17), (1, 5, 23)]
    F1 = np.concatenate([conv.transform([c]) for c in clips])
    np.testing.assert_allclose(F, F1, rtol=1e-12)


def test_pool_shape_refuses_clips_that_pool_differently_before_any_work(monkeypatch):
    rng = np.random.default_rng(2)
    sae = SparseAutoencoder(n_hidden=3, max_iter=3, random_state=0).fit(rng.uniform(0, 1, (200, 6)))
    calls = []
    _spy_convolve(monkeypatch, lambda images, out: calls.append(1))
    conv = ConvolutionalFeatures(sae, patch_shape=(3, 2), pool_shape=(2, 4))
    # maps 17 and 19 wide: 4 regions of 4 each (remainders dropped): accepted
    F = conv.transform([rng.uniform(0, 1, (5, n)) for n in (18, 20, 18)])
    assert F.shape == (3, 3 * 1 * 4) and len(calls) == 2
    calls.clear()
    with pytest.raises(ParameterError, match="n_pool_regions"):
        conv.transform([rng.uniform(0, 1, (5, n)) for n in (20, 20, 30)])
    assert calls == []


def test_reference_is_correlation_by_hand():
    rng = np.random.default_rng(0)
    F = rng.standard_normal((2, 3, 2))
    img = rng.standard_normal((1, 5, 4))
    maps = reference.convolve(F, np.zeros(2), img, activation="linear")
    for k in range(2):
        for i in range(3):
            for j in range(3):
                assert maps[0, k, i, j] == pytest.approx(np.sum(F[k] * img[0, i:i + 3, j:j + 2]))


def _fitted_sae(n_visible, n_hidden, seed, dtype="float64"):
    sae = SparseAutoencoder(n_hidden=n_hidden, dtype=dtype)
    theta = fastsae.init_params(n_visible, n_hidden, random_state=seed)
    theta += 0.1 * np.random.default_rng(seed).standard_normal(theta.size)
    sae._set_theta(theta, n_visible)
    return sae


def _encode_patches_by_hand(sae, S, ph, pw, pre=None):
    oh, ow = S.shape[0] - ph + 1, S.shape[1] - pw + 1
    out = np.empty((sae.n_hidden, oh, ow))
    for i in range(oh):
        for j in range(ow):
            x = S[i:i + ph, j:j + pw].T.ravel()[None]     # the window layout
            if pre is not None:
                x = pre.transform(x)
            out[:, i, j] = sae.transform(x)[0]
    return out


@pytest.mark.parametrize("patch_shape,image_shape", [((6, 3), (6, 20)), ((8, 8), (20, 17))],
                         ids=["full-height", "8x8"])
@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_convolution_equals_encoding_every_patch(patch_shape, image_shape, backend, dtype):
    ph, pw = patch_shape
    sae = _fitted_sae(ph * pw, 5, seed=1, dtype=dtype)
    S = np.random.default_rng(2).uniform(0, 1, image_shape).astype(dtype)
    conv = ConvolutionalFeatures(sae, patch_shape, backend=backend)
    maps = conv.feature_maps(S)
    expected = _encode_patches_by_hand(sae, S, ph, pw)
    assert maps.dtype == np.dtype(dtype)
    np.testing.assert_allclose(maps, expected, rtol=1e-5 if dtype == "float32" else 1e-12,
                               atol=1e-6 if dtype == "float32" else 1e-13)


class AffinePatchMap:
    """A whitening-like affine preprocessing: y = A (x - mu)."""

    def __init__(self, A, mu):
        self.A, self.mu = A, mu

    def transform(self, X):
        return (X - self.mu) @ self.A.T

    def affine_map(self):
        return self.A, -self.A @ self.mu


class ClipPatches:
    """A non-linear preprocessing (no affine_map): the patch path is used."""

    def transform(self, X):
        return np.clip(X, 0.2, 0.8)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_affine_preprocessing_is_folded_into_the_filters(backend):
    ph, pw, k_out = 5, 4, 12
    rng = np.random.default_rng(3)
    pre = AffinePatchMap(rng.standard_normal((k_out, ph * pw)) / 5, rng.uniform(0, 1, ph * pw))
    sae = _fitted_sae(k_out, 6, seed=4)
    S = rng.uniform(0, 1, (ph, 30))
    conv = ConvolutionalFeatures(sae, (ph, pw), preprocessing=pre, backend=backend)
    np.testing.assert_allclose(conv.feature_maps(S), _encode_patches_by_hand(sae, S, ph, pw, pre),
                               rtol=1e-10, atol=1e-12)


def test_non_affine_preprocessing_encodes_each_patch():
    ph, pw = 4, 3
    sae = _fitted_sae(ph * pw, 5, seed=5)
    S = np.random.default_rng(6).uniform(0, 1, (ph, 25))
    conv = ConvolutionalFeatures(sae, (ph, pw), preprocessing=ClipPatches())
    np.testing.assert_allclose(conv.feature_maps(S),
                               _encode_patches_by_hand(sae, S, ph, pw, ClipPatches()), rtol=1e-12)


def test_filters_weights_round_trip():
    W = np.random.default_rng(0).standard_normal((4, 15))
    F = filters_from_weights(W, (3, 5))
    np.testing.assert_array_equal(weights_from_filters(F), W)
    with pytest.raises(ParameterError, match="patch_shape"):
        filters_from_weights(W, (4, 4))


def pool_by_hand(maps, rows, cols, mode):
    if not isinstance(mode, str):
        return np.stack([pool_by_hand(maps, rows, cols, m) for m in mode])
    f = np.mean if mode == "mean" else np.max
    out = np.empty(maps.shape[:2] + (len(rows), len(cols)), maps.dtype)
    for n in range(maps.shape[0]):
        for k in range(maps.shape[1]):
            for r, (r0, r1) in enumerate(rows):
                for c, (c0, c1) in enumerate(cols):
                    out[n, k, r, c] = f(maps[n, k, r0:r1, c0:c1])
    return out


POOL_CASES = [  # (H, W, pool_shape, n_regions, remainder, rows, cols)
    (8, 12, (2, 3), None, "drop", [(0, 2), (2, 4), (4, 6), (6, 8)], [(0, 3), (3, 6), (6, 9), (9, 12)]),
    (9, 13, (4, 5), None, "drop", [(0, 4), (4, 8)], [(0, 5), (5, 10)]),
    (9, 13, (4, 5), None, "partial", [(0, 4), (4, 8), (8, 9)], [(0, 5), (5, 10), (10, 13)]),
    (5, 7, (5, 7), None, "drop", [(0, 5)], [(0, 7)]),                     # one region
    (3, 4, (5, 9), None, "drop", [(0, 3)], [(0, 4)]),                     # region larger than input
    (1, 10, None, (1, 4), "drop", [(0, 1)], [(0, 2), (2, 5), (5, 7), (7, 10)]),
    (1, 3, None, (1, 4), "drop", [(0, 1)], [(0, 1), (0, 1), (1, 2), (2, 3)]),  # fewer columns than regions
]


@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: f"{c[0]}x{c[1]}-{c[2] or c[3]}-{c[4]}")
@pytest.mark.parametrize("mode", ["mean", "max", ("mean", "max"), ("max", "mean"), ("max",)],
                         ids=str)
@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_pool_equals_hand_loop(case, mode, backend, dtype):
    H, W, shape, regions, remainder, rows, cols = case
    maps = np.random.default_rng(H * W).standard_normal((2, 3, H, W)).astype(dtype)
    rs, re = (np.array(a) for a in zip(*rows))
    cs, ce = (np.array(a) for a in zip(*cols))
    impl = numba_conv.pool_regions if backend == "numba" else reference.pool_regions
    got = impl(maps, rs, re, cs, ce, mode=mode)
    expected = pool_by_hand(maps, rows, cols, mode)
    assert got.shape == expected.shape and got.dtype == dtype
    np.testing.assert_allclose(got, expected, **tol(dtype))
    if backend == "numba":
        pub = pool(maps, shape, n_regions=regions, mode=mode, remainder=remainder, backend="numba")
        np.testing.assert_allclose(pub, got, **tol(dtype))


def test_region_bounds_cover_without_overlap():
    for L in range(1, 60):
        for R in range(1, 9):
            s, e = region_bounds(L, n_regions=R)
            assert len(s) == R and (e > s).all()
            if L >= R:
                assert s[0] == 0 and e[-1] == L and (s[1:] == e[:-1]).all()
                assert (e - s).max() - (e - s).min() <= 1


def test_convolutional_features_fixed_size_for_any_length_and_batching():
    n_bands = 6
    sae = _fitted_sae(n_bands * 3, 4, seed=7)
    rng = np.random.default_rng(8)
    clips = [rng.uniform(0, 1, (n_bands, n)) for n in (3, 5, 17, 40, 40, 9)]
    conv = ConvolutionalFeatures(sae, (n_bands, 3), pool=("mean", "max"), n_pool_regions=(1, 4),
                                 batch_size=4)
    F = conv.transform(clips)
    assert F.shape == (6, 2 * 4 * 4)
    # the same as one clip at a time, and as the hand-made pipeline
    F1 = conv.set_params(batch_size=1).transform(clips)
    np.testing.assert_allclose(F, F1, rtol=1e-12)
    maps = conv.feature_maps(clips[3])
    rs, re = region_bounds(1, n_regions=1)
    cs, ce = region_bounds(maps.shape[-1], n_regions=4)
    mean = reference.pool_regions(maps, rs, re, cs, ce, mode="mean").ravel()
    mx = reference.pool_regions(maps, rs, re, cs, ce, mode="max").ravel()
    np.testing.assert_allclose(F[3], np.concatenate([mean, mx]), rtol=1e-12)


def test_convolutional_features_errors():
    sae = _fitted_sae(12, 3, seed=0)
    clips = [np.ones((4, 10))]
    with pytest.raises(ParameterError, match="fitted"):
        ConvolutionalFeatures(SparseAutoencoder(), (4, 3)).transform(clips)
    with pytest.raises(ParameterError, match="12 inputs"):
        ConvolutionalFeatures(sae, (4, 4)).transform(clips)
    with pytest.raises(ParameterError, match="smaller than patch_shape"):
        ConvolutionalFeatures(sae, (4, 3)).transform([np.ones((4, 2))])
    with pytest.raises(ParameterError, match="pool"):
        ConvolutionalFeatures(sae, (4, 3), pool="median").transform(clips)
    with pytest.raises(ParameterError, match="NaN"):
        ConvolutionalFeatures(sae, (4, 3)).transform([np.full((4, 10), np.nan)])
    with pytest.raises(ParameterError, match="pool_shape"):
        ConvolutionalFeatures(sae, (4, 3), pool_shape=(1, 2)).transform(
            [np.ones((4, 10)), np.ones((4, 20))])


def test_convolve_and_pool_errors():
    with pytest.raises(ParameterError, match="activation"):
        convolve(np.ones((1, 2, 2)), np.zeros(1), np.ones((1, 4, 4)), activation="tanh")
    with pytest.raises(ParameterError, match="smaller than the filters"):
        convolve(np.ones((1, 5, 2)), np.zeros(1), np.ones((1, 4, 4)))
    with pytest.raises(ParameterError, match=r"b must have shape \(1,\)"):
        convolve(np.ones((1, 2, 2)), np.zeros(2), np.ones((1, 4, 4)))
    with pytest.raises(ParameterError, match="images contains"):
        convolve(np.ones((1, 2, 2)), np.zeros(1), np.full((1, 4, 4), np.inf))
    with pytest.raises(ParameterError, match="exactly one"):
        pool(np.ones((1, 1, 4, 4)))
    with pytest.raises(ParameterError, match="mode"):
        pool(np.ones((1, 1, 4, 4)), (2, 2), mode="sum")
    for bad in [(), ("mean", "mean"), ("mean", "sum"), ["max", 1], 3]:
        with pytest.raises(ParameterError, match="mode"):
            pool(np.ones((1, 1, 4, 4)), (2, 2), mode=bad)
        with pytest.raises(ParameterError, match="mode"):
            numba_conv.pool_regions(np.ones((1, 1, 4, 4)), [0], [4], [0], [4], mode=bad)


@pytest.mark.parametrize("zca,center", [(False, "feature"), (True, "feature"), (False, "example")])
def test_whitened_autoencoder_filters_equal_encoding_whitened_patches(zca, center):
    """Convolving a whitened autoencoder's filters equals encoding each whitened patch."""
    from fastsae.preprocess import PCAWhitening

    ph, pw = 6, 3
    rng = np.random.default_rng(11)
    S = rng.uniform(0, 1, (ph, 40)).cumsum(axis=1) / 10        # correlated columns
    from fastsae.audio import sample_windows
    X = sample_windows([S], n_frames=pw)
    pca = PCAWhitening(retain=0.99 if not zca else None, epsilon=0.01, zca=zca, center=center).fit(X)
    sae = _fitted_sae(pca.transform(X[:1]).shape[1], 5, seed=12)
    conv = ConvolutionalFeatures(sae, (ph, pw), preprocessing=pca)
    np.testing.assert_allclose(conv.feature_maps(S), _encode_patches_by_hand(sae, S, ph, pw, pca),
                               rtol=1e-9, atol=1e-11)
