"""The ``fastsae`` command.

::

    fastsae demo                       # built-in synthetic audio: the whole pipeline, a report folder
    fastsae features AUDIO_DIR -o spectra.npz
    fastsae train-sae AUDIO_DIR -o sae.npz --hidden 256 --sparsity 0.05
    fastsae classify AUDIO_DIR --sae sae.npz -o report/
    fastsae show sae.npz -o filters.png
    fastsae bench

Every argument, path and option is checked before any work starts. An error
a user can act on is one line on stderr, never a traceback (``--verbose``
adds it): exit status 2 for how the command was called (a bad option, a
missing folder, an output path that cannot be written), 1 for what the data
hold (an unreadable audio file, a damaged model file, NaN in the data), 130
after Ctrl-C. What is printed as written is what was written.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

from .exceptions import ParameterError

import numpy as np

EXIT_ERROR = 2          # how the command was called
EXIT_DATA = 1           # what the data hold
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """An error in how the command was called: printed as one line, exit status 2."""


def _input_file(path, flag):
    """A file the command reads: it must exist (what it holds is checked when read)."""
    if not Path(path).is_file():
        raise CommandError(f"{flag} {path}: {'is a folder' if Path(path).is_dir() else 'does not exist'}")
    return path


def _output_file(path, flag, suffix):
    """A file the command will write: its folder can be made, it is not a folder, and it
    ends in ``suffix``; checked before any work, so that no result is lost at the end."""
    path = Path(path)
    if path.suffix.lower() != suffix:
        raise CommandError(f"{flag} {path}: must end in {suffix}")
    if path.is_dir():
        raise CommandError(f"{flag} {path}: is a folder")
    for parent in [path.parent, *path.parent.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise CommandError(f"{flag} {path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK):
                raise CommandError(f"{flag} {path}: cannot write in {parent}")
            break
    return path


# -- helpers -------------------------------------------------------------------

class Console:
    def __init__(self, quiet=False, verbose=False):
        self.quiet, self.verbose = quiet, verbose

    def info(self, msg=""):
        """Progress and context: silenced by ``--quiet``."""
        if not self.quiet:
            print(msg, flush=True)

    def result(self, msg=""):
        """Results (tables, where the output went): printed even with ``--quiet``."""
        print(msg, flush=True)

    def debug(self, msg):
        if self.verbose:
            print(msg, file=sys.stderr, flush=True)


def _table(rows, header):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(header, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


def _audio_inputs(source, *, labels="subfolder"):
    """Files (and labels) of an audio folder, or spectra saved by ``fastsae features``.

    Returns (items, labels, kind, params) with kind "files" or "spectra";
    ``params`` are the spectrogram settings stored in a spectra file (else None).
    """
    from . import datasets
    from .audio import load_spectra

    path = Path(source)
    if path.is_file() and path.suffix == ".npz":
        if labels == "fsdd":
            raise CommandError("--labels fsdd needs the FSDD folder itself (the file names "
                               "carry the digits and the split), not a spectra file")
        spectra, info = load_spectra(path)
        return spectra, info["labels"], "spectra", info.get("params") or None
    if not path.exists():
        raise CommandError(f"{source}: no such folder")
    if not path.is_dir():
        raise CommandError(f"{source}: not a folder (nor a .npz written by 'fastsae features')")
    if labels == "fsdd":
        try:
            y, meta = datasets.fsdd_files(path)
        except ParameterError as exc:
            raise CommandError(str(exc)) from None
        return list(meta["path"]), [str(d) for d in y], "files", None
    try:
        files, names = datasets.folder_files(path)
    except Exception:
        flat = sorted(str(p) for p in path.rglob("*") if p.is_file()
                      and p.suffix.lower() in _audio_suffixes()
                      and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not flat:
            raise CommandError(f"{source}: no audio files found "
                               f"(looked for {', '.join(sorted(_audio_suffixes()))})") from None
        return flat, None, "files", None
    return files, names, "files", None


def _audio_suffixes():
    from .audio import AUDIO_SUFFIXES
    return AUDIO_SUFFIXES


def _spectra_with_paths(items, kind, spectrogram, args):
    from .audio import spectra_from_files

    if kind == "spectra":
        return items, list(range(len(items)))
    spectra, kept = spectra_from_files(items, sr=spectrogram.sr, n_jobs=args.n_jobs,
                                       cache_dir=args.cache_dir, progress=not args.quiet,
                                       on_error=args.on_error, return_paths=True,
                                       **spectrogram._spectrum_kw())
    index = {p: i for i, p in enumerate(items)}
    return spectra, [index[p] for p in kept]


def _self_taught(model):
    """The fitted SelfTaughtFeatures inside a saved model, or None."""
    from sklearn.pipeline import Pipeline

    from .pipeline import SelfTaughtFeatures

    if isinstance(model, Pipeline) and "features" in model.named_steps:
        model = model["features"]
    return model if isinstance(model, SelfTaughtFeatures) and hasattr(model, "sae_") else None


def _find_autoencoder(model, kind="encoder"):
    """(weights, n_bands, n_frames) of the filters inside any saved model."""
    from .autoencoder import SparseAutoencoder
    from sklearn.pipeline import Pipeline

    from .pipeline import SelfTaughtFeatures

    if isinstance(model, Pipeline) and "features" in model.named_steps:
        model = model["features"]
    if isinstance(model, SelfTaughtFeatures) and hasattr(model, "sae_"):
        return (model.filters(kind),) + model._patch_shape()
    if isinstance(model, SparseAutoencoder) and hasattr(model, "W1_"):
        return (model.W1_ if kind == "encoder" or model.tied else model.W2_.T), None, None
    if hasattr(model, "weights_") and hasattr(model, "patch_shape"):
        if kind == "decoder":
            raise CommandError("--decoder: a convolutional autoencoder's filters are drawn as "
                               "they are (leave out --decoder)")
        ph, pw = model.patch_shape
        return model.weights_, ph * (model.weights_.shape[1] // (ph * pw)), pw
    raise CommandError(f"the model ({type(model).__name__}) holds no fitted autoencoder filters")


# -- commands ------------------------------------------------------------------

def _spectrogram(args, **kw):
    """The Spectrogram of the audio options, checked (``--n-bands``: 40, or for
    ``--kind fft`` the bins that ``n_fft`` gives)."""
    from .audio import Spectrogram, spectrum

    n_bands = args.n_bands if args.n_bands is not None else (None if args.kind == "fft" else 40)
    spec = Spectrogram(args.kind, n_bands, sr=args.sr, **kw)
    try:
        spec.fit()
        spectrum(np.ones(64, np.float32), args.sr or 8000, **spec._spectrum_kw())
    except ParameterError as exc:
        raise CommandError(str(exc)) from None
    return spec


def cmd_features(args, console):
    from .audio import save_spectra

    _output_file(args.output, "-o", ".npz")
    spec = _spectrogram(args, n_fft=args.n_fft, hop_length=args.hop_length)
    items, labels, kind, _ = _audio_inputs(args.audio_dir, labels=args.labels)
    if kind != "files":
        raise CommandError("features needs an audio folder")
    t = time.perf_counter()
    spectra, kept = _spectra_with_paths(items, kind, spec, args)
    out = args.output
    save_spectra(out, spectra, paths=[items[i] for i in kept],
                 labels=[labels[i] for i in kept] if labels is not None else None,
                 params=spec.get_params())
    frames = sum(S.shape[1] for S in spectra)
    console.result(f"{len(spectra)} spectra ({spec.kind}, {spectra[0].shape[0]} bands, {frames} frames) "
                 f"in {time.perf_counter() - t:.1f} s -> {out}")
    return 0


def _feature_model(args):
    from sklearn.pipeline import Pipeline

    from .pipeline import SelfTaughtFeatures

    params = dict(n_hidden=args.hidden, n_frames=args.n_frames, sparsity=args.sparsity,
                  patch_bands=args.patch_bands or None,
                  max_iter=400 if args.max_iter is None else args.max_iter, backend=args.backend, dtype=args.dtype,
                  n_jobs=args.n_jobs, random_state=args.seed, verbose=not args.quiet)
    if args.n_windows is not None:
        params["n_windows"] = args.n_windows
    if args.beta is not None:
        params["beta"] = args.beta
    if args.weight_decay is not None:
        params["weight_decay"] = args.weight_decay
    return Pipeline([("spectrogram", _spectrogram(args)),
                     ("features", SelfTaughtFeatures(**params))])


def cmd_train_sae(args, console):
    from . import io

    out = _output_file(args.output, "-o", ".npz")
    checkpoint = args.checkpoint or str(out.with_suffix("")) + ".checkpoint.npz"
    _output_file(checkpoint, "--checkpoint", ".npz")
    if args.resume:
        if not os.path.exists(checkpoint):
            raise CommandError(f"--resume: no checkpoint at {checkpoint}")
        model = io.load(checkpoint)
        if args.max_iter is not None:
            model["features"].max_iter = args.max_iter
        console.info(f"resuming from {checkpoint} "
                     f"({model['features'].sae_.n_iter_ if hasattr(model['features'], 'sae_') else 0} "
                     "iterations done)")
    else:
        model = _feature_model(args)
    try:
        model["features"]._validate_params()
    except ParameterError as exc:
        raise CommandError(str(exc)) from None
    items, _, kind, stored = _audio_inputs(args.audio_dir)
    if kind == "spectra" and stored and not args.resume:
        # the model must compute the spectra it was trained on: take the file's settings
        from .audio import Spectrogram
        spec_params = {k: v for k, v in stored.items() if k in Spectrogram().get_params()}
        model.steps[0] = ("spectrogram", Spectrogram(**spec_params))
        console.info("spectrogram settings from the spectra file: "
                     + ", ".join(f"{k}={v}" for k, v in spec_params.items()))
    spec, feats = model["spectrogram"], model["features"]
    if kind == "spectra":
        spectra = items
    else:
        spectra, _ = _spectra_with_paths(items, kind, spec.fit(), args)
    console.info(f"{len(spectra)} spectra; training a {feats.n_hidden}-unit sparse autoencoder "
                 f"on {feats.n_frames}-frame windows ({feats.backend}, {feats.dtype})")

    def save_checkpoint(iteration, theta, cost):
        if args.checkpoint_every and iteration % args.checkpoint_every == 0:
            feats.set_training_state(theta, iteration)
            io.save(model, checkpoint)
            console.debug(f"checkpoint at iteration {iteration} (cost {cost:.6g}) -> {checkpoint}")

    client = None
    if args.scheduler:
        from .distributed import connect
        client = connect(args.scheduler)
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        feats.fit(spectra, callback=save_checkpoint, resume=args.resume, client=client)
    for w in caught:
        if "interrupted" in str(w.message):
            console.info(f"interrupted: {w.message}")
        elif not args.quiet:
            console.debug(f"warning: {w.message}")
    io.save(model, out)
    sae = feats.sae_
    console.result(f"trained in {time.perf_counter() - t:.1f} s: {sae.n_iter_} iterations, "
                 f"final cost {sae.loss_curve_[-1]:.6g} -> {out}")
    if getattr(sae, "interrupted_", False):
        return EXIT_INTERRUPTED
    if os.path.exists(checkpoint):          # finished: the model file holds it all
        os.unlink(checkpoint)
    return 0


def _split(labels, test_size, seed):
    """Stratified train/test indices."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = max(1, int(round(test_size * idx.size))) if idx.size > 1 else 0
        test += idx[:n_test].tolist()
        train += idx[n_test:].tolist()
    return np.sort(train), np.sort(test)


def _labelled_spectra(source, args, spectrogram, what):
    """(spectra, labels, FSDD repetition index or None) of a labelled folder or spectra file."""
    items, labels, kind, _ = _audio_inputs(source, labels=args.labels)
    if labels is None:
        raise CommandError(f"{source}: labels come from class sub-folders "
                           f"({what}/<class>/<file>), and there are none")
    spectra, kept = _spectra_with_paths(items, kind, spectrogram, args)
    labels = np.asarray(labels)[kept]
    index = None
    if args.labels == "fsdd":
        index = np.array([int(Path(items[i]).stem.split("_")[2]) for i in kept])
    return spectra, labels, index


def _report_folder(path):
    """The report folder, made now: a path that cannot hold it fails before any work."""
    report = Path(path)
    if report.exists() and not report.is_dir():
        raise CommandError(f"-o {path}: exists and is not a folder")
    try:
        report.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"-o {path}: cannot make the report folder ({exc.strerror})") from None
    return report


def _fast_recipe(seed):
    """Small settings of the default recipe (``classify --fast``): a quick look."""
    from .pipeline import SelfTaughtFeatures
    from .recipes import default_conv_net

    return dict(features=[SelfTaughtFeatures(n_hidden=32, n_windows=4000, max_iter=50,
                                             dtype="float32", random_state=seed)],
                conv_net=default_conv_net(random_state=seed).set_params(
                    pretrain_iter=20, softmax_iter=50, finetune_iter=20),
                n_warps=1, max_iter=100)


def cmd_classify(args, console):
    from sklearn.pipeline import Pipeline

    from . import io
    from .recipes import ClipClassifier
    from .softmax import SoftmaxRegression
    from .viz import confusion_matrix, plot_confusion_matrix

    features = None
    if args.sae is not None:
        model = io.load(_input_file(args.sae, "--sae"))
        if not isinstance(model, Pipeline) or "features" not in model.named_steps:
            raise CommandError(f"{args.sae}: not a feature model written by 'fastsae train-sae'")
        spectrogram, features = model["spectrogram"], model["features"]
    else:
        spectrogram = _spectrogram(args)
    report = _report_folder(args.output)
    spectra, labels, index = _labelled_spectra(args.audio_dir, args, spectrogram, "TRAIN_DIR")
    if args.test is not None:
        test_spectra, test_labels, _ = _labelled_spectra(args.test, args, spectrogram, "TEST_DIR")
        train = np.arange(len(spectra))
        spectra, labels = spectra + test_spectra, np.concatenate([labels, test_labels])
        test = np.arange(train.size, len(spectra))
    elif index is not None:                 # FSDD's standard split
        train, test = np.flatnonzero(index >= 5), np.flatnonzero(index < 5)
    else:
        train, test = _split(labels, args.test_size, args.seed)
    if np.unique(labels[train]).size < 2:
        raise CommandError("classify needs at least two classes in the training clips")
    unseen = sorted(set(labels[test].tolist()) - set(labels[train].tolist()))
    if unseen:
        raise CommandError(f"the test clips have classes the training clips lack: {unseen[:5]}")
    pick = lambda idx: [spectra[i] for i in idx]      # noqa: E731
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if features is None:
            clf = ClipClassifier(weight_decay=1e-2 if args.weight_decay is None else
                                 args.weight_decay, n_jobs=args.n_jobs, random_state=args.seed,
                                 verbose=not args.quiet, **(_fast_recipe(args.seed)
                                                            if args.fast else {}))
            clf.fit(pick(train), labels[train])
            predict = clf.predict
            what = "the default recipe (ClipClassifier)"
            io.save(Pipeline([("spectrogram", spectrogram), ("classifier", clf)]),
                    report / "classifier.npz")
        else:
            F = features.transform(spectra)
            clf = SoftmaxRegression(1e-4 if args.weight_decay is None else args.weight_decay,
                                    max_iter=args.max_iter, backend=features.backend,
                                    random_state=args.seed, verbose=not args.quiet)
            clf.fit(F[train], labels[train])
            predict = lambda idx: clf.predict(F[idx])     # noqa: E731
            what = f"a softmax on the features of {args.sae}"
    seconds = time.perf_counter() - t
    if features is None:
        pred, train_pred = predict(pick(test)), predict(pick(train))
    else:
        pred, train_pred = predict(test), predict(train)
    train_acc = float(np.mean(train_pred == labels[train]))
    test_acc = float(np.mean(pred == labels[test])) if test.size else float("nan")
    classes = clf.classes_
    matrix = confusion_matrix(labels[test], pred, labels=classes)
    recall = {str(c): float(matrix[k, k] / matrix[k].sum()) if matrix[k].sum() else None
              for k, c in enumerate(classes)}
    if test.size:
        plot_confusion_matrix(labels[test], pred, report / "confusion.png", labels=classes)
    metrics = {"train": os.fspath(args.audio_dir), "test": os.fspath(args.test or args.audio_dir),
               "model": what, "n_train": int(train.size), "n_test": int(test.size),
               "classes": [str(c) for c in classes], "train_accuracy": train_acc,
               "test_accuracy": test_acc, "recall": recall,
               "confusion": matrix.tolist(), "fit_seconds": seconds}
    (report / "metrics.json").write_text(json.dumps(metrics, indent=2))
    rows = [[c, f"{r:.1%}" if r is not None else "-"] for c, r in recall.items()]
    (report / "report.md").write_text(
        f"# Classification report\n\nModel: {what}; trained on `{args.audio_dir}`, tested on "
        f"`{args.test or 'a held-out part of it'}`\n\n"
        f"| set | clips | accuracy |\n|---|---|---|\n| train | {train.size} | {train_acc:.1%} |\n"
        f"| test | {test.size} | {test_acc:.1%} |\n\n| class | recall |\n|---|---|\n"
        + "".join(f"| {c} | {r} |\n" for c, r in rows) + "\n![confusion matrix](confusion.png)\n")
    console.result(_table([["train", train.size, f"{train_acc:.1%}"],
                           ["test", test.size, f"{test_acc:.1%}"]], ["set", "clips", "accuracy"]))
    console.result(_table(rows, ["class", "recall"]))
    console.result(f"report -> {report}")
    return 0


def cmd_show(args, console):
    from . import io
    from .viz import display_network

    _output_file(args.output, "-o", ".png")
    model = io.load(_input_file(args.model, "MODEL"))
    features = _self_taught(model)
    if features is not None and not args.decoder and not (args.n_bands or args.n_frames):
        # the readable picture: each filter with Hz and ms axes, by centre frequency
        spec = model["spectrogram"] if "spectrogram" in getattr(model, "named_steps", {}) else None
        try:
            fig = features.plot_filters(args.output, sr=getattr(spec, "sr", None) or 8000,
                                        kind=getattr(spec, "kind", "mel"))
        except ParameterError:          # no frequency axis (cepstra): the plain mosaic below
            fig = None
        if fig is not None:
            console.result(f"{features.n_hidden} filters ({features._patch_shape()[0]} bands x "
                           f"{features.n_frames} frames), by centre frequency -> {args.output}")
            return 0
    W, n_bands, n_frames = _find_autoencoder(model, "decoder" if args.decoder else "encoder")
    n_bands = args.n_bands or n_bands
    n_frames = args.n_frames or n_frames
    if n_bands is None or n_frames is None:
        if n_frames is None and n_bands:
            n_frames = W.shape[1] // n_bands
        elif n_bands is None and n_frames:
            n_bands = W.shape[1] // n_frames
        else:
            side = int(round(np.sqrt(W.shape[1])))
            if side * side != W.shape[1]:
                raise CommandError("give --n-bands and --n-frames: the model does not say how its "
                                   f"{W.shape[1]} inputs are laid out")
            n_bands = n_frames = side
    if n_bands * n_frames != W.shape[1]:
        raise CommandError(f"--n-bands {n_bands} x --n-frames {n_frames} != {W.shape[1]} inputs")
    img = display_network(W, n_bands, n_frames, path=args.output)
    console.result(f"{W.shape[0]} filters ({n_bands} bands x {n_frames} frames) -> {args.output} "
                 f"({img.shape[1]}x{img.shape[0]} px)")
    return 0


def cmd_bench(args, console):
    from .core.threads import numba_threads
    from .benchmarks import main as bench_main
    with numba_threads(args.n_jobs):          # --n-jobs: the Numba kernels' threads
        bench_main((["--quick"] if args.quick else []) + list(args.areas))
    return 0


def cmd_demo(args, console):
    from .demo import run_demo
    run_demo(args.output, fast=args.fast, seed=args.seed, n_jobs=args.n_jobs,
             backend=args.backend, console=console)
    return 0


# -- the parser ----------------------------------------------------------------

def _common(p):
    g = p.add_argument_group("general")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress bars, only results")
    g.add_argument("--verbose", "-v", action="store_true",
                   help="more detail, and a traceback on errors")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--n-jobs", type=int, default=None,
                   help="threads / processes to use (default: all cores)")


def _audio_opts(p, *, labels=False):
    g = p.add_argument_group("audio")
    g.add_argument("--kind", default="mel", choices=["fft", "mel", "bark", "cepstrum", "cqt"],
                   help="spectral transform (default mel)")
    g.add_argument("--n-bands", type=int, default=None,
                   help="bands (default 40; with --kind fft, set by the FFT size)")
    g.add_argument("--sr", type=int, default=None, help="resample to this rate (Hz)")
    g.add_argument("--on-error", choices=["fail", "skip"], default="fail",
                   help="unreadable audio files: stop (default) or skip with a warning")
    g.add_argument("--no-cache", dest="cache_dir", action="store_const", const=False, default=None,
                   help="do not read or write the spectra cache")
    if labels:
        g.add_argument("--labels", choices=["subfolder", "fsdd"], default="subfolder",
                       help="class labels from sub-folder names (default) or FSDD file names")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="fastsae",
        description="Learn audio features without labels (sparse autoencoders) and classify with them.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="the whole pipeline on built-in synthetic audio")
    p.add_argument("-o", "--output", default="fastsae-demo", help="report folder (default fastsae-demo)")
    p.add_argument("--fast", action="store_true", help="tiny settings (a few seconds)")
    p.add_argument("--backend", default="numba", choices=["numba", "numpy", "cuda"])
    _common(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("features", help="spectra of every audio file of a folder, into one .npz")
    p.add_argument("audio_dir", metavar="AUDIO_DIR")
    p.add_argument("-o", "--output", required=True, help="the .npz to write")
    p.add_argument("--n-fft", type=int, default=None)
    p.add_argument("--hop-length", type=int, default=None)
    _audio_opts(p, labels=True)
    _common(p)
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("train-sae", help="train a sparse autoencoder on windows of spectra")
    p.add_argument("audio_dir", metavar="AUDIO_DIR", help="audio folder, or spectra .npz")
    p.add_argument("-o", "--output", required=True, help="model file (.npz)")
    p.add_argument("--hidden", type=int, default=256, help="hidden units (default 256)")
    p.add_argument("--n-frames", type=int, default=4, help="frames per window (default 4)")
    p.add_argument("--patch-bands", type=int, default=12,
                   help="bands per patch: filters slid over frequency (default 12; 0: every "
                        "band, full-height filters)")
    p.add_argument("--n-windows", type=int, default=None, help="training windows to sample")
    p.add_argument("--sparsity", type=float, default=0.05, help="target activation (default 0.05)")
    p.add_argument("--beta", type=float, default=None, help="sparsity weight")
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--max-iter", type=int, default=None,
                   help="L-BFGS iterations (default 400; with --resume, the new total)")
    p.add_argument("--backend", default="numba", choices=["numba", "numpy", "cuda"])
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                   help="write the model every N iterations (atomically)")
    p.add_argument("--checkpoint", default=None, help="checkpoint file (default: OUTPUT.checkpoint.npz)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    p.add_argument("--scheduler", default=None,
                   help="Dask scheduler address: train on a cluster (needs fastsae[dist])")
    _audio_opts(p)
    _common(p)
    p.set_defaults(func=cmd_train_sae)

    p = sub.add_parser("classify", help="train a classifier on labelled clips, score it on "
                                        "others; writes a report")
    p.add_argument("audio_dir", metavar="TRAIN_DIR",
                   help="labelled training audio (a sub-folder per class, FSDD file names with "
                        "--labels fsdd, or a spectra .npz)")
    p.add_argument("--test", metavar="TEST_DIR", default=None,
                   help="score on these clips (labelled the same way); default: a held-out "
                        "--test-size of TRAIN_DIR (FSDD's standard split with --labels fsdd)")
    p.add_argument("--sae", default=None,
                   help="a model from 'fastsae train-sae': a softmax on its features instead "
                        "of the default recipe")
    p.add_argument("-o", "--output", default="report", help="report folder (default report)")
    p.add_argument("--test-size", type=float, default=0.25, help="held-out fraction (default 0.25)")
    p.add_argument("--weight-decay", type=float, default=None,
                   help="softmax weight decay (default 1e-2, with --sae 1e-4)")
    p.add_argument("--fast", action="store_true",
                   help="small settings of the default recipe (a quick look, less accurate)")
    p.add_argument("--max-iter", type=int, default=400)
    _audio_opts(p, labels=True)
    _common(p)
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("show", help="draw the learned filters of a model as a PNG")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("-o", "--output", default="filters.png")
    p.add_argument("--n-bands", type=int, default=None)
    p.add_argument("--n-frames", type=int, default=None)
    p.add_argument("--decoder", action="store_true",
                   help="a plain mosaic of the patterns the hidden units reconstruct (decoder, "
                        "whitening undone); a feature model is otherwise drawn with Hz and ms "
                        "axes, ordered by centre frequency")
    _common(p)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("bench", help="benchmark ratio tables on this machine")
    p.add_argument("areas", nargs="*",
                   help="any of sae, conv, softmax, convae, whitening, scaling, compile "
                        "(default: all but compile)")
    p.add_argument("--quick", action="store_true", help="smaller shapes, fewer repeats")
    _common(p)
    p.set_defaults(func=cmd_bench)
    return parser


def _check_args(args):
    for name in ("hidden", "n_frames", "max_iter", "n_bands", "n_windows"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise CommandError(f"--{name.replace('_', '-')} must be a positive integer; got {value}")
    if getattr(args, "checkpoint_every", 0) < 0:
        raise CommandError(f"--checkpoint-every must be 0 (never) or positive; got "
                           f"{args.checkpoint_every}")
    if getattr(args, "weight_decay", None) is not None and args.weight_decay < 0:
        raise CommandError(f"--weight-decay must be >= 0; got {args.weight_decay}")
    for name in ("sparsity", "beta"):
        value = getattr(args, name, None)
        if value is not None and not (value >= 0):
            raise CommandError(f"--{name} must be >= 0; got {value}")
    if getattr(args, "patch_bands", 0) < 0:
        raise CommandError(f"--patch-bands must be positive (or 0 for every band); got "
                           f"{args.patch_bands}")
    if getattr(args, "n_jobs", None) == 0:
        raise CommandError("--n-jobs must be positive (or -1 for all cores); got 0")
    ts = getattr(args, "test_size", None)
    if ts is not None and not 0.0 < ts < 1.0:
        raise CommandError(f"--test-size must be in (0, 1); got {ts}")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from ._version import __version__
        print(f"fastsae {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return EXIT_ERROR
    console = Console(quiet=args.quiet, verbose=args.verbose)
    from .exceptions import (BackendUnavailableError, NumericalError, ParameterError)
    try:
        _check_args(args)
        if not args.verbose:
            warnings.filterwarnings("ignore", category=RuntimeWarning, module="numpy")
        return args.func(args, console)
    except KeyboardInterrupt:
        print("fastsae: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except CommandError as exc:
        if args.verbose:
            raise
        print(f"fastsae: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (ParameterError, BackendUnavailableError, NumericalError, OSError) as exc:
        if args.verbose:
            raise
        message = f"{exc.strerror}: {exc.filename}" if isinstance(exc, OSError) \
            and exc.filename else str(exc)
        print(f"fastsae: error: {message.splitlines()[0] if message else type(exc).__name__}",
              file=sys.stderr)
        return EXIT_DATA


if __name__ == "__main__":
    sys.exit(main())
