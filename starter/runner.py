"""Start a workflow from the CLI, show where to watch it, and wait for its result."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import (
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from client.contract import EXIT_CODES, error_info
from client.loops import not_ready
from client.settings import Settings, connect
from domain.errors import TributaryError
from starter.output import Output

R = TypeVar("R")

EXIT_WAITING = 5

# A wait that breaks with one of these is resumed (about 5 minutes in all).
WAIT_AGAIN = {RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.UNAVAILABLE}
WAIT_RETRIES = 60


def wait_again(e: RPCError) -> bool:
    """A broken wait or query that will answer if asked again: a dropped long poll, a
    query with no worker to answer it (restarting), or a run whose workflow task is
    failing and being retried (a slow worker's deadlock detector)."""
    return e.status in WAIT_AGAIN or not_ready(e)


class Unreachable(TributaryError):
    """Temporal is not there; nothing was started."""


class WorkflowFailed(TributaryError):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.exit_code = EXIT_CODES.get(kind, 1)


async def client_for(settings: Settings) -> Client:
    try:
        return await connect(settings)
    except RuntimeError as e:  # the core SDK reports connection failures this way
        raise Unreachable(
            f"cannot reach Temporal at {settings.temporal_address} ({e}); "
            "start the embedded stack with `tributary dev` or set TEMPORAL_ADDRESS"
        ) from e


async def start(
    client: Client,
    settings: Settings,
    out: Output,
    run: Any,
    arg: Any,
    *,
    workflow_id: str,
    summary: str,
    attributes: TypedSearchAttributes | None = None,
    result_type: type | None = None,
) -> WorkflowHandle[Any, Any]:
    """Start (or attach to the running) workflow ``workflow_id``.

    ``run`` is the workflow's type name: the CLI does not import workflow code (and
    with it every adapter library), which keeps each command quick to start.
    """
    try:
        handle = await client.start_workflow(
            run,
            arg,
            id=workflow_id,
            result_type=result_type,
            task_queue=settings.task_queue,
            # A retried CI step attaches to the run still in flight; a finished run
            # may run again (its effects are idempotent by content).
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=attributes,
            static_summary=summary,
        )
    except RPCError as e:
        raise Unreachable(f"cannot start {workflow_id}: {e.message}") from e
    out.progress(f"started {workflow_id}")
    link = settings.workflow_link(workflow_id)
    if link:
        out.progress(f"  Web UI: {link}")
    return handle


async def wait(
    handle: WorkflowHandle[Any, R],
    *,
    on_tick: Callable[[], Awaitable[None]] | None = None,
    tick_seconds: float = 0.5,
) -> R:
    """The workflow's result; a decided failure becomes ``WorkflowFailed``.

    The workflow goes on when the wait breaks: a server that drops the long poll
    ("context canceled" from a busy or restarting Temporal) is waited on again, so a
    CI step does not fail while its publish completes.
    """
    failures = 0
    while True:
        task = asyncio.ensure_future(handle.result())
        try:
            while on_tick is not None and not task.done():
                await asyncio.wait({task}, timeout=tick_seconds)
                if not task.done():
                    await on_tick()
            return await task
        except WorkflowFailureError as e:
            info = error_info(e)
            raise WorkflowFailed(info.type, info.message) from e
        except RPCError as e:
            failures += 1
            if not wait_again(e) or failures > WAIT_RETRIES:
                raise
            await asyncio.sleep(min(failures, 5))
