"""Forges: where a sync branch becomes a pull request.

``local`` (the default) keeps the pull request as a record in the authority next to
the pushed branch; ``github`` opens it through GitHub's REST API (token from the
worker's environment only). Either way the authority records it, so
``tributary prs`` lists pull requests whatever the forge.

Both answer alike: ``opened`` for a new PR, ``updated`` when its title, body or
head commit changed, ``unchanged`` otherwise; and both tell a merged PR from a
closed one whatever the merge method (merge commit, squash or rebase).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import git

from authority.protocol import AuthorityStore
from domain.errors import BadInput
from domain.sync import PrState, PullRequest, PullRequestSpec, SyncAction


class Forge(Protocol):
    #: what a caller should know but that did not fail the call
    warnings: list[str]

    def ensure_pr(self, spec: PullRequestSpec) -> tuple[PullRequest, SyncAction]: ...

    def ensure_labels(self, spec: PullRequestSpec, pr: PullRequest) -> None: ...

    def merged_state(self, pr: PullRequest, *, repo: str, base_commit: str) -> PrState:
        """``merged``, ``closed`` or ``open``: where the recorded open ``pr`` stands."""
        ...

    def close_pr(self, pr: PullRequest, *, repo: str) -> None: ...

    def close(self) -> None: ...


class LocalForge:
    """Pull requests as records in the authority: the branch is the review surface."""

    def __init__(self, store: AuthorityStore, work_root: Path) -> None:
        self.store = store
        self.work_root = work_root
        self.warnings: list[str] = []

    def ensure_pr(self, spec: PullRequestSpec) -> tuple[PullRequest, SyncAction]:
        current = next(
            (
                pr
                for pr in self.store.list_prs(spec.space)
                if pr.state == "open" and pr.branch == spec.branch
            ),
            None,
        )
        now = datetime.now(UTC)
        if current is None:
            number = self.store.next_pr_number()
            pr = PullRequest(
                space=spec.space,
                number=number,
                url=f"{spec.repo}#tributary-pr-{number}",
                state="open",
                branch=spec.branch,
                base=spec.base,
                title=spec.title,
                head_commit=spec.head_commit,
                created_at=now,
                updated_at=now,
            )
            return pr, "opened"
        if current.head_commit == spec.head_commit and current.title == spec.title:
            return current, "unchanged"
        updated = current.model_copy(
            update={"title": spec.title, "head_commit": spec.head_commit, "updated_at": now}
        )
        return updated, "updated"

    def ensure_labels(self, spec: PullRequestSpec, pr: PullRequest) -> None:
        """A local PR has no labels: the branch name says what it is."""

    def merged_state(self, pr: PullRequest, *, repo: str, base_commit: str) -> PrState:
        """Merged when the PR's commit is in the base's history (a merge commit or a
        fast-forward), or when its content reached the base (a squash or rebase
        merge: every file the PR's commit touched reads on the base as on the
        branch). Otherwise still open: the caller decides whether to close it."""
        if not pr.head_commit:
            return "open"
        return "merged" if _reached(repo, pr.head_commit, base_commit, self.work_root) else "open"

    def close_pr(self, pr: PullRequest, *, repo: str) -> None:
        """Nothing to do beyond the record the caller writes."""

    def close(self) -> None:
        """Nothing to release: the store belongs to the worker."""


def forge_for(
    store: AuthorityStore,
    work_root: Path,
    *,
    heartbeat: Callable[[str], None] | None = None,
) -> Forge:
    """The forge the worker's environment names (``TRIBUTARY_FORGE``)."""
    kind = os.environ.get("TRIBUTARY_FORGE", "local")
    if kind == "local":
        return LocalForge(store, work_root)
    if kind == "github":
        from adapters.forge_github import GitHubForge

        return GitHubForge(
            os.environ.get("GITHUB_API_URL", "https://api.github.com"), heartbeat=heartbeat
        )
    raise BadInput(f"TRIBUTARY_FORGE={kind!r}: expected local or github", field="TRIBUTARY_FORGE")


def check_forge_env(env: Mapping[str, str] | None = None) -> None:
    """What ``forge_for`` will need, checked when the worker starts rather than at the
    first sync PR (hours later, after a drift capture): the forge's name and, for
    ``github``, the API's address and a token. The token's value is never read here
    beyond "is there one"."""
    env = os.environ if env is None else env
    kind = env.get("TRIBUTARY_FORGE", "local")
    if kind == "github":
        from adapters.forge_github import DEFAULT_API_URL, check_api_url

        check_api_url(env.get("GITHUB_API_URL") or DEFAULT_API_URL)
        if not (env.get("GITHUB_TOKEN") or "").strip():
            raise BadInput(
                "TRIBUTARY_FORGE=github, but GITHUB_TOKEN is not set in the worker's "
                "environment: the sync PR needs a token that can push branches and open "
                "pull requests on the authoring repositories",
                field="GITHUB_TOKEN",
            )
    elif kind != "local":
        raise BadInput(
            f"TRIBUTARY_FORGE={kind!r}: expected local or github", field="TRIBUTARY_FORGE"
        )


# ---- did the branch reach the base? ---------------------------------------------------------


def _reached(url: str, commit: str, base_commit: str, work_root: Path) -> bool:
    work = Path(tempfile.mkdtemp(prefix="merged-", dir=work_root))
    try:
        repo = git.Repo.init(work, bare=True)
        # "--": the URL is the space's stored repo, never an option
        repo.git.fetch("--quiet", "--", url, "+refs/heads/*:refs/heads/*")
        if not _has(repo, commit):
            try:  # the branch moved on (or was deleted): ask for the commit itself
                repo.git.fetch("--quiet", "--", url, commit)
            except git.GitCommandError:
                return False
        if not _has(repo, base_commit) or not _has(repo, commit):
            return False
        try:
            repo.git.merge_base("--is-ancestor", commit, base_commit)
            return True
        except git.GitCommandError:
            pass
        return _content_reached(repo, commit, base_commit)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _has(repo: git.Repo, commit: str) -> bool:
    try:
        repo.git.cat_file("-e", f"{commit}^{{commit}}")
    except git.GitCommandError:
        return False
    return True


def _content_reached(repo: git.Repo, commit: str, base_commit: str) -> bool:
    """Every path the PR's commits changed (since they left the base's history)
    reads at ``base_commit`` exactly as at ``commit`` — present or absent alike."""
    try:
        fork = str(repo.git.merge_base(commit, base_commit)).strip()
    except git.GitCommandError:
        return False
    changed = [
        p for p in str(repo.git.diff("--name-only", "-z", fork, commit, "--")).split("\0") if p
    ]
    if not changed:
        return False
    # ls-tree of the same paths at both commits: mode, type and blob id per path
    branch = repo.git.ls_tree("-r", "-z", commit, "--", *changed)
    base = repo.git.ls_tree("-r", "-z", base_commit, "--", *changed)
    return bool(branch == base)
