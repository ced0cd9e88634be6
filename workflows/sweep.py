"""The drift sweep: every unit's drift loop running, and checked, in batches.

A Temporal Schedule runs it (``tributary sweep schedule``, every 6 h by default);
``tributary sweep run`` runs it now. Each batch is one activity that
signal-with-starts ``drift:{space}:{unit}`` for a few hundred units, so the
sweep's own history stays small even for 10,000 units; the drift loops record
their results in the authority under the sweep's id, which is how it counts them.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.authority import AuthorityActivities
    from activities.temporal import TemporalActivities
    from domain.drift import (
        CountDriftInput,
        EnsureDriftInput,
        ListUnitsPageInput,
        SweepInput,
        SweepResult,
        UnitKey,
    )
    from workflows import _options as opt

BATCH_TIMEOUT = timedelta(minutes=5)


@workflow.defn(name="SweepWorkflow")
class SweepWorkflow:
    def __init__(self) -> None:
        self.units = 0

    @workflow.query
    def progress(self) -> int:
        """Units asked to check so far."""
        return self.units

    @workflow.run
    async def run(self, inp: SweepInput) -> SweepResult:
        sweep_id = f"{workflow.info().workflow_id}/{workflow.info().run_id}"
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
