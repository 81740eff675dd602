"""Hostile suite, "a root daemon gives the sandbox every capability" (issue 18, item 3): every bwrap
sandbox drops all of them (``--cap-drop ALL``) and cannot make a user namespace to get them back.

The run tries what a capability would allow: remount its read-only workspace read-write, mount a
tmpfs, make a device node, give a file away, and a fresh user namespace. As root and as nobody.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import get_args

import pytest

from autoresearch.agents.sandbox import AgentJail
from autoresearch.ops.config import CommandAgentSettings, ProcessSettings
from autoresearch.runners.base import RunKind
from autoresearch.runners.bwrap import Sandbox, bwrap_options, check_bwrap
from autoresearch.runners.process_sandbox import run_sandbox
from tests.runners.hostile import run_daemon, workdir
from tests.runners.process_helpers import make_spec

ATTEMPTS = (
    ("remount", "mount -o remount,bind,rw /workspace && echo x > /workspace/planted"),
    ("mount", "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m"),
    ("mknod", "mknod /tmp/null c 1 3"),
    ("chown", "touch /tmp/f && chown 1:1 /tmp/f"),
    ("userns", "unshare --user --map-root-user true"),
)
PROBE = (
    "import subprocess\n"
    "print('caps', [l.split()[1] for l in open('/proc/self/status') if l.startswith(('CapEff', 'CapPrm', 'CapBnd'))])\n"
    f"for name, cmd in {ATTEMPTS!r}:\n"
    "    done = subprocess.run(['/bin/sh', '-c', cmd], capture_output=True)\n"
    "    print(name, 'SUCCEEDED' if done.returncode == 0 else 'refused')\n"
)


def _check(text: str) -> None:
    assert "caps ['0000000000000000', '0000000000000000', '0000000000000000']" in text, text
    assert "SUCCEEDED" not in text, text
    assert all(f"{name} refused" in text for name, _ in ATTEMPTS), text


@pytest.mark.parametrize("user", ["root", "nobody"])
def test_a_run_has_no_capability(user: str) -> None:
    with workdir() as d:
        out, text = run_daemon(d, PROBE, user)
        assert not (d / "snapshot" / "planted").exists()
    assert out["cause"] == "ok", text
    _check(text)


def test_the_command_agent_has_no_capability(tmp_path: Path) -> None:
    tree, context = tmp_path / "tree", tmp_path / "context.md"
    tree.mkdir()
    context.write_text("context\n")
    (tree / "probe.py").write_text(PROBE.replace("/workspace", "/usr"))  # read-only for the agent
    jail = AgentJail.from_config(CommandAgentSettings(command="true", writable=[]))
    log = tmp_path / "agent.log"
    with log.open("wb") as out:
        code = jail.run(f"{os.environ.get('PYTHON', 'python3')} probe.py", tree, context, {}, out)
    assert code == 0, log.read_text()
    _check(log.read_text())


@pytest.mark.parametrize("kind", get_args(RunKind))
def test_every_run_kind_drops_every_capability(kind: str, tmp_path: Path) -> None:
    """Training, prepare, the evaluator and the checks share one builder: each line has the flags
    (``env``'s setup kind goes through it too)."""
    spec = make_spec(tmp_path, "print(1)\n", output_dir=tmp_path / "out", eval_data=tmp_path / "eval")
    assert spec.snapshot is not None
    box = run_sandbox(dataclasses.replace(spec, kind=kind), spec.snapshot, ProcessSettings(gpus="none"), {})  # type: ignore[arg-type]
    argv = box.argv(["true"], bwrap=check_bwrap())
    assert argv[argv.index("--cap-drop") + 1] == "ALL" and "--disable-userns" in argv


def test_user_namespaces_are_disabled_where_bwrap_can() -> None:
    bwrap = check_bwrap()
    assert "--disable-userns" in bwrap_options(bwrap)  # bubblewrap >= 0.8, as .ci/run installs
    argv = Sandbox().argv(["true"], bwrap=bwrap)
    assert argv[argv.index("--cap-drop") + 1] == "ALL" and "--disable-userns" in argv
