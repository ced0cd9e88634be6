"""The worker's watch of the sweep schedule reads a real schedule (the dev server):
what ``tributary sweep schedule`` creates, then paused, stretched and deleted the way
an operator does it from the Web UI or ``temporal schedule``."""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio.client import (
    ScheduleIntervalSpec,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.testing import WorkflowEnvironment

from client.cover import kept_cadence, sweep_schedule


async def test_the_cadence_holds_while_the_schedule_runs_as_its_records_say(
    local_env: WorkflowEnvironment,
) -> None:
    client = local_env.client
    schedule_id = f"sweep-{uuid.uuid4()}"
    assert await kept_cadence(client, schedule_id) is None  # no schedule

    handle = await client.create_schedule(
        schedule_id, sweep_schedule(timedelta(minutes=5), f"q-{uuid.uuid4()}")
    )
    try:
        assert await kept_cadence(client, schedule_id) == 300

        await handle.pause(note="incident")
        assert await kept_cadence(client, schedule_id) is None
        await handle.unpause()
        assert await kept_cadence(client, schedule_id) == 300

        # Stretched in place: the sweeps it starts still say 300 s, but run every 10 min.
        def stretch(given: ScheduleUpdateInput) -> ScheduleUpdate:
            schedule = given.description.schedule
            schedule.spec = ScheduleSpec(intervals=[ScheduleIntervalSpec(timedelta(minutes=10))])
            return ScheduleUpdate(schedule=schedule)

        await handle.update(stretch)
        assert await kept_cadence(client, schedule_id) is None
    finally:
        await handle.delete()
    assert await kept_cadence(client, schedule_id) is None
