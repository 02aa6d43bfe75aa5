"""The ``tropeml`` console script: the typer app with every command registered."""

from __future__ import annotations

from tropeml.cli import info, library, tagging, training, web
from tropeml.cli.common import app

__all__ = ["app", "info", "library", "main", "tagging", "training", "web"]


def main() -> None:
    """Run the CLI (the ``tropeml`` console script)."""
    app(prog_name="tropeml")


if __name__ == "__main__":  # pragma: no cover
    main()
