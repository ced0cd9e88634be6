"""SweepWorkflow: every unit's drift loop running, and checked, counted by state."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from authority.sql import SqlStore
from domain.naming import drift_id
from domain.sweep import SweepInput, SweepResult
from tests.conftest import Sandbox
from tests.support import HANG, AuthoringRepo, eventually
from tests.workflows.helpers import publish, query_under_load
from tests.workflows.test_drift import (
    SQLITE_ONLY,
    apply_and_wait,
    drift_handle,
    first_check,
    numbers,
    patch_claim,
    status_of,
    terminate_when_idle,
)
from workflows.drift import DriftWorkflow
from workflows.sweep import SweepWorkflow

MW_SPACES = ["messagewall-dev-east", "messagewall-dev-west"]
ORDERS_SPACES = ["orders-production", "orders-staging"]


async def all_live(
    env: WorkflowEnvironment,
    worker: Worker,
    store: SqlStore,
    repos: list[tuple[AuthoringRepo, list[str]]],
) -> list[tuple[str, str]]:
    """Publish and apply (approving where a gate asks) every unit of these spaces."""
    for repo, spaces in repos:
        await publish(env, worker, repo, spaces=spaces)
    keys = [
        (space, u.slug) for _, spaces in repos for space in spaces for u in store.list_units(space)
    ]
    outcomes = await asyncio.gather(*(apply_and_wait(env, worker, s, u, 1) for s, u in keys))
    assert {o.state for o in outcomes} == {"ready"}, outcomes
    for space, unit in keys:
        await first_check(store, space, unit)
    return keys


async def sweep(env: WorkflowEnvironment, worker: Worker, **kw: int) -> SweepResult:
    """Run a sweep to its end without letting the server skip time, meanwhile or after.

    Awaiting ``result()`` unlocks time-skipping for the call, even for a run that has
    ended: measured, the server's clock jumped 2 minutes in it, to the drift loops'
    next ticks, so their timers fired while the test went on to signal them. The time-
    skipping server refuses a task completion that cancels a timer which fired while
    the worker held the task ("invalid history builder state for action") and never
    hands that task out again: the loop stops for good, and the next sweep waited for
    it in vain (1 run in 8 of ``make stress``). So the result is read with
    auto-skipping off.

    The sweep waits for its checks in real time, and stops waiting once all have
    reported: its bound only catches a check that never reports."""
    handle: WorkflowHandle[SweepWorkflow, SweepResult] = await env.client.start_workflow(
        SweepWorkflow.run,
        SweepInput(**{"wait_seconds": int(HANG / 2), **kw}),
        id=f"sweep-test-{uuid.uuid4()}",
        task_queue=worker.task_queue,
    )

    async def status() -> WorkflowExecutionStatus | None:
        return (await handle.describe()).status

    await eventually(status, lambda s: s != WorkflowExecutionStatus.RUNNING, what="the sweep's end")
    with env.auto_time_skipping_disabled():
        result = await handle.result()
    assert await handle.query(SweepWorkflow.progress) == result.units
    return result


@SQLITE_ONLY
async def test_sweep_counts_every_unit_and_starts_missing_loops(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    messagewall: AuthoringRepo,
    orders: AuthoringRepo,
) -> None:
    keys = await all_live(
        env, cluster_worker, store, [(messagewall, MW_SPACES), (orders, ORDERS_SPACES)]
    )
    assert len(keys) == 6
    # Two units lose their drift loop; the sweep must start them again.
    stopped = [("messagewall-dev-west", "messagewall-dev-west"), ("orders-staging", keys[-1][1])]
    for space, unit in stopped:
        await terminate_when_idle(env, space, unit)

    first = await sweep(env, cluster_worker, batch_size=2)

    assert (first.units, first.complete, first.counts) == (6, True, {"in-sync": 6}), first
    for space, unit in stopped:
        desc = await env.client.get_workflow_handle(drift_id(space, unit)).describe()
        assert desc.status == WorkflowExecutionStatus.RUNNING, (space, unit)
        # Started covered: the sweep just recorded the unit in sync, so no check first;
        # it ticks at its space's interval (orders-staging: 10 minutes), not a default.
        restarted = await status_of(env, space, unit)
        assert restarted.checks == 0
        record = store.get_space(space)
        assert record is not None
        assert restarted.interval_seconds == record.drift_interval_seconds

    # One unit of a capture space drifts: the next sweep captures it.
    east = "messagewall-dev-east"
    patch_claim(sandbox, store, east, east, {"spec": {"lambdaMemory": 256}})

    second = await sweep(env, cluster_worker, batch_size=2)

    assert numbers(store, east, east) == [1, 2]
    assert second.sweep_id != first.sweep_id
    assert second.units == 6
    assert second.complete, (second, store.list_drift(east, east))
    assert second.counts == {"in-sync": 5, "captured": 1}, second

    # Nothing new since: every unit in sync, and no revision anywhere.
    third = await sweep(env, cluster_worker, batch_size=4)

    assert (third.units, third.complete, third.counts) == (6, True, {"in-sync": 6}), third
    assert {space: numbers(store, space, unit) for space, unit in keys if space != east} == {
        space: [1] for space, _ in keys if space != east
    }
    assert numbers(store, east, east) == [1, 2]
    loop = drift_handle(env, east, east)
    st = await query_under_load(lambda: loop.query(DriftWorkflow.get_status))
    assert (st.captures, st.last_revision) == (1, 2)


async def test_sweep_of_an_empty_authority_is_complete_and_counts_nothing(
    env: WorkflowEnvironment, worker: Worker
) -> None:
    result = await sweep(env, worker)

    assert (result.units, result.counts, result.complete) == (0, {}, True)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_sweep_pages_through_units_in_batches(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, orders: AuthoringRepo
) -> None:
    """Units never applied still get a loop and a check: they report back as unknown."""
    await publish(env, worker, orders)

    result = await sweep(env, worker, batch_size=1)

    assert result.units == 4
    assert result.complete
    assert result.counts == {"unknown": 4}
    for space in ORDERS_SPACES:
        for unit in store.list_units(space):
            desc = await env.client.get_workflow_handle(drift_id(space, unit.slug)).describe()
            assert desc.status == WorkflowExecutionStatus.RUNNING
