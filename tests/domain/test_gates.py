"""domain/gates.py: the authority holds a space's gates (issue 10, hole 4)."""

from __future__ import annotations

import pytest

from domain.authority import PolicyBundle, SpaceGates, SpaceSpec, SyncSettings
from domain.errors import BadInput
from domain.gates import (
    OWNER_LABEL,
    hold_for_gates,
    kind_allowed,
    live_stream,
    object_problem,
    owner_problem,
    parse_kind_pattern,
    parse_namespace_pattern,
    review_gates,
    seed_kinds,
    seed_namespaces,
    with_owner,
)
from domain.normalize import normalize
from domain.publish import RenderedUnit, UnitSnapshot, plan_space

SPACE = "app-prod"
CLAIM = "messagewall.demo/ServerlessEventAppClaim"


def claim(name: str = "app", namespace: str | None = "team-a", memory: int = 128) -> dict:
    meta: dict = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    return {
        "apiVersion": "messagewall.demo/v1alpha1",
        "kind": "ServerlessEventAppClaim",
        "metadata": meta,
        "spec": {"lambdaMemory": memory},
    }


CRB = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "ClusterRoleBinding",
    "metadata": {"name": "dev-admin"},
}


def stored(**over) -> SpaceGates:
    values = {"approval": "required", "kinds": [CLAIM], "namespaces": ["team-a"], "base": ""}
    values.update(over)
    return SpaceGates(**values)


def declared(**over) -> SpaceSpec:
    values = {"name": SPACE, "environment": "prod", "approval": "required"}
    values.update(over)
    return SpaceSpec(**values)


# ---- patterns ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (CLAIM, CLAIM),
        ("/ConfigMap", "/ConfigMap"),
        ("core/ConfigMap", "/ConfigMap"),
        ("messagewall.demo/*", "messagewall.demo/*"),
        ("*/*", "*/*"),
    ],
)
def test_kind_patterns(text: str, expected: str) -> None:
    assert parse_kind_pattern(text) == expected


@pytest.mark.parametrize("text", ["ConfigMap", "Bad_Group/Kind", "g.io/9kind", "g.io/", ""])
def test_bad_kind_patterns_are_bad_input(text: str) -> None:
    with pytest.raises(BadInput, match="--allow-kind"):
        parse_kind_pattern(text)


@pytest.mark.parametrize("text", ["kube-system/..", "Team-A", "a" * 64, "", "a_b"])
def test_bad_namespaces_are_bad_input(text: str) -> None:
    with pytest.raises(BadInput, match="--namespace"):
        parse_namespace_pattern(text)


def test_wildcards_never_allow_a_cluster_scoped_kind() -> None:
    key = "rbac.authorization.k8s.io/ClusterRoleBinding"
    assert kind_allowed(["*/*"], key, cluster_scoped=False)
    assert not kind_allowed(["*/*", "rbac.authorization.k8s.io/*"], key, cluster_scoped=True)
    assert kind_allowed([key], key, cluster_scoped=True)


# ---- objects -----------------------------------------------------------------------------


def test_object_of_an_allowed_kind_in_an_allowed_namespace() -> None:
    assert object_problem(SPACE, [CLAIM], ["team-a"], claim(), namespaced=True) is None


def test_cluster_scoped_kind_is_refused_unless_listed() -> None:
    problem = object_problem(SPACE, ["*/*"], ["*"], CRB, namespaced=False)
    assert problem == (
        "ClusterRoleBinding/dev-admin: cluster-scoped kind "
        "rbac.authorization.k8s.io/ClusterRoleBinding is not allowed in space app-prod "
        "(allowed: */*; `tributary space set app-prod --allow-kind "
        "rbac.authorization.k8s.io/ClusterRoleBinding …` allows it)"
    )


def test_namespace_not_allowed() -> None:
    problem = object_problem(
        SPACE, [CLAIM], ["team-a"], claim(namespace="kube-system"), namespaced=True
    )
    assert problem is not None
    assert "namespace kube-system is not allowed in space app-prod" in problem


def test_missing_namespace_is_default_once_the_scope_is_known() -> None:
    assert (
        object_problem(SPACE, [CLAIM], ["team-a"], claim(namespace=None), namespaced=None) is None
    )
    problem = object_problem(SPACE, [CLAIM], ["team-a"], claim(namespace=None), namespaced=True)
    assert problem is not None
    assert "namespace default" in problem


def test_the_live_stream_is_what_the_apply_sends_in_unit_order() -> None:
    stream = live_stream(SPACE, [("b", claim("b")), ("a", claim("a"))])
    assert stream == [with_owner(SPACE, claim("a")), with_owner(SPACE, claim("b"))]


def test_owner_label() -> None:
    ours = with_owner(SPACE, claim())
    assert ours["metadata"]["labels"] == {OWNER_LABEL: SPACE}
    assert "labels" not in claim()["metadata"]  # a copy
    assert owner_problem(SPACE, None) is None
    assert owner_problem(SPACE, ours) is None
    assert owner_problem(SPACE, claim()) is None  # unowned: adopted
    assert owner_problem("app-dev", ours) == (
        "ServerlessEventAppClaim/app belongs to space app-prod (label tributary.dev/space); "
        "space app-dev may not apply over it"
    )


def test_owner_label_is_never_drift() -> None:
    assert normalize(with_owner(SPACE, claim())) == claim()


# ---- seeding -----------------------------------------------------------------------------


def test_a_new_space_may_apply_its_xrds_claim_kinds_in_the_namespaces_it_renders() -> None:
    xrd = {"spec": {"group": "messagewall.demo", "claimNames": {"kind": "ServerlessEventAppClaim"}}}
    bundle = PolicyBundle(xrds={"x.yaml": [xrd, {"spec": {"group": "g.io"}}]})
    assert seed_kinds(bundle) == [CLAIM]
    assert seed_namespaces([claim(), claim(namespace=None)]) == ["default", "team-a"]
    assert seed_namespaces([]) == ["default"]


# ---- review at publish -------------------------------------------------------------------


def test_a_new_space_is_held_to_its_seeded_gates() -> None:
    """The creating commit seeds approval, but kinds only from its XRDs: it cannot
    slip a ClusterRoleBinding into a new space either."""
    seeded = declared(approval="none", kinds=[CLAIM], namespaces=["team-a"])
    assert not review_gates(None, seeded, {"app": claim()}).holds
    review = review_gates(None, seeded, {"app": claim(), "crb": CRB})
    assert list(review.units) == ["crb"]
    assert "is not allowed in space" in review.units["crb"]


def test_weaker_approval_in_tributary_yaml_holds_the_space() -> None:
    review = review_gates(stored(), declared(approval="none"), {"app": claim()})
    assert review.reasons == [
        "tributary.yaml: spaces.app-prod.approval: none is weaker than the authority's "
        "required; only `tributary space set app-prod --approval none` can loosen a gate"
    ]


def test_stricter_approval_is_noted_not_applied() -> None:
    review = review_gates(stored(approval="none"), declared(approval="required"), {})
    assert not review.holds
    assert review.notes == [
        "tributary.yaml: spaces.app-prod.approval: required is stricter than the authority's "
        "none and was not applied: the authority decides gates; run "
        "`tributary space set app-prod --approval required`"
    ]


def test_another_base_branch_holds_the_space() -> None:
    review = review_gates(stored(base="main"), declared(sync=SyncSettings(base="evil")), {})
    assert len(review.reasons) == 1
    assert review.reasons[0].startswith("tributary.yaml: sync.base: evil differs from")


def test_kinds_and_namespaces_outside_the_gates_hold_the_space() -> None:
    review = review_gates(
        stored(), declared(), {"app": claim(), "crb": CRB, "other": claim("o", "kube-system")}
    )
    assert sorted(review.units) == ["crb", "other"]


def test_hold_for_gates_holds_every_write_with_its_reason() -> None:
    rendered = [
        RenderedUnit(slug="app", api_version="v", kind="k", data=claim(memory=256)),
        RenderedUnit(slug="crb", api_version="v", kind="k", data=CRB),
    ]
    current = {
        "app": UnitSnapshot(
            slug="app", version=1, head_revision=3, head_data=claim(), base_data=claim()
        )
    }
    plan = plan_space(rendered, current, force=False)
    assert [u.action for u in plan.units] == ["published", "published"]
    review = review_gates(stored(), declared(), {r.slug: r.data for r in rendered})
    held = hold_for_gates(plan, review, current)
    assert held.blocked == "gates"
    assert [(u.unit, u.action, u.revision, u.data) for u in held.units] == [
        ("app", "held", 3, None),
        ("crb", "held", None, None),
    ]
    assert held.units[1].reason.startswith("ClusterRoleBinding/dev-admin: kind ")
    assert held.units[0].reason.startswith("another unit of the space is not allowed")
    assert held.writes == []


def test_hold_for_gates_leaves_an_allowed_plan_alone() -> None:
    rendered = [RenderedUnit(slug="app", api_version="v", kind="k", data=claim())]
    plan = plan_space(rendered, {}, force=False)
    review = review_gates(stored(approval="none"), declared(), {"app": claim()})
    assert hold_for_gates(plan, review, {}) == plan
