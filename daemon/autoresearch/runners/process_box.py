"""What a process run lives in, and how to end all of it: a bubblewrap sandbox or a bare process group.

Both are started by ``launch`` and journaled as a handle a restarted daemon can ``reap``: PIDs are
paired with their kernel start time, so a recycled PID is never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from autoresearch.runners import procs
from autoresearch.runners.bwrap import Sandbox

INFO_WAIT_S = 30.0
COMMAND_INNER_PID = 2
"""Inside a bwrap pid namespace: 1 is bwrap's init, 2 the command it starts."""


@dataclass
class Box:
    """A started run: ``proc`` is bwrap (sandboxed) or the shell leading the process group (none)."""

    proc: subprocess.Popen[bytes]
    init_pid: int | None = None
    """The sandbox's pid 1 (host PID); None for a bare process group."""
    init_ticks: int | None = None
    start_ticks: int | None = None
    hold_fd: int | None = None
    """Write end of the pipe the sandbox waits on before its command starts (``launch(hold=True)``)."""

    def release(self) -> None:
        """Let a held sandbox's command start (closing the pipe lets it start too: call after a kill)."""
        if self.hold_fd is not None:
            fd, self.hold_fd = self.hold_fd, None
            with contextlib.suppress(OSError):
                os.write(fd, b"1")
            os.close(fd)

    @property
    def sandboxed(self) -> bool:
        return self.init_pid is not None

    def handle(self) -> dict[str, Any]:
        if self.sandboxed:
            return {"kind": "process", "sandbox": "bwrap", "pid": self.proc.pid, "start_ticks": self.start_ticks,
                    "init_pid": self.init_pid, "init_ticks": self.init_ticks}
        return {"kind": "process", "pgid": self.proc.pid, "start_ticks": self.start_ticks}

    def pids(self) -> set[int]:
        """Every live process of the run (a sandbox: its whole pid namespace, escaped sessions included)."""
        if self.init_pid is None:
            return procs.group_pids(self.proc.pid, reap=self.proc)
        self.proc.poll()
        ns = procs.pid_namespace(self.init_pid) if procs.same_process(self.init_pid, self.init_ticks) else None
        return procs.namespace_pids(ns) | ({self.proc.pid} if self.proc.returncode is None else set())

    def terminate(self, kill_timeout_s: float, poll_s: float = 0.05) -> float:
        """SIGTERM everything in it, SIGKILL the lot after ``kill_timeout_s``; seconds until all is gone."""
        if self.init_pid is None:
            return procs.terminate_group(self.proc, self.proc.pid, kill_timeout_s, poll_s)
        t0 = time.monotonic()
        # bwrap's pid 1 forwards nothing, so the processes get SIGTERM themselves; all but the /bin/sh that
        # runs the command (pid 2 inside): when it dies, pid 1 ends the sandbox before the script could stop.
        for pid in self.pids() - {self.proc.pid, self.init_pid}:
            if procs.inner_pid(pid) != COMMAND_INNER_PID:
                procs.signal_pid(pid, signal.SIGTERM)
        if not procs.wait_gone(self.pids, kill_timeout_s, poll_s):
            self.kill()
            procs.wait_gone(self.pids, 10.0, poll_s)
        self.proc.wait()
        return time.monotonic() - t0

    def kill(self) -> None:
        """SIGKILL all of it now: the sandbox's pid 1 (the kernel then kills its whole namespace) and bwrap."""
        if self.init_pid is None:
            procs.kill_group(self.proc.pid)
            return
        if procs.same_process(self.init_pid, self.init_ticks):
            procs.signal_pid(self.init_pid, signal.SIGKILL)
        if self.proc.poll() is None:
            procs.signal_pid(self.proc.pid, signal.SIGKILL)
        if self.hold_fd is not None:  # killed while held: the command never starts
            os.close(self.hold_fd)
            self.hold_fd = None


def launch(
    command: str, sandbox: Sandbox | None, bwrap: str | None, env: Mapping[str, str], cwd: Path,
    stdout: int | IO[bytes] = subprocess.PIPE,
    stderr: int | IO[bytes] = subprocess.STDOUT,
    prefix: Sequence[str] = (),
    stdin: int | IO[bytes] = subprocess.DEVNULL,
    hold: bool = False,
) -> Box:
    """Start ``command`` (through /bin/sh) in the sandbox, or as a bare process group when ``sandbox`` is None.

    Output (stdout and stderr together, unless ``stderr`` says otherwise) goes to ``stdout`` (by default a
    pipe: ``proc.stdout``). ``env`` is
    the environment of bwrap itself (the sandbox's own is in ``sandbox.env``) or of the bare command.
    ``prefix`` execs first and must exec the rest in the same process (``taskset -c 2,3``: a lane's cores).
    ``stdin``: the command's (the /output copy's pipe, process_limits), by default /dev/null.
    ``hold``: the sandboxed command waits until ``box.release()`` (set up its network first).
    """
    shell: Sequence[str] = ["/bin/sh", "-c", command]
    if sandbox is None or bwrap is None:
        proc = _popen([*prefix, *shell], env, cwd, (), stdout, stderr, stdin)
        return Box(proc, start_ticks=procs.start_ticks(proc.pid))
    read_end, write_end = os.pipe()
    block_end, hold_fd = os.pipe() if hold else (None, None)
    try:
        argv = [*prefix, *sandbox.argv(shell, bwrap=bwrap, info_fd=write_end, block_fd=block_end)]
        fds = (write_end,) if block_end is None else (write_end, block_end)
        proc = _popen(argv, env, Path("/"), fds, stdout, stderr, stdin)
    except BaseException:
        if hold_fd is not None:
            os.close(hold_fd)
        raise
    finally:
        os.close(write_end)
        if block_end is not None:
            os.close(block_end)
    with contextlib.closing(os.fdopen(read_end, "rb")) as info:
        init_pid = _child_pid(info.fileno())
    box = Box(proc, start_ticks=procs.start_ticks(proc.pid), hold_fd=hold_fd)
    if init_pid is not None:
        box.init_pid, box.init_ticks = init_pid, procs.start_ticks(init_pid)
    return box


def _popen(
    argv: list[str], env: Mapping[str, str], cwd: Path, fds: tuple[int, ...], stdout: int | IO[bytes],
    stderr: int | IO[bytes] = subprocess.STDOUT, stdin: int | IO[bytes] = subprocess.DEVNULL,
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, cwd=cwd, env=dict(env), stdin=stdin, stdout=stdout, stderr=stderr,
        start_new_session=True, pass_fds=fds,
    )  # fmt: skip


def _child_pid(fd: int) -> int | None:
    """The sandbox's pid 1 from bwrap's --info-fd JSON; None if bwrap failed before it (its output says why)."""
    data = b""
    deadline = time.monotonic() + INFO_WAIT_S
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
        with contextlib.suppress(ValueError):
            return int(json.loads(data)["child-pid"])
    return None


def reap(handle: Mapping[str, Any]) -> bool:
    """Kill what a dead daemon's run left (its sandbox, or its process group); True if something was killed."""
    if handle.get("sandbox") == "bwrap":
        killed = False
        for pid_key, ticks_key in (("init_pid", "init_ticks"), ("pid", "start_ticks")):
            pid = int(handle.get(pid_key) or 0)
            if procs.same_process(pid, handle.get(ticks_key)):
                procs.signal_pid(pid, signal.SIGKILL)
                killed = True
        return killed
    pgid = int(handle.get("pgid") or 0)
    if not procs.same_process(pgid, handle.get("start_ticks")):
        return False  # gone, or the PID now belongs to someone else
    procs.kill_group(pgid)
    return True
