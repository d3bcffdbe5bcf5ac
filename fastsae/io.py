"""Saving and loading models: one ``.npz`` file per model, no pickle.

:func:`save` writes any fastsae estimator or preprocessing object — fitted or
not, nested or not (a :class:`~fastsae.conv.ConvolutionalFeatures` holds its
autoencoder and whitening; a stacked autoencoder holds its layers) — into one
NumPy ``.npz`` file: the arrays as members, and a JSON document with the format
version, the class names, the hyper-parameters and every other fitted
attribute. :func:`load` rebuilds it. Nothing is pickled and no code is
loaded: only classes defined in fastsae can be named by a file.

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

import importlib
import json
import os
import tempfile
import zipfile

import numpy as np

from .exceptions import ParameterError

#: Version of the file layout written by :func:`save`. A file with a larger
#: version was written by a newer fastsae and is refused.
FORMAT_VERSION = 1
_META = "__fastsae__"


class ModelFileError(ParameterError):
    """A model file is damaged, not a fastsae model, or from a newer format version."""


def _is_estimator(obj):
    from .base import BaseEstimator
    return isinstance(obj, BaseEstimator)


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
            cls = type(value)
            return {
                "__estimator__": f"{cls.__module__}:{cls.__qualname__}",
                "params": {k: self.encode(v, f"{where}.{k}") for k, v in value.get_params().items()},
                "fitted": {k: self.encode(v, f"{where}.{k}")
                           for k, v in _fitted_attributes(value).items()},
            }
        raise ParameterError(
            f"cannot save {where}: values of type {type(value).__name__} are not supported")


def _resolve_class(name):
    from .base import BaseEstimator
    module_name, _, qualname = name.partition(":")
    if not (module_name == "fastsae" or module_name.startswith("fastsae.")):
        raise ModelFileError(f"the file names a class outside fastsae ({name!r}); refusing to load it")
    try:
        obj = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        raise ModelFileError(f"the file names an unknown fastsae class {name!r}") from None
    if not (isinstance(obj, type) and issubclass(obj, BaseEstimator)):
        raise ModelFileError(f"{name!r} is not a fastsae estimator")
    return obj


def _decode(value, arrays):
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
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
        return [_decode(v, arrays) for v in value["__list__"]]
    if "__tuple__" in value:
        return tuple(_decode(v, arrays) for v in value["__tuple__"])
    if "__dict__" in value:
        return {k: _decode(v, arrays) for k, v in value["__dict__"].items()}
    if "__estimator__" in value:
        cls = _resolve_class(value["__estimator__"])
        params = {k: _decode(v, arrays) for k, v in value.get("params", {}).items()}
        try:
            obj = cls(**params)
        except TypeError as exc:
            raise ModelFileError(f"the file's parameters do not fit {cls.__name__}: {exc}") from None
        for k, v in value.get("fitted", {}).items():
            setattr(obj, k, _decode(v, arrays))
        return obj
    raise ModelFileError(f"unexpected entry in the file: {sorted(value)}")


def save(model, path):
    """Write ``model`` (any fastsae estimator, fitted or not) to ``path`` (.npz).

    The file is written to a temporary name beside ``path`` and renamed, so a
    crash never leaves a half-written model under ``path``.

    Raises
    ------
    ParameterError
        ``model`` is not a fastsae estimator or holds something that cannot be
        saved without pickle.
    """
    if not _is_estimator(model):
        raise ParameterError(f"model must be a fastsae estimator; got {type(model).__name__}")
    enc = _Encoder()
    doc = {"format_version": FORMAT_VERSION, "model": enc.encode(model, "model")}
    from . import __version__
    doc["fastsae_version"] = __version__
    path = os.fspath(path)
    if not path.endswith(".npz"):
        raise ParameterError(f"path must end in .npz; got {path!r}")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".npz")
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


def load(path):
    """Read a model written by :func:`save`.

    Raises
    ------
    ModelFileError
        The file is missing, damaged, not a fastsae model, or written in a
        newer format version.
    """
    doc, arrays = read_document(path)
    return _decode(doc["model"], arrays)


__all__ = ["save", "load", "ModelFileError", "FORMAT_VERSION"]
