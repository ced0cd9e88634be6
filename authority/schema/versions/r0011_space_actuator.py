"""Who applies a space's live revisions (kubernetes | confighub | argocd), and the
Argo CD Application for argocd. Existing spaces keep our own apply.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

from authority.migrations import _m011_space_actuator

revision = "0011"
down_revision: str | None = "0010"


def upgrade() -> None:
    _m011_space_actuator(op.get_bind())
