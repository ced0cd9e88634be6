"""DriftWorkflow's decisions on the time-skipping server, with every activity mocked under
its real name: what the loop does with a check's result, and what it records.

The sandbox-backed tests (test_drift.py) cover the same loop against a cluster and an
authority; these need neither, so each decision shows in a few lines.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from domain.apply import RequestApplyInput, RequestApplyResult
from domain.drift import (
    CaptureInput,
    CaptureReconcileInput,
    CaptureReconcileResult,
    CaptureRequest,
    CaptureResult,
    CheckRequest,
    DriftCheckInput,
    DriftCheckResult,
    DriftField,
    DriftInput,
    DriftPauseInput,
    DriftRecord,
    DriftRecordInput,
    DriftRecordResult,
    DriftStatus,
    TagCaptureInput,
    TagCaptureResult,
)
from domain.sweep import CoveredInput, CoveredResult
from domain.sync import RequestSyncInput, RequestSyncResult
from tests.support import eventually
from tests.workflows.helpers import skip
from workflows.drift import HISTORY_PER_RUN, DriftWorkflow

SPACE = UNIT = "messagewall-dev-east"
FIELD = DriftField(path="spec.lambdaMemory", authority=128, live=512)
AT = datetime(2026, 1, 1, tzinfo=UTC)


def in_sync(mode: str = "capture", live: int = 1) -> DriftCheckResult:
    return DriftCheckResult(
        state="in-sync", mode=mode, live_revision=live, expected_version=live, checked_at=AT
    )


def drifted(mode: str = "capture", *, capturable: bool = True) -> DriftCheckResult:
    return DriftCheckResult(
        state="drifted",
        mode=mode,
        live_revision=1,
        expected_version=1,
        fields=[FIELD.model_copy(update={"capturable": capturable})],
        claim_data={"spec": {"lambdaMemory": 512}} if capturable else None,
        fingerprint="spec.lambdaMemory=512",
        checked_at=AT,
    )


class Fakes:
    """The activities DriftWorkflow calls, under their registered names, noting calls."""

    def __init__(self) -> None:
        # What the next checks answer; the last one stands for every check after it.
        self.answers: list[DriftCheckResult | Exception] = [in_sync()]
        self.checks: list[DriftCheckInput] = []
        self.records: list[DriftRecord] = []
        self.captures: list[CaptureInput] = []
        self.tagged: list[TagCaptureInput] = []
        self.applies: list[RequestApplyInput] = []
        self.syncs: list[RequestSyncInput] = []
        self.pauses: list[bool] = []
        self.reconciles: list[int] = []
        # A sweep's cover: how long each timer tick may sleep again (0: check instead).
        self.cover_seconds = 0.0
        self.covered: list[CoveredInput] = []

    def activities(self) -> list[object]:
        @activity.defn(name="drift.check")
        async def check(inp: DriftCheckInput) -> DriftCheckResult:
            self.checks.append(inp)
            answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
            if isinstance(answer, Exception):
                raise answer
            return answer

        @activity.defn(name="drift.record")
        async def record(inp: DriftRecordInput) -> DriftRecordResult:
            self.records.append(inp.record)
            return DriftRecordResult()

        @activity.defn(name="drift.capture")
        async def capture(inp: CaptureInput) -> CaptureResult:
            self.captures.append(inp)
            revision = 1 + len(self.captures)
            return CaptureResult(revision=revision, created=True, head_revision=revision)

        @activity.defn(name="drift.classify")
        async def tag_capture(inp: TagCaptureInput) -> TagCaptureResult:
            self.tagged.append(inp)
            return TagCaptureResult(revision=inp.revision)

        @activity.defn(name="drift.set_paused")
        async def set_paused(inp: DriftPauseInput) -> DriftRecordResult:
            self.pauses.append(inp.paused)
            return DriftRecordResult()

        @activity.defn(name="drift.request_reconcile")
        async def request_reconcile(inp: CaptureReconcileInput) -> CaptureReconcileResult:
            self.reconciles.append(inp.revision)
            return CaptureReconcileResult(requested=True)

        @activity.defn(name="drift.covered")
        async def covered(inp: CoveredInput) -> CoveredResult:
            self.covered.append(inp)
            if not self.cover_seconds:
                return CoveredResult()  # no sweep: every tick is a check
            # a new sweep record each time, newer than the one the loop saw
            at = AT + timedelta(hours=len(self.covered))
            return CoveredResult(sleep_seconds=self.cover_seconds, checked_at=at)

        @activity.defn(name="temporal.request_apply")
        async def request_apply(inp: RequestApplyInput) -> RequestApplyResult:
            self.applies.append(inp)
            return RequestApplyResult(workflow_id="apply")

        @activity.defn(name="temporal.request_sync")
        async def request_sync(inp: RequestSyncInput) -> RequestSyncResult:
            self.syncs.append(inp)
            return RequestSyncResult(workflow_ids=["sync"])

        return [
            check,
            record,
            capture,
            tag_capture,
            set_paused,
            request_reconcile,
            covered,
            request_apply,
            request_sync,
        ]


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


@pytest.fixture
async def queue(env: WorkflowEnvironment, fakes: Fakes) -> AsyncIterator[str]:
    name = f"drift-decisions-{uuid.uuid4()}"
    async with Worker(
        env.client,
        task_queue=name,
        workflows=[DriftWorkflow],
        activities=fakes.activities(),
    ):
        yield name


async def start(env: WorkflowEnvironment, queue: str, *, start_signal: str | None = None) -> str:
    wf_id = f"drift:{SPACE}:{UNIT}:{uuid.uuid4()}"
    await env.client.start_workflow(
        DriftWorkflow.run,
        DriftInput(space=SPACE, unit=UNIT),
        id=wf_id,
        task_queue=queue,
        start_signal=start_signal,
    )
    return wf_id


async def check_now(env: WorkflowEnvironment, wf_id: str) -> DriftStatus:
    status: DriftStatus = await env.client.get_workflow_handle(wf_id).execute_update(
        DriftWorkflow.check_now, CheckRequest(reason="cli")
    )
    return status


def states(fakes: Fakes) -> list[str]:
    return [r.state for r in fakes.records]


async def test_capture_mode_captures_applies_the_capture_and_asks_for_a_sync_pr(
    env: WorkflowEnvironment, queue: str, fakes: Fakes
):
    fakes.answers = [drifted("capture"), in_sync(live=2)]
    wf_id = await start(env, queue)

    status = await check_now(env, wf_id)

    assert (status.state, status.captures, status.last_revision) == ("captured", 1, 2)
    [capture] = fakes.captures
    assert capture.data == {"spec": {"lambdaMemory": 512}}
    assert (capture.expected_version, capture.live_revision) == (1, 1)
    [apply] = fakes.applies
    assert (apply.request.revision, apply.request.ungated) == (2, True)
    assert [s.spaces for s in fakes.syncs] == [[SPACE]]
    # The capture writes its own row with the revision; the check wrote none.
    assert fakes.records == []
    assert [c.record for c in fakes.checks] == [False]


async def test_revert_mode_re_applies_live_and_a_later_check_confirms_it(
    env: WorkflowEnvironment, queue: str, fakes: Fakes
):
    fakes.answers = [drifted("revert"), in_sync("revert")]
    wf_id = await start(env, queue)

    first = await check_now(env, wf_id)
    assert first.state == "reverting"
    assert [(a.request.revision, a.request.requested_by) for a in fakes.applies] == [
        (1, "drift revert")
    ]
    assert fakes.reconciles == [1]
    assert fakes.captures == []

    second = await check_now(env, wf_id)
    assert second.state == "reverted"
    assert states(fakes) == ["reverting", "reverted"]


async def test_report_mode_records_the_drift_and_writes_nothing_else(
    env: WorkflowEnvironment, queue: str, fakes: Fakes
):
    fakes.answers = [drifted("report")]
    wf_id = await start(env, queue)

    status = await check_now(env, wf_id)

    assert status.state == "drifted"
    assert status.message == "drift recorded (report): spec.lambdaMemory"
    [record] = fakes.records
    assert (record.state, record.fields, record.revision) == ("drifted", [FIELD], 1)
    assert (fakes.captures, fakes.applies, fakes.syncs) == ([], [], [])


async def test_drift_outside_claim_fields_is_recorded_not_captured(
    env: WorkflowEnvironment, queue: str, fakes: Fakes
):
    fakes.answers = [drifted("capture", capturable=False)]
    wf_id = await start(env, queue)

    status = await check_now(env, wf_id)

    assert status.state == "drifted"
    assert states(fakes) == ["drifted"]
    assert fakes.captures == []


async def test_in_sync_is_recorded_by_the_loop_with_the_check_time(
    env: WorkflowEnvironment, queue: str, fakes: Fakes
):
    wf_id = await start(env, queue)

    status = await check_now(env, wf_id)

    assert status.state == "in-sync"
    [record] = fakes.records
    assert (record.state, record.message, record.checked_at) == ("in-sync", "in-sync", AT)


async def test_a_pause_sent_with_the_start_holds_from_the_first_task(
    env: WorkflowEnvironment, queue: str, fakes: Fakes
):
    fakes.answers = [drifted("capture")]
    wf_id = await start(env, queue, start_signal="pause")
    handle = env.client.get_workflow_handle(wf_id)

    # The loop sets "paused", then records it by an activity: a query can land between
    # the two, so wait for the record as well (stress run 9 of 20 met that window).
    async def seen() -> tuple[DriftStatus, list[str]]:
        return await handle.query(DriftWorkflow.get_status), states(fakes)

    status, recorded = await eventually(
        seen,
        lambda sr: sr[0].state == "paused" and bool(sr[1]),
        what="paused, and recorded",
    )

    assert (status.space, status.unit, status.paused) == (SPACE, UNIT, True)
    assert fakes.pauses == [True]  # kept in the authority for loops to come
    assert recorded == ["paused"]
    assert (fakes.checks, fakes.captures) == ([], [])
    # an operator's capture still captures
    outcome = await handle.execute_update(DriftWorkflow.capture_now, CaptureRequest(tag="t"))
    assert (outcome.captured, outcome.revision) == (True, 2)
    assert [c.force for c in fakes.checks] == [True]


async def test_a_failed_check_reads_failed_and_is_recorded(
    env: WorkflowEnvironment, queue: str, fakes: Fakes
):
    fakes.answers = [ApplicationError("the cluster refused", type="BadInput", non_retryable=True)]
    wf_id = await start(env, queue)

    status = await check_now(env, wf_id)

    assert status.state == "failed"
    assert "the cluster refused" in status.message
    assert states(fakes) == ["failed"]


async def test_a_tagged_capture_request_after_the_watch_captured_tags_that_capture(
    env: WorkflowEnvironment, queue: str, fakes: Fakes
):
    fakes.answers = [drifted("capture"), in_sync(live=2)]
    wf_id = await start(env, queue)
    await check_now(env, wf_id)  # the watch's check captures as revision 2

    outcome = await env.client.get_workflow_handle(wf_id).execute_update(
        DriftWorkflow.capture_now,
        CaptureRequest(tag="break-glass", incident="INC-7", by="olga"),
    )

    assert (outcome.captured, outcome.action, outcome.revision) == (True, "labelled", 2)
    [tagged] = fakes.tagged
    assert (tagged.revision, tagged.source) == (2, "break-glass")
    assert (tagged.tags["tag"], tagged.tags["incident"]) == ("break-glass", "INC-7")
    assert len(fakes.captures) == 1  # nothing captured a second time


async def runs_of(env: WorkflowEnvironment, wf_id: str, first_run: str) -> list[list[Any]]:
    """The history events of each run of ``wf_id``, following continue-as-new."""
    runs, run_id = [], first_run
    while run_id:
        handle = env.client.get_workflow_handle(wf_id, run_id=run_id)
        events = [e async for e in handle.fetch_history_events()]
        runs.append(events)
        last = events[-1]
        run_id = (
            last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
            if last.HasField("workflow_execution_continued_as_new_event_attributes")
            else ""
        )
    return runs


async def test_a_covered_loop_hands_over_short_runs_and_keeps_its_cover(
    env: WorkflowEnvironment, queue: str, fakes: Fakes
):
    """An idle loop the sweeps cover wakes once an hour; its runs stay short (a replay
    of an evicted run is cheap), and the next run sleeps on under the same cover
    instead of ticking at its interval and asking again."""
    fakes.cover_seconds = 3600
    handle = await env.client.start_workflow(
        DriftWorkflow.run,
        DriftInput(space=SPACE, unit=UNIT),
        id=f"drift:{SPACE}:{UNIT}:{uuid.uuid4()}",
        task_queue=queue,
    )

    await skip(env, timedelta(hours=40))

    runs = await runs_of(env, handle.id, handle.result_run_id or "")
    assert len(runs) >= 3
    assert all(len(events) <= HISTORY_PER_RUN + 10 for events in runs)
    assert fakes.checks == []  # covered all along
    # Every wake after the first saw the sweep record of the wake before, across runs.
    assert all(c.seen is not None for c in fakes.covered[1:])
    for events in runs[1:]:
        first_timer = next(e for e in events if e.HasField("timer_started_event_attributes"))
        fire = first_timer.timer_started_event_attributes.start_to_fire_timeout
        assert fire.seconds == 3600
