"""Strict environment: an ``AUTORESEARCH_*`` variable must name a setting (or be one of the few names the
project uses for something else), so ``AUTORESEARCH_BUDGTE=5`` is an error, not a silent default.

Valid setting names are derived from the settings model (fields, nested sections with ``__``, anything
below a dict field), so a setting added to ``config.py`` is valid here without a second list."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from autoresearch.errors import ConfigError
from autoresearch.ops.config_sources import ENV_NESTING, ENV_PREFIX

NOT_SETTINGS: dict[str, str] = {
    # Set by the daemon for the commands it runs (a daemon started from inside one must not trip on them).
    "AUTORESEARCH_TIME_BUDGET": "the training budget, given to each run",
    "AUTORESEARCH_CACHE": "the data folder, given to prepare and runs",
    "AUTORESEARCH_OUTPUT": "a run's output folder",
    "AUTORESEARCH_SEED": "a run's seed",
    "AUTORESEARCH_RUN_OWNER": "the process runner's mark on its runs",
    "AUTORESEARCH_RUN_INSTANCE": "the process runner's mark on its runs",
    "AUTORESEARCH_RUN_LANE": "the process runner's mark on its runs",
    "AUTORESEARCH_CONTEXT": "the command agent's context file",
    "AUTORESEARCH_DESCRIPTION_FILE": "the command agent's description file",
    "AUTORESEARCH_NOTES_FILE": "the command agent's notes file",
    # Read by the project's own files: the daemon image, compose.yaml, CI and the tests.
    "AUTORESEARCH_REPO": "the research folder of the daemon image (Dockerfile, compose.yaml)",
    "AUTORESEARCH_IMAGE": "compose.yaml: the daemon image",
    "AUTORESEARCH_BASE_IMAGE": "compose.yaml: the daemon image's base",
    "AUTORESEARCH_ENV_FILE": "compose.yaml: the env file given to the daemon",
    "AUTORESEARCH_UID": "compose.yaml: the daemon's user",
    "AUTORESEARCH_GID": "compose.yaml: the daemon's group",
    "AUTORESEARCH_GPUS": "compose.yaml: GPUs for the runner's containers",
    "AUTORESEARCH_HTTP_PORT": "compose.yaml: the host port (on 127.0.0.1) the dashboard is published on",
    "AUTORESEARCH_REQUIRE_DOCKER": "CI: Docker tests fail instead of skipping",
    "AUTORESEARCH_REQUIRE_SLURM": "CI: Slurm tests fail instead of skipping",
    "AUTORESEARCH_DAEMON_IMAGE": "CI and ops tests: the daemon image to reuse",
    "AUTORESEARCH_TEST_IMAGE": "tests: the runner image to test",
    "AUTORESEARCH_EXPECT_CPU": "scripts/device-check.sh: a CPU-only run is expected",
    "AUTORESEARCH_DAEMON_PID": "tests: the hostile harness's daemon pid",
    "AUTORESEARCH_CREDS": "tests: the hostile harness's credentials folder",
    "AUTORESEARCH_DASHBOARD_SCREENSHOT": "tests: where the browser test saves the dashboard's screenshot",
}
"""``AUTORESEARCH_*`` names that are not settings, and who uses each (docs/operations.md lists them).
``AUTORESEARCH_EVAL_DATA`` and ``AUTORESEARCH_TARGET``, also given to runs and agents, are settings too."""


def setting_names(model: type[BaseModel]) -> list[str]:
    """Every variable name that sets something: ``AUTORESEARCH_BUDGET``, ``AUTORESEARCH_DOCKER`` (a whole
    table as JSON), ``AUTORESEARCH_DOCKER__IMAGE``, ..."""
    return sorted(ENV_PREFIX + ENV_NESTING.join(path).upper() for path, _ in _paths(model, ()))


def _paths(model: type[BaseModel], prefix: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], bool]]:
    """(path, open) for each field, recursively; ``open`` marks a dict field (any key below it is valid)."""
    for name, field in model.model_fields.items():
        path = (*prefix, name)
        section = _model_of(field.annotation)
        yield path, get_origin(field.annotation) is dict
        if section is not None:
            yield from _paths(section, path)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def unknown_variables(model: type[BaseModel], environ: Mapping[str, str]) -> list[str]:
    """The ``AUTORESEARCH_*`` names in ``environ`` that set nothing (case-insensitive, as the settings read them)."""
    exact = set(setting_names(model)) | set(NOT_SETTINGS)
    open_ = [ENV_PREFIX + ENV_NESTING.join(p).upper() + ENV_NESTING for p, is_open in _paths(model, ()) if is_open]
    return sorted(name for name in environ if name.upper().startswith(ENV_PREFIX)
                  and name.upper() not in exact and not name.upper().startswith(tuple(open_)))


def check_environment(model: type[BaseModel], environ: Mapping[str, str]) -> None:
    """Raise ConfigError (exit 2) naming each unknown variable and the closest valid name."""
    unknown = unknown_variables(model, environ)
    if not unknown:
        return
    valid = setting_names(model)
    lines = []
    for name in unknown:
        # Compare what follows the prefix: the shared prefix would make every name look close.
        close = difflib.get_close_matches(name.upper()[len(ENV_PREFIX):], [v[len(ENV_PREFIX):] for v in valid],
                                          n=1, cutoff=0.6)
        hint = (f"; did you mean {ENV_PREFIX}{close[0]}?" if close
                else f"; the settings are {ENV_PREFIX}<KEY> and {ENV_PREFIX}<TABLE>__<KEY>")
        lines.append(f"  {name}: no setting has this name{hint}")
    raise ConfigError("unknown environment variable" + ("s" if len(unknown) > 1 else "") + ":\n" + "\n".join(lines)
                      + "\n(unset it; docs/operations.md lists the settings and the few other AUTORESEARCH_* names)")
