"""Notice a dead worker in seconds, not at an activity's start-to-close timeout.

Temporal learns that a worker died (SIGKILL, OOM, a node drained) only through
timeouts. Without a heartbeat timeout, an activity that a dead worker had started
is retried only after its start-to-close timeout: 3 minutes for a render, 1 for an
authority write — the crash tests saw a publish stall that long after one SIGKILL.

So every (non-local) activity gets a heartbeat timeout of at most ``DEAD_WORKER``,
set by the workflow side of this interceptor, and the worker keeps every running
activity heartbeating from its event loop, re-sending the activity's own latest
heartbeat details. The loop runs as long as the process lives; start-to-close
still bounds an activity whose thread hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ActivityOutboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    StartActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

DEAD_WORKER = timedelta(seconds=20)
# Well inside DEAD_WORKER; the SDK throttles what reaches the server to about
# 0.8 of the heartbeat timeout anyway.
KEEPALIVE_SECONDS = 4.0


class _Outbound(ActivityOutboundInterceptor):
    def __init__(self, nxt: ActivityOutboundInterceptor) -> None:
        super().__init__(nxt)
        self.details: tuple[Any, ...] = ()

    def heartbeat(self, *details: Any) -> None:
        self.details = details
        super().heartbeat(*details)


class _Inbound(ActivityInboundInterceptor):
    def init(self, outbound: ActivityOutboundInterceptor) -> None:
        self.outbound = _Outbound(outbound)
        super().init(self.outbound)

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        if activity.info().is_local:
            return await super().execute_activity(input)
        beat = asyncio.create_task(self._keepalive())
        try:
            return await super().execute_activity(input)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_SECONDS)
            # Re-send the activity's own latest details: the Web UI keeps showing them.
            self.outbound.heartbeat(*self.outbound.details)


class _WorkflowOutbound(WorkflowOutboundInterceptor):
    def start_activity(self, input: StartActivityInput) -> Any:
        timeout = input.heartbeat_timeout
        if timeout is None or timeout > DEAD_WORKER:
            input = dataclasses.replace(input, heartbeat_timeout=DEAD_WORKER)
        return super().start_activity(input)


class _WorkflowInbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_WorkflowOutbound(outbound))


class DeadWorkerDetection(Interceptor):
    """Register on the worker: ``Worker(..., interceptors=[DeadWorkerDetection()])``."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return _WorkflowInbound
