"""The Temporal contract: the names every side of a workflow agrees on.

The workflows define them (``@workflow.defn``, ``@workflow.signal``…); the CLI, the
Claim watcher, the worker's Temporal activities, the benchmarks and the tests name
them from here, so that none of them imports workflow code to say "signal the drift
loop". ``tests/client/test_contract.py`` holds every name to the workflow that
defines it. All of it is part of running workflows' histories or of what operators
type into the Web UI: add, never rename.

Pure and light: workflows import it (through ``imports_passed_through``) for the
search attributes and for reading decided failures back out of activity errors.
"""

from __future__ import annotations

from typing import Any

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError

from domain.errors import (
    BadInput,
    CaptureConflict,
    ErrorInfo,
    NotFound,
    PolicyDenied,
    Rejected,
    StaleVersion,
    TributaryError,
)

# ---- search attributes (Keyword) -----------------------------------------------------------
# Registered by `tributary dev`, the tests' Temporal servers and, in a deployment,
# deploy/temporal/setup-cluster.sh; the Web UI lists workflows by them.

SPACE_KEY = SearchAttributeKey.for_keyword("TributarySpace")
UNIT_KEY = SearchAttributeKey.for_keyword("TributaryUnit")
#: set by the drift loop on each decision: in-sync, drifted, captured, reverted, paused…
DRIFT_STATE = SearchAttributeKey.for_keyword("TributaryDriftState")
SEARCH_ATTRIBUTES = (SPACE_KEY.name, UNIT_KEY.name, DRIFT_STATE.name)


def search_attributes(space: str | None = None, unit: str | None = None) -> TypedSearchAttributes:
    """The space and unit a workflow acts on, as its search attributes."""
    pairs: list[SearchAttributePair[Any]] = []
    if space:
        pairs.append(SearchAttributePair(SPACE_KEY, space))
    if unit:
        pairs.append(SearchAttributePair(UNIT_KEY, unit))
    return TypedSearchAttributes(pairs)


# ---- workflow types --------------------------------------------------------------------------

PUBLISH_RUN_WORKFLOW = "PublishRunWorkflow"  # one commit, all its spaces (the CLI's publish)
PUBLISH_WORKFLOW = "PublishWorkflow"  # one space of a commit (a child of the run)
APPLY_WORKFLOW = "ApplyWorkflow"  # apply:{space}:{unit}, long-running
DRIFT_WORKFLOW = "DriftWorkflow"  # drift:{space}:{unit}, long-running
SWEEP_WORKFLOW = "SweepWorkflow"
SYNC_PR_WORKFLOW = "SyncPRWorkflow"  # sync-pr:{space}, long-running
BULK_SET_WORKFLOW = "BulkSetWorkflow"
ROLLBACK_WORKFLOW = "RollbackWorkflow"
RENDER_LIVE_WORKFLOW = "RenderLiveWorkflow"
SPACE_GATES_WORKFLOW = "SpaceGatesWorkflow"
READ_WORKFLOW = "ReadWorkflow"

# The one sweep schedule (``tributary sweep schedule``); the worker watches it (client.cover).
SWEEP_SCHEDULE_ID = "tributary-sweep"

# ---- signals, updates and queries, by workflow ----------------------------------------------

# ApplyWorkflow
APPLY_REQUEST_SIGNAL = "request"
APPROVE_UPDATE = "approve"
APPLY_STATUS_QUERY = "status"

# DriftWorkflow
DRIFT_CHECK_SIGNAL = "check"
DRIFT_PAUSE_SIGNAL = "pause"
DRIFT_RESUME_SIGNAL = "resume"
DRIFT_COVER_ENDED_SIGNAL = "cover_ended"  # the sweep schedule stopped (client.cover)
CHECK_NOW_UPDATE = "check_now"
CAPTURE_NOW_UPDATE = "capture_now"
DRIFT_STATUS_QUERY = "get_status"

# SyncPRWorkflow
SYNC_REQUEST_SIGNAL = "request"
SYNC_NOW_UPDATE = "sync_now"
SYNC_STATUS_QUERY = "status"

# PublishRunWorkflow and SweepWorkflow
PROGRESS_QUERY = "progress"


# ---- decided failures ----------------------------------------------------------------------
# An activity turns a domain error into ApplicationError(type=<the error's class name>,
# non_retryable=True); the workflow and the CLI read the type back from here, and the
# CLI maps it to its exit code (EXIT_CODES below; the exit codes of the CLI contract).


def decided_type(err: BaseException) -> str | None:
    """The ``ApplicationError.type`` at the root of a failure chain, if any."""
    cur: BaseException | None = err
    while cur is not None:
        if isinstance(cur, ApplicationError) and cur.type:
            return cur.type
        cur = cur.__cause__
    return None


def error_info(err: BaseException) -> ErrorInfo:
    cur: BaseException | None = err
    while cur is not None:
        if isinstance(cur, ApplicationError):
            return ErrorInfo(type=cur.type or "ApplicationError", message=cur.message)
        cur = cur.__cause__
    return ErrorInfo(type=type(err).__name__, message=str(err))


EXIT_CODES: dict[str, int] = {
    cls.__name__: cls.exit_code
    for cls in (
        TributaryError,
        BadInput,
        PolicyDenied,
        CaptureConflict,
        StaleVersion,
        NotFound,
        Rejected,
    )
}
# Subclasses defined next to their adapters (adapters/forge_github.py, adapters/argocd.py),
# by name, as activities report them.
EXIT_CODES["ForgeRejected"] = Rejected.exit_code
EXIT_CODES["ArgoCDRefused"] = Rejected.exit_code
