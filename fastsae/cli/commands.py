"""The commands: features, train-sae, classify, show, bench, demo."""
from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

from ..exceptions import ParameterError
from ._json import emit, table_document
from ._support import (EXIT_INTERRUPTED, CommandError, _audio_inputs, _find_autoencoder,
                       _front_end_settings, _input_file, _is_feature_model,
                       _no_audio_options, _output_file, _refuse_other_settings, _self_taught,
                       _spectra_with_paths, _table, _writable)


def _spectrogram(args, **kw):
    """The Spectrogram of the audio options, checked (``--n-bands``: 40, or for
    ``--kind fft`` the bins that ``n_fft`` gives)."""
    from ..audio import Spectrogram, spectrum

    n_bands = args.n_bands if args.n_bands is not None else (None if args.kind == "fft" else 40)
    spec = Spectrogram(args.kind, n_bands, sr=args.sr, **kw)
    try:
        spec.fit()
        spectrum(np.ones(64, np.float32), args.sr or 8000, **spec._spectrum_kw())
    except ParameterError as exc:
        raise CommandError(str(exc)) from None
    return spec


def cmd_features(args, console):
    from ..audio import save_spectra

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

    from ..pipeline import SelfTaughtFeatures

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


def _stored_spectrogram(stored, console):
    """The Spectrogram that a spectra file's stored settings describe (and say so)."""
    from ..audio import Spectrogram

    params = {k: v for k, v in stored.items() if k in Spectrogram().get_params()}
    console.info("spectrogram settings from the spectra file: "
                 + ", ".join(f"{k}={v}" for k, v in params.items()))
    return Spectrogram(**params)


def cmd_train_sae(args, console):
    from .. import io

    t_start = time.perf_counter()
    out = _output_file(args.output, "-o", ".npz")
    checkpoint = args.checkpoint or str(out.with_suffix("")) + ".checkpoint.npz"
    _output_file(checkpoint, "--checkpoint", ".npz")
    same = lambda a, b: os.path.realpath(a) == os.path.realpath(b)     # noqa: E731
    if same(checkpoint, out):            # the finished run removes its checkpoint
        raise CommandError(f"--checkpoint {checkpoint} is the -o file: give another path")
    if same(args.audio_dir, out):
        raise CommandError(f"-o {args.output} is the input: give another path")
    if args.resume:
        if not os.path.exists(checkpoint):
            raise CommandError(f"--resume: no checkpoint at {checkpoint}")
        model = io.load(checkpoint)
        if not _is_feature_model(model):
            raise CommandError(f"--resume: {checkpoint} is not a checkpoint of 'fastsae train-sae'")
        f = model["features"]
        _refuse_other_settings(args, dict(
            _front_end_settings(model["spectrogram"]), hidden=f.n_hidden, n_frames=f.n_frames,
            patch_bands=f.patch_bands or 0, n_windows=f.n_windows, sparsity=f.sparsity,
            beta=f.beta, weight_decay=f.weight_decay, backend=f.backend,
            dtype=str(np.dtype(f.dtype)), seed=f.random_state),
            f"--resume continues {checkpoint} with the settings it was made with")
        done = int(getattr(getattr(f, "sae_", None), "n_iter_", 0))
        if args.max_iter is not None:
            if args.max_iter <= done:        # nothing to do, and the older state would be saved
                raise CommandError(f"--max-iter {args.max_iter}: the checkpoint has done {done} "
                                   "iterations already; give the new total, above that")
            f.max_iter = args.max_iter
        console.info(f"resuming from {checkpoint} ({done} iterations done)")
    else:
        model = _feature_model(args)
    try:
        model["features"]._validate_params()
    except ParameterError as exc:
        raise CommandError(str(exc)) from None
    items, _, kind, stored = _audio_inputs(args.audio_dir)
    if kind == "spectra":
        _no_audio_options(args, args.audio_dir, stored)
    if kind == "spectra" and stored and not args.resume:
        # the model must compute the spectra it was trained on: take the file's settings
        model.steps[0] = ("spectrogram", _stored_spectrogram(stored, console))
    spec, feats = model["spectrogram"], model["features"]
    # with a cluster and audio files, the workers compute the spectra and the patches
    on_workers = bool(args.scheduler) and kind == "files"
    t = time.perf_counter()
    if kind == "spectra" or on_workers:
        spectra = items
    else:
        spectra, _ = _spectra_with_paths(items, kind, spec.fit(), args)
    spectra_seconds = None if on_workers else time.perf_counter() - t
    if on_workers:
        console.info(f"{len(items)} audio files; the Dask workers compute their spectra and "
                     f"{feats.n_frames}-frame patches and train a {feats.n_hidden}-unit sparse "
                     f"autoencoder on them ({feats.backend}, {feats.dtype})")
    else:
        console.info(f"{len(spectra)} spectra; training a {feats.n_hidden}-unit sparse "
                     f"autoencoder on {feats.n_frames}-frame windows ({feats.backend}, "
                     f"{feats.dtype})")

    def save_checkpoint(iteration, theta, cost):
        if args.checkpoint_every and iteration % args.checkpoint_every == 0:
            feats.set_training_state(theta, iteration)
            io.save(model, checkpoint)
            console.debug(f"checkpoint at iteration {iteration} (cost {cost:.6g}) -> {checkpoint}")

    client = None
    if args.scheduler:
        from ..distributed import connect
        client = connect(args.scheduler)
    t = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if on_workers:
                feats.fit_files(items, spec, client=client, callback=save_checkpoint,
                                resume=args.resume, cache_dir=args.cache_dir,
                                on_error=args.on_error)
            else:
                feats.fit(spectra, callback=save_checkpoint, resume=args.resume, client=client)
    finally:
        if client is not None:
            client.close()
    for w in caught:
        if "interrupted" in str(w.message):
            console.info(f"interrupted: {w.message}")
        elif not args.quiet:
            console.debug(f"warning: {w.message}")
    fit_seconds = time.perf_counter() - t
    io.save(model, out)
    sae = feats.sae_
    console.result(f"trained in {fit_seconds:.1f} s: {sae.n_iter_} iterations, "
                 f"final cost {sae.loss_curve_[-1]:.6g} -> {out}")
    interrupted = bool(getattr(sae, "interrupted_", False))
    if not interrupted and os.path.exists(checkpoint):   # finished: the model file holds it all
        os.unlink(checkpoint)
    emit(args, "train-sae",
         settings={"input": os.fspath(args.audio_dir), "scheduler": args.scheduler,
                   "resume": args.resume, "spectrogram": spec.get_params(),
                   "features": feats.get_params()},
         data={"n_spectra": feats.n_files_ if on_workers else len(spectra),
               "n_windows": feats.n_windows_,
               "n_visible": int(sae.n_features_in_), "n_hidden": int(sae.n_hidden)},
         metrics={"n_iter": sae.n_iter_, "final_cost": sae.loss_curve_[-1],
                  "loss_curve": sae.loss_curve_, "converged": getattr(sae, "converged_", None),
                  "interrupted": interrupted},
         timings={"spectra_seconds": spectra_seconds, "fit_seconds": fit_seconds,
                  "total_seconds": time.perf_counter() - t_start},
         outputs={"model": out,
                  "checkpoint": checkpoint if os.path.exists(checkpoint) else None})
    return EXIT_INTERRUPTED if interrupted else 0


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
    # index arrays even when empty (np.sort([]) would give floats)
    return np.sort(np.array(train, dtype=np.intp)), np.sort(np.array(test, dtype=np.intp))


def _labelled_spectra(source, args, spectrogram, what):
    """(spectra, labels, FSDD repetition index or None, the spectrogram settings a spectra
    file stores or None) of a labelled folder or spectra file."""
    items, labels, kind, stored = _audio_inputs(source, labels=args.labels)
    if kind == "spectra":
        _no_audio_options(args, source, stored)
    if labels is None and kind == "spectra":
        raise CommandError(f"{source}: the spectra file holds no labels (write it with "
                           "'fastsae features' from class sub-folders or with --labels fsdd)")
    if labels is None:
        from ..datasets import _FSDD_NAME
        hint = ("; its files are named like FSDD's (digit_speaker_index.wav): add --labels fsdd"
                if items and all(_FSDD_NAME.match(Path(p).name) for p in items) else "")
        raise CommandError(f"{source}: labels come from class sub-folders "
                           f"({what}/<class>/<file>), and there are none{hint}")
    spectra, kept = _spectra_with_paths(items, kind, spectrogram, args)
    labels = np.asarray(labels)[kept]
    index = None
    if args.labels == "fsdd":
        index = np.array([int(Path(items[i]).stem.split("_")[2]) for i in kept])
    return spectra, labels, index, stored if kind == "spectra" else None


def _same_front_end(spectrogram, stored, what):
    """Refuse spectra whose stored settings differ from the model's front end."""
    pa = spectrogram.get_params()
    differ = [f"{k} {v!r} (not {pa[k]!r})" for k, v in stored.items()
              if k in pa and pa[k] != v and pa[k] is not None and v is not None]
    if differ:
        raise CommandError(f"{what}: its spectra were computed with other settings than "
                           f"the model's: {', '.join(differ)}")


def _report_folder(path):
    """The report folder, made now: a path that cannot hold it fails before any work."""
    report = Path(path)
    if report.exists() and not report.is_dir():
        raise CommandError(f"-o {path}: exists and is not a folder")
    try:
        report.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"-o {path}: cannot make the report folder ({exc.strerror})") from None
    _writable(report, f"-o {path}")
    return report


def cmd_classify(args, console):
    from sklearn.pipeline import Pipeline

    from .. import io
    from ..recipes import ClipClassifier
    from ..warmup import DTYPES, compile_ahead
    from ..softmax import SoftmaxRegression
    from ..viz import confusion_matrix, plot_confusion_matrix

    t_start = time.perf_counter()
    features = None
    if args.sae is not None:
        model = io.load(_input_file(args.sae, "--sae"))
        if not _is_feature_model(model):
            raise CommandError(f"{args.sae}: not a feature model written by 'fastsae train-sae'")
        spectrogram, features = model["spectrogram"], model["features"]
        _refuse_other_settings(args, _front_end_settings(spectrogram),
                               f"--sae {args.sae} computes spectra with its own settings")
    else:
        spectrogram = _spectrogram(args)
    report = _report_folder(args.output)
    t = time.perf_counter()
    spectra, labels, index, stored = _labelled_spectra(args.audio_dir, args, spectrogram,
                                                       "TRAIN_DIR")
    if stored and features is not None:
        _same_front_end(spectrogram, stored, os.fspath(args.audio_dir))
    elif stored:                            # the classifier keeps the spectra file's settings
        spectrogram = _stored_spectrogram(stored, console)
    if args.test is not None:
        test_spectra, test_labels, _, stored = _labelled_spectra(args.test, args, spectrogram,
                                                                 "TEST_DIR")
        if stored:
            _same_front_end(spectrogram, stored, f"--test {args.test}")
        train = np.arange(len(spectra))
        spectra, labels = spectra + test_spectra, np.concatenate([labels, test_labels])
        test = np.arange(train.size, len(spectra))
    elif index is not None:                 # FSDD's standard split
        train, test = np.flatnonzero(index >= 5), np.flatnonzero(index < 5)
    else:
        train, test = _split(labels, args.test_size, args.seed)
    if train.size == 0 or test.size == 0:
        raise CommandError(f"no {'training' if train.size == 0 else 'test'} clips: "
                           f"{len(spectra)} clip(s) read in all (files skipped, or a "
                           "--test-size or split that leaves none)")
    if np.unique(labels[train]).size < 2:
        raise CommandError("classify needs at least two classes in the training clips")
    unseen = sorted(set(labels[test].tolist()) - set(labels[train].tolist()))
    if unseen:
        raise CommandError(f"the test clips have classes the training clips lack: {unseen[:5]}")
    pick = lambda idx: [spectra[i] for i in idx]      # noqa: E731
    spectra_seconds = time.perf_counter() - t
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if features is None:
            make = ClipClassifier.quick if args.fast else ClipClassifier
            clf = make(weight_decay=1e-2 if args.weight_decay is None else args.weight_decay,
                       n_jobs=args.n_jobs, random_state=args.seed, verbose=not args.quiet)
            # with a cold kernel cache, the conv net's kernels compile in a second
            # process while the feature learners train here
            ahead = (["convae", "convnet"] if clf.backend == "numba" and clf.conv_net is not None
                     and str(np.dtype(clf.dtype)) in DTYPES else [])
            with compile_ahead(ahead, dtype=str(np.dtype(clf.dtype)) if ahead else "float32"):
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
    written = {"report": report, "metrics": report / "metrics.json",
               "report_md": report / "report.md",
               "confusion": report / "confusion.png" if test.size else None,
               "classifier": report / "classifier.npz" if features is None else None}
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
    emit(args, "classify",
         settings={"train": os.fspath(args.audio_dir),
                   "test": os.fspath(args.test) if args.test is not None else None,
                   "sae": args.sae, "fast": args.fast, "labels": args.labels,
                   "test_size": args.test_size if args.test is None else None,
                   "weight_decay": args.weight_decay, "max_iter": args.max_iter,
                   "seed": args.seed, "spectrogram": spectrogram.get_params()},
         metrics={k: v for k, v in metrics.items() if k not in ("train", "test", "fit_seconds")},
         timings={"spectra_seconds": spectra_seconds, "fit_seconds": seconds,
                  "total_seconds": time.perf_counter() - t_start},
         outputs=written)
    return 0


def cmd_show(args, console):
    from .. import io
    from ..viz import display_network

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
    from ..core.threads import numba_threads
    from ..benchmarks import AREAS, main as bench_main
    from ..benchmarks._util import machine_summary, record_tables

    unknown = [a for a in args.areas if a not in AREAS]
    if unknown:
        raise CommandError(f"unknown area(s) {', '.join(unknown)}; choose from "
                           f"{', '.join(AREAS)}")
    t = time.perf_counter()
    with numba_threads(args.n_jobs), record_tables() as tables:
        bench_main((["--quick"] if args.quick else []) + list(args.areas))
    emit(args, "bench",
         settings={"areas": list(args.areas) or [a for a in AREAS if a != "compile"],
                   "quick": args.quick, "n_jobs": args.n_jobs},
         machine=machine_summary(), tables=table_document(tables),
         timings={"total_seconds": time.perf_counter() - t})
    return 0


def cmd_demo(args, console):
    from ..demo import run_demo
    run_demo(args.output, fast=args.fast, seed=args.seed, n_jobs=args.n_jobs,
             backend=args.backend, console=console)
    return 0
