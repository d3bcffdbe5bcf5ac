"""The README's Python examples run as written (the distributed one needs a cluster: not run)."""
import re
from pathlib import Path


README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks():
    text = README.read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_first_lines_are_install_and_test_commands():
    text = README.read_text(encoding="utf-8")
    first = re.search(r"```bash\n(.*?)```", text, flags=re.S).group(1).splitlines()
    assert first[0].startswith("pip install . && fastsae demo")
    assert first[1].startswith('pip install ".[test]" && python -m pytest -q')


def test_readme_python_examples_run(tmp_path, monkeypatch):
    blocks = [b for b in _python_blocks() if "Client(" not in b]
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for block in blocks:          # one namespace: later blocks use earlier names
        exec(compile(block, str(README), "exec"), namespace)
    recipe, test = namespace["recipe"], namespace["test"]
    assert recipe.score(namespace["test_spectra"], namespace["labels"][test]) > 0.5
    assert (tmp_path / "recipe.npz").is_file() and (tmp_path / "filters.png").is_file()
    assert namespace["H"].shape == (2000, 25)
    assert namespace["X"].shape == (5000, 160)
    assert namespace["clf"].score(namespace["F"], namespace["labels"]) > 0.5
    assert 0.0 <= namespace["stack"].finetune_score_ <= 1.0
