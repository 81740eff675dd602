"""Where each configuration value came from: a flag, an ``AUTORESEARCH_*`` variable, a key of
``autoresearch.toml``, or the default. Error messages name it, so the user fixes the right place."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "AUTORESEARCH_"
ENV_NESTING = "__"

Loc = Sequence[str | int]


@dataclass(frozen=True)
class Sources:
    """The raw layers, highest priority first: flags, environment, TOML file."""

    flags: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[tuple[str, ...], str] = field(default_factory=dict)  # ("docker", "image") -> the variable's name
    toml: Mapping[str, Any] = field(default_factory=dict)
    toml_path: Path | None = None
    toml_label: str | None = None
    """How messages name the TOML file when it is not the user's (the session branch's committed one)."""

    @classmethod
    def read(cls, toml_path: Path, flags: Mapping[str, Any], environ: Mapping[str, str] | None = None,
             label: str | None = None) -> Sources:
        return cls(flags=flags, env=_env_names(os.environ if environ is None else environ),
                   toml=_toml_tree(toml_path), toml_path=toml_path, toml_label=label)

    def of(self, loc: Loc) -> str:
        """``flag --budget``, ``env AUTORESEARCH_BUDGET``, ``key budget in <path>`` or ``default of budget``."""
        keys = [p for p in loc if isinstance(p, str)]  # list indices name no source of their own
        if not keys:
            return "the combination of settings"
        depth = _provided(self.flags, keys)
        if depth:
            return "flag --" + keys[depth - 1].replace("_", "-")
        for depth in range(len(keys), 0, -1):
            name = self.env.get(tuple(keys[:depth]))
            if name is not None:
                return f"env {name}"
        depth = _provided(self.toml, keys)
        if depth:
            return f"key {'.'.join(keys[:depth])} in {self.toml_label or self.toml_path}"
        return f"default of {'.'.join(keys)}"

    def given(self, loc: Loc) -> bool:
        return not self.of(loc).startswith("default of ")


def _provided(tree: Mapping[str, Any], keys: list[str]) -> int:
    """How deep ``tree`` goes along ``keys`` before a value (not a table) stands: 0 if it lacks them."""
    node: Any = tree
    for depth, key in enumerate(keys, start=1):
        if not isinstance(node, Mapping) or key not in node:
            return 0
        node = node[key]
        if not isinstance(node, Mapping):
            return depth  # the whole subtree below came from this value
    return len(keys)


def _env_names(environ: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """``AUTORESEARCH_DOCKER__IMAGE`` -> {("docker", "image"): "AUTORESEARCH_DOCKER__IMAGE"} (case-insensitive,
    like pydantic-settings)."""
    return {tuple(p.lower() for p in name[len(ENV_PREFIX):].split(ENV_NESTING)): name
            for name in environ if name.upper().startswith(ENV_PREFIX)}


def _toml_tree(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # missing or unreadable: loading the settings reports the latter itself
