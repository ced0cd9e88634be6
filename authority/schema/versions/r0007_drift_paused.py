"""Pause lives in the authority: a drift loop restarted by a watch or a sweep starts
paused again.

Revision ID: 0007 (old ``tributary_schema_version`` 7)
Revises: 0006
"""

from __future__ import annotations

from alembic import op

from authority.migrations import _m007_drift_paused

revision = "0007"
down_revision: str | None = "0006"


def upgrade() -> None:
    _m007_drift_paused(op.get_bind())
