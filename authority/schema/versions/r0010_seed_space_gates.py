"""Existing spaces keep applying what they already hold: their units' kinds (and
the Claim kinds of their stored XRDs) and their units' namespaces.

Without this, every space created before migration 9 would allow nothing and
every apply would be refused; an admin narrows them with `tributary space set`.

Revision ID: 0010 (old ``tributary_schema_version`` 10)
Revises: 0009
"""

from __future__ import annotations

from alembic import op

from authority.migrations import _m010_seed_space_gates

revision = "0010"
down_revision: str | None = "0009"


def upgrade() -> None:
    _m010_seed_space_gates(op.get_bind())
