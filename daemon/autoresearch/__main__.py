"""``python -m autoresearch`` is the ``autoresearch`` command."""

from autoresearch.cli import main

main()
