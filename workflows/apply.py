"""Arrow 2, apply: authority → Kubernetes.

One ``ApplyWorkflow`` per unit (``apply:{space}:{unit}``), reached by
signal-with-start, so applies of one unit never overlap. Requests queue; when one
waits at an approval gate and a newer request arrives, the newer one supersedes
it. Every gate, approval and outcome is in the workflow's history.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.argocd import ArgoCDActivities, ArgoSyncInput, ArgoWaitInput
    from activities.authority import AuthorityActivities
    from activities.confighub import (
        ConfigHubActivities,
        ConfigHubApplyInput,
        ConfigHubWaitInput,
    )
    from activities.kube import KubeActivities
    from activities.temporal import TemporalActivities
    from client.contract import error_info
    from domain import metrics
    from domain.apply import (
        ApplyContextInput,
        ApplyContextResult,
        ApplyHistory,
        ApplyInput,
        ApplyOutcome,
        ApplyRequest,
        ApplyResult,
        ApplyState,
        ApplyStatus,
        ApproveInput,
        ApproveResult,
        FailureReason,
        GateKind,
        RecordAppliedInput,
        RecordApprovalInput,
        approval_problem,
        failure_reason,
        gate_for,
        standing_approval,
        waiting_message,
    )
    from domain.drift import EnsureDriftInput, UnitKey
    from domain.gates import object_problem
    from domain.kube import KubeApplyInput, KubeDeleteInput, KubeWaitInput, ObjectRef
    from workflows import _options as opt

# An idle workflow lingers this long for follow-up requests before completing.
IDLE = timedelta(minutes=2)
# Continue-as-new after this many requests, so history stays small.
REQUESTS_PER_RUN = 100
OUTCOMES_KEPT = 50


@workflow.defn(name="ApplyWorkflow")
class ApplyWorkflow:
    def __init__(self) -> None:
        self.space = ""
        self.unit = ""
        self.pending: list[ApplyRequest] = []
        self.outcomes: list[ApplyOutcome] = []
        self.active: ApplyRequest | None = None
        self.current: ApplyOutcome | None = None
        self.gate: GateKind = ""
        self.author = ""
        self.approval: ApproveInput | None = None
        self.started: datetime | None = None  # the active request passed its gate

    # ---- handlers --------------------------------------------------------------------

    @workflow.signal
    def request(self, req: ApplyRequest) -> None:
        """Queue an apply (or delete) of a revision; a repeat joins the queued one."""
        if req.follows is not None:
            followed = [
                q
                for q in [*self.pending, *([self.active] if self.active else [])]
                if q.revision == req.follows and q.action == "apply"
            ]
            if not followed:
                return
            # The waiters move to the re-based revision (not told "superseded").
            ids = [i for q in followed for i in q.request_ids]
            for q in followed:
                q.request_ids = []
            if self.current and self.active in followed:
                self.current.request_ids = []
            req = req.model_copy(update={"follows": None, "request_ids": ids})
        for queued in [*self.pending, *([self.active] if self.active else [])]:
            if queued.revision == req.revision and queued.action == req.action:
                queued.request_ids.extend(i for i in req.request_ids if i not in queued.request_ids)
                if self.current and queued is self.active:
                    self.current.request_ids = list(queued.request_ids)
                return
        self.pending.append(req)

    @workflow.update
    async def approve(self, inp: ApproveInput) -> ApproveResult:
        # (patched: runs of an older worker replay approvals without this activity)
        if workflow.patched("approve-refuses-capture-conflict"):
            # A drift capture may have recorded a conflict with the waiting revision
            # since it started waiting: approving it would put its value back over
            # the captured change, so the approval is refused, naming the fields.
            ctx = await workflow.execute_activity_method(
                AuthorityActivities.apply_context,
                ApplyContextInput(space=self.space, unit=self.unit, revision=inp.revision),
                start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
                retry_policy=opt.RETRY,
                summary=f"check revision {inp.revision} before approving it",
            )
            if ctx.conflict:
                raise ApplicationError(ctx.conflict, type="CaptureConflict", non_retryable=True)
            # The read took a while: the wait may have ended meanwhile.
            problem = self._approval_problem(inp)
            if problem:
                raise ApplicationError(problem, type="BadInput", non_retryable=True)
        self.approval = inp
        return ApproveResult(revision=inp.revision, by=inp.by, asserted=inp.asserted)

    @approve.validator
    def _check_approve(self, inp: ApproveInput) -> None:
        problem = self._approval_problem(inp)
        if problem:
            raise ValueError(problem)

    def _approval_problem(self, inp: ApproveInput) -> str | None:
        waiting = (
            self.current.revision
            if self.current and self.current.state == "awaiting-approval"
            else None
        )
        return approval_problem(self.gate, waiting, inp, self.author)

    @workflow.query
    def status(self) -> ApplyStatus:
        return ApplyStatus(
            space=self.space,
            unit=self.unit,
            current=self.current,
            outcomes=list(self.outcomes),
            pending=list(self.pending),
        )

    # ---- the loop ----------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: ApplyInput) -> ApplyResult:
        self.space, self.unit = inp.space, inp.unit
        self.outcomes = list(inp.history.outcomes)
        self.pending = [*inp.history.pending, *self.pending]
        handled = 0
        while True:
            try:
                await workflow.wait_condition(lambda: bool(self.pending), timeout=IDLE)
            except TimeoutError:
                # A request that came in the same workflow task as the idle timer is
                # pending here (the timer wins the race inside wait_condition); one that
                # comes while handlers finish is seen after the wait. Either is handled,
                # not dropped with the run; the workflow completes only with none left.
                if not self.pending:
                    await workflow.wait_condition(
                        lambda: workflow.all_handlers_finished() or bool(self.pending)
                    )
                if not self.pending:
                    return ApplyResult(space=self.space, unit=self.unit, outcomes=self.outcomes)
                continue
            # The newest request wins; older ones that were still waiting are superseded.
            req = self.pending.pop()
            for older in self.pending:
                self._finish(older, "superseded", f"superseded by revision {req.revision}")
            self.pending.clear()
            self.active = req
            await self._handle(req)
            self.active = None
            handled += 1
            if handled >= REQUESTS_PER_RUN or workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    ApplyInput(
                        space=self.space,
                        unit=self.unit,
                        history=ApplyHistory(outcomes=self.outcomes, pending=self.pending),
                    )
                )

    async def _handle(self, req: ApplyRequest) -> None:
        self.started = workflow.now()
        self._set(req, "queued", "reading the revision")
        try:
            ctx = await workflow.execute_activity_method(
                AuthorityActivities.apply_context,
                ApplyContextInput(space=self.space, unit=self.unit, revision=req.revision),
                start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
                retry_policy=opt.RETRY,
                summary=f"read revision {req.revision}",
            )
        except ActivityError as e:
            self._finish(req, "failed", error_info(e).message, reason="error")
            return
        if ctx.violations and req.action == "apply":
            message = "denied by policy: " + "; ".join(ctx.violations)
            self._finish(req, "failed", message, reason="denied")
            return
        if ctx.conflict and req.action == "apply" and not req.ungated:
            self._finish(req, "failed", ctx.conflict, reason="conflict")
            return
        if not await self._pass_gate(req, ctx):
            return
        self.started = workflow.now()  # the time spent waiting for approval is not the apply's
        actuator = ctx.gates.actuator if ctx.gates is not None else "kubernetes"
        try:
            if actuator == "confighub":
                await self._confighub(req, ctx)
            elif actuator == "argocd":
                await self._argocd(req, ctx)
            elif req.action == "delete":
                await self._delete(req, ctx)
            else:
                await self._apply(req, ctx)
        except ActivityError as e:
            info = error_info(e)
            self._finish(req, "failed", info.message, reason=failure_reason(info.type))

    async def _pass_gate(self, req: ApplyRequest, ctx: ApplyContextResult) -> bool:
        self.gate = "" if req.ungated else gate_for(ctx.approval, req.action, precious=ctx.precious)
        self.author = ctx.author
        if not self.gate:
            return True
        standing = standing_approval(self.gate, req.action, ctx.approvals, ctx.author)
        if standing:
            self._set(req, "applying", f"approved earlier by {standing}")
            assert self.current is not None
            self.current.approved_by = standing
            return True
        self.approval = None
        what = "delete" if req.action == "delete" else "apply"
        self._set(
            req,
            "awaiting-approval",
            f"{what} of revision {req.revision} needs approval ({self.gate}): "
            f"tributary approve {self.space} {self.unit} --revision {req.revision} --by WHO",
        )
        await workflow.wait_condition(lambda: self.approval is not None or bool(self.pending))
        if self.approval is None:
            newest = self.pending[-1].revision
            self._finish(
                req, "superseded", f"superseded by revision {newest} while awaiting approval"
            )
            return False
        approval = self.approval
        try:
            await self._record_approval(req, approval)
        except ActivityError as e:
            # The store refuses to approve a revision a capture conflicts with (one that
            # came in between the approval's check and this record).
            info = error_info(e)
            if info.type != "CaptureConflict":
                raise
            self._finish(req, "failed", info.message, reason="conflict")
            return False
        if self.current:
            self.current.approved_by = approval.by
        return True

    async def _record_approval(self, req: ApplyRequest, approval: ApproveInput) -> None:
        await workflow.execute_activity_method(
            AuthorityActivities.record_approval,
            RecordApprovalInput(
                space=self.space,
                unit=self.unit,
                revision=req.revision,
                by=approval.by,
                asserted=approval.asserted,
                comment=approval.comment,
                at=workflow.now(),
                action=req.action,
                gate=self.gate,
            ),
            start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
            retry_policy=opt.RETRY,
            summary=f"record approval by {approval.by}",
        )

    async def _apply(self, req: ApplyRequest, ctx: ApplyContextResult) -> None:
        self._set(req, "applying", "server-side apply")
        applied = await workflow.execute_activity_method(
            KubeActivities.apply,
            KubeApplyInput(
                data=ctx.data,
                xrds=ctx.xrds,
                compositions=ctx.compositions,
                space=self.space,
                unit=self.unit,
                gates=ctx.gates,
            ),
            start_to_close_timeout=timedelta(minutes=3),
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=opt.RETRY,
            summary=f"apply revision {req.revision}",
        )
        await self._record(req, live=False)
        self._set(req, "applied", f"generation {applied.generation}: waiting for Ready")
        # Crossplane retries a reconcile error by itself (an AWS outage, say): the wait
        # goes on until Ready or the ready timeout, showing each new error meanwhile.
        deadline = workflow.now() + timedelta(seconds=req.ready_timeout_seconds)
        seen = ""
        while True:
            left = int((deadline - workflow.now()).total_seconds())
            waited = await workflow.execute_activity_method(
                KubeActivities.wait_ready,
                KubeWaitInput(
                    ref=applied.ref,
                    generation=applied.generation,
                    timeout_seconds=max(1, left),
                    seen=seen,
                ),
                start_to_close_timeout=timedelta(seconds=max(1, left) + 60),
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=opt.RETRY,
                summary="wait for Ready and Synced",
            )
            if waited.state != "waiting":
                break
            seen = waited.message
            self._set(
                req,
                "applied",
                f"generation {applied.generation}: {waiting_message(waited.message)}",
            )
            if workflow.now() >= deadline:
                break
        if waited.state != "ready":
            message = waited.message
            if seen and (waited.state == "waiting" or message.endswith(seen)):
                # The condition, with the whole wait's length (not the last slice's).
                message = f"not Ready after {req.ready_timeout_seconds}s: {seen}"
            self._finish(req, "failed", message, reason="not-ready")
            return
        await self._record(req, live=True)
        # Every successful apply leaves the unit's drift loop running.
        await self._keep_drift_running()
        self._finish(req, "ready", waited.message or "Ready and Synced")

    async def _argocd(self, req: ApplyRequest, ctx: ApplyContextResult) -> None:
        """Actuator argocd: the space's Application renders the live revisions through
        Tributary's CMP; record the new live revision (or the deletion), then sync it."""
        assert ctx.gates is not None
        app = ctx.gates.argocd_app
        if req.action == "apply":
            # Argo CD applies whatever the render holds: the kind and namespace gates are
            # checked here, before the revision becomes live (the scope is not known
            # without the cluster, so a missing namespace is Argo CD's destination).
            problem = object_problem(
                self.space, ctx.gates.kinds, ctx.gates.namespaces, ctx.data, namespaced=None
            )
            if problem:
                self._finish(req, "failed", problem, reason="denied")
                return
        self._set(req, "applying", f"recording revision {req.revision} live for Argo CD")
        if req.action == "delete":
            await workflow.execute_activity_method(
                AuthorityActivities.record_applied,
                RecordAppliedInput(
                    space=self.space,
                    unit=self.unit,
                    revision=req.revision,
                    live=False,
                    state="deleted",
                ),
                start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
                retry_policy=opt.RETRY,
                summary="mark the unit deleted (the render drops it)",
            )
        else:
            await self._record(req, live=True)
        # One marker per request: a retried activity finds its own sync operation.
        marker = f"{self.space}/{self.unit}@{req.revision}:{workflow.uuid4().hex[:12]}"
        self._set(req, "applying", f"Argo CD: syncing Application {app}")
        await workflow.execute_activity_method(
            ArgoCDActivities.sync,
            ArgoSyncInput(
                app=app,
                space=self.space,
                unit=self.unit,
                marker=marker,
                prune=req.action == "delete",
            ),
            start_to_close_timeout=timedelta(minutes=3),
            heartbeat_timeout=timedelta(seconds=60),
            retry_policy=opt.RETRY,
            summary=f"sync Argo CD Application {app}",
        )
        self._set(req, "applied", f"Argo CD: Application {app} syncing")
        waited = await workflow.execute_activity_method(
            ArgoCDActivities.wait,
            ArgoWaitInput(app=app, marker=marker, timeout_seconds=req.ready_timeout_seconds),
            start_to_close_timeout=timedelta(seconds=req.ready_timeout_seconds + 120),
            heartbeat_timeout=timedelta(seconds=60),
            retry_policy=opt.RETRY,
            summary=f"wait for {app} to be Synced and Healthy",
        )
        if waited.state == "failed":
            self._finish(req, "failed", waited.message, reason="rejected")
            return
        if waited.state != "ready":
            self._finish(req, "failed", waited.message, reason="not-ready")
            return
        if req.action == "delete":
            self._finish(req, "deleted", f"pruned by Argo CD ({app})")
            return
        await self._keep_drift_running()
        self._finish(req, "ready", waited.message)

    async def _keep_drift_running(self) -> None:
        """After an apply, the unit's drift loop must be running (every actuator)."""
        await workflow.execute_activity_method(
            TemporalActivities.ensure_drift,
            EnsureDriftInput(units=[UnitKey(space=self.space, unit=self.unit)], reason="apply"),
            start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
            retry_policy=opt.RETRY,
            summary="keep the drift loop running",
        )

    async def _confighub(self, req: ApplyRequest, ctx: ApplyContextResult) -> None:
        """Actuator confighub (the seed's main path): ConfigHub applies the unit through
        the space's target and worker; completion is its unit event, and the live
        revision is ConfigHub's ``LiveRevisionNum`` (nothing recorded here)."""
        assert ctx.gates is not None
        if not ctx.confighub:
            # Only ConfigHub's authority client can hold this actuator (the embedded
            # store refuses it); this worker's apply does not drive ConfigHub.
            self._finish(
                req,
                "failed",
                f"space {self.space} applies through ConfigHub (actuator confighub), "
                "which this worker does not drive",
                reason="error",
            )
            return
        if req.action == "delete":
            self._finish(
                req,
                "failed",
                f"space {self.space} applies through ConfigHub (actuator confighub): "
                f"deleting unit {self.unit} from the cluster is ConfigHub's "
                f"(cub unit destroy --space {self.space} {self.unit})",
                reason="error",
            )
            return
        # ConfigHub applies whatever the revision holds: the kind and namespace gates
        # are checked here, before it is queued.
        problem = object_problem(
            self.space, ctx.gates.kinds, ctx.gates.namespaces, ctx.data, namespaced=None
        )
        if problem:
            self._finish(req, "failed", problem, reason="denied")
            return
        self._set(req, "applying", f"ConfigHub: queueing the apply of revision {req.revision}")
        queued = await workflow.execute_activity_method(
            ConfigHubActivities.apply,
            ConfigHubApplyInput(space=self.space, unit=self.unit, revision=req.revision),
            start_to_close_timeout=timedelta(minutes=3),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=opt.RETRY,
            summary=f"ConfigHub: apply revision {req.revision}",
        )
        self._set(
            req,
            "applied",
            f"ConfigHub: apply queued (operation {queued.operation_id or 'found by revision'})",
        )
        waited = await workflow.execute_activity_method(
            ConfigHubActivities.wait,
            ConfigHubWaitInput(
                space=self.space,
                unit=self.unit,
                revision=req.revision,
                operation_id=queued.operation_id,
                timeout_seconds=req.ready_timeout_seconds,
            ),
            start_to_close_timeout=timedelta(seconds=req.ready_timeout_seconds + 120),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=opt.RETRY,
            summary="ConfigHub: wait for the apply's unit event",
        )
        if waited.state == "failed":
            self._finish(req, "failed", waited.message, reason="rejected")
            return
        if waited.state != "ready":
            self._finish(req, "failed", waited.message, reason="not-ready")
            return
        await self._keep_drift_running()
        self._finish(req, "ready", waited.message)

    async def _delete(self, req: ApplyRequest, ctx: ApplyContextResult) -> None:
        self._set(req, "applying", "deleting from the cluster")
        data = ctx.data
        meta = data.get("metadata", {})
        await workflow.execute_activity_method(
            KubeActivities.delete,
            KubeDeleteInput(
                ref=ObjectRef(
                    api_version=str(data["apiVersion"]),
                    kind=str(data["kind"]),
                    name=str(meta["name"]),
                    namespace=meta.get("namespace") or "default",
                ),
                space=self.space,
            ),
            start_to_close_timeout=timedelta(minutes=6),
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=opt.RETRY,
            summary="delete from the cluster",
        )
        await workflow.execute_activity_method(
            AuthorityActivities.record_applied,
            RecordAppliedInput(
                space=self.space, unit=self.unit, revision=req.revision, live=False, state="deleted"
            ),
            start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
            retry_policy=opt.RETRY,
            summary="mark the unit deleted",
        )
        self._finish(req, "deleted", "removed from the cluster")

    async def _record(self, req: ApplyRequest, *, live: bool) -> None:
        await workflow.execute_activity_method(
            AuthorityActivities.record_applied,
            RecordAppliedInput(space=self.space, unit=self.unit, revision=req.revision, live=live),
            start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
            retry_policy=opt.RETRY,
            summary="record live revision" if live else "record last applied revision",
        )

    # ---- state ---------------------------------------------------------------------------

    def _set(
        self, req: ApplyRequest, state: ApplyState, message: str, reason: FailureReason = ""
    ) -> None:
        same = self.current is not None and self.current.revision == req.revision
        self.current = ApplyOutcome(
            revision=req.revision,
            action=req.action,
            state=state,
            message=message,
            reason=reason,
            gate=self.gate,
            approved_by=self.current.approved_by if self.current and same else "",
            at=workflow.now(),
            request_ids=list(req.request_ids),
        )
        workflow.set_current_details(
            f"**{self.space}/{self.unit}** revision {req.revision} ({req.action}): "
            f"`{state}` — {message}"
        )

    def _finish(
        self, req: ApplyRequest, state: ApplyState, message: str, *, reason: FailureReason = ""
    ) -> None:
        self._set(req, state, message, reason)
        assert self.current is not None
        if req is self.active and self.started is not None:
            metrics.observe_duration(
                workflow.metric_meter(),
                metrics.APPLY_DURATION,
                {"space": self.space, "state": state},
                workflow.now() - self.started,
            )
            self.started = None
        self.outcomes = [*self.outcomes, self.current][-OUTCOMES_KEPT:]
        self.current = None
        self.gate = ""
