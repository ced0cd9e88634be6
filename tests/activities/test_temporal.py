"""The sweep's list of running drift loops, from the dev server's visibility, page by
page: only those running, of the drift workflow's type."""

from __future__ import annotations

import uuid

import pytest
from temporalio.testing import WorkflowEnvironment

from activities import temporal
from activities.temporal import TemporalActivities
from client.contract import DRIFT_WORKFLOW
from tests.support import eventually


async def test_running_loops_lists_every_page_and_only_running_drift_loops(
    local_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = local_env.client
    # No worker polls this queue: the runs stay Running with their first task pending.
    queue, tag = f"no-worker-{uuid.uuid4()}", uuid.uuid4().hex[:8]
    running = [f"drift:s-{tag}:u{n}" for n in range(5)]
    for wid in running:
        await client.start_workflow(
            DRIFT_WORKFLOW, {"space": "s", "unit": "u"}, id=wid, task_queue=queue
        )
    ended = await client.start_workflow(
        DRIFT_WORKFLOW, {"space": "s", "unit": "x"}, id=f"drift:s-{tag}:gone", task_queue=queue
    )
    await ended.terminate()
    other = await client.start_workflow(
        "ApplyWorkflow", {}, id=f"apply:s-{tag}:u", task_queue=queue
    )
    monkeypatch.setattr(temporal, "LOOPS_PAGE", 2)  # three pages for these five at least

    async def listed() -> set[str]:
        found = await TemporalActivities(client, queue)._running_loops(f"sweep-{uuid.uuid4()}")
        assert found is not None
        return {w for w in found if tag in w}

    mine = await eventually(listed, lambda ids: ids == set(running), what="the five loops")
    assert f"drift:s-{tag}:gone" not in mine
    assert other.id not in mine
    for wid in running:
        await client.get_workflow_handle(wid).terminate()
    await other.terminate()
