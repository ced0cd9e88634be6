"""Asking for applies from the CLI and following them to an outcome."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from temporalio.client import Client
from temporalio.service import RPCError

from client import contract
from client.loops import signal_apply
from domain.apply import ApplyOutcome, ApplyRequest, ApplyStatus, RequestApplyInput
from starter.runner import WAIT_RETRIES, wait_again

POLL_SECONDS = 0.3
EXIT_BY_REASON = {"denied": 3, "rejected": 2, "conflict": 4}


def new_request_id() -> str:
    return str(uuid.uuid4())


async def request(client: Client, task_queue: str, space: str, unit: str, req: ApplyRequest) -> str:
    return await signal_apply(
        client, task_queue, RequestApplyInput(space=space, unit=unit, request=req)
    )


def find(status: ApplyStatus, request_id: str) -> ApplyOutcome | None:
    """The state of one request: finished, current, or still queued."""
    for outcome in reversed(status.outcomes):
        if request_id in outcome.request_ids:
            return outcome
    if status.current and request_id in status.current.request_ids:
        return status.current
    for req in status.pending:
        if request_id in req.request_ids:
            return ApplyOutcome(revision=req.revision, action=req.action, state="queued")
    return None


async def follow(
    client: Client,
    workflow_id: str,
    request_id: str,
    *,
    on_change: Callable[[ApplyOutcome], None] | None = None,
    wait: bool = True,
) -> ApplyOutcome:
    """Poll the apply workflow until the request settles (or once, without ``wait``)."""
    handle = client.get_workflow_handle(workflow_id)
    last: tuple[str, str] | None = None
    polls = failures = 0
    while True:
        try:
            status: ApplyStatus = await handle.query(
                contract.APPLY_STATUS_QUERY, result_type=ApplyStatus
            )
        except RPCError as e:
            # A query needs a worker, and a workflow task that completes: while the
            # worker restarts it times out, while a task is being retried the server
            # says "not ready", and the apply goes on. Ask again, not fail the CI step.
            failures += 1
            if not wait_again(e) or failures > WAIT_RETRIES:
                raise
            await asyncio.sleep(min(failures, 5))
            continue
        failures = 0
        outcome = find(status, request_id)
        if outcome is not None:
            key = (outcome.state, outcome.message)
            if key != last and on_change:
                on_change(outcome)
            last = key
            if outcome.settled or not wait:
                return outcome
        elif not wait:
            return ApplyOutcome(revision=0, state="queued")
        # Quick at first (most applies settle in a second or two), then easier on the server.
        polls += 1
        await asyncio.sleep(min(1.0, POLL_SECONDS * (1 + polls // 10)))


def exit_code(outcome: ApplyOutcome) -> int:
    if outcome.state in ("ready", "deleted"):
        return 0
    if outcome.state == "failed":
        return EXIT_BY_REASON.get(outcome.reason, 1)
    # awaiting approval, still running, or superseded by a newer revision that is
    # still on its way: the unit is not done yet
    return 5
