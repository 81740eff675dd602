"""What runs inside a Slurm job: ``python -m autoresearch.runners.slurm_job <job.json>``.

The daemon writes ``job.json`` (the sandbox's command line, built on the daemon's host by the same code
as the local runners) into the run's folder under ``slurm.shared_dir``. Here, on the node, the command
starts with the job's own GPUs (Slurm's ``CUDA_VISIBLE_DEVICES`` and the node's ``/dev/nvidia*``), its
stdout and stderr go to the run's log through the same capped pumps as a local run, and its exit
status is written to ``result.json`` (``sacct``'s exit codes are wrong for cancelled jobs). When Slurm
signals the job (``scancel``, its time limit), the SIGTERM is forwarded into the sandbox (Slurm's reaches
only the batch script's process group) and Slurm's SIGKILL after KillWait ends the rest through the
job's cgroup (``proctrack/cgroup`` reaches ``setsid`` children too); a Docker container is outside that
cgroup, so it is ``docker kill``ed from here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from autoresearch.runners import procs
from autoresearch.runners.base import CappedLog
from autoresearch.runners.process_box import COMMAND_INNER_PID
from autoresearch.runners.process_sandbox import NVIDIA_NODES
from autoresearch.runners.pump import LogPump, StdoutTee, pipe_chunks

RESULT = "result.json"
PROC = Path("/proc")


def node_args(job: dict[str, Any], environ: dict[str, str]) -> list[str]:
    """The command line with what only the node knows: its GPU device nodes and the job's
    ``CUDA_VISIBLE_DEVICES`` (bwrap: extra options before ``--chdir``; docker: ``--gpus``)."""
    argv = list(job["argv"])
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if job["inner"] == "bwrap":
        extra: list[str] = []
        if job.get("gpus"):
            for node in sorted({str(p) for pattern in NVIDIA_NODES for p in Path("/dev").glob(pattern)}):
                extra += ["--dev-bind-try", node, node]
        if visible is not None:
            extra += ["--setenv", "CUDA_VISIBLE_DEVICES", visible]
        at = argv.index("--chdir")
        return [*argv[:at], *extra, *argv[at:]]
    if job["inner"] == "docker" and job.get("gpus") and visible:
        at = argv.index("--init") + 1  # the job's GPUs, by the node's numbering
        return [*argv[:at], "--gpus", f"device={visible}", *argv[at:]]
    return argv


def run_job(job: dict[str, Any], environ: dict[str, str]) -> int | None:
    """Run the command, pumping its output into the log; its return code (negative: a signal)."""
    split = job.get("stdout") is not None
    env = dict(job["env"])
    if job["inner"] == "none" and "CUDA_VISIBLE_DEVICES" in environ:
        env["CUDA_VISIBLE_DEVICES"] = environ["CUDA_VISIBLE_DEVICES"]
    proc = subprocess.Popen(node_args(job, environ), env=env, cwd=job["cwd"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE if split else subprocess.STDOUT)
    _forward_term(job, proc)
    started = time.monotonic()
    gate = threading.Event()
    assert proc.stdout is not None
    with CappedLog(Path(job["log"]), int(job["log_cap"])) as sink:
        if split and proc.stderr is not None:
            with CappedLog(Path(job["stdout"]), int(job["log_cap"])) as copy:
                tee = StdoutTee(sink, copy, started + float(job["deadline_s"]))
                pumps = [LogPump(pipe_chunks(proc.stdout.fileno(), gate), tee, gate=gate).start(),
                         LogPump(pipe_chunks(proc.stderr.fileno(), gate), sink, gate=gate).start()]
                code = _wait(proc, pumps)
        else:
            code = _wait(proc, [LogPump(pipe_chunks(proc.stdout.fileno(), gate), sink, gate=gate).start()])
    return code


def _wait(proc: subprocess.Popen[bytes], pumps: list[LogPump]) -> int | None:
    code = proc.wait()
    for pump in pumps:
        pump.join(timeout=10)  # what it printed before it ended
        pump.close()
    return code


def _forward_term(job: dict[str, Any], proc: subprocess.Popen[bytes]) -> None:
    """On SIGTERM from Slurm the helper stays to drain the log and record the status: the command got the
    signal from slurmd too (it is in the job's cgroup). A container is not in that cgroup: it is killed by
    name (``--rm`` then removes it), before Slurm's SIGKILL ends the ``docker run`` client."""
    name = job.get("container")

    def handler(signum: int, _frame: object) -> None:
        if name:
            subprocess.run(["docker", "kill", name], capture_output=True, timeout=30, check=False)
        elif proc.poll() is None and job["inner"] == "none":
            proc.send_signal(signum)
        elif proc.poll() is None:
            _terminate_sandbox(proc.pid)

    signal.signal(signal.SIGTERM, handler)


def _terminate_sandbox(bwrap_pid: int) -> None:
    """SIGTERM to the sandbox's processes, as the process runner's ``Box.terminate`` sends it: Slurm signals
    the batch script's process group, which ``bwrap --new-session`` left. Not pid 1 (bwrap's init ignores
    it) nor pid 2 (the ``/bin/sh`` running the command: its death would end the sandbox at once); Slurm's
    SIGKILL after KillWait ends whatever is left."""
    own = procs.pid_namespace(bwrap_pid)
    try:
        children = (PROC / str(bwrap_pid) / "task" / str(bwrap_pid) / "children").read_text().split()
    except OSError:
        return
    for child in map(int, children):
        ns = procs.pid_namespace(child)
        if ns is not None and ns != own:
            for pid in procs.namespace_pids(ns):
                if procs.inner_pid(pid) not in (1, COMMAND_INNER_PID):
                    procs.signal_pid(pid, signal.SIGTERM)


def write_result(folder: Path, code: int | None, wall_s: float) -> None:
    tmp = folder / f".{RESULT}.tmp"
    tmp.write_text(json.dumps({"exit_code": code, "wall_s": wall_s, "node": os.uname().nodename}))
    tmp.replace(folder / RESULT)


def main(argv: list[str]) -> int:
    path = Path(argv[1])
    job = json.loads(path.read_text())
    started = time.monotonic()
    code = run_job(job, dict(os.environ))
    write_result(path.parent, code, time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
