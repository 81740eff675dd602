"""init's checks for ``runner = "slurm"``, before anything is written: the folder every node shares is
there and writable, the controller answers, and it would accept a lane's job as configured (``sbatch
--test-only``). Each failure is a ConfigError (exit 2) naming the setting and where it came from; the
lines returned say which partition and resources the jobs will ask for."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

from autoresearch.errors import ConfigError, SlurmError, SlurmUnavailable
from autoresearch.ops.config import Settings
from autoresearch.runners.slurm_ops import SlurmQueue
from autoresearch.runners.slurm_script import resource_args

_PARTITION = re.compile(r"in partition (\S+)")


def check_cluster(settings: Settings, queue: SlurmQueue) -> list[str]:
    """Raise ConfigError unless the cluster can run this session's jobs; else the lines to show."""
    shared = check_shared_dir(settings)
    args = resource_args(settings.slurm)
    try:
        queue.ping()
        answer = queue.test_submit(args)
    except SlurmUnavailable as exc:
        raise ConfigError(f"runner = \"slurm\" ({settings.source_of('runner')}): {exc}; start slurmctld or point "
                          "this host's slurm.conf at the cluster's controller. Nothing was changed.") from exc
    except SlurmError as exc:
        raise ConfigError(f"[slurm] ({_sources(settings)}): the cluster refuses a job with "
                          f"{' '.join(args) or 'no options'}: {exc}. Nothing was changed.") from exc
    found = _PARTITION.search(answer)
    partition = settings.slurm.partition or (f"the cluster's default, {found.group(1)}" if found
                                             else "the cluster's default")
    jobs = "1 job" if settings.lanes == 1 else f"up to {settings.lanes} jobs"
    return [
        f"slurm: each run is one job in partition {partition}, asking for {' '.join(args) or 'no resources'} "
        f"({jobs} at once; inside the job: {settings.slurm.inner})",
        f"slurm: shared_dir {shared} is writable (snapshots, outputs, logs, home and environment go there)",
        f"slurm: sbatch --test-only answers: {answer.splitlines()[0] if answer else '(nothing)'}",
    ]


def check_shared_dir(settings: Settings) -> Path:
    """``slurm.shared_dir`` (set and absolute: the settings check that): an existing folder this process
    can write to (a file is made and removed: nothing is left behind)."""
    shared = settings.slurm.shared_dir
    where = f"slurm.shared_dir ({settings.source_of('slurm', 'shared_dir')})"
    if shared is None:
        raise ConfigError(f"{where}: runner = \"slurm\" needs a folder every node sees (NFS in a lab)")
    if not shared.is_dir():
        raise ConfigError(f"{where}: {shared} is not an existing folder; create it on the shared file system")
    try:
        fd, probe = tempfile.mkstemp(prefix=".autoresearch-init-", dir=shared)
    except OSError as exc:
        raise ConfigError(f"{where}: {shared} is not writable by this user ({exc.strerror})") from exc
    os.close(fd)
    with contextlib.suppress(OSError):
        Path(probe).unlink()
    return shared


def _sources(settings: Settings) -> str:
    keys = ("partition", "account", "qos", "gres", "cpus_per_task", "mem", "extra_args")
    chosen = [k for k in keys if settings.is_set("slurm", k)]
    return ", ".join(f"{k} from {settings.source_of('slurm', k)}" for k in chosen) or "the defaults"
