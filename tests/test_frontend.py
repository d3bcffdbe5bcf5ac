"""The Spectrogram step, spectra files, folder listing and Pipeline."""
import numpy as np
import pytest
import soundfile as sf
from sklearn.base import BaseEstimator, TransformerMixin

import fastsae
from fastsae import ParameterError, datasets
from fastsae.audio import Spectrogram, load_spectra, save_spectra, spectrum
from fastsae import Pipeline
from fastsae.softmax import SoftmaxRegression


def _tone(freq, n=4000, sr=8000):
    return (0.3 * np.sin(2 * np.pi * freq * np.arange(n) / sr)).astype(np.float32)


def test_spectrogram_step_equals_spectrum_for_arrays_and_files(tmp_path):
    y = _tone(440)
    sf.write(tmp_path / "a.wav", y, 8000)
    spec = Spectrogram("mel", 24, sr=8000)
    [S_arr] = spec.transform([y])
    [S_file] = spec.transform([tmp_path / "a.wav"], n_jobs=1, cache_dir=False)
    expected = spectrum(y, 8000, kind="mel", n_bands=24)
    np.testing.assert_allclose(S_arr, expected)
    y_file, _ = fastsae.audio.load(tmp_path / "a.wav")     # 16-bit rounding of the file
    np.testing.assert_allclose(S_file, spectrum(y_file, 8000, kind="mel", n_bands=24), rtol=1e-6)
    with pytest.raises(ParameterError, match="sr must be set"):
        Spectrogram().transform([y])
    with pytest.raises(ParameterError, match="kind"):
        Spectrogram("wavelet").fit()


def test_spectra_file_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    spectra = [rng.standard_normal((5, n)).astype(np.float32) for n in (3, 10, 1)]
    save_spectra(tmp_path / "s.npz", spectra, paths=["a", "b", "c"], labels=["x", "y", "x"],
                 params={"kind": "mel"})
    back, info = load_spectra(tmp_path / "s.npz")
    assert [S.shape for S in back] == [(5, 3), (5, 10), (5, 1)]
    for a, b in zip(spectra, back):
        np.testing.assert_array_equal(a, b)
    assert info == {"params": {"kind": "mel"}, "paths": ["a", "b", "c"], "labels": ["x", "y", "x"]}
    with pytest.raises(ParameterError, match="same number of bands"):
        save_spectra(tmp_path / "t.npz", [np.ones((2, 3)), np.ones((3, 3))])
    with pytest.raises(ParameterError, match="does not exist"):
        load_spectra(tmp_path / "missing.npz")


def test_folder_files_lists_classes_without_reading(tmp_path):
    for cls in ("b", "a"):
        (tmp_path / cls / "sub").mkdir(parents=True)
        sf.write(tmp_path / cls / "sub" / "1.wav", _tone(300), 8000)
        (tmp_path / cls / "notes.txt").write_text("x")
    (tmp_path / "a" / "broken.wav").write_bytes(b"not audio")   # listed: not read here
    files, labels = (None, None)
    with pytest.warns(UserWarning, match="ignored 2 file"):
        files, labels = datasets.folder_files(tmp_path)
    assert labels == ["a", "a", "b"]
    assert [f.split("/")[-1] for f in files] == ["broken.wav", "1.wav", "1.wav"]
    with pytest.raises(ParameterError, match="not an existing folder"):
        datasets.folder_files(tmp_path / "nope")


def test_pipeline_chains_fits_and_saves(tmp_path):
    rng = np.random.default_rng(1)
    clips = [_tone(f) + 0.01 * rng.standard_normal(4000).astype(np.float32)
             for f in (200, 210, 220, 1500, 1600, 1700)]
    y = np.array([0, 0, 0, 1, 1, 1])

    class MeanSpectrum(TransformerMixin, BaseEstimator):
        def fit(self, X, y=None):
            return self

        def __sklearn_is_fitted__(self):
            return True

        def transform(self, spectra):
            return np.stack([S.mean(axis=1) for S in spectra])

    pipe = Pipeline([("spectrogram", Spectrogram("mel", 16, sr=8000)),
                     ("mean", MeanSpectrum()),
                     ("clf", SoftmaxRegression(max_iter=50))])
    assert pipe.fit(clips, y).score(clips, y) == 1.0
    assert pipe["clf"] is pipe.steps[2][1] and len(pipe[:2]) == 2
    F = pipe[:2].transform(clips)
    np.testing.assert_array_equal(pipe.predict(clips), pipe["clf"].predict(F))
    with pytest.raises(KeyError, match="nope"):
        pipe["nope"]
    with pytest.raises(ValueError, match="unique"):
        Pipeline([("a", MeanSpectrum()), ("a", MeanSpectrum())]).fit(clips)
    # saving needs every step to be a class fastsae.save knows: the built-in ones are
    with pytest.raises(ParameterError, match="MeanSpectrum.*joblib or pickle"):
        fastsae.save(pipe, tmp_path / "custom.npz")
    saved = Pipeline([("spectrogram", Spectrogram("mel", 16, sr=8000)),
                      ("clf", SoftmaxRegression(max_iter=5))])
    fastsae.save(saved, tmp_path / "p.npz")
    back = fastsae.load(tmp_path / "p.npz")
    assert back["spectrogram"].get_params() == saved["spectrogram"].get_params()
