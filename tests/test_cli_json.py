"""``--json``: one JSON document with a command's metrics, timings and outputs."""
import json

from fastsae.cli._json import cell
import test_cli
from test_cli import TRAIN, _folder, run

audio_dir = test_cli.audio_dir          # the same fixture: a few tones in two class folders


def test_classify_json_on_stdout_is_the_only_output(tmp_path, capsys):
    train = _folder(tmp_path / "train", {"low": 220.0, "high": 1500.0}, seed=0)
    test = _folder(tmp_path / "test", {"low": 240.0, "high": 1400.0}, n=3, seed=10)
    code, out, err = run(["classify", train, "--test", test, "--fast", "-o", tmp_path / "rep",
                          "--no-cache", "--n-jobs", "1", "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)                      # stdout is the document and nothing else
    assert doc["command"] == "classify"
    assert doc["metrics"]["n_train"] == 10 and doc["metrics"]["n_test"] == 6
    assert doc["metrics"]["test_accuracy"] == 1.0
    saved = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert doc["metrics"]["test_accuracy"] == saved["test_accuracy"]
    assert doc["timings"]["fit_seconds"] > 0
    assert doc["timings"]["total_seconds"] >= doc["timings"]["fit_seconds"]
    assert doc["outputs"]["confusion"].endswith("confusion.png")
    assert "recall" in err                    # what a person reads went to stderr


def test_train_sae_json_to_a_file_keeps_the_usual_output(audio_dir, tmp_path, capsys):
    target = tmp_path / "out" / "train.json"
    code, out, err = run(["train-sae", audio_dir, "-o", tmp_path / "sae.npz", "--n-bands", "20",
                          "--json", target] + [a for a in TRAIN if a != "--quiet"], capsys)
    assert code == 0, err
    doc = json.loads(target.read_text())
    assert doc["command"] == "train-sae" and doc["data"]["n_spectra"] == 12
    assert doc["metrics"]["n_iter"] == len(doc["metrics"]["loss_curve"]) - 1 or \
        doc["metrics"]["n_iter"] == len(doc["metrics"]["loss_curve"])
    assert doc["metrics"]["final_cost"] == doc["metrics"]["loss_curve"][-1]
    assert doc["outputs"]["model"].endswith("sae.npz") and doc["outputs"]["checkpoint"] is None
    assert doc["settings"]["features"]["n_hidden"] == 6
    assert "trained in" in out                # the usual output still on stdout


def test_json_file_path_is_checked_before_any_work(audio_dir, tmp_path, capsys):
    code, out, err = run(["train-sae", audio_dir, "-o", tmp_path / "sae.npz", "--json",
                          tmp_path / "x.txt"] + TRAIN, capsys)
    assert code == 2 and "--json" in err and ".json" in err
    assert not (tmp_path / "sae.npz").exists()
    (tmp_path / "afile").write_text("x")
    code, out, err = run(["train-sae", audio_dir, "-o", tmp_path / "sae.npz", "--json",
                          tmp_path / "afile" / "m.json"] + TRAIN, capsys)
    assert code == 2 and "--json" in err


def test_bench_json_holds_the_printed_tables(capsys):
    code, out, err = run(["bench", "softmax", "--quick", "--n-jobs", "1", "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["command"] == "bench" and doc["settings"]["areas"] == ["softmax"]
    assert doc["tables"], doc
    assert "cores" in doc["machine"]
    rows = [r for t in doc["tables"] for r in t["rows"]]
    assert rows and all(set(r) == set(t["columns"]) for t in doc["tables"] for r in t["rows"])
    numbers = [v for r in rows for v in r.values() if isinstance(v, float)]
    assert numbers and all(v >= 0 for v in numbers)


def test_bench_unknown_area_is_a_user_error(capsys):
    code, out, err = run(["bench", "nosuch"], capsys)
    assert code == 2 and "nosuch" in err and "softmax" in err


def test_cells_as_numbers_where_they_are_plain_numbers():
    assert cell("1,200") == 1200.0 and cell(" 0.5 ") == 0.5 and cell("-3e-2") == -0.03
    assert cell("nan x") == "nan x" and cell("1.21x") == "1.21x" and cell("-") == "-"
