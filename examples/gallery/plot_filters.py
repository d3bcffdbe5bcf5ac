"""
Filters learned without labels
==============================

:class:`fastsae.SelfTaughtFeatures` samples small patches (here 12 Mel bands
by 8 frames, 80 ms) from the spectrograms, whitens them and trains a
:class:`fastsae.SparseAutoencoder` on them; no label is used. Each hidden
unit becomes a spectro-temporal filter. :meth:`~fastsae.SelfTaughtFeatures.plot_filters`
draws each filter at the frequencies where it responds, ordered by centre
frequency (red positive, blue negative).

The settings are tiny so that the page builds in seconds; the default
recipe learns more units on more patches for many more iterations.
"""
import warnings

import fastsae
from fastsae import audio, datasets

warnings.filterwarnings("ignore", category=fastsae.ConvergenceWarning)  # few iterations, on purpose

sr = 8000
clips, labels = datasets.synthetic(n_per_class=10, sr=sr, random_state=0)
spectra = [audio.spectrum(y, sr, kind="mel", n_bands=40) for y in clips]

features = fastsae.SelfTaughtFeatures(n_hidden=24, patch_bands=12, n_frames=8, n_windows=3000,
                                      max_iter=60, dtype="float32", random_state=0)
F = features.fit_transform(spectra)
fig = features.plot_filters(sr=sr)

# %%
# Each clip became one fixed-length vector: the filters slid over the whole
# clip along frequency and time, pooled (mean and max) over a 6 x 4 grid of
# regions.
print(F.shape, "=", features.n_hidden, "units x 2 pooling modes x 6 x 4 regions")

# %%
# UFLDL's ``display_network``
# ---------------------------
# A plain sparse autoencoder on full-height windows (all 40 bands, 4 frames),
# scaled to [0.1, 0.9] as UFLDL's ``normalizeData`` does; its encoder weights
# ``W1_`` drawn as a mosaic by :func:`fastsae.viz.display_network`, each tile
# with frequency up and time to the right.
import matplotlib.pyplot as plt

from fastsae import preprocess, viz

X = preprocess.normalize_sigmoid(audio.sample_windows(spectra, n_frames=4, n_samples=3000,
                                                      random_state=0))
sae = fastsae.SparseAutoencoder(n_hidden=16, sparsity=0.05, beta=3.0, weight_decay=1e-3,
                                max_iter=80, random_state=0).fit(X)
mosaic = viz.display_network(sae.W1_, n_bands=40, n_frames=4, n_cols=8)
plt.figure(figsize=(8, 3.4), layout="constrained")
plt.imshow(mosaic, interpolation="nearest", aspect="auto")
plt.axis("off")
plt.title("encoder weights W1_ (40 bands x 4 frames each)")
