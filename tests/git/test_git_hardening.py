"""Hostile suite, "a git hook planted in .git": nothing written inside .git makes the daemon's git run code.

Each planted program (hooks, an fsmonitor, a filter driver, an external diff, a pager) touches a
marker file. A control repo with the same plants proves they fire under plain git; the daemon's
workspace, its command agent's scratch checkout and a whole ``autoresearch run`` must fire none.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from autoresearch.agents.scratch import changed_paths, manifest, scratch_checkout
from autoresearch.git import cmd as gitcmd
from autoresearch.git.workspace import GitWorkspace
from autoresearch.ops.config import CommandAgentSettings
from tests.conftest import FAST_TRAIN, cli, git, make_repo

HOOKS = (
    "reference-transaction", "post-checkout", "pre-commit", "post-commit", "post-index-change",
    "pre-auto-gc", "post-rewrite", "pre-push",
)  # fmt: skip
SECRETS = {
    "ANTHROPIC_API_KEY": "sk-ant-hardening-0123456789",
    "OPENAI_API_KEY": "sk-openai-hardening-0123456789",
    "GITHUB_TOKEN": "ghp_hardening0123456789",
    "AWS_SECRET_ACCESS_KEY": "aws-hardening-0123456789",
    "DB_PASSWORD": "pw-hardening-0123456789",
}


def _script(path: Path, body: str) -> str:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


def plant(repo: Path, markers: Path, *, hooks_path: bool) -> None:
    """What a hostile run with write access to .git would leave behind (the markers folder must exist)."""
    tools = repo.parent / "planted"
    tools.mkdir(exist_ok=True)
    folder = tools / "hooks" if hooks_path else repo / ".git" / "hooks"
    folder.mkdir(parents=True, exist_ok=True)
    for hook in HOOKS:
        _script(folder / hook, f"touch {markers}/hook-{hook}")
    fsmonitor = _script(tools / "fsmonitor", f"touch {markers}/fsmonitor; exit 1")
    filt = _script(tools / "filter", f'touch {markers}/filter-"$1"; cat')
    ext = _script(tools / "ext", f"touch {markers}/ext-diff-or-pager; cat >/dev/null; exit 0")
    config = [
        "[core]",
        f"\tfsmonitor = {fsmonitor}",
        f"\tpager = {ext}",
        f"\tsshCommand = {ext}",
        *([f"\thooksPath = {folder}"] if hooks_path else []),
        "[diff]",
        f"\texternal = {ext}",
        '[diff "evil"]',
        f"\ttextconv = {ext}",
        '[filter "evil"]',
        f"\tclean = {filt} clean",
        f"\tsmudge = {filt} smudge",
        "\trequired = true",
        '[filter "a.b"]',  # a dotted driver name
        f"\tclean = {filt} dotted-clean",
        f"\tsmudge = {filt} dotted-smudge",
        "\trequired = true",
    ]
    with (repo / ".git" / "config").open("a") as fh:
        fh.write("\n".join(config) + "\n")
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "attributes").write_text("* filter=evil diff=evil\nprepare.py filter=a.b\n")
    (repo / ".gitattributes").write_text("*.py filter=evil\n")  # untracked, as a run would leave it


def fired(markers: Path) -> list[str]:
    return sorted(p.name for p in markers.iterdir())


def workspace_operations(repo: Path) -> None:
    """Every operation of the daemon's Workspace, in the order the loop uses them."""
    ws = GitWorkspace.open(repo)
    base = ws.head()
    assert ws.current_branch() == "main" and ws.dirty_files() == []
    ws.create_branch("autoresearch/h")
    assert ws.branch_sha("autoresearch/h") == base
    sha = ws.commit_file(base, "train.py", FAST_TRAIN.replace("LR = 0.5", "LR = 0.4"), "lr 0.4", "2026-01-01T00:00:00Z")
    ws.set_ref("refs/autoresearch/h/1", sha)
    assert ws.read(sha, "train.py").startswith("import os") and ws.changed_paths(base, sha) == ["train.py"]
    ws.export(sha, repo.parent / "snapshot")
    assert (repo.parent / "snapshot" / "train.py").read_text() == ws.read(sha, "train.py")
    ws.reset_hard(base)
    ws.checkout("main")
    ws.exclude("results.tsv")
    assert ws.state_dir() == repo / ".git" / "autoresearch"
    ws.close()


@pytest.fixture
def markers(tmp_path: Path) -> Path:
    path = tmp_path / "markers"
    path.mkdir()
    return path


@pytest.mark.parametrize("hooks_path", [False, True], ids=["dot-git-hooks", "core-hooksPath"])
def test_planted_programs_fire_under_plain_git(tmp_path: Path, markers: Path, hooks_path: bool) -> None:
    """The control: every plant is live, so the daemon's clean record below means something."""
    repo = make_repo(tmp_path / "control")
    plant(repo, markers, hooks_path=hooks_path)
    git(repo, "status")
    git(repo, "update-ref", "refs/heads/other", "HEAD")
    (repo / "train.py").write_text(FAST_TRAIN + "# touched\n")
    (repo / "prepare.py").write_text("# touched\n")
    git(repo, "add", "train.py", "prepare.py")
    git(repo, "diff", "--cached")
    git(repo, "commit", "-q", "-m", "touched")
    git(repo, "checkout", "-q", "other")
    assert {"fsmonitor", "filter-clean", "filter-smudge", "filter-dotted-clean", "filter-dotted-smudge",
            "ext-diff-or-pager"} <= set(fired(markers))  # fmt: skip
    assert {"hook-reference-transaction", "hook-post-checkout", "hook-pre-commit", "hook-post-commit"} <= set(
        fired(markers)
    )


@pytest.mark.parametrize("hooks_path", [False, True], ids=["dot-git-hooks", "core-hooksPath"])
def test_workspace_runs_no_planted_program(tmp_path: Path, markers: Path, hooks_path: bool) -> None:
    repo = make_repo(tmp_path / "research")
    plant(repo, markers, hooks_path=hooks_path)
    workspace_operations(repo)
    assert fired(markers) == []


def test_scratch_checkout_runs_no_planted_program(tmp_path: Path, markers: Path) -> None:
    repo = make_repo(tmp_path / "research")
    plant(repo, markers, hooks_path=True)
    with scratch_checkout(repo, git(repo, "rev-parse", "HEAD"), "1") as (tree, _work):
        before = manifest(tree)
        (tree / "train.py").write_text(FAST_TRAIN + "# edited\n")
        assert changed_paths(before, tree) == ["train.py"]
    assert fired(markers) == []


def test_planted_core_worktree_cannot_redirect_a_reset(tmp_path: Path) -> None:
    """``reset --hard`` under a planted ``core.worktree`` would write (and delete) files elsewhere."""
    repo = make_repo(tmp_path / "research")
    decoy, control = tmp_path / "decoy", tmp_path / "control-decoy"
    decoy.mkdir()
    control.mkdir()
    control_repo = tmp_path / "control"
    shutil.copytree(repo, control_repo)
    git(control_repo, "config", "core.worktree", str(control))
    git(control_repo, "reset", "-q", "--hard", "HEAD")
    assert (control / "train.py").exists()  # the attack works on plain git
    git(repo, "config", "core.worktree", str(decoy))
    ws = GitWorkspace.open(repo)
    sha = ws.commit_file(ws.head(), "train.py", "LR = 0.3\n", "lr", "2026-01-01T00:00:00Z")
    ws.reset_hard(sha)
    assert list(decoy.iterdir()) == []
    assert (repo / "train.py").read_text() == "LR = 0.3\n"


HOSTILE_TRAIN = FAST_TRAIN + """
# A hostile run: plant a hook and a filter in the research repo's .git (works without a sandbox).
from pathlib import Path
try:
    hook = Path({hooks!r}) / "reference-transaction"
    hook.write_text("#!/bin/sh\\ntouch {markers}/from-run\\n")
    hook.chmod(0o755)
    with open({config!r}, "a") as fh:
        fh.write("[core]\\n\\tfsmonitor = " + str(hook) + "\\n")
except OSError as exc:
    print("could not plant:", exc)
"""


def _git_spy(folder: Path, log: Path) -> Path:
    """A ``git`` first on PATH that records each call's argv and environment, then runs the real git."""
    folder.mkdir()
    real = shutil.which("git")
    assert real is not None
    _script(folder / "git", f'{{ printf "%s\\n" "ARGV $*"; env | sed "s/^/ENV /"; }} >> {log}\nexec {real} "$@"')
    return folder


def test_daemon_loop_runs_no_planted_program_and_gives_git_no_secret(tmp_path: Path, markers: Path) -> None:
    """``autoresearch run`` (process runner) over a repo whose .git a run keeps planting into."""
    repo = tmp_path / "research"
    train = HOSTILE_TRAIN.format(hooks=str(repo / ".git" / "hooks"), markers=str(markers),
                                 config=str(repo / ".git" / "config"))  # fmt: skip
    make_repo(repo, train=train)
    assert cli("init", str(repo), "--tag", "h", "--runner", "process", "--budget", "5").returncode == 0
    plant(repo, markers, hooks_path=True)
    spy_log = tmp_path / "git-calls.log"
    spy = _git_spy(tmp_path / "spy", spy_log)
    env = {**SECRETS, "PATH": f"{spy}{os.pathsep}{os.environ['PATH']}"}
    done = cli("run", str(repo), "--agent", "offline", "--max-experiments", "3", env=env)
    assert done.returncode == 0, done.stderr
    assert len((repo / "results.tsv").read_text().splitlines()) == 4
    assert fired(markers) == []
    calls = spy_log.read_text()
    argvs = [line for line in calls.splitlines() if line.startswith("ARGV ")]
    assert len(argvs) > 10  # the daemon's git really went through the spy
    assert all("core.hooksPath=/dev/null" in a and "core.fsmonitor=false" in a for a in argvs), argvs
    for name, value in SECRETS.items():
        assert value not in calls and f"ENV {name}=" not in calls
    assert "ENV GIT_AUTHOR_NAME=test" not in calls  # not even the daemon's own GIT_* variables


def test_git_subprocess_environment_is_minimal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    repo = make_repo(tmp_path / "research")
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))  # would redirect every call
    spy_log = tmp_path / "git-calls.log"
    monkeypatch.setenv("PATH", f"{_git_spy(tmp_path / 'spy', spy_log)}{os.pathsep}{os.environ['PATH']}")
    workspace_operations(repo)
    calls = spy_log.read_text()
    assert calls.count("ARGV ") > 10
    assert not any(value in calls for value in SECRETS.values())
    assert str(tmp_path / "elsewhere") not in calls
    env_names = {line.split("=", 1)[0][4:] for line in calls.splitlines() if line.startswith("ENV ")}
    env_names = {name for name in env_names if not re.fullmatch(r"GIT_CONFIG_(KEY|VALUE)_\d+", name)}
    assert env_names <= {
        "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ", "TMPDIR",
        "GIT_TERMINAL_PROMPT", "GIT_PAGER", "GIT_CONFIG_COUNT", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL",
        "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE", "PWD", "SHLVL", "_",
        "OLDPWD", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM", "GIT_CONFIG_NOSYSTEM",
    }, env_names  # PWD, SHLVL, _ come from the spy's own shell



def test_filter_drivers_of_the_system_config_still_apply(
    tmp_path: Path, markers: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The administrator's drivers (``git lfs install --system``) keep working for the daemon."""
    repo = make_repo(tmp_path / "research", extra={".gitattributes": "*.dat filter=lfs\n", "data.dat": "x\n"})
    filt = _script(tmp_path / "lfs", f'touch {markers}/lfs-"$1"; cat')
    system = tmp_path / "gitconfig"
    system.write_text(f'[filter "lfs"]\n\tsmudge = {filt} smudge\n\tclean = {filt} clean\n')
    system.chmod(0o644)
    if os.geteuid() != 0:
        pytest.skip("a trusted system config is root's")
    monkeypatch.setattr(gitcmd, "SYSTEM_CONFIG", system)
    ws = GitWorkspace.open(repo)
    (repo / "data.dat").unlink()
    ws.reset_hard(ws.head())
    assert (repo / "data.dat").read_text() == "x\n" and "lfs-smudge" in fired(markers)
    system.chmod(0o666)  # writable by anyone: no longer the administrator's alone
    assert not gitcmd.system_config_trusted(system)
    (markers / "lfs-smudge").unlink()
    (repo / "data.dat").unlink()
    ws.reset_hard(ws.head())
    assert fired(markers) == []


def _plant_global(home: Path, markers: Path, tools: Path) -> Path:
    """The red team's plants in the global config files an agent's CLI could write; the trace2 target."""
    filt = _script(tools / "lfs", f'touch {markers}/global-lfs-"$1"; cat')
    trace = tools / "trace2.json"
    config = (f'[filter "lfs"]\n\tsmudge = {filt} smudge\n\tclean = {filt} clean\n\trequired = true\n'
              f"[trace2]\n\teventTarget = {trace}\n[core]\n\tfsmonitor = {filt}\n")
    (home / ".config" / "git").mkdir(parents=True)
    (home / ".config" / "git" / "config").write_text(config)
    (home / ".gitconfig").write_text(config.replace("global-lfs", "dot-gitconfig-lfs"))
    return trace


def test_planted_global_config_does_nothing(tmp_path: Path, markers: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``filter.lfs.smudge`` and ``trace2.eventTarget`` in ~/.gitconfig and ~/.config/git/config (where a
    command agent's CLI keeps its files) neither run code as the daemon nor append to a file."""
    tools = tmp_path / "tools"
    tools.mkdir()
    home = tmp_path / "home"
    trace = _plant_global(home, markers, tools)
    control = make_repo(tmp_path / "control", extra={".gitattributes": "*.dat filter=lfs\n", "data.dat": "x\n"})
    (control / "data.dat").unlink()
    subprocess.run(["git", "checkout", "--", "data.dat"], cwd=control, env={**os.environ, "HOME": str(home)},
                   check=True, capture_output=True)
    assert "global-lfs-smudge" in fired(markers) and trace.exists()  # the plants are live for plain git
    for marker in markers.iterdir():
        marker.unlink()
    trace.unlink()
    repo = make_repo(tmp_path / "research", extra={".gitattributes": "*.dat filter=lfs\n", "data.dat": "x\n"})
    head = git(repo, "rev-parse", "HEAD")  # plain git, before the daemon's HOME is the planted one
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    workspace_operations(repo)
    (repo / "data.dat").unlink()
    GitWorkspace.open(repo).reset_hard(head)
    with scratch_checkout(repo, head, "1"):
        pass
    assert fired(markers) == [] and not trace.exists()


def test_the_agent_cannot_be_given_git_s_config(tmp_path: Path) -> None:
    """The defaults are per CLI; shared folders (git's config lives there) are refused with a clear message."""
    assert "~/.config" not in CommandAgentSettings().writable and "~/.claude" in CommandAgentSettings().writable
    for entry in ("~/.config", "~/.config/", "~", "~/.gitconfig", "~/.config/git/config", "~/.cache", str(Path.home())):
        with pytest.raises(ValidationError, match="shared with other programs"):
            CommandAgentSettings(writable=[entry])


def test_a_root_daemon_works_in_a_repository_another_user_owns(tmp_path: Path) -> None:
    """``safe.directory`` is set on purpose for the repo the daemon was given (no global config holds it now)."""
    if os.geteuid() != 0:
        pytest.skip("only root can run git in another user's repository")
    repo = make_repo(tmp_path / "research")
    head = git(repo, "rev-parse", "HEAD")
    for p in (repo, *repo.rglob("*")):
        os.chown(p, 65534, 65534, follow_symlinks=False)
    plain = subprocess.run(["git", "rev-parse", "--git-common-dir"], cwd=repo, capture_output=True, text=True,
                           env={**os.environ, "HOME": str(tmp_path)}, check=False)
    assert "dubious ownership" in plain.stderr  # the control
    with scratch_checkout(repo, head, "1") as (tree, _work):
        assert (tree / "train.py").exists()
