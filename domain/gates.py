"""A space's gates, held by the authority (DESIGN.md, "Who decides what").

Like an Argo CD AppProject: a space's approval mode, the kinds (``GROUP/KIND``)
and namespaces it may apply, its destination and its sync base branch are set by
an admin (``tributary space set``) and recorded with who and when. A commit
decides content only: ``tributary.yaml`` seeds the gates when a space is created
and never changes them afterwards. A commit that would loosen one is ``held``
with the reason; a commit that asks for a tighter gate is published, with a note
that only ``tributary space set`` changes it.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field

from domain.authority import PolicyBundle, SpaceGates, SpaceSpec
from domain.errors import BadInput
from domain.project import ApprovalMode
from domain.publish import SpacePlan, UnitSnapshot

# Every object Tributary applies carries its space here; an object another space
# owns is never applied over (forced server-side apply would take it over).
OWNER_LABEL = "tributary.dev/space"

APPROVAL_STRENGTH: dict[str, int] = {"none": 0, "acknowledge": 1, "required": 2}
ANY = "*"

_GROUP = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_KIND = re.compile(r"[A-Za-z][A-Za-z0-9]{0,62}")
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def kind_key(api_version: str, kind: str) -> str:
    """``GROUP/KIND`` of an object; the core group is empty (``/ConfigMap``)."""
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    return f"{group}/{kind}"


def parse_kind_pattern(text: str) -> str:
    """``GROUP/KIND`` as given to ``--allow-kind``; ``*`` matches any group or kind.

    The core group is written empty or as ``core`` (``/ConfigMap``, ``core/ConfigMap``).
    """
    group, sep, kind = text.strip().rpartition("/")
    if not sep:
        raise BadInput(
            f"{text!r} is not GROUP/KIND (e.g. messagewall.example.org/ServerlessEventAppClaim, "
            "/ConfigMap for the core group, or example.org/* for every kind of a group)",
            field="--allow-kind",
        )
    group = "" if group == "core" else group
    if group not in ("", ANY) and not _GROUP.fullmatch(group):
        raise BadInput(f"{text!r}: {group!r} is not an API group", field="--allow-kind")
    if kind != ANY and not _KIND.fullmatch(kind):
        raise BadInput(f"{text!r}: {kind!r} is not a kind", field="--allow-kind")
    return f"{group}/{kind}"


def parse_namespace_pattern(text: str) -> str:
    """A namespace as given to ``--namespace``: a DNS-1123 label, or ``*`` for any."""
    value = text.strip()
    if value != ANY and not _NAMESPACE.fullmatch(value):
        raise BadInput(
            f"{text!r} is not a namespace (lowercase letters, digits and '-', at most 63) or *",
            field="--namespace",
        )
    return value


def kind_allowed(kinds: list[str], key: str, *, cluster_scoped: bool) -> bool:
    """Whether ``GROUP/KIND`` ``key`` may be applied.

    A cluster-scoped kind reaches beyond the space's namespaces (a
    ClusterRoleBinding grants rights everywhere), so only an exact entry allows
    it; wildcards cover namespaced kinds only.
    """
    group, _, kind = key.rpartition("/")
    for pattern in kinds:
        if pattern == key:
            return True
        if cluster_scoped:
            continue
        p_group, _, p_kind = pattern.rpartition("/")
        if p_group in (ANY, group) and p_kind in (ANY, kind):
            return True
    return False


def namespace_allowed(namespaces: list[str], namespace: str) -> bool:
    return ANY in namespaces or namespace in namespaces


def object_problem(
    space: str,
    kinds: list[str],
    namespaces: list[str],
    data: dict[str, Any],
    *,
    namespaced: bool | None,
) -> str | None:
    """Why ``space`` may not apply ``data``, or None.

    ``namespaced`` is None when the object's scope is not known (at publish, before
    the cluster is asked): then a missing namespace is left for the apply to judge.
    """
    key = kind_key(str(data.get("apiVersion", "")), str(data.get("kind", "")))
    meta = data.get("metadata") or {}
    name = f"{data.get('kind', '?')}/{meta.get('name', '?')}"
    if not kind_allowed(kinds, key, cluster_scoped=namespaced is False):
        scope = "cluster-scoped kind " if namespaced is False else "kind "
        return (
            f"{name}: {scope}{key} is not allowed in space {space} "
            f"(allowed: {', '.join(kinds) or 'none'}; `tributary space set {space} "
            f"--allow-kind {key} …` allows it)"
        )
    if namespaced is False:
        return None
    namespace = meta.get("namespace") or ("default" if namespaced else None)
    if namespace is not None and not namespace_allowed(namespaces, str(namespace)):
        return (
            f"{name}: namespace {namespace} is not allowed in space {space} "
            f"(allowed: {', '.join(namespaces) or 'none'}; `tributary space set {space} "
            f"--namespace {namespace} …` allows it)"
        )
    return None


def owner_problem(space: str, live: dict[str, Any] | None) -> str | None:
    """Why ``space`` may not apply over the live object, or None (absent or ours)."""
    if live is None:
        return None
    labels = (live.get("metadata") or {}).get("labels") or {}
    owner = labels.get(OWNER_LABEL)
    if owner and owner != space:
        meta = live.get("metadata") or {}
        return (
            f"{live.get('kind', '?')}/{meta.get('name', '?')} belongs to space {owner} "
            f"(label {OWNER_LABEL}); space {space} may not apply over it"
        )
    return None


def with_owner(space: str, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` labelled as owned by ``space`` (a copy)."""
    meta = dict(data.get("metadata") or {})
    meta["labels"] = {**(meta.get("labels") or {}), OWNER_LABEL: space}
    return {**data, "metadata": meta}


def live_stream(space: str, objects: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The objects an Argo CD CMP emits for ``space``: each unit's live revision exactly
    as Tributary's own apply sends it (labelled with the owner label), by unit name."""
    return [with_owner(space, data) for _unit, data in sorted(objects, key=lambda o: o[0])]


# ---- seeding and review at publish --------------------------------------------------------


def seed_kinds(bundle: PolicyBundle) -> list[str]:
    """A new space may apply the Claim kinds its schemas' XRDs define.

    Claims are namespaced, so no cluster-scoped kind is allowed until an admin
    says so.
    """
    found: set[str] = set()
    for docs in bundle.xrds.values():
        for xrd in docs:
            spec = xrd.get("spec") or {}
            claim = (spec.get("claimNames") or {}).get("kind")
            if spec.get("group") and claim:
                found.add(f"{spec['group']}/{claim}")
    return sorted(found)


def seed_namespaces(objects: list[dict[str, Any]]) -> list[str]:
    """A new space may use the namespaces its first render uses."""
    return sorted(
        {str((o.get("metadata") or {}).get("namespace") or "default") for o in objects}
        or {"default"}
    )


class GateReview(BaseModel):
    """What a commit's ``tributary.yaml`` and render say against the stored gates."""

    reasons: list[str] = Field(default_factory=list)  # loosening: the space is held
    notes: list[str] = Field(default_factory=list)  # tightening asked for, not applied
    units: dict[str, str] = Field(default_factory=dict)  # unit -> why it may not be applied

    @property
    def holds(self) -> bool:
        return bool(self.reasons or self.units)

    def held_reasons(self, plan: SpacePlan) -> list[str]:
        """Why the gates held ``plan`` back: the space's reasons, then its held units'."""
        return [
            *self.reasons,
            *(
                self.units[u.unit]
                for u in plan.units
                if u.action == "held" and u.unit in self.units
            ),
        ]


def review_gates(
    stored: SpaceGates | None,
    declared: SpaceSpec,
    objects: dict[str, dict[str, Any]],
) -> GateReview:
    """Compare a commit with the gates the authority holds for its space.

    ``stored`` None: the space is new and ``declared`` seeds it. Otherwise the
    authority decides: a weaker approval, another base branch, or an object of a
    kind or in a namespace the space does not allow holds the publish; a stricter
    approval is only noted.
    """
    review = GateReview()
    space = declared.name
    if stored is None:
        # A new space: the commit seeds its gates, but only with its XRDs' claim kinds
        # (seed_kinds), so the creating commit cannot slip in another kind either.
        for slug, data in sorted(objects.items()):
            problem = object_problem(
                space, declared.kinds, declared.namespaces, data, namespaced=None
            )
            if problem:
                review.units[slug] = problem
        return review
    want, have = declared.approval, stored.approval
    if APPROVAL_STRENGTH[want] < APPROVAL_STRENGTH[have]:
        review.reasons.append(
            f"tributary.yaml: spaces.{space}.approval: {want} is weaker than the authority's "
            f"{have}; only `tributary space set {space} --approval {want}` can loosen a gate"
        )
    elif APPROVAL_STRENGTH[want] > APPROVAL_STRENGTH[have]:
        review.notes.append(
            f"tributary.yaml: spaces.{space}.approval: {want} is stricter than the authority's "
            f"{have} and was not applied: the authority decides gates; run "
            f"`tributary space set {space} --approval {want}`"
        )
    if declared.sync.base != stored.base:
        review.reasons.append(
            f"tributary.yaml: sync.base: {declared.sync.base or '(default branch)'} differs "
            f"from the authority's {stored.base or '(default branch)'} for space {space}; "
            "the sync base branch is a gate only the authority changes"
        )
    for slug, data in sorted(objects.items()):
        problem = object_problem(space, stored.kinds, stored.namespaces, data, namespaced=None)
        if problem:
            review.units[slug] = problem
    return review


def approval_mode(text: str) -> ApprovalMode:
    if text not in APPROVAL_STRENGTH:
        raise BadInput(
            f"{text!r} is not an approval mode (none, acknowledge, required)", field="--approval"
        )
    return text  # type: ignore[return-value]


def hold_for_gates(
    plan: SpacePlan, review: GateReview, current: dict[str, UnitSnapshot]
) -> SpacePlan:
    """The plan with every write ``held`` (and why) when the review holds the space.

    A space is written whole or not at all, as for a denial: a unit the gates do
    not allow holds the others back too.
    """
    blocking = {u: why for u, why in review.units.items() if _writes(plan, u)}
    if not review.reasons and not blocking:
        return plan
    everyone = "; ".join(review.reasons) or (
        "another unit of the space is not allowed by its gates: "
        + "; ".join(blocking[u] for u in sorted(blocking))
    )
    units = [u for u in plan.units if u.action != "orphaned"]
    for u in units:
        if u.writes:
            u.action = "held"
            u.data = None
            u.revision = current[u.unit].head_revision if u.unit in current else None
            u.reason = blocking.get(u.unit) or everyone
    return plan.model_copy(update={"units": units, "blocked": plan.blocked or "gates"})


def _writes(plan: SpacePlan, unit: str) -> bool:
    return any(u.unit == unit and u.writes for u in plan.units)
