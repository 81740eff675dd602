"""bubblewrap (``bwrap``) command lines: the one place that knows its flags.

A ``Sandbox`` describes what a sandboxed command may see: the system read-only, chosen host paths
read-only or read-write, a private ``/tmp``, its own ``/proc`` and a minimal ``/dev``, a clean
environment, and fresh user, pid, ipc, uts (and, unless shared, network) namespaces. Everything
not named is absent. With ``--die-with-parent`` and a new pid namespace, the whole sandbox dies
with its pid 1, so killing it leaves nothing behind. Used by the process runner and the command agent.

Every sandbox drops every capability (``--cap-drop ALL``): bwrap run by root otherwise leaves the
sandbox's root with a full set (``CapEff: 000001fffeffffff``), enough to remount its read-only binds
read-write. Where bwrap has it (0.8+), ``--disable-userns`` also stops the sandbox making a new user
namespace, where it would get capabilities back.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.errors import ConfigError

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
"""Read-only in every sandbox (missing ones are skipped: merged-/usr systems have symlinks)."""
SYSTEM_ETC = (
    "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/localtime",
    "/etc/ssl", "/etc/ca-certificates", "/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf",
    "/etc/python3", "/etc/python3.11", "/etc/gitconfig", "/etc/mime.types",
)
"""The parts of /etc programs need; never the whole of it (shadow, credentials, the daemon's config)."""


@dataclass(frozen=True)
class Bind:
    source: Path
    dest: str
    writable: bool = False
    optional: bool = False
    """Skip it when the source does not exist (``--bind-try``)."""


@dataclass(frozen=True)
class Sandbox:
    binds: tuple[Bind, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = "/"
    share_net: bool = False
    devices: tuple[str, ...] = ()
    """Host device nodes bound in as they are (e.g. /dev/nvidia0)."""
    tmpfs: tuple[str, ...] = ("/tmp",)
    tmpfs_sizes: Mapping[str, int] = field(default_factory=dict)
    """Bytes of a tmpfs in ``tmpfs`` (bwrap ``--size``); unnamed ones are the kernel's default (half the RAM)."""
    uid: int | None = None
    """uid inside the sandbox; None keeps the caller's."""
    gid: int | None = None

    def argv(
        self, command: Sequence[str], bwrap: str = "bwrap", info_fd: int | None = None, block_fd: int | None = None,
    ) -> list[str]:
        """The bwrap command line; ``info_fd``: an inherited fd where bwrap writes {"child-pid": N}, the
        host PID of the sandbox's pid 1 (killing it kills every process in the sandbox); ``block_fd``: an
        inherited fd the sandbox waits on (until it is readable) before the command starts."""
        args = [bwrap, *(["--info-fd", str(info_fd)] if info_fd is not None else [])]
        args += ["--block-fd", str(block_fd)] if block_fd is not None else []
        args += ["--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        args += ["--cap-drop", "ALL", *(["--disable-userns"] if "--disable-userns" in bwrap_options(bwrap) else [])]
        if not self.share_net:
            args.append("--unshare-net")
        args += ["--die-with-parent", "--new-session", "--clearenv"]
        if self.uid is not None:
            args += ["--uid", str(self.uid)]
        if self.gid is not None:
            args += ["--gid", str(self.gid)]
        for path in SYSTEM_DIRS:
            args += ["--ro-bind-try", path, path]
        for path in SYSTEM_ETC:
            args += ["--ro-bind-try", path, path]
        args += ["--proc", "/proc", "--dev", "/dev"]
        for node in self.devices:
            args += ["--dev-bind-try", node, node]
        for path in self.tmpfs:
            args += [*(["--size", str(self.tmpfs_sizes[path])] if path in self.tmpfs_sizes else []), "--tmpfs", path]
        for bind in self.binds:
            flag = "--bind" if bind.writable else "--ro-bind"
            args += [flag + ("-try" if bind.optional else ""), str(bind.source), bind.dest]
        args += ["--remount-ro", "/"]  # the sandbox's own root (a tmpfs holding the mount points) takes no files
        for key, value in sorted(self.env.items()):
            args += ["--setenv", key, value]
        args += ["--chdir", self.cwd, "--", *command]
        return args


@functools.cache
def bwrap_options(bwrap: str) -> frozenset[str]:
    """The options this bwrap lists in ``--help`` (probed once per binary; empty when it cannot run)."""
    try:
        done = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(word for word in done.stdout.split() if word.startswith("--"))


def find_bwrap() -> str | None:
    return shutil.which("bwrap")


def check_bwrap(bwrap: str | None = None) -> str:
    """The bwrap binary, after proving it can make a sandbox here; ConfigError naming the fix if not."""
    path = bwrap or find_bwrap()
    if path is None:
        raise ConfigError(
            "bubblewrap (bwrap) is not installed: install it (Debian/Ubuntu: apt-get install bubblewrap), or set "
            'process.sandbox = "none" in autoresearch.toml to run unsandboxed (unsafe with an LLM or command agent)'
        )
    probe = Sandbox().argv(["/bin/true"], bwrap=path)
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"bubblewrap ({path}) could not start a sandbox: {exc}") from exc
    if done.returncode != 0:
        raise ConfigError(
            f"bubblewrap ({path}) cannot create a sandbox here: {done.stderr.strip() or done.returncode}. "
            "Unprivileged user namespaces may be off (sysctl kernel.unprivileged_userns_clone=1, or "
            "kernel.apparmor_restrict_unprivileged_userns=0); or set process.sandbox = \"none\" (unsafe)"
        )
    return path
