"""What the CLI commands do, without the CLI: build objects from config and wire them together."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from rich.console import Console

from autoresearch.agents import agent_from_config
from autoresearch.config import CONFIG_FILE, Settings, load_settings
from autoresearch.errors import AutoresearchError, ConfigError, RepoError
from autoresearch.journal import Experiment, Journal
from autoresearch.loop import Loop
from autoresearch.phases import Phases
from autoresearch.runners import runner_from_config
from autoresearch.runners.base import log_tail
from autoresearch.sdnotify import Notifier
from autoresearch.session import JOURNAL_FILE, Session, check_repo, default_tag, load_session, start_session
from autoresearch.status import summarize
from autoresearch.workspace import GitWorkspace

log = structlog.get_logger("autoresearch.commands")


def repo_id(root: Path) -> str:
    """A stable id for container labels and orphan detection."""
    return hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]


def instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def init_repo(repo: Path, tag: str | None, flags: dict[str, Any]) -> Session:
    ws = GitWorkspace.open(repo)
    given = {k: v for k, v in flags.items() if v not in (None, [])}
    config_path = ws.root / CONFIG_FILE
    if config_path.exists() and given:
        raise ConfigError(f"{config_path} exists; edit it instead of passing {', '.join('--' + k for k in given)}")
    if not config_path.exists() and "runner" not in given and _docker_ready(ws.root):
        given["runner"] = "docker"  # a sandbox is the better default wherever one is available
    settings = load_settings(ws.root, **given)
    tag = tag or default_tag()
    check_repo(ws, settings, tag)
    config_text = None if config_path.exists() else _toml(given)
    session = Session(repo=ws.root, state_dir=ws.state_dir(), tag=tag)
    _prepare(session, ws, settings)
    return start_session(ws, settings, tag, config_text)


def _docker_ready(root: Path) -> bool:
    """Whether the Docker runner would work here as configured by default (engine up, image present)."""
    settings = load_settings(root, runner="docker")
    try:
        runner_from_config(settings, repo_id(root), instance_id()).check()
    except AutoresearchError as exc:
        log.info("init.docker_unavailable", reason=str(exc).splitlines()[0])
        return False
    return True


def _prepare(session: Session, ws: GitWorkspace, settings: Settings) -> None:
    if not settings.prepare:
        return
    runner = runner_from_config(settings, repo_id(ws.root), instance_id())
    runner.check()
    phases = Phases(settings, session, ws, session.journal, runner)
    log_path = session.state_dir / "runs" / "prepare.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.unlink(missing_ok=True)
    # Data preparation is not training: give it an hour, whatever the training budget.
    with phases.snapshot("prepare", ws.head()) as snap:
        spec = phases.spec(-1, "prepare", settings.prepare, log_path, ws.head(), None, snap)
        # prepare writes the eval data too (the only run besides the evaluator that sees them).
        spec = dataclasses.replace(spec, budget=3600.0, grace=60.0, eval_data=phases.eval_data(),
                                   env={**spec.env, **phases.mount_env(-1, "prepare")})
        outcome = runner.run(spec, lambda _handle: None)
    if not outcome.ok:
        raise AutoresearchError(f"prepare ({settings.prepare!r}) failed [{outcome.cause}]; log {log_path}:\n"
                                f"{log_tail(log_path, 2000)}")


def _toml(values: dict[str, Any]) -> str:
    lines = ["# autoresearch experiment config (written by `autoresearch init`)"]
    for key, value in values.items():
        lines.append(f"{key} = {json.dumps(value)}")  # JSON strings, numbers and lists are valid TOML
    return "\n".join(lines) + "\n"


def build_loop(repo: Path, overrides: dict[str, Any], notifier: Notifier | None = None) -> Loop:
    ws = GitWorkspace.open(repo)
    session = load_session(ws)
    settings = load_settings(ws.root, **overrides)
    runner = runner_from_config(settings, repo_id(ws.root), instance_id())
    agent = agent_from_config(settings, ws.root)
    return Loop(settings=settings, session=session, workspace=ws, runner=runner, agent=agent,
                notifier=notifier or Notifier.from_environment())


def read_status(repo: Path) -> dict[str, Any]:
    ws = GitWorkspace.open(repo)
    path = ws.state_dir() / JOURNAL_FILE
    if not path.exists():
        raise RepoError(f"{ws.root} has no autoresearch session; run `autoresearch init {repo}` first")
    settings = load_settings(ws.root)
    summary = summarize(Journal(path).load(), settings.direction)
    summary["metric"] = settings.metric
    summary["direction"] = settings.direction
    summary["metric_source"] = "evaluated" if settings.evaluate else "self-reported"
    return summary


def run_demo(
    folder: Path,
    experiments: int,
    budget: float | None,
    runner: str | None,
    console: Console,
    on_signals: Callable[[threading.Event], None],
) -> int:
    from autoresearch.example import write_example
    from autoresearch.render import progress_line, status_table

    if not (folder / ".git").exists():
        write_example(folder)
        console.print(f"example research repo written to {folder}")
    ws = GitWorkspace.open(folder)
    if not (ws.state_dir() / JOURNAL_FILE).exists():
        console.print("preparing data and the session branch ...")
        init_repo(folder, None, {})
    overrides: dict[str, Any] = {"agent": "offline", "budget": budget, "runner": runner,
                                 "limits": {"max_experiments": experiments}}
    loop = build_loop(folder, overrides)
    on_signals(loop.stop_event)
    settings = loop.settings
    console.print(f"running {experiments} experiments of {settings.budget:g} s each on branch "
                  f"{loop.session.branch}; Ctrl-C stops cleanly")

    def show(exp: Experiment) -> None:
        console.print(progress_line(exp, settings.metric), highlight=False)

    loop.on_recorded = show
    result = loop.run()
    console.print(status_table(read_status(folder)))
    console.print(f"results: {folder / 'results.tsv'}; chart: autoresearch report {folder}")
    return result.exit_code
