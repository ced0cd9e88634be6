"""Issue 10: a space's gates live in the authority, set by `tributary space set`.

Approval and the sync base already had a home; the allowed kinds, namespaces and
destination are new, and so is the record of who set the gates and when.

Revision ID: 0009 (old ``tributary_schema_version`` 9)
Revises: 0007
"""

from __future__ import annotations

from alembic import op

from authority.migrations import _m009_space_gates

revision = "0009"
down_revision: str | None = "0007"


def upgrade() -> None:
    _m009_space_gates(op.get_bind())
