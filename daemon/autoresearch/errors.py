"""The one exception tree of autoresearch.

Third-party errors (docker, anthropic, git, NVML) are translated once, in their adapter, with
``raise ... from exc``; everything above the adapters sees only these::

    AutoresearchError                 base; ``exit_code`` says how the CLI exits
    ├── UserError                     bad input: the message says what to fix (exit 2)
    │   ├── ConfigError               autoresearch.toml / flags / environment invalid
    │   ├── RepoError                 not a git repo, dirty tree, branch exists, missing target
    │   ├── PrepareFailed             init's prepare command failed (its output's tail in the message)
    │   │   └── SetupFailed           init's setup command failed (the repo's environment)
    │   └── ProgramMissing            a command's program cannot start in the sandbox (init's check)
    ├── RunnerError                   the runner could not run the experiment (not the script's fault)
    │   ├── EngineUnavailable         Docker engine unreachable (retried by the loop)
    │   │   └── SlurmUnavailable      slurmctld does not answer (waited out the same way)
    │   ├── SlurmError                a Slurm command failed for another reason (its own message)
    │   └── ImageMissing              runner image absent (exit 2, names the build command)
    ├── AgentError                    a proposal could not be made this iteration (skipped)
    │   ├── ProposalRejected          the agent's edit is invalid (fed back, then skipped)
    │   ├── AgentTransient            rate limit / overload / network (retried)
    │   ├── AgentCancelled            the daemon is stopping: the conversation was abandoned
    │   └── AgentFatal                wrong key, bad request, unknown model (exit 2)
    ├── GpuError                      NVML failure, missing GPU or no free memory (waited out)
    ├── GitFailed                     a git command failed while the daemon works (exit 1: systemd restarts)
    │   ├── GitRefused                git ran and said no (a missing object or ref, a refused move)
    │   ├── GitBusy                   another git holds a lock (index.lock, a ref's .lock): retried
    │   └── GitTimeout                git ran past ``git.timeout_s`` and was killed: retried
    ├── BaselineCrashed               the unchanged target does not run (exit 2)
    └── JournalError                  a journal record is invalid, or one is missing (exit 2)
        └── JournalReplaced           the journal file was replaced or cut under a running reader (exit 2)
"""

from __future__ import annotations


class AutoresearchError(Exception):
    """Base of every error autoresearch raises on purpose."""

    exit_code = 1


class UserError(AutoresearchError):
    """Bad input; the message tells the user what to fix. Nothing was changed."""

    exit_code = 2


class ConfigError(UserError):
    """The configuration (file, flags or environment) is invalid."""


class RepoError(UserError):
    """The research repository is not in a state the daemon can work with."""


class PrepareFailed(UserError):
    """init's one-time prepare command failed; init removed what it had created."""


class SetupFailed(PrepareFailed):
    """init's setup command (building the repo's environment) failed; init removed what it had created."""


class ProgramMissing(UserError):
    """The first word of setup, prepare, run, evaluate or check is not found inside the sandbox."""


class RunnerError(AutoresearchError):
    """The runner failed to run an experiment for reasons outside the training script."""


class EngineUnavailable(RunnerError):
    """The Docker engine cannot be reached."""


class SlurmUnavailable(EngineUnavailable):
    """The Slurm controller (slurmctld) does not answer: waited out like a Docker engine that is down."""


class SlurmError(RunnerError):
    """A Slurm command failed for a reason other than a controller that is down."""


class ImageMissing(RunnerError):
    """The configured runner image does not exist locally."""

    exit_code = 2


class AgentError(AutoresearchError):
    """No proposal could be made in this iteration.

    ``usage`` carries what the failed attempt cost (token counts and ``cost_usd``), for the ledger.
    """

    def __init__(self, message: str, usage: dict[str, float] | None = None) -> None:
        super().__init__(message)
        self.usage = usage


class ProposalRejected(AgentError):
    """The agent produced an edit the daemon will not run."""


class AgentTransient(AgentError):
    """A temporary failure talking to the agent's backend; worth retrying."""


class AgentCancelled(AgentError):
    """The daemon was told to stop (SIGTERM) while the agent worked: its request or command was abandoned,
    so the stop fits in systemd's ``TimeoutStopSec``. What the conversation cost so far is in ``usage``."""


class AgentFatal(AgentError):
    """A failure that retrying cannot fix (wrong API key, bad request, unknown model)."""

    exit_code = 2


class GpuError(AutoresearchError):
    """The GPU probe failed or the selected GPU cannot take a run."""


class GitFailed(AutoresearchError):
    """A git command failed at run time. Exit 1, not 2: a lock another program held, or a stalled disk,
    passes by itself, so systemd restarts the daemon (``RestartPreventExitStatus=2`` is for what a person
    must fix: those stay ``RepoError``, raised by the pre-flight checks)."""


class GitRefused(GitFailed):
    """git ran and exited non-zero for a reason of its own (a missing object or ref, a refused
    compare-and-swap). Callers that ask git a question catch this one, never its siblings."""


class GitBusy(GitFailed):
    """Another git process (the user's IDE running ``git status``, a second daemon call) held a lock
    file; retried with back-off, exit 1 if it stays held."""


class GitTimeout(GitFailed):
    """git did not finish within ``git.timeout_s``; its process group was killed. Retried, exit 1 if it
    keeps hanging."""


class BaselineCrashed(AutoresearchError):
    """The baseline (the unchanged target) crashed; the loop cannot judge anything against it.

    Exit 2: like a config error, a restart cannot fix it (systemd's RestartPreventExitStatus=2)."""

    exit_code = 2


class JournalError(AutoresearchError):
    """The journal holds a record that does not validate, or a field an experiment needs is missing.

    Exit 2: the journal is the daemon's memory; a restart would read the same bytes."""

    exit_code = 2


class JournalReplaced(JournalError):
    """The journal file changed identity (replaced, moved) or shrank while it was being followed.

    Someone else (``init``, a person) changed the session under this process; re-reading from the start
    would mix two sessions, so the process stops and says so."""
