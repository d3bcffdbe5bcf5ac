"""SelfTaughtFeatures and its helpers; the FSDD pipeline; the example script."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastsae
from fastsae import ParameterError
from fastsae.exceptions import NotFittedError
from fastsae.pipeline import SelfTaughtFeatures, Standardizer, fixed_length, trim_silence

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "self_taught_fsdd.py"

SMALL = dict(n_hidden=6, n_frames=3, n_windows=400, max_iter=15, n_pool_regions=(1, 3))


def _spectra(rng, n=24, n_bands=10, lengths=(8, 20)):
    """dB-like spectrograms: a loud stretch in the middle of quiet frames."""
    out = []
    for _ in range(n):
        T = int(rng.integers(*lengths))
        S = rng.normal(-70.0, 3.0, (n_bands, T))
        a = int(rng.integers(0, T // 3))
        S[:, a:T - 1] += 50.0 + 5.0 * rng.standard_normal((n_bands, 1))
        out.append(S.astype(np.float32))
    return out


# -- helpers ----------------------------------------------------------------------

def test_trim_silence_keeps_the_loud_span():
    S = np.full((4, 12), -90.0)
    S[:, 3:8] = -20.0
    S[:, 5] = -95.0                       # a quiet frame inside the span stays
    (out,) = trim_silence([S], top_db=30.0)
    assert out.shape == (4, 5)
    assert np.shares_memory(out, S)
    (wide,) = trim_silence([S], top_db=30.0, min_frames=9)
    assert wide.shape == (4, 9)
    (everything,) = trim_silence([S], top_db=100.0)
    assert everything.shape == S.shape


def test_fixed_length_resamples_along_time():
    S = np.arange(10.0).reshape(2, 5)
    out = fixed_length([S, S[:, :1]], 9)
    assert out.shape == (2, 2, 9)
    np.testing.assert_allclose(out[0, 0], np.linspace(0, 4, 9))
    np.testing.assert_allclose(out[1], np.repeat(S[:, :1], 9, axis=1))
    assert fixed_length([S.astype(np.float32)], 3).dtype == np.float32
    np.testing.assert_allclose(fixed_length([S], 5)[0], S)


def test_standardizer():
    X = np.random.default_rng(0).normal(3.0, 2.0, (50, 4))
    X[:, 2] = 7.0
    Z = Standardizer().fit_transform(X)
    np.testing.assert_allclose(Z.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(Z.std(0), [1, 1, 0, 1], atol=1e-12)
    with pytest.raises(ValueError, match="X has 3 features"):
        Standardizer().fit(X).transform(X[:, :3])


# -- SelfTaughtFeatures -----------------------------------------------------------

@pytest.mark.parametrize("normalization", ["pca", "zca", "sigmoid"])
def test_fit_transform_shapes(rng, normalization):
    spectra = _spectra(rng)
    stf = SelfTaughtFeatures(**SMALL, normalization=normalization, random_state=0)
    F = stf.fit_transform(spectra)
    assert F.shape == (len(spectra), 6 * 2 * (1 + 3)) == (len(spectra), stf.n_features_out_)
    assert F.dtype == np.float64 and np.isfinite(F).all()
    np.testing.assert_allclose(F.mean(0), 0, atol=1e-9)          # standardised on fit data
    np.testing.assert_allclose(stf.transform(spectra), F, rtol=1e-10, atol=1e-10)
    assert stf.sae_.n_hidden == 6 and stf.n_bands_ == 10 and stf.n_windows_ == 400
    assert stf.conv_ is stf.convs_[1]
    assert stf.transform(spectra[:3]).shape == (3, stf.n_features_out_)


def test_options(rng):
    spectra = _spectra(rng, n=12)
    stf = SelfTaughtFeatures(n_hidden=4, n_frames=2, n_windows=None, max_iter=5, pool="max",
                             n_pool_regions=2, standardize=False, trim_db=None,
                             dtype="float32", random_state=1).fit(spectra)
    F = stf.transform(spectra)
    assert F.shape == (12, 4 * 2) and F.dtype == np.float32
    assert stf.standardizer_ is None
    assert 0.0 <= F.min() and F.max() <= 1.0                      # max of sigmoid activations
    assert stf.n_windows_ == sum(S.shape[1] - 1 for S in spectra)


def test_short_clips_are_padded(rng):
    spectra = _spectra(rng, n=12)
    stf = SelfTaughtFeatures(**dict(SMALL, n_frames=6), random_state=0).fit(spectra)
    short = [spectra[0][:, :2], spectra[1][:, :1]]
    assert np.isfinite(stf.transform(short)).all()


def test_deterministic_with_random_state(rng):
    spectra = _spectra(rng)
    F1 = SelfTaughtFeatures(**SMALL, random_state=3).fit_transform(spectra)
    F2 = SelfTaughtFeatures(**SMALL, random_state=3).fit_transform(spectra)
    F3 = SelfTaughtFeatures(**SMALL, random_state=4).fit_transform(spectra)
    np.testing.assert_array_equal(F1, F2)
    assert not np.allclose(F1, F3)


@pytest.mark.parametrize("normalization", ["pca", "sigmoid"])
def test_save_load_round_trip(rng, tmp_path, normalization):
    spectra = _spectra(rng)
    stf = SelfTaughtFeatures(**SMALL, normalization=normalization, random_state=0).fit(spectra)
    path = tmp_path / "features.npz"
    fastsae.save(stf, path)
    loaded = fastsae.load(path)
    assert isinstance(loaded, SelfTaughtFeatures)
    assert loaded.get_params() == stf.get_params()
    np.testing.assert_array_equal(loaded.transform(spectra), stf.transform(spectra))
    # an unfitted one too
    fastsae.save(SelfTaughtFeatures(n_hidden=3), tmp_path / "unfitted.npz")
    assert fastsae.load(tmp_path / "unfitted.npz").n_hidden == 3


@pytest.mark.parametrize("bad", [
    [],
    np.zeros(5),
    "spectra",
    [np.zeros(5)],
    [np.zeros((4, 6)), np.zeros((5, 6))],
    [np.zeros((4, 0))],
    [np.full((4, 6), np.nan)],
    [np.zeros((4, 6), dtype=complex)],
])
def test_bad_spectra_raise(bad):
    with pytest.raises(ParameterError):
        SelfTaughtFeatures(**SMALL).fit(bad)


@pytest.mark.parametrize("params", [
    dict(n_hidden=0), dict(n_frames=0), dict(n_windows=1), dict(n_windows=2.5),
    dict(normalization="whiten"), dict(sparsity=1.0), dict(beta=-1.0), dict(weight_decay=-1e-3),
    dict(max_iter=0), dict(pool="min"), dict(pool=()), dict(pool=("mean", "mean")),
    dict(n_pool_regions=0), dict(n_pool_regions=()), dict(n_pool_regions=(1, 0)),
    dict(standardize="yes"), dict(trim_db=0.0), dict(retain=1.5), dict(epsilon=-1.0),
    dict(backend="fortran"), dict(dtype="int8"), dict(n_jobs=0), dict(random_state="seed"),
])
def test_bad_parameters_raise(rng, params):
    spectra = _spectra(rng, n=6)
    with pytest.raises(ParameterError):
        SelfTaughtFeatures(**dict(SMALL, **params)).fit(spectra)


def test_transform_checks(rng):
    spectra = _spectra(rng, n=10)
    with pytest.raises(NotFittedError):
        SelfTaughtFeatures().transform(spectra)
    stf = SelfTaughtFeatures(**SMALL, random_state=0).fit(spectra)
    with pytest.raises(ParameterError, match="bands"):
        stf.transform([np.zeros((11, 20))])
    with pytest.raises(ParameterError):
        stf.transform([np.full((10, 20), np.inf)])


# -- FSDD, reduced ----------------------------------------------------------------

@pytest.mark.fsdd
@pytest.mark.slow
def test_fsdd_reduced_pipeline(fsdd_path):
    """Three speakers, repetitions 0-4 tested and 5-24 trained, a small model."""
    labels, meta = fastsae.datasets.fsdd_files(fsdd_path)
    keep = np.isin(meta["speaker"], ["jackson", "nicolas", "lucas"]) & (meta["index"] < 25)
    spectra = fastsae.audio.spectra_from_files(list(meta["path"][keep]), kind="mel",
                                               n_bands=40, cache_dir=False, n_jobs=2)
    y, index = labels[keep], meta["index"][keep]
    train, test = np.flatnonzero(index >= 5), np.flatnonzero(index < 5)
    stf = SelfTaughtFeatures(n_hidden=50, n_frames=6, n_windows=4000, max_iter=60,
                             random_state=0)
    F = stf.fit_transform([spectra[i] for i in train])
    clf = fastsae.SoftmaxRegression(1e-2, max_iter=200, random_state=0).fit(F, y[train])
    accuracy = clf.score(stf.transform([spectra[i] for i in test]), y[test])
    assert accuracy >= 0.85, accuracy          # chance: 0.10


# -- the example script -----------------------------------------------------------

def test_example_quick_synthetic(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(EXAMPLE), "--synthetic", "--quick", "--n-jobs",
                           "2"], capture_output=True, text=True, timeout=180, cwd=tmp_path,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    rows = {}
    for line in out.splitlines():
        m = re.match(r"^(\S.*?)\s{2,}([\d.]+)%\s+([\d.]+)%\s+([\d.]+)s$", line)
        if m:
            rows[m.group(1)] = tuple(float(v) for v in m.group(2, 3, 4))
    assert set(rows) == {"softmax on the spectrogram",
                         "self-taught (autoencoder features + softmax)",
                         "stacked autoencoder, before fine-tuning",
                         "stacked autoencoder, after fine-tuning"}, out
    for name, (val, test, seconds) in rows.items():
        assert 0.0 <= val <= 100.0 and 0.0 <= test <= 100.0 and seconds >= 0.0
    # ten classes: chance is 10 %
    assert rows["self-taught (autoencoder features + softmax)"][1] > 40.0, out
    assert rows["stacked autoencoder, after fine-tuning"][1] > 40.0, out
    assert re.search(r"whole table .*: [\d.]+s", out)


def test_fit_callback_sees_every_iteration(rng):
    seen = []
    stf = SelfTaughtFeatures(**SMALL, random_state=0)
    stf.fit(_spectra(rng), callback=lambda it, theta, cost: seen.append(cost))
    assert len(seen) == stf.sae_.n_iter_ and seen == stf.sae_.loss_curve_


@pytest.mark.parametrize("normalization", ["pca", "zca", "sigmoid"])
def test_filters_encoder_and_decoder(rng, normalization):
    spectra = _spectra(rng)
    stf = SelfTaughtFeatures(**SMALL, normalization=normalization, random_state=0).fit(spectra)
    prep, sae = stf.preprocessing_, stf.sae_
    windows = fastsae.audio.sample_windows(spectra, n_frames=3, n_samples=50, random_state=1)
    windows = windows.astype(np.float64)
    enc, dec = stf.filters(), stf.filters("decoder")
    assert enc.shape == dec.shape == (6, 10 * 3)
    # the encoder filters act on raw windows as the autoencoder acts on preprocessed ones
    Z = prep.transform(windows) @ sae.W1_.T
    A, c = prep.affine_map() if hasattr(prep, "affine_map") else (None, None)
    if A is not None:
        np.testing.assert_allclose(windows @ enc.T + c @ sae.W1_.T, Z, rtol=1e-8, atol=1e-8)
    # the decoder patterns add up to the reconstruction, mapped back to raw windows
    H = sae.transform(prep.transform(windows))
    if normalization != "sigmoid":
        recon = prep.inverse_transform(H @ sae.W2_.T + sae.b2_)
        offset = prep.inverse_transform(sae.b2_[None, :])
        np.testing.assert_allclose(H @ dec + offset, recon, rtol=1e-8, atol=1e-8)
    else:
        np.testing.assert_allclose(dec, sae.W2_.T)
    with pytest.raises(ParameterError, match="kind"):
        stf.filters("bias")
