"""compose.yaml (within Debian's docker-compose 1.29), the Dockerfile, its context and its entrypoint."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from autoresearch.commands import repo_id
from tests.ops.conftest import ROOT, docker

yaml = pytest.importorskip("yaml")


def compose_config(cwd: Path = ROOT, **env: str) -> dict:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose missing (.ci/ops-check.sh installs it)")
    proc = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "compose.yaml"), "config"],
        cwd=cwd,
        env={**os.environ, "PWD": str(cwd), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


def test_compose_defaults(tmp_path: Path) -> None:
    svc = compose_config(tmp_path)["services"]["autoresearch"]
    research = str(tmp_path / "research")
    # The Docker runner hands host paths under the repo to the host's engine: same path inside and out.
    assert f"{research}:{research}:rw" in svc["volumes"]
    assert "/var/run/docker.sock:/var/run/docker.sock:rw" in svc["volumes"]
    assert svc["environment"]["AUTORESEARCH_REPO"] == research
    assert svc["working_dir"] == research
    assert svc["environment"]["AUTORESEARCH_DOCKER__GPUS"] == "none", "the demo runs on any host"
    assert svc["environment"]["AUTORESEARCH_RUNNER"] == "docker", "next to the socket, the process runner is the host"
    assert svc["user"] == "10001:10001"
    assert svc["group_add"] == ["999"]
    assert svc["restart"] == "on-failure", "a budget stop (exit 0) must not restart"
    assert svc["stop_grace_period"] == "30s"
    assert "deploy" not in svc, "the daemon's own container needs no GPU; the runner's containers get it"
    gpu = compose_config(tmp_path)["services"]["autoresearch-gpu"]
    assert gpu["profiles"] == ["gpu"] and gpu["environment"]["AUTORESEARCH_RUNNER"] == "process"
    assert not any("docker.sock" in v for v in gpu["volumes"]), "the process runner's runs must not reach the engine"
    assert gpu["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
    ]


def test_compose_variables(tmp_path: Path) -> None:
    env_file = tmp_path / "autoresearch.env"
    env_file.write_text("ANTHROPIC_API_KEY=sk-ant-test\nAUTORESEARCH_AGENT=anthropic\n")
    svc = compose_config(
        tmp_path,
        AUTORESEARCH_ENV_FILE=str(env_file),
        DOCKER_GID="105",
        AUTORESEARCH_UID="1000",
        AUTORESEARCH_GID="1001",
        AUTORESEARCH_GPUS="all",
    )["services"]["autoresearch"]
    assert svc["environment"]["ANTHROPIC_API_KEY"] == "sk-ant-test"
    assert svc["environment"]["AUTORESEARCH_AGENT"] == "anthropic"
    assert svc["environment"]["AUTORESEARCH_DOCKER__GPUS"] == "all"
    assert svc["group_add"] == ["105"]
    assert svc["user"] == "1000:1001"


def test_default_env_file_is_empty() -> None:
    lines = (ROOT / "daemon-image" / "empty.env").read_text().splitlines()
    assert not [line for line in lines if line.strip() and not line.startswith("#")]


def test_dockerfile_builds_offline_from_a_local_base() -> None:
    text = (ROOT / "Dockerfile").read_text()
    first_from = text.index("\nFROM ")
    assert re.search(r"^ARG BASE_IMAGE=", text[:first_from], re.M), "ARG BASE_IMAGE must precede FROM"
    assert all(line.startswith("FROM ${BASE_IMAGE}") for line in re.findall(r"^FROM .*", text, re.M))
    for install in re.findall(r"pip install[^\n&]*", text):
        assert "--no-index" in install, f"no network in the build: {install}"
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and not user[-1].startswith(("0", "root")), user


def test_dockerignore_lets_in_what_the_dockerfile_copies() -> None:
    """The context is a whitelist: every COPY source must be re-included, nothing else."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    included = [p[1:].rstrip("/") for p in patterns[1:] if p.startswith("!")]
    copies = re.findall(r"^COPY (?!--from)(\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert copies
    for src in copies:
        assert any(fnmatch.fnmatch(src.rstrip("/"), inc) for inc in included), src


def _entrypoint(tmp_path: Path, repo: Path, *args: str) -> str:
    """Run daemon-image/entrypoint.sh with a stand-in `autoresearch` that prints its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "autoresearch"
    fake.write_text('#!/bin/sh\necho "autoresearch $*"\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "AUTORESEARCH_REPO": str(repo)}
    proc = subprocess.run(
        ["sh", str(ROOT / "daemon-image" / "entrypoint.sh"), *args], env=env, capture_output=True, text=True, timeout=10
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_entrypoint_runs_a_repo_or_the_demo(tmp_path: Path) -> None:
    repo = tmp_path / "research"
    repo.mkdir()
    assert _entrypoint(tmp_path, repo) == f"autoresearch demo {repo}/demo"
    (repo / "autoresearch.toml").write_text('target = "train.py"\n')
    assert _entrypoint(tmp_path, repo) == f"autoresearch run {repo}"
    assert _entrypoint(tmp_path, repo, "autoresearch", "status", str(repo)) == f"autoresearch status {repo}"


@pytest.mark.docker
@pytest.mark.slow
def test_compose_up_runs_the_demo_and_stops_cleanly(daemon_image: str, tmp_path: Path) -> None:
    """`docker-compose up` with nothing set up: the demo starts in ./research/demo as the image's user,
    reaches the engine through the socket's group, trains in the Docker runner's containers, and `stop`
    (SIGTERM) ends it with exit 0."""
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose missing (.ci/ops-check.sh installs it)")
    project = f"arops{uuid.uuid4().hex[:8]}"
    (tmp_path / "research").mkdir()
    if os.geteuid() == 0:
        os.chown(tmp_path / "research", 10001, 10001)  # the image's user, as docs/operations.md says
    sock = Path("/var/run/docker.sock")
    env = {
        **os.environ,
        "PWD": str(tmp_path),
        "AUTORESEARCH_IMAGE": daemon_image,
        "DOCKER_GID": str(sock.stat().st_gid) if sock.exists() else "999",
        "AUTORESEARCH_UID": "10001" if os.geteuid() == 0 else str(os.getuid()),
        "AUTORESEARCH_GID": "10001" if os.geteuid() == 0 else str(os.getgid()),
    }
    base = ["docker-compose", "-p", project, "-f", str(ROOT / "compose.yaml")]

    def compose(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)

    try:
        up = compose("up", "-d", "--no-build", "autoresearch")
        assert up.returncode == 0, up.stderr
        container = f"{project}_autoresearch_1"
        demo = tmp_path / "research" / "demo"
        # init writes results.tsv before the loop starts.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (demo / "results.tsv").exists():
            time.sleep(1)
        assert (demo / "results.tsv").exists(), compose("logs", "--no-color").stdout
        assert docker("inspect", "-f", "{{.State.Running}}", container).stdout.strip() == "true"
        # The runs are the runner's containers, labelled with the demo repo's id (its path, same on the host).
        label = f"label=autoresearch.repo={repo_id(demo)}"
        while time.monotonic() < deadline + 120 and not docker("ps", "-aq", "--filter", label).stdout.strip():
            time.sleep(0.5)
        assert docker("ps", "-aq", "--filter", label).stdout.strip(), compose("logs", "--no-color").stdout
        ping = docker("exec", container, "python3", "-c", "import docker; print(docker.from_env().ping())")
        assert ping.stdout.strip() == "True", ping.stderr
        assert docker("exec", container, "id", "-u").stdout.strip() != "0"
        t0 = time.monotonic()
        stop = compose("stop")
        assert stop.returncode == 0, stop.stderr
        assert time.monotonic() - t0 < 30
        state = docker("inspect", "-f", "{{.State.ExitCode}}", container).stdout.strip()
        assert state == "0", compose("logs", "--no-color").stdout
    finally:
        compose("down", "--volumes", "--remove-orphans")
