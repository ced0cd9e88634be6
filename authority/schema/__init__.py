"""The embedded store's schema, migrated by Alembic.

Each migration is one revision file in ``versions/`` (``rNNNN_name.py``, revision id
``"NNNN"``, ``down_revision`` the one before); adding a migration is adding one file:

    # r0011_name.py — a docstring saying what the migration is for, then:
    from __future__ import annotations

    from alembic import op

    revision = "0011"
    down_revision: str | None = "0010"


    def upgrade() -> None:
        op.add_column("spaces", sa.Column(...))    # or: _m011_name(op.get_bind())

(The first ten call their bodies in ``authority/migrations.py``, written before
Alembic.) Update ``tables.py`` to the new shape: ``tests/authority/test_migrations.py``
checks that every database — fresh or upgraded — matches it.

A store that opens a database brings it up to ``head`` in one transaction — on
PostgreSQL under an advisory lock, on SQLite under ``BEGIN IMMEDIATE`` — so workers
that open a store at once migrate it once.

Databases from before Alembic kept their versions in ``tributary_schema_version``
(1 … 10, without 8). The first open here stamps the matching revision (old version
``N`` is revision ``f"{N:04d}"``) and upgrades from there; the old table is left as
it was, so an older worker that opens the database finds its versions applied.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext, RevisionStep
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

HERE = Path(__file__).parent
LEGACY_TABLE = "tributary_schema_version"
# Any fixed number: the lock serialises Tributary's migrations on one database.
ADVISORY_LOCK = 7405231


class SchemaError(RuntimeError):
    """The database's schema is not one this release can bring up to date."""


@functools.cache
def script() -> ScriptDirectory:
    """The revisions, read once per process (every store opened migrates)."""
    return ScriptDirectory(str(HERE))


def head() -> str:
    found = script().get_current_head()
    if found is None:  # pragma: no cover - the versions folder is part of the package
        raise SchemaError(f"no migrations in {HERE / 'versions'}")
    return found


def chain() -> list[str]:
    """Every revision id from the first to ``head``, in order."""
    return [rev.revision for rev in reversed(list(script().walk_revisions("base", "heads")))]


def current_revision(engine: Engine) -> str | None:
    """The database's Alembic revision (``None``: nothing migrated by Alembic yet)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def legacy_revision(conn: Connection, revisions: list[str]) -> str | None:
    """The revision an old ``tributary_schema_version`` table stands for, if any.

    The old runner applied its migrations in order, each with its version row, so
    a released database holds a prefix of the chain; anything else (a version this
    release does not know, a gap) is refused rather than guessed at.
    """
    if not inspect(conn).has_table(LEGACY_TABLE):
        return None
    applied = {int(v) for v in conn.execute(text(f"SELECT version FROM {LEGACY_TABLE}")).scalars()}
    numbered = [int(r) for r in revisions if r.isdigit()]
    prefix = 0
    for number in numbered:
        if number not in applied:
            break
        prefix += 1
    stray = sorted(applied - set(numbered[:prefix]))
    if stray:
        raise SchemaError(
            f"{LEGACY_TABLE} holds versions {sorted(applied)}: version(s) {stray} are not "
            f"the first steps of this release's migrations {numbered}; open the database "
            "with the release that wrote it"
        )
    return revisions[prefix - 1] if prefix else None


def migrate(engine: Engine) -> str:
    """Bring the database up to ``head``; safe when several processes open it at once.

    Returns the revision it is at.
    """
    scripts = script()
    target = head()
    with engine.connect().execution_options(tributary_write=True) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            # Serialises concurrent workers; released at commit.
            conn.execute(text(f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK})"))
        context = MigrationContext.configure(conn)
        current = context.get_current_revision()
        if current == target:
            return target
        if current is None:
            legacy = legacy_revision(conn, chain())
            if legacy is not None:
                context.stamp(scripts, legacy)

        def upgrade(rev: Any, _context: MigrationContext) -> list[RevisionStep]:
            # What ``alembic upgrade head`` does, from the revision the database is at.
            steps: list[RevisionStep] = scripts._upgrade_revs(target, rev)
            return steps

        with EnvironmentContext(Config(), scripts, fn=upgrade, destination_rev=target) as env:
            env.configure(connection=conn)
            env.run_migrations()
    return target
