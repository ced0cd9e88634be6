"""Dead-worker detection: every activity has a short heartbeat timeout, and the worker
keeps running activities heartbeating with their own latest details."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from client import keepalive
from client.keepalive import DEAD_WORKER, DeadWorkerDetection

BEATS: list[tuple[object, ...]] = []


@activity.defn(name="keepalive.quick")
def quick() -> str:
    return "done"


@workflow.defn(name="KeepaliveProbe")
class KeepaliveProbe:
    @workflow.run
    async def run(self) -> list[str]:
        out = []
        for heartbeat in (None, timedelta(minutes=2), timedelta(seconds=5)):
            out.append(
                await workflow.execute_activity(
                    quick,
                    start_to_close_timeout=timedelta(minutes=3),
                    heartbeat_timeout=heartbeat,
                )
            )
        return out


async def test_every_activity_gets_a_heartbeat_timeout_of_at_most_dead_worker(
    env: WorkflowEnvironment, executor: ThreadPoolExecutor
) -> None:
    queue = f"tq-{uuid.uuid4()}"
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[KeepaliveProbe],
        activities=[quick],
        activity_executor=executor,
        interceptors=[DeadWorkerDetection()],
    ):
        handle = await env.client.start_workflow(
            KeepaliveProbe.run, id=f"keepalive-{uuid.uuid4()}", task_queue=queue
        )
        assert await handle.result() == ["done"] * 3
        timeouts = [
            event.activity_task_scheduled_event_attributes.heartbeat_timeout.ToTimedelta()
            async for event in handle.fetch_history_events()
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        ]
    # none → DEAD_WORKER; 2 minutes → DEAD_WORKER; 5 s stays 5 s
    assert timeouts == [DEAD_WORKER, DEAD_WORKER, timedelta(seconds=5)]


class _Recorder:
    """The innermost outbound interceptor: records what reaches the SDK."""

    def __init__(self) -> None:
        self.beaten = asyncio.Event()

    def heartbeat(self, *details: object) -> None:
        BEATS.append(details)
        self.beaten.set()

    async def until(self, count: int) -> None:
        """Waits on the beats themselves: a loop stalled for a while skips none."""
        while len(BEATS) < count:
            self.beaten.clear()
            await self.beaten.wait()


async def test_the_keepalive_resends_the_activitys_own_details(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(keepalive, "KEEPALIVE_SECONDS", 0.01)
    BEATS.clear()
    recorder = _Recorder()
    outbound = keepalive._Outbound(recorder)  # type: ignore[arg-type]
    inbound = keepalive._Inbound.__new__(keepalive._Inbound)
    inbound.outbound = outbound
    beat = asyncio.create_task(inbound._keepalive())
    async with asyncio.timeout(60):  # a hang, not slowness (tests.support stays out of the sandbox)
        await recorder.until(1)
        outbound.heartbeat("cloning")
        await recorder.until(len(BEATS) + 2)
    beat.cancel()
    first = BEATS.index(("cloning",))
    assert set(BEATS[:first]) == {()}  # nothing to repeat yet
    assert len(BEATS) > first + 1
    assert set(BEATS[first:]) == {("cloning",)}  # the last details, again and again


async def test_the_worker_registers_it(worker: Worker) -> None:
    assert any(isinstance(i, DeadWorkerDetection) for i in worker.config()["interceptors"])
