"""fastsae's estimators are scikit-learn estimators.

``check_estimator`` (through ``parametrize_with_checks``: one test per check)
on the autoencoder, the softmax and the stacked autoencoder; the checks that
cannot apply to a sigmoid decoder's [0, 1] input are declared through
scikit-learn's own expected-failure mechanism, each with its reason, and
the same estimators with a linear decoder pass every check. Then what users
do with them: clone, pickle, cross-validation, grid search over a pipeline
in two processes, feature names, saving a pipeline.
"""
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import parametrize_with_checks

import fastsae
from fastsae import (ParameterError, PCAWhitening, SigmoidNormalizer, SoftmaxRegression,
                     SparseAutoencoder, StackedAutoencoder)

# The checks whose generated data leave [0, 1] (and the one feeding negative values):
# a sigmoid decoder cannot reconstruct them and fit refuses them with a ParameterError
# ("X must lie in [0, 1] for decoder='sigmoid'"). The same estimator with
# decoder="linear" runs each of these checks below and passes.
UNIT_INPUT = ("the check's data leave [0, 1], which a sigmoid decoder refuses by design "
              "(ParameterError); the decoder='linear' instance passes this check")
SIGMOID_SAE_CHECKS = [
    "check_dict_unchanged", "check_dont_overwrite_parameters", "check_estimators_dtypes",
    "check_estimators_fit_returns_self", "check_estimators_overwrite_params",
    "check_estimators_pickle", "check_f_contiguous_array_estimator", "check_fit2d_1feature",
    "check_fit2d_1sample", "check_fit2d_predict1d", "check_fit_check_is_fitted",
    "check_fit_idempotent", "check_methods_sample_order_invariance",
    "check_methods_subset_invariance", "check_n_features_in",
    "check_n_features_in_after_fitting", "check_pipeline_consistency",
    "check_readonly_memmap_input", "check_transformer_data_not_an_array",
    "check_transformer_general", "check_transformer_n_iter", "check_transformer_preserve_dtypes",
]
SIGMOID_STACK_CHECKS = sorted(set(SIGMOID_SAE_CHECKS) - {"check_fit2d_1sample",
                                                         "check_transformer_n_iter"}) + [
    "check_classifier_data_not_an_array", "check_classifiers_classes",
    "check_classifiers_train", "check_decision_proba_consistency",
]

SMALL_STACK = dict(hidden_sizes=(6,), pretrain_iter=30, softmax_iter=50, finetune_iter=30)
ESTIMATORS = [
    SparseAutoencoder(n_hidden=4, max_iter=30),
    SparseAutoencoder(n_hidden=4, decoder="linear", max_iter=30),
    SoftmaxRegression(max_iter=100),
    StackedAutoencoder(**SMALL_STACK),
    StackedAutoencoder(decoder="linear", **SMALL_STACK),
]


def expected_failed_checks(estimator):
    if getattr(estimator, "decoder", None) != "sigmoid":
        return {}
    names = SIGMOID_SAE_CHECKS if isinstance(estimator, SparseAutoencoder) else SIGMOID_STACK_CHECKS
    return {name: UNIT_INPUT for name in names}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_the_sigmoid_instances_fail_only_for_their_input_range():
    # what the expected failures declare is what happens: each declared check's own
    # data, scaled into [0, 1], would be accepted; and the error is the range error
    X = np.random.default_rng(0).normal(size=(20, 3))
    for est in (SparseAutoencoder(max_iter=3), StackedAutoencoder(**SMALL_STACK)):
        with pytest.raises(ParameterError, match=r"must lie in \[0, 1\] for decoder='sigmoid'"):
            est.fit(X, np.arange(20) % 2)
        est.fit((X - X.min()) / np.ptp(X), np.arange(20) % 2)
    assert get_tags(SparseAutoencoder()).input_tags.positive_only
    assert not get_tags(SparseAutoencoder(decoder="linear")).input_tags.positive_only
    assert get_tags(SparseAutoencoder(dtype="float32")).transformer_tags.preserves_dtype == ["float32"]


def _blobs(n=120, n_features=6, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = rng.normal(0, 2, (3, n_features))
    return centres[y] + rng.normal(0, 1, (n, n_features)), y


def test_clone_and_pickle_keep_params_and_fitted_outputs():
    X, y = _blobs()
    Xu = (X - X.min()) / np.ptp(X)
    for est, data in [(SparseAutoencoder(n_hidden=3, max_iter=20, random_state=0), (Xu,)),
                      (SoftmaxRegression(max_iter=50, random_state=0), (X, y)),
                      (StackedAutoencoder((5,), pretrain_iter=10, softmax_iter=10,
                                          finetune_iter=10, random_state=0), (Xu, y))]:
        twin = clone(est)
        assert twin is not est and twin.get_params() == est.get_params()
        est.fit(*data)
        assert not hasattr(clone(est), "n_features_in_")
        back = pickle.loads(pickle.dumps(est))
        out = "transform" if isinstance(est, SparseAutoencoder) else "predict_proba"
        np.testing.assert_array_equal(getattr(back, out)(data[0]), getattr(est, out)(data[0]))
        assert back.n_evaluations_ >= back.n_iter_ >= 1


def test_cross_val_score_of_the_softmax():
    X, y = _blobs(150)
    scores = cross_val_score(SoftmaxRegression(max_iter=100), X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.8


def test_grid_search_over_autoencoder_then_softmax_in_two_processes():
    X, y = _blobs(160, 8)
    pipe = make_pipeline(StandardScaler(),
                         SparseAutoencoder(decoder="linear", max_iter=30, random_state=0),
                         SoftmaxRegression(max_iter=60, random_state=0))
    grid = GridSearchCV(pipe, {"sparseautoencoder__n_hidden": [3, 8],
                               "softmaxregression__weight_decay": [1e-4, 1e-1]},
                        cv=2, n_jobs=2)
    grid.fit(X, y)
    assert len(grid.cv_results_["mean_test_score"]) == 4
    assert grid.best_score_ > 0.7
    assert grid.best_estimator_[1].n_hidden in (3, 8)
    assert grid.score(X, y) > 0.7


def test_transformers_name_their_output_features():
    X, y = _blobs()
    Xu = (X - X.min()) / np.ptp(X)
    sae = SparseAutoencoder(n_hidden=3, max_iter=5).fit(Xu)
    assert list(sae.get_feature_names_out()) == [f"sparseautoencoder{i}" for i in range(3)]
    pca = PCAWhitening(n_components=2).fit(X)
    assert list(pca.get_feature_names_out()) == ["pcawhitening0", "pcawhitening1"]
    assert len(PCAWhitening(zca=True).fit(X).get_feature_names_out()) == X.shape[1]
    norm = SigmoidNormalizer().fit(X)
    assert list(norm.get_feature_names_out()) == [f"x{i}" for i in range(X.shape[1])]
    stack = StackedAutoencoder((5, 4), pretrain_iter=5, softmax_iter=5, finetune_iter=5).fit(Xu, y)
    assert len(stack.get_feature_names_out()) == stack.transform(Xu).shape[1] == 4


def test_save_writes_pipelines_of_fastsae_steps_and_standard_scaler(tmp_path):
    X, y = _blobs()
    pipe = make_pipeline(StandardScaler(), SoftmaxRegression(max_iter=50, random_state=0))
    pipe.fit(X, y)
    fastsae.save(pipe, tmp_path / "pipe.npz")
    back = fastsae.load(tmp_path / "pipe.npz")
    np.testing.assert_allclose(back.predict_proba(X), pipe.predict_proba(X), rtol=1e-12)
    other = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    with pytest.raises(ParameterError, match="LogisticRegression.*joblib or pickle"):
        fastsae.save(other, tmp_path / "other.npz")
    assert not (tmp_path / "other.npz").exists()
