"""The audio front end: files -> signals -> spectra -> windows of frames.

>>> from fastsae import audio
>>> y, sr = audio.load("clip.wav", sr=16000)                       # doctest: +SKIP
>>> S = audio.spectrum(y, sr, kind="mel", n_bands=40)              # doctest: +SKIP
>>> X = audio.sample_windows([S], n_frames=4, n_samples=20000)     # doctest: +SKIP

- :func:`load`, :func:`load_many`: read files (any format soundfile or
  librosa reads), resample, mix down; bad files raise ParameterError naming them.
- :func:`spectrum`: ``fft`` | ``mel`` | ``bark`` | ``cepstrum`` | ``cqt`` images,
  ``(n_bands, n_frames)`` float32; :func:`bark_filterbank`.
- :func:`sample_windows`, :func:`windows_to_image`: windows of consecutive
  frames as flat rows, and back.
- :func:`spectra_from_files`: spectra of many files, in parallel, cached on disk.
- :func:`trim_silence`, :func:`fixed_length`: whole clips' spectrograms
  trimmed to their loud part, or resampled to one length; :func:`warp_bands`,
  :func:`stretch_frames` (augmentation) and :func:`smooth_bands` (cepstral
  liftering: the envelope kept, the pitch's harmonics removed).
- :class:`Spectrogram`: those settings as a saveable step of a pipeline;
  :func:`save_spectra` / :func:`load_spectra`: spectra of any lengths in one file.
"""
from ._clips import fixed_length, smooth_bands, stretch_frames, trim_silence, warp_bands
from ._extract import default_cache_dir, spectra_from_files
from ._frontend import Spectrogram, load_spectra, save_spectra
from ._io import AUDIO_SUFFIXES, load, load_many
from ._spectrum import (KINDS, band_frequencies, bark_filterbank, bark_to_hz,
                        default_hop_length, default_n_fft, hz_to_bark, spectrum)
from ._windows import sample_patches, sample_windows, windows_to_image

__all__ = [
    "load", "load_many", "spectrum", "bark_filterbank", "hz_to_bark", "bark_to_hz",
    "default_n_fft", "default_hop_length", "sample_windows", "windows_to_image",
    "spectra_from_files", "default_cache_dir", "KINDS", "AUDIO_SUFFIXES", "Spectrogram",
    "save_spectra", "load_spectra", "trim_silence", "fixed_length", "sample_patches",
    "band_frequencies", "warp_bands", "stretch_frames", "smooth_bands",
]
