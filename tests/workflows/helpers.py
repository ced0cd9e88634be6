"""Starting the publish and apply workflows from tests the way the CLI does."""

from __future__ import annotations

import uuid
from typing import Any

from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from authority.sql import SqlStore
from client.loops import signal_apply
from domain.apply import ApplyRequest
from domain.messages import PublishRunInput, PublishRunResult, RequestApplyInput, SourceRef
from starter.gitref import resolve
from tests.support import AuthoringRepo
from workflows._errors import error_info
from workflows.publish import PublishRunWorkflow


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
