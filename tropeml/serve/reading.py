"""How a tagger reads a work: its passages and the texts the model sees, cached."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tropeml.core.types import Passage, Work
from tropeml.model.cache import CachedEncoder, EmbeddingCache, code_key, content_key, valid_spans
from tropeml.model.encoders import encoder_id
from tropeml.text.masking import masker, work_names
from tropeml.text.passages import count_words, split_passages

_FALLBACK_BUDGET = 180  # words, for encoders that cannot count their tokens


class WorkReader:
    """Splits works into passages that fit the encoder and masks names as the model was trained.

    With an embedding cache on the encoder, splits and names are cached too. (The base of
    :class:`~tropeml.serve.tagger.Tagger`.)
    """

    encoder: Any
    mask_names: bool

    def passages(self, work: Work | str) -> list[Passage]:
        """Split a work into passages that fit this tagger's encoder.

        With an embedding cache, the split is cached too (keyed by the work's text and
        regions, the encoder, its budget and the splitter's code), so a work tagged before
        is not tokenised again.
        """
        if isinstance(work, str):
            work = Work(text=work)
        counter = getattr(self.encoder, "count_tokens", None)
        budget = int(getattr(self.encoder, "max_tokens", 254)) if counter else _FALLBACK_BUDGET
        cache = self._cache()
        key = ""
        if cache is not None:
            regions = [[r.start, r.end, r.chapter] for r in work.story_regions()]
            head = json.dumps([code_key("tropeml.text.passages"), encoder_id(self.encoder), budget])
            key = content_key(head, json.dumps(regions), work.text)
            spans = cache.get_json("passages", key)
            if valid_spans(spans, len(work.text)):
                text = work.text
                return [Passage(s, e, text[s:e], c) for s, e, c in spans]
        passages = split_passages(work, counter or count_words, budget)
        if cache is not None:
            cache.put_json("passages", key, [[p.start, p.end, p.chapter] for p in passages])
        return passages

    def texts(self, passages: Sequence[Passage], work: Work | None = None) -> list[str]:
        """Return the texts the model reads: the passages, names masked if the model masks."""
        names = self._names(work) if (self.mask_names and work is not None) else {}
        mask_work = masker(names)
        return [mask_work(p.text) for p in passages]

    def _cache(self) -> EmbeddingCache | None:
        """The embedding cache, when the encoder has one (it also keeps splits and names)."""
        if isinstance(self.encoder, CachedEncoder) and isinstance(
            self.encoder.cache, EmbeddingCache
        ):
            return self.encoder.cache
        return None

    def _flush(self) -> None:
        """Write the splits and names cached for the works just tagged (one transaction)."""
        cache = self._cache()
        if cache is not None:
            cache.flush()

    def _names(self, work: Work) -> dict[str, str]:
        """The work's names and stand-ins (:func:`~tropeml.text.masking.work_names`), cached."""
        cache = self._cache()
        if cache is None:
            return work_names(work)
        spans = json.dumps([[r.start, r.end] for r in work.story_regions()])
        key = content_key(code_key("tropeml.text.masking"), spans, work.text)
        pairs = cache.get_json("names", key)
        if isinstance(pairs, list) and all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
            for p in pairs
        ):
            return dict(pairs)
        names = work_names(work)
        cache.put_json("names", key, [[k, v] for k, v in names.items()])
        return names
