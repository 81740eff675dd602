"""The ``autoresearch`` command line: example, init, run, status, stop, logs, sessions, demo, report."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import structlog
import typer
from rich.console import Console

from autoresearch.errors import AutoresearchError, ConfigError
from autoresearch.ops import logs

app = typer.Typer(add_completion=False, no_args_is_help=True, help="A daemon that does ML research overnight.")
out = Console()
err = Console(stderr=True)

RepoArg = Annotated[Path, typer.Argument(help="The research repo (a git repository).")]
TagOpt = Annotated[str | None, typer.Option(help="The session's tag (default: the active session).")]
# Choices are checked by the CLI itself, so a typo is refused with the flag's name (exit 2).
Direction = Literal["min", "max"]
RunnerName = Literal["process", "docker", "slurm"]
AgentName = Literal["offline", "anthropic", "command"]
LogLevel = Literal["debug", "info", "warning", "error"]


def _print_version(value: bool) -> None:
    if value:
        out.print(f"autoresearch {_version()}", highlight=False)
        raise typer.Exit()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("autoresearch")
    except PackageNotFoundError:  # run from a source tree without an install
        from autoresearch import __version__

        return __version__


@app.callback()
def _root(
    show_version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                               help="Print the version and exit.")] = False,
) -> None:
    """A daemon that does ML research overnight."""


def main() -> None:
    """Console-script entry: run the app, turning our errors into a message and an exit code."""
    try:
        app()
    except AutoresearchError as exc:
        structlog.get_logger("autoresearch").error("fatal", error=str(exc), kind=type(exc).__name__)
        err.print("error:", style="bold red", end=" ")
        err.print(str(exc), markup=False, highlight=False, soft_wrap=True)  # messages hold [brackets]
        sys.exit(exc.exit_code)


@app.command()
def example(dest: Annotated[Path, typer.Argument(help="Folder to create.")]) -> None:
    """Write the bundled example research repo (a fresh git repo with one commit)."""
    from autoresearch.cli.example import write_example

    write_example(dest)
    out.print(f"example research repo written to {dest}; next: autoresearch init {dest}")


@app.command()
def init(
    repo: RepoArg,
    tag: Annotated[str | None, typer.Option(help="Session tag: branch autoresearch/<tag>. Default: today.")] = None,
    target: Annotated[str | None, typer.Option(help="The one file the agent edits.")] = None,
    readonly: Annotated[list[str] | None, typer.Option(help="A file runs must not change (repeatable).")] = None,
    prepare: Annotated[str | None, typer.Option(help="One-time data preparation command.")] = None,
    setup: Annotated[str | None, typer.Option(help="Builds the repo's own environment, e.g. 'uv sync'.")] = None,
    run: Annotated[str | None, typer.Option("--run", help="The training command.")] = None,
    metric: Annotated[str | None, typer.Option(help="Metric name printed as '<metric>: <value>'.")] = None,
    direction: Annotated[Direction | None, typer.Option(help="Which way is better.")] = None,
    budget: Annotated[float | None, typer.Option(help="Training time budget in seconds.")] = None,
    runner: Annotated[RunnerName | None, typer.Option(help="Where prepare and later runs execute.")] = None,
) -> None:
    """Validate the repo and config, run prepare, create the branch and results.tsv."""
    from autoresearch.cli.commands import init_repo

    logs.configure()
    flags = {"target": target, "readonly": readonly, "prepare": prepare, "run": run, "metric": metric,
             "direction": direction, "budget": budget, "runner": runner, "setup": setup}
    session = init_repo(repo, tag, flags, say=lambda line: out.print(line, markup=False, highlight=False))
    out.print(f"initialised {session.repo} on branch {session.branch}; next: autoresearch run {repo}")


@app.command("run")
def run_cmd(
    repo: RepoArg,
    max_experiments: Annotated[int | None, typer.Option(
        help="Stop after this many changes were judged (results.tsv rows, baseline included).")] = None,
    max_runs: Annotated[int | None, typer.Option(
        min=1, help="Stop after this many training runs (the judge's re-measurements included).")] = None,
    budget: Annotated[float | None, typer.Option(help="Override the training budget (s).")] = None,
    grace: Annotated[float | None, typer.Option(help="Seconds past the budget before a run is killed.")] = None,
    agent: Annotated[AgentName | None, typer.Option(help="Who proposes the changes.")] = None,
    runner: Annotated[RunnerName | None, typer.Option(help="Where the runs execute.")] = None,
    log_level: Annotated[LogLevel | None, typer.Option(
        help="The least severe log level shown (default: info; warning on a terminal, which shows a table)."
    )] = None,
    tag: TagOpt = None,
) -> None:
    """Run the experiment loop until a limit is reached or a signal arrives (resumes where it stopped)."""
    from autoresearch.cli.commands import build_loop, select_session
    from autoresearch.cli.progress import show_progress

    table = sys.stdout.isatty()  # a person watching: one row per experiment; else JSON logs only
    logs.configure(level=log_level or ("warning" if table else "info"))
    if tag is not None:
        select_session(repo, tag, say=lambda line: err.print(line, highlight=False, markup=False))
    overrides: dict[str, Any] = {"budget": budget, "grace": grace, "agent": agent, "runner": runner}
    caps = {k: v for k, v in (("max_experiments", max_experiments), ("max_runs", max_runs)) if v is not None}
    if caps:
        overrides["limits"] = caps
    loop = build_loop(repo, overrides)
    from autoresearch.web.server import serve_beside

    serve_beside(repo, loop.settings)  # [http] listen: the dashboard in a thread, until the process exits
    _stop_on_signals(loop.stop_event)
    if table:
        show_progress(loop, out)
    result = loop.run()
    if table:
        from autoresearch.cli.commands import read_status
        from autoresearch.cli.render import status_table

        out.print(status_table(read_status(repo)))
    raise typer.Exit(result.exit_code)


@app.command()
def status(
    repo: RepoArg,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output (errors too, as JSON).")] = False,
    tag: TagOpt = None,
    watch: Annotated[bool, typer.Option(help="Redraw every --interval seconds until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between redraws with --watch.")] = 2.0,
    runs: Annotated[bool, typer.Option("--runs", help="Also list every run, the judge's re-measurements included.")]
    = False,
) -> None:
    """Show the session's progress, rows, runs and daemon PID (reads the journal; safe while the daemon runs)."""
    from autoresearch.cli.commands import read_runs, read_status
    from autoresearch.cli.render import runs_table, status_table

    logs.configure(stream=sys.stderr)  # stdout holds the status alone (JSON with --json)
    if as_json:
        if watch:
            _json_error(ConfigError("--watch and --json do not go together; poll `status --json` instead"))
        try:
            summary = read_status(repo, tag)
            if runs:
                summary["run_list"] = read_runs(repo, tag)
        except Exception as exc:  # any failure: still one JSON object on stdout
            _json_error(exc)
        out.print_json(json.dumps(summary))
        return
    if watch:
        from autoresearch.cli.watch import watch as watch_loop

        stop = threading.Event()
        try:
            watch_loop(lambda: read_status(repo, tag), out, interval, stop)
        except KeyboardInterrupt:
            stop.set()
        return
    summary = read_status(repo, tag)
    out.print(status_table(summary))
    if runs:
        out.print(runs_table(read_runs(repo, tag), summary["metric"]))


def _json_error(exc: BaseException) -> NoReturn:
    """``{"error": ..., "kind": ..., "exit_code": N}`` on stdout, and that exit code."""
    code = exc.exit_code if isinstance(exc, AutoresearchError) else 1
    out.print_json(json.dumps({"error": str(exc), "kind": type(exc).__name__, "exit_code": code}))
    raise typer.Exit(code)


@app.command()
def stop(
    repo: RepoArg,
    timeout: Annotated[float, typer.Option(min=0, help="Seconds to wait for the daemon to stop.")] = 120.0,
) -> None:
    """Stop the daemon running on REPO: SIGTERM, then wait while it records the running experiment."""
    from autoresearch.cli.control import stop_daemon
    from autoresearch.git.workspace import GitWorkspace

    logs.configure(stream=sys.stderr)  # stdout holds the answer alone
    ws = GitWorkspace.open(repo)
    pid = stop_daemon(ws.state_dir(), timeout, say=lambda line: out.print(line, highlight=False))
    if pid is None:
        out.print(f"no autoresearch daemon runs on {ws.root}; nothing to stop", highlight=False)
    else:
        out.print(f"stopped pid {pid}", highlight=False)


@app.command("logs")
def logs_cmd(
    repo: RepoArg,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new records until Ctrl-C.")] = False,
    lines: Annotated[int | None, typer.Option("-n", "--lines", min=0, help="Only the last N records.")] = None,
    tag: TagOpt = None,
) -> None:
    """The session's journal, one readable line per record: phases and results of every run, waits, stops."""
    from autoresearch.cli import journal_view
    from autoresearch.git.workspace import GitWorkspace
    from autoresearch.sessions import catalog as sessions

    logs.configure(stream=sys.stderr)  # stdout holds the answer alone
    ws = GitWorkspace.open(repo)
    files = sessions.find(ws.root, ws.state_dir(), tag)
    def emit(line: str) -> None:
        out.print(line, markup=False, highlight=False, soft_wrap=True)
        out.file.flush()  # a pipe (| grep) sees each line as it comes

    shown, offset = journal_view.last_lines(files.journal, lines)
    for line in shown:
        emit(line)
    if follow:
        err.print(f"following {files.journal}; Ctrl-C to stop", markup=False, highlight=False)
        try:
            journal_view.follow(files.journal, offset, emit, threading.Event())
        except KeyboardInterrupt:
            return


@app.command("sessions")
def sessions_cmd(
    repo: RepoArg,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    remove: Annotated[str | None, typer.Option(
        help="Delete this archived session's files (journal, logs, report, results.tsv); its branch stays.")] = None,
) -> None:
    """List the repo's sessions: tag, state, experiments, best, and the PID of a running daemon."""
    from autoresearch.cli.commands import list_sessions, remove_session
    from autoresearch.cli.render import sessions_table

    logs.configure(stream=sys.stderr)  # stdout holds the answer alone
    if remove is not None:
        gone = remove_session(repo, remove)
        out.print(f"removed {gone.folder}; the branch {gone.branch} and refs/autoresearch/{gone.tag}/ stay "
                  f"(git branch -D {gone.branch} deletes the branch)", highlight=False, markup=False)
        return
    entries = list_sessions(repo)
    if as_json:
        out.print_json(json.dumps(entries))
    elif not entries:
        out.print(f"no sessions in {repo}; start one with `autoresearch init {repo}`", highlight=False)
    else:
        out.print(sessions_table(entries))


@app.command()
def demo(
    folder: Annotated[Path, typer.Argument(help="Where the example repo goes.")] = Path("autoresearch-demo"),
    experiments: Annotated[int | None, typer.Option(
        min=1, help="Stop after this many changes were judged, baseline included (default: no limit).")] = None,
    budget: Annotated[float | None, typer.Option(help="Training budget per run (s); default the example's.")] = None,
    runner: Annotated[RunnerName | None, typer.Option(help="Where the runs execute.")] = None,
    runs: Annotated[int, typer.Option(
        min=1, help="Training runs in total: changes plus the judge's re-measurements (bounds the time).")] = 14,
) -> None:
    """Example + init + run with the offline agent: watch a real model improve (~10 min on 2 CPU cores)."""
    from autoresearch.cli.commands import run_demo

    logs.configure(level="warning")
    code = run_demo(folder, experiments, budget, runner, out, _stop_on_signals, runs=runs)
    raise typer.Exit(code)


@app.command()
def report(
    repo: RepoArg,
    output: Annotated[
        Path | None, typer.Option("-o", "--out", help="Folder for the files (default: .git/autoresearch/report).")
    ] = None,
    watch: Annotated[bool, typer.Option(help="Regenerate after every recorded experiment, until Ctrl-C.")] = False,
    notebook: Annotated[bool, typer.Option(help="Also write analysis.ipynb (an existing one is kept).")] = False,
    interval: Annotated[float, typer.Option(min=0.5, help="Seconds between polls with --watch.")] = 5.0,
    tag: TagOpt = None,
) -> None:
    """Write progress.png and report.md into .git/autoresearch/report/ (and optionally the analysis notebook)."""
    from autoresearch.report.command import Rendered, report_command

    def shown(rendered: Rendered) -> None:
        out.print(f"{rendered.stats.title}: " + ", ".join(str(p) for p in rendered.paths))

    report_command(repo, output, watch, notebook, interval, on_render=shown, tag=tag)


def _stop_on_signals(event: Any) -> None:
    """First SIGINT/SIGTERM: stop gracefully (the running job is stopped and recorded). Second: abort."""

    def handler(signum: int, _frame: object) -> None:
        if event.is_set():
            raise KeyboardInterrupt
        structlog.get_logger("autoresearch").warning("loop.signal", signal=signal.Signals(signum).name)
        event.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@app.command()
def serve(
    repo: RepoArg,
    listen: Annotated[str | None, typer.Option(
        help="HOST:PORT to listen on (default: [http] listen, else 127.0.0.1:8765). Not loopback: needs a token.")
    ] = None,
    archive: Annotated[str | None, typer.Option(
        help="Show an archived session (a folder name under .git/autoresearch/archive/).")] = None,
    log_level: Annotated[LogLevel, typer.Option(help="The least severe log level shown.")] = "info",
) -> None:
    """Serve the live dashboard and /metrics (read-only: reads the journal, with or without a running daemon)."""
    from autoresearch.web.server import serve_forever

    def say(line: str) -> None:
        out.print(line, highlight=False, soft_wrap=True)
        out.file.flush()  # the URL line is read by scripts (and tests) while the server runs

    logs.configure(level=log_level)
    serve_forever(repo, listen, archive, say=say)
