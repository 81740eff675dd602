"""The process runner's limits on the test host (no cgroup is ever made here: see test_limits_cgroups.py for
real ones): cgroup detection and group files against a fake cgroupfs, the join prefix, the rlimit fallback,
sized tmpfs, /output over its cap, retention, and the notice in ``status``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from structlog.testing import capture_logs

from autoresearch.cli.commands import build_loop
from autoresearch.coordinator import retention
from autoresearch.errors import ConfigError
from autoresearch.ops.config import ProcessSettings, Settings
from autoresearch.runners.cgroups import (
    DAEMON_LEAF,
    CgroupV1,
    CgroupV2,
    Limits,
    RunGroup,
    Unavailable,
    V1Group,
    V2Group,
)
from autoresearch.runners.enforcers import FakeEnforcer, Rlimits, detect
from autoresearch.runners.lanes import Lane
from autoresearch.runners.process import ProcessRunner
from autoresearch.runners.process_limits import sized
from autoresearch.runners.process_sandbox import run_sandbox
from tests.conftest import cli
from tests.runners.process_helpers import make_runner, make_spec

LIMITS = Limits(memory=256 << 20, pids=64, cpus="1")


def _files(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def _v2(tmp_path: Path, controllers: str = "cpuset cpu memory pids", enabled: str = "") -> tuple[Path, Path]:
    root = tmp_path / "cg"
    _files(root, {"cgroup.controllers": controllers, "svc/cgroup.controllers": controllers,
                  "svc/cgroup.subtree_control": enabled, "svc/cgroup.procs": "4242\n"})
    return root, tmp_path / "proc-cgroup"


def test_v2_moves_the_daemon_into_a_leaf_delegates_and_sets_each_runs_limits(tmp_path: Path) -> None:
    root, proc = _v2(tmp_path)
    proc.write_text("0::/svc\n")
    enforcer = detect("auto", "prlimit", root, proc, pid=4242)
    assert isinstance(enforcer, CgroupV2) and enforcer.base == root / "svc" and enforcer.not_enforced == ()
    assert (root / "svc" / DAEMON_LEAF / "cgroup.procs").read_text() == "4242"  # out of the group it delegates
    assert (root / "svc" / "cgroup.subtree_control").read_text() == "+memory +pids +cpuset"
    group = enforcer.open("abc-0-train-1", LIMITS)
    assert isinstance(group, V2Group) and group.path.parent == root / "svc"  # nested under the daemon's own
    assert group.path.name.startswith("ar-run-abc-0-train-1-")
    assert {f: (group.path / f).read_text() for f in ("memory.max", "pids.max", "cpuset.cpus")} == {
        "memory.max": str(256 << 20), "pids.max": "64", "cpuset.cpus": "1"}
    (group.path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert group.oom_kills() == 1


def test_v2_from_the_daemons_leaf_changes_nothing(tmp_path: Path) -> None:
    root, proc = _v2(tmp_path, enabled="cpuset memory pids")
    proc.write_text(f"0::/svc/{DAEMON_LEAF}\n")
    enforcer = detect("v2", "prlimit", root, proc, pid=4242)
    assert isinstance(enforcer, CgroupV2) and enforcer.base == root / "svc"
    assert not (root / "svc" / DAEMON_LEAF).exists()


def test_v2_without_the_memory_controller_falls_back_and_says_why(tmp_path: Path) -> None:
    root, proc = _v2(tmp_path, controllers="cpu pids")
    proc.write_text("0::/svc\n")
    enforcer = detect("auto", "prlimit", root, proc, pid=1)
    assert isinstance(enforcer, Rlimits) and "memory" in enforcer.reason
    assert any(n.startswith("memory") for n in enforcer.not_enforced)
    with pytest.raises(ConfigError, match=r"process\.cgroups = v2") as exc:
        detect("v2", "prlimit", root, proc, pid=1)
    assert exc.value.exit_code == 2


def test_v1_nests_each_controllers_group_and_fills_its_cpuset(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    _files(root, {"memory/x/cgroup.procs": "", "pids/x/cgroup.procs": "",
                  "cpuset/x/cpuset.cpus": "0-3\n", "cpuset/x/cpuset.mems": "0\n"})
    proc = tmp_path / "proc-cgroup"
    proc.write_text("9:name=systemd:/\n8:pids:/x\n4:memory:/x\n3:cpuset:/x\n1:cpu,cpuacct:/\n0::/\n")
    enforcer = detect("auto", "prlimit", root, proc)
    assert isinstance(enforcer, CgroupV1) and enforcer.kind == "cgroup v1"
    group = enforcer.open("t", Limits(memory=1 << 30, pids=100))
    assert isinstance(group, V1Group)
    assert (group.paths["memory"] / "memory.limit_in_bytes").read_text() == str(1 << 30)
    assert (group.paths["pids"] / "pids.max").read_text() == "100"
    assert (group.paths["cpuset"] / "cpuset.cpus").read_text() == "0-3"  # no lane: the daemon's own cores
    assert (group.paths["cpuset"] / "cpuset.mems").read_text() == "0"  # a v1 cpuset group starts empty
    (group.paths["memory"] / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert group.oom_kills() == 2


def test_no_cgroup_at_all_is_the_rlimit_fallback_and_v1_insists(tmp_path: Path) -> None:
    proc = tmp_path / "proc-cgroup"
    proc.write_text("0::/\n")
    enforcer = detect("auto", "/usr/bin/prlimit", tmp_path / "none", proc)
    assert isinstance(enforcer, Rlimits) and "no cgroup v1" in enforcer.reason
    assert enforcer.open("t", LIMITS).prefix() == ["/usr/bin/prlimit", "--nproc=64", "--"]
    with pytest.raises(ConfigError, match=r"process\.cgroups = v1"):
        detect("v1", "prlimit", tmp_path / "none", proc)
    assert detect("auto", None, tmp_path / "none", proc).not_enforced[-1].startswith("RLIMIT_FSIZE")


@pytest.mark.parametrize("files", [1, 3])
def test_the_join_prefix_puts_the_command_itself_in_the_group(tmp_path: Path, files: int) -> None:
    """The process that wrote its PID is the one that execs the command: no child is forked outside."""
    paths = {str(i): tmp_path / str(i) for i in range(files)}
    for p in paths.values():
        p.mkdir()
    prefix = V2Group(paths["0"]).prefix() if files == 1 else V1Group(paths).prefix()
    done = subprocess.run([*prefix, "sh", "-c", "echo $$"], capture_output=True, text=True, check=True)
    assert all((p / "cgroup.procs").read_text().strip() == done.stdout.strip() for p in paths.values())


def test_a_failed_join_never_runs_the_command(tmp_path: Path) -> None:
    prefix = V2Group(tmp_path / "missing").prefix()
    done = subprocess.run([*prefix, "sh", "-c", "echo RAN"], capture_output=True, text=True)
    assert done.returncode == 125 and "RAN" not in done.stdout


def test_the_fallback_sets_rlimit_nproc() -> None:
    group = Rlimits("test", "prlimit").open("t", LIMITS)
    probe = "import resource; print(resource.getrlimit(resource.RLIMIT_NPROC))"
    done = subprocess.run([*group.prefix(), sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "(64, 64)"


@pytest.mark.parametrize("oom", [True, False])
def test_the_runner_opens_a_group_per_run_with_the_lanes_cores_and_reads_its_oom_kills(
    tmp_path: Path, oom: bool,
) -> None:
    runner = make_runner(memory="2g", pids_limit=99)
    runner.enforcer = fake = FakeEnforcer(oom=oom)
    runner.lane = Lane(1, cpus=(0,))
    out = runner.run(make_spec(tmp_path, "raise SystemExit(1)\n", budget=20, n=7), lambda h: None)
    assert out.cause == ("oom" if oom else "exit:1")
    [(tag, limits)] = fake.opened
    assert tag.endswith("-1-train-7") and limits == Limits(memory=2 << 30, pids=99, cpus="0")


class _Refusing(FakeEnforcer):
    def open(self, tag: str, limits: Limits) -> RunGroup:
        raise Unavailable("cannot make the run's cgroup: No space left on device")


def test_a_group_that_cannot_be_made_falls_back_for_that_run(tmp_path: Path) -> None:
    runner = make_runner(pids_limit=77)
    runner.enforcer = _Refusing()
    script = "import resource\nprint('nproc', resource.getrlimit(resource.RLIMIT_NPROC)[0])\n"
    spec = make_spec(tmp_path, script, budget=20)
    with capture_logs() as logs:
        out = runner.run(spec, lambda h: None)
    assert out.cause == "ok" and "nproc 77" in spec.log_path.read_text()
    assert any(e["event"] == "process.limits_not_enforced" and e["log_level"] == "error" for e in logs)


def test_sized_tmpfs_and_output_on_the_bwrap_line(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "pass\n", output_dir=tmp_path / "out")
    settings = ProcessSettings(gpus="none", tmpfs_size="64m", shm_size="32m", write_cap="10m")
    argv = sized(run_sandbox(spec, tmp_path / "snapshot", settings, {}), spec, settings).argv(["true"])
    text = " ".join(argv)
    assert f"--size {64 << 20} --tmpfs /tmp" in text and f"--size {32 << 20} --tmpfs /dev/shm" in text
    assert f"--size {10 << 20} --tmpfs /output" in text and str(tmp_path / "out") not in text  # no host bind


def test_a_bad_size_is_a_config_error_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"process\.shm_size") as exc:
        ProcessRunner.from_config(Settings(process={"shm_size": "lots", "gpus": "none"}))
    assert exc.value.exit_code == 2


def test_unsandboxed_output_over_the_cap_is_write_cap(tmp_path: Path) -> None:
    script = ("import os\nfor i in range(4):\n    open(os.environ['AUTORESEARCH_OUTPUT'] + f'/f{i}', 'wb')"
              ".write(b'x' * (3 << 20))\n")
    spec = make_spec(tmp_path, script, budget=20, output_dir=tmp_path / "out")
    out = make_runner("none", write_cap="8m").run(spec, lambda h: None)
    assert out.cause == "write_cap" and "write cap" in out.detail
    assert list((tmp_path / "out").iterdir()) == []  # dropped, the folder still there for the evaluator


def test_a_run_that_wrote_output_then_timed_out_stays_a_timeout(tmp_path: Path) -> None:
    """Its output is still being streamed when the sandbox is killed: a copy cut short is no violation."""
    script = "import time\nopen('/output/part', 'wb').write(b'x' * (300 << 20))\ntime.sleep(60)\n"
    spec = make_spec(tmp_path, script, budget=2, grace=0.5, output_dir=tmp_path / "out")
    out = make_runner(write_cap="1g", kill_timeout_s=0.1).run(spec, lambda h: None)
    assert out.cause == "timeout" and out.wall_s < 30
    assert (tmp_path / "out").is_dir()


def test_the_start_notice_is_logged_and_shown_by_status(initialised: Path) -> None:
    assert os.environ["AUTORESEARCH_PROCESS__CGROUPS"] == "off"  # never a cgroup on the test host
    with capture_logs() as logs:
        build_loop(initialised, {})
    assert any(e["event"] == "process.limits_not_enforced" for e in logs)
    shown = cli("status", str(initialised))
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    assert "run limits" in text and "NOT enforced (process.cgroups = off): memory" in text
    assert "RLIMIT_NPROC=512" in text


def _state(statuses: list[tuple[int, str, str]]) -> Any:
    runs = [SimpleNamespace(n=n, status=status, commit=commit) for n, status, commit in statuses]
    keeps = [r for r in runs if r.status == "keep"]
    return SimpleNamespace(completed=lambda: runs, best=lambda: keeps[-1] if keeps else None)


def test_retention_keeps_the_best_its_confirmations_and_the_last_n(tmp_path: Path) -> None:
    state = _state([(0, "keep", "a"), (1, "keep", "b"), (2, "discard", "c"), (3, "keep", "b"),
                    (4, "crash", "d"), (5, "discard", "e"), (6, "discard", "f")])
    assert retention.to_prune(state, 2) == [0, 2, 4]  # 1 and 3 measured the best (b), 5 and 6 are the last two
    assert retention.to_prune(state, 0) == [0, 2, 4, 5, 6]
    assert retention.to_prune(state, None) == []
    for n in range(7):
        (tmp_path / str(n)).mkdir()
        (tmp_path / str(n) / "model.pt").write_bytes(b"x")
    assert retention.prune_outputs(state, 2, lambda n: tmp_path / str(n)) == [0, 2, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "3", "5", "6"]
    assert retention.prune_outputs(state, 2, lambda n: tmp_path / str(n)) == []  # safe to repeat


def test_the_loop_prunes_old_outputs_after_each_row(initialised: Path) -> None:
    done = cli("run", str(initialised), "--max-experiments", "4", "--agent", "offline",
               env={"AUTORESEARCH_KEEP_OUTPUTS": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = initialised / ".git" / "autoresearch" / "runs"
    kept = sorted(int(p.parent.name) for p in runs.glob("*/output"))
    logs = sorted(int(p.parent.name) for p in runs.glob("*/run.log"))
    assert len(logs) == 4 and 1 <= len(kept) <= 2 and logs[-1] in kept  # the last; the best if it is another
