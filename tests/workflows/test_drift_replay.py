"""Histories of drift loops recorded by the code before issue 14 (one owner of the drift
row, ``@workflow.init``, the renames) replay on today's ``DriftWorkflow``.

Recorded at commit 310f3c3 on the time-skipping server with every activity mocked
under its real name (the scenarios of test_drift_decisions.py: capture, revert and a
check confirming it, report, a pause sent with the start then an operator's capture,
a failed check, tagging the watch's capture, a unit gone inactive). A change to the
commands the loop issues that is not guarded by ``workflow.patched`` fails here.
"""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tests.support import FIXTURES
from workflows.drift import DriftWorkflow

HISTORIES = FIXTURES / "drift_histories"


@pytest.mark.parametrize(
    "name", sorted(p.stem for p in HISTORIES.glob("*.json")) or ["(none recorded)"]
)
async def test_a_drift_history_of_the_previous_code_replays(name: str) -> None:
    path = HISTORIES / f"{name}.json"
    history = WorkflowHistory.from_json(f"drift:s:{name}", path.read_text())
    replayer = Replayer(workflows=[DriftWorkflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
