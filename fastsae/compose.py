"""Chaining steps: a minimal, saveable pipeline in scikit-learn's style."""
from __future__ import annotations

from .base import BaseEstimator
from .exceptions import ParameterError


class Pipeline(BaseEstimator):
    """Steps applied in order: each ``transform`` feeds the next, the last may predict.

    Parameters
    ----------
    steps : list of (name, estimator)

    Examples
    --------
    >>> from fastsae.audio import Spectrogram
    >>> from fastsae.softmax import SoftmaxRegression
    >>> pipe = Pipeline([("spectrogram", Spectrogram(sr=8000)), ("clf", SoftmaxRegression())])
    >>> pipe["spectrogram"].n_bands
    40
    """

    def __init__(self, steps):
        self.steps = steps

    def _validate(self):
        if not isinstance(self.steps, (list, tuple)) or not self.steps:
            raise ParameterError("steps must be a non-empty list of (name, estimator) pairs")
        names = set()
        for item in self.steps:
            if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)):
                raise ParameterError(f"each step must be a (name, estimator) pair; got {item!r}")
            if item[0] in names:
                raise ParameterError(f"step names must be unique; {item[0]!r} repeats")
            names.add(item[0])

    @property
    def named_steps(self):
        self._validate()
        return dict(self.steps)

    def __getitem__(self, key):
        if isinstance(key, slice):
            return Pipeline(list(self.steps[key]))
        if isinstance(key, int):
            return self.steps[key][1]
        try:
            return self.named_steps[key]
        except KeyError:
            raise ParameterError(f"no step named {key!r}; steps: "
                                 f"{', '.join(n for n, _ in self.steps)}") from None

    def __len__(self):
        return len(self.steps)

    def _run(self, X, steps):
        for _, step in steps:
            X = step.transform(X)
        return X

    def fit(self, X, y=None):
        """Fit each step on the output of the ones before it (``y`` goes to every step)."""
        self._validate()
        for _, step in self.steps[:-1]:
            X = step.fit(X, y).transform(X)
        self.steps[-1][1].fit(X, y)
        return self

    def transform(self, X):
        self._validate()
        return self._run(X, self.steps)

    def fit_transform(self, X, y=None):
        return self.fit(X, y).transform(X)

    def predict(self, X):
        self._validate()
        return self.steps[-1][1].predict(self._run(X, self.steps[:-1]))

    def predict_proba(self, X):
        self._validate()
        return self.steps[-1][1].predict_proba(self._run(X, self.steps[:-1]))

    def score(self, X, y):
        self._validate()
        return self.steps[-1][1].score(self._run(X, self.steps[:-1]), y)
