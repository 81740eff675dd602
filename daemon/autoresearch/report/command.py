"""``autoresearch report``: write progress.png and report.md (and analysis.ipynb), once or on every
new recorded experiment. Importing this module is cheap: matplotlib loads only when a chart is drawn.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from autoresearch.errors import ConfigError, RepoError
from autoresearch.journal.ledger import RESULTS_FILE, write_atomic
from autoresearch.report.data import JOURNAL_FILE, Direction, Ledger, load_ledger, open_workspace, state_dir
from autoresearch.report.notebook import NOTEBOOK_FILE, write_notebook

if TYPE_CHECKING:
    from autoresearch.report.plot import PlotStats
    from autoresearch.sessions.catalog import SessionFiles

PNG_FILE = "progress.png"
MARKDOWN_FILE = "report.md"
REPORT_DIR = "report"  # under .git/autoresearch: never in the work tree, so never a tracked file


@dataclass(frozen=True)
class Rendered:
    """One pass: the files written, what the chart drew, and the ledger it drew from."""

    paths: list[Path]
    stats: PlotStats
    ledger: Ledger


def render(
    repo: Path, out_dir: Path, metric: str, direction: Direction, notebook: bool = False, dpi: int = 150
) -> Rendered:
    """Read the ledger and write the report files into ``out_dir``."""
    return _render(repo, out_dir, load_ledger(repo, metric, direction), notebook, dpi)


def _render(repo: Path, out_dir: Path, ledger: Ledger, notebook: bool, dpi: int) -> Rendered:
    from autoresearch.report import plot, summary

    out_dir.mkdir(parents=True, exist_ok=True)
    png, md = out_dir / PNG_FILE, out_dir / MARKDOWN_FILE
    paths = [png, md, out_dir / NOTEBOOK_FILE] if notebook else [png, md]
    exclude_from_git(repo, paths)  # first, so not even a half-done pass shows in git status
    stats = plot.draw(ledger, png, dpi=dpi)
    write_atomic(md, summary.render(ledger, image=PNG_FILE))
    md.chmod(0o644)  # write_atomic's temp file is 0600; a report is for reading
    if notebook:
        write_notebook(repo, out_dir, ledger.metric, ledger.direction)
    return Rendered(paths=paths, stats=stats, ledger=ledger)


def exclude_from_git(repo: Path, paths: list[Path]) -> list[str]:
    """Add each path inside ``repo`` to ``.git/info/exclude`` (once), so reports never dirty the tree
    (the loop refuses to start on a dirty one). Returns the patterns added."""
    ws = open_workspace(repo)
    if ws is None:
        return []  # not a git repo (e.g. a copied results.tsv): nothing to keep clean
    added: list[str] = []
    git_dir = ws.state_dir().parent.resolve()
    for path in paths:
        try:
            rel = path.resolve().relative_to(repo.resolve())
        except ValueError:
            continue  # written outside the repo
        if path.resolve().is_relative_to(git_dir):
            continue  # inside .git (the default folder): git never shows it
        pattern = "/" + rel.as_posix()
        if ws.exclude(pattern):
            added.append(pattern)
    return added


def _signature(repo: Path) -> tuple[tuple[int, int] | None, ...]:
    """Size and mtime of the files a new experiment changes: cheap to poll, no parsing."""
    out: list[tuple[int, int] | None] = []
    for path in (state_dir(repo) / JOURNAL_FILE, repo / RESULTS_FILE):
        try:
            st = path.stat()
        except OSError:
            out.append(None)
            continue
        out.append((st.st_size, st.st_mtime_ns))
    return tuple(out)


def _recorded_key(ledger: Ledger) -> tuple[tuple[int, str, float | None], ...]:
    return tuple((r.n, r.status, r.metric) for r in ledger.runs)


def watch_report(
    repo: Path,
    out_dir: Path,
    metric: str,
    direction: Direction,
    notebook: bool = False,
    interval_s: float = 5.0,
    *,
    stop: threading.Event | None = None,
    max_cycles: int | None = None,
    on_render: Callable[[Rendered], None] | None = None,
    dpi: int = 150,
) -> Rendered:
    """Render now, then poll every ``interval_s`` and render again whenever the recorded experiments
    change (not on every phase of a run). Ends when ``stop`` is set or after ``max_cycles`` polls;
    Ctrl-C is left to the caller."""
    stop = stop or threading.Event()
    seen = _signature(repo)
    ledger = load_ledger(repo, metric, direction)
    last = _render(repo, out_dir, ledger, notebook, dpi)
    if on_render is not None:
        on_render(last)
    cycles = 0
    while (max_cycles is None or cycles < max_cycles) and not stop.wait(interval_s):
        cycles += 1
        current = _signature(repo)
        if current == seen:
            continue
        seen = current
        ledger = load_ledger(repo, metric, direction)
        if _recorded_key(ledger) == _recorded_key(last.ledger):
            continue
        last = _render(repo, out_dir, ledger, notebook, dpi)
        if on_render is not None:
            on_render(last)
    return last


def report_command(
    repo: Path,
    out_dir: Path | None,
    watch: bool,
    notebook: bool,
    interval_s: float = 5.0,
    *,
    on_render: Callable[[Rendered], None] | None = None,
    stop: threading.Event | None = None,
    max_cycles: int | None = None,
    tag: str | None = None,
) -> list[Path]:
    """The CLI entry: the files go to ``.git/autoresearch/report/`` unless ``out_dir`` says otherwise.
    With ``watch`` it blocks until Ctrl-C (or ``stop``/``max_cycles``, for tests) and returns the paths.
    ``tag`` names a session (an archived one's report goes into its archive folder)."""
    from autoresearch.sessions.settings import settings_of_repo

    repo = repo.resolve()
    settings = settings_of_repo(repo)
    if tag is not None:
        archived = _archived_session(repo, tag)
        if archived is not None:
            if watch or notebook:
                raise ConfigError(f"session {tag!r} is archived: it does not change (no --watch), and the notebook "
                                  "reads the active session (no --notebook)")
            out = (out_dir or archived.report_dir).resolve()
            check_out_dir(repo, out, notebook)
            ledger = load_ledger(repo, settings.metric, settings.direction, folder=archived.folder)
            rendered = _render(repo, out, ledger, notebook, 150)
            if on_render is not None:
                on_render(rendered)
            return rendered.paths
    if not (state_dir(repo) / JOURNAL_FILE).exists() and not (repo / RESULTS_FILE).exists():
        raise RepoError(f"{repo} has no autoresearch session (no journal, no {RESULTS_FILE}); nothing to report. "
                        f"Start one with `autoresearch init {repo}` and `autoresearch run {repo}`")
    out = (out_dir or state_dir(repo) / REPORT_DIR).resolve()
    check_out_dir(repo, out, notebook)
    if not watch:
        rendered = render(repo, out, settings.metric, settings.direction, notebook)
        if on_render is not None:
            on_render(rendered)
        return rendered.paths
    args = (repo, out, settings.metric, settings.direction, notebook, interval_s)
    try:
        return watch_report(*args, stop=stop, max_cycles=max_cycles, on_render=on_render).paths
    except KeyboardInterrupt:
        return output_paths(out, notebook)


def output_paths(out_dir: Path, notebook: bool) -> list[Path]:
    return [out_dir / PNG_FILE, out_dir / MARKDOWN_FILE] + ([out_dir / NOTEBOOK_FILE] if notebook else [])


def check_out_dir(repo: Path, out_dir: Path, notebook: bool) -> None:
    """Refuse (exit 2, nothing written) a folder that is a file, or where a report file would overwrite
    a file git tracks (e.g. the progress.png that karpathy/autoresearch commits): the tree would be
    dirty, and the loop refuses to start on a dirty tree."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"-o {out_dir} is a file; give a folder for the report")
    ws = open_workspace(repo)
    tracked = [] if ws is None else ws.tracked(output_paths(out_dir, notebook))
    if tracked:
        raise ConfigError(f"-o {out_dir} would overwrite {', '.join(tracked)}, tracked by git; give another folder "
                          f"(the default is {state_dir(repo) / REPORT_DIR})")


def _archived_session(repo: Path, tag: str) -> SessionFiles | None:
    """The archived session ``tag``; None when it is the active one (RepoError when there is none)."""
    from autoresearch.sessions.catalog import find

    files = find(repo, state_dir(repo), tag)
    return None if files.active else files
