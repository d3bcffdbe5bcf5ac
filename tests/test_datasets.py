import os
import time

import numpy as np
import pytest
import soundfile as sf

from fastsae import ParameterError, audio, datasets


# -- synthetic ------------------------------------------------------------------------

def test_synthetic_is_deterministic_and_has_the_promised_classes():
    t0 = time.perf_counter()
    clips, labels = datasets.synthetic(n_per_class=50, random_state=0)
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0, elapsed
    assert len(datasets.SYNTHETIC_CLASSES) == 10 and len(clips) == 500
    np.testing.assert_array_equal(labels, np.repeat(np.arange(10), 50))
    assert all(c.dtype == np.float32 and c.ndim == 1 for c in clips)
    assert all(0.3 * 8000 - 1 <= c.size <= 0.8 * 8000 + 1 for c in clips)
    assert all(np.isfinite(c).all() and np.abs(c).max() < 1.0 for c in clips)
    again, labels2 = datasets.synthetic(n_per_class=50, random_state=0)
    assert all(np.array_equal(a, b) for a, b in zip(clips, again))
    other, _ = datasets.synthetic(n_per_class=50, random_state=1)
    assert not np.array_equal(clips[0][:100], other[0][:100])
    few, few_labels = datasets.synthetic(n_per_class=3, n_classes=8, sr=16000)
    assert len(few) == 24 and set(few_labels) == set(range(8))
    assert all(0.3 * 16000 - 1 <= c.size <= 0.8 * 16000 + 1 for c in few)


def test_synthetic_rejects_bad_arguments():
    for kw, what in ((dict(n_classes=11), "n_classes"), (dict(n_per_class=0), "n_per_class"),
                     (dict(sr=1000), "sr"), (dict(duration=(0.5, 0.2)), "duration"),
                     (dict(random_state="x"), "random_state")):
        with pytest.raises(ParameterError, match=what):
            datasets.synthetic(**kw)


def softmax_accuracy(F, labels, seed=0, iters=400, lr=0.5, lam=1e-3):
    """Multinomial logistic regression by gradient descent; accuracy on a held-out half."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    tr, te = order[: len(order) // 2], order[len(order) // 2:]
    mu, sd = F[tr].mean(0), F[tr].std(0) + 1e-9
    Z = np.c_[(F - mu) / sd, np.ones(len(F))]
    k = labels.max() + 1
    Y = np.eye(k)[labels[tr]]
    W = np.zeros((Z.shape[1], k))
    for _ in range(iters):
        P = Z[tr] @ W
        P = np.exp(P - P.max(1, keepdims=True))
        P /= P.sum(1, keepdims=True)
        W -= lr * (Z[tr].T @ (P - Y) / len(tr) + lam * W)
    return np.mean(np.argmax(Z[te] @ W, 1) == labels[te])


def test_synthetic_classes_differ_in_structure_not_loudness():
    clips, labels = datasets.synthetic(n_per_class=30, random_state=1)

    def structure(y):
        S = audio.spectrum(y, 8000, kind="mel", n_bands=40)
        S = S - S.mean()              # level-free: only the spectro-temporal shape
        d = np.diff(S, axis=1)
        return np.concatenate([S.mean(1), S.std(1), d.mean(1), np.abs(d).mean(1)])

    F = np.array([structure(y) for y in clips])
    loudness = np.array([[np.log(np.sqrt(np.mean(y.astype(np.float64) ** 2)))] for y in clips])
    acc = softmax_accuracy(F, labels)
    acc_rms = softmax_accuracy(loudness, labels)
    assert acc > 0.75, acc            # chance is 0.1
    assert acc_rms < 0.2, acc_rms


# -- load_folder ----------------------------------------------------------------------

def make_folder(root, sr=8000):
    rng = np.random.default_rng(0)
    for cls, n in (("birds", 2), ("cars", 3)):
        (root / cls).mkdir(parents=True)
        for k in range(n):
            sf.write(str(root / cls / f"{k}.wav"), 0.1 * rng.standard_normal(800), sr)
    (root / "cars" / "deep").mkdir()
    sf.write(str(root / "cars" / "deep" / "x.flac"), 0.1 * rng.standard_normal(400), sr)
    (root / "cars" / "notes.txt").write_text("not audio")
    (root / "README.md").write_text("top-level file")
    (root / ".DS_Store").write_bytes(b"\0")


def test_load_folder_labels_are_sub_folder_names(tmp_path):
    make_folder(tmp_path)
    with pytest.warns(UserWarning, match="ignored 2 file"):
        clips, labels, meta = datasets.load_folder(tmp_path, n_jobs=1, return_meta=True)
    assert labels == ["birds", "birds", "cars", "cars", "cars", "cars"]
    assert [c.size for c in clips] == [800, 800, 800, 800, 800, 400]
    assert meta["path"][-1].endswith(os.path.join("deep", "x.flac"))
    assert set(meta["sr"]) == {8000}
    with pytest.warns(UserWarning):
        clips16, _ = datasets.load_folder(tmp_path, sr=16000, n_jobs=1)
    assert clips16[0].size == 1600


def test_load_folder_bad_files(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "birds" / "broken.wav").write_text("not a wav")
    with pytest.warns(UserWarning, match="ignored"):
        with pytest.raises(ParameterError, match="broken.wav"):
            datasets.load_folder(tmp_path, n_jobs=1)
    with pytest.warns(UserWarning) as rec:
        clips, labels = datasets.load_folder(tmp_path, on_error="skip", n_jobs=1)
    assert any("skipped 1 of 7" in str(w.message) and "broken.wav" in str(w.message)
               for w in rec)
    assert len(clips) == 6 and labels.count("birds") == 2
    with pytest.raises(ParameterError, match="not an existing folder"):
        datasets.load_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ParameterError, match="no audio files"):
        datasets.load_folder(tmp_path / "empty")


# -- FSDD -----------------------------------------------------------------------------

def make_fake_fsdd(root):
    rec = root / "recordings"
    rec.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for digit in (3, 7):
        for speaker in ("ann", "bob"):
            for index in range(7):
                sf.write(str(rec / f"{digit}_{speaker}_{index}.wav"),
                         0.1 * rng.standard_normal(400 + 10 * index), 8000, subtype="PCM_16")
    (rec / "notes.wav").write_text("odd")
    return rec


def test_fsdd_layout_and_split_on_a_small_copy(tmp_path):
    rec = make_fake_fsdd(tmp_path)
    for path in (tmp_path, rec):
        with pytest.warns(UserWarning, match="left out 1 file"):
            clips, labels, meta = datasets.fsdd(path, n_jobs=1)
        assert len(clips) == 28 and sorted(set(labels.tolist())) == [3, 7]
        assert set(meta["speaker"]) == {"ann", "bob"} and set(meta["sr"]) == {8000}
        i = np.flatnonzero((labels == 7) & (meta["speaker"] == "bob") & (meta["index"] == 6))[0]
        assert clips[i].size == 460 and meta["path"][i].endswith("7_bob_6.wav")
        train, test = datasets.fsdd_split(meta)
        assert len(test) == 2 * 2 * 5 and len(train) == 2 * 2 * 2
        assert np.all(meta["index"][test] <= 4) and np.all(meta["index"][train] >= 5)
        assert np.intersect1d(train, test).size == 0
    (tmp_path / "other").mkdir()
    with pytest.raises(ParameterError, match="recordings"):
        datasets.fsdd_files(tmp_path / "other")
    with pytest.raises(ParameterError, match="index"):
        datasets.fsdd_split({"speaker": []})


@pytest.mark.fsdd
def test_fsdd_real_dataset(fsdd_path):
    labels, meta = datasets.fsdd_files(fsdd_path)
    assert len(labels) == 3000
    assert np.array_equal(np.bincount(labels), np.full(10, 300))
    assert sorted(set(meta["speaker"])) == ["george", "jackson", "lucas", "nicolas", "theo",
                                            "yweweler"]
    assert sorted(set(meta["index"].tolist())) == list(range(50))
    train, test = datasets.fsdd_split(meta)
    assert len(test) == 300 and len(train) == 2700
    # every (speaker, digit) pair contributes indices 0-4 to the test set
    pairs = {(s, d) for s, d in zip(meta["speaker"][test], labels[test])}
    assert len(pairs) == 60
    # the recordings/ folder itself is accepted too
    assert len(datasets.fsdd_files(fsdd_path / "recordings")[0]) == 3000


@pytest.mark.fsdd
def test_fsdd_load_a_subset(fsdd_path):
    labels, meta = datasets.fsdd_files(fsdd_path)
    pick = np.flatnonzero(meta["index"] == 0)[::3]         # 20 files
    clips, sr = audio.load_many(meta["path"][pick], n_jobs=1)
    assert sr == 8000 and len(clips) == len(pick)
    assert all(0.1 * 8000 < c.size < 2.5 * 8000 for c in clips)
    spectra = audio.spectra_from_files(meta["path"][pick], kind="mel", n_jobs=1,
                                       cache_dir=False)
    X = audio.sample_windows(spectra, n_frames=4, n_samples=500, random_state=0)
    assert X.shape == (500, 160) and np.isfinite(X).all()


def test_a_flat_folder_is_refused_without_a_misleading_warning(tmp_path):
    import warnings
    for i in range(3):
        sf.write(tmp_path / f"{i}.wav", np.zeros(800, dtype=np.float32), 8000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")               # "ignored 3 file(s)" would be wrong
        with pytest.raises(ParameterError, match="class sub-folders"):
            datasets.folder_files(tmp_path)
    (tmp_path / "a").mkdir()
    sf.write(tmp_path / "a" / "x.wav", np.zeros(800, dtype=np.float32), 8000)
    with pytest.warns(UserWarning, match="ignored 3 file"):
        files, labels = datasets.folder_files(tmp_path)
    assert labels == ["a"]
