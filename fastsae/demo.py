"""``fastsae demo``: the whole pipeline on built-in synthetic audio.

Generates :func:`fastsae.datasets.synthetic` clips (no files, no network),
splits them into training and test clips, and runs every stage:

1. log-Mel spectra;
2. baseline: softmax regression on the normalised spectrogram resampled to a
   fixed number of frames;
3. self-taught learning: a sparse autoencoder learns spectro-temporal filters
   from windows of the training spectra (no labels), its filters are slid
   over whole clips and pooled (:class:`fastsae.pipeline.SelfTaughtFeatures`),
   and a softmax classifies the pooled features;
4. a stacked autoencoder on the fixed-length spectrogram, before and after
   fine-tuning;
5. a convolutional autoencoder on spectrogram crops, whose pooled feature maps
   feed a softmax.

It writes a report folder: ``filters.png`` (the learned filters),
``conv_filters.png``, ``training.png`` (the L-BFGS curves), ``confusion.png``
(self-taught classifier on the test clips), ``metrics.json`` and
``report.md``, and prints the results table.
"""
from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

#: (clips per class, autoencoder units, L-BFGS iterations...) per mode
SETTINGS = {
    "default": dict(n_per_class=40, n_hidden=64, sae_iter=200, n_windows=20_000, clf_iter=300,
                    stack=(96, 48), stack_iter=150, conv_filters=16, conv_iter=100, n_frames=32),
    "fast": dict(n_per_class=8, n_hidden=12, sae_iter=15, n_windows=2_000, clf_iter=60,
                 stack=(16, 8), stack_iter=10, conv_filters=4, conv_iter=8, n_frames=16),
}


class _Quiet:
    def info(self, msg=""):
        pass

    debug = result = info


def fixed_length(spectra, n_frames):
    """Each (n_bands, T) spectrogram resampled along time to (n_bands, n_frames), stacked."""
    out = np.empty((len(spectra), spectra[0].shape[0], n_frames))
    for i, S in enumerate(spectra):
        t_old = np.linspace(0.0, 1.0, S.shape[1])
        t_new = np.linspace(0.0, 1.0, n_frames)
        out[i] = np.stack([np.interp(t_new, t_old, row) for row in S]) if S.shape[1] > 1 \
            else np.repeat(S, n_frames, axis=1)
    return out


def _stratified_split(labels, test_fraction, rng):
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = max(1, int(round(test_fraction * idx.size)))
        test.extend(idx[:k])
        train.extend(idx[k:])
    return np.sort(train), np.sort(test)


def _standardize(train, test):
    mu, sd = train.mean(axis=0), train.std(axis=0)
    sd[sd == 0] = 1.0
    return (train - mu) / sd, (test - mu) / sd


def run_demo(output="fastsae-demo", *, fast=False, seed=0, n_jobs=None, backend="numba",
             console=None):
    """Run the demo and write its report; returns the metrics dict."""
    from . import datasets
    from .audio import Spectrogram
    from .conv import pool
    from .convae import ConvolutionalAutoencoder, crop_spectrograms
    from .pipeline import SelfTaughtFeatures
    from .preprocess import SigmoidNormalizer
    from .softmax import SoftmaxRegression
    from .stacked import StackedAutoencoder
    from .viz import display_network, plot_confusion_matrix, plot_training_curve

    console = console or _Quiet()
    cfg = SETTINGS["fast" if fast else "default"]
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    verbose = not getattr(console, "quiet", True)
    rng = np.random.default_rng(seed)
    t_start = time.perf_counter()
    rows, metrics, curves = [], {"seed": seed, "fast": fast, "backend": backend}, {}

    def record(name, acc, seconds, key, note=""):
        rows.append([name, f"{acc:.1%}", f"{seconds:.1f}", note])
        metrics[key] = {"test_accuracy": float(acc), "seconds": float(seconds)}
        console.info(f"  {name}: test accuracy {acc:.1%} ({seconds:.1f} s)")

    # 1. data and spectra
    t = time.perf_counter()
    clips, labels = datasets.synthetic(n_per_class=cfg["n_per_class"], random_state=seed)
    names = np.array(datasets.SYNTHETIC_CLASSES)[: labels.max() + 1]
    spec = Spectrogram("mel", 40, sr=8000)
    spectra = spec.transform(clips)
    train, test = _stratified_split(labels, 0.25, rng)
    y_train, y_test = labels[train], labels[test]
    console.info(f"data: {len(clips)} synthetic clips, {len(names)} classes "
                 f"({len(train)} train / {len(test)} test), 40-band log-Mel "
                 f"({time.perf_counter() - t:.1f} s)")
    metrics["data"] = {"n_clips": len(clips), "n_train": int(train.size), "n_test": int(test.size),
                       "classes": names.tolist()}
    chance = 1.0 / len(names)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # 2. baseline on the fixed-length spectrogram
        t = time.perf_counter()
        fixed = fixed_length(spectra, cfg["n_frames"]).reshape(len(spectra), -1)
        Xtr, Xte = _standardize(fixed[train], fixed[test])
        base = SoftmaxRegression(weight_decay=1e-3, max_iter=cfg["clf_iter"], backend=backend,
                                 n_jobs=n_jobs).fit(Xtr, y_train)
        record("softmax on the spectrogram (baseline)", base.score(Xte, y_test),
               time.perf_counter() - t, "baseline")

        # 3. self-taught learning
        t = time.perf_counter()
        feats = SelfTaughtFeatures(n_hidden=cfg["n_hidden"], n_frames=4,
                                   n_windows=cfg["n_windows"], max_iter=cfg["sae_iter"],
                                   backend=backend, n_jobs=n_jobs, random_state=seed,
                                   verbose=verbose)
        feats.fit([spectra[i] for i in train])
        F = feats.transform(spectra)
        clf = SoftmaxRegression(weight_decay=1e-3, max_iter=cfg["clf_iter"], backend=backend,
                                n_jobs=n_jobs).fit(F[train], y_train)
        pred = clf.predict(F[test])
        record("self-taught: autoencoder features + softmax", np.mean(pred == y_test),
               time.perf_counter() - t, "self_taught", f"{F.shape[1]} features")
        display_network(feats.filters("decoder"), feats.n_bands_, feats.n_frames,
                        path=out / "filters.png")
        plot_confusion_matrix(names[y_test], names[pred], out / "confusion.png", labels=names,
                              title="Self-taught classifier")
        curves["sparse autoencoder"] = feats.sae_.loss_curve_

        # 4. stacked autoencoder, before and after fine-tuning
        t = time.perf_counter()
        norm = SigmoidNormalizer().fit(fixed[train])
        stack = StackedAutoencoder(hidden_sizes=cfg["stack"], sparsity=0.1, beta=3.0,
                                   weight_decay=3e-3, pretrain_iter=cfg["stack_iter"],
                                   softmax_iter=cfg["stack_iter"], finetune_iter=cfg["stack_iter"],
                                   backend=backend, n_jobs=n_jobs, random_state=seed)
        stack.fit(norm.transform(fixed[train]), y_train,
                  validation=(norm.transform(fixed[test]), y_test))
        seconds = time.perf_counter() - t
        rows.append(["stacked autoencoder, before fine-tuning", f"{stack.pretrain_score_:.1%}",
                     "", ""])
        record("stacked autoencoder, after fine-tuning", stack.finetune_score_, seconds,
               "stacked", f"{'-'.join(map(str, (fixed.shape[1],) + cfg['stack']))}")
        metrics["stacked"]["pretrain_test_accuracy"] = float(stack.pretrain_score_)
        curves["stacked fine-tuning"] = stack.loss_curve_

        # 5. convolutional autoencoder on crops, pooled maps -> softmax
        t = time.perf_counter()
        norm_spectra = [(S - S.mean()) / (S.std() + 1e-6) for S in spectra]
        crops = crop_spectrograms([norm_spectra[i] for i in train], 16, n_crops=2 * train.size,
                                  random_state=seed)
        lo, hi = crops.min(), crops.max()
        scale = lambda a: 0.1 + 0.8 * (np.clip(a, lo, hi) - lo) / (hi - lo)  # noqa: E731
        cae = ConvolutionalAutoencoder(n_filters=cfg["conv_filters"], patch_shape=(8, 4),
                                       sparsity=0.05, max_iter=cfg["conv_iter"], backend=backend,
                                       n_jobs=n_jobs, random_state=seed).fit(scale(crops))
        Fc = np.stack([np.concatenate([
            pool(m, n_regions=(2, 4), mode=mode, backend=backend).ravel() for mode in ("mean", "max")])
            for m in (cae.transform(scale(S)[None])[0] for S in norm_spectra)])
        Ftr, Fte = _standardize(Fc[train], Fc[test])
        cclf = SoftmaxRegression(weight_decay=1e-3, max_iter=cfg["clf_iter"], backend=backend,
                                 n_jobs=n_jobs).fit(Ftr, y_train)
        record("convolutional autoencoder features + softmax", cclf.score(Fte, y_test),
               time.perf_counter() - t, "convolutional", f"{Fc.shape[1]} features")
        display_network(cae.weights_, 8, 4, path=out / "conv_filters.png")
        curves["convolutional autoencoder"] = cae.loss_curve_

    plot_training_curve(curves, out / "training.png", title="L-BFGS training")
    total = time.perf_counter() - t_start
    metrics["total_seconds"] = total
    metrics["chance"] = chance
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    header = ["method", "test accuracy", "seconds", "notes"]
    table = _markdown(rows, header)
    (out / "report.md").write_text(
        "# fastsae demo\n\n"
        f"{len(clips)} synthetic clips of {len(names)} classes ({', '.join(names)}), "
        f"{train.size} for training and {test.size} for testing; chance is {chance:.0%}. "
        f"Total time {total:.0f} s.\n\n{table}\n\n"
        "## Learned filters (40 Mel bands x 4 frames; frequency up, time right)\n\n"
        "![filters](filters.png)\n\n## Convolutional autoencoder filters (8 bands x 4 frames)\n\n"
        "![conv filters](conv_filters.png)\n\n## Training\n\n![training](training.png)\n\n"
        "## Confusion matrix (self-taught classifier, test clips)\n\n![confusion](confusion.png)\n")
    console.info("")
    console.result(_plain(rows, header))
    console.result(f"\nreport: {out}{os.sep} (report.md, metrics.json, filters.png, conv_filters.png, "
                 f"training.png, confusion.png); total {total:.0f} s")
    return metrics


def _plain(rows, header):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def _markdown(rows, header):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)
