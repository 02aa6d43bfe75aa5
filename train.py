"""Rebuild the shipped default model, ``models/default``, from ``data/`` and ``seeds/``.

Usage: ``python train.py`` (or ``make train``). Deterministic: the same data gives the
same model. Prints the leave-one-fic-out metrics that also go into the model card, then
evaluates the saved model as ``tropeml tag`` serves it on the real-prose dev set
(``data/dev``) and adds that table to the model card (``--card-only``: just that step, for
the model already saved).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tropeml.core.fileio import atomic_write_text
from tropeml.io.devset import load_dev_passages, load_dev_works
from tropeml.model.persistence import CARD_FILE
from tropeml.model.training import train
from tropeml.serve.deveval import dev_report
from tropeml.serve.tagger import Tagger, load

ROOT = Path(__file__).resolve().parent


DEV_HEADING = "## Evaluation on the real-prose dev set"
CONFIRM_HEADING = "## On fresh works"
SEEDS_HEADING = "## The seeds as served"


def seeds_section(tagger: Tagger) -> str:
    """The card section listing the tags ``tropeml tag`` gives each seed fic (default backend).

    The integration tests tag the seeds with the served model and compare with this table.
    """
    from tropeml.io.readers import read_work
    from tropeml.model.encoders import encoder_id

    rows = []
    for path in sorted((ROOT / "seeds").glob("*.txt")):
        result = tagger.tag(read_work(path), source=str(path))
        rows.append(f"| `{path.name}` | {', '.join(sorted(t.id for t in result.tags))} |")
    return (
        f"\n{SEEDS_HEADING}\n\n"
        f"Served with encoder `{encoder_id(tagger.encoder)}` (the default backend: the vectors "
        "the head was calibrated on). Tags per seed fic, spoilers included:\n\n"
        "| seed | tags |\n|---|---|\n" + "\n".join(rows) + "\n"
    )


PEERS_HEADING = "## Against its peers"
QUALITY = ROOT / "benchmarks" / "results" / "quality.md"


def peers_section(quality: Path = QUALITY) -> str:
    """The card section with the peers' table from ``benchmarks/results/quality.md``.

    Its passage table (header and core mean AP row) and the first work-level summary (the
    chance rule, all works), copied as the benchmark wrote them; empty if there is none.
    """
    if not quality.is_file():
        return ""
    lines = quality.read_text(encoding="utf-8").splitlines()
    first = next((i for i, x in enumerate(lines) if x.startswith("| tag | pos / neg |")), None)
    core = next((x for x in lines if x.startswith("| **core mean AP**")), None)
    start = next((i for i, x in enumerate(lines) if x.startswith("**all** (")), None)
    if first is None or core is None or start is None:
        return ""
    end = next((i for i in range(start + 2, len(lines)) if not lines[i].strip()), len(lines))
    return (
        f"\n{PEERS_HEADING}\n\n"
        "From `benchmarks/results/quality.md` (`make bench`): every contender trained on the "
        "same rows and calibrated the same way, on the real-prose dev set. Core passage AP "
        "[95% CI over books]:\n\n"
        + "\n".join([lines[first], lines[first + 1], core])
        + "\n\nWork level, the shipped chance rule for every contender (under the shipped "
        "alphas, chosen for tropeml), all dev works:\n\n" + "\n".join(lines[start + 2 : end]) + "\n"
    )


def confirm_section(tagger: Tagger) -> str:
    """The card section with the model's decisions on the fresh works of ``data/confirm``.

    The work tables of ``tropeml eval --protocol confirm``: public-domain and written works
    apart, then all; empty if the folder has no works.
    """
    confirm = ROOT / "data" / "confirm"
    if not (confirm / "works").is_dir():
        return ""
    report, _, _ = dev_report(tagger, [], load_dev_works(confirm), "auto")
    return (
        f"\n{CONFIRM_HEADING}\n\n"
        "The same, on the fresh stories of `data/confirm/` (`tropeml eval --protocol "
        "confirm`; `data/confirm/README.md`): read and judged, never used to choose an "
        "alpha. Some of the model's later choices (the work calibrator, some floors, the sure "
        "scores) were made on the earlier rounds, so these rates are in-sample there. The "
        "written works were written to show a tag or its look-alike plainly: the "
        "public-domain table is the fairer test.\n\n" + report.to_markdown()
    )


def add_dev_card(folder: Path) -> None:
    """Evaluate the model in ``folder`` on ``data/dev`` and put the tables in its card."""
    tagger = load(folder)
    dev = ROOT / "data" / "dev"
    report, _, _ = dev_report(tagger, load_dev_passages(dev), load_dev_works(dev), "auto")
    card_path = folder / CARD_FILE
    card = card_path.read_text(encoding="utf-8").split(DEV_HEADING)[0].rstrip() + "\n"
    card = card.split(SEEDS_HEADING)[0].split(PEERS_HEADING)[0].rstrip() + "\n"
    section = (
        f"\n{DEV_HEADING}\n\n"
        "The model as `tropeml tag` serves it (default backend), on books and works used for "
        "no training (`tropeml eval --protocol dev`; `data/dev/README.md`). The per-tag "
        "alphas of the work rule were chosen on these works, so the work-level rates are "
        "optimistic.\n\n" + report.to_markdown()
    )
    section += confirm_section(tagger) + peers_section() + seeds_section(tagger)
    atomic_write_text(card_path, card + section)
    print(section)


def main() -> None:
    """Train, evaluate and save ``models/default``; add its dev-set evaluation to the card."""
    if "--card-only" in sys.argv[1:]:
        add_dev_card(ROOT / "models" / "default")
        return
    result = train(
        ROOT / "data",
        root=ROOT,
        out=ROOT / "models" / "default",
        name="default",
        overwrite_default=True,
        screen=True,
    )
    for report, what in ((result.report, "seed fics"), (result.exemplar_report, "exemplars")):
        if report is not None:
            print(f"## {report.scheme}, {what}\n\n{report.to_markdown()}\n")
    print(
        f"\n{len(result.training_set)} training rows; embedded {result.embedded} new texts, "
        f"reused {result.reused}; model written to {result.folder}"
    )
    add_dev_card(ROOT / "models" / "default")


if __name__ == "__main__":
    main()
