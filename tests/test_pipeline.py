"""SelfTaughtFeatures and its helpers; the FSDD pipeline; the example script."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import scipy.fft
import pytest

import fastsae
from fastsae import ParameterError
from fastsae.exceptions import NotFittedError
from fastsae.pipeline import SelfTaughtFeatures, Standardizer, fixed_length, trim_silence

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "self_taught_fsdd.py"

# fastsae 0.1.0's recipe (full-height filters, time pooling), small
SMALL = dict(n_hidden=6, n_frames=3, n_windows=400, max_iter=15, n_pool_regions=(1, 3),
             patch_bands=None, normalize_level=False)
# frequency-local filters 4 bands high, pooled over 3 x 2 regions and the whole clip
LOCAL = dict(n_hidden=6, n_frames=3, n_windows=400, max_iter=15, patch_bands=4,
             n_pool_regions=((3, 2), 1))


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


def test_frequency_local_filters_slide_over_frequency_and_time(rng):
    spectra = _spectra(rng)
    stf = SelfTaughtFeatures(**LOCAL, random_state=0)
    F = stf.fit_transform(spectra)
    assert stf.patch_shape_ == (4, 3) and stf.sae_.n_features_in_ <= 12
    assert F.shape == (len(spectra), 6 * 2 * (3 * 2 + 1)) == (len(spectra), stf.n_features_out_)
    assert stf.filters().shape == stf.filters("decoder").shape == (6, 4 * 3)
    np.testing.assert_allclose(stf.transform(spectra), F, rtol=1e-10, atol=1e-10)
    # the pooled features are the maxima and means of the filters slid over the level-
    # normalised, trimmed clips: check one clip, one unit, the whole-clip max
    (clip,) = stf._clips(spectra[:1])
    maps = fastsae.convolve(fastsae.conv.filters_from_weights(stf.filters(), (4, 3)),
                            stf.sae_.b1_ + stf.sae_.W1_ @ stf.preprocessing_.affine_map()[1],
                            clip, backend="numpy")
    raw = stf._pooled([clip])
    k = 2
    whole_max = raw[0, 6 * 2 * 6 + 6 + k]        # second resolution, mode "max", unit k
    assert whole_max == pytest.approx(maps[0, k].max(), rel=1e-9)


def test_level_normalisation_ignores_the_recording_gain(rng):
    spectra = _spectra(rng)
    stf = SelfTaughtFeatures(**LOCAL, random_state=0).fit(spectra)
    louder = [S + 12.0 for S in spectra]
    np.testing.assert_allclose(stf.transform(louder), stf.transform(spectra), atol=1e-7)
    plain = SelfTaughtFeatures(**dict(LOCAL, normalize_level=False), random_state=0).fit(spectra)
    assert not np.allclose(plain.transform(louder), plain.transform(spectra), atol=1e-3)


def test_a_noise_floor_makes_the_background_the_same(rng):
    spectra = _spectra(rng)
    floored = SelfTaughtFeatures(**dict(LOCAL, floor_db=20.0), random_state=0).fit(spectra)
    # below the floor nothing counts: a quieter background gives the same features
    quieter = [np.where(S < S.max() - 20.0, S - 15.0, S) for S in spectra]
    np.testing.assert_allclose(floored.transform(quieter), floored.transform(spectra), atol=1e-6)
    plain = SelfTaughtFeatures(**LOCAL, random_state=0).fit(spectra)
    assert not np.allclose(plain.transform(quieter), plain.transform(spectra), atol=1e-3)


def test_cepstral_smoothing_makes_the_fine_structure_across_bands_not_count(rng):
    spectra = _spectra(rng)
    n_bands = spectra[0].shape[0]
    k = 6
    smoothed = SelfTaughtFeatures(**dict(LOCAL, n_cepstra=k), random_state=0).fit(spectra)
    # add what the smoothing removes (cepstral coefficients >= k): nothing changes
    C = np.zeros((n_bands, 1))
    C[k + 1], C[n_bands - 1] = 4.0, -3.0
    fine = scipy.fft.idct(C, type=2, norm="ortho", axis=0)
    rougher = [S + fine for S in spectra]
    np.testing.assert_allclose(smoothed.transform(rougher), smoothed.transform(spectra), atol=1e-5)
    plain = SelfTaughtFeatures(**LOCAL, random_state=0).fit(spectra)
    assert not np.allclose(plain.transform(rougher), plain.transform(spectra), atol=1e-3)
    for bad in (0, n_bands):                     # none kept, or all of them
        with pytest.raises(ParameterError, match="n_cepstra"):
            SelfTaughtFeatures(**dict(LOCAL, n_cepstra=bad)).fit(spectra)


def test_options(rng):
    spectra = _spectra(rng, n=12)
    stf = SelfTaughtFeatures(n_hidden=4, n_frames=2, n_windows=None, max_iter=5, pool="max",
                             n_pool_regions=2, standardize=False, trim_db=None,
                             patch_bands=None,
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
    dict(patch_bands=0), dict(patch_bands=11),
    dict(patch_bands=4, n_windows=None), dict(patch_bands=4, n_pool_regions=((2, 0),)),
    dict(normalize_level="yes"), dict(floor_db=0.0), dict(floor_db="loud"), dict(n_cepstra=2.5),
])
def test_bad_parameters_raise(rng, params):
    spectra = _spectra(rng, n=6)
    with pytest.raises(ParameterError):
        SelfTaughtFeatures(**dict(SMALL, **params)).fit(spectra)


def test_windows_longer_than_every_clip_are_refused_at_fit_not_at_transform(rng):
    spectra = _spectra(rng, n=10, lengths=(8, 20))
    longest = max(S.shape[1] for S in spectra)
    with pytest.raises(ParameterError, match=f"n_frames={longest + 1} .* at most {longest}"):
        SelfTaughtFeatures(**dict(SMALL, n_frames=longest + 1)).fit(spectra)
    stf = SelfTaughtFeatures(**dict(SMALL, n_frames=longest), random_state=0).fit(spectra)
    assert np.isfinite(stf.transform([spectra[0][:, :2]])).all()   # a short new clip: padded


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
    out_json = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, str(EXAMPLE), "--synthetic", "--quick", "--methods",
                           "all", "--json", str(out_json), "--n-jobs", "2"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out_json.read_text())
    assert doc["protocol"] == "synthetic" and list(doc["folds"]) == ["synthetic"]
    row = doc["folds"]["synthetic"]
    assert {"baseline", "default", "self_taught_0_1", "stacked", "stacked_pretrained",
            "convnet2"} <= set(row)
    assert any(k.startswith("default/features") for k in row)
    assert doc["mean"] == row
    assert all(0.0 <= v <= 1.0 for v in row.values())
    # ten classes: chance is 10 %
    assert row["default"] > 0.4 and row["baseline"] > 0.4, proc.stdout
    assert re.search(r"whole table .*: \d+ s", proc.stdout)


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


def test_frequency_profile_and_the_filter_picture(rng, tmp_path):
    spectra = _spectra(rng)
    stf = SelfTaughtFeatures(**LOCAL, random_state=0).fit(spectra)
    assert stf.frequency_profile_.shape == (6, 10 - 4 + 1)
    assert np.all(stf.frequency_profile_ > 0) and np.all(stf.frequency_profile_ < 1)
    fig = stf.plot_filters(tmp_path / "filters.png", sr=8000)
    assert len(fig.axes) == 6 + 1 and (tmp_path / "filters.png").exists()
    old = SelfTaughtFeatures(**SMALL, random_state=0).fit(spectra)    # full-height filters
    assert old.frequency_profile_.shape == (6, 1)
    grid = SelfTaughtFeatures(**dict(SMALL, n_pool_regions=((6, 2),)), random_state=0)
    assert grid.fit_transform(spectra).shape[1] == 6 * 2 * 2      # maps one band high
    assert len(old.plot_filters(sr=8000).axes) == 7
