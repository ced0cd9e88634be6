"""Starting the publish and apply workflows from tests the way the CLI does."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.testservice.v1 import SleepRequest
from temporalio.client import WorkflowFailureError, WorkflowQueryFailedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from adapters.argocd import ArgoCDClient
from adapters.source import SourceCache
from authority.sql import SqlStore
from client.contract import error_info
from client.loops import signal_apply
from domain.apply import ApplyOutcome, ApplyRequest, ApplyStatus, RequestApplyInput
from domain.authority import GatesUpdate
from domain.change import SpaceGatesInput, SpaceGatesResult
from domain.naming import apply_id
from domain.publish import PublishRunInput, PublishRunResult
from domain.repos import SourceRef
from starter.applying import find
from starter.gitref import resolve
from starter.runner import wait_again
from tests.conftest import Sandbox
from tests.support import HANG, AuthoringRepo, eventually
from workflows.apply import ApplyWorkflow
from workflows.change import SpaceGatesWorkflow
from workflows.publish import PublishRunWorkflow

T = TypeVar("T")

_ACTIVITY_CLOSED = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED,
}
_TASK_CLOSED = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
}


def in_flight(events: list[HistoryEvent]) -> bool:
    """Whether a run's history, read once, shows a workflow task or an activity open.

    The time-skipping server's describe lists no workflow task (a check, a local
    activity, runs inside one), so the history is the one consistent view.
    """
    activities: set[int] = set()
    task = False
    for e in events:
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            activities.add(e.event_id)
        elif e.event_type in _ACTIVITY_CLOSED:
            attributes = getattr(e, str(e.WhichOneof("attributes")))
            activities.discard(attributes.scheduled_event_id)
        elif e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            task = True
        elif e.event_type in _TASK_CLOSED:
            task = False
    return task or bool(activities)


async def publish(
    env: WorkflowEnvironment,
    worker: Worker,
    repo: AuthoringRepo,
    *,
    ref: str = "main",
    **options: Any,
) -> PublishRunResult:
    url, commit = resolve(repo.url, ref)
    result: PublishRunResult = await env.client.execute_workflow(
        PublishRunWorkflow.run,
        PublishRunInput(source=SourceRef(repo=url, commit=commit), ref=ref, **options),
        id=f"publish-run-test-{uuid.uuid4()}",
        task_queue=worker.task_queue,
    )
    return result


async def publish_failure(
    env: WorkflowEnvironment, worker: Worker, source: SourceRef, **options: Any
) -> tuple[str, str]:
    """(error type, message) of a publish run that must fail."""
    try:
        await env.client.execute_workflow(
            PublishRunWorkflow.run,
            PublishRunInput(source=source, ref="main", **options),
            id=f"publish-run-test-{uuid.uuid4()}",
            task_queue=worker.task_queue,
        )
    except WorkflowFailureError as e:
        info = error_info(e)
        return info.type, info.message
    raise AssertionError("the publish run succeeded")


def actions(result: PublishRunResult) -> dict[str, tuple[str, int | None]]:
    return {u.unit: (u.action, u.revision) for s in result.spaces for u in s.units}


def snapshot(store: SqlStore, *, units_only: bool = False) -> dict[str, Any]:
    """Everything the authority holds, to prove that nothing was written.

    ``units_only`` leaves out the space records, which every successful publish
    refreshes with the commit its policy bundle came from.
    """
    out: dict[str, Any] = {}
    for space in store.list_spaces():
        out[space.name] = {
            "space": None if units_only else space.model_dump(mode="json"),
            "units": {
                u.slug: (
                    u.model_dump(mode="json"),
                    [r.model_dump(mode="json") for r in store.list_revisions(space.name, u.slug)],
                )
                for u in store.list_units(space.name)
            },
        }
    return out


async def ask(
    env: WorkflowEnvironment, worker: Worker, space: str, unit: str, revision: int, **kw: Any
) -> tuple[str, str]:
    """Request an apply (or delete); returns (workflow id, request id)."""
    request_id = str(uuid.uuid4())
    workflow_id = await signal_apply(
        env.client,
        worker.task_queue,
        RequestApplyInput(
            space=space,
            unit=unit,
            request=ApplyRequest(revision=revision, request_ids=[request_id], **kw),
        ),
    )
    return workflow_id, request_id


# ---- waiting on an ApplyWorkflow ------------------------------------------------------------


async def query_under_load(query: Callable[[], Awaitable[T]]) -> T:
    """A query, asked again when the worker gave up on it as a potential deadlock, or
    the server stopped waiting for the worker's answer.

    A query of a run not in the worker's cache replays its whole history in the
    sandbox, in one activation that the SDK allows 2 s; under heavy CPU load (stress
    runs) that replay alone can take longer, and the server's own deadline for the
    answer can pass ("query deadline exceeded"; the CLI asks again on the same
    answers, ``starter.runner.wait_again``). A real deadlock fails every time."""
    for attempt in range(5):
        try:
            return await query()
        except WorkflowQueryFailedError as e:
            if "Potential deadlock detected" not in str(e) or attempt == 4:
                raise
        except RPCError as e:
            if not wait_again(e) or attempt == 4:
                raise
    raise AssertionError("unreachable")


# ---- time on the time-skipping server --------------------------------------------------------

# The longest move of time a dev server test makes by waiting for it.
REAL_SLEEP = timedelta(seconds=30)


async def skip(env: WorkflowEnvironment, duration: timedelta) -> None:
    """``env.sleep(duration)``, bounded only against a hang.

    On the time-skipping server the sleep is one request that returns when the server
    has fired every timer up to ``duration`` ahead, while the workflows' tasks (drift
    checks are local activities inside them) run in real time; the SDK's client gives
    a call without a timeout of its own 30 s (sdk-core's ``OTHER_CALL_TIMEOUT``), which
    hours of drift ticks outlast on a loaded machine (``RPCError: Timeout expired``).
    """
    if not env.supports_time_skipping_v1:
        if duration > REAL_SLEEP:
            # --workflow-environment=local: the dev server's time is the wall clock's
            pytest.skip(f"moves time by {duration}: needs the time-skipping server")
        await env.sleep(duration)
        return
    request = SleepRequest()
    request.duration.FromTimedelta(duration)
    await env.client.test_service.unlock_time_skipping_with_sleep(
        request, timeout=timedelta(seconds=HANG)
    )


async def apply_status(env: WorkflowEnvironment, space: str, unit: str) -> ApplyStatus:
    handle = env.client.get_workflow_handle_for(ApplyWorkflow.run, apply_id(space, unit))
    status: ApplyStatus = await query_under_load(lambda: handle.query(ApplyWorkflow.status))
    return status


async def until(
    env: WorkflowEnvironment,
    workflow_id: str,
    request_id: str,
    states: set[str] | None = None,
    *,
    messages: list[str] | None = None,
    revision: int | None = None,
) -> ApplyOutcome:
    """Poll an ApplyWorkflow's status until the request reaches one of ``states``
    (``None``: until it settles: terminal, or waiting at a gate).

    ``messages`` collects the current status messages of ``revision`` meanwhile."""
    handle = env.client.get_workflow_handle_for(ApplyWorkflow.run, workflow_id)

    async def probe() -> tuple[ApplyStatus, ApplyOutcome | None]:
        status = await query_under_load(lambda: handle.query(ApplyWorkflow.status))
        if messages is not None and status.current and status.current.revision == revision:
            messages.append(status.current.message)
        return status, find(status, request_id)

    def reached(value: tuple[ApplyStatus, ApplyOutcome | None]) -> bool:
        outcome = value[1]
        return outcome is not None and (
            outcome.settled if states is None else outcome.state in states
        )

    wanted = "settled" if states is None else f"reached {sorted(states)}"
    _, outcome = await eventually(probe, reached, what=f"request {request_id} {wanted}")
    assert outcome is not None
    return outcome


async def settle(
    env: WorkflowEnvironment,
    worker: Worker,
    space: str,
    unit: str,
    revision: int,
    messages: list[str] | None = None,
    **kw: Any,
) -> ApplyOutcome:
    """Request an apply (or delete, ``action="delete"``) and wait until it settles."""
    workflow_id, request_id = await ask(env, worker, space, unit, revision, **kw)
    return await until(env, workflow_id, request_id, messages=messages, revision=revision)


# ---- actuator tests: a worker on a given store, the space's gates -----------------------------


@asynccontextmanager
async def running_worker(
    env: WorkflowEnvironment,
    store: Any,
    cache: SourceCache,
    executor: ThreadPoolExecutor,
    sandbox: Sandbox,
    *,
    argocd: ArgoCDClient | None = None,
) -> AsyncIterator[Worker]:
    """The worker as ``worker.py`` builds it, on ``store`` (embedded or ConfigHub) and
    the sandbox cluster, on a task queue of its own; ``argocd``: the Argo CD client
    (None: none, unless the environment names one)."""
    from worker import build_worker

    async with build_worker(
        env.client, f"tq-{uuid.uuid4()}", store, cache, executor, sandbox.kube, argocd=argocd
    ) as worker:
        yield worker


async def set_gates(
    env: WorkflowEnvironment, worker: Worker, update: GatesUpdate
) -> SpaceGatesResult:
    """``tributary space set``: the gates update through SpaceGatesWorkflow."""
    result: SpaceGatesResult = await env.client.execute_workflow(
        SpaceGatesWorkflow.run,
        SpaceGatesInput(space=update.space, update=update),
        id=f"space-gates-test-{uuid.uuid4()}",
        task_queue=worker.task_queue,
    )
    return result


async def settle_slow(
    env: WorkflowEnvironment,
    worker: Worker,
    space: str,
    unit: str,
    revision: int,
    **kw: Any,
) -> ApplyOutcome:
    """``settle`` for actuators that poll another system in real time (Argo CD's sync,
    ConfigHub's unit events): bounded only against a hang, like ``settle``."""
    workflow_id, request_id = await ask(env, worker, space, unit, revision, **kw)
    return await until(env, workflow_id, request_id)
