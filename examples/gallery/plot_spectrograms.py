"""
The built-in sounds as spectrograms
===================================

:func:`fastsae.datasets.synthetic` makes labelled clips of ten kinds of sound
(chirps, vibrato, harmonic stacks, noise bands, click trains, plucks, bells,
...) with no files and no network. Each differs from the others in its
spectro-temporal structure, not in its loudness. Here is one clip of each
kind as a 40-band log-Mel spectrogram (:func:`fastsae.audio.spectrum`).
"""
import matplotlib.pyplot as plt
import numpy as np

from fastsae import audio, datasets

sr = 8000
clips, labels = datasets.synthetic(n_per_class=1, sr=sr, random_state=0)
spectra = [audio.spectrum(y, sr, kind="mel", n_bands=40) for y in clips]  # (40, frames), dB
band_hz = audio.band_frequencies(sr, kind="mel", n_bands=40)

fig, axes = plt.subplots(2, 5, figsize=(12, 4.8), sharey=True, layout="constrained")
for ax, S, label in zip(axes.flat, spectra, labels):
    frames = S.shape[1]
    image = ax.imshow(S, origin="lower", aspect="auto", cmap="magma",
                      extent=(0, frames * 10, 0, S.shape[0]))        # 10 ms per frame
    ax.set_title(datasets.SYNTHETIC_CLASSES[label], fontsize=9)
    ax.set_yticks([0, 20, 39], [f"{band_hz[i]:.0f}" for i in (0, 20, 39)])
    ax.set_xlabel("ms", fontsize=8)
axes[0, 0].set_ylabel("Hz (mel scale)")
axes[1, 0].set_ylabel("Hz (mel scale)")
fig.colorbar(image, ax=axes, label="dB", shrink=0.8)

# %%
# Clips have different lengths; every estimator takes a list of spectra of
# any lengths. The shapes:
print([S.shape for S in spectra])
print("frame hop:", audio.default_hop_length(sr), "samples at", sr, "Hz")
print("dynamic range of the first clip:", np.ptp(spectra[0]).round(1), "dB")
