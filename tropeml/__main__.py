"""``python -m tropeml``."""

from tropeml.cli.app import main

main()
