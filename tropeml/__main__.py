"""``python -m tropeml``."""

from tropeml.cli import main

main()
