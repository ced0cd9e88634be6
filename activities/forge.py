"""Forges: where a sync branch becomes a pull request.

``local`` (the default) keeps the pull request as a record in the authority next to
the pushed branch; ``github`` opens it through GitHub's REST API (token from the
worker's environment only). Either way the authority records it, so
``tributary prs`` lists pull requests whatever the forge.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Protocol

from authority.protocol import AuthorityStore
from domain.errors import BadInput
from domain.sync import PullRequest, PullRequestSpec, SyncAction


class Forge(Protocol):
    def ensure_pr(self, spec: PullRequestSpec) -> tuple[PullRequest, SyncAction]: ...

    def close(self) -> None: ...


class LocalForge:
    """Pull requests as records in the authority: the branch is the review surface."""

    def __init__(self, store: AuthorityStore) -> None:
        self.store = store

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

    def close(self) -> None:
        """Nothing to release: the store belongs to the worker."""


def forge_for(store: AuthorityStore) -> Forge:
    """The forge the worker's environment names (``TRIBUTARY_FORGE``)."""
    kind = os.environ.get("TRIBUTARY_FORGE", "local")
    if kind == "local":
        return LocalForge(store)
    if kind == "github":
        from activities.forge_github import GitHubForge

        return GitHubForge(os.environ.get("GITHUB_API_URL", "https://api.github.com"))
    raise BadInput(f"TRIBUTARY_FORGE={kind!r}: expected local or github", field="TRIBUTARY_FORGE")
