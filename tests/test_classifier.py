from __future__ import annotations

import inspect

import numpy as np
import pytest
from conftest import ClassifierParams
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from tropeml.model.classifier import UNKNOWN, TropeClassifier, best_f1_threshold

TAGS = ["rain", "cake", "sword"]


def make_data(n: int = 90, d: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    Y = np.stack([X[:, j] > 0.3 for j in range(len(TAGS))], axis=1).astype(np.int8)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    groups = np.repeat(np.arange(n // 10), 10)[:n]
    return X, Y, groups


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return make_data()


@pytest.fixture(scope="module")
def fitted(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> TropeClassifier:
    X, Y, groups = data
    return TropeClassifier(tags=TAGS).fit(X, Y, groups=groups)


NON_DEFAULT: ClassifierParams = {
    "tags": ["a", "b"],
    "C": 0.3,
    "class_weight": None,
    "min_positives": 4,
    "threshold_folds": 3,
    "default_threshold": 0.4,
    "max_iter": 321,
}


def test_init_only_stores_params() -> None:
    clf = TropeClassifier(**NON_DEFAULT)
    params = clf.get_params()
    assert set(vars(clf)) == set(params)
    assert {k: params[k] for k in NON_DEFAULT} == NON_DEFAULT
    signature = inspect.signature(TropeClassifier.__init__)
    assert set(params) == set(signature.parameters) - {"self"}


def test_clone_round_trip() -> None:
    clf = TropeClassifier(**NON_DEFAULT)
    copy = clone(clf)
    assert copy is not clf
    assert copy.get_params() == clf.get_params()
    assert copy.set_params(C=2.0) is copy
    assert copy.C == 2.0
    assert clf.C == 0.3


def test_clone_of_fitted_is_unfitted(fitted: TropeClassifier) -> None:
    copy = clone(fitted)
    assert not hasattr(copy, "estimators_")
    with pytest.raises(NotFittedError):
        copy.predict_proba(np.zeros((1, 8)))


def test_fit_returns_self_and_learned_attributes_end_in_underscore(
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    X, Y, groups = data
    clf = TropeClassifier(tags=TAGS)
    params = set(clf.get_params())
    assert clf.fit(X, Y, groups=groups) is clf
    learned = set(vars(clf)) - params
    assert learned >= {"classes_", "n_features_in_", "thresholds_", "estimators_"}
    assert all(name.endswith("_") and not name.startswith("_") for name in learned)
    assert clf.get_params()["tags"] == TAGS


@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_predict_before_fit(method: str) -> None:
    with pytest.raises(NotFittedError):
        getattr(TropeClassifier(), method)(np.zeros((2, 3)))


def test_predict_proba_shape_and_range(
    fitted: TropeClassifier, data: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    X, Y, _ = data
    proba = fitted.predict_proba(X)
    assert proba.shape == (len(X), len(TAGS))
    assert proba.dtype == np.float64
    assert np.all((proba >= 0) & (proba <= 1))
    pred = fitted.predict(X)
    assert pred.shape == proba.shape
    assert set(np.unique(pred)) <= {0, 1}
    assert np.array_equal(pred, (proba >= fitted.thresholds_).astype(np.int8))
    assert (pred == Y).mean() > 0.85  # the signal is easy to learn


def test_learned_attributes(fitted: TropeClassifier) -> None:
    assert list(fitted.classes_) == TAGS
    assert fitted.n_features_in_ == 8
    assert fitted.thresholds_.shape == (len(TAGS),)
    assert np.all((fitted.thresholds_ > 0) & (fitted.thresholds_ < 1))
    assert len(fitted.estimators_) == len(TAGS)


def test_classes_default_to_column_numbers(
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    X, Y, _ = data
    clf = TropeClassifier().fit(X, Y)
    assert list(clf.classes_) == [0, 1, 2]
    assert np.all(clf.thresholds_ == clf.default_threshold)  # no groups: default thresholds


def test_accepts_lists(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    X, Y, groups = data
    a = TropeClassifier(tags=TAGS).fit(X.tolist(), Y.tolist(), groups=groups.tolist())
    b = TropeClassifier(tags=TAGS).fit(X, Y, groups=groups)
    assert np.allclose(a.predict_proba(X[:5].tolist()), b.predict_proba(X[:5]))


def test_unknown_labels_are_ignored(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    X, Y, _ = data
    rng = np.random.default_rng(1)
    Y_unknown = Y.copy()
    unknown = rng.random(len(X)) < 0.3
    Y_unknown[unknown, 0] = UNKNOWN
    a = TropeClassifier(tags=TAGS).fit(X, Y_unknown)
    # rows unknown for a tag do not count for it: the same as leaving them out
    b = TropeClassifier(tags=TAGS[:1]).fit(X[~unknown], Y[~unknown, :1])
    assert np.allclose(a.predict_proba(X)[:, 0], b.predict_proba(X)[:, 0])
    # ... and whatever their features, they change nothing
    X_noisy = X.copy()
    X_noisy[unknown] = rng.normal(size=(unknown.sum(), X.shape[1]))
    c = TropeClassifier(tags=TAGS).fit(X_noisy, Y_unknown)
    assert np.allclose(a.predict_proba(X)[:, 0], c.predict_proba(X)[:, 0])
    # the other tags still learn from every row
    full = TropeClassifier(tags=TAGS).fit(X, Y)
    assert np.allclose(a.predict_proba(X)[:, 1:], full.predict_proba(X)[:, 1:])
    assert a.n_positives_[0] == (Y[~unknown, 0] == 1).sum()
    assert a.n_negatives_[0] == (Y[~unknown, 0] == 0).sum()


def test_all_unknown_rows_with_groups(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    X, Y, groups = data
    Y = Y.copy()
    Y[groups == 0] = UNKNOWN
    proba = TropeClassifier(tags=TAGS).fit(X, Y, groups=groups).predict_proba(X)
    assert np.all(np.isfinite(proba))


def test_tag_without_positives_gets_a_constant_score(
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    X, Y, groups = data
    Y = Y.copy()
    Y[:, 1] = 0
    Y[:3, 2] = [1, 0, 0]  # one positive: below min_positives
    Y[3:, 2] = UNKNOWN
    clf = TropeClassifier(tags=TAGS).fit(X, Y, groups=groups)
    assert clf.estimators_[1] is None
    assert clf.estimators_[2] is None
    proba = clf.predict_proba(np.vstack([X, -X]))
    for j in (1, 2):
        assert np.all(proba[:, j] == proba[0, j])
    assert proba[0, 1] < 0.01  # never seen: (almost) never predicted
    assert np.all(clf.predict(X)[:, 1] == 0)
    assert clf.thresholds_[1] > proba[:, 1].max()  # a null-quantile threshold, never 0.5 on z


def test_tag_with_only_positives(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    X, Y, groups = data
    Y = Y.copy()
    Y[:, 0] = 1
    clf = TropeClassifier(tags=TAGS).fit(X, Y, groups=groups)
    proba = clf.predict_proba(X)
    assert np.all(proba[:, 0] == proba[0, 0])
    assert np.all(clf.predict(X)[:, 0] == 1)


def test_min_positives(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    X, Y, _ = data
    clf = TropeClassifier(min_positives=1000).fit(X, Y)
    assert all(model is None for model in clf.estimators_)


def test_wrong_feature_count(fitted: TropeClassifier) -> None:
    with pytest.raises(ValueError, match="features"):
        fitted.predict_proba(np.zeros((2, 7)))
    with pytest.raises(ValueError, match="features"):
        fitted.predict(np.zeros((2, 9)))


@pytest.mark.parametrize(
    "bad_Y",
    [np.zeros((89, 3)), np.zeros(90), np.zeros((90, 2))],
    ids=["rows", "1-d", "columns-vs-tags"],
)
def test_bad_label_shapes(
    data: tuple[np.ndarray, np.ndarray, np.ndarray], bad_Y: np.ndarray
) -> None:
    X, _, _ = data
    with pytest.raises(ValueError):
        TropeClassifier(tags=TAGS).fit(X, bad_Y)


def test_bad_features(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    X, Y, _ = data
    X = X.copy()
    X[0, 0] = np.nan
    with pytest.raises(ValueError):
        TropeClassifier(tags=TAGS).fit(X, Y)


def test_deterministic(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    X, Y, groups = data
    a = TropeClassifier(tags=TAGS).fit(X, Y, groups=groups)
    b = TropeClassifier(tags=TAGS).fit(X, Y, groups=groups)
    assert np.array_equal(a.predict_proba(X), b.predict_proba(X))
    assert np.array_equal(a.thresholds_, b.thresholds_)


def test_thresholds_use_groups(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    X, Y, groups = data
    one_group = TropeClassifier(tags=TAGS).fit(X, Y, groups=np.zeros(len(X)))
    assert np.all(one_group.thresholds_ == one_group.default_threshold)
    grouped = TropeClassifier(tags=TAGS, threshold_folds=2).fit(X, Y, groups=groups)
    assert not np.all(grouped.thresholds_ == grouped.default_threshold)


def test_prototypes_make_zero_shot_scores_follow_the_definition(
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    if "prototypes" not in TropeClassifier().get_params():
        pytest.skip("this classifier has no prototypes")
    X, Y, groups = data
    Y = Y.copy()
    Y[:, 2] = 0  # no positives: only the prototype can say anything
    P = np.eye(len(TAGS), X.shape[1], dtype=np.float32)
    clf = TropeClassifier(tags=TAGS, prototypes=P).fit(X, Y, groups=groups)
    proba = clf.predict_proba(np.vstack([P[2], -P[2]]))
    assert proba[0, 2] > proba[1, 2]
    with pytest.raises(ValueError, match="prototypes"):
        TropeClassifier(tags=TAGS, prototypes=P[:2]).fit(X, Y)


# best_f1_threshold


def test_best_f1_threshold_separable() -> None:
    y = np.array([1, 1, 0, 0])
    assert best_f1_threshold(y, np.array([0.9, 0.8, 0.3, 0.1])) == pytest.approx(0.55)
    # accepting one (F1 2/3) or all four (F1 2/3): the stricter cut wins the tie
    assert best_f1_threshold(y, np.array([0.1, 0.9, 0.8, 0.3])) == pytest.approx(0.85)


def test_best_f1_threshold_no_positives_gives_default() -> None:
    assert best_f1_threshold(np.array([0, 0]), np.array([0.2, 0.9]), default=0.42) == 0.42
    assert best_f1_threshold(np.array([]), np.array([]), default=0.3) == 0.3


def test_best_f1_threshold_all_positive_accepts_all() -> None:
    th = best_f1_threshold(np.array([1, 1]), np.array([0.9, 0.7]))
    assert th == pytest.approx(0.675)
    assert best_f1_threshold(np.array([1]), np.array([0.01])) == pytest.approx(0.005)


def test_best_f1_threshold_never_cuts_inside_a_tie() -> None:
    th = best_f1_threshold(np.array([1, 0, 0]), np.array([0.5, 0.5, 0.2]))
    assert th == pytest.approx(0.35)


def _f1(y: np.ndarray, pred: np.ndarray) -> float:
    tp = int((pred & (y == 1)).sum())
    return 2 * tp / (int(pred.sum()) + int((y == 1).sum()))


@settings(max_examples=200, deadline=None)
@given(pairs=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 100)), min_size=1, max_size=30))
def test_best_f1_threshold_is_optimal(pairs: list[tuple[int, int]]) -> None:
    y = np.array([p[0] for p in pairs])
    scores = np.array([p[1] / 100 for p in pairs])
    th = best_f1_threshold(y, scores, default=0.5)
    if not y.any():
        assert th == 0.5
        return
    best = max(_f1(y, scores >= s) for s in np.unique(scores))
    assert _f1(y, scores >= th) == pytest.approx(best)
    assert 0 <= th <= 1


# the lexical view


def _texts(Y: np.ndarray, seed: int = 0) -> list[str]:
    """Texts whose words carry the labels (plus noise words)."""
    rng = np.random.default_rng(seed)
    words = ["puddle", "frosting", "blade"]
    noise = ["the", "and", "walked", "said", "then", "slowly"]
    out = []
    for row in Y:
        bag = list(rng.choice(noise, 5)) + [w for w, y in zip(words, row, strict=True) if y == 1]
        out.append(" ".join(rng.permutation(bag)))
    return out


def test_lexical_view_learns_words(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    X, Y, groups = data
    rng = np.random.default_rng(3)
    noise = rng.normal(size=X.shape).astype(np.float32)  # embeddings that say nothing
    texts = _texts(Y)
    clf = TropeClassifier(tags=TAGS).fit(noise, Y, groups=groups, texts=texts)
    assert clf.uses_texts
    proba = clf.predict_proba(noise, texts)
    for j in range(len(TAGS)):
        assert proba[Y[:, j] == 1, j].mean() > proba[Y[:, j] == 0, j].mean() + 0.2
    without = TropeClassifier(tags=TAGS).fit(noise, Y, groups=groups)
    assert not without.uses_texts
    assert np.abs(without.predict_proba(noise) - Y).mean() > np.abs(proba - Y).mean()


def test_lexical_view_needs_texts_at_prediction(
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    X, Y, groups = data
    clf = TropeClassifier(tags=TAGS).fit(X, Y, groups=groups, texts=_texts(Y))
    with pytest.raises(ValueError, match="texts"):
        clf.predict_proba(X)
    with pytest.raises(ValueError, match="texts"):
        clf.predict_proba(X, _texts(Y)[:-1])
    off = TropeClassifier(tags=TAGS, lexical_weight=0.0).fit(X, Y, groups=groups, texts=_texts(Y))
    assert not off.uses_texts
    off.predict_proba(X)  # texts are not needed when the view is off


def test_views_are_standardised(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    X, Y, groups = data
    P = np.eye(len(TAGS), X.shape[1], dtype=np.float32)
    clf = TropeClassifier(tags=TAGS, prototypes=P).fit(X, Y, groups=groups, texts=_texts(Y))
    assert clf.scale_.shape == (3, len(TAGS), 2)
    assert np.all(clf.scale_[..., 1] > 0)
    # scaling a view's weight to zero is the same as leaving that view out
    no_proto = TropeClassifier(tags=TAGS, prototypes=P, prototype_weight=0.0)
    no_proto.fit(X, Y, groups=groups)
    plain = TropeClassifier(tags=TAGS).fit(X, Y, groups=groups)
    assert np.allclose(no_proto.decision_function(X), plain.decision_function(X))


def _rare_tag_data(n_pos: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 16)).astype(np.float32)
    Y = np.zeros((300, 2), dtype=np.int8)
    Y[:150, 1] = 1  # a common tag, learnable everywhere
    Y[:n_pos, 0] = 1  # a rare tag
    X[:n_pos, 0] += 4.0
    groups = np.arange(300) % 30
    groups[1] = groups[0]  # two of the rare positives in one work: one inner fold keeps one
    return X, Y, groups


def test_a_three_positive_tag_gets_no_prototype_only_calibration_and_a_sane_threshold() -> None:
    X, Y, groups = _rare_tag_data(3)
    clf = TropeClassifier(tags=["rare", "common"], prototypes=np.eye(2, 16, dtype=np.float32))
    with pytest.warns(UserWarning, match="'rare'.*left out of its calibration"):
        clf.fit(X, Y, groups=groups)
    fired = clf.predict(X[3:])[:, 0].mean()
    assert fired <= 0.10  # not half the passages, and not the old 0.016 threshold
    assert clf.thresholds_[0] > 0.1


def test_a_tag_without_labels_and_nothing_to_borrow_fires_rarely() -> None:
    X, Y, groups = _rare_tag_data(0)
    Y[:, 0] = UNKNOWN
    clf = TropeClassifier(tags=["none", "common"]).fit(X, Y, groups=groups)
    assert clf.predict(X)[:, 0].mean() <= 0.10


def test_view_weights_are_learned_per_tag(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """The stacker leans on the view that carries each tag: words for one, embedding for another."""
    X, Y, groups = data
    rng = np.random.default_rng(5)
    noise = rng.normal(size=X.shape).astype(np.float32)
    # "rain" and "cake" are in the embedding only, "sword" in the words only
    X_mixed = np.where(np.arange(X.shape[1]) < 2, X, noise * 0.2).astype(np.float32)
    texts = [("sword " if y[2] else "") + "the end" for y in Y]
    Y_mixed = np.stack([X[:, 0] > 0.03, X[:, 1] > 0.03, Y[:, 2]], axis=1).astype(np.int8)
    clf = TropeClassifier(tags=TAGS).fit(X_mixed, Y_mixed, groups=groups, texts=texts)
    W = clf._weights()
    assert W.shape == (3, len(TAGS)) and np.all(W >= 0)
    emb, lex = 0, 1
    assert W[lex, 2] > W[emb, 2]  # sword: its word says it
    assert W[emb, 0] > W[lex, 0] and W[emb, 1] > W[lex, 1]  # rain, cake: the embedding does
    fixed = TropeClassifier(tags=TAGS, stack_C=None).fit(
        X_mixed, Y_mixed, groups=groups, texts=texts
    )
    assert np.allclose(fixed._weights(), np.array([[0.5], [1.0], [1.0]]))
    # the learned weights separate each tag at least as well as the fixed ones
    stacked, plain = clf.decision_function(X_mixed, texts), fixed.decision_function(X_mixed, texts)
    for j in range(len(TAGS)):
        assert (
            _separation(stacked[:, j], Y_mixed[:, j])
            >= _separation(plain[:, j], Y_mixed[:, j]) - 0.05
        )


def _separation(scores: np.ndarray, y: np.ndarray) -> float:
    """Gap between the mean scores of positives and negatives, in standard deviations."""
    return float((scores[y == 1].mean() - scores[y == 0].mean()) / scores.std())


def test_view_weights_stay_fixed_without_groups_or_labels(
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    X, Y, _ = data
    no_cv = TropeClassifier(tags=TAGS).fit(X, Y)
    assert np.allclose(no_cv._weights(), np.array([[0.5], [1.0], [1.0]]))
    X2, Y2, groups2 = _rare_tag_data(3)
    with pytest.warns(UserWarning, match="too few positives"):
        rare = TropeClassifier(tags=["rare", "common"]).fit(X2, Y2, groups=groups2)
    assert np.allclose(rare._weights()[:, 0], [0.5, 1.0, 1.0])  # 3 positives: too few
    # a view switched off stays off
    off = TropeClassifier(tags=TAGS, lexical_weight=0.0).fit(X, Y, groups=np.arange(len(X)) % 9)
    assert np.all(off._weights()[1] == 0.0)
