"""The worker-side cache of authoring repos (GitPython).

Each repo URL has a bare mirror under ``<cache>/repos``; each commit we render is
exported once, read-only, under ``<cache>/trees/<commit>``. Activities on any
worker call ``tree()``: a cache miss fetches, a hit costs a ``stat``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import re
import shutil
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import git

from domain.errors import BadInput
from domain.repos import CheckoutResult, SourceRef, normalize_repo, redact

_SHA = re.compile(r"[0-9a-f]{40}")
_HEX = re.compile(r"[0-9a-f]{4,64}")
# a commit id or a ref name; never an option, a path or a revision expression
_COMMITISH = re.compile(r"[0-9A-Za-z_][0-9A-Za-z_./-]*")
# git's words for "this is not something we can ever fetch" (vs. a flaky network)
_PERMANENT = (
    "does not appear to be a git repository",
    "repository not found",
    "not found",
    "no such file or directory",
    "not a git repository",
    "couldn't find remote ref",
    "not our ref",
    "is not supported",  # protocol 'x' is not supported
)


class SourceCache:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "repos").mkdir(parents=True, exist_ok=True)
        (root / "trees").mkdir(parents=True, exist_ok=True)

    # ---- public -------------------------------------------------------------

    def checkout(self, source: SourceRef) -> CheckoutResult:
        """Make ``source.commit`` available locally and describe it."""
        mirror = self._mirror(source)
        commit = mirror.commit(source.commit)
        return CheckoutResult(
            commit=commit.hexsha,
            subject=str(commit.summary),
            author=f"{commit.author.name} <{commit.author.email}>",
            committed_at=commit.committed_datetime.isoformat(),
        )

    def tree(self, source: SourceRef) -> Path:
        """The files of ``source.commit``, exported once and shared read-only."""
        if not _HEX.fullmatch(source.commit):
            # It names a directory of the cache: only an object id, never a path.
            raise BadInput(f"{source.commit!r} is not a commit id", field="commit")
        target = self.root / "trees" / source.commit
        if target.is_dir():
            return target
        mirror = self._mirror(source)
        with self._lock(f"tree-{source.commit}"):
            if target.is_dir():
                return target
            staging = target.with_name(target.name + f".tmp-{os.getpid()}")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            buf = io.BytesIO()
            mirror.archive(buf, treeish=source.commit, format="tar")
            buf.seek(0)
            try:
                with tarfile.open(fileobj=buf) as tar:
                    # "data": no absolute paths, no links out of the tree, no devices.
                    tar.extractall(staging, filter="data")
            except tarfile.FilterError as e:
                shutil.rmtree(staging, ignore_errors=True)
                name = e.tarinfo.name if e.tarinfo is not None else "?"
                raise BadInput(
                    f"is a link or file outside the repository ({type(e).__name__}); "
                    f"commit {source.commit[:12]} cannot be used",
                    file=name,
                ) from None
            staging.rename(target)
        return target

    def descendants(self, source: SourceRef, commits: list[str]) -> list[str]:
        """Those of ``commits`` that have ``source.commit`` as a strict ancestor.

        Commits the mirror does not know (another repo, history rewritten) are not
        descendants. Only full hex ids reach git, so none can become an option.
        """
        mirror = self._mirror(source)
        this = mirror.commit(source.commit).hexsha
        out = []
        for commit in commits:
            if commit == this or not _SHA.fullmatch(commit):
                continue
            if not _has_commit(mirror, commit):
                continue
            try:
                mirror.git.merge_base("--is-ancestor", this, commit)
            except git.GitCommandError as e:
                if e.status == 1:  # not an ancestor
                    continue
                raise
            out.append(commit)
        return out

    # ---- internals ------------------------------------------------------------

    def _mirror(self, source: SourceRef) -> git.Repo:
        _check_commit(source.commit)
        url = normalize_repo(source.repo)
        key = hashlib.sha256(url.encode()).hexdigest()[:24]
        path = self.root / "repos" / f"{key}.git"
        with self._lock(f"repo-{key}"):
            repo = git.Repo(path) if path.is_dir() else git.Repo.init(path, bare=True)
            if not _has_commit(repo, source.commit):
                self._fetch(repo, url, source)
            if not _has_commit(repo, source.commit):
                raise BadInput(
                    f"commit {source.commit} is not in the repository",
                    file=redact(source.repo),
                )
        return repo

    def _fetch(self, repo: git.Repo, url: str, source: SourceRef) -> None:
        self._git_fetch(repo, source, "--prune", "--tags", "--", url, "+refs/heads/*:refs/heads/*")
        if not _has_commit(repo, source.commit) and _SHA.fullmatch(source.commit):
            # An unadvertised commit (e.g. a PR head): ask for it by id. Servers
            # answer "not our ref" when they do not have it at all.
            with contextlib.suppress(BadInput):
                self._git_fetch(repo, source, "--", url, source.commit)

    def _git_fetch(self, repo: git.Repo, source: SourceRef, *args: str) -> None:
        try:
            repo.git.fetch("--quiet", *args)
        except git.GitCommandError as e:
            # The git error carries the whole command line; only the redacted
            # stderr travels on, hence ``from None`` below.
            stderr = redact(_stderr(e))
            if any(word in stderr.lower() for word in _PERMANENT):
                raise BadInput(
                    f"cannot fetch: {_first_fatal(stderr) or e}",
                    file=redact(source.repo),
                ) from None
            raise RuntimeError(f"git fetch of {redact(source.repo)} failed: {stderr}") from None

    @contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        lock_path = self.root / f"{name}.lock"
        with open(lock_path, "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _check_commit(commit: str) -> None:
    # Commits reach git as arguments: a leading "-" would be read as an option.
    if not _COMMITISH.fullmatch(commit) or ".." in commit:
        raise BadInput(f"{commit!r} is not a commit id or a ref name", field="commit")


def _stderr(e: git.GitCommandError) -> str:
    """GitPython's ``stderr`` without its ``stderr: '…'`` wrapping."""
    text = str(e.stderr or "").strip()
    text = text.removeprefix("stderr:").strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        text = text[1:-1]
    return text.strip()


def _first_fatal(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    fatal = [ln.removeprefix("fatal: ") for ln in lines if ln.startswith("fatal:")]
    return fatal[0] if fatal else (lines[0] if lines else "")


def _has_commit(repo: git.Repo, commit: str) -> bool:
    try:
        repo.git.cat_file("-e", f"{commit}^{{commit}}")
    except git.GitCommandError:
        return False
    return True
