"""The bodies of the embedded store's first migrations (versions 1 … 10, without 8).

Alembic runs them: each revision file in ``authority/schema/versions/`` calls one of
these functions with its connection (``authority.schema`` says how a migration is
added, and how databases from before Alembic are taken over). They spell out their
own DDL rather than reusing ``tables.py``, so editing the current tables never
rewrites history.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    text,
)


def _m001_initial(conn: Connection) -> None:
    md = MetaData()
    Table(
        "spaces",
        md,
        Column("name", String(253), primary_key=True),
        Column("environment", String(63), nullable=False),
        Column("approval", String(16), nullable=False),
        Column("drift", String(16), nullable=False),
        Column("drift_interval_seconds", Integer, nullable=False),
        Column("labels", JSON, nullable=False),
        Column("repo", Text, nullable=False),
        Column("overlay", Text, nullable=False),
        Column("ignore_paths", JSON, nullable=False),
        Column("policy", JSON, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )
    Table(
        "units",
        md,
        Column("space", String(253), primary_key=True),
        Column("slug", String(253), primary_key=True),
        Column("api_version", String(253), nullable=False),
        Column("kind", String(253), nullable=False),
        Column("labels", JSON, nullable=False),
        Column("head_revision", Integer, nullable=False),
        Column("live_revision", Integer, nullable=True),
        Column("last_applied_revision", Integer, nullable=True),
        Column("git_revision", Integer, nullable=True),
        Column("version", Integer, nullable=False),
        Column("last_change_description", Text, nullable=False),
        Column("state", String(16), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        ForeignKeyConstraint(["space"], ["spaces.name"], name="fk_units_space"),
    )
    Table(
        "revisions",
        md,
        Column("space", String(253), primary_key=True),
        Column("unit", String(253), primary_key=True),
        Column("number", Integer, primary_key=True),
        Column("data", JSON, nullable=False),
        Column("description", Text, nullable=False),
        Column("source", String(32), nullable=False),
        Column("tags", JSON, nullable=False),
        Column("author", Text, nullable=False),
        Column("policy", JSON, nullable=False),
        Column("approvals", JSON, nullable=False),
        Column("idempotency_key", String(512), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        ForeignKeyConstraint(
            ["space", "unit"], ["units.space", "units.slug"], name="fk_revisions_unit"
        ),
        Index("ix_revisions_idempotency", "space", "unit", "idempotency_key"),
    )
    md.create_all(conn)


def _m002_drift_status(conn: Connection) -> None:
    """Arrow 3: the last drift check of every unit, readable without Temporal."""
    md = MetaData()
    Table(
        "drift_status",
        md,
        Column("space", String(253), primary_key=True),
        Column("unit", String(253), primary_key=True),
        Column("state", String(16), nullable=False),
        Column("checked_at", DateTime(timezone=True), nullable=False),
        Column("fields", JSON, nullable=False),
        Column("message", Text, nullable=False),
        Column("revision", Integer, nullable=True),
        Column("sweep_id", String(128), nullable=False),
        Index("ix_drift_status_sweep", "sweep_id"),
    )
    md.create_all(conn)


def _m003_sync_prs(conn: Connection) -> None:
    """Arrow 4: per-space sync settings, and the pull requests the local forge keeps."""
    conn.execute(text("ALTER TABLE spaces ADD COLUMN sync JSON NOT NULL DEFAULT '{}'"))
    md = MetaData()
    Table(
        "pull_requests",
        md,
        Column("number", Integer, primary_key=True, autoincrement=False),
        Column("space", String(253), nullable=False),
        Column("repo", Text, nullable=False),
        Column("branch", Text, nullable=False),
        Column("base", Text, nullable=False),
        Column("url", Text, nullable=False),
        Column("state", String(16), nullable=False),
        Column("title", Text, nullable=False),
        Column("body", Text, nullable=False),
        Column("head_commit", String(64), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Index("ix_pull_requests_space", "space"),
    )
    md.create_all(conn)


def _m004_sweep_state(conn: Connection) -> None:
    """What each unit's check for its last sweep found, kept apart from its latest state:
    a later timer or watch check must not rewrite what the sweep counts."""
    conn.execute(
        text("ALTER TABLE drift_status ADD COLUMN sweep_state VARCHAR(16) NOT NULL DEFAULT ''")
    )


def _m005_git_bases(conn: Connection) -> None:
    """Arrow 1: Git's last render of each unit is the publish merge base, stored as such,
    and the commits already published to each space (a CI re-run of one never writes).

    Backfill: a unit's base is its newest ``ci`` or ``ci-forced`` revision up to its
    old ``git_revision`` (those hold Git's render exactly; a ``ci-merged`` one does
    not, so a merged unit gets the render before the merge — the merge's base, which
    plans the same way). Commits named by Git-sourced revisions count as published.
    """
    md = MetaData()
    git_bases = Table(
        "git_bases",
        md,
        Column("space", String(253), primary_key=True),
        Column("unit", String(253), primary_key=True),
        Column("commit", String(64), nullable=False),
        Column("data", JSON, nullable=False),
        Column("recorded_at", DateTime(timezone=True), nullable=False),
        ForeignKeyConstraint(
            ["space", "unit"], ["units.space", "units.slug"], name="fk_git_bases_unit"
        ),
    )
    published = Table(
        "published_commits",
        md,
        Column("space", String(253), primary_key=True),
        Column("commit", String(64), primary_key=True),
        Column("published_at", DateTime(timezone=True), nullable=False),
        ForeignKeyConstraint(["space"], ["spaces.name"], name="fk_published_commits_space"),
    )
    # The existing tables, as far as the foreign keys and the backfill need them.
    Table("spaces", md, Column("name", String(253), primary_key=True))
    units = Table(
        "units",
        md,
        Column("space", String(253), primary_key=True),
        Column("slug", String(253), primary_key=True),
        Column("git_revision", Integer),
    )
    md.create_all(conn, tables=[git_bases, published])
    revisions = Table(
        "revisions",
        MetaData(),
        Column("space", String(253)),
        Column("unit", String(253)),
        Column("number", Integer),
        Column("data", JSON),
        Column("source", String(32)),
        Column("tags", JSON),
    )
    now = datetime.now(UTC)
    git_revisions = {
        (r.space, r.slug): r.git_revision
        for r in conn.execute(select(units).where(units.c.git_revision.is_not(None)))
    }
    newest: dict[tuple[str, str], tuple[int, str, object]] = {}
    seen: set[tuple[str, str]] = set()
    query = select(revisions).where(revisions.c.source.in_(["ci", "ci-forced", "ci-merged"]))
    for r in conn.execute(query):
        commit = str((r.tags or {}).get("commit", ""))[:64]
        if commit:
            seen.add((r.space, commit))
        key = (r.space, r.unit)
        limit = git_revisions.get(key)
        if r.source == "ci-merged" or limit is None or r.number > limit:
            continue
        if key not in newest or newest[key][0] < r.number:
            newest[key] = (r.number, commit, r.data)
    for (space, unit), (_, commit, data) in sorted(newest.items()):
        conn.execute(
            insert(git_bases).values(
                space=space, unit=unit, commit=commit, data=data, recorded_at=now
            )
        )
    for space, commit in sorted(seen):
        conn.execute(insert(published).values(space=space, commit=commit, published_at=now))


def _m006_last_drift(conn: Connection) -> None:
    """The latest drift (fields, when, the capturing revision, a re-base conflict), kept
    after a capture: ``drift status`` answers "what changed?" after the fact."""
    conn.execute(text("ALTER TABLE drift_status ADD COLUMN last_drift JSON"))


def _m007_drift_paused(conn: Connection) -> None:
    """Pause lives in the authority: a drift loop restarted by a watch or a sweep starts
    paused again."""
    conn.execute(text("ALTER TABLE drift_status ADD COLUMN paused BOOLEAN NOT NULL DEFAULT FALSE"))


def _m009_space_gates(conn: Connection) -> None:
    """Issue 10: a space's gates live in the authority, set by `tributary space set`.

    Approval and the sync base already had a home; the allowed kinds, namespaces and
    destination are new, and so is the record of who set the gates and when.
    """
    for ddl in (
        "ALTER TABLE spaces ADD COLUMN kinds JSON NOT NULL DEFAULT '[]'",
        "ALTER TABLE spaces ADD COLUMN namespaces JSON NOT NULL DEFAULT '[]'",
        "ALTER TABLE spaces ADD COLUMN destination TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE spaces ADD COLUMN gates_set_by TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE spaces ADD COLUMN gates_set_at TIMESTAMP WITH TIME ZONE",
        "ALTER TABLE spaces ADD COLUMN gates_asserted VARCHAR(32) NOT NULL DEFAULT ''",
    ):
        if conn.dialect.name == "sqlite":
            ddl = ddl.replace(" WITH TIME ZONE", "")
        conn.execute(text(ddl))


def _m010_seed_space_gates(conn: Connection) -> None:
    """Existing spaces keep applying what they already hold: their units' kinds (and
    the Claim kinds of their stored XRDs) and their units' namespaces.

    Without this, every space created before migration 9 would allow nothing and
    every apply would be refused; an admin narrows them with `tributary space set`.
    """
    spaces = conn.execute(text("SELECT name, policy FROM spaces")).all()
    for name, policy in spaces:
        policy = json.loads(policy) if isinstance(policy, str) else (policy or {})
        kinds: set[str] = set()
        for docs in (policy.get("xrds") or {}).values():
            for xrd in docs or []:
                spec = xrd.get("spec") or {}
                claim = (spec.get("claimNames") or {}).get("kind")
                if spec.get("group") and claim:
                    kinds.add(f"{spec['group']}/{claim}")
        namespaces: set[str] = set()
        rows = conn.execute(
            text(
                "SELECT u.api_version, u.kind, r.data FROM units u JOIN revisions r "
                "ON r.space = u.space AND r.unit = u.slug AND r.number = u.head_revision "
                "WHERE u.space = :space"
            ),
            {"space": name},
        ).all()
        for api_version, kind, data in rows:
            group = api_version.rpartition("/")[0] if "/" in api_version else ""
            kinds.add(f"{group}/{kind}")
            data = json.loads(data) if isinstance(data, str) else (data or {})
            namespaces.add(str((data.get("metadata") or {}).get("namespace") or "default"))
        conn.execute(
            text("UPDATE spaces SET kinds = :kinds, namespaces = :namespaces WHERE name = :name"),
            {
                "kinds": json.dumps(sorted(kinds)),
                "namespaces": json.dumps(sorted(namespaces or {"default"})),
                "name": name,
            },
        )


def _m011_space_actuator(conn: Connection) -> None:
    """Issue 12: who applies a space's live revisions (kubernetes | confighub | argocd),
    and the Argo CD Application for argocd. Existing spaces keep our own apply."""
    for ddl in (
        "ALTER TABLE spaces ADD COLUMN actuator VARCHAR(16) NOT NULL DEFAULT 'kubernetes'",
        "ALTER TABLE spaces ADD COLUMN argocd_app TEXT NOT NULL DEFAULT ''",
    ):
        conn.execute(text(ddl))


def _m012_confighub_state(conn: Connection) -> None:
    """Issue 12: with ConfigHub as the authority, the state store beside the worker
    keeps what ConfigHub has no object for: per unit its lifecycle state, the
    revision Git last wrote, and the live/applied revisions of our own applies;
    per revision its source, tags, author, policy result, approvals and
    idempotency key; and Git's last render of each unit (the publish merge base).
    """
    md = MetaData()
    Table(
        "confighub_units",
        md,
        Column("space", String(253), primary_key=True),
        Column("unit", String(253), primary_key=True),
        Column("state", String(16), nullable=False),
        Column("git_revision", Integer, nullable=True),
        Column("live_revision", Integer, nullable=True),
        Column("last_applied_revision", Integer, nullable=True),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )
    Table(
        "confighub_revisions",
        md,
        Column("space", String(253), primary_key=True),
        Column("unit", String(253), primary_key=True),
        Column("number", Integer, primary_key=True),
        Column("source", String(32), nullable=False),
        Column("tags", JSON, nullable=False),
        Column("author", Text, nullable=False),
        Column("policy", JSON, nullable=False),
        Column("approvals", JSON, nullable=False),
        Column("idempotency_key", String(512), nullable=False),
    )
    Table(
        "confighub_git_bases",
        md,
        Column("space", String(253), primary_key=True),
        Column("unit", String(253), primary_key=True),
        Column("commit", String(64), nullable=False),
        Column("data", JSON, nullable=False),
        Column("recorded_at", DateTime(timezone=True), nullable=False),
    )
    md.create_all(conn)
