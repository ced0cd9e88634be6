"""With ConfigHub as the authority, the state store beside the worker keeps what
ConfigHub has no object for: per unit its lifecycle state, the revision Git last
wrote and the live/applied revisions of our own applies; per revision its source,
tags, author, policy result, approvals and idempotency key; and Git's last render of
each unit (the publish merge base).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from alembic import op

from authority.migrations import _m012_confighub_state

revision = "0012"
down_revision: str | None = "0011"


def upgrade() -> None:
    _m012_confighub_state(op.get_bind())
