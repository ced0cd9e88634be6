"""Keep activity failures small enough for the Web UI to show them.

Temporal records an activity failure only up to a size limit (4 KB by default);
past it, history and the Web UI say just "Failure exceeds size limit." A refused
connection to the Kubernetes API came to about 5 KB — mostly the stack traces of
urllib3's chained causes — so during an API outage the UI hid why the apply was
retrying (seen by the crash tests). Here a failing activity keeps the innermost
frames of its own traceback and its causes' messages, without their tracebacks.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

FRAMES = 4
CAUSES = 2


def compact(error: BaseException) -> None:
    error.__traceback__ = _tail(error.__traceback__, FRAMES)
    cause, depth = error.__cause__, 0
    while cause is not None:
        depth += 1
        cause.__traceback__ = None
        if depth >= CAUSES:
            cause.__cause__ = None
            break
        cause = cause.__cause__


def _tail(tb: TracebackType | None, frames: int) -> TracebackType | None:
    seen: list[TracebackType] = []
    while tb is not None:
        seen.append(tb)
        tb = tb.tb_next
    return seen[-frames] if len(seen) > frames else (seen[0] if seen else None)


class _Inbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        except Exception as e:
            compact(e)
            raise


class CompactFailures(Interceptor):
    """Register on the worker: ``Worker(..., interceptors=[CompactFailures()])``."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next)
