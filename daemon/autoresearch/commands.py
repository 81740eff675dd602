"""What the CLI commands do, without the CLI: build objects from config and wire them together."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from rich.console import Console

from autoresearch.agents import agent_from_config
from autoresearch.bwrap import check_bwrap
from autoresearch.config import CONFIG_FILE, Settings, load_settings
from autoresearch.errors import AutoresearchError, ConfigError, PrepareFailed, RepoError
from autoresearch.gpu import probe_from_environment
from autoresearch.guards import daemon_lock
from autoresearch.journal import Experiment, Journal
from autoresearch.lanes import Lane, plan_lanes
from autoresearch.loop import Loop
from autoresearch.phases import Phases
from autoresearch.privacy import protect_daemon
from autoresearch.runners import lane_runners, runner_from_config
from autoresearch.runners.base import Runner, RunOutcome, log_tail
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


def init_repo(repo: Path, tag: str | None, flags: dict[str, Any], say: Callable[[str], None] | None = None) -> Session:
    """Check everything, run prepare, then create the branch; any failure changes nothing. ``say``
    gets the lines a user should read (which runner was chosen, and why)."""
    protect_daemon()  # init runs `prepare`: it must not read this process's memory either
    ws = GitWorkspace.open(repo)
    given = {k: v for k, v in flags.items() if v not in (None, [])}
    config_path = ws.root / CONFIG_FILE
    if config_path.exists() and given:
        raise ConfigError(f"{config_path} exists; edit it instead of passing {', '.join('--' + k for k in given)}")
    settings = load_settings(ws.root, **given)
    tag = tag or default_tag()
    check_repo(ws, settings, tag)  # first: bad input changes nothing, not even a lock file
    settings, note = _choose_runner(ws.root, settings, given, config_path.exists())
    (say or (lambda _line: None))(note)
    # The lock: a running daemon's journal must never be archived under it (it would die on a
    # replaced journal), and a second init must not interleave with this one.
    state_existed = ws.state_dir().exists()
    try:
        with daemon_lock(ws.state_dir(), action="init"):
            config_text = None if config_path.exists() else _toml(given)
            session = Session(repo=ws.root, state_dir=ws.state_dir(), tag=tag)
            _prepare(session, ws, settings)
            return start_session(ws, settings, tag, config_text)
    except PrepareFailed:
        if not state_existed:  # the lock file was all that was left: a failed init leaves nothing
            shutil.rmtree(ws.state_dir(), ignore_errors=True)
        raise


def _choose_runner(root: Path, settings: Settings, given: dict[str, Any], has_config: bool) -> tuple[Settings, str]:
    """Docker where the user named no runner and Docker works here (a sandbox is the better default);
    returns the settings to use and a line saying which runner and why."""
    if settings.is_set("runner"):
        return settings, f"runner: {settings.runner} (from {settings.source_of('runner')})"
    if has_config:  # the choice could not be written down, so `run` would not follow it
        return settings, f"runner: {settings.runner} (the default; {CONFIG_FILE} sets no runner)"
    problem = _docker_problem(root)
    if problem is not None:
        return settings, f"runner: process (docker unavailable: {problem}; set --runner to choose)"
    given["runner"] = "docker"  # also written into the new autoresearch.toml
    docker = load_settings(root, **given)
    where = docker.docker.host or os.environ.get("DOCKER_HOST") or "the default socket"
    return docker, (f"runner: docker (engine up at {where}, image {docker.docker.image} present; "
                    f"--runner process to run without a sandbox)")


def _docker_problem(root: Path) -> str | None:
    """Why the Docker runner would not work here as configured (engine down, image missing), or None."""
    settings = load_settings(root, runner="docker")
    try:
        runner_from_config(settings, repo_id(root), instance_id()).check()
    except AutoresearchError as exc:
        reason = str(exc).splitlines()[0]
        log.info("init.docker_unavailable", reason=reason)
        return reason
    return None


def _prepare(session: Session, ws: GitWorkspace, settings: Settings) -> None:
    """Run prepare once; on failure remove what this init created (the log's tail goes into the error)."""
    if not settings.prepare:
        return
    runner = runner_from_config(settings, repo_id(ws.root), instance_id())
    runner.check()
    state = session.state_dir
    created = [p for p in (_first_missing(state), _first_missing(session.cache_dir(settings))) if p is not None]
    created += [p for p in (state / "runs", state / "snapshots") if not p.exists()]
    log_path = state / "runs" / "prepare.log"
    previous_log = log_path.read_bytes() if log_path.is_file() else None
    try:
        outcome = _run_prepare(session, ws, settings, runner, log_path)
        if outcome.ok:
            return
        tail = log_tail(log_path, 2000)
    except BaseException:
        _undo(created, log_path, previous_log)
        raise
    _undo(created, log_path, previous_log)
    raise PrepareFailed(f"prepare ({settings.prepare!r}, from {settings.source_of('prepare')}) failed "
                        f"[{outcome.cause}]; nothing was changed. The end of its output:\n{tail}")


def _run_prepare(session: Session, ws: GitWorkspace, settings: Settings, runner: Runner, log_path: Path) -> RunOutcome:
    phases = Phases(settings, session, ws, session.journal, runner)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.unlink(missing_ok=True)
    # Data preparation is not training: give it an hour, whatever the training budget.
    with phases.snapshot("prepare", ws.head()) as snap:
        spec = phases.spec(-1, "prepare", settings.prepare or "", log_path, ws.head(), None, snap)
        # prepare writes the eval data too (the only run besides the evaluator that sees them).
        spec = dataclasses.replace(spec, budget=3600.0, grace=60.0, eval_data=phases.eval_data(),
                                   env={**spec.env, **phases.mount_env(-1, "prepare")})
        return runner.run(spec, lambda _handle: None)


def _first_missing(path: Path) -> Path | None:
    """The topmost folder of ``path`` that does not exist yet (what ``mkdir(parents=True)`` would create)."""
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path


def _undo(created: list[Path], log_path: Path, previous_log: bytes | None) -> None:
    log_path.unlink(missing_ok=True)
    if previous_log is not None:
        log_path.write_bytes(previous_log)
    for path in reversed(created):  # inner folders first, the state folder last
        shutil.rmtree(path, ignore_errors=True)


def _toml(values: dict[str, Any]) -> str:
    lines = ["# autoresearch experiment config (written by `autoresearch init`)"]
    for key, value in values.items():
        lines.append(f"{key} = {json.dumps(value)}")  # JSON strings, numbers and lists are valid TOML
    return "\n".join(lines) + "\n"


def build_loop(repo: Path, overrides: dict[str, Any], notifier: Notifier | None = None) -> Loop:
    protect_daemon()  # before the agent reads its key and before any run starts
    ws = GitWorkspace.open(repo)
    session = load_session(ws)
    settings = load_settings(ws.root, **overrides)
    # One lane: the runner as configured (no GPU plan needed); more: each lane with its pinned runner.
    lanes = [] if settings.lanes == 1 else lane_runners(settings, repo_id(ws.root), instance_id())
    runner = lanes[0][1] if lanes else runner_from_config(settings, repo_id(ws.root), instance_id())
    agent = agent_from_config(settings, ws.root)
    return Loop(settings=settings, session=session, workspace=ws, runner=runner, agent=agent,
                notifier=notifier or Notifier.from_environment(), lanes=lanes)


def read_status(repo: Path) -> dict[str, Any]:
    ws = GitWorkspace.open(repo)
    path = ws.state_dir() / JOURNAL_FILE
    if not path.exists():
        raise RepoError(f"{ws.root} has no autoresearch session; run `autoresearch init {repo}` first")
    settings = load_settings(ws.root)
    summary = summarize(Journal(path).load(), settings.direction, lanes=_status_lanes(settings),
                        budget=settings.budget)
    summary["metric"] = settings.metric
    summary["direction"] = settings.direction
    summary["metric_source"] = "evaluated" if settings.evaluate else "self-reported"
    return summary


def _status_lanes(settings: Settings) -> list[Lane]:
    """The lanes as the settings place them on this host (for their GPUs); one lane when that fails."""
    if settings.lanes == 1:
        return [Lane(0)]  # no NVML query for the usual case
    try:
        return plan_lanes(settings, probe_from_environment())
    except AutoresearchError:  # the GPUs changed since: status still shows each lane's experiment
        return [Lane(0)]


SANDBOX_ENV = "AUTORESEARCH_PROCESS__SANDBOX"


def demo_sandbox(runner: str | None, say: Callable[[str], None]) -> None:
    """The demo without bubblewrap runs unsandboxed rather than not at all, and says so.

    Only the demo: it runs the bundled example with the offline agent, which changes nothing but
    numeric constants of our own script. ``run`` still refuses (issue: a sandbox is explicit to drop)."""
    chosen = runner or os.environ.get("AUTORESEARCH_RUNNER") or "process"
    if chosen != "process" or SANDBOX_ENV in os.environ:
        return
    try:
        check_bwrap()
    except ConfigError as exc:
        os.environ[SANDBOX_ENV] = "none"  # this process only: init's prepare and the loop read it
        say(f"warning: {str(exc).split(':', 1)[0]}; the demo runs its bundled example unsandboxed "
            f"({SANDBOX_ENV}=none; the offline agent only changes numeric constants). "
            "Install bubblewrap (apt-get install bubblewrap) for the sandbox.")


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

    demo_sandbox(runner, console.print)
    if not (folder / ".git").exists():
        write_example(folder)
        console.print(f"example research repo written to {folder}")
    ws = GitWorkspace.open(folder)
    if not (ws.state_dir() / JOURNAL_FILE).exists():
        console.print("preparing data and the session branch ...")
        init_repo(folder, None, {}, say=console.print)
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
    from autoresearch.web.server import serve_beside

    # [http] listen (compose sets it): watch the demo live. No markup: an IPv6 URL holds [brackets].
    serve_beside(folder, settings, lambda line: console.print(line, markup=False, highlight=False))
    result = loop.run()
    console.print(status_table(read_status(folder)))
    console.print(f"results: {folder / 'results.tsv'}; chart: autoresearch report {folder} "
                  f"(writes {ws.state_dir() / 'report'})")
    return result.exit_code
