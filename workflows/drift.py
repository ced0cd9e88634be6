"""Arrow 3, drift capture: live (Kubernetes + AWS) → authority.

One long-running ``DriftWorkflow`` per unit (``drift:{space}:{unit}``). It checks
on a timer at the space's ``drift_interval`` and whenever it is signalled (the
worker's Kubernetes watch, a sweep, the CLI, a finished apply), then acts by the
space's mode: ``capture`` writes what runs as a revision, ``revert`` re-applies the
live revision, ``report`` only records. Its state survives continue-as-new.

Idle loops cost a timer, not a check: when the timer fires and a sweep has judged the
unit in sync since the loop last looked (``domain.sweep.covered_for``: one row read),
the loop sleeps instead of checking: until one interval after that judgement, or, if
the sweep was a scheduled one whose cadence is at most the interval (it finds drift
within the interval itself and signals the loop), until the backstop (1 h) after it.
With no sweeps running the next tick is a full check, so drift is still found within
the interval; the watch, the CLI and the sweep's own signals wake the loop at once.
When the schedule stops (paused or deleted: the Web UI, `temporal schedule`) or its cadence
grows, the worker's ``client.cover.SweepCoverWatch`` takes the cadence off its records
and signals ``cover_ended``: the loop re-reads its cover, which now lasts one interval
from the sweep's judgement, so it checks within its own interval again.

Versioning: loops run for months, so every change to the commands a run issues is a
``workflow.patched`` branch; the old path is what a run started by an older worker
replays, and ``tests/workflows/test_drift_replay.py`` replays recorded histories of
each. The branches, oldest first, each with what its old path lacked:
``drift-revert-reconcile`` (the reconcile request after a revert),
``drift-pause-in-authority`` (storing the pause flag), ``drift-check-failing-visible``
(the first-attempt check and the "failing" state), ``drift-sweep-covered`` (sleeping on
a sweep's in-sync judgement), ``drift-one-owner`` (the loop, not the check, writing the
check's row), ``drift-short-runs`` (the hand-over by history length),
``drift-cover-ended`` (the ``cover_ended`` signal). A branch can become
``workflow.deprecate_patch`` once no run open on any deployment started before it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.exceptions import TimeoutError as ActivityTimeoutError

with workflow.unsafe.imports_passed_through():
    from activities.drift import DriftActivities
    from activities.sweep import SweepActivities
    from activities.temporal import TemporalActivities
    from client.contract import DRIFT_STATE, error_info
    from domain import metrics
    from domain.apply import ApplyRequest, RequestApplyInput
    from domain.drift import (
        RECORDS_CHECK,
        CaptureInput,
        CaptureOutcome,
        CaptureReconcileInput,
        CaptureRequest,
        CheckRequest,
        DriftCheckInput,
        DriftCheckResult,
        DriftDecision,
        DriftInput,
        DriftPauseInput,
        DriftRecord,
        DriftRecordInput,
        DriftReport,
        DriftStateName,
        DriftStatus,
        TagCaptureInput,
        after_capture,
        capture_description,
        capture_source,
        check_row,
        decide,
    )
    from domain.errors import ErrorInfo
    from domain.redact import redact
    from domain.sweep import CoveredInput, CoverEnded
    from domain.sync import RequestSyncInput
    from workflows import _options as opt

# A check costs about 8 events (local activities: the check and the row that records
# it, in one workflow task; bench/drift_events.py: 8.35 a tick); 200 checks keep every run
# near 1,700 events.
CHECKS_PER_RUN = 200
# A run is also handed over once its history is this long. Covered loops wake once an
# hour, mostly after the worker's cache evicted them, so each wake replays the run:
# about 0.28 ms of worker CPU per event on top of 8 ms for the instance (profiled on
# tests/fixtures/drift_histories). 200 covered wakes (~1,400 events) would cost
# ~400 ms a wake; 100 events (about 14 wakes or 12 checks) keep it near 20 ms.
HISTORY_PER_RUN = 100
CHECK_TIMEOUT = timedelta(minutes=2)
# A capture that loses a race with a publish or `set` re-checks this many times.
STALE_REPLANS = 3
# A check's first attempt alone, so that a failure shows before the retries.
FIRST_ATTEMPT = RetryPolicy(maximum_attempts=1)
# An ending loop stays this long after its last check, answering at once.
END_GRACE = timedelta(seconds=2)


def _non_retryable(err: BaseException) -> bool:
    cur: BaseException | None = err
    while cur is not None:
        if isinstance(cur, ApplicationError) and cur.non_retryable:
            return True
        cur = cur.__cause__
    return False


@workflow.defn(name="DriftWorkflow")
class DriftWorkflow:
    @workflow.init
    def __init__(self, inp: DriftInput) -> None:
        # From the input, before any handler runs: a pause or a check sent with
        # signal-with-start sees the loop's real status.
        self.loop = inp.loop_state()
        self.capture_requests: list[tuple[int, CaptureRequest]] = []
        self.capture_results: dict[int, CaptureOutcome] = {}
        self.capture_seq = 0
        self.started_checks = 0
        self.completed_checks = 0
        self.check_waiters = 0
        # a pause or resume not yet written to the authority (where restarts read it)
        self.pause_to_store: bool | None = None
        # The unit is inactive or gone: the loop ends. Requests from then on are
        # answered at once (nothing will check again).
        self.ended = False

    # The loop's state (``DriftLoopState``) is handed to the next run whole; these name
    # its parts.
    @property
    def status(self) -> DriftStatus:
        return self.loop.status

    @property
    def wake(self) -> bool:
        return self.loop.wake

    @wake.setter
    def wake(self, value: bool) -> None:
        self.loop.wake = value

    @property
    def sweep_id(self) -> str:
        return self.loop.sweep_id

    @sweep_id.setter
    def sweep_id(self, value: str) -> None:
        self.loop.sweep_id = value

    @property
    def sleep_seconds(self) -> float | None:
        return self.loop.sleep_seconds

    @sleep_seconds.setter
    def sleep_seconds(self, value: float | None) -> None:
        self.loop.sleep_seconds = value

    @property
    def sweep_seen(self) -> datetime | None:
        return self.loop.sweep_seen

    @sweep_seen.setter
    def sweep_seen(self, value: datetime | None) -> None:
        self.loop.sweep_seen = value

    # ---- handlers ----------------------------------------------------------------------

    @workflow.signal
    def check(self, req: CheckRequest) -> None:
        if req.sweep_id:
            self.sweep_id = req.sweep_id
        self.wake = True

    @workflow.signal
    def cover_ended(self, req: CoverEnded) -> None:
        """The sweep schedule whose records let this loop sleep past its interval
        stopped or slowed (``req``: what it keeps now): re-read the cover at once.

        (patched: a worker of the code before buffered this signal unhandled and slept
        on; replaying its history must not wake the loop)
        """
        if workflow.patched("drift-cover-ended"):
            self.loop.recheck_cover = True

    @workflow.signal
    def pause(self) -> None:
        self.status.paused = self.pause_to_store = True
        self.wake = True

    @workflow.signal
    def resume(self) -> None:
        self.status.paused = self.pause_to_store = False
        self.wake = True

    @workflow.update
    async def check_now(self, req: CheckRequest) -> DriftStatus:
        """Check now and answer with the result of a check that started after this
        request (a check already running may have read the cluster before the edit
        the caller wants seen)."""
        if self.ended:
            return self.status  # the final status: the unit is inactive or gone
        target = self.started_checks + 1
        self.wake = True
        self.check_waiters += 1
        try:
            await workflow.wait_condition(lambda: self.ended or self.completed_checks >= target)
        finally:
            self.check_waiters -= 1
        return self.status

    @workflow.update
    async def capture_now(self, req: CaptureRequest) -> CaptureOutcome:
        """Capture live state now (even when paused or in report mode), tagged."""
        if self.ended:
            return self._ended_outcome()
        self.capture_seq += 1
        seq = self.capture_seq
        self.capture_requests.append((seq, req))
        self.wake = True
        await workflow.wait_condition(lambda: seq in self.capture_results or self.ended)
        answer = self.capture_results.pop(seq, None)
        return self._ended_outcome() if answer is None else answer

    @workflow.query
    def get_status(self) -> DriftStatus:
        return self.status

    # ---- the loop ------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: DriftInput) -> DriftStatus:
        runs = 0
        while True:
            if (
                runs >= CHECKS_PER_RUN
                or workflow.info().is_continue_as_new_suggested()
                or self._history_long()
            ):
                # Updates wait for the loop (a check, a capture): serve them first, and
                # hand over only once nothing is waiting.
                await workflow.wait_condition(
                    lambda: workflow.all_handlers_finished() or self._waited_on()
                )
                if (
                    self.pause_to_store is not None
                    and workflow.all_handlers_finished()
                    and workflow.patched("drift-pause-in-authority")
                ):
                    await self._store_pause()  # the next run would not know to store it
                if workflow.all_handlers_finished() and not self._waited_on():
                    workflow.continue_as_new(
                        DriftInput(space=inp.space, unit=inp.unit, loop=self.loop)
                    )
            if not self.wake:
                # The timer tick; a signal ends the wait early.
                sleep, self.sleep_seconds = self.sleep_seconds, None
                try:
                    await workflow.wait_condition(
                        lambda: self.wake or self.loop.recheck_cover,
                        timeout=timedelta(seconds=sleep or self.status.interval_seconds),
                    )
                except TimeoutError:
                    if await self._covered():
                        runs += 1
                        continue
                else:
                    if not self.wake and await self._recheck_cover():
                        runs += 1
                        continue
            self.wake = False
            runs += 1
            self.started_checks += 1
            requests, self.capture_requests = self.capture_requests, []
            sweep_id, self.sweep_id = self.sweep_id, ""
            # (patched: loops started by an older worker replay without this activity)
            if self.pause_to_store is not None and workflow.patched("drift-pause-in-authority"):
                await self._store_pause()
            if self.status.paused and not requests:
                self._set_state("paused", "paused: no checks until resumed")
                await self._record(sweep_id)
                self._checked()
                continue
            ended = await self._check_and_act(requests, sweep_id)
            self._checked()
            if ended:
                await self._drain()
                return self.status

    def _checked(self) -> None:
        self.completed_checks += 1
        # A check stands for any cover: a ``cover_ended`` that came during it would only
        # re-read the row it just wrote, which covers nothing, and check again.
        self.loop.recheck_cover = False

    def _history_long(self) -> bool:
        """Past ``HISTORY_PER_RUN`` events: hand over so that a replay stays short.

        (patched: runs of an older worker replay without this hand-over)
        """
        return workflow.info().get_current_history_length() >= HISTORY_PER_RUN and (
            workflow.patched("drift-short-runs")
        )

    async def _recheck_cover(self) -> bool:
        """Signalled ``cover_ended``: sleep what is left of the cover the sweep's record
        still gives (one interval from its judgement, now that it claims no cadence,
        even if this loop saw it before), or check now."""
        self.loop.recheck_cover = False
        return await self._covered(new_only=False)

    async def _covered(self, *, new_only: bool = True) -> bool:
        """The timer fired: does a sweep's recent in-sync judgement stand for this tick's
        check? (A row read, not ~17 API reads.) Never for a paused loop or a request.
        ``new_only``: only a record this loop has not slept on yet.

        (patched: loops started by an older worker replay their timer's full check)
        """
        if self.status.paused or self.wake or self.capture_requests:
            return False
        if not workflow.patched("drift-sweep-covered"):
            return False
        covered = await workflow.execute_local_activity_method(
            SweepActivities.covered,
            CoveredInput(
                space=self.status.space,
                unit=self.status.unit,
                interval_seconds=self.status.interval_seconds,
                seen=self.sweep_seen if new_only else None,
            ),
            start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
            retry_policy=opt.RETRY,
            summary="covered by a sweep?",
        )
        if covered.sleep_seconds <= 0 or covered.checked_at is None or self.wake:
            return False
        self.sweep_seen = covered.checked_at
        self.sleep_seconds = covered.sleep_seconds
        if self.status.state == "unknown":
            self._set_state("in-sync", "judged in sync by a sweep")
        return True

    async def _drain(self) -> None:
        """The loop ends: answer every request that arrived during the final check, and
        complete only once no handler is running (a request that arrives while it
        completes is answered by its handler at once, since ``ended`` is set).

        A real server aborts an update that meets the run as it completes ("workflow
        update was aborted by closing workflow"), where the test server hands it over.
        The CLI sends it again, but for an inactive unit the run a retry starts ends
        within moments too (its first check is a local activity), so on the dev server
        the retries met the same end every time (tests/workflows/test_real_server.py).
        Ending with a timer instead (``END_GRACE``) keeps the run there to answer what
        comes after the last check; only a request meeting the last, short task can
        still be aborted, and the run its retry starts answers it after its own check.
        (patched: loops started by an older worker replay without the timer)
        """
        self.ended = True
        leftover, self.capture_requests = self.capture_requests, []
        self._answer(leftover, self._ended_outcome())
        if workflow.patched("drift-end-grace"):
            await workflow.sleep(END_GRACE, summary="answer late requests, then end")
        await workflow.wait_condition(workflow.all_handlers_finished)

    def _ended_outcome(self) -> CaptureOutcome:
        return CaptureOutcome(
            captured=False,
            action="none",
            message="unit inactive",
        )

    async def _check_and_act(
        self, requests: list[tuple[int, CaptureRequest]], sweep_id: str
    ) -> bool:
        """One check and what the space's mode makes of it; True: the loop ends.

        A capture planned on a version that a publish or `set` replaced meanwhile is
        re-planned from a fresh check (a few times) rather than failing the loop.
        """
        # One owner of the drift row: the check only reads, and the loop records every
        # decision, what the check saw included (a local activity, in the check's
        # workflow task). (patched: a run started by an older worker keeps the old
        # path, where the check wrote that row, until it continues as new)
        one_owner = workflow.patched("drift-one-owner")
        for attempt in range(STALE_REPLANS + 1):
            try:
                result = await self._run_check(
                    DriftCheckInput(
                        space=self.status.space,
                        unit=self.status.unit,
                        sweep_id=sweep_id,
                        force=bool(requests),
                        record=not one_owner,
                    )
                )
            # A local activity's failure arrives as the activity's own error, not
            # wrapped in ActivityError.
            except (ActivityError, ApplicationError, ActivityTimeoutError) as e:
                return await self._check_failed(e, requests, sweep_id)
            self.status.last_check = workflow.now()
            self.status.checks += 1
            self._count(metrics.DRIFT_CHECKS)
            self.status.interval_seconds = result.interval_seconds
            decision = decide(result, self.status, [r for _, r in requests], workflow.now())
            if one_owner and decision.action in RECORDS_CHECK:
                try:
                    await self._record_check(result, sweep_id)
                except (ActivityError, ApplicationError, ActivityTimeoutError) as e:
                    return await self._check_failed(e, requests, sweep_id)
            if decision.action == "end":
                self._set_state(decision.state, decision.message)
                self._answer(requests, CaptureOutcome(captured=False, message="unit inactive"))
                return True
            if decision.action == "stay-paused":
                self.status.paused = True
                self._set_state(decision.state, decision.message)
                self._answer(requests, CaptureOutcome(captured=False, message="paused"))
                await self._record(sweep_id)
                return False
            try:
                await self._act(decision, result, requests, sweep_id)
                return False
            except ActivityError as e:
                info = error_info(e)
                if info.type != "StaleVersion" or attempt == STALE_REPLANS:
                    await self._failed(info, requests, sweep_id)
                    return False
                # The unit moved on under the capture: read it again and re-plan.
        return False

    async def _check_failed(
        self, err: BaseException, requests: list[tuple[int, CaptureRequest]], sweep_id: str
    ) -> bool:
        """The check (or its record) failed for good; True: the unit is gone from the
        authority and the loop ends, with no row to write."""
        info = error_info(err)
        gone = info.type == "NotFound"
        await self._failed(info, requests, sweep_id, record=not gone)
        return gone

    async def _failed(
        self,
        info: ErrorInfo,
        requests: list[tuple[int, CaptureRequest]],
        sweep_id: str,
        *,
        record: bool = True,
    ) -> None:
        """The one way a loop's attempt fails for good: a check that failed
        (``_check_failed``), or an act that failed, or stayed stale after
        ``STALE_REPLANS`` re-plans (``_check_and_act``). The unit reads "failed",
        whoever asked is answered, the row is written; the next tick tries again.
        (A check that fails and is still retrying reads "failing": ``_run_check``.)"""
        self._set_state("failed", f"{info.type}: {info.message}")
        self._answer(requests, CaptureOutcome(captured=False, message=info.message))
        if record:
            await self._record(sweep_id)

    async def _record_check(self, result: DriftCheckResult, sweep_id: str) -> None:
        """Record what the check saw (``domain.drift.check_row``), as a local activity:
        every check does it, and this way it adds no workflow task."""
        row = check_row(
            self.status.space,
            self.status.unit,
            sweep_id,
            result,
            result.checked_at or workflow.now(),
        )
        await workflow.execute_local_activity_method(
            DriftActivities.record,
            DriftRecordInput(record=row),
            start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
            retry_policy=opt.RETRY,
            summary=f"record {row.state}",
        )

    async def _run_check(self, inp: DriftCheckInput) -> DriftCheckResult:
        """The check, as a local activity: a check is short, runs every interval on every
        unit, and this way costs one workflow task instead of three.

        A local activity's failed attempts are invisible until the last one (minutes
        later): the first attempt runs alone, and if it fails for a transient reason
        the loop shows ``failing`` (``drift status``, the Web UI) while it retries. The
        next good check records its own state over it.
        """

        async def attempt(retry: RetryPolicy) -> DriftCheckResult:
            return await workflow.execute_local_activity_method(
                DriftActivities.check,
                inp,
                start_to_close_timeout=CHECK_TIMEOUT,
                retry_policy=retry,
                summary="compare live state with the live revision",
            )

        # (patched: loops started by an older worker replay one call with every attempt)
        if not workflow.patched("drift-check-failing-visible"):
            return await attempt(opt.RETRY)
        try:
            return await attempt(FIRST_ATTEMPT)
        except (ActivityError, ApplicationError, ActivityTimeoutError) as e:
            if _non_retryable(e):
                raise
            before = (self.status.state, self.status.message)
            info = error_info(e)
            message = redact(f"{info.type}: {info.message}")
            self._set_state("failing", f"check failing, retrying: {message}")
            # Not a sweep's answer: the sweep waits for the check's real outcome.
            await self._record("")
        result = await attempt(opt.RETRY)
        # What the loop knew (e.g. a revert waiting for a check to agree) still holds.
        self._set_state(*before)
        return result

    async def _act(
        self,
        decision: DriftDecision,
        result: DriftCheckResult,
        requests: list[tuple[int, CaptureRequest]],
        sweep_id: str,
    ) -> None:
        """Carry out ``decision`` (``domain.drift.decide``) on the check's ``result``."""
        if result.state != "drifted":
            self._set_state(decision.state, decision.message)
            if decision.action == "reverted":
                await self._record(sweep_id)
            if decision.request is not None:
                assert self.status.last_revision is not None
                outcome = await self._tag_capture(decision.request, self.status.last_revision)
                self._answer(requests, outcome)
                return
            self._answer(
                requests,
                CaptureOutcome(captured=False, action="none", message=f"no drift ({result.state})"),
            )
            return
        self.status.last_drift = DriftReport(fields=result.fields, checked_at=workflow.now())
        if result.fingerprint != self.status.last_detected:
            self.status.last_detected = result.fingerprint
            self.status.last_detected_at = workflow.now()
            self._count(metrics.DRIFTS_DETECTED)
        if decision.action == "nothing-capturable":
            self._set_state(decision.state, decision.message)
            self._answer(
                requests,
                CaptureOutcome(
                    captured=False,
                    action="none",
                    message="nothing capturable",
                    fields=result.fields,
                ),
            )
            return
        if decision.action == "capture":
            outcome = await self._capture(result, decision.request, sweep_id)
            self._answer(requests, outcome)
            return
        if decision.action == "revert":
            await workflow.execute_activity_method(
                TemporalActivities.request_apply,
                RequestApplyInput(
                    space=self.status.space,
                    unit=self.status.unit,
                    request=ApplyRequest(
                        revision=result.live_revision or 0, requested_by="drift revert"
                    ),
                ),
                start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
                retry_policy=opt.RETRY,
                summary=f"revert: re-apply revision {result.live_revision}",
            )
            # Re-applying identical content bumps no generation, so Crossplane would
            # leave an AWS-side edit until its poll: ask it to reconcile now.
            # (patched: loops started by an older worker replay without this activity)
            if workflow.patched("drift-revert-reconcile"):
                await self._request_reconcile(result.live_revision or 0)
            self._count(metrics.DRIFTS_REVERTED)
            self._set_state(decision.state, decision.message)
            await self._record(sweep_id)
            return
        self._set_state(decision.state, decision.message)  # report

    async def _request_reconcile(self, revision: int) -> None:
        await workflow.execute_activity_method(
            DriftActivities.request_reconcile,
            CaptureReconcileInput(
                space=self.status.space,
                unit=self.status.unit,
                revision=revision,
                token=workflow.now().isoformat(),
            ),
            start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
            retry_policy=opt.RETRY,
            summary="ask Crossplane to reconcile the Claim",
        )

    async def _capture(
        self, result: DriftCheckResult, req: CaptureRequest | None, sweep_id: str
    ) -> CaptureOutcome:
        assert result.claim_data is not None
        tag = req.tag if req else ""
        sources = sorted({f.source for f in result.fields if f.capturable})
        tags = {
            "capture_time": workflow.now().isoformat(),
            "source": ",".join(sources),
            "workflow_id": workflow.info().workflow_id,
            "fields": ", ".join(f.path for f in result.fields if f.capturable),
        }
        if tag:
            tags["tag"] = tag
        if req and req.incident:
            tags["incident"] = req.incident
        written = await workflow.execute_activity_method(
            DriftActivities.capture,
            CaptureInput(
                space=self.status.space,
                unit=self.status.unit,
                expected_version=result.expected_version,
                data=result.claim_data,
                source=capture_source(tag),
                description=capture_description(result.fields, req),
                tags=tags,
                author=(req.by if req and req.by else "tributary drift capture"),
                idempotency_key=f"{workflow.info().workflow_id}/{result.fingerprint}",
                fields=[f for f in result.fields if f.capturable],
                sweep_id=sweep_id,
                live_revision=result.live_revision,
            ),
            start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
            retry_policy=opt.RETRY,
            summary=f"capture: {tags['fields']}",
        )
        self.status.last_revision = written.revision
        self.status.last_capture_at = workflow.now()
        self._count(metrics.DRIFTS_CAPTURED)
        # Live change seen → capture written: from the change itself where Kubernetes
        # recorded when (managedFields), else from the check that saw it.
        seen = (
            self.status.last_detected_at
            if self.status.last_detected == result.fingerprint
            else workflow.now()
        )
        if result.changed_at is not None and (seen is None or result.changed_at < seen):
            seen = result.changed_at
        metrics.observe_duration(
            workflow.metric_meter(),
            metrics.DETECTION_LATENCY,
            {"space": self.status.space},
            workflow.now() - (seen or workflow.now()),
        )
        self.status.captures += 1
        outcome = CaptureOutcome(
            captured=True,
            action="captured",
            revision=written.revision,
            fields=result.fields,
            head_revision=written.head_revision,
            rebased_revision=written.rebased_revision,
            conflicts=written.conflicts,
        )
        follow = after_capture(written, tags["fields"])
        outcome.message = follow.outcome_message
        if follow.apply is not None:
            await workflow.execute_activity_method(
                TemporalActivities.request_apply,
                RequestApplyInput(
                    space=self.status.space, unit=self.status.unit, request=follow.apply
                ),
                start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
                retry_policy=opt.RETRY,
                summary=follow.summary,
            )
        await self._request_sync()
        self._set_state("captured", follow.state_message)
        return outcome

    async def _request_sync(self) -> None:
        """Git learns a capture through the space's sync PR."""
        await workflow.execute_activity_method(
            TemporalActivities.request_sync,
            RequestSyncInput(spaces=[self.status.space], reason="capture"),
            start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
            retry_policy=opt.RETRY,
            summary="ask for a sync PR",
        )

    async def _tag_capture(self, req: CaptureRequest, revision: int) -> CaptureOutcome:
        """Tag the loop's last capture with an operator's request (the watch captured
        the edit before the operator could say it was break-glass for an incident)."""
        tags = {"classified_at": workflow.now().isoformat()}
        if req.tag:
            tags["tag"] = req.tag
        if req.incident:
            tags["incident"] = req.incident
        if req.by:
            tags["classified_by"] = req.by
        await workflow.execute_activity_method(
            DriftActivities.tag_capture,
            TagCaptureInput(
                space=self.status.space,
                unit=self.status.unit,
                revision=revision,
                source=capture_source(req.tag),
                tags=tags,
            ),
            start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
            retry_policy=opt.RETRY,
            summary=f"tag revision {revision} ({req.tag or 'capture'} {req.incident})",
        )
        return CaptureOutcome(
            captured=True,
            action="labelled",
            revision=revision,
            message=f"the watch had captured it as revision {revision}; tagged it",
        )

    # ---- state ---------------------------------------------------------------------------

    async def _store_pause(self) -> None:
        paused = self.pause_to_store
        assert paused is not None
        await workflow.execute_activity_method(
            DriftActivities.set_paused,
            DriftPauseInput(space=self.status.space, unit=self.status.unit, paused=paused),
            start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
            retry_policy=opt.RETRY,
            summary="pause" if paused else "resume",
        )
        if self.pause_to_store == paused:  # no newer signal meanwhile
            self.pause_to_store = None

    def _waited_on(self) -> bool:
        """An update handler is waiting for the loop to do something."""
        return bool(self.capture_requests) or self.check_waiters > 0

    async def _record(self, sweep_id: str) -> None:
        """Make a decision of the loop visible in the authority (``drift status``)."""
        last = self.status.last_drift
        await workflow.execute_activity_method(
            DriftActivities.record,
            DriftRecordInput(
                record=DriftRecord(
                    space=self.status.space,
                    unit=self.status.unit,
                    state=self.status.state,
                    checked_at=workflow.now(),
                    fields=last.fields
                    if last and self.status.state not in ("paused", "failing")
                    else [],
                    message=self.status.message,
                    revision=self.status.last_revision,
                    sweep_id=sweep_id,
                )
            ),
            start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
            retry_policy=opt.RETRY,
            summary=f"record {self.status.state}",
        )

    def _count(self, name: str) -> None:
        metrics.count(workflow.metric_meter(), name, {"space": self.status.space})

    def _answer(self, requests: list[tuple[int, CaptureRequest]], outcome: CaptureOutcome) -> None:
        for seq, _ in requests:
            self.capture_results[seq] = outcome

    def _set_state(self, state: DriftStateName, message: str) -> None:
        changed = state != self.status.state
        self.status.state = state
        self.status.message = message
        if changed:
            workflow.upsert_search_attributes([DRIFT_STATE.value_set(state)])
        workflow.set_current_details(
            f"**{self.status.space}/{self.status.unit}** `{state}` — {message}"
        )
