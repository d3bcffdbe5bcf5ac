"""
Training curves
===============

Every estimator trained with L-BFGS keeps its objective after each
iteration in ``loss_curve_`` (and the number of iterations in ``n_iter_``).
Here a :class:`fastsae.SparseAutoencoder` is trained on windows of the
built-in sounds with three sparsity weights β; a larger β pulls the mean
activation of each hidden unit harder towards the target ρ, at the cost of
a higher objective. :func:`fastsae.viz.plot_training_curve` draws the curves.
"""
import warnings

import fastsae
from fastsae import audio, datasets, preprocess, viz

warnings.filterwarnings("ignore", category=fastsae.ConvergenceWarning)  # few iterations, on purpose

sr = 8000
clips, _ = datasets.synthetic(n_per_class=8, sr=sr, random_state=0)
spectra = [audio.spectrum(y, sr, kind="mel", n_bands=40) for y in clips]
X = preprocess.normalize_sigmoid(audio.sample_windows(spectra, n_frames=4, n_samples=4000,
                                                      random_state=0))   # (4000, 160) in [0.1, 0.9]

curves = {}
for beta in (0.0, 1.0, 3.0):
    sae = fastsae.SparseAutoencoder(n_hidden=32, sparsity=0.05, beta=beta, weight_decay=1e-3,
                                    max_iter=80, random_state=0).fit(X)
    curves[f"beta = {beta:g}"] = sae.loss_curve_
    mean_activation = sae.transform(X).mean()
    print(f"beta={beta:g}: {sae.n_iter_} iterations, objective {sae.loss_curve_[-1]:.4f}, "
          f"mean hidden activation {mean_activation:.3f} (target 0.05)")

fig = viz.plot_training_curve(curves, title="Sparse autoencoder, L-BFGS")
