"""SyncPRWorkflow on the time-skipping server with every real activity.

Real bare git remotes on disk, real ``kubectl kustomize`` and the real store: a burst
of requests is debounced into one push and one PR, ``sync_now`` skips the debounce,
a dry run pushes nothing, and the singleton ends when idle and starts again.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from authority.sql import SqlStore
from client.loops import signal_sync
from domain.naming import sync_pr_id
from domain.sync import SyncNowInput, SyncPRInput, SyncResult
from tests.support import AuthoringRepo, authority_change, eventually, git, make_repo
from tests.workflows.helpers import publish, skip
from workflows.sync import SyncPRWorkflow

pytestmark = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)

UNIT = "messagewall-dev-east"
DEV_EAST = "infra/claims/overlays/dev-east/kustomization.yaml"
T = TypeVar("T")


@dataclass
class Published:
    repo: AuthoringRepo
    space: str

    @property
    def branch(self) -> str:
        return f"tributary/sync/{self.space}"

    @property
    def workflow_id(self) -> str:
        return sync_pr_id(self.space)


@pytest.fixture
async def published(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, tmp_path: Any
) -> AsyncIterator[Published]:
    """The message wall with a 5 s debounce, published; spaces unique to the test
    (``sync-pr:{space}`` is a singleton on the shared server)."""
    suffix = f"-{uuid.uuid4().hex[:8]}"
    repo = make_repo(tmp_path, "messagewall", space_suffix=suffix)
    repo.edit("tributary.yaml", lambda text: text + "sync:\n  debounce: 5s\n")
    repo.commit("a 5 s debounce")
    await publish(env, worker, repo)
    out = Published(repo, f"messagewall-dev-east{suffix}")
    yield out
    with contextlib.suppress(RPCError):
        await env.client.get_workflow_handle(out.workflow_id).terminate("test over")


async def history(handle: WorkflowHandle[Any, Any]) -> list[Any]:
    return [e async for e in handle.fetch_history_events()]


def pushes(events: list[Any]) -> int:
    return sum(
        1
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "sync.push"
    )


async def debouncing_after(handle: WorkflowHandle[Any, Any], signals: int) -> list[Any]:
    """Wait until the workflow saw ``signals`` requests and started its debounce timer
    after the last one, so skipping time fires exactly that timer."""

    def ready(events: list[Any]) -> bool:
        signalled = [
            i
            for i, e in enumerate(events)
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        ]
        return len(signalled) == signals and any(
            e.event_type == EventType.EVENT_TYPE_TIMER_STARTED for e in events[signalled[-1] :]
        )

    return await eventually(lambda: history(handle), ready)


def timers(events: list[Any]) -> list[timedelta]:
    return [
        e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
        for e in events
        if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED
    ]


def remote_head(p: Published) -> str | None:
    out = git(p.repo.remote, "for-each-ref", "--format=%(objectname)", f"refs/heads/{p.branch}")
    return out or None


def on_top_of_main(p: Published) -> list[str]:
    return git(p.repo.remote, "rev-list", f"main..{p.branch}").split()


async def test_a_burst_of_requests_is_one_push_and_one_pr_then_idle_ends_it(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, published: Published
) -> None:
    p = published
    authority_change(store, p.space, UNIT, "drift-capture", spec__lambdaMemory=512)
    for reason in ("capture", "set", "rollback"):
        assert await signal_sync(env.client, worker.task_queue, p.space, reason) == p.workflow_id
    handle = env.client.get_workflow_handle_for(SyncPRWorkflow.run, p.workflow_id)
    first_run = (await handle.describe()).run_id

    events = await debouncing_after(handle, 3)
    assert pushes(events) == 0  # still debouncing: nothing pushed yet
    assert timers(events)[-1] == timedelta(seconds=5)  # sync.debounce from tributary.yaml
    assert remote_head(p) is None
    await skip(env, timedelta(seconds=6))

    status = await eventually(lambda: handle.query(SyncPRWorkflow.status), lambda s: s is not None)
    assert isinstance(status, SyncResult)
    assert (status.space, status.action, status.branch) == (p.space, "opened", p.branch)
    assert status.pr is not None
    assert (status.pr.number, status.pr.state) == (1, "open")
    assert status.head_commit == remote_head(p)
    assert [(r.path, r.git, r.authority, r.source) for r in status.rows] == [
        ("spec.lambdaMemory", 128, 512, "drift-capture")
    ]
    assert pushes(await history(handle)) == 1
    assert on_top_of_main(p) == [status.head_commit]
    assert [(pr.number, pr.state, pr.head_commit) for pr in store.list_prs(p.space)] == [
        (1, "open", status.head_commit)
    ]

    # idle for ten minutes: the singleton ends with its last result
    await skip(env, timedelta(minutes=10, seconds=1))
    described = await eventually(
        handle.describe, lambda d: d.status == WorkflowExecutionStatus.COMPLETED
    )
    assert described.run_id == first_run
    final = await handle.result()
    assert (final.action, final.pr.number if final.pr else None) == ("opened", 1)
    assert pushes(await history(handle)) == 1

    # a new change: signal-with-start starts a fresh run, which updates the same PR
    authority_change(store, p.space, UNIT, "operator", spec__lambdaTimeout=20)
    await signal_sync(env.client, worker.task_queue, p.space, "set")
    again = env.client.get_workflow_handle_for(SyncPRWorkflow.run, p.workflow_id)
    second_run = (await again.describe()).run_id
    assert second_run != first_run
    await debouncing_after(again, 1)
    await skip(env, timedelta(seconds=6))
    status = await eventually(lambda: again.query(SyncPRWorkflow.status), lambda s: s is not None)
    assert (status.action, status.pr.number if status.pr else None) == ("updated", 1)
    assert status.head_commit == remote_head(p)
    assert on_top_of_main(p) == [status.head_commit]
    assert [(pr.number, pr.state, pr.head_commit) for pr in store.list_prs(p.space)] == [
        (1, "open", status.head_commit)
    ]
    assert git(p.repo.remote, "diff", "--stat", "main", p.branch).splitlines()[-1] == (
        " 1 file changed, 2 insertions(+), 2 deletions(-)"
    )


async def test_sync_now_dry_run_and_unchanged_after_the_merge(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, published: Published
) -> None:
    p = published
    handle = await env.client.start_workflow(
        SyncPRWorkflow.run,
        SyncPRInput(space=p.space),
        id=p.workflow_id,
        task_queue=worker.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    authority_change(store, p.space, UNIT, "break-glass", spec__lambdaMemory=768)

    dry: SyncResult = await handle.execute_update(
        SyncPRWorkflow.sync_now, SyncNowInput(dry_run=True)
    )
    assert (dry.space, dry.action, dry.branch, dry.pr, dry.head_commit) == (
        p.space,
        "dry-run",
        p.branch,
        None,
        "",
    )
    assert [(r.path, r.git, r.authority, r.source) for r in dry.rows] == [
        ("spec.lambdaMemory", 128, 768, "break-glass")
    ]
    lines = dry.diff.splitlines()
    assert lines[0] == f"diff --git a/{DEV_EAST} b/{DEV_EAST}"
    assert [ln for ln in lines if ln[:1] in "+-" and ln[:3] not in ("+++", "---")] == [
        "-        value: 128",
        "+        value: 768",
    ]
    assert remote_head(p) is None
    assert store.list_prs(p.space) == []

    now: SyncResult = await handle.execute_update(SyncPRWorkflow.sync_now, SyncNowInput())
    assert (now.action, now.branch) == ("opened", p.branch)
    assert now.pr is not None
    assert (now.pr.number, now.pr.state, now.pr.branch) == (1, "open", p.branch)
    assert now.head_commit == remote_head(p) == now.pr.head_commit
    assert on_top_of_main(p) == [now.head_commit]

    again: SyncResult = await handle.execute_update(SyncPRWorkflow.sync_now, SyncNowInput())
    assert (again.action, again.head_commit) == ("unchanged", now.head_commit)
    assert again.pr is not None
    assert again.pr.number == 1
    assert len(store.list_prs(p.space)) == 1
    assert pushes(await history(handle)) == 3  # dry run + 2 real; no debounce involved

    # a developer merges the PR: the next sync finds Git in sync and marks it merged
    git(p.repo.work, "fetch", "-q", "origin")
    git(p.repo.work, "merge", "-q", "--no-edit", f"origin/{p.branch}")
    git(p.repo.work, "push", "-q", "origin", "main")
    done: SyncResult = await handle.execute_update(SyncPRWorkflow.sync_now, SyncNowInput())
    assert (done.action, done.pr, done.rows) == ("unchanged", None, [])
    assert [(pr.number, pr.state) for pr in store.list_prs(p.space)] == [(1, "merged")]
    assert (await handle.query(SyncPRWorkflow.status)).action == "unchanged"


async def test_sync_now_hears_a_decided_failure_of_its_run(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, published: Published, tmp_path: Any
) -> None:
    """A bad input in the clone (a committed ``tributary-sync`` link out of it) fails
    the ``sync_now`` update with the activity's BadInput, so the CLI exits 2 with the
    message; before, the run failed under the waiting update (exit 1, no message)."""
    p = published
    outside = tmp_path / "outside"
    outside.mkdir()
    # a namespace change Git made since the publish can only go to the fallback file
    p.repo.edit(
        "infra/claims/base/claim.yaml",
        lambda text: text.replace("namespace: default", "namespace: team-b"),
    )
    (p.repo.work / "tributary-sync").symlink_to(outside)
    p.repo.commit("tributary-sync leads out of the clone")
    handle = await env.client.start_workflow(
        SyncPRWorkflow.run,
        SyncPRInput(space=p.space),
        id=p.workflow_id,
        task_queue=worker.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )

    with pytest.raises(WorkflowUpdateFailedError) as err:
        await handle.execute_update(SyncPRWorkflow.sync_now, SyncNowInput())

    cause = err.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "BadInput"
    assert cause.message == (
        f"tributary-sync/{p.space}: is a link that leads out of the repository; nothing was written"
    )
    assert list(outside.iterdir()) == []
    assert remote_head(p) is None


async def test_a_request_during_the_debounce_restarts_the_window(
    env: WorkflowEnvironment, worker: Worker, store: SqlStore, published: Published
) -> None:
    p = published
    authority_change(store, p.space, UNIT, "drift-capture", spec__lambdaMemory=512)
    await signal_sync(env.client, worker.task_queue, p.space, "capture")
    handle = env.client.get_workflow_handle_for(SyncPRWorkflow.run, p.workflow_id)
    await debouncing_after(handle, 1)
    await skip(env, timedelta(seconds=3))

    authority_change(store, p.space, UNIT, "drift-capture", spec__lambdaTimeout=20)
    await signal_sync(env.client, worker.task_queue, p.space, "capture")
    events = await debouncing_after(handle, 2)
    assert timers(events) == [timedelta(seconds=5), timedelta(seconds=5)]
    await skip(env, timedelta(seconds=3))  # 6 s after the first request, 3 s after the last
    await asyncio.sleep(0.5)
    events = await history(handle)
    assert pushes(events) == 0
    assert remote_head(p) is None

    await skip(env, timedelta(seconds=3))
    status = await eventually(lambda: handle.query(SyncPRWorkflow.status), lambda s: s is not None)
    assert status.action == "opened"
    assert [(r.path, r.authority) for r in status.rows] == [
        ("spec.lambdaMemory", 512),
        ("spec.lambdaTimeout", 20),
    ]
    assert pushes(await history(handle)) == 1
    assert on_top_of_main(p) == [status.head_commit]
    assert len(store.list_prs(p.space)) == 1
