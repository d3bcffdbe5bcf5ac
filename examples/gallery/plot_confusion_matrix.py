"""
Classifying clips: the default recipe
=====================================

:class:`fastsae.ClipClassifier` is the default recipe: self-taught features
of frequency-local filters, a softmax on the spectrogram and a pretrained
convolutional network, trained on the clips and on copies warped along
frequency, their log-probabilities averaged. ``ClipClassifier.quick`` has
small settings (what ``fastsae classify --fast`` fits): seconds instead of
minutes, less accurate. One quarter of the built-in clips is held out for
testing; :func:`fastsae.viz.plot_confusion_matrix` shows which kinds of sound
it confuses.
"""
import warnings

import numpy as np

import fastsae
from fastsae import audio, datasets, viz

warnings.filterwarnings("ignore", category=fastsae.ConvergenceWarning)  # few iterations, on purpose

sr = 8000
clips, labels = datasets.synthetic(n_per_class=16, sr=sr, random_state=0)
names = np.array(datasets.SYNTHETIC_CLASSES)[labels]          # string labels work too
spectra = [audio.spectrum(y, sr, kind="mel", n_bands=40) for y in clips]
test = np.arange(len(clips)) % 4 == 0
train_spectra = [s for s, t in zip(spectra, test) if not t]
test_spectra = [s for s, t in zip(spectra, test) if t]

recipe = fastsae.ClipClassifier.quick(random_state=0).fit(train_spectra, names[~test])
print("test accuracy:", recipe.score(test_spectra, names[test]))
print("each member alone:", recipe.member_scores(test_spectra, names[test]))

fig = viz.plot_confusion_matrix(names[test], recipe.predict(test_spectra),
                                labels=datasets.SYNTHETIC_CLASSES, title="ClipClassifier.quick")

# %%
# The counts themselves: row ``i``, column ``j`` counts the test clips of
# class ``i`` predicted as class ``j``.
print(viz.confusion_matrix(names[test], recipe.predict(test_spectra),
                           labels=datasets.SYNTHETIC_CLASSES))
