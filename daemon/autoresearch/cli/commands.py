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
from autoresearch.cli import init_checks, slurm_status, snapshot
from autoresearch.cli.slurm_init import check_cluster
from autoresearch.coordinator import repo_env
from autoresearch.coordinator.loop import Loop
from autoresearch.coordinator.phases import Phases
from autoresearch.errors import (
    AutoresearchError,
    ConfigError,
    PrepareFailed,
    ProgramMissing,
    RunnerError,
    SetupFailed,
)
from autoresearch.git import branchsync
from autoresearch.git.run import GitPolicy
from autoresearch.git.workspace import GitWorkspace
from autoresearch.journal.status import run_lines, summarize
from autoresearch.journal.store import Experiment, Journal
from autoresearch.ops.config import CONFIG_FILE, Settings, load_settings
from autoresearch.ops.guards import daemon_lock
from autoresearch.ops.privacy import protect_daemon
from autoresearch.ops.sdnotify import Notifier
from autoresearch.runners import lane_runners, runner_from_config
from autoresearch.runners.base import Runner, RunOutcome, log_tail
from autoresearch.runners.bwrap import check_bwrap
from autoresearch.runners.lanes import status_lanes
from autoresearch.runners.limits_notice import read_notice, record_limits
from autoresearch.runners.slurm_ops import SlurmCommands
from autoresearch.sessions import catalog as sessions
from autoresearch.sessions.session import JOURNAL_FILE, Session, check_repo, default_tag, load_session, start_session
from autoresearch.sessions.settings import load_session_settings

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
    if config_path.exists() and CONFIG_FILE not in ws.tracked([config_path]):
        raise ConfigError(f"{config_path} is not committed; commit it (the session reads it from its branch)")
    tag = tag or default_tag()
    check_repo(ws, settings, tag)  # first: bad input changes nothing, not even a lock file
    settings, note = _choose_runner(ws.root, settings, given, config_path.exists())
    (say or (lambda _line: None))(note)
    if settings.runner == "slurm":  # before the lock: a cluster that cannot run the jobs changes nothing
        for line in check_cluster(settings, SlurmCommands.from_config(settings)):
            (say or (lambda _line: None))(line)
    # The lock: a running daemon's journal must never be archived under it (it would die on a
    # replaced journal), and a second init must not interleave with this one.
    state_existed = ws.state_dir().exists()
    try:
        with daemon_lock(ws.state_dir(), action="init"):
            config_text = None if config_path.exists() else _toml(given)
            session = Session(repo=ws.root, state_dir=ws.state_dir(), tag=tag)
            built = _environment(session, ws, settings)
            _prepare(session, ws, settings)
            previous = sessions.active(ws.root, ws.state_dir())
            started = start_session(ws, settings, tag, config_text)
            if built is not None:
                started.journal.append(repo_env.record(None, *built))
            if previous is not None:
                (say or (lambda _line: None))(sessions.archived_note(repo, sessions.archived(ws.state_dir())[-1]))
            return started
    except (PrepareFailed, ProgramMissing, RunnerError):
        if not state_existed:  # the lock file was all that was left: a failed init leaves nothing
            shutil.rmtree(ws.state_dir(), ignore_errors=True)
        raise


def _environment(session: Session, ws: GitWorkspace, settings: Settings) -> tuple[list[str], RunOutcome] | None:
    """init's checks that each command can start, around setup (the repo's environment): setup's own
    program first, then setup, then the others' programs in the environment it built."""
    if not settings.setup and not any(getattr(settings, key) for key in init_checks.KEYS):
        return None
    runner = runner_from_config(settings, repo_id(ws.root), instance_id())
    runner.check()
    phases = Phases(settings, session, ws, session.journal, runner)
    head = ws.head()
    with phases.snapshot("init", head) as snap:
        init_checks.check_programs(phases, ("setup",), snap, head)
        built = repo_env.ensure(phases, None, snap, head)
        if built is not None and not built[1].ok:
            log_path = session.run_dir("setup") / "setup.log"
            raise SetupFailed(f"setup ({settings.setup!r}, from {settings.source_of('setup')}) failed "
                              f"[{built[1].cause}]; no session was started. The end of its output "
                              f"({log_path}):\n{log_tail(log_path, 2000)}")
        init_checks.check_programs(phases, tuple(k for k in init_checks.KEYS if k != "setup"), snap, head)
    return built


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
    settings = load_session_settings(ws, session.branch, **overrides)
    ws.policy = GitPolicy.from_config(settings)  # the repo's own timeout from here on
    # One lane: the runner as configured (no GPU plan needed); more: each lane with its pinned runner.
    lanes = [] if settings.lanes == 1 else lane_runners(settings, repo_id(ws.root), instance_id())
    runner = lanes[0][1] if lanes else runner_from_config(settings, repo_id(ws.root), instance_id())
    record_limits(session.state_dir, runner)
    stop = threading.Event()  # one event: a signal stops the lanes and cancels the agent's conversation
    agent = agent_from_config(settings, ws.root, stop=stop)
    return Loop(settings=settings, session=session, workspace=ws, runner=runner, agent=agent,
                notifier=notifier or Notifier.from_environment(), lanes=lanes, stop_event=stop)


def read_status(repo: Path, tag: str | None = None) -> dict[str, Any]:
    """The session's summary (the active one, or ``tag``'s), with its rows, runs and the daemon's pid."""
    ws = GitWorkspace.open(repo)
    files = sessions.find(ws.root, ws.state_dir(), tag)
    branch = f"autoresearch/{files.tag}"
    settings = load_session_settings(ws, branch)
    state = Journal(files.journal).load()
    summary = summarize(state, settings.direction, lanes=status_lanes(settings), budget=settings.budget)
    summary.update(snapshot.session_fields(files, ws.state_dir()))
    summary["rows"] = snapshot.rows(files)
    summary["runs"] = snapshot.runs(state, files)
    summary["branch"] = {"name": branch, **branchsync.inspect(ws, branch, state).as_dict()}
    summary["metric"] = settings.metric
    summary["direction"] = settings.direction
    summary["metric_source"] = "evaluated" if settings.evaluate else "self-reported"
    summary["limits"] = read_notice(ws.state_dir())
    summary["sandbox"] = sandbox_line(settings)
    slurm_status.annotate(summary, state, SlurmCommands.from_config(settings))  # squeue only for Slurm jobs
    return summary


def read_runs(repo: Path, tag: str | None = None) -> list[dict[str, Any]]:
    """Every recorded run of the session (``status --runs``; the active one, or ``tag``'s), re-measurements
    included."""
    ws = GitWorkspace.open(repo)
    return run_lines(Journal(sessions.find(ws.root, ws.state_dir(), tag).journal).load())


def sandbox_line(settings: Settings) -> str:
    """Where the runs execute, in words: the user must see whether they were isolated."""
    if settings.runner == "docker":
        return f"each run in its own Docker container ({settings.docker.image}, network {settings.docker.network})"
    if settings.process.sandbox == "bwrap":
        return "each run sandboxed by bubblewrap (no network, no .git, a clean environment)"
    return "UNSANDBOXED: runs are plain processes with the daemon's rights (process.sandbox = none)"


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
    experiments: int | None,
    budget: float | None,
    runner: str | None,
    console: Console,
    on_signals: Callable[[threading.Event], None],
    runs: int | None = None,
) -> int:
    from autoresearch.cli.example import write_example
    from autoresearch.cli.render import progress_line, status_table

    def say(line: str) -> None:
        console.print(line, markup=False, highlight=False)  # paths and messages may hold [brackets]

    demo_sandbox(runner, say)
    if not (folder / ".git").exists():
        write_example(folder)
        say(f"example research repo written to {folder}")
    ws = GitWorkspace.open(folder)
    if not (ws.state_dir() / JOURNAL_FILE).exists():
        say("preparing data and the session branch ...")
        if budget is not None:  # the budget is pinned by init (a measured key): this process's session gets it
            os.environ["AUTORESEARCH_BUDGET"] = f"{budget:g}"
        init_repo(folder, None, {}, say=say)
    caps = {k: v for k, v in (("max_experiments", experiments), ("max_runs", runs)) if v is not None}
    overrides: dict[str, Any] = {"agent": "offline", "budget": budget, "runner": runner, "limits": caps}
    loop = build_loop(folder, overrides)
    on_signals(loop.stop_event)
    settings = loop.settings
    bound = " and ".join(f"{v} {'runs' if k == 'max_runs' else 'judged changes'}" for k, v in caps.items())
    console.print(f"running up to {bound or 'no limit'} of {settings.budget:g} s each on branch "
                  f"{loop.session.branch}; Ctrl-C stops cleanly", markup=False, highlight=False)

    def show(exp: Experiment) -> None:
        console.print(progress_line(exp, settings.metric), highlight=False)

    loop.on_recorded = show
    from autoresearch.web.server import serve_beside

    # [http] listen (compose sets it): watch the demo live. No markup: an IPv6 URL holds [brackets].
    serve_beside(folder, settings, lambda line: console.print(line, markup=False, highlight=False))
    result = loop.run()
    console.print(status_table(read_status(folder)))
    say(f"results: {folder / 'results.tsv'}; chart: autoresearch report {folder} "
        f"(writes {ws.state_dir() / 'report'})")
    return result.exit_code


def select_session(repo: Path, tag: str, say: Callable[[str], None]) -> None:
    """``run --tag``: make that session the active one (an archived one comes back; the active one is
    archived in its place, and ``say`` tells where)."""
    ws = GitWorkspace.open(repo)
    _, moved = sessions.switch_to(ws.root, ws.state_dir(), tag)
    if moved is not None:
        say(f"session {tag!r} is active again; " + sessions.archived_note(repo, moved))


def list_sessions(repo: Path) -> list[dict[str, Any]]:
    ws = GitWorkspace.open(repo)
    return snapshot.session_list(ws.root, ws.state_dir(), load_settings(ws.root).direction)


def remove_session(repo: Path, tag: str) -> sessions.SessionFiles:
    """``sessions --remove``: under the lock, so it never races an init or a ``run --tag`` restoring it."""
    ws = GitWorkspace.open(repo)
    with daemon_lock(ws.state_dir(), action=f"remove session {tag}"):
        return sessions.remove_archived(ws.root, ws.state_dir(), tag)
