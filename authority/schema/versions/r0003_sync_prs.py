"""Arrow 4: per-space sync settings, and the pull requests the local forge keeps.

Revision ID: 0003 (old ``tributary_schema_version`` 3)
Revises: 0002
"""

from __future__ import annotations

from alembic import op

from authority.migrations import _m003_sync_prs

revision = "0003"
down_revision: str | None = "0002"


def upgrade() -> None:
    _m003_sync_prs(op.get_bind())
