import numpy as np
import pytest

import fastsae
from fastsae import SparseAutoencoder
from fastsae.io import FORMAT_VERSION, ModelFileError, load, save


def small_sae():
    X = np.random.default_rng(0).uniform(0.1, 0.9, (300, 12))
    return SparseAutoencoder(n_hidden=4, max_iter=10, random_state=0, dtype="float32").fit(X), X


def test_sparse_autoencoder_round_trip(tmp_path):
    sae, X = small_sae()
    save(sae, tmp_path / "m.npz")
    back = load(tmp_path / "m.npz")
    assert type(back) is SparseAutoencoder and back.get_params() == sae.get_params()
    np.testing.assert_array_equal(back.transform(X), sae.transform(X))
    assert back.loss_curve_ == sae.loss_curve_ and back.n_iter_ == sae.n_iter_
    # no pickle inside
    with np.load(tmp_path / "m.npz", allow_pickle=False) as npz:
        assert all(npz[k].dtype != object for k in npz.files)


def test_unfitted_round_trip(tmp_path):
    save(SparseAutoencoder(n_hidden=3, beta=0.5), tmp_path / "u.npz")
    back = load(tmp_path / "u.npz")
    assert back.n_hidden == 3 and back.beta == 0.5 and not hasattr(back, "W1_")


def test_damaged_and_foreign_files_are_rejected(tmp_path):
    sae, _ = small_sae()
    path = tmp_path / "m.npz"
    save(sae, path)
    data = path.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="damaged"):
        load(tmp_path / "trunc.npz")
    np.savez(tmp_path / "plain.npz", a=np.ones(3))
    with pytest.raises(ModelFileError, match="not a fastsae model"):
        load(tmp_path / "plain.npz")
    with pytest.raises(ModelFileError, match="does not exist"):
        load(tmp_path / "missing.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ModelFileError):
        load(tmp_path / "text.npz")


def _rewrite_document(path, out, change):
    import json
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    doc = json.loads(str(arrays["__fastsae__"]))
    change(doc)
    arrays["__fastsae__"] = np.array(json.dumps(doc))
    np.savez(out, **arrays)


def test_newer_version_and_foreign_class_are_refused(tmp_path):
    sae, _ = small_sae()
    save(sae, tmp_path / "m.npz")
    _rewrite_document(tmp_path / "m.npz", tmp_path / "new.npz",
                      lambda d: d.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(ModelFileError, match="newer|upgrade"):
        load(tmp_path / "new.npz")
    _rewrite_document(tmp_path / "m.npz", tmp_path / "evil.npz",
                      lambda d: d["model"].update({"__estimator__": "os:system"}))
    with pytest.raises(ModelFileError, match="outside fastsae"):
        load(tmp_path / "evil.npz")


def test_save_rejects_non_estimators_and_bad_paths(tmp_path):
    with pytest.raises(fastsae.ParameterError, match="estimator"):
        save({"a": 1}, tmp_path / "x.npz")
    with pytest.raises(fastsae.ParameterError, match=".npz"):
        save(SparseAutoencoder(), tmp_path / "x.model")
    assert not list(tmp_path.glob(".tmp-*"))
