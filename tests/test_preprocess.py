import numpy as np
import pytest

from fastsae import NotFittedError, ParameterError, preprocess
from fastsae.preprocess import PCAWhitening, SigmoidNormalizer


def correlated(rng, m=4000, n=12, offset=0.0, dtype=np.float64):
    """Rows with neighbouring features correlated, like spectrogram bands."""
    idx = np.arange(n)
    cov = np.exp(-np.abs(idx[:, None] - idx[None, :]) / 3.0) * np.linspace(4.0, 0.5, n)
    cov = 0.5 * (cov + cov.T) + 0.1 * np.eye(n)
    X = rng.multivariate_normal(np.zeros(n), cov, size=m) + offset
    return X.astype(dtype)


# -- normalize_sigmoid ----------------------------------------------------------------

def test_normalize_sigmoid_is_ufldl_normalize_data(rng):
    X = rng.standard_t(3, size=(500, 20)) * 2.0 + rng.normal(0, 5, (500, 1))
    Y = preprocess.normalize_sigmoid(X)
    # UFLDL normalizeData, written out
    Xc = X - X.mean(axis=1, keepdims=True)
    pstd = 3 * np.std(Xc, ddof=1)
    want = (np.clip(Xc, -pstd, pstd) / pstd + 1) * 0.4 + 0.1
    np.testing.assert_allclose(Y, want, rtol=1e-12)
    assert Y.min() >= 0.1 and Y.max() <= 0.9
    assert Y.min() == 0.1 and Y.max() == 0.9        # heavy tails were truncated
    # without truncation every row's mean maps to exactly 0.5
    Y10 = preprocess.normalize_sigmoid(X, n_std=100.0)
    np.testing.assert_allclose(Y10.mean(axis=1), 0.5, atol=1e-12)
    assert abs(Y.mean() - 0.5) < 0.01


def test_sigmoid_normalizer_scales_test_data_like_training_data(rng):
    train = rng.normal(0, 1.0, (300, 10)).astype(np.float32)
    test = rng.normal(0, 3.0, (50, 10)).astype(np.float32)
    norm = SigmoidNormalizer(n_std=3.0).fit(train)
    assert norm.std_ == pytest.approx(np.std(train - train.mean(1, keepdims=True), ddof=1),
                                      rel=1e-5)
    Y = norm.transform(test)
    assert Y.dtype == np.float32
    tc = test - test.mean(1, keepdims=True)
    want = np.clip(tc, -3 * norm.std_, 3 * norm.std_) / (3 * norm.std_) * 0.4 + 0.5
    np.testing.assert_allclose(Y, want, atol=1e-6)
    assert not np.allclose(Y, preprocess.normalize_sigmoid(test), atol=1e-3)
    np.testing.assert_array_equal(norm.fit_transform(train), norm.transform(train))
    assert norm.get_params() == {"n_std": 3.0}


def test_sigmoid_normalizer_errors(rng):
    with pytest.raises(NotFittedError):
        SigmoidNormalizer().transform(np.ones((2, 3)))
    with pytest.raises(ParameterError, match="n_std"):
        preprocess.normalize_sigmoid(rng.normal(size=(5, 3)), n_std=0.0)
    with pytest.raises(ParameterError, match="constant"):
        preprocess.normalize_sigmoid(np.tile([[1.0], [2.0]], (1, 4)))
    with pytest.raises(ParameterError, match="NaN"):
        preprocess.normalize_sigmoid(np.array([[1.0, np.nan], [0.0, 1.0]]))
    norm = SigmoidNormalizer().fit(rng.normal(size=(5, 3)))
    with pytest.raises(ParameterError, match="3 features"):
        norm.transform(np.ones((2, 4)))


# -- PCA / ZCA whitening --------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pca_whitening_gives_identity_covariance(rng, dtype):
    X = correlated(rng, offset=50.0, dtype=dtype)
    pca = PCAWhitening().fit(X)
    Y = pca.transform(X)
    assert Y.dtype == dtype and Y.shape == X.shape and pca.n_components_ == 12
    tol = 1e-8 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(np.cov(Y.T.astype(np.float64), bias=True), np.eye(12), atol=tol)
    # the decomposition is the covariance's (1/m), by decreasing eigenvalue
    Xd = X.astype(np.float64)
    evals, evecs = np.linalg.eigh(np.cov(Xd.T, bias=True))
    np.testing.assert_allclose(pca.explained_variance_, evals[::-1], rtol=100 * tol)
    np.testing.assert_allclose(np.abs(pca.components_ @ evecs[:, ::-1]), np.eye(12),
                               atol=1e-6 if dtype == np.float64 else 1e-3)
    np.testing.assert_allclose(pca.mean_, Xd.mean(0), rtol=1e-9, atol=1e-9)
    assert np.all(np.abs(pca.components_).max(1) == pca.components_.max(1))   # sign rule


def test_gram_blocks_accumulate_in_float64(rng, monkeypatch):
    # many blocks of float32 rows, a large mean: the covariance stays accurate
    monkeypatch.setattr(preprocess, "_BLOCK_BYTES", 64 * 12 * 4)
    X = correlated(rng, m=20000, offset=1000.0, dtype=np.float32)
    pca = PCAWhitening().fit(X)
    ref = np.linalg.eigvalsh(np.cov(X.astype(np.float64).T, bias=True))[::-1]
    np.testing.assert_allclose(pca.explained_variance_, ref, rtol=1e-4)


def test_zca_whitening_stays_close_to_the_input(rng):
    X = correlated(rng)
    zca = PCAWhitening(zca=True).fit(X)
    Y = zca.transform(X)
    assert Y.shape == X.shape
    np.testing.assert_allclose(np.cov(Y.T, bias=True), np.eye(12), atol=1e-8)
    corr = [np.corrcoef(X[:, j], Y[:, j])[0, 1] for j in range(12)]
    assert min(corr) > 0.5, corr                      # each feature resembles its input
    pca_corr = [np.corrcoef(X[:, j], PCAWhitening().fit_transform(X)[:, j])[0, 1]
                for j in range(12)]
    assert np.mean(corr) > np.mean(pca_corr) + 0.3    # unlike the rotated PCA output
    # the ZCA matrix is symmetric: U diag(1/sqrt(λ+ε)) U'
    W = zca.transform(np.eye(12) + zca.mean_) - zca.transform(np.tile(zca.mean_, (12, 1)))
    np.testing.assert_allclose(W, W.T, atol=1e-10)


@pytest.mark.parametrize("zca", [False, True])
@pytest.mark.parametrize("center", ["feature", None])
def test_inverse_transform_round_trips_with_all_components(rng, zca, center):
    X = correlated(rng, offset=3.0)
    pca = PCAWhitening(epsilon=0.1, zca=zca, center=center).fit(X)
    np.testing.assert_allclose(pca.inverse_transform(pca.transform(X)), X, atol=1e-9)
    X32 = X.astype(np.float32)
    np.testing.assert_allclose(pca.inverse_transform(pca.transform(X32)), X32, atol=1e-3)


def test_retain_keeps_the_fewest_components(rng):
    X = correlated(rng)
    full = PCAWhitening().fit(X)
    ratio = np.cumsum(full.explained_variance_) / full.explained_variance_.sum()
    for retain in (0.5, 0.9, 0.99):
        pca = PCAWhitening(retain=retain).fit(X)
        k = int(np.argmax(ratio >= retain)) + 1
        assert pca.n_components_ == k and ratio[k - 2] < retain <= ratio[k - 1]
        assert pca.transform(X).shape == (len(X), k)
        back = pca.inverse_transform(pca.transform(X))
        assert 0 < np.mean((back - X) ** 2) / np.var(X - X.mean(0), axis=0).sum() \
            <= 1 - retain + 1e-12
    assert PCAWhitening(n_components=3).fit(X).components_.shape == (3, 12)
    np.testing.assert_allclose(full.explained_variance_ratio_.sum(), 1.0)


def test_center_example_removes_each_rows_mean(rng):
    X = correlated(rng, n=8) + rng.normal(0, 10, (4000, 1))
    pca = PCAWhitening(center="example", epsilon=1e-3).fit(X)
    np.testing.assert_array_equal(pca.mean_, np.zeros(8))
    Xc = X - X.mean(1, keepdims=True)
    evals = np.linalg.eigvalsh(Xc.T @ Xc / len(X))[::-1]
    np.testing.assert_allclose(pca.explained_variance_, np.maximum(evals, 0), atol=1e-9)
    # shifting a row by a constant does not change its output
    np.testing.assert_allclose(pca.transform(X[:5] + 7.0), pca.transform(X[:5]), atol=1e-8)


def test_whitening_errors(rng):
    X = correlated(rng, n=6)
    with pytest.raises(ParameterError, match="at most one"):
        PCAWhitening(n_components=2, retain=0.9).fit(X)
    with pytest.raises(ParameterError, match="retain"):
        PCAWhitening(retain=1.5).fit(X)
    with pytest.raises(ParameterError, match="n_components"):
        PCAWhitening(n_components=7).fit(X)
    with pytest.raises(ParameterError, match="center"):
        PCAWhitening(center="row").fit(X)
    singular = np.c_[X, X[:, :1] * 2.0]
    with pytest.raises(ParameterError, match="zero variance"):
        PCAWhitening().fit(singular)
    Y = PCAWhitening(epsilon=0.1).fit_transform(singular)      # epsilon makes it fine
    assert np.isfinite(Y).all()
    assert PCAWhitening(n_components=6).fit(singular).n_components_ == 6
    bad = X.copy()
    bad[10, 2] = np.nan
    with pytest.raises(ParameterError, match="1 NaN"):
        PCAWhitening().fit(bad)
    pca = PCAWhitening().fit(X)
    bad[10, 2] = np.inf
    with pytest.raises(ParameterError, match="NaN or infinite"):
        pca.transform(bad)
    for zca, k in ((False, 6), (True, 6), (False, 2)):      # any feature, any output size
        pca = PCAWhitening(n_components=k, zca=zca).fit(X)
        for j in range(6):
            bad = X[:50].copy()
            bad[7, j] = np.nan if j % 2 else -np.inf
            with pytest.raises(ParameterError, match="1 NaN or infinite"):
                pca.transform(bad)
    with pytest.raises(ParameterError, match="6 features"):
        pca.transform(X[:, :5])
    with pytest.raises(NotFittedError):
        PCAWhitening().transform(X)
    assert PCAWhitening(retain=0.9).set_params(epsilon=0.1).get_params()["epsilon"] == 0.1
