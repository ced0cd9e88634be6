"""The drift sweep: every unit judged in batches, and only the drift loops that differ
signalled.

A Temporal Schedule runs it (``tributary sweep schedule``, every 6 h by default);
``tributary sweep run`` runs it now. Each page is two activities: ``sweep.judge``
(activities/sweep.py) reads a page of units and their live revisions in one query,
compares them with the live objects it lists once per kind and namespace, and
records the units in sync in bulk; ``temporal.ensure_drift_loops`` makes sure those
units' loops exist (no signal, no workflow task) and signals the loops of every
other unit (a difference, a pause, an apply in flight, a unit the sweep could not
judge), which check, capture or revert as ever. The sweep never captures. Its
history holds a page's unit names, never objects, so it stays small for 10,000 units;
the results are counted in the authority under the sweep's id.

Sweeps started by an older worker replay the old path: every loop signalled.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.authority import AuthorityActivities
    from activities.sweep import SweepActivities
    from activities.temporal import TemporalActivities
    from domain.drift import (
        CountDriftInput,
        EnsureDriftInput,
        ListUnitsPageInput,
        UnitKey,
    )
    from domain.sweep import EnsureLoopsInput, SweepInput, SweepJudgeInput, SweepResult
    from workflows import _options as opt

BATCH_TIMEOUT = timedelta(minutes=5)


@workflow.defn(name="SweepWorkflow")
class SweepWorkflow:
    def __init__(self) -> None:
        self.units = 0

    @workflow.query
    def progress(self) -> int:
        """Units judged (or asked to check) so far."""
        return self.units

    @workflow.run
    async def run(self, inp: SweepInput) -> SweepResult:
        sweep_id = f"{workflow.info().workflow_id}/{workflow.info().run_id}"
        if workflow.patched("sweep-batched"):
            await self._judge_all(inp, sweep_id)
        else:
            await self._signal_all(inp, sweep_id)
        return await self._count(inp, sweep_id)

    async def _judge_all(self, inp: SweepInput, sweep_id: str) -> None:
        last: tuple[str, str] | None = None
        signalled = 0
        while True:
            page = await workflow.execute_activity_method(
                SweepActivities.judge,
                SweepJudgeInput(
                    sweep_id=sweep_id,
                    after=last,
                    limit=inp.batch_size,
                    cadence_seconds=inp.cadence_seconds,
                ),
                start_to_close_timeout=BATCH_TIMEOUT,
                heartbeat_timeout=timedelta(seconds=60),
                retry_policy=opt.RETRY,
                summary="judge the next batch of units",
            )
            if not page.units:
                break
            await workflow.execute_activity_method(
                TemporalActivities.ensure_drift_loops,
                EnsureLoopsInput(
                    sweep_id=sweep_id,
                    start=page.in_sync,
                    signal=page.signal,
                    intervals=page.intervals,
                ),
                start_to_close_timeout=BATCH_TIMEOUT,
                heartbeat_timeout=timedelta(seconds=60),
                retry_policy=opt.RETRY,
                summary=f"{page.recorded} in sync; signal {page.signal_count()} loops",
            )
            self.units += page.units
            signalled += page.signal_count()
            last = page.last
            workflow.set_current_details(
                f"judged {self.units} units, signalled {signalled} drift loops"
            )

    async def _signal_all(self, inp: SweepInput, sweep_id: str) -> None:
        after: UnitKey | None = None
        while True:
            page = await workflow.execute_activity_method(
                AuthorityActivities.list_units_page,
                ListUnitsPageInput(after=after, limit=inp.batch_size),
                start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
                retry_policy=opt.RETRY,
                summary="next batch of units",
            )
            if not page.units:
                break
            await workflow.execute_activity_method(
                TemporalActivities.ensure_drift,
                EnsureDriftInput(units=page.units, reason="sweep", sweep_id=sweep_id),
                start_to_close_timeout=BATCH_TIMEOUT,
                heartbeat_timeout=timedelta(seconds=60),
                retry_policy=opt.RETRY,
                summary=f"check {len(page.units)} units",
            )
            self.units += len(page.units)
            after = page.units[-1]
            workflow.set_current_details(f"asked {self.units} units to check")

    async def _count(self, inp: SweepInput, sweep_id: str) -> SweepResult:
        counted = await workflow.execute_activity_method(
            AuthorityActivities.count_drift,
            CountDriftInput(
                sweep_id=sweep_id, expected=self.units, timeout_seconds=inp.wait_seconds
            ),
            start_to_close_timeout=timedelta(seconds=inp.wait_seconds + 60),
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=opt.RETRY,
            summary="count the results",
        )
        result = SweepResult(
            sweep_id=sweep_id, units=self.units, counts=counted.counts, complete=counted.complete
        )
        workflow.set_current_details(
            f"{self.units} units: "
            + ", ".join(f"{state} {n}" for state, n in sorted(counted.counts.items()))
        )
        return result
