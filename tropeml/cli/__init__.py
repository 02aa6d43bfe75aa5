"""The ``tropeml`` command: a thin typer app over :mod:`tropeml.serve` and :mod:`tropeml.model`."""

from tropeml.cli.app import app, main

__all__ = ["app", "main"]
