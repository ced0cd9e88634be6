"""Arrow 2, apply: gates, approvals and readiness as pure functions, and the messages of
the apply workflow and its authority activities (the cluster side: ``domain/kube.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from domain.authority import Actuator, Approval, UnitState
from domain.identity import same_identity
from domain.markdown import OneLine
from domain.project import ApprovalMode

ApplyAction = Literal["apply", "delete"]
ApplyState = Literal[
    "queued",
    "awaiting-approval",
    "applying",
    "applied",  # accepted by the cluster, not Ready yet
    "ready",  # Ready and Synced: the revision is live
    "failed",
    "superseded",  # a newer request replaced this one while it waited
    "deleted",
]
TERMINAL: frozenset[str] = frozenset({"ready", "failed", "superseded", "deleted"})
GateKind = Literal["", "acknowledge", "required"]

PRECIOUS = "confighub.io/precious"
DEFAULT_READY_TIMEOUT = 300


# conflict: a drift capture conflicts with the revision (domain/drift.py, capture_conflict)
FailureReason = Literal["", "denied", "rejected", "not-ready", "conflict", "error"]

# Failures (``ApplicationError.type``) by the reason an apply reports for them. Rejected:
# the system that applies refused for good — the cluster (a 4xx), Argo CD (credentials,
# permissions, a refused sync), ConfigHub — so the CLI exits 2 (``starter/applying.py``),
# not 1 as for an unexpected error. Adapter subclasses are named as activities report them.
REJECTED_TYPES = frozenset({"Rejected", "ArgoCDRefused", "ConfigHubRejected"})
# Denied: the space's gates refused the object (kind, namespace, another space's object).
DENIED_TYPES = frozenset({"PolicyDenied"})


def failure_reason(error_type: str | None) -> FailureReason:
    """The reason of an apply that failed with an activity error of ``error_type``."""
    if error_type in REJECTED_TYPES:
        return "rejected"
    if error_type in DENIED_TYPES:
        return "denied"
    return "error"


class ApplyRequest(BaseModel):
    # ``ungated`` goes by its first name, ``sync_only``, on the wire (signals, histories).
    model_config = ConfigDict(
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    revision: int
    action: ApplyAction = "apply"
    requested_by: str = ""
    ready_timeout_seconds: int = DEFAULT_READY_TIMEOUT
    # A captured revision already runs; applying it only makes the cluster's Claim
    # say so. It changes nothing that runs, so no approval gate applies.
    ungated: bool = Field(default=False, alias="sync_only")
    # Who is waiting for this request's outcome; repeats of a queued request add
    # their ids here instead of queueing twice.
    request_ids: list[str] = Field(default_factory=list)
    # A drift capture re-based the change of revision ``follows`` into this one: it
    # takes the place (and the waiters) of a request for ``follows`` that is queued,
    # waiting at its gate or in flight, and passes the gate itself. With no such
    # request it is dropped: a capture never applies a change nobody asked to apply.
    follows: int | None = None


class ApplyOutcome(BaseModel):
    revision: int
    action: ApplyAction = "apply"
    state: ApplyState
    message: str = ""
    reason: FailureReason = ""
    gate: GateKind = ""
    approved_by: str = ""
    at: datetime | None = None
    request_ids: list[str] = Field(default_factory=list)

    @property
    def settled(self) -> bool:
        """Nothing more will happen without someone acting (terminal, or a gate)."""
        return self.state in TERMINAL or self.state == "awaiting-approval"


class ApproveInput(BaseModel):
    revision: int
    by: str
    comment: str = ""
    asserted: str = ""  # how the CLI knew ``by`` (domain/identity.py)


class ApproveResult(BaseModel):
    revision: int
    by: str
    accepted: bool = True
    asserted: str = ""


def is_precious(data: dict[str, Any]) -> bool:
    annotations = (data.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(PRECIOUS, "")).lower() == "true"


def gate_for(mode: ApprovalMode, action: ApplyAction, *, precious: bool) -> GateKind:
    """Which approval a request needs: deleting a precious unit always needs one."""
    if action == "delete" and precious:
        return "required"
    return "" if mode == "none" else mode


def approval_problem(
    gate: GateKind, waiting_revision: int | None, approve: ApproveInput, author: str
) -> str | None:
    """Why ``approve`` cannot satisfy the gate in front of ``waiting_revision``."""
    if waiting_revision is None:
        return "nothing is awaiting approval"
    if approve.revision != waiting_revision:
        return (
            f"revision {approve.revision} is not awaiting approval; revision {waiting_revision} is"
        )
    if not approve.by.strip():
        return "an approval needs --by WHO"
    if gate == "required" and _same_person(approve.by, author):
        return (
            f"{approve.by} wrote revision {waiting_revision}; a required approval "
            "must come from someone else"
        )
    return None


def standing_approval(
    gate: GateKind, action: ApplyAction, approvals: list[Approval], author: str
) -> str:
    """Who already approved this revision in a way that satisfies ``gate`` ("" if nobody).

    An approval counts only for the action it approved, and a required gate is
    satisfied only by someone other than the author — so an author's own
    acknowledgement never opens a gate that later became required.
    """
    for approval in approvals:
        if approval.action != action:
            continue
        if gate == "required" and _same_person(approval.by, author):
            continue
        return approval.by
    return ""


def _same_person(by: str, author: str) -> bool:
    """``by`` names the author: normalized identities meet (domain/identity.py)."""
    return same_identity(by, author)


class Readiness(BaseModel):
    # waiting: Synced=False for a reason Crossplane retries on its own (``message`` is
    # the condition); the apply keeps waiting until Ready or its ready timeout.
    state: Literal["ready", "failed", "pending", "waiting"]
    message: str = ""


SyncedFalseVerdict = Literal["wait", "fail"]

# Synced=False reasons no retry by Crossplane can clear: the claim's reconciliation is
# paused (crossplane.io/paused) and stays so until someone unpauses it. Every other
# reason — ReconcileError above all, which Crossplane reports for an unreachable AWS as
# for a rejected spec, and retries with backoff either way — is not known to be final.
PERMANENT_SYNC_REASONS: frozenset[str] = frozenset({"ReconcilePaused"})


def synced_false_verdict(reason: str) -> SyncedFalseVerdict:
    """What an apply does about a current Synced=False with ``reason``.

    Like Argo CD's and Flux's health checks, a reconcile error is progress not yet
    made, not a verdict: the apply waits (until Ready or ``--timeout``) unless the
    reason is known to be permanent, so an AWS outage delays an apply, not fails it.
    """
    return "fail" if reason in PERMANENT_SYNC_REASONS else "wait"


def waiting_message(condition: str) -> str:
    """How a wait on a transient Synced=False reads in the Web UI and apply status."""
    return f"waiting: Crossplane reports {condition}"


def readiness(obj: dict[str, Any] | None, generation: int) -> Readiness:
    """Where a Claim stands after applying ``generation``: Crossplane's conditions.

    Conditions that report an older ``observedGeneration`` speak about the
    previous spec and are ignored.
    """
    if obj is None:
        return Readiness(state="pending", message="the object is not there")
    conditions = {
        c.get("type"): c
        for c in (obj.get("status") or {}).get("conditions") or []
        if isinstance(c, dict)
    }

    def current(cond: dict[str, Any] | None) -> bool:
        if cond is None:
            return False
        observed = cond.get("observedGeneration")
        return observed is None or int(observed) >= generation

    synced, ready = conditions.get("Synced"), conditions.get("Ready")
    if current(synced) and synced and synced.get("status") == "False":
        reason = synced.get("reason") or "ReconcileError"
        message = f"{reason}: {synced.get('message', '')}".strip()
        if synced_false_verdict(reason) == "fail":
            return Readiness(state="failed", message=message)
        return Readiness(state="waiting", message=message)
    if (
        current(synced)
        and current(ready)
        and synced
        and ready
        and synced.get("status") == "True"
        and ready.get("status") == "True"
    ):
        return Readiness(state="ready", message=str(ready.get("message") or ""))
    waiting_on = ready or synced
    if waiting_on and current(waiting_on):
        reason = waiting_on.get("reason") or "Waiting"
        return Readiness(state="pending", message=f"{reason}: {waiting_on.get('message', '')}")
    return Readiness(state="pending", message="waiting for Crossplane to report Ready and Synced")


class ApplyHistory(BaseModel):
    """What an ApplyWorkflow carries across continue-as-new."""

    outcomes: list[ApplyOutcome] = Field(default_factory=list)
    pending: list[ApplyRequest] = Field(default_factory=list)


# ---- the apply workflow's and its authority activities' messages -------------------------


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
