"""Databases as released before Alembic: the old runner, kept verbatim for the tests.

Released schemas are the prefixes of ``RELEASED`` (version 8 was never released); the
old runner recorded each in ``tributary_schema_version``. ``build(engine, upto)``
makes the database a store of that release left behind.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, Engine, Integer, MetaData, Table, insert, inspect, select
from sqlalchemy import text as sql

from authority import migrations as m

RELEASED = [
    (1, m._m001_initial),
    (2, m._m002_drift_status),
    (3, m._m003_sync_prs),
    (4, m._m004_sweep_state),
    (5, m._m005_git_bases),
    (6, m._m006_last_drift),
    (7, m._m007_drift_paused),
    (9, m._m009_space_gates),
    (10, m._m010_seed_space_gates),
]
VERSIONS = [0, *(v for v, _ in RELEASED)]
TABLE = "tributary_schema_version"


def _version_table() -> Table:
    return Table(
        "tributary_schema_version",
        MetaData(),
        Column("version", Integer, primary_key=True),
        Column("applied_at", DateTime(timezone=True), nullable=False),
    )


def build(engine: Engine, upto: int) -> None:
    """What the old ``migrate(engine)`` left with migrations up to ``upto`` (0: nothing)."""
    if upto == 0:
        return
    version_table = _version_table()
    with engine.connect().execution_options(tributary_write=True) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(sql("SELECT pg_advisory_xact_lock(7405231)"))
        version_table.create(conn, checkfirst=True)
        applied = set(conn.execute(select(version_table.c.version)).scalars())
        for version, step in RELEASED:
            if version > upto or version in applied:
                continue
            step(conn)
            conn.execute(
                insert(version_table).values(version=version, applied_at=datetime.now(UTC))
            )


def version(engine: Engine) -> int:
    """The old runner's idea of the database's version."""
    if not inspect(engine).has_table("tributary_schema_version"):
        return 0
    with engine.connect() as conn:
        found = conn.execute(select(_version_table().c.version)).scalars().all()
    return max(found, default=0)
