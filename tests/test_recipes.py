"""The default classification recipe (ClipClassifier) and its pieces."""
import numpy as np
import pytest

import fastsae
from fastsae import ParameterError, audio, datasets
from fastsae.pipeline import SelfTaughtFeatures
from fastsae.recipes import ClipClassifier, default_conv_net, default_features


@pytest.fixture(scope="module")
def clips():
    sounds, labels = datasets.synthetic(n_per_class=10, random_state=0)
    spectra = [audio.spectrum(y, 8000, kind="mel", n_bands=40) for y in sounds]
    test = np.arange(len(spectra)) % 5 == 0
    pick = lambda mask: [s for s, k in zip(spectra, mask) if k]     # noqa: E731
    return pick(~test), labels[~test], pick(test), labels[test]


def _small(**kw):
    feats = [SelfTaughtFeatures(n_hidden=12, n_windows=1500, max_iter=25, dtype="float32",
                                random_state=0)]
    net = default_conv_net(random_state=0).set_params(pretrain_iter=10, softmax_iter=30,
                                                      finetune_iter=10)
    return ClipClassifier(**dict(dict(features=feats, conv_net=net, n_warps=1, max_iter=100,
                                      random_state=0), **kw))


def test_every_member_classifies_and_the_ensemble_averages_them(clips):
    train, y, test, y_test = clips
    clf = _small().fit(train, y)
    assert [name for name, _ in clf.members_] == ["features 12x8", "spectrogram", "conv net"]
    scores = clf.member_scores(test, y_test)
    assert set(scores) == {"features 12x8", "spectrogram", "conv net", "ensemble"}
    assert min(scores.values()) > 0.3                       # ten classes: chance is 0.1
    P = clf.predict_proba(test)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-9)
    # the ensemble is the members' mean log-probability
    logs = clf._member_log_proba(test)
    mean = np.mean(list(logs.values()), axis=0)
    np.testing.assert_array_equal(np.argmax(P, axis=1), np.argmax(mean, axis=1))
    assert clf.score(test, y_test) == scores["ensemble"]
    assert set(clf.predict(test)) <= set(y)


def test_members_are_named_by_their_settings_and_never_twice(clips):
    train, y, _, _ = clips
    f = SelfTaughtFeatures(n_hidden=6, n_windows=800, max_iter=5, dtype="float32",
                           random_state=0)
    feats = [f, SelfTaughtFeatures(**dict(f.get_params(), floor_db=30.0)), f,
             SelfTaughtFeatures(**dict(f.get_params(), floor_db=30.0, n_cepstra=7))]
    clf = _small(features=feats, conv_net=None, spectrogram_softmax=False, n_warps=0)
    clf.fit(train, y)
    assert [n for n, _ in clf.members_] == ["features 12x8", "features 12x8, floor 30 dB",
                                            "features 12x8 #1",
                                            "features 12x8, 7 cepstra, floor 30 dB"]
    assert set(clf.member_scores(train, y)) == {n for n, _ in clf.members_} | {"ensemble"}


def test_predictions_average_the_members_over_the_test_warps(clips):
    train, y, test, _ = clips
    clf = _small(test_warps=(0.9, 1.0, 1.1)).fit(train, y)
    logs = clf._member_log_proba(test)
    clf.set_params(test_warps=(1.0,))
    once = [clf._member_log_proba([S if f == 1.0 else audio.warp_bands(S, f) for S in test])
            for f in (0.9, 1.0, 1.1)]
    for name, Z in logs.items():
        np.testing.assert_allclose(Z, np.mean([o[name] for o in once], axis=0), rtol=1e-6)
    assert not np.allclose(logs["spectrogram"], once[1]["spectrogram"])


def test_warped_copies_are_training_data(clips):
    train, y, _, _ = clips
    clf = _small(conv_net=None, features=[], n_warps=3).fit(train, y)
    scaler, softmax = dict(clf.members_)["spectrogram"]
    assert scaler.n_samples_seen_ == 4 * len(train)


def test_copies_are_stretched_in_time_and_pass_through_random_channels(clips):
    train, y, _, _ = clips
    plain = _small(tempo_range=(1.0, 1.0), tilt_db=0.0, ripple_db=0.0)
    rng = np.random.default_rng(0)
    same = plain._augmented(train, rng)
    assert [C.shape for C in same] == [S.shape for S in train]
    slow = _small(tempo_range=(1.5, 1.5), tilt_db=0.0, ripple_db=0.0)._augmented(
        train, np.random.default_rng(0))
    assert [C.shape[1] for C in slow] == [round(1.5 * S.shape[1]) for S in train]
    tilted = _small(tempo_range=(1.0, 1.0), tilt_db=6.0, ripple_db=0.0)._augmented(
        train, np.random.default_rng(0))
    slopes = [np.polyfit(np.arange(40), (T - P).mean(axis=1), 1)[0]
              for T, P in zip(tilted, same)]
    assert 1.0 < np.max(np.abs(slopes)) * 39 <= 6.0 + 1e-9   # a line: -3..+3 dB at the ends


def test_files_saved_before_the_copies_had_tempo_and_channel_load_as_fitted(clips, tmp_path):
    import json

    from fastsae.io import _META
    train, y, test, _ = clips
    clf = _small(conv_net=None, features=[], test_warps=(1.0,)).fit(train, y)
    fastsae.save(clf, tmp_path / "new.npz")
    with np.load(tmp_path / "new.npz") as npz:
        arrays = dict(npz)
    doc = json.loads(str(arrays[_META]))
    text = json.dumps(doc)
    added = ("tempo_range", "tilt_db", "ripple_db", "test_warps")
    for name in added:                                         # a file of today holds them ...
        assert f'"{name}"' in text
    params = next(v["params"] for v in _dicts(doc) if v.get("params", {}).get("n_warps") == 1)
    for name in added:                                         # ... an older one did not
        del params[name]
    arrays[_META] = np.array(json.dumps(doc))
    np.savez(tmp_path / "old.npz", **arrays)
    back = fastsae.load(tmp_path / "old.npz")
    assert (back.tempo_range, back.tilt_db, back.ripple_db) == ((1.0, 1.0), 0.0, 0.0)
    assert tuple(back.test_warps) == (1.0,)
    np.testing.assert_allclose(back.predict_proba(test), clf.predict_proba(test), rtol=1e-6)


def _dicts(node):
    """Every dict inside a decoded JSON document."""
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _dicts(v)
    elif isinstance(node, list):
        for v in node:
            yield from _dicts(v)


def test_save_and_load_give_the_same_predictions(clips, tmp_path):
    train, y, test, _ = clips
    clf = _small(conv_net=None).fit(train, y)
    fastsae.save(clf, tmp_path / "clf.npz")
    back = fastsae.load(tmp_path / "clf.npz")
    np.testing.assert_allclose(back.predict_proba(test), clf.predict_proba(test), rtol=1e-6)


def test_defaults_are_the_documented_recipe():
    feats = default_features(random_state=5)
    assert [(f.patch_bands, f.n_frames, f.floor_db, f.n_cepstra) for f in feats] == [
        (12, 8, 35.0, 20), (8, 10, 35.0, 20), (12, 8, None, None), (8, 10, None, None)]
    assert [f.random_state for f in feats] == [5, 6, 5, 6]
    a = feats[0]
    assert a.n_pool_regions == ((6, 4), (3, 2)) and a.normalize_level
    net = default_conv_net()
    assert [(d["n_filters"], d["patch_shape"]) for d in net.layers] == [(24, (12, 8)),
                                                                       (32, (4, 4))]
    assert net.layers[1]["n_pool_regions"] == (3, 3)
    one = default_conv_net(n_layers=1)
    assert len(one.layers) == 1 and one.layers[0]["n_pool_regions"] == (6, 4)
    with pytest.raises(ParameterError, match="n_layers"):
        default_conv_net(n_layers=3)
    clf = ClipClassifier()
    assert clf.n_warps == 4 and clf.warp_range == (0.88, 1.12)
    assert clf.tempo_range == (0.88, 1.12) and (clf.tilt_db, clf.ripple_db) == (6.0, 2.0)


@pytest.mark.parametrize("params", [
    dict(n_warps=-1), dict(warp_range=(1.2, 0.9)), dict(warp_range=5), dict(n_frames=0),
    dict(features=["x"]), dict(conv_net="big"), dict(weight_decay=-1.0),
    dict(features=None, spectrogram_softmax=False, conv_net=None), dict(trim_db=0.0),
    dict(tempo_range=(0.0, 1.1)), dict(tempo_range="fast"), dict(tilt_db=-1.0),
    dict(ripple_db=float("nan")), dict(test_warps=()), dict(test_warps=(1.0, 0.0)),
    dict(test_warps=1.0), dict(test_warps=(1.0, float("inf"))),
])
def test_bad_parameters_are_refused_before_any_work(clips, params):
    train, y, _, _ = clips
    with pytest.raises(ParameterError):
        ClipClassifier(**params).fit(train, y)


@pytest.mark.parametrize("warps", [(), (1.0, 0.0), 1.0, (1.0, float("inf")), "1.0", (True,),
                                   np.ones((2, 2))])
def test_bad_test_warps_are_named(clips, warps):
    train, y, _, _ = clips
    with pytest.raises(ParameterError, match="test_warps"):
        ClipClassifier(test_warps=warps).fit(train, y)


def test_test_warps_take_any_sequence(clips):
    for warps in ([0.9, 1, 1.1], np.array([0.9, 1.0, 1.1]), (np.float64(1.0),)):
        assert ClipClassifier(test_warps=warps)._test_warps() in ((0.9, 1.0, 1.1), (1.0,))


def test_a_bad_member_is_refused_before_any_member_is_fitted(clips, monkeypatch):
    train, y, _, _ = clips
    good = SelfTaughtFeatures(n_hidden=6, n_windows=800, max_iter=5, random_state=0)
    bad = SelfTaughtFeatures(n_hidden=6, n_cepstra=0)
    monkeypatch.setattr(SelfTaughtFeatures, "fit_transform",
                        lambda *a, **k: pytest.fail("a member was fitted"))
    with pytest.raises(ParameterError, match=r"features\[1\].*n_cepstra"):
        ClipClassifier(features=[good, bad]).fit(train, y)
    with pytest.raises(ParameterError, match="conv_net.*finetune_iter"):
        ClipClassifier(features=[good], conv_net=default_conv_net().set_params(
            finetune_iter=0)).fit(train, y)


def test_a_network_too_big_for_the_fixed_length_input_is_refused_before_any_work(clips,
                                                                                  monkeypatch):
    train, y, _, _ = clips
    monkeypatch.setattr(SelfTaughtFeatures, "fit_transform",
                        lambda *a, **k: pytest.fail("a member was fitted"))
    feats = [SelfTaughtFeatures(n_hidden=6, n_windows=800, max_iter=5, random_state=0)]
    with pytest.raises(ParameterError, match=r"conv_net.*40 bands x n_frames=12"):
        ClipClassifier(features=feats, conv_net=default_conv_net(), n_frames=12).fit(train, y)


def test_the_default_network_has_one_layer_where_two_do_not_fit(clips, capsys):
    train, y, test, y_test = clips
    # 12 frames: too few for the second layer (15 at least), enough for the first
    clf = ClipClassifier(features=[], spectrogram_softmax=False, n_frames=12, max_iter=50,
                         random_state=0, verbose=True).fit(train, y)
    net = dict(clf.members_)["conv net"]
    assert len(net.layers_) == 1 and "the network has one" in capsys.readouterr().out
    assert clf.score(test, y_test) > 0.3                             # chance is 0.1
    clf = ClipClassifier(features=[], spectrogram_softmax=False, max_iter=50, random_state=0)
    assert len(clf._net_for(clf._members()[1], 40).layers) == 2


def test_bad_input_is_refused(clips):
    train, y, test, _ = clips
    with pytest.raises(ParameterError, match="classes"):
        _small().fit(train, np.zeros(len(train)))
    with pytest.raises(fastsae.NotFittedError):
        ClipClassifier().predict(test)
    clf = _small(conv_net=None, features=[]).fit(train, y)
    with pytest.raises(ParameterError, match="bands"):
        clf.predict([np.zeros((20, 30))])


def test_quick_settings_are_smaller_and_overridable():
    quick = ClipClassifier.quick(random_state=3, n_warps=2)
    assert quick.n_warps == 2 and quick.random_state == 3
    (feats,), net = quick._members()
    assert feats.n_hidden < default_features()[0].n_hidden
    assert net.finetune_iter < default_conv_net().finetune_iter
    assert len(net.layers) == 1                      # the one-layer network: a third of the time


def test_the_members_fixed_budgets_raise_no_convergence_warning(clips, recwarn):
    train, y, _, _ = clips
    _small(conv_net=None).fit(train, y)              # 25 SAE iterations: far from converged
    assert not [w for w in recwarn if issubclass(w.category, fastsae.ConvergenceWarning)]
    with pytest.warns(fastsae.ConvergenceWarning):   # the members alone do warn
        SelfTaughtFeatures(n_hidden=12, n_windows=1500, max_iter=5, random_state=0).fit(train)
