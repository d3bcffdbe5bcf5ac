import json
import os

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
    with pytest.raises(ModelFileError, match="'os:system', which is not one fastsae loads"):
        load(tmp_path / "evil.npz")


def test_save_rejects_non_estimators_and_bad_paths(tmp_path):
    with pytest.raises(fastsae.ParameterError, match="estimator"):
        save({"a": 1}, tmp_path / "x.npz")
    with pytest.raises(fastsae.ParameterError, match=".npz"):
        save(SparseAutoencoder(), tmp_path / "x.model")
    assert not list(tmp_path.glob(".*.tmp"))


def _fitted_models():
    """One small fitted instance of every estimator, with the data to compare on."""
    from fastsae import (ConvolutionalAutoencoder, ConvolutionalFeatures, PCAWhitening,
                         SigmoidNormalizer, SoftmaxRegression, StackedAutoencoder,
                         StackedConvolutionalAutoencoder)
    rng = np.random.default_rng(0)
    X = rng.uniform(0.1, 0.9, (120, 12))
    y = (X[:, 0] > X[:, 1]).astype(int) + (X[:, 2] > 0.5)
    sae = SparseAutoencoder(n_hidden=4, max_iter=5, random_state=0).fit(X)
    pca = PCAWhitening(n_components=6, epsilon=0.01).fit(X)
    images = rng.uniform(0, 1, (20, 10, 12))
    labels = np.arange(20) % 2
    models = [
        (sae, "transform", X),
        (SoftmaxRegression(max_iter=10).fit(X, np.array(["a", "b", "c"])[y]), "predict_proba", X),
        (StackedAutoencoder(hidden_sizes=(5, 4), pretrain_iter=5, softmax_iter=5, finetune_iter=5,
                            random_state=0).fit(X, y), "predict_proba", X),
        (pca, "transform", X),
        (SigmoidNormalizer().fit(X), "transform", X),
        (ConvolutionalFeatures(SparseAutoencoder(n_hidden=3, max_iter=3, random_state=0,
                                                 decoder="linear").fit(
            pca.transform(X)), (3, 4), preprocessing=pca, pool=("mean", "max")),
         "transform", [rng.uniform(0, 1, (3, 9)), rng.uniform(0, 1, (3, 15))]),
        (ConvolutionalAutoencoder(n_filters=3, patch_shape=(3, 3), max_iter=3, random_state=0)
         .fit(images), "transform", images),
        (StackedConvolutionalAutoencoder(
            layers=[dict(n_filters=3, patch_shape=(3, 3), pool_shape=(2, 2))],
            pretrain_iter=3, finetune_iter=3, random_state=0).fit(images, labels),
         "predict_proba", images),
    ]
    return models


def test_every_estimator_round_trips(tmp_path):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models = _fitted_models()
    for i, (model, method, data) in enumerate(models):
        path = tmp_path / f"m{i}.npz"
        save(model, path)
        back = load(path)
        assert type(back) is type(model)
        np.testing.assert_array_equal(getattr(back, method)(data), getattr(model, method)(data),
                                      err_msg=type(model).__name__)
        if hasattr(model, "predict"):
            np.testing.assert_array_equal(back.predict(data), model.predict(data))


def test_a_killed_writes_temporary_file_is_removed_by_the_next_write(tmp_path):
    sae, X = small_sae()
    stale = tmp_path / ".m.npz.999999999.abc123.tmp"        # no such process
    stale.write_bytes(b"half a model")
    other = tmp_path / f".m.npz.{os.getpid()}.xyz.tmp"      # a live writer's: kept
    other.write_bytes(b"in progress")
    save(sae, tmp_path / "m.npz")
    assert not stale.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([other.name, "m.npz"])


def _corrupt(path, out, attr, value):
    with np.load(path) as npz:
        members = dict(npz)
    doc = json.loads(str(members["__fastsae__"]))
    key = doc["model"]["fitted"][attr]["__array__"]
    members[key] = value
    np.savez(out, **members)


def test_a_wrong_shaped_weight_is_refused_naming_the_file_and_attribute(tmp_path):
    sae, X = small_sae()
    save(sae, tmp_path / "m.npz")
    _corrupt(tmp_path / "m.npz", tmp_path / "bad.npz", "W1_", np.zeros((2, 2)))
    with pytest.raises(ModelFileError, match=r"bad\.npz.*model\.W1_ .*has shape \(2, 2\)"):
        load(tmp_path / "bad.npz")
    _corrupt(tmp_path / "m.npz", tmp_path / "int.npz", "b1_", np.zeros(sae.n_hidden, dtype=int))
    with pytest.raises(ModelFileError, match="b1_.*float"):
        load(tmp_path / "int.npz")


def test_save_to_an_impossible_path_is_a_parameter_error(tmp_path):
    sae, _ = small_sae()
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(fastsae.ParameterError, match="cannot make its folder"):
        save(sae, tmp_path / "file" / "m.npz")
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(fastsae.ParameterError, match="is a folder"):
        save(sae, tmp_path / "dir.npz")
    with pytest.raises(fastsae.ParameterError, match="cannot make its folder"):
        fastsae.audio.save_spectra(tmp_path / "file" / "s.npz", [np.zeros((2, 3))])
    with pytest.raises(fastsae.ParameterError, match="cannot make its folder"):
        fastsae.viz.display_network(np.zeros((2, 4)), 2, 2, path=tmp_path / "file" / "x.png")
