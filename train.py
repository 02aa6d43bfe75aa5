"""Rebuild the shipped default model, ``models/default``, from ``data/`` and ``seeds/``.

Usage: ``python train.py`` (or ``make train``). Deterministic: the same data gives the
same model. Prints the leave-one-fic-out metrics that also go into the model card.
"""

from __future__ import annotations

from pathlib import Path

from tropeml.model.training import train

ROOT = Path(__file__).resolve().parent


def main() -> None:
    """Train, evaluate and save ``models/default``."""
    result = train(
        ROOT / "data",
        root=ROOT,
        out=ROOT / "models" / "default",
        name="default",
        overwrite_default=True,
    )
    for report, what in ((result.report, "seed fics"), (result.exemplar_report, "exemplars")):
        if report is not None:
            print(f"## {report.scheme}, {what}\n\n{report.to_markdown()}\n")
    print(
        f"\n{len(result.training_set)} training rows; embedded {result.embedded} new texts, "
        f"reused {result.reused}; model written to {result.folder}"
    )


if __name__ == "__main__":
    main()
