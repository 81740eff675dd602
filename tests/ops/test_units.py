"""The systemd units: notify protocol, restart policy, hardening, and `systemd-analyze verify`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from autoresearch.agents.keys import CREDENTIAL_NAME
from autoresearch.ops.config import DockerSettings
from tests.ops.conftest import ROOT

UNITS = {
    "autoresearch@.service": "/srv/autoresearch/%i",
    "autoresearch.service": "/srv/autoresearch/research",
}


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections -> keys -> values in order (systemd keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(span: str) -> float:
    """A systemd time span such as 30s, 2min or 1min 30s, in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span)
    assert parts, span
    return sum(float(n) * units[u] for n, u in parts)


@pytest.fixture(params=sorted(UNITS))
def unit(request: pytest.FixtureRequest) -> tuple[str, dict[str, list[str]], str]:
    name = request.param
    return name, parse_unit(ROOT / "systemd" / name)["Service"], UNITS[name]


def one(service: dict[str, list[str]], key: str) -> str:
    values = service.get(key, [])
    assert len(values) == 1, f"{key}: expected exactly one value, got {values}"
    return values[0]


def test_notify_watchdog_and_restart_policy(unit: tuple[str, dict[str, list[str]], str]) -> None:
    _, svc, repo = unit
    assert one(svc, "Type") == "notify"
    assert one(svc, "NotifyAccess") == "main"
    assert one(svc, "ExecStart") == f"/usr/local/bin/autoresearch run {repo}"
    assert one(svc, "WorkingDirectory") == repo
    assert 30 <= seconds(one(svc, "WatchdogSec")) <= 600
    # Budgets reached and SIGTERM exit 0 (no restart); crashes and watchdog timeouts restart.
    assert one(svc, "Restart") == "on-failure"
    assert "2" in one(svc, "RestartPreventExitStatus").split(), "a config error (exit 2) must not restart-loop"
    # The daemon stops its own run (docker stop with stop_timeout_s), so SIGTERM goes to it alone.
    assert one(svc, "KillMode") == "mixed"
    assert seconds(one(svc, "TimeoutStopSec")) >= DockerSettings().stop_timeout_s + 10


def test_hardening(unit: tuple[str, dict[str, list[str]], str]) -> None:
    _, svc, repo = unit
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "ProtectKernelTunables": "yes",
        "Delegate": "yes",  # per-run cgroups under the unit's own (ProtectControlGroups would forbid them)
        "RestrictSUIDSGID": "yes",
        "User": "autoresearch",
        "SupplementaryGroups": "docker",
    }.items():
        assert one(svc, key) == value, key
    assert one(svc, "ReadWritePaths") == repo
    assert "ProtectControlGroups" not in svc, "it makes the delegated subtree read-only"
    # These would hide /dev/nvidia* from the process runner (ProtectClock implies a device allow-list).
    for key in ("PrivateDevices", "DevicePolicy", "DeviceAllow", "ProtectClock", "MemoryDenyWriteExecute"):
        assert key not in svc, key
    # bubblewrap sandboxes runs and the command agent: it needs these namespaces, and only these.
    assert set(one(svc, "RestrictNamespaces").split()) == {"user", "mnt", "pid", "ipc", "uts", "net", "cgroup"}
    families = one(svc, "RestrictAddressFamilies").split()
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(families)


def test_key_sources(unit: tuple[str, dict[str, list[str]], str]) -> None:
    name, svc, _ = unit
    env_file = one(svc, "EnvironmentFile")
    assert env_file.startswith("-/etc/autoresearch/"), "the env file must be optional"
    # systemd 252 fails a start on a missing credential file, so LoadCredential is documented, not on;
    # its name must be the one the daemon looks for in $CREDENTIALS_DIRECTORY.
    assert "LoadCredential" not in svc
    text = (ROOT / "systemd" / name).read_text()
    assert re.search(rf"^#\s+LoadCredential={CREDENTIAL_NAME}:/etc/autoresearch/", text, re.M), text


def test_units_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` with no output (it exits 0 on unknown keys, so output is the signal)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze missing (.ci/ops-check.sh installs it)")
    binary = shutil.which("autoresearch")
    assert binary, "the autoresearch console script is not on PATH (pip install -e .)"
    units = sorted(path.name for path in (ROOT / "systemd").glob("*.service"))  # the login-node unit too
    assert set(UNITS) < set(units)
    for name in units:
        text = (ROOT / "systemd" / name).read_text()
        # verify requires ExecStart's binary; the units name the installed path.
        (tmp_path / name).write_text(text.replace("/usr/local/bin/autoresearch", binary))
    proc = subprocess.run(
        ["systemd-analyze", "verify", *units], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), proc.stdout + proc.stderr


def test_template_and_example_differ_only_in_paths() -> None:
    """The non-template example is the template with one repo's paths (no drift between the two)."""
    template = parse_unit(ROOT / "systemd" / "autoresearch@.service")
    example = parse_unit(ROOT / "systemd" / "autoresearch.service")
    assert template.keys() == example.keys()
    for section, keys in template.items():
        assert keys.keys() == example[section].keys(), section
        for key, values in keys.items():
            expected = [
                v.replace("/srv/autoresearch/%i", "/srv/autoresearch/research")
                .replace("/etc/autoresearch/%i.env", "/etc/autoresearch/autoresearch.env")
                .replace("autoresearch/%i", "autoresearch")
                for v in values
            ]
            assert example[section][key] == expected, (section, key)
