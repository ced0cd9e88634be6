"""domain/publish.py: the publish decision of DESIGN.md's conflict rule."""

from __future__ import annotations

import copy

import pytest

from domain.publish import (
    WRITE_ACTIONS,
    RenderedUnit,
    SpacePlan,
    UnitPlan,
    UnitSnapshot,
    plan_space,
    plan_unit,
)

BASE = {
    "apiVersion": "messagewall.demo/v1alpha1",
    "kind": "ServerlessEventAppClaim",
    "metadata": {"name": "u"},
    "spec": {"lambdaMemory": 256, "lambdaTimeout": 30, "region": "us-east-1"},
}


def spec(**changes):
    out = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            out["spec"].pop(key, None)
        else:
            out["spec"][key] = value
    return out


def rendered(data, slug="u", violations=(), warnings=(), labels=None):
    return RenderedUnit(
        slug=slug,
        api_version="messagewall.demo/v1alpha1",
        kind="ServerlessEventAppClaim",
        labels=labels if labels is not None else {"environment": "prod"},
        data=data,
        violations=list(violations),
        warnings=list(warnings),
    )


def snapshot(head, base=BASE, slug="u", version=3, head_revision=5):
    return UnitSnapshot(
        slug=slug,
        version=version,
        head_revision=head_revision,
        head_data=head,
        base_data=base,
    )


# ---- plan_unit --------------------------------------------------------------------


def test_new_unit_is_published():
    plan = plan_unit(rendered(BASE, warnings=["w"]), None, force=False)
    assert plan.action == "published"
    assert plan.data == BASE
    assert plan.expected_version is None
    assert plan.revision is None
    assert plan.writes is True
    assert plan.warnings == ["w"]
    assert plan.labels == {"environment": "prod"}
    assert plan.changed_fields == [
        "apiVersion",
        "kind",
        "metadata.name",
        "spec.lambdaMemory",
        "spec.lambdaTimeout",
        "spec.region",
    ]


def test_unchanged_unit_writes_nothing():
    plan = plan_unit(rendered(BASE), snapshot(BASE), force=False)
    assert plan.action == "unchanged"
    assert plan.revision == 5
    assert plan.data is None
    assert plan.expected_version is None
    assert plan.writes is False
    assert plan.changed_fields == []


def test_unchanged_even_with_force():
    assert plan_unit(rendered(BASE), snapshot(BASE), force=True).action == "unchanged"


def test_int_float_equality_is_unchanged():
    assert plan_unit(rendered(spec(lambdaMemory=256.0)), snapshot(BASE), force=False).action == (
        "unchanged"
    )


def test_git_only_change_is_published():
    git = spec(lambdaMemory=512)
    plan = plan_unit(rendered(git), snapshot(BASE), force=False)
    assert plan.action == "published"
    assert plan.data == git
    assert plan.expected_version == 3
    assert plan.revision is None
    assert plan.changed_fields == ["spec.lambdaMemory"]
    assert WRITE_ACTIONS[plan.action] == "ci"


def test_authority_only_change_is_authority_ahead():
    head = spec(lambdaTimeout=60)
    plan = plan_unit(rendered(BASE), snapshot(head), force=False)
    assert plan.action == "authority-ahead"
    assert plan.revision == 5
    assert plan.data is None
    assert plan.writes is False
    assert plan.changed_fields == ["spec.lambdaTimeout"]


def test_authority_only_change_with_force_is_forced():
    head = spec(lambdaTimeout=60)
    plan = plan_unit(rendered(BASE), snapshot(head), force=True)
    assert plan.action == "forced"
    assert plan.data == BASE
    assert plan.expected_version == 3
    assert plan.changed_fields == ["spec.lambdaTimeout"]
    assert WRITE_ACTIONS[plan.action] == "ci-forced"


def test_disjoint_changes_on_both_sides_merge():
    git = spec(lambdaMemory=512)
    head = spec(lambdaTimeout=60)
    plan = plan_unit(rendered(git), snapshot(head), force=False)
    assert plan.action == "merged"
    assert plan.data == spec(lambdaMemory=512, lambdaTimeout=60)
    assert plan.expected_version == 3
    assert plan.conflict_fields == []
    # what the write changes relative to the authority's head
    assert plan.changed_fields == ["spec.lambdaMemory"]
    assert WRITE_ACTIONS[plan.action] == "ci-merged"


def test_disjoint_add_in_git_and_delete_in_authority_merge():
    git = spec(eventSource="x.y")
    head = spec(region=None)
    plan = plan_unit(rendered(git), snapshot(head), force=False)
    assert plan.action == "merged"
    assert plan.data == spec(eventSource="x.y", region=None)


def test_same_change_on_both_sides_is_unchanged():
    both = spec(lambdaMemory=512)
    plan = plan_unit(rendered(both), snapshot(both), force=False)
    assert plan.action == "unchanged"
    assert plan.conflict_fields == []
    assert plan.revision == 5


def test_same_change_plus_authority_extra_is_authority_ahead():
    git = spec(lambdaMemory=512)
    head = spec(lambdaMemory=512, lambdaTimeout=60)
    plan = plan_unit(rendered(git), snapshot(head), force=False)
    assert plan.action == "authority-ahead"
    assert plan.conflict_fields == []
    assert plan.changed_fields == ["spec.lambdaTimeout"]
    assert plan.data is None


def test_same_change_plus_authority_extra_with_force_is_forced():
    git = spec(lambdaMemory=512)
    head = spec(lambdaMemory=512, lambdaTimeout=60)
    plan = plan_unit(rendered(git), snapshot(head), force=True)
    assert plan.action == "forced"
    assert plan.data == git


def test_same_change_plus_git_extra_is_published_as_git():
    git = spec(lambdaMemory=512, lambdaTimeout=60)
    head = spec(lambdaMemory=512)
    plan = plan_unit(rendered(git), snapshot(head), force=False)
    assert plan.action == "published"
    assert plan.data == git
    assert plan.changed_fields == ["spec.lambdaTimeout"]


def test_overlapping_change_is_a_conflict():
    git = spec(lambdaMemory=512, lambdaTimeout=45)
    head = spec(lambdaMemory=1024, lambdaTimeout=60, region="us-west-2")
    plan = plan_unit(rendered(git), snapshot(head), force=False)
    assert plan.action == "conflict"
    assert plan.conflict_fields == ["spec.lambdaMemory", "spec.lambdaTimeout"]
    assert plan.data is None
    assert plan.revision == 5
    assert plan.writes is False


def test_conflict_with_force_is_forced_with_git_data():
    git = spec(lambdaMemory=512)
    head = spec(lambdaMemory=1024)
    plan = plan_unit(rendered(git), snapshot(head), force=True)
    assert plan.action == "forced"
    assert plan.data == git
    assert plan.conflict_fields == []
    assert plan.expected_version == 3
    assert plan.changed_fields == ["spec.lambdaMemory"]


def test_no_base_and_a_difference_is_a_conflict_on_the_differing_fields():
    git = spec(lambdaMemory=512)
    head = spec(lambdaMemory=1024)
    plan = plan_unit(rendered(git), snapshot(head, base=None), force=False)
    assert plan.action == "conflict"
    assert plan.conflict_fields == ["spec.lambdaMemory"]


def test_denied_unit_writes_nothing():
    plan = plan_unit(
        rendered(spec(lambdaMemory=128), violations=["too small"]), snapshot(BASE), force=False
    )
    assert plan.action == "denied"
    assert plan.violations == ["too small"]
    assert plan.data is None
    assert plan.revision == 5
    assert plan.writes is False


def test_denied_wins_over_force():
    plan = plan_unit(
        rendered(spec(lambdaMemory=128), violations=["no"]), snapshot(BASE), force=True
    )
    assert plan.action == "denied"


def test_denied_new_unit_has_no_revision():
    plan = plan_unit(rendered(BASE, violations=["no"]), None, force=False)
    assert plan.action == "denied"
    assert plan.revision is None


def test_plan_unit_does_not_mutate_its_inputs():
    git = spec(lambdaMemory=512)
    head = spec(lambdaTimeout=60)
    r = rendered(git)
    s = snapshot(head)
    before = (r.model_dump(), s.model_dump())
    plan = plan_unit(r, s, force=False)
    assert plan.action == "merged"
    assert (r.model_dump(), s.model_dump()) == before


# ---- plan_space ---------------------------------------------------------------------


def test_space_with_only_good_units_writes_them():
    plan = plan_space(
        [
            rendered(spec(lambdaMemory=512), slug="a"),
            rendered(BASE, slug="b"),
            rendered(BASE, slug="c"),
        ],
        {"a": snapshot(BASE, slug="a"), "b": snapshot(BASE, slug="b")},
        force=False,
    )
    assert isinstance(plan, SpacePlan)
    assert plan.blocked == ""
    assert [(u.unit, u.action) for u in plan.units] == [
        ("a", "published"),
        ("b", "unchanged"),
        ("c", "published"),
    ]
    assert [u.unit for u in plan.writes] == ["a", "c"]


def test_one_denied_unit_holds_the_other_writes():
    plan = plan_space(
        [
            rendered(spec(lambdaMemory=512), slug="a"),
            rendered(BASE, slug="b", violations=["b: denied"]),
            rendered(BASE, slug="new"),
            rendered(BASE, slug="same"),
        ],
        {
            "a": snapshot(BASE, slug="a", head_revision=7),
            "b": snapshot(BASE, slug="b"),
            "same": snapshot(BASE, slug="same", head_revision=2),
        },
        force=False,
    )
    assert plan.blocked == "denied"
    by = {u.unit: u for u in plan.units}
    assert by["a"].action == "held"
    assert by["a"].data is None
    assert by["a"].revision == 7
    assert by["new"].action == "held"
    assert by["new"].revision is None
    assert by["new"].data is None
    assert by["b"].action == "denied"
    assert by["b"].violations == ["b: denied"]
    assert by["same"].action == "unchanged"
    assert by["same"].revision == 2
    assert plan.writes == []


def test_one_conflict_holds_the_other_writes():
    plan = plan_space(
        [
            rendered(spec(lambdaMemory=512), slug="a"),
            rendered(spec(lambdaMemory=512), slug="c"),
        ],
        {
            "a": snapshot(BASE, slug="a"),
            "c": snapshot(spec(lambdaMemory=2048), slug="c", head_revision=9),
        },
        force=False,
    )
    assert plan.blocked == "conflict"
    assert [(u.unit, u.action) for u in plan.units] == [("a", "held"), ("c", "conflict")]
    assert plan.units[0].data is None
    assert plan.units[0].revision == 5
    assert plan.units[1].conflict_fields == ["spec.lambdaMemory"]
    assert plan.writes == []


def test_authority_ahead_does_not_hold_the_space():
    plan = plan_space(
        [rendered(spec(lambdaMemory=512), slug="a"), rendered(BASE, slug="b")],
        {"a": snapshot(BASE, slug="a"), "b": snapshot(spec(lambdaTimeout=60), slug="b")},
        force=False,
    )
    assert plan.blocked == ""
    assert [(u.unit, u.action) for u in plan.units] == [
        ("a", "published"),
        ("b", "authority-ahead"),
    ]


def test_denied_wins_over_conflict():
    plan = plan_space(
        [
            rendered(spec(lambdaMemory=512), slug="c"),
            rendered(BASE, slug="d", violations=["no"]),
            rendered(spec(lambdaTimeout=45), slug="w"),
        ],
        {"c": snapshot(spec(lambdaMemory=2048), slug="c"), "w": snapshot(BASE, slug="w")},
        force=False,
    )
    assert plan.blocked == "denied"
    assert [(u.unit, u.action) for u in plan.units] == [
        ("c", "conflict"),
        ("d", "denied"),
        ("w", "held"),
    ]


def test_force_turns_conflict_and_authority_ahead_into_forced_and_nothing_is_held():
    plan = plan_space(
        [
            rendered(spec(lambdaMemory=512), slug="c"),
            rendered(BASE, slug="ahead"),
            rendered(spec(region="eu-west-1"), slug="p"),
        ],
        {
            "c": snapshot(spec(lambdaMemory=2048), slug="c"),
            "ahead": snapshot(spec(lambdaTimeout=60), slug="ahead"),
            "p": snapshot(BASE, slug="p"),
        },
        force=True,
    )
    assert plan.blocked == ""
    assert [(u.unit, u.action) for u in plan.units] == [
        ("c", "forced"),
        ("ahead", "forced"),
        ("p", "published"),
    ]
    assert [u.unit for u in plan.writes] == ["c", "ahead", "p"]


def test_force_does_not_lift_a_denial():
    plan = plan_space(
        [rendered(spec(lambdaMemory=512), slug="c"), rendered(BASE, slug="d", violations=["no"])],
        {"c": snapshot(spec(lambdaMemory=2048), slug="c")},
        force=True,
    )
    assert plan.blocked == "denied"
    assert [(u.unit, u.action) for u in plan.units] == [("c", "held"), ("d", "denied")]


def test_empty_space_plan():
    plan = plan_space([], {}, force=False)
    assert plan.units == []
    assert plan.blocked == ""
    assert plan.writes == []


@pytest.mark.parametrize(
    ("action", "writes"),
    [
        ("published", True),
        ("merged", True),
        ("forced", True),
        ("unchanged", False),
        ("denied", False),
        ("conflict", False),
        ("authority-ahead", False),
        ("held", False),
    ],
)
def test_writes_property(action, writes):
    assert UnitPlan(unit="u", action=action).writes is writes


# ---- the merge base is Git's render; re-runs never write (issue 9, defect 1) --------

from domain.publish import git_record, to_apply  # noqa: E402


def test_base_moves_to_gits_render_on_a_merge_not_to_the_merge():
    current = {
        "u": snapshot(spec(lambdaTimeout=60), base=BASE).model_copy(update={"base_commit": "c1"})
    }
    git = [rendered(spec(lambdaMemory=512))]

    plan = plan_space(git, current, force=False)

    assert [(u.action, u.record_base) for u in plan.units] == [("merged", True)]
    record = git_record("s", "c2", plan, git, current)
    assert [(b.slug, b.commit, b.data) for b in record.bases] == [
        ("u", "c2", spec(lambdaMemory=512))
    ]
    assert record.expected == {"u": "c1"}


def test_agreement_and_authority_ahead_also_move_the_base():
    git = [rendered(spec(lambdaMemory=512), slug="a"), rendered(spec(lambdaMemory=512), slug="b")]
    current = {
        "a": snapshot(spec(lambdaMemory=512), slug="a"),  # both sides set 512
        "b": snapshot(spec(lambdaMemory=512, lambdaTimeout=60), slug="b"),  # and more
    }

    plan = plan_space(git, current, force=False)

    assert [(u.action, u.record_base, u.writes) for u in plan.units] == [
        ("unchanged", True, False),
        ("authority-ahead", True, False),
    ]


def test_base_equal_to_the_render_is_not_recorded_again():
    plan = plan_space([rendered(BASE)], {"u": snapshot(spec(lambdaTimeout=60))}, force=False)
    assert [(u.action, u.record_base) for u in plan.units] == [("authority-ahead", False)]


def test_a_blocked_space_records_no_base():
    plan = plan_space(
        [rendered(spec(lambdaMemory=512), slug="a"), rendered(BASE, slug="b", violations=["no"])],
        {"a": snapshot(BASE, slug="a")},
        force=False,
    )
    assert plan.blocked == "denied"
    assert not any(u.record_base for u in plan.units)
    assert git_record("s", "c", plan, [], {}).bases == []


def test_orphan_rendered_again_while_the_authority_is_ahead_is_adopted():
    orphan = snapshot(spec(lambdaTimeout=60)).model_copy(update={"state": "orphaned"})
    plan = plan_space([rendered(BASE)], {"u": orphan}, force=False, states={"u": "orphaned"})
    assert [(u.action, u.adopt, u.writes) for u in plan.units] == [("authority-ahead", True, False)]


def test_active_unit_is_not_adopted():
    plan = plan_space([rendered(BASE)], {"u": snapshot(spec(lambdaTimeout=60))}, force=False)
    assert [u.adopt for u in plan.units] == [False]


def test_seen_commit_writes_nothing_whatever_the_plan_would_be():
    git = [
        rendered(spec(lambdaMemory=512), slug="a"),  # would publish (older commit)
        rendered(spec(lambdaMemory=1024), slug="b"),  # would conflict
        rendered(BASE, slug="c"),  # authority ahead: reported as such
        rendered(BASE, slug="new"),  # would create
    ]
    current = {
        "a": snapshot(BASE, slug="a"),
        "b": snapshot(spec(lambdaMemory=512), slug="b"),
        "c": snapshot(spec(lambdaTimeout=60), slug="c"),
    }
    states = {"a": "active", "b": "active", "c": "active", "gone": "active"}

    plan = plan_space(git, current, force=False, states=states, seen=True)

    assert plan.seen
    assert plan.blocked == ""
    assert plan.writes == []
    assert [(u.unit, u.action, u.revision) for u in plan.units] == [
        ("a", "unchanged", 5),
        ("b", "unchanged", 5),
        ("c", "authority-ahead", 5),
        ("new", "unchanged", None),
    ]
    assert not any(u.record_base or u.adopt for u in plan.units)


def test_seen_commit_with_a_violation_is_still_denied():
    plan = plan_space(
        [rendered(BASE, violations=["no"])], {"u": snapshot(BASE)}, force=False, seen=True
    )
    assert (plan.blocked, [u.action for u in plan.units]) == ("denied", ["denied"])


def test_force_on_a_seen_commit_plans_as_usual():
    current = {"u": snapshot(spec(lambdaMemory=512))}
    plan = plan_space([rendered(spec(lambdaMemory=1024))], current, force=True, seen=True)
    assert (plan.seen, [u.action for u in plan.units]) == (False, ["forced"])


def test_apply_takes_writes_and_unapplied_heads_of_the_same_commit():
    current = {
        "w": snapshot(BASE, slug="w"),
        "x": snapshot(BASE, slug="x").model_copy(update={"head_commit": "c"}),
        "y": snapshot(BASE, slug="y").model_copy(
            update={"head_commit": "c", "last_applied_revision": 5}
        ),
        "z": snapshot(BASE, slug="z").model_copy(update={"head_commit": "other"}),
    }
    git = [rendered(spec(lambdaMemory=512), slug="w")]
    git += [rendered(BASE, slug=s) for s in "xyz"]
    plan = plan_space(git, current, force=False)
    plan.units[0].revision = 6  # assigned by the write

    # w was written now; x was written by an earlier run of commit c and never applied
    assert to_apply(plan, current, "c") == ["w", "x"]
    assert to_apply(plan_space(git, current, force=False, seen=True), current, "c") == ["x"]
