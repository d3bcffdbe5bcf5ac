"""``fastsae demo``: the whole pipeline on built-in synthetic audio.

Generates :func:`fastsae.datasets.synthetic` clips (no files, no network),
splits them into training and test clips, and runs every stage:

1. log-Mel spectra;
2. baseline: softmax regression on the spectrogram resampled to a fixed
   number of frames;
3. the default recipe (:class:`fastsae.recipes.ClipClassifier`, what
   ``fastsae classify`` fits): self-taught features (a sparse autoencoder
   learns frequency-local spectro-temporal filters from patches of the
   training spectra without labels; its filters are slid over whole clips
   along frequency and time and pooled) with a softmax, a softmax on the
   spectrogram and a fine-tuned convolutional network, trained on the clips
   and augmented copies (warped along frequency, stretched in time, through
   random channels); each member alone and the ensemble;
4. a stacked autoencoder on the fixed-length spectrogram, before and after
   fine-tuning (run before stage 3, reported after it).

It writes a report folder: ``filters.png`` (the learned filters, with axes),
``training.png`` (the L-BFGS curves), ``confusion.png`` (the recipe on the
test clips), ``metrics.json`` and ``report.md``, and prints the results table.
"""
from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .core.types import PathLike

#: (clips per class, autoencoder units, L-BFGS iterations...) per mode
SETTINGS = {
    "default": dict(n_per_class=40, n_hidden=64, sae_iter=200, n_windows=20_000, clf_iter=300,
                    n_warps=4, net_iter=(100, 200, 150), net_layers=2, stack=(96, 48),
                    stack_iter=150, n_frames=32),
    "fast": dict(n_per_class=8, n_hidden=12, sae_iter=15, n_windows=2_000, clf_iter=60,
                 n_warps=1, net_iter=(5, 20, 5), net_layers=1, stack=(16, 8), stack_iter=10,
                 n_frames=16),
}


class _Quiet:
    def info(self, msg=""):
        pass

    debug = result = info


def run_demo(output: PathLike = "fastsae-demo", *, fast: bool = False, seed: int = 0,
             n_jobs: int | None = None, backend: str = "numba",
             console: Any | None = None) -> dict[str, Any]:
    """Run the demo and write its report; returns the metrics dict.

    With the Numba backend and a cold kernel cache, the kernels of the last
    stages (the convolutional autoencoder and network) are
    compiled in a second process while the first stages run
    (:func:`fastsae.warmup.compile_ahead`).
    """
    from .warmup import compile_ahead

    ahead = compile_ahead(["convae", "convnet"]) if backend == "numba" else None
    try:
        return _run(output, fast, seed, n_jobs, backend, console)
    finally:
        if ahead is not None:
            ahead.close()


def _run(output, fast, seed, n_jobs, backend, console):
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    from . import datasets
    from .audio import Spectrogram, fixed_length
    from .pipeline import SelfTaughtFeatures
    from .preprocess import SigmoidNormalizer
    from .recipes import ClipClassifier, default_conv_net
    from .softmax import SoftmaxRegression
    from .stacked import StackedAutoencoder
    from .viz import plot_confusion_matrix, plot_training_curve

    console = console or _Quiet()
    cfg = SETTINGS["fast" if fast else "default"]
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    verbose = not getattr(console, "quiet", True)
    t_start = time.perf_counter()
    rows, metrics, curves = [], {"seed": seed, "fast": fast, "backend": backend}, {}

    def record(name, acc, seconds, key, note="", to=None):
        (rows if to is None else to).append([name, f"{acc:.1%}", f"{seconds:.1f}", note])
        metrics[key] = {"test_accuracy": float(acc), "seconds": float(seconds)}
        console.info(f"  {name}: test accuracy {acc:.1%} ({seconds:.1f} s)")

    # 1. data and spectra
    t = time.perf_counter()
    clips, labels = datasets.synthetic(n_per_class=cfg["n_per_class"], random_state=seed)
    names = np.array(datasets.SYNTHETIC_CLASSES)[: labels.max() + 1]
    spec = Spectrogram("mel", 40, sr=8000)
    spectra = spec.transform(clips)
    train, test = train_test_split(np.arange(len(labels)), test_size=0.25, stratify=labels,
                                   random_state=seed)
    train, test = np.sort(train), np.sort(test)
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
        scaler = StandardScaler().fit(fixed[train])
        base = SoftmaxRegression(weight_decay=1e-3, max_iter=cfg["clf_iter"], backend=backend,
                                 dtype="float32", n_jobs=n_jobs)
        base.fit(scaler.transform(fixed[train]), y_train)
        record("softmax on the spectrogram (baseline)", base.score(scaler.transform(fixed[test]),
               y_test), time.perf_counter() - t, "baseline")

        # 4. stacked autoencoder, before and after fine-tuning: run before the recipe and
        # shown after it (with a cold cache its kernels compile here while the recipe's
        # conv net compiles in the other process)
        stacked_rows = []
        t = time.perf_counter()
        norm = SigmoidNormalizer().fit(fixed[train])
        stack = StackedAutoencoder(hidden_sizes=cfg["stack"], sparsity=0.1, beta=3.0,
                                   weight_decay=3e-3, pretrain_iter=cfg["stack_iter"],
                                   softmax_iter=cfg["stack_iter"], finetune_iter=cfg["stack_iter"],
                                   backend=backend, dtype="float32", n_jobs=n_jobs,
                                   random_state=seed)
        stack.fit(norm.transform(fixed[train]), y_train,
                  validation=(norm.transform(fixed[test]), y_test))
        seconds = time.perf_counter() - t
        stacked_rows.append(["stacked autoencoder, before fine-tuning",
                             f"{stack.pretrain_score_:.1%}", "", ""])
        record("stacked autoencoder, after fine-tuning", stack.finetune_score_, seconds,
               "stacked", f"{'-'.join(map(str, (fixed.shape[1],) + cfg['stack']))}",
               to=stacked_rows)
        metrics["stacked"]["pretrain_test_accuracy"] = float(stack.pretrain_score_)
        stacked_curve = stack.loss_curve_

        # 3. the default recipe, each member and the ensemble
        t = time.perf_counter()
        features = SelfTaughtFeatures(n_hidden=cfg["n_hidden"], n_windows=cfg["n_windows"],
                                      max_iter=cfg["sae_iter"], backend=backend, n_jobs=n_jobs,
                                      dtype="float32", random_state=seed, verbose=verbose)
        pre, soft, fine = cfg["net_iter"]
        net = default_conv_net(random_state=seed, n_layers=cfg["net_layers"]).set_params(
            pretrain_iter=pre, softmax_iter=soft, finetune_iter=fine, backend=backend,
            n_jobs=n_jobs)
        recipe = ClipClassifier(features=[features], conv_net=net, n_warps=cfg["n_warps"],
                                n_frames=cfg["n_frames"], max_iter=cfg["clf_iter"],
                                backend=backend, n_jobs=n_jobs, random_state=seed,
                                verbose=verbose)
        recipe.fit([spectra[i] for i in train], y_train)
        seconds = time.perf_counter() - t
        preds = recipe.member_predictions([spectra[i] for i in test])
        features = recipe.members_[0][1][0]            # the fitted copy
        net_note = "24 filters 12 x 8" + (", then 32 filters 4 x 4" if cfg["net_layers"] == 2
                                          else "")
        notes = {"features 12x8": f"{features.n_features_out_} features",
                 "spectrogram": f"{cfg['n_frames']} frames", "conv net": net_note}
        for name, pred in preds.items():
            if name != "ensemble":
                rows.append([f"  recipe member: {name}", f"{np.mean(pred == y_test):.1%}", "",
                             notes.get(name, "")])
        record("default recipe (ClipClassifier): the ensemble", np.mean(preds["ensemble"] ==
               y_test), seconds, "default", f"{cfg['n_warps']} augmented copies")
        metrics["default"]["members"] = {name: float(np.mean(pred == y_test))
                                         for name, pred in preds.items() if name != "ensemble"}
        features.plot_filters(out / "filters.png", sr=8000, max_filters=32)
        plot_confusion_matrix(names[y_test], names[preds["ensemble"]], out / "confusion.png",
                              labels=names, title="Default recipe, test clips")
        curves["sparse autoencoder"] = features.sae_.loss_curve_
        curves["convolutional network fine-tuning"] = recipe.members_[-1][1].loss_curve_

        rows += stacked_rows
        curves["stacked fine-tuning"] = stacked_curve
        metrics["stacked"] = metrics.pop("stacked")        # after "default", as in the table

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
        "## Learned filters (12 Mel bands x 8 frames, each where it responds most)\n\n"
        "![filters](filters.png)\n\n## Training\n\n![training](training.png)\n\n"
        "## Confusion matrix (default recipe, test clips)\n\n![confusion](confusion.png)\n")
    console.info("")
    console.result(_plain(rows, header))
    console.result(f"\nreport: {out}{os.sep} (report.md, metrics.json, filters.png, "
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
