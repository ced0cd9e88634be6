"""The publish decision (DESIGN.md, "Conflict (publish)") as a pure function.

The workflow calls ``plan_space`` with what Git rendered and what the authority
holds, so every decision is recorded in workflow history and unit-tested here.

The merge base of a unit is what Git last rendered for it (``GitBase``), stored
as such: never a merged, forced or captured revision. A plan that is not blocked
records Git's render as the new base of every unit whose render moved, whatever
was written (``published``, ``merged``, ``forced``, and also ``unchanged`` and
``authority-ahead``, where the authority already agreed). A commit already
published to a space, or an ancestor of one (``seen``), never writes, unless
``--force``.

Also the messages of the publish workflows (``workflows/publish.py``) and of the
render and authority activities they call, at the end.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from domain.authority import (
    ChangeOutcome,
    PolicyBundle,
    Source,
    SpaceGates,
    SpaceSpec,
    UnitChange,
    UnitStateChange,
)
from domain.diff import diff, json_equal, three_way_merge
from domain.errors import ErrorInfo
from domain.paths import MISSING
from domain.project import ProjectConfig
from domain.repos import CheckoutResult, SourceRef

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


class GitBase(BaseModel):
    """What Git last rendered for a unit, and the commit that rendered it."""

    slug: str
    commit: str
    data: dict[str, Any]


class GitRecord(BaseModel):
    """Git's side of one publish of a space, written with its revisions.

    ``bases`` are the units whose merge base becomes this commit's render;
    ``expected`` is the base commit each was planned on ("" for none): a base that
    moved meanwhile (another publish) makes the write stale, and the publish
    re-plans. The commit is remembered as published to the space.
    """

    space: str
    commit: str
    bases: list[GitBase] = Field(default_factory=list)
    expected: dict[str, str] = Field(default_factory=dict)


class UnitSnapshot(BaseModel):
    """What the authority holds for a unit at planning time."""

    slug: str
    version: int
    head_revision: int
    head_data: dict[str, Any]
    base_data: dict[str, Any] | None = None  # Git's last render of the unit
    base_commit: str = ""  # the commit that rendered ``base_data``
    head_commit: str = ""  # the commit a Git-sourced head revision came from
    last_applied_revision: int | None = None
    state: str = "active"


class UnitVerdict(BaseModel):
    """What publish decided for one unit: the plan's and the result's common part (the
    keys of ``tributary publish --json``'s units)."""

    unit: str
    action: PublishAction
    revision: int | None = None
    violations: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    conflict_fields: list[str] = Field(default_factory=list)
    changed_fields: list[str] = Field(default_factory=list)
    reason: str = ""  # held: the gate that held it (domain/gates.py)


class UnitPlan(UnitVerdict):
    """The verdict, with what to write (for write actions)."""

    data: dict[str, Any] | None = None
    expected_version: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    # Git's render differs from the stored merge base: record it as the new base
    record_base: bool = False
    # Git renders an orphaned (or deleted) unit again: it becomes active again
    adopt: bool = False

    @property
    def writes(self) -> bool:
        return self.action in WRITE_ACTIONS


class SpacePlan(BaseModel):
    units: list[UnitPlan]
    # Why nothing is written: ``plan_space`` sets denied or conflict; ``gates`` is set
    # after it, by ``domain.gates.hold_for_gates``.
    blocked: Literal["", "denied", "conflict", "gates"] = ""
    # the commit was already published to this space: nothing is written again
    seen: bool = False

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
    seen: bool = False,
) -> SpacePlan:
    """Plan every unit; one denial or conflict holds the whole space back.

    A space is one environment of one app: publishing half of a commit into it
    would run a combination nobody reviewed, so a space is written whole or not
    at all. Active units that Git no longer renders become ``orphaned``.

    ``seen``: this commit was already published to the space, or one published there
    descends from it (``PublishWorkflow._superseded``). Re-running CI on it
    never writes — not even when a newer commit has been published since, whose
    render an old commit would otherwise look like a Git change against. Every
    unit that would be written is ``unchanged`` instead. ``force`` plans as usual:
    an explicit overwrite is not a re-run.
    """
    if seen and not force:
        return _seen_plan(rendered, current)
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
    by_slug = {r.slug: r for r in rendered}
    for u in units:
        if u.unit not in by_slug:
            continue
        snap = current.get(u.unit)
        # The base is Git's render itself, whatever this publish writes.
        u.record_base = (
            snap is None
            or snap.base_data is None
            or not json_equal(snap.base_data, by_slug[u.unit].data)
        )
        # Back in Git's render while the authority is ahead or already agrees:
        # nothing to write, but the unit is Git's again.
        u.adopt = snap is not None and snap.state != "active" and not u.writes
    return SpacePlan(units=units, blocked=blocked)


def _seen_plan(rendered: list[RenderedUnit], current: dict[str, UnitSnapshot]) -> SpacePlan:
    """A re-run: what writes nothing is reported as planned (``unchanged``,
    ``authority-ahead``, ``denied``); what would write or conflict — Git at this
    commit against a newer base — is ``unchanged``; orphans are not marked again."""
    units = []
    for r in rendered:
        snap = current.get(r.slug)
        u = plan_unit(r, snap, force=False)
        if u.action not in ("unchanged", "authority-ahead", "denied"):
            u = UnitPlan(
                unit=r.slug,
                action="unchanged",
                revision=snap.head_revision if snap else None,
                violations=r.violations,
                warnings=r.warnings,
                labels=r.labels,
            )
        units.append(u)
    blocked: Literal["", "denied", "conflict"] = (
        "denied" if any(u.action == "denied" for u in units) else ""
    )
    return SpacePlan(units=units, blocked=blocked, seen=True)


def git_record(
    space: str,
    commit: str,
    plan: SpacePlan,
    rendered: list[RenderedUnit],
    current: dict[str, UnitSnapshot],
) -> GitRecord:
    """What this publish records of Git's side: new merge bases, and the commit."""
    by_slug = {r.slug: r for r in rendered}
    moved = [u.unit for u in plan.units if u.record_base and u.unit in by_slug]
    return GitRecord(
        space=space,
        commit=commit,
        bases=[GitBase(slug=s, commit=commit, data=by_slug[s].data) for s in moved],
        expected={s: current[s].base_commit if s in current else "" for s in moved},
    )


def to_apply(plan: SpacePlan, current: dict[str, UnitSnapshot], commit: str) -> list[str]:
    """Units that ``--apply`` applies: what this publish wrote, and what an earlier
    run of the same commit wrote but nobody applied yet (a CI retry with ``--apply``
    after a run without it must not exit 0 having applied nothing)."""
    out = []
    for u in plan.units:
        snap = current.get(u.unit)
        unapplied = (
            u.action == "unchanged"
            and snap is not None
            and bool(commit)
            and snap.head_commit == commit
            and snap.head_revision != snap.last_applied_revision
        )
        if (u.writes and u.revision) or unapplied:
            out.append(u.unit)
    return out


# ---- the publish workflows' and their activities' messages ------------------------------


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


class UnitOutcome(UnitVerdict):
    """The verdict as written, with where to follow its apply."""

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
