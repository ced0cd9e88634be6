"""A run whose workflow task keeps failing answers no query or update for a while
("Workflow Task in failed state"): the CLI waits it out instead of failing the CI
step (seen when a loaded worker's deadlock detector failed a publish's tasks).

Against the dev server, which is what gives that answer: the time-skipping server
does not fail queries fast.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from temporalio import workflow
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from client import contract
from client.loops import not_ready, until_ready
from domain.apply import ApplyOutcome, ApplyStatus, ApproveInput, ApproveResult
from starter import applying

# Read by the workflow below: while set, every workflow task it runs fails.
WEDGED = {"on": True}


@workflow.defn(sandboxed=False)
class Wedged:
    """An apply workflow stand-in whose tasks fail until the test lets them succeed."""

    def __init__(self) -> None:
        self.approved: list[str] = []

    @workflow.run
    async def run(self) -> None:
        if WEDGED["on"]:
            raise RuntimeError("this task fails (as under a deadlock-detector timeout)")
        await workflow.wait_condition(lambda: False)

    @workflow.query(name=contract.APPLY_STATUS_QUERY)
    def status(self) -> ApplyStatus:
        done = ApplyOutcome(revision=2, state="ready", request_ids=["r1"])
        return ApplyStatus(space="s", unit="u", outcomes=[done])

    @workflow.update(name=contract.APPROVE_UPDATE)
    def approve(self, inp: ApproveInput) -> ApproveResult:
        return ApproveResult(revision=inp.revision, by=inp.by)


async def _until_not_ready(handle: WorkflowHandle[Wedged, None]) -> RPCError:
    """The server's answer once the task has failed often enough (a few seconds)."""
    for _ in range(240):
        try:
            await handle.query(contract.APPLY_STATUS_QUERY, result_type=ApplyStatus)
        except RPCError as e:
            if not_ready(e):
                return e
        await asyncio.sleep(0.25)
    raise AssertionError("the failing workflow task never made the run not ready")


async def test_follow_and_approve_wait_out_a_failing_workflow_task(
    local_env: WorkflowEnvironment,
) -> None:
    client, queue = local_env.client, f"q-{uuid.uuid4()}"
    WEDGED["on"] = True
    async with Worker(client, task_queue=queue, workflows=[Wedged]):
        handle = await client.start_workflow(
            Wedged.run,
            id=f"apply:s:{uuid.uuid4().hex[:8]}",
            task_queue=queue,
            task_timeout=timedelta(seconds=2),
        )
        answer = await _until_not_ready(handle)
        assert "failed state" in answer.message

        following = asyncio.ensure_future(applying.follow(client, handle.id, "r1"))
        approving = asyncio.ensure_future(
            until_ready(
                lambda: handle.execute_update(
                    contract.APPROVE_UPDATE,
                    ApproveInput(revision=2, by="ana"),
                    result_type=ApproveResult,
                )
            )
        )
        await asyncio.sleep(3)
        # Both are still asking, neither has failed.
        assert not following.done()
        assert not approving.done()

        WEDGED["on"] = False
        outcome = await asyncio.wait_for(following, timeout=120)
        approval = await asyncio.wait_for(approving, timeout=120)
        assert (outcome.state, outcome.revision) == ("ready", 2)
        assert (approval.revision, approval.by) == (2, "ana")
        await handle.terminate()
