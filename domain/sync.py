"""Arrow 4, sync PR: authority → Git. Models and pure helpers."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

PrState = Literal["open", "merged", "closed"]
SyncAction = Literal["opened", "updated", "unchanged"]
PR_LABELS = ("sync", "confighub", "automated")


class PullRequestSpec(BaseModel):
    """What a forge is asked to open or update."""

    space: str
    repo: str  # the authoring repo URL (no credentials)
    branch: str  # e.g. tributary/sync/messagewall-prod-east
    base: str  # the default branch, e.g. main
    title: str
    body: str  # markdown
    head_commit: str
    labels: list[str] = Field(default_factory=lambda: list(PR_LABELS))


class PullRequest(BaseModel):
    space: str
    number: int
    url: str
    state: PrState
    branch: str
    base: str
    title: str
    head_commit: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None


def sync_branch(space: str) -> str:
    return f"tributary/sync/{space}"
