"""Saving and loading models: one ``.npz`` file per model, no pickle.

:func:`save` writes any fastsae estimator or preprocessing object — fitted or
not, nested or not (a :class:`~fastsae.conv.ConvolutionalFeatures` holds its
autoencoder and whitening; a stacked autoencoder holds its layers) — into one
NumPy ``.npz`` file: the arrays as members, and a JSON document with the format
version, the class names, the hyper-parameters and every other fitted
attribute. :func:`load` rebuilds it. Nothing is pickled and no code is
loaded: a file can only name the classes of :func:`registered_classes`.

Pipelines: a :class:`sklearn.pipeline.Pipeline` (``fastsae.Pipeline``) is
saved with its steps when every step is a fastsae estimator or scikit-learn's
``StandardScaler`` (``fastsae.pipeline.Standardizer``); a pipeline holding any
other scikit-learn estimator is refused with a message naming it (save such a
pipeline with ``joblib`` or ``pickle``, which run code when loaded). Files
written by fastsae 0.1.0 (whose pipeline and standardizer were its own
classes) load as these scikit-learn classes.

Examples
--------
>>> import fastsae, numpy as np, tempfile, os
>>> X = np.random.default_rng(0).uniform(0.1, 0.9, (200, 8))
>>> sae = fastsae.SparseAutoencoder(n_hidden=3, max_iter=5).fit(X)
>>> path = os.path.join(tempfile.mkdtemp(), "sae.npz")
>>> fastsae.save(sae, path)
>>> np.array_equal(fastsae.load(path).transform(X), sae.transform(X))
True
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from typing import Any

import numpy as np

from .core.bfloat16 import is_bfloat16
from .core.checks import check_output_path, npz_problem
from .core.types import PathLike
from .exceptions import ParameterError

#: Version of the file layout written by :func:`save`. A file with a larger
#: version was written by a newer fastsae and is refused.
FORMAT_VERSION = 1
_META = "__fastsae__"


class ModelFileError(ParameterError):
    """A model file is damaged, not a fastsae model, or from a newer format version."""


def _is_estimator(obj):
    from sklearn.base import BaseEstimator
    return isinstance(obj, BaseEstimator)


_REGISTRY = None


def registered_classes() -> dict[str, type]:
    """The classes a model file may name, by the name the file uses.

    fastsae's estimators under ``module:qualname``; scikit-learn's
    ``Pipeline`` and ``StandardScaler`` under their public paths; and the
    names fastsae 0.1.0 wrote for classes that have moved since.
    """
    global _REGISTRY
    if _REGISTRY is None:
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        from .audio import Spectrogram
        from .autoencoder import SparseAutoencoder
        from .conv import ConvolutionalFeatures
        from .convae import ConvolutionalAutoencoder
        from .convnet import StackedConvolutionalAutoencoder
        from .pipeline import SelfTaughtFeatures
        from .preprocess import PCAWhitening, SigmoidNormalizer
        from .recipes import ClipClassifier
        from .softmax import SoftmaxRegression
        from .stacked import StackedAutoencoder

        ours = [SparseAutoencoder, SoftmaxRegression, StackedAutoencoder, ConvolutionalFeatures,
                ConvolutionalAutoencoder, StackedConvolutionalAutoencoder, SelfTaughtFeatures,
                PCAWhitening, SigmoidNormalizer, Spectrogram, ClipClassifier]
        reg = {f"{c.__module__}:{c.__qualname__}": c for c in ours}
        reg["sklearn.pipeline:Pipeline"] = Pipeline
        reg["sklearn.preprocessing:StandardScaler"] = StandardScaler
        # written by fastsae 0.1.0
        reg["fastsae.compose:Pipeline"] = Pipeline
        reg["fastsae.pipeline:Standardizer"] = StandardScaler
        reg["fastsae.convae:StackedConvolutionalAutoencoder"] = StackedConvolutionalAutoencoder
        _REGISTRY = reg
    return _REGISTRY


def _class_name(obj, where):
    """The name :func:`save` writes for ``obj``'s class (the first registered for it)."""
    for name, cls in registered_classes().items():
        if type(obj) is cls:
            return name
    raise ParameterError(
        f"cannot save {where}: {type(obj).__module__}.{type(obj).__qualname__} is not one of "
        "the estimators fastsae.save writes (fastsae's, and scikit-learn's Pipeline and "
        "StandardScaler); save it with joblib or pickle instead")


def _fitted_attributes(obj):
    return {k: v for k, v in vars(obj).items()
            if k.endswith("_") and not k.startswith("_")}


class _Encoder:
    def __init__(self):
        self.arrays = {}

    def array(self, arr):
        key = f"a{len(self.arrays)}"
        if arr.dtype.hasobject:
            raise ParameterError("cannot save an array of Python objects")
        self.arrays[key] = np.ascontiguousarray(arr)
        return {"__array__": key}

    def encode(self, value, where):
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and not np.isfinite(value):
                return {"__float__": repr(value)}
            return value
        if isinstance(value, np.generic):
            return self.encode(value.item(), where)
        if isinstance(value, np.ndarray):
            return self.array(value)
        if is_bfloat16(value):                    # ml-dtypes' dtype or type: by name
            return "bfloat16"
        if isinstance(value, np.dtype):
            return {"__dtype__": value.str}
        if isinstance(value, np.random.Generator):
            return None  # a random state is a seed for fit, not part of a fitted model
        if isinstance(value, (list, tuple)):
            kind = "__list__" if isinstance(value, list) else "__tuple__"
            return {kind: [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise ParameterError(f"cannot save {where}: dict keys must be strings")
            return {"__dict__": {k: self.encode(v, f"{where}.{k}") for k, v in value.items()}}
        if _is_estimator(value):
            return {
                "__estimator__": _class_name(value, where),
                "params": {k: self.encode(v, f"{where}.{k}")
                           for k, v in value.get_params(deep=False).items()},
                "fitted": {k: self.encode(v, f"{where}.{k}")
                           for k, v in _fitted_attributes(value).items()},
            }
        raise ParameterError(
            f"cannot save {where}: values of type {type(value).__name__} are not supported")


def _resolve_class(name):
    cls = registered_classes().get(name)
    if cls is None:
        raise ModelFileError(f"the file names the class {name!r}, which is not one fastsae "
                             "loads (see fastsae.io.registered_classes()); refusing to load it")
    return cls


def _attribute(obj, name):
    """``obj.stack_[0][1]``-style paths of :meth:`_expected_shapes`."""
    head, _, rest = name.partition("[")
    value = getattr(obj, head)
    for index in (rest.rstrip("]").split("][") if rest else []):
        value = value[int(index)]
    return value


def _check_shapes(obj, where):
    """Every weight a loaded estimator holds must have the shape its parameters imply."""
    cls = type(obj).__name__
    try:
        expected = obj._expected_shapes()
    except (AttributeError, TypeError, ValueError, KeyError, IndexError) as exc:
        raise ModelFileError(f"{where} ({cls}) is incomplete: {exc}") from None
    for name, shape in expected.items():
        try:
            value = _attribute(obj, name)
        except (AttributeError, IndexError, TypeError):
            raise ModelFileError(f"{where}.{name} ({cls}) is missing") from None
        if name == "stack_":
            raise ModelFileError(f"{where}.stack_ ({cls}) has {len(value)} layers; its "
                                 f"hidden_sizes need {shape[0]}")
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            raise ModelFileError(f"{where}.{name} ({cls}) must be a float array; got "
                                 f"{getattr(value, 'dtype', type(value).__name__)}")
        if value.shape != tuple(shape):
            raise ModelFileError(f"{where}.{name} ({cls}) has shape {value.shape}, but its "
                                 f"parameters need {tuple(shape)}")


def _decode(value, arrays, where="model"):
    if isinstance(value, list):
        return [_decode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if "__array__" in value:
        try:
            return arrays[value["__array__"]]
        except KeyError:
            raise ModelFileError(f"the file lacks the array {value['__array__']!r}") from None
    if "__float__" in value:
        return float(value["__float__"])
    if "__dtype__" in value:
        return np.dtype(value["__dtype__"])
    if "__list__" in value:
        return [_decode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value["__list__"])]
    if "__tuple__" in value:
        return tuple(_decode(v, arrays, f"{where}[{i}]")
                     for i, v in enumerate(value["__tuple__"]))
    if "__dict__" in value:
        return {k: _decode(v, arrays, f"{where}.{k}") for k, v in value["__dict__"].items()}
    if "__estimator__" in value:
        cls = _resolve_class(value["__estimator__"])
        params = {k: _decode(v, arrays, f"{where}.{k}")
                  for k, v in value.get("params", {}).items()}
        for name, old in getattr(cls, "_legacy_params", {}).items():
            params.setdefault(name, old)        # written before the parameter existed
        if not cls.__module__.startswith("fastsae"):
            # scikit-learn's classes gain parameters with backward-compatible defaults
            accepted = cls._get_param_names()
            params = {k: v for k, v in params.items() if k in accepted}
        try:
            obj = cls(**params)
        except TypeError as exc:
            raise ModelFileError(f"the file's parameters do not fit {cls.__name__}: {exc}") from None
        for k, v in value.get("fitted", {}).items():
            setattr(obj, k, _decode(v, arrays, f"{where}.{k}"))
        if hasattr(obj, "_expected_shapes"):
            _check_shapes(obj, where)
        return obj
    raise ModelFileError(f"unexpected entry in the file: {sorted(value)}")


def _remove_stale_temporaries(folder, prefix):
    """Temporary files of earlier writes to the same path whose writer is gone (killed
    mid-write): ``.<name>.<pid>.<random>.tmp``."""
    for entry in os.listdir(folder):
        if not (entry.startswith(prefix) and entry.endswith(".tmp")):
            continue
        pid = entry[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            try:
                os.unlink(os.path.join(folder, entry))
            except OSError:
                pass


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True          # alive, but not ours to signal
    return True


def save(model: Any, path: PathLike) -> None:
    """Write ``model`` (any fastsae estimator, fitted or not) to ``path`` (.npz).

    The file is written to a temporary name beside ``path`` and renamed, so a
    crash never leaves a half-written model under ``path``; the temporary file
    a killed write left behind is removed by the next write to ``path``.

    Raises
    ------
    ParameterError
        ``model`` is not a fastsae estimator or holds something that cannot be
        saved without pickle.
    """
    if not _is_estimator(model):
        raise ParameterError(f"model must be a fastsae estimator; got {type(model).__name__}")
    _class_name(model, "model")
    path = check_output_path(path, "path", suffix=".npz")
    enc = _Encoder()
    doc = {"format_version": FORMAT_VERSION, "model": enc.encode(model, "model")}
    from ._version import __version__
    doc["fastsae_version"] = __version__
    folder = os.path.dirname(os.path.abspath(path))
    prefix = f".{os.path.basename(path)}."
    _remove_stale_temporaries(folder, prefix)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f"{prefix}{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{_META: np.array(json.dumps(doc))}, **enc.arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_document(path):
    """The JSON document and arrays of a model file, checked (for :func:`load`)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"model file {path!r} does not exist")
    try:
        problem = npz_problem(path)
    except OSError as exc:
        raise ModelFileError(f"{path!r} cannot be read: {exc.strerror}") from None
    if problem:
        raise ModelFileError(f"{path!r} is not a fastsae model file ({problem})")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if _META not in npz.files:
                raise ModelFileError(f"{path!r} is not a fastsae model file (no {_META} entry)")
            doc = json.loads(str(npz[_META]))
            arrays = {k: npz[k] for k in npz.files if k != _META}
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path!r} is damaged or not a fastsae model file: {exc}") from None
    version = doc.get("format_version")
    if not isinstance(version, int):
        raise ModelFileError(f"{path!r} has no format version")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path!r} was written in model format version {version} (fastsae "
            f"{doc.get('fastsae_version', '?')}); this fastsae reads versions up to "
            f"{FORMAT_VERSION}: upgrade fastsae to load it")
    return doc, arrays


def load(path: PathLike) -> Any:
    """Read a model written by :func:`save`.

    Raises
    ------
    ModelFileError
        The file is missing, damaged, not a fastsae model, or written in a
        newer format version.
    """
    doc, arrays = read_document(path)
    try:
        return _decode(doc["model"], arrays)
    except ModelFileError as exc:
        raise ModelFileError(f"{os.fspath(path)!r}: {exc}") from None


__all__ = ["save", "load", "registered_classes", "ModelFileError", "FORMAT_VERSION"]
