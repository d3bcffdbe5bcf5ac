"""The documentation's examples: every docstring example of the public modules runs
as written (``doctest``), the gallery scripts are well-formed, the user guide
includes the markdown notes the README links to."""
import ast
import doctest
import importlib
import importlib.util
import pkgutil
import re
from pathlib import Path

import pytest

import fastsae

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GALLERY = ROOT / "examples" / "gallery"
# need their own machinery: the CUDA kernels (a GPU or the simulator, tests/test_cuda.py)
# and the command line (tests/test_cli.py)
SKIP = ("fastsae.cuda", "fastsae.cli", "fastsae.benchmarks")


def _modules_with_examples():
    names = ["fastsae"]
    for info in pkgutil.walk_packages(fastsae.__path__, "fastsae."):
        if info.name.startswith(SKIP):
            continue
        spec = importlib.util.find_spec(info.name)
        source = Path(spec.origin).read_text(encoding="utf-8")
        if ">>>" in source:
            names.append(info.name)
    return names


MODULES = _modules_with_examples()


def test_the_public_modules_have_examples():
    for name in ("fastsae.autoencoder", "fastsae.preprocess", "fastsae.datasets",
                 "fastsae.optim", "fastsae.viz"):
        assert name in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)             # examples that write files write them here
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(module, name, globs=dict(vars(module))) if t.examples]
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


@pytest.mark.parametrize("path", sorted(GALLERY.glob("plot_*.py")), ids=lambda p: p.name)
def test_gallery_scripts_are_well_formed(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree)
    assert doc, f"{path.name}: sphinx-gallery needs a docstring with a title"
    title, underline = doc.splitlines()[:2]
    assert title.strip() and re.fullmatch(r"=+", underline) and len(underline) >= len(title)
    assert "shared" not in path.read_text(encoding="utf-8")   # built-in data only


def test_gallery_has_a_readme_and_examples():
    assert (GALLERY / "README.rst").is_file() or (GALLERY / "README.txt").is_file()
    assert len(list(GALLERY.glob("plot_*.py"))) >= 3


def test_user_guide_includes_the_markdown_notes():
    guide = (DOCS / "guide" / "index.rst").read_text(encoding="utf-8")
    for note in ("architecture", "speaker_independent", "self_taught_tuning"):
        assert (DOCS / f"{note}.md").is_file()
        assert f"/{note}" in guide
