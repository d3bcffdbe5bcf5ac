"""Sphinx configuration of the fastsae documentation.

Build: ``pip install ".[docs]" && sphinx-build -W --keep-going -b html docs docs/_build/html``.

The API reference is written here, from the package itself: one page per public
module (in ``docs/api/generated/``, its index too), listing every public name once,
so that a name added to a module's ``__all__`` appears without editing the docs.
"""
from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))              # document the checkout, not an installed copy
sys.path.insert(0, str(HERE / "_ext"))
os.environ.setdefault("MPLBACKEND", "Agg")

import fastsae  # noqa: E402

project = "fastsae"
author = "fastsae developers"
copyright = "fastsae developers, MIT License"
release = fastsae.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_templates", "_ext", "**.ipynb_checkpoints", "gallery/*.ipynb",
                    "gallery/*.py"]
templates_path = ["_templates"]
nitpicky = False
suppress_warnings = ["config.cache"]       # sphinx-gallery's settings hold callables

html_theme = "alabaster"
html_title = f"fastsae {release}"
html_theme_options = {
    "description": "Sparse autoencoders that learn audio features without labels, fast.",
    "fixed_sidebar": False,
    "page_width": "1100px",
    "sidebar_width": "230px",
}
html_static_path: list[str] = []
html_show_sourcelink = False

# -- autodoc / autosummary / numpydoc ----------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": False}
autodoc_typehints = "none"                 # numpydoc's Parameters section says the types
autodoc_member_order = "bysource"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_show_inherited_class_members = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()

myst_heading_anchors = 3

# The docstring examples run in their module's namespace, as doctest runs them:
# tests/test_docs.py (part of ``python -m pytest``), not Sphinx's doctest builder.

# -- gallery ------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples" / "gallery"),
    "gallery_dirs": "gallery",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "image_scrapers": ("gallery_scraper.figures", "matplotlib"),   # fastsae.viz figures, then pyplot's
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "backreferences_dir": None,
    "doc_module": (),
    "show_memory": False,
    "show_signature": False,
    "write_computation_times": True,
}

# -- the API pages -------------------------------------------------------------
# public modules, in the order of the reference
API_MODULES = [
    ("Audio and data", ["audio", "datasets", "preprocess"]),
    ("Estimators and their objectives", ["autoencoder", "softmax", "stacked", "pipeline",
                                         "recipes", "conv", "convae", "convnet"]),
    ("Training, parameters, files, pictures", ["optim", "params", "io", "viz", "exceptions"]),
    ("Backends and scale", ["backends", "reference", "kernels", "cuda", "distributed"]),
    ("Programs", ["demo", "warmup"]),
]
# shown in the reference, but not documented again (another library's object)
FOREIGN = {"Pipeline": "sklearn.pipeline.Pipeline"}

_SKIP_MEMBER = re.compile(r"^set_\w+_request$")   # scikit-learn's metadata-routing setters


def _kind(obj):
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if callable(obj):
        return "function"
    return "data"


def _public_names(mod):
    """``__all__``, plus the public functions and classes the module defines itself; a
    module without ``__all__``: everything public it defines, and its UPPERCASE constants."""
    names = getattr(mod, "__all__", None)
    if names is None:
        names = [k for k, v in vars(mod).items()
                 if not k.startswith("_") and not inspect.ismodule(v)
                 and ((getattr(v, "__module__", None) or "").startswith(mod.__name__)
                      or (k.isupper() and _kind(v) == "data"))]
    else:
        names = list(names) + [k for k, v in vars(mod).items()
                               if k not in names and not k.startswith("_")
                               and (inspect.isclass(v) or inspect.isfunction(v))
                               and getattr(v, "__module__", None) == mod.__name__]
    return [n for n in names if n not in vars(mod) or not inspect.ismodule(vars(mod)[n])]


def _table(names, toctree=True):
    lines = ["", ".. autosummary::"]
    if toctree:
        lines.append("   :toctree: .")
    lines.append("")
    lines += [f"   {n}" for n in names]
    return lines + [""]


def _section(title, char="-"):
    return ["", title, char * len(title), ""]


def _write_api_pages():
    out = HERE / "api" / "generated"
    out.mkdir(parents=True, exist_ok=True)
    owner: dict[int, str] = {}       # id of a function or class -> its documented full name
    keep = []                        # the objects behind ``owner``'s keys, kept alive
    pages: dict[str, str] = {}

    # the top level
    groups = {"class": [], "function": [], "exception": []}
    for name in fastsae.__all__:
        obj = getattr(fastsae, name)
        if inspect.ismodule(obj) or name in FOREIGN or name == "__version__":
            continue
        groups[_kind(obj)].append(f"fastsae.{name}")
        owner[id(obj)] = f"fastsae.{name}"
        keep.append(obj)
    text = ["fastsae", "=======", "", ".. automodule:: fastsae", "   :no-members:", ""]
    text += ["Everything below is importable from ``fastsae`` itself; the modules in",
             "``fastsae.__all__`` have pages of their own (:doc:`index`).", ""]
    for key, title in [("class", "Estimators and transformers"), ("function", "Functions"),
                       ("exception", "Exceptions and warnings")]:
        text += _section(title) + [".. currentmodule:: fastsae"] + \
            _table([n.split(".", 1)[1] for n in groups[key]])
    text += _section("Also here")
    text += [f"- ``fastsae.{k}`` is ``{v}`` (scikit-learn's own documentation)."
             for k, v in FOREIGN.items()]
    text += ["- ``fastsae.__version__``: the version string (``fastsae --version`` prints it).", ""]
    pages["fastsae"] = "\n".join(text)

    for _, modules in API_MODULES:
        for short in modules:
            modname = f"fastsae.{short}"
            mod = importlib.import_module(modname)
            here, elsewhere, data, lazy = [], [], [], []
            for name in _public_names(mod):
                try:
                    obj = getattr(mod, name)
                except Exception:        # loaded on first use, where it can run (fastsae.cuda)
                    lazy.append(name)
                    continue
                if _kind(obj) == "data":
                    data.append(name)
                elif id(obj) in owner:
                    elsewhere.append(owner[id(obj)])
                else:
                    here.append(name)
                    owner[id(obj)] = f"{modname}.{name}"
                    keep.append(obj)
            text = [modname, "=" * len(modname), "", f".. automodule:: {modname}",
                    "   :no-members:", "", f".. currentmodule:: {modname}"]
            if here:
                text += _section("Contents") + _table(here)
            if data:
                text += _section("Constants") + _table(data)
            if lazy:
                text += _section("Kernels loaded on first use") + [
                    "These load when first asked for, once the backend has been found to work",
                    "(without it they raise :class:`fastsae.BackendUnavailableError`); each has",
                    "the signature and meaning of its NumPy twin:", ""]
                text += [f"- ``{name}``: :func:`fastsae.reference.{name}`"
                         if hasattr(fastsae.reference, name) else f"- ``{name}``"
                         for name in lazy] + [""]
            if elsewhere:
                text += _section("Also available here") + [
                    "Documented where they are first listed:", "",
                    ".. currentmodule:: None"] + _table(elsewhere, toctree=False)
            pages[modname] = "\n".join(text)

    for name, body in pages.items():
        path = out / f"{name}.rst"
        if not path.exists() or path.read_text() != body:   # unchanged pages stay unchanged
            path.write_text(body)

    index = ["API reference", "=============", "",
             "Every public name of the package, one page each. Top-level names first;",
             "then the public modules.", "", ".. toctree::", "   :maxdepth: 1", "",
             "   fastsae", ""]
    for title, modules in API_MODULES:
        index += _section(title) + [".. toctree::", "   :maxdepth: 1", ""]
        index += [f"   fastsae.{m}" for m in modules] + [""]
    index = "\n".join(index)
    path = out / "index.rst"
    if not path.exists() or path.read_text() != index:
        path.write_text(index)


_PARAM_LINE = re.compile(r"^(\s*\*{0,2}\w[\w, *]* : )(.*)$")
_TRAILING_UNDERSCORE = re.compile(r"(?<![\w`\\])([A-Za-z]\w*?)_(?![\w`])")


def _escape_type_underscores(app, what, name, obj, options, lines):
    """``n_bands_`` in a parameter's type (``np.ndarray [shape=(n_bands_, k)]``) would be
    read as a reST link target; escape the underscore. Runs before numpydoc."""
    for i, line in enumerate(lines):
        m = _PARAM_LINE.match(line)
        if m and "`" not in m.group(2):
            lines[i] = m.group(1) + _TRAILING_UNDERSCORE.sub(r"\1\\_", m.group(2))


def _skip_member(app, what, name, obj, skip, options):
    if _SKIP_MEMBER.match(name):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_member)
    app.connect("autodoc-process-docstring", _escape_type_underscores, priority=100)


_write_api_pages()
