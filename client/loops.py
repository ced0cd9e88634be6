"""Reach the long-running workflows (``apply:{space}:{unit}``, ``drift:{space}:{unit}``,
``sync-pr:{space}``) from any client: the CLI, the Claim watcher, the worker's
Temporal activities and the tests. Signal-with-start and update-with-start.

A request can meet its workflow just as the workflow completes (an idle loop ends).
The workflows drain what arrived before they complete; here, a signal-with-start or
an update that the server answers with "completed" is sent again, and then starts
(or reaches) the next run. Nothing a caller asks for is lost or answered with an
error for that reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio.client import Client
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from domain.drift import CheckRequest
from domain.messages import (
    ApplyInput,
    DriftInput,
    RequestApplyInput,
    SyncNowInput,
    SyncPRInput,
    SyncRequest,
    SyncResult,
)
from domain.naming import apply_id, drift_id, sync_pr_id

SPACE_KEY = SearchAttributeKey.for_keyword("TributarySpace")
UNIT_KEY = SearchAttributeKey.for_keyword("TributaryUnit")

T = TypeVar("T")

# A retry finds the run closed and starts the next one, so one retry nearly always
# does; the bound only keeps a real NOT_FOUND (no such namespace) from looping.
ATTEMPTS = 5
RETRY_PAUSE_SECONDS = 0.05


def completed_meanwhile(e: Exception) -> bool:
    """The workflow's run ended (or began) between the server's look and the delivery.

    A signal-with-start's "is it running?" and its signal are not one step on every
    server: the time-skipping test server answers "Completed workflow" (NOT_FOUND)
    when the run completes in between, and "already started" when another request's
    start won the race (we always ask to use the existing run). An update sent to a
    run that completes before accepting it gets "workflow execution already
    completed" (NOT_FOUND). Each means "ask again": the retry reaches the run that is
    current then, or starts one.
    """
    if isinstance(e, WorkflowAlreadyStartedError):
        return True
    return isinstance(e, RPCError) and e.status in (
        RPCStatusCode.NOT_FOUND,
        RPCStatusCode.ALREADY_EXISTS,
    )


async def retry_completed(call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, sent again (bounded) while it meets a run that just ended or began."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await call()
        except (RPCError, WorkflowAlreadyStartedError) as e:
            if not completed_meanwhile(e) or attempt == ATTEMPTS:
                raise
            await asyncio.sleep(RETRY_PAUSE_SECONDS * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


async def update_with_start(
    client: Client,
    start: Callable[[], Awaitable[object]],
    workflow_id: str,
    update: str,
    arg: Any,
    result_type: type[T],
) -> T:
    """Make sure ``workflow_id`` runs (``start``: idempotent, retrying on its own), then
    run an update on it.

    The update goes to the current run, whichever it is (a continue-as-new hands it
    on); when that run completed between the start and the update, the server never
    accepted the update, so both are sent again.
    """

    async def once() -> T:
        await start()
        handle = client.get_workflow_handle(workflow_id)
        result: T = await handle.execute_update(update, arg, result_type=result_type)
        return result

    return await retry_completed(once)


async def signal_apply(client: Client, task_queue: str, inp: RequestApplyInput) -> str:
    """Signal-with-start ``apply:{space}:{unit}`` with one request."""
    workflow_id = apply_id(inp.space, inp.unit)
    await retry_completed(
        lambda: client.start_workflow(
            "ApplyWorkflow",
            ApplyInput(space=inp.space, unit=inp.unit),
            id=workflow_id,
            task_queue=task_queue,
            start_signal="request",
            start_signal_args=[inp.request],
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(SPACE_KEY, inp.space),
                    SearchAttributePair(UNIT_KEY, inp.unit),
                ]
            ),
            static_summary=f"apply {inp.space}/{inp.unit}",
        )
    )
    return workflow_id


async def signal_drift(
    client: Client,
    task_queue: str,
    space: str,
    unit: str,
    reason: str,
    sweep_id: str = "",
    *,
    signal: str = "check",
) -> str:
    """Signal-with-start ``drift:{space}:{unit}``: make sure it runs, and check now
    (or, with ``signal="pause"``/``"resume"``, pause or resume it)."""
    workflow_id = drift_id(space, unit)
    args: list[Any] = [CheckRequest(reason=reason, sweep_id=sweep_id)] if signal == "check" else []
    await retry_completed(
        lambda: client.start_workflow(
            "DriftWorkflow",
            DriftInput(space=space, unit=unit),
            id=workflow_id,
            task_queue=task_queue,
            start_signal=signal,
            start_signal_args=args,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(SPACE_KEY, space), SearchAttributePair(UNIT_KEY, unit)]
            ),
            static_summary=f"drift {space}/{unit}",
        )
    )
    return workflow_id


async def start_drift(
    client: Client, task_queue: str, space: str, unit: str, *, sweep_id: str = ""
) -> str:
    """Make sure ``drift:{space}:{unit}`` runs, without asking it to check. With
    ``sweep_id`` (a sweep's): a loop this starts checks first, for that sweep; one
    that runs gets nothing (no signal, no workflow task)."""
    workflow_id = drift_id(space, unit)
    await retry_completed(
        lambda: client.start_workflow(
            "DriftWorkflow",
            DriftInput(space=space, unit=unit, check_first=bool(sweep_id), sweep_id=sweep_id),
            id=workflow_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(SPACE_KEY, space), SearchAttributePair(UNIT_KEY, unit)]
            ),
            static_summary=f"drift {space}/{unit}",
        )
    )
    return workflow_id


async def start_sync(client: Client, task_queue: str, space: str) -> str:
    """Make sure ``sync-pr:{space}`` runs, without asking it for anything."""
    workflow_id = sync_pr_id(space)
    await retry_completed(
        lambda: client.start_workflow(
            "SyncPRWorkflow",
            SyncPRInput(space=space),
            id=workflow_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=TypedSearchAttributes([SearchAttributePair(SPACE_KEY, space)]),
            static_summary=f"sync PR {space}",
        )
    )
    return workflow_id


async def signal_sync(client: Client, task_queue: str, space: str, reason: str) -> str:
    """Signal-with-start ``sync-pr:{space}``: the authority changed outside Git."""
    workflow_id = sync_pr_id(space)
    await retry_completed(
        lambda: client.start_workflow(
            "SyncPRWorkflow",
            SyncPRInput(space=space),
            id=workflow_id,
            task_queue=task_queue,
            start_signal="request",
            start_signal_args=[SyncRequest(reason=reason)],
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=TypedSearchAttributes([SearchAttributePair(SPACE_KEY, space)]),
            static_summary=f"sync PR {space}",
        )
    )
    return workflow_id


async def sync_now(client: Client, task_queue: str, space: str, inp: SyncNowInput) -> SyncResult:
    """Run ``sync-pr:{space}`` now (starting it if needed) and answer with its result."""
    return await update_with_start(
        client,
        lambda: start_sync(client, task_queue, space),
        sync_pr_id(space),
        "sync_now",
        inp,
        SyncResult,
    )
