"""Reading audio files: one (``load``) or many in parallel (``load_many``)."""
from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from functools import partial
from typing import Literal

import numpy as np

from ..core.checks import check_bool, check_int
from ..core.memory import check_memory
from ..core.types import PathLike
from ..exceptions import ParameterError
from ._parallel import map_files

#: Suffixes that libsndfile (through soundfile) decodes; anything else goes to
#: librosa's audioread fallback (e.g. .m4a, .aac with ffmpeg installed).
SOUNDFILE_SUFFIXES = frozenset({
    ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
    ".au", ".snd", ".caf", ".w64", ".rf64", ".nist", ".sph", ".voc", ".paf", ".svx",
    ".htk", ".sds", ".avr", ".wve", ".ircam", ".sf", ".mat", ".pvf", ".xi", ".sd2",
})

#: What ``datasets.load_folder`` treats as audio.
AUDIO_SUFFIXES = SOUNDFILE_SUFFIXES | {".m4a", ".aac", ".wma", ".mp4"}


def check_path(path, name="path") -> str:
    """A path (str or os.PathLike) to an existing, non-empty regular file."""
    try:
        path = os.fspath(path)
    except TypeError:
        raise ParameterError(f"{name} must be a file path (str or os.PathLike); "
                             f"got {type(path).__name__}") from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not os.path.exists(path):
        raise ParameterError(f"audio file {path!r} does not exist")
    if not os.path.isfile(path):
        raise ParameterError(f"audio file {path!r} is not a regular file")
    if os.path.getsize(path) == 0:
        raise ParameterError(f"audio file {path!r} is empty (0 bytes)")
    return path


def _sf_message(exc) -> str:
    msg = getattr(exc, "error_string", None) or str(exc)
    return msg.split(": ", 1)[-1] if msg.startswith("Error opening") else msg


#: A sample rate above this in a file's header is taken for corruption.
MAX_SAMPLE_RATE = 768_000


def _read_soundfile(source, path):
    import soundfile as sf

    try:
        info = sf.info(io.BytesIO(source.getvalue()) if isinstance(source, io.BytesIO)
                       else source)
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError, EOFError) as exc:
        raise ParameterError(
            f"audio file {path!r} could not be decoded as audio "
            f"(corrupt, truncated or not an audio file; libsndfile: {_sf_message(exc)})"
        ) from None
    if not 0 < info.samplerate <= MAX_SAMPLE_RATE:
        raise ParameterError(f"audio file {path!r} claims a sample rate of {info.samplerate:,} "
                             f"Hz (above {MAX_SAMPLE_RATE:,}: a corrupt header?)")
    check_memory(4 * info.frames * max(info.channels, 1),
                 f"decoding audio file {path!r} ({info.frames:,} frames x {info.channels} "
                 "channels)", hint="split the file")
    try:
        data, file_sr = sf.read(source, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError, EOFError) as exc:
        raise ParameterError(
            f"audio file {path!r} could not be decoded as audio "
            f"(corrupt, truncated or not an audio file; libsndfile: {_sf_message(exc)})"
        ) from None
    return data.T, int(file_sr)  # (channels, samples)


def _read_fallback(path):
    import librosa

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data, file_sr = librosa.load(path, sr=None, mono=False, dtype=np.float32)
    except Exception as exc:  # audioread raises many unrelated types
        raise ParameterError(
            f"audio file {path!r} could not be decoded as audio "
            f"({type(exc).__name__}: {exc})") from None
    return np.atleast_2d(data), int(file_sr)


def decode(source, path, *, sr=None, mono=True):
    """Decode ``source`` (a path, or the file's bytes) and check the signal.

    ``path`` names the file in error messages. Returns ``(y, sr)``.
    """
    if os.path.splitext(path)[1].lower() not in SOUNDFILE_SUFFIXES:
        data, file_sr = _read_fallback(path)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data, file_sr = _read_soundfile(io.BytesIO(source), path)
    else:
        data, file_sr = _read_soundfile(path, path)
    if data.shape[1] == 0:
        raise ParameterError(f"audio file {path!r} contains no samples (0 frames)")
    if not np.isfinite(data).all():
        raise ParameterError(f"audio file {path!r} contains NaN or infinite samples")
    if mono or data.shape[0] == 1:
        y = data.mean(axis=0, dtype=np.float32) if data.shape[0] > 1 else data[0]
    else:
        y = data
    if not np.any(y):
        raise ParameterError(f"audio file {path!r} is silent (every sample is zero)")
    if sr is not None and sr != file_sr:
        import librosa

        y = librosa.resample(y, orig_sr=file_sr, target_sr=sr, res_type="soxr_hq")
        file_sr = sr
    return np.ascontiguousarray(y, dtype=np.float32), file_sr


def check_paths(paths, name="paths"):
    """A sequence of paths (not one path) -> a list of str, checked one by one later."""
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise ParameterError(f"{name} must be a sequence of paths; got a single path {paths!r}")
    return [os.fspath(p) if isinstance(p, os.PathLike) else p for p in paths]


def _check_sr(sr):
    if sr is None:
        return None
    return check_int(sr, "sr", low=1)


def load(path: PathLike, *, sr: int | None = None, mono: bool = True) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 samples.

    Any format libsndfile reads (WAV, FLAC, OGG, MP3, AIFF, ...) is decoded by
    soundfile; other suffixes (m4a, aac, ...) go through librosa/audioread.

    Parameters
    ----------
    path : str or os.PathLike
    sr : int or None
        Resample to this rate (soxr, high quality); None keeps the file's rate.
    mono : bool
        Average the channels into one.

    Returns
    -------
    y : np.ndarray [shape=(n_samples,) or (n_channels, n_samples), dtype=float32]
        ``(n_channels, n_samples)`` only for a multi-channel file with ``mono=False``.
    sr : int
        The sample rate of ``y``.

    Raises
    ------
    ParameterError
        Naming the file, when it is missing, empty (0 bytes or 0 samples),
        silent (every sample zero), holds NaN/inf, or cannot be decoded
        (truncated header, not audio).

    Examples
    --------
    >>> import numpy as np, soundfile as sf, tempfile, os
    >>> from fastsae import audio
    >>> path = os.path.join(tempfile.mkdtemp(), "tone.wav")
    >>> sf.write(path, 0.1 * np.sin(np.arange(8000) / 5), 8000)
    >>> y, sr = audio.load(path, sr=16000)
    >>> y.shape, y.dtype, sr
    ((16000,), dtype('float32'), 16000)
    """
    sr = _check_sr(sr)
    check_bool(mono, "mono")
    path = check_path(path)
    return decode(path, path, sr=sr, mono=mono)


def _load_one(path, sr):
    return decode(check_path(path), os.fspath(path), sr=sr, mono=True)


def load_many(paths: Sequence[PathLike], *, sr: int | None = None,
              on_error: Literal["fail", "skip"] = "fail", n_jobs: int | None = None,
              progress: bool = False, return_paths: bool = False
              ) -> tuple[list[np.ndarray], int | None] | tuple[list[np.ndarray], int | None,
                                                                list[str]]:
    """Read many audio files (mono, float32), in parallel worker processes.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
    sr : int or None
        Resample every file to this rate. With None the files must share one
        native rate (otherwise ParameterError: pass ``sr``).
    on_error : {"fail", "skip"}
        ``"fail"``: the first bad file raises its ParameterError. ``"skip"``:
        bad files are left out, with one warning that counts and names them.
    n_jobs : int or None
        Worker processes; None: every available core; 1: this process.
    progress : bool
        Show a progress bar (tqdm).
    return_paths : bool
        Also return the paths of the clips that were read (useful with
        ``on_error="skip"``).

    Returns
    -------
    clips : list of np.ndarray [shape=(n_samples_i,), dtype=float32]
    sr : int or None
        The common sample rate (None when no file was read).
    paths : list of str
        Only with ``return_paths=True``.

    Examples
    --------
    >>> import numpy as np, soundfile as sf, tempfile, os
    >>> from fastsae import audio
    >>> d = tempfile.mkdtemp()
    >>> for k in range(3):
    ...     sf.write(os.path.join(d, f"{k}.wav"), 0.1 * np.sin(np.arange(800) / (k + 2)), 8000)
    >>> clips, sr = audio.load_many([os.path.join(d, f"{k}.wav") for k in range(3)], n_jobs=1)
    >>> len(clips), sr
    (3, 8000)
    """
    sr = _check_sr(sr)
    paths = check_paths(paths)
    results, kept = map_files(partial(_load_one, sr=sr), paths, n_jobs=n_jobs,
                              progress=progress, desc="loading", on_error=on_error)
    clips = [y for y, _ in results]
    rates = sorted({r for _, r in results})
    if len(rates) > 1:
        raise ParameterError(
            f"the files have different sample rates {rates}; pass sr= to resample "
            "them to one rate")
    out_sr = rates[0] if rates else None
    if return_paths:
        return clips, out_sr, [paths[i] for i in kept]
    return clips, out_sr
