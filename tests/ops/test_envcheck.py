"""Strict environment (issue 16, item 4): an AUTORESEARCH_* variable that names no setting is an error
naming it and the closest valid name; the names the project uses for other things are allowed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from autoresearch.errors import ConfigError
from autoresearch.ops.config import Settings, load_settings
from autoresearch.ops.envcheck import NOT_SETTINGS, check_environment, setting_names, unknown_variables
from tests.conftest import cli

ROOT = Path(__file__).resolve().parents[2]
TYPOS = {"AUTORESEARCH_BUDGTE"}  # the docs' example of a mistake (this file's own mistakes are not read)


def test_a_typo_in_run_exits_2_naming_it_and_the_closest_name(initialised: Path) -> None:
    repo = initialised
    before = (repo / "results.tsv").read_text()
    result = cli("run", str(repo), "--max-experiments", "1", env={"AUTORESEARCH_BUDGTE": "5"})
    assert result.returncode == 2, result.stderr
    assert "AUTORESEARCH_BUDGTE: no setting has this name; did you mean AUTORESEARCH_BUDGET?" in result.stderr
    assert "Traceback" not in result.stderr
    assert (repo / "results.tsv").read_text() == before, "nothing ran"


@pytest.mark.parametrize(("name", "hint"), [
    ("AUTORESEARCH_DOCKER__IMAG", "did you mean AUTORESEARCH_DOCKER__IMAGE?"),
    ("AUTORESEARCH_LIMITS__MAX_EXPERIMENT", "did you mean AUTORESEARCH_LIMITS__MAX_EXPERIMENTS?"),
    ("autoresearch_budgte", "did you mean AUTORESEARCH_BUDGET?"),  # read case-insensitively, checked so too
    ("AUTORESEARCH_ZZZZ", "the settings are AUTORESEARCH_<KEY> and AUTORESEARCH_<TABLE>__<KEY>"),
])
def test_nested_and_far_off_names(name: str, hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_environment(Settings, {name: "1", "PATH": "/bin"})
    assert f"{name}: no setting has this name; {hint}" in str(info.value)


def test_valid_names_pass() -> None:
    environ = {"AUTORESEARCH_BUDGET": "5", "autoresearch_metric": "loss", "AUTORESEARCH_DOCKER": "{}",
               "AUTORESEARCH_DOCKER__ENV__LD_LIBRARY_PATH": "/x",  # a key of a dict setting
               "AUTORESEARCH_ANTHROPIC__PRICES__MY_MODEL__INPUT": "1",
               "AUTORESEARCH_LIMITS__MAX_EXPERIMENTS": "3", **dict.fromkeys(NOT_SETTINGS, "1")}
    assert unknown_variables(Settings, environ) == []


def test_names_follow_the_settings_model() -> None:
    names = setting_names(Settings)
    for field in Settings.model_fields:
        assert f"AUTORESEARCH_{field.upper()}" in names
    assert "AUTORESEARCH_NOISE__REPEATS" in names and "AUTORESEARCH_NOISE__REPEATS__X" not in names
    assert not set(NOT_SETTINGS) & set(names), "an allow-listed name became a setting: drop it from NOT_SETTINGS"


def test_load_settings_refuses_a_typo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTORESEARCH_GRACEE", "3")
    with pytest.raises(ConfigError,
                       match=r"AUTORESEARCH_GRACEE: no setting has this name; did you mean AUTORESEARCH_GRACE\?"):
        load_settings(tmp_path)


def test_every_name_the_project_uses_is_a_setting_or_allow_listed() -> None:
    """grep the tracked files (package, tests, CI, scripts, compose, systemd, Dockerfile, docs): a new
    AUTORESEARCH_* name that is not a setting must join NOT_SETTINGS, or the daemon would refuse it."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    used: dict[str, str] = {}
    for name in files:
        if name == "tests/ops/test_envcheck.py":
            continue
        try:
            text = (ROOT / name).read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for var in re.findall(r"\bAUTORESEARCH_[A-Z0-9_]*[A-Z0-9]\b", text):
            used.setdefault(var, name)
    assert len(used) > 20, "the grep found too little to mean anything"
    unknown = set(unknown_variables(Settings, dict.fromkeys(used, ""))) - TYPOS
    assert not unknown, {name: used[name] for name in unknown}


def test_the_allow_list_is_documented() -> None:
    docs = (ROOT / "docs" / "operations.md").read_text()
    missing = [name for name in NOT_SETTINGS if f"`{name}`" not in docs]
    assert not missing, f"docs/operations.md does not list {missing}"
