"""The Tagger: encoder + classifier + taxonomy; a fic in, trope tags with evidence out."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tropeml.core.errors import TropemlError
from tropeml.core.resources import default_model_dir
from tropeml.core.taxonomy import Taxonomy
from tropeml.core.types import Passage, Work, WorkResult
from tropeml.io.readers import DEFAULT_MAX_BYTES, expand_paths, parse_text, read_work
from tropeml.model.backends import BackendError, load_encoder, resolve_backend
from tropeml.model.cache import CachedEncoder
from tropeml.model.decision import chance_scores, fires, log_chance, work_probability
from tropeml.model.encoders import encoder_id
from tropeml.model.head import ArrayHead
from tropeml.model.persistence import CONFIG_FILE, load_head
from tropeml.model.rollup import pool_scores, rollup_settings, tag_results
from tropeml.model.screen import SCREEN_DIR, Screen
from tropeml.model.weights import EncoderMismatchError
from tropeml.model.workcal import WorkCalibrator, ending_evidence, evidence_features
from tropeml.serve.reading import WorkReader
from tropeml.serve.screening import screened_scores

if TYPE_CHECKING:
    from tropeml.model.classifier import TropeClassifier


class Tagger(WorkReader):
    """Tag works with a trained model.

    Args:
        classifier: A fitted :class:`TropeClassifier`, or its
            :class:`~tropeml.model.head.ArrayHead` (what :meth:`from_pretrained` loads: the same
            scores from plain arrays, without importing scikit-learn).
        taxonomy: The model's taxonomy (names for the tag ids).
        encoder: Anything with ``embed(list[str]) -> (n, d)``; ideally also
            ``count_tokens`` and ``max_tokens``.
        thresholds: Per-tag thresholds by id (default: the classifier's).
        name: The model's name, reported in results.
        top_k: Passages pooled into a work score.
        max_evidence: Evidence passages kept per tag.
        mask_names: Replace names with stand-ins before embedding (as in training).
        null: Per-tag null location and scale of passage logits, each shape ``(T,)``
            (see :mod:`tropeml.model.decision`). Given, a work's score for a tag is the
            chance that its evidence beats a trope-free work of the same length, and the tag
            fires at ``1 - alpha``; without it, the score is the mean of the ``top_k`` best
            passage scores against the passage threshold (tropeml 0.1 models).
        alpha: Per-tag false-tag rate aimed at, by id (with ``null``; default 0.05).
        k: Which best passage is the evidence (with ``null``): 1 or 2.
        calibration: ``(intercept, slope)`` (with ``null``): report each work score as the
            calibrated probability that the work shows the tag
            (:func:`~tropeml.model.decision.work_probability`) instead of the chance score;
            the decisions are the same.
        calibrator: A :class:`~tropeml.model.workcal.WorkCalibrator` (with ``null``): the
            work score is its probability (in place of ``calibration``); a tag fires when the
            chance rule gives it (cross tags: without it) and its score reaches the
            calibrator's floor for it (:meth:`~tropeml.model.workcal.WorkCalibrator.decide`).
        screen: A :class:`~tropeml.model.screen.Screen` (with ``null``): the full encoder
            runs only on passages that can change a work's tags (:mod:`.screening`).
    """

    def __init__(
        self,
        classifier: TropeClassifier | ArrayHead,
        taxonomy: Taxonomy,
        encoder: Any,
        thresholds: dict[str, float] | None = None,
        name: str = "model",
        top_k: int = 2,
        max_evidence: int = 3,
        mask_names: bool = True,
        null: tuple[ArrayLike, ArrayLike] | None = None,
        alpha: dict[str, float] | None = None,
        k: int = 1,
        screen: Screen | None = None,
        calibration: tuple[float, float] | None = None,
        calibrator: WorkCalibrator | None = None,
    ) -> None:
        if screen is not None and null is None:
            raise TropemlError("a screen needs a model whose work scores beat chance (a null)")
        self.screen = screen
        self.classifier = classifier
        self.taxonomy = taxonomy
        self.encoder = encoder
        self.tags = [str(t) for t in classifier.classes_]
        given = thresholds or {}
        self.thresholds = np.array(
            [
                given.get(t, float(th))
                for t, th in zip(self.tags, classifier.thresholds_, strict=True)
            ]
        )
        self.name = name
        self.top_k = top_k
        self.max_evidence = max_evidence
        self.mask_names = mask_names
        self.null = (
            None
            if null is None
            else (np.asarray(null[0], dtype=np.float64), np.asarray(null[1], dtype=np.float64))
        )
        self.k = k
        alphas = alpha or {}
        self.alpha = np.array([alphas.get(t, 0.05) for t in self.tags], dtype=np.float64)
        self.chance_thresholds = 1.0 - self.alpha
        """The chance score (:func:`~tropeml.model.decision.chance_scores`) each tag fires at."""
        self.calibrator = None if self.null is None else calibrator
        self.calibration = None if self.null is None or calibrator else calibration
        if self.calibration is not None and not self.calibration[1] > 0:
            raise TropemlError("a work-score calibration needs a positive slope")
        self.work_thresholds = (
            self.thresholds
            if self.null is None
            else np.array([self.calibrator.floor_of(t) for t in self.tags], dtype=np.float64)
            if self.calibrator is not None
            else self.chance_thresholds
            if self.calibration is None
            else work_probability(np.log(self.alpha), self.alpha, self.calibration)
        )

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path | None = None,
        encoder: Any = None,
        cache: bool | str | Path = True,
        backend: str | None = None,
        trust_encoder: bool = False,
        screen: bool = False,
    ) -> Tagger:
        """Load a model folder (default: the shipped model).

        Args:
            path: Model folder; ``None`` for the shipped default.
            encoder: Use this encoder instead of the one named in the model's config
                (it must give embeddings of the same dimension).
            cache: Cache embeddings on disk (``True``: the default cache file; a path: that
                file; ``False``: no cache).
            backend: How to run the model's encoder: ``"auto"`` (default: the fast int8
                ONNX backend where it can be built, else torch), ``"fast"`` or ``"torch"``.
                The embedding cache keeps each backend's vectors apart.
            trust_encoder: Use the model's encoder even if its files differ from the SHA-256
                the model recorded (as ``TROPEML_TRUST_ENCODER=1`` does); by default a
                changed file is refused.
            screen: Run the full encoder only on passages the model's screen picks
                (:mod:`tropeml.serve.screening`; the model must have one).

        Raises:
            TropemlError: If the folder is missing, corrupt, untrusted or incompatible, or its
                encoder's files are not the ones it was trained with.
        """
        backend = resolve_backend(backend)  # a bad backend is not the model folder's fault
        folder = Path(path) if path is not None else default_model_dir()
        classifier, config, taxonomy = load_head(folder)
        where = folder / CONFIG_FILE
        if encoder is None:
            try:
                encoder = load_encoder(
                    config["encoder"].get("name"),
                    backend=backend,
                    files=config["encoder"].get("files"),
                    trust=trust_encoder,
                    where=where,
                )
            except (EncoderMismatchError, BackendError):
                raise
            except TropemlError as exc:
                raise TropemlError(f"{where}: {exc}") from None
        else:
            dim = getattr(encoder, "dimension", None)
            if isinstance(dim, int) and dim != classifier.n_features_in_:
                raise TropemlError(
                    f"{where}: the model expects {classifier.n_features_in_}-d embeddings but "
                    f"encoder {encoder_id(encoder)!r} gives {dim}-d"
                )
        if cache:
            encoder = CachedEncoder(encoder, None if cache is True else Path(str(cache)))
        entry = config.get("screen")
        if screen and not isinstance(entry, dict):
            raise TropemlError(f"{where}: this model has no screen (train it with --screen)")
        return cls(
            classifier,
            taxonomy,
            encoder,
            thresholds={k: float(v) for k, v in config["thresholds"].items()},
            name=str(config.get("name", folder.name)),
            mask_names=bool(config.get("mask_names", False)),
            **rollup_settings(config["rollup"], config["tags"]),
            screen=Screen.load(folder / SCREEN_DIR, entry) if screen and entry else None,
        )

    def embed(self, passages: Sequence[Passage], work: Work | None = None) -> NDArray[np.float32]:
        """Embed passages (of ``work``, whose names are masked if the model masks names).

        Returns:
            Shape ``(n, d)``.
        """
        return self.embed_texts(self.texts(passages, work))

    def embed_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Embed texts the model reads (as :meth:`texts` gives them). Shape ``(n, d)``."""
        if not texts:
            return np.zeros((0, self.classifier.n_features_in_), dtype=np.float32)
        X = np.asarray(self.encoder.embed(list(texts)), dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.classifier.n_features_in_:
            raise TropemlError(
                f"encoder gives {X.shape[-1]}-d embeddings; the model expects "
                f"{self.classifier.n_features_in_}-d"
            )
        return X

    def tag(
        self,
        work: Work | str,
        source: str | None = None,
        embeddings: ArrayLike | None = None,
    ) -> WorkResult:
        """Tag one work.

        Args:
            work: A :class:`Work` or plain text.
            source: Name to report (default: the work's own source).
            embeddings: Precomputed embeddings of ``self.passages(work)``, shape ``(n, d)``
                (as :meth:`embed` makes them, names masked if the model masks names).

        Returns:
            Work-level scores for every tag, and the tags over threshold with evidence.
        """
        if isinstance(work, str):
            work = parse_text(work, source=source or "<text>")
        if embeddings is None and self.screen is not None:
            return self.tag_many([work], [source] if source else None)[0]
        passages = self.passages(work)
        texts = None
        if embeddings is None:
            texts = self.texts(passages, work)  # masked once, for the encoder and the head
            X = self.embed_texts(texts)
        else:
            try:
                X = np.asarray(embeddings, dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise TropemlError(f"embeddings are not a numeric array ({exc})") from None
            if X.ndim != 2 or X.shape[0] != len(passages):
                raise TropemlError(
                    f"got {X.shape[0] if X.ndim else 0} embeddings for {len(passages)} passages; "
                    "embed tagger.passages(work)"
                )
            if X.shape[1] != self.classifier.n_features_in_:
                raise TropemlError(
                    f"got {X.shape[1]}-d embeddings; the model expects "
                    f"{self.classifier.n_features_in_}-d"
                )
        result = self.tag_embedded(work, passages, X, source, texts)
        self._flush()
        return result

    def tag_many(
        self, works: Sequence[Work], sources: Sequence[str] | None = None
    ) -> list[WorkResult]:
        """Tag several works with one call to the encoder (fuller batches, same results).

        Args:
            works: The works.
            sources: Names to report, one per work (default: each work's own source).

        Returns:
            One result per work, in order; each equals ``self.tag(work)``.
        """
        passages = [self.passages(w) for w in works]
        texts = [self.texts(ps, w) for w, ps in zip(works, passages, strict=True)]
        if self.screen is not None:
            scores = screened_scores(self, self.screen, texts)[0]
        else:
            X, scores, at = self.embed_texts([t for ts in texts for t in ts]), [], 0
            for work, ps, ts in zip(works, passages, texts, strict=True):
                scores.append(self.score_passages(work, ps, X[at : at + len(ps)], ts))
                at += len(ps)
        out = [
            self.result(work, ps, s, sources[i] if sources else None)
            for i, (work, ps, s) in enumerate(zip(works, passages, scores, strict=True))
        ]
        self._flush()
        return out

    def score_passages(
        self,
        work: Work,
        passages: Sequence[Passage],
        X: NDArray[np.float32],
        texts: Sequence[str] | None = None,
    ) -> NDArray[np.float64]:
        """Calibrated passage scores, shape ``(n, T)`` (columns: :attr:`tags`).

        ``texts`` as for :meth:`tag_embedded`; masked here only if the model reads texts and
        none are given.
        """
        if not len(passages):
            return np.zeros((0, len(self.tags)))
        if texts is None and self.classifier.uses_texts:
            texts = self.texts(passages, work)
        return np.asarray(
            self.classifier.predict_proba(X, texts if self.classifier.uses_texts else None),
            dtype=np.float64,
        )

    def work_scores(self, scores: ArrayLike) -> NDArray[np.float64]:
        """Work-level scores from passage scores ``(n, T)``; shape ``(T,)`` (zeros if n = 0).

        With a null (see :class:`Tagger`): the calibrated probability that the work shows
        the tag, or without a calibration the chance that the evidence beats a trope-free
        work of the same length. Without a null: the mean of the ``top_k`` best passage
        scores.
        """
        s = np.asarray(scores, dtype=np.float64)
        if not len(s):
            return np.zeros(len(self.tags))
        if self.null is None:
            return pool_scores(s, self.top_k)
        if self.calibrator is not None:
            features = evidence_features(s, self.null[0], self.null[1], self.alpha)
            return self.calibrator.predict_work(features, self.tags, ending_evidence(s, *self.null))
        if self.calibration is None:
            return chance_scores(s, self.null[0], self.null[1], self.k)
        log_c = log_chance(s, self.null[0], self.null[1], self.k)
        return work_probability(log_c, self.alpha, self.calibration)

    def fired(self, scores: ArrayLike) -> NDArray[np.bool_]:
        """The tags the chance rule gives a work (:func:`~tropeml.model.decision.fires`)."""
        assert self.null is not None
        return fires(scores, self.null[0], self.null[1], self.alpha, self.k)

    def tag_embedded(
        self,
        work: Work,
        passages: Sequence[Passage],
        X: NDArray[np.float32],
        source: str | None = None,
        texts: Sequence[str] | None = None,
    ) -> WorkResult:
        """Tag a work whose passages are already embedded (``X``: shape ``(n, d)``).

        ``texts`` are the passages as the model reads them (:meth:`texts`); given, they are
        not masked again.
        """
        return self.result(work, passages, self.score_passages(work, passages, X, texts), source)

    def result(
        self,
        work: Work,
        passages: Sequence[Passage],
        scores: NDArray[np.float64],
        source: str | None = None,
    ) -> WorkResult:
        """The work's result from its passage scores, shape ``(n, T)``."""
        work_scores, cal = self.work_scores(scores), self.calibrator
        tags = tag_results(
            scores,
            work_scores,
            passages,
            self.tags,
            self.thresholds,
            self.work_thresholds,
            self.taxonomy,
            self.max_evidence,
            fired=None if cal is None else cal.decide(self.fired(scores), work_scores, self.tags),
            evidence_from=None if cal is None else cal.evidence_from(len(passages), self.tags),
        )
        return WorkResult(
            source=source or work.source,
            n_passages=len(passages),
            model=self.name,
            scores={t: float(s) for t, s in zip(self.tags, work_scores, strict=True)},
            tags=tags,
            passages=tuple((p.start, p.end, p.chapter) for p in passages),
            passage_scores=tuple(tuple(row) for row in scores.tolist()),
            passage_thresholds=tuple(float(x) for x in self.thresholds),
        )

    def tag_paths(
        self, paths: Iterable[str | Path], max_bytes: int = DEFAULT_MAX_BYTES
    ) -> Iterator[WorkResult]:
        """Tag files, directories (every ``.txt`` inside) or ``"-"`` (stdin), one by one."""
        for path in expand_paths(paths):
            yield self.tag(read_work(path, max_bytes=max_bytes), source=path)


def load(path: str | Path | None = None, **kwargs: Any) -> Tagger:
    """Load a :class:`Tagger` from a model folder (default: the shipped model).

    Keyword arguments go to :meth:`Tagger.from_pretrained` (``encoder``, ``cache``,
    ``backend``, ``trust_encoder``).
    """
    return Tagger.from_pretrained(path, **kwargs)
