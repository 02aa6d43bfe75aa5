"""What a trained model says about itself: its ``config.json`` fields and its model card."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from tropeml.core.taxonomy import Taxonomy
from tropeml.io.sources import LabelledWork, Sources
from tropeml.model.classifier import TropeClassifier
from tropeml.model.dataset import ANSWER, EXEMPLAR, JUDGED, SEED, WORK, TrainingSet
from tropeml.model.encoders import encoder_id
from tropeml.model.evaluation import EvalReport, nan_to_none
from tropeml.model.mil import WorkCheck
from tropeml.model.weights import encoder_files, encoder_folder


def model_config(
    name: str,
    clf: TropeClassifier,
    ts: TrainingSet,
    encoder: Any,
    top_k: int,
    report: EvalReport | None,
    exemplar_report: EvalReport | None = None,
    rollup: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the model's ``config.json`` fields (before the folder's hashes are added by saving).

    ``encoder.files`` records the SHA-256 of every file of the encoder's local folder (none
    for encoders without files, such as ``hashing-<d>``); loading the model verifies them.
    """
    folder = encoder_folder(encoder)
    files = {"files": encoder_files(folder)} if folder is not None else {}
    evaluation = {
        protocol: {"scheme": r.scheme, "macro": nan_to_none(r.macro())}
        for protocol, r in (("works", report), ("exemplars", exemplar_report))
        if r is not None
    }
    return {
        "name": name,
        "tags": ts.tags,
        "thresholds": {
            t: round(float(x), 6) for t, x in zip(ts.tags, clf.thresholds_, strict=True)
        },
        "encoder": {
            "name": str(getattr(encoder, "name", encoder_id(encoder))),
            "version": str(getattr(encoder, "version", "")),
            "id": encoder_id(encoder),
            "dimension": int(clf.n_features_in_),
            "max_tokens": int(getattr(encoder, "max_tokens", 254)),
            **files,  # the SHA-256 of every file of its weights' folder, checked on load
        },
        "rollup": rollup
        or {"method": "mean of top-k passage scores", "top_k": top_k, "max_evidence": 3},
        "mask_names": True,
        "training_data": {
            "sha256": ts.data_hash,
            "files": ts.files,
            "n_rows": len(ts),
            "n_seed_passages": ts.kinds.count(SEED),
            "n_exemplars": ts.kinds.count(EXEMPLAR),
            "n_judged_passages": ts.kinds.count(JUDGED),
            "positives": ts.counts(),
        },
        "evaluation": evaluation,
    }


def model_card(
    name: str,
    taxonomy: Taxonomy,
    ts: TrainingSet,
    clf: TropeClassifier,
    report: EvalReport | None,
    config: dict[str, Any],
    exemplar_report: EvalReport | None = None,
) -> str:
    """Return the model card (Markdown): tags, training counts, cross-validated metrics."""
    sections = []
    if report is not None:
        sections.append(
            f"""## Evaluation ({report.scheme}, passage level, seed fics)

Each seed fic is held out in turn; the model is trained on the other fics (and all
exemplars, which are never test data) and scored on the held-out fic's passages.
**Informed, not blind:** the taxonomy's definitions and scenes (version 1) were written after
reading the seed fics, so the prototype view knows them. The real-prose dev set
(`tropeml eval --protocol dev`) is the blind test.
Where a tag has fewer than 3 positive passages in the test folds, no number is given.
With three seed fics these numbers are indicative at best.

{report.to_markdown()}
"""
        )
    if exemplar_report is not None:
        sections.append(
            f"""## Evaluation ({exemplar_report.scheme}, passage level, hand-written exemplars)

The exemplars (original passages in many voices, fandoms and settings, with hard
negatives) are split into folds; each fold is scored by a model trained on the seed fics
and the other folds. This measures how the tags carry over to other styles, but the
exemplars were written for this project, so expect real fics to score lower.

{exemplar_report.to_markdown()}
"""
        )
    evaluation = "\n".join(sections) or "No labelled data to cross-validate on.\n"
    seed, ex = ts.counts(SEED), ts.counts(EXEMPLAR)
    enc = config["encoder"]
    rows = "\n".join(
        f"| `{t}` | {taxonomy[t].name} | {seed[t]} | {ex[t]} | "
        f"{int(clf.n_negatives_[j])} | {clf.thresholds_[j]:.3f} |"
        for j, t in enumerate(ts.tags)
    )
    return f"""# tropeml model: {name}

Tags fan-fiction passages with tropes and rolls them up to work-level tags with evidence.

- Encoder: `{enc["name"]}` ({enc["version"]}), {enc["dimension"]}-d, {enc["max_tokens"]} tokens
  per passage (plus special tokens).
- Names: character and place names are replaced by neutral stand-ins before embedding.
- Head (`tropeml.TropeClassifier`, saved with skops, loaded with an allow-list of types):
  per tag, three views standardised and summed with weights learned per tag: {_embedding_view(clf)}
  on the passage embedding, a balanced logistic regression on TF-IDF words of the masked
  passage text, and the passage's similarity to the tag's prototype (embedded definition and
  scene sketches), centred across tags. Tags without labels are predicted zero-shot from the
  prototype.
- Standardisation, view weights, calibration and thresholds: per tag, from out-of-fold
  scores with folds grouped by work (a stacker on the views, Platt scaling, then the
  F1-maximising threshold).
- Work score: {_work_score_line(config["rollup"])}; prominence is the share of the work's
  text in passages over the tag's passage threshold.
- Training data: {ts.kinds.count(SEED)} labelled passages of
  {len({g for g, k in zip(ts.groups, ts.kinds, strict=True) if k == SEED})} seed fics and
  {ts.kinds.count(EXEMPLAR)} exemplar passages (written for the project, or public-domain
  with provenance){_judged_line(ts)}; data hash `{ts.data_hash[:16]}`.

## Tags and training counts

| id | tag | positive seed passages | positive exemplars | negatives | threshold |
|---|---|---:|---:|---:|---:|
{rows}

{evaluation}
## Limits

The cross-validation above measures the training data, not unseen prose: the seed fics are
of one fandom{" and most exemplars were written for the project" if ex else ""}. Before
trusting a tag, measure the model on whole works it never saw, judged by reading
(`tropeml eval --protocol dev`, `--protocol confirm`). Tags present in one seed fic only
cannot be evaluated fairly by holding that fic out.
"""


def _embedding_view(clf: TropeClassifier) -> str:
    """How the card names the head's embedding view (its ``kernel``)."""
    if clf.kernel == "rbf":
        return "a balanced RBF support-vector machine"
    return "a balanced logistic regression"


def _by_value(per_tag: dict[str, float]) -> dict[float, str]:
    """Per-tag values grouped: each value with its tags, comma-separated."""
    by_value: dict[float, list[str]] = {}
    for tag, value in per_tag.items():
        by_value.setdefault(value, []).append(tag)
    return {v: ", ".join(tags) for v, tags in by_value.items()}


def _floors_clause(floors: dict[str, float]) -> str:
    """`` (at least P for tag, ...)`` for per-tag floors; empty without any."""
    parts = [f"at least {v:g} for {tags}" for v, tags in _by_value(floors).items()]
    return f" ({'; '.join(parts)})" if parts else ""


def _sure_clause(sure: dict[str, float]) -> str:
    """The clause on tags shown without the chance rule at a high score; empty without any."""
    parts = [f"{tags} from a score of {v:g}" for v, tags in _by_value(sure).items()]
    return f", or, chance rule or not, {'; '.join(parts)}" if parts else ""


def _cross_clause(cross: dict[str, Any]) -> str:
    """The sentence on cross tags (scored from other tags' scores); empty without any."""
    parts = [
        f"{tag}: scored by a logistic regression on "
        + (
            f"the best passage scores of {', '.join(c['weights'])} in the work's last tenth"
            if c.get("reads") == "ending"
            else "the scores of the work's tags"
        )
        for tag, c in cross.items()
    ]
    if not parts:
        return ""
    return f". {'; '.join(parts)}; shown when that score reaches the floor, without the chance rule"


def refresh_work_score(card: str, rollup: dict[str, Any]) -> str:
    """``card`` with its work-score bullet rewritten for ``rollup`` (after ``tropeml tune``)."""
    return re.sub(
        r"^- Work score: .*; prominence is the share of the work's$",
        lambda _: (
            f"- Work score: {_work_score_line(rollup)}; prominence is the share of the work's"
        ),
        card,
        count=1,
        flags=re.MULTILINE,
    )


def _judged_line(ts: TrainingSet) -> str:
    """The card's words for the judged whole works' passages (empty when there are none)."""
    n = ts.kinds.count(JUDGED)
    books = {g for g, k in zip(ts.groups, ts.kinds, strict=True) if k == JUDGED}
    return (
        f", and {n} passages of whole works from {len(books)} books judged per tag "
        "(negatives for the tags each work does not show)"
        if n
        else ""
    )


def _work_score_line(rollup: dict[str, Any]) -> str:
    """One sentence on how passage scores become a work's score and tags."""
    if rollup.get("method") != "chance":
        return f"mean of the {rollup['top_k']} best passage scores, against the passage threshold"
    null = rollup["null"]
    alphas = sorted(set(rollup["alpha"].values()))
    rank = "best passage" if rollup["k"] == 1 else "second-best passage"
    line = (
        f"the chance that the work's {rank} beats a trope-free work of the same length "
        f"(null: passage logits on {null['passages']} passages of {len(null['files'])} "
        f"public-domain background texts); a tag fires at 1 - alpha, alpha "
        f"{' / '.join(f'{a:g}' for a in alphas)}"
    )
    if rollup.get("calibrator") is not None:
        return (
            f"{line}. The score reported is a probability that the work shows the tag, from a "
            "logistic regression on its evidence (how far its four best passages beat chance, "
            "how many passages show the trope, the work's length, and the tag) fitted on "
            "judged whole works (`tropeml.model.workcal`); a tag is shown when the chance "
            "rule gives it"
            + (
                f" and its score is at least {floor:g}"
                if (floor := float(rollup["calibrator"].get("floor", 0.0)))
                else ", so it can be shown with a low score: evidence beyond chance of a kind "
                "that often misleads"
            )
            + _floors_clause(rollup["calibrator"].get("floors") or {})
            + _sure_clause(rollup["calibrator"].get("sure") or {})
            + _cross_clause(rollup["calibrator"].get("cross") or {})
        )
    cal = rollup.get("calibration")
    if cal is None:
        return line
    a, b = float(cal["intercept"]), float(cal["slope"])
    return (
        f"{line}. The score reported is a probability that the work shows the tag: "
        f"1 / (1 + exp(-({a:g} + {b:g} d))), d = log10(alpha / chance), chosen on the dev "
        f"works (`benchmarks/calibration.py`), so a tag is shown from {1 / (1 + math.exp(-a)):.2f}"
    )


def added_summary(
    sources: Sources,
    works: list[LabelledWork],
    n_answers: int,
    ts: TrainingSet,
    checks: list[WorkCheck],
) -> dict[str, Any]:
    """Return ``training_data.added``: the works, answers and files added to ``data/``."""
    per_tag: dict[str, int] = {}
    for lw in works:
        for t in lw.tags:
            per_tag[t] = per_tag.get(t, 0) + 1
    return {
        "works": [lw.work.source for lw in works],
        "n_works": len(works),
        "works_without_author_tags": sources.untagged,
        "works_per_tag": per_tag,
        "unmapped_author_tags": sorted({t for lw in works for t in lw.unmapped}),
        "answer_files": [str(p) for p in sources.answer_files],
        "n_answers": n_answers,
        "span_label_files": [str(p) for p in sources.span_files],
        "positive_rows": {kind: ts.counts(kind) for kind in (SEED, ANSWER, WORK)},
        "held_out_works": [
            {"work": c.work, "tags": c.tags, "predicted": c.predicted} for c in checks
        ],
    }


def added_card(
    sources: Sources,
    works: list[LabelledWork],
    n_answers: int,
    ts: TrainingSet,
    checks: list[WorkCheck],
) -> str:
    """Return the model card's "Added data" sections (empty when nothing was added)."""
    if not works and not n_answers and not sources.span_files:
        return ""
    per_work: dict[str, int] = {}
    for lw in works:
        for t in lw.tags:
            per_work[t] = per_work.get(t, 0) + 1
    answers, work_pos = ts.counts(ANSWER), ts.counts(WORK)
    answer_neg = {
        t: int((ts.Y[[k == ANSWER for k in ts.kinds], j] == 0).sum()) for j, t in enumerate(ts.tags)
    }
    rows = "\n".join(
        f"| `{t}` | {per_work.get(t, 0)} | {work_pos[t]} | {answers[t]} | {answer_neg[t]} |"
        for t in ts.tags
    )
    unmapped = sorted({t for lw in works for t in lw.unmapped})
    lines = [
        "\n## Added data\n",
        f"- {len(works)} works with author tags (multiple-instance: for each author tag,",
        "  the work's best-scoring passage is a positive; untagged tropes are unknown).",
        f"- {len(sources.untagged)} works without author tags that map to the taxonomy (unused).",
        f"- {n_answers} yes/no answers from {len(sources.answer_files)} answers file(s).",
        f"- {len(sources.span_files)} extra span-label file(s).",
        f"- Author tags not in the taxonomy: {', '.join(unmapped) if unmapped else 'none'}.",
        "",
        "| id | works tagged by their author | positive work passages | yes answers | no answers |",
        "|---|---:|---:|---:|---:|",
        rows,
    ]
    if checks:
        found = sum(len(c.recovered) for c in checks)
        total = sum(len(c.tags) for c in checks)
        lines += [
            "\n## Author-tagged works, held out one at a time\n",
            "Each work is left out of training and tagged; its author's tags are compared",
            "with the model's (tags the author did not write are not counted as errors).",
            f"Author tags recovered: {found} of {total}.\n",
            "| work | author tags | recovered | model's other tags |",
            "|---|---|---|---|",
        ]
        for c in checks:
            others = [t for t in c.predicted if t not in c.tags]
            lines.append(
                f"| {Path(c.work).name} | {', '.join(c.tags)} | "
                f"{', '.join(c.recovered) or '-'} | {', '.join(others) or '-'} |"
            )
    return "\n".join(lines) + "\n"
