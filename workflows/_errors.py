"""Reading decided failures back out of activity and child workflow errors."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from domain.messages import ErrorInfo


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
