"""The CLI's waits survive a server that drops a long poll and a query that times out
while the worker restarts: the workflow goes on, so must the CI step."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.service import RPCError, RPCStatusCode

from domain.apply import ApplyOutcome, ApplyStatus
from starter import applying, runner


class FlakyHandle:
    """A workflow handle whose result() fails ``drops`` times before answering."""

    def __init__(self, drops: int, status: RPCStatusCode) -> None:
        self.drops, self.status, self.calls = drops, status, 0

    async def result(self) -> str:
        self.calls += 1
        if self.calls <= self.drops:
            raise RPCError("context canceled", self.status, b"")
        return "published"


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    async def instant(_: float) -> None:
        return None

    monkeypatch.setattr(runner.asyncio, "sleep", instant)


async def test_a_dropped_long_poll_is_waited_on_again() -> None:
    handle: Any = FlakyHandle(3, RPCStatusCode.CANCELLED)
    assert await runner.wait(handle) == "published"
    assert handle.calls == 4


async def test_other_rpc_errors_and_endless_drops_still_fail() -> None:
    handle: Any = FlakyHandle(1, RPCStatusCode.INVALID_ARGUMENT)
    with pytest.raises(RPCError):
        await runner.wait(handle)
    handle = FlakyHandle(10_000, RPCStatusCode.UNAVAILABLE)
    with pytest.raises(RPCError):
        await runner.wait(handle)
    assert handle.calls == runner.WAIT_RETRIES + 1


class FlakyApply:
    """An apply workflow whose status query times out ``drops`` times (no worker)."""

    def __init__(self, drops: int) -> None:
        self.drops, self.calls = drops, 0

    def get_workflow_handle(self, workflow_id: str) -> FlakyApply:
        return self

    async def query(self, name: str, result_type: type) -> ApplyStatus:
        self.calls += 1
        if self.calls <= self.drops:
            raise RPCError("Timeout expired", RPCStatusCode.CANCELLED, b"")
        done = ApplyOutcome(revision=2, state="ready", request_ids=["r1"])
        return ApplyStatus(space="s", unit="u", outcomes=[done])


async def test_following_an_apply_survives_query_timeouts() -> None:
    client: Any = FlakyApply(2)
    outcome = await applying.follow(client, "apply:s:u", "r1")
    assert (outcome.state, outcome.revision, client.calls) == ("ready", 2, 3)


def test_an_apply_refused_as_a_capture_conflict_exits_4() -> None:
    """CLI.md: 4 is a conflict; an apply of a head a capture conflicts with is one."""
    outcome = ApplyOutcome(revision=2, state="failed", reason="conflict", message="x")
    assert applying.exit_code(outcome) == 4
    assert applying.exit_code(outcome.model_copy(update={"reason": "error"})) == 1
