"""The real unit under a real systemd: systemd runs as PID 1 in a container made from the daemon's image
(plus systemd from the Debian mirror), with systemd/autoresearch@.service installed verbatim and the
real `autoresearch run` on the bundled example. It shows READY (active), our STATUS texts, watchdog
pings, a restart after a watchdog timeout (the daemon SIGSTOPped), a clean SIGTERM stop (exit 0, no
restart), a budget stop (exit 0, no restart), JSON log lines in the journal with their priorities, and
the engine reachable through the socket's group under the unit's sandbox.

Takes about 45 s once the daemon image exists (the systemd layer is built and removed each time).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.ops.conftest import LABEL, ROOT, docker

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(420)]

UNIT = "autoresearch@demo.service"
REPO = "/srv/autoresearch/demo"
SOCKET = Path("/var/run/docker.sock")


@pytest.fixture(scope="module")
def systemd_image(daemon_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The daemon's image plus systemd (from the Debian mirror; no registry involved)."""
    context = tmp_path_factory.mktemp("systemd-image")
    (context / "Dockerfile").write_text(
        f"FROM {daemon_image}\n"
        "USER root\n"
        "RUN command -v systemctl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \\\n"
        "    apt-get install -y -qq --no-install-recommends systemd systemd-sysv dbus >/dev/null \\\n"
        "    && rm -rf /var/lib/apt/lists/*; }\n"
    )
    tag = f"autoresearch-ops-test:systemd-{uuid.uuid4().hex[:8]}"
    build = docker("build", "-q", "--label", LABEL, "-t", tag, str(context), check=False, timeout=300)
    assert build.returncode == 0, build.stderr
    try:
        yield tag
    finally:
        docker("rmi", "-f", tag, check=False)


@pytest.fixture
def machine(systemd_image: str) -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    """A running systemd container; returns `sh(script)` that runs a shell script inside it."""
    name = f"autoresearch-ops-systemd-{uuid.uuid4().hex[:8]}"
    # As in ../shared/notes/machine-facts.md: systemd as PID 1 needs /run tmpfs and the host's cgroups.
    args = ["run", "-d", "--name", name, "--label", LABEL, "--user", "0", "--entrypoint", "/sbin/init"]
    args += ["--tmpfs", "/run", "--tmpfs", "/run/lock", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--cgroupns=host"]
    args += ["--cap-add", "SYS_ADMIN", "-v", f"{ROOT / 'systemd'}:/units:ro"]
    if SOCKET.exists():
        # The host's engine, to show the sandboxed daemon reaches it through SupplementaryGroups=docker.
        args += ["-v", f"{SOCKET}:/run/docker.sock"]
    docker(*args, systemd_image)

    def sh(script: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = docker("exec", name, "sh", "-c", script, check=False, timeout=timeout)
        if check and proc.returncode != 0:
            journal = docker("exec", name, "journalctl", "--no-pager", "-n", "80", check=False).stdout
            pytest.fail(f"{script!r} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{journal}")
        return proc

    try:
        wait_for(
            lambda: sh("systemctl is-system-running", check=False).stdout.strip() in ("running", "degraded"),
            60,
            "systemd to boot",
        )
        yield sh
    finally:
        docker("rm", "-f", "-v", name, check=False)


def wait_for(pred: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def show(sh: Callable[..., subprocess.CompletedProcess[str]]) -> dict[str, str]:
    out = sh(
        f"systemctl show {UNIT} -p ActiveState -p SubState -p StatusText -p NRestarts -p MainPID "
        "-p Result -p ExecMainStatus"
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def stays_stopped(sh: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    """No restart follows (RestartSec is 1 s here; NRestarts is reset by a stop, so it cannot tell)."""
    time.sleep(3)
    state = show(sh)
    assert (state["ActiveState"], state["MainPID"]) == ("inactive", "0"), state


def journal(sh: Callable[..., subprocess.CompletedProcess[str]], *args: str) -> str:
    return sh(f"journalctl -u {UNIT} --no-pager {' '.join(args)}").stdout


def notifications(sh: Callable[..., subprocess.CompletedProcess[str]]) -> list[str]:
    """What the daemon sent on NOTIFY_SOCKET (PID 1 logs each message at debug level)."""
    return re.findall(r"Got notification message from PID \d+ \((.*)\)", journal(sh, "-o", "cat"))


# The image has no bubblewrap, and user namespaces inside this container would need privileges the
# test does not grant: the unit is under test here, the sandbox in tests/runners (RestrictNamespaces
# allowing bwrap's namespaces is checked in test_units.py).
NO_SANDBOX = "AUTORESEARCH_PROCESS__SANDBOX=none"
# This container shares the host's cgroups (--cgroupns=host): per-run cgroups would be made in the test
# host's hierarchy, which belongs to its supervisor. They are tested in their own namespace in
# tests/runners/test_limits_cgroups.py; Delegate=yes is checked in test_units.py.
NO_CGROUPS = "AUTORESEARCH_PROCESS__CGROUPS=off"


def test_unit_under_systemd(machine: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    sh = machine
    gid = SOCKET.stat().st_gid if SOCKET.exists() else 990
    # Install as docs/operations.md says (user, repo, unit), with test-sized settings: a 5 s training
    # budget, a 5 s watchdog, a 1 s restart delay.
    sh(
        f"""set -e
        groupadd --system --gid {gid} docker
        install -d -o autoresearch -g autoresearch /srv/autoresearch
        install -d -m 0750 /etc/autoresearch
        install -m 0644 /units/autoresearch@.service /etc/systemd/system/
        out=$(systemd-analyze verify /etc/systemd/system/{UNIT} 2>&1); [ -z "$out" ] || {{ echo "$out"; exit 1; }}
        cd /srv/autoresearch
        runuser -u autoresearch -- env HOME=/home/autoresearch autoresearch example {REPO} >/dev/null
        runuser -u autoresearch -- env HOME=/home/autoresearch AUTORESEARCH_BUDGET=5 {NO_SANDBOX} \
            autoresearch init {REPO} >/dev/null
        printf 'AUTORESEARCH_BUDGET=5\\nAUTORESEARCH_GRACE=30\\n{NO_SANDBOX}\\n' >/etc/autoresearch/demo.env
        echo '{NO_CGROUPS}' >>/etc/autoresearch/demo.env
        mkdir -p /etc/systemd/system/{UNIT}.d
        printf '[Service]\\nWatchdogSec=5s\\nRestartSec=1s\\n' >/etc/systemd/system/{UNIT}.d/test.conf
        systemd-analyze log-level debug
        systemctl daemon-reload""",
        timeout=240,
    )

    # READY: with Type=notify, `systemctl start` returns once READY=1 arrived, and the unit is active.
    sh(f"systemctl start {UNIT}", timeout=120)
    state = show(sh)
    assert (state["ActiveState"], state["SubState"]) == ("active", "running"), state
    first_pid = state["MainPID"]
    ready = [m for m in notifications(sh) if m.startswith("READY=1")]
    assert ready and re.search(r"STATUS=0 experiments?; best val_bpb none", ready[0]), ready

    # STATUS after the baseline: the count and the best metric; then the next experiment; WATCHDOG pings.
    wait_for(
        lambda: any(re.search(r"STATUS=1 experiments?; best val_bpb \d+\.\d+", m) for m in notifications(sh)),
        120,
        "the baseline's STATUS",
    )
    wait_for(lambda: re.match(r"running #1\b", show(sh)["StatusText"]), 30, "STATUS of experiment #1")
    assert "WATCHDOG=1" in notifications(sh)

    # A hung daemon: SIGSTOP it; the watchdog fires and systemd restarts it, READY again.
    sh(f"systemctl kill -s SIGSTOP --kill-who=main {UNIT}")
    wait_for(lambda: int(show(sh)["NRestarts"]) >= 1, 60, "the watchdog restart")
    wait_for(
        lambda: show(sh)["ActiveState"] == "active" and show(sh)["MainPID"] not in ("0", first_pid),
        60,
        "the restarted daemon's READY",
    )
    assert "Watchdog timeout" in journal(sh)
    assert len([m for m in notifications(sh) if m.startswith("READY=1")]) == 2

    # A graceful stop mid-run: SIGTERM -> the run is stopped and recorded as interrupted -> exit 0.
    wait_for(lambda: re.match(r"running #\d+", show(sh)["StatusText"]), 60, "the next run")
    t0 = time.monotonic()
    sh(f"systemctl stop {UNIT}")
    assert time.monotonic() - t0 < 15
    state = show(sh)
    assert (state["ActiveState"], state["Result"], state["ExecMainStatus"]) == ("inactive", "success", "0"), state
    stays_stopped(sh)

    # The journal holds the daemon's stdout as JSON lines, with priorities taken from the <N> prefix.
    entries = [json.loads(x) for x in journal(sh, "-o", "json").splitlines() if x.strip()]
    output = [e for e in entries if e.get("_TRANSPORT") == "stdout"]
    assert output and all(isinstance(e["MESSAGE"], str) and e["MESSAGE"].startswith("{") for e in output), output
    events = [json.loads(e["MESSAGE"]) for e in output]
    finished = [e for e in events if e["event"] == "experiment.finished"]
    assert finished and finished[-1]["cause"] == "interrupted", finished
    priorities = {event["level"]: e["PRIORITY"] for event, e in zip(events, output, strict=True)}
    assert priorities.get("info") == "6" and priorities.get("warning") == "4", priorities

    # A budget reached: exit 0 and no restart (Restart=on-failure).
    sh("printf 'AUTORESEARCH_LIMITS__MAX_EXPERIMENTS=1\\n' >>/etc/autoresearch/demo.env")
    sh(f"systemctl start {UNIT}", timeout=120)
    wait_for(lambda: show(sh)["ActiveState"] == "inactive", 60, "the budget stop")
    state = show(sh)
    assert (state["Result"], state["ExecMainStatus"]) == ("success", "0"), state
    stays_stopped(sh)
    assert "max_experiments reached" in journal(sh, "-o", "cat")

    # The engine, from inside the unit's sandbox (User=, SupplementaryGroups=docker, ProtectSystem=strict,
    # RestrictAddressFamilies=...): the same unit, its ExecStart swapped for a ping.
    if SOCKET.exists():
        dropin = "/etc/systemd/system/autoresearch@enginecheck.service.d"
        ping = '/opt/autoresearch/bin/python3 -c "import docker; docker.from_env().ping()"'
        conf = f"[Service]\nType=oneshot\nExecStart=\nExecStart={ping}\n"
        sh(f"""set -e
            install -d -o autoresearch -g autoresearch /srv/autoresearch/enginecheck
            mkdir -p {dropin}
            printf '%s' '{conf}' >{dropin}/test.conf
            systemctl daemon-reload
            systemctl start autoresearch@enginecheck""")
        # ... and it is the unit's SupplementaryGroups=docker that lets it in: the same user without it fails.
        assert sh(f"runuser -u autoresearch -- {ping}", check=False).returncode != 0
