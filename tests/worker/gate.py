"""A workflow whose one activity waits at a gate (a file) — for the worker process tests.

``python -m tests.worker.gate`` is the real worker (``worker.main()``: signals,
heartbeat, metrics, logs) with this workflow and activity registered next to the
product's, so a test can hold activities in flight and watch what the worker does.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.common import RetryPolicy


class GateInput(BaseModel):
    directory: str  # the activity writes started-<id> here and waits for release-<id>
    key: str


class GateResult(BaseModel):
    pid: int
    saw_shutdown: bool  # the worker was shutting down when the gate opened


@activity.defn(name="test.gate")
def gate(inp: GateInput) -> GateResult:
    directory = Path(inp.directory)
    (directory / f"started-{inp.key}").write_text(str(os.getpid()))
    release = directory / f"release-{inp.key}"
    while not release.exists():
        activity.heartbeat()
        time.sleep(0.05)
    # A log line through the SDK's adapter (ids in ``extra``), naming a secret's value.
    activity.logger.info(
        "gate %s opened; token %s", inp.key, os.environ.get("TRIBUTARY_TEST_TOKEN", "")
    )
    return GateResult(pid=os.getpid(), saw_shutdown=activity.is_worker_shutdown())


@workflow.defn(name="GateWorkflow")
class GateWorkflow:
    @workflow.run
    async def run(self, inp: GateInput) -> GateResult:
        return await workflow.execute_activity(
            gate,
            inp,
            start_to_close_timeout=timedelta(minutes=2),
            heartbeat_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )


def main() -> None:
    import worker

    product = worker.activities

    def with_gate(*args: object, **kwargs: object) -> list[object]:
        return [*product(*args, **kwargs), gate]  # type: ignore[arg-type]

    worker.activities = with_gate  # type: ignore[assignment]
    worker.WORKFLOWS = (*worker.WORKFLOWS, GateWorkflow)
    worker.main()


if __name__ == "__main__":
    main()
