"""Input and result models of workflows and activities: one pair per call.

They live in ``domain`` because workflows, activities and the CLI all import them,
and nothing here may do I/O.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from domain.apply import ApplyHistory, ApplyOutcome, ApplyRequest
from domain.authority import (
    Actuator,
    Approval,
    ChangeOutcome,
    GatesUpdate,
    PolicyBundle,
    SpaceGates,
    SpaceSpec,
    UnitChange,
    UnitState,
    UnitStateChange,
)
from domain.diff import FieldConflict
from domain.drift import DriftField, DriftRecord, DriftStatus
from domain.errors import ErrorInfo
from domain.markdown import OneLine
from domain.project import ApprovalMode, ProjectConfig
from domain.publish import GitRecord, PublishAction, RenderedUnit, UnitSnapshot
from domain.sync import PullRequest, PullRequestSpec, SyncAction

# ---- shared ------------------------------------------------------------------


class SourceRef(BaseModel):
    """A commit of an authoring repo. ``repo`` never carries credentials."""

    repo: str
    commit: str


# ---- git activities ------------------------------------------------------------


class CheckoutInput(BaseModel):
    source: SourceRef


class CheckoutResult(BaseModel):
    commit: str
    subject: str
    author: str
    committed_at: str


class NewerCommitsInput(BaseModel):
    source: SourceRef
    commits: list[str]  # commits Git last published to the space's units


class NewerCommitsResult(BaseModel):
    newer: list[str]  # those that descend from ``source.commit`` (and differ from it)


# ---- render activities -----------------------------------------------------------


class LoadProjectInput(BaseModel):
    source: SourceRef


class LoadProjectResult(BaseModel):
    project: ProjectConfig


class RenderSpaceInput(BaseModel):
    source: SourceRef
    space: str
    overlay: str
    allow_remote: bool = False  # tributary.yaml's spaces.<name>.allow_remote


class RenderSpaceResult(BaseModel):
    objects: list[dict[str, Any]]


# ---- policy activities -----------------------------------------------------------


class LoadBundleInput(BaseModel):
    source: SourceRef
    policies: list[str]
    schemas: list[str]
    compositions: list[str] = Field(default_factory=list)


class LoadBundleResult(BaseModel):
    bundle: PolicyBundle


class CheckObjectsInput(BaseModel):
    bundle: PolicyBundle
    space: str
    environment: str
    origin: str  # where the objects came from, for error messages (overlay path, "bulk set")
    objects: list[dict[str, Any]]


class CheckObjectsResult(BaseModel):
    units: list[RenderedUnit]


# ---- authority activities ---------------------------------------------------------


class SnapshotUnitsInput(BaseModel):
    space: str
    slugs: list[str]
    commit: str = ""  # the commit being published: was it published already?


class SnapshotUnitsResult(BaseModel):
    units: dict[str, UnitSnapshot]
    gates: SpaceGates | None = None  # None: the space does not exist yet
    # every unit of the space and its state, to find the ones Git no longer renders
    states: dict[str, str] = Field(default_factory=dict)
    seen: bool = False  # ``commit`` was already published to the space


class CommitInput(BaseModel):
    changes: list[UnitChange]
    spaces: list[SpaceSpec] = Field(default_factory=list)
    states: list[UnitStateChange] = Field(default_factory=list)
    git: GitRecord | None = None  # a publish: Git's new merge bases and the commit


class CommitResult(BaseModel):
    outcomes: list[ChangeOutcome]


class FindUnitsInput(BaseModel):
    spaces: list[str]
    where: dict[str, str] = Field(default_factory=dict)
    unit: str | None = None


class UnitHead(BaseModel):
    space: str
    slug: str
    version: int
    head_revision: int
    data: dict[str, Any]
    labels: dict[str, str]
    # Why the head may not be applied: a drift capture conflicts with it ("" if none).
    conflict: str = ""


class SpaceGate(BaseModel):
    """What a change outside Git is checked against: the space's stored policy."""

    space: str
    environment: str
    policy: PolicyBundle


class FindUnitsResult(BaseModel):
    units: list[UnitHead]
    gates: dict[str, SpaceGate]


class GetRevisionInput(BaseModel):
    space: str
    unit: str
    number: int


class GetRevisionResult(BaseModel):
    data: dict[str, Any]
    source: str
    description: str


# ---- publish workflows ---------------------------------------------------------


class PublishRunInput(BaseModel):
    source: SourceRef
    ref: str
    spaces: list[str] = Field(default_factory=list)  # empty: every space in tributary.yaml
    message: str = ""
    force: bool = False
    dry_run: bool = False
    apply: bool = False  # request an apply of every unit the publish changed


class PublishInput(BaseModel):
    source: SourceRef
    ref: str
    space: str
    project: ProjectConfig
    bundle: PolicyBundle
    commit_info: CheckoutResult
    message: str = ""
    force: bool = False
    dry_run: bool = False
    apply: bool = False


class UnitOutcome(BaseModel):
    unit: str
    action: PublishAction
    revision: int | None = None
    violations: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    conflict_fields: list[str] = Field(default_factory=list)
    changed_fields: list[str] = Field(default_factory=list)
    reason: str = ""  # held: the gate that held it (domain/gates.py)
    apply_workflow_id: str = ""  # with --apply: where to follow the apply
    apply_request_id: str = ""


class PublishResult(BaseModel):
    space: str
    workflow_id: str = ""
    units: list[UnitOutcome] = Field(default_factory=list)
    blocked: Literal["", "denied", "conflict", "gates"] = ""
    written: bool = False
    error: ErrorInfo | None = None
    # gates: why the space was held (a loosening commit), and what it asked to
    # tighten that only `tributary space set` applies
    gate_reasons: list[str] = Field(default_factory=list)
    gate_notes: list[str] = Field(default_factory=list)
    # the commit was already published to this space, or is an ancestor of one that
    # was: nothing written
    seen: bool = False


class AwaitPublishInput(BaseModel):
    """Attach to a ``PublishWorkflow`` another run of the same commit started."""

    workflow_id: str


class PublishRunResult(BaseModel):
    commit: str
    ref: str
    subject: str = ""
    dry_run: bool = False
    spaces: list[PublishResult]


# ---- changes outside Git: bulk set and rollback ------------------------------------


class Assignment(BaseModel):
    path: str
    value: Any = None


class BulkSetInput(BaseModel):
    spaces: list[str]
    where: dict[str, str] = Field(default_factory=dict)
    assignments: list[Assignment]
    message: str
    author: OneLine
    dry_run: bool = False


class ChangedUnit(BaseModel):
    space: str
    unit: str
    action: Literal["changed", "unchanged", "denied"]
    revision: int | None = None
    changed_fields: list[str] = Field(default_factory=list)
    violations: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


class BulkSetResult(BaseModel):
    units: list[ChangedUnit]
    written: bool


class RollbackInput(BaseModel):
    space: str
    unit: str
    to: int
    author: OneLine
    message: str = ""


class RollbackResult(BaseModel):
    space: str
    unit: str
    revision: int
    action: Literal["rolled-back", "unchanged"]
    to: int
    changed_fields: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


# ---- apply: authority side -----------------------------------------------------


class ApplyContextInput(BaseModel):
    space: str
    unit: str
    revision: int


class ApplyGates(BaseModel):
    """What a space may apply: checked by the apply activity against the live cluster."""

    kinds: list[str] = Field(default_factory=list)
    namespaces: list[str] = Field(default_factory=list)
    destination: str = ""
    actuator: Actuator = "kubernetes"  # who applies (domain/authority.py)
    argocd_app: str = ""


class ApplyContextResult(BaseModel):
    gates: ApplyGates | None = None
    data: dict[str, Any]
    violations: list[str]
    approval: ApprovalMode
    author: str
    approvals: list[Approval]
    precious: bool
    head_revision: int
    xrds: list[dict[str, Any]]  # XRDs of the space that define this claim's kind
    # The worker's authority is ConfigHub: it can drive the confighub actuator.
    confighub: bool = False
    # the space's Compositions for that kind's composite (installed where the cluster lacks them)
    compositions: list[dict[str, Any]] = Field(default_factory=list)
    # Why this revision may not be applied: a drift capture conflicts with it.
    conflict: str = ""


class RecordApprovalInput(BaseModel):
    space: str
    unit: str
    revision: int
    by: OneLine
    asserted: str = ""
    comment: str = ""
    at: datetime
    action: Literal["apply", "delete"] = "apply"
    gate: Literal["", "acknowledge", "required"] = ""


class RecordApprovalResult(BaseModel):
    approved_by: list[str]


class RecordAppliedInput(BaseModel):
    space: str
    unit: str
    revision: int
    live: bool
    state: UnitState | None = None  # a new unit state, e.g. "deleted"


class RecordAppliedResult(BaseModel):
    live_revision: int | None
    last_applied_revision: int | None


# ---- apply: cluster side -----------------------------------------------------------


class ObjectRef(BaseModel):
    api_version: str
    kind: str
    name: str
    namespace: str | None = None


class KubeApplyInput(BaseModel):
    data: dict[str, Any]
    xrds: list[dict[str, Any]] = Field(default_factory=list)
    compositions: list[dict[str, Any]] = Field(default_factory=list)
    space: str = ""
    unit: str = ""
    # None (tests, tools): no kind/namespace check; the owner label is always kept
    gates: ApplyGates | None = None


class KubeApplyResult(BaseModel):
    ref: ObjectRef
    generation: int
    resource_version: str = ""


class KubeWaitInput(BaseModel):
    ref: ObjectRef
    generation: int
    timeout_seconds: int
    # The transient Synced=False the workflow already reported: the wait returns
    # "waiting" only for a different one, so the apply status follows it.
    seen: str = ""


class KubeWaitResult(BaseModel):
    # waiting: a transient Synced=False (message: the condition), not a verdict
    state: Literal["ready", "failed", "pending", "waiting"]
    message: str = ""


class KubeDeleteInput(BaseModel):
    ref: ObjectRef
    timeout_seconds: int = 300
    space: str = ""  # set: refuse to delete an object another space owns


class KubeDeleteResult(BaseModel):
    existed: bool


# ---- apply: the workflow -----------------------------------------------------------


class ApplyInput(BaseModel):
    space: str
    unit: str
    history: ApplyHistory = Field(default_factory=ApplyHistory)


class ApplyStatus(BaseModel):
    space: str
    unit: str
    current: ApplyOutcome | None = None
    outcomes: list[ApplyOutcome] = Field(default_factory=list)
    pending: list[ApplyRequest] = Field(default_factory=list)


class ApplyResult(BaseModel):
    space: str
    unit: str
    outcomes: list[ApplyOutcome]


class RequestApplyInput(BaseModel):
    space: str
    unit: str
    request: ApplyRequest


class RequestApplyResult(BaseModel):
    workflow_id: str


class RequestAppliesInput(BaseModel):
    requests: list[RequestApplyInput]


class RequestAppliesResult(BaseModel):
    workflow_ids: list[str]


# ---- drift ------------------------------------------------------------------------


class DriftCheckInput(BaseModel):
    space: str
    unit: str
    sweep_id: str = ""  # recorded with the result, so a sweep can count its checks
    force: bool = False  # check even when the unit is paused (an operator's capture)


class DriftCheckResult(BaseModel):
    # in-sync / drifted; applying: an apply is in flight; not-applied: nothing runs yet;
    # inactive: the unit is orphaned, deleted or gone; paused: the authority says so
    state: Literal["in-sync", "drifted", "applying", "not-applied", "inactive", "paused"]
    fields: list[DriftField] = Field(default_factory=list)
    live_revision: int | None = None
    expected_version: int = 0
    captured: dict[str, Any] | None = None  # the authority revision with the drift taken in
    fingerprint: str = ""
    mode: str = "capture"
    interval_seconds: int = 300
    paused: bool = False  # kept in the authority, so a restarted loop stays paused
    head_revision: int | None = None
    # when the drifted Claim fields were last written (managedFields), where known
    changed_at: datetime | None = None


class CaptureInput(BaseModel):
    space: str
    unit: str
    expected_version: int
    data: dict[str, Any]
    source: Literal["drift-capture", "break-glass"]
    description: str
    tags: dict[str, str]
    author: str
    idempotency_key: str
    fields: list[DriftField] = Field(default_factory=list)
    sweep_id: str = ""
    # The live revision the capture was planned on: a publish or `set` since then
    # (a new head, a new version) is re-based onto the capture, not a stale write.
    live_revision: int | None = None


class CaptureResult(BaseModel):
    revision: int
    created: bool
    head_revision: int | None = None  # == revision unless a pending head was kept
    rebased_revision: int | None = None  # the pending change re-based onto the capture
    conflicts: list[FieldConflict] = Field(default_factory=list)
    pending_revision: int | None = None  # the head that was ahead of live, if one was


class CaptureReconcileInput(BaseModel):
    space: str
    unit: str
    revision: int
    token: str  # a new value each request: the annotation must change to be an event


class CaptureReconcileResult(BaseModel):
    requested: bool


class DriftInput(BaseModel):
    space: str
    unit: str
    status: DriftStatus | None = None  # carried across continue-as-new
    check_first: bool = False
    sweep_id: str = ""


class UnitKey(BaseModel):
    space: str
    unit: str


class EnsureDriftInput(BaseModel):
    units: list[UnitKey]
    reason: str = ""
    sweep_id: str = ""


class EnsureDriftResult(BaseModel):
    workflow_ids: list[str]


class DriftRecordInput(BaseModel):
    record: DriftRecord


class DriftPauseInput(BaseModel):
    space: str
    unit: str
    paused: bool


class DriftRecordResult(BaseModel):
    recorded: bool = True


class ListUnitsPageInput(BaseModel):
    after: UnitKey | None = None
    limit: int = 500


class ListUnitsPageResult(BaseModel):
    units: list[UnitKey]


class CountDriftInput(BaseModel):
    sweep_id: str
    expected: int
    timeout_seconds: int = 600


class CountDriftResult(BaseModel):
    counts: dict[str, int]
    complete: bool


class SweepInput(BaseModel):
    batch_size: int = 500
    wait_seconds: int = 600  # for the checks to report back


class SweepResult(BaseModel):
    sweep_id: str
    units: int
    counts: dict[str, int]
    complete: bool


class ClassifyCaptureInput(BaseModel):
    space: str
    unit: str
    revision: int
    source: Literal["drift-capture", "break-glass"]
    tags: dict[str, str]


class ClassifyCaptureResult(BaseModel):
    revision: int


# ---- sync PR -------------------------------------------------------------------------


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
    space: str
    # carried across continue-as-new: runs so far, and the requests that arrived
    # during the last run and are not yet synced (with their reasons)
    runs: int = 0
    requests: int = 0
    reasons: list[str] = Field(default_factory=list)


class RequestSyncInput(BaseModel):
    spaces: list[str]
    reason: str = ""


class RequestSyncResult(BaseModel):
    workflow_ids: list[str]


# ---- space gates (tributary space show|set) -----------------------------------------


class LiveObjectsInput(BaseModel):
    space: str


class LiveObjectsResult(BaseModel):
    """``tributary render --space S --live``: what an Argo CD CMP emits for the space."""

    space: str
    objects: list[dict[str, Any]]  # in unit order, each labelled with its owner space
    units: list[str]  # the units rendered, in the same order
    not_live: list[str] = Field(default_factory=list)  # never applied: nothing to render


class SpaceGatesInput(BaseModel):
    space: str
    update: GatesUpdate | None = None  # None: only read them


class SpaceGatesResult(BaseModel):
    space: str
    environment: str
    gates: SpaceGates
    changed: list[str] = Field(default_factory=list)  # gates this call changed
