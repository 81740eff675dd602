"""Configuration errors name where the bad value came from: a flag, an env variable or a TOML key."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoresearch.errors import ConfigError
from autoresearch.ops.config import load_settings
from autoresearch.ops.config_sources import Sources


@pytest.fixture(autouse=True)
def _no_outside_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("AUTORESEARCH_"):
            monkeypatch.delenv(name)


def error_of(repo: Path, **flags: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(repo, **flags)
    return str(info.value)


@pytest.mark.parametrize(("key", "value", "fragment"), [
    ("budget", -5, "Input should be greater than 0"),
    ("agent", "claude", "Input should be 'offline', 'anthropic' or 'command'"),
    ("runner", "podman", "Input should be 'process', 'docker' or 'slurm'"),
])
def test_each_source_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, value: object,
                              fragment: str) -> None:
    assert f"{key} [flag --{key}]: {fragment}" in error_of(tmp_path, **{key: value})
    monkeypatch.setenv(f"AUTORESEARCH_{key.upper()}", str(value))
    assert f"{key} [env AUTORESEARCH_{key.upper()}]: {fragment}" in error_of(tmp_path)
    monkeypatch.delenv(f"AUTORESEARCH_{key.upper()}")
    toml = tmp_path / "autoresearch.toml"
    toml.write_text(f"{key} = {value!r}\n".replace("'", '"'))
    assert f"{key} [key {key} in {toml}]: {fragment}" in error_of(tmp_path)


def test_the_winning_source_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flag overrides the env, which overrides the file: the error names the one that was used."""
    (tmp_path / "autoresearch.toml").write_text("budget = 10\n")
    monkeypatch.setenv("AUTORESEARCH_BUDGET", "20")
    message = error_of(tmp_path, budget=-1)
    assert "budget [flag --budget]" in message and "AUTORESEARCH_BUDGET" not in message
    monkeypatch.setenv("AUTORESEARCH_BUDGET", "-2")
    assert "budget [env AUTORESEARCH_BUDGET]" in error_of(tmp_path)


def test_nested_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "autoresearch.toml"
    toml.write_text("[docker]\nmemroy = \"1g\"\n[anthropic]\nthinking_budget = 5\n")
    message = error_of(tmp_path, limits={"max_experiments": 0})
    assert f"docker.memroy [key docker.memroy in {toml}]: Extra inputs are not permitted (got '1g')" in message
    assert f"anthropic.thinking_budget [key anthropic.thinking_budget in {toml}]: must be 0 (off)" in message
    assert "limits.max_experiments [flag --max-experiments]" in message
    toml.unlink()
    monkeypatch.setenv("AUTORESEARCH_DOCKER__PIDS_LIMIT", "3")
    assert "docker.pids_limit [env AUTORESEARCH_DOCKER__PIDS_LIMIT]" in error_of(tmp_path)
    monkeypatch.delenv("AUTORESEARCH_DOCKER__PIDS_LIMIT")
    monkeypatch.setenv("AUTORESEARCH_DOCKER", '{"pids_limit": 3}')  # a whole table as JSON
    assert "docker.pids_limit [env AUTORESEARCH_DOCKER]" in error_of(tmp_path)
    monkeypatch.setenv("AUTORESEARCH_DOCKER", "not json")
    assert 'field "docker" from source "EnvSettingsSource"' in error_of(tmp_path)


def test_cross_field_checks_name_a_field(tmp_path: Path) -> None:
    message = error_of(tmp_path, readonly=["train.py"])
    assert "readonly [flag --readonly]: the target 'train.py' cannot also be read-only" in message
    assert "metric [flag --metric]: must be a name without spaces or ':'" in error_of(tmp_path, metric="val bpb")


def test_source_of_and_is_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "autoresearch.toml").write_text('metric = "val_loss"\n[docker]\nimage = "x:1"\n')
    monkeypatch.setenv("AUTORESEARCH_BUDGET", "7")
    settings = load_settings(tmp_path, runner="process")
    assert settings.source_of("runner") == "flag --runner" and settings.is_set("runner")
    assert settings.source_of("budget") == "env AUTORESEARCH_BUDGET"
    assert settings.source_of("metric") == f"key metric in {tmp_path / 'autoresearch.toml'}"
    assert settings.source_of("docker", "image") == f"key docker.image in {tmp_path / 'autoresearch.toml'}"
    assert settings.source_of("agent") == "default of agent" and not settings.is_set("agent")


def test_env_names_are_case_insensitive(tmp_path: Path) -> None:
    """As pydantic-settings reads them; the message keeps the variable's own spelling."""
    sources = Sources.read(tmp_path / "autoresearch.toml", {}, {"autoresearch_Docker__IMAGE": "x", "HOME": "/"})
    assert sources.of(("docker", "image")) == "env autoresearch_Docker__IMAGE"
    assert sources.of(("docker", "user")) == "default of docker.user"
    assert sources.of(()) == "the combination of settings"
