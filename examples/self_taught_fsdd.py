"""Spoken digits (FSDD) end to end: features learned without labels, then classifiers.

Run::

    python examples/self_taught_fsdd.py --fsdd PATH --split speakers   # voices never heard
    python examples/self_taught_fsdd.py --fsdd PATH --split standard   # FSDD's standard split
    python examples/self_taught_fsdd.py --synthetic --quick            # built-in sounds, < 1 min

Two protocols, which measure different things:

- ``--split speakers`` (leave-one-speaker-out): train on five of FSDD's six
  speakers' 2,500 clips, test on the sixth speaker's 500, for each speaker in
  turn: how well the features carry over to a voice (and a recording set-up)
  never heard. One row per held-out speaker and the mean.
- ``--split standard``: FSDD's own split, repetitions 0-4 of every speaker
  and digit tested (300 clips), the other 2,700 trained: the same six voices
  in training and test, so it measures recognising voices already heard
  (every recipe here scores 98-100 % on it).

Methods (``--methods``, comma-separated; default ``baseline,default``):

- ``baseline``: softmax regression (weight decay 1e-2) on each clip's 40-band
  log-mel spectrogram trimmed to its loud part and resampled to 32 frames,
  every value standardised.
- ``default``: :class:`fastsae.recipes.ClipClassifier` with its defaults, the
  recipe ``fastsae classify`` uses: four sets of self-taught features
  (frequency-local sparse-autoencoder filters, 12 x 8 and 8 x 10, learned on
  the training clips without labels, slid over frequency and time, pooled
  over 6 x 4 regions and 3 x 2 regions beside them; each shape on the clips
  as recorded and on the clips smoothed along frequency to 20 cepstral
  coefficients with a noise floor 35 dB below each clip's maximum), a softmax
  on the spectrogram and a fine-tuned two-layer convolutional network (the
  one of ``convnet2``), every softmax trained on the clips and four copies
  warped along frequency, stretched in time and through random channels,
  their log-probabilities averaged. Each member's own
  accuracy is reported too (``default/...``).
- ``self_taught_0_1``: fastsae 0.1.0's recipe (full-height filters 40 x 8,
  pooled over time only) with a softmax.
- ``stacked``: a stacked autoencoder 1280-200-200-10 on the standardised
  40 x 32 spectrogram, fine-tuned (``stacked_pretrained``: before fine-tuning).
- ``convnet2``: a two-layer convolutional autoencoder (24 filters 12 x 8,
  max-pooled 2 x 2; 32 filters 4 x 4 over those pooled maps, max-pooled 3 x 3)
  and its fine-tuned classifier, alone (the spectrogram standardised once
  over the training clips, not each clip's level subtracted).

No setting is chosen on a held-out speaker: the defaults of
``ClipClassifier`` were chosen by leave-two-speakers-out validation *inside*
the training speakers of each fold (``docs/speaker_independent.md`` gives
those validation figures and what was tried), and this script only applies
them. ``--json FILE`` writes ``{"protocol", "folds": {speaker: {method:
accuracy}}, "mean": {method: accuracy}, "seconds"}`` (for ``--split
standard``, one fold named ``"standard"``).
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import time
import warnings

import numpy as np

import fastsae
from fastsae import audio, datasets
from fastsae.pipeline import SelfTaughtFeatures, Standardizer, fixed_length, trim_silence
from fastsae.recipes import ClipClassifier

#: The settings of the runs (none tuned on a test set; see the module docstring).
FULL = dict(
    n_bands=40, trim_db=20.0, fixed_frames=32, raw_weight_decay=1e-2, softmax_iter=400,
    recipe=dict(),
    self_taught=dict(n_hidden=200, n_frames=8, n_windows=20000, max_iter=200, patch_bands=None,
                     n_pool_regions=(1, 4), normalize_level=False),
    stacked=dict(hidden_sizes=(200, 200), sparsity=0.1, beta=3.0, weight_decay=3e-3,
                 softmax_weight_decay=1e-4, pretrain_iter=200, softmax_iter=200,
                 finetune_iter=200),
    convnet2=dict(pretrain_iter=100, softmax_iter=200, finetune_iter=150),
)
#: Small settings for a smoke run (``--quick``).
QUICK = dict(
    n_bands=40, trim_db=20.0, fixed_frames=16, raw_weight_decay=1e-2, softmax_iter=100,
    recipe=dict(n_warps=1, max_iter=100),
    quick_features=dict(n_hidden=16, n_windows=2000, max_iter=30),
    quick_conv_net=dict(pretrain_iter=10, softmax_iter=30, finetune_iter=10),
    self_taught=dict(n_hidden=16, n_frames=4, n_windows=2000, max_iter=40, patch_bands=None,
                     n_pool_regions=(1, 4), normalize_level=False),
    stacked=dict(hidden_sizes=(32, 16), sparsity=0.1, beta=3.0, weight_decay=3e-3,
                 softmax_weight_decay=1e-4, pretrain_iter=30, softmax_iter=50,
                 finetune_iter=30),
    convnet2=dict(pretrain_iter=10, softmax_iter=30, finetune_iter=10),
)


# -- data -------------------------------------------------------------------------

def load_fsdd(path, cfg, *, cache_dir, n_jobs):
    """FSDD spectra, labels and metadata (speaker, repetition index)."""
    labels, meta = datasets.fsdd_files(path)
    spectra = audio.spectra_from_files(list(meta["path"]), kind="mel", n_bands=cfg["n_bands"],
                                       cache_dir=cache_dir, n_jobs=n_jobs)
    return spectra, labels, meta


def folds_of(split, meta):
    """[(fold name, train indices, {test group: test indices})] of a protocol."""
    speaker = meta["speaker"]
    speakers = sorted(set(speaker))
    if split == "standard":
        train, test = datasets.fsdd_split(meta)
        return [("standard", train, {"standard": test})]
    if split == "pairs":
        # inside the training speakers: learn on four, score each of the two left out
        return [(f"{a}|{b}", np.flatnonzero((speaker != a) & (speaker != b)),
                 {a: np.flatnonzero(speaker == a), b: np.flatnonzero(speaker == b)})
                for i, a in enumerate(speakers) for b in speakers[i + 1:]]
    return [(s, np.flatnonzero(speaker != s), {s: np.flatnonzero(speaker == s)})
            for s in speakers]


def inner_estimates(pair_scores):
    """Leave-one-speaker-out inside the training speakers of each outer fold, from the
    pairs protocol: for held-out speaker s, the mean over v != s of the accuracy on v
    of the model trained without s and v (s's own clips never scored)."""
    speakers = sorted({g for row in pair_scores.values() for g in row})
    out = {}
    for s in speakers:
        rows = [row[v] for name, row in pair_scores.items() if s in name.split("|")
                for v in row if v != s]
        out[s] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    return out


def load_synthetic(cfg, *, n_per_class, seed):
    """Built-in synthetic sounds: one fold, the first fifth of each class tested."""
    clips, labels = datasets.synthetic(n_per_class=n_per_class, random_state=seed)
    spectra = [audio.spectrum(y, 8000, kind="mel", n_bands=cfg["n_bands"]) for y in clips]
    pos = np.concatenate([np.arange(n_per_class)] * (labels.max() + 1))
    test = np.flatnonzero(pos < max(1, n_per_class // 5))
    return spectra, labels, [("synthetic", np.setdiff1d(np.arange(len(labels)), test),
                              {"synthetic": test})]


# -- methods ----------------------------------------------------------------------
# Each takes (spectra, labels, train indices, test indices, cfg, seed, n_jobs) and
# returns {method key: predicted labels of the test clips}.

def _fixed_input(spectra, cfg):
    X = fixed_length(trim_silence(spectra, top_db=cfg["trim_db"]), cfg["fixed_frames"])
    return X.reshape(len(X), -1).astype(np.float64)


def _subset(spectra, index):
    return [spectra[i] for i in index]


def run_baseline(spectra, labels, tr, te, cfg, seed, n_jobs, dtype="float32"):
    X = _fixed_input(spectra, cfg)
    scaler = Standardizer().fit(X[tr])
    clf = fastsae.SoftmaxRegression(cfg["raw_weight_decay"], max_iter=cfg["softmax_iter"],
                                    dtype=dtype, random_state=seed, n_jobs=n_jobs)
    clf.fit(scaler.transform(X[tr]), labels[tr])
    key = "baseline" if dtype == "float32" else f"baseline_{dtype}"
    return {key: clf.predict(scaler.transform(X[te]))}


def run_default(spectra, labels, tr, te, cfg, seed, n_jobs, dtype="float32"):
    kw = dict(cfg["recipe"], dtype=dtype)
    if "quick_features" in cfg:
        kw["features"] = [SelfTaughtFeatures(**cfg["quick_features"], dtype="float32",
                                             random_state=seed)]
        kw["conv_net"] = fastsae.recipes.default_conv_net(random_state=seed).set_params(
            **cfg["quick_conv_net"])
    clf = ClipClassifier(**kw, random_state=seed, n_jobs=n_jobs)
    clf.fit(_subset(spectra, tr), labels[tr])
    preds = clf.member_predictions(_subset(spectra, te))
    key = "default" if dtype == "float32" else f"default_{dtype}"
    out = {key: preds.pop("ensemble")}
    out.update({f"{key}/{name}": pred for name, pred in preds.items()})
    return out


def run_self_taught_0_1(spectra, labels, tr, te, cfg, seed, n_jobs, dtype="float32"):
    features = SelfTaughtFeatures(**cfg["self_taught"], trim_db=cfg["trim_db"],
                                  dtype=dtype, random_state=seed, n_jobs=n_jobs)
    F = features.fit_transform(_subset(spectra, tr))
    clf = fastsae.SoftmaxRegression(1e-2, max_iter=cfg["softmax_iter"], dtype=dtype,
                                    random_state=seed, n_jobs=n_jobs).fit(F, labels[tr])
    key = "self_taught_0_1" if dtype == "float32" else f"self_taught_0_1_{dtype}"
    return {key: clf.predict(features.transform(_subset(spectra, te)))}


def run_stacked(spectra, labels, tr, te, cfg, seed, n_jobs):
    X = _fixed_input(spectra, cfg)
    scaler = Standardizer().fit(X[tr])
    net = fastsae.StackedAutoencoder(**cfg["stacked"], decoder="linear", dtype="float32",
                                     random_state=seed, n_jobs=n_jobs)
    net.fit(scaler.transform(X[tr]), labels[tr])
    Xe = scaler.transform(X[te]).astype(np.float32)
    H = Xe
    for sae in net.autoencoders_:
        H = sae.transform(H)
    return {"stacked_pretrained": net.softmax_.predict(H), "stacked": net.predict(Xe)}


def run_convnet2(spectra, labels, tr, te, cfg, seed, n_jobs):
    clips = [S - S.mean() for S in trim_silence(spectra, top_db=cfg["trim_db"])]
    X = fixed_length(clips, cfg["fixed_frames"]).astype(np.float32)
    mu, sd = X[tr].mean(), X[tr].std()
    X = (X - mu) / sd
    layers = [dict(n_filters=24, patch_shape=(12, 8), pool_shape=(2, 2), pool="max"),
              dict(n_filters=32, patch_shape=(4, 4), n_pool_regions=(3, 3), pool="max")]
    net = fastsae.StackedConvolutionalAutoencoder(
        layers, decoder="linear", sparsity=0.05, weight_decay=1e-3, softmax_weight_decay=1e-3,
        dtype="float32", random_state=seed, n_jobs=n_jobs, **cfg["convnet2"])
    net.fit(X[tr], labels[tr])
    return {"convnet2": net.predict(X[te])}


METHODS = {"baseline": run_baseline, "default": run_default,
           "self_taught_0_1": run_self_taught_0_1, "stacked": run_stacked,
           "convnet2": run_convnet2,
           # the same recipes with the autoencoder and softmax trained in bfloat16
           # (needs pip install "fastsae-audio[mkl]")
           "baseline_bfloat16": functools.partial(run_baseline, dtype="bfloat16"),
           "default_bfloat16": functools.partial(run_default, dtype="bfloat16"),
           "self_taught_0_1_bfloat16": functools.partial(run_self_taught_0_1,
                                                         dtype="bfloat16")}


# -- the table --------------------------------------------------------------------

def summarize(folds):
    """{method: mean accuracy over the folds} (methods in the order first seen)."""
    keys = list(dict.fromkeys(k for row in folds.values() for k in row))
    return {k: float(np.mean([row[k] for row in folds.values() if k in row])) for k in keys}


def format_table(folds, mean, *, seconds):
    keys = list(mean)
    width = max(len(f) for f in list(folds) + ["mean"])
    cols = [max(len(k), 6) for k in keys]
    head = f"{'fold':<{width}}  " + "  ".join(f"{k:>{c}}" for k, c in zip(keys, cols))
    lines = [head, "-" * len(head)]
    for name, row in list(folds.items()) + [("mean", mean)]:
        if name == "mean":
            lines.append("-" * len(head))
        cells = [f"{100 * row[k]:>{c - 1}.1f}%" if k in row else f"{'-':>{c}}"
                 for k, c in zip(keys, cols)]
        lines.append(f"{name:<{width}}  " + "  ".join(cells))
    if len(folds) > 1:
        worst = {k: min(row[k] for row in folds.values() if k in row) for k in keys}
        lines.append(f"{'worst':<{width}}  " + "  ".join(
            f"{100 * worst[k]:>{c - 1}.1f}%" for k, c in zip(keys, cols)))
    lines.append(f"whole table (spectra, every training run and scoring): {seconds:.0f} s")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--fsdd", metavar="PATH", help="the FSDD folder (holding recordings/)")
    source.add_argument("--synthetic", action="store_true", help="built-in synthetic sounds")
    parser.add_argument("--split", choices=["speakers", "standard", "pairs"], default="speakers",
                        help="leave-one-speaker-out (default), FSDD's standard split, or "
                             "'pairs': leave-two-speakers-out, the validation inside the "
                             "training speakers that chose the defaults")
    parser.add_argument("--methods", default="baseline,default",
                        help=f"comma-separated, of {', '.join(METHODS)} (or 'all')")
    parser.add_argument("--speakers", default=None,
                        help="--split speakers: hold out only these (comma-separated)")
    parser.add_argument("--json", metavar="FILE", default=None, help="also write the results here")
    parser.add_argument("--quick", action="store_true", help="small settings (< 1 minute)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--n-jobs", type=int, default=None,
                        help="threads / worker processes (default: all cores)")
    parser.add_argument("--cache-dir", default=None,
                        help="spectra cache folder (default: fastsae's); 'none': no cache")
    args = parser.parse_args(argv)
    methods = ([m for m in METHODS if not m.endswith("_bfloat16")] if args.methods == "all"
               else args.methods.split(","))
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    cfg = QUICK if args.quick else FULL
    cache_dir = False if args.cache_dir == "none" else args.cache_dir

    t_start = time.perf_counter()
    if args.synthetic:
        spectra, labels, folds = load_synthetic(cfg, n_per_class=25 if args.quick else 100,
                                                seed=args.seed)
        protocol = "synthetic"
    else:
        spectra, labels, meta = load_fsdd(args.fsdd, cfg, cache_dir=cache_dir, n_jobs=args.n_jobs)
        folds = folds_of(args.split, meta)
        protocol = args.split
        if args.speakers:
            keep = args.speakers.split(",")
            folds = [f for f in folds if f[0] in keep]
            if not folds:
                parser.error(f"--speakers {args.speakers}: no such speaker")
    print(f"{protocol}: {len(spectra)} clips, {len(folds)} fold(s); spectra "
          f"{time.perf_counter() - t_start:.1f} s", flush=True)

    results = {}
    for name, tr, groups in folds:
        te = np.concatenate(list(groups.values()))
        for method in methods:
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", fastsae.ConvergenceWarning)
                preds = METHODS[method](spectra, labels, tr, te, cfg, args.seed, args.n_jobs)
            pos = 0
            for group, idx in groups.items():
                row = results.setdefault(name, {}).setdefault(group, {}) if len(groups) > 1 \
                    else results.setdefault(group, {})
                for key, pred in preds.items():
                    row[key] = float(np.mean(np.asarray(pred)[pos:pos + idx.size] == labels[idx]))
                pos += idx.size
            print(f"  {name}: {method} {time.perf_counter() - t:.0f} s", flush=True)
    if args.split == "pairs" and not args.synthetic:
        pairs, results = results, inner_estimates(results)
    mean = summarize(results)
    seconds = time.perf_counter() - t_start
    print()
    print(format_table(results, mean, seconds=seconds))
    if args.json:
        doc = {"protocol": protocol, "folds": results, "mean": mean, "seconds": seconds}
        if args.split == "pairs" and not args.synthetic:
            doc["pairs"] = pairs
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
