"""The publish decision (DESIGN.md, "Conflict (publish)") as a pure function.

The workflow calls ``plan_space`` with what Git rendered and what the authority
holds, so every decision is recorded in workflow history and unit-tested here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from domain.authority import Source
from domain.diff import diff, json_equal, three_way_merge
from domain.paths import MISSING

PublishAction = Literal[
    "published",  # Git's render is the new head
    "unchanged",  # the authority already holds Git's render
    "merged",  # Git and authority changed disjoint fields: the merge is the new head
    "forced",  # --force: Git's render overwrote authority-side changes
    "denied",  # a policy denied the render: nothing written
    "conflict",  # both sides changed the same field differently: nothing written
    "authority-ahead",  # only the authority changed: a sync PR will bring it to Git
    "held",  # would change, but the space was denied, conflicted or stopped at a gate
    "orphaned",  # no longer rendered by Git: marked, never deleted silently
]
WRITE_ACTIONS: dict[str, Source] = {"published": "ci", "merged": "ci-merged", "forced": "ci-forced"}


class RenderedUnit(BaseModel):
    """One object of a rendered overlay, checked against schemas and policies."""

    slug: str
    api_version: str
    kind: str
    labels: dict[str, str] = Field(default_factory=dict)
    data: dict[str, Any]
    violations: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


class UnitSnapshot(BaseModel):
    """What the authority holds for a unit at planning time."""

    slug: str
    version: int
    head_revision: int
    head_data: dict[str, Any]
    base_revision: int | None = None
    base_data: dict[str, Any] | None = None
    state: str = "active"


class UnitPlan(BaseModel):
    unit: str
    action: PublishAction
    revision: int | None = None
    violations: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    conflict_fields: list[str] = Field(default_factory=list)
    changed_fields: list[str] = Field(default_factory=list)
    reason: str = ""  # why a unit is held by a gate (domain/gates.py)
    # what to write, for write actions
    data: dict[str, Any] | None = None
    expected_version: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)

    @property
    def writes(self) -> bool:
        return self.action in WRITE_ACTIONS


class SpacePlan(BaseModel):
    units: list[UnitPlan]
    blocked: Literal["", "denied", "conflict", "gates"] = ""

    @property
    def writes(self) -> list[UnitPlan]:
        return [u for u in self.units if u.writes]


def plan_unit(rendered: RenderedUnit, current: UnitSnapshot | None, *, force: bool) -> UnitPlan:
    plan = UnitPlan(
        unit=rendered.slug,
        action="unchanged",
        violations=rendered.violations,
        warnings=rendered.warnings,
        labels=rendered.labels,
    )
    git = rendered.data
    if rendered.violations:
        plan.action = "denied"
        plan.revision = current.head_revision if current else None
        return plan
    if current is None:
        return _write(plan, "published", git, None, changed={})
    head = current.head_data
    plan.revision = current.head_revision
    if json_equal(git, head):
        if current.state != "active":
            # Rendered again after being orphaned or deleted: adopt it again.
            return _write(plan, "published", git, current, changed=head)
        return plan
    base = current.base_data if current.base_data is not None else {}
    git_changed = not json_equal(git, base)
    authority_changed = not json_equal(head, base)
    if not authority_changed:
        return _write(plan, "published", git, current, changed=head)
    if not git_changed:
        if force:
            return _write(plan, "forced", git, current, changed=head)
        plan.action = "authority-ahead"
        plan.changed_fields = [c.path for c in diff(git, head)]
        return plan
    merged, conflicts = three_way_merge(base, git, head)
    if conflicts:
        if force:
            return _write(plan, "forced", git, current, changed=head)
        plan.action = "conflict"
        plan.conflict_fields = [c.path for c in conflicts]
        return plan
    merged = {} if merged is MISSING else merged
    if json_equal(merged, head):
        # Everything Git changed, the authority already has; the authority's
        # extra changes are still to reach Git through the sync PR.
        if force:
            return _write(plan, "forced", git, current, changed=head)
        plan.action = "authority-ahead"
        plan.changed_fields = [c.path for c in diff(git, head)]
        return plan
    if json_equal(merged, git):
        return _write(plan, "published", git, current, changed=head)
    return _write(plan, "merged", merged, current, changed=head)


def _write(
    plan: UnitPlan,
    action: PublishAction,
    data: dict[str, Any],
    current: UnitSnapshot | None,
    *,
    changed: dict[str, Any],
) -> UnitPlan:
    plan.action = action
    plan.data = data
    plan.expected_version = current.version if current else None
    plan.revision = None  # assigned on write
    plan.changed_fields = [c.path for c in diff(changed, data)]
    return plan


def plan_space(
    rendered: list[RenderedUnit],
    current: dict[str, UnitSnapshot],
    *,
    force: bool,
    states: dict[str, str] | None = None,
) -> SpacePlan:
    """Plan every unit; one denial or conflict holds the whole space back.

    A space is one environment of one app: publishing half of a commit into it
    would run a combination nobody reviewed, so a space is written whole or not
    at all. Active units that Git no longer renders become ``orphaned``.
    """
    units = [plan_unit(r, current.get(r.slug), force=force) for r in rendered]
    rendered_slugs = {r.slug for r in rendered}
    units.extend(
        UnitPlan(unit=slug, action="orphaned")
        for slug, state in sorted((states or {}).items())
        if state == "active" and slug not in rendered_slugs
    )
    blocked: Literal["", "denied", "conflict"] = ""
    if any(u.action == "denied" for u in units):
        blocked = "denied"
    elif any(u.action == "conflict" for u in units):
        blocked = "conflict"
    if blocked:
        units = [u for u in units if u.action != "orphaned"]
        for u in units:
            if u.writes:
                u.action = "held"
                u.data = None
                u.revision = current[u.unit].head_revision if u.unit in current else None
    return SpacePlan(units=units, blocked=blocked)
