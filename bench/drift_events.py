"""History events per drift check: one loop on the time-skipping server, every activity
mocked (the check answers "in sync"), 20 timer ticks; prints events per check.

What a check costs a loop's history decides how often it continues as new
(``workflows.drift.CHECKS_PER_RUN``). Run: `.venv/bin/python bench/drift_events.py`.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path

from temporalio import activity
from temporalio.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from domain.drift import (
    DriftCheckInput,
    DriftCheckResult,
    DriftInput,
    DriftRecordInput,
    DriftRecordResult,
)
from domain.sweep import CoveredInput, CoveredResult
from tests.conftest import _time_skipping
from workflows.drift import DriftWorkflow

TICKS = 20
checks = 0


@activity.defn(name="drift.check")
async def check(inp: DriftCheckInput) -> DriftCheckResult:
    global checks
    checks += 1
    return DriftCheckResult(state="in-sync", mode="report", live_revision=1, expected_version=1)


@activity.defn(name="drift.record")
async def record(inp: DriftRecordInput) -> DriftRecordResult:
    return DriftRecordResult()


@activity.defn(name="drift.covered")
async def covered(inp: CoveredInput) -> CoveredResult:
    return CoveredResult()  # no sweep: every tick is a check


async def main() -> None:
    env = await _time_skipping()
    async with Worker(
        env.client,
        task_queue="bench",
        workflows=[DriftWorkflow],
        activities=[check, record, covered],
    ):
        handle = await env.client.start_workflow(
            DriftWorkflow.run, DriftInput(space="s", unit="u"), id="drift:s:u", task_queue="bench"
        )
        await asyncio.sleep(1)
        before, first = len((await handle.fetch_history()).events), checks
        for _ in range(TICKS):
            await env.sleep(timedelta(seconds=301))
        await asyncio.sleep(1)
        events = len((await handle.fetch_history()).events) - before
        n = checks - first
        print(f"checks={n} events={events} per_check={events / max(1, n):.2f}")
        await handle.terminate("bench done")
    await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
