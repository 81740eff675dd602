"""The repo's own environment, the session's home and init's program checks (issue 15, items 1-3)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from autoresearch.cli.init_checks import first_program
from autoresearch.coordinator.phases import Phases
from autoresearch.coordinator.repo_env import ensure, stamp_path
from autoresearch.errors import ConfigError
from autoresearch.git.workspace import FakeWorkspace
from autoresearch.journal.store import Journal
from autoresearch.ops.config import ProcessSettings, Settings
from autoresearch.runners import home as session_home
from autoresearch.runners.base import FakeRunner, RunSpec
from autoresearch.runners.process_sandbox import run_environment
from autoresearch.sessions.session import Session
from tests.conftest import cli, git
from tests.karpathy_fixture import init_args, make_karpathy_uv
from tests.runners.process_helpers import make_runner, make_spec


@pytest.mark.parametrize(("command", "program"), [
    ("uv run train.py", "uv"),
    ("CUDA_VISIBLE_DEVICES=0 python train.py > run.log 2>&1", "python"),
    ("env A=1 .venv/bin/python train.py", ".venv/bin/python"),
    ("cd sub && make", None),
    ("$HOME/bin/x", None),
    ("'unbalanced", None),
])
def test_first_program(command: str, program: str | None) -> None:
    assert first_program(command) == program


def test_init_names_a_missing_run_program_and_leaves_nothing(tmp_path: Path) -> None:
    repo = make_karpathy_uv(tmp_path / "kfix")
    args = init_args(repo, "process")
    args[args.index("--run") + 1] = "kfix-trainer train.py"
    result = cli(*args, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "'kfix-trainer' is not found inside the sandbox" in result.stderr
    assert "from flag --run" in result.stderr
    assert not (repo / ".git" / "autoresearch").exists()
    assert git(repo, "branch", "--list", "autoresearch/*") == ""
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""


def test_init_names_a_missing_setup_program_before_running_it(tmp_path: Path) -> None:
    repo = make_karpathy_uv(tmp_path / "kfix")
    args = init_args(repo, "process")
    args[args.index("--setup") + 1] = "poetry install"
    result = cli(*args, timeout=300)
    assert result.returncode == 2
    assert "'poetry' is not found inside the sandbox" in result.stderr and "setup = 'poetry install'" in result.stderr
    assert not (repo / ".git" / "autoresearch").exists()
    assert git(repo, "branch", "--list", "autoresearch/*") == ""


def test_process_env_path_replaces_the_default(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "", command="sh -c 'echo PATH=$PATH'")
    settings = ProcessSettings(env={"PATH": "/opt/tools/bin:/usr/bin:/bin"})
    assert run_environment(spec, settings, {})["PATH"] == "/opt/tools/bin:/usr/bin:/bin"
    runner = make_runner(env={"PATH": "/opt/tools/bin:/usr/bin:/bin"})
    assert runner.run(spec, lambda _h: None).ok
    assert "PATH=/opt/tools/bin:/usr/bin:/bin\n" in spec.log_path.read_text()


def test_path_puts_the_repo_environment_before_the_daemons_interpreter(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "", env_dir=tmp_path / "env")
    path = run_environment(spec, ProcessSettings(), {}, uv=Path("/x/uv"))["PATH"].split(":")
    assert path[0] == "/workspace/.venv/bin" and path[-1] == session_home.UV_DIR
    assert str(Path(sys.executable).parent) not in path
    bare = run_environment(make_spec(tmp_path, ""), ProcessSettings(), {})["PATH"].split(":")
    assert bare[0] == str(Path(sys.executable).parent)  # the bundled example: today's behaviour


def test_offline_runs_and_online_setup(tmp_path: Path) -> None:
    def env(kind: str) -> dict[str, str]:
        spec = make_spec(tmp_path, "", kind=kind, home=tmp_path / "home", env_dir=tmp_path / "env")
        return session_home.session_environment(spec)

    for kind in ("train", "evaluate", "check"):
        assert {k: env(kind)[k] for k in ("HF_HUB_OFFLINE", "UV_NO_SYNC", "UV_OFFLINE")} == dict.fromkeys(
            ("HF_HUB_OFFLINE", "UV_NO_SYNC", "UV_OFFLINE"), "1")
    assert "UV_OFFLINE" not in env("setup") and "HF_HUB_OFFLINE" not in env("prepare")
    assert env("prepare")["UV_NO_SYNC"] == "1"  # prepare sees the environment read-only
    assert env("train")["HF_HOME"] == env("prepare")["HF_HOME"] == "/home/autoresearch/.cache/huggingface"


def test_build_layer_mirrors_the_tree_with_symlinks(tmp_path: Path) -> None:
    home, layer = tmp_path / "home", tmp_path / "layer"
    (home / ".cache" / "data").mkdir(parents=True)
    (home / ".cache" / "data" / "a.bin").write_text("a")
    (home / ".cache" / "uv" / "wheels").mkdir(parents=True)
    (home / ".cache" / "uv" / "wheels" / "w.whl").write_text("w")
    (home / "link").symlink_to(".cache/data")
    layer.mkdir()
    session_home.build_layer(home, layer)
    assert (layer / ".cache" / "data").is_dir() and not (layer / ".cache" / "data").is_symlink()
    assert (layer / ".cache/data/a.bin").readlink() == Path(f"{session_home.HOME_BASE}/.cache/data/a.bin")
    assert (layer / ".cache/uv").readlink() == Path(f"{session_home.HOME_BASE}/.cache/uv")  # not mirrored
    assert (layer / "link").readlink() == Path(f"{session_home.HOME_BASE}/link")


HUB_PREPARE = """
import os, pathlib
hub = pathlib.Path(os.environ["HF_HOME"]) / "hub" / "models--x"
hub.mkdir(parents=True)
(hub / "blob").write_text("weights")
(pathlib.Path.home() / "data.txt").write_text("data")
"""
HUB_TRAIN = """
import os, pathlib
assert os.environ["HF_HUB_OFFLINE"] == "1"
print("hub:", (pathlib.Path(os.environ["HF_HOME"]) / "hub" / "models--x" / "blob").read_text())
(pathlib.Path.home() / ".cache" / "compiled").mkdir(parents=True)
(pathlib.Path.home() / ".cache" / "compiled" / "k.so").write_text("k")
try:
    (pathlib.Path.home() / "data.txt").write_text("changed")
except OSError as exc:
    print("home read-only:", exc.errno)
"""


def test_a_run_finds_the_hub_cache_offline_and_cannot_change_the_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    runner = make_runner()
    prepare = make_spec(tmp_path, HUB_PREPARE, kind="prepare", home=home, budget=20)
    assert runner.run(prepare, lambda _h: None).ok, prepare.log_path.read_text()
    train = make_spec(tmp_path, HUB_TRAIN, n=2, home=home, budget=20)
    outcome = runner.run(train, lambda _h: None)
    text = train.log_path.read_text()
    assert outcome.ok, text
    assert "hub: weights" in text and "home read-only: 30" in text  # EROFS
    assert (home / "data.txt").read_text() == "data"
    assert not (home / ".cache" / "compiled").exists() and not list(train.log_path.parent.glob(".home-*"))


def _phases(tmp_path: Path, runner: FakeRunner) -> Phases:
    ws = FakeWorkspace(root=tmp_path, files={"train.py": "X = 1\n"})
    session = Session(repo=tmp_path, state_dir=tmp_path / ".git" / "autoresearch", tag="t")
    settings = Settings(setup="uv sync", budget=1.0)
    return Phases(settings, session, ws, Journal(session.state_dir / "journal.jsonl"), runner)


def _builds_env(spec: RunSpec) -> tuple[str, str]:
    assert spec.kind == "setup" and spec.env_dir is not None
    (spec.env_dir / "pyvenv.cfg").write_text("home = /usr/bin\n")
    return "", "ok"


def test_setup_runs_again_when_one_of_its_inputs_changes(tmp_path: Path) -> None:
    runner = FakeRunner(script=[_builds_env, _builds_env, ("", "exit:1")])
    phases = _phases(tmp_path, runner)
    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / "pyproject.toml").write_text("[project]\n")
    (snap / "uv.lock").write_text("version = 1\n")
    first = ensure(phases, None, snap, "c1")
    assert first is not None and first[0] == ["missing environment"] and first[1].ok
    assert json.loads(stamp_path(phases).read_text())["inputs"].keys() == {"pyproject.toml", "uv.lock"}
    assert ensure(phases, 1, snap, "c1") is None  # unchanged: nothing runs
    (snap / "uv.lock").write_text("version = 2\n")
    (snap / "requirements-dev.txt").write_text("x\n")
    second = ensure(phases, 2, snap, "c2")
    assert second is not None and second[0] == ["requirements-dev.txt", "uv.lock"]
    (snap / "uv.lock").write_text("version = 3\n")
    failed = phases._setup(3, snap, "c3", None)
    assert failed is not None and failed.cause == "setup:exit:1"
    setups = phases.journal.load().setups
    assert [(s.n, s.trigger, s.cause) for s in setups] == [(2, ["requirements-dev.txt", "uv.lock"], "ok"),
                                                            (3, ["uv.lock"], "exit:1")]
    (snap / "uv.lock").write_text("version = 2\n")  # back to inputs built before: the failed setup broke the env
    again = ensure(phases, 4, snap, "c4")
    assert again is not None and again[0] == ["no finished setup"]
    assert [s.kind for s in runner.specs] == ["setup"] * 4


def test_setup_inputs_may_not_include_the_target(tmp_path: Path) -> None:
    phases = _phases(tmp_path, FakeRunner())
    phases.settings = Settings(setup="uv sync", setup_inputs=["*.py"])
    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / "train.py").write_text("X = 1\n")
    with pytest.raises(ConfigError, match=r"match the target train\.py"):
        ensure(phases, 1, snap, "c1")


def test_an_interrupted_setup_is_an_interruption(tmp_path: Path) -> None:
    phases = _phases(tmp_path, FakeRunner(script=[("", "interrupted")]))
    snap = tmp_path / "snap"
    snap.mkdir()
    outcome = phases._setup(1, snap, "c1", None)
    assert outcome is not None and outcome.cause == "interrupted"
    assert not stamp_path(phases).exists()


@pytest.mark.parametrize("kind", ["setup", "prepare", "train", "evaluate", "check"])
def test_each_kind_sees_the_home_and_environment_it_may_write(tmp_path: Path, kind: str) -> None:
    """bwrap binds and Docker mounts agree: setup writes the environment and the home, prepare the home;
    the others see both read-only (their HOME is a layer); only setup and prepare have the network."""
    from autoresearch.ops.config import DockerSettings
    from autoresearch.runners.docker_files import RunFiles
    from autoresearch.runners.docker_spec import create_options
    from autoresearch.runners.process_sandbox import run_sandbox

    home, env_dir, layer = tmp_path / "home", tmp_path / "env", tmp_path / "layer"
    spec = make_spec(tmp_path, "", kind=kind, home=home, env_dir=env_dir)
    online = kind in ("setup", "prepare")
    at_home = home if online else layer
    assert spec.snapshot is not None
    box = run_sandbox(spec, spec.snapshot, ProcessSettings(gpus="none"), {}, at_home)
    binds = {b.dest: (b.source, b.writable) for b in box.binds}
    assert binds["/workspace/.venv"] == (env_dir, kind == "setup")
    assert binds["/home/autoresearch"] == (at_home, True)
    assert (session_home.HOME_BASE in binds) is not online
    assert box.share_net is online and box.env["HOME"] == "/home/autoresearch"
    assert (spec.snapshot / ".venv").is_dir()  # the mount point in the read-only snapshot

    files = RunFiles(workspace=spec.snapshot, private=tmp_path, output=tmp_path / "out", target=None,
                     writes_output=False, home=at_home)
    opts = create_options(settings=DockerSettings(), spec=spec, files=files, cache_dir=None, env={}, chosen=[],
                          labels={}, name="x")
    mounts = {m["Target"]: (m["Source"], m["ReadOnly"]) for m in opts["mounts"]}
    assert mounts["/workspace/.venv"] == (str(env_dir.resolve()), kind != "setup")
    assert mounts["/home/autoresearch"] == (str(at_home.resolve()), False)
    assert (session_home.HOME_BASE in mounts) is not online
    assert opts["network_mode"] == ("bridge" if online else "none")


def test_the_loop_removes_home_layers_a_killed_daemon_left(tmp_path: Path) -> None:
    from tests.loop_fakes import fake_loop, ok

    loop = fake_loop(tmp_path, [ok(1.0)], limits={"max_experiments": 1})
    state = loop.session.state_dir
    stale = [state / "runs" / "3" / ".home-train-abc", state / "runs" / ".home-check-def"]
    for layer in stale:
        (layer / ".cache" / "torch").mkdir(parents=True)
    loop.run()
    assert not any(layer.exists() for layer in stale)
    assert (state / "runs" / "3").is_dir()  # only the layers go
