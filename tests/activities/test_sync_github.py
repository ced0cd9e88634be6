"""The sync activities with ``TRIBUTARY_FORGE=github``, against the loopback GitHub
contract fake (an Enterprise Server: API under ``/api/v3``), and the rate-limit wait
on a real Temporal server (time-skipping): the next attempt waits until the reset.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.render import find_kubectl
from activities.sync import SyncActivities
from authority.sql import SqlStore
from domain.naming import sync_pr_id
from domain.publish import PublishRunInput, PublishRunResult
from domain.repos import SourceRef
from domain.sync import (
    ClosePrsInput,
    EnsurePrInput,
    EnsurePrResult,
    PullRequest,
    PullRequestSpec,
    SyncNowInput,
    SyncPRInput,
    SyncResult,
    sync_branch,
)
from starter.gitref import resolve
from tests.fakes.github import FakeGitHub, primary_limit, secondary_limit
from tests.support import authority_change, eventually, git, make_repo
from workflows.publish import PublishRunWorkflow
from workflows.sync import FORGE_RETRY, FORGE_SCHEDULE_TO_CLOSE, FORGE_TIMEOUT, SyncPRWorkflow

pytestmark = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)

TOKEN = "ghp_SECRETtoken123"
OWNER, NAME = "platform", "messagewall"
REPO = f"{OWNER}/{NAME}"
SPACE = "messagewall-prod-east"
BRANCH = sync_branch(SPACE)
SHA1 = "1" * 40
SHA2 = "2" * 40


@pytest.fixture
def ghe(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    server = FakeGitHub(token=TOKEN, prefix="/api/v3")
    monkeypatch.setenv("TRIBUTARY_FORGE", "github")
    monkeypatch.setenv("GITHUB_API_URL", server.api_url)
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    yield server
    server.stop()


@pytest.fixture
def acts(store: SqlStore, tmp_path: Path) -> SyncActivities:
    return SyncActivities(store, tmp_path / "sync-work", find_kubectl())


def repo_url(server: FakeGitHub) -> str:
    return f"{server.web_url}/{REPO}.git"


def spec(server: FakeGitHub, head: str = SHA1, **changes: Any) -> PullRequestSpec:
    fields: dict[str, Any] = {
        "space": SPACE,
        "repo": repo_url(server),
        "branch": BRANCH,
        "base": "main",
        "title": f"Sync {SPACE} from the authority",
        "body": "| unit | path |\n|---|---|\n| wall | spec.ttl |\n",
        "head_commit": head,
    }
    fields.update(changes)
    return PullRequestSpec(**fields)


def ensure(acts: SyncActivities, s: PullRequestSpec) -> EnsurePrResult:
    result: EnsurePrResult = ActivityEnvironment().run(acts.ensure_pr, EnsurePrInput(spec=s))
    return result


def states(store: SqlStore) -> list[tuple[int, str, str]]:
    return [(p.number, p.state, p.head_commit) for p in store.list_prs(SPACE)]


# ---- ensure_pr ------------------------------------------------------------------------------


def test_opens_records_labels_then_answers_like_the_local_forge(
    ghe: FakeGitHub, acts: SyncActivities, store: SqlStore
) -> None:
    opened = ensure(acts, spec(ghe))
    assert (opened.action, opened.pr.number, opened.pr.state) == ("opened", 1347, "open")
    assert opened.pr.url == f"{ghe.web_url}/{REPO}/pull/1347"
    assert states(store) == [(1347, "open", SHA1)]
    labels = [lbl["name"] for lbl in ghe.pulls[REPO][0]["labels"]]
    assert labels == ["sync", "confighub", "automated"]

    assert ensure(acts, spec(ghe)).action == "unchanged"

    # a new commit on the branch, title and body alike: "updated", as the local forge says
    ghe.push(REPO, BRANCH, SHA2)  # GitHub already shows the new head
    updated = ensure(acts, spec(ghe, head=SHA2))
    assert (updated.action, updated.pr.number) == ("updated", 1347)
    assert states(store) == [(1347, "open", SHA2)]
    assert len(ghe.requests("POST", r"/pulls$")) == 1
    assert len(ghe.requests("POST", r"/labels$")) == 1


def test_a_labelling_failure_after_the_create_keeps_the_pr_recorded(
    ghe: FakeGitHub, acts: SyncActivities, store: SqlStore
) -> None:
    ghe.fail("POST", r"/labels$", 502, {"message": "Server Error"})
    with pytest.raises(Exception, match="502") as info:
        ensure(acts, spec(ghe))
    assert not isinstance(info.value, ApplicationError)
    assert states(store) == [(1347, "open", SHA1)]  # recorded before labelling

    retried = ensure(acts, spec(ghe))  # what Temporal's retry does
    assert retried.pr.number == 1347
    assert states(store) == [(1347, "open", SHA1)]
    assert len(ghe.requests("POST", r"/pulls$")) == 1  # no second PR
    assert [lbl["name"] for lbl in ghe.pulls[REPO][0]["labels"]] == [
        "sync",
        "confighub",
        "automated",
    ]


def test_a_refused_labelling_is_a_warning_not_a_failure(
    ghe: FakeGitHub, acts: SyncActivities, store: SqlStore
) -> None:
    ghe.fail(
        "POST",
        r"/labels$",
        403,
        {"message": "Resource not accessible by integration", "status": "403"},
    )
    result = ensure(acts, spec(ghe))
    assert result.action == "opened"
    assert states(store) == [(1347, "open", SHA1)]
    assert len(result.warnings) == 1
    assert "labels" in result.warnings[0]
    assert "Resource not accessible by integration" in result.warnings[0]


def test_a_rate_limit_is_a_retry_after_the_reset(ghe: FakeGitHub, acts: SyncActivities) -> None:
    status, body, headers = secondary_limit()
    ghe.fail("GET", r"/pulls$", status, body, headers)
    with pytest.raises(ApplicationError) as info:
        ensure(acts, spec(ghe))
    assert info.value.type == "GitHubRateLimited"
    assert not info.value.non_retryable
    assert info.value.next_retry_delay == timedelta(seconds=60)
    assert TOKEN not in info.value.message


# ---- close_prs: merged whatever the method ----------------------------------------------------


def test_close_prs_asks_github_whether_each_pr_was_merged(
    ghe: FakeGitHub, acts: SyncActivities, store: SqlStore
) -> None:
    url = repo_url(ghe)
    numbers = {}
    for how in ("merge", "squash", "rebase", "closed", "open"):
        pull = ghe.add_pull(REPO, title=how, ref=BRANCH)
        numbers[how] = pull["number"]
        store.record_pr(
            PullRequest(
                space=SPACE,
                number=pull["number"],
                url=pull["html_url"],
                state="open",
                branch=BRANCH,
                base="main",
                title=how,
                head_commit=SHA1,
            ),
            repo=url,
            body="",
        )
        if how in ("merge", "squash", "rebase"):
            ghe.merge(REPO, pull["number"], how)
        elif how == "closed":
            ghe.close(REPO, pull["number"])

    # base_commit is the local forge's business: GitHub's merged_at decides
    done = ActivityEnvironment().run(
        acts.close_prs, ClosePrsInput(space=SPACE, base_commit="0" * 40, repo=url)
    )
    assert sorted(done.closed) == sorted(
        numbers[h] for h in ("merge", "squash", "rebase", "closed")
    )
    by_number = {p.number: p.state for p in store.list_prs(SPACE)}
    assert [by_number[numbers[h]] for h in ("merge", "squash", "rebase", "closed", "open")] == [
        "merged",
        "merged",
        "merged",
        "closed",
        "open",
    ]
    assert ghe.requests("PATCH") == []

    # Git renders the authority: the open one is closed on GitHub too
    done = ActivityEnvironment().run(
        acts.close_prs,
        ClosePrsInput(space=SPACE, base_commit="0" * 40, repo=url, close_unmerged=True),
    )
    assert done.closed == [numbers["open"]]
    assert ghe.pulls[REPO][-1]["state"] == "closed"
    assert ghe.pulls[REPO][-1]["merged_at"] is None
    assert {p.number: p.state for p in store.list_prs(SPACE)}[numbers["open"]] == "closed"


def record(store: SqlStore, url: str, number: int, branch: str = BRANCH) -> None:
    store.record_pr(
        PullRequest(
            space=SPACE,
            number=number,
            url=f"{url}#pr-{number}",
            state="open",
            branch=branch,
            base="main",
            title="sync",
            head_commit=SHA1,
        ),
        repo=url,
        body="",
    )


def test_close_prs_records_prs_github_lacks_as_closed_and_leaves_others_alone(
    ghe: FakeGitHub, acts: SyncActivities, store: SqlStore
) -> None:
    """A PR deleted on GitHub, and a record of the local forge whose number GitHub gave
    to another branch's PR: both are closed records, idempotently; the other PR is
    never touched."""
    url = repo_url(ghe)
    deleted = ghe.add_pull(REPO, title="deleted", ref=BRANCH)["number"]
    others = ghe.add_pull(REPO, title="someone else's", ref="feature/x")["number"]
    ours = ghe.add_pull(REPO, title="ours", ref=BRANCH)["number"]
    ghe.delete_pull(REPO, deleted)
    for number in (deleted, others, ours):
        record(store, url, number)

    inp = ClosePrsInput(space=SPACE, base_commit="0" * 40, repo=url, close_unmerged=True)
    done = ActivityEnvironment().run(acts.close_prs, inp)

    assert sorted(done.closed) == sorted([deleted, others, ours])
    assert {p.number: p.state for p in store.list_prs(SPACE)} == {
        deleted: "closed",
        others: "closed",
        ours: "closed",
    }
    assert [c.path for c in ghe.requests("PATCH")] == [f"/api/v3/repos/{REPO}/pulls/{ours}"]
    assert {p["number"]: p["state"] for p in ghe.pulls[REPO]} == {others: "open", ours: "closed"}
    assert len(done.warnings) == 2
    warned = {w.split()[2]: w for w in done.warnings}  # "pull request #N …"
    assert "GitHub has no such pull request" in warned[f"#{deleted}"]
    assert "is from 'feature/x'" in warned[f"#{others}"]

    # again: nothing open is left, nothing is asked
    asked = len(ghe.calls)
    again = ActivityEnvironment().run(acts.close_prs, inp)
    assert (again.closed, again.warnings, len(ghe.calls)) == ([], [], asked)


def test_close_prs_on_a_repository_github_does_not_show_fails_and_records_nothing(
    ghe: FakeGitHub, acts: SyncActivities, store: SqlStore
) -> None:
    """GitHub answers 404 for a PR of a repository the token cannot see too: that is
    not a closed PR but a wrong repository or token, and says so."""
    url = repo_url(ghe)
    number = ghe.add_pull(REPO, title="ours", ref=BRANCH)["number"]
    record(store, url, number)
    ghe.hidden_repos.add(REPO)

    with pytest.raises(ApplicationError) as caught:
        ActivityEnvironment().run(
            acts.close_prs, ClosePrsInput(space=SPACE, base_commit="0" * 40, repo=url)
        )

    assert caught.value.type == "NotFound"
    assert "not found on GitHub, or the token cannot see it" in caught.value.message
    assert TOKEN not in caught.value.message
    assert [p.state for p in store.list_prs(SPACE)] == ["open"]


def test_a_pr_deleted_between_the_look_and_the_close_is_closed(
    ghe: FakeGitHub, acts: SyncActivities, store: SqlStore
) -> None:
    url = repo_url(ghe)
    number = ghe.add_pull(REPO, title="ours", ref=BRANCH)["number"]
    record(store, url, number)
    ghe.fail("PATCH", rf"/repos/{REPO}/pulls/{number}$", 404, {"message": "Not Found"})

    done = ActivityEnvironment().run(
        acts.close_prs,
        ClosePrsInput(space=SPACE, base_commit="0" * 40, repo=url, close_unmerged=True),
    )

    assert done.closed == [number]
    assert [p.state for p in store.list_prs(SPACE)] == ["closed"]
    assert "no such pull request" in done.warnings[0]


# ---- on Temporal: the next attempt waits for GitHub's reset ------------------------------------


@workflow.defn(sandboxed=False)
class EnsureOnce:
    """The ensure_pr call exactly as SyncPRWorkflow makes it (same options)."""

    @workflow.run
    async def run(self, inp: EnsurePrInput) -> EnsurePrResult:
        return await workflow.execute_activity_method(
            SyncActivities.ensure_pr,
            inp,
            start_to_close_timeout=FORGE_TIMEOUT,
            schedule_to_close_timeout=FORGE_SCHEDULE_TO_CLOSE,
            retry_policy=FORGE_RETRY,
        )


@pytest.mark.parametrize(
    ("answer", "wait"),
    [
        # made when the test runs: the reset is a moment in real time
        pytest.param(
            lambda: primary_limit(reset_in=3000), 2990, id="primary-limit-waits-for-the-reset"
        ),
        pytest.param(secondary_limit, 60, id="secondary-limit-without-headers-waits-a-minute"),
    ],
)
async def test_the_next_attempt_waits_as_github_asks(
    env: WorkflowEnvironment,
    ghe: FakeGitHub,
    acts: SyncActivities,
    store: SqlStore,
    answer: Callable[[], tuple[int, Any, dict[str, str]]],
    wait: int,
) -> None:
    status, body, headers = answer()
    ghe.fail("GET", r"/pulls$", status, body, headers)
    queue = f"tq-{uuid.uuid4()}"
    with ThreadPoolExecutor(4) as pool:
        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[EnsureOnce],
            activities=[acts.ensure_pr],
            activity_executor=pool,
        ):
            handle = await env.client.start_workflow(
                EnsureOnce.run,
                EnsurePrInput(spec=spec(ghe)),
                id=f"ensure-{uuid.uuid4()}",
                task_queue=queue,
            )

            async def pending() -> Any:
                described = await handle.describe()
                return described.raw_description.pending_activities

            # the wait is visible while it lasts: the last failure and the heartbeat say it
            [activity] = await eventually(
                pending,
                lambda p: bool(p) and p[0].attempt == 2,
                what="the second attempt scheduled",
            )
            assert "attempt 2 in" in activity.last_failure.message
            assert "rate limit" in activity.last_failure.message
            details = activity.heartbeat_details.payloads
            assert details
            assert b"attempt 2 in" in details[0].data

            result = await handle.result()
            assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    assert result.action == "opened"
    assert states(store) == [(1347, "open", SHA1)]
    history = await handle.fetch_history()
    scheduled = next(
        e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    )
    started = next(
        e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    )
    assert started.activity_task_started_event_attributes.attempt == 2
    waited = started.event_time.ToDatetime() - scheduled.event_time.ToDatetime()
    assert waited >= timedelta(seconds=wait)
    assert waited < timedelta(seconds=wait + 120)  # not the 1 s of the generic backoff, nor more


# ---- the whole arrow: SyncPRWorkflow with the github forge ------------------------------------


async def test_sync_pr_workflow_with_the_github_forge_through_a_squash_merge(
    env: WorkflowEnvironment,
    worker: Worker,
    ghe: FakeGitHub,
    store: SqlStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The authoring repo lives on the Enterprise host: git reaches it (``insteadOf``
    maps the URL onto the bare remote on disk), the API is the fake's. Opened,
    updated by a new commit, then squash-merged: the next sync is ``unchanged`` and
    the PR is recorded merged, as GitHub's ``merged_at`` says."""
    suffix = f"-{uuid.uuid4().hex[:8]}"
    repo = make_repo(tmp_path, "messagewall", space_suffix=suffix)
    url = repo_url(ghe)
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", f"url.{repo.url}.insteadOf")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", url)
    resolved, commit = resolve(url, "main")
    assert resolved == url
    published: PublishRunResult = await env.client.execute_workflow(
        PublishRunWorkflow.run,
        PublishRunInput(source=SourceRef(repo=url, commit=commit), ref="main"),
        id=f"publish-run-test-{uuid.uuid4()}",
        task_queue=worker.task_queue,
    )
    assert all(s.written for s in published.spaces)
    assert store.get_space(f"messagewall-dev-east{suffix}").repo == url  # type: ignore[union-attr]
    space = f"messagewall-dev-east{suffix}"
    unit = "messagewall-dev-east"
    handle = await env.client.start_workflow(
        SyncPRWorkflow.run,
        SyncPRInput(space=space),
        id=sync_pr_id(space),
        task_queue=worker.task_queue,
    )
    try:
        authority_change(store, space, unit, "break-glass", spec__lambdaMemory=768)
        opened: SyncResult = await handle.execute_update(SyncPRWorkflow.sync_now, SyncNowInput())
        assert opened.action == "opened"
        assert opened.pr is not None
        assert opened.pr.url == f"{ghe.web_url}/{REPO}/pull/1347"
        assert opened.warnings == []
        pull = ghe.pulls[REPO][0]
        assert pull["head"]["label"] == f"{OWNER}:{sync_branch(space)}"
        assert [lbl["name"] for lbl in pull["labels"]] == ["sync", "confighub", "automated"]

        authority_change(store, space, unit, "operator", spec__lambdaTimeout=20)
        updated: SyncResult = await handle.execute_update(SyncPRWorkflow.sync_now, SyncNowInput())
        assert (updated.action, updated.pr and updated.pr.number) == ("updated", 1347)

        # squash-merged on GitHub: main gets one new commit, the branch's is not in it
        git(repo.work, "fetch", "-q", "origin")
        git(repo.work, "merge", "-q", "--squash", f"origin/{sync_branch(space)}")
        git(repo.work, "commit", "-q", "-m", "Sync (#1347)")
        git(repo.work, "push", "-q", "origin", "main")
        ghe.merge(REPO, 1347, "squash")
        done: SyncResult = await handle.execute_update(SyncPRWorkflow.sync_now, SyncNowInput())
        assert (done.action, done.pr) == ("unchanged", None)
        assert [(p.number, p.state) for p in store.list_prs(space)] == [(1347, "merged")]
        assert len(ghe.requests("POST", r"/pulls$")) == 1
        # merged, not closed: nothing asked GitHub to close it
        assert all("state" not in c.body for c in ghe.requests("PATCH"))
    finally:
        with contextlib.suppress(RPCError):
            await handle.terminate("test over")
