"""Restart the Temporal dev server (same SQLite file) under 100 running drift loops.

The loops are durable state on the server: after the restart every one of them is
still running, answers a check, and the next live edit is captured — by the same
worker process, which reconnects by itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.crash.common import cli, live_edit
from tests.crash.conftest import crash_repo
from tests.crash.harness import CrashStack, eventually

SPACE = "loops"
LOOPS = 100
DOWN_SECONDS = 5.0


async def running_loops(stack: CrashStack) -> int:
    query = "WorkflowType = 'DriftWorkflow' AND ExecutionStatus = 'Running'"
    return (await stack.client.count_workflows(query)).count


@pytest.mark.timeout(600)
async def test_drift_loops_resume_after_a_temporal_restart(
    crash_stack: CrashStack, tmp_path: Path
) -> None:
    stack = crash_stack
    # The orders database and queue plus 98 more queues: 100 units, 100 loops.
    repo = crash_repo(tmp_path, [SPACE], queues=LOOPS - 1)
    published = await cli(stack, "publish", "--repo", repo.url, "--apply", "--json", limit=400)
    assert published.code == 0, published.stderr
    units = [u["unit"] for s in published.json["spaces"] for u in s["units"]]
    assert len(units) == LOOPS

    async def all_running() -> bool:
        return await running_loops(stack) == LOOPS

    await eventually(all_running, limit=120, what=f"{LOOPS} drift loops running")
    store = stack.store()
    try:
        before = {r.unit: r.checked_at for r in store.list_drift(SPACE)}
    finally:
        store.close()

    await stack.restart_temporal(DOWN_SECONDS)
    assert stack.worker_pid is not None  # the worker was not restarted

    await eventually(all_running, limit=120, what=f"{LOOPS} drift loops running again")
    # Each loop checks again after the restart: `drift check SPACE` asks every loop
    # itself and waits for its answer (a sweep would judge in-sync units in bulk,
    # without asking their loops, so it would not prove the loops answer).
    checked = await cli(stack, "drift", "check", SPACE, "--json", limit=400)
    assert checked.code == 0, checked.stderr
    store = stack.store()
    try:
        after = {r.unit: r for r in store.list_drift(SPACE)}
        assert sorted(after) == sorted(units)
        stale = [u for u, r in after.items() if before.get(u) and r.checked_at <= before[u]]
        assert stale == [], f"loops that did not check after the restart: {stale}"
        assert {r.state for r in after.values()} == {"in-sync"}, after

        # The next live edit is captured.
        edited = f"{SPACE}-q042"
        live_edit(stack, edited, {"maxReceiveCount": 9})

        def captured() -> bool:
            unit = store.get_unit(SPACE, edited)
            assert unit is not None
            head = store.get_revision(SPACE, edited, unit.head_revision)
            assert head is not None
            return head.source == "drift-capture" and head.data["spec"]["maxReceiveCount"] == 9

        async def probe() -> bool:
            return captured()

        await eventually(probe, limit=120, what="the live edit after the restart captured")
        revisions = store.list_revisions(SPACE, edited)
        assert [r.source for r in revisions] == ["ci", "drift-capture"]
    finally:
        store.close()
    assert await running_loops(stack) == LOOPS
