"""Every git call of the sync arrow with a hostile URL: git reads it as a repository,
never as an option (issue 10, hole 2). The URL reaches these calls from the space's
stored repo, which publish checked; these tests drop that check and aim at ``--``.
"""

from __future__ import annotations

from pathlib import Path

import git
import pytest

from activities import sync
from adapters import forge
from tests.support import AuthoringRepo

# git fails on the odd repository name, or GitPython refuses the option itself
REFUSED = (git.GitCommandError, git.UnsafeOptionError)


def _hostile(tmp_path: Path) -> tuple[str, Path]:
    pwned = tmp_path / "pwned"
    return f"--upload-pack=touch {pwned};false", pwned


def test_default_branch(tmp_path: Path) -> None:
    url, pwned = _hostile(tmp_path)
    with pytest.raises(REFUSED):
        sync._default_branch(url)
    assert not pwned.exists()


def test_clone(tmp_path: Path) -> None:
    url, pwned = _hostile(tmp_path)
    with pytest.raises((RuntimeError, *REFUSED)):
        sync._clone(url, "main", tmp_path / "work")
    assert not pwned.exists()


def test_remote_branch_and_push(tmp_path: Path, messagewall: AuthoringRepo) -> None:
    url, pwned = _hostile(tmp_path)
    repo = git.Repo(messagewall.work)
    with pytest.raises(REFUSED):
        sync._remote_branch(repo, url, "tributary/sync/x")
    assert not pwned.exists()
    with pytest.raises((RuntimeError, *REFUSED)):
        sync._push(repo, url, "tributary/sync/x", None)
    assert not pwned.exists()


def test_merged_check(tmp_path: Path) -> None:
    url, pwned = _hostile(tmp_path)
    with pytest.raises(REFUSED):
        forge._reached(url, "a" * 40, "b" * 40, tmp_path)
    assert not pwned.exists()
