"""The ``fastsae`` command.

::

    fastsae demo                       # built-in synthetic audio: the whole pipeline, a report folder
    fastsae features AUDIO_DIR -o spectra.npz
    fastsae train-sae AUDIO_DIR -o sae.npz --hidden 256 --sparsity 0.05
    fastsae classify AUDIO_DIR --sae sae.npz -o report/
    fastsae show sae.npz -o filters.png
    fastsae bench
    fastsae classify AUDIO_DIR --json > metrics.json   # any of classify, train-sae, bench

Every argument, path and option is checked before any work starts. An error
a user can act on is one line on stderr, never a traceback (``--verbose``
adds it): exit status 2 for how the command was called (a bad option, a
missing folder, an output path that cannot be written), 1 for what the data
hold (an unreadable audio file, a damaged model file, NaN in the data), 130
after Ctrl-C. What is printed as written is what was written.
"""
from __future__ import annotations

import argparse
import sys
import warnings

from ._json import human_output_to_stderr, json_target
from ._support import EXIT_DATA, EXIT_ERROR, EXIT_INTERRUPTED, CommandError, Console
from .commands import (cmd_bench, cmd_classify, cmd_demo, cmd_features, cmd_show,
                       cmd_train_sae)


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


def _json_opt(p):
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                   help="also write the metrics, timings, settings and outputs as one JSON "
                        "document to FILE (.json); without FILE (or with -) the document is "
                        "all that goes to stdout, the usual output going to stderr")


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
                   help="Dask scheduler address: train on a cluster (needs fastsae-audio[dist])")
    _audio_opts(p)
    _json_opt(p)
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
    _json_opt(p)
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
                   help="any of sae, conv, softmax, convae, lbfgs, whitening, scaling, compile "
                        "(default: all but compile)")
    p.add_argument("--quick", action="store_true", help="smaller shapes, fewer repeats")
    _json_opt(p)
    _common(p)
    p.set_defaults(func=cmd_bench)
    return parser


def _set_options(parser, args):
    """{dest: option as spelled in --help} of the options given other values than their
    defaults, for the command that ``args`` runs."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: max(a.option_strings, key=len)
            for a in sub.choices[args.command]._actions
            if a.option_strings and a.dest != "help"
            and getattr(args, a.dest, a.default) != a.default}


# Options that do nothing in a mode: refused, not silently dropped. (Options that a
# checkpoint or model also sets are refused where they differ from it: commands.py.)
_IGNORED = [
    ("classify", lambda a: a.sae is not None, ("fast",),
     "--sae: a softmax on the model's features, not the default recipe"),
    ("classify", lambda a: a.sae is None, ("max_iter",),
     "--max-iter sets the softmax of --sae only (the default recipe has its own)"),
]


def _check_ignored(args):
    given = getattr(args, "set_options", {})
    for command, applies, options, why in _IGNORED:
        if args.command == command and applies(args):
            ignored = [given[o] for o in options if o in given]
            if ignored:
                raise CommandError(f"{why}: leave out {', '.join(ignored)}")


def _check_args(args):
    _check_ignored(args)
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
    if getattr(args, "seed", None) is not None and args.seed < 0:
        raise CommandError(f"--seed must be >= 0; got {args.seed}")
    ts = getattr(args, "test_size", None)
    if ts is not None and not 0.0 < ts < 1.0:
        raise CommandError(f"--test-size must be in (0, 1); got {ts}")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from .._version import __version__
        print(f"fastsae {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return EXIT_ERROR
    args.set_options = _set_options(parser, args)
    console = Console(quiet=args.quiet, verbose=args.verbose)
    from ..exceptions import (BackendUnavailableError, NumericalError, ParameterError)
    format_warning = warnings.formatwarning
    try:
        _check_args(args)
        json_target(args)                  # an unwritable --json FILE fails before any work
        with warnings.catch_warnings():
            if not args.verbose:           # one line per warning, no source file or code
                warnings.filterwarnings("ignore", category=RuntimeWarning, module="numpy")
                warnings.formatwarning = _one_line_warning
            with human_output_to_stderr(args):
                return args.func(args, console)
    except KeyboardInterrupt:
        print("fastsae: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except CommandError as exc:
        if args.verbose:
            raise
        print(f"fastsae: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except MemoryError as exc:
        if args.verbose:
            raise
        print(f"fastsae: error: not enough memory for these settings ({exc}); give smaller "
              "ones (fewer windows, units or bands)", file=sys.stderr)
        return EXIT_DATA
    except (ParameterError, BackendUnavailableError, NumericalError, OSError) as exc:
        if args.verbose:
            raise
        message = f"{exc.strerror}: {exc.filename}" if isinstance(exc, OSError) \
            and exc.filename else str(exc)
        print(f"fastsae: error: {message.splitlines()[0] if message else type(exc).__name__}",
              file=sys.stderr)
        return EXIT_DATA
    finally:
        warnings.formatwarning = format_warning


def _one_line_warning(message, category, filename, lineno, line=None):
    kind = "" if category is UserWarning else f" ({category.__name__})"
    return f"fastsae: warning{kind}: {message}\n"

