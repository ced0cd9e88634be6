"""Reads of the authority through the worker (``ReadWorkflow``, ``domain.reads``).

The CLI opens no database: a read is a short workflow, answered by whichever worker
polls the task queue. Lists come a page at a time; ``pages`` follows them to the end.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import TimeoutError as WorkflowTimeout
from temporalio.service import RPCError

from client import contract
from client.settings import Settings
from domain.reads import AnyQuery, ReadInput, ReadResult
from starter import runner

A = TypeVar("A", bound=BaseModel)

# A read that no worker answers in this time fails instead of waiting forever.
READ_TIMEOUT = timedelta(minutes=2)


def workflow_id(query: AnyQuery) -> str:
    """``read:{kind}:{space}[:{unit}]:{random}`` — named by what it reads, and unique, so
    a read never attaches to an earlier one that may have read before a write."""
    parts = [getattr(query, "space", None) or "", getattr(query, "unit", None) or ""]
    named = ":".join(p for p in parts if p)
    return f"read:{query.kind}:{named + ':' if named else ''}{uuid.uuid4().hex[:12]}"


async def read(client: Client, settings: Settings, query: AnyQuery, answer: type[A]) -> A:
    """Run one read on the worker; a decided failure (``NotFound``) keeps its type and
    exit code."""
    wid = workflow_id(query)
    try:
        handle = await client.start_workflow(
            contract.READ_WORKFLOW,
            ReadInput(query=query),
            id=wid,
            result_type=ReadResult,
            task_queue=settings.task_queue,
            execution_timeout=READ_TIMEOUT,
            search_attributes=contract.search_attributes(
                getattr(query, "space", None), getattr(query, "unit", None)
            ),
            static_summary=f"{query.kind} (CLI read)",
        )
    except RPCError as e:
        raise runner.Unreachable(f"cannot start {wid}: {e.message}") from e
    try:
        result: ReadResult = await runner.wait(handle)
    except runner.WorkflowFailed as e:
        cause: BaseException | None = e.__cause__
        if isinstance(cause, WorkflowFailureError) and isinstance(cause.cause, WorkflowTimeout):
            raise runner.Unreachable(
                f"no worker answered {wid} on task queue {settings.task_queue!r} within "
                f"{int(READ_TIMEOUT.total_seconds())} s: start one (`tributary worker`)"
            ) from e
        raise
    if not isinstance(result.answer, answer):
        raise TypeError(f"{wid}: expected {answer.__name__}, got {type(result.answer).__name__}")
    return result.answer


async def pages(
    client: Client, settings: Settings, query: AnyQuery, answer: type[A]
) -> AsyncIterator[A]:
    """Every page of a listing, in order: the query again from each page's ``next``."""
    while True:
        page = await read(client, settings, query, answer)
        yield page
        following: Any = getattr(page, "next", None)
        if following is None:
            return
        query = query.model_copy(update={"after": following})
