"""The session's home and the repo's own environment inside a run, for both runners.

``HOME`` in every run is the session's persistent home (``.git/autoresearch/home`` on the host, at
``/home/autoresearch`` inside). setup and prepare see it read-write (downloads, data, hub caches land
there). Training, evaluation and checks must not change it, yet compile caches under ``~`` must work:
they get a throwaway per-run layer, a fresh host folder holding the home's directory tree with every
file a symlink into the persistent home, which is mounted read-only beside it (``HOME_BASE``). A run can
create, replace and delete entries anywhere under ``~``; writing into a file of the persistent home fails
(read-only); everything it wrote goes with the layer. (bubblewrap 0.8 has no overlays, nor has Docker
for binds.) Large stores only tools write (uv's cache and Pythons) are one symlink each, not mirrored.

The repo's environment (built by ``setup``, kept in ``.git/autoresearch/env``) is at ``/workspace/.venv``
in every run, so the venv's absolute paths are the same where setup built it and where runs use it, and
``uv run``, ``.venv/bin/python`` and ``python`` (its ``bin`` first on PATH) all resolve to it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from autoresearch.errors import RunnerError

if TYPE_CHECKING:
    from autoresearch.runners.base import RunKind, RunSpec

HOME = "/home/autoresearch"
HOME_BASE = "/home/.autoresearch-home"
"""The persistent home, read-only, under a run's throwaway layer (the layer's symlinks point here)."""
ENV = "/workspace/.venv"
UV_DIR = "/opt/autoresearch/bin"
"""Where the bubblewrap runner binds the host's uv (the runner image has its own on PATH)."""
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
ONLINE: tuple[RunKind, ...] = ("setup", "prepare")
"""Kinds that run with the network and write the persistent home (user-written commands, not agent code)."""
WHOLE = frozenset({".cache/uv", ".local/share/uv"})
"""Subtrees of the home a run sees as one read-only symlink (thousands of files no run needs to write)."""
OFFLINE_ENV = {
    # uv run must neither sync nor download inside a run (no network; the environment is read-only).
    "UV_NO_SYNC": "1", "UV_FROZEN": "1", "UV_OFFLINE": "1", "UV_PYTHON_DOWNLOADS": "never",
    "UV_CACHE_DIR": "/tmp/uv-cache",
    # Hub downloads made by setup or prepare are found in HF_HOME without the network.
    "HF_HUB_OFFLINE": "1",
}


def writes_home(kind: RunKind) -> bool:
    return kind in ONLINE


def session_environment(spec: RunSpec) -> dict[str, str]:
    """HOME and the variables that point uv, pip, Hugging Face and XDG tools at the session's home and
    the repo's environment; offline settings for runs that have no network."""
    env: dict[str, str] = {}
    if spec.home is not None:
        env.update(HOME=HOME, XDG_CACHE_HOME=f"{HOME}/.cache", HF_HOME=f"{HOME}/.cache/huggingface",
                   UV_CACHE_DIR=f"{HOME}/.cache/uv")
    if spec.env_dir is not None:
        # Cache and environment are separate mounts: hard links across them fail, so uv copies at once.
        env.update(UV_PROJECT_ENVIRONMENT=ENV, UV_LINK_MODE="copy")
    if spec.kind in ONLINE:
        if Path(CA_BUNDLE).is_file():
            env["SSL_CERT_FILE"] = CA_BUNDLE  # uv's own roots do not know a site's proxy CA; the host's do
        if spec.kind == "prepare":
            env.update(UV_NO_SYNC="1", UV_FROZEN="1")  # prepare sees the environment read-only
    else:
        env.update(OFFLINE_ENV)
    return env


def search_path(spec: RunSpec, default: str, uv_dir: str | None = None) -> str:
    """PATH inside: the repo's environment first when it has one (the daemon's interpreter never comes
    first then), else ``default``; the bound uv's folder last."""
    parts = [f"{ENV}/bin", *system_path(default)] if spec.env_dir is not None else [default]
    return ":".join(parts + ([uv_dir] if uv_dir else []))


def system_path(default: str) -> list[str]:
    """``default`` without the daemon's own interpreter folder (anything outside the system's bin dirs)."""
    keep = [p for p in default.split(":") if p.startswith(("/usr/", "/bin", "/sbin", "/opt/conda"))]
    return keep or ["/usr/local/bin", "/usr/bin", "/bin"]


def find_uv() -> Path | None:
    """The host's uv binary (a pyenv or asdf shim is a script that cannot run alone in a sandbox)."""
    candidates: list[str] = []
    with contextlib.suppress(ImportError, FileNotFoundError):
        import uv  # the uv wheel knows where its binary is

        candidates.append(uv.find_uv_bin())
    found = shutil.which("uv")
    if found:
        candidates.append(found)
    for candidate in candidates:
        path = Path(candidate).resolve()
        with contextlib.suppress(OSError), path.open("rb") as fh:
            if fh.read(4) == b"\x7fELF":
                return path
    return None


def mount_point(root: Path) -> None:
    """The environment's mount point in the run's snapshot (made on the host: the snapshot is read-only inside)."""
    point = root / ".venv"
    if point.is_symlink() or (point.exists() and not point.is_dir()):
        raise RunnerError(f"the commit has a .venv that is not a folder ({point}); the repo's environment "
                          "is mounted there: remove it from the repo")
    point.mkdir(exist_ok=True)


@contextlib.contextmanager
def run_home(spec: RunSpec) -> Iterator[Path | None]:
    """The host folder mounted read-write at HOME: the persistent home for setup and prepare, else a
    fresh layer over it (removed after the run); None when the run has no session home."""
    if spec.home is None:
        yield None
        return
    spec.home.mkdir(parents=True, exist_ok=True)
    if writes_home(spec.kind):
        yield spec.home
        return
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    layer = Path(tempfile.mkdtemp(prefix=f".home-{spec.kind}-", dir=spec.log_path.parent))
    try:
        layer.chmod(0o755)
        build_layer(spec.home, layer)
        yield layer
    finally:
        shutil.rmtree(layer, ignore_errors=True)


def build_layer(home: Path, layer: Path) -> None:
    """``home``'s directory tree under ``layer``, each file (and each ``WHOLE`` subtree or symlink) a
    symlink to its place under ``HOME_BASE``."""
    for dirpath, dirnames, filenames in os.walk(home):
        rel = Path(dirpath).relative_to(home)
        (layer / rel).mkdir(exist_ok=True)
        descend = []
        for name in dirnames:
            inner = (rel / name).as_posix()
            if inner in WHOLE or (Path(dirpath) / name).is_symlink():
                (layer / inner).symlink_to(f"{HOME_BASE}/{inner}")
            else:
                descend.append(name)
        dirnames[:] = descend
        for name in filenames:
            inner = (rel / name).as_posix()
            (layer / inner).symlink_to(f"{HOME_BASE}/{inner}")


def sweep_layers(state_dir: Path) -> int:
    """Remove the per-run layers a killed daemon left (``kill -9`` skips their removal); call only when no
    run of this repo is live (the loop's start, after reaping orphans, under the daemon lock)."""
    stale = [*state_dir.glob("runs/.home-*"), *state_dir.glob("runs/*/.home-*")]
    for layer in stale:
        shutil.rmtree(layer, ignore_errors=True)
    return len(stale)
