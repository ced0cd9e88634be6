"""The sandbox executes a workflow's module for every run it creates; with the worker's
code cache the module is compiled (or read from its .pyc) once per worker."""

from __future__ import annotations

import importlib.machinery
import sys
from collections import Counter
from typing import Any

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from client import codecache
from tests.support import FIXTURES
from workflows.drift import DriftWorkflow

HISTORY = FIXTURES / "drift_histories" / "inactive.json"


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every time the import system fetches a module's code from its file, by file."""
    seen: Counter[str] = Counter()
    original = importlib.machinery.SourceFileLoader.get_code

    def counted(self: Any, fullname: str) -> Any:
        seen[self.get_filename(fullname)] += 1
        return original(self, fullname)

    monkeypatch.setattr(importlib.machinery.SourceFileLoader, "get_code", counted)
    return seen


async def replay(times: int) -> None:
    replayer = Replayer(workflows=[DriftWorkflow], data_converter=pydantic_data_converter)
    for n in range(times):
        history = WorkflowHistory.from_json(f"drift:s:u{n}", HISTORY.read_text())
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None


async def test_each_run_reads_the_workflow_module_without_the_cache(
    loads: Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # (a worker an earlier test built in this process installed it)
    without = [f for f in sys.meta_path if not isinstance(f, codecache.WorkflowCodeCache)]
    monkeypatch.setattr(sys, "meta_path", without)
    await replay(3)
    drift = [n for path, n in loads.items() if path.endswith("workflows/drift.py")]
    # once per run at least (the sandbox also makes one to validate the workflow)
    assert len(drift) == 1
    assert drift[0] >= 3


async def test_with_the_cache_the_workflow_module_is_read_once(
    loads: Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    monkeypatch.setattr(codecache._CachedSourceLoader, "codes", {})
    finder = codecache.install()
    assert codecache.install() is finder  # once per process
    await replay(3)
    drift = [n for path, n in loads.items() if path.endswith("workflows/drift.py")]
    assert drift == [1]
    # Only our workflow packages go through it.
    assert finder.find_spec("json", None) is None
