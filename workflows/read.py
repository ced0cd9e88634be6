"""The CLI's reads of the authority (``units``, ``revisions``, ``show``, ``drift status``,
``prs``…): one short workflow per read, whose one activity reads the store on the
worker. The CLI holds only Temporal's address and key; the worker alone holds the
authority's credentials (DESIGN.md, "Who decides what").
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.reads import ReadActivities
    from domain.reads import ReadInput, ReadResult, describe
    from workflows import _options as opt

# Someone waits at a terminal or in CI: a database that stays down fails the read
# in about half a minute instead of the writes' ten attempts.
READ_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=5,
)


@workflow.defn
class ReadWorkflow:
    @workflow.run
    async def run(self, inp: ReadInput) -> ReadResult:
        result: ReadResult = await workflow.execute_activity_method(
            ReadActivities.read,
            inp,
            start_to_close_timeout=opt.AUTHORITY_TIMEOUT,
            retry_policy=READ_RETRY,
            summary=describe(inp.query),
        )
        return result
