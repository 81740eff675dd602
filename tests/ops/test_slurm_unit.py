"""The login-node unit (systemd/autoresearch-slurm@.service): the template's notify protocol, restart
policy and hardening, plus what a daemon that submits Slurm jobs needs (munged, the shared file system)
and nothing it does not (the Docker group)."""

from __future__ import annotations

from tests.ops.conftest import ROOT
from tests.ops.test_units import one, parse_unit, seconds

SLURM_UNIT = ROOT / "systemd" / "autoresearch-slurm@.service"
SHARED = "/shared/autoresearch"
DIFFERENT = {("Unit", "Description"), ("Unit", "Wants"), ("Unit", "After"), ("Unit", "RequiresMountsFor"),
             ("Service", "SupplementaryGroups"), ("Service", "ReadWritePaths"), ("Service", "TimeoutStopSec")}
"""Where the login-node unit departs from autoresearch@.service, on purpose (asserted below)."""


def test_the_login_node_unit_is_the_template_but_for_slurm_s_needs() -> None:
    template, unit = parse_unit(ROOT / "systemd" / "autoresearch@.service"), parse_unit(SLURM_UNIT)
    assert template.keys() == unit.keys()
    for section, keys in template.items():
        for key in sorted(set(keys) | set(unit[section])):
            if (section, key) not in DIFFERENT:
                assert unit[section].get(key) == keys.get(key), (section, key)


def test_the_unit_waits_for_munge_and_the_shared_file_system() -> None:
    unit = parse_unit(SLURM_UNIT)
    wants, after = one(unit["Unit"], "Wants").split(), one(unit["Unit"], "After").split()
    assert "munge.service" in wants and "munge.service" in after, "sbatch authenticates through munged"
    assert "docker.service" not in wants + after, "the jobs' containers run on the compute nodes"
    assert "remote-fs.target" in after and one(unit["Unit"], "RequiresMountsFor") == SHARED
    svc = unit["Service"]
    assert one(svc, "ReadWritePaths").split() == ["/srv/autoresearch/%i", f"{SHARED}/%i"]
    assert "SupplementaryGroups" not in svc
    assert one(svc, "ExecStart") == "/usr/local/bin/autoresearch run /srv/autoresearch/%i"
    # A stop cancels the jobs: scancel, then Slurm's KillWait (30 s by default) before SIGKILL on the node.
    assert seconds(one(svc, "TimeoutStopSec")) >= 60
    assert f'shared_dir = "{SHARED}/<instance>"' in SLURM_UNIT.read_text(), "the header says what to configure"
