"""Arrow 1: Git's last render of each unit is the publish merge base, stored as such,
and the commits already published to each space (a CI re-run of one never writes).

Backfill: a unit's base is its newest ``ci`` or ``ci-forced`` revision up to its
old ``git_revision`` (those hold Git's render exactly; a ``ci-merged`` one does
not, so a merged unit gets the render before the merge — the merge's base, which
plans the same way). Commits named by Git-sourced revisions count as published.

Revision ID: 0005 (old ``tributary_schema_version`` 5)
Revises: 0004
"""

from __future__ import annotations

from alembic import op

from authority.migrations import _m005_git_bases

revision = "0005"
down_revision: str | None = "0004"


def upgrade() -> None:
    _m005_git_bases(op.get_bind())
