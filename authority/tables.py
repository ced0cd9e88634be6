"""The embedded store's tables, as the newest migration leaves them.

The Alembic revisions (``schema/versions/``) create and alter these; a test checks
that a fully migrated database — fresh, or upgraded from any released schema —
matches this metadata, so the two cannot drift apart. (Alembic keeps its own
``alembic_version``; databases from before it also keep ``tributary_schema_version``.)
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
)

metadata = MetaData()

spaces = Table(
    "spaces",
    metadata,
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
    Column("sync", JSON, nullable=False, server_default="{}"),
    Column("kinds", JSON, nullable=False, server_default="[]"),
    Column("namespaces", JSON, nullable=False, server_default="[]"),
    Column("destination", Text, nullable=False, server_default=""),
    Column("gates_set_by", Text, nullable=False, server_default=""),
    Column("gates_set_at", DateTime(timezone=True), nullable=True),
    Column("gates_asserted", String(32), nullable=False, server_default=""),
    Column("actuator", String(16), nullable=False, server_default="kubernetes"),
    Column("argocd_app", Text, nullable=False, server_default=""),
)

units = Table(
    "units",
    metadata,
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

revisions = Table(
    "revisions",
    metadata,
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

drift_status = Table(
    "drift_status",
    metadata,
    Column("space", String(253), primary_key=True),
    Column("unit", String(253), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("checked_at", DateTime(timezone=True), nullable=False),
    Column("fields", JSON, nullable=False),
    Column("message", Text, nullable=False),
    Column("revision", Integer, nullable=True),
    Column("sweep_id", String(128), nullable=False),
    Column("sweep_state", String(16), nullable=False, server_default=""),
    Column("last_drift", JSON, nullable=True),
    Column("paused", Boolean, nullable=False, server_default=false()),
    Index("ix_drift_status_sweep", "sweep_id"),
)

pull_requests = Table(
    "pull_requests",
    metadata,
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

# What Git last rendered for each unit: the publish merge base, stored as the render
# itself (never a merged, forced or captured revision), with the commit it came from.
git_bases = Table(
    "git_bases",
    metadata,
    Column("space", String(253), primary_key=True),
    Column("unit", String(253), primary_key=True),
    Column("commit", String(64), nullable=False),
    Column("data", JSON, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    ForeignKeyConstraint(
        ["space", "unit"], ["units.space", "units.slug"], name="fk_git_bases_unit"
    ),
)

# Commits already published to a space: a CI re-run of any of them writes nothing.
published_commits = Table(
    "published_commits",
    metadata,
    Column("space", String(253), primary_key=True),
    Column("commit", String(64), primary_key=True),
    Column("published_at", DateTime(timezone=True), nullable=False),
    ForeignKeyConstraint(["space"], ["spaces.name"], name="fk_published_commits_space"),
)

# With ConfigHub as the authority (authority/confighub.py), what ConfigHub has no
# object for stays here, beside the worker (migration 12).
confighub_units = Table(
    "confighub_units",
    metadata,
    Column("space", String(253), primary_key=True),
    Column("unit", String(253), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("git_revision", Integer, nullable=True),
    Column("live_revision", Integer, nullable=True),
    Column("last_applied_revision", Integer, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

confighub_revisions = Table(
    "confighub_revisions",
    metadata,
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

confighub_git_bases = Table(
    "confighub_git_bases",
    metadata,
    Column("space", String(253), primary_key=True),
    Column("unit", String(253), primary_key=True),
    Column("commit", String(64), nullable=False),
    Column("data", JSON, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)
