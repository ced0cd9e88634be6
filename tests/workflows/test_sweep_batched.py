"""Batched detection: the sweep judges units itself, records those in sync in bulk and
signals only the drift loops that differ; an idle loop a sweep covers skips its check."""

from __future__ import annotations

from datetime import timedelta

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from authority.sql import SqlStore
from client.cover import SweepCoverWatch
from domain.sweep import COVERED_BACKSTOP, SWEEP_MESSAGE, sweep_message
from tests.conftest import Sandbox
from tests.support import AuthoringRepo
from tests.workflows.helpers import skip
from tests.workflows.test_drift import SQLITE_ONLY, go_live, numbers, status_of
from tests.workflows.test_sweep import sweep

PROD = "orders-production"  # capture mode, 2-minute interval, an SQS queue composed
QUEUE = "production-orders-queue"


async def checks(env: WorkflowEnvironment, units: list[str]) -> dict[str, int]:
    return {u: (await status_of(env, PROD, u)).checks for u in units}


@SQLITE_ONLY
async def test_sweep_records_in_sync_units_in_bulk_and_signals_only_the_loop_that_differs(
    env: WorkflowEnvironment,
    cluster_worker: Worker,
    store: SqlStore,
    sandbox: Sandbox,
    orders: AuthoringRepo,
) -> None:
    units = await go_live(env, cluster_worker, store, orders, PROD)
    assert QUEUE in units
    assert len(units) == 2
    before = await checks(env, units)

    first = await sweep(env, cluster_worker, batch_size=1)

    assert (first.units, first.complete, first.counts) == (2, True, {"in-sync": 2}), first
    rows = {r.unit: r for r in store.list_drift(PROD)}
    assert {u: (rows[u].message, rows[u].sweep_id) for u in units} == dict.fromkeys(
        units, (SWEEP_MESSAGE, first.sweep_id)
    )
    assert await checks(env, units) == before  # no loop was asked to check

    # An edit in AWS only: the Claim is still in sync, its queue's atProvider is not.
    sqs = sandbox.aws.sqs()
    url = sqs.get_queue_url(QueueName="orders-production-orders-queue.fifo")["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "120"})
    sandbox.crossplane.observe_now()

    # The sweep waits (in real time) for the loop it signals to check and capture: it
    # stops as soon as every unit has reported, so only a loop that never reports costs
    # the helper's whole bound. A fixed 8 s failed under a CPU hog (capture not in yet).
    second = await sweep(env, cluster_worker, batch_size=1)

    assert second.complete, (second, store.list_drift(PROD))
    assert second.counts == {"in-sync": 1, "captured": 1}, second
    assert numbers(store, PROD, QUEUE) == [1, 2]
    captured = store.get_revision(PROD, QUEUE, 2)
    assert captured is not None
    assert captured.data["spec"]["visibilityTimeoutSeconds"] == 120
    after = await checks(env, units)
    assert after[QUEUE] > before[QUEUE]
    assert {u: n for u, n in after.items() if u != QUEUE} == {
        u: n for u, n in before.items() if u != QUEUE
    }


@SQLITE_ONLY
async def test_an_idle_loop_a_sweep_covers_skips_its_check_until_sweeps_stop(
    env: WorkflowEnvironment, cluster_worker: Worker, store: SqlStore, orders: AuthoringRepo
) -> None:
    units = await go_live(env, cluster_worker, store, orders, PROD)
    swept = await sweep(env, cluster_worker)
    assert swept.counts == {"in-sync": 2}, swept
    statuses = [await status_of(env, PROD, u) for u in units]
    before = {st.unit: st.checks for st in statuses}
    last = max(st.last_check for st in statuses if st.last_check is not None)
    now = await env.get_current_time()

    # Each loop's 2-minute timer fires after the sweep: its judgement stands for the tick.
    await skip(env, last + timedelta(minutes=2, seconds=10) - now)
    assert await checks(env, units) == before
    assert {(await status_of(env, PROD, u)).state for u in units} == {"in-sync"}

    # No sweep since: the next tick, one interval after the sweep, is a full check again.
    await skip(env, timedelta(minutes=2))
    assert await checks(env, units) == {u: n + 1 for u, n in before.items()}


@SQLITE_ONLY
async def test_a_loop_covered_by_a_scheduled_sweep_sleeps_to_the_backstop_then_checks(
    env: WorkflowEnvironment, cluster_worker: Worker, store: SqlStore, orders: AuthoringRepo
) -> None:
    """A sweep that runs at least as often as the loop's interval (its record says so)
    finds drift within the interval itself: the loop does not check on every interval.
    When such sweeps stop, the loop checks again by the backstop."""
    units = await go_live(env, cluster_worker, store, orders, PROD)
    swept = await sweep(env, cluster_worker, cadence_seconds=120)
    assert swept.counts == {"in-sync": 2}, swept
    assert {r.message for r in store.list_drift(PROD)} == {sweep_message(120)}
    statuses = [await status_of(env, PROD, u) for u in units]
    before = {st.unit: st.checks for st in statuses}
    last = max(st.last_check for st in statuses if st.last_check is not None)
    now = await env.get_current_time()

    # The first tick reads the scheduled sweep's row; then many 2-minute intervals pass
    # with no check (one row read per loop, not a check per interval).
    await skip(env, last + timedelta(minutes=2, seconds=10) - now)
    assert await checks(env, units) == before
    assert {(await status_of(env, PROD, u)).state for u in units} == {"in-sync"}
    await skip(env, timedelta(minutes=30))
    assert await checks(env, units) == before

    # No sweep since (the schedule stopped): by the backstop after the sweep's
    # judgement each loop has checked again, once.
    now = await env.get_current_time()
    await skip(env, last + COVERED_BACKSTOP + timedelta(minutes=2, seconds=30) - now)
    assert await checks(env, units) == {u: n + 1 for u, n in before.items()}


@SQLITE_ONLY
async def test_a_loop_whose_schedule_stops_checks_within_its_interval_again(
    env: WorkflowEnvironment, cluster_worker: Worker, store: SqlStore, orders: AuthoringRepo
) -> None:
    """Covered to the backstop by a scheduled sweep, the loop is told when the schedule
    stops (the worker's watch: here its step after reading the schedule) and checks
    within its own interval, not an hour after the last sweep."""
    units = await go_live(env, cluster_worker, store, orders, PROD)
    swept = await sweep(env, cluster_worker, cadence_seconds=120)
    assert swept.counts == {"in-sync": 2}, swept
    statuses = [await status_of(env, PROD, u) for u in units]
    before = {st.unit: st.checks for st in statuses}
    last = max(st.last_check for st in statuses if st.last_check is not None)
    now = await env.get_current_time()
    await skip(env, last + timedelta(minutes=2, seconds=10) - now)
    await skip(env, timedelta(minutes=10))
    assert await checks(env, units) == before  # asleep on the schedule's claim

    ended = await SweepCoverWatch(store, env.client).end_cover(None)

    assert sorted(ended) == sorted((PROD, u) for u in units)
    assert {r.message for r in store.list_drift(PROD)} == {SWEEP_MESSAGE}
    # Within one interval (2 min) of the signal each loop has checked, once.
    await skip(env, timedelta(minutes=2, seconds=30))
    assert await checks(env, units) == {u: n + 1 for u, n in before.items()}
    # Then on its own interval, as with no sweeps at all.
    await skip(env, timedelta(minutes=2))
    assert await checks(env, units) == {u: n + 2 for u, n in before.items()}
