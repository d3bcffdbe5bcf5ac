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


def _cell(text):
    text = text.strip()
    if text and _NUMBER.fullmatch(text) and any(ch.isdigit() for ch in text):
        return float(text.replace(",", ""))
    return text


def parse_tables(text):
    """The tables a command printed (a title line, a header, a line of dashes, rows),
    and every other non-empty line.

    The dashes give each column's span exactly (the columns are padded to them).
    Returns ``(tables, notes)``: ``tables`` a list of ``{"title", "columns",
    "rows"}``, each row a dict from column to cell (plain numbers as numbers,
    everything else as printed); ``notes`` the lines outside any table.
    """
    lines = text.splitlines()
    tables, notes, used = [], [], set()
    for i, line in enumerate(lines):
        if i < 1 or not re.fullmatch(r"-+( {2}-+)*", line.strip()) or line != line.lstrip():
            continue
        spans = [(m.start(), m.end()) for m in re.finditer(r"-+", line)]
        spans = [(a, spans[k + 1][0] - 2 if k + 1 < len(spans) else None)
                 for k, (a, _) in enumerate(spans)]
        header = [lines[i - 1][a:b].strip() for a, b in spans]
        title = lines[i - 2].strip() if i >= 2 and lines[i - 2].strip() else ""
        rows, j = [], i + 1
        while j < len(lines) and lines[j].strip():
            rows.append({h: _cell(lines[j][a:b]) for h, (a, b) in zip(header, spans)})
            j += 1
        tables.append({"title": title, "columns": header, "rows": rows})
        used.update(range(i - 2 if title else i - 1, j))
    notes = [line.strip() for k, line in enumerate(lines) if k not in used and line.strip()]
    return tables, notes


class Tee:
    """A text stream that writes to ``stream`` and keeps a copy."""

    def __init__(self, stream):
        self.stream, self.parts = stream, []

    def write(self, s):
        self.parts.append(s)
        return self.stream.write(s)

    def flush(self):
        self.stream.flush()

    def isatty(self):
        return False

    def getvalue(self):
        return "".join(self.parts)
