"""The distribution: its name, one version, the type marker, ``fastsae --version``.

Building the wheel and installing it into a fresh environment is ``.ci/run``'s job
(it needs the network); these are the checks that run anywhere.
"""
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import fastsae
from fastsae.cli import main

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_distribution_name_and_the_one_version():
    project = PYPROJECT["project"]
    assert project["name"] == "fastsae-audio"          # `fastsae` on PyPI is someone else's
    assert "version" in project["dynamic"] and "version" not in project
    attr = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "fastsae._version.__version__"
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?", fastsae.__version__)
    # the version is written once: nowhere else in the package
    written = [p for p in Path(fastsae.__file__).parent.rglob("*.py")
               if fastsae.__version__ in p.read_text(encoding="utf-8")]
    assert [p.name for p in written] == ["_version.py"]


def test_the_package_says_it_is_typed():
    assert (Path(fastsae.__file__).parent / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["fastsae"]


def test_version_option(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"fastsae {fastsae.__version__}"
    out = subprocess.run([sys.executable, "-m", "fastsae.cli", "--version"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == f"fastsae {fastsae.__version__}"


def test_readme_names_the_distribution():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "pip install fastsae-audio" in text
