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

from autoresearch.cli.commands import repo_id
from tests.ops.conftest import ROOT, docker, unavailable
from tests.subprocs import reaped

try:
    import yaml
except ImportError:  # comes with docker-compose, and with the dev extra
    yaml = None


def compose_config(cwd: Path = ROOT, **env: str) -> dict:
    if shutil.which("docker-compose") is None or yaml is None:
        unavailable("docker-compose or pyyaml missing (.ci/ops-check.sh installs docker-compose)")
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


def readme_compose_line() -> str:
    """The README's compose command, as written (the line that runs scripts/compose-up.sh)."""
    lines = [line for line in (ROOT / "README.md").read_text().splitlines() if "compose-up.sh" in line]
    assert len(lines) == 1, lines
    return lines[0].split("#")[0].strip()


def test_the_readme_line_builds_what_the_demo_needs() -> None:
    """From a clean clone the runner image (the demo trains in it) and the daemon image must be built first."""
    assert readme_compose_line() == "scripts/compose-up.sh"
    script = (ROOT / "scripts" / "compose-up.sh").read_text()
    assert "runner-image/build-local.sh" in script and "scripts/build-daemon-image.sh" in script
    assert re.search(r'up --no-build "\$@"', script), "compose must not build the image itself (no network there)"


@pytest.mark.docker
@pytest.mark.slow
def test_compose_up_runs_the_demo_and_stops_cleanly(engine: None, tmp_path: Path) -> None:
    """The README's line in a clean export of this commit, as root would run it: both images are built (the
    runner image is reused when present), `up` starts the demo in ./research/demo as the image's user, it
    reaches the engine through the socket's group and trains in the Docker runner's containers, and `stop`
    (SIGTERM) ends it with exit 0. The daemon image gets a throwaway tag (AUTORESEARCH_IMAGE), removed after."""
    if shutil.which("docker-compose") is None:
        unavailable("docker-compose missing (.ci/ops-check.sh installs it)")
    project = f"arops{uuid.uuid4().hex[:8]}"
    clone = tmp_path / "clone"
    clone.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(clone)], input=archive, check=True)
    image = f"autoresearch-compose-test:{project}"
    env = {**os.environ, "PWD": str(clone), "COMPOSE_PROJECT_NAME": project, "AUTORESEARCH_IMAGE": image}
    for name in ("AUTORESEARCH_UID", "AUTORESEARCH_GID", "DOCKER_GID"):
        env.pop(name, None)  # the script's defaults, as for a newcomer
    base = ["docker-compose", "-p", project, "-f", str(clone / "compose.yaml")]

    def compose(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *args], cwd=clone, env=env, capture_output=True, text=True, timeout=timeout)

    log = tmp_path / "up.log"
    try:
        with log.open("w") as out, reaped(subprocess.Popen(["bash", "-c", readme_compose_line()], cwd=clone, env=env,
                                                           stdout=out, stderr=subprocess.STDOUT)) as up:
            demo = clone / "research" / "demo"
            deadline = time.monotonic() + 900  # the image build, then init writes results.tsv before the loop
            while time.monotonic() < deadline and not (demo / "results.tsv").exists():
                assert up.poll() is None, log.read_text()[-3000:]
                time.sleep(1)
            assert (demo / "results.tsv").exists(), log.read_text()[-3000:]
            if os.geteuid() == 0:
                assert (clone / "research").stat().st_uid == 10001, "the script hands ./research to the image's user"
            container = f"{project}_autoresearch_1"
            assert docker("inspect", "-f", "{{.State.Running}}", container).stdout.strip() == "true"
            # The runs are the runner's containers, labelled with the demo repo's id (its path, same on the host).
            label = f"label=autoresearch.repo={repo_id(demo)}"
            while time.monotonic() < deadline + 120 and not docker("ps", "-aq", "--filter", label).stdout.strip():
                time.sleep(0.5)
            assert docker("ps", "-aq", "--filter", label).stdout.strip(), log.read_text()[-3000:]
            ping = docker("exec", container, "python3", "-c", "import docker; print(docker.from_env().ping())")
            assert ping.stdout.strip() == "True", ping.stderr
            assert docker("exec", container, "id", "-u").stdout.strip() != "0"
            t0 = time.monotonic()
            stop = compose("stop")
            assert stop.returncode == 0, stop.stderr
            assert time.monotonic() - t0 < 30
            state = docker("inspect", "-f", "{{.State.ExitCode}}", container).stdout.strip()
            assert state == "0", log.read_text()[-3000:]
            assert up.wait(timeout=60) == 0, "the foreground `up` ends when its service stops"
    finally:
        compose("down", "--volumes", "--remove-orphans")
        docker("rmi", image, check=False)
