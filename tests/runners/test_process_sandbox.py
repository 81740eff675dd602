"""The process sandbox's shape (pure): mounts per run kind, the environment allow-list, the GPU choice."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from autoresearch.ops.config import ProcessSettings
from autoresearch.runners.base import RunSpec
from autoresearch.runners.bwrap import Sandbox
from autoresearch.runners.environment import allowed_environment
from autoresearch.runners.process_sandbox import run_sandbox
from tests.runners.process_helpers import make_spec


def _box(spec: RunSpec, settings: ProcessSettings, host: dict[str, str] | None = None, kind: str = "train") -> Sandbox:
    assert spec.snapshot is not None
    return run_sandbox(dataclasses.replace(spec, kind=kind), spec.snapshot, settings, host or {})  # type: ignore[arg-type]


def _binds(box: Sandbox) -> dict[str, bool]:
    return {b.dest: b.writable for b in box.binds}


def test_mounts_follow_the_run_kind(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "print(1)\n", output_dir=tmp_path / "out", cache_dir=tmp_path / "cache",
                     eval_data=tmp_path / "eval")
    settings = ProcessSettings(gpus="none")
    train = _box(spec, settings)
    assert _binds(train)["/workspace"] is False and _binds(train)["/workspace/train.py"] is True
    assert _binds(train)["/output"] is True and _binds(train)["/cache"] is False and "/eval" not in _binds(train)
    assert _binds(_box(spec, settings, kind="prepare"))["/cache"] is True
    evaluate = _box(spec, settings, kind="evaluate")
    assert _binds(evaluate)["/output"] is False and _binds(evaluate)["/eval"] is False
    assert evaluate.env["AUTORESEARCH_EVAL_DATA"] == "/eval" and "AUTORESEARCH_EVAL_DATA" not in train.env


def test_environment_is_the_allow_list_without_secrets(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "print(1)\n")
    host = {"PYTHONHASHSEED": "0", "HOME": "/root", "GITHUB_TOKEN": "t", "OPENAI_API_KEY": "k", "LANG": "C"}
    settings = ProcessSettings(gpus=["1", "3"], env_allow=["PYTHONHASHSEED", "GITHUB_TOKEN"], env={"MY_SECRET": "s"})
    env = _box(spec, settings, host).env
    assert env["PYTHONHASHSEED"] == "0" and env["HOME"] == "/tmp" and env["CUDA_VISIBLE_DEVICES"] == "1,3"
    assert not {"GITHUB_TOKEN", "OPENAI_API_KEY", "LANG", "MY_SECRET"} & env.keys()
    none = _box(spec, ProcessSettings(gpus="none"), host)
    assert none.env["CUDA_VISIBLE_DEVICES"] == "" and none.devices == ()
    kept = allowed_environment({}, {"ANTHROPIC_API_KEY": "k"}, ["ANTHROPIC_API_KEY"], drop_secrets=False)
    assert kept == {"ANTHROPIC_API_KEY": "k"}
