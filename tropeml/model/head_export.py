"""From a fitted classifier to the arrays of ``head.npz`` (see :mod:`tropeml.model.head`).

:func:`export_arrays` reads the fitted estimators; :func:`checked_arrays` keeps the arrays only
if :class:`~tropeml.model.head.ArrayHead` scores probe passages as the classifier does;
:func:`npz_bytes` serialises them reproducibly.
"""

from __future__ import annotations

import io
import warnings
import zipfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tropeml.model.head import HEAD_ARRAYS_VERSION, ArrayHead
from tropeml.model.kernel import RbfView

if TYPE_CHECKING:
    from tropeml.model.classifier import TropeClassifier

_SUPPORTED_TFIDF = {
    "analyzer": "word",
    "binary": False,
    "norm": "l2",
    "use_idf": True,
    "strip_accents": None,
    "stop_words": None,
    "preprocessor": None,
    "tokenizer": None,
    "vocabulary": None,
}


def _embedding_arrays(classifier: Any) -> dict[str, NDArray[Any]] | None:
    """The embedding view's arrays: an RBF kernel machine's or the logistic regressions'."""
    T, d = len(classifier.classes_), int(classifier.n_features_in_)
    view = classifier.estimators_
    if isinstance(view, RbfView):
        return {
            "emb_basis": np.asarray(view.basis, dtype=np.float32),
            "emb_dual": np.asarray(view.dual, dtype=np.float64),
            "emb_gamma": np.asarray(view.gamma, dtype=np.float64),
            "emb_intercept": np.asarray(view.bias, dtype=np.float64),
            "has_emb": np.asarray(view.learned, dtype=bool),
        }
    models = [m for m in view if m is not None]
    dtype = np.asarray(models[0].coef_).dtype if models else np.float64
    emb_coef, emb_intercept = np.zeros((T, d), dtype=dtype), np.zeros(T, dtype=dtype)
    has_emb = np.zeros(T, dtype=bool)
    for j, model in enumerate(view):
        if model is None:
            continue
        coef = np.asarray(getattr(model, "coef_", None))
        if coef.shape != (1, d) or coef.dtype != dtype or not hasattr(model, "intercept_"):
            return None
        emb_coef[j], emb_intercept[j], has_emb[j] = coef[0], model.intercept_[0], True
    return {"emb_coef": emb_coef, "emb_intercept": emb_intercept, "has_emb": has_emb}


def export_arrays(classifier: Any) -> dict[str, NDArray[Any]] | None:
    """Return a fitted ``TropeClassifier`` as arrays for :class:`ArrayHead`.

    Returns:
        The arrays, or ``None`` if the classifier uses a setting :class:`ArrayHead` does
        not reproduce (a custom vectorizer, a non-linear estimator); such a model is then
        served from ``head.skops`` alone.
    """
    T, embedding = len(classifier.classes_), _embedding_arrays(classifier)
    if embedding is None:
        return None
    arrays: dict[str, NDArray[Any]] = {
        "version": np.asarray(HEAD_ARRAYS_VERSION),
        "classes": np.asarray([str(c) for c in classifier.classes_]),
        **embedding,
        "scale": np.asarray(classifier.scale_, dtype=np.float64),
        "weights": classifier._weights(),
        "priors": np.asarray(classifier.priors_, dtype=np.float64),
        "calibration": np.asarray(classifier.calibration_, dtype=np.float64),
        "thresholds": np.asarray(classifier.thresholds_, dtype=np.float64),
    }
    if classifier.prototypes_ is not None:
        arrays["prototypes"] = np.asarray(classifier.prototypes_, dtype=np.float32)
    vectorizer = classifier.vectorizer_
    if vectorizer is not None:
        params = vectorizer.get_params()
        if any(params.get(k) != v for k, v in _SUPPORTED_TFIDF.items()):
            return None
        vocab = sorted(vectorizer.vocabulary_.items(), key=lambda kv: kv[1])
        V = len(vocab)
        if [i for _, i in vocab] != list(range(V)):
            return None
        lex_coef, lex_intercept = np.zeros((T, V)), np.zeros(T)
        has_lex = np.zeros(T, dtype=bool)
        for j, model in enumerate(classifier.lexical_):
            if model is None:
                continue
            coef = np.asarray(model.coef_)
            if coef.shape != (1, V):
                return None
            lex_coef[j], lex_intercept[j], has_lex[j] = coef[0], float(model.intercept_[0]), True
        arrays.update(
            vocabulary=np.asarray([term for term, _ in vocab], dtype=str),
            idf=np.asarray(vectorizer.idf_, dtype=np.float64),
            token_pattern=np.asarray(str(params["token_pattern"])),
            lowercase=np.asarray(bool(params["lowercase"])),
            ngram_range=np.asarray(params["ngram_range"], dtype=np.int64),
            sublinear_tf=np.asarray(bool(params["sublinear_tf"])),
            lex_coef=lex_coef,
            lex_intercept=lex_intercept,
            has_lex=has_lex,
        )
    return arrays


def check_arrays(
    classifier: Any, arrays: dict[str, NDArray[Any]], X: ArrayLike, texts: Sequence[str] | None
) -> bool:
    """Whether :class:`ArrayHead` built from ``arrays`` scores ``X`` as the classifier does.

    Args:
        classifier: The fitted ``TropeClassifier``.
        arrays: Its :func:`export_arrays`.
        X: Probe embeddings, shape ``(n, d)``.
        texts: Probe texts (``n`` strings), or ``None``.
    """
    head = ArrayHead({k: v for k, v in arrays.items() if k != "version"})
    use = texts if classifier.uses_texts else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = classifier.decision_function(X, use)
        got = head.decision_function(X, use)
    return bool(np.allclose(want, got, rtol=1e-5, atol=1e-5, equal_nan=True))


def npz_bytes(arrays: dict[str, NDArray[Any]]) -> bytes:
    """Serialise arrays as an ``.npz`` whose bytes depend only on the arrays.

    ``numpy.savez`` stamps each entry with the current time; here every entry gets a fixed
    timestamp and the entries are sorted, so the same head always saves to the same bytes.
    """
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arrays[name]), allow_pickle=False)
            entry = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            zf.writestr(entry, buf.getvalue())
    return out.getvalue()


def checked_arrays(classifier: TropeClassifier) -> dict[str, Any] | None:
    """Return the classifier as arrays, if they score probe passages as the classifier does.

    The arrays are :func:`export_arrays`'s. ``None`` means the classifier cannot
    be reproduced from arrays; its folder then has no ``head.npz`` and is served from
    ``head.skops``.

    The probes are the prototypes and seeded random unit vectors, with texts drawn from the
    lexical vocabulary, so the check is the same on every run.
    """
    arrays = export_arrays(classifier)
    if arrays is None:
        return None
    rng = np.random.default_rng(0)
    d = int(classifier.n_features_in_)
    X = rng.normal(size=(32, d)).astype(np.float32)
    if classifier.prototypes_ is not None:
        X = np.vstack([np.asarray(classifier.prototypes_, dtype=np.float32), X])
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    texts = None
    if classifier.uses_texts:
        words = [str(w) for w in arrays["vocabulary"].tolist()] or ["empty"]
        texts = [" ".join(rng.choice(words, size=40)) for _ in range(len(X))]
    return arrays if check_arrays(classifier, arrays, X, texts) else None
