"""Hole 7 with real git: hostile live values in the sync PR body and commit message.

A value anyone with ``kubectl edit`` controls reaches the authority through a
capture; the PR body must show it as text (the table keeps its shape, nothing is
hidden) and the commit message must gain no trailer.
"""

from __future__ import annotations

import subprocess

import pytest

from activities.sync import SyncActivities
from authority.sql import SqlStore
from domain.sync import SyncPushInput
from tests.activities.test_sync import SPACE, UNIT, acts, message, repo, run  # noqa: F401
from tests.support import AuthoringRepo, authority_change

pytestmark = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)

HOSTILE = "` | **Approved** <!--"
TRAILER = "INC-9\n\nCo-authored-by: Eve <eve@example.com>"


def trailers(message: str) -> str:
    """The trailers git reads from ``message`` (``Co-authored-by: …`` lines)."""
    return subprocess.run(
        ["git", "interpret-trailers", "--parse"],
        input=message,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


async def test_hostile_values_stay_text_in_the_pr_and_add_no_trailer(
    repo: AuthoringRepo,  # noqa: F811
    acts: SyncActivities,  # noqa: F811
    store: SqlStore,
) -> None:
    authority_change(
        store,
        SPACE,
        UNIT,
        "drift-capture",
        tags={"incident": TRAILER},
        spec__eventSource=HOSTILE,
    )

    pushed = run(acts.push, SyncPushInput(space=SPACE))

    assert pushed.action == "pushed"
    table = [line for line in pushed.body.splitlines() if line.startswith("| ")]
    assert len(table) == 2
    assert {line.count("|") for line in table} == {8}
    assert "<!--" not in pushed.body
    assert "**Approved**" not in pushed.body
    assert "&#60;&#33;--" in pushed.body
    text = message(repo, pushed.head_commit)
    assert trailers(text) == ""
    assert "[INC-9\\n\\nCo-authored-by: Eve <eve@example.com>]" in text
