"""The latest drift (fields, when, the capturing revision, a re-base conflict), kept
after a capture: ``drift status`` answers "what changed?" after the fact.

Revision ID: 0006 (old ``tributary_schema_version`` 6)
Revises: 0005
"""

from __future__ import annotations

from alembic import op

from authority.migrations import _m006_last_drift

revision = "0006"
down_revision: str | None = "0005"


def upgrade() -> None:
    _m006_last_drift(op.get_bind())
