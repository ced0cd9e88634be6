"""Arrow 4, sync PR: authority → Git.

``SyncPRWorkflow`` is a singleton per space (``sync-pr:{space}``), signalled with
signal-with-start by captures, bulk sets, rollbacks and the CLI. A burst of changes
is debounced into one run; each run makes the branch ``tributary/sync/<space>``
propose "render what the authority holds" and opens or updates its pull request.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.sync import SyncActivities
    from client.contract import error_info
    from domain import metrics
    from domain.errors import ErrorInfo
    from domain.sync import (
        ClosePrsInput,
        EnsurePrInput,
        PullRequestSpec,
        SyncNowInput,
        SyncPRInput,
        SyncPushInput,
        SyncRequest,
        SyncResult,
        SyncSettingsInput,
    )
    from workflows import _options as opt

IDLE = timedelta(minutes=10)
SYNCS_PER_HISTORY = 100
PUSH_TIMEOUT = timedelta(minutes=10)
# Forge calls (open, label, read or close a PR): one attempt is a few requests, plus
# up to a minute of waiting for GitHub to see a just-pushed branch.
FORGE_TIMEOUT = timedelta(minutes=5)
# A rate-limited attempt asks for its next one after GitHub's reset (up to an hour,
# ApplicationError.next_retry_delay); attempts are bounded by time, not by count.
FORGE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
)
FORGE_SCHEDULE_TO_CLOSE = timedelta(hours=2)
# However long a burst lasts, a PR update is at most this many debounce windows away.
MAX_DEBOUNCE_WINDOWS = 10


@workflow.defn(name="SyncPRWorkflow")
class SyncPRWorkflow:
    def __init__(self) -> None:
        self.space = ""
        self.requests = 0
        self.reasons: list[str] = []
        self.now: list[tuple[int, SyncNowInput]] = []
        self.answers: dict[int, SyncResult | ErrorInfo] = {}
        self.seq = 0
        self.last: SyncResult | None = None

    @workflow.signal
    def request(self, req: SyncRequest) -> None:
        self.requests += 1
        if req.reason:
            self.reasons.append(req.reason)

    @workflow.update
    async def sync_now(self, inp: SyncNowInput) -> SyncResult:
        """Sync at once, skipping the debounce, and answer with the result."""
        self.seq += 1
        seq = self.seq
        self.now.append((seq, inp))
        await workflow.wait_condition(lambda: seq in self.answers)
        answer = self.answers.pop(seq)
        if isinstance(answer, ErrorInfo):
            # The caller gets the decided failure (bad input: exit 2), not an
            # update left unanswered when the run fails.
            raise ApplicationError(answer.message, type=answer.type, non_retryable=True)
        return answer

    @workflow.query
    def status(self) -> SyncResult | None:
        return self.last

    @workflow.run
    async def run(self, inp: SyncPRInput) -> SyncResult | None:
        self.space = inp.space
        # Requests the last run received but did not sync (added: a signal-with-start's
        # signal may already have been counted before run() starts).
        self.requests += inp.requests
        self.reasons = [*inp.reasons, *self.reasons]
        settings = await workflow.execute_activity_method(
            SyncActivities.settings,
            SyncSettingsInput(space=inp.space),
            start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
            retry_policy=opt.RETRY,
            summary="read the space's sync settings",
        )
        debounce = timedelta(seconds=settings.debounce_seconds)
        syncs = inp.syncs
        hand_over = False
        while True:
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(self._asked, timeout=IDLE)
            if not self._asked():
                # Idle: end, unless something arrives meanwhile. A request that came
                # in the same workflow task as the idle timer is seen here (the timer
                # wins the race inside wait_condition), so it is synced, not dropped.
                await workflow.wait_condition(
                    lambda: workflow.all_handlers_finished() or self._asked()
                )
                if not self._asked():
                    return self.last
                continue
            if self.requests and not self.now:
                await self._debounce(debounce)
            asked, self.now = self.now, []
            try:
                for seq, _ in [a for a in asked if a[1].dry_run]:
                    self.answers[seq] = await self._sync(dry_run=True)
                if self.requests or any(not r.dry_run for _, r in asked):
                    self.requests = 0
                    self.reasons = []
                    result = await self._sync(dry_run=False)
                    for seq, req in asked:
                        if not req.dry_run:
                            self.answers[seq] = result
            except ActivityError as e:
                # Every caller still waiting hears why; then the run fails as before.
                info = error_info(e)
                for seq, _ in asked:
                    self.answers.setdefault(seq, info)
                await workflow.wait_condition(workflow.all_handlers_finished)
                raise
            syncs += 1
            hand_over = (
                hand_over
                or syncs % SYNCS_PER_HISTORY == 0
                or workflow.info().is_continue_as_new_suggested()
            )
            if hand_over:
                # Answered updates finish first. An update that arrived during the last
                # sync waits for a sync only this loop performs: serve it in this run
                # (the next pass comes back here) rather than wait for it forever.
                await workflow.wait_condition(
                    lambda: workflow.all_handlers_finished() or bool(self.now)
                )
                if not self.now:
                    # Requests that arrived during the last sync go along, not lost.
                    workflow.continue_as_new(
                        SyncPRInput(
                            space=inp.space,
                            syncs=syncs,
                            requests=self.requests,
                            reasons=self.reasons,
                        )
                    )

    def _asked(self) -> bool:
        return self.requests > 0 or bool(self.now)

    async def _debounce(self, window: timedelta) -> None:
        """Wait until no request arrived for one window (bounded), so a burst is one PR."""
        workflow.set_current_details(
            f"debouncing {self.requests} changes ({', '.join(self.reasons)})"
        )
        for _ in range(MAX_DEBOUNCE_WINDOWS):
            seen = self.requests

            def moved(seen: int = seen) -> bool:
                return self.requests != seen or bool(self.now)

            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(moved, timeout=window)
                if self.now:
                    return
                continue
            return

    async def _sync(self, *, dry_run: bool) -> SyncResult:
        workflow.set_current_details("writing the authority back into the overlay")
        pushed = await workflow.execute_activity_method(
            SyncActivities.push,
            SyncPushInput(
                space=self.space, dry_run=dry_run, workflow_id=workflow.info().workflow_id
            ),
            start_to_close_timeout=PUSH_TIMEOUT,
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=opt.RETRY,
            summary="dry run: compute the write-back" if dry_run else "write back, verify, push",
        )
        result = SyncResult(
            space=self.space,
            action="dry-run" if dry_run else "unchanged",
            branch=pushed.branch,
            head_commit=pushed.head_commit,
            rows=pushed.rows,
            fallback=pushed.fallback,
            diff=pushed.diff,
        )
        if dry_run:
            return result
        if pushed.action == "nothing-to-propose":
            closed = await workflow.execute_activity_method(
                SyncActivities.close_prs,
                ClosePrsInput(
                    space=self.space,
                    base_commit=pushed.base_commit,
                    repo=pushed.repo,
                    close_unmerged=True,
                ),
                start_to_close_timeout=PUSH_TIMEOUT,
                schedule_to_close_timeout=FORGE_SCHEDULE_TO_CLOSE,
                retry_policy=FORGE_RETRY,
                summary="Git renders the authority: close or mark merged",
            )
            # shared/CLI.md: nothing to propose is "unchanged" (and no PR)
            result = result.model_copy(update={"warnings": closed.warnings})
            self._done(result, "unchanged: Git already renders the authority")
            return result
        # A PR merged since the last run is done: the new content gets a new PR.
        marked = await workflow.execute_activity_method(
            SyncActivities.close_prs,
            ClosePrsInput(space=self.space, base_commit=pushed.base_commit, repo=pushed.repo),
            start_to_close_timeout=PUSH_TIMEOUT,
            schedule_to_close_timeout=FORGE_SCHEDULE_TO_CLOSE,
            retry_policy=FORGE_RETRY,
            summary="mark merged pull requests",
        )
        ensured = await workflow.execute_activity_method(
            SyncActivities.ensure_pr,
            EnsurePrInput(
                spec=PullRequestSpec(
                    space=self.space,
                    repo=pushed.repo,
                    branch=pushed.branch,
                    base=pushed.base,
                    title=pushed.title,
                    body=pushed.body,
                    head_commit=pushed.head_commit,
                )
            ),
            start_to_close_timeout=FORGE_TIMEOUT,
            schedule_to_close_timeout=FORGE_SCHEDULE_TO_CLOSE,
            retry_policy=FORGE_RETRY,
            summary="open or update the pull request",
        )
        result = result.model_copy(
            update={
                "action": ensured.action,
                "pr": ensured.pr,
                "warnings": [*marked.warnings, *ensured.warnings],
            }
        )
        if ensured.action in ("opened", "updated"):
            metrics.count(
                workflow.metric_meter(),
                metrics.SYNC_PRS,
                {"space": self.space, "action": ensured.action},
            )
        self._done(result, f"PR #{ensured.pr.number} {ensured.action}: {ensured.pr.url}")
        return result

    def _done(self, result: SyncResult, message: str) -> None:
        self.last = result
        rows = "\n".join(
            f"| {r.unit} | `{r.path}` | {r.git} | {r.authority} | {r.revision} | {r.source} |"
            for r in result.rows
        )
        workflow.set_current_details(
            f"**{self.space}**: {message}\n\n| unit | path | Git | authority | rev | source |\n"
            f"|---|---|---|---|---|---|\n{rows}"
        )
