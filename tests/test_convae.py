"""Convolutional autoencoder and convolutional network: the Numba kernel equals the
NumPy reference, both equal central differences, the objective reduces to the dense
autoencoder's on one position, training works, bad input is refused."""
import warnings

import numpy as np
import pytest

import fastsae
from fastsae import ParameterError, check_gradient
from fastsae.core import layouts
from fastsae.reference import conv as ref_conv, convae as ref_convae, convnet as ref_convnet
from fastsae import reference as dense_reference
from fastsae.conv import convolve, filters_from_weights
from fastsae.convae import ConvolutionalAutoencoder, conv_ae_cost_grad, crop_spectrograms, encode
from fastsae.convnet import StackedConvolutionalAutoencoder, conv_net_cost_grad
from fastsae.kernels import convae as numba_convae, convnet as numba_convnet
from fastsae.params import layout_size

IMPLS = {"numpy": ref_convae.conv_ae_cost_grad, "numba": numba_convae.conv_ae_cost_grad}
HYPER = dict(sparsity=0.1, beta=3.0, weight_decay=1e-3)
SHAPES = [  # (N, C, H, W, K, ph, pw)
    (3, 1, 9, 8, 4, 3, 2),
    (2, 3, 7, 9, 3, 3, 3),       # three input channels
    (2, 1, 6, 5, 2, 6, 5),       # filter as large as the input: one position
    (1, 1, 8, 7, 3, 2, 3),       # one image
    (4, 2, 7, 6, 1, 3, 3),       # one filter
    (5, 1, 4, 13, 2, 1, 1),      # 1x1 filters
]
OPTIONS = [(tied, decoder) for tied in (False, True) for decoder in ("sigmoid", "linear")]


def problem(shape, tied, dtype=np.float64, seed=0, scale=0.5):
    N, C, H, W, K, ph, pw = shape
    rng = np.random.default_rng(seed + sum(shape))
    X = rng.uniform(0, 1, (N, C, H, W)).astype(dtype)
    theta = rng.uniform(-scale, scale, layout_size(layouts.conv_ae_layout(K, C, (ph, pw), tied)))
    return theta, X, K, (ph, pw)


# -- the objective ------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("tied,decoder", OPTIONS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numba_equals_reference(shape, tied, decoder, dtype):
    theta, X, K, patch = problem(shape, tied, dtype)
    kw = dict(HYPER, decoder=decoder, tied=tied)
    c_ref, g_ref = ref_convae.conv_ae_cost_grad(theta, X, K, patch, **kw)
    c_nb, g_nb = numba_convae.conv_ae_cost_grad(theta, X, K, patch, **kw)
    assert g_nb.dtype == np.float64 and g_nb.shape == theta.shape
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    assert c_nb == pytest.approx(c_ref, rel=rtol)
    np.testing.assert_allclose(g_nb, g_ref, rtol=rtol, atol=rtol * np.abs(g_ref).max())


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("tied,decoder", OPTIONS)
def test_gradient_check(backend, channels, tied, decoder):
    shape = (3, channels, 6, 7, 2, 3, 2)
    theta, X, K, patch = problem(shape, tied)
    fn = IMPLS[backend]
    err = check_gradient(lambda t: fn(t, X, K, patch, **HYPER, decoder=decoder, tied=tied), theta)
    assert err < 1e-7


def test_gradient_check_fails_for_a_wrong_gradient():
    theta, X, K, patch = problem(SHAPES[0], False)

    def broken(t):
        cost, grad = numba_convae.conv_ae_cost_grad(t, X, K, patch, **HYPER)
        grad[-1] *= 1.01             # the decoder bias of the one channel
        return cost, grad

    assert check_gradient(broken, theta) > 1e-6


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("decoder", ["sigmoid", "linear"])
def test_one_position_is_the_dense_autoencoder(backend, decoder):
    """With the filter as large as the input the conv AE is UFLDL's dense one on the
    pixels, with one decoder bias shared by all pixels (the conv AE's per-channel bias)."""
    N, H, W, K = 7, 4, 5, 3
    v = H * W
    theta, X, _, _ = problem((N, 1, H, W, K, H, W), False)
    Wf, V, b, c = layouts.unpack_conv_ae(theta, K, 1, (H, W))
    dense = np.concatenate([Wf.reshape(K, v).ravel(), V.reshape(K, v).T.ravel(), b,
                            np.full(v, c[0])])
    cost, grad = IMPLS[backend](theta, X, K, (H, W), **HYPER, decoder=decoder)
    d_cost, d_grad = dense_reference.sae_cost_grad(dense, X.reshape(N, v), v, K, **HYPER,
                                                   decoder=decoder)
    gW, gV, gb, gc = layouts.unpack_conv_ae(grad, K, 1, (H, W))
    got = np.concatenate([gW.reshape(K, v).ravel(), gV.reshape(K, v).T.ravel(), gb])
    assert cost == pytest.approx(d_cost, rel=1e-12)
    np.testing.assert_allclose(got, d_grad[:-v], rtol=1e-10, atol=1e-13)
    assert gc[0] == pytest.approx(d_grad[-v:].sum(), rel=1e-10, abs=1e-13)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_sparsity_term_averages_over_images_and_positions(backend):
    theta, X, K, patch = problem((4, 1, 9, 8, 3, 3, 2), False)
    Wf, _, b, _ = layouts.unpack_conv_ae(theta, K, 1, patch)
    rho, beta = 0.1, 2.0
    rho_hat = convolve(Wf[:, 0], b, X[:, 0], backend="numpy").mean(axis=(0, 2, 3))
    kl = np.sum(rho * np.log(rho / rho_hat) + (1 - rho) * np.log((1 - rho) / (1 - rho_hat)))
    fn = IMPLS[backend]
    with_kl = fn(theta, X, K, patch, sparsity=rho, beta=beta, weight_decay=0.0)[0]
    without = fn(theta, X, K, patch, sparsity=rho, beta=0.0, weight_decay=0.0)[0]
    assert with_kl - without == pytest.approx(beta * kl, rel=1e-10)


def test_reference_building_blocks_by_hand():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((2, 3, 6, 5))
    F = rng.standard_normal((4, 3, 3, 2))
    b = rng.standard_normal(4)
    Z = ref_convae.conv_forward(F, b, X)
    # channel sum of the single-channel reference convolution
    expect = sum(ref_conv.convolve(F[:, c], np.zeros(4), X[:, c], activation="linear")
                 for c in range(3)) + b[None, :, None, None]
    np.testing.assert_allclose(Z, expect, rtol=1e-12)
    # transposed convolution by an explicit scatter-add, and its adjointness
    A = rng.standard_normal((2, 4, 4, 4))
    Y = np.zeros((2, 3, 6, 5))
    for n in range(2):
        for k in range(4):
            for i in range(4):
                for j in range(4):
                    Y[n, :, i:i + 3, j:j + 2] += A[n, k, i, j] * F[k]
    np.testing.assert_allclose(ref_convae.conv_transpose(A, F, (6, 5)), Y, rtol=1e-12)
    lin = ref_convae.conv_forward(F, np.zeros(4), X)
    assert np.vdot(lin, A) == pytest.approx(np.vdot(X, Y), rel=1e-12)


# -- the network ---------------------------------------------------------------------------

NETS = {
    "1-mean": [dict(n_filters=3, patch_shape=(3, 3), pool_shape=(2, 2))],
    "1-max": [dict(n_filters=3, patch_shape=(3, 2), pool="max", n_pool_regions=(2, 3))],
    "2-mean-max": [dict(n_filters=3, patch_shape=(3, 3), pool_shape=(2, 2)),
                   dict(n_filters=2, patch_shape=(2, 2), pool="max", n_pool_regions=(2, 2))],
    "2-max-mean": [dict(n_filters=2, patch_shape=(2, 3), pool="max", pool_shape=(2, 2),
                        remainder="partial"),
                   dict(n_filters=3, patch_shape=(2, 2), n_pool_regions=(1, 2))],
}


def net_problem(layers, channels=2, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, (4, channels, 12, 11))
    y = np.array([0, 1, 2, 1]) % n_classes
    plan, n_features = layouts.conv_net_plan(layers, X.shape[1:])
    theta = rng.uniform(-0.5, 0.5,
                        layout_size(layouts.conv_net_layout(plan, n_features, n_classes)))
    return theta, X, y, n_classes


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_conv_net_gradient_check(name, backend):
    theta, X, y, n_classes = net_problem(NETS[name])
    fn = lambda t: conv_net_cost_grad(t, X, y, NETS[name], n_classes, weight_decay=1e-3,  # noqa
                                      conv_weight_decay=1e-3, backend=backend)
    assert check_gradient(fn, theta) < 1e-7


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numba_conv_net_equals_reference(name, dtype):
    theta, X, y, n_classes = net_problem(NETS[name], seed=3)
    X = X.astype(dtype)
    kw = dict(weight_decay=1e-3, conv_weight_decay=1e-2)
    c_ref, g_ref = ref_convnet.conv_net_cost_grad(theta, X, y, NETS[name], n_classes, **kw)
    c_nb, g_nb = numba_convnet.conv_net_cost_grad(theta, X, y, NETS[name], n_classes, **kw)
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    assert c_nb == pytest.approx(c_ref, rel=rtol)
    np.testing.assert_allclose(g_nb, g_ref, rtol=rtol, atol=rtol * np.abs(g_ref).max())


def test_conv_net_softmax_part_is_softmax_regression():
    layers = NETS["2-mean-max"]
    theta, X, y, K = net_problem(layers)
    cost, grad = ref_convnet.conv_net_cost_grad(theta, X, y, layers, K, weight_decay=1e-3)
    plan, n_features = layouts.conv_net_plan(layers, X.shape[1:])
    views = fastsae.params.unpack(theta, layouts.conv_net_layout(plan, n_features, K))
    params = [(views[i], views[i + 1]) for i in range(2, len(views), 2)]
    F = ref_convnet.conv_net_forward(params, X, plan)[-1][1].reshape(len(X), -1)
    n_soft = K * n_features + K
    s_cost, s_grad = dense_reference.softmax_cost_grad(theta[:n_soft], F, y, K, weight_decay=1e-3)
    assert cost == pytest.approx(s_cost, rel=1e-12)
    np.testing.assert_allclose(grad[:n_soft], s_grad, rtol=1e-10, atol=1e-14)


def test_max_pool_backward_routes_to_the_maximum():
    maps = np.array([[[[1.0, 5.0, 2.0], [3.0, 0.0, 4.0]]]])
    g = ref_convnet.pool_backward(np.array([[[[10.0]]]]), maps,
                                (np.array([0]), np.array([2]), np.array([0]), np.array([3])),
                                "max")
    assert g[0, 0].tolist() == [[0.0, 10.0, 0.0], [0.0, 0.0, 0.0]]


# -- estimators ------------------------------------------------------------------------------

def stripes(n, size=10, seed=0):
    """Images of horizontal (class 0) or vertical (class 1) stripes, random period and phase."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = np.empty((n, size, size))
    for k in range(n):
        wave = np.sin(2 * np.pi * np.arange(size) / rng.uniform(3, 6) + rng.uniform(0, 2 * np.pi))
        X[k] = wave[:, None] if y[k] == 0 else wave[None, :]
    return np.clip(0.5 + 0.35 * X + 0.05 * rng.standard_normal(X.shape), 0, 1), y


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_training_lowers_the_cost(backend):
    X, _ = stripes(30)
    cae = ConvolutionalAutoencoder(4, (3, 3), sparsity=0.1, max_iter=25, backend=backend,
                                   random_state=0)
    start = cae._objective(cae._check_X(X, fitting=True))(cae._init_theta(1))[0]
    cae.fit(X)
    assert cae.filters_.shape == (4, 1, 3, 3) and cae.decoder_bias_.shape == (1,)
    assert cae.loss_curve_[-1] < 0.5 * start
    assert cae.cost(X) == pytest.approx(cae.loss_curve_[-1], rel=1e-9)
    assert np.all(np.diff(cae.loss_curve_) <= 1e-12)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_encoder_equals_convolve_with_its_filters(dtype):
    X, _ = stripes(12)
    cae = ConvolutionalAutoencoder(3, (4, 3), max_iter=5, dtype=dtype, random_state=1).fit(X)
    maps = cae.transform(X)
    expected = convolve(cae.filters_[:, 0], cae.bias_, X.astype(dtype), backend="numpy")
    assert maps.shape == (12, 3, 7, 8) and maps.dtype == np.dtype(dtype)
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(maps, expected, rtol=tol, atol=tol)
    # transform works on inputs of another size than the training crops
    assert cae.transform(np.full((2, 9, 20), 0.5)).shape == (2, 3, 6, 18)


def test_multichannel_encoder_and_reconstruction():
    rng = np.random.default_rng(2)
    X = rng.uniform(0, 1, (5, 3, 8, 9))
    cae = ConvolutionalAutoencoder(2, (3, 3), max_iter=5, random_state=0).fit(X)
    expected = 1 / (1 + np.exp(-ref_convae.conv_forward(cae.filters_, cae.bias_, X)))
    np.testing.assert_allclose(cae.transform(X), expected, rtol=1e-12)
    np.testing.assert_allclose(encode(cae.filters_, cae.bias_, X, backend="numpy"), expected,
                               rtol=1e-12)
    R = ref_convae.conv_ae_reconstruct(cae.filters_, cae.decoder_filters_, cae.bias_,
                                      cae.decoder_bias_, X)
    np.testing.assert_allclose(cae.reconstruct(X), R, rtol=1e-12)
    assert cae.weights_.shape == (2, 27)


def test_weights_are_in_the_window_layout():
    X, _ = stripes(10, size=12)
    cae = ConvolutionalAutoencoder(5, (4, 6), max_iter=3, random_state=0).fit(X)
    W = cae.weights_
    assert W.shape == (5, 24)
    np.testing.assert_array_equal(filters_from_weights(W, (4, 6)), cae.filters_[:, 0])
    np.testing.assert_array_equal(W[2], cae.filters_[2, 0].T.ravel())   # frame-major


def test_filters_draw_with_the_dense_filter_plot():
    viz = pytest.importorskip("fastsae.viz")
    X, _ = stripes(6, size=12)
    cae = ConvolutionalAutoencoder(6, (4, 5), max_iter=2, random_state=0).fit(X)
    dense_like = np.random.default_rng(0).standard_normal((6, 20))
    assert viz.display_network(cae.weights_, 4, 5).shape == \
        viz.display_network(dense_like, 4, 5).shape


def test_fine_tuned_stack_beats_the_pretrained_one():
    X, y = stripes(80)
    Xt, yt = stripes(80, seed=1)
    labels = np.array(["horizontal", "vertical"])
    layers = [dict(n_filters=4, patch_shape=(3, 3), pool_shape=(2, 2)),
              dict(n_filters=3, patch_shape=(2, 2), pool="max", n_pool_regions=(1, 1))]
    net = StackedConvolutionalAutoencoder(layers, sparsity=0.1, pretrain_iter=30,
                                          softmax_iter=20, finetune_iter=40, random_state=0)
    net.fit(X, labels[y])
    assert [W.shape for W, _ in net.layers_] == [(4, 1, 3, 3), (3, 4, 2, 2)]
    assert net.transform(X).shape == (80, 3) and net.n_features_ == 3
    assert net.finetune_cost_ < net.pretrain_cost_
    assert net.cost(X, labels[y]) == pytest.approx(net.finetune_cost_, rel=1e-9)
    assert net.score(Xt, labels[yt]) > 0.85           # chance is 0.5
    np.testing.assert_allclose(net.predict_proba(Xt).sum(axis=1), 1.0)


def test_unsupervised_stack_gives_pooled_features():
    X, _ = stripes(20)
    layers = [dict(n_filters=3, patch_shape=(3, 3), n_pool_regions=(2, 2), pool="max")]
    net = StackedConvolutionalAutoencoder(layers, pretrain_iter=5, random_state=0).fit(X)
    cae = net.autoencoders_[0]
    expected = ref_conv.pool_regions(cae.transform(X), *layouts.conv_net_plan(
        layers, (1, 10, 10))[0][0]["bounds"], mode="max").reshape(20, -1)
    np.testing.assert_allclose(net.transform(X), expected, rtol=1e-12)
    with pytest.raises(fastsae.NotFittedError):
        net.predict(X)


def test_stopping_keeps_the_best_filters():
    X, _ = stripes(10)

    def stop(it, theta, cost):
        if it == 3:
            raise StopIteration

    cae = ConvolutionalAutoencoder(2, (3, 3), max_iter=50, random_state=0)
    with pytest.warns(RuntimeWarning, match="stopped"):
        cae.fit(X, callback=stop)
    assert cae.interrupted_ and cae.n_iter_ == 3
    assert cae.cost(X) == pytest.approx(min(cae.loss_curve_), rel=1e-9)


# -- crops ------------------------------------------------------------------------------

def test_crop_spectrograms():
    rng = np.random.default_rng(0)
    S = [rng.uniform(size=(6, n)).astype(np.float32) for n in (10, 25, 7)]
    crops, idx = crop_spectrograms(S, 7, return_index=True)
    assert crops.shape == (1 + 3 + 1, 6, 7) and crops.dtype == np.float32
    assert idx.tolist() == [0, 1, 1, 1, 2]
    np.testing.assert_array_equal(crops[3], S[1][:, 14:21])
    crops, idx = crop_spectrograms(S, 7, n_crops=200, random_state=1, return_index=True)
    assert crops.shape == (200, 6, 7)
    assert np.bincount(idx, minlength=3)[2] < np.bincount(idx)[1]    # longer: more crops
    for c, i in zip(crops[:20], idx[:20]):
        starts = [s for s in range(S[i].shape[1] - 6) if np.array_equal(S[i][:, s:s + 7], c)]
        assert starts
    with pytest.raises(ParameterError, match=r"spectrograms\[2\].*fewer than n_frames=8"):
        crop_spectrograms(S, 8)
    with pytest.raises(ParameterError, match="same number of bands"):
        crop_spectrograms([np.zeros((6, 9)), np.zeros((5, 9))], 4)


# -- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    (dict(patch_shape=(11, 3)), "patch_shape"),
    (dict(patch_shape=(3,)), "patch_shape"),
    (dict(n_filters=0), "n_filters"),
    (dict(decoder="tanh"), "decoder"),
    (dict(sparsity=1.5), "sparsity"),
    (dict(tied="yes"), "tied"),
    (dict(backend="gpu"), "backend"),
    (dict(dtype="int8"), "dtype"),
])
def test_bad_parameters_are_refused(kwargs, match):
    X, _ = stripes(4)
    params = dict(n_filters=2, patch_shape=(3, 3), max_iter=2)
    params.update(kwargs)
    with pytest.raises(ParameterError, match=match):
        ConvolutionalAutoencoder(**params).fit(X)


def test_bad_input_is_refused():
    X, _ = stripes(4)
    cae = ConvolutionalAutoencoder(2, (3, 3), max_iter=2)
    bad = X.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(ParameterError, match="X contains 1 NaN"):
        cae.fit(bad)
    with pytest.raises(ParameterError, match="X must be 4-D"):
        cae.fit(X[0])
    with pytest.raises(ParameterError, match=r"X must lie in \[0, 1\]"):
        cae.fit(X * 3)
    cae.fit(X)
    with pytest.raises(ParameterError, match="1 channel"):
        cae.transform(np.zeros((2, 3, 10, 10)))
    theta = cae._theta()
    with pytest.raises(ParameterError, match="theta must be a 1-D array of"):
        conv_ae_cost_grad(theta[:-1], X, 2, (3, 3), **HYPER)
    with pytest.raises(ParameterError, match="theta contains"):
        conv_ae_cost_grad(theta * np.nan, X, 2, (3, 3), **HYPER)


@pytest.mark.parametrize("layers,match", [
    ([], "layers must be a non-empty list"),
    ([dict(n_filters=2)], r"layers\[0\] must give 'patch_shape'"),
    ([dict(n_filters=2, patch_shape=(3, 3), stride=2)], r"layers\[0\] has unknown key"),
    ([dict(n_filters=2, patch_shape=(3, 3), pool="median")], r"layers\[0\]\['pool'\]"),
    ([dict(n_filters=2, patch_shape=(3, 3), pool_shape=2, n_pool_regions=2)], "at most one"),
    ([dict(n_filters=2, patch_shape=(3, 3), pool_shape=(4, 4)),
      dict(n_filters=2, patch_shape=(3, 3))], r"layers\[1\]\['patch_shape'\] \(3, 3\) must fit"),
])
def test_bad_layers_are_refused(layers, match):
    X, y = stripes(6)
    with pytest.raises(ParameterError, match=match):
        StackedConvolutionalAutoencoder(layers, pretrain_iter=2).fit(X, y)


def test_conv_net_bad_labels_and_theta():
    layers = NETS["1-mean"]
    theta, X, y, K = net_problem(layers)
    with pytest.raises(ParameterError, match="labels in"):
        conv_net_cost_grad(theta, X, y + 5, layers, K, weight_decay=0.0)
    with pytest.raises(ParameterError, match="theta must be a 1-D array of"):
        conv_net_cost_grad(theta[1:], X, y, layers, K, weight_decay=0.0)


def test_predict_needs_the_training_feature_count():
    X, y = stripes(10)
    layers = [dict(n_filters=2, patch_shape=(3, 3), pool_shape=(2, 2))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = StackedConvolutionalAutoencoder(layers, pretrain_iter=2, softmax_iter=2,
                                              finetune_iter=2).fit(X, y)
    with pytest.raises(ParameterError, match="features but the softmax takes"):
        net.predict(np.full((2, 14, 14), 0.5))
