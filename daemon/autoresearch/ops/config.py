"""Typed, strict configuration: ``autoresearch.toml`` in the research repo, then ``AUTORESEARCH_*``
environment variables (nested with ``__``, e.g. ``AUTORESEARCH_DOCKER__IMAGE``), then CLI flags.
Later sources win. Unknown keys are errors."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from autoresearch.errors import ConfigError
from autoresearch.ops.config_sources import Sources
from autoresearch.ops.envcheck import check_environment

CONFIG_FILE = "autoresearch.toml"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Limits(Section):
    max_experiments: int | None = Field(default=None, ge=1)
    """Stop after this many changes reached a verdict (results.tsv rows, the baseline included); the
    judge's re-measurements (baseline repeats, confirmations) do not count; none = never."""
    max_runs: int | None = Field(default=None, ge=1)
    """Stop after this many training runs of any kind (re-measurements included); none = never."""
    max_gpu_hours: float | None = Field(default=None, gt=0)
    """Stop once the runs' wall time times GPUs used (one on CPU) reaches this many hours."""
    max_cost_usd: float | None = Field(default=None, gt=0)
    """Stop proposing once the agent's spend reaches this many US dollars."""
    stop_at: dt.datetime | None = None
    """Stop proposing at this time (ISO 8601; local time when no offset is given)."""


class ProposalSettings(Section):
    max_failed_in_a_row: int = Field(default=20, ge=1)
    """Failed proposals in a row after which the loop escalates: the agent is shown the recent errors and
    each further failure is logged at error level (an operator's alert hook). The loop goes on."""
    max_backoff_s: float = Field(default=600.0, gt=0)
    """Longest pause after a failed proposal; the pause doubles from 1 s per failure in a row."""
    ahead: int = Field(default=1, ge=0)
    """Proposals drafted ahead per lane while lanes train, so a lane that frees up starts at once
    (0: no pipelining; the agent drafts only for a free lane and sees every result first)."""
    concurrency: int = Field(default=1, ge=1)
    """Most proposals the agent works on at the same time (LLM conversations, command agents); the cost
    caps count the ones in progress at the mean cost so far."""


class PriceTable(Section):
    input: float
    """USD per million uncached input tokens."""
    output: float
    """USD per million output tokens."""
    cache_read: float
    """USD per million input tokens read from the prompt cache."""
    cache_write: float
    """USD per million input tokens written to the prompt cache."""


def _default_prices() -> dict[str, PriceTable]:
    # Published list prices (USD per million tokens; cache writes at the 5-minute rate), 2026-11.
    return {
        "claude-sonnet-5-5": PriceTable(input=2.0, output=10.0, cache_read=0.2, cache_write=2.5),
        "claude-opus-5": PriceTable(input=5.0, output=25.0, cache_read=0.5, cache_write=6.25),
        "claude-sonnet-4-6": PriceTable(input=3.0, output=15.0, cache_read=0.3, cache_write=3.75),
        "claude-sonnet-4-5": PriceTable(input=3.0, output=15.0, cache_read=0.3, cache_write=3.75),
        "claude-haiku-4-5": PriceTable(input=1.0, output=5.0, cache_read=0.1, cache_write=1.25),
    }


class AnthropicSettings(Section):
    model: str = "claude-sonnet-5-5"
    """The Messages API model that writes proposals."""
    max_tokens: int = Field(default=16000, ge=256)
    """Output token limit of one model turn."""
    thinking_budget: int = Field(default=0, ge=0)
    """Extended-thinking token budget per turn; 0 turns thinking off (else at least 1024)."""
    max_turns: int = Field(default=24, ge=1)
    """Tool-use turns allowed in one proposal conversation."""
    max_fix_attempts: int = Field(default=3, ge=0)
    """Times a bad proposal is fed back within one iteration before the iteration is skipped."""
    escalate_after: int = Field(default=5, ge=1)
    """Non-improving runs in a row after which the prompt escalates."""
    api_key_file: Path | None = None
    """File holding the API key; else ANTHROPIC_API_KEY, else $CREDENTIALS_DIRECTORY/anthropic_api_key (systemd)."""
    base_url: str | None = None
    """API base URL; ANTHROPIC_BASE_URL is honoured when this is unset."""
    timeout_s: float = Field(default=600.0, gt=0)
    """HTTP timeout of one API request."""
    max_retries: int = Field(default=8, ge=0)
    """Retries of one request on 429/529/5xx/connection errors (the SDK's own retries are off)."""
    retry_initial_s: float = Field(default=2.0, gt=0)
    """First backoff wait of a retried request; it doubles per retry (with jitter)."""
    retry_max_wait_s: float = Field(default=120.0, gt=0)
    """Longest single wait between retries, also the cap on a server's retry-after."""
    max_file_chars: int = Field(default=40000, ge=1000)
    """Characters read_file returns at once; longer files are cut with a notice (and an offset to go on)."""
    max_log_chars: int = Field(default=8000, ge=500)
    """Characters of the last crash's log tail shown to the agent, and of one read_run_log window."""
    prices: dict[str, PriceTable] = Field(default_factory=_default_prices)
    """Per-model prices in USD per million tokens, for the cost ledger."""

    @field_validator("thinking_budget")
    @classmethod
    def _check_thinking(cls, value: int, info: ValidationInfo) -> int:
        # A field validator (not a model one), so the error names thinking_budget's source.
        max_tokens = info.data.get("max_tokens", 16000)
        if value and not 1024 <= value < max_tokens:
            raise ValueError("must be 0 (off) or at least 1024 and below anthropic.max_tokens")
        return value


AGENT_WRITABLE = (
    "~/.claude", "~/.claude.json", "~/.config/claude", "~/.cache/claude",  # Claude Code
    "~/.codex",  # OpenAI Codex CLI
    "~/.gemini",  # Gemini CLI
)
"""The command agent's default writable paths: each CLI's own folders, nothing shared with other programs."""
_AGENT_NEVER_WRITABLE = ("~", "~/.config", "~/.cache", "~/.local", "~/.gitconfig", "~/.config/git", "~/.ssh")
"""Shared folders an agent must not write: the daemon's git config, SSH keys, caches and programs live there."""


class CommandAgentSettings(Section):
    command: str = ""
    """Shell command run in a scratch checkout of the best commit, e.g. ``claude -p {prompt}``.

    Filled in, shell-quoted: {target} (the target's path), {program} (program.md's path), {context}
    (a Markdown file: history, notes, crash log, task) and {prompt} (a one-paragraph instruction)."""
    timeout_s: float = Field(default=900.0, gt=0)
    """Seconds the external agent may take for one proposal."""
    description_file: str = ".autoresearch-description"
    """File in the scratch checkout whose first line is the description; else the last output line."""
    kill_grace_s: float = Field(default=5.0, ge=0)
    """Seconds between SIGTERM and SIGKILL of the agent's process group when it runs out of time."""
    sandbox: Literal["bwrap", "none"] = "bwrap"
    """bwrap: the CLI runs in bubblewrap, seeing its scratch checkout (not the repo or its .git) and
    writing only there and in ``writable``; the network as ``network`` says. none: unsandboxed (unsafe)."""
    writable: list[str] = Field(default_factory=lambda: list(AGENT_WRITABLE))
    """The CLI's own config/cache folders or files (``~`` = the daemon's HOME), bound read-write if they
    exist: per CLI, never all of ``~``, ``~/.config``, ``~/.cache`` or ``~/.local``, nor git's or SSH's files."""
    network: Literal["user", "host"] = "user"
    """user: the CLI gets its own network namespace with user-mode networking (slirp4netns, host loopback
    disabled): the internet, but no service on the host's 127.0.0.1 and no abstract unix socket. host:
    the host's network as it is (loopback services included; the behaviour before 0.x). Only with bwrap."""
    mounts: list[str] = Field(default_factory=list)
    """Extra host paths the CLI needs read-only (host[:inside]), e.g. ~/.nvm or ~/.local for its program."""
    env_allow: list[str] = Field(
        default_factory=lambda: [
            "PATH", "LANG", "LC_ALL", "TERM", "USER", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN",
            "ANTHROPIC_BASE_URL", "CLAUDE_CODE_OAUTH_TOKEN", "OPENAI_API_KEY", "OPENAI_BASE_URL",
            "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
        ]
    )
    """Daemon environment variables the CLI gets (its own API key among them); nothing else passes."""

    @field_validator("writable")
    @classmethod
    def _check_writable(cls, value: list[str]) -> list[str]:
        for entry in value:
            if _shared_home_path(entry):
                raise ValueError(f"{entry!r} is shared with other programs (git's config among them): name the "
                                 "CLI's own folder instead, e.g. ~/.claude or ~/.config/claude")
        return value


def _shared_home_path(entry: str) -> bool:
    """True for ``~`` (or $HOME), one of ``_AGENT_NEVER_WRITABLE``, or a path inside git's or SSH's folders."""
    home = str(Path.home()).rstrip("/")
    if entry == home or entry.startswith(home + "/"):
        entry = "~" + entry[len(home):]
    plain = ("~/" + entry[1:].strip("/")).rstrip("/") if entry.startswith("~") else entry.rstrip("/")
    inside = ("~/.config/git/", "~/.ssh/")
    return plain in ("~", "") or plain in _AGENT_NEVER_WRITABLE or (plain + "/").startswith(inside)


class OfflineSettings(Section):
    seed: int = 0
    """Seed of the Optuna TPE sampler."""
    spread: float = Field(default=4.0, gt=1.0)
    """Each constant is searched in [value / spread, value * spread] (log scale)."""
    exclude: list[str] = Field(default_factory=list)
    """UPPER_CASE constants the sweep must leave alone (as does ``# autoresearch: fixed`` on a constant's line)."""
    startup_trials: int = Field(default=4, ge=1)
    """Random proposals before TPE starts modelling."""


class DockerSettings(Section):
    image: str = "autoresearch-runner:local"
    """Training image; build it with runner-image/build-local.sh (no registry) or docker build."""
    host: str | None = None
    """Docker engine address (e.g. unix:///run/docker.sock); none = DOCKER_HOST or the default socket."""
    api_timeout_s: float = Field(default=30.0, gt=0)
    """HTTP timeout of one engine API call (not a run limit: the budget is enforced on the daemon's clock)."""
    user: str = "65534:65534"
    """uid:gid the training script runs as inside the container (never root)."""
    network: str = "none"
    """Docker network mode of a run; none = no network at all (anything else weakens the sandbox)."""
    memory: str = "8g"
    """Memory limit (swap is set equal, so no swap); /tmp's tmpfs counts against it."""
    cpus: float | None = Field(default=None, gt=0)
    """CPU limit in cores; none = all."""
    pids_limit: int = Field(default=512, ge=16)
    """Maximum number of processes/threads in the container (stops fork bombs)."""
    shm_size: str = "1g"
    """Size of /dev/shm, for data-loader workers."""
    tmpfs_size: str = "1g"
    """Size of the /tmp tmpfs (the only writable place besides /output and the target file)."""
    write_cap: str = "20g"
    """Size of /output, a tmpfs volume copied to the host after the run (its pages count against
    memory), and the largest the target file may grow; a run that fills /output is a violation."""
    gpus: Literal["none", "all"] | list[str] = "none"
    """GPUs for the run: none, all, or a list of indices/UUIDs; pynvml checks them before each run."""
    gpu_mode: Literal["runtime", "explicit"] = "runtime"
    """runtime: device_requests via the NVIDIA container toolkit; explicit: only the devices, mounts and
    env below (hosts without the toolkit), with CUDA_VISIBLE_DEVICES set when gpus lists some."""
    gpu_min_free_mb: float = Field(default=1024.0, ge=0)
    """Free memory each selected GPU must have before a run starts."""
    gpu_release_wait_s: float = Field(default=30.0, ge=0)
    """After a GPU run: how long to wait for the GPUs' memory to be free again (warns if it is not)."""
    devices: list[str] = Field(default_factory=list)
    """Device nodes always passed to runs, e.g. /dev/nvidia0 (explicit GPU mode)."""
    mounts: list[str] = Field(default_factory=list)
    """Extra read-only host[:container] mounts always given to runs (driver/CUDA stack, an interpreter)."""
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment for the container (explicit GPU mode, interpreter paths); ANTHROPIC_* never passes."""
    env_allow: list[str] = Field(default_factory=lambda: ["PYTHONHASHSEED", "CUDA_VISIBLE_DEVICES"])
    """Host environment variables passed through; nothing else of the host's environment enters."""
    stop_timeout_s: float = Field(default=5.0, ge=0)
    """Seconds between SIGTERM and SIGKILL when the budget plus grace runs out (whole seconds)."""
    setup_network: str = "bridge"
    """Docker network mode of ``setup`` and ``prepare`` (they download packages and data); training,
    evaluation and checks always use ``network``. The host's CA bundle is mounted for them."""


class ProcessSettings(Section):
    sandbox: Literal["bwrap", "none"] = "bwrap"
    """bwrap: each run in a bubblewrap sandbox (no network, no .git, no daemon /proc, clean environment;
    the daemon refuses to start without a working bwrap). none: a plain process group on the host, with
    the daemon's rights: UNSAFE with an LLM or command agent (a warning is logged at every start)."""
    kill_timeout_s: float = Field(default=5.0, ge=0)
    """Seconds between SIGTERM and SIGKILL of the whole sandbox when the budget plus grace runs out."""
    env_allow: list[str] = Field(default_factory=lambda: ["PYTHONHASHSEED", "CUDA_VISIBLE_DEVICES"])
    """Host environment variables passed through (as docker.env_allow); secrets never pass. HOME is the
    session's home (``.git/autoresearch/home``): read-write for setup and prepare, read-only with a
    throwaway writable layer for training, evaluation and checks."""
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment for runs (e.g. interpreter or library paths); secret-looking names never pass.
    ``PATH`` here replaces the sandbox's default PATH (the repo's environment, uv, then the system's)."""
    gpus: Literal["none", "all"] | list[str] = "all"
    """GPUs for a run: none (CUDA_VISIBLE_DEVICES empty, no device nodes), all (every /dev/nvidia* node;
    the host's CUDA_VISIBLE_DEVICES if env_allow passes it), or a list of indices/UUIDs (CUDA_VISIBLE_DEVICES)."""
    mounts: list[str] = Field(default_factory=list)
    """Extra host paths bound read-only into the sandbox (host[:inside]), e.g. a conda env or a CUDA toolkit.
    The daemon's own interpreter (sys.prefix) is always bound."""
    gpu_min_free_mb: float = Field(default=1024.0, ge=0)
    """With lanes: free memory each of a lane's GPUs must have before its run starts (else the lane waits)."""
    memory: str = "8g"
    """Memory limit of each run (training, evaluation, prepare, checks): memory.max (cgroup v2) or
    memory.limit_in_bytes (v1) of the run's own cgroup, swap off where the host allows; the pages of its
    /tmp, /dev/shm and /output count against it. Exceeding it is cause oom. Not enforced where no cgroup
    can be made (the daemon says so at start and in status)."""
    pids_limit: int = Field(default=512, ge=16)
    """Processes/threads of one run (pids.max; stops fork bombs). Without a cgroup: RLIMIT_NPROC, which
    counts every process of the daemon's user and does not bind root."""
    tmpfs_size: str = "1g"
    """Size of the run's /tmp tmpfs (bwrap --size)."""
    shm_size: str = "1g"
    """Size of the run's /dev/shm tmpfs, for data-loader workers."""
    write_cap: str = "20g"
    """Size of /output of a writing run, a tmpfs inside the sandbox copied to the host after the run (a run
    that fills it is cause write_cap and keeps no output), and RLIMIT_FSIZE of every file a run writes
    (the target too)."""
    cgroups: Literal["auto", "v2", "v1", "off"] = "auto"
    """Per-run cgroups, nested under the daemon's own: auto (v2, else v1, else the rlimit fallback with a
    notice), v2 or v1 (that one or exit 2), off (the rlimit fallback: no memory limit)."""


class SlurmSettings(Section):
    shared_dir: Path | None = None
    """Required when runner = "slurm": a folder every node sees at the same path (NFS in a lab). The runs'
    snapshots, outputs and logs, the session's home and the repo's environment live under it (the state
    folder's ``runs``, ``snapshots``, ``home`` and ``env`` are links into it)."""
    inner: Literal["bwrap", "docker", "none"] = "bwrap"
    """The sandbox inside each job: bwrap (the process runner's bubblewrap sandbox, built from
    ``process.*``), docker (``docker run --rm --init`` of ``docker.image``, killed when the job is
    cancelled), or none (the command runs bare in the job's cgroup: unsafe with an LLM or command agent)."""
    partition: str | None = None
    """``sbatch --partition``; none = the cluster's default partition."""
    account: str | None = None
    """``sbatch --account``; none = the user's default account."""
    qos: str | None = None
    """``sbatch --qos``; none = the default quality of service."""
    gres: str | None = "gpu:1"
    """``sbatch --gres`` of each lane's jobs (e.g. "gpu:1", "gpu:a100:2"); none = no generic resources."""
    cpus_per_task: int | None = Field(default=None, ge=1)
    """``sbatch --cpus-per-task``; none = the partition's default."""
    mem: str | None = None
    """``sbatch --mem`` in Slurm's syntax (e.g. "32G"): the job's memory limit (exceeding it is cause oom);
    none = the partition's default."""
    extra_args: list[str] = Field(default_factory=list)
    """Further ``sbatch`` arguments, as they are (e.g. ["--constraint=a100", "--nice=10"])."""
    poll_s: float = Field(default=2.0, gt=0)
    """Seconds between two looks at a job's state (``scontrol show job``)."""
    time_margin_min: int = Field(default=2, ge=1)
    """Minutes added to budget + grace for Slurm's own ``--time`` limit, only a backstop: the daemon cancels
    a run at its deadline on its own clock (Slurm checks limits about every 30 s, in whole minutes)."""
    max_attempts: int = Field(default=3, ge=1)
    """Submissions of one run when jobs end in a state that is not the script's fault (NODE_FAIL,
    PREEMPTED, BOOT_FAIL); after the last such attempt the run is recorded as a crash with that cause."""


class NoiseSettings(Section):
    repeats: int = Field(default=2, ge=0)
    """Extra runs of the unchanged baseline at the start, to estimate the noise σ (0 = none)."""
    z: float = Field(default=0.5, ge=0)
    """The screen: a first measurement that beats the best by more than z·σ·√(1 + 1/m) is confirmed; at or
    below it, it is discarded (0 with no noise estimate = any gain, the seed's rule)."""
    confirm_keeps: bool = True
    """Confirm a keep before it lands: pairs of a fresh run of the best then the candidate, on one lane, and
    only those pairs count (a drift in the machine's load otherwise makes old bests easy to beat)."""
    max_repeats: int = Field(default=3, ge=1)
    """Looks per candidate: its first measurement, then up to max_repeats − 1 confirmation pairs."""
    alpha: float = Field(default=0.05, gt=0, lt=1)
    """The most probability that a change without a true gain is kept, over all its looks (0.2 of it on the
    first run, the rest through one group-sequential boundary over the confirmation looks)."""
    futility: float = 0.0
    """A confirmation look whose pairs' gain is at most this many standard errors stops with a discard."""


class SimplicitySettings(Section):
    max_added_lines: int | None = Field(default=20, ge=0)
    """A candidate whose gain is within noise and that adds more lines than this is not kept (none = no limit)."""


class HttpSettings(Section):
    listen: str | None = None
    """Serve the read-only dashboard and /metrics from the daemon too, on HOST:PORT (e.g.
    "127.0.0.1:8765"); none = only `autoresearch serve` does. A non-loopback address needs a token."""
    token_file: Path | None = None
    """File holding the token that a non-loopback listener requires (header ``Authorization: Bearer``
    or the HttpOnly cookie the login form sets). Under systemd, ``LoadCredential=http_token:...``
    is read when this is unset."""
    container_published_on_loopback: bool = False
    """Allow a non-loopback listener without a token, only inside a container whose port the host
    publishes on its own 127.0.0.1 (compose.yaml); refused outside a container."""


class GitSettings(Section):
    timeout_s: float = Field(default=120.0, gt=0)
    """Seconds one git command may take; past it git's process group is killed and the command retried."""
    attempts: int = Field(default=6, ge=1)
    """Tries of one git command that met a lock another git holds (``index.lock``) or timed out; when the
    last fails the daemon exits 1 and systemd restarts it."""


class Settings(BaseSettings):
    """One research repo's experiment configuration."""

    model_config = SettingsConfigDict(
        extra="forbid", env_prefix="AUTORESEARCH_", env_nested_delimiter="__", validate_default=True
    )

    target: str = "train.py"
    """The one file the agent edits (relative to the repo root)."""
    readonly: list[str] = Field(default_factory=list)
    """Files the training run must not change (checked by hash after every run)."""
    prepare: str | None = None
    """One-time data preparation command, run by init (idempotent), with the network; it may write the
    session's home (``~``), e.g. karpathy's ``~/.cache/autoresearch``."""
    setup: str | None = None
    """Builds the repo's own environment (e.g. ``uv sync``): run by init, sandboxed with the network, writing
    only the environment (``/workspace/.venv``, kept in ``.git/autoresearch/env``) and the session's home;
    run again before the next experiment whenever one of ``setup_inputs`` changes. Runs then see the
    environment read-only and offline (``python``, ``.venv/bin/python`` and ``uv run`` resolve to it).
    None = no environment of its own (runs use the daemon's interpreter)."""
    setup_inputs: list[str] | None = None
    """Committed files (globs) whose change makes ``setup`` run again; none = pyproject.toml, uv.lock and
    requirements*.txt, whichever exist."""
    run: str = "python3 train.py"
    """The training command; it reads AUTORESEARCH_TIME_BUDGET and prints '<metric>: <value>'."""
    metric: str = "val_bpb"
    """Name of the metric line the run prints; the last '^<metric>:' line counts."""
    direction: Literal["min", "max"] = "min"
    """Whether lower (min) or higher (max) is better."""
    budget: float = Field(default=300.0, gt=0)
    """Training time budget in seconds, passed as AUTORESEARCH_TIME_BUDGET."""
    grace: float | None = Field(default=None, ge=0)
    """Extra seconds before a run is killed; none = the budget (a 5-minute run dies at 10)."""
    runner: Literal["process", "docker", "slurm"] = "process"
    """Where runs execute: a local process group, or a fresh hardened Docker container; slurm: each
    training, evaluation and check run is one Slurm job (``slurm.*``), setup and prepare run here."""
    agent: Literal["offline", "anthropic", "command"] = "offline"
    """Who proposes: Optuna over the constants, Claude with tools, or an external agent CLI."""
    max_crash_fixes: int = Field(default=3, ge=0)
    """Consecutive crashes for which the crash log is shown to the agent before it must move on."""
    log_cap_mb: float = Field(default=64.0, gt=0)
    """Size cap of one run.log; output beyond it is dropped (the run goes on)."""
    keep_outputs: int | None = Field(default=20, ge=0)
    """Run outputs (.git/autoresearch/runs/<n>/output) kept: the best's and the last N recorded runs'; older
    ones are deleted after each recorded row (their logs stay). None keeps all."""
    cache_dir: Path | None = None
    """Data/cache folder given to prepare and training (AUTORESEARCH_CACHE); default .git/autoresearch/cache."""
    lanes: Literal["auto"] | int = Field(default=1, union_mode="left_to_right")
    """Runs at the same time, each in its own lane pinned to its GPU(s) and a share of the CPU cores. auto:
    one lane per GPU the runner may use (``docker.gpus``/``process.gpus``; one lane on a host without
    GPUs); N: N lanes (on a host without GPUs they split the cores). 1 (the default): one unpinned lane.
    runner = slurm: N means up to N jobs at once, whatever this host has (auto is refused)."""
    gpus_per_lane: int = Field(default=1, ge=1)
    """GPUs each lane gets when the host has GPUs (``lanes = "auto"`` then makes GPUs / gpus_per_lane lanes)."""
    evaluate: str | None = None
    """Trusted evaluation command, run in a second fresh sandbox after each training run, from the commit's
    read-only files, with the run's output (AUTORESEARCH_OUTPUT) read-only and the eval data visible; its
    metric line is the metric (the training's own line is only 'claimed'). None = the run's printed metric
    counts (self-reported)."""
    evaluate_timeout: float = Field(default=600.0, gt=0)
    """Seconds the evaluation may take; past it the run is a crash with cause eval:timeout."""
    eval_data: Path | None = None
    """Evaluation data folder (AUTORESEARCH_EVAL_DATA): written by prepare, visible to the evaluator only,
    never to training; default .git/autoresearch/eval (outside the cache)."""
    metric_source: Literal["stdout", "log"] = "stdout"
    """Where the metric line is read: stdout only, or the whole log (stdout and stderr)."""
    metric_bounds: tuple[float, float] = (1e-6, 1e6)
    """Plausible metric range [low, high]; a value outside is a crash with cause 'implausible'."""
    max_memory_gb: float | None = Field(default=None, gt=0)
    """Hard cap on a run's peak memory (GPU, else as measured); above it the run is a discard with cause 'memory'."""
    check: str | None = None
    """Command run in a fresh sandbox (the commit's files, the run's output read-only) after a run that would
    be kept, e.g. the repo's tests; a failure makes it a discard with cause 'checks'."""
    check_timeout: float = Field(default=600.0, gt=0)
    """Seconds the check command may take."""
    noise: NoiseSettings = Field(default_factory=NoiseSettings)
    simplicity: SimplicitySettings = Field(default_factory=SimplicitySettings)
    limits: Limits = Field(default_factory=Limits)
    proposals: ProposalSettings = Field(default_factory=ProposalSettings)
    docker: DockerSettings = Field(default_factory=DockerSettings)
    process: ProcessSettings = Field(default_factory=ProcessSettings)
    slurm: SlurmSettings = Field(default_factory=SlurmSettings)
    anthropic: AnthropicSettings = Field(default_factory=AnthropicSettings)
    command_agent: CommandAgentSettings = Field(default_factory=CommandAgentSettings)
    offline: OfflineSettings = Field(default_factory=OfflineSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    git: GitSettings = Field(default_factory=GitSettings)

    _sources: Sources = PrivateAttr(default_factory=Sources)

    # Field validators, not a model one: each error's location then names the flag/env/key to fix.
    @field_validator("readonly")
    @classmethod
    def _check_readonly(cls, value: list[str], info: ValidationInfo) -> list[str]:
        target = info.data.get("target")
        if target in value:
            raise ValueError(f"the target {target!r} cannot also be read-only")
        return value

    @field_validator("lanes")
    @classmethod
    def _check_lanes(cls, value: Literal["auto"] | int) -> Literal["auto"] | int:
        if isinstance(value, int) and value < 1:
            raise ValueError('must be "auto" or a whole number of lanes, at least 1')
        return value

    @field_validator("metric")
    @classmethod
    def _check_metric(cls, value: str) -> str:
        if not value.strip() or any(c.isspace() for c in value) or ":" in value:
            raise ValueError("must be a name without spaces or ':'")
        return value

    @field_validator("metric_bounds")
    @classmethod
    def _check_bounds(cls, value: tuple[float, float]) -> tuple[float, float]:
        lo, hi = value
        if not -1e9 <= lo < hi <= 1e9:
            raise ValueError("must be [low, high] with -1e9 <= low < high <= 1e9")
        return value

    @field_validator("slurm")
    @classmethod
    def _check_slurm(cls, value: SlurmSettings, info: ValidationInfo) -> SlurmSettings:
        if info.data.get("runner") != "slurm":
            return value
        if value.shared_dir is None:
            raise ValueError('runner = "slurm" needs slurm.shared_dir: a folder every node sees at the same path')
        if not value.shared_dir.is_absolute():
            raise ValueError(f"slurm.shared_dir must be an absolute path (nodes resolve it alone): {value.shared_dir}")
        return value

    @property
    def grace_s(self) -> float:
        return self.budget if self.grace is None else self.grace

    def source_of(self, *loc: str) -> str:
        """Where a value came from, for messages: ``flag --metric``, ``env AUTORESEARCH_METRIC``,
        ``key metric in <repo>/autoresearch.toml`` or ``default of metric``."""
        return self._sources.of(loc)

    def is_set(self, *loc: str) -> bool:
        """Whether a flag, an env variable or the TOML file gave this value (else it is the default)."""
        return self._sources.given(loc)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        toml_file = settings_cls.model_config.get("toml_file")
        if toml_file is not None:
            sources += (TomlConfigSettingsSource(settings_cls, toml_file=toml_file),)
        return sources


def load_settings(repo: Path, *, config_file: Path | None = None, config_label: str | None = None,
                  **overrides: Any) -> Settings:
    """Read ``repo/autoresearch.toml`` (if any; or ``config_file``, named ``config_label`` in messages), the
    environment and ``overrides`` (CLI flags).

    ``None`` overrides are ignored, so unset flags do not shadow the file.
    """
    path = config_file or repo / CONFIG_FILE
    flags = {k: v for k, v in overrides.items() if v is not None}
    check_environment(Settings, os.environ)  # a mistyped AUTORESEARCH_* variable is an error, not ignored
    sources = Sources.read(path, flags, label=config_label)
    # The TOML path is per repo, so each load gets a subclass bound to its own file.
    bound = type("RepoSettings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": path}})
    try:
        settings: Settings = bound(**flags)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration:\n{_describe(exc, sources)}") from exc
    except SettingsError as exc:  # an AUTORESEARCH_* variable holding a table that is not JSON
        raise ConfigError(f"invalid configuration: {exc} (a table's variable must hold JSON, or use "
                          f"AUTORESEARCH_<TABLE>__<KEY> variables)") from exc
    except (OSError, ValueError) as exc:  # unreadable file, TOML syntax error
        raise ConfigError(f"cannot read {config_label or path}: {exc}") from exc
    plain = Settings.model_validate(settings.model_dump())
    plain._sources = sources
    return plain


def _describe(exc: ValidationError, sources: Sources) -> str:
    """One line per error, naming where the bad value came from and what it was."""
    lines = []
    for err in exc.errors():
        loc = err["loc"]
        where = ".".join(str(p) for p in loc) or "settings"
        shown = repr(err["input"])
        given = "" if err["type"] == "missing" else f" (got {shown if len(shown) <= 80 else shown[:77] + '...'})"
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"  {where} [{sources.of(loc)}]: {message}{given}")
    return "\n".join(lines)
