"""authority/schema: Alembic migrations of the embedded store, on SQLite and PostgreSQL.

Every released schema (old versions 0 … 10) upgrades to the same tables as a fresh
database, keeping its rows and running each backfill exactly once; workers that open
one database at once migrate it once.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import Engine, func, select

from authority import schema
from authority import tables as t
from authority.sql import SqlStore, make_engine
from tests.authority import legacy

XRD = {"spec": {"group": "messagewall.demo", "claimNames": {"kind": "AppClaim"}}}
CLAIM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "team-b"}}


def assert_schema_matches_tables(engine: Engine) -> None:
    """The database's tables are ``tables.py``'s, column for column (plus Alembic's own
    version table, and the old one where the database had it)."""
    inspector = sqlalchemy.inspect(engine)
    names = set(inspector.get_table_names()) - {"alembic_version", legacy.TABLE}
    assert names == set(t.metadata.tables)
    for name, table in t.metadata.tables.items():
        reflected = {c["name"]: c for c in inspector.get_columns(name)}
        assert list(reflected) == [c.name for c in table.columns], name
        for col in table.columns:
            got = reflected[col.name]
            assert got["nullable"] == col.nullable, (name, col.name)
            assert got["type"]._type_affinity is col.type._type_affinity, (name, col.name)
            if isinstance(col.type, sqlalchemy.String) and col.type.length:
                assert got["type"].length == col.type.length, (name, col.name)
            if engine.dialect.name == "postgresql" and isinstance(col.type, sqlalchemy.DateTime):
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


def seed_version_1_rows(engine: Engine) -> None:
    """A space, a unit published from Git and its revision, in version 1's columns."""
    now = datetime.now(UTC)
    with engine.connect().execution_options(tributary_write=True) as conn, conn.begin():
        conn.execute(
            sqlalchemy.text(
                "INSERT INTO spaces (name, environment, approval, drift, "
                "drift_interval_seconds, labels, repo, overlay, ignore_paths, policy, "
                "created_at, updated_at) VALUES ('old', 'dev', 'none', 'capture', 300, "
                "'{}', '', '', '[]', :policy, :now, :now)"
            ),
            {"policy": json.dumps({"xrds": {"x.yaml": [XRD]}}), "now": now},
        )
        conn.execute(
            sqlalchemy.text(
                "INSERT INTO units (space, slug, api_version, kind, labels, head_revision, "
                "git_revision, version, last_change_description, state, created_at, "
                "updated_at) VALUES ('old', 'c', 'v1', 'ConfigMap', '{}', 1, 1, 1, '', "
                "'active', :now, :now)"
            ),
            {"now": now},
        )
        conn.execute(
            sqlalchemy.text(
                "INSERT INTO revisions (space, unit, number, data, description, source, "
                "tags, author, policy, approvals, idempotency_key, created_at) VALUES "
                "('old', 'c', 1, :data, '', 'ci', :tags, '', '{}', '[]', '', :now)"
            ),
            {"data": json.dumps(CLAIM), "tags": json.dumps({"commit": "c0ffee"}), "now": now},
        )


@pytest.mark.parametrize("released", legacy.VERSIONS)
def test_every_released_schema_upgrades_to_head(store_url: str, released: int) -> None:
    engine = make_engine(store_url)
    try:
        legacy.build(engine, released)
        assert legacy.version(engine) == released
        if released:
            seed_version_1_rows(engine)
    finally:
        engine.dispose()

    store = SqlStore(store_url)  # opening migrates
    try:
        assert schema.current_revision(store.engine) == schema.head()
        assert_schema_matches_tables(store.engine)
        # The old table is left as it was: an older worker finds its versions applied.
        assert legacy.version(store.engine) == released
        if not released:
            return
        space = store.get_space("old")
        assert space is not None
        gates = space.gates()
        # Migration 10 seeds the gates of spaces it finds; a space written after it
        # was created by code that set them (here: raw rows, so none).
        if released < 10:
            assert (gates.kinds, gates.namespaces) == (
                ["/ConfigMap", "messagewall.demo/AppClaim"],
                ["team-b"],
            )
        else:
            assert (gates.kinds, gates.namespaces) == ([], [])
        # Migration 5 backfills Git's render as the merge base, once.
        bases = store.git_bases("old")
        assert (list(bases), store.is_published("old", "c0ffee")) == (
            (["c"], True) if released < 5 else ([], False)
        )
        assert [r.number for r in store.list_revisions("old", "c")] == [1]
    finally:
        store.close()


def test_fresh_database_starts_at_head_without_the_old_table(store: SqlStore) -> None:
    assert schema.current_revision(store.engine) == schema.head()
    assert not sqlalchemy.inspect(store.engine).has_table(legacy.TABLE)
    assert_schema_matches_tables(store.engine)


def test_an_empty_database_has_no_revision(store_url: str) -> None:
    engine = make_engine(store_url)
    try:
        assert schema.current_revision(engine) is None
    finally:
        engine.dispose()


def test_migrating_twice_is_a_noop(store: SqlStore, store_url: str) -> None:
    with store.engine.connect() as conn:
        before = conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).all()
    assert schema.migrate(store.engine) == schema.head()
    again = SqlStore(store_url)
    try:
        with again.engine.connect() as conn:
            rows = conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).all()
        assert rows == before == [(schema.head(),)]
    finally:
        again.close()


@pytest.mark.parametrize("released", [0, 4, 10])
def test_workers_opening_a_store_at_once_migrate_it_once(store_url: str, released: int) -> None:
    engine = make_engine(store_url)
    try:
        legacy.build(engine, released)
        if released:
            seed_version_1_rows(engine)
    finally:
        engine.dispose()
    threads = 6
    barrier = threading.Barrier(threads)

    def open_store(_: int) -> str | None:
        barrier.wait()
        s = SqlStore(store_url)
        try:
            return schema.current_revision(s.engine)
        finally:
            s.close()

    with ThreadPoolExecutor(max_workers=threads) as ex:
        revisions = list(ex.map(open_store, range(threads)))
    assert revisions == [schema.head()] * threads
    store = SqlStore(store_url)
    try:
        with store.engine.connect() as conn:
            count = conn.execute(select(func.count()).select_from(t.git_bases)).scalar_one()
            versions = conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version"))
            assert versions.all() == [(schema.head(),)]
        assert count == (1 if 0 < released < 5 else 0)  # the backfill ran once at most
    finally:
        store.close()


def test_an_opener_waits_for_a_writer_holding_a_new_sqlite_file(tmp_path: Path) -> None:
    """A worker opening a new SQLite file while another is writing it (migrating, say)
    gets it in WAL mode once that writer commits. SQLite refuses the switch at once,
    without the busy timeout, so ``make_engine``'s connections must wait it out."""
    path = tmp_path / "authority.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("CREATE TABLE held (x)")
    committing = threading.Event()

    def commit() -> None:
        # Set before: once COMMIT lets go of the lock the opener may run on at once.
        committing.set()
        holder.execute("COMMIT")

    timer = threading.Timer(0.5, commit)
    timer.start()
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            opened_after_commit = committing.is_set()
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar_one()
    finally:
        engine.dispose()
        timer.join()
        holder.close()
    assert opened_after_commit
    assert mode == "wal"


@pytest.mark.parametrize(
    ("versions", "stray"),
    [([1, 2, 3, 8], "[8]"), ([1, 3], "[3]"), ([1, 2, 99], "[99]")],
)
def test_an_old_table_that_is_no_release_is_refused(
    store_url: str, versions: list[int], stray: str
) -> None:
    """A gap or a version this release does not know: refused, nothing changed."""
    engine = make_engine(store_url)
    try:
        legacy.build(engine, 2)
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(f"DELETE FROM {legacy.TABLE}"))
            for v in versions:
                conn.execute(
                    sqlalchemy.text(f"INSERT INTO {legacy.TABLE} VALUES (:v, :now)"),
                    {"v": v, "now": datetime.now(UTC)},
                )
        with pytest.raises(schema.SchemaError, match=re.escape(stray)):
            schema.migrate(engine)
        assert schema.current_revision(engine) is None
        assert not sqlalchemy.inspect(engine).has_table("pull_requests")  # migration 3
    finally:
        engine.dispose()


def test_one_file_per_migration_named_by_its_revision() -> None:
    """Adding a migration is adding one file: ``versions/rNNNN_name.py`` with revision
    ``"NNNN"`` whose ``down_revision`` is the newest before it."""
    files = sorted(p for p in (schema.HERE / "versions").glob("r*.py"))
    ids = [re.fullmatch(r"r(\d{4})_\w+\.py", p.name) for p in files]
    assert all(ids), [p.name for p in files]
    assert schema.chain() == [m.group(1) for m in ids if m]
    # Old version N is revision NNNN: the translation of old databases relies on it.
    assert [int(r) for r in schema.chain()[: len(legacy.RELEASED)]] == [
        v for v, _ in legacy.RELEASED
    ]
