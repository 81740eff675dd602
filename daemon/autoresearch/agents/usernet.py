"""User-mode networking for the command agent: the internet, but not the host's loopback.

The agent's CLI needs its API (the internet), not the host: with the host's network it reached
services on 127.0.0.1 and abstract unix sockets (those belong to a network namespace). So its
sandbox gets a network namespace of its own, made by ``unshare --user --map-root-user --net``,
which then execs bwrap in the same process: that process stays outside bwrap's inner namespaces,
so ``slirp4netns`` can join its network namespace by PID, with no race against bwrap's own setup.
slirp4netns (``--disable-host-loopback``) gives it a ``tap0`` with NAT to the outside: 10.0.2.2
(the host's loopback) is refused, DNS is slirp's forwarder at 10.0.2.3 (the only sandbox-visible
path to the host's resolver). The command waits (bwrap ``--block-fd``) until the network is up.
slirp4netns parses the agent's packets, so it runs in its own sandbox with a seccomp filter
(``--enable-sandbox --enable-seccomp``); it ends when its exit fd closes: when the run ends, or
when the daemon dies.

User-mode networking still reaches services bound to the host's other addresses (its LAN or public
IP): bind local services to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from autoresearch.errors import AgentError, ConfigError

SLIRP_DNS = "10.0.2.3"
RESOLV_CONF = f"nameserver {SLIRP_DNS}\n"
"""The sandbox's /etc/resolv.conf: the host's may name 127.0.0.53, which is not reachable from inside."""
START_TIMEOUT_S = 10.0


def find_slirp() -> str:
    """The slirp4netns binary, or a ConfigError naming the fix."""
    path = shutil.which("slirp4netns")
    if path is None:
        raise ConfigError(
            "slirp4netns is not installed: the command agent's own network needs it (Debian/Ubuntu: "
            'apt-get install slirp4netns), or set command_agent.network = "host" to share the host\'s network '
            "(the agent then reaches services on the host's loopback)"
        )
    return path


def netns_prefix() -> list[str]:
    """What execs bwrap inside a new network namespace. With a user namespace around it also for root:
    a root daemon without CAP_SYS_ADMIN (a unit's empty ``CapabilityBoundingSet=``) could not unshare
    the network alone, and the new user namespace gives its creator the capabilities it needs there."""
    return ["unshare", "--user", "--map-root-user", "--net"]


@dataclass
class UserNet:
    """A running slirp4netns serving one sandbox's network namespace."""

    proc: subprocess.Popen[bytes]
    exit_fd: int

    @classmethod
    def attach(cls, slirp: str, pid: int, timeout_s: float = START_TIMEOUT_S) -> UserNet:
        """Start slirp4netns for the network namespace of ``pid`` (the unshare-then-bwrap process) and
        wait until it has configured tap0; AgentError if it cannot."""
        deadline = time.monotonic() + timeout_s
        while _netns(pid) == _netns(os.getpid()):  # unshare has not made it yet
            if time.monotonic() > deadline or _netns(pid) is None:
                raise AgentError("the command agent's sandbox ended before its network could be set up")
            time.sleep(0.005)
        ready_r, ready_w = os.pipe()
        exit_r, exit_w = os.pipe()
        try:
            proc = subprocess.Popen(
                [slirp, "--configure", "--mtu=65520", "--disable-host-loopback", "--enable-sandbox", "--enable-seccomp",
                 f"--ready-fd={ready_w}",
                 f"--exit-fd={exit_r}", str(pid), "tap0"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=(ready_w, exit_r), start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            os.close(exit_w)
            raise AgentError(f"cannot start slirp4netns: {exc}") from exc
        finally:
            os.close(ready_w)
            os.close(exit_r)
        net = cls(proc, exit_w)
        with contextlib.closing(os.fdopen(ready_r, "rb")) as ready:
            waited, _, _ = select.select([ready], [], [], max(0.0, deadline - time.monotonic()))
            if not waited or not ready.read(1):
                net.close()
                raise AgentError(f"slirp4netns did not set up the command agent's network (exit {proc.returncode})")
        return net

    def close(self) -> None:
        """Stop slirp4netns (closing its exit fd), killing it if it does not go."""
        with contextlib.suppress(OSError):
            os.close(self.exit_fd)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def write_resolv_conf(folder: Path) -> Path:
    path = folder / "resolv.conf"
    path.write_text(RESOLV_CONF)
    path.chmod(0o644)
    return path


def _netns(pid: int) -> str | None:
    try:
        return str(Path(f"/proc/{pid}/ns/net").readlink())
    except OSError:
        return None
