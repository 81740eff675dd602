"""The ``autoresearch`` command line: example, init, run, status, demo, report."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import structlog
import typer
from rich.console import Console

from autoresearch import logs
from autoresearch.errors import AutoresearchError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="A daemon that does ML research overnight.")
out = Console()
err = Console(stderr=True)

RepoArg = Annotated[Path, typer.Argument(help="The research repo (a git repository).")]
# Choices are checked by the CLI itself, so a typo is refused with the flag's name (exit 2).
Direction = Literal["min", "max"]
RunnerName = Literal["process", "docker"]
AgentName = Literal["offline", "anthropic", "command"]
LogLevel = Literal["debug", "info", "warning", "error"]


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
    from autoresearch.example import write_example

    write_example(dest)
    out.print(f"example research repo written to {dest}; next: autoresearch init {dest}")


@app.command()
def init(
    repo: RepoArg,
    tag: Annotated[str | None, typer.Option(help="Session tag: branch autoresearch/<tag>. Default: today.")] = None,
    target: Annotated[str | None, typer.Option(help="The one file the agent edits.")] = None,
    readonly: Annotated[list[str] | None, typer.Option(help="A file runs must not change (repeatable).")] = None,
    prepare: Annotated[str | None, typer.Option(help="One-time data preparation command.")] = None,
    run: Annotated[str | None, typer.Option("--run", help="The training command.")] = None,
    metric: Annotated[str | None, typer.Option(help="Metric name printed as '<metric>: <value>'.")] = None,
    direction: Annotated[Direction | None, typer.Option(help="Which way is better.")] = None,
    budget: Annotated[float | None, typer.Option(help="Training time budget in seconds.")] = None,
    runner: Annotated[RunnerName | None, typer.Option(help="Where prepare and later runs execute.")] = None,
) -> None:
    """Validate the repo and config, run prepare, create the branch and results.tsv."""
    from autoresearch.commands import init_repo

    logs.configure()
    flags = {"target": target, "readonly": readonly, "prepare": prepare, "run": run, "metric": metric,
             "direction": direction, "budget": budget, "runner": runner}
    session = init_repo(repo, tag, flags, say=lambda line: out.print(line, highlight=False))
    out.print(f"initialised {session.repo} on branch {session.branch}; next: autoresearch run {repo}")


@app.command("run")
def run_cmd(
    repo: RepoArg,
    max_experiments: Annotated[int | None, typer.Option(help="Stop after this many experiments in total.")] = None,
    budget: Annotated[float | None, typer.Option(help="Override the training budget (s).")] = None,
    grace: Annotated[float | None, typer.Option(help="Seconds past the budget before a run is killed.")] = None,
    agent: Annotated[AgentName | None, typer.Option(help="Who proposes the changes.")] = None,
    runner: Annotated[RunnerName | None, typer.Option(help="Where the runs execute.")] = None,
    log_level: Annotated[LogLevel, typer.Option(help="The least severe log level shown.")] = "info",
) -> None:
    """Run the experiment loop until a limit is reached or a signal arrives (resumes where it stopped)."""
    from autoresearch.commands import build_loop

    logs.configure(level=log_level)
    overrides: dict[str, Any] = {"budget": budget, "grace": grace, "agent": agent, "runner": runner}
    if max_experiments is not None:
        overrides["limits"] = {"max_experiments": max_experiments}
    loop = build_loop(repo, overrides)
    from autoresearch.web.server import serve_beside

    serve_beside(repo, loop.settings)  # [http] listen: the dashboard in a thread, until the process exits
    _stop_on_signals(loop.stop_event)
    result = loop.run()
    raise typer.Exit(result.exit_code)


@app.command()
def status(
    repo: RepoArg,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show the session's progress (reads the journal; safe while the daemon runs)."""
    from autoresearch.commands import read_status
    from autoresearch.render import status_table

    summary = read_status(repo)
    if as_json:
        out.print_json(json.dumps(summary))
    else:
        out.print(status_table(summary))


@app.command()
def demo(
    folder: Annotated[Path, typer.Argument(help="Where the example repo goes.")] = Path("autoresearch-demo"),
    experiments: Annotated[int, typer.Option(min=1, help="Experiments in total, baseline included.")] = 12,
    budget: Annotated[float | None, typer.Option(help="Training budget per run (s); default the example's.")] = None,
    runner: Annotated[RunnerName | None, typer.Option(help="Where the runs execute.")] = None,
) -> None:
    """Example + init + run with the offline agent: watch a real model improve (~10 min on 2 CPU cores)."""
    from autoresearch.commands import run_demo

    logs.configure(level="warning")
    code = run_demo(folder, experiments, budget, runner, out, _stop_on_signals)
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
) -> None:
    """Write progress.png and report.md into .git/autoresearch/report/ (and optionally the analysis notebook)."""
    from autoresearch.report.command import Rendered, report_command

    def shown(rendered: Rendered) -> None:
        out.print(f"{rendered.stats.title}: " + ", ".join(str(p) for p in rendered.paths))

    report_command(repo, output, watch, notebook, interval, on_render=shown)


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
