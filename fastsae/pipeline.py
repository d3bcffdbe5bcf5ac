"""Self-taught learning on spectrograms: clips in, fixed-length feature vectors out.

:class:`SelfTaughtFeatures` chains the pieces of the UFLDL self-taught
learning recipe into one estimator that :func:`fastsae.save` can write::

    spectra (dB) ─smooth_bands, floor, trim_silence, level─> sample_patches(bands x frames)
       ─> PCA whitening ─> SparseAutoencoder (linear decoder) ─> ConvolutionalFeatures
       (filters slid over frequency and time of each whole clip, mean+max pooled
       over frequency x time regions)
       ─> StandardScaler ─> features for SoftmaxRegression / StackedAutoencoder

:func:`trim_silence` and :func:`fixed_length` (from :mod:`fastsae.audio`) are
the two spectrogram helpers it and ``examples/self_taught_fsdd.py`` use;
``Standardizer`` is scikit-learn's ``StandardScaler`` (zero mean and unit
variance per feature).

The defaults (12-band patches of 8 frames, 6 x 4 pooling regions, each
clip's mean level subtracted) were chosen by leave-two-speakers-out
validation on FSDD for voices never heard: ``docs/speaker_independent.md``.
``patch_bands=None, n_pool_regions=(1, 4), normalize_level=False`` are 0.1.0's
whole-height filters, whose settings ``docs/self_taught_tuning.md`` explains.

Examples
--------
>>> import numpy as np, fastsae
>>> from fastsae.pipeline import SelfTaughtFeatures
>>> rng = np.random.default_rng(0)
>>> spectra = [rng.normal(-40.0, 5.0, (20, int(n))) for n in rng.integers(12, 30, 40)]
>>> stf = SelfTaughtFeatures(n_hidden=8, n_frames=4, n_windows=500, max_iter=20,
...                          random_state=0).fit(spectra)
>>> stf.transform(spectra).shape     # 8 units x 2 modes x (6 x 4) regions
(40, 384)
"""
from __future__ import annotations

import time

import numpy as np

from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.preprocessing import StandardScaler

from .audio import sample_patches, sample_windows
from .audio._clips import check_spectra, fixed_length, pad_to, smooth_bands, trim_silence
from .autoencoder import SparseAutoencoder
from .base import Estimator
from .conv import ConvolutionalFeatures
from .core.checks import (POOL_MODES, check_bool, check_choice, check_dtype, check_int,
                          check_random_state, check_regions, check_scalar)
from .exceptions import ParameterError
from .optim import checkpoint_state
from .preprocess import PCAWhitening, SigmoidNormalizer

#: Zero mean and unit variance per feature: scikit-learn's ``StandardScaler``
#: (the name fastsae 0.1.0 gave its own version, which it replaces).
Standardizer = StandardScaler

#: Patch preprocessing choices of :class:`SelfTaughtFeatures`.
NORMALIZATIONS = ("pca", "zca", "sigmoid")


# -- the pipeline -------------------------------------------------------------------

class SelfTaughtFeatures(ClassNamePrefixFeaturesOutMixin, TransformerMixin, Estimator):
    """Self-taught features of whole clips: a sparse autoencoder learned without
    labels on patches of spectrograms, slid over each clip and pooled.

    ``fit`` (labels are not used):

    1. trims each spectrogram to its loud part (:func:`trim_silence`, ``trim_db``)
       and, with ``normalize_level``, subtracts its mean level (the recording's
       gain and the speaker's loudness do not matter);
    2. samples ``n_windows`` patches of ``patch_bands`` bands by ``n_frames``
       frames from all the clips (:func:`fastsae.audio.sample_patches`; with
       ``patch_bands=None``, full-height windows, :func:`fastsae.audio.sample_windows`);
    3. fits the window preprocessing (``normalization``): PCA or ZCA whitening
       followed by a linear-decoder autoencoder, or UFLDL's ``normalizeData``
       to [0.1, 0.9] followed by a sigmoid-decoder one;
    4. trains a :class:`~fastsae.SparseAutoencoder` of ``n_hidden`` units on them;
    5. sets up :class:`~fastsae.ConvolutionalFeatures`: the encoder's filters
       slid over each whole clip along frequency and time (whitening is folded
       into the filters), each filter's activations pooled (``pool``) over
       ``n_pool_regions`` equal regions of frequency and time;
    6. fits a ``StandardScaler`` of the pooled features (``standardize``).

    ``transform`` runs steps 1 and 5-6 on any clips.

    Parameters
    ----------
    n_hidden : int
        Units of the autoencoder (features per pooling mode and region).
    n_frames : int
        Frames of context in one patch (8 = 80 ms at a 10 ms hop).
        Clips (after trimming) shorter than this repeat their last frame.
    patch_bands : int or None
        Bands of one patch: filters this many bands high, slid along
        frequency as well as time, learn spectro-temporal shapes that move
        with a voice instead of each voice's whole spectral envelope. None:
        full-height filters (every band; fastsae 0.1.0's recipe).
    n_windows : int or None
        Patches drawn at random (with replacement) to train the autoencoder;
        None (full-height windows only): every window of every clip.
    normalization : {"pca", "zca", "sigmoid"}
        ``"pca"``: PCA whitening keeping ``retain`` of the variance, with
        regulariser ``epsilon``, and a linear decoder. ``"zca"``: the same,
        rotated back to the window space. ``"sigmoid"``: UFLDL's
        ``normalizeData`` (each window's mean removed, ±3 std to [0.1, 0.9]) and a
        sigmoid decoder; it is not linear, so every window is encoded
        explicitly in ``transform`` (slower).
    sparsity, beta, weight_decay : float
        The autoencoder's target activation ρ, sparsity weight β and λ.
    max_iter : int
        L-BFGS iterations of the autoencoder.
    pool : {"mean", "max"} or tuple of them
        Pooling modes, concatenated.
    n_pool_regions : int, pair, or tuple of ints and pairs
        Regions to pool each filter's map over. A pair ``(f, t)`` is ``f``
        equal frequency regions by ``t`` equal time regions; an int ``t`` is
        ``(1, t)``. A tuple pools at each resolution and concatenates them:
        ``((6, 4),)`` is a 6 x 4 grid; ``(1, 4)`` is the whole clip plus
        four time quarters. With full-height filters (``patch_bands=None``)
        the maps are one band high: ``f`` counts as 1.
    normalize_level : bool
        Subtract each clip's mean level (dB), after the smoothing, floor and trimming.
    floor_db : float > 0 or None
        First raise every value of a clip to at least its maximum minus
        ``floor_db`` (dB): every recording gets the same noise floor relative
        to its loudest sound, so that the background (the microphone, the
        room) is not learned as part of a voice. None: no floor.
    n_cepstra : int >= 1 or None
        Before that, smooth every frame along frequency, keeping its first
        ``n_cepstra`` cepstral coefficients (:func:`fastsae.audio.smooth_bands`):
        the filters see the envelope without the pitch's harmonics. None: no smoothing;
        at least the spectra's bands: refused.
    standardize : bool
        Scale every feature to zero mean and unit variance over the clips seen
        in ``fit``.
    trim_db : float or None
        :func:`trim_silence` threshold in dB; None keeps whole clips (use None
        for linear spectra or cepstra).
    retain : float in (0, 1]
        Variance kept by ``"pca"`` whitening (``"zca"`` keeps every dimension).
    epsilon : float >= 0
        Whitening regulariser, added to the eigenvalues (in squared dB).
    backend : {"numba", "numpy", "cuda"}
    dtype : {"float64", "float32", "bfloat16"}
        ``"bfloat16"``: the autoencoder trains in bfloat16
        (:class:`~fastsae.SparseAutoencoder`'s ``dtype="bfloat16"``: its matrix
        products in bfloat16, float32 for the last iterations; needs
        ``backend="numba"`` or ``"numpy"`` and the extra ``fastsae-audio[mkl]``);
        the windows, the whitening, the convolution, the pooling and the
        features are float32.
    n_jobs : int or None
        Numba threads (None: all cores).
    random_state : int, Generator or None
        Seeds the window draw and the autoencoder's initial weights.
    verbose : bool
        Show the autoencoder's progress bar.

    Attributes
    ----------
    preprocessing_ : PCAWhitening or SigmoidNormalizer
        Fitted on the sampled windows.
    sae_ : SparseAutoencoder
    conv_ : ConvolutionalFeatures
        Convolution and pooling at the finest resolution (the largest
        ``n_pool_regions``).
    convs_ : list of ConvolutionalFeatures
        One per entry of ``n_pool_regions``, in that order (``conv_`` is one of them).
    standardizer_ : sklearn.preprocessing.StandardScaler or None
    n_bands_ : int
        Bands of the spectrograms seen in ``fit`` (``transform`` needs the same).
    n_windows_ : int
        Windows the autoencoder was trained on.
    n_features_out_ : int
        ``n_hidden * len(pool) * Σ f·t`` over the ``n_pool_regions``.
    patch_shape_ : (int, int)
        ``(bands, frames)`` of the filters.
    frequency_profile_ : np.ndarray [shape=(n_hidden, n_bands_ - bands + 1)]
        Mean activation of each unit at each band offset on (up to 200 of)
        the training clips: where in frequency each filter responds
        (:meth:`plot_filters` draws each filter there).
    fit_time_ : float
        Seconds spent in ``fit``.
    fitted_on_workers_ : bool
        Fitted by :meth:`fit_files` (the data computed and kept on Dask workers).
    n_files_ : int or None
        :meth:`fit_files`: the audio files that gave a clip; None after :meth:`fit`.

    Examples
    --------
    >>> stf = SelfTaughtFeatures(random_state=0)                      # doctest: +SKIP
    >>> F = stf.fit_transform(train_spectra)                          # doctest: +SKIP
    >>> clf = fastsae.SoftmaxRegression(1e-2).fit(F, train_labels)    # doctest: +SKIP
    >>> clf.score(stf.transform(test_spectra), test_labels)           # doctest: +SKIP
    >>> fastsae.save(stf, "features.npz")                             # doctest: +SKIP
    """

    #: What a model file written before a parameter existed meant by its absence
    #: (fastsae 0.1.0's recipe): :func:`fastsae.load` fills these in.
    _legacy_params = {"patch_bands": None, "normalize_level": False, "floor_db": None,
                      "n_cepstra": None}

    def __init__(self, n_hidden=200, n_frames=8, n_windows=20000, normalization="pca",
                 sparsity=0.05, beta=3.0, weight_decay=1e-3, max_iter=200,
                 pool=("mean", "max"), n_pool_regions=((6, 4),), standardize=True,
                 trim_db=20.0, retain=0.99, epsilon=0.1, patch_bands=12, normalize_level=True,
                 floor_db=None, n_cepstra=None, backend="numba", dtype="float64",
                 n_jobs=None, random_state=None, verbose=False):
        self._store_params(locals())

    _bfloat16 = True           # the autoencoder's training; the rest runs in float32

    # -- checks -------------------------------------------------------------
    def _pool_modes(self):
        modes = (self.pool,) if isinstance(self.pool, str) else self.pool
        if not isinstance(modes, (tuple, list)) or not modes:
            raise ParameterError("pool must be 'mean', 'max' or a non-empty tuple of them; "
                                 f"got {self.pool!r}")
        for m in modes:
            check_choice(m, "pool", POOL_MODES)
        if len(set(modes)) != len(modes):
            raise ParameterError(f"pool must not repeat a mode; got {self.pool!r}")
        return tuple(modes)

    def _validate_params(self):
        check_int(self.n_hidden, "n_hidden", low=1)
        check_int(self.n_frames, "n_frames", low=1)
        if self.patch_bands is not None:
            check_int(self.patch_bands, "patch_bands", low=1)
        if self.n_windows is not None:
            check_int(self.n_windows, "n_windows", low=2)
        elif self.patch_bands is not None:
            raise ParameterError("n_windows=None (every window) needs full-height windows "
                                 "(patch_bands=None); give a number of patches")
        check_bool(self.normalize_level, "normalize_level")
        if self.floor_db is not None:
            check_scalar(self.floor_db, "floor_db", low=0.0, low_open=True)
        if self.n_cepstra is not None:
            check_int(self.n_cepstra, "n_cepstra", low=1)
        check_choice(self.normalization, "normalization", NORMALIZATIONS)
        self._check_sparsity_params()
        check_int(self.max_iter, "max_iter", low=1)
        self._pool_modes()
        check_regions(self.n_pool_regions, self.patch_bands is None)
        check_bool(self.standardize, "standardize")
        if self.trim_db is not None:
            check_scalar(self.trim_db, "trim_db", low=0.0, low_open=True)
        check_scalar(self.retain, "retain", low=0.0, high=1.0, low_open=True)
        check_scalar(self.epsilon, "epsilon", low=0.0)
        self._validate_common()
        check_random_state(self.random_state)

    def _clips(self, spectra, n_bands=None, *, fitting=False):
        """Checked, trimmed and padded spectrograms in ``dtype``."""
        spectra = check_spectra(spectra, n_bands=n_bands)
        if fitting:
            longest = max(S.shape[1] for S in spectra)
            if self.n_frames > longest:
                raise ParameterError(f"n_frames={self.n_frames} is longer than every clip (the "
                                     f"longest has {longest} frames): each window would be "
                                     f"mostly padding; give at most {longest}")
        if self.patch_bands is not None and self.patch_bands > spectra[0].shape[0]:
            raise ParameterError(f"patch_bands={self.patch_bands} is more than the spectra's "
                                 f"{spectra[0].shape[0]} bands")
        if self.n_cepstra is not None:
            if self.n_cepstra >= spectra[0].shape[0]:
                raise ParameterError(f"n_cepstra={self.n_cepstra} keeps all of the spectra's "
                                     f"{spectra[0].shape[0]} bands: give fewer, or None")
            spectra = [smooth_bands(S, self.n_cepstra) for S in spectra]
        if self.floor_db is not None:
            spectra = [np.maximum(S, S.max() - self.floor_db) for S in spectra]
        if self.trim_db is not None:
            spectra = trim_silence(spectra, top_db=self.trim_db, min_frames=self.n_frames)
        dt = check_dtype(self._work_dtype())
        if self.normalize_level:
            spectra = [S - S.mean(dtype=np.float64) for S in spectra]
        return [np.ascontiguousarray(S, dtype=dt) for S in pad_to(spectra, self.n_frames)]

    # -- fitting ------------------------------------------------------------
    def fit(self, spectra, y=None, *, callback=None, resume=False, client=None):
        """Learn the features from ``spectra`` (without labels).

        Parameters
        ----------
        spectra : list of np.ndarray [shape=(n_bands, n_frames_i)]
            Spectrograms (in dB unless ``trim_db=None``) of any lengths, all
            with the same ``n_bands``; or one 3-D stack.
        y : ignored
        callback : callable ``(iteration, theta, cost)``, optional
            Called after every L-BFGS iteration of the autoencoder (see
            :meth:`fastsae.SparseAutoencoder.fit`); :meth:`set_training_state`
            turns its ``theta`` into this object's ``sae_`` weights, so that the
            object can be saved as a checkpoint.
        resume : bool
            Continue training the autoencoder held in ``sae_`` (a checkpoint
            loaded with :func:`fastsae.load`) for the iterations it has left,
            instead of starting from random weights. The windows and their
            preprocessing are drawn again from ``random_state``, so they are
            the ones the checkpoint was trained on.
        client : dask.distributed.Client, optional
            Train the autoencoder on a Dask cluster: the preprocessed windows
            are sent to the workers in shards and stay there
            (:mod:`fastsae.distributed`).

        Returns
        -------
        self
        """
        self._fit(spectra, callback, resume=resume, client=client)
        return self

    def set_training_state(self, theta, iteration=None):
        """Put an autoencoder parameter vector (from a ``fit`` callback) into ``sae_``.

        ``iteration`` (the callback's first argument) is recorded as
        ``sae_.n_iter_``, and during a ``fit`` the whole L-BFGS state (correction
        pairs, gradient, counts) as ``sae_.optimizer_state_``, so that
        ``fit(..., resume=True)`` on a saved copy continues exactly where this
        one is: it ends at the parameters of one uninterrupted run.
        """
        self._check_fitted("sae_")
        n_visible = getattr(self, "_n_visible_", None) or self.sae_.n_features_in_
        self.sae_._set_theta(np.asarray(theta, dtype=np.float64), n_visible)
        if iteration is not None:
            self.sae_.n_iter_ = check_int(iteration, "iteration", low=0)
        if getattr(self.sae_, "_live", None):
            self.sae_.optimizer_state_ = checkpoint_state(self.sae_._live)
        return self

    def filters(self, kind="encoder"):
        """The autoencoder's filters on raw windows [shape=(n_hidden, n_bands_ * n_frames)].

        In the window layout, ready for :func:`fastsae.viz.display_network`
        with ``(n_bands_, n_frames)``.

        Parameters
        ----------
        kind : {"encoder", "decoder"}
            ``"encoder"``: what each hidden unit applies to a raw window
            (whitening folded in: ``W1 @ A``), i.e. what the convolution
            uses. Whitening divides by the square root of each component's
            variance, so these look busy: they boost the weak, fine-grained
            directions. ``"decoder"``: the spectro-temporal pattern each unit
            adds to the reconstruction, mapped back to raw windows (the
            columns of ``W2`` through the inverse whitening, without the
            mean): usually the easier picture to read.
        """
        self._check_fitted("sae_")
        if kind == "encoder":
            W = self.sae_.W1_
            affine = getattr(self.preprocessing_, "affine_map", None)
            return W @ affine()[0] if affine is not None else W
        if kind == "decoder":
            W = self.sae_.W1_ if self.sae_.tied else self.sae_.W2_.T
            if isinstance(self.preprocessing_, PCAWhitening):
                return W @ self.preprocessing_._ensure_matrices()[1]
            return W
        raise ParameterError(f"kind must be 'encoder' or 'decoder'; got {kind!r}")

    def _fit(self, spectra, callback=None, *, resume=False, client=None):
        """Fit; return the training clips' pooled features (before standardising)."""
        t0 = time.perf_counter()
        self._validate_params()
        clips = self._clips(spectra, fitting=True)
        rng = check_random_state(self.random_state)
        n_bands = clips[0].shape[0]
        if self.patch_bands is None:
            X = sample_windows(clips, n_frames=self.n_frames, n_samples=self.n_windows,
                               random_state=rng)
        else:
            X = sample_patches(clips, (self.patch_bands, self.n_frames),
                               n_samples=self.n_windows, random_state=rng)
        X = np.ascontiguousarray(X, dtype=check_dtype(self._work_dtype()))
        prep, decoder = self._preprocessor()
        Xp = prep.fit_transform(X)
        del X
        seed = int(rng.integers(2**31 - 1))
        sae, previous, done = self._autoencoder(decoder, seed, int(Xp.shape[1]), resume)
        if client is not None:
            from .distributed import scatter_rows
            Xp = scatter_rows(Xp, client=client)
        self._train(sae, prep, Xp, callback, previous, done)
        del Xp
        self._set_up_convolution(n_bands)
        F = self._pooled(clips)
        self.frequency_profile_ = self._frequency_profile(clips, rng)
        self.standardizer_ = StandardScaler().fit(F) if self.standardize else None
        self.n_files_ = None
        self.fitted_on_workers_ = False
        self.fit_time_ = time.perf_counter() - t0
        return F

    def fit_files(self, files, spectrogram, *, client=None, callback=None, resume=False,
                  files_per_shard=None, cache_dir=False, on_error="fail"):
        """Learn the features from audio files on a Dask cluster: the data stay on the workers.

        The same recipe as :meth:`fit`, with every step that touches the data
        run by the workers, from the file paths: each shard of files is read
        and turned into spectra (``spectrogram``'s settings), trimmed, levelled
        and padded as in :meth:`fit`, and cut into patches there; the
        whitening is fitted from the patches' mean and covariance (a tree
        reduction, :func:`fastsae.distributed.row_moments`) and applied where
        the patches live; the autoencoder trains on them with the distributed
        objective; the standardizer comes from per-shard sums of the pooled
        features, and ``frequency_profile_`` from the (up to 200) clips it
        needs. Only statistics of ``n_features x n_features`` size, the
        weights and the clip lengths pass through this process.

        Everything is a Dask task computed from the file paths (persisted,
        not scattered): when a worker is lost, its shards are recomputed from
        their lineage and the fit ends at the same model.

        The patches are drawn like :meth:`fit`'s (uniformly, with
        replacement, over every place in every clip) but with other random
        numbers: the number of patches from each clip is one multinomial draw
        of ``n_windows`` with probabilities proportional to the clip's places,
        and each clip's patches are drawn with its own seed (``random_state``
        seeds them all, in the order of ``files``). The result depends on
        ``random_state`` and the files, not on the workers, the shards or
        their order; it is not :meth:`fit`'s draw on the same clips.

        Parameters
        ----------
        files : sequence of str or os.PathLike
            Audio files; every worker must be able to read them (a shared
            file system, or the same copy on each machine), and they must exist here.
        spectrogram : fastsae.audio.Spectrogram
            How to compute the spectra (keep it with the model: new audio must
            be turned into spectra the same way).
        client : dask.distributed.Client or None
            None: the default client.
        callback, resume
            As in :meth:`fit`; the patches and their preprocessing are drawn
            again from ``random_state`` on resume.
        files_per_shard : int >= 1 or None
            Files per task (and per chunk of the patches); None:
            :data:`fastsae.distributed.FILES_PER_SHARD`.
        cache_dir : str, os.PathLike, None or False
            The workers' spectrum cache (False: none); see
            :func:`fastsae.audio.spectra_from_files`.
        on_error : {"fail", "skip"}
            A file that cannot be read: raise, or leave it out.

        Returns
        -------
        self
            With ``fitted_on_workers_ = True`` and ``n_files_``, the files
            that gave a clip.
        """
        from .distributed import fit_features_from_files

        return fit_features_from_files(client, files, spectrogram, self, callback=callback,
                                       resume=resume, files_per_shard=files_per_shard,
                                       cache_dir=cache_dir, on_error=on_error)

    def _preprocessor(self):
        """The unfitted window preprocessing and the decoder that goes with it."""
        if self.normalization == "sigmoid":
            return SigmoidNormalizer(), "sigmoid"
        zca = self.normalization == "zca"
        return PCAWhitening(retain=None if zca else self.retain, epsilon=self.epsilon,
                            zca=zca), "linear"

    def _autoencoder(self, decoder, seed, n_visible, resume):
        """``(sae, previous, done)``: a new autoencoder, or the checkpoint's to resume."""
        previous = getattr(self, "sae_", None) if resume else None
        if resume and (previous is None or not hasattr(previous, "W1_")):
            raise ParameterError("resume=True needs a checkpoint: an object whose sae_ holds "
                                 "weights (saved from a fit callback)")
        done = 0
        if previous is not None:
            # with the optimizer's state the run continues exactly (max_iter in all);
            # without it (older checkpoints) from the weights, for the iterations left
            done = 0 if hasattr(previous, "optimizer_state_") else \
                int(getattr(previous, "n_iter_", 0))
            sae = previous.set_params(warm_start=True, max_iter=max(1, self.max_iter - done),
                                      n_jobs=self.n_jobs, verbose=self.verbose)
            if previous.n_features_in_ != n_visible:
                raise ParameterError(
                    f"the checkpoint's autoencoder takes {previous.n_features_in_} inputs but the "
                    f"windows now have {n_visible}: resume with the same settings and data")
        else:
            sae = SparseAutoencoder(n_hidden=self.n_hidden, sparsity=self.sparsity,
                                    beta=self.beta, weight_decay=self.weight_decay,
                                    decoder=decoder, max_iter=self.max_iter,
                                    backend=self.backend, dtype=self.dtype, n_jobs=self.n_jobs,
                                    random_state=seed, verbose=self.verbose)
        return sae, previous, done

    def _train(self, sae, prep, Xp, callback, previous, done):
        """Train ``sae`` on the preprocessed windows (a NumPy or dask array)."""
        # visible while training, so that a callback can checkpoint this object
        self.preprocessing_ = prep
        self.sae_ = sae
        self._n_visible_ = int(Xp.shape[1])
        sae.fit(Xp, callback=callback)
        if previous is not None:
            sae.n_iter_ += done
        sae.set_params(warm_start=False, max_iter=self.max_iter)
        self.n_windows_ = int(Xp.shape[0])

    def _set_up_convolution(self, n_bands):
        """``convs_``, ``conv_`` and the shapes, from the trained ``sae_`` and ``preprocessing_``."""
        modes = self._pool_modes()
        regions = check_regions(self.n_pool_regions, self.patch_bands is None)
        self.patch_shape_ = (self.patch_bands or n_bands, self.n_frames)
        self.convs_ = [ConvolutionalFeatures(self.sae_, self.patch_shape_,
                                             preprocessing=self.preprocessing_, pool=modes,
                                             n_pool_regions=r, backend=self.backend,
                                             n_jobs=self.n_jobs)
                       for r in regions]
        self.conv_ = self.convs_[int(np.argmax([f * t for f, t in regions]))]
        self.n_bands_ = n_bands
        self.n_features_out_ = self.n_hidden * len(modes) * sum(f * t for f, t in regions)

    def _frequency_profile(self, clips, rng, n_clips=200):
        """Mean activation of each unit at each band offset, over (up to) ``n_clips`` clips."""
        pick = rng.choice(len(clips), size=min(n_clips, len(clips)), replace=False)
        total = 0.0
        for i in pick:
            total = total + self.conv_.feature_maps(clips[i]).mean(axis=2, dtype=np.float64)
        return total / len(pick)

    def plot_filters(self, path=None, *, sr=8000, kind="mel", fmin=None, fmax=None,
                     hop_ms=10.0, max_filters=48):
        """Draw the learned filters with axes (Hz, ms), ordered by centre frequency.

        The decoder patterns (:meth:`filters` ``("decoder")``), each drawn at
        the band offset where its unit responds most on the training clips
        (``frequency_profile_``). ``sr``, ``kind``, ``fmin`` and ``fmax``
        describe the spectrogram, for the Hz labels
        (:func:`fastsae.audio.band_frequencies`). Returns the matplotlib figure.
        """
        from .audio import band_frequencies
        from .viz import plot_filters

        self._check_fitted("sae_")
        band_hz = band_frequencies(sr, kind=kind, n_bands=self.n_bands_, fmin=fmin, fmax=fmax)
        position = getattr(self, "frequency_profile_", None)
        if position is not None and position.shape[1] == 1:
            position = None                          # full-height filters: one position
        return plot_filters(self.filters("decoder"), self._patch_shape(), path, band_hz=band_hz,
                            position=position, hop_ms=hop_ms, max_filters=max_filters)

    def _patch_shape(self):
        # fastsae 0.1.0's files have no patch_shape_: their filters were full height
        return getattr(self, "patch_shape_", (self.n_bands_, self.n_frames))

    @property
    def _n_features_out(self):
        return self.n_features_out_

    def _pooled(self, clips):
        feats = [conv.transform(clips) for conv in self.convs_]
        return feats[0] if len(feats) == 1 else np.concatenate(feats, axis=1)

    def transform(self, spectra):
        """Pooled (and standardised) features of every clip.

        Parameters
        ----------
        spectra : list of np.ndarray [shape=(n_bands_, n_frames_i)], or one 3-D stack

        Returns
        -------
        F : np.ndarray [shape=(n_clips, n_features_out_)], in ``dtype``
            Ordered by resolution (as ``n_pool_regions``), then mode, unit and region.
        """
        self._check_fitted("sae_")
        F = self._pooled(self._clips(spectra, n_bands=self.n_bands_))
        if self.standardizer_ is not None:
            F = self.standardizer_.transform(F)
        return F

    def fit_transform(self, spectra, y=None):
        """``fit(spectra).transform(spectra)``, without pooling the clips twice."""
        F = self._fit(spectra)
        return F if self.standardizer_ is None else self.standardizer_.transform(F)


__all__ = ["SelfTaughtFeatures", "Standardizer", "trim_silence", "fixed_length",
           "NORMALIZATIONS"]
