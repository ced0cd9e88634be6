"""Temporal activities: start or signal other workflows from a workflow.

Workflows such as ``apply:{space}:{unit}`` outlive whoever asks for them, so they
are not children: a workflow reaches them through this activity, with
signal-with-start, exactly as the CLI does (``client.loops``).
"""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.api.workflowservice.v1 import ListWorkflowExecutionsRequest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from client.contract import DRIFT_WORKFLOW
from client.loops import signal_apply, signal_drift, signal_sync
from domain.apply import (
    RequestAppliesInput,
    RequestAppliesResult,
    RequestApplyInput,
    RequestApplyResult,
)
from domain.drift import EnsureDriftInput, EnsureDriftResult, UnitKey
from domain.naming import drift_id
from domain.publish import AwaitPublishInput, PublishResult
from domain.sweep import EnsureLoopsInput, EnsureLoopsResult
from domain.sync import RequestSyncInput, RequestSyncResult

RUNNING_LOOPS = f'WorkflowType = "{DRIFT_WORKFLOW}" AND ExecutionStatus = "Running"'
LOOPS_PAGE = 1000  # visibility entries per list request


class TemporalActivities:
    def __init__(self, client: Client, task_queue: str) -> None:
        self.client = client
        self.task_queue = task_queue
        self._running: dict[str, set[str] | None] = {}  # by sweep id: loops seen running

    async def _running_loops(self, sweep_id: str) -> set[str] | None:
        """The drift loops running, from visibility, once per sweep (a few list pages
        instead of a start per unit); None where visibility cannot list them."""
        if sweep_id not in self._running:
            found: set[str] | None
            # The raw listing: only the ids are needed, and turning 1,000 entries into
            # WorkflowExecution objects (memo, search attributes) was a fifth of a
            # 1,000-unit sweep's worker CPU (py-spy).
            req = ListWorkflowExecutionsRequest(
                namespace=self.client.namespace, query=RUNNING_LOOPS, page_size=LOOPS_PAGE
            )
            try:
                ids: set[str] = set()
                while True:
                    page = await self.client.workflow_service.list_workflow_executions(req)
                    ids.update(e.execution.workflow_id for e in page.executions)
                    if not page.next_page_token:
                        break
                    req.next_page_token = page.next_page_token
                found = ids
            except RPCError:
                found = None  # e.g. the time-skipping test server: start each one
            while len(self._running) >= 2:
                self._running.pop(next(iter(self._running)))
            self._running[sweep_id] = found
        return self._running[sweep_id]

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

    @activity.defn(name="temporal.ensure_drift_loops")
    async def ensure_drift_loops(self, inp: EnsureLoopsInput) -> EnsureLoopsResult:
        """A sweep's page: loops of units it judged in sync only have to exist (a start
        that finds one running costs the loop nothing); the others are signalled."""
        gate = asyncio.Semaphore(32)

        async def one(space: str, unit: str, signal: bool) -> None:
            async with gate:
                if signal:
                    await signal_drift(
                        self.client, self.task_queue, space, unit, "sweep", inp.sweep_id
                    )
                else:
                    # Started already covered: no check first (the sweep just recorded
                    # the unit in sync), so the first sweep of a large fleet starts its
                    # loops for the price of a start, and each one's first tick reads
                    # the sweep's row (``drift.covered``).
                    await signal_drift(
                        self.client,
                        self.task_queue,
                        space,
                        unit,
                        signal=None,
                        interval_seconds=inp.intervals.get(space),
                    )

        # A loop that visibility shows running needs nothing; one it does not show (ended,
        # terminated, or just started) is started (a start that finds it running is a
        # no-op): visibility lagging behind costs a call, never a missing loop.
        running = await self._running_loops(inp.sweep_id) if inp.start else None
        calls = [
            one(s, u, False)
            for s, units in inp.start.items()
            for u in units
            if running is None or drift_id(s, u) not in running
        ]
        calls += [one(s, u, True) for s, units in inp.signal.items() for u in units]
        await asyncio.gather(*calls)
        activity.heartbeat(len(calls))
        return EnsureLoopsResult(
            started_or_running=sum(len(v) for v in inp.start.values()),
            signalled=sum(len(v) for v in inp.signal.values()),
        )

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
