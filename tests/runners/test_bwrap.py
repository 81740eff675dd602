"""The bubblewrap command line, run for real (bwrap is installed by .ci/run; these fail without it)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from autoresearch.runners.bwrap import Bind, Sandbox, check_bwrap


def _sh(sandbox: Sandbox, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(sandbox.argv(["/bin/sh", "-c", script], bwrap=check_bwrap()),
                          capture_output=True, text=True, timeout=60, check=False)


def test_sandbox_sees_only_what_it_is_given(tmp_path: Path) -> None:
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    (ro / "data").write_text("x\n")
    box = Sandbox(binds=(Bind(ro, "/ro"), Bind(rw, "/rw", writable=True)), env={"PATH": "/usr/bin:/bin", "A": "1"},
                  cwd="/ro", uid=65534, gid=65534)
    done = _sh(box, "cat data; echo $A; echo ok > /rw/out; touch /ro/nope || echo ro-refused; "
                    "test -e /etc/shadow || echo no-shadow; test -e " + str(tmp_path) + " || echo host-hidden; "
                    "echo ${HOME:-nohome}; id -u")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["x", "1", "ro-refused", "no-shadow", "host-hidden", "nohome", "65534"]
    assert (rw / "out").read_text() == "ok\n"
    assert not (ro / "nope").exists()


def test_network_is_unshared_unless_asked(tmp_path: Path) -> None:
    script = "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ' '"
    assert _sh(Sandbox(env={"PATH": "/usr/bin:/bin"}), script).stdout.split() == ["lo"]
    shared = _sh(Sandbox(env={"PATH": "/usr/bin:/bin"}, share_net=True), script).stdout.split()
    assert shared != ["lo"]
