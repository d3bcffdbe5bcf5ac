"""Time-frequency representations: (n_bands, n_frames) float32 images of a clip."""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ..core.checks import check_array, check_bool, check_choice, check_int, check_scalar
from ..core.memory import check_memory
from ..core.types import ArrayLike, DTypeLike
from ..exceptions import ParameterError

KINDS = ("fft", "mel", "bark", "cepstrum", "cqt")

#: Default number of bands of every kind but ``fft``.
N_BANDS = 40
#: Lowest CQT frequency (Hz) when ``fmin`` is not given: below the lowest
#: voice pitch, and short enough filters for 0.2 s clips.
CQT_FMIN = 50.0


def default_n_fft(sr: int) -> int:
    """The smallest power of two holding 25 ms of audio (256 at 8 kHz, 512 at 16 kHz)."""
    return 1 << max(3, math.ceil(math.log2(0.025 * sr)))


def default_hop_length(sr: int) -> int:
    """10 ms, rounded to whole samples (80 at 8 kHz, 160 at 16 kHz, 220 at 22.05 kHz)."""
    return max(1, round(0.010 * sr))


def hz_to_bark(f: ArrayLike) -> np.ndarray:
    """Schroeder's Bark scale as in rastamat/PLP: ``z = 6 asinh(f / 600)``."""
    return 6.0 * np.arcsinh(np.asarray(f, dtype=np.float64) / 600.0)


def bark_to_hz(z: ArrayLike) -> np.ndarray:
    """Inverse of :func:`hz_to_bark`: ``f = 600 sinh(z / 6)``."""
    return 600.0 * np.sinh(np.asarray(z, dtype=np.float64) / 6.0)


def _check_band_edges(sr, fmin, fmax, *, fmin_default=0.0):
    nyquist = sr / 2.0
    fmin = fmin_default if fmin is None else check_scalar(fmin, "fmin", low=0.0)
    fmax = nyquist if fmax is None else check_scalar(fmax, "fmax", low=0.0)
    if fmax > nyquist:
        raise ParameterError(f"fmax must be <= sr/2 = {nyquist:g} Hz; got {fmax:g}")
    if fmin >= fmax:
        raise ParameterError(f"fmin must be < fmax = {fmax:g} Hz; got fmin={fmin:g}")
    return fmin, fmax


def bark_filterbank(sr: int, n_fft: int, n_bands: int = N_BANDS, *, fmin: float = 0.0,
                    fmax: float | None = None, width: float = 1.0,
                    dtype: DTypeLike = np.float32) -> np.ndarray:
    """Bark-band weights for an FFT power spectrum (rastamat's ``fft2barkmx``).

    Band centres are spaced evenly on the Bark scale ``z = 6 asinh(f/600)``
    (:func:`hz_to_bark`) from ``fmin`` to ``fmax``. Each band has the
    critical-band shape of PLP (Hermansky 1990) as coded in D. Ellis's
    rastamat ``fft2barkmx``: with ``d`` the distance of a bin from the band
    centre in Bark, its weight is ``10 ** min(0, d/width + 1/2, -2.5 (d/width - 1/2))``
    (divided once more by ``width`` in the exponent, as rastamat does): a flat top
    of weight 1 over ``|d| <= width/2``, skirts falling 10 dB per Bark below and
    25 dB per Bark above. Unlike rastamat, bins outside ``[fmin, fmax]`` get
    weight 0, so that the bands cover exactly that range.

    Parameters
    ----------
    sr : int
        Sample rate (Hz).
    n_fft : int
        FFT length; there are ``n_fft // 2 + 1`` bins.
    n_bands : int >= 2
    fmin, fmax : float
        Centres of the first and last band (Hz); ``fmax`` defaults to ``sr/2``.
    width : float > 0
        Band width in Bark (rastamat's ``width``).
    dtype : numpy float dtype

    Returns
    -------
    weights : np.ndarray [shape=(n_bands, n_fft // 2 + 1)]

    Examples
    --------
    >>> from fastsae import audio
    >>> W = audio.bark_filterbank(16000, 512, 20)
    >>> W.shape, float(W.max())
    ((20, 257), 1.0)
    """
    sr = check_int(sr, "sr", low=1)
    n_fft = check_int(n_fft, "n_fft", low=2)
    n_bands = check_int(n_bands, "n_bands", low=2)
    width = check_scalar(width, "width", low=0.0, low_open=True)
    fmin, fmax = _check_band_edges(sr, fmin, fmax)
    return _bark_filterbank(sr, n_fft, n_bands, fmin, fmax, width).astype(dtype)


@lru_cache(maxsize=64)
def _bark_filterbank(sr, n_fft, n_bands, fmin, fmax, width):
    freqs = np.arange(n_fft // 2 + 1) * (sr / n_fft)
    z = hz_to_bark(freqs)
    z_lo, z_hi = hz_to_bark(fmin), hz_to_bark(fmax)
    centres = z_lo + np.arange(n_bands) * ((z_hi - z_lo) / (n_bands - 1))
    d = (z[None, :] - centres[:, None]) / width
    expo = np.minimum(d + 0.5, -2.5 * (d - 0.5)) / width
    weights = 10.0 ** np.minimum(0.0, expo)
    weights[:, (freqs < fmin) | (freqs > fmax)] = 0.0
    weights.flags.writeable = False
    return weights


# Slaney's mel scale (the Auditory Toolbox's, librosa's default): linear below
# 1 kHz (200/3 Hz per mel), logarithmic above (27 mels per factor 6.4).
_MEL_F_SP = 200.0 / 3
_MEL_MIN_LOG_HZ = 1000.0
_MEL_MIN_LOG_MEL = _MEL_MIN_LOG_HZ / _MEL_F_SP
_MEL_LOGSTEP = math.log(6.4) / 27.0


def _hz_to_mel(f):
    f = np.asarray(f, dtype=np.float64)
    mels = f / _MEL_F_SP
    high = f >= _MEL_MIN_LOG_HZ
    mels[high] = _MEL_MIN_LOG_MEL + np.log(f[high] / _MEL_MIN_LOG_HZ) / _MEL_LOGSTEP
    return mels


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    f = _MEL_F_SP * m
    high = m >= _MEL_MIN_LOG_MEL
    f[high] = _MEL_MIN_LOG_HZ * np.exp(_MEL_LOGSTEP * (m[high] - _MEL_MIN_LOG_MEL))
    return f


def _mel_frequencies(n, fmin, fmax):
    """``n`` frequencies (Hz) evenly spaced on the mel scale from ``fmin`` to ``fmax``
    (``librosa.mel_frequencies(htk=False)``)."""
    lo, hi = _hz_to_mel(np.array([fmin, fmax]))
    return _mel_to_hz(np.linspace(lo, hi, n))


@lru_cache(maxsize=64)
def _mel_filterbank(sr, n_fft, n_bands, fmin, fmax):
    """Slaney's triangular mel filterbank with area normalisation, float32
    (``librosa.filters.mel(norm="slaney")``, computed the same way)."""
    freqs = np.arange(n_fft // 2 + 1) * (sr / n_fft)
    edges = _mel_frequencies(n_bands + 2, fmin, fmax)
    width = np.diff(edges)
    ramps = edges[:, None] - freqs[None, :]
    weights = np.zeros((n_bands, freqs.size), np.float32)
    for i in range(n_bands):
        weights[i] = np.maximum(0, np.minimum(-ramps[i] / width[i], ramps[i + 2] / width[i + 1]))
    weights *= (2.0 / (edges[2:n_bands + 2] - edges[:n_bands]))[:, None]
    weights.flags.writeable = False
    return weights


@lru_cache(maxsize=16)
def _window(name, n):
    """The periodic STFT window ``name`` of length ``n`` (float64, read-only)."""
    if name == "hann":
        w = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)
    else:
        import scipy.signal

        try:
            w = scipy.signal.get_window(name, n, fftbins=True)
        except ValueError as e:
            raise ParameterError(f"window must be a scipy.signal.get_window name; got "
                                 f"{name!r} ({e})") from None
    w = np.asarray(w, dtype=np.float64)
    w.flags.writeable = False
    return w


def _stft_magnitude(y, n_fft, hop, window):
    """``|STFT|`` of float32 ``y``, ``(n_fft // 2 + 1, 1 + len(y) // hop)`` float32.

    Centred frames with zero padding, as ``librosa.stft(center=True,
    pad_mode="constant")``; the windowed frames are transformed in float64
    (librosa's window is float64 too), in batches of frames so that the
    temporary stays small for long signals.
    """
    w = _window(window, n_fft)
    ypad = np.pad(y, n_fft // 2)
    frames = np.lib.stride_tricks.sliding_window_view(ypad, n_fft)[::hop]
    out = np.empty((n_fft // 2 + 1, frames.shape[0]), np.float32)
    step = max(1, (1 << 22) // n_fft)
    for f0 in range(0, frames.shape[0], step):
        X = np.fft.rfft(frames[f0:f0 + step] * w, axis=1)
        out[:, f0:f0 + step] = np.abs(X).T
    return out


def _cqt_layout(sr, n_bands, fmin, fmax, bins_per_octave):
    """bins_per_octave (chosen if None) so that every CQT filter stays below fmax."""
    import librosa

    def cutoff(bpo):
        freqs = librosa.cqt_frequencies(n_bins=n_bands, fmin=fmin, bins_per_octave=bpo)
        lengths, f_cut = librosa.filters.wavelet_lengths(freqs=freqs, sr=sr)
        return f_cut, float(lengths.max())

    if bins_per_octave is not None:
        bpo = check_int(bins_per_octave, "bins_per_octave", low=1)
        f_cut, longest = cutoff(bpo)
        if f_cut > fmax:
            raise ParameterError(
                f"kind='cqt' with n_bands={n_bands}, fmin={fmin:g} and bins_per_octave={bpo} "
                f"reaches {f_cut:.0f} Hz, above fmax={fmax:g} Hz; raise bins_per_octave or "
                "fmin, or lower n_bands")
        return bpo, longest
    bpo = max(1, math.ceil((n_bands - 1) / math.log2(fmax / fmin)))
    for bpo in range(bpo, bpo + 64):
        f_cut, longest = cutoff(bpo)
        if f_cut <= fmax:
            return bpo, longest
    raise ParameterError(  # pragma: no cover - needs an absurd n_bands/fmin
        f"no bins_per_octave fits n_bands={n_bands} CQT bins in [{fmin:g}, {fmax:g}] Hz")


def _to_db(power, amin, top_db):
    """``10 log10(max(power, amin))``, as ``librosa.power_to_db(ref=1.0)``."""
    out = 10.0 * np.log10(np.maximum(power, np.asarray(amin, dtype=power.dtype)))
    if top_db is not None:
        out = np.maximum(out, out.max() - top_db)
    return out


def spectrum(y: ArrayLike, sr: int, *, kind: str = "mel", n_fft: int | None = None,
             hop_length: int | None = None, n_bands: int | None = None, log: bool = True,
             fmin: float | None = None, fmax: float | None = None, n_mels: int | None = None,
             bins_per_octave: int | None = None, amin: float = 1e-10,
             top_db: float | None = None, window: str = "hann") -> np.ndarray:
    """Spectro-temporal image of a clip: ``(n_bands, n_frames)`` float32.

    Parameters
    ----------
    y : np.ndarray [shape=(n_samples,)]
        Mono audio. Shorter than ``n_fft`` is zero-padded at the end.
    sr : int
        Sample rate (Hz).
    kind : {"mel", "fft", "bark", "cepstrum", "cqt"}
        - ``"fft"``: magnitude STFT ``|X|`` (one band per FFT bin in [fmin, fmax]).
        - ``"mel"``: mel power spectrum (librosa's Slaney mel filterbank on ``|X|**2``).
        - ``"bark"``: Bark power spectrum (:func:`bark_filterbank` on ``|X|**2``).
        - ``"cepstrum"``: MFCC, the orthonormal DCT-II of the log (dB) mel
          spectrum, first ``n_bands`` coefficients (``librosa.feature.mfcc``).
        - ``"cqt"``: magnitude constant-Q transform (``librosa.cqt``).
    n_fft : int, optional
        FFT and window length. Default :func:`default_n_fft`: the smallest
        power of two >= 25 ms (256 at 8 kHz, 512 at 16 kHz, 1024 at 22.05 kHz).
    hop_length : int, optional
        Samples between frames. Default :func:`default_hop_length`: 10 ms.
        Frames are centred (``center=True``, zero padding): a clip of ``n``
        samples gives ``1 + max(n, n_fft) // hop_length`` frames, whatever
        the kind. (``"cqt"`` zero-pads short clips to twice its longest filter
        and drops the frames that padding adds.)
    n_bands : int, optional
        Bands (mel/bark/cqt) or coefficients (cepstrum); default 40. For
        ``"fft"`` it is fixed by ``n_fft``, ``fmin`` and ``fmax``: leave it None.
    log : bool
        Return decibels, ``10 log10(max(P, amin))`` of the power ``P`` (for
        fft/cqt ``P = |X|**2``, i.e. ``20 log10 |X|``): librosa's
        ``power_to_db(ref=1.0)``. Silence gives the finite floor
        ``10 log10(amin)`` (-100 dB). ``kind="cepstrum"`` needs ``log=True``.
    fmin, fmax : float, optional
        Frequency range (Hz); default 0 (50 Hz for cqt) to ``sr/2``.
    n_mels : int, optional
        Mel bands under the cepstrum; default ``max(40, n_bands)``.
    bins_per_octave : int, optional
        CQT resolution; default: the smallest that fits ``n_bands`` bins from
        ``fmin`` with every filter below ``fmax`` (7 at 8 kHz with 40 bands).
    amin : float > 0
        Power floor of the logarithm.
    top_db : float, optional
        Clip the dB image at ``max - top_db`` (None: no clipping, so clips
        keep their absolute level).
    window : str
        STFT window (any ``scipy.signal.get_window`` name).

    Returns
    -------
    S : np.ndarray [shape=(n_bands, n_frames), dtype=float32]

    Raises
    ------
    ParameterError
        For empty, non-1-D or NaN/inf ``y``, an unknown ``kind`` or bad options.

    Examples
    --------
    >>> import numpy as np
    >>> from fastsae import audio
    >>> y = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)
    >>> audio.spectrum(y, 16000, kind="mel", n_bands=40).shape
    (40, 101)
    >>> audio.spectrum(y, 16000, kind="fft").shape
    (257, 101)
    """
    check_choice(kind, "kind", KINDS)
    y = check_array(y, "y", ndim=1, dtype=np.float32, min_rows=0)
    if y.size == 0:
        raise ParameterError("y must hold at least one sample; got an empty array")
    sr = check_int(sr, "sr", low=1)
    n_fft = default_n_fft(sr) if n_fft is None else check_int(n_fft, "n_fft", low=2)
    hop = default_hop_length(sr) if hop_length is None else check_int(hop_length, "hop_length",
                                                                        low=1)
    log = check_bool(log, "log")
    amin = check_scalar(amin, "amin", low=0.0, low_open=True)
    if top_db is not None:
        top_db = check_scalar(top_db, "top_db", low=0.0)
    fmin, fmax = _check_band_edges(sr, fmin, fmax,
                                   fmin_default=CQT_FMIN if kind == "cqt" else 0.0)
    if kind == "fft":
        if n_bands is not None:
            raise ParameterError(
                "n_bands must be None for kind='fft' (the bins are set by n_fft, fmin, fmax); "
                f"got {n_bands!r}")
    else:
        n_bands = N_BANDS if n_bands is None else check_int(n_bands, "n_bands", low=1)
    for option, value, owner in (("n_mels", n_mels, "cepstrum"),
                                 ("bins_per_octave", bins_per_octave, "cqt")):
        if value is not None and kind != owner:
            raise ParameterError(f"{option} applies to kind={owner!r} only; got "
                                 f"{option}={value!r} with kind={kind!r}")
    if kind == "cepstrum" and not log:
        raise ParameterError("log must be True for kind='cepstrum' (the DCT of the log mel "
                             "spectrum); got False")

    if kind == "cqt":
        if fmin <= 0:
            raise ParameterError(f"fmin must be > 0 for kind='cqt'; got {fmin:g}")
        n_bands = check_int(n_bands, "n_bands", low=2)
        bpo, longest = _cqt_layout(sr, n_bands, fmin, fmax, bins_per_octave)
        # librosa computes each octave at half the previous rate with an FFT
        # of the next power of two above its longest filter: twice the longest
        # filter (at full rate) keeps every octave's signal at least that long.
        need = max(1 << math.ceil(math.log2(2 * longest)), n_fft)
        n_frames = 1 + max(y.size, n_fft) // hop        # as the STFT kinds
        if y.size < need:
            y = np.pad(y, (0, need - y.size))
        import librosa

        C = librosa.cqt(y, sr=sr, hop_length=hop, fmin=fmin, n_bins=n_bands,
                        bins_per_octave=bpo, window=window)
        C = np.abs(C[:, :n_frames]).astype(np.float32, copy=False)
        S = _to_db(C * C, amin, top_db) if log else C
        return _finite(np.ascontiguousarray(S, dtype=np.float32), y)

    n_frames = 1 + max(y.size, n_fft) // hop
    check_memory(16 * n_frames * (n_fft // 2 + 1),
                 f"the spectrum of {y.size:,} samples at sr={sr} (n_fft={n_fft}, "
                 f"hop_length={hop}, {n_frames:,} frames)",
                 hint="use shorter clips, a lower sr, or a smaller n_fft")
    if y.size < n_fft:
        y = np.pad(y, (0, n_fft - y.size))
    if not isinstance(window, str):
        raise ParameterError(f"window must be a scipy.signal.get_window name (a string); got "
                             f"{type(window).__name__}")
    X = _stft_magnitude(y, n_fft, hop, window)
    if kind == "fft":
        freqs = np.arange(n_fft // 2 + 1) * (sr / n_fft)
        keep = (freqs >= fmin) & (freqs <= fmax)
        if not keep.any():
            raise ParameterError(f"no FFT bin lies in [fmin, fmax] = [{fmin:g}, {fmax:g}] Hz "
                                 f"(bins are {sr / n_fft:g} Hz apart)")
        X = X[keep]
        S = _to_db(X * X, amin, top_db) if log else X
    else:
        P = X * X
        if kind == "bark":
            W = _bark_filterbank(sr, n_fft, check_int(n_bands, "n_bands", low=2), fmin, fmax,
                                 1.0).astype(np.float32)
        else:
            n_filt = n_bands
            if kind == "cepstrum":
                n_filt = max(N_BANDS, n_bands) if n_mels is None else check_int(
                    n_mels, "n_mels", low=1)
                if n_bands > n_filt:
                    raise ParameterError(
                        f"n_bands must be <= n_mels={n_filt} for kind='cepstrum'; "
                        f"got {n_bands}")
            W = _mel_filterbank(sr, n_fft, n_filt, fmin, fmax)
            _check_mel_bands(W, sr, n_fft, fmin, fmax,
                             "n_mels" if kind == "cepstrum" else "n_bands")
        S = W @ P
        if kind == "cepstrum":
            import scipy.fft

            S = scipy.fft.dct(_to_db(S, amin, top_db), type=2, norm="ortho", axis=0)[:n_bands]
        elif log:
            S = _to_db(S, amin, top_db)
    return _finite(np.ascontiguousarray(S, dtype=np.float32), y)


def _check_mel_bands(W, sr, n_fft, fmin, fmax, option):
    """ParameterError when some of the mel filters ``W`` cover no FFT bin: those bands
    would hold the same -100 dB in every frame of every clip."""
    empty = int(np.count_nonzero(~W.any(axis=1)))
    if not empty:
        return
    lo, hi = 1, W.shape[0] - 1            # the most bands with no empty one
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _mel_filterbank(sr, n_fft, mid, fmin, fmax).any(axis=1).all():
            lo = mid
        else:
            hi = mid - 1
    raise ParameterError(
        f"{option}={W.shape[0]} is too many mel bands for n_fft={n_fft} at sr={sr} "
        f"(FFT bins {sr / n_fft:g} Hz apart, {fmin:g}-{fmax:g} Hz): {empty} of them would "
        f"cover no bin and be empty; use at most {lo} bands, or a larger n_fft")


def _finite(S, y):
    """S, or ParameterError when the signal was so large that its power overflowed."""
    if not np.isfinite(S).all():
        raise ParameterError(
            f"the spectrum is not finite: y's amplitude (max |y| = {float(np.abs(y).max()):.3g}) "
            "overflows the float32 power spectrum; scale the signal (audio samples lie in "
            "[-1, 1])")
    return S


def band_frequencies(sr: int, *, kind: str = "mel", n_bands: int = 40,
                     fmin: float | None = None, fmax: float | None = None,
                     n_fft: int | None = None,
                     bins_per_octave: int | None = None) -> np.ndarray:
    """Centre frequency (Hz) of each band of :func:`spectrum`'s output, low to high.

    For labelling pictures of spectrograms and filters (a mel spectrogram's
    bands are equally spaced on the mel scale, so these are the Hz values of
    evenly spaced rows). ``kind="cepstrum"`` has no frequency axis: ParameterError.

    Examples
    --------
    >>> from fastsae import audio
    >>> f = audio.band_frequencies(8000, kind="mel", n_bands=40)
    >>> f.shape, bool(0 < f[0] < f[-1] < 4000)
    ((40,), True)
    """
    check_choice(kind, "kind", KINDS)
    sr = check_int(sr, "sr", low=1)
    fmin, fmax = _check_band_edges(sr, fmin, fmax,
                                   fmin_default=CQT_FMIN if kind == "cqt" else 0.0)
    if kind == "cepstrum":
        raise ParameterError("kind='cepstrum' has quefrency coefficients, not frequency bands")
    if kind == "fft":
        n_fft = default_n_fft(sr) if n_fft is None else check_int(n_fft, "n_fft", low=2)
        freqs = np.arange(n_fft // 2 + 1) * (sr / n_fft)
        return freqs[(freqs >= fmin) & (freqs <= fmax)]
    n_bands = check_int(n_bands, "n_bands", low=1)
    if kind == "mel":
        return _mel_frequencies(n_bands + 2, fmin, fmax)[1:-1]
    if kind == "bark":
        z_lo, z_hi = hz_to_bark(fmin), hz_to_bark(fmax)
        return bark_to_hz(z_lo + np.arange(n_bands) * ((z_hi - z_lo) / max(n_bands - 1, 1)))
    bpo, _ = _cqt_layout(sr, n_bands, fmin, fmax, bins_per_octave)
    import librosa

    return librosa.cqt_frequencies(n_bins=n_bands, fmin=fmin, bins_per_octave=bpo)
