"""The default classification recipe: spectrograms of whole clips in, class labels out.

:class:`ClipClassifier` is what ``fastsae classify`` and ``fastsae demo`` fit.
It is an ensemble of classifiers that see a clip in different ways, each
trained on the clips and on copies of them warped along frequency
(:func:`fastsae.audio.warp_bands`: vocal-tract-length perturbation, so that
a few training voices stand for more), stretched in time
(:func:`fastsae.audio.stretch_frames`: other speaking rates) and passed
through a random channel (a tilt and ripples along frequency: other
microphones and rooms), their log-probabilities averaged:

1. for each of ``features`` (by default four
   :class:`~fastsae.pipeline.SelfTaughtFeatures`: sparse-autoencoder filters
   12 bands x 8 frames and 8 bands x 10 frames, learned without labels on the
   training clips, slid over frequency and time and pooled over 6 x 4
   regions and 3 x 2 regions beside them; each on the clips as they are and
   on the clips smoothed along
   frequency to their first 20 cepstral coefficients (the pitch's harmonics
   removed) with a noise floor 35 dB below their maximum), a
   :class:`~fastsae.SoftmaxRegression` on the pooled features;
2. a softmax on the clip's level-normalised spectrogram resampled to
   ``n_frames`` frames (``spectrogram_softmax``);
3. ``conv_net``: a :class:`~fastsae.StackedConvolutionalAutoencoder`
   (two convolutional autoencoder layers pretrained without labels, then the
   whole network fine-tuned with a softmax) on the same fixed-size input.

How the recipe was chosen (on FSDD, with the held-out speaker never used):
``docs/speaker_independent.md``.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal, Self

import numpy as np
from sklearn.base import ClassifierMixin, clone
from sklearn.preprocessing import StandardScaler

from .audio._clips import (check_spectra, fixed_length, random_channel, stretch_frames,
                           trim_silence, warp_bands)
from .base import Estimator, Timer, say
from .convnet import StackedConvolutionalAutoencoder
from .core.checks import check_bool, check_int, check_random_state, check_scalar
from .core.labels import encode_labels
from .core.types import ArrayLike, DTypeLike, RandomState
from .exceptions import ConvergenceWarning, ParameterError
from .pipeline import SelfTaughtFeatures
from .softmax import SoftmaxRegression, accuracy


#: The noise floor of the default recipe's floored feature sets (dB below each clip's maximum).
FLOOR_DB = 35.0
#: The cepstral coefficients the floored feature sets keep (:func:`fastsae.audio.smooth_bands`).
N_CEPSTRA = 20


#: The pooling regions of the default feature sets: a 6 x 4 grid of frequency x time and
#: a coarser 3 x 2 one beside it.
POOL_REGIONS = ((6, 4), (3, 2))


def default_features(dtype: DTypeLike = "float32",
                     random_state: int | None = None) -> list[SelfTaughtFeatures]:
    """The four self-taught feature sets of the default recipe (see the module notes):
    filters 12 x 8 and 8 x 10, each on the clips as they are and on the clips smoothed
    to :data:`N_CEPSTRA` cepstral coefficients with a noise floor :data:`FLOOR_DB`
    below their maximum; pooled over :data:`POOL_REGIONS`."""
    second = None if random_state is None else random_state + 1
    return [SelfTaughtFeatures(patch_bands=pb, n_frames=nf, floor_db=floor, n_cepstra=cep,
                               n_pool_regions=POOL_REGIONS, dtype=dtype, random_state=seed)
            for floor, cep in ((FLOOR_DB, N_CEPSTRA), (None, None))
            for pb, nf, seed in ((12, 8, random_state), (8, 10, second))]


def default_conv_net(dtype: DTypeLike = "float32", random_state: RandomState = None, *,
                     n_layers: int = 2) -> StackedConvolutionalAutoencoder:
    """The default recipe's convolutional network.

    ``n_layers=2`` (the default): 24 filters 12 x 8, max-pooled 2 x 2, then 32 filters
    4 x 4 over those pooled maps, max-pooled over 3 x 3 regions (inputs of at least
    19 bands x 15 frames). ``n_layers=1``: 24 filters 12 x 8 max-pooled over 6 x 4
    regions, about a third of the time (what :meth:`ClipClassifier.quick` uses, and
    the recipe before the second layer).
    """
    n_layers = check_int(n_layers, "n_layers", low=1, high=2)
    layers = ([dict(n_filters=24, patch_shape=(12, 8), n_pool_regions=(6, 4), pool="max")]
              if n_layers == 1 else
              [dict(n_filters=24, patch_shape=(12, 8), pool_shape=(2, 2), pool="max"),
               dict(n_filters=32, patch_shape=(4, 4), n_pool_regions=(3, 3), pool="max")])
    return StackedConvolutionalAutoencoder(
        layers, decoder="linear", sparsity=0.05, weight_decay=1e-3, softmax_weight_decay=1e-3,
        pretrain_iter=100, softmax_iter=200, finetune_iter=150, dtype=dtype,
        random_state=random_state)


class ClipClassifier(ClassifierMixin, Estimator):
    """Class labels of whole clips from their spectrograms: the default recipe.

    Parameters
    ----------
    features : list of SelfTaughtFeatures, "default" or None
        Feature learners, each followed by its own softmax. ``"default"``:
        :func:`default_features`; None or ``[]``: none.
    spectrogram_softmax : bool
        Also a softmax on the fixed-length, level-normalised spectrogram.
    conv_net : StackedConvolutionalAutoencoder, "default" or None
        A convolutional network on the fixed-length spectrogram, fitted with
        labels (pretrained, then fine-tuned). ``"default"``: :func:`default_conv_net`.
    n_warps : int >= 0
        Augmented copies of every training clip (warped along frequency, stretched
        in time, through a random channel), for the softmaxes.
    warp_range : (float, float)
        The warp factors, drawn uniformly per copy and clip.
    tempo_range : (float, float)
        Each warped copy is also stretched in time by a factor drawn uniformly
        from this range (:func:`fastsae.audio.stretch_frames`); ``(1, 1)``: not.
    tilt_db, ripple_db : float >= 0
        Each warped copy also gets a random channel response added
        (a microphone and room never heard): a tilt across the bands of up to
        ``±tilt_db / 2`` at the ends, and three cosine ripples along frequency
        of up to ``ripple_db`` each. 0 and 0: none.
    test_warps : sequence of float > 0
        Factors along frequency at prediction: every member's log-probabilities
        are averaged over the clip warped by each (:func:`fastsae.audio.warp_bands`;
        1 is the clip as it is), at ``len(test_warps)`` times the cost of one
        prediction. ``(1.0,)``: the clip only.
    n_frames : int
        Frames of the fixed-length spectrogram (after trimming the silence).
    trim_db : float
        Silence trimming of the fixed-length spectrogram (:func:`fastsae.audio.trim_silence`).
    weight_decay : float >= 0
        λ of every softmax.
    max_iter : int
        L-BFGS iterations of every softmax.
    dtype : {"float32", "float64", "bfloat16"}
        Precision of the softmaxes and of the default members (given members
        keep their own). ``"bfloat16"`` (the extra ``fastsae-audio[mkl]``):
        every fit's products in bfloat16 on the precision schedule of
        :class:`~fastsae.SparseAutoencoder`; predictions work in float32.
    backend, n_jobs, verbose
        As for :class:`~fastsae.SparseAutoencoder`.
    random_state : int, Generator or None
        Seeds the warps and the softmaxes.

    Attributes
    ----------
    classes_ : np.ndarray [shape=(n_classes,)]
    members_ : list of (str, object)
        Every fitted member by name: ``"features 12x8"``,
        ``"features 12x8, 20 cepstra, floor 35 dB"`` and the like (a
        ``(SelfTaughtFeatures, SoftmaxRegression)`` pair), ``"spectrogram"``
        (a ``(StandardScaler, SoftmaxRegression)`` pair), ``"conv net"``.
    n_bands_ : int
    fit_time_ : float

    Examples
    --------
    >>> clf = ClipClassifier(random_state=0).fit(train_spectra, train_labels)  # doctest: +SKIP
    >>> clf.score(test_spectra, test_labels)                                     # doctest: +SKIP
    >>> clf.member_scores(test_spectra, test_labels)    # each member alone      # doctest: +SKIP

    Notes
    -----
    The members train for fixed iteration budgets, chosen with the rest of
    the recipe on validation speakers; reaching them is intended, so their
    :class:`~fastsae.ConvergenceWarning` is not shown.
    """

    _bfloat16 = True
    #: Files saved before these settings existed were fitted without them.
    _legacy_params = {"tempo_range": (1.0, 1.0), "tilt_db": 0.0, "ripple_db": 0.0,
                      "test_warps": (1.0,)}

    def __init__(self, *,
                 features: Sequence[SelfTaughtFeatures] | Literal["default"] | None = "default",
                 spectrogram_softmax: bool = True,
                 conv_net: StackedConvolutionalAutoencoder | Literal["default"] | None = "default",
                 n_warps: int = 4, warp_range: tuple[float, float] = (0.88, 1.12),
                 tempo_range: tuple[float, float] = (0.88, 1.12), tilt_db: float = 6.0,
                 ripple_db: float = 2.0, test_warps: Sequence[float] = (1.0,),
                 n_frames: int = 32, trim_db: float = 20.0, weight_decay: float = 1e-2,
                 max_iter: int = 300, backend: str = "numba", dtype: DTypeLike = "float32",
                 n_jobs: int | None = None, random_state: RandomState = None,
                 verbose: bool = False) -> None:
        self._store_params(locals())

    @classmethod
    def quick(cls, random_state: RandomState = None, **params: Any) -> Self:
        """Small settings of the recipe: a look in seconds, less accurate.

        One 32-unit feature set trained for 50 iterations, a short
        convolutional network and one warped copy per clip (what
        ``fastsae classify --fast`` fits). ``params`` override any setting.
        """
        seed = random_state if isinstance(random_state, (int, np.integer)) else None
        settings = dict(
            features=[SelfTaughtFeatures(n_hidden=32, n_windows=4000, max_iter=50,
                                         dtype="float32", random_state=seed)],
            conv_net=default_conv_net(random_state=seed, n_layers=1).set_params(
                pretrain_iter=20, softmax_iter=50, finetune_iter=20),
            n_warps=1, max_iter=100, random_state=random_state)
        settings.update(params)
        return cls(**settings)

    # -- checks -------------------------------------------------------------
    def _members(self):
        seed = self.random_state if isinstance(self.random_state, (int, np.integer)) else None
        feats = default_features(self.dtype, seed) if isinstance(self.features, str) \
            and self.features == "default" else list(self.features or [])
        for i, f in enumerate(feats):
            if not isinstance(f, SelfTaughtFeatures):
                raise ParameterError(f"features[{i}] must be a SelfTaughtFeatures; got "
                                     f"{type(f).__name__}")
        net = self.conv_net
        if isinstance(net, str) and net == "default":
            net = default_conv_net(self.dtype, seed)
        if net is not None and not isinstance(net, StackedConvolutionalAutoencoder):
            raise ParameterError("conv_net must be a StackedConvolutionalAutoencoder, "
                                 f"'default' or None; got {type(net).__name__}")
        return [clone(f) for f in feats], (None if net is None else clone(net))

    @staticmethod
    def _range(value, name):
        try:
            lo, hi = (float(v) for v in value)
        except (TypeError, ValueError):
            raise ParameterError(f"{name} must be a pair (low, high); got {value!r}") from None
        if not 0.0 < lo <= hi or not np.isfinite(hi):
            raise ParameterError(f"{name} must satisfy 0 < low <= high; got {value!r}")
        return lo, hi

    def _test_warps(self):
        value = self.test_warps
        try:
            if isinstance(value, (str, bytes)) or np.ndim(value) != 1 or not len(value):
                raise TypeError
            value = list(value)
        except (TypeError, ValueError):
            raise ParameterError(f"test_warps must be a non-empty sequence of factors > 0, e.g. "
                                 f"(0.94, 1.0, 1.06); got {value!r}") from None
        return tuple(check_scalar(f, f"test_warps[{i}]", low=0.0, low_open=True)
                     for i, f in enumerate(value))

    def _validate_params(self):
        check_bool(self.spectrogram_softmax, "spectrogram_softmax")
        check_int(self.n_warps, "n_warps", low=0)
        self._range(self.warp_range, "warp_range")
        self._range(self.tempo_range, "tempo_range")
        check_scalar(self.tilt_db, "tilt_db", low=0.0)
        check_scalar(self.ripple_db, "ripple_db", low=0.0)
        self._test_warps()
        check_int(self.n_frames, "n_frames", low=1)
        check_scalar(self.trim_db, "trim_db", low=0.0, low_open=True)
        check_scalar(self.weight_decay, "weight_decay", low=0.0)
        check_int(self.max_iter, "max_iter", low=1)
        self._validate_common()
        feats, net = self._members()
        if not feats and not self.spectrogram_softmax and net is None:
            raise ParameterError("the recipe has no member: give features, "
                                 "spectrogram_softmax=True or a conv_net")
        named = [(f"features[{i}]", f) for i, f in enumerate(feats)]
        if net is not None:
            named.append(("conv_net", net))
        for name, member in named:                    # every member's settings, before any fit
            try:
                member._validate_params()
            except ParameterError as exc:
                raise type(exc)(f"{name}: {exc}") from None
        return feats, net

    # -- the fixed-length view ------------------------------------------------
    def _fixed(self, spectra):
        """Trimmed, level-normalised spectrograms resampled to ``n_frames``: (n, bands, frames)."""
        clips = [S - S.mean(dtype=np.float64)
                 for S in trim_silence(spectra, top_db=self.trim_db)]
        return fixed_length(clips, self.n_frames).astype(self._work_dtype(), copy=False)

    def _softmax(self, rng):
        return SoftmaxRegression(self.weight_decay, max_iter=self.max_iter, backend=self.backend,
                                 dtype=self.dtype, n_jobs=self.n_jobs,
                                 random_state=int(rng.integers(2**31 - 1)))

    # -- fitting ------------------------------------------------------------
    def fit(self, spectra: Sequence[np.ndarray], y: ArrayLike) -> Self:
        """Fit every member on the clips ``spectra`` and their labels ``y``.

        Parameters
        ----------
        spectra : list of np.ndarray [shape=(n_bands, n_frames_i)]
            Spectrograms in dB (:func:`fastsae.audio.spectrum`), any lengths.
        y : array-like [shape=(n_clips,)]
            Any labels; at least two classes.

        Returns
        -------
        self
        """
        elapsed = Timer()
        feats, net = self._validate_params()
        self._require_bfloat16_packages()              # the packages, before any work
        spectra = check_spectra(spectra)
        net = self._net_for(net, spectra[0].shape[0])    # its input fits, before any work
        self.classes_, codes = encode_labels(y, len(spectra))
        rng = check_random_state(self.random_state)
        warped = [C for _ in range(self.n_warps) for C in self._augmented(spectra, rng)]
        y_aug = np.tile(codes, self.n_warps + 1)
        members = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self._fit_members(feats, net, spectra, warped, codes, y_aug, rng, members)
        self.members_ = members
        self.n_bands_ = spectra[0].shape[0]
        self.fit_time_ = elapsed()
        return self

    def _net_for(self, net, n_bands):
        """``net``, checked against the fixed-length input (``n_bands`` x ``n_frames``);
        for ``conv_net="default"``, the one-layer network where two layers do not fit."""
        if net is None:
            return None
        dummy = np.empty((1, 1, n_bands, self.n_frames), np.float32)
        what = f"conv_net: the fixed-length spectrogram ({n_bands} bands x n_frames={self.n_frames})"
        try:
            net._plan(dummy, what)
        except ParameterError:
            if not (isinstance(self.conv_net, str) and self.conv_net == "default"):
                raise
            seed = net.random_state
            net = default_conv_net(self.dtype, seed, n_layers=1)
            net._plan(dummy, what)
            say(self.verbose, f"ClipClassifier: {n_bands} bands x {self.n_frames} frames are "
                              "too few for two convolutional layers; the network has one")
        return net

    def _augmented(self, spectra, rng):
        """One augmented copy of every clip: warped along frequency, stretched in time,
        through a random channel (as the settings ask)."""
        n = len(spectra)
        copies = [warp_bands(S, f) for S, f in zip(spectra, rng.uniform(*self._range(
            self.warp_range, "warp_range"), n))]
        tempo = self._range(self.tempo_range, "tempo_range")
        if tempo != (1.0, 1.0):
            copies = [stretch_frames(C, t) for C, t in zip(copies, rng.uniform(*tempo, n))]
        if self.tilt_db > 0 or self.ripple_db > 0:
            copies = [C + random_channel(C.shape[0], float(self.tilt_db), float(self.ripple_db),
                                         rng)[:, None].astype(C.dtype, copy=False)
                      for C in copies]
        return copies

    def _fit_members(self, feats, net, spectra, warped, codes, y_aug, rng, members):
        for f in feats:
            name = f"features {f.patch_bands}x{f.n_frames}"
            if f.n_cepstra is not None:
                name += f", {f.n_cepstra} cepstra"
            if f.floor_db is not None:
                name += f", floor {f.floor_db:g} dB"
            taken = {n for n, _ in members}
            name = next(f"{name} #{k}" if k else name for k in range(len(taken) + 1)
                        if (f"{name} #{k}" if k else name) not in taken)
            say(self.verbose, f"ClipClassifier: {name}")
            F = f.fit_transform(spectra)
            if warped:
                F = np.concatenate([F, f.transform(warped)])
            members.append((name, (f, self._softmax(rng).fit(F, y_aug))))
        if self.spectrogram_softmax:
            say(self.verbose, "ClipClassifier: spectrogram softmax")
            X = self._fixed(spectra + warped).reshape(len(spectra) + len(warped), -1)
            scaler = StandardScaler().fit(X)
            members.append(("spectrogram", (scaler, self._softmax(rng).fit(scaler.transform(X),
                                                                         y_aug))))
        if net is not None:
            say(self.verbose, "ClipClassifier: convolutional network")
            X = self._fixed(spectra)
            self.fixed_mean_, self.fixed_std_ = float(X.mean()), float(X.std()) or 1.0
            members.append(("conv net", net.fit(self._standard_images(X), codes)))

    def _standard_images(self, X):
        return ((X - self.fixed_mean_) / self.fixed_std_).astype(X.dtype, copy=False)

    # -- using it -----------------------------------------------------------
    def _member_log_proba(self, spectra):
        """{member name: log-probabilities [shape=(n_clips, n_classes)]} of checked spectra,
        averaged over ``test_warps``."""
        factors = self._test_warps()
        total = {}
        for f in factors:
            clips = spectra if f == 1.0 else [warp_bands(S, f).astype(S.dtype, copy=False)
                                              for S in spectra]
            for name, Z in self._member_log_proba_once(clips).items():
                total[name] = Z if name not in total else total[name] + Z
        return {name: Z / len(factors) for name, Z in total.items()}

    def _member_log_proba_once(self, spectra):
        out, fixed = {}, None
        for name, member in self.members_:
            if name == "conv net":
                fixed = self._fixed(spectra) if fixed is None else fixed
                P = member.predict_proba(self._standard_images(fixed))
            elif name == "spectrogram":
                scaler, clf = member
                fixed = self._fixed(spectra) if fixed is None else fixed
                P = clf.predict_proba(scaler.transform(fixed.reshape(len(fixed), -1)))
            else:
                features, clf = member
                P = clf.predict_proba(features.transform(spectra))
            out[name] = np.log(np.maximum(P.astype(np.float64), 1e-12))
        return out

    def _check_spectra(self, spectra):
        self._check_fitted("members_")
        return check_spectra(spectra, n_bands=self.n_bands_)

    def predict_log_proba(self, spectra: Sequence[np.ndarray]) -> np.ndarray:
        """The members' mean log-probability, renormalised [shape=(n_clips, n_classes)]."""
        logs = self._member_log_proba(self._check_spectra(spectra))
        Z = np.mean(list(logs.values()), axis=0)
        Z -= Z.max(axis=1, keepdims=True)
        return Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))

    def predict_proba(self, spectra: Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities [shape=(n_clips, n_classes)]; column k is ``classes_[k]``."""
        return np.exp(self.predict_log_proba(spectra))

    def predict(self, spectra: Sequence[np.ndarray]) -> np.ndarray:
        """The most probable class of each clip."""
        best = np.argmax(self.predict_log_proba(spectra), axis=1)
        return self.classes_[best]

    def score(self, spectra: Sequence[np.ndarray], y: ArrayLike,
              sample_weight: None = None) -> float:
        """Accuracy on the clips ``spectra`` with labels ``y``."""
        if sample_weight is not None:
            raise ParameterError("sample_weight is not supported by ClipClassifier.score")
        return accuracy(self.predict(spectra), y)

    def member_predictions(self, spectra: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Each member's predicted labels alone, and the ensemble's: {name: labels}."""
        logs = self._member_log_proba(self._check_spectra(spectra))
        logs["ensemble"] = np.mean(list(logs.values()), axis=0)
        return {name: self.classes_[np.argmax(Z, axis=1)] for name, Z in logs.items()}

    def member_scores(self, spectra: Sequence[np.ndarray], y: ArrayLike) -> dict[str, float]:
        """Each member's accuracy alone, and the ensemble's: {name: accuracy}."""
        return {name: accuracy(pred, y)
                for name, pred in self.member_predictions(spectra).items()}


__all__ = ["ClipClassifier", "FLOOR_DB", "N_CEPSTRA", "POOL_REGIONS", "default_features",
           "default_conv_net"]
