"""``run`` on a terminal: one compact row per recorded experiment (the demo's table), instead of log lines."""

from __future__ import annotations

from rich.console import Console

from autoresearch.cli.render import progress_line
from autoresearch.coordinator.loop import Loop
from autoresearch.journal.store import Experiment


def show_progress(loop: Loop, console: Console) -> None:
    """Say what runs, then print a row as each experiment is recorded."""
    settings = loop.settings
    limit = settings.limits.max_experiments
    console.print(f"session {loop.session.tag} on branch {loop.session.branch}: {settings.budget:g} s per run, "
                  f"runner {settings.runner}, agent {settings.agent}"
                  + ("" if limit is None else f", up to {limit} experiments") + "; Ctrl-C stops cleanly",
                  highlight=False, markup=False)

    def show(exp: Experiment) -> None:
        console.print(progress_line(exp, settings.metric), highlight=False)

    loop.on_recorded = show
