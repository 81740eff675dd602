"""``python -m autoresearch`` is the ``autoresearch`` command."""

from autoresearch.cli.app import main

main()
