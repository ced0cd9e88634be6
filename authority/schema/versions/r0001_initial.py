"""The tables of the embedded store: spaces, units, revisions.

Revision ID: 0001 (old ``tributary_schema_version`` 1)
Revises: —
"""

from __future__ import annotations

from alembic import op

from authority.migrations import _m001_initial

revision = "0001"
down_revision: str | None = None


def upgrade() -> None:
    _m001_initial(op.get_bind())
