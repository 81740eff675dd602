"""What ``status`` shows of one session: the journal's summary, plus the rows of its results.tsv, every
run the journal knows (in flight or done), and the daemon's pid. Read-only, safe while the daemon runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autoresearch.cli.control import lock_holder
from autoresearch.errors import JournalError
from autoresearch.journal.fold import Experiment
from autoresearch.journal.ledger import parse_results
from autoresearch.journal.status import summarize
from autoresearch.journal.store import Journal, JournalState
from autoresearch.sessions.catalog import SessionFiles, all_sessions


def session_fields(files: SessionFiles, state_dir: Path) -> dict[str, Any]:
    """``session`` (tag, branch, state, folder) and ``pid`` (the daemon running it, else None)."""
    pid = lock_holder(state_dir) if files.active else None
    state = "archived" if not files.active else "running" if pid is not None else "stopped"
    return {"session": {"tag": files.tag, "branch": files.branch, "state": state, "folder": str(files.folder),
                        "results": str(files.results)}, "pid": pid}


def rows(files: SessionFiles) -> list[dict[str, str]]:
    """results.tsv as the ledger wrote it, one dict per row keyed by its header (empty before the first row)."""
    try:
        text = files.results.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    try:
        return parse_results(text)
    except ValueError as exc:  # a row with a different number of cells than the header: edited by hand
        raise JournalError(f"{files.results} is not a valid results.tsv ({exc}); it is rewritten from the "
                           "journal at the next recorded experiment") from exc


def runs(state: JournalState, files: SessionFiles) -> list[dict[str, Any]]:
    """Every experiment of the journal, oldest first, with where it is and its log."""
    return [run_entry(e, files) for e in state.ordered()]


def run_entry(exp: Experiment, files: SessionFiles) -> dict[str, Any]:
    finished = exp.finished
    return {
        "n": exp.n,
        "lane": exp.lane if exp.lane is not None else 0,
        "phase": exp.phase,
        "description": exp.description,
        "commit": exp.committed.commit if exp.committed is not None else None,
        "started": exp.phase_at("running"),
        "status": exp.recorded.status if exp.recorded is not None else None,
        "metric": finished.metric if finished is not None and exp.evaluated is None else (
            exp.evaluated.metric if exp.evaluated is not None else None),
        "cause": finished.cause if finished is not None else None,
        "wall_s": finished.wall_s if finished is not None else None,
        "log": str(files.folder / "runs" / str(exp.n) / "run.log"),
    }


def session_list(repo: Path, state_dir: Path, direction: str) -> list[dict[str, Any]]:
    """One entry per session, oldest first: tag, branch, state, experiments, best, pid, folder."""
    out = []
    for files in all_sessions(repo, state_dir):
        summary = summarize(Journal(files.journal).load(), direction)
        fields = session_fields(files, state_dir)
        out.append({**fields["session"], "pid": fields["pid"], "experiments": summary["experiments"],
                    "keep": summary["keep"], "best": summary["best_mean"] if summary["best_mean"] is not None
                    else summary["best"], "stopped": summary["stopped"]})
    return out
