"""What each unit's check for its last sweep found, kept apart from its latest state:
a later timer or watch check must not rewrite what the sweep counts.

Revision ID: 0004 (old ``tributary_schema_version`` 4)
Revises: 0003
"""

from __future__ import annotations

from alembic import op

from authority.migrations import _m004_sweep_state

revision = "0004"
down_revision: str | None = "0003"


def upgrade() -> None:
    _m004_sweep_state(op.get_bind())
