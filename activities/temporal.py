"""Temporal activities: start or signal other workflows from a workflow.

Workflows such as ``apply:{space}:{unit}`` outlive whoever asks for them, so they
are not children: a workflow reaches them through this activity, with
signal-with-start, exactly as the CLI does.
"""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)
from temporalio.exceptions import ApplicationError

from domain.drift import CheckRequest
from domain.messages import (
    ApplyInput,
    AwaitPublishInput,
    DriftInput,
    EnsureDriftInput,
    EnsureDriftResult,
    PublishResult,
    RequestAppliesInput,
    RequestAppliesResult,
    RequestApplyInput,
    RequestApplyResult,
    RequestSyncInput,
    RequestSyncResult,
    SyncPRInput,
    SyncRequest,
    UnitKey,
)
from domain.naming import apply_id, drift_id, sync_pr_id

SPACE_KEY = SearchAttributeKey.for_keyword("TributarySpace")
UNIT_KEY = SearchAttributeKey.for_keyword("TributaryUnit")


async def signal_apply(client: Client, task_queue: str, inp: RequestApplyInput) -> str:
    """Signal-with-start ``apply:{space}:{unit}`` with one request."""
    workflow_id = apply_id(inp.space, inp.unit)
    await client.start_workflow(
        "ApplyWorkflow",
        ApplyInput(space=inp.space, unit=inp.unit),
        id=workflow_id,
        task_queue=task_queue,
        start_signal="request",
        start_signal_args=[inp.request],
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=TypedSearchAttributes(
            [SearchAttributePair(SPACE_KEY, inp.space), SearchAttributePair(UNIT_KEY, inp.unit)]
        ),
        static_summary=f"apply {inp.space}/{inp.unit}",
    )
    return workflow_id


async def signal_drift(
    client: Client, task_queue: str, space: str, unit: str, reason: str, sweep_id: str = ""
) -> str:
    """Signal-with-start ``drift:{space}:{unit}``: make sure it runs, and check now."""
    workflow_id = drift_id(space, unit)
    await client.start_workflow(
        "DriftWorkflow",
        DriftInput(space=space, unit=unit),
        id=workflow_id,
        task_queue=task_queue,
        start_signal="check",
        start_signal_args=[CheckRequest(reason=reason, sweep_id=sweep_id)],
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=TypedSearchAttributes(
            [SearchAttributePair(SPACE_KEY, space), SearchAttributePair(UNIT_KEY, unit)]
        ),
        static_summary=f"drift {space}/{unit}",
    )
    return workflow_id


async def start_drift(client: Client, task_queue: str, space: str, unit: str) -> str:
    """Make sure ``drift:{space}:{unit}`` runs, without asking it to check."""
    workflow_id = drift_id(space, unit)
    await client.start_workflow(
        "DriftWorkflow",
        DriftInput(space=space, unit=unit),
        id=workflow_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=TypedSearchAttributes(
            [SearchAttributePair(SPACE_KEY, space), SearchAttributePair(UNIT_KEY, unit)]
        ),
        static_summary=f"drift {space}/{unit}",
    )
    return workflow_id


async def signal_sync(client: Client, task_queue: str, space: str, reason: str) -> str:
    """Signal-with-start ``sync-pr:{space}``: the authority changed outside Git."""
    workflow_id = sync_pr_id(space)
    await client.start_workflow(
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
    return workflow_id


class TemporalActivities:
    def __init__(self, client: Client, task_queue: str) -> None:
        self.client = client
        self.task_queue = task_queue

    @activity.defn(name="temporal.request_apply")
    async def request_apply(self, inp: RequestApplyInput) -> RequestApplyResult:
        return RequestApplyResult(workflow_id=await signal_apply(self.client, self.task_queue, inp))

    @activity.defn(name="temporal.request_applies")
    async def request_applies(self, inp: RequestAppliesInput) -> RequestAppliesResult:
        ids = [await signal_apply(self.client, self.task_queue, r) for r in inp.requests]
        return RequestAppliesResult(workflow_ids=ids)

    @activity.defn(name="temporal.ensure_drift")
    async def ensure_drift(self, inp: EnsureDriftInput) -> EnsureDriftResult:
        # Bounded concurrency: fast for thousands of units without flooding the server.
        gate = asyncio.Semaphore(32)

        async def one(u: UnitKey) -> str:
            async with gate:
                return await signal_drift(
                    self.client, self.task_queue, u.space, u.unit, inp.reason, inp.sweep_id
                )

        ids = await asyncio.gather(*(one(u) for u in inp.units))
        activity.heartbeat(len(ids))
        return EnsureDriftResult(workflow_ids=list(ids))

    @activity.defn(name="temporal.request_sync")
    async def request_sync(self, inp: RequestSyncInput) -> RequestSyncResult:
        ids = [await signal_sync(self.client, self.task_queue, s, inp.reason) for s in inp.spaces]
        return RequestSyncResult(workflow_ids=ids)

    @activity.defn(name="temporal.await_publish")
    async def await_publish(self, inp: AwaitPublishInput) -> PublishResult:
        """The result of a PublishWorkflow that another publish run of the same commit
        (same options, another ``--space`` scope) started first: attach, don't collide."""
        handle = self.client.get_workflow_handle(inp.workflow_id, result_type=PublishResult)
        task = asyncio.ensure_future(handle.result())
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=5)
                activity.heartbeat()
            result: PublishResult = task.result()
            return result
        except WorkflowFailureError as e:
            cause: BaseException | None = e
            while cause is not None and not isinstance(cause, ApplicationError):
                cause = cause.__cause__
            kind = (cause.type if isinstance(cause, ApplicationError) else None) or "PublishFailed"
            message = cause.message if isinstance(cause, ApplicationError) else str(e)
            raise ApplicationError(message, type=kind, non_retryable=True) from e
        finally:
            task.cancel()
