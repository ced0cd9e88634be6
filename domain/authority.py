"""The authority model (ConfigHub-compatible): spaces, units, revisions."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from domain.naming import branch_name_problem, kubernetes_name_problem
from domain.project import ApprovalMode, DriftMode

Source = Literal[
    "ci",
    "ci-forced",
    "ci-merged",
    "drift-capture",
    "break-glass",
    "operator",
    "bulk",
    "rollback",
    # a change that waited at its gate, re-based onto a drift capture: never Git's render
    "rebase",
]
GIT_SOURCES: frozenset[str] = frozenset({"ci", "ci-forced", "ci-merged"})
# orphaned: gone from Git's render, still in the cluster until `tributary delete`;
# deleted: removed from the cluster by Tributary.
UnitState = Literal["active", "orphaned", "deleted"]
# Who puts a space's live revisions into the cluster (issue 12): our own server-side
# apply, ConfigHub's apply (only when ConfigHub is the authority), or an Argo CD
# Application whose Config Management Plugin renders the live revisions.
Actuator = Literal["kubernetes", "confighub", "argocd"]
ACTUATORS: tuple[str, ...] = ("kubernetes", "confighub", "argocd")


class PolicyResult(BaseModel):
    """What the policies said about a revision when it was written."""

    violations: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    policy_digest: str | None = None


class Approval(BaseModel):
    by: str
    at: datetime
    comment: str = ""
    # How the CLI knew who ``by`` is (domain/identity.py): env:TRIBUTARY_ACTOR,
    # ci:github, ci:gitlab, os-user, or flag (``--by`` alone: self-asserted).
    asserted: str = ""
    action: Literal["apply", "delete"] = "apply"  # what was approved
    gate: Literal["", "acknowledge", "required"] = ""  # the gate it satisfied


class PolicyBundle(BaseModel):
    """The schemas and Rego modules a space's revisions are checked against.

    Stored with the space at publish time so that changes made outside Git (bulk
    sets, rollbacks, captures) meet the same gates as CI.
    """

    commit: str = ""
    modules: dict[str, str] = Field(default_factory=dict)  # path -> Rego source
    xrds: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)  # path -> XRDs
    # path -> Compositions: how claims become managed resources (drift maps back through them)
    compositions: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    digest: str = ""

    def for_folders(self, folders: list[str]) -> PolicyBundle:
        """This bundle with only the Compositions found under ``folders`` (a space's)."""
        prefixes = tuple(f.rstrip("/") + "/" for f in folders)
        kept = {p: d for p, d in self.compositions.items() if p.startswith(prefixes)}
        return self.model_copy(update={"compositions": kept})


class SyncSettings(BaseModel):
    debounce_seconds: int = 30
    author: str = "Tributary <tributary@users.noreply.local>"
    base: str = ""
    message: str = "Sync {space} from the authority"


class SpaceSpec(BaseModel):
    """A space as Git declares it."""

    name: str
    environment: str
    approval: ApprovalMode = "none"
    drift: DriftMode = "capture"
    drift_interval_seconds: int = 300
    labels: dict[str, str] = Field(default_factory=dict)
    repo: str = ""
    overlay: str = ""
    ignore: list[str] = Field(default_factory=list)
    policy: PolicyBundle = Field(default_factory=PolicyBundle)
    sync: SyncSettings = Field(default_factory=lambda: SyncSettings())
    # Gates (domain/gates.py): with ``approval`` and ``sync.base`` these are seeded
    # from the commit that creates the space, then only `tributary space set` changes them.
    kinds: list[str] = Field(default_factory=list)  # GROUP/KIND patterns it may apply
    namespaces: list[str] = Field(default_factory=list)  # namespaces it may apply to
    destination: str = ""  # the kubeconfig context it applies to; "" the worker's current one
    actuator: Actuator = "kubernetes"  # never seeded from Git: only `tributary space set`
    argocd_app: str = ""  # the Argo CD Application that delivers the space (actuator argocd)


class SpaceGates(BaseModel):
    """A space's gates as the authority holds them, and who set them last."""

    approval: ApprovalMode = "none"
    kinds: list[str] = Field(default_factory=list)
    namespaces: list[str] = Field(default_factory=list)
    destination: str = ""
    base: str = ""
    actuator: Actuator = "kubernetes"
    argocd_app: str = ""
    set_by: str = ""  # "" while they are still the seed of the creating commit
    set_at: datetime | None = None
    asserted: str = ""  # how set_by was known (see Approval.asserted)


class SpaceRecord(SpaceSpec):
    created_at: datetime
    updated_at: datetime
    gates_set_by: str = ""
    gates_set_at: datetime | None = None
    gates_asserted: str = ""

    def gates(self) -> SpaceGates:
        return SpaceGates(
            approval=self.approval,
            kinds=self.kinds,
            namespaces=self.namespaces,
            destination=self.destination,
            base=self.sync.base,
            actuator=self.actuator,
            argocd_app=self.argocd_app,
            set_by=self.gates_set_by,
            set_at=self.gates_set_at,
            asserted=self.gates_asserted,
        )


class GatesUpdate(BaseModel):
    """``tributary space set``: the gates to change (None keeps one) and who changes them."""

    space: str
    approval: ApprovalMode | None = None
    kinds: list[str] | None = None
    namespaces: list[str] | None = None
    destination: str | None = None
    base: str | None = None
    actuator: Actuator | None = None
    argocd_app: str | None = None
    by: str
    asserted: str = ""

    @field_validator("argocd_app")
    @classmethod
    def _argocd_app(cls, value: str | None) -> str | None:
        # The name goes into Argo CD's URL path: a Kubernetes object name, nothing else.
        problem = kubernetes_name_problem(value) if value else None
        if problem:
            raise ValueError(f"Argo CD Application name {problem}")
        return value

    @model_validator(mode="after")
    def _argocd_needs_app(self) -> GatesUpdate:
        if self.actuator == "argocd" and self.argocd_app == "":
            raise ValueError("actuator argocd needs the Application's name (--argocd-app NAME)")
        return self

    @field_validator("base")
    @classmethod
    def _base(cls, value: str | None) -> str | None:
        # The same rule as sync.base in tributary.yaml: the base reaches git's
        # command line, so an admin (or any client) cannot set an option either.
        problem = branch_name_problem(value) if value is not None else None
        if problem:
            raise ValueError(problem)
        return value


class UnitRecord(BaseModel):
    space: str
    slug: str
    api_version: str = ""
    kind: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    head_revision: int
    live_revision: int | None = None
    last_applied_revision: int | None = None
    # the last revision CI wrote; not the merge base (Git's render, kept apart)
    git_revision: int | None = None
    version: int
    last_change_description: str = ""
    state: UnitState = "active"
    created_at: datetime
    updated_at: datetime


class RevisionRecord(BaseModel):
    space: str
    unit: str
    number: int
    data: dict[str, Any]
    description: str
    source: Source
    tags: dict[str, str] = Field(default_factory=dict)
    author: str = ""
    policy: PolicyResult = Field(default_factory=PolicyResult)
    approvals: list[Approval] = Field(default_factory=list)
    created_at: datetime


class UnitChange(BaseModel):
    """One new head revision to write, guarded by the unit version it was planned on."""

    space: str
    slug: str
    expected_version: int | None  # None: the unit must not exist yet
    data: dict[str, Any]
    description: str
    source: Source
    tags: dict[str, str] = Field(default_factory=dict)
    author: str = ""
    policy: PolicyResult = Field(default_factory=PolicyResult)
    labels: dict[str, str] | None = None  # None keeps the unit's labels
    # Writers that retry after a crash find their own earlier write by this key
    # instead of failing the version check: one revision per intent.
    idempotency_key: str = ""


class UnitStateChange(BaseModel):
    space: str
    slug: str
    state: UnitState


class ChangeOutcome(BaseModel):
    space: str
    slug: str
    revision: int
    created: bool  # False when the content equalled head (no revision written)
