"""The fastsae command, end to end in a temporary folder, on tiny settings."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from matplotlib.image import imread

import fastsae
from fastsae.cli import main


def _tone(freq, sr=8000, n=3200, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t * (1 + 0.2 * t)) + 0.01 * rng.standard_normal(n)).astype(np.float32)


@pytest.fixture
def audio_dir(tmp_path):
    root = tmp_path / "sounds"
    for label, base in (("low", 220.0), ("high", 1500.0)):
        (root / label).mkdir(parents=True)
        for i in range(6):
            sf.write(root / label / f"{i}.wav", _tone(base * (1 + 0.03 * i), seed=i), 8000)
    return root


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


TRAIN = ["--hidden", "6", "--n-frames", "3", "--n-windows", "400", "--max-iter", "8", "--quiet",
         "--no-cache", "--n-jobs", "1"]


def test_features_train_classify_show(audio_dir, tmp_path, capsys):
    code, out, err = run(["features", audio_dir, "-o", tmp_path / "spectra.npz", "--n-bands", "20",
                          "--no-cache", "--n-jobs", "1"], capsys)
    assert code == 0, err
    spectra, info = fastsae.audio.load_spectra(tmp_path / "spectra.npz")
    assert len(spectra) == 12 and spectra[0].shape[0] == 20
    assert sorted(set(info["labels"])) == ["high", "low"]

    code, out, err = run(["train-sae", audio_dir, "-o", tmp_path / "sae.npz", "--n-bands", "20"] + TRAIN,
                         capsys)
    assert code == 0, err
    model = fastsae.load(tmp_path / "sae.npz")
    assert model["features"].sae_.n_iter_ >= 1 and model["spectrogram"].n_bands == 20
    assert not (tmp_path / "sae.checkpoint.npz").exists()

    # train-sae also takes the spectra written by `features`
    code, _, err = run(["train-sae", tmp_path / "spectra.npz", "-o", tmp_path / "sae2.npz"] + TRAIN,
                       capsys)
    assert code == 0, err

    code, out, err = run(["classify", audio_dir, "--sae", tmp_path / "sae.npz", "-o",
                          tmp_path / "report", "--test-size", "0.34", "--quiet", "--no-cache"], capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["n_test"] == 4 and metrics["n_train"] == 8
    assert metrics["train_accuracy"] == 1.0            # two well-separated tones
    assert (tmp_path / "report" / "confusion.png").exists()
    assert "accuracy" in (tmp_path / "report" / "report.md").read_text()

    code, out, err = run(["show", tmp_path / "sae.npz", "-o", tmp_path / "filters.png"], capsys)
    assert code == 0, err
    png = imread(tmp_path / "filters.png")
    assert png.shape[0] > 200 and png.shape[1] > 200 and png[..., :3].std() > 0.05
    assert "6 filters (12 bands x 3 frames), by centre frequency" in out
    code, out, err = run(["show", tmp_path / "sae.npz", "--decoder", "-o", tmp_path / "dec.png"],
                         capsys)
    assert code == 0, err
    assert "6 filters (12 bands x 3 frames)" in out
    dec = imread(tmp_path / "dec.png")
    assert dec.shape != png.shape and dec[..., :3].std() > 0.05


def _folder(root, freqs, n=5, seed=0):
    for label, base in freqs.items():
        (root / label).mkdir(parents=True)
        for i in range(n):
            sf.write(root / label / f"{i}.wav", _tone(base * (1 + 0.02 * i), seed=seed + i), 8000)
    return root


def test_classify_trains_on_one_folder_and_scores_another(tmp_path, capsys):
    train = _folder(tmp_path / "train", {"low": 220.0, "high": 1500.0}, seed=0)
    test = _folder(tmp_path / "test", {"low": 240.0, "high": 1400.0}, n=3, seed=10)
    code, out, err = run(["classify", train, "--test", test, "--fast", "-o", tmp_path / "rep",
                          "--quiet", "--no-cache", "--n-jobs", "1"], capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert metrics["n_train"] == 10 and metrics["n_test"] == 6
    assert metrics["test_accuracy"] == 1.0 and set(metrics["recall"]) == {"high", "low"}
    assert np.sum(metrics["confusion"]) == 6 and "ClipClassifier" in metrics["model"]
    assert (tmp_path / "rep" / "confusion.png").exists()
    # the fitted classifier is saved, spectrogram settings included, and predicts files
    clf = fastsae.load(tmp_path / "rep" / "classifier.npz")
    files = sorted(str(f) for f in (test / "high").iterdir())
    assert list(clf.predict(files)) == ["high"] * 3
    assert "recall" in out and "low" in out
    # a test folder with a class the training clips lack is refused before any training
    _folder(tmp_path / "odd", {"middle": 700.0}, n=2)
    code, out, err = run(["classify", train, "--test", tmp_path / "odd", "--fast", "-o",
                          tmp_path / "rep2", "--quiet", "--no-cache"], capsys)
    assert code == 2 and "middle" in err


def test_demo_fast_writes_its_report(tmp_path, capsys):
    code, out, err = run(["demo", "--fast", "-o", tmp_path / "demo", "--quiet"], capsys)
    assert code == 0, err
    report = tmp_path / "demo"
    for name in ("filters.png", "training.png", "confusion.png", "metrics.json", "report.md"):
        assert (report / name).stat().st_size > 0, name
    metrics = json.loads((report / "metrics.json").read_text())
    for stage in ("baseline", "default", "stacked"):
        assert 0.0 <= metrics[stage]["test_accuracy"] <= 1.0
    assert set(metrics["default"]["members"]) == {"features 12x8", "spectrogram", "conv net"}
    assert metrics["baseline"]["test_accuracy"] > 2 * metrics["chance"]
    assert metrics["default"]["test_accuracy"] > 2 * metrics["chance"]
    # --quiet silences progress, not the results
    assert "default recipe" in out and "report:" in out and "%" in out
    img = imread(report / "filters.png")
    assert img[..., :3].std() > 0.05


@pytest.mark.parametrize("args,message", [
    (["train-sae", "/no/such/folder", "-o", "x.npz"], "no such folder"),
    (["features", "EMPTY", "-o", "x.npz"], "no audio files"),
    (["show", "/no/such/model.npz"], "does not exist"),
    (["train-sae", "AUDIO", "-o", "x.npz", "--hidden", "0"], "--hidden must be a positive"),
    (["classify", "AUDIO", "--sae", "/no/model.npz"], "does not exist"),
    (["train-sae", "AUDIO", "-o", "model.txt"], "must end in .npz"),
    (["train-sae", "AUDIO", "-o", "FILE/model.npz"], "is a file, not a folder"),
    (["classify", "AUDIO", "-o", "FILE"], "not a folder"),
    (["features", "AUDIO", "-o", "x.txt"], "must end in .npz"),
    (["features", "AUDIO", "-o", "FILE/x.npz"], "is a file, not a folder"),
    (["train-sae", "AUDIO", "-o", "x.npz", "--checkpoint-every", "-1"], "--checkpoint-every"),
    (["train-sae", "AUDIO", "-o", "x.npz", "--sparsity", "2"], "sparsity must be in"),
    (["show", "AUDIO", "-o", "x.png"], "is a folder"),
    (["features", "AUDIO", "-o", "x.npz", "--kind", "fft", "--n-bands", "20"], "n_bands must be None"),
])
def test_errors_are_one_line_without_traceback(args, message, tmp_path, audio_dir, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("not a folder")
    args = [str(tmp_path / "empty") if a == "EMPTY" else str(audio_dir) if a == "AUDIO" else
            a.replace("FILE", str(tmp_path / "file")) for a in args]
    code, out, err = run(args, capsys)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_unreadable_file_fails_or_is_skipped(audio_dir, tmp_path, capsys):
    (audio_dir / "low" / "broken.wav").write_bytes(b"RIFF....not really a wav")
    code, out, err = run(["features", audio_dir, "-o", tmp_path / "s.npz", "--no-cache",
                          "--n-jobs", "1"], capsys)
    assert code == 1 and "broken.wav" in err            # the data, not the call: exit 1
    with pytest.warns(UserWarning, match="skipped 1"):
        code, out, err = run(["features", audio_dir, "-o", tmp_path / "s.npz", "--no-cache",
                              "--n-jobs", "1", "--on-error", "skip"], capsys)
    assert code == 0 and len(fastsae.audio.load_spectra(tmp_path / "s.npz")[0]) == 12


def test_outputs_are_what_is_printed_and_fft_works(audio_dir, tmp_path, capsys):
    code, out, err = run(["features", audio_dir, "-o", tmp_path / "fft.npz", "--kind", "fft",
                          "--no-cache", "--n-jobs", "1"], capsys)
    assert code == 0, err
    assert str(tmp_path / "fft.npz") in out and (tmp_path / "fft.npz").exists()
    spectra, _ = fastsae.audio.load_spectra(tmp_path / "fft.npz")
    assert spectra[0].shape[0] == fastsae.audio.default_n_fft(8000) // 2 + 1
    assert not list(tmp_path.glob("*.tmp"))


def test_a_damaged_spectra_file_is_a_data_error(tmp_path, capsys):
    bad = tmp_path / "spectra.npz"
    bad.write_bytes(b"PK\x03\x04 this is not a zip archive")
    code, out, err = run(["train-sae", bad, "-o", tmp_path / "m.npz", "--quiet"], capsys)
    assert code == 1 and "damaged" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_unknown_option_value_is_rejected(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["features", "x", "-o", "y.npz", "--kind", "wavelet"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_verbose_shows_the_traceback(capsys):
    with pytest.raises(Exception):
        main(["show", "/no/such/model.npz", "--verbose"])


def test_ctrl_c_keeps_the_best_weights_and_resume_continues(audio_dir, tmp_path):
    """SIGINT during train-sae writes the model (exit 130); --resume continues from the checkpoint."""
    out = tmp_path / "sae.npz"
    ckpt = tmp_path / "sae.checkpoint.npz"
    cmd = [sys.executable, "-m", "fastsae.cli", "train-sae", str(audio_dir), "-o", str(out),
           # large enough not to converge (~50 s) before the signal, whatever the machine's load
           "--hidden", "25", "--n-frames", "3", "--n-windows", "20000", "--max-iter", "100000",
           "--patch-bands", "0", "--checkpoint-every", "2", "--quiet", "--no-cache",
           "--n-jobs", "1"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # a shell's background job inherits SIGINT ignored, and Python then keeps ignoring it:
    # give the command the terminal's default, as a user pressing Ctrl-C has
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr.decode()
    model = fastsae.load(out)
    sae = model["features"].sae_
    assert sae.interrupted_ and np.isfinite(sae.W1_).all()
    assert sae.loss_curve_[-1] < sae.loss_curve_[0]
    # the checkpoint is a resumable model: continue it for a few more iterations
    done = fastsae.load(ckpt)["features"].sae_.n_iter_
    assert done >= 2 and done % 2 == 0
    code = main(["train-sae", str(audio_dir), "-o", str(tmp_path / "resumed.npz"), "--resume",
                 "--checkpoint", str(ckpt), "--hidden", "25", "--n-frames", "3", "--n-windows", "20000",
                 "--patch-bands", "0", "--max-iter", str(done + 5), "--quiet", "--no-cache",
                 "--n-jobs", "1"])
    assert code == 0
    resumed = fastsae.load(tmp_path / "resumed.npz")["features"].sae_
    assert resumed.n_iter_ == done + 5
    assert not ckpt.exists()                  # a finished run leaves no checkpoint behind


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_resume_after_an_interruption_ends_at_the_uninterrupted_parameters(tmp_path, backend):
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 60)
    spectra = [(-40 + 10 * np.sin(2 * np.pi * (k % 4 + 1) * t)[None, :]
                + 3 * rng.standard_normal((12, 60))) for k in range(16)]
    kw = dict(n_hidden=8, n_frames=4, patch_bands=6, n_windows=2000, max_iter=60,
              random_state=0, trim_db=None, backend=backend, n_jobs=1)
    whole = fastsae.SelfTaughtFeatures(**kw).fit(spectra)

    feats = fastsae.SelfTaughtFeatures(**kw)
    ckpt = tmp_path / "ckpt.npz"

    def checkpoint_then_stop(iteration, theta, cost):
        feats.set_training_state(theta, iteration)
        fastsae.save(feats, ckpt)
        if iteration == 30:
            raise KeyboardInterrupt

    with pytest.warns(RuntimeWarning, match="interrupted"):
        feats.fit(spectra, callback=checkpoint_then_stop)
    assert feats.sae_.n_iter_ == 30
    saved = fastsae.load(ckpt)
    assert saved.sae_.optimizer_state_["n_iter"] == 30
    resumed = saved.fit(spectra, resume=True)
    assert resumed.sae_.n_iter_ == whole.sae_.n_iter_ == 60
    # the whole L-BFGS state travelled in the checkpoint: the same run, bit for bit
    for name in ("W1_", "W2_", "b1_", "b2_"):
        np.testing.assert_array_equal(getattr(resumed.sae_, name), getattr(whole.sae_, name))
    assert resumed.sae_.loss_curve_ == whole.sae_.loss_curve_
    assert not hasattr(resumed.sae_, "optimizer_state_")        # a finished run drops it


def test_fsdd_labels_and_split(tmp_path, capsys):
    rec = tmp_path / "fsdd" / "recordings"
    rec.mkdir(parents=True)
    for digit, base in ((0, 220.0), (1, 1500.0)):
        for index in range(8):
            sf.write(rec / f"{digit}_alice_{index}.wav", _tone(base * (1 + 0.02 * index), seed=index),
                     8000)
    code, out, err = run(["features", tmp_path / "fsdd", "--labels", "fsdd", "--n-bands", "20",
                          "-o", tmp_path / "spectra.npz", "--quiet", "--no-cache"], capsys)
    assert code == 0, err
    spectra, info = fastsae.audio.load_spectra(tmp_path / "spectra.npz")
    assert len(spectra) == 16 and sorted(set(info["labels"])) == ["0", "1"]
    code, _, err = run(["train-sae", tmp_path / "fsdd", "-o", tmp_path / "sae.npz", "--n-bands", "20"]
                       + TRAIN, capsys)
    assert code == 0, err
    code, out, err = run(["classify", tmp_path / "fsdd", "--labels", "fsdd", "--sae",
                          tmp_path / "sae.npz", "-o", tmp_path / "report", "--quiet", "--no-cache"],
                         capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["n_test"] == 10 and metrics["n_train"] == 6     # index 0-4 is the test set
    # a spectra file has no FSDD names: a clear error, no traceback
    code, out, err = run(["classify", tmp_path / "spectra.npz", "--labels", "fsdd", "--sae",
                          tmp_path / "sae.npz"], capsys)
    assert code != 0 and "FSDD folder" in err and "Traceback" not in err
    # FSDD's names without --labels fsdd: one error line that says what to add
    proc = subprocess.run([sys.executable, "-m", "fastsae.cli", "classify", str(rec), "--fast",
                           "--no-cache"], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and "--labels fsdd" in proc.stderr


def test_warnings_are_one_line_without_python_s_file_and_code(audio_dir, tmp_path):
    (audio_dir / "notes.txt").write_text("not audio")
    proc = subprocess.run([sys.executable, "-m", "fastsae.cli", "features", str(audio_dir), "-o",
                           str(tmp_path / "s.npz"), "--quiet", "--no-cache"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["fastsae: warning: ignored 1 file(s) in "
                                        f"'{audio_dir}' that are not audio files inside a "
                                        "class sub-folder"]


def test_train_sae_on_spectra_keeps_their_settings(tmp_path, audio_dir, capsys):
    code, _, err = run(["features", audio_dir, "--kind", "bark", "--n-bands", "20", "--hop-length",
                        "128", "-o", tmp_path / "spectra.npz", "--quiet", "--no-cache"], capsys)
    assert code == 0, err
    code, _, err = run(["train-sae", tmp_path / "spectra.npz", "-o", tmp_path / "sae.npz"] + TRAIN,
                       capsys)
    assert code == 0, err
    spec = fastsae.load(tmp_path / "sae.npz")["spectrogram"]
    assert (spec.kind, spec.n_bands, spec.hop_length) == ("bark", 20, 128)


def test_misuse_that_would_lose_work_is_refused_before_any(audio_dir, tmp_path, capsys):
    code, _, err = run(["features", audio_dir, "-o", tmp_path / "spectra.npz", "--quiet",
                        "--no-cache"], capsys)
    assert code == 0, err
    before = (tmp_path / "spectra.npz").read_bytes()
    # a finished run removes its checkpoint: as the -o file, that would remove the model
    code, _, err = run(["train-sae", tmp_path / "spectra.npz", "-o", tmp_path / "m.npz",
                        "--checkpoint", tmp_path / "m.npz", "--checkpoint-every", "2"] + TRAIN,
                       capsys)
    assert code != 0 and "--checkpoint" in err and not (tmp_path / "m.npz").exists()
    code, _, err = run(["train-sae", tmp_path / "spectra.npz", "-o", tmp_path / "spectra.npz"]
                       + TRAIN, capsys)
    assert code != 0 and "is the input" in err
    assert (tmp_path / "spectra.npz").read_bytes() == before
    # resuming from a file that is no train-sae checkpoint
    code, _, err = run(["classify", audio_dir, "--fast", "-o", tmp_path / "rep", "--quiet",
                        "--no-cache", "--n-jobs", "1"], capsys)
    assert code == 0, err
    code, _, err = run(["train-sae", tmp_path / "spectra.npz", "-o", tmp_path / "s.npz",
                        "--resume", "--checkpoint", tmp_path / "rep" / "classifier.npz"] + TRAIN,
                       capsys)
    assert code != 0 and "not a checkpoint" in err


def test_resume_to_no_more_iterations_than_done_is_refused(audio_dir, tmp_path, capsys):
    """It would replace the -o model with the older checkpoint and delete the checkpoint."""
    code, _, err = run(["train-sae", audio_dir, "-o", tmp_path / "m.npz"] + TRAIN, capsys)
    assert code == 0, err
    done = fastsae.load(tmp_path / "m.npz")["features"].sae_.n_iter_
    shutil.copy(tmp_path / "m.npz", tmp_path / "ck.npz")
    (tmp_path / "newer.npz").write_bytes(b"the newer model")
    for total in (done, done - 3):
        code, _, err = run(["train-sae", audio_dir, "-o", tmp_path / "newer.npz", "--resume",
                            "--checkpoint", tmp_path / "ck.npz"] + TRAIN + ["--max-iter", total],
                           capsys)
        assert code != 0 and f"done {done} iterations" in err and "Traceback" not in err
    assert (tmp_path / "newer.npz").read_bytes() == b"the newer model"
    assert (tmp_path / "ck.npz").exists()


def test_options_that_a_checkpoint_model_or_spectra_file_sets_must_agree_with_it(
        audio_dir, tmp_path, capsys):
    """They would be dropped silently: refused where they differ, accepted where they agree."""
    code, _, err = run(["train-sae", audio_dir, "-o", tmp_path / "m.npz"] + TRAIN, capsys)
    assert code == 0, err
    done = fastsae.load(tmp_path / "m.npz")["features"].sae_.n_iter_
    shutil.copy(tmp_path / "m.npz", tmp_path / "ck.npz")
    resume = ["train-sae", audio_dir, "-o", tmp_path / "r.npz", "--resume", "--checkpoint",
              tmp_path / "ck.npz"]
    code, _, err = run(resume + TRAIN + ["--max-iter", done + 3, "--hidden", 7, "--n-bands", 20],
                       capsys)
    assert code == 2 and "--hidden 7 (it has 6)" in err and "--n-bands 20 (it has 40)" in err
    assert not (tmp_path / "r.npz").exists() and (tmp_path / "ck.npz").exists()
    code, _, err = run(resume + TRAIN + ["--max-iter", done + 3, "--n-bands", 40], capsys)
    assert code == 0, err                     # the same command again, with --resume
    assert fastsae.load(tmp_path / "r.npz")["features"].sae_.n_iter_ > done

    sae = ["classify", audio_dir, "--sae", tmp_path / "m.npz", "-o", tmp_path / "rep",
           "--quiet", "--no-cache"]
    for extra, message in ((["--kind", "bark"], "--kind bark (it has mel)"),
                           (["--fast"], "leave out --fast")):
        code, _, err = run(sae + extra, capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    code, _, err = run(["classify", audio_dir, "--max-iter", 50, "-o", tmp_path / "rep"], capsys)
    assert code == 2 and "--max-iter sets the softmax of --sae only" in err
    assert not (tmp_path / "rep").exists()

    code, _, err = run(["features", audio_dir, "-o", tmp_path / "s.npz", "--n-bands", 20,
                        "--quiet", "--no-cache"], capsys)
    assert code == 0, err
    code, _, err = run(["train-sae", tmp_path / "s.npz", "-o", tmp_path / "t.npz", "--n-bands",
                        30] + TRAIN, capsys)
    assert code == 2 and "--n-bands 30 (it has 20)" in err and not (tmp_path / "t.npz").exists()
    code, _, err = run(["train-sae", tmp_path / "s.npz", "-o", tmp_path / "t.npz", "--n-bands",
                        20] + TRAIN, capsys)
    assert code == 0, err


def test_files_that_are_no_npz_archive_are_named_as_such(audio_dir, tmp_path, capsys):
    (tmp_path / "notes.npz").write_text("a text file, not a model")
    (tmp_path / "empty.npz").write_bytes(b"")
    np.save(tmp_path / "array.npy", np.ones(3))
    for name, what in (("notes.npz", "not a .npz archive"), ("empty.npz", "empty"),
                       ("array.npy", "not a .npz archive")):
        for args in (["show", tmp_path / name, "-o", tmp_path / "f.png"],
                     ["classify", audio_dir, "--sae", tmp_path / name, "-o", tmp_path / "rep"]):
            code, _, err = run(args, capsys)
            assert code == 1 and f"is not a fastsae model file ({what})" in err, err
            assert "pickle" not in err and len(err.strip().splitlines()) == 1
    code, _, err = run(["train-sae", tmp_path / "notes.npz", "-o", tmp_path / "m.npz"] + TRAIN,
                       capsys)
    assert code == 1 and "is not a spectra file written by fastsae (not a .npz archive)" in err
    code, _, err = run(["train-sae", audio_dir, "-o", tmp_path / "m.npz"] + TRAIN, capsys)
    assert code == 0, err
    code, _, err = run(["train-sae", tmp_path / "m.npz", "-o", tmp_path / "m2.npz"] + TRAIN,
                       capsys)
    assert code == 1 and "it is a fastsae model file" in err


def test_settings_that_leave_the_windows_or_bands_empty_are_refused(audio_dir, tmp_path,
                                                                    capsys):
    code, _, err = run(["train-sae", audio_dir, "-o", tmp_path / "m.npz"] + TRAIN
                       + ["--n-frames", 500], capsys)         # the clips have 41 frames
    assert code == 1 and "n_frames=500 is longer than every clip" in err
    code, _, err = run(["train-sae", audio_dir, "-o", tmp_path / "m.npz"] + TRAIN
                       + ["--n-bands", 300], capsys)
    assert code == 2 and "too many mel bands" in err
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_an_output_in_a_folder_nothing_can_be_written_in_is_refused_up_front(audio_dir,
                                                                             capsys):
    # /proc refuses new files even to root, for whom os.access says yes to everything
    for args in (["features", audio_dir, "-o", "/proc/fastsae/s.npz"],
                 ["classify", audio_dir, "--fast", "-o", "/proc/fastsae-report"],
                 ["train-sae", audio_dir, "-o", "x.npz", "--json", "/proc/m.json"]):
        code, out, err = run(args + ["--quiet", "--no-cache"], capsys)
        assert code != 0 and err.startswith("fastsae: error:") and "/proc" in err
        assert "Traceback" not in err and "spectra" not in out


def test_classify_on_spectra_keeps_their_settings_and_refuses_others(audio_dir, tmp_path,
                                                                     capsys):
    for name, extra in (("bark.npz", ["--kind", "bark", "--n-bands", "20"]),
                        ("mel.npz", [])):
        code, _, err = run(["features", audio_dir, "-o", tmp_path / name, "--quiet",
                            "--no-cache"] + extra, capsys)
        assert code == 0, err
    code, _, err = run(["classify", tmp_path / "bark.npz", "--fast", "-o", tmp_path / "rep",
                        "--quiet", "--no-cache", "--n-jobs", "1"], capsys)
    assert code == 0, err
    model = fastsae.load(tmp_path / "rep" / "classifier.npz")
    spec = model["spectrogram"]
    assert (spec.kind, spec.n_bands) == ("bark", 20)
    # the saved classifier computes the spectra it was trained on from audio
    assert model.predict([str(sorted(audio_dir.rglob("*.wav"))[0])])[0] in ("low", "high")
    # a test file (or, with --sae, the training file) made with other settings is refused
    code, _, err = run(["classify", tmp_path / "bark.npz", "--test", tmp_path / "mel.npz",
                        "--fast", "-o", tmp_path / "rep2", "--quiet"], capsys)
    assert code != 0 and "other settings" in err and "'mel'" in err
    code, _, err = run(["train-sae", tmp_path / "mel.npz", "-o", tmp_path / "sae.npz"] + TRAIN,
                       capsys)
    assert code == 0, err
    code, _, err = run(["classify", tmp_path / "bark.npz", "--sae", tmp_path / "sae.npz",
                        "-o", tmp_path / "rep3", "--quiet"], capsys)
    assert code != 0 and "other settings" in err and "n_bands 20" in err


@pytest.mark.parametrize("extra, message", [
    (["--test-size", "0.99"], "no training clips"),
    (["--seed", "-1"], "--seed"),
])
def test_classify_settings_that_leave_nothing_to_do_are_refused(audio_dir, tmp_path, capsys,
                                                                extra, message):
    code, _, err = run(["classify", audio_dir, "--fast", "-o", tmp_path / "rep", "--quiet",
                        "--no-cache", "--n-jobs", "1"] + extra, capsys)
    assert code != 0 and message in err and "Traceback" not in err


def test_a_spectra_file_without_labels_is_named(audio_dir, tmp_path, capsys):
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in sorted(audio_dir.rglob("*.wav"))[:6]:
        (flat / f"{f.parent.name}{f.name}").write_bytes(f.read_bytes())
    code, _, err = run(["features", flat, "-o", tmp_path / "nolab.npz", "--quiet", "--no-cache"],
                       capsys)
    assert code == 0, err
    for args in (["classify", tmp_path / "nolab.npz"], ["classify", audio_dir, "--test",
                                                        tmp_path / "nolab.npz"]):
        code, _, err = run(args + ["--fast", "-o", tmp_path / "rep", "--no-cache"], capsys)
        assert code != 0 and "holds no labels" in err


def test_running_out_of_memory_is_an_error_line(audio_dir, tmp_path, capsys, monkeypatch):
    code, _, err = run(["train-sae", audio_dir, "-o", tmp_path / "sae.npz"] + TRAIN, capsys)
    assert code == 0, err

    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 36 GiB")
    monkeypatch.setattr(fastsae.io, "load", no_memory)
    code, _, err = run(["show", tmp_path / "sae.npz", "-o", tmp_path / "f.png"], capsys)
    assert code != 0 and err.startswith("fastsae: error: not enough memory")
