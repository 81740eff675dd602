"""The command agent's bubblewrap sandbox, and running its command to completion or to the timeout.

Inside, the CLI sees its scratch checkout at /scratch/tree (read-write), the context file at
/scratch/context.md, the runs' logs at /runs (read-only), its own config/cache folders
(``command_agent.writable``, read-write), the extra ``mounts`` and the daemon's interpreter read-only,
and the system read-only. The network (it calls its own API) is its own, with user-mode networking
and no host loopback (``usernet``), or the host's as it is (``command_agent.network = "host"``). The
repo, its .git, the daemon's /proc and everything else are absent.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from autoresearch.agents import cancel, usernet
from autoresearch.agents.usernet import find_slirp
from autoresearch.errors import AgentCancelled
from autoresearch.ops.config import CommandAgentSettings
from autoresearch.runners import process_box
from autoresearch.runners.bwrap import Bind, Sandbox, check_bwrap
from autoresearch.runners.environment import allowed_environment
from autoresearch.runners.process_sandbox import interpreter_binds, parse_mounts

INSIDE_TREE = "/scratch/tree"
INSIDE_CONTEXT = "/scratch/context.md"
INSIDE_RUNS = "/runs"
STOP_GRACE_S = 2.0
"""Seconds a cancelled command gets between SIGTERM and SIGKILL (the whole stop must fit in 30 s)."""
USER_FILES = ("/etc/passwd", "/etc/group")
"""Read-only for CLIs that look up their user (no secrets there: those are in /etc/shadow)."""


@dataclass(frozen=True)
class AgentJail:
    """How the agent's command is run: in bwrap (``bwrap`` set) or directly (unsafe)."""

    settings: CommandAgentSettings
    bwrap: str | None
    slirp: str | None = None
    """slirp4netns, when the CLI gets its own network (``network = "user"``); None: the host's network."""

    @classmethod
    def from_config(cls, settings: CommandAgentSettings) -> AgentJail:
        if settings.sandbox != "bwrap":
            return cls(settings, None)
        return cls(settings, check_bwrap(), find_slirp() if settings.network == "user" else None)

    def context_path(self, host: Path) -> str:
        return INSIDE_CONTEXT if self.bwrap else str(host)

    def runs_path(self, host: Path) -> str:
        """Where the CLI sees the runs' logs (read-only): never at their host path, which names the repo."""
        return INSIDE_RUNS if self.bwrap else str(host)

    def sandbox(
        self, tree: Path, context: Path, extra_env: Mapping[str, str], host_env: Mapping[str, str],
        runs: Path | None = None, resolv: Path | None = None,
    ) -> Sandbox:
        """``runs``: the runs' folder, shown read-only at /runs; ``resolv``: the /etc/resolv.conf of the
        CLI's own network. The network namespace itself is made by ``run`` (bwrap shares whichever it is in)."""
        home = host_env.get("HOME", "/tmp")
        binds = [Bind(tree, INSIDE_TREE, writable=True), Bind(context, INSIDE_CONTEXT)]
        binds += [] if runs is None else [Bind(runs, INSIDE_RUNS, optional=True)]
        binds += [Bind(Path(p), p, optional=True) for p in USER_FILES]
        binds += interpreter_binds() + parse_mounts(self.settings.mounts)
        binds += [Bind(_expand(p, home), str(_expand(p, home)), writable=True, optional=True)
                  for p in self.settings.writable]
        binds += [] if resolv is None else [Bind(resolv, "/etc/resolv.conf")]
        fixed = {"HOME": home, **extra_env}
        if "PATH" not in fixed and "PATH" not in host_env:
            fixed["PATH"] = "/usr/local/bin:/usr/bin:/bin"
        env = allowed_environment({}, host_env, self.settings.env_allow, {}, fixed, drop_secrets=False)
        # Under unshare's --map-root-user a non-root daemon is uid 0 there: keep the CLI at its real uid
        # (claude refuses --dangerously-skip-permissions as root).
        own = resolv is not None
        return Sandbox(binds=tuple(binds), env=env, cwd=INSIDE_TREE, share_net=True,
                       uid=os.getuid() if own else None, gid=os.getgid() if own else None)

    def run(
        self, command: str, tree: Path, context: Path, extra_env: Mapping[str, str], out: IO[bytes],
        runs: Path | None = None, stop: threading.Event | None = None,
    ) -> int | None:
        """Run the command; its exit status, or None when it timed out. Whatever it started is killed either way.
        ``stop`` set meanwhile (the daemon stops): the command is ended and ``AgentCancelled`` raised."""
        host_env = dict(os.environ)
        if self.bwrap is None:  # unsandboxed: the CLI gets the daemon's environment, as it always did
            box = process_box.launch(command, None, None, {**host_env, **extra_env}, tree, stdout=out)
        else:
            resolv = None if self.slirp is None else usernet.write_resolv_conf(context.parent)
            sandbox = self.sandbox(tree, context, extra_env, host_env, runs, resolv)
            box = process_box.launch(command, sandbox, self.bwrap, {"PATH": "/usr/bin:/bin"}, tree, stdout=out,
                                     prefix=usernet.netns_prefix() if self.slirp else (), hold=self.slirp is not None)
        net = None
        try:
            if self.slirp is not None:
                net = usernet.UserNet.attach(self.slirp, box.proc.pid)
            box.release()
            return _wait(box.proc, self.settings.timeout_s, stop)
        except subprocess.TimeoutExpired:
            box.terminate(self.settings.kill_grace_s)
            return None
        except AgentCancelled:
            box.terminate(min(self.settings.kill_grace_s, STOP_GRACE_S))
            raise
        finally:
            box.kill()
            box.proc.wait()
            if net is not None:
                net.close()


def _wait(proc: subprocess.Popen[bytes], timeout_s: float, stop: threading.Event | None) -> int:
    """``proc``'s exit status; TimeoutExpired after ``timeout_s``; AgentCancelled once ``stop`` is set."""
    deadline = time.monotonic() + timeout_s
    while True:
        cancel.check(stop)
        try:
            return proc.wait(timeout=min(cancel.POLL_S * 5, max(deadline - time.monotonic(), 0.0)))
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline:
                raise


def _expand(entry: str, home: str) -> Path:
    return Path(home + entry[1:]) if entry.startswith("~") else Path(entry)
