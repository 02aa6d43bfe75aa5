"""A screen: which passages can change a work's tags, judged without the full encoder.

Most passages of most works carry no trope, yet each costs a full pass of the encoder. A
screen is a static-embedding model distilled from the model's own encoder with model2vec
(each token's vector; a passage is the mean of its tokens': about a hundred times cheaper
than the encoder) plus a linear map from those vectors to the encoder's. The model's own
head scores the mapped vectors (its lexical view reads the real text, so that part is exact),
giving an estimate ``z_hat`` of each passage's logit for each tag, off by about ``sd`` (the
spread of the error, measured out of fold when the screen is fitted).

A tag fires on a work of ``n`` passages when its evidence logit reaches a bar that depends
on ``n`` (:func:`tropeml.model.decision.evidence_bars`). Only passages with
``z_hat >= bar - margin * sd`` for some tag can decide that; those go through the full
encoder and the rest keep their estimates, capped below the bar. A tag whose ``k`` best
estimates clear the bar by more than the margin is decided without them. ``margin`` trades speed for
agreement with the full pipeline; it was chosen on the dev works
(``benchmarks/results/speed.md``).

The screen lives in the model folder's ``screen/`` (the model2vec folder, safetensors, no
pickle, and ``map.npz``); ``config.json`` records the SHA-256 of each of its files, checked
on load.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tropeml.core.errors import TropemlError
from tropeml.core.fileio import fsync_write
from tropeml.model.decision import logits
from tropeml.model.head import unit_rows
from tropeml.model.head_export import npz_bytes
from tropeml.model.integrity import sha256_file
from tropeml.model.weights import encoder_folder

SCREEN_DIR = "screen"
MAP_FILE = "map.npz"
STATIC_FILES = ("config.json", "model.safetensors", "tokenizer.json", "modules.json")
DEFAULT_MARGIN = 1.5
"""Passages within this many error spreads of a bar are encoded (chosen on the dev works)."""
RIDGE = 1.0
"""Ridge penalty of the map from static vectors to the encoder's."""
FOLDS = 5


@dataclass
class Screen:
    """A static-embedding screen for a model's head (see the module docstring).

    Attributes:
        static: The model2vec ``StaticModel`` (``encode(texts) -> (n, s)``).
        W: Map to the encoder's space, shape ``(s, d)``.
        b: Its offset, shape ``(d,)``.
        sd: Spread of the estimated passage logits' error per tag, shape ``(T,)``.
        margin: Passages within ``margin * sd`` of a bar go through the full encoder.
    """

    static: Any
    W: NDArray[np.float32]
    b: NDArray[np.float32]
    sd: NDArray[np.float64]
    margin: float = DEFAULT_MARGIN

    def approximate(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Estimated encoder embeddings of ``texts``, unit length, shape ``(n, d)``."""
        if not texts:
            return np.zeros((0, self.W.shape[1]), dtype=np.float32)
        S = np.asarray(self.static.encode(list(texts)), dtype=np.float32)
        return unit_rows(S @ self.W + self.b)

    def plan(
        self, z_hat: NDArray[np.float64], bars: NDArray[np.float64], k: int = 1
    ) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
        """Which passages the full encoder must see to decide the work's tags.

        A tag is settled when ``k`` passages are estimated beyond its bar by more than the
        margin: it fires whatever the rest show (its evidence is still scored in full, see
        :mod:`tropeml.serve.screening`). For the other tags every passage estimated above
        ``bar - margin * sd`` could decide, and is picked; the rest are capped there.

        Args:
            z_hat: Estimated passage logits of one work, shape ``(n, T)``.
            bars: The logit each tag's evidence must reach on this work, shape ``(T,)``.
            k: Evidence rank of the decision rule.

        Returns:
            ``(need, cap)``: shape ``(n,)``, True where the full encoder is needed; shape
            ``(T,)``, the most an estimate may count for (``inf`` for settled tags).
        """
        spread = self.margin * self.sd
        settled = (z_hat >= bars + spread).sum(axis=0) >= k
        need = ((z_hat >= bars - spread) & ~settled).any(axis=1)
        return np.asarray(need), np.where(settled, np.inf, bars - spread)

    def save(self, folder: Path) -> dict[str, Any]:
        """Write the screen into ``folder`` (``screen/`` of a model folder being built).

        Returns:
            The ``screen`` entry of ``config.json``: margin and each file's SHA-256.
        """
        folder.mkdir(parents=True, exist_ok=True)
        self.static.save_pretrained(str(folder))
        (folder / "README.md").unlink(missing_ok=True)  # model2vec's card: not ours to ship
        fsync_write(folder / MAP_FILE, npz_bytes({"W": self.W, "b": self.b, "sd": self.sd}))
        files = {
            n: sha256_file(folder / n) for n in (*STATIC_FILES, MAP_FILE) if (folder / n).exists()
        }
        return {"margin": self.margin, "files": files}

    @classmethod
    def load(cls, folder: Path, entry: dict[str, Any]) -> Screen:
        """Load a model folder's ``screen/``, checking every file against ``entry``.

        Raises:
            TropemlError: If a file is missing or differs from the SHA-256 recorded.
        """
        problem = check_screen(folder, entry)
        if problem:
            raise TropemlError(problem)
        from model2vec import StaticModel

        with np.load(folder / MAP_FILE, allow_pickle=False) as npz:
            W, b, sd = npz["W"], npz["b"], npz["sd"]
        static = StaticModel.from_pretrained(str(folder))
        return cls(static, W, b, sd.astype(np.float64), float(entry.get("margin", DEFAULT_MARGIN)))


def check_screen(folder: Path, entry: dict[str, Any]) -> str | None:
    """What is wrong with a model folder's ``screen/`` against its config entry (``None``: ok)."""
    files = entry.get("files")
    if not isinstance(files, dict) or MAP_FILE not in files:
        return f"{folder}: the model's screen entry names no files"
    for name, digest in files.items():
        path = folder / str(name)
        if not path.is_file() or sha256_file(path) != digest:
            return f"{path}: the screen's file is missing or was changed"
    return None


def distill_static(encoder_path: str | Path) -> Any:
    """Distil a model2vec static model from a sentence-transformers folder (offline).

    256 PCA dimensions, int8 (about 8 MB for a BERT vocabulary). Needs torch and
    transformers (the ``screen`` extra).

    Raises:
        TropemlError: If model2vec's distillation cannot be imported.
    """
    try:
        from model2vec.distill import distill
    except ImportError as exc:
        raise TropemlError(
            f"building a screen needs torch and transformers ({exc}); "
            "pip install 'tropeml[screen]' -c constraints.txt"
        ) from None
    return distill(model_name=str(encoder_path), pca_dims=256, quantize_to="int8")


def build_screen(
    encoder: Any,
    model: Any,
    texts: Sequence[str],
    X: NDArray[np.float32],
    margin: float = DEFAULT_MARGIN,
) -> Screen:
    """Distil ``encoder`` into a static model and fit a screen for ``model`` on ``texts``.

    Args:
        encoder: The model's encoder: a sentence-transformers model or its ONNX export (its
            model folder is distilled).
        model: The fitted head (``predict_proba(X, texts)`` and ``uses_texts``).
        texts: Passages as the model reads them: any prose, the more the better.
        X: Their embeddings by ``encoder``, shape ``(n, d)``.
        margin: See :class:`Screen`.

    Raises:
        TropemlError: If the encoder has no model folder to distil.
    """
    folder = encoder_folder(encoder)
    if folder is None:
        raise TropemlError("a screen is distilled from a sentence-transformers model folder")

    def score(X_: NDArray[np.float32], texts_: list[str]) -> NDArray[np.float64]:
        P = model.predict_proba(X_, texts_ if model.uses_texts else None)
        return logits(np.asarray(P, dtype=np.float64))

    return fit_screen(distill_static(folder), texts, X, score, margin)


def fit_screen(
    static: Any,
    texts: Sequence[str],
    X: NDArray[np.float32],
    score: Callable[[NDArray[np.float32], list[str]], NDArray[np.float64]],
    margin: float = DEFAULT_MARGIN,
) -> Screen:
    """Fit the map from ``static``'s vectors to the encoder's, and measure its error.

    Args:
        static: A model2vec static model.
        texts: Passages as the model reads them (names masked), ``n`` of them.
        X: Their encoder embeddings, shape ``(n, d)``.
        score: The model's passage logits for embeddings and texts, shape ``(n, T)``.
        margin: See :class:`Screen`.

    Returns:
        The screen; its ``sd`` is the spread of the estimated logits' error, out of fold.
    """
    texts = list(texts)
    S = np.asarray(static.encode(texts), dtype=np.float32)
    target = score(X, texts)
    err = np.zeros_like(target)
    fold = np.arange(len(texts)) % FOLDS
    for f in range(FOLDS):
        W, b = _ridge(S[fold != f], X[fold != f])
        held = np.flatnonzero(fold == f)
        err[held] = score(unit_rows(S[held] @ W + b), [texts[i] for i in held]) - target[held]
    W, b = _ridge(S, X)
    return Screen(static, W, b, err.std(axis=0).astype(np.float64), margin)


def _ridge(
    S: NDArray[np.float32], X: NDArray[np.float32]
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Ridge regression of ``X`` ``(n, d)`` on ``S`` ``(n, s)``: ``W (s, d)``, ``b (d,)``."""
    s_mean, x_mean = S.mean(axis=0), X.mean(axis=0)
    Sc = (S - s_mean).astype(np.float64)
    W = np.linalg.solve(Sc.T @ Sc + RIDGE * np.eye(S.shape[1]), Sc.T @ (X - x_mean))
    return W.astype(np.float32), (x_mean - s_mean @ W).astype(np.float32)
