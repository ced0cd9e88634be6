"""Changes outside Git and the space-level reads and writes: the messages of
``workflows/change.py`` (bulk set, rollback, the live render for Argo CD, the space's
gates) and of the authority activities they call."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from domain.authority import GatesUpdate, PolicyBundle, SpaceGates
from domain.markdown import OneLine

# ---- the authority activities of bulk set and rollback ----------------------------------


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


# ---- bulk set and rollback ----------------------------------------------------------------


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


# ---- the live render (Argo CD's CMP) and the space's gates ---------------------------------


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
