"""The RBF embedding view: per-tag SVMs kept as one shared basis, served by numpy alone."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.svm import SVC

from tropeml.model.classifier import TropeClassifier
from tropeml.model.head import ArrayHead
from tropeml.model.head_export import export_arrays
from tropeml.model.kernel import RbfView


def _data(n: int = 160, d: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(n, d)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    # tag 0 linear, tag 1 not (an XOR of two directions), tag 2 never labelled positive
    Y = np.stack(
        [X[:, 0] > 0.1, (X[:, 1] > 0) ^ (X[:, 2] > 0), np.zeros(n, dtype=bool)], axis=1
    ).astype(np.int8)
    Y[:25, 1] = -1  # unknown rows
    return X, Y


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_the_shared_basis_gives_each_tags_svm_decision_values(scale: float) -> None:
    X, Y = _data()
    view = RbfView.fit(X, Y, [True, True, False], C=1.0, class_weight="balanced", scale=scale)
    got = view.decision_function(X)
    for j in (0, 1):
        known = Y[:, j] != -1
        gamma = scale / (X.shape[1] * X[known].astype(np.float64).var())
        svm = SVC(C=1.0, gamma=gamma, class_weight="balanced").fit(X[known], Y[known, j])
        assert np.allclose(got[:, j], svm.decision_function(X), atol=1e-9)
    assert np.isnan(got[:, 2]).all()
    assert [m is not None for m in view] == [True, True, False] and len(view) == 3
    assert len(view.basis) <= len(X)  # each row kept once, whichever tags it supports


def test_rbf_classifier_learns_what_a_linear_one_cannot_and_exports_exactly() -> None:
    X, Y = _data()
    groups = np.arange(len(X)) % 8
    rbf = TropeClassifier(tags=["a", "b", "c"]).fit(X, Y, groups=groups)
    linear = TropeClassifier(tags=["a", "b", "c"], kernel="linear").fit(X, Y, groups=groups)
    known = Y[:, 1] != -1

    def accuracy(clf: TropeClassifier) -> float:
        return float((clf.predict(X)[known, 1] == Y[known, 1]).mean())

    assert accuracy(rbf) > accuracy(linear) + 0.1
    for clf in (rbf, linear):
        arrays = export_arrays(clf)
        assert arrays is not None
        assert ("emb_basis" in arrays) == (clf is rbf)
        assert np.allclose(ArrayHead(arrays).predict_proba(X), clf.predict_proba(X), atol=1e-9)


def test_an_unknown_kernel_is_a_clear_error() -> None:
    X, Y = _data()
    with pytest.raises(ValueError, match="kernel must be 'rbf' or 'linear'"):
        TropeClassifier(kernel="poly").fit(X, Y)


def test_a_classifier_saved_before_gamma_scale_existed_still_clones() -> None:
    from sklearn.base import clone

    old = TropeClassifier(tags=["a"])
    del old.__dict__["gamma_scale"]  # as skops restores a head saved by an older release
    assert old.get_params()["gamma_scale"] == 1.0
    assert clone(old).gamma_scale == 1.0
