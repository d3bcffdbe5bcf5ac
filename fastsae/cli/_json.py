"""``--json [FILE]``: a command's metrics, timings, settings and outputs as one JSON document.

With ``--json`` (or ``--json -``) the document is the only thing on stdout:
what the command would print for a person goes to stderr instead, so that
``fastsae classify DIR --json | jq .metrics.test_accuracy`` works. With
``--json FILE.json`` the document goes to that file (checked before any
work, like every output path) and the command prints as usual.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
from pathlib import Path

import numpy as np

from .._version import __version__
from ._support import CommandError, _output_file

#: What ``--json`` alone (no FILE) means: the document on stdout.
STDOUT = "-"


def json_target(args):
    """The checked ``--json`` destination: None (no JSON), ``"-"`` (stdout) or a Path."""
    value = getattr(args, "json", None)
    if value is None or value == STDOUT:
        return value
    if not str(value).lower().endswith(".json"):
        raise CommandError(f"--json {value}: must end in .json (or be - for stdout); put "
                           "--json after the command's positional arguments")
    return _output_file(value, "--json", ".json")


@contextlib.contextmanager
def human_output_to_stderr(args):
    """While a command runs with ``--json`` to stdout, what it prints goes to stderr.

    The real stdout is kept in ``args.json_stdout`` for :func:`emit`.
    """
    args.json_stdout = sys.stdout
    if getattr(args, "json", None) != STDOUT:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def jsonable(value):
    """``value`` with NumPy scalars and arrays, paths and tuples made JSON types; NaN and
    infinities (which JSON lacks) become None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, str):
        return value
    return str(value)


def emit(args, command, **sections):
    """Write the document of ``command`` where ``--json`` asked (nothing without ``--json``).

    The document is ``{"command", "fastsae_version", **sections}``; returns it.
    """
    target = getattr(args, "json", None)
    if target is None:
        return None
    doc = jsonable({"command": command, "fastsae_version": __version__, **sections})
    text = json.dumps(doc, indent=2, allow_nan=False) + "\n"
    if target == STDOUT:
        out = getattr(args, "json_stdout", None) or sys.stdout
        out.write(text)
        out.flush()
    else:
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)         # a reader never sees half a document
    return doc


_NUMBER = re.compile(r"[-+]?(\d[\d,]*)?(\.\d+)?([eE][-+]?\d+)?")


def cell(text):
    """A table cell as printed: plain numbers (``1,200``, ``0.5``) as floats, the rest as is."""
    text = str(text).strip()
    if text and _NUMBER.fullmatch(text) and any(ch.isdigit() for ch in text):
        return float(text.replace(",", ""))
    return text


def table_document(tables):
    """Recorded tables (:func:`fastsae.benchmarks._util.record_tables`) with numeric cells
    as numbers."""
    return [dict(t, rows=[{k: cell(v) for k, v in r.items()} for r in t["rows"]])
            for t in tables]
