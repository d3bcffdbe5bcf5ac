"""What every command shares: errors, paths checked up front, the console, audio inputs."""
from __future__ import annotations

import sys
from pathlib import Path


from ..exceptions import ParameterError


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
            _writable(parent, f"{flag} {path}")
            break
    return path


def _writable(folder, what):
    """Refuse a folder that a file cannot be made in (a permission, a read-only file
    system: what ``os.access`` misses for root), by making and removing one."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".fastsae-probe-"):
            pass
    except OSError as exc:
        raise CommandError(f"{what}: cannot write in {folder} ({exc.strerror})") from None


def _refuse_other_settings(args, settings, why):
    """Refuse options given with values other than ``settings`` ({dest: value} of a
    checkpoint, model or spectra file, which are used instead)."""
    given = getattr(args, "set_options", {})
    differ = [f"{given[k]} {getattr(args, k)} (it has {v})" for k, v in settings.items()
              if k in given and getattr(args, k) != v]
    if differ:
        raise CommandError(f"{why}: leave out {', '.join(differ)}")


def _no_audio_options(args, source, stored):
    """Refuse audio options beside a spectra file that differ from the settings it stores."""
    stored = stored or {}
    _refuse_other_settings(args, {k: stored.get(k) for k in ("kind", "n_bands", "sr")},
                           f"{source} is a spectra file, computed with its own settings")


def _front_end_settings(spectrogram):
    """{CLI option dest: value} of a model's Spectrogram."""
    return {k: getattr(spectrogram, k) for k in ("kind", "n_bands", "sr")}


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
    from .. import datasets
    from ..audio import load_spectra

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
    from ..audio import AUDIO_SUFFIXES
    return AUDIO_SUFFIXES


def _spectra_with_paths(items, kind, spectrogram, args):
    from ..audio import spectra_from_files

    if kind == "spectra":
        return items, list(range(len(items)))
    spectra, kept = spectra_from_files(items, sr=spectrogram.sr, n_jobs=args.n_jobs,
                                       cache_dir=args.cache_dir, progress=not args.quiet,
                                       on_error=args.on_error, return_paths=True,
                                       **spectrogram._spectrum_kw())
    index = {p: i for i, p in enumerate(items)}
    return spectra, [index[p] for p in kept]


def _is_feature_model(model):
    """Whether ``model`` is a pipeline of 'fastsae train-sae' (with a "features" step)."""
    from sklearn.pipeline import Pipeline

    return isinstance(model, Pipeline) and "features" in model.named_steps


def _self_taught(model):
    """The fitted SelfTaughtFeatures inside a saved model, or None."""
    from ..pipeline import SelfTaughtFeatures

    if _is_feature_model(model):
        model = model["features"]
    return model if isinstance(model, SelfTaughtFeatures) and hasattr(model, "sae_") else None


def _find_autoencoder(model, kind="encoder"):
    """(weights, n_bands, n_frames) of the filters inside any saved model."""
    from ..autoencoder import SparseAutoencoder
    from ..pipeline import SelfTaughtFeatures

    if _is_feature_model(model):
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
