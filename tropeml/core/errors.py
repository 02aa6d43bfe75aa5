"""The one exception type tropeml raises for problems a user can fix."""

from __future__ import annotations


class TropemlError(Exception):
    """A user-facing error: bad input, a corrupt model, an unknown tag.

    The message is one line and names the file (and line) where that helps. The CLI prints
    it without a traceback and exits non-zero.
    """
