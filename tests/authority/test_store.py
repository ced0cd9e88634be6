"""authority/sql.py: the embedded store, on SQLite and on PostgreSQL (same tests)."""

from __future__ import annotations

import contextlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy
from sqlalchemy import func, select

from authority import schema
from authority import tables as t
from authority.sql import SqlStore, make_engine
from domain.authority import (
    ChangeOutcome,
    GatesUpdate,
    PolicyBundle,
    PolicyResult,
    SpaceSpec,
    SyncSettings,
    UnitChange,
)
from domain.errors import BadInput, NotFound, StaleVersion
from tests.authority import legacy

SPACE = "messagewall-dev-east"


def space_spec(name: str = SPACE, **over) -> SpaceSpec:
    values = {
        "name": name,
        "environment": "dev",
        "approval": "none",
        "drift": "capture",
        "drift_interval_seconds": 300,
        "labels": {"environment": "dev"},
        "repo": "file:///repo.git",
        "overlay": "infra/claims/overlays/dev-east",
        "ignore": ['metadata.annotations["x/y"]'],
        "policy": PolicyBundle(commit="c1", modules={"p.rego": "package p"}, digest="d1"),
    }
    values.update(over)
    return SpaceSpec(**values)


def claim(memory: int = 128, name: str = "messagewall-dev-east") -> dict:
    return {
        "apiVersion": "messagewall.demo/v1alpha1",
        "kind": "ServerlessEventAppClaim",
        "metadata": {"name": name, "labels": {"environment": "dev"}},
        "spec": {"lambdaMemory": memory, "region": "us-east-1"},
    }


def change(
    data: dict,
    expected: int | None,
    *,
    slug: str = "u",
    space: str = SPACE,
    source: str = "ci",
    key: str = "",
    labels: dict | None = None,
    description: str = "publish",
) -> UnitChange:
    return UnitChange(
        space=space,
        slug=slug,
        expected_version=expected,
        data=data,
        description=description,
        source=source,
        tags={"commit": "abc123"},
        author="Dana <dana@example.com>",
        policy=PolicyResult(warnings=["w"], policy_digest="d1"),
        labels=labels,
        idempotency_key=key,
    )


@pytest.fixture
def seeded(store: SqlStore) -> SqlStore:
    store.commit([], spaces=[space_spec()])
    return store


def _count(store: SqlStore, table) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


# ---- migrations: tests/authority/test_migrations.py -------------------------------------


# ---- spaces ------------------------------------------------------------------------------


def test_space_is_created(store):
    assert store.commit([], spaces=[space_spec()]) == []
    found = store.get_space(SPACE)
    assert found is not None
    assert (
        found.model_dump(
            exclude={"created_at", "updated_at", "gates_set_by", "gates_set_at", "gates_asserted"}
        )
        == space_spec().model_dump()
    )
    assert found.created_at == found.updated_at


def test_space_upsert_updates_fields_and_policy_bundle(seeded):
    first = seeded.get_space(SPACE)
    bundle = PolicyBundle(
        commit="c2",
        modules={"p.rego": "package p\n", "q.rego": "package q"},
        xrds={"x.yaml": [{"kind": "CompositeResourceDefinition"}]},
        digest="d2",
    )
    new = space_spec(
        drift="revert",
        drift_interval_seconds=60,
        labels={"t": "x"},
        policy=bundle,
    )
    seeded.commit([], spaces=[new])
    found = seeded.get_space(SPACE)
    assert found.drift == "revert"
    assert found.drift_interval_seconds == 60
    assert found.labels == {"t": "x"}
    assert found.policy == bundle
    assert found.created_at == first.created_at
    assert found.updated_at > first.updated_at


def test_space_upsert_with_same_values_does_not_touch_it(seeded):
    first = seeded.get_space(SPACE)
    seeded.commit([], spaces=[space_spec()])
    assert seeded.get_space(SPACE) == first


# ---- gates (issue 10, hole 4) --------------------------------------------------------------

GATED = {
    "approval": "required",
    "kinds": ["messagewall.demo/ServerlessEventAppClaim"],
    "namespaces": ["team-a"],
    "destination": "prod-cluster",
    "sync": SyncSettings(base="main"),
}


def test_gates_are_seeded_when_a_space_is_created(store):
    store.commit([], spaces=[space_spec(**GATED)])
    gates = store.get_space(SPACE).gates()
    assert gates.model_dump() == {
        "approval": "required",
        "kinds": ["messagewall.demo/ServerlessEventAppClaim"],
        "namespaces": ["team-a"],
        "destination": "prod-cluster",
        "base": "main",
        "actuator": "kubernetes",
        "argocd_app": "",
        "set_by": "",
        "set_at": None,
        "asserted": "",
    }


def test_a_publish_never_rewrites_the_gates_of_an_existing_space(store):
    store.commit([], spaces=[space_spec(**GATED)])
    loose = space_spec(
        approval="none",
        kinds=["*/*", "rbac.authorization.k8s.io/ClusterRoleBinding"],
        namespaces=["*"],
        destination="",
        sync=SyncSettings(base="evil", debounce_seconds=5),
        labels={"t": "y"},
    )
    store.commit([], spaces=[loose])
    found = store.get_space(SPACE)
    assert found.gates().model_dump(exclude={"set_by", "set_at", "asserted"}) == {
        "approval": "required",
        "kinds": ["messagewall.demo/ServerlessEventAppClaim"],
        "namespaces": ["team-a"],
        "destination": "prod-cluster",
        "base": "main",
        "actuator": "kubernetes",
        "argocd_app": "",
    }
    # what is not a gate still follows Git
    assert found.labels == {"t": "y"}
    assert found.sync.debounce_seconds == 5


def test_set_space_gates_changes_them_and_records_who_and_when(store):
    store.commit([], spaces=[space_spec(**GATED)])
    before = datetime.now(UTC)
    found, changed = store.set_space_gates(
        GatesUpdate(
            space=SPACE,
            approval="acknowledge",
            kinds=["/ConfigMap", "messagewall.demo/*"],
            base="release",
            by="Olu <olu@example.com>",
            asserted="env:TRIBUTARY_ACTOR",
        )
    )
    assert changed == ["approval", "base", "kinds"]
    gates = found.gates()
    assert (gates.approval, gates.kinds, gates.namespaces, gates.base) == (
        "acknowledge",
        ["/ConfigMap", "messagewall.demo/*"],
        ["team-a"],
        "release",
    )
    assert (gates.set_by, gates.asserted) == ("Olu <olu@example.com>", "env:TRIBUTARY_ACTOR")
    assert gates.set_at is not None
    assert gates.set_at >= before - timedelta(seconds=1)
    assert store.get_space(SPACE).gates() == gates


def test_the_actuator_is_a_gate_set_only_by_space_set(store):
    store.commit([], spaces=[space_spec(**GATED)])
    found, changed = store.set_space_gates(
        GatesUpdate(space=SPACE, actuator="argocd", argocd_app="wall-prod", by="olu")
    )
    assert changed == ["actuator", "argocd_app"]
    assert (found.gates().actuator, found.gates().argocd_app) == ("argocd", "wall-prod")
    # A publish (tributary.yaml) never changes it.
    store.commit([], spaces=[space_spec(**GATED)])
    assert store.get_space(SPACE).actuator == "argocd"
    # Back to our own apply; the Application's name stays until it is changed.
    found, changed = store.set_space_gates(
        GatesUpdate(space=SPACE, actuator="kubernetes", by="olu")
    )
    assert (changed, found.actuator, found.argocd_app) == (["actuator"], "kubernetes", "wall-prod")


@pytest.mark.parametrize(
    ("update", "message"),
    [
        (
            {"actuator": "confighub"},
            "--actuator: actuator confighub applies through ConfigHub, but this worker's "
            "authority is the embedded store",
        ),
        ({"actuator": "argocd"}, "--argocd-app: actuator argocd needs the Argo CD Application"),
    ],
)
def test_an_actuator_the_store_cannot_use_writes_nothing(store, update, message):
    store.commit([], spaces=[space_spec(**GATED)])
    before = store.get_space(SPACE)
    with pytest.raises(BadInput) as caught:
        store.set_space_gates(GatesUpdate(space=SPACE, by="olu", **update))
    assert caught.value.message.startswith(message)
    assert store.get_space(SPACE) == before


def test_an_argocd_application_name_is_a_kubernetes_name():
    with pytest.raises(ValueError, match=r"Argo CD Application name 'a/\.\./b' is not a valid"):
        GatesUpdate(space=SPACE, actuator="argocd", argocd_app="a/../b", by="olu")


def test_migration_11_keeps_existing_spaces_on_their_own_apply(store_url):
    engine = make_engine(store_url)
    try:
        legacy.build(engine, 10)
        assert legacy.version(engine) == 10
        now = datetime(2024, 5, 1, tzinfo=UTC)
        with engine.connect().execution_options(tributary_write=True) as conn, conn.begin():
            spaces = sqlalchemy.Table("spaces", sqlalchemy.MetaData(), autoload_with=conn)
            assert "actuator" not in spaces.c
            conn.execute(
                spaces.insert().values(
                    name=SPACE, environment="dev", approval="none", drift="capture",
                    drift_interval_seconds=300, labels={}, repo="r", overlay="o",
                    ignore_paths=[], policy={}, created_at=now, updated_at=now,
                )
            )  # fmt: skip
    finally:
        engine.dispose()

    store = SqlStore(store_url)
    try:
        assert schema.current_revision(store.engine) == schema.head()
        found = store.get_space(SPACE)
        assert (found.actuator, found.argocd_app) == ("kubernetes", "")
    finally:
        store.close()


def test_set_space_gates_of_an_unknown_space_writes_nothing(store):
    with pytest.raises(NotFound, match="space 'nope' does not exist"):
        store.set_space_gates(GatesUpdate(space="nope", approval="none", by="olu"))
    assert store.list_spaces() == []


def test_migration_10_seeds_gates_of_spaces_that_existed_before(store_url):
    """A store from before migration 9 keeps applying what it already runs."""
    engine = make_engine(store_url)
    try:
        with engine.connect().execution_options(tributary_write=True) as conn, conn.begin():
            for version, step in legacy.RELEASED:
                if version < 9:
                    step(conn)
            now = datetime.now(UTC)
            xrd = {"spec": {"group": "messagewall.demo", "claimNames": {"kind": "AppClaim"}}}
            conn.execute(
                sqlalchemy.text(
                    "INSERT INTO spaces (name, environment, approval, drift, "
                    "drift_interval_seconds, labels, repo, overlay, ignore_paths, policy, "
                    "created_at, updated_at) VALUES ('old', 'dev', 'none', 'capture', 300, "
                    "'{}', '', '', '[]', :policy, :now, :now)"
                ),
                {"policy": json.dumps({"xrds": {"x.yaml": [xrd]}}), "now": now},
            )
            data = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "c", "namespace": "team-b"},
            }
            conn.execute(
                sqlalchemy.text(
                    "INSERT INTO units (space, slug, api_version, kind, labels, head_revision, "
                    "version, last_change_description, state, created_at, updated_at) VALUES "
                    "('old', 'c', 'v1', 'ConfigMap', '{}', 1, 1, '', 'active', :now, :now)"
                ),
                {"now": now},
            )
            conn.execute(
                sqlalchemy.text(
                    "INSERT INTO revisions (space, unit, number, data, description, source, "
                    "tags, author, policy, approvals, idempotency_key, created_at) VALUES "
                    "('old', 'c', 1, :data, '', 'ci', '{}', '', '{}', '[]', '', :now)"
                ),
                {"data": json.dumps(data), "now": now},
            )
            conn.execute(
                sqlalchemy.text(
                    "CREATE TABLE tributary_schema_version (version INTEGER PRIMARY KEY, "
                    "applied_at TIMESTAMP NOT NULL)"
                )
            )
            for version, _ in legacy.RELEASED:
                if version < 9:
                    conn.execute(
                        sqlalchemy.text("INSERT INTO tributary_schema_version VALUES (:v, :now)"),
                        {"v": version, "now": now},
                    )
    finally:
        engine.dispose()
    migrated = SqlStore(store_url)
    try:
        gates = migrated.get_space("old").gates()
        assert gates.kinds == ["/ConfigMap", "messagewall.demo/AppClaim"]
        assert gates.namespaces == ["team-b"]
        assert gates.approval == "none"
    finally:
        migrated.close()


def test_list_spaces_is_sorted_by_name(store):
    store.commit([], spaces=[space_spec("b"), space_spec("c"), space_spec("a")])
    assert [s.name for s in store.list_spaces()] == ["a", "b", "c"]


def test_unknown_space_reads_are_empty(store):
    assert store.get_space("nope") is None
    assert store.get_unit("nope", "u") is None
    assert store.list_units("nope") == []
    assert store.list_revisions("nope", "u") == []
    assert store.get_revision("nope", "u", 1) is None
    assert store.get_revisions("nope", []) == []


def test_change_in_an_unknown_space_is_not_found_and_writes_nothing(seeded):
    with pytest.raises(NotFound) as e:
        seeded.commit([change(claim(), None), change(claim(), None, space="nope")])
    assert "'nope'" in e.value.message
    assert seeded.get_unit(SPACE, "u") is None
    assert _count(seeded, t.revisions) == 0


# ---- commit: creating and updating units ------------------------------------------------


def test_first_commit_creates_unit_revision_1(seeded):
    out = seeded.commit([change(claim(), None, labels={"environment": "dev"})])
    assert out == [ChangeOutcome(space=SPACE, slug="u", revision=1, created=True)]
    unit = seeded.get_unit(SPACE, "u")
    assert unit.head_revision == 1
    assert unit.version == 1
    assert unit.git_revision == 1
    assert unit.live_revision is None
    assert unit.last_applied_revision is None
    assert unit.api_version == "messagewall.demo/v1alpha1"
    assert unit.kind == "ServerlessEventAppClaim"
    assert unit.labels == {"environment": "dev"}
    assert unit.last_change_description == "publish"
    assert unit.state == "active"
    rev = seeded.get_revision(SPACE, "u", 1)
    assert rev.number == 1
    assert rev.data == claim()
    assert rev.description == "publish"
    assert rev.source == "ci"
    assert rev.tags == {"commit": "abc123"}
    assert rev.author == "Dana <dana@example.com>"
    assert rev.policy == PolicyResult(warnings=["w"], policy_digest="d1")
    assert rev.approvals == []
    assert rev.created_at == unit.created_at


@pytest.mark.parametrize("source", ["bulk", "operator", "drift-capture", "break-glass", "rollback"])
def test_non_git_sources_set_no_git_revision(seeded, source):
    seeded.commit([change(claim(), None, source=source)])
    unit = seeded.get_unit(SPACE, "u")
    assert (unit.head_revision, unit.version, unit.git_revision) == (1, 1, None)
    assert seeded.get_revision(SPACE, "u", 1).source == source


@pytest.mark.parametrize("source", ["ci", "ci-forced", "ci-merged"])
def test_git_sources_set_git_revision(seeded, source):
    seeded.commit([change(claim(), None, source="bulk")])
    seeded.commit([change(claim(256), 1, source=source)])
    unit = seeded.get_unit(SPACE, "u")
    assert (unit.head_revision, unit.version, unit.git_revision) == (2, 2, 2)


def test_later_non_git_write_keeps_the_git_revision(seeded):
    seeded.commit([change(claim(), None)])
    seeded.commit([change(claim(256), 1, source="bulk", description="bulk set")])
    unit = seeded.get_unit(SPACE, "u")
    assert (unit.head_revision, unit.version, unit.git_revision) == (2, 2, 1)
    assert unit.last_change_description == "bulk set"


def test_update_bumps_version_and_head(seeded):
    seeded.commit([change(claim(), None)])
    first = seeded.get_unit(SPACE, "u")
    out = seeded.commit([change(claim(256), 1)])
    assert out == [ChangeOutcome(space=SPACE, slug="u", revision=2, created=True)]
    unit = seeded.get_unit(SPACE, "u")
    assert (unit.head_revision, unit.version) == (2, 2)
    assert unit.created_at == first.created_at
    assert unit.updated_at > first.updated_at
    assert [r.number for r in seeded.list_revisions(SPACE, "u")] == [1, 2]
    assert seeded.get_revision(SPACE, "u", 2).data == claim(256)
    assert seeded.get_revision(SPACE, "u", 1).data == claim()


def test_same_content_as_head_creates_no_revision(seeded):
    seeded.commit([change(claim(), None)])
    before = seeded.get_unit(SPACE, "u")
    out = seeded.commit([change(claim(), 1, description="again")])
    assert out == [ChangeOutcome(space=SPACE, slug="u", revision=1, created=False)]
    assert seeded.get_unit(SPACE, "u") == before
    assert len(seeded.list_revisions(SPACE, "u")) == 1


def test_same_content_with_int_vs_float_is_the_same(seeded):
    seeded.commit([change({"kind": "K", "spec": {"m": 1}}, None)])
    out = seeded.commit([change({"kind": "K", "spec": {"m": 1.0}}, 1)])
    assert out[0].created is False


def test_same_content_with_bool_vs_int_is_a_change(seeded):
    seeded.commit([change({"kind": "K", "spec": {"m": 1}}, None)])
    out = seeded.commit([change({"kind": "K", "spec": {"m": True}}, 1)])
    assert out[0] == ChangeOutcome(space=SPACE, slug="u", revision=2, created=True)
    assert seeded.get_revision(SPACE, "u", 2).data == {"kind": "K", "spec": {"m": True}}


def test_stale_expected_version_raises_and_writes_nothing(seeded):
    seeded.commit([change(claim(), None)])
    seeded.commit([change(claim(256), 1)])
    before_unit = seeded.get_unit(SPACE, "u")
    before_revs = seeded.list_revisions(SPACE, "u")
    with pytest.raises(StaleVersion) as e:
        seeded.commit([change(claim(512), 1)])
    assert e.value.message == (f"unit {SPACE}/u is at version 2, the change was planned on 1")
    assert seeded.get_unit(SPACE, "u") == before_unit
    assert seeded.list_revisions(SPACE, "u") == before_revs


def test_stale_version_wins_over_same_content(seeded):
    seeded.commit([change(claim(), None)])
    seeded.commit([change(claim(256), 1)])
    with pytest.raises(StaleVersion):
        seeded.commit([change(claim(256), 1)])


def test_creating_an_existing_unit_is_stale(seeded):
    seeded.commit([change(claim(), None)])
    with pytest.raises(StaleVersion) as e:
        seeded.commit([change(claim(256), None)])
    assert "is at version 1, the change was planned on None" in e.value.message
    assert len(seeded.list_revisions(SPACE, "u")) == 1


def test_updating_a_missing_unit_is_stale(seeded):
    with pytest.raises(StaleVersion):
        seeded.commit([change(claim(), 1)])
    assert seeded.get_unit(SPACE, "u") is None


def test_idempotency_key_replay_returns_the_same_revision(seeded):
    seeded.commit([change(claim(), None)])
    first = seeded.commit([change(claim(256), 1, key="publish:wf-1")])
    assert first == [ChangeOutcome(space=SPACE, slug="u", revision=2, created=True)]
    unit = seeded.get_unit(SPACE, "u")
    # the retried activity still carries the version it planned on (1), not 2
    replay = seeded.commit([change(claim(256), 1, key="publish:wf-1")])
    assert replay == [ChangeOutcome(space=SPACE, slug="u", revision=2, created=False)]
    assert seeded.get_unit(SPACE, "u") == unit
    assert [r.number for r in seeded.list_revisions(SPACE, "u")] == [1, 2]


def test_idempotency_key_replay_of_a_unit_creation(seeded):
    seeded.commit([change(claim(), None, key="k")])
    assert seeded.commit([change(claim(), None, key="k")]) == [
        ChangeOutcome(space=SPACE, slug="u", revision=1, created=False)
    ]


def test_other_idempotency_key_is_still_stale(seeded):
    seeded.commit([change(claim(), None)])
    seeded.commit([change(claim(256), 1, key="k1")])
    with pytest.raises(StaleVersion):
        seeded.commit([change(claim(512), 1, key="k2")])


def test_idempotency_key_only_matches_the_head(seeded):
    seeded.commit([change(claim(), None)])
    seeded.commit([change(claim(256), 1, key="k1")])
    seeded.commit([change(claim(512), 2, key="k2")])
    with pytest.raises(StaleVersion):
        seeded.commit([change(claim(256), 1, key="k1")])


def test_multi_change_commit_is_atomic(seeded):
    seeded.commit([change(claim(), None, slug="a"), change(claim(), None, slug="b")])
    before = (seeded.list_units(SPACE), _count(seeded, t.revisions))
    with pytest.raises(StaleVersion):
        seeded.commit(
            [
                change(claim(256), 1, slug="a"),
                change(claim(256), 7, slug="b"),  # stale
            ]
        )
    assert (seeded.list_units(SPACE), _count(seeded, t.revisions)) == before
    assert seeded.get_unit(SPACE, "a").head_revision == 1


def test_atomic_commit_also_rolls_back_new_units_and_spaces(store):
    with pytest.raises(StaleVersion):
        store.commit(
            [change(claim(), None, slug="new"), change(claim(), 3, slug="missing")],
            spaces=[space_spec()],
        )
    assert store.get_space(SPACE) is None
    assert _count(store, t.units) == 0
    assert _count(store, t.revisions) == 0


def test_multi_change_commit_returns_outcomes_in_order(seeded):
    seeded.commit([change(claim(), None, slug="b")])
    out = seeded.commit(
        [
            change(claim(), None, slug="c"),
            change(claim(), 1, slug="b"),
            change(claim(), None, slug="a"),
        ]
    )
    assert out == [
        ChangeOutcome(space=SPACE, slug="c", revision=1, created=True),
        ChangeOutcome(space=SPACE, slug="b", revision=1, created=False),
        ChangeOutcome(space=SPACE, slug="a", revision=1, created=True),
    ]


def test_labels_are_kept_when_change_labels_is_none(seeded):
    seeded.commit([change(claim(), None, labels={"tier": "gold"})])
    seeded.commit([change(claim(256), 1, labels=None)])
    assert seeded.get_unit(SPACE, "u").labels == {"tier": "gold"}
    seeded.commit([change(claim(512), 2, labels={"tier": "silver"})])
    assert seeded.get_unit(SPACE, "u").labels == {"tier": "silver"}
    seeded.commit([change(claim(1024), 3, labels={})])
    assert seeded.get_unit(SPACE, "u").labels == {}


def test_new_unit_without_labels_has_empty_labels(seeded):
    seeded.commit([change(claim(), None, labels=None)])
    assert seeded.get_unit(SPACE, "u").labels == {}


def test_unicode_and_nested_data_round_trip(seeded):
    data = {"kind": "K", "spec": {"note": "grüße ✓", "list": [1, 2.5, None, True, {"a": []}]}}
    seeded.commit([change(data, None)])
    assert seeded.get_revision(SPACE, "u", 1).data == data


# ---- reads ---------------------------------------------------------------------------------


def test_list_units_is_sorted_by_slug_and_scoped_to_the_space(store):
    store.commit([], spaces=[space_spec(), space_spec("other")])
    store.commit(
        [
            change(claim(), None, slug="zeta"),
            change(claim(), None, slug="alpha"),
            change(claim(), None, slug="mid"),
            change(claim(), None, slug="x", space="other"),
        ]
    )
    assert [u.slug for u in store.list_units(SPACE)] == ["alpha", "mid", "zeta"]
    assert [u.slug for u in store.list_units("other")] == ["x"]


def test_list_revisions_is_sorted_by_number(seeded):
    seeded.commit([change(claim(), None)])
    for version in range(1, 12):
        seeded.commit([change(claim(128 + version), version)])
    assert [r.number for r in seeded.list_revisions(SPACE, "u")] == list(range(1, 13))


def test_get_revisions_with_more_than_400_keys(seeded):
    slugs = [f"unit-{i:04d}" for i in range(450)]
    seeded.commit([change(claim(), None, slug=s) for s in slugs])
    seeded.commit([change(claim(256), 1, slug=s) for s in slugs[:5]])
    keys = [(s, 1) for s in slugs] + [(s, 2) for s in slugs[:5]] + [("unit-0000", 3), ("nope", 1)]
    found = seeded.get_revisions(SPACE, keys)
    assert len(found) == 455
    assert {(r.unit, r.number) for r in found} == set(keys[:455])
    assert {r.data["spec"]["lambdaMemory"] for r in found if r.number == 2} == {256}


def test_get_revisions_is_scoped_to_the_space(store):
    store.commit([], spaces=[space_spec(), space_spec("other")])
    store.commit([change(claim(), None), change(claim(999), None, space="other")])
    found = store.get_revisions(SPACE, [("u", 1)])
    assert [r.space for r in found] == [SPACE]
    assert found[0].data == claim()


# ---- timestamps ---------------------------------------------------------------------------


def _assert_utc(value):
    assert value.tzinfo is not None
    assert value.utcoffset() == timedelta(0)


def test_timestamps_are_timezone_aware_utc(seeded):
    seeded.commit([change(claim(), None)])
    space = seeded.get_space(SPACE)
    unit = seeded.get_unit(SPACE, "u")
    rev = seeded.get_revision(SPACE, "u", 1)
    for value in (
        space.created_at,
        space.updated_at,
        unit.created_at,
        unit.updated_at,
        rev.created_at,
    ):
        _assert_utc(value)
    now = datetime.now(UTC)
    assert abs(now - rev.created_at) < timedelta(minutes=1)


def test_timestamps_are_utc_whatever_the_session_time_zone(store_url):
    if not store_url.startswith("postgresql"):
        pytest.skip("a session time zone is a PostgreSQL setting")
    s = SqlStore(store_url + "%20-ctimezone%3DAsia/Kolkata")
    try:
        s.commit([change(claim(), None)], spaces=[space_spec()])
        _assert_utc(s.get_unit(SPACE, "u").created_at)
        _assert_utc(s.get_revision(SPACE, "u", 1).created_at)
        _assert_utc(s.get_space(SPACE).created_at)
    finally:
        s.close()


# ---- several stores, several threads ---------------------------------------------------


def test_two_store_instances_see_each_others_writes(store, store_url):
    other = SqlStore(store_url)
    try:
        store.commit([change(claim(), None)], spaces=[space_spec()])
        assert other.get_unit(SPACE, "u").head_revision == 1
        other.commit([change(claim(256), 1)])
        assert store.get_unit(SPACE, "u").head_revision == 2
        assert store.get_revision(SPACE, "u", 2).data == claim(256)
        with pytest.raises(StaleVersion):
            store.commit([change(claim(512), 1)])
    finally:
        other.close()


def test_concurrent_writers_one_winner_per_version_and_no_gaps(seeded):
    seeded.commit([change(claim(), None)])
    threads, rounds = 6, 4
    barrier = threading.Barrier(threads)
    results: list[list[tuple[int, str]]] = [[] for _ in range(rounds)]
    lock = threading.Lock()

    def writer(i: int) -> None:
        for r in range(rounds):
            barrier.wait(timeout=30)
            expected = r + 1
            try:
                out = seeded.commit([change(claim(1000 + 10 * r + i), expected)])
                outcome = f"won:{out[0].revision}:{1000 + 10 * r + i}"
            except StaleVersion:
                outcome = "stale"
            with lock:
                results[r].append((i, outcome))
            barrier.wait(timeout=30)

    with ThreadPoolExecutor(max_workers=threads) as ex:
        for f in [ex.submit(writer, i) for i in range(threads)]:
            f.result(timeout=60)

    for r, outcomes in enumerate(results):
        winners = [o for _, o in outcomes if o.startswith("won")]
        assert len(winners) == 1, (r, outcomes)
        assert sum(1 for _, o in outcomes if o == "stale") == threads - 1
        _, number, memory = winners[0].split(":")
        assert int(number) == r + 2
        assert seeded.get_revision(SPACE, "u", r + 2).data["spec"]["lambdaMemory"] == int(memory)
    unit = seeded.get_unit(SPACE, "u")
    assert (unit.version, unit.head_revision) == (rounds + 1, rounds + 1)
    assert [r.number for r in seeded.list_revisions(SPACE, "u")] == list(range(1, rounds + 2))


def test_concurrent_creators_of_one_unit_one_wins(seeded):
    threads = 6
    barrier = threading.Barrier(threads)

    def creator(i: int) -> str:
        barrier.wait(timeout=30)
        try:
            seeded.commit([change(claim(2000 + i), None, slug="fresh")])
        except StaleVersion:
            return "stale"
        return "won"

    with ThreadPoolExecutor(max_workers=threads) as ex:
        outcomes = list(ex.map(creator, range(threads)))
    assert sorted(outcomes) == ["stale"] * (threads - 1) + ["won"]
    assert [r.number for r in seeded.list_revisions(SPACE, "fresh")] == [1]
    assert seeded.get_unit(SPACE, "fresh").version == 1


# ---- drift status (migration 2) -----------------------------------------------------------

from datetime import timezone  # noqa: E402

from domain.authority import UnitStateChange  # noqa: E402
from domain.drift import DriftField, DriftRecord  # noqa: E402


def drift_record(unit: str = "u", **over) -> DriftRecord:
    values = {
        "space": SPACE,
        "unit": unit,
        "state": "drifted",
        "checked_at": datetime(2024, 5, 1, 10, 0, tzinfo=UTC),
        "fields": [
            DriftField(path="spec.lambdaMemory", authority=128, live=512, manager="kubectl-patch"),
            DriftField(
                path='aws.s3["b"]',
                authority="present",
                live="missing",
                manager="aws",
                source="aws-live",
                capturable=False,
            ),
        ],
        "message": "drifted",
        "revision": 1,
        "sweep_id": "",
    }
    values.update(over)
    return DriftRecord(**values)


def test_migration_2_brings_a_version_1_database_up_to_date(store_url):
    engine = make_engine(store_url)
    try:
        legacy.build(engine, 1)
        assert legacy.version(engine) == 1
        assert not sqlalchemy.inspect(engine).has_table("drift_status")
    finally:
        engine.dispose()
    old = SqlStore(store_url)
    old.close()  # (opening it migrated it)

    store = SqlStore(store_url)
    try:
        assert schema.current_revision(store.engine) == schema.head()
        inspector = sqlalchemy.inspect(store.engine)
        columns = [c["name"] for c in inspector.get_columns("drift_status")]
        assert columns == [
            "space",
            "unit",
            "state",
            "checked_at",
            "fields",
            "message",
            "revision",
            "sweep_id",
            "sweep_state",  # migration 4
            "last_drift",  # migration 6
            "paused",  # migration 7
        ]
        assert inspector.get_pk_constraint("drift_status")["constrained_columns"] == [
            "space",
            "unit",
        ]
        assert ("ix_drift_status_sweep", ("sweep_id",)) in {
            (i["name"], tuple(i["column_names"])) for i in inspector.get_indexes("drift_status")
        }
        store.record_drift(drift_record())
        assert [r.state for r in store.list_drift(SPACE)] == ["drifted"]
    finally:
        store.close()


def test_migration_2_keeps_what_version_1_held(store_url):
    engine = make_engine(store_url)
    try:
        legacy.build(engine, 1)
        now = datetime(2024, 5, 1, tzinfo=UTC)
        with engine.connect().execution_options(tributary_write=True) as conn, conn.begin():
            md = sqlalchemy.MetaData()
            spaces, units, revisions = (
                sqlalchemy.Table(name, md, autoload_with=conn)
                for name in ("spaces", "units", "revisions")
            )
            conn.execute(
                spaces.insert().values(
                    name=SPACE, environment="dev", approval="none", drift="capture",
                    drift_interval_seconds=300, labels={}, repo="", overlay="", ignore_paths=[],
                    policy={}, created_at=now, updated_at=now,
                )
            )  # fmt: skip
            conn.execute(
                units.insert().values(
                    space=SPACE, slug="u", api_version="messagewall.demo/v1alpha1",
                    kind="ServerlessEventAppClaim", labels={}, head_revision=1, live_revision=1,
                    last_applied_revision=1, git_revision=1, version=1,
                    last_change_description="publish", state="active", created_at=now,
                    updated_at=now,
                )
            )  # fmt: skip
            conn.execute(
                revisions.insert().values(
                    space=SPACE, unit="u", number=1, data=claim(), description="publish",
                    source="ci", tags={}, author="Dana", policy={}, approvals=[],
                    idempotency_key="", created_at=now,
                )
            )  # fmt: skip
    finally:
        engine.dispose()

    store = SqlStore(store_url)
    try:
        assert schema.current_revision(store.engine) == schema.head()
        unit = store.get_unit(SPACE, "u")
        assert (unit.head_revision, unit.live_revision) == (1, 1)
        assert store.get_revision(SPACE, "u", 1).data == claim()
        assert store.list_drift(SPACE) == []
        store.record_drift(drift_record())
        assert [r.unit for r in store.list_drift(SPACE)] == ["u"]
    finally:
        store.close()


def test_record_drift_inserts_then_replaces_the_units_record(seeded):
    seeded.record_drift(drift_record())
    later = drift_record(
        state="captured",
        checked_at=datetime(2024, 5, 1, 10, 5, tzinfo=UTC),
        fields=[DriftField(path="spec.lambdaTimeout", authority=10, live=30)],
        message="revision 2",
        revision=2,
        sweep_id="sweep-1",
    )

    seeded.record_drift(later)

    [got] = seeded.list_drift(SPACE)
    assert got.model_copy(update={"last_drift": None}) == later
    assert got.last_drift is not None
    assert (got.last_drift.fields, got.last_drift.revision) == (later.fields, 2)
    assert _count(seeded, t.drift_status) == 1


def test_drift_record_round_trips_fields_values_and_time(seeded):
    record = drift_record(
        fields=[
            DriftField(path="spec.list", authority=[1, 2], live=[{"a": 1}], manager="m"),
            DriftField(path="spec.flag", authority=None, live=True),
            DriftField(path="spec.ratio", authority=0.5, live="½"),
        ],
        revision=None,
        checked_at=datetime(2024, 5, 1, 12, 0, 30, 123000, tzinfo=UTC),
    )

    seeded.record_drift(record)

    [got] = seeded.list_drift(SPACE, "u")
    assert got.model_copy(update={"last_drift": None}) == record
    assert got.last_drift is not None
    assert got.last_drift.fields == record.fields
    assert got.checked_at.tzinfo is not None


def test_a_check_time_given_in_another_zone_is_kept_as_the_same_instant(seeded):
    checked = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))

    seeded.record_drift(drift_record(checked_at=checked))

    [got] = seeded.list_drift(SPACE, "u")
    assert got.checked_at == checked  # 10:00 UTC
    assert got.checked_at.utcoffset() == timedelta(0)


def test_list_drift_is_per_space_sorted_and_filtered_by_unit(store):
    store.commit([], spaces=[space_spec(), space_spec("other")])
    for unit in ("b", "a", "c"):
        store.record_drift(drift_record(unit, state="in-sync", fields=[]))
    store.record_drift(drift_record("a", space="other"))

    assert [r.unit for r in store.list_drift(SPACE)] == ["a", "b", "c"]
    assert [(r.space, r.unit, r.state) for r in store.list_drift(SPACE, "b")] == [
        (SPACE, "b", "in-sync")
    ]
    assert [r.state for r in store.list_drift("other")] == ["drifted"]
    assert store.list_drift(SPACE, "zzz") == []
    assert store.list_drift("nowhere") == []


def test_count_drift_counts_one_sweeps_records_by_state(seeded):
    for unit, state in [("a", "in-sync"), ("b", "in-sync"), ("c", "captured"), ("d", "failed")]:
        seeded.record_drift(drift_record(unit, state=state, sweep_id="sweep-1"))
    seeded.record_drift(drift_record("e", state="in-sync", sweep_id="sweep-0"))
    seeded.record_drift(drift_record("f", state="drifted"))

    assert seeded.count_drift("sweep-1") == {"in-sync": 2, "captured": 1, "failed": 1}
    assert seeded.count_drift("sweep-0") == {"in-sync": 1}
    assert seeded.count_drift("sweep-2") == {}
    # A later check of a unit moves it out of the sweep it was counted in.
    seeded.record_drift(drift_record("a", state="in-sync", sweep_id="sweep-2"))
    assert seeded.count_drift("sweep-1") == {"in-sync": 1, "captured": 1, "failed": 1}
    assert seeded.count_drift("sweep-2") == {"in-sync": 1}


def test_list_unit_keys_pages_through_active_units_of_every_space(store):
    store.commit([], spaces=[space_spec("s1"), space_spec("s2"), space_spec("s0")])
    for space, slugs in [("s2", ["a"]), ("s1", ["c", "a", "b"]), ("s0", [])]:
        for slug in slugs:
            store.commit([change(claim(), None, space=space, slug=slug)])
    store.commit([change(claim(), None, space="s1", slug="gone")])
    store.commit([], states=[UnitStateChange(space="s1", slug="gone", state="orphaned")])
    store.commit([change(claim(), None, space="s2", slug="del")])
    store.commit([], states=[UnitStateChange(space="s2", slug="del", state="deleted")])

    every = [("s1", "a"), ("s1", "b"), ("s1", "c"), ("s2", "a")]
    assert store.list_unit_keys(None, 100) == every
    pages, after = [], None
    while page := store.list_unit_keys(after, 2):
        pages.append(page)
        after = page[-1]
    assert pages == [every[:2], every[2:]]
    assert store.list_unit_keys(("s1", "c"), 10) == [("s2", "a")]
    assert store.list_unit_keys(("s2", "a"), 10) == []


def test_classify_revision_relabels_source_and_merges_tags(seeded):
    seeded.commit([change(claim(), None)])
    seeded.commit([change(claim(512), 1, source="drift-capture")])

    got = seeded.classify_revision(
        SPACE, "u", 2, source="break-glass", tags={"incident": "INC-7", "commit": "override"}
    )

    assert (got.source, got.tags) == ("break-glass", {"commit": "override", "incident": "INC-7"})
    assert got.data == claim(512)
    assert seeded.get_revision(SPACE, "u", 2) == got
    first = seeded.get_revision(SPACE, "u", 1)
    assert (first.source, first.tags) == ("ci", {"commit": "abc123"})
    unit = seeded.get_unit(SPACE, "u")
    assert (unit.head_revision, unit.version) == (2, 2)


def test_classify_a_missing_revision_is_not_found(seeded):
    seeded.commit([change(claim(), None)])

    with pytest.raises(NotFound):
        seeded.classify_revision(SPACE, "u", 7, source="break-glass", tags={})


def test_a_capture_is_live_without_being_applied(seeded):
    seeded.commit([change(claim(), None)])
    seeded.record_applied(SPACE, "u", 1, live=True)
    seeded.commit([change(claim(512), 1, source="drift-capture")])

    unit = seeded.record_applied(SPACE, "u", 2, live=True, applied=False)

    assert (unit.live_revision, unit.last_applied_revision) == (2, 1)
    assert seeded.get_unit(SPACE, "u") == unit


# ---- sync pull requests and space sync settings (migration 3) ------------------------------

from domain.authority import SyncSettings  # noqa: E402
from domain.sync import PullRequest  # noqa: E402


def sync_pr(number: int, *, space: str = SPACE, **over) -> PullRequest:
    values = {
        "space": space,
        "number": number,
        "url": f"file:///repo.git#tributary-pr-{number}",
        "state": "open",
        "branch": f"tributary/sync/{space}",
        "base": "main",
        "title": f"Sync {space} from the authority",
        "head_commit": "a" * 40,
        "created_at": datetime(2024, 5, 1, 10, 0, tzinfo=UTC),
        "updated_at": datetime(2024, 5, 1, 10, 0, tzinfo=UTC),
    }
    values.update(over)
    return PullRequest(**values)


def _pr_rows(store: SqlStore) -> list[tuple]:
    with store.engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(
                    t.pull_requests.c.number,
                    t.pull_requests.c.space,
                    t.pull_requests.c.repo,
                    t.pull_requests.c.state,
                    t.pull_requests.c.body,
                    t.pull_requests.c.head_commit,
                ).order_by(t.pull_requests.c.number)
            )
        ]


def test_migration_3_brings_a_version_2_database_up_to_date(store_url):
    engine = make_engine(store_url)
    try:
        legacy.build(engine, 2)
        assert legacy.version(engine) == 2
        inspector = sqlalchemy.inspect(engine)
        assert not inspector.has_table("pull_requests")
        assert "sync" not in [c["name"] for c in inspector.get_columns("spaces")]
        now = datetime(2024, 5, 1, tzinfo=UTC)
        with engine.connect().execution_options(tributary_write=True) as conn, conn.begin():
            spaces = sqlalchemy.Table("spaces", sqlalchemy.MetaData(), autoload_with=conn)
            conn.execute(
                spaces.insert().values(
                    name=SPACE, environment="dev", approval="none", drift="capture",
                    drift_interval_seconds=300, labels={}, repo="file:///repo.git",
                    overlay="infra/claims/overlays/dev-east", ignore_paths=[], policy={},
                    created_at=now, updated_at=now,
                )
            )  # fmt: skip
    finally:
        engine.dispose()

    store = SqlStore(store_url)
    try:
        assert schema.current_revision(store.engine) == schema.head()
        inspector = sqlalchemy.inspect(store.engine)
        assert [c["name"] for c in inspector.get_columns("pull_requests")] == [
            "number",
            "space",
            "repo",
            "branch",
            "base",
            "url",
            "state",
            "title",
            "body",
            "head_commit",
            "created_at",
            "updated_at",
        ]
        assert inspector.get_pk_constraint("pull_requests")["constrained_columns"] == ["number"]
        assert ("ix_pull_requests_space", ("space",)) in {
            (i["name"], tuple(i["column_names"])) for i in inspector.get_indexes("pull_requests")
        }
        # the space written before the migration reads with the default sync settings
        space = store.get_space(SPACE)
        assert space is not None
        assert space.sync == SyncSettings()
        assert (space.repo, space.overlay) == ("file:///repo.git", "infra/claims/overlays/dev-east")
        assert store.list_prs() == []
        assert store.next_pr_number() == 1
        store.record_pr(sync_pr(1), repo="file:///repo.git", body="b")
        assert [p.number for p in store.list_prs(SPACE)] == [1]
        assert store.next_pr_number() == 2
    finally:
        store.close()


def test_space_sync_settings_round_trip(store):
    settings = SyncSettings(
        debounce_seconds=5,
        author="Sync Bot <sync-bot@example.com>",
        base="release",
        message="chore: sync {space}",
    )
    store.commit([], spaces=[space_spec(sync=settings)])
    assert store.get_space(SPACE).sync == settings
    store.commit([], spaces=[space_spec()])  # a later publish without sync: back to defaults
    # ... except the base branch: a gate, kept by the authority (issue 10)
    assert store.get_space(SPACE).sync == SyncSettings(base="release")


def test_pr_numbers_start_at_1_and_are_global_across_spaces(store):
    assert store.next_pr_number() == 1
    store.record_pr(sync_pr(1, space="a"), repo="r", body="")
    assert store.next_pr_number() == 2
    store.record_pr(sync_pr(2, space="b"), repo="r", body="")
    assert store.next_pr_number() == 3


def test_record_pr_inserts_then_updates_in_place(store):
    first = sync_pr(1)
    store.record_pr(first, repo="file:///repo.git", body="body one")
    assert store.list_prs(SPACE) == [first]
    assert _pr_rows(store) == [(1, SPACE, "file:///repo.git", "open", "body one", "a" * 40)]

    later = datetime(2024, 5, 2, 9, 30, tzinfo=UTC)
    store.record_pr(
        first.model_copy(
            update={
                "state": "merged",
                "head_commit": "b" * 40,
                "title": "new title",
                "updated_at": later,
                "created_at": datetime(2030, 1, 1, tzinfo=UTC),  # ignored on update
            }
        ),
        repo="file:///repo.git",
        body="body two",
    )
    [got] = store.list_prs(SPACE)
    assert (got.number, got.state, got.title) == (1, "merged", "new title")
    assert got.head_commit == "b" * 40
    assert got.created_at == first.created_at
    assert got.updated_at == later
    assert _pr_rows(store) == [(1, SPACE, "file:///repo.git", "merged", "body two", "b" * 40)]
    assert store.next_pr_number() == 2


def test_record_pr_without_timestamps_stamps_now_in_utc(store):
    before = datetime.now(UTC)
    store.record_pr(sync_pr(1, created_at=None, updated_at=None), repo="r", body="")
    [got] = store.list_prs()
    after = datetime.now(UTC)
    for value in (got.created_at, got.updated_at):
        assert value.utcoffset() == timedelta(0)
        assert before - timedelta(seconds=1) <= value <= after + timedelta(seconds=1)


def test_list_prs_is_newest_first_and_filtered_by_space(store):
    store.record_pr(sync_pr(1, space="a"), repo="r", body="")
    store.record_pr(sync_pr(2, space="b"), repo="r", body="")
    store.record_pr(sync_pr(3, space="a", state="closed"), repo="r", body="")
    assert [(p.number, p.space) for p in store.list_prs()] == [(3, "a"), (2, "b"), (1, "a")]
    assert [(p.number, p.state) for p in store.list_prs("a")] == [(3, "closed"), (1, "open")]
    assert store.list_prs("nope") == []


def test_a_sweeps_answer_survives_later_checks_outside_the_sweep(store):
    """A sweep counts what its own check found; a timer check afterwards changes the
    unit's latest state but not the sweep's answer."""
    store.commit([], spaces=[SpaceSpec(name=SPACE, environment="dev")])
    store.record_drift(drift_record(state="captured", sweep_id="sweep/1"))
    store.record_drift(drift_record(state="in-sync", sweep_id=""))
    assert store.count_drift("sweep/1") == {"captured": 1}
    assert [r.state for r in store.list_drift(SPACE)] == ["in-sync"]
    store.record_drift(drift_record(state="in-sync", sweep_id="sweep/2"))
    assert store.count_drift("sweep/1") == {}
    assert store.count_drift("sweep/2") == {"in-sync": 1}


# ---- apply records never move back; approvals never lost (issue 9, defect 8) -------------

from domain.authority import Approval  # noqa: E402


def test_an_older_apply_finishing_late_does_not_move_live_back(seeded):
    seeded.commit([change(claim(), None)])
    seeded.commit([change(claim(512), 1, source="drift-capture")])
    seeded.record_applied(SPACE, "u", 2, live=True, applied=False)  # the capture

    unit = seeded.record_applied(SPACE, "u", 1, live=True)  # apply of r1 finishing late

    assert (unit.live_revision, unit.last_applied_revision) == (2, 1)


def test_last_applied_revision_never_moves_back(seeded):
    seeded.commit([change(claim(), None)])
    seeded.commit([change(claim(512), 1)])
    seeded.record_applied(SPACE, "u", 2, live=True)

    unit = seeded.record_applied(SPACE, "u", 1, live=False)

    assert (unit.live_revision, unit.last_applied_revision) == (2, 2)
    assert seeded.record_applied(SPACE, "u", 2, live=True).live_revision == 2  # same: no-op


def test_concurrent_approvals_are_all_kept(seeded):
    """Two approvers at once: each read-modify-write of the list sees the other's.

    A hook holds the first approver's transaction right after its read until the
    second has read too — or, when the store serialises them (the fix), until a
    short wait proves the second cannot read yet. Without the lock both read an
    empty list and one approval is lost.
    """
    seeded.commit([change(claim(), None)])
    reads = threading.Barrier(2)
    local = threading.local()

    @sqlalchemy.event.listens_for(seeded.engine, "after_cursor_execute")
    def hold(conn, cursor, statement, params, context, executemany):
        if getattr(local, "held", False) or not statement.lstrip().upper().startswith("SELECT"):
            return
        if "approvals" in statement and "FROM revisions" in statement:
            local.held = True
            # A broken barrier: the other approver is blocked by our lock (the fix at work).
            with contextlib.suppress(threading.BrokenBarrierError):
                reads.wait(timeout=2)

    def approve(who: str) -> None:
        seeded.record_approval(SPACE, "u", 1, Approval(by=who, at=datetime.now(UTC)))

    try:
        with ThreadPoolExecutor(max_workers=2) as ex:
            for f in [ex.submit(approve, who) for who in ("ana", "bo")]:
                f.result(timeout=60)
    finally:
        sqlalchemy.event.remove(seeded.engine, "after_cursor_execute", hold)

    assert sorted(a.by for a in seeded.get_revision(SPACE, "u", 1).approvals) == ["ana", "bo"]


# ---- Git's last render as the merge base; published commits (migration 5, issue 9) ---------

from domain.publish import GitBase, GitRecord  # noqa: E402


def git(commit: str, bases: dict[str, dict], expected: dict[str, str] | None = None) -> GitRecord:
    return GitRecord(
        space=SPACE,
        commit=commit,
        bases=[GitBase(slug=s, commit=commit, data=d) for s, d in bases.items()],
        expected=expected or {},
    )


def test_a_publish_records_gits_render_and_the_commit_with_its_revisions(seeded):
    assert seeded.git_bases(SPACE) == {}
    assert not seeded.is_published(SPACE, "c1")

    seeded.commit([change(claim(), None)], git=git("c1", {"u": claim()}))

    assert seeded.git_bases(SPACE) == {"u": GitBase(slug="u", commit="c1", data=claim())}
    assert seeded.is_published(SPACE, "c1")
    assert not seeded.is_published(SPACE, "c2")
    assert not seeded.is_published("other-space", "c1")


def test_the_base_is_the_render_even_when_the_revision_is_a_merge(seeded):
    seeded.commit([change(claim(), None)], git=git("c1", {"u": claim()}))
    merged = {**claim(512), "extra": "from the authority"}

    seeded.commit(
        [change(merged, 1, source="ci-merged")], git=git("c2", {"u": claim(512)}, {"u": "c1"})
    )

    assert seeded.git_bases(SPACE)["u"] == GitBase(slug="u", commit="c2", data=claim(512))
    assert seeded.get_revision(SPACE, "u", 2).data == merged


def test_a_base_that_moved_since_planning_is_stale_and_nothing_is_written(seeded):
    seeded.commit([change(claim(), None)], git=git("c1", {"u": claim()}))
    seeded.commit([], git=git("c3", {"u": claim(1024)}, {"u": "c1"}))  # another publish

    with pytest.raises(StaleVersion):
        seeded.commit([change(claim(512), 1)], git=git("c2", {"u": claim(512)}, {"u": "c1"}))

    assert seeded.get_unit(SPACE, "u").head_revision == 1
    assert seeded.git_bases(SPACE)["u"].commit == "c3"
    assert not seeded.is_published(SPACE, "c2")


def test_a_retried_publish_finds_its_own_base_and_commit(seeded):
    record = git("c1", {"u": claim()})
    first = seeded.commit([change(claim(), None, key="w/u")], git=record)

    again = seeded.commit([change(claim(), None, key="w/u")], git=record)

    assert [o.revision for o in again] == [o.revision for o in first] == [1]
    assert _count(seeded, t.published_commits) == 1


def test_migration_5_backfills_bases_from_gits_own_revisions(store_url):
    engine = make_engine(store_url)
    try:
        legacy.build(engine, 4)
        assert legacy.version(engine) == 4
        assert not sqlalchemy.inspect(engine).has_table("git_bases")
        now = datetime(2024, 5, 1, tzinfo=UTC)
        with engine.connect().execution_options(tributary_write=True) as conn, conn.begin():
            md = sqlalchemy.MetaData()
            spaces, units, revs = (
                sqlalchemy.Table(n, md, autoload_with=conn)
                for n in ("spaces", "units", "revisions")
            )
            conn.execute(
                spaces.insert().values(
                    name=SPACE, environment="dev", approval="none", drift="capture",
                    drift_interval_seconds=300, labels={}, repo="r", overlay="o",
                    ignore_paths=[], policy={}, created_at=now, updated_at=now,
                )
            )  # fmt: skip
            # u: ci r1 (c1), operator r2, ci-merged r3 (c2, git_revision 3 — the old, wrong base)
            # v: operator only
            for slug, head, git_rev in (("u", 3, 3), ("v", 1, None)):
                conn.execute(
                    units.insert().values(
                        space=SPACE, slug=slug, api_version="v1", kind="K", labels={},
                        head_revision=head, live_revision=None, last_applied_revision=None,
                        git_revision=git_rev, version=head, last_change_description="",
                        state="active", created_at=now, updated_at=now,
                    )
                )  # fmt: skip
            for slug, number, source, commit, data in (
                ("u", 1, "ci", "c1", claim()),
                ("u", 2, "operator", "", {**claim(), "x": 1}),
                ("u", 3, "ci-merged", "c2", {**claim(512), "x": 1}),
                ("v", 1, "operator", "", claim()),
            ):
                conn.execute(
                    revs.insert().values(
                        space=SPACE, unit=slug, number=number, data=data, description="",
                        source=source, tags={"commit": commit} if commit else {}, author="",
                        policy={}, approvals=[], idempotency_key="", created_at=now,
                    )
                )  # fmt: skip
    finally:
        engine.dispose()

    store = SqlStore(store_url)
    try:
        assert schema.current_revision(store.engine) == schema.head()
        # A merge is never a base: u gets Git's render before the merge, v none.
        assert store.git_bases(SPACE) == {"u": GitBase(slug="u", commit="c1", data=claim())}
        assert store.is_published(SPACE, "c1")
        assert store.is_published(SPACE, "c2")
    finally:
        store.close()


# A capture that conflicts with a pending head: tests/authority/test_protocol.py, on
# every backend (the mark must be the same in the embedded store and in ConfigHub).
