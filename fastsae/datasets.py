"""Labelled audio: a built-in synthetic set, a folder per class, and FSDD."""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Literal

import numpy as np

from .core.checks import check_bool, check_int, check_random_state
from .audio._io import AUDIO_SUFFIXES, load_many
from .core.types import PathLike, RandomState
from .exceptions import ParameterError

#: Classes of :func:`synthetic`, in label order.
SYNTHETIC_CLASSES = (
    "rising_chirp",    # pitch glides up 1-2 octaves
    "falling_chirp",   # pitch glides down 1-2 octaves
    "vibrato",         # steady pitch with 4-8 Hz frequency modulation
    "harmonic_stack",  # bright steady tone, many 1/k harmonics
    "noise_band",      # noise burst through a formant-like band, decaying
    "two_tone",        # alternates between two pitches at 3-7 Hz
    "tremolo",         # nearly pure tone with deep 8-20 Hz amplitude modulation
    "click_train",     # 20-50 clicks per second, each a short damped resonance
    "pluck",           # harmonic tone, exponential decay, upper partials fade first
    "bell",            # inharmonic partials (1, 2.76, 5.40, 8.93) with decay
)


def _fade(n, sr, ms=10.0):
    k = min(n // 2, max(1, int(sr * ms / 1000)))
    env = np.ones(n)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(k) / k)
    env[:k] = ramp
    env[n - k:] = ramp[::-1]
    return env


def _partials(phase, amps, f_inst, sr):
    """Σ a_k sin(k·phase), leaving out partials above 0.45·sr."""
    out = np.zeros_like(phase)
    for k, a in enumerate(amps, start=1):
        alive = (k * f_inst) < 0.45 * sr
        out += a * np.sin(k * phase) * alive
    return out


def _phase(f_inst, sr):
    return 2 * np.pi * np.cumsum(f_inst) / sr


def _synth(label, rng, n, sr):
    t = np.arange(n) / sr
    dur = n / sr
    f0 = float(np.exp(rng.uniform(np.log(150.0), np.log(500.0))))
    name = SYNTHETIC_CLASSES[label]
    if name in ("rising_chirp", "falling_chirp"):
        octaves = rng.uniform(1.0, 2.0)
        frac = t / dur if name == "rising_chirp" else 1.0 - t / dur
        f = f0 * 2.0 ** (octaves * frac)
        return _partials(_phase(f, sr), (1.0, 0.5, 0.25), f, sr) * _fade(n, sr)
    if name == "vibrato":
        depth, rate = rng.uniform(0.03, 0.08), rng.uniform(4.0, 8.0)
        f = f0 * (1.0 + depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)))
        return _partials(_phase(f, sr), (1.0, 0.5, 0.25), f, sr) * _fade(n, sr)
    if name == "harmonic_stack":
        f = np.full(n, f0)
        amps = 1.0 / np.arange(1, 25)
        return _partials(_phase(f, sr), amps, f, sr) * _fade(n, sr)
    if name == "noise_band":
        centre = rng.uniform(400.0, min(2500.0, 0.35 * sr))
        bw = rng.uniform(80.0, 250.0)
        spec = np.fft.rfft(rng.standard_normal(n))
        fr = np.fft.rfftfreq(n, 1.0 / sr)
        spec *= np.exp(-0.5 * ((fr - centre) / bw) ** 2)
        x = np.fft.irfft(spec, n)
        env = np.exp(-t / rng.uniform(0.08, 0.25)) * _fade(n, sr, ms=3.0)
        return x * env
    if name == "two_tone":
        ratio, rate = rng.uniform(1.3, 1.8), rng.uniform(3.0, 7.0)
        high = (np.floor(2 * rate * t + rng.uniform(0, 1)) % 2).astype(bool)
        f = np.where(high, f0 * ratio, f0)
        return _partials(_phase(f, sr), (1.0, 0.4), f, sr) * _fade(n, sr)
    if name == "tremolo":
        depth, rate = rng.uniform(0.7, 0.95), rng.uniform(8.0, 20.0)
        f = np.full(n, f0)
        am = 1.0 + depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
        return _partials(_phase(f, sr), (1.0, 0.1), f, sr) * am * _fade(n, sr)
    if name == "click_train":
        rate = rng.uniform(20.0, 50.0)
        fc = rng.uniform(1000.0, min(3000.0, 0.4 * sr))
        tau = rng.uniform(0.002, 0.005)
        k = np.arange(int(6 * tau * sr))
        click = np.exp(-k / (tau * sr)) * np.sin(2 * np.pi * fc * k / sr)
        pulses = np.zeros(n)
        pulses[np.arange(rng.uniform(0, sr / rate), n, sr / rate).astype(int)] = 1.0
        return np.convolve(pulses, click)[:n]
    if name == "pluck":
        tau = rng.uniform(0.05, 0.15)
        f = np.full(n, f0)
        phase = _phase(f, sr)
        out = np.zeros(n)
        for k in range(1, 11):
            if k * f0 < 0.45 * sr:
                out += np.sin(k * phase) / k * np.exp(-t * k / tau)
        return out * _fade(n, sr, ms=2.0)
    # bell
    tau = rng.uniform(0.15, 0.4)
    out = np.zeros(n)
    for ratio, amp in ((1.0, 1.0), (2.76, 0.6), (5.40, 0.4), (8.93, 0.25)):
        if ratio * f0 < 0.45 * sr:
            out += amp * np.sin(2 * np.pi * ratio * f0 * t + rng.uniform(0, 2 * np.pi)) \
                * np.exp(-t * ratio ** 0.5 / tau)
    return out * _fade(n, sr, ms=2.0)


def synthetic(n_per_class: int = 50, *, sr: int = 8000, random_state: RandomState = 0,
              n_classes: int = 10, duration: tuple[float, float] = (0.3, 0.8),
              snr_db: tuple[float, float] = (5.0, 25.0),
              level_db: tuple[float, float] = (-45.0, -25.0)
              ) -> tuple[list[np.ndarray], np.ndarray]:
    """Labelled synthetic sounds that differ in spectro-temporal structure.

    Ten classes (:data:`SYNTHETIC_CLASSES`): rising and falling chirps,
    vibrato, a bright harmonic stack, a noise burst through a formant-like
    band, two-tone alternation, tremolo, a click train, a plucked tone and a
    bell. Each clip draws its pitch (150-500 Hz, log-uniform), duration,
    modulation rates and depths, level and noise at random. Loudness carries
    no class information: every clean sound is scaled to unit RMS, then to a
    random level, and white noise at a random SNR is added, all drawn
    identically for every class. Built in (no files); about 0.3 s for 50 per
    class.

    Parameters
    ----------
    n_per_class : int >= 1
    sr : int
        Sample rate (Hz), >= 4000.
    random_state : int, numpy Generator or None
        The same int gives the same clips.
    n_classes : int in [2, 10]
        Use the first ``n_classes`` classes.
    duration : (float, float)
        Range of clip durations in seconds (uniform).
    snr_db : (float, float)
        Range of the signal-to-noise ratio in dB (uniform).
    level_db : (float, float)
        Range of the RMS level in dB re full scale (uniform).

    Returns
    -------
    clips : list of np.ndarray [shape=(n_samples_i,), dtype=float32]
        Ordered by class: ``n_per_class`` of class 0, then of class 1, ...
    labels : np.ndarray [shape=(n_classes * n_per_class,), dtype=int64]
        Indices into :data:`SYNTHETIC_CLASSES`.

    Examples
    --------
    >>> from fastsae import datasets
    >>> clips, labels = datasets.synthetic(n_per_class=2, random_state=0)
    >>> len(clips), labels[:4].tolist(), clips[0].dtype
    (20, [0, 0, 1, 1], dtype('float32'))
    """
    n_per_class = check_int(n_per_class, "n_per_class", low=1)
    sr = check_int(sr, "sr", low=4000)
    n_classes = check_int(n_classes, "n_classes", low=2, high=len(SYNTHETIC_CLASSES))
    ranges = {}
    for name, value in (("duration", duration), ("snr_db", snr_db), ("level_db", level_db)):
        try:
            lo, hi = (float(v) for v in value)
        except (TypeError, ValueError):
            raise ParameterError(f"{name} must be a (low, high) pair of numbers; "
                                 f"got {value!r}") from None
        if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
            raise ParameterError(f"{name} must be a finite (low, high) pair with low <= high; "
                                 f"got {value!r}")
        ranges[name] = (lo, hi)
    if ranges["duration"][0] <= 0:
        raise ParameterError(f"duration must be positive; got {duration!r}")
    rng = check_random_state(random_state)
    clips = []
    for label in range(n_classes):
        for _ in range(n_per_class):
            n = max(16, int(round(rng.uniform(*ranges["duration"]) * sr)))
            x = _synth(label, rng, n, sr)
            x /= np.sqrt(np.mean(x * x))
            noise = rng.standard_normal(n)
            noise /= np.sqrt(np.mean(noise * noise))
            x += noise * 10.0 ** (-rng.uniform(*ranges["snr_db"]) / 20.0)
            x *= 10.0 ** (rng.uniform(*ranges["level_db"]) / 20.0)
            clips.append(x.astype(np.float32))
    labels = np.repeat(np.arange(n_classes, dtype=np.int64), n_per_class)
    return clips, labels


def _check_folder(path, name="path"):
    try:
        path = Path(os.fspath(path))
    except TypeError:
        raise ParameterError(f"{name} must be a folder path; got {type(path).__name__}") from None
    if not path.is_dir():
        raise ParameterError(f"{name} {str(path)!r} is not an existing folder")
    return path


def folder_files(path: PathLike) -> tuple[list[str], list[str]]:
    """List a folder with one sub-folder of audio files per class, without reading audio.

    The layout and rules of :func:`load_folder`: ``path/<class>/**/<file>``
    with an audio suffix; other files are counted in one warning; hidden
    files and folders are skipped.

    Returns
    -------
    files : list of str
    labels : list of str
        The class (sub-folder name) of each file.

    Raises
    ------
    ParameterError
        ``path`` is not a folder, or holds no audio file in a class sub-folder.
    """
    path = _check_folder(path)
    classes = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    ignored = sum(1 for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    files, labels = [], []
    for folder in classes:
        for f in sorted(folder.rglob("*")):
            if not f.is_file() or any(part.startswith(".") for part in f.relative_to(path).parts):
                continue
            if f.suffix.lower() in AUDIO_SUFFIXES:
                files.append(str(f))
                labels.append(folder.name)
            else:
                ignored += 1
    if not files:
        raise ParameterError(f"path {str(path)!r} has no audio files in class sub-folders "
                             "(expected path/<class>/<file>.wav, ...)")
    if ignored:
        warnings.warn(f"ignored {ignored} file(s) in {str(path)!r} that are not "
                      "audio files inside a class sub-folder", UserWarning, stacklevel=3)
    return files, labels


def load_folder(path: PathLike, *, sr: int | None = None,
                on_error: Literal["fail", "skip"] = "fail", n_jobs: int | None = None,
                progress: bool = False, return_meta: bool = False
                ) -> (tuple[list[np.ndarray], list[str]]
                      | tuple[list[np.ndarray], list[str], dict[str, np.ndarray]]):
    """Clips from a folder with one sub-folder of audio files per class.

    ``path/dog/*.wav``, ``path/cat/*.flac``, ... (searched recursively inside
    each class folder; classes and files in sorted order). Files with a
    suffix that is not audio (:data:`fastsae.audio.AUDIO_SUFFIXES`) and files
    directly in ``path`` are ignored, with one warning that counts them
    (hidden files, such as ``.DS_Store``, are ignored without one).

    Parameters
    ----------
    path : str or os.PathLike
    sr : int or None
        Resample every file to this rate; None: the files' own rate (which
        they must share).
    on_error, n_jobs, progress
        As in :func:`fastsae.audio.load_many`.
    return_meta : bool
        Also return ``meta``.

    Returns
    -------
    clips : list of np.ndarray [shape=(n_samples_i,), dtype=float32]
    labels : list of str
        The class (sub-folder name) of each clip.
    meta : dict of np.ndarray
        Only with ``return_meta=True``: ``"path"`` (str) and ``"sr"`` (int) of each clip.

    Examples
    --------
    >>> import numpy as np, soundfile as sf, tempfile, os
    >>> from fastsae import datasets
    >>> root = tempfile.mkdtemp()
    >>> for cls in ("hum", "hiss"):
    ...     os.mkdir(os.path.join(root, cls))
    ...     sf.write(os.path.join(root, cls, "a.wav"), 0.1 * np.sin(np.arange(800.0)), 8000)
    >>> clips, labels = datasets.load_folder(root, n_jobs=1)
    >>> labels
    ['hiss', 'hum']
    """
    check_bool(return_meta, "return_meta")
    files, labels = folder_files(path)
    clips, rate, kept = load_many(files, sr=sr, on_error=on_error, n_jobs=n_jobs,
                                  progress=progress, return_paths=True)
    index = {f: i for i, f in enumerate(files)}
    labels = [labels[index[f]] for f in kept]
    if return_meta:
        meta = {"path": np.array(kept, dtype=str),
                "sr": np.full(len(kept), rate if rate is not None else 0, dtype=np.int64)}
        return clips, labels, meta
    return clips, labels


_FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")


def _fsdd_recordings(path):
    path = _check_folder(path)
    rec = path / "recordings"
    if rec.is_dir():
        return rec
    if any(_FSDD_NAME.match(p.name) for p in path.glob("*.wav")):
        return path
    raise ParameterError(f"path {str(path)!r} is neither the FSDD folder (holding recordings/) "
                         "nor its recordings/ folder (files named {digit}_{speaker}_{index}.wav)")


def fsdd_files(path: PathLike) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """List the Free Spoken Digit Dataset without reading the audio.

    Parameters
    ----------
    path : str or os.PathLike
        The folder holding ``recordings/``, or ``recordings/`` itself.

    Returns
    -------
    labels : np.ndarray [shape=(n_files,), dtype=int64]
        The spoken digit.
    meta : dict of np.ndarray
        ``"speaker"`` (str), ``"index"`` (int, repetition 0-49) and ``"path"``
        (str) of each file, sorted by (digit, speaker, index).

    Warns
    -----
    UserWarning
        Counting the files in ``recordings/`` that do not follow the
        ``{digit}_{speaker}_{index}.wav`` naming (they are left out).
    """
    rec = _fsdd_recordings(path)
    rows, odd = [], 0
    for entry in os.scandir(rec):
        m = _FSDD_NAME.match(entry.name)
        if m:
            rows.append((int(m.group(1)), m.group(2), int(m.group(3)), entry.path))
        elif not entry.name.startswith("."):
            odd += 1
    if odd:
        warnings.warn(f"fsdd: left out {odd} file(s) in {str(rec)!r} not named "
                      "{digit}_{speaker}_{index}.wav", UserWarning, stacklevel=2)
    if not rows:
        raise ParameterError(f"no FSDD recordings ({{digit}}_{{speaker}}_{{index}}.wav) "
                             f"in {str(rec)!r}")
    rows.sort()
    digit, speaker, index, paths = zip(*rows)
    meta = {"speaker": np.array(speaker, dtype=str), "index": np.array(index, dtype=np.int64),
            "path": np.array(paths, dtype=str)}
    return np.array(digit, dtype=np.int64), meta


def fsdd(path: PathLike, *, sr: int | None = None, on_error: Literal["fail", "skip"] = "fail",
         n_jobs: int | None = None, progress: bool = False
         ) -> tuple[list[np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """The Free Spoken Digit Dataset (``recordings/{digit}_{speaker}_{index}.wav``).

    3,000 recordings of the digits 0-9 by 6 speakers, 8 kHz mono
    (github.com/Jakobovski/free-spoken-digit-dataset); download it yourself.

    Parameters
    ----------
    path : str or os.PathLike
        The folder holding ``recordings/``, or ``recordings/`` itself.
    sr : int or None
        Resample to this rate (None: 8000, the files' rate).
    on_error, n_jobs, progress
        As in :func:`fastsae.audio.load_many`.

    Returns
    -------
    clips : list of np.ndarray [shape=(n_samples_i,), dtype=float32]
    labels : np.ndarray [shape=(n_clips,), dtype=int64]
        The digits.
    meta : dict of np.ndarray
        ``"speaker"``, ``"index"``, ``"path"`` (as :func:`fsdd_files`) and
        ``"sr"`` of each clip; pass it to :func:`fsdd_split`.

    Examples
    --------
    >>> clips, labels, meta = datasets.fsdd("free-spoken-digit-dataset")  # doctest: +SKIP
    >>> train, test = datasets.fsdd_split(meta)                          # doctest: +SKIP
    """
    labels, meta = fsdd_files(path)
    clips, rate, kept = load_many(list(meta["path"]), sr=sr, on_error=on_error, n_jobs=n_jobs,
                                  progress=progress, return_paths=True)
    if len(kept) != len(labels):
        keep = np.isin(meta["path"], np.array(kept, dtype=str))
        labels = labels[keep]
        meta = {k: v[keep] for k, v in meta.items()}
    meta["sr"] = np.full(len(labels), rate if rate is not None else 0, dtype=np.int64)
    return clips, labels, meta


def fsdd_split(meta: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """FSDD's standard split: repetitions 0-4 of every (speaker, digit) are the test set.

    Parameters
    ----------
    meta : dict with an ``"index"`` array
        As returned by :func:`fsdd` or :func:`fsdd_files`.

    Returns
    -------
    train_idx, test_idx : np.ndarray [dtype=int64]
        Positions of the training (index 5-49) and test (index 0-4) clips.
    """
    try:
        index = np.asarray(meta["index"])
    except (KeyError, TypeError, IndexError):
        raise ParameterError("meta must be the dict from datasets.fsdd or fsdd_files, with an "
                             f"'index' array; got {type(meta).__name__}") from None
    test = index <= 4
    return np.flatnonzero(~test), np.flatnonzero(test)
