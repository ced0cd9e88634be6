"""Arrow 4, sync PR: authority → Git. Models and pure helpers, and the messages of the
sync-PR workflow (``workflows/sync.py``) and its activities."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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


# ---- the sync-PR workflow's and its activities' messages ---------------------------------


class SyncSettingsInput(BaseModel):
    space: str


class SyncSettingsResult(BaseModel):
    debounce_seconds: int


class SyncRow(BaseModel):
    """One field the PR changes in Git, and where the authority's value came from."""

    unit: str
    path: str
    git: Any = None
    authority: Any = None
    revision: int
    source: str
    incident: str = ""


class SyncPushInput(BaseModel):
    space: str
    dry_run: bool = False
    workflow_id: str = ""


class SyncPushResult(BaseModel):
    # pushed: the branch has new content; unchanged: it already had it;
    # nothing-to-propose: the default branch already renders the authority
    action: Literal["pushed", "unchanged", "nothing-to-propose", "dry-run"]
    space: str
    repo: str
    branch: str
    base: str
    base_commit: str = ""
    head_commit: str = ""
    rows: list[SyncRow] = Field(default_factory=list)
    fallback: list[str] = Field(default_factory=list)
    edits: list[str] = Field(default_factory=list)
    title: str = ""
    body: str = ""
    diff: str = ""


class EnsurePrInput(BaseModel):
    spec: PullRequestSpec


class EnsurePrResult(BaseModel):
    pr: PullRequest
    action: SyncAction
    warnings: list[str] = Field(default_factory=list)  # e.g. a listing cut at its page cap


class ClosePrsInput(BaseModel):
    space: str
    base_commit: str
    repo: str
    # True when Git already renders the authority: open PRs not merged are closed too
    close_unmerged: bool = False


class ClosePrsResult(BaseModel):
    closed: list[int] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


class SyncRequest(BaseModel):
    reason: str = ""  # "capture", "set", "rollback", "cli", "schedule"


class SyncNowInput(BaseModel):
    dry_run: bool = False


class SyncResult(BaseModel):
    """What ``tributary sync-pr`` reports (shared/CLI.md: space, action, branch, pr)."""

    space: str
    # shared/CLI.md: opened, updated, unchanged (also when Git already renders the
    # authority: then there is no PR); dry-run for --dry-run
    action: SyncAction | Literal["dry-run"]
    branch: str
    pr: PullRequest | None = None
    head_commit: str = ""
    rows: list[SyncRow] = Field(default_factory=list)
    fallback: list[str] = Field(default_factory=list)
    diff: str = ""
    # what the forge said without failing (a listing stopped at its page cap, labels refused)
    warnings: list[str] = Field(default_factory=list)


class SyncPRInput(BaseModel):
    # ``syncs`` goes by its first name, ``runs``, on the wire (continue-as-new inputs).
    model_config = ConfigDict(
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    space: str
    # carried across continue-as-new: syncs so far, and the requests that arrived
    # during the last run and are not yet synced (with their reasons)
    syncs: int = Field(default=0, alias="runs")
    requests: int = 0
    reasons: list[str] = Field(default_factory=list)


class RequestSyncInput(BaseModel):
    spaces: list[str]
    reason: str = ""


class RequestSyncResult(BaseModel):
    workflow_ids: list[str]
