"""How a run ended, classified the same way by every runner.

Causes, as recorded in the journal and shown in a row's description: ok, exit:<code>, signal:<n>,
timeout, oom, violation, write_cap (the process runner's /output filled), docker (engine error),
interrupted. A changed target or read-only file is a
``violation`` whatever else happened (also after a timeout), except when the daemon interrupted the
run or the engine failed: then nothing about the script is known for sure.
"""

from __future__ import annotations

NOT_JUDGED = ("interrupted", "docker")
"""Ends that are not the script's doing: a changed file does not turn them into violations."""
OOM_DETAIL = "out of memory: the kernel killed a process at the run's memory limit"


def exit_cause(returncode: int | None) -> str:
    """ok, exit:<code> or signal:<n> (Popen's negative return codes) for a process's status."""
    if returncode is None:
        return "interrupted"
    if returncode == 0:
        return "ok"
    if returncode < 0:
        return f"signal:{-returncode}"
    return f"exit:{returncode}"


def classify(
    cause: str, detail: str = "", *, changed: list[str] | tuple[str, ...] = (), oom: bool = False
) -> tuple[str, str]:
    """The final (cause, detail) of a run from how it stopped, the files it changed and OOM kills."""
    if oom and cause.startswith(("exit:", "signal:")):
        cause, detail = "oom", OOM_DETAIL
    if changed and cause not in NOT_JUDGED:
        cause = "violation"
        detail = f"{', '.join(changed)} changed during the run (the committed version stands)"
    return cause, detail
