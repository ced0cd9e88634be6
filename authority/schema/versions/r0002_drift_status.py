"""Arrow 3: the last drift check of every unit, readable without Temporal.

Revision ID: 0002 (old ``tributary_schema_version`` 2)
Revises: 0001
"""

from __future__ import annotations

from alembic import op

from authority.migrations import _m002_drift_status

revision = "0002"
down_revision: str | None = "0001"


def upgrade() -> None:
    _m002_drift_status(op.get_bind())
