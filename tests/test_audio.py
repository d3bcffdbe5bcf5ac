import os
import time
import warnings

import librosa
import re

import numpy as np
import pytest
import soundfile as sf

from fastsae import ParameterError, audio
from fastsae.audio import _extract

SR = 8000


def tone(n=SR, f=440.0, sr=SR, amp=0.3):
    return (amp * np.sin(2 * np.pi * f * np.arange(n) / sr)).astype(np.float32)


def write(path, y, sr=SR):
    sf.write(str(path), y, sr, subtype="PCM_16")
    return str(path)


@pytest.fixture
def bad_files(tmp_path):
    """One of each kind of bad file, with a word its error message must contain."""
    write(tmp_path / "good.wav", tone(800))
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes((tmp_path / "good.wav").read_bytes()[:30])
    text = tmp_path / "text.wav"
    text.write_text("this is a text file, not audio\n" * 20)
    zeros = write(tmp_path / "zeros.wav", np.zeros(800, dtype=np.float32))
    no_samples = write(tmp_path / "nosamples.wav", np.zeros(0, dtype=np.float32))
    return {
        str(empty): "empty",
        str(truncated): "decoded",
        str(text): "decoded",
        str(tmp_path / "missing.wav"): "does not exist",
        zeros: "silent",
        no_samples: "no samples",
    }


# -- load -----------------------------------------------------------------------------

def test_load_reads_resamples_and_mixes_down(tmp_path):
    left, right = tone(SR, 440.0), tone(SR, 1000.0, amp=0.1)
    path = tmp_path / "stereo.wav"
    sf.write(str(path), np.stack([left, right], axis=1), SR, subtype="FLOAT")
    y, sr = audio.load(path)
    assert sr == SR and y.dtype == np.float32 and y.shape == (SR,)
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-6)
    both, _ = audio.load(path, mono=False)
    assert both.shape == (2, SR)
    y16, sr16 = audio.load(path, sr=16000)
    assert sr16 == 16000 and y16.dtype == np.float32 and abs(y16.size - 2 * SR) <= 2
    # the 440 Hz tone survives resampling: its spectral peak stays at 440 Hz
    spec = np.abs(np.fft.rfft(audio.load(tmp_path / "stereo.wav", sr=16000)[0]))
    assert abs(np.fft.rfftfreq(y16.size, 1 / 16000)[np.argmax(spec)] - 440.0) < 2.0


def test_load_bad_files_raise_naming_the_file(bad_files):
    for path, what in bad_files.items():
        with pytest.raises(ParameterError) as err:
            audio.load(path)
        assert path in str(err.value) and what in str(err.value), str(err.value)


def test_load_other_formats_go_through_librosa(tmp_path):
    fake = tmp_path / "voice.m4a"
    fake.write_text("not an m4a either")
    with pytest.raises(ParameterError, match="voice.m4a.*could not be decoded"):
        audio.load(fake)


def test_load_rejects_bad_arguments(tmp_path):
    path = write(tmp_path / "a.wav", tone(800))
    with pytest.raises(ParameterError, match="sr"):
        audio.load(path, sr=0)
    with pytest.raises(ParameterError, match="path"):
        audio.load(123)
    with pytest.raises(ParameterError, match="not a regular file"):
        audio.load(tmp_path)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_load_many_skips_bad_files_with_a_counting_warning(tmp_path, bad_files, n_jobs):
    good = [write(tmp_path / f"g{k}.wav", tone(400 + 100 * k)) for k in range(3)]
    paths = [good[0], *bad_files, good[1], good[2]]
    with pytest.warns(UserWarning, match=rf"skipped {len(bad_files)} of {len(paths)} file") as rec:
        clips, sr, kept = audio.load_many(paths, on_error="skip", n_jobs=n_jobs,
                                          return_paths=True)
    message = str(rec[0].message)
    assert any(os.path.basename(p) in message for p in bad_files)
    assert kept == good and sr == SR and len(clips) == 3
    np.testing.assert_allclose(clips[1], tone(500), atol=1e-4)
    with pytest.raises(ParameterError, match="could not|empty|exist|silent|no samples"):
        audio.load_many(paths, n_jobs=n_jobs)


def test_load_many_needs_one_rate(tmp_path):
    a = write(tmp_path / "a.wav", tone(800), sr=8000)
    b = write(tmp_path / "b.wav", tone(1600, sr=16000), sr=16000)
    with pytest.raises(ParameterError, match="different sample rates"):
        audio.load_many([a, b], n_jobs=1)
    clips, sr = audio.load_many([a, b], sr=16000, n_jobs=1)
    assert sr == 16000 and [c.size for c in clips] == [1600, 1600]
    with pytest.raises(ParameterError, match="single path"):
        audio.load_many(a)


# -- spectrum -------------------------------------------------------------------------

def test_defaults():
    assert [audio.default_n_fft(sr) for sr in (8000, 16000, 22050)] == [256, 512, 1024]
    assert [audio.default_hop_length(sr) for sr in (8000, 16000, 22050)] == [80, 160, 220]


@pytest.fixture
def speechlike():
    rng = np.random.default_rng(0)
    t = np.arange(12000) / 16000
    y = np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.3 * np.sin(2 * np.pi * 1500 * t)
    return (y * np.hanning(t.size) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def test_fft_mel_cepstrum_agree_with_librosa(speechlike):
    y, sr, n_fft, hop = speechlike, 16000, 512, 160
    D = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop))
    np.testing.assert_allclose(audio.spectrum(y, sr, kind="fft", log=False), D,
                               rtol=1e-5, atol=1e-6 * D.max())
    np.testing.assert_allclose(audio.spectrum(y, sr, kind="fft"),
                               librosa.amplitude_to_db(D, ref=1.0, amin=1e-5, top_db=None),
                               atol=1e-3)
    M = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=n_fft, hop_length=hop, n_mels=40,
                                       fmin=100.0, fmax=7000.0)
    ours = audio.spectrum(y, sr, kind="mel", n_bands=40, log=False, fmin=100.0, fmax=7000.0)
    np.testing.assert_allclose(ours, M, rtol=1e-4, atol=1e-6 * M.max())
    np.testing.assert_allclose(audio.spectrum(y, sr, kind="mel", fmin=100.0, fmax=7000.0),
                               librosa.power_to_db(M, top_db=None), atol=1e-3)
    mel_db = librosa.power_to_db(
        librosa.feature.melspectrogram(y=y, sr=sr, n_fft=n_fft, hop_length=hop, n_mels=40),
        top_db=None)
    mfcc = librosa.feature.mfcc(S=mel_db, n_mfcc=13)
    ours = audio.spectrum(y, sr, kind="cepstrum", n_bands=13)
    assert ours.shape == mfcc.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, mfcc, rtol=1e-4, atol=1e-2)
    # top_db clips like librosa's default MFCC
    np.testing.assert_allclose(
        audio.spectrum(y, sr, kind="cepstrum", n_bands=20, top_db=80.0),
        librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20, n_fft=n_fft, hop_length=hop, n_mels=40),
        rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("n_fft, hop, window, n", [(256, 80, "hann", 8000), (511, 100, "hamming", 3001),
                                                   (64, 7, "blackman", 65), (32, 16, "hann", 5)])
def test_stft_magnitude_equals_librosa(n_fft, hop, window, n):
    from fastsae.audio._spectrum import _stft_magnitude

    y = np.random.default_rng(n).standard_normal(max(n, n_fft)).astype(np.float32)
    D = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, window=window, center=True,
                            pad_mode="constant"))
    ours = _stft_magnitude(y, n_fft, hop, window)
    assert ours.shape == D.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, D, rtol=2e-6, atol=1e-6 * D.max())


@pytest.mark.parametrize("sr, n_fft, n_bands, fmin, fmax", [(8000, 256, 40, 0.0, 4000.0),
                                                          (16000, 512, 64, 100.0, 7000.0),
                                                          (22050, 1024, 13, 30.0, 900.0)])
def test_mel_filterbank_and_frequencies_equal_librosa(sr, n_fft, n_bands, fmin, fmax):
    from fastsae.audio._spectrum import _mel_filterbank

    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_bands, fmin=fmin, fmax=fmax)
    np.testing.assert_allclose(_mel_filterbank(sr, n_fft, n_bands, fmin, fmax), ref,
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(audio.band_frequencies(sr, kind="mel", n_bands=n_bands,
                                                      fmin=fmin, fmax=fmax),
                               librosa.mel_frequencies(n_bands + 2, fmin=fmin, fmax=fmax)[1:-1],
                               rtol=1e-12)


def test_spectrum_rejects_an_unknown_window():
    with pytest.raises(ParameterError, match="window"):
        audio.spectrum(np.ones(400, np.float32), 8000, window="no-such-window")
    with pytest.raises(ParameterError, match="window"):
        audio.spectrum(np.ones(400, np.float32), 8000, window=np.hanning(256))


def test_cqt_agrees_with_librosa(speechlike):
    ours = audio.spectrum(speechlike, 16000, kind="cqt", n_bands=36, fmin=100.0,
                          bins_per_octave=12, log=False)
    C = np.abs(librosa.cqt(speechlike, sr=16000, hop_length=160, fmin=100.0, n_bins=36,
                           bins_per_octave=12))
    np.testing.assert_allclose(ours, C, rtol=1e-3, atol=1e-4 * C.max())


def bark(f):
    return 6.0 * np.arcsinh(f / 600.0)


def test_bark_scale_values():
    # 6·asinh(f/600), worked by hand: asinh(x) = ln(x + sqrt(x² + 1))
    #   f = 600 Hz: 6·ln(1 + √2)        = 6 × 0.881374 = 5.288242
    #   f = 4000 Hz: 6·ln(6.6667 + 6.7412) = 6 × 2.596 ...
    assert audio.hz_to_bark(600.0) == pytest.approx(5.288242, abs=1e-5)
    assert audio.hz_to_bark(4000.0) == pytest.approx(6 * np.log(20 / 3 + np.sqrt(409) / 3))
    assert audio.bark_to_hz(audio.hz_to_bark(1234.5)) == pytest.approx(1234.5)


def test_bark_filterbank_peaks_and_shape():
    sr, n_fft, n_bands = 8000, 256, 16
    W = audio.bark_filterbank(sr, n_fft, n_bands)
    assert W.shape == (16, 129) and W.dtype == np.float32
    # Centres evenly spaced in Bark from 0 to bark(4000) = 6·ln(6.6667 + 6.7412)
    # = 15.5751. By hand: band 5 is at 5 × 15.5751/15 = 5.1917 Bark
    # = 600·sinh(0.86528) = 600 × 0.97737 = 586.4 Hz; band 10 at 10.3834 Bark
    # = 600·sinh(1.73056) = 1640.0 Hz; band 0 at 0 Hz; band 15 at 4000 Hz.
    centres_hz = {0: 0.0, 5: 586.4, 10: 1640.0, 15: 4000.0}
    freqs = np.arange(129) * sr / n_fft
    for band, fc in centres_hz.items():
        nearest = int(np.argmin(np.abs(freqs - fc)))
        assert W[band, nearest] == pytest.approx(1.0)          # the peak is at the centre
        top = np.flatnonzero(W[band] > 1 - 1e-6)                # flat top: ±0.5 Bark
        assert np.all(np.diff(top) == 1) and top[0] <= nearest <= top[-1]
        assert np.all(np.abs(bark(freqs[top]) - bark(fc)) <= 0.5 + 1e-4)
    # skirts: -10 dB per Bark below, -25 dB per Bark above the flat top
    c = bark(4000.0) * 8 / 15
    assert c == pytest.approx(15.5751 * 8 / 15, abs=1e-4)
    for k in range(129):
        d = bark(freqs[k]) - c
        want = 1.0 if abs(d) <= 0.5 else (10 ** (d + 0.5) if d < 0 else 10 ** (-2.5 * (d - 0.5)))
        assert W[8, k] == pytest.approx(want, rel=1e-4, abs=1e-7)
    assert np.all(W.sum(axis=0) > 0)                            # covers 0..sr/2


def test_bark_filterbank_band_range():
    W = audio.bark_filterbank(16000, 512, 20, fmin=300.0, fmax=5000.0)
    freqs = np.arange(257) * 16000 / 512
    inside = (freqs >= 300) & (freqs <= 5000)
    assert np.all(W[:, ~inside] == 0)
    assert np.all(W[:, inside].sum(axis=0) > 0.5)
    assert W[0, np.argmin(np.abs(freqs - 300))] == 1.0
    assert W[-1, np.argmin(np.abs(freqs - 5000))] == 1.0
    with pytest.raises(ParameterError, match="fmin"):
        audio.bark_filterbank(16000, 512, 20, fmin=6000.0, fmax=5000.0)
    with pytest.raises(ParameterError, match="n_bands"):
        audio.bark_filterbank(16000, 512, 1)


def test_bark_spectrum_is_filterbank_times_power(speechlike):
    P = np.abs(librosa.stft(speechlike, n_fft=512, hop_length=160)) ** 2
    W = audio.bark_filterbank(16000, 512, 24)
    np.testing.assert_allclose(audio.spectrum(speechlike, 16000, kind="bark", n_bands=24,
                                              log=False), W @ P, rtol=1e-4)


@pytest.mark.parametrize("kind", audio.KINDS)
@pytest.mark.parametrize("sr", [8000, 22050])
def test_every_kind_is_finite_for_short_and_silent_input(kind, sr):
    bands = 1 + audio.default_n_fft(sr) // 2 if kind == "fft" else 40
    padded = np.concatenate([np.zeros(sr // 2), tone(sr // 10, sr=sr), np.zeros(sr // 2)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")    # no librosa "n_fft too large" warnings either
        for y in (padded, np.zeros(sr // 4), tone(1, sr=sr), tone(37, sr=sr), np.zeros(5)):
            S = audio.spectrum(y, sr, kind=kind)
            n_fft, hop = audio.default_n_fft(sr), audio.default_hop_length(sr)
            assert S.dtype == np.float32 and S.shape == (bands, 1 + max(y.size, n_fft) // hop)
            assert np.isfinite(S).all()
    S = audio.spectrum(padded, sr, kind=kind)
    assert S.shape[1] == 1 + padded.size // audio.default_hop_length(sr)


def test_spectrum_rejects_bad_input():
    for y, what in ((np.zeros(0), "empty"), (np.array([0.1, np.nan, 0.2]), "NaN"),
                    (np.zeros((2, 100)), "1-D")):
        with pytest.raises(ParameterError, match=what):
            audio.spectrum(y, SR)
    y = tone(800)
    with pytest.raises(ParameterError, match="kind"):
        audio.spectrum(y, SR, kind="wavelet")
    with pytest.raises(ParameterError, match="n_bands"):
        audio.spectrum(y, SR, kind="fft", n_bands=40)
    with pytest.raises(ParameterError, match="log"):
        audio.spectrum(y, SR, kind="cepstrum", log=False)
    with pytest.raises(ParameterError, match="fmax"):
        audio.spectrum(y, SR, fmax=5000.0)
    with pytest.raises(ParameterError, match="bins_per_octave"):
        audio.spectrum(y, SR, kind="cqt", bins_per_octave=4)
    with pytest.raises(ParameterError, match="n_mels applies to kind='cepstrum'"):
        audio.spectrum(y, SR, kind="mel", n_mels=64)
    with pytest.raises(ParameterError, match="no FFT bin"):
        audio.spectrum(y, SR, kind="fft", fmin=1010.0, fmax=1020.0)


def test_mel_bands_that_cover_no_fft_bin_are_refused_naming_the_most_there_can_be():
    y = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    with pytest.raises(ParameterError, match=r"n_bands=300 .* use at most (\d+) bands") as info:
        audio.spectrum(y, SR, n_bands=300)                   # n_fft 256: 129 bins, 31.25 Hz
    most = int(re.search(r"at most (\d+)", str(info.value)).group(1))
    assert 40 < most < 300
    S = audio.spectrum(y, SR, n_bands=most)                  # the most there can be: no empty band
    assert S.shape == (most, 101) and (S.std(axis=1) > 0).all()
    with pytest.raises(ParameterError, match="empty"):
        audio.spectrum(y, SR, n_bands=most + 1)
    with pytest.raises(ParameterError, match="n_mels=300"):
        audio.spectrum(y, SR, kind="cepstrum", n_bands=13, n_mels=300)
    assert audio.spectrum(y, SR, n_bands=300, n_fft=2048).shape[0] == 300   # finer bins: fine


# -- windows --------------------------------------------------------------------------

def spectra_set(rng, lengths, n_bands=5, dtype=np.float32):
    return [rng.standard_normal((n_bands, t)).astype(dtype) for t in lengths]


def test_sample_windows_layout_counts_and_round_trip(rng):
    spectra = spectra_set(rng, [7, 4, 12])
    for hop in (1, 2, 3):
        X, src, start = audio.sample_windows(spectra, n_frames=4, hop=hop, return_index=True)
        assert X.shape == (sum((t - 4) // hop + 1 for t in (7, 4, 12)), 20)
        assert X.dtype == np.float32
        for x, i, t in zip(X, src, start):
            np.testing.assert_array_equal(x, spectra[i][:, t:t + 4].T.ravel())
            np.testing.assert_array_equal(audio.windows_to_image(x, 5, 4),
                                          spectra[i][:, t:t + 4])
        assert set(start[src == 2]) == set(range(0, 9, hop))
    images = audio.windows_to_image(X, 5, 4)
    assert images.shape == (len(X), 5, 4)
    np.testing.assert_array_equal(images[-1], spectra[2][:, 6:10])    # last start, hop 3
    np.testing.assert_array_equal(audio.sample_windows(images, n_frames=4), X)
    with pytest.raises(ParameterError, match="20 values"):
        audio.windows_to_image(X[:, :19], 5, 4)


def test_sample_windows_random_is_reproducible_and_uniform(rng):
    spectra = spectra_set(rng, [10, 100], n_bands=3, dtype=np.float64)
    a = audio.sample_windows(spectra, n_frames=1, n_samples=22000, random_state=0,
                             return_index=True)
    b = audio.sample_windows(spectra, n_frames=1, n_samples=22000, random_state=0,
                             return_index=True)
    c = audio.sample_windows(spectra, n_frames=1, n_samples=22000, random_state=1)
    assert a[0].dtype == np.float64 and a[0].shape == (22000, 3)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c)
    # uniform over the 110 positions: 10/110 of the draws come from the short one
    assert np.mean(a[1] == 0) == pytest.approx(10 / 110, abs=0.01)
    counts = np.bincount(a[2][a[1] == 1], minlength=100)
    assert counts.min() > 0.6 * counts.mean() and counts.max() < 1.4 * counts.mean()
    for x, i, t in zip(a[0][:50], a[1], a[2]):
        np.testing.assert_array_equal(x, spectra[i][:, t])


def test_sample_windows_short_spectra(rng):
    spectra = spectra_set(rng, [2, 6, 3, 5])
    with pytest.warns(UserWarning, match="2 of 4 spectra are shorter than n_frames=4"):
        X, src, _ = audio.sample_windows(spectra, n_frames=4, return_index=True)
    assert len(X) == 3 + 2 and set(src) == {1, 3}
    with pytest.raises(ParameterError, match="every spectrum is shorter"):
        audio.sample_windows(spectra_set(rng, [2, 3]), n_frames=4)
    with pytest.raises(ParameterError, match="same number of bands"):
        audio.sample_windows([np.zeros((5, 8)), np.zeros((6, 8))], n_frames=2)
    with pytest.raises(ParameterError, match="n_frames"):
        audio.sample_windows(spectra, n_frames=0)


def test_sample_windows_is_fast_for_many_clips(rng):
    spectra = [rng.standard_normal((40, int(t))).astype(np.float32)
               for t in rng.integers(15, 120, 3000)]
    audio.sample_windows(spectra[:10], n_frames=4)
    t0 = time.perf_counter()
    X = audio.sample_windows(spectra, n_frames=4)
    Y = audio.sample_windows(spectra, n_frames=4, n_samples=20000, random_state=0)
    elapsed = time.perf_counter() - t0
    assert X.shape == (sum(s.shape[1] - 3 for s in spectra), 160) and Y.shape == (20000, 160)
    assert elapsed < 2.0, elapsed    # ~0.1 s; a loop per window takes far longer


# -- many files, cache -----------------------------------------------------------------

@pytest.fixture
def wav_files(tmp_path):
    folder = tmp_path / "wavs"
    folder.mkdir()
    return [write(folder / f"{k}.wav", tone(2000 + 300 * k, f=200.0 * (k + 1))) for k in range(5)]


def count_decodes(monkeypatch):
    calls = []
    real = _extract.decode

    def counting(*args, **kw):
        calls.append(args[1])
        return real(*args, **kw)

    monkeypatch.setattr(_extract, "decode", counting)
    return calls


def test_spectra_from_files_matches_spectrum_and_runs_in_parallel(wav_files):
    want = [audio.spectrum(audio.load(p)[0], SR, kind="bark", n_bands=20) for p in wav_files]
    for n_jobs in (1, 2):
        got = audio.spectra_from_files(wav_files, kind="bark", n_bands=20, n_jobs=n_jobs,
                                       cache_dir=False)
        assert len(got) == len(want)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


def test_cache_hits_and_misses(wav_files, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    calls = count_decodes(monkeypatch)
    first = audio.spectra_from_files(wav_files, kind="mel", n_jobs=1, cache_dir=cache)
    assert len(calls) == 5
    entries = sorted((cache / "spectra").rglob("*.npy"))
    assert len(entries) == 5 and not list((cache / "spectra").rglob(".tmp-*"))
    second = audio.spectra_from_files(wav_files, kind="mel", n_jobs=1, cache_dir=cache)
    assert len(calls) == 5                                   # all read from the cache
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    audio.spectra_from_files(wav_files, kind="mel", n_bands=20, n_jobs=1, cache_dir=cache)
    assert len(calls) == 10                                  # a parameter changed
    audio.spectra_from_files(wav_files, kind="mel", sr=16000, n_jobs=1, cache_dir=cache)
    assert len(calls) == 15
    write(wav_files[2], tone(2600, f=999.0))                 # a file's content changed
    third = audio.spectra_from_files(wav_files, kind="mel", n_jobs=1, cache_dir=cache)
    assert calls[15:] == [wav_files[2]]
    assert not np.array_equal(third[2], first[2])
    audio.spectra_from_files(wav_files, kind="mel", n_jobs=1, cache_dir=False)
    assert len(calls) == 21                                   # no cache: all decoded


def test_cache_default_folder_from_environment(wav_files, tmp_path, monkeypatch):
    monkeypatch.setenv("FASTSAE_CACHE_DIR", str(tmp_path / "envcache"))
    assert audio.default_cache_dir() == tmp_path / "envcache"
    audio.spectra_from_files(wav_files[:2], kind="fft", n_jobs=1)
    assert len(list((tmp_path / "envcache" / "spectra").rglob("*.npy"))) == 2


def test_spectra_from_files_skips_bad_files(wav_files, bad_files, tmp_path):
    paths = wav_files[:2] + list(bad_files)
    with pytest.warns(UserWarning, match=rf"skipped {len(bad_files)} of {len(paths)}"):
        spectra, kept = audio.spectra_from_files(paths, on_error="skip", n_jobs=1,
                                                 cache_dir=tmp_path / "c", return_paths=True)
    assert kept == wav_files[:2] and len(spectra) == 2
    with pytest.raises(ParameterError, match="kind"):
        audio.spectra_from_files(wav_files, kind="nope", cache_dir=False)
    with pytest.raises(ParameterError):
        audio.spectra_from_files(paths, n_jobs=1, cache_dir=False)


# -- patches a few bands high, warping along frequency, band frequencies ------------

def test_sample_patches_are_pieces_of_the_spectra():
    rng = np.random.default_rng(0)
    spectra = [rng.standard_normal((10, int(n))).astype(np.float32) for n in (5, 9, 30)]
    X = audio.sample_patches(spectra, (4, 3), n_samples=300, random_state=1)
    assert X.shape == (300, 12) and X.dtype == np.float32
    pieces = {spectra[i][r:r + 4, c:c + 3].T.tobytes()
              for i in range(3) for r in range(7) for c in range(spectra[i].shape[1] - 2)}
    assert all(x.tobytes() in pieces for x in X)
    # every place equally likely: the long clip gives most patches (28 of 40 columns of places)
    from_long = sum(x.tobytes() in {spectra[2][r:r + 4, c:c + 3].T.tobytes()
                                    for r in range(7) for c in range(28)} for x in X)
    assert 0.6 < from_long / 300 < 0.8
    np.testing.assert_array_equal(X, audio.sample_patches(spectra, (4, 3), n_samples=300,
                                                          random_state=1))
    full = audio.sample_patches(spectra, (10, 3), n_samples=5, random_state=0)
    assert full.shape == (5, 30)


@pytest.mark.parametrize("bad", [dict(patch_shape=(11, 3)), dict(patch_shape=(4, 40)),
                                 dict(patch_shape=(0, 3)), dict(n_samples=-1)])
def test_sample_patches_refuses_impossible_sizes(bad):
    spectra = [np.zeros((10, 20), np.float32)]
    kw = dict(dict(patch_shape=(4, 3), n_samples=5), **bad)
    with pytest.raises(ParameterError):
        audio.sample_patches(spectra, kw.pop("patch_shape"), **kw)


def test_warp_bands_moves_a_peak_along_frequency():
    S = np.zeros((40, 3))
    S[20] = 1.0
    assert np.argmax(audio.warp_bands(S, 1.1)[:, 0]) == 18       # 18 * 1.1 = 19.8
    assert np.argmax(audio.warp_bands(S, 0.9)[:, 0]) == 22       # 22 * 0.9 = 19.8
    np.testing.assert_array_equal(audio.warp_bands(S, 1.0), S)
    with pytest.raises(ParameterError):
        audio.warp_bands(S, 0.0)


def test_smooth_bands_keeps_the_envelope_and_removes_fine_structure():
    rng = np.random.default_rng(2)
    n = 23                                                   # an odd number of bands
    j = np.arange(n)
    # orthonormal DCT-II basis, written out: row k is cepstral coefficient k
    basis = np.cos(np.pi * j[:, None] * (j[None, :] + 0.5) / n) * np.sqrt(2.0 / n)
    basis[0] /= np.sqrt(2.0)
    for dtype in (np.float32, np.float64):
        S = rng.standard_normal((n, 9)).astype(dtype)
        for k in (1, 5, 22):
            T = audio.smooth_bands(S, k)
            assert T.shape == S.shape and T.dtype == dtype
            expected = basis[:k].T @ (basis[:k] @ S.astype(np.float64))   # the projection
            np.testing.assert_allclose(T, expected, atol=1e-5 if dtype == np.float32 else 1e-12)
        np.testing.assert_allclose(audio.smooth_bands(S, n), S)
    # a smooth envelope plus a ripple about every two bands (resolved harmonics): it goes
    envelope = (10.0 * basis[1] - 4.0 * basis[3])[:, None] * np.ones((1, 4))
    ripple = 3.0 * basis[n - 2][:, None] * np.ones((1, 4))
    np.testing.assert_allclose(audio.smooth_bands(envelope + ripple, 8), envelope, atol=1e-9)
    assert audio.smooth_bands(np.ones((n, 2), dtype=np.int64), 3).dtype == np.float64
    with pytest.raises(ParameterError, match="n_coefficients"):
        audio.smooth_bands(S, 0)
    with pytest.raises(ParameterError, match="spectrogram"):
        audio.smooth_bands(np.zeros(5), 3)
    with pytest.raises(ParameterError, match="real numbers"):
        audio.smooth_bands(np.ones((4, 2), dtype=complex), 2)
    with pytest.raises(ParameterError, match="NaN"):
        audio.smooth_bands(np.where(np.eye(4, 2) > 0, np.nan, 0.0), 2)


def test_stretch_frames_resamples_time_and_keeps_the_ends():
    rng = np.random.default_rng(1)
    for dtype in (np.float32, np.float64):
        S = rng.standard_normal((7, 23)).astype(dtype)
        for factor in (0.8, 1.0, 1.37):
            T = audio.stretch_frames(S, factor)
            assert T.shape == (7, round(23 * factor)) and T.dtype == dtype
            np.testing.assert_allclose(T[:, [0, -1]], S[:, [0, -1]], rtol=1e-6)
        np.testing.assert_allclose(audio.stretch_frames(S, 1.0), S, rtol=1e-6)
    ramp = np.arange(11.0)[None, :]                      # a ramp stays a ramp
    np.testing.assert_allclose(audio.stretch_frames(ramp, 2.0)[0], np.linspace(0, 10, 22))
    with pytest.raises(ParameterError, match="factor"):
        audio.stretch_frames(S, -1.0)
    with pytest.raises(ParameterError, match="spectrogram"):
        audio.stretch_frames(np.zeros(5), 1.0)


def test_random_channel_stays_within_its_bounds():
    from fastsae.audio._clips import random_channel
    rng = np.random.default_rng(0)
    curves = np.array([random_channel(40, 6.0, 2.0, rng) for _ in range(200)])
    assert np.abs(curves).max() <= 3.0 + 3 * 2.0
    assert curves.std(axis=0).min() > 0.5                 # every band moves
    np.testing.assert_array_equal(random_channel(40, 0.0, 0.0, rng), np.zeros(40))


def test_band_frequencies_follow_the_spectrum_kinds():
    mel = audio.band_frequencies(8000, kind="mel", n_bands=40)
    assert mel.shape == (40,) and np.all(np.diff(mel) > 0) and mel[-1] < 4000
    assert audio.band_frequencies(16000, kind="fft").shape == (audio.default_n_fft(16000) // 2 + 1,)
    bark = audio.band_frequencies(8000, kind="bark", n_bands=20)
    assert bark[0] == pytest.approx(0.0) and bark[-1] == pytest.approx(4000.0)
    with pytest.raises(ParameterError, match="cepstrum"):
        audio.band_frequencies(8000, kind="cepstrum")
