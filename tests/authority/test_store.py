"""authority/sql.py: the embedded store, on SQLite and on PostgreSQL (same tests)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy
from sqlalchemy import func, select

from authority import tables as t
from authority.migrations import LATEST, MIGRATIONS, current_version, migrate
from authority.sql import SqlStore, make_engine
from domain.authority import (
    ChangeOutcome,
    PolicyBundle,
    PolicyResult,
    SpaceSpec,
    UnitChange,
)
from domain.errors import NotFound, StaleVersion

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


# ---- migrations ------------------------------------------------------------------------


def test_empty_database_is_at_version_0(store_url):
    engine = make_engine(store_url)
    try:
        assert current_version(engine) == 0
    finally:
        engine.dispose()


def test_fresh_database_is_migrated_to_latest(store):
    assert MIGRATIONS[-1][0] == LATEST
    assert current_version(store.engine) == LATEST
    with store.engine.connect() as conn:
        versions = conn.execute(select(t.schema_version.c.version)).scalars().all()
    assert sorted(versions) == [v for v, _ in MIGRATIONS]


def test_migrating_twice_is_a_noop(store, store_url):
    store.commit([change(claim(), None)], spaces=[space_spec()])
    with store.engine.connect() as conn:
        before = conn.execute(select(t.schema_version)).all()
    assert migrate(store.engine) == LATEST
    again = SqlStore(store_url)  # opening runs migrate() once more
    try:
        with store.engine.connect() as conn:
            assert conn.execute(select(t.schema_version)).all() == before
        assert again.get_unit(SPACE, "u").head_revision == 1
        assert len(again.list_revisions(SPACE, "u")) == 1
    finally:
        again.close()


def test_migrated_schema_matches_tables_metadata(store):
    inspector = sqlalchemy.inspect(store.engine)
    assert set(inspector.get_table_names()) == set(t.metadata.tables)
    for name, table in t.metadata.tables.items():
        reflected = {c["name"]: c for c in inspector.get_columns(name)}
        assert list(reflected) == [c.name for c in table.columns], name
        for col in table.columns:
            got = reflected[col.name]
            assert got["nullable"] == col.nullable, (name, col.name)
            assert got["type"]._type_affinity is col.type._type_affinity, (name, col.name)
            if isinstance(col.type, sqlalchemy.String) and col.type.length:
                assert got["type"].length == col.type.length, (name, col.name)
            if store.engine.dialect.name == "postgresql" and isinstance(
                col.type, sqlalchemy.DateTime
            ):
                assert got["type"].timezone is True, (name, col.name)
        pk = inspector.get_pk_constraint(name)["constrained_columns"]
        assert pk == [c.name for c in table.primary_key.columns], name
        fks = {
            (
                fk["name"],
                tuple(fk["constrained_columns"]),
                fk["referred_table"],
                tuple(fk["referred_columns"]),
            )
            for fk in inspector.get_foreign_keys(name)
        }
        expected_fks = {
            (
                fk.name,
                tuple(fk.column_keys),
                fk.referred_table.name,
                tuple(e.column.name for e in fk.elements),
            )
            for fk in table.foreign_key_constraints
        }
        assert fks == expected_fks, name
        indexes = {(i["name"], tuple(i["column_names"])) for i in inspector.get_indexes(name)}
        assert indexes == {(i.name, tuple(c.name for c in i.columns)) for i in table.indexes}, name


# ---- spaces ------------------------------------------------------------------------------


def test_space_is_created(store):
    assert store.commit([], spaces=[space_spec()]) == []
    found = store.get_space(SPACE)
    assert found is not None
    assert found.model_dump(exclude={"created_at", "updated_at"}) == space_spec().model_dump()
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
        approval="required",
        drift="revert",
        drift_interval_seconds=60,
        labels={"t": "x"},
        policy=bundle,
    )
    seeded.commit([], spaces=[new])
    found = seeded.get_space(SPACE)
    assert found.approval == "required"
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
